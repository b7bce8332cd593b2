"""The release gate: which alert messages reach the public at once and which wait for a person.

Configured per hazard and level in the routing file (alerts/routing.py, key ``release``)::

    release:
      t1_s: 180          # unapproved after T1: the duty supervisor gets an SMS
      t2_s: 480          # unapproved after T2: ``on_t2`` decides
      on_t2: release     # release (default) or hold
      supervisors: ["+8613800000000"]
      rules:
        - {hazards: [hydro, gas], levels: [blue, yellow, orange], mode: approve}

``auto`` releases a message at once; ``approve`` sends it at once to the operators' channels (the
MQTT operator topic and every route whose audience is not ``public``) while the public routes (SMS to
residents, broadcast) wait for an operator's approval. The first matching rule decides; without one,
``default`` (``auto``). Whatever the file says, a red warning, an earthquake (seismic) warning and a
Cancel are ``auto``: :func:`mode_for` enforces it in code, like the silences (alerts/silences.py).

Escalation. A held message unapproved ``t1_s`` after it was first held notifies the supervisors by
SMS; after ``t2_s`` it is released (``on_t2: release``, the default) or kept waiting for a decision
(``hold``). ``t2_s`` is at most 600 s, the national 10-minute mark for public release. An Update of
a held incident takes over the first message's clock (a stream of revisions cannot postpone the
release), and a revision that must go out at once (red) releases the incident.

Decisions travel through Kafka (``alerts.releases``, key = fingerprint, :class:`ReleaseEvent`):
operators' approvals, rejections and notes from the console, and the gate's own events (held,
escalated, released on timeout). The worker that delivers applies the decisions.

:class:`ReleaseGate` is the state machine, pure (an injected ``now`` on every call, no I/O).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import AwareDatetime, Field, model_validator

from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel, WireModel

log = logging.getLogger(__name__)

RELEASES = topics.RELEASES
NATIONAL_MARK_S = 600.0  # the national system reaches the public within 10 minutes

Mode = Literal["auto", "approve"]


class ReleaseRule(WireModel):
    hazards: list[Family] | None = Field(default=None, description="None: every hazard")
    levels: list[WarningLevel] | None = Field(default=None, description="None: every level")
    mode: Mode


class ReleaseConfig(WireModel):
    rules: list[ReleaseRule] = Field(default_factory=list)
    default: Mode = "auto"
    t1_s: float = Field(default=180.0, gt=0, description="escalate to the supervisors after this")
    t2_s: float = Field(default=480.0, gt=0, le=NATIONAL_MARK_S, description="then on_t2 decides")
    on_t2: Literal["release", "hold"] = "release"
    supervisors: list[str] = Field(default_factory=list, description="E.164 numbers told at T1")

    @model_validator(mode="after")
    def _order(self) -> ReleaseConfig:
        if self.t1_s >= self.t2_s:
            raise ValueError(f"release.t1_s ({self.t1_s}) must be below release.t2_s ({self.t2_s})")
        return self


def enforced_auto(alert: Alert) -> bool:
    """Never held, whatever the configuration: red, earthquake, the all-clear, exercises and tests
    (they never reach public routes anyway)."""
    return (
        alert.level is WarningLevel.RED
        or alert.hazard is Family.SEISMIC
        or alert.msg_type is MsgType.CANCEL
        or alert.status is not AlertStatus.ACTUAL
    )


def mode_for(alert: Alert, config: ReleaseConfig) -> Mode:
    if enforced_auto(alert):
        return "auto"
    for rule in config.rules:
        if (rule.hazards is None or alert.hazard in rule.hazards) and (
            rule.levels is None or alert.level in rule.levels
        ):
            return rule.mode
    return config.default


class Action(StrEnum):
    """What happened to a held message (also the ``action`` of :class:`ReleaseEvent`)."""

    AUTO = "auto"  # gate: released at once (not recorded on the topic)
    HELD = "held"  # gate: public channels wait
    APPROVE = "approve"  # operator
    REJECT = "reject"  # operator
    NOTE = "note"  # operator: a note on the incident, no effect on the gate
    ESCALATED = "escalated"  # gate: T1 passed, supervisors told
    TIMED_RELEASE = "timed_release"  # gate: T2 passed, released without approval
    TIMED_HOLD = "timed_hold"  # gate: T2 passed, kept waiting (on_t2: hold)
    SUPERSEDED = "superseded"  # gate: a newer revision of the incident took over
    FORCED = "forced"  # gate: a newer revision must go out at once (red): released


class ReleaseEvent(WireModel):
    """One event of the release workflow or an operator's note (Kafka ``alerts.releases``)."""

    fingerprint: str = Field(min_length=1)
    identifier: str = Field(min_length=1, description="the alert message concerned")
    action: Action
    by: str = Field(min_length=1, max_length=100, description="user name, or 'tocsin' for the gate")
    note: str = Field(default="", max_length=1000)
    at: AwareDatetime
    alert: Alert | None = Field(default=None, description="HELD: the message held (a restarted worker restores it)")


