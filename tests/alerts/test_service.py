"""Unit tests for alerts/service.py: AlertStage skips the table write of a detection that changed
nothing, and the (partition, offset) replay guard still gives exactly-once alerts after a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.wire import encode

ONSET = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
NOW = datetime(2024, 7, 1, 12, 30, 0, tzinfo=UTC)
OPEN, UPDATE, CLEAR = DetectionState.OPEN, DetectionState.UPDATE, DetectionState.CLEAR


class CountingStore(dict[str, Any]):
    """The table stand-in: a dict that counts writes (each one is a changelog record in Faust)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, json.loads(json.dumps(value)))  # what a changelog round trip keeps


def _stage() -> tuple[AlertStage, AlertMetrics]:
    metrics = AlertMetrics(CollectorRegistry())
    return AlertStage(AlertEngine(AlertConfig(), clock=lambda: NOW), metrics, clock=lambda: NOW.timestamp()), metrics


def _det(device: str, state: DetectionState, level: WarningLevel | None, rev: int, value: float = 40.0) -> bytes:
    return encode(
        Detection(
            id=f"{device}:rainfall:{int(ONSET.timestamp() * 1000)}:{rev}",
            device_id=device,
            site="s1",
            family=Family.HYDRO,
            kind="rainfall" if level is not None or state is CLEAR else "anomaly",
            state=state,
            level=level,
            value=value,
            threshold=35.0,
            unit="mm",
            window_s=3600.0,
            onset=ONSET,
            ts=ONSET + timedelta(seconds=rev),
            revision=rev,
            area_code="110105",
        )
    )


def test_repeated_anomaly_writes_nothing_and_keeps_the_position() -> None:
    stage, metrics = _stage()
    store = CountingStore()
    stage.handle(_det("rg-01", OPEN, WarningLevel.BLUE, 0), store, (0, 10))
    # anomaly scores: operator information, their own fingerprint, no lifecycle change after the first
    assert stage.handle(_det("rg-01", UPDATE, None, 1), store, (0, 11)) == []
    assert store.writes == 2
    assert store["hydro:110105:anomaly"]["position"] == [0, 11]
    again = _det("rg-01", UPDATE, None, 2, value=41.0)
    assert stage.handle(again, store, (0, 12)) == []
    assert store.writes == 2
    assert store["hydro:110105:anomaly"]["position"] == [0, 11]
    assert metrics.unchanged._value.get() == 1.0
    # redelivered after a crash (the state never recorded offset 12): the same no-op again
    assert stage.handle(again, store, (0, 12)) == []
    assert store.writes == 2
    assert metrics.unchanged._value.get() == 2.0
    assert metrics.replayed._value.get() == 0.0


def test_stale_detection_under_an_open_alert_writes_nothing() -> None:
    metrics = AlertMetrics(CollectorRegistry())
    engine = AlertEngine(AlertConfig(max_detection_age_s=3600.0), clock=lambda: ONSET + timedelta(minutes=30))
    stage = AlertStage(engine, metrics)
    store = CountingStore()
    assert len(stage.handle(_det("rg-01", OPEN, WarningLevel.BLUE, 0), store, (0, 0))) == 1
    engine.clock = lambda: ONSET + timedelta(hours=5)  # the next one is history when it arrives
    assert stage.handle(_det("rg-01", UPDATE, WarningLevel.RED, 1, value=110.0), store, (0, 1)) == []
    assert store.writes == 1
    assert store["hydro:110105:rainstorm"]["position"] == [0, 0]
    assert store["hydro:110105:rainstorm"]["level"] == "blue"


def test_a_moving_value_is_written_with_its_position() -> None:
    stage, _ = _stage()
    store = CountingStore()
    stage.handle(_det("rg-01", OPEN, WarningLevel.BLUE, 0), store, (1, 3))
    assert stage.handle(_det("rg-01", UPDATE, WarningLevel.BLUE, 1, value=41.5), store, (1, 4)) == []
    assert store.writes == 2
    (state,) = store.values()
    assert state["position"] == [1, 4]
    assert state["sources"]["rg-01:rainfall"]["value"] == 41.5
    # replaying it is caught by the guard, not re-processed
    assert stage.handle(_det("rg-01", UPDATE, WarningLevel.BLUE, 1, value=41.5), store, (1, 4)) == []
    assert store.writes == 2


