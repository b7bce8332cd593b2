"""The duty officers' web console, served by the operator API process (docs/console.md).

:func:`setup_console` adds to the API's aiohttp application:

``/console/``                        the single page (static, public; it asks for a login)
``/console/static/...``              its script, style sheet and the district outline (public)
``POST /console/login``              name and password -> a session cookie (the users file of the API)
``POST /console/logout``
``GET /console/api/session``         who is logged in, with the CSRF token of the session
``GET /console/api/stream``          server-sent events: the active alerts whenever they change
``GET /console/api/map``             district outline, devices with their state, alert areas
``GET /console/api/devices``         every registered device: reporting, stale, offline or faulty (devices.py)
``GET /console/api/alerts/{fp}/releases``  release workflow events and notes of an incident
``POST /console/api/alerts/{fp}/release``  ``{"decision": "approve"|"reject", "note": ...}`` (operator)
``POST /console/api/alerts/{fp}/note``     ``{"note": ...}`` (operator)

Sessions. A login checks the name and password with the API's :class:`~tocsin.alerts.auth.Authenticator`
(the same users, roles, lock-out); the session id (32 random bytes) is kept in memory only, in a
cookie that is ``HttpOnly`` and ``SameSite=Strict`` (``Secure`` when the API is served over TLS),
for at most ``ttl_s`` (12 h) and ``idle_s`` (30 min without a request). With the cookie, every other
route of the API (``/alerts``, ``/silences``, ``/audit``, ...) answers as for HTTP Basic. A request
that changes something (any method but GET/HEAD/OPTIONS) and authenticates by cookie must carry the
session's CSRF token in ``X-CSRF-Token`` (``403 csrf`` otherwise); HTTP Basic and Bearer requests
are not affected (a browser never sends those by itself to another site).

Every action is recorded under the logged-in identity: acks and silences by the API (their ``by``
and ``creator``), approvals, rejections and notes on ``alerts.releases`` (alerts/release.py).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tocsin.alerts.auth import Denied, Principal, Role
from tocsin.alerts.console.devices import ORDER, DeviceHealthModel
from tocsin.alerts.release import Action, ReleaseEvent
from tocsin.schemas.wire import decode

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "tocsin_session"
CSRF_HEADER = "X-CSRF-Token"
CONSOLE_HEADER = "X-Tocsin-Console"  # sent by the page's script with every request
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ROUTES = frozenset({"/console", "/console/", "/console/login", "/console/static"})
ReleasePublisher = Callable[[ReleaseEvent], Awaitable[object]]
M = TypeVar("M", bound=BaseModel)
SeriesReader = Callable[[str, list[str], float], list[dict[str, Any]]]
"""(measurement, devices, hours) -> [{"device", "field", "points": [[iso time, value], ...]}] (blocking)."""
SNAPSHOT_MAX_AGE_S = 1.0
"""Device states served to consoles and scrapes are at most this old (one judgement of the fleet a second)."""
SKIP_FIELDS = frozenset({"lat", "lon", "seq", "interval_s", "n", "bearing_deg"})


# --------------------------------------------------------------------------- sessions
@dataclass
class Session:
    principal: Principal
    csrf: str
    created: float
    seen: float


class Sessions:
    """In-memory sessions (a restart logs everybody out), bounded to ``max_sessions``."""

    def __init__(
        self,
        ttl_s: float = 12 * 3600,
        idle_s: float = 1800,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.idle_s, self.max_sessions, self.clock = ttl_s, idle_s, max_sessions, clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def new(self, principal: Principal) -> tuple[str, Session]:
        sid, now = secrets.token_urlsafe(32), self.clock()
        session = Session(principal, secrets.token_urlsafe(24), now, now)
        with self._lock:
            self._by_id[sid] = session
            while len(self._by_id) > self.max_sessions:
                self._by_id.popitem(last=False)
        return sid, session

    def get(self, sid: str) -> Session | None:
        now = self.clock()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.created > self.ttl_s or now - s.seen > self.idle_s:
                del self._by_id[sid]
                return None
            s.seen = now
            self._by_id.move_to_end(sid)
            return s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)


# --------------------------------------------------------------------------- the release read model
class ReleaseView:
    """Release events and notes by fingerprint, fed from ``alerts.releases`` (thread-safe)."""

    def __init__(self, max_fingerprints: int = 20_000) -> None:
        self.max_fingerprints = max_fingerprints
        self._events: OrderedDict[str, list[ReleaseEvent]] = OrderedDict()
        self._lock = threading.Lock()
        self.version = 0

    def apply_record(self, value: bytes | None) -> bool:
        if not value:
            return False
        try:
            return self.apply(decode(ReleaseEvent, value))
        except ValidationError as e:
            log.warning("malformed release event skipped: %s", e.errors(include_url=False)[:3])
            return False

    def apply(self, event: ReleaseEvent) -> bool:
        with self._lock:
            events = self._events.setdefault(event.fingerprint, [])
            if event in events:
                return False
            events.append(event)
            self._events.move_to_end(event.fingerprint)
            while len(self._events) > self.max_fingerprints:
                self._events.popitem(last=False)
            self.version += 1
            return True

    def events(self, fingerprint: str) -> list[ReleaseEvent]:
        with self._lock:
            return list(self._events.get(fingerprint, ()))

    def state(self, fingerprint: str, identifier: str) -> str:
        """``pending`` (held, no decision yet), ``approve``, ``reject``, ``timed_release``, ... or
        ``auto`` (never held) for the message ``identifier``."""
        state = "auto"
        for e in self.events(fingerprint):
            if e.identifier == identifier and e.action is Action.HELD:
                state = "pending"
            elif e.action in (Action.APPROVE, Action.REJECT) and state in ("pending", "escalated"):
                state = e.action.value
            elif e.identifier == identifier and e.action in (Action.ESCALATED, Action.TIMED_HOLD):
                state = "escalated" if state == "pending" else state
            elif e.identifier == identifier and e.action in (Action.TIMED_RELEASE, Action.FORCED):
                state = e.action.value
        return state


# --------------------------------------------------------------------------- request bodies
class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Action
    note: str = Field(default="", max_length=1000)
    identifier: str | None = None


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str = Field(min_length=1, max_length=1000)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, error: str, detail: str = "") -> web.Response:
    return _json({"error": error, "detail": detail}, status=status)


# --------------------------------------------------------------------------- the console
class Console:
    def __init__(
        self,
        api: Any,
        releases: ReleaseView,
        publish_release: ReleasePublisher | None,
        *,
        registry: Any = None,
        outline: Path = STATIC / "district.geojson",
        secure_cookie: bool = False,
        sessions: Sessions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stream_poll_s: float = 0.2,
        read_series: SeriesReader | None = None,
        devices: DeviceHealthModel | None = None,
    ) -> None:
        self.read_series, self.devices = read_series, devices
        self.api, self.releases, self.publish_release = api, releases, publish_release
        self.registry, self.outline, self.secure_cookie = registry, outline, secure_cookie
        self.sessions = sessions or Sessions()
        self.clock, self.stream_poll_s = clock, stream_poll_s

    # ------------------------------------------------------------------ sessions
    @web.middleware
    async def session_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """A valid session cookie stands for the credential (alerts/api.py then skips its check)."""
        sid = request.cookies.get(COOKIE)
        if sid and "Authorization" not in request.headers:
            session = self.sessions.get(sid)
            if session is not None:
                if request.method not in SAFE_METHODS and request.path != "/console/login":
                    sent = request.headers.get(CSRF_HEADER, "")
                    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                        return _error(403, "csrf", f"a change by session needs the {CSRF_HEADER} header")
                request[self.api.principal_key] = session.principal
        response = await handler(request)
        if response.status == 401 and (request.path.startswith("/console") or request.headers.get(CONSOLE_HEADER)):
            # no Basic challenge for the page's own requests: a browser would open its password
            # dialog over the console's login form (and a headless one would wait for it forever)
            response.headers.pop("WWW-Authenticate", None)
        return response

    def _principal(self, request: web.Request) -> Principal:
        principal: Principal = request[self.api.principal_key]
        return principal

    def _needs(
        self, role: Role, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            p = self._principal(request)
            if not p.role.allows(role):
                self.api.auth_failures.labels("403").inc()
                return _error(403, "forbidden", f"{p.name} is {p.role}; this needs {role}")
            return await handler(request)

        return guarded

    async def login(self, request: web.Request) -> web.Response:
        if self.api.auth is None:
            return _error(401, "unauthorized", "no users configured (TOCSIN_API_USERS_FILE)")
        try:
            if request.content_type == "application/json":
                body = await request.json()
            else:
                body = dict(await request.post())
            req = LoginRequest.model_validate(body)
        except (ValueError, ValidationError) as e:
            return _error(422, "validation", str(e))
        header = "Basic " + base64.b64encode(f"{req.name}:{req.password}".encode()).decode()
        try:
            async with self.api._verifying:
                principal = await asyncio.to_thread(self.api.auth.authenticate, header, request.remote or "?")
        except Denied as d:
            self.api.auth_failures.labels(str(d.status)).inc()
            return _error(d.status, "locked_out" if d.status == 429 else "unauthorized", d.reason)
        sid, session = self.sessions.new(principal)
        log.info("console login: %s (%s)", principal.name, principal.role)
        resp = _json({"name": principal.name, "role": principal.role, "csrf": session.csrf})
        resp.set_cookie(
            COOKIE, sid, httponly=True, samesite="Strict", secure=self.secure_cookie, path="/", max_age=12 * 3600
        )
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            self.sessions.drop(sid)
        resp = _json({"logged_out": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def session(self, request: web.Request) -> web.Response:
        p = self._principal(request)
        sid = request.cookies.get(COOKIE)
        s = self.sessions.get(sid) if sid else None
        return _json({"name": p.name, "role": p.role, "via": p.via, "csrf": s.csrf if s else ""})

    # ------------------------------------------------------------------ pages
    async def index(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/console":
            raise web.HTTPFound("/console/")
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ live list
    def active(self) -> list[dict[str, Any]]:
        items = []
        for s in self.api.view.summaries("active"):
            d = s.model_dump(mode="json")
            d["release"] = self.releases.state(s.fingerprint, s.identifier)
            items.append(d)
        return items

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``alerts`` with the whole active list whenever it changes (checked
        every ``stream_poll_s``), a comment every 15 s to keep proxies from closing the stream."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        last, quiet = "", 0.0
        try:
            while True:
                body = json.dumps({"alerts": self.active(), "at": self.clock().isoformat()}, ensure_ascii=False)
                payload = body.split('"at"')[0]
                if payload != last:
                    await resp.write(f"event: alerts\ndata: {body}\n\n".encode())
                    last, quiet = payload, 0.0
                elif quiet >= 15:
                    await resp.write(b": keep-alive\n\n")
                    quiet = 0.0
                await asyncio.sleep(self.stream_poll_s)
                quiet += self.stream_poll_s
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    # ------------------------------------------------------------------ map
    async def map(self, request: web.Request) -> web.Response:
        outline = json.loads(self.outline.read_text(encoding="utf-8")) if self.outline.exists() else None
        active = self.api.view.summaries("active")
        offline: set[str] = set()
        alerting: dict[str, str] = {}
        areas = []
        for s in active:
            detail = self.api.view.detail(s.fingerprint)
            devices = detail.current.devices if detail else []
            if s.fingerprint.endswith(":offline"):
                offline.update(devices)
            else:
                for d in devices:
                    if alerting.get(d) is None or s.level.rank > _rank(alerting[d]):
                        alerting[d] = s.level.value
            areas.append(
                {
                    "fingerprint": s.fingerprint,
                    "level": s.level,
                    "code": s.area.code,
                    "circle": s.area.circle,
                    "polygons": s.area.polygons,
                    "desc": s.area.desc,
                    "devices": devices,
                    "headline": s.headline,
                }
            )
        snapshot = self.devices.snapshot(SNAPSHOT_MAX_AGE_S) if self.devices is not None else []
        health = {r.device_id: r.state.value for r in snapshot}
        devices = []
        for d in getattr(self.registry, "devices", []) or []:
            state = health.get(d.device_id) or ("offline" if d.device_id in offline else "online")
            devices.append(
                {
                    "id": d.device_id,
                    "family": d.family,
                    "site": d.site,
                    "lat": d.lat,
                    "lon": d.lon,
                    "area": d.area.code,
                    "state": state,
                    "alert": alerting.get(d.device_id),
                }
            )
        return _json({"outline": outline, "devices": devices, "areas": areas})

    async def device_health(self, request: web.Request) -> web.Response:
        """Every registered device with its state, since when and why, the groups that need somebody
        first (faulty, offline, stale, unknown, reporting); ``available`` false without a model."""
        if self.devices is None:
            return _json({"available": False, "counts": {h.value: 0 for h in ORDER}, "devices": []})
        rows = self.devices.snapshot(SNAPSHOT_MAX_AGE_S)
        return _json(
            {
                "available": True,
                "at": self.clock().isoformat(),
                "stale_factor": self.devices.stale_factor,
                "fault_window_s": self.devices.fault_window_s,
                "counts": self.devices.counts(rows),
                "devices": [r.as_json() for r in rows],
            }
        )

    async def series(self, request: web.Request) -> web.Response:
        """The last hours of the warning's devices' readings from InfluxDB (``?hours=``, 3 by default,
        at most 24); ``available`` false without InfluxDB (the page then shows the evidence values)."""
        fp = request.match_info["fingerprint"]
        cur = self.api.view.current(fp)
        if cur is None:
            return _error(404, "not_found", f"no alert with fingerprint {fp!r}")
        try:
            hours = min(24.0, max(0.1, float(request.query.get("hours", "3"))))
        except ValueError:
            return _error(422, "validation", "hours is a number")
        if self.read_series is None or not cur.devices:
            return _json({"available": False, "series": []})
        try:
            series = await asyncio.to_thread(self.read_series, cur.hazard.value, list(cur.devices), hours)
        except Exception as e:  # noqa: BLE001 - InfluxDB down: the page falls back to the evidence values
            log.warning("series of %s from InfluxDB failed: %s", fp, e)
            return _json({"available": False, "series": [], "error": str(e)})
        return _json({"available": True, "hours": hours, "series": series})

    # ------------------------------------------------------------------ release and notes
    async def release_events(self, request: web.Request) -> web.Response:
        fp = request.match_info["fingerprint"]
        events = [e.model_dump(mode="json") for e in self.releases.events(fp)]
        cur = self.api.view.current(fp)
        state = self.releases.state(fp, cur.identifier) if cur is not None else "auto"
        return _json({"fingerprint": fp, "state": state, "events": events})

    async def _publish(self, event: ReleaseEvent) -> web.Response:
        if self.publish_release is None:
            return _error(503, "read_only", "release decisions are not configured")
        try:
            await self.publish_release(event)
        except Exception as e:  # noqa: BLE001 - Kafka down: the operator must retry
            log.error("release event of %s not recorded: %s", event.fingerprint, e)
            return _error(503, "not_recorded", f"not recorded: {e}")
        deadline = time.monotonic() + 5.0
        while event not in self.releases.events(event.fingerprint) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        visible = event in self.releases.events(event.fingerprint)
        return _json({"event": event.model_dump(mode="json"), "visible": visible}, status=201 if visible else 202)

    async def _alert_request(self, request: web.Request, model: type[M]) -> tuple[str, Any, M] | web.Response:
        """The current alert of the fingerprint in the path and the validated body (an error answer else)."""
        fp = request.match_info["fingerprint"]
        cur = self.api.view.current(fp)
        if cur is None:
            return _error(404, "not_found", f"no alert with fingerprint {fp!r}")
        try:
            return fp, cur, model.model_validate(await request.json())
        except (ValueError, ValidationError) as e:
            return _error(422, "validation", str(e))

    async def decide(self, request: web.Request) -> web.Response:
        got = await self._alert_request(request, ReleaseRequest)
        if isinstance(got, web.Response):
            return got
        fp, cur, req = got
        if req.decision not in (Action.APPROVE, Action.REJECT):
            return _error(422, "validation", "decision is approve or reject")
        identifier = req.identifier or cur.identifier
        if self.releases.state(fp, identifier) not in ("pending", "escalated"):
            return _error(409, "not_held", f"{identifier} is not waiting for a release decision")
        p = self._principal(request)
        log.info("release %s of %s by %s (%s)", req.decision, identifier, p.name, p.via)
        return await self._publish(self._event(fp, identifier, req.decision, p.name, req.note))

    async def note(self, request: web.Request) -> web.Response:
        got = await self._alert_request(request, NoteRequest)
        if isinstance(got, web.Response):
            return got
        fp, cur, req = got
        name = self._principal(request).name
        return await self._publish(self._event(fp, cur.identifier, Action.NOTE, name, req.note))

    def _event(self, fp: str, identifier: str, action: Action, by: str, note: str) -> ReleaseEvent:
        return ReleaseEvent(fingerprint=fp, identifier=identifier, action=action, by=by, note=note, at=self.clock())

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/console", self.index),
            web.get("/console/", self.index),
            web.static("/console/static", STATIC),
            web.post("/console/login", self.login),
            web.post("/console/logout", self._needs(Role.VIEWER, self.logout)),
            web.get("/console/api/session", self._needs(Role.VIEWER, self.session)),
            web.get("/console/api/stream", self._needs(Role.VIEWER, self.stream)),
            web.get("/console/api/map", self._needs(Role.VIEWER, self.map)),
            web.get("/console/api/devices", self._needs(Role.VIEWER, self.device_health)),
            web.get("/console/api/alerts/{fingerprint}/releases", self._needs(Role.VIEWER, self.release_events)),
            web.get("/console/api/alerts/{fingerprint}/series", self._needs(Role.VIEWER, self.series)),
            web.post("/console/api/alerts/{fingerprint}/release", self._needs(Role.OPERATOR, self.decide)),
            web.post("/console/api/alerts/{fingerprint}/note", self._needs(Role.OPERATOR, self.note)),
        ]


def _rank(level: str) -> int:
    return {"blue": 1, "yellow": 2, "orange": 3, "red": 4}.get(level, 0)


# --------------------------------------------------------------------------- wiring
def setup_console(
    app: web.Application,
    api: Any,
    *,
    releases: ReleaseView | None = None,
    publish_release: ReleasePublisher | None = None,
    registry: Any = None,
    secure_cookie: bool = False,
    read_series: SeriesReader | None = None,
    devices: DeviceHealthModel | None = None,
) -> Console:
    """Add the console to the API's ``app`` (before it starts), over whatever is injected: the
    release events fed into ``releases``, ``publish_release`` (``503`` without it), the device
    ``registry`` for the map (outline and alerts only without it), ``read_series`` (no charts
    without it) and the ``devices`` health model, fed by the runtime (no device states without it;
    ``tocsin_console_devices{state}`` then stays at 0). The Kafka process wires them in
    tocsin/api.py; the embedded mode from its bus (tocsin/console_demo.py)."""
    console = Console(
        api,
        releases if releases is not None else ReleaseView(),
        publish_release,
        registry=registry,
        secure_cookie=secure_cookie,
        read_series=read_series,
        devices=devices,
    )
    api.metrics_registry.register(_DeviceStatesCollector(devices))
    api.public_routes |= PUBLIC_ROUTES
    app.middlewares.insert(app.middlewares.index(api.authenticate), console.session_middleware)
    app.add_routes(console.routes())
    return console


class _DeviceStatesCollector:
    """``tocsin_console_devices{state}``: registered devices per state, computed at each scrape; every
    state is there from the start (0 without a model)."""

    def __init__(self, devices: DeviceHealthModel | None) -> None:
        self.devices = devices

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "tocsin_console_devices",
            "registered devices by console state: reporting, stale, offline, faulty, unknown (never seen yet)",
            labels=["state"],
        )
        counts = self.devices.counts(max_age_s=SNAPSHOT_MAX_AGE_S) if self.devices is not None else {}
        for state in ORDER:
            family.add_metric([state.value], float(counts.get(state.value, 0)))
        yield family


def influx_series_reader(url: str, token: str, org: str, bucket: str, max_points: int = 240) -> SeriesReader:
    """Reads the devices' numeric fields from the gateway's InfluxDB measurements (ingest/influx.py:
    one measurement per family, tag ``device``), averaged into at most ``max_points`` per series."""

    def read(measurement: str, devices: list[str], hours: float) -> list[dict[str, Any]]:
        from influxdb_client import InfluxDBClient

        every_s = max(1, int(hours * 3600 / max_points))
        quoted = " or ".join(f'r.device == "{_flux_str(d)}"' for d in devices[:20])
        skip = " and ".join(f'r._field != "{f}"' for f in sorted(SKIP_FIELDS))
        flux = (
            f'from(bucket: "{_flux_str(bucket)}") |> range(start: -{int(hours * 3600)}s) '
            f'|> filter(fn: (r) => r._measurement == "{_flux_str(measurement)}" and ({quoted})) '
            f"|> filter(fn: (r) => {skip}) "
            f"|> aggregateWindow(every: {every_s}s, fn: mean, createEmpty: false)"
        )
        out: dict[tuple[str, str], list[list[Any]]] = {}
        with InfluxDBClient(url=url, token=token, org=org, timeout=10_000) as client:
            for table in client.query_api().query(flux):
                for rec in table.records:
                    field = str(rec.get_field())
                    if field in SKIP_FIELDS:
                        continue
                    key = (str(rec.values.get("device")), field)
                    out.setdefault(key, []).append([rec.get_time().isoformat(), float(rec.get_value())])
        return [{"device": d, "field": f, "points": pts[-max_points:]} for (d, f), pts in sorted(out.items())]

    return read


def _flux_str(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
