"""Observed intensity per GB/T 17742-2020 (中国地震烈度表), Appendix: instrumental intensity.

The standard: PGA (m/s^2) and PGV (m/s) are the peaks of the vector sum of the three components
after a 0.1-10 Hz band-pass; I_A = 3.17 lg(PGA) + 6.59, I_V = 3.00 lg(PGV) + 9.77; the intensity is
I_V when both I_A and I_V are >= 6.0, else (I_A + I_V) / 2; rounded to 0.1 and kept within 1.0-12.0.
Every expected value below is worked out by hand from those formulas (arithmetic in the comments).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.kernels.seismic import GroundMotion, instrumental_intensity
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import SeismicPacket


@pytest.mark.parametrize(
    ("pga_ms2", "pgv_ms", "intensity"),
    [
        # I_A = 3.17 x lg 1.0 + 6.59 = 6.59; I_V = 3.00 x lg 0.1 + 9.77 = -3.00 + 9.77 = 6.77;
        # both >= 6: I = I_V = 6.77 -> 6.8
        (1.0, 0.1, 6.8),
        # I_A = 3.17 x lg 0.5 + 6.59 = 3.17 x (-0.30103) + 6.59 = 5.6357; I_V = 6.77;
        # I_A < 6: I = (5.6357 + 6.77) / 2 = 6.2029 -> 6.2
        (0.5, 0.1, 6.2),
        # I_A = 3.17 x (-1) + 6.59 = 3.42; I_V = 3.00 x (-2) + 9.77 = 3.77; I = (3.42 + 3.77) / 2 = 3.595 -> 3.6
        (0.1, 0.01, 3.6),
        # I_A = 3.17 x lg 10 + 6.59 = 9.76; I_V = 3.00 x lg 1.0 + 9.77 = 9.77; both >= 6: 9.77 -> 9.8
        (10.0, 1.0, 9.8),
        # I_A = 3.17 x (-3) + 6.59 = -2.92; I_V = 3.00 x (-4) + 9.77 = -2.23; mean -2.575: clamped to 1.0
        (0.001, 0.0001, 1.0),
        # I_V = 3.00 x lg 10 + 9.77 = 12.77, I_A = 3.17 x lg 100 + 6.59 = 12.93: clamped to 12.0
        (100.0, 10.0, 12.0),
    ],
)
def test_instrumental_intensity_matches_the_standard_worked_by_hand(
    pga_ms2: float, pgv_ms: float, intensity: float
) -> None:
    assert instrumental_intensity(pga_ms2, pgv_ms) == intensity


# A 2 Hz sine on three components, in phase, amplitudes Z 0.02, N 0.04, E 0.04 m/s. The vector sum
# is sqrt(0.02^2 + 0.04^2 + 0.04^2) |sin| = sqrt(0.0036) |sin| = 0.06 |sin|: PGV = 0.06 m/s;
# PGA = 0.06 x 2 pi x 2 = 0.75398 m/s^2. I_V = 3.00 x lg 0.06 + 9.77 = 3.00 x (-1.22185) + 9.77 = 6.1045;
# I_A = 3.17 x lg 0.75398 + 6.59 = 3.17 x (-0.12264) + 6.59 = 6.2012; both >= 6: I = I_V -> 6.1.
# (One component alone, E: PGV 0.04, I_V = 3.00 x (-1.39794) + 9.77 = 5.5762; PGA 0.50265,
# I_A = 3.17 x (-0.29873) + 6.59 = 5.6430; I = (5.5762 + 5.6430) / 2 = 5.6096 -> 5.6.)
# 2 Hz lies well inside the 0.1-10 Hz band (Butterworth gain 1 within 0.1 %), so the band-pass keeps
# the amplitudes; the 1 s ramp at the start keeps the filters' switch-on transient out of the peaks.
DF = 100.0
F_HZ = 2.0
OMEGA = 2 * np.pi * F_HZ
AMPS = {"Z": 0.02, "N": 0.04, "E": 0.04}
VECTOR_PGV, VECTOR_PGA = 0.06, 0.06 * OMEGA


def _velocity(amp: float, t: np.ndarray) -> np.ndarray:
    return amp * np.sin(OMEGA * t) * np.clip(t, 0.0, 1.0)


def _acceleration(amp: float, t: np.ndarray) -> np.ndarray:
    """d/dt of :func:`_velocity` (product rule over the ramp)."""
    return amp * OMEGA * np.cos(OMEGA * t) * np.clip(t, 0.0, 1.0) + amp * np.sin(OMEGA * t) * (t < 1.0)


def _feed(gm: GroundMotion, unit: str, seconds: int = 20, order: str = "ZNE", t0: float = 0.0) -> None:
    t = np.arange(int(seconds * DF)) / DF
    wave = _velocity if unit == "m/s" else _acceleration
    for k in range(seconds):
        part = slice(int(k * DF), int((k + 1) * DF))
        for comp in order:
            gm.add(comp, unit, wave(AMPS[comp], t[part]), t0 + k, DF)


@pytest.mark.parametrize("unit", ["m/s", "m/s2"])
def test_three_component_vector_peaks_and_intensity(unit: str) -> None:
    gm = GroundMotion(DF)
    gm.set_window(5.0, 19.0)
    _feed(gm, unit)
    assert gm.pgv_ms == pytest.approx(VECTOR_PGV, rel=0.01)
    assert gm.pga_ms2 == pytest.approx(VECTOR_PGA, rel=0.01)
    assert gm.intensity == 6.1


def test_one_component_alone_gives_its_own_smaller_intensity() -> None:
    gm = GroundMotion(DF)
    gm.set_window(5.0, 19.0)
    _feed(gm, "m/s", order="E")
    assert gm.pgv_ms == pytest.approx(0.04, rel=0.01)
    assert gm.intensity == 5.6


def test_components_arriving_out_of_order_give_the_same_peaks() -> None:
    a, b = GroundMotion(DF), GroundMotion(DF)
    for gm in (a, b):
        gm.set_window(5.0, 19.0)
    _feed(a, "m/s", order="ZNE")
    _feed(b, "m/s", order="ENZ")
    assert (a.pgv_ms, a.pga_ms2) == pytest.approx((b.pgv_ms, b.pga_ms2), rel=1e-12)


def test_a_lagging_component_holds_the_fold_until_it_arrives() -> None:
    gm = GroundMotion(DF, max_lag_s=3.0)
    gm.set_window(0.0, None)
    t = np.arange(int(DF)) / DF + 5.0
    gm.add("Z", "m/s", np.full(t.size, 0.0), 5.0, DF)
    gm.add("N", "m/s", np.full(t.size, 0.0), 5.0, DF)
    gm.add("E", "m/s", np.full(t.size, 0.0), 5.0, DF)
    gm.add("Z", "m/s", 0.03 * np.ones(t.size), 6.0, DF)  # a step: band-passed, still a clear peak
    gm.add("N", "m/s", 0.04 * np.ones(t.size), 6.0, DF)
    assert gm.pgv_ms == 0.0  # E has not sent second 6 yet: nothing of second 6 is folded
    gm.add("E", "m/s", np.zeros(t.size), 6.0, DF)
    assert gm.pgv_ms > 0.0


def test_state_round_trip_is_exact() -> None:
    whole, split = GroundMotion(DF), GroundMotion(DF)
    for gm in (whole, split):
        gm.set_window(5.0, 19.0)
    _feed(whole, "m/s2")
    t = np.arange(int(20 * DF)) / DF
    for k in range(20):
        split = GroundMotion.from_dict(split.to_dict())
        part = slice(int(k * DF), int((k + 1) * DF))
        for comp in "ZNE":
            split.add(comp, "m/s2", _acceleration(AMPS[comp], t[part]), float(k), DF)
    assert (split.pgv_ms, split.pga_ms2) == (whole.pgv_ms, whole.pga_ms2)


# ---------------------------------------------------------------------------------------------
# The detector engine: a strong-motion station counts as much as a velocity station
# ---------------------------------------------------------------------------------------------

T0 = datetime(2026, 4, 20, 6, 30, tzinfo=UTC)
AREA = Area(code="330110", district="临江区")
BURST_S = 20.0


def _station(device_id: str) -> Device:
    return Device(device_id=device_id, family=Family.SEISMIC, site="net", lat=30.0, lon=120.0, area=AREA, interval_s=1)


def _packets(device_id: str, instrument: str, unit: str, comps: str = "ZNE") -> list[SeismicPacket]:
    """40 s: micro-noise, then from BURST_S the 2 Hz three-component motion above (ramped in)."""
    rng = np.random.default_rng(7)
    t = np.arange(int(40 * DF)) / DF
    out = []
    for comp in comps:
        tb = np.clip(t - BURST_S, 0.0, None)
        wave = _velocity(AMPS[comp], tb) if unit == "m/s" else _acceleration(AMPS[comp], tb)
        noise = rng.normal(0.0, 1e-6 if unit == "m/s" else 1e-5, t.size)
        x = np.where(t >= BURST_S, wave, 0.0) + noise
        for k in range(40):
            out.append(
                SeismicPacket(
                    device_id=device_id,
                    site="net",
                    ts=T0 + timedelta(seconds=k),
                    channel=f"{instrument}{comp}",
                    sample_rate_hz=DF,
                    unit=unit,  # type: ignore[arg-type]
                    samples=x[int(k * DF) : int((k + 1) * DF)].tolist(),
                )
            )
    return sorted(out, key=lambda p: p.ts)  # interleaved by time: Z, N, E of each second


def _run(packets: list[SeismicPacket]) -> list[Detection]:
    device_id = packets[0].device_id
    engine = DetectorEngine(registry=Registry(devices=[_station(device_id)]))
    state, dets = None, []
    for p in packets:
        state, out = engine.process(p, state)
        dets += out
    return dets


@pytest.mark.parametrize(("instrument", "unit"), [("HH", "m/s"), ("HN", "m/s2")])
def test_velocity_and_strong_motion_stations_trigger_and_measure_the_same_intensity(instrument: str, unit: str) -> None:
    dets = _run(_packets("SS1", instrument, unit))
    opened = [d for d in dets if d.state is DetectionState.OPEN]
    assert len(opened) == 1 and opened[0].kind == "p_trigger"
    assert abs((opened[0].onset - T0).total_seconds() - BURST_S) <= 1.0
    peak = max(d.evidence.get("intensity", 0.0) for d in dets)
    assert peak == 6.1  # the hand-computed vector intensity above
    assert max(d.evidence.get("pgv_ms", 0.0) for d in dets) == pytest.approx(VECTOR_PGV, rel=0.02)


def test_the_vertical_alone_measures_less_than_the_three_components() -> None:
    # Z alone: PGV 0.02, I_V = 3.00 x lg 0.02 + 9.77 = 3.00 x (-1.69897) + 9.77 = 4.6731;
    # PGA 0.02 x 4 pi = 0.25133, I_A = 3.17 x (-0.59976) + 6.59 = 4.6887; mean 4.6809 -> 4.7
    dets = _run(_packets("SS2", "HH", "m/s", comps="Z"))
    assert max(d.evidence.get("intensity", 0.0) for d in dets) == 4.7


def test_the_pd_profile_so_far_goes_out_each_second_before_the_full_window() -> None:
    dets = _run(_packets("SS3", "HH", "m/s"))
    opened = next(d for d in dets if d.state is DetectionState.OPEN)
    early = [d for d in dets if d.evidence.get("pd_partial")]
    full = [d for d in dets if "pd_cm" in d.evidence]
    # 1 s and 2 s of P (profiles at 0.5 s steps: 2 and 4 values), then the 3 s window's Pd
    assert [len(d.evidence["pd_profile_cm"]) for d in early] == [2, 4]
    assert len(full) == 1 and len(full[0].evidence["pd_profile_cm"]) == 6
    assert opened.ts < early[0].ts < early[1].ts < full[0].ts
    assert "pd_cm" not in early[0].evidence
    # each early profile is the start of the full one (the same prefixes of the same record)
    assert early[1].evidence["pd_profile_cm"] == full[0].evidence["pd_profile_cm"][:4]


def _ramped_packets(device_id: str, ramp_s: float, scale: float, seconds: int = 45) -> list[SeismicPacket]:
    """Three-component 2 Hz motion from BURST_S growing linearly for ``ramp_s`` seconds to ``scale`` times
    the amplitudes above, then decaying (3 s): the station's intensity climbs a little every packet."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * DF)) / DF
    tb = np.clip(t - BURST_S, 0.0, None)
    envelope = np.clip(tb / ramp_s, 0.0, 1.0) * np.exp(-np.clip(tb - ramp_s - 5.0, 0.0, None) / 3.0)
    out = []
    for comp in "ZNE":
        x = np.where(t >= BURST_S, AMPS[comp] * scale * np.sin(OMEGA * tb) * envelope, 0.0)
        x = x + rng.normal(0.0, 1e-6, t.size)
        for k in range(seconds):
            out.append(
                SeismicPacket(
                    device_id=device_id,
                    site="net",
                    ts=T0 + timedelta(seconds=k),
                    channel=f"HH{comp}",
                    sample_rate_hz=DF,
                    unit="m/s",
                    samples=x[int(k * DF) : int((k + 1) * DF)].tolist(),
                )
            )
    return sorted(out, key=lambda p: p.ts)


def _degree(intensity: float) -> int:
    """GB/T 17742-2020 degree: the instrumental intensity rounded (VI is 5.5 <= I < 6.5)."""
    return math.floor(intensity + 0.5 + 1e-9)


@pytest.mark.parametrize(("ramp_s", "scale"), [(4.0, 1.7), (6.0, 0.6), (6.0, 1.4), (8.0, 0.65), (8.0, 1.35)])
def test_a_new_degree_is_reported_while_the_station_shakes_not_at_its_end(ramp_s: float, scale: float) -> None:
    """Shaking that climbs into the next degree by less than half a degree (here: into V/VI/VII, the
    boundaries of the public floor and of the yellow and orange warnings) is reported in the packet
    where it does, while the trigger is on: the alert engine escalates then, not when the trigger
    ends seconds later. Every degree the station reaches is reported before the trigger clears."""
    dets = _run(_ramped_packets("SS7", ramp_s, scale))
    while_on = [d for d in dets if d.state is not DetectionState.CLEAR]
    [cleared] = [d for d in dets if d.state is DetectionState.CLEAR]
    final = cleared.evidence["intensity"]
    assert _degree(max(d.evidence.get("intensity", 0.0) for d in while_on)) == _degree(final)
