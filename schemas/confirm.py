"""Confirmation rules: when detections become public alerts. The ``confirm:`` section of the rules
file (detectors/rules.py ``Rules.confirm``); read by the alert stage (alerts/engine.py
``confirm_settings``), written by operators."""

from __future__ import annotations

from pydantic import Field

from tocsin.schemas.common import Ident, WireModel


class IncidentConfirm(WireModel):
    """Hold-down of one incident kind: alert when ``k`` sensors of the area agree, or when one
    sensor has held the condition for ``sustain_s`` seconds (whichever comes first)."""

    k: int = Field(default=1, ge=1, description="sensors of the area that must agree")
    sustain_s: float = Field(default=0.0, ge=0, description="or one sensor holding the condition this long")


class FireConfirm(WireModel):
    persist_sweeps: int = Field(
        default=1, ge=1, description="distinct camera sweeps seeing the fire before an unlocated alert (one camera)"
    )
    k_cameras: int = Field(default=2, ge=2, description="cameras whose bearings cross to locate the fire")
    max_range_km: float = Field(default=30.0, gt=0, le=200, description="a crossing farther from a tower is refused")
    bearing_sigma_deg: float = Field(default=1.0, gt=0, le=10, description="bearing uncertainty of a camera")


class SeismicConfirm(WireModel):
    min_stations: float = Field(default=3.0, gt=0, description="summed station weight that confirms an earthquake")
    window_s: float = Field(default=30.0, gt=0, le=300, description="P picks within this window (coincidence)")
    weights: dict[Ident, float] = Field(
        default_factory=dict, description="station id -> vote (default 1.0; e.g. 0.5 for a MEMS sensor)"
    )
    public_min_intensity: float = Field(
        default=4.5,
        ge=1.0,
        le=12.0,
        description="instrumental intensity (observed, or predicted at targets/areas) from which an earthquake "
        "reaches the public; below it agencies and operators only (4.5: degree V, docs/detection-rules-seismic.md)",
    )
    quiet_tolerance_s: float | None = Field(
        default=2.0,
        ge=0,
        le=30,
        description="location from not-yet-arrived data: a live, untriggered station counts as not reached by P up "
        "to the event's newest data time minus this (packet length, latency, trigger delay); null: picks only",
    )
    quiet_window_s: float = Field(
        default=3.0,
        ge=0,
        le=60,
        description="the not-yet-arrived constraint reaches at most this long past the newest pick (stations a "
        "small event never triggers must not pull the epicentre away from them)",
    )


class ConfirmRules(WireModel):
    """When detections become public alerts (the alert stage's confirmation rules)."""

    # Incident kinds (the last part of the fingerprint): rainstorm, flood, gas_leak, water_rise ...
    # Absent: at once, because every detector has its own hold-down already.
    incidents: dict[Ident, IncidentConfirm] = Field(default_factory=dict)
    fire: FireConfirm = FireConfirm()
    seismic: SeismicConfirm = SeismicConfirm()
