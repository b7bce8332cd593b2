"""The urgent lane: which detections take Kafka ``detections.urgent`` (detectors/engine.py
``detection_topic``), and how the alert stage stays right when the two topics reorder a source's
detections (alerts/engine.py: a detection older than one its source already applied is skipped;
alerts/service.py: each lane has its own replay guard)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.detectors.engine import detection_topic
from tocsin.schemas import topics
from tocsin.schemas.alert import MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.wire import encode

ONSET = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
NOW = datetime(2024, 7, 1, 12, 30, 0, tzinfo=UTC)
OPEN, UPDATE, CLEAR = DetectionState.OPEN, DetectionState.UPDATE, DetectionState.CLEAR
BLUE, YELLOW, ORANGE, RED = WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE, WarningLevel.RED
URGENT, ROUTINE = topics.DETECTIONS_URGENT, topics.DETECTIONS


def _det(
    state: DetectionState,
    level: WarningLevel | None,
    t_s: float,
    *,
    device: str = "rg-01",
    kind: str = "rainfall",
    rev: int = 0,
    corr: str = "",
) -> Detection:
    """A rainfall detection of ``device`` in 110105 whose reading was ``t_s`` seconds after ONSET."""
    return Detection(
        id=f"{device}:{kind}:{int(ONSET.timestamp() * 1000)}:{rev}",
        device_id=device,
        site="s1",
        family=Family.SEISMIC if kind == "p_trigger" else Family.HYDRO,
        kind=kind,
        state=state,
        level=level,
        value=40.0 + t_s,
        threshold=35.0,
        unit="mm",
        window_s=3600.0,
        onset=ONSET,
        ts=ONSET + timedelta(seconds=t_s),
        revision=rev,
        area_code="110105",
        correlation_id=corr,
    )


def _engine() -> AlertEngine:
    return AlertEngine(AlertConfig(), clock=lambda: NOW)


# ---------------------------------------------------------------- which lane


def test_seismic_triggers_and_orange_and_red_take_the_urgent_lane() -> None:
    assert detection_topic(_det(OPEN, RED, 0), ORANGE) == URGENT
    assert detection_topic(_det(UPDATE, ORANGE, 0), ORANGE) == URGENT
    assert detection_topic(_det(OPEN, YELLOW, 0), ORANGE) == ROUTINE
    assert detection_topic(_det(OPEN, BLUE, 0), ORANGE) == ROUTINE
    assert detection_topic(_det(CLEAR, None, 0), ORANGE) == ROUTINE
    # a clear carries its incident's level: the all-clear of a red incident takes the urgent lane
    assert detection_topic(_det(CLEAR, RED, 0), ORANGE) == URGENT
    assert detection_topic(_det(CLEAR, BLUE, 0), ORANGE) == ROUTINE
    assert detection_topic(_det(OPEN, None, 0, kind="anomaly"), ORANGE) == ROUTINE
    # a P-wave trigger is urgent whatever its level (the network decides the intensity), its clear too
    assert detection_topic(_det(OPEN, None, 0, kind="p_trigger"), ORANGE) == URGENT
    assert detection_topic(_det(CLEAR, None, 0, kind="p_trigger"), RED) == URGENT


def test_the_urgent_level_is_a_threshold_and_none_turns_the_lane_off() -> None:
    assert detection_topic(_det(OPEN, ORANGE, 0), RED) == ROUTINE
    assert detection_topic(_det(OPEN, RED, 0), RED) == URGENT
    assert detection_topic(_det(OPEN, YELLOW, 0), YELLOW) == URGENT
    for d in (_det(OPEN, RED, 0), _det(OPEN, None, 0, kind="p_trigger")):
        assert detection_topic(d, None) == ROUTINE


# ---------------------------------------------------------------- reordering in the engine


def test_a_late_clear_older_than_the_red_does_not_end_the_alert() -> None:
    engine = _engine()
    state, alerts = engine.process(_det(OPEN, BLUE, 0, rev=0), None)  # routine lane
    assert [a.msg_type for a in alerts] == [MsgType.ALERT]
    # the gauge clears at 60 s (routine lane, delayed by a backlog) and reopens red at 120 s (urgent
    # lane): the red arrives first
    state, alerts = engine.process(_det(OPEN, RED, 120, rev=2), state)
    assert [(a.msg_type, a.level) for a in alerts] == [(MsgType.UPDATE, RED)]
    state, alerts = engine.process(_det(CLEAR, None, 60, rev=1), state)
    assert alerts == [] and engine.superseded == 1
    assert state["active"] and state["level"] == "red"
    assert state["sources"]["rg-01:rainfall"]["level"] == "red"
    # the real all-clear, later than the red, ends it
    state, alerts = engine.process(_det(CLEAR, None, 180, rev=3), state)
    assert [a.msg_type for a in alerts] == [MsgType.CANCEL]
    assert engine.superseded == 1


def test_a_late_open_older_than_the_clear_does_not_reopen() -> None:
    engine = _engine()
    state, _ = engine.process(_det(OPEN, RED, 0), None)
    state, alerts = engine.process(_det(CLEAR, None, 120, rev=2), state)
    assert [a.msg_type for a in alerts] == [MsgType.CANCEL]
    state, alerts = engine.process(_det(UPDATE, YELLOW, 60, rev=1), state)  # downgrade, overtaken
    assert alerts == [] and not state["active"] and engine.superseded == 1


def test_the_guard_is_per_source_and_lets_the_same_stamp_through() -> None:
    engine = _engine()
    state, _ = engine.process(_det(OPEN, RED, 100, device="rg-01"), None)
    # another gauge of the area, older than rg-01's red: its own first word, applied
    state, _ = engine.process(_det(OPEN, BLUE, 10, device="rg-02"), state)
    assert set(state["sources"]) == {"rg-01:rainfall", "rg-02:rainfall"}
    # the same stamp again (a redelivery) is not "older": the replay guard of the lane handles it
    state, _ = engine.process(_det(OPEN, RED, 100, device="rg-01"), state)
    assert engine.superseded == 0


def test_level_less_detections_leave_the_stamps_alone() -> None:
    engine = _engine()
    state, _ = engine.process(_det(OPEN, BLUE, 0), None)
    before = json.loads(json.dumps(state))
    after, alerts = engine.process(_det(OPEN, None, 500, kind="anomaly"), state)
    assert alerts == [] and after == before


_LEVELS = [None, BLUE, YELLOW, ORANGE, RED]


@st.composite
def _chain_and_arrival(draw: Any) -> tuple[list[Detection], list[Detection]]:
    """One gauge's detections in device order, as the detector makes them (levels move freely; None
    is a clear, which carries the incident's last level, as detectors/engine.py does; a new incident
    starts at revision 0), and an arrival order that keeps each lane's own order but interleaves the
    two lanes at random."""
    levels = [draw(st.sampled_from(_LEVELS[1:])), *draw(st.lists(st.sampled_from(_LEVELS), max_size=6))]
    chain: list[Detection] = []
    last: WarningLevel | None = None  # the open incident's level
    rev = 0
    for i, level in enumerate(levels):
        if level is None and last is None:
            continue  # nothing open: the detector says nothing
        if level is None:
            chain.append(_det(CLEAR, last, 60.0 * i, rev=rev + 1))
            last, rev = None, 0
            continue
        if last is None:
            chain.append(_det(OPEN, level, 60.0 * i, rev=0))
            rev = 0
        elif level is not last:
            rev += 1
            chain.append(_det(UPDATE, level, 60.0 * i, rev=rev))
        last = level
    lanes = {lane: [d for d in chain if detection_topic(d, ORANGE) == lane] for lane in (ROUTINE, URGENT)}
    picks = draw(st.lists(st.booleans(), min_size=len(chain), max_size=len(chain)))
    arrival, i, j = [], 0, 0
    for urgent_first in picks:
        take_urgent = (urgent_first and j < len(lanes[URGENT])) or i >= len(lanes[ROUTINE])
        if take_urgent:
            arrival.append(lanes[URGENT][j])
            j += 1
        else:
            arrival.append(lanes[ROUTINE][i])
            i += 1
    return chain, arrival


@settings(max_examples=300, deadline=None)
@given(_chain_and_arrival())
def test_any_interleaving_of_the_lanes_ends_where_device_order_ends(case: Any) -> None:
    """Property: whatever the interleaving, the alert ends active or not (and, active, at the level)
    with the gauge's last word, exactly as processing in device order does; every message of the
    interleaved run carries a level the gauge really had; and what is skipped is exactly what
    arrived after something newer."""
    chain, arrival = case
    # Flapping is left out (flap_toggles out of reach): it counts Alert/Cancel toggles, and a clear
    # the urgent lane overtook is one toggle pair the engine never sees, so a gauge just at the
    # flapping threshold in device order can stay below it when reordered (README, urgent lane).
    ordered = AlertEngine(AlertConfig(flap_toggles=1000), clock=lambda: NOW)
    want: dict[str, Any] | None = None
    for d in chain:
        want, _ = ordered.process(d, want)
    assert want is not None
    engine = AlertEngine(AlertConfig(flap_toggles=1000), clock=lambda: NOW)
    got: dict[str, Any] | None = None
    issued = []
    for d in arrival:
        got, alerts = engine.process(d, got)
        issued += alerts
    assert got is not None
    assert got["active"] == want["active"]
    if want["active"]:
        assert got["level"] == want["level"]
    assert got["sources"] == want["sources"]
    assert got["seen"] == want["seen"]
    assert {a.level for a in issued if a.msg_type is not MsgType.CANCEL} <= {d.level for d in chain}
    assert engine.superseded == sum(1 for k, d in enumerate(arrival) if any(e.ts > d.ts for e in arrival[:k]))


# ---------------------------------------------------------------- replay guards per lane


class Store(dict[str, Any]):
    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, json.loads(json.dumps(value)))  # what a changelog round trip keeps


def _stage() -> tuple[AlertStage, CollectorRegistry]:
    registry = CollectorRegistry()
    stage = AlertStage(AlertEngine(AlertConfig(), clock=lambda: NOW), AlertMetrics(registry), clock=NOW.timestamp)
    return stage, registry


def test_each_lane_has_its_own_replay_guard() -> None:
    stage, registry = _stage()
    store = Store()
    fp = "hydro:110105:rainstorm"
    # routine lane: offset 500 of partition 1; urgent lane: offset 3 of partition 1 (a younger topic)
    assert [a.msg_type for a in stage.handle(encode(_det(OPEN, BLUE, 0)), store, (1, 500))] == [MsgType.ALERT]
    red = encode(_det(UPDATE, RED, 60, rev=1))
    assert [a.level for a in stage.handle(red, store, (1, 3), lane="urgent")] == [RED]
    assert store[fp]["position"] == [1, 500] and store[fp]["position.urgent"] == [1, 3]
    # a crash redelivers both lanes from before: each replay is recognised by its own lane's guard
    assert stage.handle(encode(_det(OPEN, BLUE, 0)), store, (1, 500)) == []
    assert stage.handle(red, store, (1, 3), lane="urgent") == []
    assert registry.get_sample_value("tocsin_alert_replayed_total") == 2
    # the next urgent record (offset 4) is new, though 4 < 500
    orange = encode(_det(UPDATE, ORANGE, 120, rev=2))
    assert [a.level for a in stage.handle(orange, store, (1, 4), lane="urgent")] == [ORANGE]


def test_a_superseded_detection_is_counted_and_not_written() -> None:
    stage, registry = _stage()
    store = Store()
    stage.handle(encode(_det(OPEN, RED, 120, rev=1)), store, (0, 7), lane="urgent")
    written = dict(store)
    assert stage.handle(encode(_det(OPEN, BLUE, 0, rev=0)), store, (0, 40)) == []
    assert registry.get_sample_value("tocsin_alert_superseded_total") == 1
    assert registry.get_sample_value("tocsin_alert_unchanged_total") == 1
    assert dict(store) == written  # no changelog record for it (its replay is the same no-op)
