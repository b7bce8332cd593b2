"""Golden water-level colours (GUIDE section 3, Ministry of Water Resources flood warning practice):
yellow at the warning level (警戒水位), orange at the guaranteed level (保证水位), red at the
historical maximum, blue when approaching the warning level; "reaches or exceeds" includes the value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tocsin.detectors.engine import DetectorEngine
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import WaterLevel

T0 = datetime(2026, 7, 1, tzinfo=UTC)
# a river gauge: warning 12.0 m, guaranteed 13.5 m, record 14.8 m (the shipped scenarios' values)
REG = Registry(
    devices=[
        Device(
            device_id="wl",
            family=Family.HYDRO,
            site="s",
            lat=30.25,
            lon=120.07,
            area=Area(code="330110"),
            thresholds={"warning_level_m": 12.0, "guaranteed_level_m": 13.5, "record_level_m": 14.8},
        )
    ]
)


def _level(stage_m: float) -> WarningLevel | None:
    state, _ = DetectorEngine(registry=REG).process(WaterLevel(device_id="wl", site="s", ts=T0, level_m=stage_m), None)
    opened = state["open"].get("water_level")
    return WarningLevel(opened["level"]) if opened else None


@pytest.mark.parametrize(
    ("stage_m", "level"),
    [
        (11.69, None),  # more than the 0.3 m approach margin below the warning level
        (11.7, WarningLevel.BLUE),  # approaching: within 0.3 m of the warning level
        (11.99, WarningLevel.BLUE),
        (12.0, WarningLevel.YELLOW),  # at the warning level
        (13.49, WarningLevel.YELLOW),
        (13.5, WarningLevel.ORANGE),  # at the guaranteed level
        (14.79, WarningLevel.ORANGE),
        (14.8, WarningLevel.RED),  # at the historical maximum
    ],
)
def test_water_level_colour_at_and_below_each_level(stage_m: float, level: WarningLevel | None) -> None:
    assert _level(stage_m) is level


def test_levels_need_no_time() -> None:
    # one reading is enough (hold-down 1): the river does not wait
    state, dets = DetectorEngine(registry=REG).process(
        WaterLevel(device_id="wl", site="s", ts=T0 + timedelta(hours=1), level_m=14.8), None
    )
    assert [d.level for d in dets if d.kind == "water_level"] == [WarningLevel.RED]
