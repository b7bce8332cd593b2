"""SMS delivery over the carrier HTTP API (``POST /v1/sms``, one request per recipient).

Every recipient gets its own idempotency key, ``f"{n.idempotency_key}:{recipient}"``, so a retried
notification re-sends only where the carrier has no record yet; recipients already delivered come
back as ``DUPLICATE``, which counts as success.

The API key is held as a :class:`pydantic.SecretStr` and only unwrapped to build the
``Authorization`` header; it never reaches logs, ``repr`` or a result's ``detail``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from pydantic import SecretStr

from alerts.adapters.base import AdapterError, DeliveryResult, Notification, Outcome

log = logging.getLogger(__name__)

_REJECT_STATUSES = frozenset({400, 401, 403, 404, 422})
_RETRY_4XX_STATUSES = frozenset({408, 425, 429})
_MAX_DETAIL_BODY_CHARS = 200
_MAX_LISTED_FAILURES = 20


def parse_retry_after(value: str | None, *, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    ``now_s`` is the current Unix time, used only for the HTTP-date form.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def mask_phone(number: str) -> str:
    """Shorten a phone number for logs: ``+8613800001234`` -> ``+861****1234``."""
    if len(number) <= 8:
        return "****"
    return f"{number[:4]}****{number[-4:]}"


class SmsAdapter:
    """:class:`alerts.adapters.base.Adapter` for the SMS carrier API (see ``simulators.sms_gateway``)."""

    name = "sms"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        sender_id: str = "TOCSIN",
        callback_url: str | None = None,
        max_concurrency: int = 16,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._api_key = SecretStr(api_key)
        self._timeout_s = timeout_s
        self._sender_id = sender_id
        self._callback_url = callback_url
        self._max_concurrency = max_concurrency
        self._wall_clock_s = wall_clock_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, api_key='**********', "
            f"sender_id={self._sender_id!r}, timeout_s={self._timeout_s!r})"
        )

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> SmsAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def send(self, n: Notification) -> DeliveryResult:
        """Send to every recipient and aggregate.

        All recipients ok -> ``ACCEPTED`` (``DUPLICATE`` if every one was a duplicate). Otherwise the
        worst outcome wins, ``REJECTED`` over ``RETRY``, with the failed recipients in ``detail``.
        Note that a single rejected recipient makes the whole result final; callers that need to
        keep retrying the others should track recipients themselves with :meth:`send_one`.
        """
        recipients = list(dict.fromkeys(n.recipients))
        if not recipients:
            return DeliveryResult(Outcome.REJECTED, detail="notification has no recipients")
        self._require_session()
        gate = asyncio.Semaphore(self._max_concurrency)

        async def one(recipient: str) -> DeliveryResult:
            async with gate:
                return await self.send_one(n, recipient)

        results = await asyncio.gather(*(one(r) for r in recipients))
        return _aggregate(recipients, results)

    async def send_one(self, n: Notification, recipient: str) -> DeliveryResult:
        """POST the notification to a single recipient and classify the carrier's answer."""
        session = self._require_session()
        payload: dict[str, Any] = {
            "to": recipient,
            "text": n.text,
            "sender_id": self._sender_id,
            "idempotency_key": f"{n.idempotency_key}:{recipient}",
            "priority": n.priority,
        }
        if self._callback_url:
            payload["callback_url"] = self._callback_url
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}
        if n.correlation_id:
            headers["X-Correlation-ID"] = n.correlation_id
        try:
            async with session.post(
                f"{self._base_url}/v1/sms", json=payload, headers=headers, allow_redirects=False
            ) as resp:
                body = await resp.text(errors="replace")
                result = self._classify(resp.status, resp.headers.get("Retry-After"), body)
        except TimeoutError:
            result = DeliveryResult(Outcome.RETRY, detail=f"timeout after {self._timeout_s}s")
        except aiohttp.ClientError as exc:
            result = DeliveryResult(Outcome.RETRY, detail=self._scrub(f"{type(exc).__name__}: {exc}"))
        log.info(
            "sms %s to %s key=%s: %s %s",
            n.alert_id,
            mask_phone(recipient),
            n.idempotency_key,
            result.outcome,
            result.detail,
        )
        return result

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise AdapterError("SmsAdapter.send called before start()")
        return self._session

    def _classify(self, status: int, retry_after: str | None, body: str) -> DeliveryResult:
        if 200 <= status < 300:
            data = _json_object(body)
            ref = str(data.get("message_id", ""))
            if data.get("duplicate") is True:
                return DeliveryResult(Outcome.DUPLICATE, provider_ref=ref, detail=f"HTTP {status} duplicate")
            return DeliveryResult(Outcome.ACCEPTED, provider_ref=ref, detail=f"HTTP {status}")
        detail = self._scrub(f"HTTP {status}: {_error_text(body)}")
        if status >= 500 or status in _RETRY_4XX_STATUSES:
            wait_s = parse_retry_after(retry_after, now_s=self._wall_clock_s())
            return DeliveryResult(Outcome.RETRY, detail=detail, retry_after_s=wait_s)
        # 400/401/403/404/422 and any other 3xx/4xx: the same request will fail again.
        return DeliveryResult(Outcome.REJECTED, detail=detail)

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that may echo request data (error bodies, exceptions)."""
        secret = self._api_key.get_secret_value()
        return text.replace(secret, "**********")


def _json_object(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_text(body: str) -> str:
    data = _json_object(body)
    text = str(data["error"]) if "error" in data else body.strip()
    return text[:_MAX_DETAIL_BODY_CHARS]


def _aggregate(recipients: list[str], results: list[DeliveryResult]) -> DeliveryResult:
    if all(r.ok for r in results):
        outcome = Outcome.DUPLICATE if all(r.outcome is Outcome.DUPLICATE for r in results) else Outcome.ACCEPTED
        ref = results[0].provider_ref if len(results) == 1 else ""
        dups = sum(r.outcome is Outcome.DUPLICATE for r in results)
        return DeliveryResult(outcome, provider_ref=ref, detail=f"{len(results)} ok ({dups} duplicate)")
    failed = [(to, r) for to, r in zip(recipients, results, strict=True) if not r.ok]
    outcome = Outcome.REJECTED if any(r.outcome is Outcome.REJECTED for _, r in failed) else Outcome.RETRY
    listed = "; ".join(f"{to} {r.outcome}: {r.detail}" for to, r in failed[:_MAX_LISTED_FAILURES])
    more = len(failed) - _MAX_LISTED_FAILURES
    if more > 0:
        listed += f"; and {more} more"
    waits = [r.retry_after_s for _, r in failed if r.retry_after_s is not None]
    return DeliveryResult(
        outcome,
        detail=f"{len(failed)}/{len(results)} recipients failed: {listed}",
        retry_after_s=max(waits) if outcome is Outcome.RETRY and waits else None,
    )
