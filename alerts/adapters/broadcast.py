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
stop is an ordinary delivery it gets :func:`~tocsin.alerts.adapters.base.send_with_retries`, metrics and
delivery records like any other: register the adapter under both channel names. Build one with
:func:`stop_notification`. Any other channel is a routing bug and raises :class:`AdapterError`.

The API key is held as a :class:`pydantic.SecretStr` and only unwrapped to build the
``Authorization`` header; it never reaches logs, ``repr`` or a result's ``detail``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tocsin.alerts.adapters.base import AdapterError, DeliveryResult, Notification, Outcome
from tocsin.alerts.adapters.http import HttpProvider, checked, json_object, taken

log = logging.getLogger(__name__)

BROADCAST_CHANNEL = "broadcast"
STOP_CHANNEL = "broadcast-stop"
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


class BroadcastAdapter(HttpProvider):
    """:class:`tocsin.alerts.adapters.base.Adapter` for the emergency-broadcast platform.

    See ``tocsin.simulators.broadcast_platform`` for the API and how the platform schedules broadcasts.
    """

    name = BROADCAST_CHANNEL
    _max_detail_body_chars = 300

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        repeat: int = 3,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s=timeout_s, wall_clock_s=wall_clock_s)
        if not 1 <= repeat <= 10:
            raise ValueError("repeat must be between 1 and 10")
        self._repeat = repeat

    def _repr_fields(self) -> dict[str, object]:
        return {"repeat": self._repeat}

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
        result = await self._post_json("/v1/broadcasts", payload, _started, correlation_id=n.correlation_id)
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
        result = await self._post_json(
            "/v1/broadcasts/stop-by-alert", payload, _stopped, correlation_id=n.correlation_id
        )
        log.info(
            "broadcast stop %s (%s) key=%s: %s %s",
            n.alert_id,
            n.fingerprint,
            n.idempotency_key,
            result.outcome,
            result.detail,
        )
        return result

    def _error_text(self, body: str) -> str:
        """The platform's ``error`` message plus its per-field ``details``, or the raw body."""
        data = json_object(body)
        details = data.get("details")
        if "error" not in data or not isinstance(details, list) or not details:
            return super()._error_text(body)
        parts = []
        for d in details:
            if isinstance(d, dict):
                loc = ".".join(str(p) for p in d.get("loc", []))
                parts.append(f"{loc}: {d.get('msg', '')}" if loc else str(d.get("msg", "")))
        return f"{data['error']}: {'; '.join(parts)}"[: self._max_detail_body_chars]


def _areas_for_log(areas: list[str]) -> str:
    more = len(areas) - _MAX_LOGGED_AREAS
    return ",".join(areas[:_MAX_LOGGED_AREAS]) + (f" and {more} more" if more > 0 else "")


class StartAnswer(BaseModel):
    """The platform's answer to an accepted ``POST /v1/broadcasts`` (2xx)."""

    model_config = ConfigDict(extra="ignore")

    broadcast_id: str = Field(min_length=1, max_length=200)
    state: str = Field(min_length=1, max_length=40)
    terminals: int = Field(ge=0)
    duplicate: bool = False


class StopAnswer(BaseModel):
    """The platform's answer to ``POST /v1/broadcasts/stop-by-alert`` (2xx)."""

    model_config = ConfigDict(extra="ignore")

    stopped: list[str]
    duplicate: bool = False


def _started(status: int, data: dict[str, Any]) -> DeliveryResult:
    answer = checked(StartAnswer, status, data)
    if isinstance(answer, DeliveryResult):
        return answer
    shown = f"HTTP {status} {answer.state} on {answer.terminals} terminals"
    return taken(answer.broadcast_id, shown, duplicate=answer.duplicate)


def _stopped(status: int, data: dict[str, Any]) -> DeliveryResult:
    answer = checked(StopAnswer, status, data)
    if isinstance(answer, DeliveryResult):
        return answer
    shown = f"HTTP {status} stopped {len(answer.stopped)} broadcasts"
    return taken(",".join(answer.stopped), shown, duplicate=answer.duplicate)
