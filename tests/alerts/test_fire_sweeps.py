"""``persist_sweeps`` counts camera sweeps (revolutions of a tower camera, every 2-6 min per GUIDE
section 3), not detection records: one camera seeing a fire on sweep after sweep alerts once the
count is reached, and many frames within one sweep count once. Detector and alert stage together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tocsin.alerts.engine import AlertConfig, AlertEngine, confirm_settings
from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.kernels.fire import tally_sweep
from tocsin.detectors.rules import Rules
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.telemetry import FireDetection

T0 = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)


def _rules(persist: int) -> Rules:
    return Rules.model_validate({"confirm": {"fire": {"persist_sweeps": persist}}})


def _run(hits: list[tuple[float, int | None]], persist: int = 2) -> list[Alert]:
    """Feed camera detections (seconds after T0, sweep id) through detector and alert stages."""
    rules = _rules(persist)
    det = DetectorEngine(rules)
    engine = AlertEngine(AlertConfig(**confirm_settings(rules.confirm)), clock=lambda: T0 + timedelta(hours=2))
    dstate: dict | None = None
    astate: dict | None = None
    out: list[Alert] = []
    for t, sweep in hits:
        r = FireDetection(
            device_id="cam-a",
            site="tower-a",
            ts=T0 + timedelta(seconds=t),
            kind="smoke",
            confidence=0.8,
            bearing_deg=123.0,
            sweep=sweep,
        )
        dstate, dets = det.process(r, dstate)
        for d in dets:
            astate, alerts = engine.process(d, astate)
            out += alerts
    return out


def test_twenty_sweeps_over_eighty_minutes_alert_with_persist_two() -> None:
    # one sweep every 4 minutes, the fire seen on each: 20 sweeps in 80 minutes (no sweep ids)
    alerts = _run([(240.0 * i, None) for i in range(20)], persist=2)
    assert [a.msg_type for a in alerts] == [MsgType.ALERT]
    assert alerts[0].certainty == "Likely"  # one camera: unlocated
    # the same with the cameras' sweep counters
    alerts = _run([(240.0 * i, 100 + i) for i in range(20)], persist=2)
    assert [a.msg_type for a in alerts] == [MsgType.ALERT]


def test_persist_five_needs_five_sweeps_not_five_records() -> None:
    # sweeps every 4 min: the detector opens on the 3rd hit (k=3), the alert waits for the 5th sweep
    hits = [(240.0 * i, None) for i in range(6)]
    for n in (3, 4):
        assert _run(hits[:n], persist=5) == []
    assert [a.msg_type for a in _run(hits[:5], persist=5)] == [MsgType.ALERT]


def test_frames_of_one_sweep_count_once() -> None:
    # five frames of the same revolution (sweep 7): the detector's k=3 opens, but it is one sweep
    one_sweep = [(10.0 * i, 7) for i in range(5)]
    assert _run(one_sweep, persist=2) == []
    # the next revolution sees it again: two sweeps, alert
    assert [a.msg_type for a in _run([*one_sweep, (240.0, 8)], persist=2)] == [MsgType.ALERT]
    # without sweep ids, frames within 120 s are one sweep
    assert _run([(20.0 * i, None) for i in range(5)], persist=2) == []
    assert [a.msg_type for a in _run([*[(20.0 * i, None) for i in range(5)], (300.0, None)], persist=2)] == [
        MsgType.ALERT
    ]


def test_tally_sweep() -> None:
    t = tally_sweep(None, 0.0, None, 120.0)
    assert t == (1, 0.0, None)
    t = tally_sweep(t, 100.0, None, 120.0)  # 100 s later: same revolution
    assert t[0] == 1
    t = tally_sweep(t, 120.0, None, 120.0)  # 120 s after the counted hit: the next one
    assert t[0] == 2
    t = tally_sweep((1, 0.0, 5), 1.0, 6, 120.0)  # a new sweep id counts however soon
    assert t[0] == 2
    assert tally_sweep(t, 500.0, 6, 120.0)[0] == 2  # the same id never counts twice
