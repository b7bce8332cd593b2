"""Scenarios: a YAML file -> the district's registry, every device message, and the ground truth.

A scenario names its devices (an inline ``devices`` list, or a generated ``network`` of N devices per
family around a centre), a start time, a duration and a seed, the hazards with their parameters and
start offsets (seconds after the scenario start), background noise, and faults (devices going
offline, stuck sensors, clock skew, malformed payloads, duplicates). :func:`build` turns it into a
:class:`~schemas.registry.Registry`, the device messages in publishing order
(:class:`simulators.demo.Message`) and a :class:`~schemas.scenario.GroundTruth`; the same scenario,
seed and start give the same bytes.

The ground truth's ``detectable_from`` is computed from the generated messages and the default
detector rules (``detectors.rules.Rules()``), independently of the detector engine: the first rain
report at which a rolling window total (pro rata, as the rainfall kernel) reaches any rainfall rule,
the first water level within the approach margin of the warning level, the first gas reading at the
level-1 set-point, the first camera detection of the fire at the minimum confidence, and the P
arrival at the third station that is streaming (with 10 s of data before it for the LTA). The
``expected_level`` is stated in the scenario file (``expected: {<truth kind>: <level>}`` on each
hazard), written from the standard's table for the hazard's data (CMA rainstorm signals, the
warning/guaranteed/record water levels, GB/T 50493-2019 set-points, GB/T 17742-2020 intensity), never
computed from the detector's rules, so a wrong threshold cannot move the expectation with it; a
detectable hazard without one is refused. A hazard whose data never crosses a threshold is
listed under ``undetectable``. Truth times are true (publishing) times, not skewed device clocks.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AwareDatetime, Field, model_validator

from alerts.kernels.quake import predicted_intensity
from detectors.kernels import gas as gas_k
from detectors.kernels import rainfall as rain_k
from detectors.kernels import seismic as seis_k
from detectors.rules import Rules
from schemas.common import Family, WarningLevel, WireModel
from schemas.files import load_model_file
from schemas.registry import Area, Device, Registry, Target
from schemas.scenario import GroundTruth, HazardTruth, OutageTruth, TargetArrival
from simulators import physics
from simulators.demo import CENTRE, DISTRICT, DISTRICT_NAME, Message
from simulators.devices import DeviceSim, FireCamera, GasDetector, LevelGauge, RainGauge, SeismicStation, iso

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

__all__ = ["SCENARIO_DIR", "Scenario", "build", "load_scenario", "scenario_paths", "write_outputs"]

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
_FAMILY_OF_KIND = {
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


class _HazardBase(WireModel):
    hazard_id: str = Field(min_length=1, max_length=64)
    start_s: float = Field(default=0.0, ge=0, description="seconds after the scenario start")
    expected: dict[str, WarningLevel] = Field(
        default_factory=dict,
        description="truth kind (rainstorm, river_flood, gas_leak, forest_fire, earthquake) -> the level the "
        "standard gives for this hazard's data, stated in the scenario file (never computed from the detector)",
    )


class RainstormSpec(_HazardBase):
    kind: Literal["rainstorm"] = "rainstorm"
    cells: list[CellSpec] = Field(min_length=1)
    river: RiverSpec = RiverSpec()


class EarthquakeSpec(_HazardBase, Position):
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


class GasLeakSpec(_HazardBase):
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


class FireSpec(_HazardBase, Position):
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


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

_DEFAULT_INTERVAL = {"rain": 300.0, "level": 300.0, "gas": 60.0}
# Cameras report only what they see and the simulated stations stream only around events, so the
# registry's deadman interval for them is long.
_QUIET_INTERVAL = 3600.0
_TOWNS = (  # quadrant -> (town, site)
    ("青山镇", "qingshan"),  # north-west
    ("石门镇", "shimen"),  # north-east
    ("白沙镇", "baisha"),  # south-east
    ("临江街道", "linjiang"),  # south-west
)


def _rng(seed: int, *names: object) -> np.random.Generator:
    """An independent, reproducible stream per (seed, purpose)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, *(zlib.crc32(str(n).encode()) for n in names)])


def _quadrant_town(centre: LatLon, lat: float, lon: float) -> tuple[str, str]:
    north, east = lat >= centre[0], lon >= centre[1]
    return _TOWNS[(0 if not east else 1) if north else (2 if east else 3)]


