"""The Pd magnitude of a quake whose nearest stations have the S wave inside their 3 s Pd window:
``tocsin.detectors.kernels.seismic.pd_profile`` (station side) and ``tocsin.alerts.kernels.quake``'s
``truncated_pd_magnitude`` / ``magnitude_estimate`` (network side)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.alerts.kernels.quake import (
    Location,
    Pick,
    magnitude_estimate,
    magnitude_from_pd,
    p_only_steps,
    pd_from_magnitude,
    truncated_pd_magnitude,
    xy_to_latlon,
)
from tocsin.detectors.kernels import seismic as sk
from tocsin.simulators import physics

EPI = (30.60, 104.05)
T0 = 1_700_000_000.0


def _mag(pd_cm: float, r_km: float) -> float:
    """Wu & Zhao (2006) written out: M = (log10 Pd + 3.463 + 1.374 log10 R) / 0.729."""
    return (math.log10(pd_cm) + 3.463 + 1.374 * math.log10(r_km)) / 0.729


# ---------------------------------------------------------------------------------------------
# truncated_pd_magnitude: golden values
# ---------------------------------------------------------------------------------------------


def test_flat_profile_needs_no_correction() -> None:
    # Pd already at its peak after 0.5 s (a small event): the 2.0 s window is the 3 s Pd
    m, w, g = truncated_pd_magnitude([0.01] * 6, 0.5, 20.0, 2.1) or (0.0, 0.0, 0.0)
    assert (w, g) == (2.0, 0.0)
    assert m == pytest.approx(_mag(0.01, 20.0), abs=1e-12) and m == pytest.approx(4.459005780579302, abs=1e-12)


def test_linear_growth_is_extrapolated_to_the_full_window() -> None:
    # Pd(t) = 0.02 cm/s * t: the 2.0 s window (0.04 cm) extrapolates to 0.06 cm at 3 s
    profile = [0.01 * k for k in range(1, 7)]
    m, w, g = truncated_pd_magnitude(profile, 0.5, 20.0, 2.0) or (0.0, 0.0, 0.0)
    assert (w, g) == (2.0, 1.0)
    assert m == pytest.approx(_mag(0.06, 20.0), abs=1e-12) and m == pytest.approx(5.526428620611735, abs=1e-12)
    # the shortest usable window (1 s) gives the same magnitude for a linear growth
    m1, w1, _ = truncated_pd_magnitude(profile, 0.5, 20.0, 1.4) or (0.0, 0.0, 0.0)
    assert w1 == 1.0 and m1 == pytest.approx(m, abs=1e-12)


def test_growth_faster_than_linear_is_capped() -> None:
    # Pd ~ t**2: log-log slope 2 over 1.0..1.5 s, capped at 1: 0.09 cm * 3/1.5 = 0.18 cm
    profile = [0.01 * k * k for k in range(1, 7)]
    m, w, g = truncated_pd_magnitude(profile, 0.5, 20.0, 1.6) or (0.0, 0.0, 0.0)
    assert (w, g) == (1.5, 1.0)
    assert m == pytest.approx(_mag(0.18, 20.0), abs=1e-12) and m == pytest.approx(6.180915938471353, abs=1e-12)


def test_window_limits() -> None:
    profile = [0.01 * k for k in range(1, 7)]
    assert truncated_pd_magnitude(profile, 0.5, 20.0, 0.9) is None  # under the 1 s minimum
    assert truncated_pd_magnitude(profile[:1], 0.5, 20.0, 3.0) is None  # only 0.5 s of profile
    assert truncated_pd_magnitude([0.0] * 6, 0.5, 20.0, 2.0) is None
    # usable time beyond the relation's window: the full-window Pd, uncorrected
    assert truncated_pd_magnitude(profile, 0.5, 20.0, 5.0) == (_mag(0.06, 20.0), 3.0, 0.0)
    # a profile shorter than the usable time: its last window
    m, w, g = truncated_pd_magnitude(profile[:3], 0.5, 20.0, 2.9) or (0.0, 0.0, 0.0)
    assert (w, g) == (1.5, 1.0) and m == pytest.approx(_mag(0.06, 20.0), abs=1e-12)
    with pytest.raises(ValueError):
        truncated_pd_magnitude(profile, 0.0, 20.0, 2.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=6),
    st.floats(1.0, 3.5),
    st.floats(5.0, 80.0),
)
def test_correction_is_bounded(increments: list[float], usable: float, r: float) -> None:
    """Whatever the profile (a running peak: non-decreasing), the magnitude lies between the one of
    the cut window's Pd and that of a linear extrapolation of it to 3 s."""
    profile = list(np.cumsum(increments))
    got = truncated_pd_magnitude(profile, 0.5, r, usable)
    if got is None:
        return
    m, w, g = got
    pd_w = profile[round(w / 0.5) - 1]
    assert 0.0 <= g <= 1.0
    assert magnitude_from_pd(pd_w, r) - 1e-9 <= m <= magnitude_from_pd(pd_w * 3.0 / w, r) + 1e-9


