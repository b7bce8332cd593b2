"""Rolling rainfall accumulations from tipping-bucket increments. Pure; state is a list of pairs.

Each report says ``rain_mm`` fell during ``(t_end - interval_s, t_end]``. The accumulation over a
window ``(now - w, now]`` counts each report pro rata to the overlap of its interval with the
window (rain assumed uniform within a report). Gaps (no reports) count as no rain, and the
coverage of the window by reports is returned so callers can tell "dry" from "silent".
Reports arriving out of order are placed by time; a report identical in (t_end, interval) to one
already held replaces it rather than adding twice.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from operator import itemgetter

HOUR_S = 3600.0
DEFAULT_WINDOWS_S = (1 * HOUR_S, 3 * HOUR_S, 6 * HOUR_S, 12 * HOUR_S, 24 * HOUR_S)

# A report: (t_end epoch seconds, interval seconds, millimetres).
Report = tuple[float, float, float]


def add_report(
    reports: Sequence[Report],
    t_end_s: float,
    interval_s: float,
    rain_mm: float,
    horizon_s: float = 24 * HOUR_S,
) -> list[Report]:
    """A new report list with the report inserted in time order and anything older than the horizon
    (relative to the newest report) dropped."""
    out = list(reports)
    i = bisect.bisect_left(out, (t_end_s, interval_s))  # the first report of this (t_end, interval), if any
    while i < len(out) and out[i][0] == t_end_s and out[i][1] == interval_s:
        del out[i]
    bisect.insort(out, (t_end_s, interval_s, rain_mm))
    cut = out[-1][0] - horizon_s  # relative to the newest report
    return out[bisect.bisect_right(out, (cut, math.inf, math.inf)) :]


def cap_reports(reports: Sequence[Report], max_n: int, horizon_s: float = 24 * HOUR_S) -> list[Report]:
    """At most ``max_n`` reports (bounded state): when there are more, the reports whose ends fall in
    the same time bucket of ``horizon_s / (max_n - 1)`` are merged into one report spanning them (the
    sum of their rain, from the earliest start to the latest end). A gauge reporting no more often than
    that bucket is never merged; a flood of distinct timestamps keeps its rain, at bucket resolution."""
    if len(reports) <= max_n:
        return list(reports)
    width = horizon_s / max(1, max_n - 1)
    out: list[Report] = []
    for t_end, interval, mm in reports:  # in time order
        if out and t_end // width == out[-1][0] // width:
            t0, i0, mm0 = out[-1]
            start = min(t0 - i0, t_end - interval)
            out[-1] = (t_end, t_end - start, mm0 + mm)
        else:
            out.append((t_end, interval, mm))
    return out[-max_n:]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def accumulation(reports: Iterable[Report], now_s: float, window_s: float) -> tuple[float, float]:
    """(millimetres, coverage 0..1) over ``(now_s - window_s, now_s]``."""
    w0 = now_s - window_s
    total = 0.0
    covered = 0.0
    for t_end, interval, mm in reports:
        start = t_end - interval
        ov = _overlap(start, t_end, w0, now_s)
        if ov > 0:
            total += mm * ov / interval
            covered += ov
    return total, min(1.0, covered / window_s)


def accumulations(
    reports: Sequence[Report], now_s: float, windows_s: Sequence[float] = DEFAULT_WINDOWS_S
) -> dict[float, float]:
    return {w: accumulation(reports, now_s, w)[0] for w in windows_s}


def window_sums(reports: Sequence[Sequence[float]], now_s: float, windows_s: Sequence[float]) -> list[float]:
    """``accumulation(reports, now_s, w)[0]`` for every window ``w``, for reports in time order, without
    visiting every report per window: the reports ending inside a window count whole, found by
    bisection; only those that can straddle its start (ending less than the longest interval after it)
    or end after ``now_s`` (out-of-order arrivals) are prorated one by one. Sums are exactly rounded
    (``math.fsum``): five hundred reports of 0.1 mm make exactly 50.0 mm.
    The plain loop :func:`accumulation` is the reference twin (tests/detectors check them equal)."""
    if not reports:
        return [0.0 for _ in windows_s]
    ends = list(map(itemgetter(0), reports))
    longest = max(map(itemgetter(1), reports))
    hi = bisect.bisect_right(ends, now_s)  # reports [.., hi) end at or before now
    late = reports[hi : bisect.bisect_left(ends, now_s + longest, hi)]  # end later, may start before now
    mms: list[float] | None = None
    out = []
    for w in windows_s:
        w0 = now_s - w
        lo = bisect.bisect_right(ends, w0, 0, hi)  # [lo, hi) end inside (w0, now]
        edge = bisect.bisect_left(ends, w0 + longest, lo, hi)  # [lo, edge) may start before w0
        parts = [
            mm if t_end - interval >= w0 else mm * (t_end - w0) / interval for t_end, interval, mm in reports[lo:edge]
        ]
        if edge < hi:
            if mms is None:
                mms = list(map(itemgetter(2), reports))
            parts += mms[edge:hi]
        for t_end, interval, mm in late:
            ov = _overlap(t_end - interval, t_end, w0, now_s)
            if ov > 0:
                parts.append(mm * ov / interval)
        out.append(math.fsum(parts))
    return out
