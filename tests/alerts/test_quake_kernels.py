"""Unit tests for alerts/kernels/quake.py: coincidence, location, magnitude, predicted shaking and
warning time."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.alerts.kernels.quake import (
    EARTH_RADIUS_KM,
    Coincidence,
    Location,
    PgvModel,
    Pick,
    blind_zone_radius_km,
    coincidence,
    haversine_km,
    local_xy_km,
    locate,
    magnitude_estimate,
    magnitude_from_pd,
    pd_from_magnitude,
    predicted_intensity,
    predicted_pgv_ms,
    s_warning_time_s,
    xy_to_latlon,
)

EPI = (30.60, 104.05)
DEPTH_KM = 10.0
VP = 6.0
T0 = 1_700_000_000.0
# Station offsets (east km, north km) from the epicentre: the network surrounds it.
OFFSETS = [(20.0, 5.0), (-15.0, 18.0), (-8.0, -25.0), (30.0, -20.0), (5.0, 35.0)]


def _station(dx: float, dy: float) -> tuple[float, float]:
    return xy_to_latlon(dx, dy, *EPI)


def _exact_picks(epi: tuple[float, float] = EPI, t0: float = T0, **extra: Any) -> list[Pick]:
    picks = []
    for i, (dx, dy) in enumerate(OFFSETS):
        lat, lon = _station(dx, dy)
        hypo = math.hypot(haversine_km(*epi, lat, lon), DEPTH_KM)
        picks.append(Pick(f"ST{i}", lat, lon, t0 + hypo / VP, **extra))
    return picks


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def test_haversine_known_values() -> None:
    assert haversine_km(0.0, 0.0, 0.0, 0.0) == 0.0
    # one degree along a meridian / the equator is R * pi / 180
    assert haversine_km(10.0, 20.0, 11.0, 20.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    assert haversine_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(EARTH_RADIUS_KM * math.pi, rel=1e-12)
    # symmetric
    assert haversine_km(30.0, 104.0, 31.2, 105.5) == haversine_km(31.2, 105.5, 30.0, 104.0)


def test_local_xy_round_trip_and_scale() -> None:
    x, y = local_xy_km(30.7, 104.3, 30.6, 104.05)
    assert isinstance(x, float) and isinstance(y, float)
    lat, lon = xy_to_latlon(x, y, 30.6, 104.05)
    assert (lat, lon) == (pytest.approx(30.7, abs=1e-12), pytest.approx(104.3, abs=1e-12))
    # along the axes through the origin the projection is exact
    _, yn = local_xy_km(31.6, 104.05, 30.6, 104.05)
    assert yn == pytest.approx(haversine_km(30.6, 104.05, 31.6, 104.05), rel=1e-12)
    # close to the origin it agrees with the great-circle distance
    assert math.hypot(x, y) == pytest.approx(haversine_km(30.6, 104.05, 30.7, 104.3), rel=2e-3)
    # arrays, and longitudes wrapped across the antimeridian
    xs, ys = local_xy_km(np.array([0.0, 0.0]), np.array([179.9, -179.9]), 0.0, 180.0)
    assert xs.shape == (2,) and xs[0] == pytest.approx(-xs[1]) and xs[1] > 0


# ---------------------------------------------------------------------------------------------
# Coincidence
# ---------------------------------------------------------------------------------------------


def test_coincidence_accepts_a_consistent_network() -> None:
    picks = _exact_picks()
    res = coincidence(picks, window_s=10.0, min_weight=3.0)
    assert isinstance(res, Coincidence)
    assert set(res.station_ids) == {f"ST{i}" for i in range(5)}
    assert res.weight == 5.0 and res.n == 5 and res.confirmed
    assert res.first_t_s == min(p.t_s for p in picks)
    assert [p.t_s for p in res.picks] == sorted(p.t_s for p in picks)


def test_coincidence_rejects_late_noise_trigger() -> None:
    picks = _exact_picks()
    lat, lon = _station(10.0, 10.0)  # a sixth station inside the network, triggered by local noise 20 s later
    picks.append(Pick("NOISE", lat, lon, T0 + 20.0))
    res = coincidence(picks, window_s=30.0, min_weight=3.0)
    assert "NOISE" not in res.station_ids
    assert len(res.station_ids) == 5 and res.weight == 5.0


def test_coincidence_rejects_physically_too_early_pick() -> None:
    picks = _exact_picks()
    lat, lon = _station(-20.0, 0.0)
    # 25 km west of the epicentre, but picked 4 s before the origin: far too early for its neighbours
    picks.append(Pick("EARLY", lat, lon, T0 - 4.0))
    res = coincidence(picks, window_s=30.0, min_weight=3.0)
    assert "EARLY" not in res.station_ids
    assert res.weight == 5.0
    assert res.first_t_s == min(p.t_s for p in picks[:5])


def test_coincidence_window_and_single_station() -> None:
    picks = _exact_picks()
    # a window shorter than the spread of the picks cuts the cluster
    spread = max(p.t_s for p in picks) - min(p.t_s for p in picks)
    short = coincidence(picks, window_s=spread / 2, min_weight=5.0)
    assert 1 <= short.n < 5 and not short.confirmed
    # one station firing twice counts once
    twice = [picks[0], Pick(picks[0].station_id, picks[0].lat, picks[0].lon, picks[0].t_s + 0.5)]
    res = coincidence(twice, window_s=10.0, min_weight=2.0)
    assert res.station_ids == (picks[0].station_id,) and res.weight == 1.0 and not res.confirmed
    empty = coincidence([], window_s=10.0, min_weight=0.0)
    assert empty.station_ids == () and empty.weight == 0.0 and not empty.confirmed and empty.first_t_s is None


def test_coincidence_weights_are_honoured() -> None:
    a = Pick("A", 30.0, 104.0, T0, weight=3.0)
    # B and C are close to each other and agree, but both conflict with A (2 km away, 5 s apart)
    b_lat, b_lon = xy_to_latlon(2.0, 0.0, 30.0, 104.0)
    c_lat, c_lon = xy_to_latlon(2.0, 1.0, 30.0, 104.0)
    b = Pick("B", b_lat, b_lon, T0 + 5.0, weight=1.0)
    c = Pick("C", c_lat, c_lon, T0 + 5.1, weight=1.0)
    res = coincidence([a, b, c], window_s=10.0, min_weight=3.0)
    assert res.station_ids == ("A",) and res.weight == 3.0 and res.confirmed
    # lighter A: the pair wins
    res = coincidence([Pick("A", a.lat, a.lon, a.t_s, weight=1.5), b, c], window_s=10.0, min_weight=3.0)
    assert res.station_ids == ("B", "C") and res.weight == 2.0 and not res.confirmed
    # MEMS-grade stations at half weight need twice as many
    half = [Pick(p.station_id, p.lat, p.lon, p.t_s, weight=0.5) for p in _exact_picks()]
    res = coincidence(half, window_s=10.0, min_weight=3.0)
    assert res.weight == 2.5 and not res.confirmed
    assert coincidence(half, window_s=10.0, min_weight=2.5).confirmed


def test_coincidence_accepts_json_dicts() -> None:
    dicts = [p.to_dict() for p in _exact_picks()]
    assert coincidence(dicts, 10.0, 3.0) == coincidence(_exact_picks(), 10.0, 3.0)
    assert Pick.from_dict(dicts[0]) == _exact_picks()[0]


def test_coincidence_finds_best_cluster_among_several_outliers() -> None:
    picks = _exact_picks()
    for k, (dx, dy, dt) in enumerate([(12.0, -3.0, 15.0), (-25.0, 10.0, 25.0), (0.0, 30.0, -6.0)]):
        lat, lon = _station(dx, dy)
        picks.append(Pick(f"BAD{k}", lat, lon, T0 + dt))
    res = coincidence(picks, window_s=40.0, min_weight=3.0)
    assert set(res.station_ids) == {f"ST{i}" for i in range(5)}


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(7))), st.lists(st.floats(-3.0, 3.0), min_size=7, max_size=7))
def test_coincidence_is_order_independent_and_consistent(order: list[int], jitter: list[float]) -> None:
    base = _exact_picks()
    for k, (dx, dy) in enumerate([(12.0, -3.0), (-25.0, 10.0)]):
        lat, lon = _station(dx, dy)
        base.append(Pick(f"X{k}", lat, lon, T0 + 5.0))
    picks = [Pick(p.station_id, p.lat, p.lon, p.t_s + j) for p, j in zip(base, jitter, strict=True)]
    res = coincidence(picks, window_s=12.0, min_weight=3.0)
    assert coincidence([picks[i] for i in order], window_s=12.0, min_weight=3.0) == res
    # the returned cluster satisfies the definition
    assert res.first_t_s is not None
    for p in res.picks:
        assert p.t_s - res.first_t_s <= 12.0
        for q in res.picks:
            if p is not q:
                d = haversine_km(p.lat, p.lon, q.lat, q.lon)
                assert abs(p.t_s - q.t_s) <= d / 6.0 + 1.0
    assert len(set(res.station_ids)) == len(res.station_ids)


def _brute_best(picks: list[Pick], window_s: float) -> tuple[float, int]:
    best = (0.0, 0)
    for mask in range(1, 1 << len(picks)):
        sub = [p for k, p in enumerate(picks) if mask >> k & 1]
        if len({p.station_id for p in sub}) < len(sub):
            continue
        t_first = min(p.t_s for p in sub)
        if any(p.t_s - t_first > window_s for p in sub):
            continue
        if any(
            abs(p.t_s - q.t_s) > haversine_km(p.lat, p.lon, q.lat, q.lon) / 6.0 + 1.0
            for i, p in enumerate(sub)
            for q in sub[i + 1 :]
        ):
            continue
        best = max(best, (math.fsum(p.weight for p in sub), len(sub)))
    return best


_pick_strategy = st.tuples(
    st.sampled_from(["A", "B", "C", "D", "E", "F", "G"]),
    st.floats(-30.0, 30.0),
    st.floats(-30.0, 30.0),
    st.floats(0.0, 15.0),
    st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_pick_strategy, min_size=1, max_size=9), st.sampled_from([3.0, 8.0, 20.0]))
def test_coincidence_matches_brute_force(raw: list[tuple[str, float, float, float, float]], window_s: float) -> None:
    picks = []
    for sid, dx, dy, dt, w in raw:
        lat, lon = _station(dx, dy)
        picks.append(Pick(sid, lat, lon, T0 + dt, weight=w))
    res = coincidence(picks, window_s=window_s, min_weight=1.0)
    assert (res.weight, res.n) == _brute_best(picks, window_s)


# ---------------------------------------------------------------------------------------------
# Location
# ---------------------------------------------------------------------------------------------


def test_locate_exact_picks() -> None:
    loc = locate(_exact_picks())
    assert isinstance(loc, Location)
    assert haversine_km(loc.lat, loc.lon, *EPI) < 1.0
    assert abs(loc.origin_t_s - T0) < 0.2
    assert loc.n == 5 and loc.depth_km == DEPTH_KM and loc.rms_s < 0.05


def test_locate_epicentre_off_the_first_station_and_outside_the_coarse_node() -> None:
    epi = xy_to_latlon(7.33, -11.71, *EPI)  # not on any grid node
    loc = locate(_exact_picks(epi=epi))
    assert haversine_km(loc.lat, loc.lon, *epi) < 0.2
    assert abs(loc.origin_t_s - T0) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_locate_with_gaussian_pick_noise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    picks = [Pick(p.station_id, p.lat, p.lon, p.t_s + rng.normal(0.0, 0.2)) for p in _exact_picks()]
    loc = locate(picks)
    assert haversine_km(loc.lat, loc.lon, *EPI) < 5.0
    assert abs(loc.origin_t_s - T0) < 1.0
    assert 0.0 < loc.rms_s < 0.5


def test_locate_needs_three_picks_and_accepts_dicts() -> None:
    picks = _exact_picks()
    with pytest.raises(ValueError):
        locate(picks[:2])
    loc = locate([p.to_dict() for p in picks[:3]])
    assert loc.n == 3 and loc.rms_s < 0.05  # three picks, three unknowns: an exact fit
    assert Location.from_dict(loc.to_dict()) == loc


# ---------------------------------------------------------------------------------------------
# Magnitude
# ---------------------------------------------------------------------------------------------


def test_magnitude_from_pd_golden() -> None:
    pd = 10.0 ** (-3.463 + 0.729 * 6.0 - 1.374 * math.log10(10.0))
    assert pd == pytest.approx(0.34435, rel=1e-4)  # 10 ** -0.463
    assert pd_from_magnitude(6.0, 10.0) == pytest.approx(pd, rel=1e-12)
    assert magnitude_from_pd(pd, 10.0) == pytest.approx(6.0, abs=1e-12)
    # ten times the distance at the same Pd means 1.374/0.729 magnitude units more
    assert magnitude_from_pd(pd, 100.0) - 6.0 == pytest.approx(1.374 / 0.729, abs=1e-12)
    for bad in ((0.0, 10.0), (-1.0, 10.0), (0.1, 0.0), (math.nan, 10.0)):
        with pytest.raises(ValueError):
            magnitude_from_pd(*bad)


def test_network_magnitude_is_median_of_usable_stations() -> None:
    loc = Location(EPI[0], EPI[1], DEPTH_KM, T0, 0.0, 5)
    picks = []
    for k, (p, m) in enumerate(zip(_exact_picks(), [5.8, 6.0, 6.1, 7.5, 6.05], strict=True)):
        pd = pd_from_magnitude(m, loc.hypo_km(p.lat, p.lon)) if k != 4 else None
        picks.append(Pick(p.station_id, p.lat, p.lon, p.t_s, pd_cm=pd))
    # pd_window_s=0: no station is too near for its Pd window
    assert magnitude_estimate(picks, loc, pd_window_s=0.0).magnitude == pytest.approx((6.0 + 6.1) / 2, abs=1e-9)
    assert magnitude_estimate(picks[:3], loc.to_dict(), pd_window_s=0.0).magnitude == pytest.approx(6.0, abs=1e-9)
    no_pd = [Pick(p.station_id, p.lat, p.lon, p.t_s) for p in picks]
    assert magnitude_estimate(no_pd, loc).magnitude is None
    assert magnitude_estimate([], loc).magnitude is None


def test_network_magnitude_leaves_out_stations_whose_s_wave_falls_in_the_pd_window() -> None:
    loc = Location(EPI[0], EPI[1], DEPTH_KM, T0, 0.0, 5)
    picks = _exact_picks()
    hypo = [loc.hypo_km(p.lat, p.lon) for p in picks]
    s_minus_p = [r * (1 / 3.5 - 1 / 6.0) for r in hypo]
    # ST0 is 22.9 km away: its S wave comes 2.7 s after P, inside a 3 s Pd window
    assert s_minus_p[0] < 3.0 and all(x >= 3.0 for x in s_minus_p[1:])
    # ST0's Pd, contaminated by S, reads M7.0; the others read the true M5.5
    mags = [7.0, 5.5, 5.5, 5.5, 5.5]
    with_pd = [
        Pick(p.station_id, p.lat, p.lon, p.t_s, pd_cm=pd_from_magnitude(m, r))
        for p, m, r in zip(picks, mags, hypo, strict=True)
    ]
    assert magnitude_estimate(with_pd, loc).magnitude == pytest.approx(5.5, abs=1e-9)
    # with only the near station (and no Pd profile to cut its window before S), no magnitude rather
    # than its S-inflated one: a first warning two units too high is a false red
    assert magnitude_estimate(with_pd[:1], loc).magnitude is None
    # a 2 s window keeps ST0: median of [7.0, 5.5 x4]
    assert magnitude_estimate(with_pd, loc, pd_window_s=2.0).magnitude == pytest.approx(5.5, abs=1e-9)
    assert magnitude_estimate(with_pd[:2], loc, pd_window_s=2.0).magnitude == pytest.approx(6.25, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Predicted shaking
# ---------------------------------------------------------------------------------------------


def test_predicted_pgv_formula_and_intensity_golden() -> None:
    m = PgvModel()
    expected_cms = 10.0 ** (m.a + m.b * 6.0 - m.c * math.log10(10.0 + m.d_km))
    assert predicted_pgv_ms(6.0, 10.0) == pytest.approx(expected_cms / 100.0, rel=1e-12)
    # the defaults reproduce the intensity relation I = 5.7123 + 1.3626 M - 4.2903 lg(R + 25)
    i_rel = 5.7123 + 1.3626 * 6.0 - 4.2903 * math.log10(35.0)
    assert 3.0 * math.log10(predicted_pgv_ms(6.0, 10.0)) + 9.77 == pytest.approx(i_rel, abs=1e-9)
    assert predicted_intensity(6.0, 10.0) == 7.3
    assert predicted_intensity(7.0, 10.0) == 8.6
    # clamps
    assert predicted_intensity(2.0, 300.0) == 1.0
    assert predicted_intensity(9.5, 0.0) == 12.0
    # a configurable model
    assert predicted_pgv_ms(6.0, 10.0, PgvModel(a=0.0, b=0.5, c=1.0, d_km=0.0)) == pytest.approx(
        10.0 ** (3.0 - 1.0) / 100.0
    )


@pytest.mark.parametrize(
    ("mag", "hypo_km", "intensity", "pgv_cm_s", "roman"),
    [
        (5.5, 10.0, 6.6, 8.66, 7),  # an M5.5's epicentral intensity is about VII
        (5.5, 40.0, 5.4, 3.57, 5),  # V-VI a few tens of km away
        (5.5, 100.0, 4.2, 1.40, 4),
        (4.5, 10.0, 5.2, 3.04, 5),
        (6.5, 10.0, 7.9, 24.64, 8),
        (7.0, 100.0, 6.3, 6.73, 6),
    ],
)
def test_predicted_intensity_golden_against_expected_intensities(
    mag: float, hypo_km: float, intensity: float, pgv_cm_s: float, roman: int
) -> None:
    """Golden values of the default relation, and the integer intensity they round to (GB/T
    17742-2020: 6.5 <= I < 7.5 is VII) against what an M at that distance is expected to do."""
    assert predicted_intensity(mag, hypo_km) == intensity
    assert predicted_pgv_ms(mag, hypo_km) * 100.0 == pytest.approx(pgv_cm_s, abs=0.005)
    assert math.floor(intensity + 0.5) == roman


def test_predicted_intensity_monotone() -> None:
    dists = np.linspace(0.0, 300.0, 301)
    for mag in (4.0, 5.0, 6.0, 7.0, 8.0):
        pgv = [predicted_pgv_ms(mag, r) for r in dists]
        ii = [predicted_intensity(mag, r) for r in dists]
        assert all(a > b for a, b in zip(pgv, pgv[1:], strict=False))
        assert all(a >= b for a, b in zip(ii, ii[1:], strict=False))
        assert ii[0] > ii[-1]
    mags = np.linspace(3.0, 8.5, 56)
    for r in (0.0, 10.0, 50.0, 150.0):
        ii = [predicted_intensity(m, r) for m in mags]
        assert all(a <= b for a, b in zip(ii, ii[1:], strict=False))
        assert ii[0] < ii[-1]


@settings(max_examples=200, deadline=None)
@given(st.floats(3.0, 8.5), st.floats(0.0, 400.0), st.floats(0.01, 50.0))
def test_predicted_intensity_monotone_property(mag: float, r: float, dr: float) -> None:
    assert predicted_intensity(mag, r + dr) <= predicted_intensity(mag, r)
    assert predicted_intensity(mag + dr / 50.0, r) >= predicted_intensity(mag, r)
    assert 1.0 <= predicted_intensity(mag, r) <= 12.0


# ---------------------------------------------------------------------------------------------
# Warning time
# ---------------------------------------------------------------------------------------------


def test_s_warning_time_golden() -> None:
    loc = Location(30.0, 104.0, 10.0, T0, 0.0, 5)
    # 40 km due north along the meridian
    target = (30.0 + math.degrees(40.0 / EARTH_RADIUS_KM), 104.0)
    assert loc.epi_km(*target) == pytest.approx(40.0, abs=1e-9)
    w = s_warning_time_s(loc, *target, alert_t_s=T0 + 8.0)
    assert w == pytest.approx(math.sqrt(40.0**2 + 10.0**2) / 3.5 - 8.0, abs=1e-6)
    assert w == pytest.approx(3.78, abs=0.005)
    # the epicentre itself is in the blind zone; mapping input works too
    assert s_warning_time_s(loc.to_dict(), 30.0, 104.0, T0 + 8.0) == pytest.approx(10.0 / 3.5 - 8.0)
    assert s_warning_time_s(loc, *target, T0 + 8.0, vs_km_s=4.0) == pytest.approx(
        math.sqrt(1700.0) / 4.0 - 8.0, abs=1e-6
    )


def test_blind_zone_radius_matches_zero_warning_time() -> None:
    loc = Location(30.0, 104.0, 10.0, T0, 0.0, 5)
    r = blind_zone_radius_km(loc, T0 + 8.0)
    assert r == pytest.approx(math.sqrt(28.0**2 - 10.0**2))
    target = (30.0 + math.degrees(r / EARTH_RADIUS_KM), 104.0)
    assert s_warning_time_s(loc, *target, T0 + 8.0) == pytest.approx(0.0, abs=1e-9)
    assert blind_zone_radius_km(loc, T0 + 1.0) == 0.0  # S has not reached the surface yet


# Three stations, two of them at the same distance from the epicentre (the same arrival time): which of
# the two "triggered first" is only the tie-break of their names. The epicentre lies 9.6 km south of
# the middle of A and B; with three picks there are two exact solutions, and a grid centred on the
# earliest station finds one or the other (0.01 km or 23.9 km off) depending on which.
_TIE = {"A": (4.783927096455119, -9.602535724205573), "B": (-4.783927096455119, -9.602535724205573)}
_TIE_C = (-23.99185872044211, -7.838825186665815)


def _tie_picks(names: dict[str, str]) -> list[Pick]:
    picks = []
    for sid, (dx, dy) in [*_TIE.items(), ("C", _TIE_C)]:
        lat, lon = _station(dx, dy)
        picks.append(Pick(names[sid], lat, lon, T0 + math.hypot(haversine_km(*EPI, lat, lon), DEPTH_KM) / VP))
    t_a = picks[0].t_s
    return [Pick(p.station_id, p.lat, p.lon, t_a if p is picks[1] else p.t_s) for p in picks]  # an exact tie


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_first_location_does_not_depend_on_which_station_triggered_first(order: tuple[int, ...]) -> None:
    """The same picks, in any order and with the tied stations' names swapped (so that either one is the
    earliest after the tie-break), give the same location."""
    ref = locate(_tie_picks({"A": "ST-A", "B": "ST-B", "C": "ST-C"}))
    swapped = _tie_picks({"A": "ST-B", "B": "ST-A", "C": "ST-C"})
    loc = locate([swapped[i] for i in order])
    assert haversine_km(loc.lat, loc.lon, ref.lat, ref.lon) < 1e-6
    assert loc.origin_t_s == pytest.approx(ref.origin_t_s, abs=1e-6)
    assert loc.rms_s == pytest.approx(ref.rms_s, abs=1e-9) and loc.rms_s < 0.05


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-40.0, 40.0), st.floats(-40.0, 40.0)), min_size=3, max_size=5, unique=True),
    st.floats(-20.0, 20.0),
    st.floats(-20.0, 20.0),
    st.randoms(use_true_random=False),
)
def test_locate_depends_on_the_picks_not_on_their_order_or_names(
    offsets: list[tuple[float, float]], ex: float, ey: float, rnd: random.Random
) -> None:
    """Any network, its two earliest picks tied: the picks shuffled and the stations renamed (so that the
    tie-break by name makes another station the earliest) give the very same location."""
    epi = xy_to_latlon(ex, ey, *EPI)
    picks = []
    for i, (dx, dy) in enumerate(offsets):
        lat, lon = _station(dx, dy)
        picks.append(Pick(f"S{i}", lat, lon, T0 + math.hypot(haversine_km(*epi, lat, lon), DEPTH_KM) / VP))
    first, second = sorted(picks, key=lambda p: p.t_s)[:2]
    picks = [Pick(p.station_id, p.lat, p.lon, first.t_s if p is second else p.t_s) for p in picks]
    names = [p.station_id for p in picks]
    rnd.shuffle(names)
    renamed = [Pick(name, p.lat, p.lon, p.t_s) for name, p in zip(names, picks, strict=True)]
    rnd.shuffle(renamed)
    assert locate(renamed) == locate(picks)
