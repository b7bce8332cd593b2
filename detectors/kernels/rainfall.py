"""Rolling rainfall accumulations from tipping-bucket increments. Pure functions over lists of reports,
and :class:`RainWindow`, the same kept incrementally (the rain detector's state). No I/O.

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
import itertools
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from itertools import accumulate
from operator import itemgetter
from typing import Any

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


def window_units(reports: Sequence[Report], now_s: float, windows_s: Sequence[float]) -> list[int]:
    """``accumulation_units(reports, now_s, w)[0]`` for every window ``w`` (reports in time order),
    without visiting every report per window: the reports ending inside a window that start inside it
    count whole, summed from a running (prefix) sum of integer hundredths between two bisections;
    only those that can straddle the window's start (ending less than the longest interval after it)
    and those ending after ``now_s`` (out-of-order arrivals) are looked at one by one, with the same
    exact arithmetic. :func:`accumulation_units` is the reference twin (tests/detectors check them
    equal)."""
    if not reports:
        return [0 for _ in windows_s]
    ends = list(map(itemgetter(0), reports))
    prefix = list(accumulate((round(r[2] * UNITS_PER_MM) for r in reports), initial=0))
    longest = max(map(itemgetter(1), reports))
    hi = bisect.bisect_right(ends, now_s)  # reports [0, hi) end at or before now
    late = bisect.bisect_right(ends, now_s + longest * (1 + 1e-9) + 1e-6, hi)  # [hi, late) may start before now
    out = []
    for window_s in windows_s:
        w0 = now_s - window_s
        lo = bisect.bisect_right(ends, w0, 0, hi)  # [lo, hi) end inside (w0, now]
        # [lo, edge) may start before w0 (the margin only widens the range checked one by one)
        edge = bisect.bisect_right(ends, w0 + longest * (1 + 1e-9) + 1e-6, lo, hi)
        whole = prefix[hi] - prefix[edge]
        part = Fraction(0)
        for i in range(lo, edge):
            t_end, interval, _mm = reports[i]
            units = prefix[i + 1] - prefix[i]
            if t_end - interval >= w0:
                whole += units
            else:
                part += Fraction(units) * Fraction(t_end - w0) / Fraction(interval)
        for i in range(hi, late):
            t_end, interval, _mm = reports[i]
            start = t_end - interval
            if start >= now_s:
                continue
            lo_s = start if start > w0 else w0
            part += Fraction(prefix[i + 1] - prefix[i]) * Fraction(now_s - lo_s) / Fraction(interval)
        out.append(whole + round(part))
    return out


def _exact_round(terms: list[tuple[int, float, float]], approx: float, spread: float) -> int:
    """round(sum of units x span / interval) exactly. ``approx`` is the same sum in floats and
    ``spread`` the sum of its terms' magnitudes; the float's rounding is the exact one unless the
    float lies within its error bound of a half (then the sum is redone with fractions)."""
    below = math.floor(approx)
    if abs(approx - below - 0.5) > 1e-9 * (1.0 + spread):
        return round(approx)
    return round(sum((Fraction(u) * Fraction(span) / Fraction(interval) for u, span, interval in terms), Fraction(0)))


def _us(t: float) -> int | None:
    """Epoch seconds as integer microseconds when that is exact (a reading's time always is)."""
    us = round(t * 1_000_000)
    return us if us / 1_000_000 == t else None


Run = list[Any]  # [value, count]: a run of equal values (never changed in place: replaced)


def _runs(values: Iterable[Any]) -> list[Run]:
    out: list[Run] = []
    for v in values:
        if out and out[-1][0] == v and type(out[-1][0]) is type(v):
            out[-1] = [v, out[-1][1] + 1]
        else:
            out.append([v, 1])
    return out


def _push(runs: list[Run], v: Any) -> None:
    last = runs[-1] if runs else None
    if last is not None and last[0] == v and type(last[0]) is type(v):
        runs[-1] = [v, last[1] + 1]
    else:
        runs.append([v, 1])


def _drop(runs: list[Run], k: int) -> None:
    """The first ``k`` values out of the runs."""
    n = 0
    while n < len(runs) and k >= runs[n][1]:
        k -= runs[n][1]
        n += 1
    del runs[:n]
    if k and runs:
        runs[0] = [runs[0][0], runs[0][1] - k]


def _expand(runs: Iterable[Sequence[Any]]) -> list[Any]:
    return [v for v, count in runs for _ in range(int(count))]


class RainWindow(dict[str, Any]):
    """The reports a gauge's rain windows need, kept incrementally: a new report in time order is
    appended, the reports beyond the horizon are cut off the front, and each window's total is a
    difference of a running (prefix) sum of integer hundredths between two bisections, with only the
    reports that straddle a window's start prorated one by one (:func:`window_units`, exactly).

    As a mapping it is its own serialised form (what the detector table writes to its changelog),
    kept up to date by the same appends and cuts, run-length encoded (a gauge's reports mostly
    repeat their spacing, interval and often their amount): ``{"t0": first end in integer
    microseconds, "dt": runs of [microseconds to the next end, count], "i": runs of [interval s,
    count], "mm": runs of [mm, count]}``. Ends that are not whole microseconds (never a reading's)
    are written as plain lists ``{"t", "i", "mm"}`` instead. :meth:`load` takes either back, or the
    older list of ``[t_end, interval, mm]``."""

    __slots__ = ("cum", "ends", "exact", "intervals", "longest", "mms")

    def __init__(self, reports: Iterable[Report] = ()) -> None:
        super().__init__()
        self._rebuild(list(reports))

    def _rebuild(self, reports: Sequence[Report]) -> None:
        self.ends: list[float] = [r[0] for r in reports]
        self.intervals: list[float] = [r[1] for r in reports]
        self.mms: list[float] = [r[2] for r in reports]
        self.cum: list[int] = list(accumulate((round(r[2] * UNITS_PER_MM) for r in reports), initial=0))
        self.longest: float = max(self.intervals, default=0.0)
        us = [_us(t) for t in self.ends]
        self.exact = None not in us
        self.clear()
        if self.exact:
            self["t0"] = us[0] if us else None
            self["dt"] = _runs(b - a for a, b in itertools.pairwise(us))  # type: ignore[operator]
            self["i"] = _runs(self.intervals)
            self["mm"] = _runs(self.mms)
        else:
            self["t"], self["i"], self["mm"] = list(self.ends), list(self.intervals), list(self.mms)

    def copy(self) -> RainWindow:  # type: ignore[override]
        """An independent window with the same reports (list copies: no per-report work; runs are
        replaced, never changed in place, so the copies may share them)."""
        new = RainWindow.__new__(RainWindow)
        dict.update(new, {key: v.copy() if isinstance(v, list) else v for key, v in self.items()})
        new.ends, new.intervals, new.mms, new.cum = (
            self.ends.copy(),
            self.intervals.copy(),
            self.mms.copy(),
            self.cum.copy(),
        )
        new.longest, new.exact = self.longest, self.exact
        return new

    @classmethod
    def load(cls, saved: object) -> RainWindow:
        """A window of its own made of a state's: a copy of a window (the state given to the engine
        is left as it was), a decoded mapping (either form), or the older list of reports."""
        if isinstance(saved, RainWindow):
            return saved.copy()
        if not saved:
            return cls()
        if isinstance(saved, dict):
            if "t0" in saved:
                t0 = saved["t0"]
                us = [] if t0 is None else list(accumulate(_expand(saved["dt"]), initial=t0))
                ends = [t / 1_000_000 for t in us]
                return cls(zip(ends, _expand(saved["i"]), _expand(saved["mm"]), strict=True))
            return cls(zip(map(float, saved["t"]), saved["i"], saved["mm"], strict=True))
        return cls(tuple(r) for r in saved)  # type: ignore[attr-defined]

    @property
    def n(self) -> int:
        """How many reports are held."""
        return len(self.ends)

    def reports(self) -> list[Report]:
        return list(zip(self.ends, self.intervals, self.mms, strict=True))

    def add(self, t_end_s: float, interval_s: float, rain_mm: float, horizon_s: float, max_n: int) -> bool:
        """:func:`add_report` then :func:`cap_reports`, in place; True when the cap merged reports."""
        ends = self.ends
        us = _us(t_end_s) if self.exact else None
        if us is not None and (not ends or t_end_s > ends[-1]):  # in time order (the usual case): appended
            if ends:
                _push(self["dt"], us - round(ends[-1] * 1_000_000))
            else:
                self["t0"] = us
            _push(self["i"], interval_s)
            _push(self["mm"], rain_mm)
            ends.append(t_end_s)
            self.intervals.append(interval_s)
            self.mms.append(rain_mm)
            self.cum.append(self.cum[-1] + round(rain_mm * UNITS_PER_MM))
            if interval_s > self.longest:
                self.longest = interval_s
            cut = bisect.bisect_right(ends, t_end_s - horizon_s)
            if cut:
                self["t0"] = round(ends[cut] * 1_000_000)
                _drop(self["dt"], cut)
                _drop(self["i"], cut)
                _drop(self["mm"], cut)
                longest_gone = max(self.intervals[:cut]) >= self.longest
                for column in (ends, self.intervals, self.mms, self.cum):
                    del column[:cut]
                if longest_gone:
                    self.longest = max(self.intervals, default=0.0)
        else:  # out of order, a replacement, or ends that are not whole microseconds: the reference path
            self._rebuild(add_report(self.reports(), t_end_s, interval_s, rain_mm, horizon_s))
        if self.n <= max_n:  # (the reference path made new lists)
            return False
        self._rebuild(cap_reports(self.reports(), max_n, horizon_s))
        return True

    def units(self, now_s: float, windows_s: Sequence[float]) -> list[int]:
        """``window_units(self.reports(), now_s, windows_s)``, from the running sums."""
        ends = self.ends
        if not ends:
            return [0 for _ in windows_s]
        cum, intervals, longest = self.cum, self.intervals, self.longest
        hi = bisect.bisect_right(ends, now_s)  # [0, hi) end at or before now
        late = len(ends)
        if hi < late:  # [hi, late) end after now (out-of-order arrivals) and may start before it
            late = bisect.bisect_right(ends, now_s + longest * (1 + 1e-9) + 1e-6, hi)
        margin = longest * (1 + 1e-9) + 1e-6
        out = []
        for window_s in windows_s:
            w0 = now_s - window_s
            lo = bisect.bisect_right(ends, w0, 0, hi)  # [lo, hi) end inside (w0, now]
            edge = bisect.bisect_right(ends, w0 + margin, lo, hi)  # [lo, edge) may start before w0
            whole = cum[hi] - cum[edge]
            terms: list[tuple[int, float, float]] = []
            for i in range(lo, edge):
                units = cum[i + 1] - cum[i]
                if ends[i] - intervals[i] >= w0:
                    whole += units
                else:
                    terms.append((units, ends[i] - w0, intervals[i]))
            for i in range(hi, late):
                start = ends[i] - intervals[i]
                if start < now_s:
                    terms.append((cum[i + 1] - cum[i], now_s - (start if start > w0 else w0), intervals[i]))
            if terms:
                approx = spread = 0.0
                for units, span, interval in terms:
                    x = units * span / interval
                    approx += x
                    spread += abs(x)
                whole += _exact_round(terms, approx, spread)
            out.append(whole)
        return out