RELEASING = frozenset({Action.AUTO, Action.APPROVE, Action.TIMED_RELEASE, Action.FORCED})
"""How a message may have left the gate towards the public."""


@dataclass
class Pending:
    alert: Alert
    since: datetime  # when the incident was first held (kept across revisions)
    escalated: bool = False
    holding: bool = False  # T2 passed under on_t2 = hold: waits for a decision, no more timers


@dataclass(frozen=True)
class Step:
    """An outcome the caller must carry out: deliver ``alert`` to the public (``release``), tell the
    supervisors (``escalate``), or only record it."""

    action: Action
    alert: Alert
    release: bool = False
    waited_s: float = 0.0


@dataclass
class ReleaseGate:
    """Held messages by fingerprint (one per incident: the newest revision). Not thread-safe: call it
    from one event loop."""

    config: ReleaseConfig = field(default_factory=ReleaseConfig)
    pending: dict[str, Pending] = field(default_factory=dict)
    finished: dict[str, Action] = field(default_factory=dict)  # identifier -> how it left the gate
    max_finished: int = 10_000

    def admit(self, alert: Alert, now: datetime) -> list[Step]:
        """A new message. Returns its steps: ``release`` for one sent to the public now, ``HELD``
        (``release`` False) for one that waits. A newer revision supersedes the held one."""
        held = self.pending.get(alert.fingerprint)
        if held is not None and held.alert.identifier == alert.identifier:
            return []  # a redelivery of the message held: still held
        if (how := self.finished.get(alert.identifier)) is not None:  # a redelivery: as decided before
            return [Step(Action.AUTO, alert, release=how in RELEASING)]
        steps: list[Step] = []
        old = self.pending.pop(alert.fingerprint, None)
        if mode_for(alert, self.config) == "auto":
            if old is not None:
                self._finish(old.alert, Action.SUPERSEDED)
                steps.append(Step(Action.SUPERSEDED, old.alert))
                self._finish(alert, Action.FORCED)
                steps.append(Step(Action.FORCED, alert, release=True, waited_s=_secs(now - old.since)))
                return steps
            return [Step(Action.AUTO, alert, release=True)]
        if old is not None:
            self._finish(old.alert, Action.SUPERSEDED)
            steps.append(Step(Action.SUPERSEDED, old.alert))
            self.pending[alert.fingerprint] = Pending(alert, old.since, old.escalated, old.holding)
        else:
            self.pending[alert.fingerprint] = Pending(alert, now)
        steps.append(Step(Action.HELD, alert))
        return steps

    def decide(self, fingerprint: str, identifier: str, action: Action, now: datetime) -> Step | None:
        """An operator's approval or rejection of a held message (None: not held, nothing to do;
        a decision on a superseded revision applies to the incident's newest one)."""
        if action not in (Action.APPROVE, Action.REJECT):
            return None
        p = self.pending.get(fingerprint)
        if p is None:
            return None
        if p.alert.identifier != identifier and self.finished.get(identifier) is not Action.SUPERSEDED:
            return None
        del self.pending[fingerprint]
        self._finish(p.alert, action)
        return Step(action, p.alert, release=action is Action.APPROVE, waited_s=_secs(now - p.since))

    def tick(self, now: datetime) -> list[Step]:
        """Timers: escalation after ``t1_s``, ``on_t2`` after ``t2_s`` (both from first held)."""
        steps: list[Step] = []
        t1, t2 = timedelta(seconds=self.config.t1_s), timedelta(seconds=self.config.t2_s)
        for fp, p in list(self.pending.items()):
            if p.holding:
                continue
            waited = now - p.since
            if not p.escalated and waited >= t1:
                p.escalated = True
                steps.append(Step(Action.ESCALATED, p.alert, waited_s=_secs(waited)))
            if waited >= t2:
                if self.config.on_t2 == "release":
                    del self.pending[fp]
                    self._finish(p.alert, Action.TIMED_RELEASE)
                    steps.append(Step(Action.TIMED_RELEASE, p.alert, release=True, waited_s=_secs(waited)))
                else:
                    p.holding = True
                    steps.append(Step(Action.TIMED_HOLD, p.alert, waited_s=_secs(waited)))
        return steps

    def restore(self, events: list[ReleaseEvent]) -> int:
        """Rebuild the held messages from ``alerts.releases`` (a restarted worker reads the last
        ``t2_s`` and more): a HELD event with its alert is held again from its original time, later
        events finish or mark it. Returns how many are held."""
        for e in sorted(events, key=lambda e: e.at):
            p = self.pending.get(e.fingerprint)
            if e.action is Action.HELD and e.alert is not None:
                if e.identifier in self.finished or (p is not None and p.alert.identifier == e.identifier):
                    continue
                since = p.since if p is not None else e.at  # a newer revision keeps the incident's clock
                self.pending[e.fingerprint] = Pending(e.alert, since, p.escalated if p else False)
            elif p is None:
                continue
            elif e.action in (Action.APPROVE, Action.REJECT):
                del self.pending[e.fingerprint]
                self._finish(p.alert, e.action)
            elif e.action in (Action.TIMED_RELEASE, Action.FORCED) and e.identifier == p.alert.identifier:
                del self.pending[e.fingerprint]
                self._finish(p.alert, e.action)
            elif e.action is Action.ESCALATED:
                p.escalated = True
            elif e.action is Action.TIMED_HOLD:
                p.holding = True
        return len(self.pending)

    def oldest_wait_s(self, now: datetime) -> float:
        return max((_secs(now - p.since) for p in self.pending.values()), default=0.0)

    def _finish(self, alert: Alert, how: Action) -> None:
        self.finished[alert.identifier] = how
        while len(self.finished) > self.max_finished:
            self.finished.pop(next(iter(self.finished)))


