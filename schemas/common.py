"""Base model, hazard families and the four PRC warning levels."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

# Identifiers travel in MQTT topic levels and Kafka keys: no '/', '+', '#' or whitespace.
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
# GB/T 2260 six-digit administrative division code (district / county level and above).
AdminCode = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{5}$")]
# Numbers from devices are JSON numbers: strict, so "1.5", true or " 7 " are refused instead of coerced.
# A strict float still takes a JSON integer (3 is a valid 3.0); a strict int refuses 7.0.
Number = Annotated[float, Strict()]
Seq = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]


_ISO_DATE_START = re.compile(r"^\d{4}-")


def _iso_time_only(value: Any) -> Any:
    # pydantic would read a number (or a string of digits) as Unix time: a device's ``ts`` is ISO 8601
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE_START.match(value)):
        return value
    raise PydanticCustomError("datetime_type", "ts must be an ISO 8601 date-time string with a UTC offset")


DeviceTime = Annotated[AwareDatetime, BeforeValidator(_iso_time_only)]
"""A device's time stamp: an ISO 8601 string with its offset (naive times, numbers and Unix times are refused)."""

# Unicode categories refused in text that may reach the public (SMS, broadcast, CAP): control
# characters, format characters (bidirectional overrides such as U+202E, zero-width characters),
# lone surrogates, line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def unsafe_char(text: str) -> tuple[int, str] | None:
    """The position and code point (``U+XXXX``) of the first character of ``text`` unfit for public text."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            return i, f"U+{ord(ch):04X}"
    return None


def _public_text(value: str) -> str:
    bad = unsafe_char(value)
    if bad is not None:
        raise PydanticCustomError(
            "unsafe_text",
            "control or formatting character {code} at position {pos} (text for the public must be plain)",
            {"code": bad[1], "pos": bad[0]},
        )
    return value


PublicText = Annotated[str, Strict(), AfterValidator(_public_text)]
"""Configuration text that can reach the public: no control, bidirectional-override or zero-width
characters (refused at load, naming the field). Give each use a ``max_length``."""


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
