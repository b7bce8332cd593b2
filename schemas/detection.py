"""Detection: a state transition emitted by a detector (open, level change, clear)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field

from schemas.common import AdminCode, Family, Ident, WarningLevel, WireModel


class DetectionState(StrEnum):
    OPEN = "open"
    UPDATE = "update"  # still open, level or value changed materially
    CLEAR = "clear"


class Detection(WireModel):
    id: str = Field(description="unique per transition: <device>:<kind>:<onset epoch ms>:<revision>")
    device_id: Ident
    site: Ident
    family: Family
    kind: str = Field(pattern=r"^[a-z0-9_]{1,40}$", description="rain_1h, water_level, gas_h2s, p_trigger ...")
    state: DetectionState
    level: WarningLevel | None = None
    value: float
    threshold: float | None = None
    unit: str = ""
    window_s: float | None = Field(default=None, ge=0)
    onset: AwareDatetime = Field(description="when the condition began (device time)")
    ts: AwareDatetime = Field(description="time of the reading that caused this transition")
    revision: int = Field(default=0, ge=0)
    area_code: AdminCode | None = None
    town: str = ""
    village: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    evidence: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str = ""
