"""Unit tests of the ensemble anomaly kernel (detectors/kernels/anomaly.py ``EnsembleScorer``):
each part on inputs small enough to work by hand, JSON state round trips, bounded per-point cost."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels.anomaly import EnsembleParams, EnsembleScorer

T0 = 1_719_792_000.0  # 2024-07-01T00:00:00Z, a Monday, a multiple of the day
# only the short-mean feature, no warm-up, no suppression: the statistics below are plain arithmetic
SHORT_ONLY = EnsembleParams(short_n=1, long_n=1e9, n_bins=0, week_bins=0, warmup_n=0, suppress_n=0)


def _noise(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return T0 + 300.0 * np.arange(n), rng.normal(10.0, 1.0, n)


def test_ew_mean_variance_and_record_by_hand() -> None:
    """x = 2, 4, 6 with weights 1/n: mean 2 -> 3 -> 4; variance 0 -> (2^2)/2 = 2 -> 2 + (3^2 - 2)/3 = 13/3;
    the third sample is z = |6 - 3| / sqrt(2) = 2.1213 sigma, which becomes the record."""
    sc = EnsembleScorer(SHORT_ONLY)
    for i, x in enumerate((2.0, 4.0, 6.0)):
        pt = sc.step(T0 + 60.0 * i, x)
    assert sc.mean[0] == pytest.approx(4.0)
    assert sc.var[0] == pytest.approx(13.0 / 3.0)
    assert pt.z == pytest.approx(3.0 / math.sqrt(2.0))
    assert sc.peak[0] == pytest.approx(3.0 / math.sqrt(2.0))
    assert pt.score == 0.0  # 2.12 sigma is under floor_z = 5


def test_short_mean_is_the_mean_of_the_last_short_n_values() -> None:
    """short_n = 3: the feature runs 1, 1.5, 2, (2 + 3 + 10) / 3 = 5. Its variance: 0, then
    (1.5 - 1)^2 / 2 = 0.125, then 0.125 + (0.75^2 - 0.125) / 3 = 0.2708333 (sd 0.5204165); the last
    residual 5 - 1.5 = 3.5 is clipped to 4 sd = 2.0816660, so the mean becomes 1.5 + 2.081666 / 4."""
    p = EnsembleParams(short_n=3, long_n=1e9, n_bins=0, week_bins=0, warmup_n=0, suppress_n=0)
    sc = EnsembleScorer(p)
    sc.step(T0, 1.0)
    sc.step(T0 + 1, 2.0)
    # mean of the feature so far: 1 then 1 + (1.5 - 1) / 2 = 1.25
    assert sc.mean[0] == pytest.approx(1.25)
    sc.step(T0 + 2, 3.0)  # feature 2: mean 1.25 + (2 - 1.25) / 3 = 1.5
    assert sc.mean[0] == pytest.approx(1.5)
    assert sc.var[0] == pytest.approx(0.125 + (0.5625 - 0.125) / 3.0)
    sc.step(T0 + 3, 10.0)
    assert sc.mean[0] == pytest.approx(1.5 + 4.0 * math.sqrt(0.125 + (0.5625 - 0.125) / 3.0) / 4.0)


def test_time_of_day_and_day_of_week_bins() -> None:
    """48 half-hour bins: 01:30 falls in bin 3. 336 bins over the week from the epoch (a Thursday):
    Monday 2024-07-01 00:00 is 4 days after a Thursday 00:00, bin 4 * 48 = 192, 01:30 -> 195.
    Each bin is the running mean of its samples while 1/m > bin_alpha: (4 + 8) / 2 = 6."""
    p = EnsembleParams(warmup_n=0, suppress_n=0, bin_alpha=0.05)
    sc = EnsembleScorer(p)
    sc.step(T0 + 5400.0, 4.0)
    sc.step(T0 + 5400.0 + 86400.0 * 7, 8.0)
    assert sc.profile_n[3] == 2 and sc.profile[3] == pytest.approx(6.0)
    assert sc.week_n[195] == 2 and sc.week[195] == pytest.approx(6.0)
    assert sum(sc.profile_n) == 2 and sum(sc.week_n) == 2


def test_residual_needs_a_ready_bin() -> None:
    """Until a bin has min_bin_n samples its residual is 0; then x - profile."""
    p = EnsembleParams(warmup_n=0, suppress_n=0, min_bin_n=2, short_n=1)
    sc = EnsembleScorer(p)
    sc.step(T0, 5.0)
    sc.step(T0 + 86400.0, 7.0)
    assert sc.rbuf == [0.0]  # bin had 1 sample when the second came
    sc.step(T0 + 2 * 86400.0, 10.0)  # bin mean (5 + 7) / 2 = 6: residual 4
    assert sc.rbuf == [pytest.approx(4.0)]


def test_score_is_the_novelty_ratio_through_the_exponential() -> None:
    """A z that beats max(record, floor_z) by the ratio q scores 1 - exp(-k (q - 1)).
    Feature mean 0, sd 1 (state set by hand), no record: x = 7.5 is z 7.5, q = 7.5 / 5 = 1.5,
    score 1 - exp(-3 * 0.5) = 0.77687."""
    sc = EnsembleScorer(SHORT_ONLY)
    sc.n = 10
    sc.mean[0], sc.var[0] = 0.0, 1.0
    assert sc.step(T0, 7.5).score == pytest.approx(1.0 - math.exp(-1.5))
    # the record is now 7.5: the same deviation again is no novelty
    sc.mean[0], sc.var[0] = 0.0, 1.0
    assert sc.step(T0 + 1, 7.5).score == 0.0
    # beating it by 20 %: q = 9 / 7.5 = 1.2, score 1 - exp(-0.6)
    sc.mean[0], sc.var[0] = 0.0, 1.0
    assert sc.step(T0 + 2, 9.0).score == pytest.approx(1.0 - math.exp(-0.6), rel=1e-3)  # record decayed 1 step


def test_suppression_after_an_alarm() -> None:
    """An alarm opens suppress_n samples of score 0, even for a larger spike; without it the
    second spike scores."""
    t, x = _noise(400)
    x[300] += 12.0
    x[305] += 20.0
    quiet = EnsembleScorer(EnsembleParams(suppress_n=20)).process(t, x)
    loud = EnsembleScorer(EnsembleParams(suppress_n=0)).process(t, x)
    assert quiet[300] > 0.5 and loud[300] == quiet[300]
    assert quiet[305] == 0.0 and loud[305] > 0.5
    assert np.all(quiet[301:321] == 0.0)


def test_warm_up_scores_zero() -> None:
    t, x = _noise(300)
    x[50] += 30.0
    s = EnsembleScorer(EnsembleParams(warmup_n=100)).process(t, x)
    assert np.all(s[:100] == 0.0)


def test_scores_in_unit_interval_and_non_finite_input() -> None:
    t, x = _noise(2000, seed=3)
    x[[500, 900, 1500]] += [50.0, -40.0, 1e6]
    sc = EnsembleScorer()
    s = sc.process(t, x)
    assert np.all((s >= 0.0) & (s <= 1.0))
    before = json.dumps(sc.to_dict())
    assert sc.step(t[-1] + 300.0, math.nan).score == 0.0
    assert sc.step(math.inf, 1.0).score == 0.0
    assert json.dumps(sc.to_dict()) == before


def test_state_round_trips_through_json_with_identical_scores() -> None:
    t, x = _noise(3000, seed=7)
    x[[1200, 2500]] += [9.0, -11.0]
    x[2000:2100] += 4.0
    whole = EnsembleScorer().process(t, x)
    sc = EnsembleScorer()
    parts = []
    for lo in range(0, 3000, 700):
        parts.append(sc.process(t[lo : lo + 700], x[lo : lo + 700]))
        sc = EnsembleScorer.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert np.array_equal(np.concatenate(parts), whole)
    assert whole.max() > 0.5  # the stream did alarm, so suppression state crossed chunk edges too


def test_restore_rejects_a_state_of_other_shape() -> None:
    d = EnsembleScorer().to_dict()
    with pytest.raises(ValueError):
        EnsembleScorer.from_dict(d, EnsembleParams(short_n=5))


def test_params_from_mapping() -> None:
    p = EnsembleParams.from_mapping({"suppress_n": "120", "floor_z": 4})
    assert p.suppress_n == 120 and p.floor_z == 4.0
    with pytest.raises(ValueError):
        EnsembleParams.from_mapping({"nope": 1})
    with pytest.raises(ValueError):
        EnsembleParams.from_mapping({"short_n": "1.5"})


def test_per_point_cost_does_not_grow_with_the_series() -> None:
    """Last 1,000 of a 20,000-point series vs the first 1,000: per-point time within 1.5x (best of 5)."""
    t, x = _noise(20_000, seed=11)
    x[::997] += 8.0  # some alarms and suppression on the way
    fresh = EnsembleScorer()
    start = json.dumps(fresh.to_dict())
    warm = EnsembleScorer()
    warm.process(t[:19_000], x[:19_000])
    late = json.dumps(warm.to_dict())

    def cost(state: str, lo: int) -> float:
        best = math.inf
        for _ in range(5):
            sc = EnsembleScorer.from_dict(json.loads(state))
            t0 = time.perf_counter()
            sc.process(t[lo : lo + 1000], x[lo : lo + 1000])
            best = min(best, time.perf_counter() - t0)
        return best

    first, last = cost(start, 0), cost(late, 19_000)
    assert last / first < 1.5
    # nor does the state: the same lists of the same lengths
    shape = {k: len(v) for k, v in json.loads(start).items() if isinstance(v, list)}
    assert shape == {k: len(v) for k, v in json.loads(late).items() if isinstance(v, list)}


# ----------------------------------------------------------------------------------------------
# Kept from the tests of the former single-model scorer (AnomalyScorer, removed): the properties
# that any scorer of the worker must have, now checked on the ensemble.


def test_irregular_sampling_gaps_duplicates_and_disorder() -> None:
    rng = np.random.default_rng(8)
    dts = rng.exponential(400.0, 3000)
    dts[rng.integers(0, 3000, 20)] = rng.uniform(3600.0, 2 * 86400.0, 20)  # long gaps
    dts[rng.integers(0, 3000, 20)] = 0.0  # duplicate times
    t = T0 + np.cumsum(dts)
    swap = rng.integers(1, 3000, 30)
    t[swap], t[swap - 1] = t[swap - 1].copy(), t[swap].copy()  # some out of order
    x = 5.0 + 2.0 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(0.0, 0.5, t.size)
    x[rng.integers(0, 3000, 10)] = np.nan
    x[rng.integers(0, 3000, 5)] = np.inf
    sc = EnsembleScorer()
    s = sc.process(t, x)
    assert s.shape == t.shape
    assert np.all(np.isfinite(s)) and np.all((s >= 0.0) & (s <= 1.0))
    assert np.mean(s < 0.5) > 0.97
    assert sc.n == int(np.isfinite(x).sum())  # non-finite samples are skipped, not absorbed
    json.dumps(sc.to_dict(), allow_nan=False)


def test_process_checks_shapes() -> None:
    with pytest.raises(ValueError, match="equal length"):
        EnsembleScorer().process([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        EnsembleScorer().process([[1.0]], [[1.0]])


def test_params_from_mapping_reads_strings_and_refuses_bad_values() -> None:
    p = EnsembleParams.from_mapping({"long_n": "7200", "n_bins": "24", "k": 3, "warmup_n": "10.0", " floor_z ": " 2 "})
    assert p == EnsembleParams(long_n=7200.0, n_bins=24, k=3.0, warmup_n=10, floor_z=2.0)
    assert isinstance(p.n_bins, int) and isinstance(p.long_n, float)
    assert EnsembleParams.from_mapping(None) == EnsembleParams()
    assert EnsembleParams.from_mapping({}) == EnsembleParams()
    with pytest.raises(ValueError, match="unknown anomaly parameter"):
        EnsembleParams.from_mapping({"long": "1"})
    with pytest.raises(ValueError, match="integer"):
        EnsembleParams.from_mapping({"n_bins": "2.5"})
    with pytest.raises(ValueError, match="number"):
        EnsembleParams.from_mapping({"floor_z": "high"})
    with pytest.raises(ValueError, match="number"):
        EnsembleParams.from_mapping({"floor_z": True})
    with pytest.raises(ValueError, match="invalid clip"):
        EnsembleParams.from_mapping({"clip": "0"})
    with pytest.raises(ValueError, match="invalid long_n"):
        EnsembleParams(long_n=math.inf)


SMALL = EnsembleParams(
    short_n=3,
    long_n=50.0,
    peak_n=30.0,
    n_bins=12,
    period_s=3600.0,
    min_bin_n=2,
    week_bins=14,
    warmup_n=10,
    suppress_n=5,
)


@st.composite
def series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 250))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = T0 + np.cumsum(rng.exponential(60.0, n) * (rng.random(n) > 0.05))
    x = 3.0 * np.sin(2 * np.pi * t / 3600.0) + rng.normal(0.0, 1.0, n)
    x[rng.random(n) < 0.03] += 15.0
    x[rng.random(n) < 0.01] = np.nan
    if draw(st.booleans()):
        x = np.round(x)  # quantised
    return t, x


@settings(max_examples=60, deadline=None)
@given(data=series(), cuts=st.lists(st.integers(0, 250), max_size=5))
def test_property_chunk_invariance_with_json_state(data: tuple[np.ndarray, np.ndarray], cuts: list[int]) -> None:
    """Cut anywhere (several times, empty chunks included), the state through JSON at each cut: the
    same scores as one pass."""
    t, x = data
    whole = EnsembleScorer(SMALL).process(t, x)
    bounds = sorted({min(c, t.size) for c in cuts} | {0, t.size})
    parts = []
    state = EnsembleScorer(SMALL).to_dict()
    for a, b in zip(bounds, bounds[1:], strict=False):
        sc = EnsembleScorer.from_dict(json.loads(json.dumps(state)))
        parts.append(sc.process(t[a:b], x[a:b]))
        state = sc.to_dict()
    chunked = np.concatenate(parts) if parts else np.zeros(0)
    assert np.array_equal(chunked, whole)
    assert np.all((whole >= 0.0) & (whole <= 1.0))
