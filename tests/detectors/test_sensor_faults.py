"""Unit tests for detectors/kernels/sensor_faults.py: golden sequences for each fault (stuck,
out_of_range, spike, zero_drift), quiet normal readings, and JSON state / chunk invariance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels.sensor_faults import FAULTS, FaultParams, FaultTracker, step_limit

T0 = 1_719_792_000.0
LEL = (0.0, 100.0)  # %LEL measuring range


def _run(tr: FaultTracker, values: list[float], dt: float = 10.0, lo: float | None = 0.0, hi: float | None = 100.0):
    return [tr.update(T0 + dt * i, v, lo, hi) for i, v in enumerate(values)]


# ---------------------------------------------------------------------------------------------
# Normal readings raise nothing
# ---------------------------------------------------------------------------------------------


def test_normal_noisy_readings_and_a_real_gas_event_raise_no_fault() -> None:
    rng = np.random.default_rng(0)
    tr = FaultTracker()
    tau = FaultParams().tau_s
    n = 2 * 8640  # two days at 10 s
    t = T0 + 10.0 * np.arange(n)
    # clean air: small noise around 0.3 %LEL, clamped at 0 by the detector (zero suppression)
    x = np.maximum(0.0, rng.normal(0.3, 0.4, n))
    # a real release from 3 h to 4 h: a first-order sensor (tau 30 s) follows 0 -> 40 -> 0 %LEL
    conc = np.where((t - T0 >= 3 * 3600) & (t - T0 < 4 * 3600), 40.0, 0.0)
    y = np.zeros(n)
    for i in range(1, n):
        y[i] = conc[i] + (y[i - 1] - conc[i]) * math.exp(-10.0 / tau)
    x = x + y
    faults = [tr.update(ti, xi, *LEL) for ti, xi in zip(t.tolist(), x.tolist(), strict=True)]
    assert all(f == set() for f in faults)
    assert tr.zero_offset() == pytest.approx(0.0, abs=0.05)


def test_normal_oxygen_readings_raise_no_fault() -> None:
    rng = np.random.default_rng(1)
    tr = FaultTracker(FaultParams(zero_based=False, stuck_tol=0.0))
    x = np.round(20.9 + rng.normal(0.0, 0.05, 3000), 2)
    assert all(f == set() for f in _run(tr, x.tolist(), lo=0.0, hi=25.0))


# ---------------------------------------------------------------------------------------------
# Golden sequences
# ---------------------------------------------------------------------------------------------


def test_stuck_golden() -> None:
    p = FaultParams(stuck_n=5, stuck_tol=0.0, zero_based=False)
    values = [20.8, 20.9, 20.9, 20.9, 20.9, 20.9, 20.9, 21.0, 20.9]
    got = _run(FaultTracker(p), values, lo=0.0, hi=25.0)
    # the window of the last 5 is constant only at readings 6 and 7 (0-based 5 and 6)
    assert got == [set(), set(), set(), set(), set(), {"stuck"}, {"stuck"}, set(), set()]
    # with a tolerance of 0.15 the first five (20.8..20.9) already count as stuck
    got = _run(FaultTracker(FaultParams(stuck_n=5, stuck_tol=0.15, zero_based=False)), values, lo=0.0, hi=25.0)
    assert got == [set()] * 4 + [{"stuck"}] * 5


def test_stuck_at_zero_is_exempt_unless_configured() -> None:
    zeros = [0.0] * 8
    assert _run(FaultTracker(FaultParams(stuck_n=5)), zeros) == [set()] * 8
    got = _run(FaultTracker(FaultParams(stuck_n=5, stuck_exempt_zero=False)), zeros)
    assert got == [set()] * 4 + [{"stuck"}] * 4
    # stuck at a non-zero value is a fault even with the exemption
    assert _run(FaultTracker(FaultParams(stuck_n=5)), [12.0] * 6)[-2:] == [{"stuck"}, {"stuck"}]


def test_out_of_range_golden() -> None:
    tr = FaultTracker()
    got = [
        tr.update(T0, 50.0, 0.0, 100.0),
        tr.update(T0 + 10, -0.1, 0.0, 100.0),
        tr.update(T0 + 20, 100.0, 0.0, 100.0),  # the bounds themselves are in range
        tr.update(T0 + 30, 100.5, 0.0, 100.0),
        tr.update(T0 + 40, math.nan, 0.0, 100.0),
        tr.update(T0 + 50, 1e9, None, None),  # no range known
        tr.update(T0 + 60, -5.0, None, 100.0),
        tr.update(T0 + 70, -5.0, 0.0, None),
    ]
    assert got == [set(), {"out_of_range"}, set(), {"out_of_range"}, {"out_of_range"}, set(), set(), {"out_of_range"}]


def test_step_limit_golden() -> None:
    p = FaultParams(tau_s=30.0)
    assert step_limit(10.0, p, 0.0, 100.0) == pytest.approx(100.0 * (1.0 - math.exp(-1.0 / 3.0)), rel=1e-12)
    assert step_limit(10.0, p, 0.0, 100.0) == pytest.approx(28.34686894262107, rel=1e-12)
    assert step_limit(0.01, p, 0.0, 100.0) == pytest.approx(100.0 / 30.0 * 0.01, rel=1e-3)  # slew * dt
    assert step_limit(1e6, p, 0.0, 100.0) == pytest.approx(100.0)  # never more than the span
    assert step_limit(10.0, p) is None
    assert step_limit(10.0, p, 5.0, 5.0) is None
    q = FaultParams(max_slew_per_s=1.0, tau_s=30.0)  # S = 30
    assert step_limit(10.0, q) == pytest.approx(30.0 * (1.0 - math.exp(-1.0 / 3.0)), rel=1e-12)


def test_spike_golden_one_reading() -> None:
    # every 10 s, range 0-100, tau 30 s: a change of more than 28.35 between readings is impossible
    got = _run(FaultTracker(), [1.0, 1.2, 60.0, 1.1, 1.0])
    assert got == [set(), set(), set(), {"spike"}, set()]


def test_spike_golden_two_readings_and_downwards() -> None:
    assert _run(FaultTracker(), [1.0, 60.0, 62.0, 1.0, 1.0]) == [set(), set(), set(), {"spike"}, set()]
    assert _run(FaultTracker(), [50.0, 50.5, 5.0, 50.0]) == [set(), set(), set(), {"spike"}]
    # comes back only part of the way (to 31 > 1 + 0.5 * 59): not a spike
    assert _run(FaultTracker(), [1.0, 60.0, 31.0, 31.0]) == [set()] * 4


def test_a_jump_that_stays_is_not_a_spike() -> None:
    # returns after three readings: too late for spike_n = 2
    assert _run(FaultTracker(), [1.0, 60.0, 61.0, 62.0, 1.0, 1.0]) == [set()] * 6
    # but with spike_n = 3 it is one
    got = _run(FaultTracker(FaultParams(spike_n=3)), [1.0, 60.0, 61.0, 62.0, 1.0, 1.0])
    assert got == [set()] * 4 + [{"spike"}, set()]


def test_physically_possible_changes_are_not_spikes() -> None:
    # a first-order response (tau 30 s) to 0 -> 80 -> 0, read every 10 s: 22.7 per reading at most
    y, vals = 0.0, []
    for u in [80.0] * 5 + [0.0] * 5:
        y = u + (y - u) * math.exp(-10.0 / 30.0)
        vals.append(y)
    assert _run(FaultTracker(), [0.0, *vals]) == [set()] * 11
    # readings a minute apart can move 86 % of the span: 0 -> 80 -> 0 is possible
    assert _run(FaultTracker(), [0.0, 80.0, 0.0], dt=60.0) == [set()] * 3
    # no range and no max_slew_per_s: no bound, no spike check
    assert _run(FaultTracker(), [1.0, 99.0, 1.0], lo=None, hi=None) == [set()] * 3


def test_spike_with_explicit_max_slew() -> None:
    p = FaultParams(max_slew_per_s=1.0, tau_s=30.0)  # a jump over 8.5 in 10 s is impossible
    assert _run(FaultTracker(p), [5.0, 15.0, 5.0], lo=None, hi=None) == [set(), set(), {"spike"}]
    assert _run(FaultTracker(p), [5.0, 13.0, 5.0], lo=None, hi=None) == [set()] * 3
    # no time step (duplicate timestamp): no jump test
    tr = FaultTracker(p)
    assert [tr.update(T0, v) for v in (5.0, 15.0, 5.0)] == [set()] * 3


def test_zero_drift_golden() -> None:
    p = FaultParams(drift_window_s=1000.0, drift_max_points=10, drift_min_n=5, drift_limit=2.0)
    values = [3.0, 3.1, 2.9, 3.0, 3.2, 3.0, 3.1]
    tr = FaultTracker(p)
    got = _run(tr, values, dt=100.0, lo=None, hi=None)
    # needs 5 readings spanning half the window (500 s): from the 6th reading (t = 500 s) on; the
    # 5th percentile of 3.0 3.1 2.9 3.0 3.2 3.0 is 2.9 + 0.25 * (3.0 - 2.9) = 2.925 > 2
    assert got == [set()] * 5 + [{"zero_drift"}] * 2
    tr = FaultTracker(p)
    _run(tr, values[:6], dt=100.0, lo=None, hi=None)
    assert tr.zero_offset() == pytest.approx(2.925, rel=1e-12)
    assert tr.zero_offset() == pytest.approx(float(np.quantile(values[:6], 0.05)), rel=1e-12)
    # negative drift counts too
    assert _run(FaultTracker(p), [-3.0, -3.1] * 4, dt=100.0, lo=None, hi=None)[-1] == {"zero_drift"}


def test_zero_drift_default_limit_is_5_percent_of_span_and_needs_zero_based() -> None:
    p = FaultParams(drift_window_s=1000.0, drift_max_points=10, drift_min_n=5, stuck_n=50)
    assert _run(FaultTracker(p), [3.0, 3.5] * 4, dt=100.0)[-1] == set()  # 3 < 5 %LEL
    assert _run(FaultTracker(p), [6.0, 6.5] * 4, dt=100.0)[-1] == {"zero_drift"}
    assert _run(FaultTracker(p), [6.0, 6.5] * 4, dt=100.0, lo=None, hi=None)[-1] == set()  # no span known
    o2 = FaultParams(drift_window_s=1000.0, drift_max_points=10, drift_min_n=5, zero_based=False)
    assert _run(FaultTracker(o2), [20.9, 20.8] * 4, dt=100.0, lo=0.0, hi=25.0)[-1] == set()


def test_zero_drift_ignores_gas_events_and_thins_its_buffer() -> None:
    p = FaultParams(drift_window_s=2000.0, drift_max_points=20, drift_min_n=5, drift_limit=2.0)
    # mostly a gas event at 40, clean air 2 readings in 20: the 5th percentile is still 0
    values = [0.0, 0.0] + [40.0, 41.0] * 9
    tr = FaultTracker(p)
    assert _run(tr, values, dt=100.0, lo=None, hi=None)[-1] == set()
    assert len(tr.drift) == 20 and tr.zero_offset() == 0.0
    p = FaultParams(drift_window_s=1000.0, drift_max_points=10, drift_min_n=5, drift_limit=2.0)
    tr = FaultTracker(p)
    _run(tr, [0.5] * 500, dt=10.0)  # one reading kept per 100 s, 1000 s window
    assert len(tr.drift) <= 10
    assert all(b[0] - a[0] >= 100.0 for a, b in zip(tr.drift, tr.drift[1:], strict=False))


def test_several_faults_at_once_and_non_finite_readings() -> None:
    p = FaultParams(stuck_n=3, drift_window_s=1000.0, drift_max_points=10, drift_min_n=3)
    tr = FaultTracker(p)
    got = _run(tr, [120.0] * 8, dt=100.0)
    assert got[-1] == {"stuck", "out_of_range", "zero_drift"}
    assert tr.update(T0 + 900.0, math.inf, 0.0, 100.0) == {"stuck", "out_of_range", "zero_drift"}
    assert set(FAULTS) == {"stuck", "out_of_range", "spike", "zero_drift"}


# ---------------------------------------------------------------------------------------------
# Params and state
# ---------------------------------------------------------------------------------------------


def test_params_from_mapping() -> None:
    p = FaultParams.from_mapping(
        {"stuck_n": "10", "stuck_tol": "0.05", "max_slew_per_s": "none", "drift_limit": "3", "zero_based": "false"}
    )
    assert p == FaultParams(stuck_n=10, stuck_tol=0.05, max_slew_per_s=None, drift_limit=3.0, zero_based=False)
    assert FaultParams.from_mapping({"max_slew_per_s": 2}).max_slew_per_s == 2.0
    assert FaultParams.from_mapping(None) == FaultParams()
    with pytest.raises(ValueError, match="unknown fault parameter"):
        FaultParams.from_mapping({"stuck": 3})
    with pytest.raises(ValueError, match="boolean"):
        FaultParams.from_mapping({"zero_based": "maybe"})
    with pytest.raises(ValueError, match="integer"):
        FaultParams.from_mapping({"stuck_n": "2.5"})
    with pytest.raises(ValueError, match="number"):
        FaultParams.from_mapping({"tau_s": "none"})
    with pytest.raises(ValueError, match="invalid tau_s"):
        FaultParams(tau_s=0.0)


def test_state_round_trip() -> None:
    tr = FaultTracker(FaultParams(stuck_n=4))
    _run(tr, [1.0, 60.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    d = json.loads(json.dumps(tr.to_dict(), allow_nan=False))
    back = FaultTracker.from_dict(d)
    assert back.to_dict() == tr.to_dict()
    assert back.params == FaultParams(stuck_n=4)
    assert FaultTracker.from_dict(d, FaultParams(stuck_n=2)).recent == [3.0, 3.0]
    json.dumps(FaultTracker().to_dict(), allow_nan=False)


READING = st.one_of(
    st.floats(-10.0, 110.0),
    st.sampled_from([0.0, 5.0, 5.0, 5.0, 95.0]),
    st.just(math.nan),
)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(READING, max_size=60),
    steps=st.lists(st.sampled_from([0.0, 1.0, 10.0, 60.0, 400.0]), min_size=60, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=4),
)
def test_property_chunked_with_json_state_equals_one_pass(values: list, steps: list, cuts: list) -> None:
    p = FaultParams(stuck_n=4, drift_window_s=2000.0, drift_max_points=8, drift_min_n=3)
    ts = (T0 + np.cumsum(steps[: len(values)])).tolist()
    one = FaultTracker(p)
    whole = [one.update(t, v, 0.0, 100.0) for t, v in zip(ts, values, strict=True)]
    bounds = sorted({min(c, len(values)) for c in cuts} | {0, len(values)})
    state = FaultTracker(p).to_dict()
    chunked: list[set[str]] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        tr = FaultTracker.from_dict(json.loads(json.dumps(state, allow_nan=False)))
        chunked += [tr.update(t, v, 0.0, 100.0) for t, v in zip(ts[a:b], values[a:b], strict=True)]
        state = tr.to_dict()
    assert chunked == whole
    assert all(f <= set(FAULTS) for f in whole)
