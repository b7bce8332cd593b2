"""Local SMS-carrier emulator: a real HTTP server for :class:`alerts.adapters.sms.SmsAdapter`.

Run it as a process::

    python -m simulators.sms_gateway --host 127.0.0.1 --port 8780 --api-key devkey \
        [--rate-limit-per-s 100] [--receipt-delay-s 0.5]

It prints ``sms-gateway listening on http://HOST:PORT`` (the real port, also with ``--port 0``) once
it accepts connections. In-process, use :func:`serve` from a running event loop, or
:class:`SmsGatewayThread` from synchronous code.

Carrier API (Bearer auth):
    ``POST /v1/sms``  send one message; 202 on accept, 200 + ``duplicate: true`` for a known
    idempotency key, 401/422/400/429 as a carrier would. Delivery receipts go to ``callback_url``.
    ``GET /v1/sms``   every accepted message in arrival order.
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
import hmac
import logging
import math
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerts.sms_text import segment_count

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
        return f"GatewayConfig(api_key='***', rate_limit_per_s={self.rate_limit_per_s})"


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


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: FaultMode
    count: int = Field(default=1, ge=-1, description="-1: until reset")
    retry_after_s: int = Field(default=1, ge=0, le=3600, description="Retry-After for http429")


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
class FaultPlan:
    mode: FaultMode = FaultMode.NONE
    remaining: int = 0
    retry_after_s: int = 1

    def take(self) -> FaultMode | None:
        if self.mode is FaultMode.NONE or self.remaining == 0:
            return None
        if self.remaining > 0:
            self.remaining -= 1
        return self.mode


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


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _authorized(request: web.Request, api_key: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


def _unauthorized() -> web.Response:
    resp = _error(401, "invalid or missing API key")
    resp.headers["WWW-Authenticate"] = 'Bearer realm="sms"'
    return resp


def _parse(model: type[BaseModel], raw: bytes) -> BaseModel | web.Response:
    """Validate a JSON body; 400 for malformed JSON or a non-object, 422 for invalid fields."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] in ("json_invalid", "model_type") for e in errors):
            return _error(400, "body must be a JSON object")
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
        return _error(422, "validation failed", details=details)


# --- carrier API ----------------------------------------------------------------------------------


async def _post_sms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cfg = state.config
    state.stats.requests += 1
    if not _authorized(request, cfg.api_key):
        state.stats.unauthorized += 1
        return _unauthorized()
    wait_s = state.bucket.take(cfg.monotonic_s())
    if wait_s > 0:
        state.stats.rate_limited += 1
        resp = _error(429, "rate limit exceeded")
        resp.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return resp
    fault = state.faults.take()
    if fault is not None:
        state.stats.faulted += 1
        return await _injected_failure(state, fault)

    parsed = _parse(SmsRequest, await request.read())
    if isinstance(parsed, web.Response):
        state.stats.invalid += 1
        return parsed
    assert isinstance(parsed, SmsRequest)

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
        return _error(500, "injected internal error")
    if fault is FaultMode.HTTP429:
        resp = _error(429, "rate limit exceeded (injected)")
        resp.headers["Retry-After"] = str(state.faults.retry_after_s)
        return resp
    if fault is FaultMode.REJECT:
        return _error(400, "number barred")
    # TIMEOUT: stall past the client's patience, but let a server shutdown cut the stall short.
    try:
        await asyncio.wait_for(state.shutting_down.wait(), state.config.fault_timeout_s)
    except TimeoutError:
        pass
    return _error(504, "upstream timeout (injected)")


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
    try:
        timeout = aiohttp.ClientTimeout(total=cfg.receipt_timeout_s)
        async with state.client.post(callback_url, json=receipt, timeout=timeout) as resp:
            await resp.read()
    except Exception as exc:  # best effort: a broken callback must not affect the gateway
        log.debug("receipt for %s not delivered: %s", record["message_id"], type(exc).__name__)


async def _list_sms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(request, state.config.api_key):
        return _unauthorized()
    return web.json_response({"messages": [dict(m) for m in state.messages]})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# --- control plane --------------------------------------------------------------------------------


async def _set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    parsed = _parse(FaultRequest, await request.read())
    if isinstance(parsed, web.Response):
        return parsed
    assert isinstance(parsed, FaultRequest)
    state.faults = FaultPlan(mode=parsed.mode, remaining=parsed.count, retry_after_s=parsed.retry_after_s)
    return web.json_response({"mode": parsed.mode, "count": parsed.count})


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"status": "reset"})


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({**asdict(state.stats), "stored": len(state.messages)})


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


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].shutting_down.set()


def build_app(config: GatewayConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[STATE] = GatewayState(config=config, bucket=TokenBucket(config.rate_limit_per_s, config.monotonic_s()))
    app.cleanup_ctx.append(_client_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_post("/v1/sms", _post_sms)
    app.router.add_get("/v1/sms", _list_sms)
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/_control/faults", _set_faults)
    app.router.add_post("/_control/reset", _reset)
    app.router.add_get("/_control/stats", _stats)
    return app


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def serve(
    config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 0, shutdown_timeout_s: float = 5.0
) -> AsyncIterator[str]:
    """Run the gateway on the current loop; yields its base URL with the actually bound port."""
    runner = web.AppRunner(build_app(config), shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield f"http://{_url_host(host)}:{bound_port}"
    finally:
        await runner.cleanup()


class SmsGatewayThread:
    """The gateway on its own event loop in a daemon thread, for embedded demos and sync tests."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self._config = config
        self._host = host
        self._port = port
        self._startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        return self._base_url

    def start(self) -> str:
        """Start serving and return the base URL; raises if the server did not come up in time."""
        if self._thread is not None:
            raise RuntimeError("SmsGatewayThread already started")
        self._thread = threading.Thread(target=self._run, name="sms-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout_s):
            raise RuntimeError(f"sms gateway did not start within {self._startup_timeout_s}s")
        if self._error is not None:
            raise RuntimeError("sms gateway failed to start") from self._error
        return self._base_url

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"sms gateway thread did not stop within {timeout_s}s")
        self._thread = None

    def __enter__(self) -> SmsGatewayThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start() through self._error
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        async with serve(self._config, host=self._host, port=self._port) as url:
            self._base_url = url
            self._ready.set()
            await self._stop_event.wait()


# --- command line ---------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.sms_gateway", description="Local SMS-carrier emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rate-limit-per-s", type=float, default=100.0)
    parser.add_argument("--receipt-delay-s", type=float, default=0.5)
    parser.add_argument("--fault-timeout-s", type=float, default=30.0)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve_until_signalled(config: GatewayConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(config, host=host, port=port) as url:
        print(f"sms-gateway listening on {url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    config = GatewayConfig(
        api_key=args.api_key,
        rate_limit_per_s=args.rate_limit_per_s,
        receipt_delay_s=args.receipt_delay_s,
        fault_timeout_s=args.fault_timeout_s,
    )
    asyncio.run(_serve_until_signalled(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
