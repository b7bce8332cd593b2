"""The urgent lane on the real services: a gauge's rain escalates blue -> orange -> red; the worker's
detector puts the blue detection on Kafka ``detections`` and the orange and red ones on
``detections.urgent``, and the alert reaches red and the SMS recipients. Then a clear older than the
red detection, produced late on ``detections`` (what a backlog on the routine lane does), is skipped
as superseded instead of ending the alert; the real, later all-clear ends it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.stack import (
    mqtt_device,
    publish,
    rain_burst,
    rain_gauge,
    running_stack,
    wait_records,
)
from tocsin.detectors.engine import detection_key
from tocsin.schemas import topics
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration


def _superseded(metrics: str) -> float:
    m = re.search(r"^tocsin_alert_superseded_total (\S+)$", metrics, re.M)
    return float(m.group(1)) if m else 0.0


def test_orange_and_red_take_the_urgent_lane_and_a_late_older_clear_is_superseded(
    services: dict[str, str], tmp_path: Path
) -> None:
    run_id, _area, device, site, phones, registry = rain_gauge("+86137")
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    with running_stack(services, tmp_path, run_id, registry, roles=("sms", "gateway", "worker")) as stack:
        # 12 reports of 10 mm every 5 minutes: 40 mm in 1 h (blue) with the 4th, 50 mm in 3 h (orange)
        # with the 5th, 100 mm in 3 h (red) with the 10th.
        with mqtt_device(services, device) as dev:
            for body in rain_burst(device, site, datetime.now(UTC), n=12, mm=10.0):
                publish(dev, topics.mqtt_telemetry("hydro", site, device), body)

        def mine(rec: Any) -> bool:
            return bool(json.loads(rec.value).get("device_id") == device)

        # 1. The lanes: the red detection is on the urgent topic, the blue one on the routine topic.
        urgent = wait_records(
            bootstrap,
            topics.DETECTIONS_URGENT,
            lambda r: mine(r) and json.loads(r.value)["level"] == "red",
            start=stack.start_offsets,
            timeout_s=90,
        )
        routine = wait_records(bootstrap, topics.DETECTIONS, mine, start=stack.start_offsets, timeout_s=30)
        assert {json.loads(r.value)["level"] for r in routine} <= {"blue", "yellow", None}
        red = Detection.model_validate_json(urgent[0].value)
        assert red.state is not DetectionState.CLEAR

        # 2. The alert reached red, in order (whichever lane's record the worker read first), and the
        # red message was texted to both recipients.
        alerts = wait_records(
            bootstrap,
            topics.ALERTS,
            lambda r: json.loads(r.value)["devices"] == [device] and json.loads(r.value)["level"] == "red",
            start=stack.start_offsets,
            timeout_s=60,
        )
        fingerprint = json.loads(alerts[0].value)["fingerprint"]

        def messages() -> list[dict[str, Any]]:
            recs = wait_records(
                bootstrap,
                topics.ALERTS,
                lambda r: json.loads(r.value)["fingerprint"] == fingerprint,
                start=stack.start_offsets,
                timeout_s=30,
            )
            return [json.loads(r.value) for r in recs]

        issued = messages()
        assert issued[0]["msg_type"] == "Alert"
        assert all(m["msg_type"] == "Update" for m in issued[1:])
        ranks = [("blue", "yellow", "orange", "red").index(m["level"]) for m in issued]
        assert ranks == sorted(ranks) and issued[-1]["level"] == "red"
        wait_until(
            lambda: len({m["to"] for m in stack.sms_messages(phones) if "红色" in m["text"]}) == 2 or None,
            30,
            "the red SMS to both recipients",
        )

        # 3. A clear older than the red detection, late on the routine lane: superseded, no Cancel.
        def clear(ts: datetime, tag: str) -> Detection:
            return red.model_copy(
                update={
                    "id": f"{device}:{red.kind}:{tag}",
                    "state": DetectionState.CLEAR,
                    "level": None,
                    "ts": ts,
                    "revision": red.revision,
                    "correlation_id": f"{tag}-{run_id}",
                }
            )

        before = _superseded(stack.worker_metrics())
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            stale, fresh = clear(red.ts - timedelta(seconds=1), "stale"), clear(datetime.now(UTC), "fresh")
            for d in (stale, fresh):  # one partition of one topic: read in this order
                producer.send(topics.DETECTIONS, key=detection_key(d), value=encode(d)).get(timeout=30)
        finally:
            producer.close(10)

        # 4. The later all-clear ends the alert: one Cancel, caused by the fresh clear.
        cancels = wait_records(
            bootstrap,
            topics.ALERTS,
            lambda r: json.loads(r.value)["fingerprint"] == fingerprint and json.loads(r.value)["msg_type"] == "Cancel",
            start=stack.start_offsets,
            timeout_s=60,
        )
        assert [json.loads(r.value)["correlation_id"] for r in cancels] == [f"fresh-{run_id}"]
        assert _superseded(stack.worker_metrics()) >= before + 1
