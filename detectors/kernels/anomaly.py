"""Generic anomaly score for any numeric channel (the fallback for channels without a domain rule).

Pure Python/numpy; nothing here imports the rest of the project. One ``EnsembleScorer`` per channel
carries all its state explicitly; ``to_dict()`` / ``from_dict()`` give plain JSON data, and feeding
a series in chunks (with the state round-tripped through JSON in between) gives exactly the scores
of one ``process`` call over the whole series. The model is described above ``EnsembleParams``;
docs/anomaly.md has the figures it was tuned on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["AnomalyPoint", "EnsembleParams", "EnsembleScorer"]


def _convert(name: str, raw: Any, kind: str) -> int | float:
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be a number, got {raw!r}")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if kind == "int":
        if not value.is_integer():
            raise ValueError(f"{name} must be an integer, got {raw!r}")
        return int(value)
    return value


class AnomalyPoint(NamedTuple):
    """What one sample was judged against (all before the sample was absorbed)."""

    score: float
    z: float  # the largest weighted z of the active features
    baseline: float  # the short feature's EW mean
    scale: float  # the short feature's EW standard deviation


# =============================================================================================
# Ensemble detector (the one the worker and ``tocsin backtest --detector anomaly`` run)
# =============================================================================================
#
# Tuned on 31 series of the Numenta Anomaly Benchmark (docs/anomaly.md has the figures). Per sample,
# all statistics *before* the sample is absorbed, windows in samples, O(1) work and memory:
#
# * features (each with a weight ``w_*``; 0 switches it off): ``short`` (mean of the last
#   ``short_n`` values), ``resid`` (the value minus the time-of-day profile, ``n_bins`` bins over
#   ``period_s``, each an EWMA with weight ``max(1/m, bin_alpha)``; 0 while the bin has fewer than
#   ``min_bin_n`` samples), ``resid_short`` (mean of the last ``short_n`` of those residuals),
#   ``week`` and ``week_short`` (the same against a day-of-week profile of ``week_bins`` bins over
#   the week); by default short, resid and week_short are on;
# * each feature has an EW mean and variance over ``long_n`` samples (weight ``max(1/n, 1/long_n)``,
#   residual clipped to ``+-clip`` sigma in the update) giving ``z = |f - mean| / sd``;
# * novelty: each feature keeps a decaying record ``peak = max(peak * exp(-1/peak_n), z)`` (learnt
#   from ``warmup_n / 2`` on); the ratio ``z / max(peak, floor_z)`` is above 1 only for a deviation
#   larger than anything recent, so heavy-tailed channels raise their own bar;
# * score ``1 - exp(-k * (ratio - 1))`` of the largest weighted ratio when above 1, else 0; 0 for
#   the first ``warmup_n`` samples;
# * suppression: for ``suppress_n`` samples after a score >= ``alarm_score`` the score is 0 (one
#   event, one alarm).

_WEEK_S = 7 * 86400.0


@dataclass(frozen=True)
class EnsembleParams:
    short_n: int = 10  # samples in the short means
    long_n: float = 3000.0  # samples of the EW mean/variance of each feature
    clip: float = 4.0  # sigmas a residual is clipped to in the EW updates
    peak_n: float = 700.0  # samples over which the novelty record decays by e
    floor_z: float = 5.0  # a ratio uses max(peak, floor_z): below floor_z sigma nothing scores
    k: float = 3.0  # score = 1 - exp(-k (ratio - 1))
    n_bins: int = 48  # time-of-day profile bins; 0 disables the residual features
    period_s: float = 86400.0
    bin_alpha: float = 0.05  # weight floor of a bin's EWMA
    min_bin_n: int = 3
    warmup_n: int = 200  # samples scored 0 at the start (the statistics still learn)
    suppress_n: int = 200  # samples scored 0 after an alarm
    alarm_score: float = 0.01  # a score at least this starts the suppression
    w_short: float = 1.0  # weights of the feature ratios (0 switches a feature off)
    w_resid: float = 1.0
    w_resid_short: float = 0.0
    week_bins: int = 336  # bins of the day-of-week profile (7 x 48 half-hours); 0 disables it
    w_week: float = 0.0
    w_week_short: float = 1.0

    def __post_init__(self) -> None:
        checks = (
            ("short_n", self.short_n >= 1),
            ("long_n", self.long_n >= 1),
            ("clip", self.clip > 0),
            ("peak_n", self.peak_n > 0),
            ("floor_z", self.floor_z > 0),
            ("k", self.k > 0),
            ("n_bins", self.n_bins >= 0),
            ("period_s", self.period_s > 0),
            ("bin_alpha", 0 < self.bin_alpha <= 1),
            ("min_bin_n", self.min_bin_n >= 1),
            ("warmup_n", self.warmup_n >= 0),
            ("suppress_n", self.suppress_n >= 0),
            ("alarm_score", 0 <= self.alarm_score <= 1),
            ("w_short", self.w_short >= 0),
            ("w_resid", self.w_resid >= 0),
            ("w_resid_short", self.w_resid_short >= 0),
            ("week_bins", self.week_bins >= 0),
            ("w_week", self.w_week >= 0),
            ("w_week_short", self.w_week_short >= 0),
        )
        for name, ok in checks:
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"invalid {name}: {value!r}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> EnsembleParams:
        """Params from a mapping whose values may be strings (``--param floor_z=4``); missing keys keep
        their defaults, unknown keys raise ``ValueError``."""
        kinds = {f.name: f.type for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, raw in (m or {}).items():
            name = str(key).strip()
            if name not in kinds:
                raise ValueError(f"unknown anomaly parameter {name!r}; known: {', '.join(kinds)}")
            kw[name] = _convert(name, raw, "int" if kinds[name] in ("int", int) else "float")
        return cls(**kw)


class EnsembleScorer:
    """Streaming ensemble anomaly score of one channel (see the comment above for the model)."""

    def __init__(self, params: EnsembleParams | None = None) -> None:
        self.params = p = params or EnsembleParams()
        self.n = 0
        self.since_alarm = -1  # samples since the last alarm, -1 for none in suppression
        self.buf = [0.0] * p.short_n  # last values (ring, position n % short_n)
        self.rbuf = [0.0] * p.short_n  # last residuals
        self.wbuf = [0.0] * p.short_n  # last residuals from the weekly profile
        self.mean = [0.0] * 5
        self.var = [0.0] * 5
        self.peak = [0.0] * 5
        self.profile = [0.0] * p.n_bins
        self.profile_n = [0] * p.n_bins
        self.week = [0.0] * p.week_bins
        self.week_n = [0] * p.week_bins
        self._decay = math.exp(-1.0 / p.peak_n)
        self.sums = [0.0, 0.0, 0.0]
        self._weights = (p.w_short, p.w_resid, p.w_resid_short, p.w_week, p.w_week_short)
        self._active = tuple(i for i in range(5) if self._weights[i] > 0.0)
        self._a_long = 1.0 / p.long_n

    def step(self, t_epoch_s: float, x: float) -> AnomalyPoint:
        """Score one sample and absorb it."""
        t, x = float(t_epoch_s), float(x)
        p = self.params
        if not (math.isfinite(t) and math.isfinite(x)):
            return AnomalyPoint(0.0, 0.0, math.nan, math.sqrt(self.var[0]))
        w = p.short_n
        j = self.n % w
        self.n = n = self.n + 1
        m = n if n < w else w
        sums = self.sums  # running sums of the three rings (stored, so restores are exact)
        buf = self.buf
        sums[0] += x - buf[j]
        buf[j] = x
        base = self.mean[0]
        resid = 0.0
        b = -1
        if p.n_bins:
            b = int((t % p.period_s) * p.n_bins / p.period_s)
            b = b if b < p.n_bins else p.n_bins - 1
            if self.profile_n[b] >= p.min_bin_n:
                base = self.profile[b]
                resid = x - base
        rbuf = self.rbuf
        sums[1] += resid - rbuf[j]
        rbuf[j] = resid
        wb = -1
        wresid = 0.0
        if p.week_bins:
            wb = int((t % _WEEK_S) * p.week_bins / _WEEK_S)
            wb = wb if wb < p.week_bins else p.week_bins - 1
            if self.week_n[wb] >= p.min_bin_n:
                wresid = x - self.week[wb]
        wbuf = self.wbuf
        sums[2] += wresid - wbuf[j]
        wbuf[j] = wresid
        feats = (sums[0] / m, resid, sums[1] / m, wresid, sums[2] / m)
        a = 1.0 / n
        if a < self._a_long:
            a = self._a_long
        mean, var, peak, weights = self.mean, self.var, self.peak, self._weights
        best = zmax = 0.0
        learn_peak = n > p.warmup_n // 2
        clip, floor_z, decay = p.clip, p.floor_z, self._decay
        for i in self._active:
            f = feats[i]
            if n == 1:
                mean[i] = f
                continue
            v = var[i]
            r = f - mean[i]
            if v > 0.0:
                sd = math.sqrt(v)
                z = abs(r) / sd
                if z > zmax:
                    zmax = z
                pk = peak[i]
                ratio = weights[i] * z / (pk if pk > floor_z else floor_z)
                if ratio > best:
                    best = ratio
                lim = clip * sd
                r = lim if r > lim else (-lim if r < -lim else r)
                if learn_peak:
                    pk *= decay
                    peak[i] = z if z > pk else pk
            elif r != 0.0:
                best = math.inf  # the first spread ever seen: unbounded novelty, capped to 1 below
            mean[i] += a * r
            var[i] = v + a * (r * r - v)
        if b >= 0:
            cnt = self.profile_n[b] = self.profile_n[b] + 1
            self.profile[b] += max(1.0 / cnt, p.bin_alpha) * (x - self.profile[b])
        if wb >= 0:
            cnt = self.week_n[wb] = self.week_n[wb] + 1
            self.week[wb] += max(1.0 / cnt, p.bin_alpha) * (x - self.week[wb])
        score = -math.expm1(-p.k * (best - 1.0)) if (best > 1.0 and n > p.warmup_n) else 0.0
        if self.since_alarm >= 0:
            self.since_alarm += 1
            if self.since_alarm <= p.suppress_n:
                score = 0.0
            else:
                self.since_alarm = -1
        if score >= p.alarm_score and score > 0.0 and self.since_alarm < 0:
            self.since_alarm = 0
        return AnomalyPoint(score, zmax, base, math.sqrt(var[0]))

    def update(self, t_epoch_s: float, x: float) -> float:
        """Score in [0, 1] of one sample, then absorb it."""
        return self.step(t_epoch_s, x).score

    def process(self, ts: ArrayLike, xs: ArrayLike) -> np.ndarray:
        """Scores of a chunk of samples (in the given order)."""
        t = np.asarray(ts, dtype=np.float64)
        x = np.asarray(xs, dtype=np.float64)
        if t.ndim != 1 or t.shape != x.shape:
            raise ValueError(f"ts and xs must be one-dimensional and of equal length, got {t.shape} and {x.shape}")
        step = self.step
        return np.array([step(ti, xi)[0] for ti, xi in zip(t.tolist(), x.tolist(), strict=True)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": asdict(self.params),
            "n": self.n,
            "since_alarm": self.since_alarm,
            "buf": list(self.buf),
            "sums": list(self.sums),
            "rbuf": list(self.rbuf),
            "wbuf": list(self.wbuf),
            "week": list(self.week),
            "week_n": list(self.week_n),
            "mean": list(self.mean),
            "var": list(self.var),
            "peak": list(self.peak),
            "profile": list(self.profile),
            "profile_n": list(self.profile_n),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], params: EnsembleParams | None = None) -> EnsembleScorer:
        """Restore a scorer; ``params`` override the stored ones but must keep ``short_n`` and ``n_bins``."""
        obj = cls(params or EnsembleParams.from_mapping(d["params"]))
        p = obj.params
        if len(d["buf"]) != p.short_n or len(d["profile"]) != p.n_bins or len(d["week"]) != p.week_bins:
            raise ValueError("stored state does not fit short_n / n_bins / week_bins of the params")
        obj.n = int(d["n"])
        obj.since_alarm = int(d["since_alarm"])
        obj.buf = [float(v) for v in d["buf"]]
        obj.sums = [float(v) for v in d["sums"]]
        obj.rbuf = [float(v) for v in d["rbuf"]]
        obj.wbuf = [float(v) for v in d["wbuf"]]
        obj.week = [float(v) for v in d["week"]]
        obj.week_n = [int(v) for v in d["week_n"]]
        obj.mean = [float(v) for v in d["mean"]]
        obj.var = [float(v) for v in d["var"]]
        obj.peak = [float(v) for v in d["peak"]]
        obj.profile = [float(v) for v in d["profile"]]
        obj.profile_n = [int(v) for v in d["profile_n"]]
        return obj