def _network_devices(net: NetworkSpec, centre: LatLon, seed: int) -> list[DeviceSpec]:
    rng = _rng(seed, "network")
    c = net.centre or centre
    out: list[DeviceSpec] = []

    def disk_point(radius: float) -> LatLon:
        r = radius * math.sqrt(float(rng.uniform(0.05, 1.0)))
        return physics.destination(c[0], c[1], float(rng.uniform(0, 360)), r)

    n_hydro = net.per_family.get(Family.HYDRO, 0)
    n_level = (n_hydro + 2) // 3 if n_hydro else 0
    for i in range(n_hydro - n_level):
        lat, lon = disk_point(net.radius_km)
        town, site = _quadrant_town(c, lat, lon)
        out.append(DeviceSpec(device_id=f"RG{i + 1:02d}", kind="rain", site=site, lat=lat, lon=lon, town=town))
    for i in range(n_level):
        lat, lon = disk_point(net.radius_km * 0.7)
        town, site = _quadrant_town(c, lat, lon)
        th = {"warning_level_m": 12.0, "guaranteed_level_m": 13.5, "record_level_m": 14.8}
        out.append(
            DeviceSpec(device_id=f"WL{i + 1:02d}", kind="level", site=site, lat=lat, lon=lon, town=town, thresholds=th)
        )
    gases = (("H2S", "mg/m3"), ("CH4", "%LEL"), ("NH3", "ppm"), ("CO", "ppm"))
    for i in range(net.per_family.get(Family.HAZMAT, 0)):
        gas, unit = gases[i % len(gases)]
        lat, lon = physics.destination(
            net.chem_park[0], net.chem_park[1], (i * 137.5) % 360, 0.12 + 0.05 * (i % 4)
        )  # a fixed layout: GD01 120 m north of the park's centre, the others spiralling out
        out.append(
            DeviceSpec(
                device_id=f"GD{i + 1:02d}",
                kind="gas",
                site="chem-park",
                lat=lat,
                lon=lon,
                town="白沙镇",
                village="化工园区",
                gas=gas,
                unit=unit,  # type: ignore[arg-type]
            )
        )
    n_fire = net.per_family.get(Family.FIRE, 0)
    for i in range(n_fire):
        b = (360.0 * i / max(n_fire, 1) + float(rng.uniform(-15, 15))) % 360
        lat, lon = physics.destination(net.forest[0], net.forest[1], b, float(rng.uniform(5.0, 8.0)))
        out.append(
            DeviceSpec(
                device_id=f"FC{i + 1:02d}",
                kind="camera",
                site=f"tower-{i + 1}",
                lat=lat,
                lon=lon,
                town="石门镇",
                village="林场",
            )
        )
    n_seis = net.per_family.get(Family.SEISMIC, 0)
    for i in range(n_seis):
        b = (360.0 * i / max(n_seis, 1) + float(rng.uniform(-12, 12))) % 360
        lat, lon = physics.destination(c[0], c[1], b, net.radius_km * float(rng.uniform(0.4, 1.0)))
        out.append(DeviceSpec(device_id=f"SS{i + 1:02d}", kind="seismic", site="seis-net", lat=lat, lon=lon))
    return out


def _registry(s: Scenario, specs: list[DeviceSpec]) -> Registry:
    code, name = s.district.code, s.district.name
    lat0, lon0 = s.district.centre
    devices = []
    for d in specs:
        interval = d.interval_s or _DEFAULT_INTERVAL.get(d.kind, _QUIET_INTERVAL)
        devices.append(
            Device(
                device_id=d.device_id,
                family=_FAMILY_OF_KIND[d.kind],
                site=d.site,
                lat=round(d.lat, 6),
                lon=round(d.lon, 6),
                area=Area(code=code, district=name, town=d.town, village=d.village),
                interval_s=interval,
                gateway=d.gateway,
                thresholds=d.thresholds,
            )
        )
    targets = [
        Target(name=f"{name}政府", kind="town", lat=lat0, lon=lon0, area_code=code),
        Target(name=f"地铁1号线{name[:2]}站", kind="metro", lat=lat0 + 0.02, lon=lon0 + 0.03, area_code=code),
        Target(name=f"高铁{name[:2]}段", kind="rail", lat=lat0 - 0.05, lon=lon0 + 0.10, area_code=code),
        Target(name="天然气门站", kind="pipeline", lat=lat0 - 0.03, lon=lon0 + 0.05, area_code=code),
    ]
    return Registry(
        devices=devices,
        targets=targets,
        sms_recipients={code: ["+8613800000001", "+8613800000002", "+8613900000003"]},
    )


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------


def _times(start: datetime, end: datetime, every_s: float, phase_s: float) -> list[datetime]:
    out = []
    t = start + timedelta(seconds=phase_s + every_s)
    while t <= end:
        out.append(t)
        t += timedelta(seconds=every_s)
    return out


def _cell(c: CellSpec, centre: LatLon, hazard_start: float) -> physics.RainCell:
    lat, lon = c.resolve(centre)
    return physics.RainCell(
        lat, lon, c.heading_deg, c.speed_km_h, c.radius_km, c.peak_mm_h, hazard_start + c.start_s, c.duration_s
    )


