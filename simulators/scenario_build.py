"""Scenario builder: a :class:`~tocsin.simulators.scenario_spec.Scenario` -> the district's registry and
every device message in publishing order (:class:`tocsin.simulators.demo.Message`), faults applied
(devices going offline with their last will, stuck sensors, clock skew, malformed payloads,
duplicates). Deterministic: the same scenario, seed and start give the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from datetime import datetime, timedelta

import numpy as np

from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry, Target
from tocsin.simulators import physics
from tocsin.simulators.demo import QUADRANT_TOWNS, Message, town_boundaries
from tocsin.simulators.devices import DeviceSim, FireCamera, GasDetector, LevelGauge, RainGauge, SeismicStation
from tocsin.simulators.scenario_spec import (
    FAMILY_OF_KIND,
    CellSpec,
    DeviceSpec,
    EarthquakeSpec,
    FireSpec,
    GasLeakSpec,
    LatLon,
    NetworkSpec,
    RainstormSpec,
    RiverSpec,
    Scenario,
)

# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

_DEFAULT_INTERVAL = {"rain": 300.0, "level": 300.0, "gas": 60.0}
# Cameras report only what they see and the simulated stations stream only around events, so the
# registry's deadman interval for them is long.
_QUIET_INTERVAL = 3600.0
_TOWNS = tuple(zip(QUADRANT_TOWNS, ("qingshan", "shimen", "baisha", "linjiang"), strict=True))
"""quadrant (north-west, north-east, south-east, south-west) -> (town, site)"""


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
                family=FAMILY_OF_KIND[d.kind],
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
    net = s.network or NetworkSpec()
    # the towns' boundaries: split where the generated network splits its devices into towns
    boundaries = town_boundaries(code, name, net.centre or s.district.centre, net.radius_km * 1.2, net.chem_park)
    return Registry(
        devices=devices,
        targets=targets,
        sms_recipients={code: ["+8613800000001", "+8613800000002", "+8613900000003"]},
        boundaries=boundaries,
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


class ScenarioBuilder:
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
            out += sim.packets(self.start + timedelta(seconds=a), v, stuck_from=self.stuck.get(d.device_id))
        return out


def _sim_base(dev: Device) -> DeviceSim:
    return DeviceSim(dev)


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def apply_offline(b: ScenarioBuilder, msgs: list[Message]) -> list[Message]:
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


def malformed_messages(b: ScenarioBuilder, base: list[Message], count: int) -> list[Message]:
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


def duplicate_messages(b: ScenarioBuilder, base: list[Message], count: int) -> list[Message]:
    rng = b.rng("duplicates")
    candidates = [m for m in base if m.topic.endswith("/telemetry")]
    out = []
    for _ in range(count if candidates else 0):
        m = candidates[int(rng.integers(len(candidates)))]
        out.append(Message(m.t + timedelta(milliseconds=int(rng.integers(500, 5000))), m.topic, m.payload, "duplicate"))
    return out