# ---------------------------------------------------------------------------------------------
# magnitude_estimate: which stations, which windows
# ---------------------------------------------------------------------------------------------


def _pick(dx: float, dy: float, name: str, lag_s: float = 0.0, **kw: object) -> tuple[Pick, float]:
    lat, lon = xy_to_latlon(dx, dy, *EPI)
    loc = Location(EPI[0], EPI[1], 10.0, T0, 0.0, 3)
    r = loc.hypo_km(lat, lon)
    return Pick(name, lat, lon, T0 + r / 6.0 + lag_s, **kw), r  # type: ignore[arg-type]


LOC = Location(EPI[0], EPI[1], 10.0, T0, 0.0, 3)


def test_s_arrival_is_counted_from_the_pick_not_from_the_p_arrival() -> None:
    # 28 km epicentral: hypo 29.7 km, S-P 3.54 s: clean when picked on time, but a trigger 0.4 s
    # late leaves 3.14 s to the S wave, inside the 3 s window plus the 0.2 s margin
    on_time, r = _pick(28.0, 0.0, "A", pd_cm=pd_from_magnitude(5.0, 29.7))
    late, _ = _pick(28.0, 0.0, "A", lag_s=0.4, pd_cm=pd_from_magnitude(5.0, 29.7))
    e = magnitude_estimate([on_time], LOC)
    assert e.n_full == 1 and e.contaminated == () and e.stations[0].s_after_pick_s == pytest.approx(r / 3.5 - r / 6.0)
    e = magnitude_estimate([late], LOC)
    assert e.magnitude is None and e.contaminated == ("A",)


def test_near_stations_are_cut_before_s_and_mixed_with_full_windows() -> None:
    # near: 10 km epicentral, hypo 14.1 km, S 1.68 s after the pick: window cut to 1.0 s (1.68 - 0.2)
    rn = _pick(10.0, 0.0, "N")[1]
    flat = pd_from_magnitude(4.8, rn)
    near, _ = _pick(
        10.0, 0.0, "N", pd_cm=flat * 20, pd_profile_cm=(flat, flat, flat * 9, flat * 20, flat * 20, flat * 20)
    )
    e = magnitude_estimate([near], LOC)
    [s] = e.stations
    assert (s.full, s.window_s, s.growth) == (False, 1.0, 0.0)
    assert e.magnitude == pytest.approx(4.8, abs=1e-9) and e.n_full == 0
    # without its profile the near station is left out: no magnitude rather than an S-inflated one
    bare = Pick("N", near.lat, near.lon, near.t_s, pd_cm=flat * 20)
    assert magnitude_estimate([bare], LOC).magnitude is None
    assert magnitude_estimate([bare], LOC).contaminated == ("N",)
    # far stations with full windows join the median
    far1, r1 = _pick(0.0, 35.0, "F1")
    far2, r2 = _pick(-30.0, -20.0, "F2")
    far1 = Pick("F1", far1.lat, far1.lon, far1.t_s, pd_cm=pd_from_magnitude(5.0, r1))
    far2 = Pick("F2", far2.lat, far2.lon, far2.t_s, pd_cm=pd_from_magnitude(5.2, r2))
    e = magnitude_estimate([far2, near, far1], LOC)
    assert [x.station_id for x in e.stations] == ["F1", "F2", "N"] and e.n_full == 2
    assert e.magnitude == pytest.approx(5.0, abs=1e-9)
    assert rn == pytest.approx(14.142, abs=1e-3)
    # as plain mappings (JSON from a topic): the same
    e2 = magnitude_estimate([p.to_dict() for p in (far2, near, far1)], LOC.to_dict())
    assert e2 == e


# The Pd profile (every 0.5 s) of bad_day's nearest station (M4.8, hypocentral 18.3 km, S 2.2 s after P),
# as its detector sent it: P only to 2.0 s, the S wave in the 2.5 s and 3.0 s windows.
SS06_PROFILE = (0.015441, 0.016467, 0.017453, 0.018453, 0.104256, 0.265602)


def test_the_p_only_part_of_a_profile_ends_at_the_s_wave_jump() -> None:
    # steps to 2.0 s: exponents ln(0.016467/0.015441)/ln 2 = 0.093, ln(0.017453/0.016467)/ln 1.5 = 0.144,
    # ln(0.018453/0.017453)/ln(4/3) = 0.194; to 2.5 s: ln(0.104256/0.018453)/ln 1.25 = 7.76 > 3: four windows
    assert p_only_steps(SS06_PROFILE) == 4
    assert p_only_steps([0.01 * k * k for k in range(1, 7)]) == 6  # Pd ~ t**2 (a growing crack): all P
    assert p_only_steps([0.01 * k**4 for k in range(1, 7)]) == 1  # ~ t**4: the second window is already new
    assert p_only_steps([0.01, 0.0, 0.02]) == 1 and p_only_steps([]) == 0


