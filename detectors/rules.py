"""Detector rules: defaults from the domain standards, overridable by a YAML/JSON rules file and,
per device, by the registry's ``thresholds``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from detectors.kernels import anomaly as anomaly_k
from detectors.kernels import sensor_faults as sf_k
from schemas.common import Ident, PublicText, WarningLevel, WireModel
from schemas.files import load_model_file
from schemas.seismic_band import DEFAULT_TRIGGER_BAND_HZ, band_problem

# A gas name as devices send it (schemas.telemetry.GasReading.gas).
GasName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,12}$")]
ParamValue = Annotated[PublicText, Field(max_length=200)] | float | int | bool | None


class RainRule(WireModel):
    window_h: float = Field(gt=0, le=24)
    level: WarningLevel
    mm: float = Field(gt=0)
    source: PublicText = Field(default="", max_length=100)


# CMA rainstorm signals and a county's flash-flood critical rainfall (the blue 1/3/6/24 h values).
DEFAULT_RAIN_RULES = (
    RainRule(window_h=12, level=WarningLevel.BLUE, mm=50, source="CMA rainstorm blue"),
    RainRule(window_h=6, level=WarningLevel.YELLOW, mm=50, source="CMA rainstorm yellow"),
    RainRule(window_h=3, level=WarningLevel.ORANGE, mm=50, source="CMA rainstorm orange"),
    RainRule(window_h=3, level=WarningLevel.RED, mm=100, source="CMA rainstorm red"),
    RainRule(window_h=1, level=WarningLevel.BLUE, mm=35, source="flash-flood critical rainfall"),
    RainRule(window_h=3, level=WarningLevel.BLUE, mm=55, source="flash-flood critical rainfall"),
    RainRule(window_h=6, level=WarningLevel.BLUE, mm=70, source="flash-flood critical rainfall"),
    RainRule(window_h=24, level=WarningLevel.BLUE, mm=100, source="flash-flood critical rainfall"),
)


class HydroRules(WireModel):
    rain: tuple[RainRule, ...] = DEFAULT_RAIN_RULES
    rain_clear_ratio: float = Field(default=0.8, gt=0, le=1, description="clear when below this x set")
    level_clear_offset_m: float = Field(default=0.05, ge=0, description="water level must fall this far")
    approach_margin_m: float = Field(default=0.3, ge=0, description="blue when within this of warning")
    rise_window_s: float = Field(default=1800, gt=0, description="window of the rate-of-rise slope")
    rise_m_per_h: float | None = Field(default=None, gt=0, description="yellow water_rise at this rate (off: None)")


GAS_SETPOINT_KEYS = ("level1", "level2", "o2_low", "o2_high")


def _known_keys(value: Mapping[str, object], known: tuple[str, ...] | list[str], what: str) -> None:
    for key in value:
        if key not in known:
            raise PydanticCustomError(
                "unknown_key",
                "unknown {what} '{key}' (known: {known})",
                {"what": what, "key": key, "known": ", ".join(known)},
            )


class HazmatRules(WireModel):
    setpoints: dict[GasName, dict[Ident, float]] = Field(
        default_factory=dict, description="per gas: level1/level2 (or o2_low/o2_high) overriding GB/T 50493"
    )
    hold_down: int = Field(default=2, ge=1, description="consecutive readings before an alarm")
    fault_params: dict[Ident, ParamValue] = Field(
        default_factory=dict, description="sensor fault checks (detectors/kernels/sensor_faults.py FaultParams)"
    )

    @field_validator("setpoints")
    @classmethod
    def _known_setpoints(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for points in value.values():
            _known_keys(points, GAS_SETPOINT_KEYS, "gas set-point")
        return value

    @field_validator("fault_params")
    @classmethod
    def _known_fault_params(cls, value: dict[str, object]) -> dict[str, object]:
        _known_keys(value, list(sf_k.FaultParams.__dataclass_fields__), "fault parameter")
        sf_k.FaultParams.from_mapping(value)  # values too
        return value


class FireRules(WireModel):
    k: int = Field(default=3, ge=1)
    window_s: float = Field(default=900, gt=0)
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    bearing_tol_deg: float = Field(default=3.0, gt=0, le=45)
    clear_after_s: float = Field(default=1800, gt=0)
    min_sweep_s: float = Field(
        default=120.0, gt=0, description="hits without sweep ids this close to the last counted one are the same sweep"
    )


class SeismicRules(WireModel):
    """The station trigger. The band must suit every packet the gateway accepts (schemas.seismic_band)."""

    freqmin_hz: float = DEFAULT_TRIGGER_BAND_HZ[0]
    freqmax_hz: float = DEFAULT_TRIGGER_BAND_HZ[1]
    sta_s: float = Field(default=0.5, gt=0)
    lta_s: float = Field(default=10.0, gt=0)
    thr_on: float = Field(default=4.0, gt=0)
    thr_off: float = Field(default=1.5, ge=0)
    pd_window_s: float = Field(default=3.0, gt=0, le=10, description="P-wave window for Pd (magnitude)")

    @model_validator(mode="after")
    def _usable(self) -> SeismicRules:
        problem = band_problem(self.freqmin_hz, self.freqmax_hz)
        if problem:
            raise ValueError(problem)
        if self.sta_s > self.lta_s:
            raise ValueError(f"sta_s {self.sta_s:g} must not exceed lta_s {self.lta_s:g}")
        if self.thr_off > self.thr_on:
            raise ValueError(f"thr_off {self.thr_off:g} must not exceed thr_on {self.thr_on:g}")
        return self


class AnomalyRules(WireModel):
    params: dict[Ident, Annotated[PublicText, Field(max_length=200)] | float | int] = Field(
        default_factory=dict, description="detectors/kernels/anomaly.py EnsembleParams overrides"
    )
    open_score: float = Field(default=0.9, gt=0, le=1)
    clear_score: float = Field(default=0.5, ge=0, le=1)

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, object]) -> dict[str, object]:
        _known_keys(value, list(anomaly_k.EnsembleParams.__dataclass_fields__), "anomaly parameter")
        anomaly_k.EnsembleParams.from_mapping(value)  # values too
        return value


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


class ConfirmRules(WireModel):
    """When detections become public alerts (the alert stage's confirmation rules)."""

    # Incident kinds (the last part of the fingerprint): rainstorm, flood, gas_leak, water_rise ...
    # Absent: at once, because every detector has its own hold-down already.
    incidents: dict[Ident, IncidentConfirm] = Field(default_factory=dict)
    fire: FireConfirm = FireConfirm()
    seismic: SeismicConfirm = SeismicConfirm()


class StateLimits(WireModel):
    """Caps on one device's detector state (a hostile or broken device cannot grow it without bound).
    What a cap refuses or evicts is counted (``tocsin_detector_state_capped_total{reason}``)."""

    max_gases: int = Field(default=8, ge=1, le=64, description="distinct gases per gas device; more are refused")
    rain_max_reports: int = Field(
        default=288,
        ge=16,
        le=5000,
        description="rain reports held (24 h of 5-min reports); beyond: merged in time buckets",
    )
    fire_max_hits: int = Field(default=64, ge=3, le=1000, description="camera hits held (newest kept)")


class Rules(WireModel):
    deadman_k: float = Field(default=3.0, gt=1, description="offline after k x the reporting interval")
    anomaly: AnomalyRules = AnomalyRules()
    hydro: HydroRules = HydroRules()
    hazmat: HazmatRules = HazmatRules()
    fire: FireRules = FireRules()
    seismic: SeismicRules = SeismicRules()
    confirm: ConfirmRules = ConfirmRules()
    limits: StateLimits = StateLimits()


def load_rules(path: str | Path | None) -> Rules:
    if not path:
        return Rules()
    # A rules file that cannot be read or decoded raises that error as is; only bad content is wrapped.
    return load_model_file(path, Rules, "rules file", wrap_read_errors=False)
