"""Unit tests for detectors/kernels/rainfall.py: pro-rata rolling accumulations, coverage, report
ordering, replacement and horizon pruning."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels.rainfall import (
    DEFAULT_WINDOWS_S,
    HOUR_S,
    RainWindow,
    accumulation,
    accumulation_units,
    accumulations,
    add_report,
    cap_reports,
    to_units,
    window_units,
)

T0 = 1_719_792_000.0  # 2024-07-01T00:00:00Z


def _build(reports: list[tuple[float, float, float]], horizon_s: float = 24 * HOUR_S) -> list:
    out: list = []
    for t_end, interval, mm in reports:
        out = add_report(out, t_end, interval, mm, horizon_s)
    return out


def test_twelve_five_minute_reports_make_60_mm_in_one_hour() -> None:
    reports = _build([(T0 + 300 * i, 300.0, 5.0) for i in range(1, 13)])
    assert len(reports) == 12
    now = T0 + 3600
    assert accumulation(reports, now, HOUR_S) == (60.0, 1.0)
    mm, cov = accumulation(reports, now, 3 * HOUR_S)
    assert mm == 60.0 and cov == pytest.approx(1 / 3)
    # half an hour: the last 6 reports
    assert accumulation(reports, now, 1800.0) == (30.0, 1.0)
    assert accumulations(reports, now) == {w: 60.0 for w in DEFAULT_WINDOWS_S}
    assert DEFAULT_WINDOWS_S == (3600.0, 10800.0, 21600.0, 43200.0, 86400.0)


def test_window_moves_with_now() -> None:
    reports = _build([(T0 + 300 * i, 300.0, 5.0) for i in range(1, 13)])
    # 30 min after the last report: only the last 30 min of the reports are in the hour
    mm, cov = accumulation(reports, T0 + 3600 + 1800, HOUR_S)
    assert mm == 30.0 and cov == 0.5
    assert accumulation(reports, T0 + 7200, HOUR_S) == (0.0, 0.0)


def test_pro_rata_overlap_of_a_report_straddling_the_window_edge() -> None:
    # 6 mm over (400, 1000]; window (700, 1300]: 300 s of 600 s overlap -> 3 mm, coverage 300/600
    reports = [(T0 + 1000, 600.0, 6.0)]
    mm, cov = accumulation(reports, T0 + 1300, 600.0)
    assert mm == pytest.approx(3.0) and cov == pytest.approx(0.5)
    # a report straddling the front edge (ends after now) counts pro rata too
    mm, cov = accumulation(reports, T0 + 800, 600.0)  # window (200, 800], overlap (400, 800]
    assert mm == pytest.approx(4.0) and cov == pytest.approx(400 / 600)


def test_window_is_open_at_its_start() -> None:
    # A report ending exactly at now - w contributes nothing.
    reports = [(T0 + 0.0, 300.0, 5.0), (T0 + 300.0, 300.0, 2.0)]
    assert accumulation(reports, T0 + 300.0, 300.0) == (2.0, 1.0)


def test_coverage_with_gaps() -> None:
    # (0, 300] 1 mm and (600, 900] 2 mm: 600 s of 900 s covered, the gap counts as no rain
    reports = _build([(T0 + 300, 300.0, 1.0), (T0 + 900, 300.0, 2.0)])
    mm, cov = accumulation(reports, T0 + 900, 900.0)
    assert mm == pytest.approx(3.0)
    assert cov == pytest.approx(2 / 3)
    # a dry but reporting gauge has full coverage; a silent one has none
    dry = _build([(T0 + 300 * i, 300.0, 0.0) for i in range(1, 4)])
    assert accumulation(dry, T0 + 900, 900.0) == (0.0, 1.0)
    assert accumulation([], T0 + 900, 900.0) == (0.0, 0.0)


def test_coverage_is_capped_at_one() -> None:
    # two reports of different intervals over the same time (e.g. a resent hourly summary)
    reports = _build([(T0 + 3600, 3600.0, 10.0), (T0 + 3600, 1800.0, 4.0)])
    mm, cov = accumulation(reports, T0 + 3600, HOUR_S)
    assert mm == pytest.approx(14.0)
    assert cov == 1.0


def test_add_report_orders_out_of_order_reports() -> None:
    reports = _build([(T0 + 900, 300.0, 3.0), (T0 + 300, 300.0, 1.0), (T0 + 600, 300.0, 2.0)])
    assert reports == [(T0 + 300, 300.0, 1.0), (T0 + 600, 300.0, 2.0), (T0 + 900, 300.0, 3.0)]
    assert accumulation(reports, T0 + 900, 900.0) == (6.0, 1.0)


def test_add_report_does_not_modify_its_input() -> None:
    before = [(T0 + 300, 300.0, 1.0)]
    snapshot = list(before)
    after = add_report(before, T0 + 600, 300.0, 2.0)
    assert before == snapshot
    assert after == [(T0 + 300, 300.0, 1.0), (T0 + 600, 300.0, 2.0)]


def test_identical_report_replaces_rather_than_adds() -> None:
    reports = _build([(T0 + 300, 300.0, 1.0), (T0 + 600, 300.0, 2.0)])
    reports = add_report(reports, T0 + 600, 300.0, 2.5)  # a corrected resend
    assert reports == [(T0 + 300, 300.0, 1.0), (T0 + 600, 300.0, 2.5)]
    assert accumulation(reports, T0 + 600, 600.0)[0] == pytest.approx(3.5)
    reports = add_report(reports, T0 + 600, 300.0, 2.5)  # an exact duplicate
    assert len(reports) == 2
    # same end, different interval: a different report, kept
    reports = add_report(reports, T0 + 600, 600.0, 4.0)
    assert len(reports) == 3


def test_horizon_pruning_relative_to_the_newest_report() -> None:
    reports = _build([(T0, 300.0, 1.0), (T0 + 1800, 300.0, 2.0)], horizon_s=3600.0)
    assert [r[0] for r in reports] == [T0, T0 + 1800]
    reports = add_report(reports, T0 + 3600, 300.0, 3.0, horizon_s=3600.0)
    # the report ending exactly one horizon before the newest is dropped
    assert [r[0] for r in reports] == [T0 + 1800, T0 + 3600]
    # a late report older than the horizon is dropped on arrival; a late one inside it is kept
    assert add_report(reports, T0 - 1, 300.0, 9.0, horizon_s=3600.0) == reports
    late = add_report(reports, T0 + 100, 300.0, 9.0, horizon_s=3600.0)
    assert [r[0] for r in late] == [T0 + 100, T0 + 1800, T0 + 3600]


def test_default_horizon_is_24_hours() -> None:
    reports = _build([(T0 + 3600 * h, 3600.0, 1.0) for h in range(0, 27)])
    assert [r[0] for r in reports] == [T0 + 3600 * h for h in range(3, 27)]
    assert accumulation(reports, T0 + 26 * 3600, 24 * HOUR_S) == (24.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Property: order of arrival does not matter
# ---------------------------------------------------------------------------------------------


@st.composite
def report_sets(draw: st.DrawFn) -> list[tuple[float, float, float]]:
    n = draw(st.integers(0, 25))
    keys = draw(
        st.lists(
            st.tuples(st.integers(0, 30 * 3600), st.sampled_from([60.0, 300.0, 600.0, 3600.0])),
            min_size=n,
            max_size=n,
            unique=True,  # identical (t_end, interval) means replacement, which is order-dependent
        )
    )
    mms = draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n))
    return [(T0 + t, interval, mm) for (t, interval), mm in zip(keys, mms, strict=True)]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), reports=report_sets())
def test_property_any_arrival_order_gives_the_same_accumulations(data: st.DataObject, reports: list) -> None:
    perm = data.draw(st.permutations(reports))
    a, b = _build(reports), _build(perm)
    assert a == b  # same set, same order
    newest = max((r[0] for r in reports), default=T0)
    for now in (newest, newest - 1234.5, newest + 1800.0):
        acc_a, acc_b = accumulations(a, now), accumulations(b, now)
        for w in DEFAULT_WINDOWS_S:
            assert acc_a[w] == pytest.approx(acc_b[w], abs=1e-9)
            mm, cov = accumulation(a, now, w)
            assert 0.0 <= cov <= 1.0
            # totals are in hundredths of a millimetre: each report counts as its nearest hundredth
            # (to_units: 1.075 is stored as 107.5 hundredths in binary and rounds to 108)
            assert 0.0 <= mm <= sum(to_units(r[2]) for r in a) / 100 + 1e-9
        # a longer window never holds less rain
        vals = [acc_a[w] for w in DEFAULT_WINDOWS_S]
        assert all(x <= y + 1e-9 for x, y in zip(vals, vals[1:], strict=False))


# ---------------------------------------------------------------------------------------------
# window_units: the bisecting version the engine runs, against the plain loop (its reference twin)
# ---------------------------------------------------------------------------------------------


@st.composite
def mixed_report_sets(draw: st.DrawFn) -> list[tuple[float, float, float]]:
    """Reports of any interval, merged ones (cap_reports) included: long intervals straddle windows."""
    n = draw(st.integers(0, 40))
    keys = draw(
        st.lists(
            st.tuples(
                st.floats(0, 30 * 3600, allow_nan=False),
                st.sampled_from([1.0, 60.0, 300.0, 600.0, 3600.0, 5 * 3600.0, 0.1]),
            ),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    mms = draw(st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.254, 1.3, 7.7, 50.0]), min_size=n, max_size=n))
    return [(T0 + t, interval, mm) for (t, interval), mm in zip(keys, mms, strict=True)]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), reports=mixed_report_sets(), cap=st.sampled_from([None, 5, 12]))
def test_property_window_units_equal_the_plain_accumulation(
    data: st.DataObject, reports: list, cap: int | None
) -> None:
    held = _build(reports)
    if cap is not None:
        held = cap_reports(held, cap)
    newest = max((r[0] for r in held), default=T0)
    # now: at, before (out-of-order arrival: reports end after it) and after the newest report, and
    # exactly at a window edge of one report's end
    nows = [newest, newest - data.draw(st.floats(0.0, 20 * 3600.0)), newest + 1800.0]
    if held:
        nows.append(data.draw(st.sampled_from(held))[0] + data.draw(st.sampled_from(DEFAULT_WINDOWS_S)))
    for now in nows:
        fast = window_units(held, now, DEFAULT_WINDOWS_S)
        assert fast == [accumulation_units(held, now, w)[0] for w in DEFAULT_WINDOWS_S]


def test_window_units_are_exact() -> None:
    # CMA red rainstorm signal: >= 100 mm in 3 h. 0.1 mm every 10 s, 1,000 reports: 100.00 mm exactly.
    reports = _build([(T0 + 10.0 * i, 10.0, 0.1) for i in range(1, 1001)])
    assert window_units(reports, T0 + 10_000.0, [3 * HOUR_S]) == [10_000]


def test_window_units_of_no_reports_are_zero() -> None:
    assert window_units([], T0, DEFAULT_WINDOWS_S) == [0] * len(DEFAULT_WINDOWS_S)


@pytest.mark.parametrize("seed", range(6))
def test_rain_window_follows_the_reference_functions(seed: int) -> None:
    # RainWindow (incremental, in place) against add_report + cap_reports + window_units (rebuilt per
    # report): reports in and out of order, replacements, ends off the microsecond grid, caps merging
    rng = random.Random(seed)
    horizon, cap = rng.choice([(HOUR_S, 16), (24 * HOUR_S, 64), (24 * HOUR_S, 288)])
    window, reference = RainWindow(), list[tuple[float, float, float]]()
    t = T0
    for _ in range(300):
        t += rng.choice([1, 0.5, 60, 300, 300])
        t_end = t - (rng.uniform(0, 4000) if rng.random() < 0.1 else 0.0)
        t_end = round(t_end * 1e6) / 1e6 + (1e-7 if rng.random() < 0.02 else 0.0)
        interval, mm = rng.choice([300, 300.0, 60, 1]), rng.choice([0.0, 0.0, 0.1, 0.2, 0.5, 1.075])
        new = RainWindow.load(window)
        merged = new.add(t_end, interval, mm, horizon, cap)
        held = add_report(reference, t_end, interval, mm, horizon)
        capped = cap_reports(held, cap, horizon)
        assert merged == (len(capped) < len(held))
        assert new.reports() == capped and window.reports() == reference  # the given window is untouched
        now = t_end + rng.choice([0.0, 0.0, 100.0, -50.0])
        assert new.units(now, DEFAULT_WINDOWS_S) == window_units(capped, now, DEFAULT_WINDOWS_S)
        # its changelog form (JSON) decodes to the same window
        decoded = RainWindow.load(json.loads(json.dumps(new)))
        assert decoded.reports() == capped and decoded == new
        window, reference = new, capped


def test_rain_window_changelog_form_is_run_length_encoded() -> None:
    window = RainWindow()
    for i in range(288):  # a 5-minute gauge, 0.5 mm each, over 24 h: one run per column
        window.add(T0 + 300 * (i + 1), 300, 0.5, 24 * HOUR_S, 288)
    assert dict(window) == {
        "t0": int((T0 + 300) * 1e6),
        "dt": [[300_000_000, 287]],
        "i": [[300, 288]],
        "mm": [[0.5, 288]],
    }
    window.add(T0 + 300 * 289, 300, 0.2, 24 * HOUR_S, 288)  # the oldest report leaves the 24 h horizon
    assert window["t0"] == int((T0 + 600) * 1e6) and window["mm"] == [[0.5, 287], [0.2, 1]]
    assert RainWindow.load([[T0 + 300, 300.0, 0.5]]).reports() == [(T0 + 300, 300.0, 0.5)]  # the older list form
