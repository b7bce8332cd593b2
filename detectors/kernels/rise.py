"""Water-level rate of rise (m/h) with a noise-robust slope. Pure numpy; state is a list of pairs.

The slope is the Theil-Sen estimator (``scipy.stats.theilslopes``): the median of the slopes
``(l_j - l_i) / (t_j - t_i)`` over all pairs of samples with distinct times (pairs at the same time
are skipped; an even number of slopes gives the mean of the two middle ones). Up to ~29 % of the
points can be arbitrary outliers before the estimate breaks down, and with ``n`` points it costs
``n (n - 1) / 2`` slopes, so the streaming buffer is bounded by ``max_points``. scipy also computes
a confidence interval the rate does not use: about 0.26 ms a call at 7 to 30 points (a water level
every 5 min), where a bare numpy median of the pairwise slopes took 0.03 ms. ``RiseTracker`` takes
a window of up to ``SMALL_N`` points in plain Python (the same slopes and median, a few
microseconds; tests/detectors/test_rise.py checks it equals scipy's float).

``RiseTracker`` keeps the samples with ``t >= newest - window_s`` (a closed window ending at the
newest sample, whatever the arrival order), at most ``max_points`` of them (the newest win). A
sample at the same time as a held one replaces it (a resend); a late sample older than the window
is ignored. The rate is reported once at least ``min_points`` samples spanning at least
``min_span_s`` are held, else None. Non-finite samples are ignored.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import theilslopes

__all__ = ["HOUR_S", "RiseTracker", "rate_of_rise_m_per_h", "theil_sen_slope"]

HOUR_S = 3600.0


def _finite_pairs(ts: ArrayLike, levels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(ts, dtype=np.float64)
    y = np.asarray(levels, dtype=np.float64)
    if t.ndim != 1 or t.shape != y.shape:
        raise ValueError(f"ts and levels must be one-dimensional and of equal length, got {t.shape} and {y.shape}")
    ok = np.isfinite(t) & np.isfinite(y)
    return t[ok], y[ok]


def theil_sen_slope(ts: ArrayLike, levels: ArrayLike) -> float:
    """Median of the pairwise slopes, per second; NaN when no two finite samples differ in time."""
    t, y = _finite_pairs(ts, levels)
    if t.size < 2 or t.min() == t.max():
        return math.nan
    return float(theilslopes(y, t).slope)


# Up to this many points the slopes are taken in plain Python: numpy's per-call overhead costs more
# than the n (n - 1) / 2 slopes themselves (a 5-minute gauge holds 7 points in 30 minutes).
SMALL_N = 24


def _small_slope(points: Sequence[Sequence[float]]) -> float:
    """:func:`theil_sen_slope` of finite ``[t, level]`` points in time order, without numpy: the same
    slopes (the same float operations) and the same median (the middle one, or the mean of the two
    middle ones as ``numpy.median`` takes it: their sum halved)."""
    slopes = sorted(
        (b[1] - a[1]) / (b[0] - a[0]) for i, a in enumerate(points) for b in points[i + 1 :] if b[0] != a[0]
    )
    n = len(slopes)
    if not n:
        return math.nan
    mid = n // 2
    return slopes[mid] if n % 2 else (slopes[mid - 1] + slopes[mid]) / 2


def rate_of_rise_m_per_h(ts: ArrayLike, levels: ArrayLike) -> float:
    """Theil-Sen rate of rise in m/h of levels (m) at times ``ts`` (epoch s); NaN when undefined.

    Uses every given sample: select the window before calling (``RiseTracker`` does)."""
    return theil_sen_slope(ts, levels) * HOUR_S


def _rate_of_rise_reference(ts: Sequence[float], levels: Sequence[float]) -> float:
    """Plain-Python twin of :func:`rate_of_rise_m_per_h`, kept for tests."""
    pts = [(float(t), float(y)) for t, y in zip(ts, levels, strict=True) if math.isfinite(t) and math.isfinite(y)]
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.combinations(pts, 2) if b[0] != a[0]]
    return statistics.median(slopes) * HOUR_S if slopes else math.nan


class RiseTracker:
    """Streaming rate of rise over the last ``window_s`` seconds (see the module docstring)."""

    def __init__(
        self, window_s: float = 1800.0, max_points: int = 120, min_points: int = 3, min_span_s: float = 600.0
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        if isinstance(max_points, bool) or int(max_points) != max_points or max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        if isinstance(min_points, bool) or int(min_points) != min_points or not 2 <= min_points <= max_points:
            raise ValueError(f"min_points must be an integer in [2, max_points], got {min_points!r}")
        if not (math.isfinite(min_span_s) and 0 <= min_span_s <= window_s):
            raise ValueError(f"min_span_s must lie in [0, window_s], got {min_span_s!r}")
        self.window_s = float(window_s)
        self.max_points = int(max_points)
        self.min_points = int(min_points)
        self.min_span_s = float(min_span_s)
        self.points: list[list[float]] = []  # [[t, level], ...] in time order

    def add(self, t_epoch_s: float, level_m: float) -> None:
        """Absorb one sample without computing the rate."""
        t, y = float(t_epoch_s), float(level_m)
        if not (math.isfinite(t) and math.isfinite(y)):
            return
        times = [p[0] for p in self.points]
        i = bisect.bisect_left(times, t)
        if i < len(times) and times[i] == t:
            self.points[i] = [t, y]
        else:
            self.points.insert(i, [t, y])
        cut = self.points[-1][0] - self.window_s
        pts = [p for p in self.points if p[0] >= cut]
        self.points = pts[-self.max_points :]

    def rate(self) -> float | None:
        """The current rate in m/h, or None while too few points or too short a span are held."""
        if len(self.points) < self.min_points or self.points[-1][0] - self.points[0][0] < self.min_span_s:
            return None
        if len(self.points) <= SMALL_N:
            return _small_slope(self.points) * HOUR_S
        return rate_of_rise_m_per_h([p[0] for p in self.points], [p[1] for p in self.points])

    def update(self, t_epoch_s: float, level_m: float) -> float | None:
        """Absorb one sample and return the current rate in m/h (or None)."""
        self.add(t_epoch_s, level_m)
        return self.rate()

    def process(self, ts: ArrayLike, levels: ArrayLike) -> np.ndarray:
        """The rate after each sample of a chunk, NaN where it is None."""
        t = np.asarray(ts, dtype=np.float64)
        y = np.asarray(levels, dtype=np.float64)
        if t.ndim != 1 or t.shape != y.shape:
            raise ValueError(f"ts and levels must be one-dimensional and of equal length, got {t.shape} and {y.shape}")
        out = [self.update(ti, yi) for ti, yi in zip(t.tolist(), y.tolist(), strict=True)]
        return np.array([math.nan if r is None else r for r in out], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "max_points": self.max_points,
            "min_points": self.min_points,
            "min_span_s": self.min_span_s,
            "points": [list(p) for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiseTracker:
        obj = cls(d["window_s"], d["max_points"], d["min_points"], d["min_span_s"])
        pts = sorted([float(t), float(y)] for t, y in d["points"])
        obj.points = pts[-obj.max_points :]
        return obj
