"""Generic anomaly score for any numeric channel (the fallback for channels without a domain rule).

Pure Python/numpy; nothing here imports the rest of the project. One ``AnomalyScorer`` per channel
carries all its state explicitly; ``to_dict()`` / ``from_dict()`` give plain JSON data, and
feeding a series in chunks (with the state round-tripped through JSON in between) gives exactly
the scores of one ``score_series`` call, because both run the same per-sample arithmetic.

Model, per sample ``(t, x)``, all quantities *before* the sample is absorbed (the score is a
one-step-ahead prediction error, so a spike cannot hide itself):

* **Seasonal profile** of the daily cycle: ``n_bins`` bins over ``period_s`` (48 half-hour bins of
  a day by default), each an exponentially weighted mean of the (cleaned, see below) value by time
  of day, ``t mod period_s`` on the epoch clock. A bin is *ready* once it has absorbed
  ``min_bin_n`` samples. The seasonal value at ``t`` is the linear interpolation between the
  centres of the two bins around ``t`` when both are ready (this removes the staircase error of a
  plain bin lookup on a steep cycle), else the own bin's value when it is ready, else none.
* **Level**: ``level`` is an EWMA (time constant ``adapt_s / 3``) of the de-seasonalised series
  ``x - season(t)``, updated only when a seasonal value exists. ``raw_level`` is an EWMA (same time
  constant) of the value itself, always updated; it is the baseline while the profile is not ready
  (the first cycle, or a bin that has not been visited enough).
* **Baseline** ``season(t) + level`` (or ``raw_level``); **residual** ``r = x - baseline``.
* **Scale**: EWMA (time constant ``scale_tau_s``) of ``|r|`` times ``sqrt(pi/2) = 1.2533`` (the
  mean absolute deviation of a Gaussian is ``sigma * sqrt(2/pi)``, so this estimates sigma);
  the scale used is ``max(scale, min_scale)``.
* **z** ``= |r| / max(scale, min_scale)``; **score** ``= 1 - exp(-max(0, z - z0) / k)``, in [0, 1]:
  0 up to ``z0`` sigma, 0.5 at ``z0 + k ln 2`` (3.35 sigma with the defaults), 0.9 at
  ``z0 + k ln 10`` (4.15), 0.99 at 5.3: a soft threshold between 3 and 5 sigma. An exponential ramp
  rather than a logistic so that the score is exactly 0 for ordinary noise and the parameters read
  as "sigmas". For Gaussian noise about 0.1 % of samples score >= 0.5 and ~5e-5 score >= 0.9; an
  8-sigma spike scores > 0.9 unless the noise on that sample takes back more than ~3 sigma.
* **Robust updates (Huber)**: the residual is clipped to ``+-huber_c * max(scale, min_scale)``
  and the *cleaned* value ``xc = baseline + clip(r)`` feeds the profile and both levels; the scale
  absorbs ``|r|`` clipped the same way. One spike therefore moves the baseline by at most
  ``alpha * huber_c * scale`` and the scale by a few per cent. While the scale is still exactly 0
  (no spread seen yet, e.g. a constant series) zero residuals are not counted and the first
  non-zero ``|r|`` sets the scale unclipped (``1.2533 * |r|``), so that a quantised or constant
  start cannot freeze the scale at ``min_scale``.
* **Level shifts**: a sustained shift is clipped too, so the level walks towards it by up to
  ``alpha * huber_c * scale`` per sample, then exponentially, while the clipped residuals inflate
  the scale (by up to ``alpha_scale * (1.2533 * huber_c - 1)`` per sample), which shortens the
  episode but leaves the channel less sensitive until the scale relaxes (``scale_tau_s``). With
  the defaults at 5-minute sampling a 6-sigma step stops scoring >= 0.5 after ~0.25 ``adapt_s``,
  a 20-sigma step after ~0.6 ``adapt_s``: ``adapt_s`` is the "absorbed by then" horizon. The
  profile then takes the new level over within ``profile_tau_periods`` cycles while ``level``
  returns to 0 (their sum, the baseline, stays on the new level throughout).
* **Irregular sampling**: every EWMA weight is time-based, ``alpha = 1 - exp(-dt / tau)`` with
  ``dt`` the time since the newest sample so far, capped to ``[0, max_dt_s]`` (after a long gap one
  sample does not overwrite the state; an out-of-order or duplicate time gives ``dt = 0``). A
  profile bin only sees ``period_s / n_bins`` seconds of data per cycle, so its time constant is
  ``profile_tau_periods * period_s / n_bins`` seconds of exposure, i.e. ``profile_tau_periods``
  cycles whatever the sampling rate. Each EWMA weight is floored at ``1/m`` for its ``m``-th
  update, so every estimate starts as a plain running mean instead of remembering its first sample.
* **Warm-up**: the first ``warmup_n`` samples score 0 (the state is updated regardless).
* A non-finite ``t`` or ``x`` scores 0 and leaves the state untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MAD_TO_SIGMA", "AnomalyParams", "AnomalyPoint", "AnomalyScorer", "anomaly_score", "score_series"]

MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)  # 1.2533141373155001


@dataclass(frozen=True)
class AnomalyParams:
    n_bins: int = 48  # bins of the seasonal profile per period; 0 disables the profile
    period_s: float = 86400.0  # length of the cycle (a day)
    profile_tau_periods: float = 5.0  # time constant of each bin, in cycles
    min_bin_n: int = 3  # samples a bin must have absorbed before it is used
    adapt_s: float = 10800.0  # a ~6-sigma level shift stops scoring >= 0.5 after about this (level tau = adapt_s/3)
    scale_tau_s: float = 14400.0  # time constant of the robust scale
    huber_c: float = 3.0  # residuals are clipped to +- huber_c * scale in all updates
    z0: float = 3.0  # score is 0 up to z0 sigma
    k: float = 0.5  # then rises as 1 - exp(-(z - z0) / k)
    min_scale: float = 1e-6  # floor of the scale, in the channel's unit (set it to the resolution)
    warmup_n: int = 30  # samples before the first non-zero score
    max_dt_s: float = 1800.0  # cap on the time step used for the EWMA weights

    def __post_init__(self) -> None:
        checks = (
            ("n_bins", self.n_bins >= 0),
            ("period_s", self.period_s > 0),
            ("profile_tau_periods", self.profile_tau_periods > 0),
            ("min_bin_n", self.min_bin_n >= 1),
            ("adapt_s", self.adapt_s > 0),
            ("scale_tau_s", self.scale_tau_s > 0),
            ("huber_c", self.huber_c > 0),
            ("z0", self.z0 >= 0),
            ("k", self.k > 0),
            ("min_scale", self.min_scale > 0),
            ("warmup_n", self.warmup_n >= 0),
            ("max_dt_s", self.max_dt_s > 0),
        )
        for name, ok in checks:
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"invalid {name}: {value!r}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> AnomalyParams:
        """Params from a mapping whose values may be strings (``--param adapt_s=7200``); missing
        keys keep their defaults, unknown keys raise ``ValueError``."""
        kinds = {f.name: f.type for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, raw in (m or {}).items():
            name = str(key).strip()
            if name not in kinds:
                raise ValueError(f"unknown anomaly parameter {name!r}; known: {', '.join(kinds)}")
            kw[name] = _convert(name, raw, "int" if kinds[name] in ("int", int) else "float")
        return cls(**kw)


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
    z: float
    baseline: float
    scale: float  # the scale used, i.e. max(scale, min_scale)


def anomaly_score(z: float, z0: float = 3.0, k: float = 0.5) -> float:
    """``1 - exp(-max(0, z - z0) / k)``."""
    return 1.0 - math.exp(-max(0.0, z - z0) / k)


def _alpha(dt: float, tau: float) -> float:
    return -math.expm1(-dt / tau)


class AnomalyScorer:
    """Streaming robust anomaly score of one channel (see the module docstring for the model)."""

    def __init__(self, params: AnomalyParams | None = None) -> None:
        self.params = params or AnomalyParams()
        p = self.params
        self.n = 0  # samples absorbed
        self.t_last: float | None = None  # newest sample time so far
        self.raw_level = 0.0
        self.level = 0.0
        self.n_level = 0
        self.scale = 0.0
        self.n_scale = 0
        self.profile = [0.0] * p.n_bins
        self.profile_n = [0] * p.n_bins
        self._bin_w = p.period_s / p.n_bins if p.n_bins else p.period_s
        self._tau_bin = p.profile_tau_periods * self._bin_w
        self._tau_level = p.adapt_s / 3.0

    # ---------------------------------------------------------------- model pieces
    def _bin(self, t: float) -> tuple[int, float]:
        """(own bin, phase in bin widths) of time t."""
        u = (t % self.params.period_s) / self._bin_w
        return min(int(u), self.params.n_bins - 1), u

    def season(self, t: float) -> float | None:
        """The seasonal value at ``t``, or None when the profile is not ready there."""
        p = self.params
        if not p.n_bins:
            return None
        b, u = self._bin(t)
        v = u - 0.5
        f0 = math.floor(v)
        frac = v - f0
        i0 = int(f0) % p.n_bins
        i1 = (i0 + 1) % p.n_bins
        if self.profile_n[i0] >= p.min_bin_n and self.profile_n[i1] >= p.min_bin_n:
            return (1.0 - frac) * self.profile[i0] + frac * self.profile[i1]
        if self.profile_n[b] >= p.min_bin_n:
            return self.profile[b]
        return None

    def baseline(self, t: float) -> float | None:
        """The value expected at ``t`` (None before the first sample)."""
        if self.n == 0:
            return None
        s = self.season(t)
        return s + self.level if (s is not None and self.n_level > 0) else self.raw_level

    # ---------------------------------------------------------------- streaming
    def step(self, t_epoch_s: float, x: float) -> AnomalyPoint:
        """Score one sample and absorb it."""
        t, x = float(t_epoch_s), float(x)
        p = self.params
        if not (math.isfinite(t) and math.isfinite(x)):
            return AnomalyPoint(0.0, 0.0, math.nan, max(self.scale, p.min_scale))
        first = self.t_last is None
        dt = 0.0 if self.t_last is None else min(max(t - self.t_last, 0.0), p.max_dt_s)
        season = self.season(t)
        if first:
            base = x
        elif season is not None and self.n_level > 0:
            base = season + self.level
        else:
            base = self.raw_level
        r = x - base
        eff = max(self.scale, p.min_scale)
        z = abs(r) / eff
        score = anomaly_score(z, p.z0, p.k) if self.n >= p.warmup_n else 0.0
        lim = p.huber_c * eff
        xc = base + min(max(r, -lim), lim)

        self.n += 1
        self.raw_level += max(_alpha(dt, self._tau_level), 1.0 / self.n) * (xc - self.raw_level)
        if not first and (self.scale > 0.0 or r != 0.0):
            a = min(abs(r), lim) if self.scale > 0.0 else abs(r)
            self.n_scale += 1
            self.scale += max(_alpha(dt, p.scale_tau_s), 1.0 / self.n_scale) * (MAD_TO_SIGMA * a - self.scale)
        if season is not None:
            self.n_level += 1
            self.level += max(_alpha(dt, self._tau_level), 1.0 / self.n_level) * (xc - season - self.level)
        if p.n_bins:
            b, _ = self._bin(t)
            self.profile_n[b] += 1
            self.profile[b] += max(_alpha(dt, self._tau_bin), 1.0 / self.profile_n[b]) * (xc - self.profile[b])
        self.t_last = t if self.t_last is None else max(self.t_last, t)
        return AnomalyPoint(score, z, base, eff)

    def update(self, t_epoch_s: float, x: float) -> float:
        """Score in [0, 1] of one sample, then absorb it."""
        return self.step(t_epoch_s, x).score

    def process(self, ts: ArrayLike, xs: ArrayLike) -> np.ndarray:
        """Scores of a chunk of samples (in the given order)."""
        t = np.asarray(ts, dtype=np.float64)
        x = np.asarray(xs, dtype=np.float64)
        if t.ndim != 1 or t.shape != x.shape:
            raise ValueError(f"ts and xs must be one-dimensional and of equal length, got {t.shape} and {x.shape}")
        return np.array([self.step(ti, xi).score for ti, xi in zip(t.tolist(), x.tolist(), strict=True)])

    # ---------------------------------------------------------------- state
    def to_dict(self) -> dict[str, Any]:
        return {
            "params": asdict(self.params),
            "n": self.n,
            "t_last": self.t_last,
            "raw_level": self.raw_level,
            "level": self.level,
            "n_level": self.n_level,
            "scale": self.scale,
            "n_scale": self.n_scale,
            "profile": list(self.profile),
            "profile_n": list(self.profile_n),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], params: AnomalyParams | None = None) -> AnomalyScorer:
        """Restore a scorer; ``params`` (e.g. from current configuration) override the stored ones
        but must keep the same ``n_bins``."""
        obj = cls(params or AnomalyParams.from_mapping(d["params"]))
        profile = [float(v) for v in d["profile"]]
        profile_n = [int(v) for v in d["profile_n"]]
        if len(profile) != obj.params.n_bins or len(profile_n) != obj.params.n_bins:
            raise ValueError(f"stored profile has {len(profile)} bins, params say {obj.params.n_bins}")
        obj.n = int(d["n"])
        obj.t_last = None if d["t_last"] is None else float(d["t_last"])
        obj.raw_level = float(d["raw_level"])
        obj.level = float(d["level"])
        obj.n_level = int(d["n_level"])
        obj.scale = float(d["scale"])
        obj.n_scale = int(d["n_scale"])
        obj.profile = profile
        obj.profile_n = profile_n
        return obj


def score_series(ts: ArrayLike, xs: ArrayLike, params: AnomalyParams | None = None) -> np.ndarray:
    """Scores of a whole series from a fresh scorer."""
    return AnomalyScorer(params).process(ts, xs)


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
        """As ``AnomalyParams.from_mapping``."""
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
