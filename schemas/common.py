"""Base model, hazard families and the four PRC warning levels."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Identifiers travel in MQTT topic levels and Kafka keys: no '/', '+', '#' or whitespace.
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
# GB/T 2260 six-digit administrative division code (district / county level and above).
AdminCode = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{5}$")]
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]


class WireModel(BaseModel):
    """Strict base for everything that crosses a process boundary.

    Unknown fields are rejected, NaN and infinity are rejected, instances are immutable.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, str_strip_whitespace=False)


class Family(StrEnum):
    FIRE = "fire"
    HYDRO = "hydro"
    SEISMIC = "seismic"
    HAZMAT = "hazmat"


class WarningLevel(StrEnum):
    """PRC Emergency Response Law warning levels, IV (blue, lowest) to I (red, highest)."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        """1 for blue .. 4 for red, so levels compare by severity."""
        return _RANK[self]

    @property
    def roman(self) -> str:
        return _ROMAN[self]

    @property
    def cap_severity(self) -> str:
        return _CAP_SEVERITY[self]

    @property
    def zh(self) -> str:
        return _ZH[self]

    @classmethod
    def from_rank(cls, rank: int) -> WarningLevel:
        return _BY_RANK[rank]


_RANK = {WarningLevel.BLUE: 1, WarningLevel.YELLOW: 2, WarningLevel.ORANGE: 3, WarningLevel.RED: 4}
_BY_RANK = {v: k for k, v in _RANK.items()}
_ROMAN = {
    WarningLevel.BLUE: "IV",
    WarningLevel.YELLOW: "III",
    WarningLevel.ORANGE: "II",
    WarningLevel.RED: "I",
}
_CAP_SEVERITY = {
    WarningLevel.BLUE: "Minor",
    WarningLevel.YELLOW: "Moderate",
    WarningLevel.ORANGE: "Severe",
    WarningLevel.RED: "Extreme",
}
_ZH = {
    WarningLevel.BLUE: "蓝色",
    WarningLevel.YELLOW: "黄色",
    WarningLevel.ORANGE: "橙色",
    WarningLevel.RED: "红色",
}


def max_level(levels: list[WarningLevel | None]) -> WarningLevel | None:
    present = [lv for lv in levels if lv is not None]
    return max(present, key=lambda lv: lv.rank) if present else None
