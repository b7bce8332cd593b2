"""The operators' HTTP API: alerts with their history, deliveries and acks; silences; the audit trail.

Run it with ``python -m tocsin.api --host 127.0.0.1 --port 8790`` (Kafka from ``TOCSIN_KAFKA_BOOTSTRAP``; the
process and its Kafka wiring are in tocsin/api.py).

The API is a read model over Kafka. :class:`AlertView` is built by reading ``alerts``,
``alerts.deliveries`` and ``alerts.acks`` from the beginning and then following them (one
:class:`~tocsin.kafka.TopicFollower` thread, no consumer group): for every fingerprint the
messages in the order they were produced (the key is the fingerprint, so one partition keeps
them in order; the last one is the current message), every delivery record and every ack.
Writes go to Kafka, never to the view: an ack is produced to ``alerts.acks`` and a silence to
the compacted ``alerts.silences`` (alerts/silence_store.py), and the POST returns once the record
has come back through the consumer (at most ``visible_timeout_s``, then ``202``), so a following
GET sees it.

Acks are per message: ``acknowledged`` is true when the *current* message of the fingerprint has
been acknowledged, so an Update after an ack (say, an escalation to red) needs a new ack.

Memory is bounded. Active alerts (current message not a Cancel) are always kept, whatever their
age. Ended incidents (current message a Cancel, and records whose alert message has not been seen,
such as deliveries that overtook their alert) are evicted with their history, deliveries and acks,
oldest first (by the time of their latest record, then arrival): every one whose latest record is
older than ``retention`` (``TOCSIN_API_RETENTION_DAYS``, 7 days) before the newest alert message
seen, and beyond ``max_ended`` of them (``TOCSIN_API_MAX_ENDED``, 10000) the oldest. Retention
counts in alert time (the ``sent`` of the newest message), not wall-clock time, so a restarted API
replaying the topics keeps the same incidents. The list, detail, CAP, ack and audit endpoints only
know what is kept: ``/audit`` of an evicted fingerprint is empty (Kafka keeps the records for its
own retention). The identifiers of evicted incidents are remembered (``max_ended`` fingerprints at
least) so a late delivery, ack or duplicate message of one does not bring it back.

Authentication (alerts/auth.py, docs/security.md): every route except ``/healthz``, ``/readyz`` and
``/metrics`` needs HTTP Basic or a Bearer API token (``401`` without, ``429`` after repeated
failures) and a role: ``viewer`` reads, ``operator`` acknowledges and silences one device or site,
``supervisor`` silences wider (an area, a district, a hazard) and sees the users (``403`` otherwise).
The identity in an ack (``by``) and a silence (``creator``) is the credential's user: a body that
names somebody else is refused (``403 identity_mismatch``), one that names nobody gets the user.
Every silence has a reason and ends within ``TOCSIN_API_SILENCE_MAX_HOURS`` (24) of its start.

JSON responses are UTF-8 with Chinese unescaped. Errors are ``{"error": ..., "detail": ...}``
(``422`` with pydantic's message and its ``errors`` list for invalid input).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from tocsin.alerts.auth import Authenticator, Denied, Principal, Role
from tocsin.alerts.cap import render_cap
from tocsin.alerts.silence_store import has_ended
from tocsin.alerts.silences import Silence
from tocsin.alerts.view import AlertView
from tocsin.schemas.ack import Ack
from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family

log = logging.getLogger(__name__)


CapRenderer = Callable[..., bytes]

DEFAULT_SILENCE_MAX = timedelta(hours=24)
PUBLIC_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
PRINCIPAL = web.RequestKey("principal", Principal)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- models at the edges
class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str | None = Field(
        default=None, min_length=1, max_length=100, description="must be the caller's own name; default: it"
    )
    note: str = Field(default="", max_length=1000)
    identifier: str | None = Field(default=None, description="message seen by the operator; default: the current")


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: Literal["active", "all"] = "active"
    hazard: Family | None = None
    area: str | None = Field(default=None, pattern=r"^[0-9]{1,12}$", description="admin-code prefix")


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fingerprint: str | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


# --------------------------------------------------------------------------- injected dependencies
AckPublisher = Callable[[Ack], Awaitable[object]]


class SilenceSource(Protocol):
    """What the API reads from the silences (tocsin.alerts.silence_store.SilenceStore is one)."""

    @property
    def caught_up(self) -> bool: ...

    def get(self, silence_id: str) -> Silence | None: ...

    def silences(self) -> list[Silence]: ...

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool: ...


class SilenceWriter(Protocol):
    async def publish(self, silence: Silence) -> object: ...

    async def delete(self, silence_id: str) -> object: ...


# --------------------------------------------------------------------------- HTTP
_dumps = functools.partial(json.dumps, ensure_ascii=False)
Q = TypeVar("Q", bound=BaseModel)


def _listing(key: str, items: Sequence[BaseModel]) -> web.Response:
    """``{"count": n, key: [...]}``: a list answer of the API."""
    return _json({"count": len(items), key: [x.model_dump(mode="json") for x in items]})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _error(status: int, error: str, detail: str = "", **extra: Any) -> web.Response:
    return _json({"error": error, "detail": detail, **extra}, status=status)


def _unauthorized(reason: str) -> web.Response:
    resp = _error(401, "unauthorized", reason)
    resp.headers["WWW-Authenticate"] = 'Basic realm="tocsin", charset="UTF-8"'
    return resp


def _invalid(e: ValidationError) -> web.Response:
    return _error(422, "validation", str(e), errors=json.loads(e.json(include_url=False)))


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return _error(400, "bad_json", str(e))
    if not isinstance(body, dict):
        return _error(400, "bad_json", "the body must be a JSON object")
    return body


def _query(request: web.Request) -> dict[str, str]:
    # '+' of an unencoded offset (``since=...T10:00:00+08:00``) arrives as a space: put it back.
    return {k: (v.replace(" ", "+") if k in ("since", "until") else v) for k, v in request.query.items() if v != ""}


def _parsed_query(request: web.Request, model: type[Q]) -> Q | web.Response:
    """The query string validated by ``model``, or the ``422`` answer naming what is wrong."""
    try:
        return model.model_validate(_query(request))
    except ValidationError as e:
        return _invalid(e)


class _EvictedCollector:
    """``tocsin_api_evicted_total``: ended incidents the read model dropped (retention, size cap)."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "tocsin_api_evicted_total",
            "ended incidents evicted from the operator API's read model (retention days, size cap)",
            value=float(self.view.evicted),
        )