class _Builder:
    def __init__(self, s: Scenario, start: datetime) -> None:
        self.s = s
        self.start = start
        self.t0 = start.timestamp()
        self.end = start + timedelta(seconds=s.duration_s)
        self.centre = s.district.centre
        self.specs = (
            s.devices if s.devices is not None else _network_devices(s.network or NetworkSpec(), self.centre, s.seed)
        )
        ids = [d.device_id for d in self.specs]
        if len(ids) != len(set(ids)):
            raise ValueError("device_id values must be unique")
        self.by_id = {d.device_id: d for d in self.specs}
        for name in (
            [f.device for f in s.faults.offline]
            + [f.device for f in s.faults.stuck]
            + [f.device for f in s.faults.clock_skew]
        ):
            if name not in self.by_id:
                raise ValueError(f"fault names unknown device {name!r}")
        self.registry = _registry(s, self.specs)
        self.devices = self.registry.by_id()
        self.skew = {f.device: f.skew_s for f in s.faults.clock_skew}
        self.stuck = {f.device: start + timedelta(seconds=f.at_s) for f in s.faults.stuck}
        self.messages: list[Message] = []
        self.park = (s.network or NetworkSpec()).chem_park

    def rng(self, *names: object) -> np.random.Generator:
        return _rng(self.s.seed, *names)

    def phase(self, device_id: str, interval: float) -> float:
        return round(float(self.rng("phase", device_id).uniform(0.0, min(30.0, interval / 4))), 3)

    # -- hazards as physics objects
    def rain_cells(self) -> list[physics.RainCell]:
        cells = [_cell(c, self.centre, self.t0) for c in self.s.noise.background_rain]
        for h in self.s.hazards:
            if isinstance(h, RainstormSpec):
                cells += [_cell(c, self.centre, self.t0 + h.start_s) for c in h.cells]
        return cells

    def river(self) -> RiverSpec:
        return next((h.river for h in self.s.hazards if isinstance(h, RainstormSpec)), RiverSpec())

    def quakes(self) -> list[tuple[EarthquakeSpec, physics.Quake]]:
        out = []
        for h in self.s.hazards:
            if isinstance(h, EarthquakeSpec):
                lat, lon = h.resolve(self.centre)
                out.append((h, physics.Quake(lat, lon, h.depth_km, h.magnitude, self.t0 + h.start_s)))
        return out

    def fires(self) -> list[tuple[FireSpec, physics.Fire]]:
        out = []
        for h in self.s.hazards:
            if isinstance(h, FireSpec):
                lat, lon = h.resolve(self.centre)
                out.append(
                    (h, physics.Fire(lat, lon, self.t0 + h.start_s, h.max_column_m, h.growth_s, h.flame_after_s))
                )
        return out

    def leaks(self) -> list[tuple[GasLeakSpec, LatLon]]:
        return [
            (h, h.source.resolve(self.centre) if h.source else self.park)
            for h in self.s.hazards
            if isinstance(h, GasLeakSpec)
        ]

    # -- devices
    def run(self) -> list[Message]:
        out = self.messages
        for d in self.specs:
            out.append(self._status_online(d.device_id, self.start))
        cells = self.rain_cells()
        for d in self.specs:
            if d.kind == "rain":
                out += self._rain(d, cells)
            elif d.kind == "level":
                out += self._level(d, cells)
            elif d.kind == "gas":
                out += self._gas(d)
            elif d.kind == "camera":
                out += self._camera(d)
            elif d.kind == "seismic":
                out += self._seismic(d)
        return out

    def _status_online(self, device_id: str, t: datetime) -> Message:
        return _sim_base(self.devices[device_id]).online(t)

    def _rain(self, d: DeviceSpec, cells: list[physics.RainCell]) -> list[Message]:
        dev = self.devices[d.device_id]
        sim = RainGauge(dev, bucket_mm=d.bucket_mm, clock_skew_s=self.skew.get(d.device_id, 0.0))
        out = []
        stuck = self.stuck.get(d.device_id)
        for t in _times(self.start, self.end, dev.interval_s, self.phase(d.device_id, dev.interval_s)):
            te = t.timestamp()
            mm = physics.rain_depth_mm(cells, d.lat, d.lon, te - dev.interval_s, te, step_s=60.0)
            if stuck is not None and t >= stuck:
                mm = 0.0  # a jammed bucket: rain runs off, nothing tips
            out.append(sim.report(t, mm))
        return out

    def _stage_series(self, d: DeviceSpec, cells: list[physics.RainCell], times: list[datetime]) -> list[float]:
        dev = self.devices[d.device_id]
        rv = self.river()
        warning = dev.thresholds.get("warning_level_m", 12.0)
        base = d.base_level_m if d.base_level_m is not None else warning - 1.5
        ring = [(d.lat, d.lon)] + [physics.destination(d.lat, d.lon, b, rv.catchment_km / 2) for b in range(0, 360, 60)]
        step = dev.interval_s
        # start the reservoir a step before the first reading; rain over each step into the catchment
        rain = []
        for t in times:
            te = t.timestamp()
            rain.append(sum(physics.rain_depth_mm(cells, la, lo, te - step, te, 120.0) for la, lo in ring) / len(ring))
        q = physics.linear_reservoir(rain, step, rv.k_h * 3600.0, rv.runoff_coeff)
        return [physics.river_stage_m(float(x), base, rv.gain_m) for x in q]

    def _level(self, d: DeviceSpec, cells: list[physics.RainCell]) -> list[Message]:
        dev = self.devices[d.device_id]
        sim = LevelGauge(dev, clock_skew_s=self.skew.get(d.device_id, 0.0))
        rng = self.rng("level", d.device_id)
        times = _times(self.start, self.end, dev.interval_s, self.phase(d.device_id, dev.interval_s))
        stages = self._stage_series(d, cells, times)
        stuck = self.stuck.get(d.device_id)
        out: list[Message] = []
        frozen: bytes | None = None
        for t, h in zip(times, stages, strict=True):
            m = sim.report(t, h, rng)
            if stuck is not None and t >= stuck:
                # the float is stuck: the last value repeats (with fresh ts and seq)
                if frozen is None:
                    frozen = m.payload
                value = json.loads(frozen)["level_m"]
                sim.seq -= 1
                m = sim.telemetry(t, "hydro.level", "stuck", level_m=value)
            out.append(m)
        return out

    def gas_truth(self, d: DeviceSpec, times_s: np.ndarray) -> np.ndarray:
        """True concentration (detector's unit) at a detector, at epoch times, from every leak of its gas."""
        total = np.full(len(times_s), self.s.noise.gas_background)
        for h, (slat, slon) in self.leaks():
            if h.gas.upper() != d.gas.upper():
                continue
            phase = float(self.rng("meander", h.hazard_id).uniform(0, 2 * math.pi))
            t_leak = self.t0 + h.start_s
            for i, t in enumerate(times_s):
                wind_from = h.wind_from_deg + h.wind_meander_deg * math.sin(2 * math.pi * (t - t_leak) / 600.0 + phase)
                x, y = physics.plume_axes_m(slat, slon, d.lat, d.lon, wind_from)
                travel = max(x, 0.0) / h.wind_ms
                if not (t_leak <= t - travel < t_leak + h.duration_s):
                    continue
                g = physics.plume_g_m3(h.rate_g_s, h.wind_ms, x, y, source_h_m=h.source_h_m, stability=h.stability)
                total[i] += physics.convert_concentration(g, h.gas, d.unit)
        return total

    def _gas(self, d: DeviceSpec) -> list[Message]:
        dev = self.devices[d.device_id]
        nz = self.s.noise
        sim = GasDetector(
            dev,
            gas=d.gas,
            unit=d.unit,
            t90_s=d.t90_s,
            drift_per_h=nz.gas_drift_per_h,
            noise=nz.gas_noise,
            resolution=0.1 if d.unit != "ppm" else 0.5,
            clock_skew_s=self.skew.get(d.device_id, 0.0),
        )
        times = _times(self.start, self.end, dev.interval_s, self.phase(d.device_id, dev.interval_s))
        true = self.gas_truth(d, np.array([t.timestamp() for t in times]))
        return sim.readings(times, list(true), self.rng("gas", d.device_id), stuck_from=self.stuck.get(d.device_id))

    def _camera(self, d: DeviceSpec) -> list[Message]:
        dev = self.devices[d.device_id]
        sim = FireCamera(
            dev,
            sweep_s=d.sweep_s,
            visibility_km=self.s.noise.visibility_km,
            clock_skew_s=self.skew.get(d.device_id, 0.0),
        )
        fires = [f for _, f in self.fires()]
        rng = self.rng("camera", d.device_id)
        out = []
        t = self.start + timedelta(seconds=self.phase(d.device_id, d.sweep_s))
        stuck = self.stuck.get(d.device_id)
        while t + timedelta(seconds=d.sweep_s) <= self.end:
            frozen = stuck is not None and t >= stuck
            out += sim.sweep(t, fires, rng, fp_rate=self.s.noise.fire_false_positives_per_sweep, frozen=frozen)
            t += timedelta(seconds=d.sweep_s)
        return out

    def seismic_windows(self) -> list[tuple[float, float]]:
        """(start, end) of streaming, in seconds from the scenario's start, whole seconds, merged.

        Relative to the start, not whole epoch seconds: the quake's place on the packets' sample grid,
        and with it every sample, must not depend on the start's fraction of a second (a scenario run
        starts at the wall clock's "now", simulators/run.py)."""
        spans = [(a, a + b) for a, b in self.s.noise.seismic_windows]
        for h in self.s.hazards:
            if isinstance(h, EarthquakeSpec):
                spans.append((h.start_s - h.record_before_s, h.start_s + h.record_after_s))
        spans = sorted((math.floor(max(a, 0.0)), math.floor(min(b, self.s.duration_s))) for a, b in spans)
        merged: list[tuple[float, float]] = []
        for a, b in spans:
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def _seismic(self, d: DeviceSpec) -> list[Message]:
        dev = self.devices[d.device_id]
        sim = SeismicStation(dev, clock_skew_s=self.skew.get(d.device_id, 0.0))
        out: list[Message] = []
        # the waveforms in seconds from the scenario's start (exact), the packets' times absolute
        quakes = [dataclasses.replace(q, origin_s=h.start_s) for h, q in self.quakes()]
        for k, (a, b) in enumerate(self.seismic_windows()):
            rng = self.rng("seismic", d.device_id, k)
            n = int(round((b - a) * sim.df))
            v = physics.seismic_noise(n, sim.df, rng)
            for q in quakes:
                v += physics.quake_waveform(q, d.lat, d.lon, a, n, sim.df, rng, noise=False)
            t = self.start + timedelta(seconds=a)
            out += sim.packets(t, v, stuck_from=self.stuck.get(d.device_id))
        return out


