"""Detection: a state transition emitted by a detector (open, level change, clear)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator

from tocsin.schemas.common import AdminCode, Family, Ident, WarningLevel, WireModel


class DetectionState(StrEnum):
    OPEN = "open"
    UPDATE = "update"  # still open, level or value changed materially
    CLEAR = "clear"


class DetectionKind(StrEnum):
    """The detection kinds with a fixed name (``Detection.kind``); per-gas and per-channel kinds are
    ``gas_<gas>``/``o2_...`` (hazmat) and ``anomaly_<channel>``. The values are the wire strings."""

    RAINFALL = "rainfall"
    WATER_LEVEL = "water_level"
    WATER_RISE = "water_rise"
    FIRE = "fire"
    P_TRIGGER = "p_trigger"
    OFFLINE = "offline"
    SENSOR_FAULT = "sensor_fault"


GAS_KIND_PREFIXES = ("gas_", "o2_")
"""Kinds of the hazmat detector start with one of these (``gas_h2s``, ``o2_low`` ...)."""


def is_gas_kind(kind: str) -> bool:
    return kind.startswith(GAS_KIND_PREFIXES)


class Detection(WireModel):
    id: str = Field(description="unique per transition: <device>:<kind>:<onset epoch ms>:<revision>")
    device_id: Ident
    site: Ident
    family: Family
    kind: str = Field(
        pattern=r"^[a-z0-9_]{1,40}$",
        description="a DetectionKind, a gas kind (gas_h2s ...) or an anomaly kind (anomaly_<channel>)",
    )
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

    @field_validator("evidence")
    @classmethod
    def _finite_evidence(cls, v: dict[str, Any]) -> dict[str, Any]:
        """``allow_inf_nan`` does not reach free-form values: refuse NaN/inf here so none is sent as null."""

        def check(x: Any, path: str) -> None:
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"evidence{path} is not a finite number")
            if isinstance(x, dict):
                for k, y in x.items():
                    check(y, f"{path}.{k}")
            elif isinstance(x, list | tuple):
                for i, y in enumerate(x):
                    check(y, f"{path}[{i}]")

        check(v, "")
        return v


class LifecycleTick(WireModel):
    """Not a detection: the worker's clock for one active alert, sent through the alert's own
    partition of ``detections`` so cool-downs, flapping holds and reminders run in order with the
    alert's detections and in the same state."""

    type: Literal["tocsin.lifecycle_tick"] = "tocsin.lifecycle_tick"
    fingerprint: str = Field(min_length=1)
    ts: AwareDatetime

    @staticmethod
    def is_tick(value: bytes) -> bool:
        return b'"type":"tocsin.lifecycle_tick"' in value[:50]