@pytest.mark.parametrize("s_after_s", [2.74, 3.5])
def test_a_late_predicted_s_wave_does_not_let_the_s_wave_into_the_window(s_after_s: float) -> None:
    # A location from the first picks a few km off puts this station's S wave 2.74 s after its pick (the
    # 2.5 s window looks P only) or even 3.5 s after (the full 3 s Pd looks clean); the data show it at
    # about 2.2 s. Before: 2.5 s window, growth ln(0.104256/0.016467)/ln 2.5 = 2.0 capped at 1,
    # Pd(3) = 0.104256 * 3/2.5 = 0.1251 cm: M6.06; or the full 0.265602 cm: M6.50 (orange at the targets).
    # Now both cut at 2.0 s: growth g = ln(0.018453/0.016467)/ln 2 = 0.16428,
    # Pd(3) = 0.018453 * 1.5**0.16430 = 0.019724 cm, R = sqrt(20**2 + 10**2) = 22.3607 km:
    # M = (lg 0.019724 + 3.463 + 1.374 * lg 22.3607) / 0.729 = (-1.70501 + 3.463 + 1.85419) / 0.729 = 4.955
    r = math.hypot(20.0, 10.0)
    pick, r2 = _pick(
        20.0, 0.0, "SS06", lag_s=r / 3.5 - s_after_s - r / 6.0, pd_cm=SS06_PROFILE[-1], pd_profile_cm=SS06_PROFILE
    )
    assert r2 == pytest.approx(r)
    e = magnitude_estimate([pick], LOC)
    [sm] = e.stations
    assert sm.s_after_pick_s == pytest.approx(s_after_s)
    assert (sm.full, sm.window_s) == (False, 2.0) and sm.growth == pytest.approx(0.16428, abs=1e-5)
    assert e.magnitude == pytest.approx(4.955, abs=1e-3)
    assert e.magnitude == pytest.approx(_mag(0.018453 * 1.5 ** (math.log(0.018453 / 0.016467) / math.log(2)), r))


# ---------------------------------------------------------------------------------------------
# pd_profile (station side) and the whole chain on the simulator's waveform
# ---------------------------------------------------------------------------------------------


def test_pd_profile_prefixes_are_independent_of_later_samples() -> None:
    df = 100.0
    t = np.arange(300) / df
    p_wave = 1e-4 * np.sin(2 * np.pi * 4.0 * t)
    s_wave = np.where(t >= 2.0, 5e-3 * np.sin(2 * np.pi * 2.0 * (t - 2.0)), 0.0)
    clean = sk.pd_profile(p_wave, df)
    mixed = sk.pd_profile(p_wave + s_wave, df)
    assert len(clean) == len(mixed) == 6
    assert mixed[:4] == clean[:4]  # the windows ending at or before 2.0 s never see the S wave
    assert mixed[5] > 10 * clean[5]
    # the last window is the full-window Pd as the detector computes it
    assert mixed[5] == sk.pd_from_displacement(sk.velocity_to_displacement(p_wave + s_wave, df))
    # a 4 Hz sine of velocity amplitude a: displacement amplitude a / (2 pi 4) (less the high-pass)
    assert clean[5] == pytest.approx(100 * 1e-4 / (2 * np.pi * 4.0) * 2, rel=0.1)
    assert sk.pd_profile(p_wave[:149], df) == clean[:2]  # 1.49 s of data: two whole windows
    with pytest.raises(ValueError):
        sk.pd_profile(p_wave, df, step_s=0.0)


@pytest.mark.parametrize(("hypo_east_km", "depth_km"), [(16.4, 8.0), (21.8, 8.0)])
def test_simulated_m48_near_station_reads_m48_from_its_p_only_window(hypo_east_km: float, depth_km: float) -> None:
    """bad_day's geometry: an M4.8, 8 km deep, stations 18 and 23 km away (S-P 2.2 and 2.8 s). The
    3 s Pd reads M6+; the window cut before S reads M4.8 within 0.1."""
    q = physics.Quake(EPI[0], EPI[1], depth_km, 4.8, T0)
    lat, lon = xy_to_latlon(hypo_east_km, 0.0, *EPI)
    a = physics.arrivals(q, lat, lon)
    df = 100.0
    t0 = a.p_s - 12.0
    v = physics.quake_waveform(q, lat, lon, t0, int(20 * df), df, np.random.default_rng(7), noise=False)
    pick_t = a.p_s + 0.1  # the trigger lags the onset
    i = round((pick_t - t0) * df)
    window = v[i : i + 300]
    full = sk.pd_from_displacement(sk.velocity_to_displacement(window, df))
    assert magnitude_from_pd(full, a.hypo_km) > 5.8  # S-inflated
    loc = Location(EPI[0], EPI[1], depth_km, T0, 0.0, 3)
    pick = Pick("N", lat, lon, pick_t, pd_cm=full, pd_profile_cm=tuple(sk.pd_profile(window, df)))
    e = magnitude_estimate([pick], loc)
    assert e.n == 1 and not e.stations[0].full
    assert e.magnitude == pytest.approx(4.8, abs=0.1)
