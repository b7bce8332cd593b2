"""Cool-down before the all-clear, flapping held as one alert, reminders: driven by lifecycle ticks
that travel through the same stage (and state) as the detections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.schemas.alert import MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState, LifecycleTick
from tocsin.schemas.wire import encode

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def det(state: DetectionState, t_s: float, level: WarningLevel | None = WarningLevel.YELLOW, rev: int = 0) -> bytes:
    ts = T0 + timedelta(seconds=t_s)
    return encode(
        Detection(
            id=f"GD1:gas_h2s:{int(t_s)}:{rev}",
            device_id="GD1",
            site="park",
            family=Family.HAZMAT,
            kind="gas_h2s",
            state=state,
            level=level,
            value=12.0,
            unit="mg/m3",
            onset=ts,
            ts=ts,
            revision=rev,
            area_code="330110",
        )
    )


def tick(clock: Clock, t_s: float) -> bytes:
    clock.now = T0 + timedelta(seconds=t_s)
    return encode(LifecycleTick(fingerprint="hazmat:330110:gas_leak", ts=clock.now))


def run(config: AlertConfig, events: list[tuple[str, float, DetectionState | None]]) -> list[tuple[float, str, bool]]:
    clock = Clock()
    stage = AlertStage(AlertEngine(config, clock=clock), AlertMetrics(CollectorRegistry()))
    table: dict = {}
    out = []
    for kind, t_s, state in events:
        if kind == "tick":
            value = tick(clock, t_s)
            state = table.get("hazmat:330110:gas_leak")
            if not stage.engine.needs_tick(state):
                # the workers skip these ticks: they must be no-ops
                assert stage.engine.tick(state, clock.now) == (state, [])
        else:
            clock.now = T0 + timedelta(seconds=t_s)
            assert state is not None
            value = det(state, t_s)
        for a in stage.handle(value, table):
            out.append((t_s, a.msg_type.value, a.flapping))
        table = json.loads(json.dumps(table))  # a Faust table between events
    return out


OPEN, CLEAR = DetectionState.OPEN, DetectionState.CLEAR


def test_cool_down_holds_the_all_clear_until_quiet() -> None:
    events = [
        ("det", 0, OPEN),
        ("det", 60, CLEAR),
        ("tick", 100, None),
        ("det", 150, OPEN),  # back before 300 s
        ("det", 200, CLEAR),
        ("tick", 400, None),
        ("tick", 501, None),
        ("tick", 600, None),
    ]
    assert run(AlertConfig(cool_down_s=300), events) == [(0, "Alert", False), (501, "Cancel", False)]


def test_without_cool_down_the_all_clear_is_immediate() -> None:
    assert run(AlertConfig(), [("det", 0, OPEN), ("det", 60, CLEAR)]) == [(0, "Alert", False), (60, "Cancel", False)]


def test_flapping_is_held_as_one_alert_until_quiet() -> None:
    # open/clear every minute: after more than 4 toggles in the hour the alert stays up, marked flapping
    events: list[tuple[str, float, DetectionState | None]] = []
    for k in range(6):
        events += [("det", 120 * k, OPEN), ("det", 120 * k + 60, CLEAR)]
    events += [("tick", 1500, None), ("tick", 660 + 3600, None), ("tick", 720 + 3600, None)]
    out = run(AlertConfig(flap_toggles=4, flap_window_s=3600), events)
    assert out[:5] == [
        (0, "Alert", False),
        (60, "Cancel", False),
        (120, "Alert", False),
        (180, "Cancel", False),
        (240, "Alert", True),
    ]
    # from then on no toggling: a single flapping alert, cancelled an hour after the last clear
    assert out[5:] == [(660 + 3600, "Cancel", True)]


def test_reminders_while_active() -> None:
    events = [("det", 0, OPEN), ("tick", 500, None), ("tick", 900, None), ("tick", 1000, None), ("tick", 1800, None)]
    out = run(AlertConfig(reminder_s=900), events)
    assert out == [(0, "Alert", False), (900, "Update", False), (1800, "Update", False)]


def test_ticks_for_unknown_or_inactive_fingerprints_do_nothing() -> None:
    assert run(
        AlertConfig(cool_down_s=60),
        [("tick", 10, None), ("det", 20, OPEN), ("det", 30, CLEAR), ("tick", 100, None), ("tick", 200, None)],
    ) == [(20, "Alert", False), (100, "Cancel", False)]


def det_from(device: str, state: DetectionState, t_s: float) -> bytes:
    ts = T0 + timedelta(seconds=t_s)
    return encode(
        Detection(
            id=f"{device}:gas_h2s:{int(t_s)}:0",
            device_id=device,
            site="park",
            family=Family.HAZMAT,
            kind="gas_h2s",
            state=state,
            level=WarningLevel.YELLOW,
            value=12.0,
            unit="mg/m3",
            onset=ts,
            ts=ts,
            revision=0,
            area_code="330110",
        )
    )


def test_k_of_n_or_sustained_confirmation() -> None:
    config = AlertConfig(confirm={"gas_leak": (2, 120.0)})
    clock = Clock()
    stage = AlertStage(AlertEngine(config, clock=clock), AlertMetrics(CollectorRegistry()))
    table: dict = {}
    # one sensor: held (pending) ...
    assert stage.handle(det_from("GD1", OPEN, 0), table) == []
    assert stage.handle(tick(clock, 60), table) == []
    # ... until a second sensor of the area agrees: the alert goes out at once
    alerts = stage.handle(det_from("GD2", OPEN, 70), table)
    assert [a.msg_type for a in alerts] == [MsgType.ALERT] and alerts[0].devices == ["GD1", "GD2"]
    # a single sensor that holds the condition for 120 s also confirms (on the clock's tick)
    table = {}
    assert stage.handle(det_from("GD3", OPEN, 1000), table) == []
    assert stage.handle(tick(clock, 1100), table) == []
    assert [a.msg_type for a in stage.handle(tick(clock, 1121), table)] == [MsgType.ALERT]
    # a sensor that clears before confirmation never alerted, so nothing is cancelled
    table = {}
    assert stage.handle(det_from("GD4", OPEN, 2000), table) == []
    assert stage.handle(det_from("GD4", CLEAR, 2030), table) == []
    assert stage.handle(tick(clock, 2200), table) == []


def test_only_states_with_something_to_wait_for_need_ticks() -> None:
    clock = Clock()
    quiet = AlertStage(AlertEngine(AlertConfig(), clock=clock), AlertMetrics(CollectorRegistry()))
    table: dict = {}
    fp = "hazmat:330110:gas_leak"
    assert not quiet.engine.needs_tick(None)
    quiet.handle(det(OPEN, 0), table)
    assert table[fp]["active"] and not quiet.engine.needs_tick(table[fp])  # open, no reminders: nothing to do
    quiet.handle(det(CLEAR, 60), table)
    assert not quiet.engine.needs_tick(table[fp])  # cancelled at once
    # reminders: every active alert needs the clock
    reminding = AlertEngine(AlertConfig(reminder_s=900), clock=clock)
    state, _ = reminding.process(Detection.model_validate_json(det(OPEN, 0)), None)
    assert reminding.needs_tick(state)
    # a cool-down holds the all-clear: the clock must release it
    holding = AlertEngine(AlertConfig(cool_down_s=300), clock=clock)
    state, _ = holding.process(Detection.model_validate_json(det(OPEN, 0)), None)
    assert not holding.needs_tick(state)
    state, _ = holding.process(Detection.model_validate_json(det(CLEAR, 60)), state)
    assert holding.needs_tick(state)
    # pending confirmation (one sensor, sustain time): the clock confirms it
    pending = AlertEngine(AlertConfig(confirm={"gas_leak": (2, 120.0)}), clock=clock)
    state, alerts = pending.process(Detection.model_validate_json(det(OPEN, 0)), None)
    assert alerts == [] and pending.needs_tick(state)
