"""Local emergency-broadcast platform (应急广播平台) emulator: a real HTTP server for
:class:`tocsin.alerts.adapters.broadcast.BroadcastAdapter`.

Run it as a process::

    TOCSIN_BROADCAST_API_KEY=... python -m tocsin.simulators.broadcast_platform --host 127.0.0.1 --port 8781

(the key from the environment or ``--api-key-file``, never the command line)

It prints ``broadcast-platform listening on http://HOST:PORT`` (the real port, also with ``--port 0``)
once it accepts connections. In-process, use :func:`serve` from a running event loop, or
:class:`BroadcastPlatformThread` from synchronous code.

Areas are the three broadcast levels: 6-digit district (GB/T 2260), 9-digit town and 12-digit
village codes. A code covers every longer code it is a prefix of, so ``330106`` overlaps
``330106001`` and ``330106001002``. Each area reaches a fixed number of loudspeaker terminals
(district 120, town 15, village 3); codes already covered by another code of the same request are
not counted twice.

Scheduling: a terminal plays one broadcast at a time. A broadcast plays only if every playing
broadcast in an overlapping area ranks strictly lower; those are then ``preempted`` (final: the
sender re-issues if it still matters). Otherwise it is accepted but ``queued``, and starts once its
blockers stop or are pre-empted. Rank is ``(not exercise, priority)``: a real broadcast outranks any
exercise, and an exercise never interrupts a real one. Equal ranks are first come, first served.
Broadcasts otherwise play until stopped; ``repeat`` is recorded, not timed.

Platform API (Bearer auth):
    ``POST /v1/broadcasts``  start one; 202 on accept (``state`` playing or queued), 200 +
    ``duplicate: true`` for a known ``request_id``, 409 if that ``request_id`` came with a different
    body, 401/400/422 as the platform would.
    ``POST /v1/broadcasts/{broadcast_id}/stop``  200 ``{"state": "stopped"}``, idempotent; 404 unknown id.
    ``POST /v1/broadcasts/stop-by-alert`` ``{"request_id", "alert_id"}``  stop every playing or queued
    broadcast of the alert (the all-clear). 200 with the ids it stopped; a repeated ``request_id`` gets
    the first answer with ``duplicate: true``; an alert with nothing left to stop is not an error.
    ``GET /v1/broadcasts[?alert_id=...]``  every broadcast in arrival order, with its current state.
    ``GET /healthz``  liveness.
Control plane (no auth, for tests and demos):
    ``POST /_control/faults`` ``{"mode": "http500"|"http503"|"timeout"|"http429"|"reject"|"lost_response"|"none",
    "count": N, "retry_after_s": S}`` makes the next N authorised ``POST`` requests under
    ``/v1/broadcasts`` fail that way (``count: -1`` until reset). ``lost_response`` applies the request,
    then stalls like ``timeout``: the client never learns it succeeded.
    ``POST /_control/reset`` clears broadcasts, faults and stats.
    ``GET /_control/stats``  request counters.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
B = TypeVar("B", bound=BaseModel)

AREA_CODE_PATTERN = r"^[1-9][0-9]{5}([0-9]{3}([0-9]{3})?)?$"
_AREA_CODE_RE = re.compile(AREA_CODE_PATTERN)
MAX_TEXT_CHARS = 2000
MAX_AREAS = 500
TERMINALS_PER_AREA = {6: 120, 9: 15, 12: 3}
"""Loudspeaker terminals the emulator pretends each district / town / village code reaches."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlatformConfig:
    api_key: str
    fault_timeout_s: float = 30.0
    """How long a ``timeout`` fault stalls before answering 504; longer than any sane client timeout."""
    wall_clock: Callable[[], datetime] = _utc_now

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if self.fault_timeout_s < 0:
            raise ValueError("fault_timeout_s must not be negative")

    def __repr__(self) -> str:
        return f"PlatformConfig(api_key='***', fault_timeout_s={self.fault_timeout_s})"


# --- areas ----------------------------------------------------------------------------------------


def areas_overlap(a: str, b: str) -> bool:
    """True if one code covers the other (district > town > village share prefixes)."""
    return a.startswith(b) or b.startswith(a)


def covering_codes(codes: Iterable[str]) -> list[str]:
    """The codes not already covered by another code of the same list, in first-seen order."""
    unique = list(dict.fromkeys(codes))
    return [c for c in unique if not any(o != c and c.startswith(o) for o in unique)]


def terminal_count(codes: Iterable[str]) -> int:
    return sum(TERMINALS_PER_AREA[len(c)] for c in covering_codes(codes))


# --- HTTP edge models ---------------------------------------------------------------------------


class BroadcastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    request_id: str = Field(min_length=1, max_length=256, description="idempotency key")
    area_codes: list[str] = Field(min_length=1, max_length=MAX_AREAS)
    level: int = Field(ge=1, le=4, description="warning level, 1 blue .. 4 red")
    priority: int = Field(ge=1, le=4, description="4 is the most urgent")
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="read out by text-to-speech")
    repeat: int = Field(default=3, ge=1, le=10)
    exercise: bool = False
    alert_id: str = Field(min_length=1, max_length=200)

    @field_validator("area_codes")
    @classmethod
    def _area_codes(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not _AREA_CODE_RE.match(code):
                raise ValueError(
                    f"invalid area code {code[:20]!r}: expected 6 (district), 9 (town) or 12 (village) digits"
                )
        return list(dict.fromkeys(codes))

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text must not be blank")
        return text


class StopByAlertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    request_id: str = Field(min_length=1, max_length=256)
    alert_id: str = Field(min_length=1, max_length=200)


class FaultMode(StrEnum):
    NONE = "none"
    HTTP500 = "http500"
    HTTP503 = "http503"
    TIMEOUT = "timeout"
    HTTP429 = "http429"
    REJECT = "reject"
    LOST_RESPONSE = "lost_response"


class FaultRequest(http_emulator.FaultRequest[FaultMode]):
    """Body of ``POST /_control/faults``."""


# --- state ----------------------------------------------------------------------------------------


class BroadcastState(StrEnum):
    PLAYING = "playing"
    QUEUED = "queued"
    PREEMPTED = "preempted"
    STOPPED = "stopped"


@dataclass
class Broadcast:
    broadcast_id: str
    seq: int
    request: BroadcastRequest
    terminals: int
    received_at: str
    state: BroadcastState = BroadcastState.QUEUED
    updated_at: str = ""
    preempted_by: str = ""

    @property
    def rank(self) -> tuple[bool, int]:
        return (not self.request.exercise, self.request.priority)

    @property
    def active(self) -> bool:
        return self.state in (BroadcastState.PLAYING, BroadcastState.QUEUED)

    def overlaps(self, other: Broadcast) -> bool:
        return any(areas_overlap(a, b) for a in self.request.area_codes for b in other.request.area_codes)

    def to_json(self) -> dict[str, Any]:
        return {
            "broadcast_id": self.broadcast_id,
            **self.request.model_dump(),
            "state": self.state.value,
            "terminals": self.terminals,
            "received_at": self.received_at,
            "updated_at": self.updated_at,
            "preempted_by": self.preempted_by,
        }


class Schedule:
    """Every broadcast the platform accepted, and who plays where. No I/O, so it can be tested alone."""

    def __init__(self, wall_clock: Callable[[], datetime] = _utc_now) -> None:
        self._wall_clock = wall_clock
        self.broadcasts: list[Broadcast] = []
        self.by_id: dict[str, Broadcast] = {}
        self.by_request: dict[str, Broadcast] = {}
        self.stop_answers: dict[str, dict[str, Any]] = {}
        self.preemptions = 0

    def add(self, request: BroadcastRequest) -> Broadcast:
        """Store a new broadcast (the caller has checked ``request_id`` is new) and schedule it."""
        now = self._wall_clock().isoformat()
        bc = Broadcast(
            broadcast_id=f"bc-{uuid.uuid4().hex[:20]}",
            seq=len(self.broadcasts),
            request=request,
            terminals=terminal_count(request.area_codes),
            received_at=now,
            updated_at=now,
        )
        self.broadcasts.append(bc)
        self.by_id[bc.broadcast_id] = bc
        self.by_request[request.request_id] = bc
        self._reschedule()
        return bc

    def stop(self, bc: Broadcast) -> bool:
        """Stop one broadcast; False if it was already stopped."""
        if bc.state is BroadcastState.STOPPED:
            return False
        self._set(bc, BroadcastState.STOPPED)
        self._reschedule()
        return True

    def stop_alert(self, alert_id: str) -> list[str]:
        """Stop every playing or queued broadcast of ``alert_id``; return the ids stopped."""
        stopped = [bc for bc in self.broadcasts if bc.request.alert_id == alert_id and bc.active]
        for bc in stopped:
            self._set(bc, BroadcastState.STOPPED)
        if stopped:
            self._reschedule()
        return [bc.broadcast_id for bc in stopped]

    def _set(self, bc: Broadcast, state: BroadcastState, *, by: str = "") -> None:
        bc.state = state
        bc.preempted_by = by
        bc.updated_at = self._wall_clock().isoformat()

    def _reschedule(self) -> None:
        """Admit queued broadcasts, best rank first, then oldest first.

        One pass is enough: a broadcast stays queued only behind a playing one of equal or higher
        rank, which only a strictly higher rank can pre-empt, and every such rank was admitted earlier
        in the pass.
        """
        queued = sorted(
            (bc for bc in self.broadcasts if bc.state is BroadcastState.QUEUED),
            key=lambda bc: (bc.rank, -bc.seq),
            reverse=True,
        )
        for bc in queued:
            rivals = [p for p in self.broadcasts if p.state is BroadcastState.PLAYING and p.overlaps(bc)]
            if any(p.rank >= bc.rank for p in rivals):
                continue
            for p in rivals:
                self._set(p, BroadcastState.PREEMPTED, by=bc.broadcast_id)
                self.preemptions += 1
            self._set(bc, BroadcastState.PLAYING)


@dataclass
class FaultPlan(http_emulator.FaultPlan[FaultMode]):
    mode: FaultMode = FaultMode.NONE


@dataclass
class PlatformStats:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    queued: int = 0
    stop_requests: int = 0
    stopped: int = 0
    faulted: int = 0
    unauthorized: int = 0
    invalid: int = 0
    conflicts: int = 0


@dataclass
class PlatformState:
    config: PlatformConfig
    schedule: Schedule
    faults: FaultPlan = field(default_factory=FaultPlan)
    stats: PlatformStats = field(default_factory=PlatformStats)
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.schedule = Schedule(self.config.wall_clock)
        self.faults = FaultPlan()
        self.stats = PlatformStats()


STATE = web.AppKey("broadcast_platform_state", PlatformState)


def _unauthorized() -> web.Response:
    return http_emulator.unauthorized(realm="broadcast")


# --- platform API ---------------------------------------------------------------------------------


async def _guard(request: web.Request) -> web.Response | FaultMode | None:
    """Count, authenticate and apply injected faults to a mutating request.

    Returns an error response to send as is, ``LOST_RESPONSE`` for the caller to apply the request
    and then stall, or None to go ahead normally.
    """
    state = request.app[STATE]
    state.stats.requests += 1
    if not authorized(request, state.config.api_key):
        state.stats.unauthorized += 1
        return _unauthorized()
    fault = state.faults.take()
    if fault is None:
        return None
    state.stats.faulted += 1
    if fault is FaultMode.LOST_RESPONSE:
        return fault
    return await _injected_failure(state, fault)


async def _guarded_body(request: web.Request, model: type[B]) -> tuple[FaultMode | None, B] | web.Response:
    """:func:`_guard`, then the body validated by ``model`` (counted as invalid when it is not)."""
    guard = await _guard(request)
    if isinstance(guard, web.Response):
        return guard
    parsed = parse_body(model, await request.read())
    if isinstance(parsed, web.Response):
        request.app[STATE].stats.invalid += 1
        return parsed
    return guard, parsed


async def _injected_failure(state: PlatformState, fault: FaultMode) -> web.Response:
    if fault is FaultMode.HTTP500:
        return error(500, "injected internal error")
    if fault in (FaultMode.HTTP429, FaultMode.HTTP503):
        status, message = (429, "too many requests (injected)") if fault is FaultMode.HTTP429 else (503, "busy")
        return retry_later(status, message, state.faults.retry_after_s)
    if fault is FaultMode.REJECT:
        return error(403, "area not authorised for this sender")
    # TIMEOUT and LOST_RESPONSE: stall past the client's patience, cut short by a server shutdown.
    return await stalled_timeout(state.shutting_down, state.config.fault_timeout_s)


def _start_answer(bc: Broadcast, *, duplicate: bool) -> dict[str, Any]:
    return {
        "broadcast_id": bc.broadcast_id,
        "state": bc.state.value,
        "terminals": bc.terminals,
        "duplicate": duplicate,
    }


async def _post_broadcast(request: web.Request) -> web.Response:
    state = request.app[STATE]
    got = await _guarded_body(request, BroadcastRequest)
    if isinstance(got, web.Response):
        return got
    guard, parsed = got

    schedule = state.schedule
    known = schedule.by_request.get(parsed.request_id)
    if known is not None:
        if known.request != parsed:
            state.stats.conflicts += 1
            return error(409, "request_id already used for a different broadcast")
        state.stats.duplicates += 1
        answer = web.json_response(_start_answer(known, duplicate=True), status=200)
    else:
        bc = schedule.add(parsed)
        state.stats.accepted += 1
        if bc.state is BroadcastState.QUEUED:
            state.stats.queued += 1
        log.info("broadcast %s for %s: %s on %d terminals", bc.broadcast_id, parsed.alert_id, bc.state, bc.terminals)
        answer = web.json_response(_start_answer(bc, duplicate=False), status=202)
    if guard is FaultMode.LOST_RESPONSE:
        return await _injected_failure(state, guard)
    return answer


async def _stop_broadcast(request: web.Request) -> web.Response:
    state = request.app[STATE]
    guard = await _guard(request)
    if isinstance(guard, web.Response):
        return guard
    bc = state.schedule.by_id.get(request.match_info["broadcast_id"])
    if bc is None:
        return error(404, "unknown broadcast_id")
    if state.schedule.stop(bc):
        state.stats.stopped += 1
    if guard is FaultMode.LOST_RESPONSE:
        return await _injected_failure(state, guard)
    return web.json_response({"broadcast_id": bc.broadcast_id, "state": bc.state.value})


async def _stop_by_alert(request: web.Request) -> web.Response:
    state = request.app[STATE]
    got = await _guarded_body(request, StopByAlertRequest)
    if isinstance(got, web.Response):
        return got
    guard, parsed = got

    schedule = state.schedule
    known = schedule.stop_answers.get(parsed.request_id)
    if known is not None:
        if known["alert_id"] != parsed.alert_id:
            state.stats.conflicts += 1
            return error(409, "request_id already used for a different alert")
        state.stats.duplicates += 1
        answer = web.json_response({**known, "duplicate": True})
    else:
        stopped = schedule.stop_alert(parsed.alert_id)
        state.stats.stop_requests += 1
        state.stats.stopped += len(stopped)
        body = {"alert_id": parsed.alert_id, "stopped": stopped, "duplicate": False}
        schedule.stop_answers[parsed.request_id] = body
        log.info("stop-by-alert %s: %d broadcasts stopped", parsed.alert_id, len(stopped))
        answer = web.json_response(body)
    if guard is FaultMode.LOST_RESPONSE:
        return await _injected_failure(state, guard)
    return answer


async def _list_broadcasts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not authorized(request, state.config.api_key):
        return _unauthorized()
    alert_id = request.query.get("alert_id")
    listed = [bc.to_json() for bc in state.schedule.broadcasts if alert_id is None or bc.request.alert_id == alert_id]
    return web.json_response({"broadcasts": listed})


def _stats(state: PlatformState) -> dict[str, Any]:
    """The body of ``GET /_control/stats``."""
    schedule = state.schedule
    by_state = {s.value: sum(bc.state is s for bc in schedule.broadcasts) for s in BroadcastState}
    body = {**asdict(state.stats), "preempted": schedule.preemptions, "stored": len(schedule.broadcasts)}
    return {**body, "states": by_state}


# --- app and runners ------------------------------------------------------------------------------


def build_app(config: PlatformConfig) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[STATE] = PlatformState(config=config, schedule=Schedule(config.wall_clock))
    app.router.add_post("/v1/broadcasts", _post_broadcast)
    app.router.add_get("/v1/broadcasts", _list_broadcasts)
    app.router.add_post("/v1/broadcasts/stop-by-alert", _stop_by_alert)
    app.router.add_post("/v1/broadcasts/{broadcast_id}/stop", _stop_broadcast)
    add_common_routes(app, STATE, FaultRequest, _stats)
    return app


@asynccontextmanager
async def serve(
    config: PlatformConfig, *, host: str = "127.0.0.1", port: int = 0, shutdown_timeout_s: float = 5.0
) -> AsyncIterator[str]:
    """Run the platform on the current loop; yields its base URL with the actually bound port."""
    async with serve_app(build_app(config), host=host, port=port, shutdown_timeout_s=shutdown_timeout_s) as url:
        yield url


class BroadcastPlatformThread(EmulatorThread[PlatformConfig]):
    """The platform on its own event loop in a daemon thread, for embedded demos and sync tests."""

    _thread_name = "broadcast-platform"
    _label = "broadcast platform"

    def _serve(self) -> AbstractAsyncContextManager[str]:
        return serve(self._config, host=self._host, port=self._port)


# --- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = http_emulator.parse_args(
        argv,
        prog="python -m tocsin.simulators.broadcast_platform",
        description="Local emergency-broadcast platform emulator",
        default_port=8781,
        key_env="TOCSIN_BROADCAST_API_KEY",
    )
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    config = PlatformConfig(api_key=args.api_key, fault_timeout_s=args.fault_timeout_s)
    return run_until_signalled(serve(config, host=args.host, port=args.port), "broadcast-platform")


if __name__ == "__main__":
    raise SystemExit(main())
