"""The release gate (alerts/release.py): modes per hazard and level, the enforced auto release of red
and seismic warnings, escalation at T1, the T2 policy, decisions; and a property test over random
sequences of messages, decisions and clock ticks.

The 600 s bound is the national public-release mark (China's national early-warning release system
reaches the public within 10 minutes; issue 17)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from tests.alerts.factories import T0, alert_message
from tocsin.alerts.release import (
    Action,
    ReleaseConfig,
    ReleaseDesk,
    ReleaseEvent,
    ReleaseGate,
    ReleaseMetrics,
    ReleaseRule,
    mode_for,
)
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.common import Family, WarningLevel

APPROVE_ALL = ReleaseConfig(rules=[ReleaseRule(mode="approve")], supervisors=["+8613900000001"])


def revision(a: Alert, n: int, level: WarningLevel | None = None, msg_type: MsgType = MsgType.UPDATE) -> Alert:
    return a.model_copy(
        update={"identifier": f"{a.identifier}-r{n}", "revision": n, "msg_type": msg_type, "level": level or a.level}
    )


def test_modes_follow_the_rules_and_red_and_seismic_are_always_auto() -> None:
    cfg = ReleaseConfig(
        rules=[
            ReleaseRule(hazards=[Family.HYDRO], levels=[WarningLevel.BLUE], mode="auto"),
            ReleaseRule(hazards=[Family.HYDRO, Family.SEISMIC], mode="approve"),
            ReleaseRule(levels=[WarningLevel.RED], mode="approve"),
        ]
    )
    assert mode_for(alert_message("a", WarningLevel.BLUE, Family.HYDRO), cfg) == "auto"
    assert mode_for(alert_message("b", WarningLevel.ORANGE, Family.HYDRO), cfg) == "approve"
    assert mode_for(alert_message("c", WarningLevel.YELLOW, Family.HAZMAT), cfg) == "auto"  # the default
    # configured "approve", enforced "auto": red, and the earthquake early warning
    assert mode_for(alert_message("d", WarningLevel.RED, Family.HYDRO), cfg) == "auto"
    assert mode_for(alert_message("e", WarningLevel.YELLOW, Family.SEISMIC), cfg) == "auto"
    cancel = revision(alert_message("f", WarningLevel.ORANGE, Family.HYDRO), 1, msg_type=MsgType.CANCEL)
    assert mode_for(cancel, cfg) == "auto"


def test_t2_may_not_pass_the_national_ten_minute_mark() -> None:
    with pytest.raises(ValidationError):
        ReleaseConfig(t2_s=601)
    with pytest.raises(ValidationError):
        ReleaseConfig(t1_s=300, t2_s=300)
    assert ReleaseConfig().t1_s == 180 and ReleaseConfig().t2_s == 480  # issue 17's defaults: 3 and 8 min


def test_held_then_approved() -> None:
    gate = ReleaseGate(APPROVE_ALL)
    a = alert_message("h1", WarningLevel.ORANGE, Family.HYDRO)
    assert [(s.action, s.release) for s in gate.admit(a, T0)] == [(Action.HELD, False)]
    assert gate.admit(a, T0 + timedelta(seconds=1)) == []  # a redelivery stays held
    step = gate.decide(a.fingerprint, a.identifier, Action.APPROVE, T0 + timedelta(seconds=42))
    assert step is not None and step.release and step.waited_s == 42
    assert gate.decide(a.fingerprint, a.identifier, Action.APPROVE, T0 + timedelta(seconds=43)) is None  # once
    # a redelivery after the approval goes out as approved; after a rejection it does not
    assert [s.release for s in gate.admit(a, T0 + timedelta(seconds=50))] == [True]
    b = alert_message("h2", WarningLevel.YELLOW, Family.HAZMAT)
    gate.admit(b, T0)
    step = gate.decide(b.fingerprint, b.identifier, Action.REJECT, T0 + timedelta(seconds=5))
    assert step is not None and not step.release
    assert [s.release for s in gate.admit(b, T0 + timedelta(seconds=6))] == [False]


def test_escalation_at_t1_then_release_at_t2() -> None:
    gate = ReleaseGate(APPROVE_ALL)
    a = alert_message("t1", WarningLevel.YELLOW, Family.HYDRO)
    gate.admit(a, T0)
    assert gate.tick(T0 + timedelta(seconds=179)) == []
    assert [s.action for s in gate.tick(T0 + timedelta(seconds=180))] == [Action.ESCALATED]
    assert gate.tick(T0 + timedelta(seconds=300)) == []  # escalated once
    steps = gate.tick(T0 + timedelta(seconds=480))
    assert [(s.action, s.release) for s in steps] == [(Action.TIMED_RELEASE, True)]
    assert gate.pending == {}


def test_hold_policy_keeps_waiting_for_a_person() -> None:
    gate = ReleaseGate(APPROVE_ALL.model_copy(update={"on_t2": "hold"}))
    a = alert_message("t2", WarningLevel.YELLOW, Family.HYDRO)
    gate.admit(a, T0)
    assert [s.action for s in gate.tick(T0 + timedelta(seconds=600))] == [Action.ESCALATED, Action.TIMED_HOLD]
    assert gate.tick(T0 + timedelta(seconds=900)) == []
    step = gate.decide(a.fingerprint, a.identifier, Action.APPROVE, T0 + timedelta(seconds=901))
    assert step is not None and step.release


def test_revisions_keep_the_first_clock_and_red_forces_the_release() -> None:
    gate = ReleaseGate(APPROVE_ALL)
    a = alert_message("rv", WarningLevel.YELLOW, Family.HYDRO)
    gate.admit(a, T0)
    b = revision(a, 1, WarningLevel.ORANGE)
    steps = gate.admit(b, T0 + timedelta(seconds=100))
    assert [s.action for s in steps] == [Action.SUPERSEDED, Action.HELD]
    assert gate.pending[a.fingerprint].since == T0  # not restarted by the Update
    # approving the superseded revision the operator was looking at releases the newest one
    step = gate.decide(a.fingerprint, a.identifier, Action.APPROVE, T0 + timedelta(seconds=120))
    assert step is not None and step.alert.identifier == b.identifier and step.release
    c = alert_message("rd", WarningLevel.ORANGE, Family.HAZMAT)
    gate.admit(c, T0)
    steps = gate.admit(revision(c, 1, WarningLevel.RED), T0 + timedelta(seconds=10))
    assert [(s.action, s.release) for s in steps] == [(Action.SUPERSEDED, False), (Action.FORCED, True)]


# --------------------------------------------------------------------------- property
LEVELS = list(WarningLevel)
HAZARDS = [Family.HYDRO, Family.HAZMAT, Family.SEISMIC, Family.FIRE]
event = st.one_of(
    st.tuples(st.just("msg"), st.integers(0, 3), st.sampled_from(LEVELS), st.sampled_from(HAZARDS)),
    st.tuples(st.just("decide"), st.integers(0, 3), st.sampled_from([Action.APPROVE, Action.REJECT]), st.none()),
    st.tuples(st.just("wait"), st.integers(1, 400), st.none(), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=40), st.sampled_from(["release", "hold"]))
def test_gate_invariants(events: list[tuple[Any, ...]], on_t2: str) -> None:
    """Whatever happens: red and seismic go out at once; under ``release`` nothing waits past T2
    (<= 600 s); every message is released at most once; a rejected or superseded one never is."""
    gate = ReleaseGate(APPROVE_ALL.model_copy(update={"on_t2": on_t2}))
    now = T0
    revisions: dict[int, Alert] = {}
    released: list[str] = []
    held_at: dict[str, Any] = {}
    for kind, x, y, z in events:
        if kind == "wait":
            now += timedelta(seconds=x)
            steps = gate.tick(now)
        elif kind == "decide":
            if x not in revisions:
                continue
            a = revisions[x]
            step = gate.decide(a.fingerprint, a.identifier, y, now)
            steps = [step] if step else []
        else:
            base = alert_message(f"p{x}", y, z)
            prev = revisions.get(x)
            a = base if prev is None else revision(prev, prev.revision + 1, y).model_copy(update={"hazard": z})
            a = a.model_copy(update={"fingerprint": f"fp{x}"})
            revisions[x] = a
            steps = gate.admit(a, now)
            if y is WarningLevel.RED or z is Family.SEISMIC:
                assert any(s.release and s.alert.identifier == a.identifier for s in steps)
        for s in steps:
            if s.action is Action.HELD:
                held_at.setdefault(s.alert.fingerprint, now)
            if s.release:
                released.append(s.alert.identifier)
                assert gate.finished.get(s.alert.identifier) not in (Action.REJECT, Action.SUPERSEDED)
        assert len(released) == len(set(released))
        for p in gate.pending.values():
            assert p.alert.level is not WarningLevel.RED and p.alert.hazard is not Family.SEISMIC
            if on_t2 == "release":
                assert (now - p.since).total_seconds() < 480


# --------------------------------------------------------------------------- the desk
class FakeNotifier:
    """Records what the desk asks of the notifier (the real one is exercised by the integration test)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def deliver(self, alert: Alert, *, hold_public: bool = False, only_public: bool = False) -> list[Any]:
        self.calls.append((alert.identifier, "public" if only_public else "operators" if hold_public else "all"))
        return []

    async def send(self, n: Any) -> Any:
        self.calls.append((n.recipients[0], "escalation:" + n.text))
        return None


