"""Detector rules: defaults from the domain standards, overridable by a YAML/JSON rules file and,
per device, by the registry's ``thresholds``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from schemas.common import Ident, PublicText, WarningLevel, WireModel
from schemas.confirm import ConfirmRules
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


class HazmatRules(WireModel):
    setpoints: dict[GasName, dict[Ident, float]] = Field(
        default_factory=dict, description="per gas: level1/level2 (or o2_low/o2_high) overriding GB/T 50493"
    )
    hold_down: int = Field(default=2, ge=1, description="consecutive readings before an alarm")
    fault_params: dict[Ident, ParamValue] = Field(
        default_factory=dict, description="sensor fault checks (detectors/kernels/sensor_faults.py FaultParams)"
    )


class FireRules(WireModel):
    k: int = Field(default=3, ge=1)
    window_s: float = Field(default=900, gt=0)
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    bearing_tol_deg: float = Field(default=3.0, gt=0, le=45)
    clear_after_s: float = Field(default=1800, gt=0)


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
