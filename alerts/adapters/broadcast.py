"""Emergency-broadcast delivery over the platform HTTP API (``POST /v1/broadcasts``).

One notification on channel ``"broadcast"`` is one broadcast: ``recipients`` are area codes (6-digit
district, 9-digit town or 12-digit village), ``text`` is read out by text-to-speech, ``priority`` is
sent as both the platform's ``level`` and ``priority`` (1 blue .. 4 red), ``repeat`` comes from the
constructor, ``exercise`` is passed through and ``request_id`` is ``n.idempotency_key``, so a retry
that reaches a platform which already has the broadcast comes back ``DUPLICATE``.

Alert identity: the platform groups broadcasts by ``alert_id`` for the all-clear. The adapter sends
``n.fingerprint`` there, not ``n.alert_id``: the CAP identifier changes with every message of an
incident (Alert, each Update, the Cancel), the fingerprint does not, so one stop ends the broadcasts
started by every revision.

All-clear: a notification on channel :data:`STOP_CHANNEL` (``"broadcast-stop"``) through the same
:meth:`BroadcastAdapter.send`, which posts ``/v1/broadcasts/stop-by-alert`` with
``request_id = n.idempotency_key`` and ``alert_id = n.fingerprint``; ``recipients`` and ``text`` are
ignored and may be empty. Stopping is idempotent and "nothing left to stop" is success. Because the
stop is an ordinary delivery it gets :func:`~alerts.adapters.base.send_with_retries`, metrics and
delivery records like any other: register the adapter under both channel names. Build one with
:func:`stop_notification`. Any other channel is a routing bug and raises :class:`AdapterError`.

The API key is held as a :class:`pydantic.SecretStr` and only unwrapped to build the
``Authorization`` header; it never reaches logs, ``repr`` or a result's ``detail``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import SecretStr

from alerts.adapters.base import AdapterError, DeliveryResult, Notification, Outcome
from alerts.adapters.sms import parse_retry_after

log = logging.getLogger(__name__)

BROADCAST_CHANNEL = "broadcast"
STOP_CHANNEL = "broadcast-stop"
_RETRY_4XX_STATUSES = frozenset({408, 425, 429})
_MAX_DETAIL_BODY_CHARS = 300
_MAX_LOGGED_AREAS = 5


def stop_notification(n: Notification, *, idempotency_key: str | None = None) -> Notification:
    """The all-clear for the broadcasts of ``n``'s incident (same fingerprint), on :data:`STOP_CHANNEL`.

    The default idempotency key is ``f"{n.idempotency_key}:stop"``; pass the Cancel message's own
    key when the stop comes from a Cancel.
    """
    return n.model_copy(
        update={
            "channel": STOP_CHANNEL,
            "recipients": [],
            "text": "",
            "idempotency_key": idempotency_key or f"{n.idempotency_key}:stop",
        }
    )


class BroadcastAdapter:
    """:class:`alerts.adapters.base.Adapter` for the emergency-broadcast platform.

    See ``simulators.broadcast_platform`` for the API and how the platform schedules broadcasts.
    """

    name = BROADCAST_CHANNEL

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        repeat: int = 3,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not 1 <= repeat <= 10:
            raise ValueError("repeat must be between 1 and 10")
        self._base_url = base_url.rstrip("/")
        self._api_key = SecretStr(api_key)
        self._timeout_s = timeout_s
        self._repeat = repeat
        self._wall_clock_s = wall_clock_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, api_key='**********', "
            f"repeat={self._repeat!r}, timeout_s={self._timeout_s!r})"
        )

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> BroadcastAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def send(self, n: Notification) -> DeliveryResult:
        """Start a broadcast (channel ``"broadcast"``) or stop the incident's broadcasts (``"broadcast-stop"``).

        A started broadcast is ``ACCEPTED`` whether the platform plays it at once or queues it behind
        a more urgent one; ``detail`` says which and on how many terminals.
        """
        if n.channel == STOP_CHANNEL:
            return await self._stop_alert(n)
        if n.channel != BROADCAST_CHANNEL:
            raise AdapterError(f"BroadcastAdapter cannot send channel {n.channel!r}")
        return await self._start_broadcast(n)

    async def _start_broadcast(self, n: Notification) -> DeliveryResult:
        areas = list(dict.fromkeys(n.recipients))
        if not areas:
            return DeliveryResult(Outcome.REJECTED, detail="notification has no area codes")
        payload: dict[str, Any] = {
            "request_id": n.idempotency_key,
            "alert_id": n.fingerprint,
            "area_codes": areas,
            "level": n.priority,
            "priority": n.priority,
            "text": n.text,
            "repeat": self._repeat,
            "exercise": n.exercise,
        }
        result = await self._post(n, "/v1/broadcasts", payload, _started)
        log.info(
            "broadcast %s to %s key=%s: %s %s",
            n.alert_id,
            _areas_for_log(areas),
            n.idempotency_key,
            result.outcome,
            result.detail,
        )
        return result

    async def _stop_alert(self, n: Notification) -> DeliveryResult:
        payload = {"request_id": n.idempotency_key, "alert_id": n.fingerprint}
        result = await self._post(n, "/v1/broadcasts/stop-by-alert", payload, _stopped)
        log.info(
            "broadcast stop %s (%s) key=%s: %s %s",
            n.alert_id,
            n.fingerprint,
            n.idempotency_key,
            result.outcome,
            result.detail,
        )
        return result

    async def _post(
        self,
        n: Notification,
        path: str,
        payload: dict[str, Any],
        on_success: Callable[[int, dict[str, Any]], DeliveryResult],
    ) -> DeliveryResult:
        session = self._require_session()
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}
        if n.correlation_id:
            headers["X-Correlation-ID"] = n.correlation_id
        try:
            async with session.post(
                f"{self._base_url}{path}", json=payload, headers=headers, allow_redirects=False
            ) as resp:
                body = await resp.text(errors="replace")
                if 200 <= resp.status < 300:
                    return on_success(resp.status, _json_object(body))
                return self._classify_failure(resp.status, resp.headers.get("Retry-After"), body)
        except TimeoutError:
            return DeliveryResult(Outcome.RETRY, detail=f"timeout after {self._timeout_s}s")
        except aiohttp.ClientError as exc:
            return DeliveryResult(Outcome.RETRY, detail=self._scrub(f"{type(exc).__name__}: {exc}"))

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise AdapterError("BroadcastAdapter.send called before start()")
        return self._session

    def _classify_failure(self, status: int, retry_after: str | None, body: str) -> DeliveryResult:
        detail = self._scrub(f"HTTP {status}: {_error_text(body)}")
        if status >= 500 or status in _RETRY_4XX_STATUSES:
            wait_s = parse_retry_after(retry_after, now_s=self._wall_clock_s())
            return DeliveryResult(Outcome.RETRY, detail=detail, retry_after_s=wait_s)
        # 400/401/403/404/409/422 and any other 3xx/4xx: the same request will fail again.
        return DeliveryResult(Outcome.REJECTED, detail=detail)

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that may echo request data (error bodies, exceptions)."""
        secret = self._api_key.get_secret_value()
        return text.replace(secret, "**********")


