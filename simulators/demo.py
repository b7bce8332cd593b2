"""The built-in demo: a small district with one hazard of each family, as device messages.

``demo_registry()`` is the district (devices, areas, thresholds, SMS numbers); ``demo_messages()``
is what its devices publish over about 70 minutes of device time that ends at ``end``: a
rainstorm over 青山镇 and the river rising, a chemical-park H2S leak that peaks and clears, two
forest-fire cameras seeing smoke then flame, an earthquake felt by five stations, plus two bad
messages (a NaN reading and a payload claiming another device) that must end as dead letters.
Deterministic for a given seed and end time.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Boundary, Device, Registry, Target

DISTRICT = "330110"
DISTRICT_NAME = "临江区"
CENTRE = (30.27, 120.12)


@dataclass(frozen=True)
class Message:
    t: datetime  # device time
    topic: str
    payload: bytes
    note: str = ""


def _area(town: str, village: str = "") -> Area:
    return Area(code=DISTRICT, district=DISTRICT_NAME, town=town, village=village)


QUADRANT_TOWNS = ("青山镇", "石门镇", "白沙镇", "临江街道")
"""The district's towns: north-west, north-east, south-east, south-west of the centre."""
CHEM_PARK = (30.23, 120.18)


def _offset(centre: tuple[float, float], north_km: float, east_km: float) -> tuple[float, float]:
    lat = centre[0] + north_km / 111.2
    lon = centre[1] + east_km / (111.2 * math.cos(math.radians(centre[0])))
    return round(lat, 5), round(lon, 5)


def town_boundaries(
    code: str, district: str, centre: tuple[float, float], radius_km: float, chem_park: tuple[float, float]
) -> list[Boundary]:
    """Boundaries for a simulated district: four towns (:data:`QUADRANT_TOWNS`) split by the meridian
    and the parallel through ``centre`` (the simulators put a device in the town of its quadrant),
    with an irregular outer edge (radius_km plus or minus about 13 %, a vertex every 5 degrees),
    and the chemical park (白沙镇化工园区) as a village boundary of about 1.2 km by 0.9 km."""

    def rim(bearing_deg: float) -> tuple[float, float]:
        b = math.radians(bearing_deg)
        r = radius_km * (1.0 + 0.08 * math.sin(3 * b + 1.0) + 0.05 * math.sin(7 * b + 2.0))
        return _offset(centre, r * math.cos(b), r * math.sin(b))

    def spoke(bearing_deg: float, fraction: float) -> tuple[float, float]:
        edge = rim(bearing_deg)
        return (
            round(centre[0] + fraction * (edge[0] - centre[0]), 5),
            round(centre[1] + fraction * (edge[1] - centre[1]), 5),
        )

    out = []
    for town, start in zip(QUADRANT_TOWNS, (270, 0, 90, 180), strict=True):
        ring = [(round(centre[0], 5), round(centre[1], 5)), spoke(start, 0.5)]
        ring += [rim(start + step) for step in range(0, 91, 5)]
        ring.append(spoke(start + 90, 0.5))
        out.append(Boundary(code=code, district=district, town=town, polygon=tuple(ring)))
    park = [(-0.45, -0.6), (-0.5, 0.2), (-0.3, 0.65), (0.2, 0.6), (0.45, 0.3), (0.4, -0.35), (0.1, -0.62)]
    out.append(
        Boundary(
            code=code,
            district=district,
            town="白沙镇",
            village="化工园区",
            polygon=tuple(_offset(chem_park, n, e) for n, e in park),
        )
    )
    return out