def test_desk_holds_public_then_releases_on_approval_and_counts() -> None:
    notifier, events, now = FakeNotifier(), [], [T0]
    reg = CollectorRegistry()

    async def record(e: ReleaseEvent) -> None:
        events.append(e)

    desk = ReleaseDesk(ReleaseGate(APPROVE_ALL), notifier, record, ReleaseMetrics(reg), lambda: now[0])
    a = alert_message("d1", WarningLevel.ORANGE, Family.HYDRO)
    red = alert_message("d2", WarningLevel.RED, Family.HYDRO)

    async def run() -> None:
        await desk.deliver(a)
        await desk.deliver(red)
        assert reg.get_sample_value("tocsin_release_pending") == 1
        now[0] = T0 + timedelta(seconds=200)
        await desk.tick()
        now[0] = T0 + timedelta(seconds=230)
        op = ReleaseEvent(
            fingerprint=a.fingerprint, identifier=a.identifier, action=Action.APPROVE, by="李值班", at=now[0]
        )
        await desk.apply(op)

    asyncio.run(run())
    assert notifier.calls[0] == ("d1", "operators") and notifier.calls[1] == ("d2", "all")
    assert notifier.calls[2][0] == "+8613900000001" and "等待审批" in notifier.calls[2][1]
    assert notifier.calls[3] == ("d1", "public")
    assert [e.action for e in events] == [Action.HELD, Action.ESCALATED]
    assert reg.get_sample_value("tocsin_release_decisions_total", {"decision": "approve"}) == 1
    assert reg.get_sample_value("tocsin_release_decision_seconds_sum", {"decision": "approve"}) == 230
    assert reg.get_sample_value("tocsin_release_pending") == 0


