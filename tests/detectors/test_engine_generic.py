"""Engine wiring of the deadman, the generic anomaly detector, gas sensor faults and rate of rise."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.rules import HydroRules, Rules
from tocsin.detectors.service import DetectorMetrics, DetectorStage
from tocsin.schemas.detection import DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import DeadmanTick, GasReading, WaterLevel
from tocsin.schemas.wire import encode

T0 = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
AREA = Area(code="330110", town="青山镇")
GAUGE = Device(device_id="WL9", family="hydro", site="river", lat=30, lon=120, area=AREA, interval_s=60)
NEVER = Device(device_id="RG9", family="hydro", site="river", lat=30, lon=120, area=AREA, interval_s=300)
VOC = Device(device_id="GD9", family="hazmat", site="park", lat=30, lon=120, area=AREA, interval_s=10)
REG = Registry(devices=[GAUGE, NEVER, VOC])


def level(k: int, value: float, dev: str = "WL9", step_s: int = 60) -> WaterLevel:
    return WaterLevel(device_id=dev, site="river", ts=T0 + timedelta(seconds=step_s * k), level_m=value)


def test_deadman_fires_on_the_clock_for_silent_and_never_seen_devices() -> None:
    engine = DetectorEngine(registry=REG)
    st, dets = engine.process(level(0, 3.0), None)
    assert dets == []
    # k = 3 x 60 s: still online at exactly 180 s of silence, offline just after
    st, dets = engine.tick(GAUGE, T0 + timedelta(seconds=180), st)
    assert dets == []
    st, dets = engine.tick(GAUGE, T0 + timedelta(seconds=181), st)
    assert [(d.kind, d.state, d.value) for d in dets] == [("offline", DetectionState.OPEN, 181.0)]
    st, dets = engine.tick(GAUGE, T0 + timedelta(seconds=400), st)
    assert dets == []  # one detection per outage, not one per tick
    st, dets = engine.process(level(7, 3.0), st)
    assert [(d.kind, d.state) for d in dets] == [("offline", DetectionState.CLEAR)]
    # a registered gauge that never reported: counted from the first check
    st2, dets = engine.tick(NEVER, T0, None)
    assert dets == []
    st2, dets = engine.tick(NEVER, T0 + timedelta(seconds=901), st2)
    assert [(d.kind, d.state, d.evidence["last_seen"]) for d in dets] == [("offline", DetectionState.OPEN, None)]


def test_deadman_ticks_travel_through_the_stage_and_survive_json_state() -> None:
    stage = DetectorStage(DetectorEngine(registry=REG), DetectorMetrics(CollectorRegistry()))
    table: dict = {}
    stage.handle(encode(level(0, 3.0)), table)
    table = json.loads(json.dumps(table))  # what a Faust table does between events
    tick = encode(DeadmanTick(device_id="WL9", ts=T0 + timedelta(minutes=10)))
    assert [d.kind for d in stage.handle(tick, table)] == ["offline"]
    unknown = encode(DeadmanTick(device_id="GONE", ts=T0))
    assert stage.handle(unknown, table) == []


def test_a_configured_gas_channel_uses_the_anomaly_detector() -> None:
    rules = Rules.model_validate({"anomaly": {"channels": [{"type": "hazmat.gas", "field": "value", "gas": "VOC"}]}})
    engine = DetectorEngine(rules, registry=REG)
    st = None
    opened = []
    for k in range(400):
        x = 5.0 + 0.05 * math.sin(2 * math.pi * k / 288) + 0.01 * ((k * 7919) % 13 - 6) / 6
        if k == 350:
            x += 1.0  # a leak of an unlisted gas: ~100 sigma
        reading = GasReading(
            device_id="GD9", site="park", ts=T0 + timedelta(minutes=5 * k), gas="VOC", value=x, unit="ppm"
        )
        st, dets = engine.process(reading, st)
        opened += [(k, d.kind, d.state) for d in dets if d.kind.startswith("anomaly")]
    assert opened[0] == (350, "anomaly_gas_voc", DetectionState.OPEN)
    assert all(d[0] >= 350 for d in opened)
    assert opened[-1][2] is DetectionState.CLEAR


def test_stuck_gas_sensor_is_a_sensor_fault_not_an_alarm() -> None:
    engine = DetectorEngine(registry=REG)
    st, faults = None, []
    for k in range(40):
        value = 3.0 + (0.1 * (k % 3) if k < 5 else 0.0)  # noise, then frozen
        r = GasReading(
            device_id="GD9", site="park", ts=T0 + timedelta(seconds=10 * k), gas="CH4", value=value, unit="%LEL"
        )
        st, dets = engine.process(r, st)
        faults += [(k, d.state, d.evidence.get("faults"), d.level) for d in dets if d.kind == "sensor_fault"]
    assert faults and faults[0][1] is DetectionState.OPEN and "stuck" in faults[0][2]
    assert all(level is None for *_, level in faults)  # operator information, no warning level
    assert "gas_lel" not in st["open"]


def test_rate_of_rise_opens_water_rise_when_a_limit_is_set() -> None:
    engine = DetectorEngine(Rules(hydro=HydroRules(rise_m_per_h=0.5)), REG)
    st, rises = None, []
    for k in range(40):  # 1 m/h for 40 min, sampled each minute
        st, dets = engine.process(level(k, 3.0 + k / 60), st)
        rises += [(k, d.state, d.value) for d in dets if d.kind == "water_rise"]
    k, state, rate = rises[0]
    assert state is DetectionState.OPEN and abs(rate - 1.0) < 1e-6
    assert k == 10  # the first time 3 points span at least 600 s


def test_pd_over_the_first_3_s_after_the_trigger_matches_the_batch_kernels() -> None:
    import numpy as np

    from tocsin.detectors.kernels.seismic import pd_from_displacement, velocity_to_displacement
    from tocsin.schemas.telemetry import SeismicPacket

    rng = np.random.default_rng(5)
    df, n = 100.0, 3000
    x = rng.normal(0, 1e-5, n)
    t = np.arange(n) / df
    burst = t >= 20.0
    x[burst] += 2e-3 * np.sin(2 * np.pi * 3.0 * (t[burst] - 20.0)) * np.exp(-(t[burst] - 20.0) / 3.0)
    station = Device(device_id="SS9", family="seismic", site="net", lat=30, lon=120, area=AREA, interval_s=1)
    engine = DetectorEngine(registry=Registry(devices=[station]))
    st, dets = None, []
    for p in range(n // 100):
        packet = SeismicPacket(
            device_id="SS9",
            site="net",
            ts=T0 + timedelta(seconds=p),
            sample_rate_hz=df,
            samples=x[100 * p : 100 * (p + 1)].tolist(),
        )
        st, out = engine.process(packet, st)
        dets += out
    opened = next(d for d in dets if d.state is DetectionState.OPEN)
    on = round((opened.onset - T0).total_seconds() * df)
    with_pd = [d for d in dets if "pd_cm" in d.evidence]
    assert len(with_pd) == 1
    expected = pd_from_displacement(velocity_to_displacement(x[on : on + 300], df))
    assert with_pd[0].evidence["pd_cm"] == round(expected, 6)
    # reported in the packet where the 3-s window filled (here the trigger ends in that packet too)
    assert T0 + timedelta(seconds=(on + 300) // 100) <= with_pd[0].ts < T0 + timedelta(seconds=(on + 300) // 100 + 1)


def test_deadman_judges_contact_by_receipt_time_when_known() -> None:
    # a gauge replaying an old backlog is in contact now: receipt time, not its clock, keeps it online
    engine = DetectorEngine(registry=REG)
    received = T0 + timedelta(hours=2)
    st, _ = engine.process(level(0, 3.0), None, seen_s=received.timestamp())
    st, dets = engine.tick(GAUGE, received + timedelta(seconds=180), st)
    assert dets == []
    st, dets = engine.tick(GAUGE, received + timedelta(seconds=181), st)
    assert [d.kind for d in dets] == ["offline"]
