"""Telemetry published by field devices, one model per device kind.

Every payload names its own ``type``; the MQTT topic names the family, site and device, and the
gateway checks that the two agree. Values are in SI-style units named in the field.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, Strict, TypeAdapter, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tocsin.schemas.common import DeviceTime, Family, Ident, Number, Seq, WireModel
from tocsin.schemas.seismic_band import sample_rate_problem


def _out_of_range(message: str) -> PydanticCustomError:
    """A validation error the gateway reports as 'out_of_range' rather than 'schema'."""
    return PydanticCustomError("out_of_range", message)


class _Reading(WireModel):
    device_id: Ident
    site: Ident
    ts: DeviceTime = Field(description="device time of the reading: ISO 8601 with its UTC offset")
    seq: Seq | None = Field(default=None, description="device sequence number, for duplicate detection")

    @property
    def family(self) -> Family:  # pragma: no cover - overridden
        raise NotImplementedError


class FireDetection(_Reading):
    """A smoke or flame detection by a forest-fire tower camera during its sweep."""

    type: Literal["fire.detection"] = "fire.detection"
    kind: Literal["smoke", "flame"]
    confidence: Number = Field(ge=0.0, le=1.0)
    bearing_deg: Number = Field(ge=0.0, lt=360.0, description="true bearing from the tower, clockwise from north")
    elevation_deg: Number | None = Field(default=None, ge=-90.0, le=90.0)
    sweep: Annotated[int, Strict()] | None = Field(default=None, ge=0, description="camera sweep counter")

    @property
    def family(self) -> Family:
        return Family.FIRE


class RainIncrement(_Reading):
    """Rain measured by a tipping-bucket gauge since its previous report."""

    type: Literal["hydro.rain"] = "hydro.rain"
    rain_mm: Number = Field(ge=0.0, le=500.0)
    interval_s: Number = Field(gt=0.0, le=86_400.0, description="seconds covered by rain_mm")

    @model_validator(mode="after")
    def _plausible_intensity(self) -> RainIncrement:
        # The world record is about 38 mm in one minute; 60 mm/min is beyond any real gauge.
        if self.rain_mm > 60.0 * max(self.interval_s / 60.0, 1.0):
            raise _out_of_range(f"rain_mm {self.rain_mm} over {self.interval_s} s is beyond physical intensity")
        return self

    @property
    def family(self) -> Family:
        return Family.HYDRO


class WaterLevel(_Reading):
    """River or reservoir stage, metres above the gauge datum."""

    type: Literal["hydro.level"] = "hydro.level"
    level_m: Number = Field(ge=-500.0, le=9_000.0)

    @property
    def family(self) -> Family:
        return Family.HYDRO


_SEISMIC_LIMITS = {"m/s": 10.0, "m/s2": 100.0, "counts": float(2**31)}


class SeismicPacket(_Reading):
    """A packet of consecutive samples from one channel of a seismic station.

    ``ts`` is the time of the first sample.
    """

    type: Literal["seismic.waveform"] = "seismic.waveform"
    channel: Annotated[str, Field(pattern=r"^[A-Z0-9]{3}$")] = "HHZ"
    sample_rate_hz: Number = Field(description="samples per second; see tocsin.schemas.seismic_band")
    unit: Literal["m/s", "m/s2", "counts"] = "m/s"
    samples: list[Number] = Field(min_length=1, max_length=20_000)

    @field_validator("sample_rate_hz")
    @classmethod
    def _processable_rate(cls, rate: float) -> float:
        problem = sample_rate_problem(rate)
        if problem:
            raise _out_of_range(problem)
        return rate

    @model_validator(mode="after")
    def _amplitude_range(self) -> SeismicPacket:
        limit = _SEISMIC_LIMITS[self.unit]
        peak = max(abs(s) for s in self.samples)
        if peak > limit:
            raise _out_of_range(f"sample amplitude {peak:g} {self.unit} is outside the physical range +/-{limit:g}")
        return self

    @property
    def family(self) -> Family:
        return Family.SEISMIC

    @property
    def end(self) -> datetime:
        return self.ts + timedelta(seconds=len(self.samples) / self.sample_rate_hz)


_GAS_LIMITS = {"%LEL": 100.0, "ppm": 1_000_000.0, "mg/m3": 1_000_000.0, "%vol": 100.0}


class GasReading(_Reading):
    """A fixed gas detector's reading: combustible (%LEL), toxic (ppm or mg/m3) or oxygen (%vol)."""

    type: Literal["hazmat.gas"] = "hazmat.gas"
    gas: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,12}$")] = Field(description="CH4, H2S, CO, NH3, Cl2, O2 ...")
    value: Number = Field(ge=0.0)
    unit: Literal["%LEL", "ppm", "mg/m3", "%vol"]

    @model_validator(mode="after")
    def _range(self) -> GasReading:
        limit = _GAS_LIMITS[self.unit]
        if self.value > limit:
            raise _out_of_range(f"value {self.value:g} {self.unit} is above the physical maximum {limit:g}")
        return self

    @property
    def family(self) -> Family:
        return Family.HAZMAT


Telemetry = Annotated[
    FireDetection | RainIncrement | WaterLevel | SeismicPacket | GasReading,
    Field(discriminator="type"),
]
TELEMETRY_ADAPTER: TypeAdapter[Telemetry] = TypeAdapter(Telemetry)

_FAMILY_BY_TYPE = {
    "fire.detection": Family.FIRE,
    "hydro.rain": Family.HYDRO,
    "hydro.level": Family.HYDRO,
    "seismic.waveform": Family.SEISMIC,
    "hazmat.gas": Family.HAZMAT,
}


def family_of(type_name: str) -> Family | None:
    """Family of a telemetry ``type`` value, or None when the type is unknown."""
    return _FAMILY_BY_TYPE.get(type_name)


class DeadmanTick(WireModel):
    """Not from a device: the worker's clock, sent through a device's own telemetry partition so the
    deadman check runs in order with that device's readings and in the same state."""

    type: Literal["tocsin.tick"] = "tocsin.tick"
    device_id: Ident
    ts: AwareDatetime

    @staticmethod
    def is_tick(value: bytes) -> bool:
        return b'"type":"tocsin.tick"' in value[:40]
