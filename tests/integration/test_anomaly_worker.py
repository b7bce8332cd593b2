"""The live worker scores the channels the rules file configures, and routes what it finds.

Real Mosquitto and Kafka: an SMS carrier emulator, a gateway and a Faust worker as processes
(tests/integration/stack.py). Two gas detectors in two areas report a gas without set-points (VOC),
one of them also a second one (TVOC). The rules file (``anomaly.channels``) scores VOC on every gas
detector and promotes it to a yellow public warning on the second detector only; TVOC is not
configured. After the warm-up (lowered to 40 samples) a step far above anything seen opens an
``anomaly_gas_voc`` detection carrying the score and the recent baseline on both detectors:

* the first (not promoted) has no warning level; its alert is blue, ``public`` False, and no SMS
  reaches its area's resident;
* the second (promoted) is a yellow alert for the public: its area's resident gets the SMS;
* the same step on TVOC is not scored at all.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import wait_until
from tests.integration.stack import gas_reading, mqtt_device, publish, read_records, running_stack, wait_records
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry

pytestmark = pytest.mark.integration

PHONE_A, PHONE_B = "+8613700000101", "+8613700000102"


def _anomalies(bootstrap: str, start: dict[Any, int], device: str) -> list[dict[str, Any]]:
    return [
        d
        for d in (json.loads(r.value) for r in read_records(bootstrap, topics.DETECTIONS, start))
        if d.get("device_id") == device and d.get("kind", "").startswith("anomaly")
    ]


def test_worker_scores_configured_channels_and_keeps_unpromoted_ones_from_the_public(
    services: dict[str, str], tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    dev_a, dev_b, site = f"GA-{run}", f"GB-{run}", f"plant-{run}"
    area_a, area_b = Area(code="330110", town="青山镇"), Area(code="330111", town="横溪镇")
    registry = Registry(
        devices=[
            Device(device_id=dev_a, family=Family.HAZMAT, site=site, lat=30.3, lon=120.1, area=area_a),
            Device(device_id=dev_b, family=Family.HAZMAT, site=site, lat=30.3, lon=120.2, area=area_b),
        ],
        sms_recipients={"330110": [PHONE_A], "330111": [PHONE_B]},
    )
    voc = {"type": "hazmat.gas", "field": "value", "gas": "VOC"}
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "anomaly": {
                    "params": {"warmup_n": 40},
                    "open_score": 0.5,
                    "channels": [voc, {**voc, "devices": [dev_b], "promote_to": "yellow"}],
                }
            }
        ),
        encoding="utf-8",
    )
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    n_quiet = 60
    with (
        running_stack(
            services,
            tmp_path,
            run,
            registry,
            {"TOCSIN_INFLUX_URL": "", "TOCSIN_RULES_FILE": str(rules)},
            roles=("sms", "gateway", "worker"),
        ) as stack,
        mqtt_device(services, f"{run}-devs") as dev,
    ):
        t0 = datetime.now(UTC) - timedelta(seconds=n_quiet + 30)
        for k in range(n_quiet + 3):
            ts = t0 + timedelta(seconds=k)
            value = 2.0 + 0.1 * ((k * 7) % 5 - 2) if k < n_quiet else 12.0  # a bounded wobble, then the step
            for device in (dev_a, dev_b):
                topic = topics.mqtt_telemetry("hazmat", site, device)
                publish(dev, topic, gas_reading(device, site, k, ts, value, gas="VOC"))
            tvoc = gas_reading(dev_a, site, 1000 + k, ts + timedelta(milliseconds=500), value, gas="TVOC")
            publish(dev, topics.mqtt_telemetry("hazmat", site, dev_a), tvoc)

        start = stack.start_offsets
        opened_b = wait_until(
            lambda: [d for d in _anomalies(bootstrap, start, dev_b) if d["state"] == "open"] or None,
            60,
            "the promoted anomaly open",
        )
        opened_a = wait_until(
            lambda: [d for d in _anomalies(bootstrap, start, dev_a) if d["state"] == "open"] or None,
            30,
            "the anomaly open",
        )
        for d in (*opened_a, *opened_b):
            assert d["kind"] == "anomaly_gas_voc"  # TVOC is not configured: never scored
            assert d["value"] == 12.0  # the quiet wobble opened nothing
            assert d["evidence"]["score"] >= 0.5
            assert 1.8 <= d["evidence"]["baseline"] <= 2.2  # the recent baseline the step is judged against
            assert d["unit"] == "mg/m3"
        assert opened_a[0]["level"] is None and opened_a[0]["evidence"]["promoted"] is False
        assert opened_b[0]["level"] == "yellow" and opened_b[0]["evidence"]["promoted"] is True

        # Other runs' workers on the shared broker read the same detections and may issue their own
        # (possibly older code's) copy of an alert, which this stack's deliver agent then delivers
        # too: the alert checked is the one this worker issued (its identifier is in this worker's log).
        def alert_of(device: str) -> Any:
            def ours(r: Any) -> bool:
                a = json.loads(r.value)
                return device in a["devices"] and a["identifier"] in stack.worker.text()

            return ours

        alert_a = json.loads(
            wait_records(bootstrap, topics.ALERTS, alert_of(dev_a), start=start, timeout_s=60)[0].value
        )
        alert_b = json.loads(
            wait_records(bootstrap, topics.ALERTS, alert_of(dev_b), start=start, timeout_s=60)[0].value
        )
        assert (alert_a["level"], alert_a["public"], alert_a["msg_type"]) == ("blue", False, "Alert")
        assert (alert_b["level"], alert_b["public"], alert_b["msg_type"]) == ("yellow", True, "Alert")
        assert "监测数据异常（值班提示）" in alert_a["headline"] and "基线" in alert_a["description"]

        # The promoted alert reaches its resident by SMS; once the operators' delivery of the other one
        # is recorded, its resident has none.
        sms_b = wait_until(
            lambda: [m for m in stack.sms_messages([PHONE_B]) if alert_b["headline"] in m["text"]] or None,
            60,
            "the promoted anomaly's SMS",
        )
        assert "监测数据异常" in sms_b[0]["text"] and "预警" in alert_b["headline"]
        wait_records(
            bootstrap,
            topics.DELIVERIES,
            lambda r: json.loads(r.value)["alert_id"] == alert_a["identifier"],
            start=start,
            timeout_s=60,
        )
        assert stack.sms_messages([PHONE_A]) == []
        records = [json.loads(r.value) for r in read_records(bootstrap, topics.DELIVERIES, start)]
        assert {r["channel"] for r in records if r["alert_id"] == alert_a["identifier"]} <= {"mqtt"}