# --------------------------------------------------------------------------- the silence policy
@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    detail: str


def silence_span(silence: Silence) -> timedelta | None:
    """How long a silence can mute: ``ends_at - starts_at``, or for a recurring one ``until -
    starts_at`` (None: a recurring silence without ``until`` never ends)."""
    if silence.recurrence == "none":
        return silence.ends_at - silence.starts_at
    return None if silence.until is None else silence.until - silence.starts_at


def needs_supervisor(silence: Silence) -> bool:
    """Wider than one device or one site: an area (down to a village, up to the whole district) or a
    hazard everywhere. Such a silence mutes every device's alerts there, the public warnings at orange
    and above included, so it takes a supervisor; an operator may silence a device or a site (a sensor
    under maintenance, a false-alarming camera)."""
    return silence.device is None and silence.site is None


def silence_policy(silence: Silence, role: Role, max_span: timedelta = DEFAULT_SILENCE_MAX) -> Refusal | None:
    """Why ``role`` may not create ``silence`` (None: it may). Checked again on replace."""
    span = silence_span(silence)
    hours = max_span.total_seconds() / 3600
    if span is None:
        return Refusal(422, "too_long", "a recurring silence needs an `until` (it would never end)")
    if span > max_span:
        return Refusal(
            422, "too_long", f"a silence may last at most {hours:g} h (TOCSIN_API_SILENCE_MAX_HOURS); this one {span}"
        )
    if needs_supervisor(silence) and not role.allows(Role.SUPERVISOR):
        scope = f"area {silence.area}" if silence.area else f"hazard {silence.hazard} everywhere"
        return Refusal(
            403,
            "supervisor_required",
            f"a silence of {scope} mutes public warnings (orange and above included) for a whole area: "
            "only a supervisor may create it; an operator may silence one device or one site",
        )
    return None


