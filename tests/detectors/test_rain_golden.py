"""Golden tests of the rainstorm levels against the CMA rainstorm warning signals (气象灾害预警信号,
暴雨预警信号; GUIDE section 3): blue >= 50 mm in 12 h, yellow >= 50 mm in 6 h, orange >= 50 mm in
3 h, red >= 100 mm in 3 h. "以上" includes the value, so a total exactly at a threshold fires and
0.1 mm below it does not. Expected levels are the table's, not the code's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.kernels.rainfall import accumulation, accumulation_units, add_report
from tocsin.schemas.common import WarningLevel
from tocsin.schemas.telemetry import RainIncrement

T0 = datetime(2024, 7, 1, 0, 0, 0, tzinfo=UTC)


def _level_after(amounts_mm: list[float], interval_s: int) -> WarningLevel | None:
    """The rainfall level open after a gauge reported ``amounts_mm`` back to back, one report every
    ``interval_s`` seconds (each report covering the interval before it)."""
    engine = DetectorEngine()
    state = None
    for i, mm in enumerate(amounts_mm, start=1):
        r = RainIncrement(
            device_id="rg-g", site="s", ts=T0 + timedelta(seconds=interval_s * i), rain_mm=mm, interval_s=interval_s
        )
        state, _ = engine.process(r, state)
    assert state is not None
    opened = state["open"].get("rainfall")
    return WarningLevel(opened["level"]) if opened else None


def _reports(total_tenths: int, step_tenths: int) -> list[float]:
    """``total_tenths`` tenths of a millimetre as reports of ``step_tenths`` (the last one smaller)."""
    full, rest = divmod(total_tenths, step_tenths)
    return [step_tenths / 10] * full + ([rest / 10] if rest else [])


# (window seconds, threshold in tenths of mm, the signal's level, level 0.1 mm below it)
CMA_TABLE = [
    pytest.param(12 * 3600, 500, WarningLevel.BLUE, None, id="blue 50 mm/12 h"),
    pytest.param(6 * 3600, 500, WarningLevel.YELLOW, None, id="yellow 50 mm/6 h"),
    pytest.param(3 * 3600, 500, WarningLevel.ORANGE, None, id="orange 50 mm/3 h"),
    # just below red, 99.9 mm in 3 h is still >= 50 mm in 3 h: orange
    pytest.param(3 * 3600, 1000, WarningLevel.RED, WarningLevel.ORANGE, id="red 100 mm/3 h"),
]


@pytest.mark.parametrize(("window_s", "tenths", "at", "below"), CMA_TABLE)
def test_cma_rainstorm_signal_fires_exactly_at_its_threshold(
    window_s: int, tenths: int, at: WarningLevel, below: WarningLevel | None
) -> None:
    # 0.5 mm tips spread evenly over the window (integer report intervals).
    n = tenths // 5
    interval = window_s // n
    assert interval * n == window_s
    assert _level_after(_reports(tenths, 5), interval) is at
    assert _level_after(_reports(tenths - 1, 5), interval) is below


def test_one_thousand_tenths_of_a_millimetre_in_three_hours_is_red() -> None:
    # 1,000 tips of 0.1 mm, one every 10 s (2 h 47 min): exactly 100 mm in 3 h. A float sum of the
    # tips is 99.9999999999986 mm and never reached red.
    assert sum([0.1] * 1000) < 100.0
    assert _level_after([0.1] * 1000, 10) is WarningLevel.RED


def test_kernel_total_is_exact_in_hundredths() -> None:
    reports: list = []
    t0 = T0.timestamp()
    for i in range(1, 1001):
        reports = add_report(reports, t0 + 10 * i, 10.0, 0.1)
    now = t0 + 10_000
    assert accumulation_units(reports, now, 3 * 3600.0) == (10_000, 10_000 / 10_800)
    assert accumulation(reports, now, 3 * 3600.0)[0] == 100.0
    # a report straddling the window edge adds its exact share: 0.3 mm over 30 s, 10 s inside -> 0.1 mm
    assert accumulation_units([(t0 + 30, 30.0, 0.3)], t0 + 40, 20.0)[0] == 10
