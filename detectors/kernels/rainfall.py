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
from collections.abc import Iterable, Sequence

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
    out = [r for r in reports if not (r[0] == t_end_s and r[1] == interval_s)]
    bisect.insort(out, (t_end_s, interval_s, rain_mm))
    newest = out[-1][0]
    cut = newest - horizon_s
    return [r for r in out if r[0] > cut]


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
