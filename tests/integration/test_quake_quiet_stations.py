"""The earthquake location from not-yet-arrived data on the real services: a worker reads the
station-health of two areas from Kafka ``detections`` and the P triggers from ``detections.urgent``,
keeps the offline stations in its changelogged table beside the incidents, and locates each area's
earthquake with that area's live, untriggered stations.

Both areas have the network and event of tests/alerts/test_quake_quiet_engine.py: nine stations on a
40 km grid, an event 10 km south of the southern row, whose three stations trigger first (their picks
fit the event and its reflection 20 km north equally well), and a dead station, GX, 10 km south of the
event. In area A the deadman has reported GX offline: the quiet centre station rules the reflection
out and the first alert's circle is on the event. In area B nothing said GX is offline: counted as
quiet, it rules the event out, and the alert is on the reflection. Tolerance 1 s (rules file), so the
first message (at the third pick) already shows the difference."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.stack import running_stack, wait_records
from tocsin.alerts.kernels.quake import haversine_km, xy_to_latlon
from tocsin.detectors.engine import detection_key
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

CENTRES = {"A": (30.60, 104.05), "B": (31.60, 105.05)}
GRID = {f"G{i + 1}{j + 1}": (40.0 * i, 40.0 * j) for i in (-1, 0, 1) for j in (-1, 0, 1)} | {"GX": (0.0, -60.0)}
SOUTH_ROW = ("G00", "G10", "G20")
EVENT_XY, REFLECTION_XY = (0.0, -50.0), (0.0, -30.0)
DEPTH_KM, VP = 10.0, 6.0


def _ll(centre: tuple[float, float], xy: tuple[float, float]) -> tuple[float, float]:
    lat, lon = xy_to_latlon(xy[0], xy[1], *centre)
    return round(float(lat), 6), round(float(lon), 6)


def test_offline_stations_read_from_kafka_keep_the_location_on_the_event(
    services: dict[str, str], tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex[:8]
    codes = {k: f"{random.randint(1, 9)}{random.randint(0, 99999):05d}" for k in CENTRES}
    devices = [
        Device(
            device_id=f"{k}{sid}-{run_id}",
            family=Family.SEISMIC,
            site=f"seis-{k}-{run_id}",
            lat=_ll(CENTRES[k], xy)[0],
            lon=_ll(CENTRES[k], xy)[1],
            area=Area(code=codes[k], district="测试区"),
            interval_s=3600.0,
        )
        for k in CENTRES
        for sid, xy in GRID.items()
    ]
    registry = Registry(devices=devices)
    by_id = {d.device_id: d for d in devices}
    rules = tmp_path / "rules.yaml"
    rules.write_text("confirm:\n  seismic:\n    quiet_tolerance_s: 1.0\n", encoding="utf-8")
    origin = datetime.now(UTC).replace(microsecond=0)

    def trigger(k: str, sid: str) -> Detection:
        dev = by_id[f"{k}{sid}-{run_id}"]
        epi = _ll(CENTRES[k], EVENT_XY)
        onset = origin + timedelta(seconds=math.hypot(haversine_km(*epi, dev.lat, dev.lon), DEPTH_KM) / VP)
        return Detection(
            id=f"{dev.device_id}:p_trigger:{int(onset.timestamp() * 1000)}:0",
            device_id=dev.device_id,
            site=dev.site,
            family=Family.SEISMIC,
            kind="p_trigger",
            state=DetectionState.OPEN,
            value=5.0,
            onset=onset,
            ts=onset,
            area_code=codes[k],
            lat=dev.lat,
            lon=dev.lon,
            evidence={"intensity": 3.0},
            correlation_id=f"quiet-{k}-{run_id}",
        )

    dead = by_id[f"AGX-{run_id}"]
    offline = Detection(
        id=f"{dead.device_id}:offline:{int(origin.timestamp() * 1000)}:0",
        device_id=dead.device_id,
        site=dead.site,
        family=Family.SEISMIC,
        kind="offline",
        state=DetectionState.OPEN,
        value=30.0,
        unit="s",
        onset=origin - timedelta(seconds=30),
        ts=origin - timedelta(seconds=30),
        area_code=codes["A"],
    )
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    with running_stack(
        services, tmp_path, run_id, registry, {"TOCSIN_RULES_FILE": str(rules)}, roles=("worker",)
    ) as stack:
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            producer.send(topics.DETECTIONS, key=detection_key(offline), value=encode(offline)).get(timeout=30)
            # the operators' equipment alert says the worker has taken the offline report in
            wait_records(
                bootstrap,
                topics.ALERTS,
                lambda r: dead.device_id in json.loads(r.value)["devices"],
                start=stack.start_offsets,
                timeout_s=90,
            )
            for k in CENTRES:
                for sid in SOUTH_ROW:
                    d = trigger(k, sid)
                    producer.send(topics.DETECTIONS_URGENT, key=detection_key(d), value=encode(d)).get(timeout=30)
        finally:
            producer.close(10)

        def first_alert(k: str) -> dict[str, Any]:
            recs = wait_records(
                bootstrap,
                topics.ALERTS,
                lambda r: json.loads(r.value)["correlation_id"] == f"quiet-{k}-{run_id}",
                start=stack.start_offsets,
                timeout_s=60,
            )
            return json.loads(recs[0].value)

        a, b = first_alert("A"), first_alert("B")
        assert a["msg_type"] == b["msg_type"] == "Alert"
        lat_a, lon_a = a["area"]["circle"][:2]
        lat_b, lon_b = b["area"]["circle"][:2]
        assert haversine_km(lat_a, lon_a, *_ll(CENTRES["A"], EVENT_XY)) < 0.5
        assert haversine_km(lat_b, lon_b, *_ll(CENTRES["B"], REFLECTION_XY)) < 1.0
