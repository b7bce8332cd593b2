"""Unit tests for detectors/kernels/anomaly.py: the robust seasonal anomaly score (daily cycle,
spikes, level shifts, irregular sampling, chunk invariance with JSON state, hand-computed values)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.kernels.anomaly import (
    MAD_TO_SIGMA,
    AnomalyParams,
    AnomalyScorer,
    anomaly_score,
    score_series,
)

T0 = 1_719_792_000.0  # 2024-07-01T00:00:00Z, a multiple of the day
DAY_S = 86400.0
DT_S = 300.0
N_WEEK = 7 * 288


def _daily(seed: int, n: int = N_WEEK, amplitude: float = 3.0, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + DT_S * np.arange(n)
    x = 20.0 + amplitude * np.sin(2 * np.pi * (t - T0) / DAY_S) + rng.normal(0.0, sigma, n)
    return t, x


# ---------------------------------------------------------------------------------------------
# Formulas and hand-computed values
# ---------------------------------------------------------------------------------------------


def test_score_function() -> None:
    assert anomaly_score(0.0) == 0.0
    assert anomaly_score(3.0) == 0.0
    assert anomaly_score(3.0 + 0.5 * math.log(2.0)) == pytest.approx(0.5)
    assert anomaly_score(3.0 + 0.5 * math.log(10.0)) == pytest.approx(0.9)
    assert anomaly_score(4.0) == pytest.approx(1.0 - math.exp(-2.0))
    assert anomaly_score(6.0, z0=3.0, k=1.5) == pytest.approx(1.0 - math.exp(-2.0))
    assert MAD_TO_SIGMA == pytest.approx(1.2533141373155001)


def test_golden_constant_then_outlier() -> None:
    """Four samples of 10.0 a minute apart, then 10.1, then 10.0 (hand-computed from the formulas).

    Samples 1-4: raw_level = 10, the scale stays 0 (all residuals 0), bin 0 becomes ready after its
    third sample, so sample 4 starts the de-seasonalised level at 10 - 10 = 0.
    Sample 5 (10.1): baseline = season 10 + level 0 = 10, r = 0.1, scale = min_scale = 0.01,
    z = 10, score = 1 - exp(-(10 - 3) / 0.5) = 1 - exp(-14). The residual is clipped to 3 * 0.01, so
    xc = 10.03; raw_level += max(alpha, 1/5) * 0.03 = 0.006; the scale was still 0 so it takes the
    unclipped |r| with weight 1 (the zero residuals before did not count): scale = 1.2533 * 0.1;
    level = 1/2 * 0.03; bin 0 += 1/5 * 0.03.
    Sample 6 (10.0): baseline = 10.006 + 0.015 = 10.021, z = 0.021 / scale = 0.168 -> score 0.
    """
    p = AnomalyParams(warmup_n=3, min_scale=0.01)
    sc = AnomalyScorer(p)
    for i in range(4):
        assert sc.update(T0 + 60.0 * i, 10.0) == 0.0
    assert (sc.raw_level, sc.scale, sc.n_scale, sc.level, sc.n_level) == (10.0, 0.0, 0, 0.0, 1)
    assert sc.profile_n[0] == 4 and sc.profile[0] == 10.0

    pt = sc.step(T0 + 240.0, 10.1)
    assert pt.baseline == 10.0
    assert pt.scale == 0.01
    assert pt.z == pytest.approx(10.0, rel=1e-12)
    assert pt.score == pytest.approx(1.0 - math.exp(-14.0), rel=1e-12)
    assert pt.score == pytest.approx(0.9999991684712809, rel=1e-12)
    assert sc.raw_level == pytest.approx(10.006, rel=1e-12)
    assert sc.scale == pytest.approx(1.2533141373155001 * 0.1, rel=1e-9)
    assert sc.n_scale == 1
    assert sc.level == pytest.approx(0.015, rel=1e-9)
    assert sc.profile[0] == pytest.approx(10.006, rel=1e-12)

    pt = sc.step(T0 + 300.0, 10.0)
    assert pt.baseline == pytest.approx(10.021, rel=1e-12)
    assert pt.z == pytest.approx(0.021 / (1.2533141373155001 * 0.1), rel=1e-9)
    assert pt.score == 0.0


def test_warmup_scores_zero() -> None:
    t, x = _daily(0, n=60)
    x[5] += 100.0
    s = score_series(t, x, AnomalyParams(warmup_n=30))
    assert np.all(s[:30] == 0.0)
    s = score_series(t, x, AnomalyParams(warmup_n=5))
    assert s[5] > 0.99  # the sixth sample is the first scored


def test_seasonal_profile_interpolates_between_bin_centres() -> None:
    p = AnomalyParams(n_bins=4, period_s=400.0, min_bin_n=1, warmup_n=0)
    sc = AnomalyScorer(p)
    sc.profile = [0.0, 10.0, 20.0, 30.0]
    sc.profile_n = [1, 1, 1, 1]
    # bin width 100, centres at 50, 150, 250, 350 (mod 400)
    assert sc.season(T0 + 50.0) == 0.0  # T0 is a multiple of 400
    assert sc.season(T0 + 100.0) == pytest.approx(5.0)
    assert sc.season(T0 + 175.0) == pytest.approx(12.5)
    assert sc.season(T0 + 375.0) == pytest.approx(22.5)  # wraps: 3/4 of 30 + 1/4 of 0
    sc.profile_n = [1, 0, 1, 1]
    assert sc.season(T0 + 90.0) == 0.0  # neighbour not ready: own bin only
    assert sc.season(T0 + 150.0) is None  # own bin not ready
    assert AnomalyScorer(AnomalyParams(n_bins=0)).season(T0) is None


# ---------------------------------------------------------------------------------------------
# Behaviour on synthetic series
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_daily_cycle_with_noise_scores_low(seed: int) -> None:
    p = AnomalyParams()
    t, x = _daily(seed)
    s = score_series(t, x, p)
    after = s[p.warmup_n :]
    assert np.all((after >= 0.0) & (after <= 1.0))
    assert np.mean(after < 0.5) > 0.99
    assert np.mean(after >= 0.9) < 0.002


def test_profile_learns_the_cycle() -> None:
    t, x = _daily(3, amplitude=10.0)
    sc = AnomalyScorer()
    sc.process(t, x)
    centres = (np.arange(48) + 0.5) * 1800.0
    expected = 20.0 + 10.0 * np.sin(2 * np.pi * centres / DAY_S)
    assert np.max(np.abs(np.array(sc.profile) - expected)) < 0.6  # bin means of noisy sine, 1 sigma = 1
    assert 0.8 < sc.scale < 1.3  # ~ sigma


def test_spikes_of_8_sigma_score_high_and_do_not_move_the_baseline() -> None:
    t, x = _daily(4)
    idx = np.arange(2 * 288 + 17, N_WEEK, 37)
    spiked = x.copy()
    spiked[idx] += 8.0 * np.where(np.arange(idx.size) % 2 == 0, 1.0, -1.0)
    s = score_series(t, spiked)
    assert idx.size == 39
    assert np.all(s[idx] > 0.9)
    others = np.ones(N_WEEK, bool)
    others[idx] = False
    others[: AnomalyParams().warmup_n] = False
    assert np.mean(s[others] < 0.5) > 0.99
    # the baseline right after a spike moves by a small fraction of the spike (at most
    # (alpha_level + alpha_bin) * huber_c * scale), and that goes away with the level's time constant
    clean, dirty, huge = AnomalyScorer(), AnomalyScorer(), AnomalyScorer()
    for i in range(idx[0] + 1):
        clean.step(t[i], x[i])
        dirty.step(t[i], spiked[i])
        huge.step(t[i], x[i] + (80.0 if i == idx[0] else 0.0))
    nxt = t[idx[0] + 1]
    assert abs(dirty.baseline(nxt) - clean.baseline(nxt)) < 0.8  # type: ignore[operator]
    assert dirty.scale < 1.1 * clean.scale
    # the spike's influence is bounded: an 80-sigma spike leaves exactly the same state
    assert huge.to_dict() == dirty.to_dict()
    for i in range(idx[0] + 1, idx[0] + 25):
        clean.step(t[i], x[i])
        dirty.step(t[i], x[i])
    later = t[idx[0] + 25]
    assert abs(dirty.baseline(later) - clean.baseline(later)) < 0.1  # type: ignore[operator]


@pytest.mark.parametrize("seed", [5, 6])
def test_step_of_6_sigma_scores_high_then_is_absorbed(seed: int) -> None:
    p = AnomalyParams()
    t, x = _daily(seed)
    i0 = 4 * 288 + 50
    x[i0:] += 6.0
    s = score_series(t, x, p)
    assert s[i0] > 0.5 and s[i0 : i0 + 3].max() > 0.9
    assert np.mean(s[i0 - 288 : i0] >= 0.5) < 0.01  # quiet before
    j = i0 + int(p.adapt_s / DT_S)
    after = s[j:]
    assert np.mean(after < 0.5) > 0.99
    assert np.all(s[j : j + 12] < 0.5)


def test_step_is_absorbed_into_the_baseline() -> None:
    t, x = _daily(7, n=6 * 288)
    i0 = 3 * 288
    x[i0:] += 6.0
    sc = AnomalyScorer()
    sc.process(t[: i0 + 288], x[: i0 + 288])
    b = sc.baseline(t[i0 + 288])
    assert b is not None
    assert abs(b - (26.0 + 3.0 * math.sin(2 * math.pi * 288 * DT_S / DAY_S))) < 0.7


def test_irregular_sampling_gaps_duplicates_and_disorder() -> None:
    rng = np.random.default_rng(8)
    dts = rng.exponential(400.0, 3000)
    dts[rng.integers(0, 3000, 20)] = rng.uniform(3600.0, 2 * DAY_S, 20)  # long gaps
    dts[rng.integers(0, 3000, 20)] = 0.0  # duplicate times
    t = T0 + np.cumsum(dts)
    swap = rng.integers(1, 3000, 30)
    t[swap], t[swap - 1] = t[swap - 1].copy(), t[swap].copy()  # some out of order
    x = 5.0 + 2.0 * np.sin(2 * np.pi * t / DAY_S) + rng.normal(0.0, 0.5, t.size)
    x[rng.integers(0, 3000, 10)] = np.nan
    x[rng.integers(0, 3000, 5)] = np.inf
    sc = AnomalyScorer()
    s = sc.process(t, x)
    assert s.shape == t.shape
    assert np.all(np.isfinite(s)) and np.all((s >= 0.0) & (s <= 1.0))
    assert np.mean(s < 0.5) > 0.97
    assert sc.n == int(np.isfinite(x).sum())
    json.dumps(sc.to_dict(), allow_nan=False)


def test_non_finite_input_is_skipped() -> None:
    sc = AnomalyScorer(AnomalyParams(warmup_n=0))
    sc.update(T0, 1.0)
    before = sc.to_dict()
    assert sc.update(T0 + 60, math.nan) == 0.0
    assert sc.update(math.nan, 1.0) == 0.0
    assert sc.to_dict() == before


def test_constant_series_then_noise_recovers() -> None:
    # a quantised sensor: flat for an hour, then noisy; the scale must not stay at min_scale
    rng = np.random.default_rng(9)
    t = T0 + 60.0 * np.arange(1500)
    x = np.where(np.arange(1500) < 60, 7.0, 7.0 + rng.normal(0.0, 1.0, 1500))
    s = score_series(t, x, AnomalyParams(n_bins=0))
    assert s[60] > 0.9
    assert np.mean(s[300:] < 0.5) > 0.99


def test_no_profile_mode() -> None:
    t, x = _daily(10, n=600, amplitude=0.0)
    s = score_series(t, x, AnomalyParams(n_bins=0))
    assert np.mean(s[30:] < 0.5) > 0.99


# ---------------------------------------------------------------------------------------------
# Params and state
# ---------------------------------------------------------------------------------------------


def test_params_from_mapping_accepts_strings() -> None:
    p = AnomalyParams.from_mapping({"adapt_s": "7200", "n_bins": "24", "z0": 3, "warmup_n": "10.0", " k ": " 2 "})
    assert p == AnomalyParams(adapt_s=7200.0, n_bins=24, z0=3.0, warmup_n=10, k=2.0)
    assert isinstance(p.n_bins, int) and isinstance(p.adapt_s, float)
    assert AnomalyParams.from_mapping(None) == AnomalyParams()
    assert AnomalyParams.from_mapping({}) == AnomalyParams()
    with pytest.raises(ValueError, match="unknown anomaly parameter"):
        AnomalyParams.from_mapping({"adapt": "1"})
    with pytest.raises(ValueError, match="integer"):
        AnomalyParams.from_mapping({"n_bins": "2.5"})
    with pytest.raises(ValueError, match="number"):
        AnomalyParams.from_mapping({"z0": "high"})
    with pytest.raises(ValueError, match="invalid min_scale"):
        AnomalyParams.from_mapping({"min_scale": "0"})
    with pytest.raises(ValueError, match="invalid adapt_s"):
        AnomalyParams(adapt_s=math.inf)


def test_state_round_trip_and_param_override() -> None:
    t, x = _daily(11, n=400)
    sc = AnomalyScorer()
    sc.process(t, x)
    d = json.loads(json.dumps(sc.to_dict()))
    assert AnomalyScorer.from_dict(d).to_dict() == sc.to_dict()
    tuned = AnomalyScorer.from_dict(d, AnomalyParams(z0=4.0))
    assert tuned.params.z0 == 4.0 and tuned.profile == sc.profile
    with pytest.raises(ValueError, match="bins"):
        AnomalyScorer.from_dict(d, AnomalyParams(n_bins=24))
    fresh = AnomalyScorer().to_dict()
    assert fresh["t_last"] is None and fresh["n"] == 0
    json.dumps(fresh, allow_nan=False)


def test_process_checks_shapes() -> None:
    with pytest.raises(ValueError, match="equal length"):
        score_series([1.0, 2.0], [1.0])


# ---------------------------------------------------------------------------------------------
# Property: chunking with a JSON round trip between chunks changes nothing
# ---------------------------------------------------------------------------------------------

SMALL = AnomalyParams(n_bins=12, period_s=3600.0, min_bin_n=2, adapt_s=900.0, scale_tau_s=1800.0, warmup_n=10)


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
    t, x = data
    whole = score_series(t, x, SMALL)
    bounds = sorted({min(c, t.size) for c in cuts} | {0, t.size})
    parts = []
    state = AnomalyScorer(SMALL).to_dict()
    for a, b in zip(bounds, bounds[1:], strict=False):
        sc = AnomalyScorer.from_dict(json.loads(json.dumps(state)))
        parts.append(sc.process(t[a:b], x[a:b]))
        state = sc.to_dict()
    chunked = np.concatenate(parts) if parts else np.zeros(0)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    assert np.all((whole >= 0.0) & (whole <= 1.0))
