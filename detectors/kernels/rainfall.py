"""Rolling rainfall accumulations from tipping-bucket increments. Pure; state is a list of pairs.

Each report says ``rain_mm`` fell during ``(t_end - interval_s, t_end]``. The accumulation over a
window ``(now - w, now]`` counts each report pro rata to the overlap of its interval with the
window (rain assumed uniform within a report). Gaps (no reports) count as no rain, and the
coverage of the window by reports is returned so callers can tell "dry" from "silent".
Reports arriving out of order are placed by time; a report identical in (t_end, interval) to one
already held replaces it rather than adding twice.

Totals are exact at the reporting resolution: each report is taken in integer hundredths of a
millimetre (``UNITS_PER_MM``; gauges report 0.1, 0.2 or 0.5 mm tips, an 0.01 in tip of 0.254 mm
becomes 0.25 mm) and summed as integers, so 1,000 reports of 0.1 mm make exactly 100 mm (a float
sum gives 99.9999999999986 and would miss a ">= 100 mm" rule). A report straddling a window edge
adds its exact pro-rata share, and the window's total is rounded once to the nearest hundredth.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from fractions import Fraction

HOUR_S = 3600.0
DEFAULT_WINDOWS_S = (1 * HOUR_S, 3 * HOUR_S, 6 * HOUR_S, 12 * HOUR_S, 24 * HOUR_S)

# A report: (t_end epoch seconds, interval seconds, millimetres).
Report = tuple[float, float, float]

UNITS_PER_MM = 100  # totals are integer hundredths of a millimetre


def to_units(mm: float) -> int:
    """Millimetres in integer hundredths (the nearest one: ``0.1 * 100`` is 10.000000000000002)."""
    return round(mm * UNITS_PER_MM)


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


def accumulation_units(reports: Iterable[Report], now_s: float, window_s: float) -> tuple[int, float]:
    """(hundredths of a millimetre, coverage 0..1) over ``(now_s - window_s, now_s]``, exact."""
    w0 = now_s - window_s
    whole = 0
    part = Fraction(0)
    covered = 0.0
    for t_end, interval, mm in reports:  # the hot loop of the rain detector: no calls but round()
        start = t_end - interval
        if t_end <= w0 or start >= now_s:
            continue
        lo = start if start > w0 else w0
        hi = t_end if t_end < now_s else now_s
        covered += hi - lo
        if lo == start and hi == t_end:
            whole += round(mm * UNITS_PER_MM)
        else:
            part += Fraction(round(mm * UNITS_PER_MM)) * Fraction(hi - lo) / Fraction(interval)
    return whole + round(part), min(1.0, covered / window_s)


def accumulation(reports: Iterable[Report], now_s: float, window_s: float) -> tuple[float, float]:
    """(millimetres, coverage 0..1) over ``(now_s - window_s, now_s]``: :func:`accumulation_units`
    in millimetres (the float nearest the exact hundredths, e.g. exactly 100.0 for 10000)."""
    units, coverage = accumulation_units(reports, now_s, window_s)
    return units / UNITS_PER_MM, coverage


def accumulations(
    reports: Sequence[Report], now_s: float, windows_s: Sequence[float] = DEFAULT_WINDOWS_S
) -> dict[float, float]:
    return {w: accumulation(reports, now_s, w)[0] for w in windows_s}
