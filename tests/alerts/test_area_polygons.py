"""Alert areas from registry boundaries (alerts/engine.py ``_area_polygons``): the polygons an
incident's messages carry, the device circle they replace, the bounds, and old alert records that
have none (schemas/records.py)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tocsin.alerts.engine import AlertEngine
from tocsin.schemas.alert import MAX_AREA_POLYGONS, Alert, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.geo import check_ring
from tocsin.schemas.records import decode_alert
from tocsin.schemas.registry import Area, Boundary, Device, Registry

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
CODE = "330110"


def _square(lat: float, lon: float, half: float = 0.02) -> list[tuple[float, float]]:
    return [(lat - half, lon - half), (lat - half, lon + half), (lat + half, lon + half), (lat + half, lon - half)]


def _gauge(device_id: str, lat: float, lon: float, town: str, village: str = "") -> Device:
    return Device(
        device_id=device_id,
        family=Family.HYDRO,
        site="qingshan",
        lat=lat,
        lon=lon,
        area=Area(code=CODE, district="临江区", town=town, village=village),
    )


QINGSHAN = Boundary(code=CODE, town="青山镇", polygon=_square(30.30, 120.00))
SHIMEN = Boundary(code=CODE, town="石门镇", polygon=_square(30.40, 120.10))
HENGXI = Boundary(code=CODE, town="青山镇", village="横溪村", polygon=_square(30.31, 120.01, 0.005))
REGISTRY = Registry(
    devices=[
        _gauge("WL01", 30.30, 120.00, "青山镇", "石桥村"),  # the town's boundary
        _gauge("WL02", 30.31, 120.01, "青山镇", "横溪村"),  # its village's own, more specific
        _gauge("WL03", 30.40, 120.10, "石门镇"),
        _gauge("WL04", 30.50, 120.30, "白沙镇"),  # no boundary
        _gauge("WL05", 30.36, 120.00, "青山镇"),  # outside its town's boundary (a registry mistake)
    ],
    boundaries=[QINGSHAN, SHIMEN, HENGXI],
)


def _det(
    device: str, level: WarningLevel | None, minute: int, state: DetectionState = DetectionState.OPEN
) -> Detection:
    dev = REGISTRY.get(device)
    assert dev is not None
    return Detection(
        id=f"{device}:water_level:{minute}",
        device_id=device,
        site=dev.site,
        family=Family.HYDRO,
        kind="water_level",
        state=state,
        level=level,
        value=13.0,
        unit="m",
        onset=T0,
        ts=T0 + timedelta(minutes=minute),
        area_code=dev.area.code,
        town=dev.area.town,
        village=dev.area.village,
        lat=dev.lat,
        lon=dev.lon,
    )


def _run(dets: list[Detection], registry: Registry | None = REGISTRY) -> tuple[AlertEngine, list[Alert]]:
    engine = AlertEngine(registry=registry, clock=lambda: T0 + timedelta(hours=1))
    state: dict[str, Any] | None = None
    out: list[Alert] = []
    for d in dets:
        state, alerts = engine.process(d, state)
        out += alerts
    return engine, out


def test_a_flood_alert_carries_its_town_boundary_instead_of_a_circle() -> None:
    _, [alert] = _run([_det("WL01", WarningLevel.YELLOW, 0)])
    assert alert.area.polygons == [QINGSHAN.polygon]
    assert alert.area.circle is None  # the gauge lies inside: the boundary is the area


def test_a_village_boundary_is_more_specific_than_its_town() -> None:
    _, [alert] = _run([_det("WL02", WarningLevel.YELLOW, 0)])
    assert alert.area.polygons == [HENGXI.polygon]


def test_an_incident_accumulates_the_areas_it_warned_until_the_all_clear() -> None:
    _, out = _run(
        [
            _det("WL01", WarningLevel.YELLOW, 0),
            _det("WL03", WarningLevel.ORANGE, 1),  # the flood reaches 石门镇: Update
            _det("WL03", None, 2, DetectionState.CLEAR),  # 石门镇 clears first: Update back to yellow
            _det("WL01", None, 3, DetectionState.CLEAR),  # all clear: Cancel
        ]
    )
    assert [a.msg_type for a in out] == [MsgType.ALERT, MsgType.UPDATE, MsgType.UPDATE, MsgType.CANCEL]
    assert out[0].area.polygons == [QINGSHAN.polygon]
    # every later message covers every area warned in the incident, the all-clear too
    for a in out[1:]:
        assert a.area.polygons == [QINGSHAN.polygon, SHIMEN.polygon], a.msg_type
    # a new incident starts from its own areas
    _, again = _run(
        [
            _det("WL03", WarningLevel.YELLOW, 0),
            _det("WL03", None, 1, DetectionState.CLEAR),
            _det("WL01", WarningLevel.YELLOW, 2),
        ]
    )
    assert again[-1].msg_type is MsgType.ALERT and again[-1].area.polygons == [QINGSHAN.polygon]


def test_without_a_boundary_the_area_is_the_device_circle_as_before() -> None:
    _, [alert] = _run([_det("WL04", WarningLevel.YELLOW, 0)])
    assert alert.area.polygons == [] and alert.area.circle == (30.50, 120.30, 5.0)
    _, [bare] = _run([_det("WL01", WarningLevel.YELLOW, 0)], registry=None)
    assert bare.area.polygons == [] and bare.area.circle == (30.30, 120.00, 5.0)
    _, [old] = _run([_det("WL01", WarningLevel.YELLOW, 0)], registry=Registry(devices=REGISTRY.devices))
    assert old.area.polygons == [] and old.area.circle == (30.30, 120.00, 5.0)


def test_a_device_outside_its_boundary_keeps_the_circle_too() -> None:
    # the area must still cover the gauge: the boundary and the 5 km circle round the gauge
    _, [alert] = _run([_det("WL05", WarningLevel.YELLOW, 0)])
    assert alert.area.polygons == [QINGSHAN.polygon] and alert.area.circle == (30.36, 120.00, 5.0)


def _fine(lat: float, lon: float, n: int) -> list[tuple[float, float]]:
    """A detailed boundary: ``n`` vertices round (lat, lon)."""
    return [(lat + 0.02 * math.sin(2 * math.pi * k / n), lon + 0.02 * math.cos(2 * math.pi * k / n)) for k in range(n)]


def _many_towns(n: int, vertices: int = 4) -> tuple[Registry, list[Detection]]:
    devices, boundaries, dets = [], [], []
    for i in range(n):
        lat, lon = 30.0 + 0.05 * (i // 10), 120.0 + 0.05 * (i % 10)
        town = f"镇{i:02d}"
        devices.append(_gauge(f"WL{i:02d}", lat, lon, town))
        ring = _square(lat, lon) if vertices == 4 else _fine(lat, lon, vertices)
        boundaries.append(Boundary(code=CODE, town=town, polygon=ring))
    registry = Registry(devices=devices, boundaries=boundaries)
    for i, d in enumerate(devices):
        dets.append(
            Detection(
                id=f"{d.device_id}:water_level:0",
                device_id=d.device_id,
                site=d.site,
                family=Family.HYDRO,
                kind="water_level",
                state=DetectionState.OPEN,
                level=WarningLevel.YELLOW if i == 0 else WarningLevel.ORANGE if i == n - 1 else WarningLevel.YELLOW,
                value=13.0,
                onset=T0,
                ts=T0 + timedelta(seconds=i),
                area_code=CODE,
                town=d.area.town,
                lat=d.lat,
                lon=d.lon,
            )
        )
    return registry, dets


def test_more_areas_than_an_alert_carries_fall_back_to_the_circle_and_are_counted() -> None:
    registry, dets = _many_towns(MAX_AREA_POLYGONS)
    _, out = _run(dets, registry)
    assert len(out[-1].area.polygons) == MAX_AREA_POLYGONS and out[-1].area.circle is None
    registry, dets = _many_towns(MAX_AREA_POLYGONS + 1)
    engine, out = _run(dets, registry)
    last = out[-1]  # the Update the last town's orange level caused
    assert last.msg_type is MsgType.UPDATE and last.area.polygons == []
    assert last.area.circle == (dets[-1].lat, dets[-1].lon, 5.0)
    assert engine.capped == {"alert_area_polygons_capped": 1}
    # detailed towns of 1,000 points a ring (999 vertices, closed): four fit in 4,000, a fifth does not
    registry, dets = _many_towns(4, vertices=999)
    _, out = _run(dets, registry)
    assert len(out[-1].area.polygons) == 4 and sum(len(r) for r in out[-1].area.polygons) == 4000
    registry, dets = _many_towns(5, vertices=999)
    engine, out = _run(dets, registry)
    assert out[-1].msg_type is MsgType.UPDATE and out[-1].area.polygons == [] and out[-1].area.circle is not None
    assert engine.capped == {"alert_area_polygons_capped": 1}


def test_old_alert_records_without_polygons_still_decode() -> None:
    _, [alert] = _run([_det("WL01", WarningLevel.YELLOW, 0)])
    record = json.loads(alert.model_dump_json())
    assert record["area"]["polygons"] == [[list(v) for v in QINGSHAN.polygon]]
    assert decode_alert(json.dumps(record).encode()) == alert
    del record["area"]["polygons"]  # a record written before alert areas had polygons
    old = decode_alert(json.dumps(record).encode())
    assert old.area.polygons == [] and old.area.circle == alert.area.circle


def test_records_with_bad_polygons_are_poison() -> None:
    _, [alert] = _run([_det("WL01", WarningLevel.YELLOW, 0)])
    record = json.loads(alert.model_dump_json())
    record["area"]["polygons"] = [[[30.0, 120.0], [30.0, 120.1]]]
    with pytest.raises(ValueError, match="area.polygons.0"):
        decode_alert(json.dumps(record).encode())
    record["area"]["polygons"] = [[[30.0, 120.0], [30.0, math.inf], [30.1, 120.1]]]
    with pytest.raises(ValueError, match="area.polygons.0"):
        decode_alert(json.dumps(record).encode().replace(b"Infinity", b"1e999"))
    assert check_ring(QINGSHAN.polygon) == QINGSHAN.polygon


def test_a_detection_from_an_unregistered_device_is_placed_by_its_own_point() -> None:
    def stray(lat: float, lon: float) -> Detection:
        return _det("WL01", WarningLevel.YELLOW, 0).model_copy(
            update={"device_id": "WL99", "id": "WL99:water_level:0", "lat": lat, "lon": lon}
        )

    _, [inside] = _run([stray(30.301, 120.001)])
    assert inside.area.polygons == [QINGSHAN.polygon] and inside.area.circle is None
    _, [outside] = _run([stray(30.36, 120.0)])
    assert outside.area.polygons == [QINGSHAN.polygon] and outside.area.circle == (30.36, 120.0, 5.0)
