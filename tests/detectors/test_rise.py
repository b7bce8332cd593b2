"""Unit tests for detectors/kernels/rise.py: Theil-Sen rate of rise (golden values, exactness on
lines, robustness to outliers) and the bounded streaming window."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels import rise as rise_k
from tocsin.detectors.kernels.rise import (
    HOUR_S,
    RiseTracker,
    _rate_of_rise_reference,
    rate_of_rise_m_per_h,
    theil_sen_slope,
)

T0 = 1_719_792_000.0


# ---------------------------------------------------------------------------------------------
# Batch slope
# ---------------------------------------------------------------------------------------------


def test_golden_even_number_of_slopes() -> None:
    """Levels 2.00, 2.02, 2.08, 2.09 m at 0, 10, 20, 30 min. Pairwise slopes in m/h:
    (0,10) 0.02 m/10 min = 0.12; (0,20) 0.08/20 min = 0.24; (0,30) 0.09/30 min = 0.18;
    (10,20) 0.06/10 min = 0.36; (10,30) 0.07/20 min = 0.21; (20,30) 0.01/10 min = 0.06.
    Sorted 0.06 0.12 0.18 0.21 0.24 0.36: median (0.18 + 0.21) / 2 = 0.195 m/h."""
    ts = [T0, T0 + 600, T0 + 1200, T0 + 1800]
    levels = [2.00, 2.02, 2.08, 2.09]
    assert rate_of_rise_m_per_h(ts, levels) == pytest.approx(0.195, rel=1e-9)
    assert _rate_of_rise_reference(ts, levels) == pytest.approx(0.195, rel=1e-9)
    assert theil_sen_slope(ts, levels) == pytest.approx(0.195 / 3600.0, rel=1e-9)


def test_golden_odd_number_of_slopes_and_an_outlier() -> None:
    # three points: slopes 0.6, 0.3, 0.0 m/h -> 0.3
    assert rate_of_rise_m_per_h([0.0, 600.0, 1200.0], [0.0, 0.1, 0.1]) == pytest.approx(0.3, rel=1e-12)
    # 1.00, 1.01, 1.02, 1.03 and an outlier 1.50 every 5 min. The ten slopes in m/h are 0.12 six
    # times (the clean pairs) and, to the outlier, 0.50 m/20 min = 1.5, 0.49 m/15 min = 1.96,
    # 0.48 m/10 min = 2.88, 0.47 m/5 min = 5.64: median 0.12, where least squares says 1.224.
    ts = [0.0, 300.0, 600.0, 900.0, 1200.0]
    levels = [1.00, 1.01, 1.02, 1.03, 1.50]
    assert rate_of_rise_m_per_h(ts, levels) == pytest.approx(0.12, rel=1e-9)
    assert np.polyfit(ts, levels, 1)[0] * HOUR_S == pytest.approx(1.224, rel=1e-6)


def test_exact_on_noiseless_lines_with_irregular_times() -> None:
    rng = np.random.default_rng(1)
    ts = T0 + np.sort(rng.uniform(0.0, 1800.0, 40))
    for rate in (0.25, -0.4, 0.0, 3.0):
        levels = 12.5 + rate * (ts - T0) / HOUR_S
        assert rate_of_rise_m_per_h(ts, levels) == pytest.approx(rate, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_robust_to_20_percent_outliers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    ts = T0 + np.arange(n) * 30.0
    rate = 0.3
    levels = 5.0 + rate * (ts - T0) / HOUR_S + rng.normal(0.0, 0.001, n)
    bad = rng.choice(n, size=n // 5, replace=False)
    one_sided = levels.copy()
    one_sided[bad] += rng.uniform(0.2, 1.0, bad.size)  # debris, waves: all upwards
    two_sided = levels.copy()
    two_sided[bad] += rng.choice([-1.0, 1.0], bad.size) * rng.uniform(0.2, 1.0, bad.size)
    for series in (one_sided, two_sided):
        assert rate_of_rise_m_per_h(ts, series) == pytest.approx(rate, rel=0.05)
    assert abs(np.polyfit(ts, one_sided, 1)[0] * HOUR_S - rate) > 0.0  # least squares is pulled


def test_matches_the_reference() -> None:
    rng = np.random.default_rng(2)
    for n in (2, 3, 10, 41):
        ts = T0 + np.round(rng.uniform(0.0, 1800.0, n))  # rounding makes some times equal
        levels = rng.normal(3.0, 0.2, n)
        got = rate_of_rise_m_per_h(ts, levels)
        if np.unique(ts).size < 2:
            assert math.isnan(got)
            continue
        # the kernel is scipy.stats.theilslopes; the reference is the definition in plain Python
        assert got == pytest.approx(_rate_of_rise_reference(ts.tolist(), levels.tolist()), rel=1e-9, abs=1e-12)


def test_undefined_cases_are_nan_and_non_finite_samples_are_dropped() -> None:
    assert math.isnan(rate_of_rise_m_per_h([], []))
    assert math.isnan(rate_of_rise_m_per_h([T0], [1.0]))
    assert math.isnan(rate_of_rise_m_per_h([T0, T0], [1.0, 2.0]))  # same time: no slope
    assert math.isnan(_rate_of_rise_reference([T0, T0], [1.0, 2.0]))
    assert rate_of_rise_m_per_h([0.0, 600.0, 900.0, 1200.0], [0.0, 0.1, math.nan, 0.2]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="equal length"):
        rate_of_rise_m_per_h([0.0, 1.0], [0.0])


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


def test_tracker_is_none_until_enough_points_and_span() -> None:
    tr = RiseTracker(window_s=1800.0, max_points=120, min_points=3, min_span_s=600.0)
    assert tr.update(T0, 1.00) is None
    assert tr.update(T0 + 300, 1.01) is None  # two points
    assert tr.update(T0 + 301, 1.02) is None  # three points but a 301 s span
    assert tr.update(T0 + 600, 1.02) == pytest.approx(rate_of_rise_m_per_h([0, 300, 301, 600], [1.0, 1.01, 1.02, 1.02]))
    assert tr.rate() is not None


def test_tracker_window_is_closed_and_moves_with_the_newest_sample() -> None:
    tr = RiseTracker(window_s=1800.0, min_points=2, min_span_s=0.0)
    for i in range(7):
        tr.update(T0 + 300.0 * i, 1.0 + 0.01 * i)
    assert [p[0] - T0 for p in tr.points] == [0, 300, 600, 900, 1200, 1500, 1800]  # t0 = newest - window kept
    tr.update(T0 + 2100.0, 1.07)
    assert tr.points[0][0] == T0 + 300.0
    # the slope only sees the window: a ramp change 30 min ago no longer counts
    tr2 = RiseTracker(window_s=1800.0, min_points=2, min_span_s=0.0)
    for i in range(13):
        tr2.update(T0 + 300.0 * i, 1.0 + (0.05 * i if i <= 6 else 0.3))
    assert tr2.rate() == 0.0


def test_tracker_bounded_buffer_keeps_the_newest() -> None:
    tr = RiseTracker(window_s=3600.0, max_points=10, min_points=3, min_span_s=0.0)
    for i in range(50):
        r = tr.update(T0 + 10.0 * i, 0.001 * i)
    assert len(tr.points) == 10
    assert tr.points[0][0] == T0 + 400.0
    assert r == pytest.approx(0.36, rel=1e-9)  # 1 mm per 10 s


def test_tracker_replacement_late_samples_and_garbage() -> None:
    tr = RiseTracker(window_s=1800.0, min_points=2, min_span_s=0.0)
    tr.update(T0 + 600.0, 1.0)
    tr.update(T0 + 1200.0, 1.5)
    assert tr.update(T0 + 1200.0, 1.1) == pytest.approx(0.6)  # resend replaces
    assert len(tr.points) == 2
    assert tr.update(T0 + 900.0, 1.05) == pytest.approx(0.6)  # late but inside the window: inserted
    assert [p[0] - T0 for p in tr.points] == [600.0, 900.0, 1200.0]
    assert tr.update(T0 - 1000.0, 9.0) == pytest.approx(0.6)  # older than the window: ignored
    assert len(tr.points) == 3
    assert tr.update(T0 + 1300.0, math.nan) == pytest.approx(0.6)
    assert tr.update(math.inf, 1.0) == pytest.approx(0.6)
    assert len(tr.points) == 3


def test_tracker_validation() -> None:
    for kw in (
        {"window_s": 0.0},
        {"max_points": 1},
        {"min_points": 1},
        {"max_points": 5, "min_points": 6},
        {"min_span_s": 4000.0},
        {"min_span_s": -1.0},
    ):
        with pytest.raises(ValueError):
            RiseTracker(**kw)  # type: ignore[arg-type]


def test_tracker_process_and_state_round_trip() -> None:
    ts = T0 + 60.0 * np.arange(40)
    levels = 2.0 + 0.2 * (ts - T0) / HOUR_S
    tr = RiseTracker()
    out = tr.process(ts, levels)
    assert np.all(np.isnan(out[:10]))  # the span reaches 600 s at the 11th sample
    np.testing.assert_allclose(out[10:], 0.2, rtol=1e-9)
    d = json.loads(json.dumps(tr.to_dict()))
    assert d["window_s"] == 1800.0 and d["max_points"] == 120 and d["min_points"] == 3 and d["min_span_s"] == 600.0
    back = RiseTracker.from_dict(d)
    assert back.to_dict() == tr.to_dict()
    assert back.update(T0 + 2400.0, 2.0 + 0.2 * 2400 / HOUR_S) == tr.update(T0 + 2400.0, 2.0 + 0.2 * 2400 / HOUR_S)


@st.composite
def samples(draw: st.DrawFn) -> list[tuple[float, float]]:
    n = draw(st.integers(0, 60))
    ts = draw(st.lists(st.integers(0, 4000), min_size=n, max_size=n))
    ls = draw(st.lists(st.floats(-5.0, 5.0), min_size=n, max_size=n))
    return [(T0 + t, v) for t, v in zip(ts, ls, strict=True)]


@settings(max_examples=100, deadline=None)
@given(data=samples(), cut=st.integers(0, 60), max_points=st.integers(2, 30))
def test_property_chunked_with_json_state_equals_one_pass(data: list, cut: int, max_points: int) -> None:
    def run(tr: RiseTracker, part: list) -> list[float | None]:
        return [tr.update(t, v) for t, v in part]

    whole = run(RiseTracker(1800.0, max_points, 2, 0.0), data)
    first = RiseTracker(1800.0, max_points, 2, 0.0)
    head = run(first, data[:cut])
    restored = RiseTracker.from_dict(json.loads(json.dumps(first.to_dict())))
    assert head + run(restored, data[cut:]) == whole
    # the held points are the newest (<= max_points) within the window of the newest sample
    held = restored.points
    assert len(held) <= max_points and held == sorted(held)
    if data:
        newest = max(t for t, _ in data)
        assert all(t >= newest - 1800.0 for t, _ in held)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 60.0, 300.0, 600.0]) | st.floats(0, 3600, allow_nan=False),
            st.sampled_from([1.0, 1.5]) | st.floats(-5, 9, allow_nan=False),
        ),
        min_size=2,
        max_size=rise_k.SMALL_N,
    )
)
@settings(max_examples=300, deadline=None)
# slopes over tiny time steps overflow to inf in both; scipy's unused confidence interval then warns
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_property_small_window_slope_equals_scipy(pairs: list[tuple[float, float]]) -> None:
    # the plain-Python path of a short window gives the kernel's (scipy's) float exactly (ties, even counts)
    points = [list(p) for p in sorted(pairs)]
    ours = rise_k._small_slope(points)
    ref = rise_k.theil_sen_slope([p[0] for p in points], [p[1] for p in points])
    assert ours == ref or (math.isnan(ours) and math.isnan(ref))
