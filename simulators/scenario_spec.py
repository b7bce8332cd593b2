"""The scenario file's model (the spec): district, devices or a generated network, hazards with
their ``expected:`` levels, noise and faults; :func:`load_scenario` reads one (YAML or JSON, strict:
an unknown key is an error). simulators/scenario_build.py turns a spec into the registry and the
device messages, simulators/ground_truth.py computes what should be detected from them, and
simulators/scenario.py (:func:`~tocsin.simulators.scenario.build`) does both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from tocsin.schemas.common import Family, WarningLevel, WireModel
from tocsin.schemas.files import load_model_file
from tocsin.simulators import physics
from tocsin.simulators.demo import CENTRE, DISTRICT, DISTRICT_NAME

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

LatLon = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# Scenario model
# ---------------------------------------------------------------------------------------------


class Position(WireModel):
    """Where something is: ``lat``/``lon``, or ``bearing_deg``/``distance_km`` from the district centre."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    bearing_deg: float | None = Field(default=None, ge=0, lt=360)
    distance_km: float | None = Field(default=None, ge=0, le=2000)

    @model_validator(mode="after")
    def _one_form(self) -> Position:
        absolute = self.lat is not None and self.lon is not None
        relative = self.bearing_deg is not None and self.distance_km is not None
        if absolute == relative:
            raise ValueError("give either lat and lon, or bearing_deg and distance_km")
        return self

    def resolve(self, centre: LatLon) -> LatLon:
        if self.lat is not None and self.lon is not None:
            return self.lat, self.lon
        assert self.bearing_deg is not None and self.distance_km is not None
        return physics.destination(centre[0], centre[1], self.bearing_deg, self.distance_km)


class DistrictSpec(WireModel):
    code: str = DISTRICT
    name: str = DISTRICT_NAME
    centre: LatLon = CENTRE


DeviceKind = Literal["rain", "level", "seismic", "gas", "camera"]
FAMILY_OF_KIND = {
    "rain": Family.HYDRO,
    "level": Family.HYDRO,
    "seismic": Family.SEISMIC,
    "gas": Family.HAZMAT,
    "camera": Family.FIRE,
}


class DeviceSpec(WireModel):
    """An inline device: its registry entry plus how the simulator drives it."""

    device_id: str
    kind: DeviceKind
    site: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    town: str = ""
    village: str = ""
    interval_s: float | None = Field(default=None, gt=0, description="reporting interval (default per kind)")
    thresholds: dict[str, float] = Field(default_factory=dict)
    gateway: str = Field(default="", description="field gateway the device hangs off (offline alerts group by it)")
    # simulator options
    gas: str = "H2S"
    unit: Literal["%LEL", "ppm", "mg/m3", "%vol"] = "mg/m3"
    t90_s: float = Field(default=30.0, gt=0)
    bucket_mm: float = Field(default=0.5, gt=0)
    base_level_m: float | None = Field(default=None, description="river stage before rain (default warning - 1.5 m)")
    sweep_s: float = Field(default=180.0, gt=0)


class NetworkSpec(WireModel):
    """A generated network: N devices per family, placed deterministically from the seed."""

    centre: LatLon | None = None
    radius_km: float = Field(default=15.0, gt=0, le=200)
    per_family: dict[Family, int] = Field(default_factory=dict)
    chem_park: LatLon = (30.23, 120.18)
    forest: LatLon = (30.36, 120.15)


class CellSpec(Position):
    heading_deg: float = Field(default=45.0, ge=0, lt=360)
    speed_km_h: float = Field(default=20.0, ge=0)
    radius_km: float = Field(default=10.0, gt=0)
    peak_mm_h: float = Field(gt=0, le=300)
    start_s: float = Field(default=0.0, ge=0, description="after the hazard's start")
    duration_s: float = Field(gt=0)


class RiverSpec(WireModel):
    runoff_coeff: float = Field(default=0.6, gt=0, le=1)
    k_h: float = Field(default=1.5, gt=0, description="linear-reservoir storage constant, hours")
    gain_m: float = Field(default=0.5, gt=0, description="stage = base + gain * Q(mm/h)^0.6")
    catchment_km: float = Field(default=6.0, gt=0)


class HazardBase(WireModel):
    hazard_id: str = Field(min_length=1, max_length=64)
    start_s: float = Field(default=0.0, ge=0, description="seconds after the scenario start")
    expected: dict[str, WarningLevel] = Field(
        default_factory=dict,
        description="truth kind (rainstorm, river_flood, gas_leak, forest_fire, earthquake) -> the level the "
        "standard gives for this hazard's data, stated in the scenario file (never computed from the detector)",
    )


