"""Alert: a confirmed warning with its lifecycle message type, ready to render as CAP 1.2."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field, computed_field, model_validator

from tocsin.schemas.common import AdminCode, Family, WarningLevel, WireModel
from tocsin.schemas.geo import RingField

MAX_AREA_POLYGONS = 16
"""Most boundary polygons one alert carries (the areas of an incident's devices)."""
MAX_AREA_VERTICES = 4000
"""Most vertices of all an alert's polygons together: the message stays well under 200 KB of JSON
(Kafka's default record limit is 1 MB)."""


class MsgType(StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"


class AlertStatus(StrEnum):
    """CAP status. Only ``Actual`` alerts are ever delivered to the public."""

    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    TEST = "Test"


class AlertArea(WireModel):
    code: AdminCode = Field(description="GB/T 2260 administrative code")
    desc: str = Field(min_length=1, max_length=200, description="human-readable area, e.g. town and village")
    town: str = ""
    village: str = ""
    circle: tuple[float, float, float] | None = Field(default=None, description="lat, lon, radius km")
    polygons: list[RingField] = Field(
        default_factory=list,
        max_length=MAX_AREA_POLYGONS,
        description="boundary rings of the areas warned, WGS 84 (lat, lon) closed rings (CAP <polygon>)",
    )
    geocodes: list[AdminCode] = Field(
        default_factory=list, description="further GB/T 2260 codes the area covers (earthquake shaking zone)"
    )

    @model_validator(mode="after")
    def _bounded_vertices(self) -> AlertArea:
        total = sum(len(p) for p in self.polygons)
        if total > MAX_AREA_VERTICES:
            raise ValueError(f"an alert area holds at most {MAX_AREA_VERTICES} polygon vertices, got {total}")
        return self


class Alert(WireModel):
    identifier: str = Field(min_length=1, max_length=200, description="unique per message (CAP identifier)")
    fingerprint: str = Field(min_length=1, description="hazard/area/source key that stays across revisions")
    revision: int = Field(ge=0)
    msg_type: MsgType
    status: AlertStatus = AlertStatus.ACTUAL
    sender: str = "tocsin@district.example"
    hazard: Family
    event: str = Field(min_length=1, max_length=100)
    level: WarningLevel
    urgency: str = "Immediate"
    certainty: str = "Observed"
    sent: AwareDatetime
    onset: AwareDatetime
    area: AlertArea
    headline: str = Field(max_length=200)
    description: str = Field(max_length=4000)
    instruction: str = Field(default="", max_length=2000)
    references: list[str] = Field(default_factory=list, description="identifiers of earlier messages")
    detections: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    value: float | None = None
    unit: str = ""
    correlation_id: str = ""
    flapping: bool = Field(default=False, description="toggling often: held as one alert until quiet")
    public: bool = Field(
        default=True, description="False: agencies and operators only, never public routes (below the public floor)"
    )

    @model_validator(mode="before")
    @classmethod
    def _derived_severity(cls, data: Any) -> Any:
        """``severity`` is on the wire for consumers, but derived from ``level``: check, then drop it."""
        if isinstance(data, dict) and "severity" in data:
            data = dict(data)
            sev = data.pop("severity")
            level = data.get("level")
            if level is not None and sev != WarningLevel(level).cap_severity:
                raise ValueError(f"severity {sev!r} does not match level {level!r}")
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def severity(self) -> str:
        return self.level.cap_severity