def _areas_for_log(areas: list[str]) -> str:
    more = len(areas) - _MAX_LOGGED_AREAS
    return ",".join(areas[:_MAX_LOGGED_AREAS]) + (f" and {more} more" if more > 0 else "")


def _started(status: int, data: dict[str, Any]) -> DeliveryResult:
    ref = str(data.get("broadcast_id", ""))
    shown = f"HTTP {status} {data.get('state', '?')} on {data.get('terminals', '?')} terminals"
    if data.get("duplicate") is True:
        return DeliveryResult(Outcome.DUPLICATE, provider_ref=ref, detail=f"{shown} (duplicate)")
    return DeliveryResult(Outcome.ACCEPTED, provider_ref=ref, detail=shown)


def _stopped(status: int, data: dict[str, Any]) -> DeliveryResult:
    stopped = data.get("stopped")
    ids = [str(i) for i in stopped] if isinstance(stopped, list) else []
    shown = f"HTTP {status} stopped {len(ids)} broadcasts"
    if data.get("duplicate") is True:
        return DeliveryResult(Outcome.DUPLICATE, provider_ref=",".join(ids), detail=f"{shown} (duplicate)")
    return DeliveryResult(Outcome.ACCEPTED, provider_ref=",".join(ids), detail=shown)


def _json_object(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_text(body: str) -> str:
    """The platform's ``error`` message plus its per-field ``details``, or the raw body."""
    data = _json_object(body)
    if "error" not in data:
        return body.strip()[:_MAX_DETAIL_BODY_CHARS]
    text = str(data["error"])
    details = data.get("details")
    if isinstance(details, list) and details:
        parts = []
        for d in details:
            if isinstance(d, dict):
                loc = ".".join(str(p) for p in d.get("loc", []))
                parts.append(f"{loc}: {d.get('msg', '')}" if loc else str(d.get("msg", "")))
        text = f"{text}: {'; '.join(parts)}"
    return text[:_MAX_DETAIL_BODY_CHARS]