class RainstormSpec(HazardBase):
    kind: Literal["rainstorm"] = "rainstorm"
    cells: list[CellSpec] = Field(min_length=1)
    river: RiverSpec = RiverSpec()


class EarthquakeSpec(HazardBase, Position):
    kind: Literal["earthquake"] = "earthquake"
    depth_km: float = Field(default=10.0, gt=0, le=700)
    magnitude: float = Field(ge=2, le=9.5)
    record_before_s: float = Field(default=30.0, ge=15, description="seismic packets before the origin")
    record_after_s: float = Field(default=90.0, gt=0, description="seismic packets after the origin")

    @property
    def expected_level(self) -> WarningLevel | None:
        """The level the standard gives (intensity worked out by hand -> GB/T 17742-2020 degree -> colour),
        stated in the scenario file as ``expected: {earthquake: <level>}``."""
        return self.expected.get("earthquake")


class GasLeakSpec(HazardBase):
    kind: Literal["gas_leak"] = "gas_leak"
    source: Position | None = Field(default=None, description="default: the chemical park of the network")
    gas: str = "H2S"
    rate_g_s: float = Field(gt=0)
    duration_s: float = Field(gt=0)
    wind_ms: float = Field(default=2.0, gt=0)
    wind_from_deg: float = Field(default=225.0, ge=0, lt=360, description="direction the wind blows from")
    wind_meander_deg: float = Field(default=8.0, ge=0, le=90)
    stability: Literal["A", "B", "C", "D", "E", "F"] = "D"
    source_h_m: float = Field(default=2.0, ge=0)


class FireSpec(HazardBase, Position):
    kind: Literal["forest_fire"] = "forest_fire"
    max_column_m: float = Field(default=600.0, gt=0)
    growth_s: float = Field(default=900.0, gt=0)
    flame_after_s: float = Field(default=1800.0, gt=0)


HazardSpec = Annotated[RainstormSpec | EarthquakeSpec | GasLeakSpec | FireSpec, Field(discriminator="kind")]


class NoiseSpec(WireModel):
    background_rain: list[CellSpec] = Field(default_factory=list, description="rain that is not a hazard")
    gas_background: float = Field(default=0.2, ge=0, description="baseline in each detector's unit")
    gas_noise: float = Field(default=0.08, ge=0)
    gas_drift_per_h: float = Field(default=0.0)
    fire_false_positives_per_sweep: float = Field(default=0.02, ge=0, le=5)
    visibility_km: float = Field(default=40.0, gt=0)
    seismic_windows: list[tuple[float, float]] = Field(
        default_factory=list, description="(start_s, duration_s) of plain seismic noise streaming"
    )


class OfflineFault(WireModel):
    device: str
    at_s: float = Field(ge=0)
    back_s: float | None = Field(default=None, gt=0, description="back online at; None: stays offline")


class StuckFault(WireModel):
    device: str
    at_s: float = Field(ge=0)


class SkewFault(WireModel):
    device: str
    skew_s: float


class FaultSpec(WireModel):
    offline: list[OfflineFault] = Field(default_factory=list)
    stuck: list[StuckFault] = Field(default_factory=list)
    clock_skew: list[SkewFault] = Field(default_factory=list)
    malformed: int = Field(default=0, ge=0, le=1000)
    duplicates: int = Field(default=0, ge=0, le=1000)


class Scenario(WireModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    start: AwareDatetime | None = Field(default=None, description="None: the scenario ends at build time")
    duration_s: float = Field(gt=0, le=7 * 86_400)
    seed: int = 0
    speed: float | None = Field(default=None, gt=0, description="replay speed hint (device seconds per second)")
    district: DistrictSpec = DistrictSpec()
    devices: list[DeviceSpec] | None = None
    network: NetworkSpec | None = None
    hazards: list[HazardSpec] = Field(default_factory=list)
    noise: NoiseSpec = NoiseSpec()
    faults: FaultSpec = FaultSpec()

    @model_validator(mode="after")
    def _devices_xor_network(self) -> Scenario:
        if (self.devices is None) == (self.network is None):
            raise ValueError("give exactly one of devices (inline list) and network (generated)")
        ids = [h.hazard_id for h in self.hazards]
        if len(ids) != len(set(ids)):
            raise ValueError("hazard_id values must be unique")
        return self


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML/JSON file; a bare name (``quiet_day``) is looked up in :data:`SCENARIO_DIR`."""
    p = Path(path)
    if not p.exists() and not p.suffix and (SCENARIO_DIR / f"{p.name}.yaml").exists():
        p = SCENARIO_DIR / f"{p.name}.yaml"
    return load_model_file(p, Scenario, "scenario")


def scenario_paths() -> list[Path]:
    """The shipped scenario files."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))
