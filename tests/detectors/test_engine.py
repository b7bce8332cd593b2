"""Unit tests for detectors/engine.py: DetectorEngine.process turns readings plus per-device state
into detections (open / update / clear transitions), with state that survives JSON."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tocsin.detectors.engine import DetectorEngine, detection_key
from tocsin.detectors.rules import HazmatRules, Rules
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, WaterLevel

T0 = datetime(2024, 7, 1, 0, 0, 0, tzinfo=UTC)
AREA = Area(code="110105", district="朝阳区", town="东坝", village="单店")


def _dev(device_id: str, family: Family, **thresholds: float) -> Device:
    return Device(
        device_id=device_id, family=family, site="s1", lat=39.95, lon=116.55, area=AREA, thresholds=thresholds
    )


REGISTRY = Registry(
    devices=[
        _dev("rg-01", Family.HYDRO),
        _dev("wl-01", Family.HYDRO, warning_level_m=10.0, guaranteed_level_m=11.0, record_level_m=12.0),
        _dev("wl-02", Family.HYDRO),  # no thresholds
        _dev("gas-01", Family.HAZMAT),
        _dev("gas-02", Family.HAZMAT, level1=5.0),
        _dev("cam-01", Family.FIRE),
        _dev("st-01", Family.SEISMIC),
    ]
)


def _run(engine: DetectorEngine, readings: list, roundtrip: bool = False) -> tuple[dict, list[list[Detection]]]:
    """Feed readings through the engine, one state per device; the detections of each reading."""
    states: dict[str, dict | None] = {}
    out: list[list[Detection]] = []
    for r in readings:
        state = states.get(r.device_id)
        if roundtrip and state is not None:
            state = json.loads(json.dumps(state))
        new, dets = engine.process(r, state)
        json.dumps(new, allow_nan=False)  # a Faust table stores it as JSON
        states[r.device_id] = new
        out.append(dets)
    return states, out


def _flat(per_reading: list[list[Detection]]) -> list[Detection]:
    return [d for ds in per_reading for d in ds]


def _rain(i: int, mm: float = 5.0, device: str = "rg-01") -> RainIncrement:
    """The i-th 5-minute report."""
    return RainIncrement(device_id=device, site="s1", ts=T0 + timedelta(minutes=5 * i), rain_mm=mm, interval_s=300)


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _check_ids_and_revisions(dets: list[Detection]) -> None:
    assert len({d.id for d in dets}) == len(dets)
    by_incident: dict[tuple, list[int]] = {}
    for d in dets:
        by_incident.setdefault((d.device_id, d.kind, d.onset), []).append(d.revision)
        assert d.id == f"{d.device_id}:{d.kind}:{_ms(d.onset)}:{d.revision}"
    for revs in by_incident.values():
        assert revs == list(range(len(revs)))


# ---------------------------------------------------------------------------------------------
# Rainfall
# ---------------------------------------------------------------------------------------------


def test_rain_crossing_35_mm_in_one_hour_opens_one_blue_detection() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    _, per = _run(engine, [_rain(i) for i in range(1, 10)])
    # 30 mm after 6 reports: nothing; the 7th makes 35 mm in the last hour
    assert per[:6] == [[]] * 6
    [d] = per[6]
    assert per[7:] == [[], []]  # 40 and 45 mm: still blue, no record
    onset = T0 + timedelta(minutes=35)
    assert d.state is DetectionState.OPEN
    assert (d.kind, d.family, d.level) == ("rainfall", Family.HYDRO, WarningLevel.BLUE)
    assert (d.value, d.threshold, d.unit, d.window_s) == (35.0, 35.0, "mm", 3600.0)
    assert d.onset == onset and d.ts == onset
    assert d.revision == 0
    assert d.id == f"rg-01:rainfall:{_ms(onset)}:0"
    assert (d.device_id, d.site, d.area_code, d.town, d.village) == ("rg-01", "s1", "110105", "东坝", "单店")
    assert (d.lat, d.lon) == (39.95, 116.55)
    assert d.evidence == {
        "rain_1h_mm": 35.0,
        "rain_3h_mm": 35.0,
        "rain_6h_mm": 35.0,
        "rain_12h_mm": 35.0,
        "rain_24h_mm": 35.0,
        "rule": "flash-flood critical rainfall",
    }
    assert detection_key(d) == b"hydro:110105"


def test_rain_50_mm_in_3_hours_updates_to_orange_then_steps_down_and_clears() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    readings = [_rain(i) for i in range(1, 11)] + [_rain(i, 0.0) for i in range(11, 160)]
    _, per = _run(engine, readings)
    dets = _flat(per)
    assert [(d.state, d.level, d.revision) for d in dets] == [
        (DetectionState.OPEN, WarningLevel.BLUE, 0),
        (DetectionState.UPDATE, WarningLevel.ORANGE, 1),
        (DetectionState.UPDATE, WarningLevel.YELLOW, 2),
        (DetectionState.UPDATE, WarningLevel.BLUE, 3),
        (DetectionState.CLEAR, WarningLevel.BLUE, 4),
    ]
    _check_ids_and_revisions(dets)
    assert len({d.onset for d in dets}) == 1
    orange = per[9][0]  # the 10th report: 50 mm within 3 h
    assert (orange.value, orange.threshold, orange.window_s) == (50.0, 50.0, 3 * 3600.0)
    assert orange.evidence["rule"] == "CMA rainstorm orange"
    # orange clears once the 3 h total falls under 0.8 x 50 = 40 mm: at 11700 s (35 mm left)
    idx = [i for i, ds in enumerate(per) if ds]
    assert idx == [6, 9, 38, 74, 146]
    yellow = per[38][0]
    assert yellow.ts == T0 + timedelta(seconds=11_700)
    assert (yellow.value, yellow.threshold, yellow.window_s) == (50.0, 50.0, 6 * 3600.0)
    # yellow (6 h, 50 mm) clears at 6 h + 15 min; blue (12 h, 50 mm) at 12 h + 15 min
    assert per[74][0].ts == T0 + timedelta(hours=6, minutes=15)
    clear = per[146][0]
    assert clear.ts == T0 + timedelta(hours=12, minutes=15)
    assert clear.value == 35.0 and clear.threshold == 50.0  # the 12 h blue rule is the basis


def test_rain_without_registry_has_no_location() -> None:
    engine = DetectorEngine()
    _, per = _run(engine, [_rain(i, 12.0) for i in range(1, 4)])
    [d] = _flat(per)
    assert d.level is WarningLevel.BLUE and d.value == 36.0
    assert (d.area_code, d.lat, d.lon, d.town) == (None, None, None, "")
    assert detection_key(d) == b"hydro:s1"


def test_rain_per_device_threshold_override() -> None:
    reg = Registry(devices=[_dev("rg-01", Family.HYDRO, rain_1h_blue_mm=20.0)])
    _, per = _run(DetectorEngine(registry=reg), [_rain(i) for i in range(1, 5)])
    assert [len(ds) for ds in per] == [0, 0, 0, 1]
    assert per[3][0].threshold == 20.0


def test_process_does_not_modify_the_given_state() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    state, _ = engine.process(_rain(1), None)
    for i in range(2, 8):
        before = copy.deepcopy(state)
        new, _ = engine.process(_rain(i), state)
        assert state == before
        state = new
    assert "rainfall" in state["open"]


def _mixed_readings() -> list:
    out: list = [_rain(i) for i in range(1, 12)]
    out += [_water(v, i) for i, v in enumerate([9.5, 9.8, 10.2, 11.5, 12.5, 10.5, 9.66, 9.64])]
    out += [_gas(v, i) for i, v in enumerate([12, 12, 25, 25, 8.5])]
    out += [_fire(t, b, k) for t, b, k in [(0, 120, "smoke"), (300, 121, "smoke"), (600, 120.5, "smoke")]]
    out += [_fire(840, 120.2, "flame"), _fire(2640, 120.0, "smoke", 0.3)]
    out += _seismic_packets()
    out.sort(key=lambda r: r.ts)
    return out


def test_state_round_trip_through_json_gives_identical_detections() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    readings = _mixed_readings()
    plain_states, plain = _run(engine, readings)
    json_states, via_json = _run(engine, readings, roundtrip=True)
    assert via_json == plain
    assert json.loads(json.dumps(json_states)) == json.loads(json.dumps(plain_states))
    dets = _flat(plain)
    kinds = {d.kind for d in dets}
    assert kinds == {"rainfall", "water_level", "gas_h2s", "fire", "p_trigger"}
    _check_ids_and_revisions(dets)


# ---------------------------------------------------------------------------------------------
# Water level
# ---------------------------------------------------------------------------------------------


def _water(level: float, i: int, device: str = "wl-01") -> WaterLevel:
    return WaterLevel(device_id=device, site="s1", ts=T0 + timedelta(minutes=10 * i), level_m=level)


def test_water_level_escalates_and_clears_with_hysteresis() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    # sets: blue 9.7 (warning - 0.3 approach), yellow 10 (warning), orange 11 (guaranteed), red 12 (record)
    # clears: each set - 0.05 m
    levels = [9.5, 9.8, 10.2, 11.5, 12.5, 11.96, 10.5, 9.66, 9.64]
    _, per = _run(engine, [_water(v, i) for i, v in enumerate(levels)])
    got = [[(d.state, d.level, d.value) for d in ds] for ds in per]
    assert got == [
        [],
        [(DetectionState.OPEN, WarningLevel.BLUE, 9.8)],
        [(DetectionState.UPDATE, WarningLevel.YELLOW, 10.2)],
        [(DetectionState.UPDATE, WarningLevel.ORANGE, 11.5)],
        [(DetectionState.UPDATE, WarningLevel.RED, 12.5)],
        [],  # 11.96 is under the record level but above its clear (11.95)
        [(DetectionState.UPDATE, WarningLevel.YELLOW, 10.5)],
        [(DetectionState.UPDATE, WarningLevel.BLUE, 9.66)],  # 9.66 >= 9.65: still blue
        [(DetectionState.CLEAR, WarningLevel.BLUE, 9.64)],  # below warning - approach - offset
    ]
    dets = _flat(per)
    assert [d.threshold for d in dets] == pytest.approx([9.7, 10.0, 11.0, 12.0, 10.0, 9.7, 10.0])
    assert {d.kind for d in dets} == {"water_level"} and {d.unit for d in dets} == {"m"}
    assert dets[0].evidence == {"warning_level_m": 10.0, "guaranteed_level_m": 11.0, "record_level_m": 12.0}
    _check_ids_and_revisions(dets)


def test_water_level_without_thresholds_gives_nothing() -> None:
    _, per = _run(DetectorEngine(registry=REGISTRY), [_water(99.0, i, "wl-02") for i in range(3)])
    assert _flat(per) == []
    _, per = _run(DetectorEngine(), [_water(99.0, i) for i in range(3)])  # no registry at all
    assert _flat(per) == []


# ---------------------------------------------------------------------------------------------
# Gas
# ---------------------------------------------------------------------------------------------


def _gas(value: float, i: int, gas: str = "H2S", unit: str = "mg/m3", device: str = "gas-01") -> GasReading:
    return GasReading(device_id=device, site="s1", ts=T0 + timedelta(seconds=30 * i), gas=gas, value=value, unit=unit)


def test_gas_h2s_needs_two_readings_then_clears() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    values = [12, 8, 12, 12, 12, 9.5, 8.5]
    _, per = _run(engine, [_gas(v, i) for i, v in enumerate(values)])
    got = [[(d.state, d.level) for d in ds] for ds in per]
    assert got == [
        [],  # one reading over 10 mg/m3 is not enough (hold-down 2)
        [],
        [],
        [(DetectionState.OPEN, WarningLevel.YELLOW)],
        [],
        [],  # 9.5 is above the clear (9.0)
        [(DetectionState.CLEAR, WarningLevel.YELLOW)],
    ]
    opened = per[3][0]
    assert (opened.kind, opened.family, opened.value, opened.threshold, opened.unit) == (
        "gas_h2s",
        Family.HAZMAT,
        12.0,
        10.0,
        "mg/m3",
    )
    assert opened.onset == T0 + timedelta(seconds=90)
    assert opened.evidence == {"gas": "H2S", "raw_value": 12.0, "raw_unit": "mg/m3"}


def test_gas_straight_to_orange() -> None:
    _, per = _run(DetectorEngine(registry=REGISTRY), [_gas(25, i) for i in range(2)])
    [d] = _flat(per)
    assert (d.state, d.level, d.threshold) == (DetectionState.OPEN, WarningLevel.ORANGE, 20.0)


def test_gas_ppm_is_converted() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    # 7 ppm H2S = 9.76 mg/m3 (under 10); 8 ppm = 11.15 mg/m3 (over)
    _, per = _run(
        engine,
        [_gas(7, 0, unit="ppm"), _gas(7, 1, unit="ppm"), _gas(8, 2, unit="ppm"), _gas(8, 3, unit="ppm")],
    )
    [d] = _flat(per)
    assert per[3] == [d]
    assert d.value == round(8 * 34.08 / 24.45, 6) == 11.150920
    assert d.unit == "mg/m3"
    assert d.evidence == {"gas": "H2S", "raw_value": 8.0, "raw_unit": "ppm"}


def test_gas_device_and_rules_overrides() -> None:
    _, per = _run(DetectorEngine(registry=REGISTRY), [_gas(6, i, device="gas-02") for i in range(2)])
    [d] = _flat(per)
    assert (d.level, d.threshold) == (WarningLevel.YELLOW, 5.0)
    rules = Rules(hazmat=HazmatRules(setpoints={"H2S": {"level1": 3.0}}, hold_down=1))
    _, per = _run(DetectorEngine(rules=rules, registry=REGISTRY), [_gas(4, 0)])
    [d] = _flat(per)
    assert (d.level, d.threshold) == (WarningLevel.YELLOW, 3.0)


def test_gas_low_oxygen_and_unknown_gas() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    _, per = _run(engine, [_gas(v, i, gas="O2", unit="%vol") for i, v in enumerate([20.9, 19.0, 19.0])])
    [d] = _flat(per)
    assert (d.kind, d.level, d.threshold, d.value) == ("o2_low", WarningLevel.YELLOW, 19.5, 19.0)
    _, per = _run(engine, [_gas(500, i, gas="SO2") for i in range(3)])
    assert _flat(per) == []
    # a toxic gas in ppm without a molar mass is skipped rather than failing
    reg = Registry(devices=[_dev("gas-01", Family.HAZMAT, level1=1.0)])
    _, per = _run(DetectorEngine(registry=reg), [_gas(500, i, gas="XYZ", unit="ppm") for i in range(3)])
    assert _flat(per) == []


# ---------------------------------------------------------------------------------------------
# Fire
# ---------------------------------------------------------------------------------------------


def _fire(t: float, bearing: float, kind: str = "smoke", conf: float = 0.8) -> FireDetection:
    return FireDetection(
        device_id="cam-01",
        site="s1",
        ts=T0 + timedelta(seconds=t),
        kind=kind,
        confidence=conf,
        bearing_deg=bearing,
    )


def test_fire_three_hits_open_yellow_and_flame_escalates_to_orange() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    readings = [
        _fire(0, 120.0),
        _fire(300, 121.0),
        _fire(600, 120.5),  # 3 hits within 15 min, within 3 degrees
        _fire(840, 120.2, "flame", 0.95),
        _fire(1500, 120.0, conf=0.3),  # low confidence: ignored, but the fire is still recent
        _fire(2640, 120.0, conf=0.3),  # 30 min since the last qualifying hit: clear
    ]
    _, per = _run(engine, readings)
    assert per[0] == [] and per[1] == [] and per[4] == []
    [opened] = per[2]
    assert (opened.state, opened.kind, opened.level, opened.family) == (
        DetectionState.OPEN,
        "fire",
        WarningLevel.YELLOW,
        Family.FIRE,
    )
    assert (opened.value, opened.threshold) == (0.8, 0.6)
    # three hits 5 min apart are three sweeps of the camera
    assert opened.evidence == {"bearing_deg": 120.5, "hits": 3, "kind": "smoke", "sweeps": 3}
    assert opened.onset == T0 + timedelta(seconds=600)
    [flame] = per[3]
    assert (flame.state, flame.level, flame.revision, flame.value) == (
        DetectionState.UPDATE,
        WarningLevel.ORANGE,
        1,
        0.95,
    )
    assert flame.evidence["hits"] == 4 and flame.evidence["kind"] == "flame"
    [cleared] = per[5]
    assert (cleared.state, cleared.level, cleared.revision) == (DetectionState.CLEAR, WarningLevel.ORANGE, 2)
    _check_ids_and_revisions(_flat(per))


def test_fire_inconsistent_bearings_do_not_open() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    _, per = _run(engine, [_fire(0, 120.0), _fire(300, 140.0), _fire(600, 120.0), _fire(900, 100.0)])
    assert _flat(per) == []


# ---------------------------------------------------------------------------------------------
# Seismic
# ---------------------------------------------------------------------------------------------

FS = 100
BURST_AT_S = 20.0


def _seismic_packets(seconds: int = 50, unit: str = "m/s") -> list[SeismicPacket]:
    rng = np.random.default_rng(20240701)
    t = np.arange(seconds * FS) / FS
    x = rng.normal(0.0, 1e-5, t.size)
    burst = (t >= BURST_AT_S) & (t < BURST_AT_S + 5.0)
    x[burst] += 1e-3 * np.sin(2 * np.pi * 5.0 * (t[burst] - BURST_AT_S))
    return [
        SeismicPacket(
            device_id="st-01",
            site="s1",
            ts=T0 + timedelta(seconds=k),
            sample_rate_hz=FS,
            unit=unit,
            samples=x[k * FS : (k + 1) * FS].tolist(),
        )
        for k in range(seconds)
    ]


def test_seismic_burst_opens_a_p_trigger_within_one_second_and_later_clears() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    _, per = _run(engine, _seismic_packets())
    dets = _flat(per)
    assert all(ds == [] for ds in per[:20])  # 20 s of noise: nothing
    first = dets[0]
    assert (first.state, first.kind, first.family, first.level) == (
        DetectionState.OPEN,
        "p_trigger",
        Family.SEISMIC,
        None,
    )
    onset = T0 + timedelta(seconds=BURST_AT_S)
    assert timedelta(0) <= first.onset - onset <= timedelta(seconds=1)
    assert first.ts == first.onset
    assert first.value >= 4.0  # the STA/LTA ratio at trigger-on
    assert first.evidence["channel"] == "HHZ"
    last = dets[-1]
    assert last.state is DetectionState.CLEAR
    assert onset + timedelta(seconds=1) < last.ts < onset + timedelta(seconds=15)
    assert last.evidence["pgv_ms"] > 5e-4  # the burst, not the noise
    assert [d.state for d in dets[1:-1]] == [DetectionState.UPDATE] * (len(dets) - 2)
    _check_ids_and_revisions(dets)


def test_seismic_only_velocity_channels() -> None:
    engine = DetectorEngine(registry=REGISTRY)
    states, per = _run(engine, _seismic_packets(30, unit="counts"))
    assert _flat(per) == []
    assert states["st-01"]["open"] == {}
    assert set(states["st-01"]["k"]) == {"last_seen_s"}  # the deadman still sees the station alive


def test_water_level_without_thresholds_is_anomaly_scored_only_when_configured() -> None:
    state, dets = DetectorEngine().process(_water(5.0, 0), None)
    assert dets == [] and set(state["k"]) == {"last_seen_s", "rise"}  # no rule, no channel: nothing scored
    rules = Rules.model_validate({"anomaly": {"channels": [{"type": "hydro.level", "field": "level_m"}]}})
    state, dets = DetectorEngine(rules).process(_water(5.0, 0), None)
    assert dets == [] and state["open"] == {}
    assert set(state["k"]) == {"last_seen_s", "rise", "anomaly:level_m"}
    assert state["k"]["anomaly:level_m"]["n"] == 1