def _secs(d: timedelta) -> float:
    return max(0.0, d.total_seconds())


class ReleaseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "tocsin_release_decisions_total",
            "held alert messages leaving the release gate, by how (approve, reject, timed_release, superseded, forced)",
            ["decision"],
            registry=registry,
        )
        for d in (Action.APPROVE, Action.REJECT, Action.TIMED_RELEASE, Action.SUPERSEDED, Action.FORCED):
            self.decisions.labels(d.value)
        self.held = Counter("tocsin_release_held_total", "alert messages held for approval", registry=registry)
        self.escalations = Counter(
            "tocsin_release_escalations_total", "held messages escalated to the supervisors (T1)", registry=registry
        )
        self.time_to_decision = Histogram(
            "tocsin_release_decision_seconds",
            "first held to an operator's decision or the T2 release",
            ["decision"],
            buckets=(5, 15, 30, 60, 120, 180, 300, 480, 600, 900),
            registry=registry,
        )
        self.pending = Gauge("tocsin_release_pending", "alert messages waiting for approval", registry=registry)
        self.oldest = Gauge(
            "tocsin_release_pending_oldest_seconds", "wait of the oldest held message", registry=registry
        )

    def observe(self, steps: list[Step]) -> None:
        for s in steps:
            if s.action is Action.HELD:
                self.held.inc()
            elif s.action is Action.ESCALATED:
                self.escalations.inc()
            elif s.action in (Action.APPROVE, Action.REJECT, Action.TIMED_RELEASE, Action.SUPERSEDED, Action.FORCED):
                self.decisions.labels(s.action.value).inc()
                if s.action is not Action.SUPERSEDED:
                    self.time_to_decision.labels(s.action.value).observe(s.waited_s)

    def update(self, gate: ReleaseGate, now: datetime) -> None:
        self.pending.set(len(gate.pending))
        self.oldest.set(gate.oldest_wait_s(now))