def test_a_restarted_gate_restores_the_held_messages_from_the_events() -> None:
    first = ReleaseGate(APPROVE_ALL)
    events: list[ReleaseEvent] = []

    def record(steps: list[Any], at: Any) -> None:
        events.extend(
            ReleaseEvent(
                fingerprint=s.alert.fingerprint,
                identifier=s.alert.identifier,
                action=s.action,
                by="tocsin",
                at=at,
                alert=s.alert if s.action is Action.HELD else None,
            )
            for s in steps
        )

    a, b = alert_message("rs1", WarningLevel.YELLOW, Family.HYDRO), alert_message("rs2", WarningLevel.BLUE, Family.FIRE)
    record(first.admit(a, T0), T0)
    record(first.admit(revision(a, 1, WarningLevel.ORANGE), T0 + timedelta(seconds=60)), T0 + timedelta(seconds=60))
    record(first.tick(T0 + timedelta(seconds=200)), T0 + timedelta(seconds=200))
    record(first.admit(b, T0 + timedelta(seconds=210)), T0 + timedelta(seconds=210))
    events.append(
        ReleaseEvent(
            fingerprint=b.fingerprint,
            identifier=b.identifier,
            action=Action.REJECT,
            by="李值班",
            at=T0 + timedelta(seconds=220),
        )
    )
    # the worker dies; a new one reads the events
    gate = ReleaseGate(APPROVE_ALL)
    assert gate.restore(events) == 1
    p = gate.pending[a.fingerprint]
    assert p.alert.identifier == f"{a.identifier}-r1" and p.since == T0 and p.escalated
    assert gate.tick(T0 + timedelta(seconds=479)) == []
    steps = gate.tick(T0 + timedelta(seconds=480))  # T2 from the first hold, not from the restart
    assert [(s.action, s.alert.identifier, s.release) for s in steps] == [
        (Action.TIMED_RELEASE, f"{a.identifier}-r1", True)
    ]
    assert [s.release for s in gate.admit(b, T0 + timedelta(seconds=500))] == [False]  # still rejected