def demo_registry() -> Registry:
    lat0, lon0 = CENTRE
    water_levels = {"warning_level_m": 12.0, "guaranteed_level_m": 13.5, "record_level_m": 14.8}
    # device, family, site, offset from the centre (deg lat, lon), town, village, report interval (s)
    table: list[tuple[str, Family, str, float, float, str, str, float]] = [
        ("RG01", Family.HYDRO, "qingshan", 0.05, -0.04, "青山镇", "横溪村", 300),
        ("RG02", Family.HYDRO, "qingshan", 0.06, -0.02, "青山镇", "石桥村", 300),
        ("WL01", Family.HYDRO, "qingshan", 0.03, -0.03, "青山镇", "横溪村", 300),
        ("GD01", Family.HAZMAT, "chem-park", -0.04, 0.06, "白沙镇", "化工园区", 10),
        ("GD02", Family.HAZMAT, "chem-park", -0.041, 0.062, "白沙镇", "化工园区", 10),
        ("FC01", Family.FIRE, "tower-north", 0.10, 0.02, "石门镇", "林场", 180),
        ("FC02", Family.FIRE, "tower-east", 0.07, 0.09, "石门镇", "林场", 180),
    ]
    devices = [
        Device(
            device_id=dev,
            family=family,
            site=site,
            lat=lat0 + dlat,
            lon=lon0 + dlon,
            area=_area(town, village),
            interval_s=interval_s,
            thresholds=water_levels if dev.startswith("WL") else {},
        )
        for dev, family, site, dlat, dlon, town, village, interval_s in table
    ]
    for i, (dlat, dlon) in enumerate([(0.08, 0.0), (-0.07, 0.05), (0.02, -0.10), (-0.05, -0.08), (0.0, 0.12)]):
        devices.append(
            Device(
                device_id=f"SS0{i + 1}",
                family=Family.SEISMIC,
                site="seis-net",
                lat=lat0 + dlat,
                lon=lon0 + dlon,
                area=_area("", ""),
                # real stations stream without pause; the demo's send only the minute around the quake,
                # so their deadman interval is long enough not to call them offline during the demo
                interval_s=900,
            )
        )
    targets = [
        Target(name="临江区政府", kind="town", lat=lat0, lon=lon0, area_code=DISTRICT),
        Target(name="地铁1号线临江站", kind="metro", lat=lat0 + 0.02, lon=lon0 + 0.03, area_code=DISTRICT),
        Target(name="高铁临江段", kind="rail", lat=lat0 - 0.05, lon=lon0 + 0.10, area_code=DISTRICT),
        Target(name="天然气门站", kind="pipeline", lat=lat0 - 0.03, lon=lon0 + 0.05, area_code=DISTRICT),
    ]
    return Registry(
        devices=devices,
        targets=targets,
        sms_recipients={DISTRICT: ["+8613800000001", "+8613800000002", "+8613900000003"]},
        boundaries=town_boundaries(DISTRICT, DISTRICT_NAME, CENTRE, 16.0, CHEM_PARK),
    )


