"""Unit tests for alerts/kernels/fire.py: cross-bearing fire location from lookout towers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.alerts.kernels.fire import FireFix, destination, initial_bearing_deg, intersect_bearings

R_KM = 6371.0
TOWER_A = (40.0, 116.0)


def _gc_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Independent haversine, so the tests do not check the module against itself."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * R_KM * math.asin(math.sqrt(h))


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Independent initial great-circle bearing, degrees clockwise from north."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def _tower_b() -> tuple[float, float]:
    """10 km due east of tower A (along the great circle)."""
    return destination(*TOWER_A, 90.0, 10.0)


def _fire() -> tuple[float, float]:
    return destination(*TOWER_A, 45.0, 9.0)


def _report(tower: tuple[float, float], fire: tuple[float, float], sigma: float = 1.0, noise: float = 0.0):
    return (tower[0], tower[1], _bearing(*tower, *fire) + noise, sigma)


def test_helpers_agree_with_independent_formulas() -> None:
    b = _tower_b()
    assert _gc_km(*TOWER_A, *b) == pytest.approx(10.0, abs=1e-9)
    assert initial_bearing_deg(*TOWER_A, *b) == pytest.approx(90.0, abs=1e-9)
    f = _fire()
    assert _gc_km(*TOWER_A, *f) == pytest.approx(9.0, abs=1e-9)
    assert initial_bearing_deg(*TOWER_A, *f) == pytest.approx(_bearing(*TOWER_A, *f), abs=1e-12)


def test_two_towers_exact_bearings() -> None:
    b, f = _tower_b(), _fire()
    fix = intersect_bearings([_report(TOWER_A, f), _report(b, f)])
    assert isinstance(fix, FireFix)
    assert _gc_km(fix.lat, fix.lon, *f) < 0.010  # within 10 m (in fact to ~1e-9 m)
    assert fix.n_towers == 2
    assert fix.ranges_km[0] == pytest.approx(9.0, abs=1e-6)
    assert fix.ranges_km[1] == pytest.approx(_gc_km(*b, *f), abs=1e-6)
    assert fix.rms_miss_km == 0.0


def test_two_tower_uncertainty_formula() -> None:
    b, f = _tower_b(), _fire()
    fix = intersect_bearings([_report(TOWER_A, f, sigma=1.0), _report(b, f, sigma=2.0)])
    assert fix is not None
    r1, r2 = fix.ranges_km
    theta = math.radians(abs(_bearing(*TOWER_A, *f) - _bearing(*b, *f)))
    s1, s2 = r1 * math.radians(1.0), r2 * math.radians(2.0)
    expected = math.sqrt(s1**2 + s2**2) / abs(math.sin(theta))
    assert fix.uncertainty_km == pytest.approx(expected, rel=1e-3)
    assert fix.uncertainty_km == pytest.approx(math.hypot(fix.semi_major_km, fix.semi_minor_km), rel=1e-9)
    assert fix.semi_major_km >= fix.semi_minor_km > 0.0
    assert 0.0 <= fix.major_axis_azimuth_deg < 180.0
    # the crossing angle is the one at the fire (bearings at the towers differ by meridian convergence)
    at_fire = math.radians(_bearing(*f, *TOWER_A) - _bearing(*f, *b))
    assert fix.angle_deg == pytest.approx(math.degrees(math.asin(abs(math.sin(at_fire)))), abs=0.01)


def test_noisy_bearings_error_matches_uncertainty() -> None:
    b, f = _tower_b(), _fire()
    rng = np.random.default_rng(42)
    errors, unc = [], []
    for _ in range(500):
        fix = intersect_bearings(
            [_report(TOWER_A, f, 1.0, rng.normal(0.0, 1.0)), _report(b, f, 1.0, rng.normal(0.0, 1.0))]
        )
        assert fix is not None
        errors.append(_gc_km(fix.lat, fix.lon, *f))
        unc.append(fix.uncertainty_km)
    errors_a = np.array(errors)
    # ~9 km and ~7 km ranges, 1 deg: each ray is off by ~150 m, the fix by ~200 m
    assert np.median(errors_a) < 0.3
    assert np.max(errors_a) < 1.0
    rms = float(np.sqrt(np.mean(errors_a**2)))
    assert 0.1 < float(np.median(unc)) < 0.4
    assert rms == pytest.approx(float(np.median(unc)), rel=0.15)  # uncertainty_km is the radial RMS error


def test_uncertainty_grows_as_rays_become_parallel() -> None:
    a = TOWER_A
    near = destination(*a, 90.0, 10.0)
    fires = [destination(*a, 0.0, d) for d in (5.0, 10.0, 20.0)]  # farther north: smaller crossing angle
    uncs = []
    for f in fires:
        fix = intersect_bearings([_report(a, f), _report(near, f)])
        assert fix is not None
        uncs.append(fix.uncertainty_km)
    assert uncs[0] < uncs[1] < uncs[2]


def test_parallel_rays_rejected() -> None:
    b = _tower_b()
    assert intersect_bearings([(*TOWER_A, 0.0, 1.0), (*b, 0.0, 1.0)]) is None
    assert intersect_bearings([(*TOWER_A, 0.0, 1.0), (*b, 3.0, 1.0)]) is None  # crossing at 3 deg < 5 deg
    assert intersect_bearings([(*TOWER_A, 90.0, 1.0), (*b, 270.0, 1.0)]) is None  # facing each other: collinear
    # converging at 3 deg about 190 km north: accepted only with a lower min_angle_deg and a longer range
    assert intersect_bearings([(*TOWER_A, 0.0, 1.0), (*b, 357.0, 1.0)], max_range_km=500.0, min_angle_deg=2.0)


def test_intersection_behind_a_tower_rejected() -> None:
    b = _tower_b()
    f = _fire()  # north-east of A, north-west of B
    # B looks away from the fire (reversed bearing): the lines cross behind B
    away = (_bearing(*b, *f) + 180.0) % 360.0
    assert intersect_bearings([_report(TOWER_A, f), (*b, away, 1.0)]) is None
    # both looking south: the lines cross north of both towers, behind them
    assert intersect_bearings([(*TOWER_A, 225.0, 1.0), (*b, 135.0, 1.0)]) is None


def test_out_of_range_rejected() -> None:
    b = _tower_b()
    far = destination(*TOWER_A, 10.0, 40.0)
    assert intersect_bearings([_report(TOWER_A, far), _report(b, far)]) is None
    fix = intersect_bearings([_report(TOWER_A, far), _report(b, far)], max_range_km=50.0)
    assert fix is not None and _gc_km(fix.lat, fix.lon, *far) < 0.010


def test_three_towers_least_squares() -> None:
    b, f = _tower_b(), _fire()
    c = destination(*TOWER_A, 0.0, 12.0)
    exact = intersect_bearings([_report(TOWER_A, f), _report(b, f), _report(c, f)])
    assert exact is not None and exact.n_towers == 3
    assert _gc_km(exact.lat, exact.lon, *f) < 0.010
    assert exact.rms_miss_km < 1e-6
    two = intersect_bearings([_report(TOWER_A, f), _report(b, f)])
    assert two is not None and exact.uncertainty_km < two.uncertainty_km  # a third ray helps
    # inconsistent bearings: a compromise point, with the spread reflected in the uncertainty
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(300):
        fix = intersect_bearings([_report(t, f, 1.0, rng.normal(0.0, 1.0)) for t in (TOWER_A, b, c)])
        assert fix is not None and fix.rms_miss_km > 0.0
        errors.append(_gc_km(fix.lat, fix.lon, *f))
    assert float(np.sqrt(np.mean(np.square(errors)))) < two.uncertainty_km
    # a ray that misses by 2 deg against 0.5 deg sigmas inflates the uncertainty
    bad = [_report(TOWER_A, f, 0.5), _report(b, f, 0.5), _report(c, f, 0.5, 2.0)]
    good = [_report(TOWER_A, f, 0.5), _report(b, f, 0.5), _report(c, f, 0.5)]
    fix_bad, fix_good = intersect_bearings(bad), intersect_bearings(good)
    assert fix_bad is not None and fix_good is not None
    assert fix_bad.uncertainty_km > 2.0 * fix_good.uncertainty_km


def test_three_towers_with_one_behind_rejected() -> None:
    b, f = _tower_b(), _fire()
    c = destination(*TOWER_A, 45.0, 20.0)  # beyond the fire on the same line from A
    away = (_bearing(*c, *f) + 180.0) % 360.0
    assert intersect_bearings([_report(TOWER_A, f), _report(b, f), (*c, away, 1.0)]) is None


def test_inputs() -> None:
    b, f = _tower_b(), _fire()
    assert intersect_bearings([]) is None
    assert intersect_bearings([_report(TOWER_A, f)]) is None
    as_dicts = [
        {"lat": t[0], "lon": t[1], "bearing_deg": t[2], "sigma_deg": t[3]} for t in (_report(TOWER_A, f), _report(b, f))
    ]
    as_lists = [list(_report(TOWER_A, f)), list(_report(b, f))]
    ref = intersect_bearings([_report(TOWER_A, f), _report(b, f)])
    assert intersect_bearings(as_dicts) == ref == intersect_bearings(as_lists)
    assert ref is not None and ref.to_dict()["ranges_km"] == list(ref.ranges_km)
    # bearings may come in as negative or > 360
    shifted = [(t[0], t[1], t[2] - 360.0, t[3]) for t in (_report(TOWER_A, f), _report(b, f))]
    fix = intersect_bearings(shifted)
    assert fix is not None and _gc_km(fix.lat, fix.lon, *f) < 1e-6
    with pytest.raises(ValueError):
        intersect_bearings([(*TOWER_A, 10.0, 0.0), (*b, 300.0, 1.0)])
    with pytest.raises(ValueError):
        intersect_bearings([(*TOWER_A, 10.0), (*b, 300.0, 1.0)])


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-60.0, 60.0),
    st.floats(-179.0, 179.0),
    st.floats(0.0, 360.0),
    st.floats(3.0, 15.0),
    st.floats(0.0, 360.0),
    st.floats(1.0, 20.0),
)
def test_exact_bearings_recover_any_fire(lat: float, lon: float, base_az: float, base_km: float, az: float, d: float):
    a = (lat, lon)
    b = destination(*a, base_az, base_km)
    f = destination(*a, az, d)
    fix = intersect_bearings([_report(a, f), _report(b, f)])
    ang = abs(math.sin(math.radians(_bearing(*a, *f) - _bearing(*b, *f))))
    if fix is None:
        # only refused for a good reason
        assert ang < math.sin(math.radians(5.5)) or _gc_km(*b, *f) > 30.0 - 1e-6 or _gc_km(*b, *f) < 1e-3
    else:
        assert _gc_km(fix.lat, fix.lon, *f) < 0.010
