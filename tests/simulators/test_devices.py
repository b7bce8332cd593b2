"""Simulated devices publish exactly what real devices do: topics, payloads the gateway accepts,
increasing sequence numbers, status and last will; and behave like the instruments."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.ingest.validate import Accepted, parse_status, validate_telemetry
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, WaterLevel
from tocsin.simulators import physics as ph
from tocsin.simulators.demo import Message
from tocsin.simulators.devices import FireCamera, GasDetector, LevelGauge, RainGauge, SeismicStation

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
AREA = Area(code="330110", district="临江区", town="白沙镇")


def _dev(
    device_id: str, family: Family, site: str, interval_s: float = 60.0, thresholds: dict[str, float] | None = None
) -> Device:
    return Device(
        device_id=device_id,
        family=family,
        site=site,
        lat=30.27,
        lon=120.12,
        area=AREA,
        interval_s=interval_s,
        thresholds=thresholds or {},
    )


RG = _dev("RG01", Family.HYDRO, "qingshan", 300)
WL = _dev("WL01", Family.HYDRO, "qingshan", 300, thresholds={"warning_level_m": 12.0})
GD = _dev("GD01", Family.HAZMAT, "chem-park", 15)
SS = _dev("SS01", Family.SEISMIC, "seis-net", 3600)
FC = _dev("FC01", Family.FIRE, "tower-north", 3600)
REGISTRY = Registry(devices=[RG, WL, GD, SS, FC])


def _accept(m: Message) -> Accepted:
    out = validate_telemetry(m.topic, m.payload, m.t + timedelta(seconds=1), registry=REGISTRY)
    assert isinstance(out, Accepted), out
    return out


def _seqs(msgs: list[Message]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in msgs]


def test_rain_gauge_payloads_validate_and_quantise() -> None:
    g = RainGauge(RG, bucket_mm=0.5)
    true = [0.0, 0.3, 0.3, 1.26, 7.9, 0.04, 0.0]
    msgs = [g.report(T0 + timedelta(minutes=5 * (i + 1)), mm) for i, mm in enumerate(true)]
    readings = [_accept(m).reading for m in msgs]
    assert all(isinstance(r, RainIncrement) for r in readings)
    reported = [r.rain_mm for r in readings if isinstance(r, RainIncrement)]
    assert reported == [0.0, 0.0, 0.5, 1.0, 8.0, 0.0, 0.0]  # 0.1, 0.36, 0.26, 0.3 mm left in the bucket
    assert msgs[0].topic == "tocsin/v1/hydro/qingshan/RG01/telemetry"
    assert _seqs(msgs) == list(range(1, 8))
    assert json.loads(msgs[0].payload)["ts"].endswith("+08:00")


@settings(max_examples=60, deadline=None)
@given(
    rain=st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=40),
    bucket=st.sampled_from([0.1, 0.2, 0.5]),
)
def test_tipping_bucket_conserves_rain_within_one_bucket(rain: list[float], bucket: float) -> None:
    g = RainGauge(RG, bucket_mm=bucket)
    reported = [g.tips(mm) for mm in rain]
    for r in reported:
        assert r / bucket == pytest.approx(round(r / bucket), abs=1e-6)  # whole tips only
    assert -1e-9 <= sum(rain) - sum(reported) < bucket + 1e-6  # two float sums: round-off either side of 0
    assert g.in_bucket_mm == pytest.approx(sum(rain) - sum(reported), abs=1e-6)


def test_level_gauge_reports_stage_with_millimetre_noise() -> None:
    g = LevelGauge(WL, noise_m=0.004)
    rng = np.random.default_rng(1)
    msgs = [g.report(T0 + timedelta(minutes=5 * i), 11.25, rng) for i in range(50)]
    levels = [r.level_m for r in (_accept(m).reading for m in msgs) if isinstance(r, WaterLevel)]
    assert len(levels) == 50
    assert float(np.mean(levels)) == pytest.approx(11.25, abs=0.003)
    assert 0.001 < float(np.std(levels)) < 0.01


def test_gas_detector_first_order_response_reaches_90_percent_at_t90() -> None:
    d = GasDetector(GD, gas="H2S", unit="mg/m3", t90_s=30.0, noise=0.0, resolution=0.01)
    times_s = [float(i) for i in range(121)]
    y = d.response(times_s, [0.0] + [20.0] * 120)
    assert y[30] == pytest.approx(18.0, rel=1e-9)  # 90 % of the 20 mg/m3 step, 30 s after it
    assert y[10] < 18.0 < y[31]
    assert y[-1] == pytest.approx(20.0, rel=1e-3)


def test_gas_readings_validate_drift_and_stick() -> None:
    d = GasDetector(GD, gas="H2S", unit="mg/m3", t90_s=30.0, drift_per_h=0.6, noise=0.0, resolution=0.01)
    times = [T0 + timedelta(seconds=15 * i) for i in range(241)]  # one hour
    msgs = d.readings(times, [0.0] * 241, np.random.default_rng(0))
    values = [r.value for r in (_accept(m).reading for m in msgs) if isinstance(r, GasReading)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.6, abs=0.01)  # zero drift 0.6 per hour
    stuck = GasDetector(GD, gas="H2S", unit="mg/m3", t90_s=30.0, noise=0.0, resolution=0.01)
    true = [0.0] * 20 + [30.0] * 60
    msgs = stuck.readings(times[:80], true, np.random.default_rng(0), stuck_from=times[10])
    after = {json.loads(m.payload)["value"] for m in msgs[10:]}
    assert after == {json.loads(msgs[10].payload)["value"]}  # frozen, even when the gas arrives
    assert _seqs(msgs) == list(range(1, 81))


def test_seismic_station_sends_one_second_packets() -> None:
    s = SeismicStation(SS)
    v = ph.seismic_noise(1_000, 100.0, np.random.default_rng(2))
    msgs = s.packets(T0, v)
    assert len(msgs) == 10
    packets = [r for r in (_accept(m).reading for m in msgs) if isinstance(r, SeismicPacket)]
    assert all(len(p.samples) == 100 and p.sample_rate_hz == 100.0 and p.unit == "m/s" for p in packets)
    for i, (m, p) in enumerate(zip(msgs, packets, strict=True)):
        assert p.ts == T0 + timedelta(seconds=i)  # first sample's time
        assert m.t == p.end  # published when complete
    joined = np.concatenate([np.asarray(p.samples) for p in packets])
    assert np.max(np.abs(joined - v)) <= 5e-10  # quantised to 1 nm/s
    assert _seqs(msgs) == list(range(1, 11))


def test_clock_skew_shifts_ts_not_publish_time() -> None:
    g = RainGauge(RG, clock_skew_s=45.0)
    m = g.report(T0, 1.0)
    r = _accept(m).reading
    assert m.t == T0
    assert r.ts == T0 + timedelta(seconds=45)


def test_status_online_and_last_will() -> None:
    g = RainGauge(RG)
    on = parse_status(g.online(T0).topic, g.online(T0).payload, T0)
    assert isinstance(on, DeviceStatus) and on.state is DeviceState.ONLINE and on.device_id == "RG01"
    will = g.last_will(T0)
    assert will.topic == "tocsin/v1/hydro/qingshan/RG01/status"
    off = parse_status(will.topic, will.payload, T0)
    assert isinstance(off, DeviceStatus) and off.state is DeviceState.OFFLINE and off.reason == "last-will"


def test_fire_camera_sees_the_fire_on_its_true_bearing() -> None:
    cam = FireCamera(FC, sweep_s=180.0, bearing_sigma_deg=0.5)
    fire_at = ph.destination(FC.lat, FC.lon, 52.0, 7.0)
    fire = ph.Fire(fire_at[0], fire_at[1], T0.timestamp())
    rng = np.random.default_rng(5)
    msgs: list[Message] = []
    for k in range(20):
        msgs += cam.sweep(T0 + timedelta(seconds=180 * k), [fire], rng)
    dets = [r for r in (_accept(m).reading for m in msgs) if isinstance(r, FireDetection)]
    assert len(dets) >= 18  # seen from the first minutes on
    assert all(abs(d.bearing_deg - 52.0) < 2.0 for d in dets)
    assert abs(float(np.mean([d.bearing_deg for d in dets])) - 52.0) < 0.4
    assert all(d.confidence >= 0.6 for d in dets[3:])
    # seen 52/360 of the sweep after it began, one per sweep, sweep counter increasing
    first = T0 + timedelta(seconds=180 * (dets[0].sweep or 0) + 180 * dets[0].bearing_deg / 360)
    assert abs((msgs[0].t - first).total_seconds()) < 0.01
    sweeps = [d.sweep or 0 for d in dets]
    assert sweeps == sorted(sweeps)
    assert _seqs(msgs) == list(range(1, len(msgs) + 1))


def test_fire_camera_false_positives_at_the_configured_rate() -> None:
    cam = FireCamera(FC)
    rng = np.random.default_rng(9)
    msgs: list[Message] = []
    for k in range(400):
        msgs += cam.sweep(T0 + timedelta(seconds=180 * k), [], rng, fp_rate=0.25)
    assert all(m.note.startswith("false positive") for m in msgs)
    assert len(msgs) == pytest.approx(100, abs=30)  # Poisson(0.25) per sweep over 400 sweeps
    confs = [json.loads(m.payload)["confidence"] for m in msgs]
    assert max(confs) < 0.7 and min(confs) >= 0.3
    for m in msgs:
        _accept(m)


def test_messages_keep_the_demo_message_type() -> None:
    m = RainGauge(RG).report(T0, 0.0)
    assert isinstance(m, Message)
    assert not math.isnan(json.loads(m.payload)["rain_mm"])


def test_stuck_seismic_station_sends_a_flat_line_across_windows() -> None:
    s = SeismicStation(SS)
    v = ph.seismic_noise(1_000, 100.0, np.random.default_rng(3))
    live = s.packets(T0, v)  # a live window: the last sample sent is remembered
    last = json.loads(live[-1].payload)["samples"][-1]
    assert s.last_sample == last
    stuck_at = T0 + timedelta(seconds=62.5)
    # the next window starts at 60 s: 2.5 s of live samples, then every sample the last live one
    v2 = ph.seismic_noise(500, 100.0, np.random.default_rng(4))
    msgs = s.packets(T0 + timedelta(seconds=60), v2, stuck_from=stuck_at)
    packets = [r for r in (_accept(m).reading for m in msgs) if isinstance(r, SeismicPacket)]
    joined = np.concatenate([np.asarray(p.samples) for p in packets])
    assert len(joined) == 500
    assert np.max(np.abs(joined[:250] - v2[:250])) <= 5e-10  # before 62.5 s: the real trace
    assert set(joined[250:].tolist()) == {round(float(v2[249]), 9)}  # from 62.5 s: flat at the last value
    assert [m.note for m in msgs] == ["stuck: flat line"] * 5
    assert _seqs(msgs) == list(range(11, 16))  # still streaming: fresh seq and ts
    # a window entirely after the fault repeats the value it stuck at
    again = s.packets(
        T0 + timedelta(seconds=120), ph.seismic_noise(200, 100.0, np.random.default_rng(5)), stuck_from=stuck_at
    )
    flat = {x for m in again for x in json.loads(m.payload)["samples"]}
    assert flat == {round(float(v2[249]), 9)}


@settings(max_examples=40, deadline=None)
@given(stuck_s=st.floats(min_value=0.0, max_value=4.99), seed=st.integers(0, 2**16))
def test_stuck_seismic_samples_never_move_after_the_fault(stuck_s: float, seed: int) -> None:
    s = SeismicStation(SS)
    v = ph.seismic_noise(500, 100.0, np.random.default_rng(seed))
    msgs = s.packets(T0, v, stuck_from=T0 + timedelta(seconds=stuck_s))
    joined = np.concatenate([np.asarray(json.loads(m.payload)["samples"]) for m in msgs])
    first = int(np.ceil(stuck_s * 100.0 - 1e-9))
    assert len(set(joined[first:].tolist())) == 1  # flat from the first sample at or after the fault
    assert np.max(np.abs(joined[:first] - v[:first]), initial=0.0) <= 5e-10  # untouched before


def test_stuck_camera_repeats_its_last_frame() -> None:
    cam = FireCamera(FC, sweep_s=180.0)
    fire_at = ph.destination(FC.lat, FC.lon, 52.0, 7.0)
    fire = ph.Fire(fire_at[0], fire_at[1], T0.timestamp() - 3600.0)  # burning for an hour: seen at once
    rng = np.random.default_rng(6)
    live = cam.sweep(T0, [fire], rng, fp_rate=1.0)
    assert live and any(m.note == "fire 0" for m in live)
    frames = [cam.sweep(T0 + timedelta(seconds=180 * k), [], rng, fp_rate=3.0, frozen=True) for k in range(1, 4)]

    def scores(msgs: list[Message]) -> list[tuple[str, float, float]]:
        rs = [r for r in (_accept(m).reading for m in msgs) if isinstance(r, FireDetection)]
        return [(r.kind, r.confidence, r.bearing_deg) for r in rs]

    for k, frame in enumerate(frames, start=1):
        # the same detections (kind, confidence, bearing) at the same place in the sweep, nothing new
        assert scores(frame) == scores(live)
        assert [m.t - timedelta(seconds=180 * k) for m in frame] == [m.t for m in live]
        assert all(m.note.startswith("stuck: frozen frame") for m in frame)
        assert {json.loads(m.payload)["sweep"] for m in frame} == {k}
    assert _seqs(live + [m for f in frames for m in f]) == list(range(1, 4 * len(live) + 1))
    # a camera frozen on an empty frame reports nothing, even with a fire in view
    quiet = FireCamera(FC)
    assert quiet.sweep(T0, [], rng) == [] and quiet.sweep(T0 + timedelta(seconds=180), [fire], rng, frozen=True) == []