def test_first_no_op_of_a_fingerprint_is_written_once() -> None:
    """No previous state: the empty state is recorded (with its position), later no-ops are skipped."""
    stage, metrics = _stage()
    store = CountingStore()
    for offset in range(5):
        assert stage.handle(_det("an-1", UPDATE, None, offset), store, (0, offset)) == []
    assert store.writes == 1
    assert metrics.unchanged._value.get() == 4.0


def test_quiet_lifecycle_tick_writes_nothing() -> None:
    from tocsin.schemas.detection import LifecycleTick

    stage, _ = _stage()
    store = CountingStore()
    stage.handle(_det("rg-01", OPEN, WarningLevel.BLUE, 0), store, (0, 0))
    (key,) = store
    tick = encode(LifecycleTick(fingerprint=key, ts=NOW))
    assert stage.handle(tick, store) == []
    assert store.writes == 1


# One gauge pair of an area: opens, moves, clears, and anomaly scores in between.
_STEP = st.tuples(
    st.sampled_from(["rg-a", "rg-b"]),
    st.sampled_from(["open_blue", "open_red", "update_blue", "clear", "anomaly"]),
    st.floats(36.0, 120.0, allow_nan=False),
)


def _stream(steps: list[tuple[str, str, float]]) -> list[bytes]:
    out = []
    for i, (device, what, value) in enumerate(steps):
        if what == "anomaly":
            out.append(_det(device, UPDATE, None, i, value))
        elif what == "clear":
            out.append(_det(device, CLEAR, None, i, 20.0))
        else:
            state = OPEN if what.startswith("open") else UPDATE
            out.append(_det(device, state, WarningLevel.RED if what.endswith("red") else WarningLevel.BLUE, i, value))
    return out


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_STEP, min_size=1, max_size=25), data=st.data())
def test_crash_and_replay_gives_the_alerts_exactly_once(steps: list[tuple[str, str, float]], data: Any) -> None:
    """A worker crashes after handling ``crash`` detections, with its state as written so far (the
    changelog) and its offsets committed only up to ``committed`` <= ``crash``: replaying from there
    issues exactly the alerts the uninterrupted run issued after the crash point, none twice."""
    dets = _stream(steps)
    stage, _ = _stage()
    store = CountingStore()
    issued = [[a.msg_type.value + a.level.value for a in stage.handle(d, store, (0, i))] for i, d in enumerate(dets)]
    crash = data.draw(st.integers(0, len(dets)))
    committed = data.draw(st.integers(0, crash))

    stage2, _ = _stage()
    before = CountingStore()
    for i, d in enumerate(dets[:crash]):
        stage2.handle(d, before, (0, i))
    restored = CountingStore()
    for k, v in before.items():
        restored[k] = v
    stage3, _ = _stage()
    replayed = [
        [a.msg_type.value + a.level.value for a in stage3.handle(d, restored, (0, i))]
        for i, d in enumerate(dets[committed:], start=committed)
    ]
    assert [x for batch in replayed for x in batch] == [x for batch in issued[crash:] for x in batch]
    # CAP identifiers carry the time and sequence digit of their entry (GB/T 35965.1-2018 Appendix A),
    # so the replayed run's identifiers are its own; the same number of messages, the rest identical.
    final = {k: {f: v for f, v in s.items() if f not in ("position", "ids")} for k, s in restored.items()}
    expected = {k: {f: v for f, v in s.items() if f not in ("position", "ids")} for k, s in store.items()}
    assert final == expected
    assert {k: len(s["ids"]) for k, s in restored.items()} == {k: len(s["ids"]) for k, s in store.items()}