def _payload(**fields: object) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def demo_messages(end: datetime | None = None, seed: int = 7) -> list[Message]:
    """Every message of the demo in device-time order; the last one is at ``end`` (default now)."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC)
    t0 = end - timedelta(minutes=70)
    reg = demo_registry().by_id()
    out: list[Message] = []
    seq: dict[str, int] = {}

    def emit(dev: str, t: datetime, note: str = "", **fields: object) -> None:
        d = reg[dev]
        seq[dev] = seq.get(dev, 0) + 1
        body = _payload(device_id=dev, site=d.site, ts=_iso(t), seq=seq[dev], **fields)
        out.append(Message(t, topics.mqtt_telemetry(d.family, d.site, dev), body, note))

    # Rainstorm: light rain, then a 40-minute burst of about 62 mm at RG01 (less at RG02).
    for k in range(14):
        t = t0 + timedelta(minutes=5 * (k + 1))
        burst = 4 <= k <= 11
        for dev, scale in (("RG01", 1.0), ("RG02", 0.6)):
            mm = (7.8 if burst else 0.4) * scale + rng.uniform(0, 0.2)
            emit(dev, t, type="hydro.rain", rain_mm=round(mm, 1), interval_s=300)
        # River stage responds: 11.0 m rising to about 13.6 m.
        level = 11.0 + 2.6 / (1 + math.exp(-(k - 8) / 1.5)) + rng.uniform(-0.02, 0.02)
        emit("WL01", t, type="hydro.level", level_m=round(level, 3))

    # Chemical-park leak: H2S in mg/m3 at GD01 rises to ~26 then decays; CH4 %LEL stays low at GD02.
    leak_start = t0 + timedelta(minutes=20)
    for k in range(60):
        t = leak_start + timedelta(seconds=30 * k)
        x = k / 6.0
        h2s = 0.4 + 26.0 * (x**2) * math.exp(-(x - 2.0)) / 4.0 + rng.uniform(0, 0.2)
        emit("GD01", t, type="hazmat.gas", gas="H2S", value=round(h2s, 2), unit="mg/m3")
        emit("GD02", t, type="hazmat.gas", gas="CH4", value=round(2 + rng.uniform(0, 1), 1), unit="%LEL")

    # Forest fire NE of tower FC01: smoke sweeps, then flame; FC02 sees it on another bearing.
    fire_start = t0 + timedelta(minutes=30)
    for k in range(8):
        t = fire_start + timedelta(minutes=3 * k)
        kind = "flame" if k >= 5 else "smoke"
        emit(
            "FC01",
            t,
            type="fire.detection",
            kind=kind,
            confidence=round(0.7 + 0.03 * k, 2),
            bearing_deg=round(52.0 + rng.uniform(-0.8, 0.8), 2),
            sweep=k,
        )
        emit(
            "FC02",
            t + timedelta(seconds=40),
            type="fire.detection",
            kind=kind,
            confidence=round(0.66 + 0.03 * k, 2),
            bearing_deg=round(318.0 + rng.uniform(-0.8, 0.8), 2),
            sweep=k,
        )

    # Earthquake: 60 s of 100 Hz velocity packets per station; origin 25 s in, epicentre SW.
    quake_t0 = end - timedelta(minutes=8)
    epi = (CENTRE[0] - 0.15, CENTRE[1] - 0.12)
    df = 100.0
    for dev in sorted(d for d in reg if d.startswith("SS")):
        d = reg[dev]
        dist_km = _distance_km(epi, (d.lat, d.lon))
        hypo = math.hypot(dist_km, 10.0)
        tp, ts_ = hypo / 6.0, hypo / 3.5
        amp = 0.12 * (10.0 / hypo) ** 1.3  # peak S velocity, m/s
        srng = random.Random(f"{seed}:{dev}")
        for p in range(60):
            start = quake_t0 + timedelta(seconds=p)
            samples = []
            for i in range(100):
                since = p + i / df - 25.0  # seconds after origin
                v = srng.gauss(0.0, 2e-5)
                if since >= tp:
                    v += 0.25 * amp * math.exp(-(since - tp) / 2.0) * math.sin(2 * math.pi * 6.0 * (since - tp))
                if since >= ts_:
                    v += amp * math.exp(-(since - ts_) / 4.0) * math.sin(2 * math.pi * 2.5 * (since - ts_))
                samples.append(round(v, 7))
            emit(
                dev,
                start,
                type="seismic.waveform",
                channel="HHZ",
                sample_rate_hz=df,
                unit="m/s",
                samples=samples,
            )

    # Two bad messages: a NaN reading, and a gauge claiming to be another device.
    bad_t = t0 + timedelta(minutes=33)
    out.append(
        Message(
            bad_t,
            topics.mqtt_telemetry(Family.HYDRO, "qingshan", "RG02"),
            b'{"type":"hydro.rain","device_id":"RG02","site":"qingshan","ts":"'
            + _iso(bad_t).encode()
            + b'","rain_mm":NaN,"interval_s":300}',
            "bad: NaN",
        )
    )
    out.append(
        Message(
            bad_t,
            topics.mqtt_telemetry(Family.HYDRO, "qingshan", "RG02"),
            _payload(
                type="hydro.rain",
                device_id="RG01",
                site="qingshan",
                ts=_iso(bad_t),
                rain_mm=1.0,
                interval_s=300,
            ),
            "bad: identity",
        )
    )
    out.sort(key=lambda m: m.t)
    return out


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))