# --------------------------------------------------------------------------- wiring
class _Notifier(Protocol):
    async def deliver(self, alert: Alert, *, hold_public: bool = False, only_public: bool = False) -> list[Any]: ...

    async def send(self, n: Any) -> Any: ...


class ReleaseDesk:
    """The gate in the alert path: what the worker (and the embedded mode) call instead of
    ``Notifier.deliver``. ``record`` publishes a :class:`ReleaseEvent` (to ``alerts.releases``)."""

    def __init__(
        self,
        gate: ReleaseGate,
        notifier: _Notifier,
        record: Callable[[ReleaseEvent], Awaitable[object]],
        metrics: ReleaseMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.gate, self.notifier, self.record, self.metrics, self.clock = gate, notifier, record, metrics, clock

    async def deliver(self, alert: Alert) -> list[Any]:
        now = self.clock()
        steps = self.gate.admit(alert, now)
        release_now = any(s.release and s.alert.identifier == alert.identifier for s in steps)
        records = await self.notifier.deliver(alert, hold_public=not release_now)
        await self._after(steps, now, skip_release_of=alert.identifier)
        return records

    async def apply(self, event: ReleaseEvent) -> list[Any]:
        """An operator's decision from ``alerts.releases`` (other events are ignored)."""
        now = self.clock()
        step = self.gate.decide(event.fingerprint, event.identifier, event.action, now)
        if step is None:
            return []
        log.info("release of %s: %s by %s after %.0f s", step.alert.identifier, step.action, event.by, step.waited_s)
        return await self._after([step], now, by=event.by)

    async def tick(self) -> list[Any]:
        now = self.clock()
        return await self._after(self.gate.tick(now), now)

    async def _after(
        self, steps: list[Step], now: datetime, *, by: str = "tocsin", skip_release_of: str = ""
    ) -> list[Any]:
        self.metrics.observe(steps)
        self.metrics.update(self.gate, now)
        records: list[Any] = []
        for s in steps:
            if s.action is Action.AUTO:
                continue
            if s.action not in (Action.APPROVE, Action.REJECT) or by == "tocsin":
                note = f"{s.waited_s:.0f} s" if s.waited_s else ""
                await self._record(
                    ReleaseEvent(
                        fingerprint=s.alert.fingerprint,
                        identifier=s.alert.identifier,
                        action=s.action,
                        by="tocsin",
                        note=note,
                        at=now,
                        alert=s.alert if s.action is Action.HELD else None,
                    )
                )
            if s.action is Action.ESCALATED:
                records += await self._escalate(s)
            if s.release and s.alert.identifier != skip_release_of:
                records += await self.notifier.deliver(s.alert, only_public=True)
        return records

    async def _record(self, event: ReleaseEvent) -> None:
        try:
            await self.record(event)
        except Exception as e:  # noqa: BLE001 - the audit record is lost, the delivery is not
            log.error("release event %s of %s not recorded: %s", event.action, event.identifier, e)

    async def _escalate(self, s: Step) -> list[Any]:
        from tocsin.alerts.adapters.base import Notification

        numbers = self.gate.config.supervisors
        if not numbers:
            log.warning("alert %s unapproved after %.0f s: no supervisors configured", s.alert.identifier, s.waited_s)
            return []
        text = (
            f"【Tocsin值班】{s.alert.area.desc}{s.alert.level.zh}预警等待审批已{s.waited_s / 60:.0f}分钟："
            f"{s.alert.headline}。请登录值班台处理。"
        )
        out = []
        for number in numbers:
            n = Notification(
                alert_id=s.alert.identifier,
                fingerprint=s.alert.fingerprint,
                revision=s.alert.revision,
                channel="sms",
                recipients=[number],
                text=text,
                priority=4,
                idempotency_key=f"{s.alert.identifier}:escalation",
                correlation_id=s.alert.correlation_id,
            )
            try:
                out.append(await self.notifier.send(n))
            except KeyError:
                log.error("no SMS adapter: supervisors not told of %s", s.alert.identifier)
                break
        return out