class OperatorApi:
    """The handlers; every dependency is injected (see :func:`build_app`)."""

    def __init__(
        self,
        view: AlertView,
        *,
        silence_store: SilenceSource | None,
        silence_writer: SilenceWriter | None,
        ack_publisher: AckPublisher | None,
        load_cap: Callable[[], CapRenderer | None],
        clock: Callable[[], datetime],
        visible_timeout_s: float,
        metrics_registry: CollectorRegistry | None = None,
        auth: Authenticator | None = None,
        silence_max: timedelta = DEFAULT_SILENCE_MAX,
    ) -> None:
        self.view, self.store, self.writer, self.publish_ack = view, silence_store, silence_writer, ack_publisher
        self.auth, self.silence_max = auth, silence_max
        self.public_routes = set(PUBLIC_ROUTES)  # the console (alerts/console) adds its login page
        self.principal_key = PRINCIPAL  # ... and sets it from a session (this module may be __main__)
        self._verifying = asyncio.Semaphore(2)  # scrypt runs at most twice at once (CPU is the cost)
        self.load_cap, self.clock, self.visible_timeout_s = load_cap, clock, visible_timeout_s
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self.requests = Counter(
            "tocsin_api_requests_total",
            "operator API requests by route and status",
            ["method", "route", "status"],
            registry=self.metrics_registry,
        )
        fingerprints = Gauge(
            "tocsin_api_fingerprints", "alert fingerprints in the read model", registry=self.metrics_registry
        )
        fingerprints.set_function(lambda: float(len(self.view)))
        ready = Gauge(
            "tocsin_api_ready", "1 when the read model caught up with Kafka (readiness)", registry=self.metrics_registry
        )
        ready.set_function(lambda: 1.0 if self._ready() else 0.0)
        self.metrics_registry.register(_EvictedCollector(view))
        self.auth_failures = Counter(
            "tocsin_api_auth_failures_total",
            "operator API requests refused: 401 no or bad credential, 403 role or identity, 429 locked out",
            ["status"],
            registry=self.metrics_registry,
        )
        for status in ("401", "403", "429"):
            self.auth_failures.labels(status)  # every series exists from the start (at 0)

    @web.middleware
    async def authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every route but the probes needs a valid credential (401/429 otherwise)."""
        route = request.match_info.route.resource
        if route is None or route.canonical in self.public_routes or request.get(PRINCIPAL) is not None:
            return await handler(request)  # a probe, the console's login page, or a console session
        if self.auth is None:
            self.auth_failures.labels("401").inc()
            return _unauthorized("no users configured (TOCSIN_API_USERS_FILE)")
        auth = self.auth
        header, client = request.headers.get("Authorization"), request.remote or "?"
        try:
            async with self._verifying:
                principal = await asyncio.to_thread(auth.authenticate, header, client)
        except Denied as d:
            self.auth_failures.labels(str(d.status)).inc()
            if d.status == 429:
                resp = _error(429, "locked_out", d.reason)
                resp.headers["Retry-After"] = str(max(1, int(d.retry_after_s + 0.999)))
                return resp
            return _unauthorized(d.reason)
        request[PRINCIPAL] = principal
        return await handler(request)

    def _role(self, request: web.Request, needed: Role) -> web.Response | None:
        """403 unless the caller's role includes ``needed``."""
        principal = request[PRINCIPAL]
        if principal.role.allows(needed):
            return None
        self.auth_failures.labels("403").inc()
        return _error(403, "forbidden", f"{principal.name} is {principal.role}; this needs {needed}")

    def _identity(self, request: web.Request, named: str | None, field_name: str) -> web.Response | None:
        """403 when the body names someone other than the caller."""
        principal = request[PRINCIPAL]
        if named is None or named == principal.name:
            return None
        self.auth_failures.labels("403").inc()
        log.warning("%s (%s) sent %s=%r: refused", principal.name, principal.via, field_name, named)
        return _error(403, "identity_mismatch", f"`{field_name}` must be your own name ({principal.name!r}) or absent")

    @web.middleware
    async def count_requests(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.requests.labels(request.method, name, str(exc.status)).inc()
            raise
        self.requests.labels(request.method, name, str(response.status)).inc()
        return response

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
            web.get("/alerts", self._needs(Role.VIEWER, self.list_alerts)),
            web.get("/alerts/{fingerprint}", self._needs(Role.VIEWER, self.show_alert)),
            web.get("/alerts/{fingerprint}/cap", self._needs(Role.VIEWER, self.show_cap)),
            web.post("/alerts/{fingerprint}/ack", self._needs(Role.OPERATOR, self.ack)),
            web.get("/silences", self._needs(Role.VIEWER, self.list_silences)),
            web.post("/silences", self._needs(Role.OPERATOR, self.create_silence)),
            web.delete("/silences/{id}", self._needs(Role.OPERATOR, self.delete_silence)),
            web.get("/audit", self._needs(Role.VIEWER, self.audit)),
            web.get("/whoami", self._needs(Role.VIEWER, self.whoami)),
            web.get("/users", self._needs(Role.SUPERVISOR, self.users)),
        ]

    def _needs(
        self, role: Role, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.Response:
            if (refused := self._role(request, role)) is not None:
                return refused
            return await handler(request)

        return guarded

    async def whoami(self, request: web.Request) -> web.Response:
        return _json(request[PRINCIPAL].model_dump(mode="json"))

    async def users(self, request: web.Request) -> web.Response:
        """The users and their tokens' ids (never a hash); change them with ``tocsin users``."""
        assert self.auth is not None
        store = self.auth.store
        users = [
            {
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "tokens": [t.id for t in store.tokens if t.user == u.name],
            }
            for u in store.users
        ]
        return _json({"count": len(users), "users": users})

    def _ready(self) -> bool:
        return self.view.caught_up and (self.store is None or self.store.caught_up)

    async def healthz(self, request: web.Request) -> web.Response:
        """Historic: answers like ``/readyz`` (503 until caught up); probes should use ``/readyz``."""
        return await self.readyz(request)

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready when the read model caught up with ``alerts``, deliveries, acks and silences."""
        silences_ok = self.store is None or self.store.caught_up
        ready = self.view.caught_up and silences_ok
        body = {
            "status": "ok" if ready else "starting",
            "alerts_caught_up": self.view.caught_up,
            "silences_caught_up": silences_ok,
            "fingerprints": len(self.view),
        }
        return _json(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def list_alerts(self, request: web.Request) -> web.Response:
        q = _parsed_query(request, ListQuery)
        if isinstance(q, web.Response):
            return q
        return _listing("alerts", self.view.summaries(q.state, q.hazard, q.area))

    def _render_cap(self, alert: Alert, history: list[Alert]) -> tuple[str | None, str | None]:
        """(xml, error); (None, None) when there is no CAP renderer."""
        render = self.load_cap()
        if render is None:
            return None, None
        try:
            xml = render(alert, reference_sent={m.identifier: m.sent for m in history})
        except (ValueError, TypeError) as e:
            log.warning("CAP rendering of %s failed: %s", alert.identifier, e)
            return None, str(e)
        return xml.decode("utf-8"), None

    async def show_alert(self, request: web.Request) -> web.Response:
        fp = request.match_info["fingerprint"]
        detail = self.view.detail(fp)
        if detail is None:
            return _error(404, "not_found", f"no alert with fingerprint {fp!r}")
        body = detail.model_dump(mode="json")
        if self.load_cap() is not None:
            xml, err = self._render_cap(detail.current, detail.history)
            body["cap"] = xml
            if err is not None:
                body["cap_error"] = err
        return _json(body)

    async def show_cap(self, request: web.Request) -> web.Response:
        """CAP 1.2 XML of the current message, or of ``?identifier=`` among the fingerprint's messages."""
        fp = request.match_info["fingerprint"]
        detail = self.view.detail(fp)
        if detail is None:
            return _error(404, "not_found", f"no alert with fingerprint {fp!r}")
        if self.load_cap() is None:
            return _error(501, "no_cap", "CAP rendering (tocsin.alerts.cap) is not available")
        wanted = request.query.get("identifier")
        alert = next((m for m in detail.history if m.identifier == wanted), None) if wanted else detail.current
        if alert is None:
            return _error(404, "not_found", f"no message {wanted!r} for fingerprint {fp!r}")
        xml, err = self._render_cap(alert, detail.history)
        if xml is None:
            return _error(500, "cap_failed", err or "")
        return web.Response(text=xml, content_type="application/cap+xml", charset="utf-8")

    async def ack(self, request: web.Request) -> web.Response:
        fp = request.match_info["fingerprint"]
        detail = self.view.detail(fp)
        if detail is None:
            return _error(404, "not_found", f"no alert with fingerprint {fp!r}")
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        try:
            req = AckRequest.model_validate(body)
        except ValidationError as e:
            return _invalid(e)
        if (refused := self._identity(request, req.by, "by")) is not None:
            return refused
        identifier = req.identifier or detail.identifier
        if identifier not in {m.identifier for m in detail.history}:
            return _error(422, "validation", f"{identifier!r} is not a message of fingerprint {fp!r}")
        if self.publish_ack is None:
            return _error(503, "read_only", "acks are not configured")
        by = request[PRINCIPAL].name
        ack = Ack(fingerprint=fp, identifier=identifier, by=by, note=req.note, at=self.clock())
        try:
            await self.publish_ack(ack)
        except Exception as e:  # noqa: BLE001 - Kafka down or timed out: the operator must retry
            log.error("ack of %s not recorded: %s", fp, e)
            return _error(503, "not_recorded", f"the ack could not be recorded: {e}")
        visible = await asyncio.to_thread(self.view.wait_for, lambda: self.view.has_ack(ack), self.visible_timeout_s)
        return _json({"ack": ack.model_dump(mode="json"), "visible": visible}, status=201 if visible else 202)

    # ------------------------------------------------------------------ silences
    def _silences_ready(self) -> web.Response | None:
        if self.store is None or self.writer is None:
            return _error(503, "no_silences", "silences are not configured")
        return None

    def _silence_json(self, s: Silence, now: datetime) -> dict[str, Any]:
        return {**s.model_dump(mode="json"), "active_now": s.active_at(now)}

    async def list_silences(self, request: web.Request) -> web.Response:
        if (err := self._silences_ready()) is not None:
            return err
        assert self.store is not None
        now = self.clock()
        items = [self._silence_json(s, now) for s in self.store.silences()]
        return _json({"count": len(items), "silences": items})

    async def create_silence(self, request: web.Request) -> web.Response:
        """Create (or, with the id of an existing one, replace) a silence; the id is generated if absent."""
        if (err := self._silences_ready()) is not None:
            return err
        assert self.store is not None and self.writer is not None
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        principal = request[PRINCIPAL]
        creator = body.get("creator")
        if (refused := self._identity(request, creator if isinstance(creator, str) else None, "creator")) is not None:
            return refused
        body["creator"] = principal.name
        if not body.get("id"):
            body["id"] = f"sil-{uuid.uuid4().hex[:12]}"
        try:
            silence = Silence.model_validate(body)
        except ValidationError as e:
            return _invalid(e)
        now = self.clock()
        if has_ended(silence, now):
            return _error(422, "validation", "the silence has already ended")
        if (refusal := silence_policy(silence, principal.role, self.silence_max)) is not None:
            if refusal.status == 403:
                self.auth_failures.labels("403").inc()
            log.warning("silence %s by %s refused: %s", silence.id, principal.name, refusal.detail)
            return _error(refusal.status, refusal.error, refusal.detail)
        old = self.store.get(silence.id)
        if old is not None and needs_supervisor(old) and not principal.role.allows(Role.SUPERVISOR):
            self.auth_failures.labels("403").inc()
            return _error(
                403, "supervisor_required", f"silence {silence.id} is a supervisor's: only one may replace it"
            )
        existed = old is not None
        try:
            await self.writer.publish(silence)
        except Exception as e:  # noqa: BLE001
            log.error("silence %s not recorded: %s", silence.id, e)
            return _error(503, "not_recorded", f"the silence could not be recorded: {e}")
        store = self.store
        visible = await asyncio.to_thread(
            store.wait_for, lambda: store.get(silence.id) == silence, self.visible_timeout_s
        )
        status = (200 if existed else 201) if visible else 202
        log.info(
            "silence %s %s by %s (%s): %s",
            silence.id,
            "replaced" if existed else "created",
            principal.name,
            principal.via,
            silence.reason,
        )
        return _json({**self._silence_json(silence, now), "visible": visible}, status=status)

    async def delete_silence(self, request: web.Request) -> web.Response:
        if (err := self._silences_ready()) is not None:
            return err
        assert self.store is not None and self.writer is not None
        sid = request.match_info["id"]
        if self.store.get(sid) is None:
            return _error(404, "not_found", f"no silence {sid!r}")
        try:
            await self.writer.delete(sid)
        except Exception as e:  # noqa: BLE001
            log.error("deletion of silence %s not recorded: %s", sid, e)
            return _error(503, "not_recorded", f"the deletion could not be recorded: {e}")
        store = self.store
        gone = await asyncio.to_thread(store.wait_for, lambda: store.get(sid) is None, self.visible_timeout_s)
        principal = request[PRINCIPAL]
        log.info("silence %s lifted by %s (%s)", sid, principal.name, principal.via)
        return _json({"id": sid, "deleted": True, "visible": gone}, status=200 if gone else 202)

    # ------------------------------------------------------------------ audit
    async def audit(self, request: web.Request) -> web.Response:
        q = _parsed_query(request, AuditQuery)
        if isinstance(q, web.Response):
            return q
        return _listing("events", self.view.audit(q.fingerprint, q.since, q.until))


def build_app(
    view: AlertView,
    *,
    silence_store: SilenceSource | None = None,
    silence_writer: SilenceWriter | None = None,
    ack_publisher: AckPublisher | None = None,
    load_cap: Callable[[], CapRenderer | None] = lambda: render_cap,
    clock: Callable[[], datetime] = _utcnow,
    visible_timeout_s: float = 5.0,
    metrics_registry: CollectorRegistry | None = None,
    auth: Authenticator | None = None,
    silence_max: timedelta = DEFAULT_SILENCE_MAX,
    console: dict[str, Any] | None = None,
) -> web.Application:
    """The aiohttp application over ``view``; with ``console`` (keyword arguments of
    :func:`tocsin.alerts.console.setup_console`, ``{}`` for the defaults) the web console too.

    Only what is injected works: the Kafka wiring (a follower feeding ``view`` from ``alerts``,
    ``alerts.deliveries`` and ``alerts.acks``, the silence store, the producer of acks and silences,
    the console's release events) is made by the runtime (tocsin/api.py); tests feed ``view``
    directly. Missing writers answer ``503``. Without ``auth`` every route but the probes answers ``401``.
    """
    app = web.Application()
    api = OperatorApi(
        view,
        silence_store=silence_store,
        silence_writer=silence_writer,
        ack_publisher=ack_publisher,
        load_cap=load_cap,
        clock=clock,
        visible_timeout_s=visible_timeout_s,
        metrics_registry=metrics_registry,
        auth=auth,
        silence_max=silence_max,
    )
    app.middlewares.append(api.count_requests)
    app.middlewares.append(api.authenticate)
    app.add_routes(api.routes())
    if console is not None:
        from tocsin.alerts.console import setup_console

        setup_console(app, api, **console)
    return app
