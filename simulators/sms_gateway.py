"""Local SMS-carrier emulator: a real HTTP server for :class:`tocsin.alerts.adapters.sms.SmsAdapter`.

Run it as a process::

    TOCSIN_SMS_API_KEY=... TOCSIN_SMS_CALLBACK_SECRET=... python -m tocsin.simulators.sms_gateway \
        --host 127.0.0.1 --port 8780 [--rate-limit-per-s 100] [--receipt-delay-s 0.5]

The API key comes from the environment or ``--api-key-file``, never the command line; the receipt
signing secret (alerts/receipts.py) from ``TOCSIN_SMS_CALLBACK_SECRET`` or ``--callback-secret-file``
(without one, receipts go unsigned and a Tocsin worker refuses them).

It prints ``sms-gateway listening on http://HOST:PORT`` (the real port, also with ``--port 0``) once
it accepts connections. In-process, use :func:`serve` from a running event loop, or
:class:`SmsGatewayThread` from synchronous code.

Carrier API (Bearer auth):
    ``POST /v1/sms``  send one message; 202 on accept, 200 + ``duplicate: true`` for a known
    idempotency key, 401/422/400/429 as a carrier would. Delivery receipts go to ``callback_url``.
    ``GET /v1/sms``   every accepted message in arrival order (with the request's ``X-Correlation-ID``
    header as ``correlation_id``, empty when absent).
    ``GET /healthz``  liveness.
Control plane (no auth, for tests and demos):
    ``POST /_control/faults`` ``{"mode": "http500"|"timeout"|"http429"|"reject"|"none", "count": N}``
    makes the next N authorised ``POST /v1/sms`` fail that way (``count: -1`` until reset).
    ``POST /_control/reset`` clears messages, faults and stats and refills the rate limiter.
    ``GET /_control/stats``  request counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tocsin.alerts.receipts import signed_headers
from tocsin.alerts.sms_text import segment_count
from tocsin.simulators import http_emulator
from tocsin.simulators.http_emulator import (
    EmulatorThread,
    add_common_routes,
    authorized,
    error,
    parse_body,
    retry_later,
    run_until_signalled,
    serve_app,
    stalled_timeout,
)

log = logging.getLogger(__name__)

E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
MAX_TEXT_CHARS = 1000


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class GatewayConfig:
    api_key: str
    rate_limit_per_s: float = 100.0
    """Token-bucket refill rate; the burst equals the rate (at least one request)."""
    receipt_delay_s: float = 0.5
    fault_timeout_s: float = 30.0
    """How long a ``timeout`` fault stalls before answering 504; longer than any sane client timeout."""
    receipt_timeout_s: float = 5.0
    callback_secret: str = ""
    """Signs every receipt (HMAC-SHA256, alerts/receipts.py); empty: receipts go unsigned."""
    monotonic_s: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = _utc_now

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if self.rate_limit_per_s <= 0:
            raise ValueError("rate_limit_per_s must be positive")
        if self.receipt_delay_s < 0 or self.fault_timeout_s < 0:
            raise ValueError("delays must not be negative")

    def __repr__(self) -> str:
        return f"GatewayConfig(api_key='***', callback_secret='***', rate_limit_per_s={self.rate_limit_per_s})"


# --- HTTP edge models ---------------------------------------------------------------------------


class SmsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    to: str = Field(pattern=E164_PATTERN)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    sender_id: str = Field(default="TOCSIN", min_length=1, max_length=11)
    idempotency_key: str = Field(min_length=1, max_length=256)
    priority: int = Field(default=2, ge=1, le=4)
    callback_url: str | None = Field(default=None, max_length=2000)

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http(s) URL")
        return value


class FaultMode(StrEnum):
    NONE = "none"
    HTTP500 = "http500"
    TIMEOUT = "timeout"
    HTTP429 = "http429"
    REJECT = "reject"


class FaultRequest(http_emulator.FaultRequest[FaultMode]):
    """Body of ``POST /_control/faults``."""


# --- state ----------------------------------------------------------------------------------------


class TokenBucket:
    def __init__(self, rate_per_s: float, now_s: float) -> None:
        self._rate_per_s = rate_per_s
        self._burst = max(1.0, rate_per_s)
        self._tokens = self._burst
        self._last_s = now_s

    def refill(self, now_s: float) -> None:
        self._tokens = self._burst
        self._last_s = now_s

    def take(self, now_s: float) -> float:
        """Take one token; return 0.0 on success, else the seconds until one is available."""
        elapsed_s = max(0.0, now_s - self._last_s)
        self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate_per_s)
        self._last_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate_per_s


@dataclass
class FaultPlan(http_emulator.FaultPlan[FaultMode]):
    mode: FaultMode = FaultMode.NONE


@dataclass
class GatewayStats:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    faulted: int = 0
    rate_limited: int = 0
    unauthorized: int = 0
    invalid: int = 0


@dataclass
class GatewayState:
    config: GatewayConfig
    bucket: TokenBucket
    messages: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: FaultPlan = field(default_factory=FaultPlan)
    stats: GatewayStats = field(default_factory=GatewayStats)
    receipt_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    client: aiohttp.ClientSession | None = None

    def reset(self) -> None:
        self.messages.clear()
        self.by_key.clear()
        self.faults = FaultPlan()
        self.stats = GatewayStats()
        self.bucket.refill(self.config.monotonic_s())


STATE = web.AppKey("sms_gateway_state", GatewayState)


def _unauthorized() -> web.Response:
    return http_emulator.unauthorized(realm="sms")


# --- carrier API ----------------------------------------------------------------------------------


async def _post_sms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cfg = state.config
    state.stats.requests += 1
    if not authorized(request, cfg.api_key):
        state.stats.unauthorized += 1
        return _unauthorized()
    wait_s = state.bucket.take(cfg.monotonic_s())
    if wait_s > 0:
        state.stats.rate_limited += 1
        return retry_later(429, "rate limit exceeded", max(1, math.ceil(wait_s)))
    fault = state.faults.take()
    if fault is not None:
        state.stats.faulted += 1
        return await _injected_failure(state, fault)

    parsed = parse_body(SmsRequest, await request.read())
    if isinstance(parsed, web.Response):
        state.stats.invalid += 1
        return parsed

    known = state.by_key.get(parsed.idempotency_key)
    if known is not None:
        state.stats.duplicates += 1
        body = {"message_id": known["message_id"], "segments": known["segments"], "duplicate": True}
        return web.json_response(body, status=200)

    record = {
        "message_id": f"sm-{uuid.uuid4().hex[:20]}",
        "to": parsed.to,
        "text": parsed.text,
        "sender_id": parsed.sender_id,
        "idempotency_key": parsed.idempotency_key,
        "priority": parsed.priority,
        "segments": segment_count(parsed.text),
        "received_at": cfg.wall_clock().isoformat(),
        "correlation_id": request.headers.get("X-Correlation-ID", ""),
    }
    state.messages.append(record)
    state.by_key[parsed.idempotency_key] = record
    state.stats.accepted += 1
    if parsed.callback_url:
        task = asyncio.create_task(_send_receipt(state, record, parsed.callback_url))
        state.receipt_tasks.add(task)
        task.add_done_callback(state.receipt_tasks.discard)
    body = {"message_id": record["message_id"], "segments": record["segments"], "duplicate": False}
    return web.json_response(body, status=202)


async def _injected_failure(state: GatewayState, fault: FaultMode) -> web.Response:
    if fault is FaultMode.HTTP500:
        return error(500, "injected internal error")
    if fault is FaultMode.HTTP429:
        return retry_later(429, "rate limit exceeded (injected)", state.faults.retry_after_s)
    if fault is FaultMode.REJECT:
        return error(400, "number barred")
    # TIMEOUT: stall past the client's patience, but let a server shutdown cut the stall short.
    return await stalled_timeout(state.shutting_down, state.config.fault_timeout_s)


async def _send_receipt(state: GatewayState, record: dict[str, Any], callback_url: str) -> None:
    """Best-effort delivery receipt after ``receipt_delay_s``; failures are logged and dropped."""
    cfg = state.config
    await asyncio.sleep(cfg.receipt_delay_s)
    receipt = {
        "message_id": record["message_id"],
        "to": record["to"],
        "status": "DELIVRD",
        "idempotency_key": record["idempotency_key"],
        "delivered_at": cfg.wall_clock().isoformat(),
    }
    if state.client is None:
        return
    body = json.dumps(receipt).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if cfg.callback_secret:
        headers |= signed_headers(cfg.callback_secret, body, cfg.wall_clock().timestamp())
    try:
        timeout = aiohttp.ClientTimeout(total=cfg.receipt_timeout_s)
        async with state.client.post(callback_url, data=body, headers=headers, timeout=timeout) as resp:
            await resp.read()
    except Exception as exc:  # best effort: a broken callback must not affect the gateway
        log.debug("receipt for %s not delivered: %s", record["message_id"], type(exc).__name__)


async def _list_sms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not authorized(request, state.config.api_key):
        return _unauthorized()
    return web.json_response({"messages": [dict(m) for m in state.messages]})


def _stats(state: GatewayState) -> dict[str, Any]:
    """The body of ``GET /_control/stats``."""
    return {**asdict(state.stats), "stored": len(state.messages)}


# --- app and runners ------------------------------------------------------------------------------


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.client = aiohttp.ClientSession()
    yield
    for task in list(state.receipt_tasks):
        task.cancel()
    await asyncio.gather(*state.receipt_tasks, return_exceptions=True)
    await state.client.close()
    state.client = None


def build_app(config: GatewayConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[STATE] = GatewayState(config=config, bucket=TokenBucket(config.rate_limit_per_s, config.monotonic_s()))
    app.cleanup_ctx.append(_client_ctx)
    app.router.add_post("/v1/sms", _post_sms)
    app.router.add_get("/v1/sms", _list_sms)
    add_common_routes(app, STATE, FaultRequest, _stats)
    return app


@asynccontextmanager
async def serve(
    config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 0, shutdown_timeout_s: float = 5.0
) -> AsyncIterator[str]:
    """Run the gateway on the current loop; yields its base URL with the actually bound port."""
    async with serve_app(build_app(config), host=host, port=port, shutdown_timeout_s=shutdown_timeout_s) as url:
        yield url


class SmsGatewayThread(EmulatorThread[GatewayConfig]):
    """The gateway on its own event loop in a daemon thread, for embedded demos and sync tests."""

    _thread_name = "sms-gateway"
    _label = "sms gateway"

    def _serve(self) -> AbstractAsyncContextManager[str]:
        return serve(self._config, host=self._host, port=self._port)


# --- command line ---------------------------------------------------------------------------------


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate-limit-per-s", type=float, default=100.0)
    parser.add_argument("--receipt-delay-s", type=float, default=0.5)
    parser.add_argument("--callback-secret-file", help="receipt signing secret (default: $TOCSIN_SMS_CALLBACK_SECRET)")


def main(argv: list[str] | None = None) -> int:
    args = http_emulator.parse_args(
        argv,
        prog="python -m tocsin.simulators.sms_gateway",
        description="Local SMS-carrier emulator",
        default_port=8780,
        key_env="TOCSIN_SMS_API_KEY",
        add_options=_add_options,
    )
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    secret = ""
    if args.callback_secret_file or os.environ.get("TOCSIN_SMS_CALLBACK_SECRET"):
        parser = argparse.ArgumentParser(prog="python -m tocsin.simulators.sms_gateway")
        secret = http_emulator.read_secret(parser, "TOCSIN_SMS_CALLBACK_SECRET", args.callback_secret_file)
    else:
        log.warning("no TOCSIN_SMS_CALLBACK_SECRET: receipts go unsigned (a Tocsin worker refuses them)")
    config = GatewayConfig(
        api_key=args.api_key,
        callback_secret=secret,
        rate_limit_per_s=args.rate_limit_per_s,
        receipt_delay_s=args.receipt_delay_s,
        fault_timeout_s=args.fault_timeout_s,
    )
    return run_until_signalled(serve(config, host=args.host, port=args.port), "sms-gateway")


if __name__ == "__main__":
    raise SystemExit(main())