def _sim_base(dev: Device) -> DeviceSim:
    return DeviceSim(dev)


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def _apply_offline(b: _Builder, msgs: list[Message]) -> list[Message]:
    out = msgs
    for f in b.s.faults.offline:
        dev = b.devices[f.device]
        sim = _sim_base(dev)
        down = b.start + timedelta(seconds=f.at_s)
        up = b.start + timedelta(seconds=f.back_s) if f.back_s is not None else None
        topic_t, topic_s = sim.telemetry_topic, sim.status_topic

        def silent(m: Message, down: datetime = down, up: datetime | None = up) -> bool:
            return down <= m.t and (up is None or m.t < up)

        out = [m for m in out if not (m.topic in (topic_t, topic_s) and silent(m))]
        # the broker publishes the last will once 1.5 keep-alives (30 s) pass without a packet
        out.append(sim.last_will(down + timedelta(seconds=LAST_WILL_DELAY_S)))
        if up is not None and up <= b.end:
            out.append(sim.online(up, "status: back online"))
    return out


LAST_WILL_DELAY_S = 45.0

_MALFORMED = (
    "truncated",
    "nan",
    "missing_field",
    "naive_ts",
    "not_utf8",
    "out_of_range",
    "wrong_type",
    "identity",
)


def _malformed(b: _Builder, base: list[Message], count: int) -> list[Message]:
    rng = b.rng("malformed")
    candidates = [m for m in base if m.topic.endswith("/telemetry") and "/seismic/" not in m.topic]
    if not candidates:
        candidates = [m for m in base if m.topic.endswith("/telemetry")]
    out = []
    for i in range(count):
        m = candidates[int(rng.integers(len(candidates)))]
        obj = json.loads(m.payload)
        kind = _MALFORMED[i % len(_MALFORMED)]
        t = m.t + timedelta(milliseconds=int(rng.integers(100, 5000)))
        if kind == "truncated":
            payload = m.payload[: max(1, len(m.payload) // 2)]
        elif kind == "nan":
            key = next(k for k in ("rain_mm", "level_m", "value", "confidence", "samples") if k in obj)
            obj[key] = "__NAN__" if key != "samples" else ["__NAN__"]
            payload = json.dumps(obj, separators=(",", ":")).replace('"__NAN__"', "NaN").encode()
        elif kind == "missing_field":
            obj.pop("ts")
            payload = json.dumps(obj, separators=(",", ":")).encode()
        elif kind == "naive_ts":
            obj["ts"] = obj["ts"][:23]
            payload = json.dumps(obj, separators=(",", ":")).encode()
        elif kind == "not_utf8":
            payload = b"\xff\xfe\x00garbage\x80\x81"
        elif kind == "out_of_range":
            for k, v in (("rain_mm", 9999.0), ("level_m", 99999.0), ("value", -5.0), ("confidence", 7.0)):
                if k in obj:
                    obj[k] = v
                    break
            else:
                obj["sample_rate_hz"] = -1.0
            payload = json.dumps(obj, separators=(",", ":")).encode()
        elif kind == "wrong_type":
            obj["type"] = "hydro.unknown"
            payload = json.dumps(obj, separators=(",", ":")).encode()
        else:  # identity: the payload claims another device than the topic
            obj["device_id"] = obj["device_id"] + "X"
            payload = json.dumps(obj, separators=(",", ":")).encode()
        out.append(Message(t, m.topic, payload, f"bad: malformed ({kind})"))
    return out


def _duplicates(b: _Builder, base: list[Message], count: int) -> list[Message]:
    rng = b.rng("duplicates")
    candidates = [m for m in base if m.topic.endswith("/telemetry")]
    out = []
    for _ in range(count if candidates else 0):
        m = candidates[int(rng.integers(len(candidates)))]
        out.append(Message(m.t + timedelta(milliseconds=int(rng.integers(500, 5000))), m.topic, m.payload, "duplicate"))
    return out


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


def _clean_readings(msgs: Iterable[Message]) -> dict[str, list[tuple[datetime, dict[str, object]]]]:
    """Per device, the (publish time, payload) of every well-formed telemetry message, duplicates removed."""
    out: dict[str, list[tuple[datetime, dict[str, object]]]] = {}
    for m in msgs:
        if not m.topic.endswith("/telemetry") or m.note.startswith("bad:") or m.note == "duplicate":
            continue
        obj = json.loads(m.payload)
        out.setdefault(str(obj["device_id"]), []).append((m.t, obj))
    return out


def _stated(h: _HazardBase, kind: str) -> WarningLevel:
    """The level the scenario file states for this hazard's ``kind`` of truth (its ground truth)."""
    level = h.expected.get(kind)
    if level is None:
        raise ValueError(
            f"scenario hazard {h.hazard_id}: its data is detectable as {kind}; state expected: {{{kind}: <level>}} "
            "from the standard's table"
        )
    return level


def _rain_truth(
    b: _Builder, h: RainstormSpec, readings: dict[str, list[tuple[datetime, dict[str, object]]]]
) -> list[HazardTruth]:
    rules = Rules().hydro
    first: datetime | None = None
    devices: list[str] = []
    for d in b.specs:
        if d.kind != "rain":
            continue
        reports: list[rain_k.Report] = []
        hit = False
        for t, obj in readings.get(d.device_id, []):
            ts = t.timestamp()
            reports = rain_k.add_report(reports, ts, float(obj["interval_s"]), float(obj["rain_mm"]))  # type: ignore[arg-type]
            for r in rules.rain:
                total, _ = rain_k.accumulation(reports, ts, r.window_h * 3600.0)
                if total >= r.mm - 1e-9:
                    hit = True
                    first = t if first is None or t < first else first
        if hit:
            devices.append(d.device_id)
    out: list[HazardTruth] = []
    cell = max(h.cells, key=lambda c: c.peak_mm_h)
    lat, lon = cell.resolve(b.centre)
    start = b.start + timedelta(seconds=h.start_s + min(c.start_s for c in h.cells))
    end = b.start + timedelta(seconds=h.start_s + max(c.start_s + c.duration_s for c in h.cells))
    params: dict[str, float | str] = {"cells": float(len(h.cells)), "peak_mm_h": cell.peak_mm_h}
    if first is not None:
        out.append(
            _truth(
                b,
                h.hazard_id,
                Family.HYDRO,
                "rainstorm",
                (lat, lon),
                start,
                first,
                end,
                _stated(h, "rainstorm"),
                devices,
                params,
            )
        )
    # the river
    hr = Rules().hydro
    first_l: datetime | None = None
    lvl_devices = []
    for d in b.specs:
        if d.kind != "level":
            continue
        th = b.devices[d.device_id].thresholds
        warning = th.get("warning_level_m")
        if warning is None:
            continue
        sets = (
            warning - hr.approach_margin_m,
            warning,
            th.get("guaranteed_level_m", math.inf),
            th.get("record_level_m", math.inf),
        )
        hit = False
        for t, obj in readings.get(d.device_id, []):
            level = float(obj["level_m"])  # type: ignore[arg-type]
            rank = sum(level >= s for s in sets)
            if rank:
                hit = True
                first_l = t if first_l is None or t < first_l else first_l
        if hit:
            lvl_devices.append(d.device_id)
    if first_l is not None:
        dev = b.devices[lvl_devices[0]]
        out.append(
            _truth(
                b,
                f"{h.hazard_id}-river",
                Family.HYDRO,
                "river_flood",
                (dev.lat, dev.lon),
                start,
                first_l,
                None,
                _stated(h, "river_flood"),
                lvl_devices,
                params,
            )
        )
    return out


def _truth(
    b: _Builder,
    hazard_id: str,
    family: Family,
    kind: str,
    where: LatLon,
    start: datetime,
    detectable: datetime,
    end: datetime | None,
    level: WarningLevel,
    devices: list[str],
    params: dict[str, float | str],
    targets: list[TargetArrival] | None = None,
) -> HazardTruth:
    codes = sorted({b.devices[d].area.code for d in devices} or {b.s.district.code})
    return HazardTruth(
        hazard_id=hazard_id,
        family=family,
        kind=kind,
        lat=round(where[0], 6),
        lon=round(where[1], 6),
        start=start,
        detectable_from=detectable,
        end=end,
        expected_level=level,
        devices=sorted(devices),
        area_codes=codes,
        targets=targets or [],
        params=params,
    )


def _gas_truth(
    b: _Builder, h: GasLeakSpec, src: LatLon, readings: dict[str, list[tuple[datetime, dict[str, object]]]]
) -> HazardTruth | None:
    first: datetime | None = None
    devices = []
    for d in b.specs:
        if d.kind != "gas" or d.gas.upper() != h.gas.upper():
            continue
        rules = gas_k.rules_for(d.gas, d.unit, {k: v for k, v in b.devices[d.device_id].thresholds.items()})
        hit = False
        for t, obj in readings.get(d.device_id, []):
            for g in rules:
                try:
                    value = gas_k.to_unit(d.gas, float(obj["value"]), d.unit, g.unit)  # type: ignore[arg-type]
                except ValueError:
                    continue
                if not g.rule.above:
                    continue
                # rank of the highest level whose set-point the reading reaches (level 1 is yellow)
                rank = max((i + 1 for i, sp in enumerate(g.rule.sets) if sp is not None and value >= sp), default=0)
                if rank:
                    hit = True
                    first = t if first is None or t < first else first
        if hit:
            devices.append(d.device_id)
    if first is None:
        return None
    start = b.start + timedelta(seconds=h.start_s)
    params: dict[str, float | str] = {
        "gas": h.gas,
        "rate_g_s": h.rate_g_s,
        "wind_ms": h.wind_ms,
        "wind_from_deg": h.wind_from_deg,
        "stability": h.stability,
    }
    return _truth(
        b,
        h.hazard_id,
        Family.HAZMAT,
        "gas_leak",
        src,
        start,
        first,
        start + timedelta(seconds=h.duration_s),
        _stated(h, "gas_leak"),
        devices,
        params,
    )


def _fire_truth(
    b: _Builder,
    idx: int,
    h: FireSpec,
    f: physics.Fire,
    msgs: list[Message],
) -> HazardTruth | None:
    fr = Rules().fire
    first: datetime | None = None
    devices = []
    flames: dict[str, int] = {}
    for m in msgs:
        if m.note != f"fire {idx}" or not m.topic.endswith("/telemetry"):
            continue
        obj = json.loads(m.payload)
        if float(obj["confidence"]) < fr.min_confidence:
            continue
        dev = str(obj["device_id"])
        if dev not in devices:
            devices.append(dev)
        if obj["kind"] == "flame":
            flames[dev] = flames.get(dev, 0) + 1
        first = m.t if first is None or m.t < first else first
    if first is None:
        return None
    params: dict[str, float | str] = {"max_column_m": h.max_column_m, "growth_s": h.growth_s}
    return _truth(
        b,
        h.hazard_id,
        Family.FIRE,
        "forest_fire",
        (f.lat, f.lon),
        datetime.fromtimestamp(f.ignition_s, UTC),
        first,
        None,
        _stated(h, "forest_fire"),
        devices,
        params,
    )


def _outage_truth(b: _Builder, readings: dict[str, list[tuple[datetime, dict[str, object]]]]) -> list[OutageTruth]:
    """The offline faults the deadman can see, one per gateway (or site) and overlapping silence.

    A device is flagged once silent for more than ``deadman_k`` x its interval since its last clean
    reading before the fault (or since the scenario start); a fault shorter than that (its first
    reading after ``back_s`` comes first) is invisible and listed nowhere. Devices of one family,
    area and gateway (or site, without a gateway) whose silences overlap make one outage, as the
    alert engine groups them into one equipment alert."""
    k = Rules().deadman_k
    per_group: dict[tuple[Family, str, str], list[tuple[datetime, datetime, datetime | None, str]]] = {}
    for f in b.s.faults.offline:
        dev = b.devices[f.device]
        down = b.start + timedelta(seconds=f.at_s)
        up = b.start + timedelta(seconds=f.back_s) if f.back_s is not None else None
        seen = [t for t, _ in readings.get(f.device, [])]
        last = max((t for t in seen if t < down), default=b.start)
        flagged = last + timedelta(seconds=k * dev.interval_s)
        back = min((t for t in seen if t >= up), default=None) if up is not None else None
        if flagged >= b.end or (back is not None and back <= flagged):
            continue
        group = (f"gateway-{dev.gateway}" if dev.gateway else f"site-{dev.site}").replace(":", "_")
        per_group.setdefault((dev.family, dev.area.code, group), []).append((down, flagged, back, f.device))
    out: list[OutageTruth] = []
    for (family, area, group), spans in sorted(per_group.items(), key=lambda kv: kv[0][1:]):
        merged: list[list[tuple[datetime, datetime, datetime | None, str]]] = []
        for span in sorted(spans, key=lambda x: x[1]):
            if merged and all(e is None or span[1] < e for _, _, e, _ in merged[-1]):
                merged[-1].append(span)
            else:
                merged.append([span])
        for i, m in enumerate(merged):
            backs = [e for _, _, e, _ in m]
            out.append(
                OutageTruth(
                    outage_id=f"{group}-{i + 1}" if len(merged) > 1 else group,
                    family=family,
                    area_code=area,
                    group=group,
                    devices=sorted(x[3] for x in m),
                    start=min(x[0] for x in m),
                    detectable_from=min(x[1] for x in m),
                    back=None if any(e is None for e in backs) else max(e for e in backs if e is not None),
                )
            )
    return sorted(out, key=lambda o: o.detectable_from)


def _observed_intensity(samples: list[float], df: float = 100.0) -> float:
    """GB/T 17742-2020 intensity the generated trace carries: PGA/PGV of its 0.1-10 Hz velocity."""
    if len(samples) < 2:
        return 0.0
    v = seis_k.Bandpass(0.1, 10.0, df, 4, steady_start=True).process(np.asarray(samples, dtype=float))
    pga, pgv = seis_k.peak_ground_motion(v, df)
    return seis_k.instrumental_intensity(pga, pgv)


def _quake_truth(b: _Builder, h: EarthquakeSpec, q: physics.Quake, msgs: list[Message]) -> HazardTruth | None:
    streaming: dict[str, list[tuple[float, float]]] = {}
    samples: dict[str, list[float]] = {}
    for m in msgs:
        if "/seismic/" in m.topic and m.topic.endswith("/telemetry") and not m.note.startswith("bad:"):
            if m.note == "duplicate":
                continue
            obj = json.loads(m.payload)
            t = m.t.timestamp()
            dev = str(obj["device_id"])
            streaming.setdefault(dev, []).append((t - 1.0, t))
            if q.origin_s - 30.0 <= t <= q.origin_s + h.record_after_s:
                samples.setdefault(dev, []).extend(obj["samples"])  # type: ignore[arg-type]
    picks = []
    observed = 0.0
    for d in b.specs:
        if d.kind != "seismic":
            continue
        a = physics.arrivals(q, d.lat, d.lon)
        spans = streaming.get(d.device_id, [])
        # needs the LTA warmed up (10 s of data) before the P wave and the P packet itself
        covered = [s for s in spans if s[0] <= a.p_s < s[1]]
        if covered and any(s[0] <= a.p_s - 10.0 for s in spans):
            picks.append((a.p_s, d.device_id))
            observed = max(observed, _observed_intensity(samples.get(d.device_id, [])))
    picks.sort()
    if len(picks) < 3:
        return None
    targets = []
    predicted = 0.0
    for tg in b.registry.targets:
        a = physics.arrivals(q, tg.lat, tg.lon)
        predicted = max(predicted, predicted_intensity(q.magnitude, a.hypo_km))
        targets.append(
            TargetArrival(
                target=tg.name,
                distance_km=round(a.epi_km, 3),
                p_arrival=datetime.fromtimestamp(a.p_s, UTC),
                s_arrival=datetime.fromtimestamp(a.s_s, UTC),
            )
        )
    params: dict[str, float | str] = {
        "magnitude": q.magnitude,
        "depth_km": q.depth_km,
        "epicentral_km_from_centre": round(physics.distance_km(q.lat, q.lon, *b.centre), 3),
        "max_intensity_at_targets": predicted,
        "max_intensity_observed": observed,
    }
    origin = datetime.fromtimestamp(q.origin_s, UTC)
    return _truth(
        b,
        h.hazard_id,
        Family.SEISMIC,
        "earthquake",
        (q.lat, q.lon),
        origin,
        datetime.fromtimestamp(picks[2][0], UTC),
        origin + timedelta(seconds=h.record_after_s),
        _stated(h, "earthquake"),
        [p[1] for p in picks],
        params,
        targets,
    )


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def build(scenario: Scenario, start: datetime | None = None) -> tuple[Registry, list[Message], GroundTruth]:
    """The registry, every device message (publishing order) and the ground truth of a scenario.

    ``start`` overrides the scenario's start; without either, the scenario ends now (for a live run
    through a gateway, whose timestamps must not be in the future).
    """
    s = scenario
    if start is None:
        start = s.start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=s.duration_s)
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    b = _Builder(s, start)
    msgs = b.run()
    msgs = _apply_offline(b, msgs)
    base = sorted(msgs, key=lambda m: m.t)
    extra = _malformed(b, base, s.faults.malformed) + _duplicates(b, base, s.faults.duplicates)
    messages = sorted(base + extra, key=lambda m: m.t)
    readings = _clean_readings(messages)
    hazards: list[HazardTruth] = []
    undetectable: list[str] = []
    fires = dict((h.hazard_id, (i, f)) for i, (h, f) in enumerate(b.fires()))
    quakes = {h.hazard_id: q for h, q in b.quakes()}
    leaks = {h.hazard_id: src for h, src in b.leaks()}
    for h in s.hazards:
        found: list[HazardTruth] = []
        if isinstance(h, RainstormSpec):
            found = _rain_truth(b, h, readings)
        elif isinstance(h, GasLeakSpec):
            found = [t for t in [_gas_truth(b, h, leaks[h.hazard_id], readings)] if t]
        elif isinstance(h, FireSpec):
            i, fire = fires[h.hazard_id]
            found = [t for t in [_fire_truth(b, i, h, fire, messages)] if t]
        elif isinstance(h, EarthquakeSpec):
            found = [t for t in [_quake_truth(b, h, quakes[h.hazard_id], messages)] if t]
        if not found:
            undetectable.append(h.hazard_id)
        hazards += found
    outages = _outage_truth(b, readings)
    fs = s.faults
    faults = (
        [f"offline:{x.device}" for x in fs.offline]
        + [f"stuck:{x.device}" for x in fs.stuck]
        + [f"skew:{x.device}:{x.skew_s:+g}" for x in fs.clock_skew]
        + ([f"malformed:{fs.malformed}"] if fs.malformed else [])
        + ([f"duplicates:{fs.duplicates}"] if fs.duplicates else [])
    )
    truth = GroundTruth(
        scenario=s.name,
        seed=s.seed,
        start=start,
        end=b.end,
        hazards=sorted(hazards, key=lambda x: x.detectable_from),
        faults=faults,
        outages=outages,
        messages=len(messages),
        undetectable=undetectable,
    )
    return b.registry, messages, truth


def message_line(m: Message) -> str:
    """One JSONL line: t, topic, payload (text, or base64 with ``payload_b64`` when not UTF-8), note."""
    row: dict[str, str] = {"t": iso(m.t), "topic": m.topic}
    try:
        row["payload"] = m.payload.decode("utf-8")
    except UnicodeDecodeError:
        row["payload_b64"] = base64.b64encode(m.payload).decode("ascii")
    row["note"] = m.note
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def write_outputs(
    out_dir: str | Path, registry: Registry, messages: list[Message], truth: GroundTruth
) -> dict[str, Path]:
    """Write ``registry.yaml``, ``registry.json``, ``messages.jsonl`` and ``ground_truth.json`` to ``out_dir``."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "registry_json": out / "registry.json",
        "registry_yaml": out / "registry.yaml",
        "messages": out / "messages.jsonl",
        "ground_truth": out / "ground_truth.json",
    }
    data = registry.model_dump(mode="json")
    paths["registry_json"].write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    paths["registry_yaml"].write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with paths["messages"].open("w", encoding="utf-8") as fh:
        for m in messages:
            fh.write(message_line(m) + "\n")
    paths["ground_truth"].write_text(truth.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return paths
