"""Detector rules: defaults from the domain standards, overridable by a YAML/JSON rules file and,
per device, by the registry's ``thresholds``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tocsin.detectors.kernels import anomaly as anomaly_k
from tocsin.detectors.kernels import sensor_faults as sf_k
from tocsin.schemas.common import Ident, PublicText, WarningLevel, WireModel
from tocsin.schemas.confirm import ConfirmRules
from tocsin.schemas.files import load_model_file
from tocsin.schemas.seismic_band import DEFAULT_TRIGGER_BAND_HZ, band_problem
from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, WaterLevel

# A gas name as devices send it (tocsin.schemas.telemetry.GasReading.gas).
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
    """The station trigger. The band must suit every packet the gateway accepts (tocsin.schemas.seismic_band)."""

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


AnomalyParamValue = Annotated[PublicText, Field(max_length=200)] | float | int

# The telemetry types whose numeric fields can be scored (tocsin.schemas.telemetry), and those fields.
TELEMETRY_MODELS: dict[str, type[WireModel]] = {
    "fire.detection": FireDetection,
    "hydro.rain": RainIncrement,
    "hydro.level": WaterLevel,
    "hazmat.gas": GasReading,
    "seismic.waveform": SeismicPacket,
}


def numeric_fields(type_name: str) -> tuple[str, ...]:
    """The scalar numeric fields of a telemetry type (its sequence number excepted)."""
    model = TELEMETRY_MODELS[type_name]
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        options = get_args(ann) if get_origin(ann) in (Union, UnionType) else (ann,)  # X | None
        kinds = [get_args(a)[0] if get_origin(a) is Annotated else a for a in options]
        if name != "seq" and any(k in (float, int) for k in kinds):
            out.append(name)
    return tuple(out)


class AnomalyChannel(WireModel):
    """One scored channel: a numeric field of one telemetry type, for every device that sends it or
    only for the listed ones. A gas detector's ``value`` is scored per gas (``gas`` picks one)."""

    type: Literal["fire.detection", "hydro.rain", "hydro.level", "hazmat.gas", "seismic.waveform"]
    field: Ident = Field(description="numeric field of the reading, e.g. level_m, rain_mm, value, confidence")
    gas: GasName | None = Field(default=None, description="hazmat.gas only: this gas (None: each gas its own channel)")
    devices: tuple[Ident, ...] | None = Field(
        default=None, min_length=1, max_length=10_000, description="only these devices (None: every device)"
    )
    params: dict[Ident, AnomalyParamValue] = Field(
        default_factory=dict, description="EnsembleParams overrides on top of anomaly.params"
    )
    open_score: float | None = Field(default=None, gt=0, le=1, description="None: anomaly.open_score")
    clear_score: float | None = Field(default=None, ge=0, le=1, description="None: anomaly.clear_score")
    promote_to: WarningLevel | None = Field(
        default=None,
        description="None (default): operators' channels only; a level: a public warning at that level",
    )

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, object]) -> dict[str, object]:
        _known_keys(value, list(anomaly_k.EnsembleParams.__dataclass_fields__), "anomaly parameter")
        return value  # the values are checked with anomaly.params by AnomalyRules

    @model_validator(mode="after")
    def _known_field(self) -> AnomalyChannel:
        known = numeric_fields(self.type)
        if self.field not in known:
            raise ValueError(f"{self.type} has no numeric field {self.field!r}; numeric fields: {', '.join(known)}")
        if self.gas is not None and self.type != "hazmat.gas":
            raise ValueError("gas is only for hazmat.gas channels")
        return self

    @property
    def specificity(self) -> int:
        """Of two channels with the same name for a reading, the more specific one scores it."""
        return 2 * (self.devices is not None) + (self.gas is not None)

    def name_for(self, gas: str | None) -> str:
        """The channel's name (the state key ``anomaly:<name>``, the detection kind ``anomaly_<name>``)."""
        return f"gas_{gas.upper()}" if self.type == "hazmat.gas" and gas is not None else self.field

    def applies(self, device_id: str, gas: str | None) -> bool:
        if self.devices is not None and device_id not in self.devices:
            return False
        return self.gas is None or (gas is not None and self.gas.upper() == gas.upper())


class AnomalyRules(WireModel):
    """The generic anomaly detector: which channels it scores (none unless listed) and when a score
    opens and clears an ``anomaly_<channel>`` detection (docs/anomaly.md)."""

    params: dict[Ident, AnomalyParamValue] = Field(
        default_factory=dict, description="detectors/kernels/anomaly.py EnsembleParams overrides"
    )
    open_score: float = Field(default=0.9, gt=0, le=1)
    clear_score: float = Field(default=0.5, ge=0, le=1)
    channels: tuple[AnomalyChannel, ...] = Field(default=(), max_length=1000)

    @model_validator(mode="after")
    def _usable(self) -> AnomalyRules:
        for i, ch in enumerate((None, *self.channels)):
            where = "anomaly" if ch is None else f"anomaly.channels[{i - 1}]"
            try:
                anomaly_k.EnsembleParams.from_mapping({**self.params, **(ch.params if ch else {})})
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            opened = ch.open_score if ch and ch.open_score is not None else self.open_score
            cleared = ch.clear_score if ch and ch.clear_score is not None else self.clear_score
            if cleared > opened:
                raise ValueError(f"{where}: clear_score {cleared:g} must not exceed open_score {opened:g}")
        return self

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, object]) -> dict[str, object]:
        _known_keys(value, list(anomaly_k.EnsembleParams.__dataclass_fields__), "anomaly parameter")
        anomaly_k.EnsembleParams.from_mapping(value)  # values too
        return value


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
    max_anomaly_channels: int = Field(
        default=8, ge=1, le=64, description="anomaly-scored channels per device; more are refused"
    )


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
