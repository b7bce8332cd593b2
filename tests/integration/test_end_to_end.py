"""One alert end to end on the real services.

A rain gauge publishes over MQTT (Mosquitto) a burst that crosses the 1-hour critical rainfall
(35 mm) -> gateway -> Kafka telemetry.hydro -> Faust worker detector -> Kafka alerts -> SMS carrier
emulator (a real HTTP server process) and the operators' retained MQTT alert topic. The raw
readings are read back from InfluxDB with Flux, and an invalid payload published alongside is in
the dead-letter topic with its reason and its exact bytes. The processes are those of
tests/integration/stack.py (SMS emulator, gateway, worker).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient

from tests.integration.procs import wait_until
from tests.integration.stack import (
    check_metrics,
    mqtt_device,
    publish,
    rain_burst,
    rain_gauge,
    running_stack,
    wait_records,
)
from tocsin.schemas import topics

pytestmark = pytest.mark.integration


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def test_rain_burst_alert_travels_end_to_end(services: dict[str, str], tmp_path: Path, promtool: str) -> None:
    run_id, area, device, site, phones, registry = rain_gauge("+86138")
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    with (
        running_stack(services, tmp_path, run_id, registry, roles=("sms", "gateway", "worker")) as stack,
        mqtt_device(services, f"op-{run_id}") as op,
    ):
        # An operator console on the retained alert topic.
        received: list[dict[str, Any]] = []
        got_alert = threading.Event()

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            received.append(json.loads(msg.payload))
            got_alert.set()

        op.on_message = on_message
        op.subscribe(f"{topics.MQTT_ROOT}/alerts/{area}/hydro/+", qos=1)

        # The gauge: 8 reports of 6 mm every 5 minutes (48 mm in the last hour), QoS 1, and a NaN.
        now = datetime.now(UTC)
        topic = topics.mqtt_telemetry("hydro", site, device)
        bad = (
            b'{"type":"hydro.rain","device_id":"'
            + device.encode()
            + b'","site":"'
            + site.encode()
            + b'","ts":"'
            + now.isoformat().encode()
            + b'","rain_mm":NaN,"interval_s":300}'
        )
        with mqtt_device(services, device) as dev:
            for body in rain_burst(device, site, now):
                publish(dev, topic, body)
            publish(dev, topic, bad)

        # 1. The operators' MQTT topic gets the alert.
        assert got_alert.wait(90), f"no MQTT alert; worker log:\n{stack.worker.text()[-3000:]}"
        alert = received[0]
        assert alert["msg_type"] == "Alert"
        assert alert["level"] == "blue" and alert["severity"] == "Minor"
        assert alert["hazard"] == "hydro" and alert["area"]["code"] == area
        assert "暴雨" in alert["headline"]
        assert alert["value"] >= 35.0

        # 2. The SMS carrier emulator received one message per registered recipient.
        sms = wait_until(
            lambda: m if len(m := stack.sms_messages(phones)) >= len(phones) else None, 30, "SMS to both recipients"
        )
        assert sorted(m["to"] for m in sms) == sorted(phones)
        assert all("暴雨蓝色预警" in m["text"] for m in sms)
        assert len({m["idempotency_key"] for m in sms}) == len(phones)

        # 3. The alert is on Kafka `alerts`.
        on_kafka = wait_records(
            bootstrap, topics.ALERTS, lambda r: json.loads(r.value)["identifier"] == alert["identifier"], timeout_s=60
        )
        assert json.loads(on_kafka[0].value)["area"]["code"] == area

        # 3b. The carrier's delivery receipts reached the worker and are in the audit, one per phone. A
        # receipt names the message by its delivery key, <fingerprint>#<revision> (alerts/notify.py).
        recipients: set[str] = set()
        key = f"{alert['fingerprint']}#{alert['revision']}"

        def receipt_of_another_phone(rec: Any) -> bool:
            record = json.loads(rec.value)
            if record["alert_id"] != key or record["outcome"] != "delivered":
                return False
            new = record["recipient"] not in recipients
            recipients.add(record["recipient"])
            return bool(new)

        wait_records(bootstrap, topics.DELIVERIES, receipt_of_another_phone, want=len(phones), timeout_s=30)
        assert len(recipients) == len(phones)

        # 4. The invalid payload is a dead letter with its reason and its exact bytes. (Gateways of other runs
        # on the shared broker dead-letter this run's valid readings as unknown devices: they are not looked
        # at. The NaN is refused before the registry is consulted, so every gateway's letter of it says so.)
        def letter_of_bad(rec: Any) -> bool:
            letter = json.loads(rec.value)
            return bool(letter["mqtt_topic"] == topic and base64.b64decode(letter["raw_b64"]) == bad)

        letters = wait_records(bootstrap, topics.DEADLETTER, letter_of_bad, start=stack.start_offsets, timeout_s=60)
        assert {json.loads(r.value)["reason"] for r in letters} == {"non_finite"}

        # 5. The raw readings are in InfluxDB (Flux over the v2 API).
        with InfluxDBClient(url=services["TOCSIN_INFLUX_URL"], token="", org="-") as client:
            flux = (
                f'from(bucket: "{services["TOCSIN_INFLUX_BUCKET"]}") |> range(start: -2h) '
                f'|> filter(fn: (r) => r._measurement == "hydro" and r.device == "{device}" '
                f'and r._field == "rain_mm")'
            )

            def rows() -> list[Any] | None:
                tables = client.query_api().query(flux)
                values = [rec.get_value() for t in tables for rec in t.records]
                return values if len(values) == 8 else None

            values = wait_until(rows, 30, "8 rain readings in InfluxDB", interval_s=1)
        assert values == [6.0] * 8

        # 6. Both processes expose Prometheus metrics that promtool accepts, with the counts of this run.
        gw_metrics = _get(f"http://127.0.0.1:{stack.gateway_port}/metrics")
        worker_metrics = _get(f"http://127.0.0.1:{stack.worker_port}/metrics")
        for text in (gw_metrics, worker_metrics):
            check_metrics(promtool, text)
        assert b'tocsin_gateway_dead_letters_total{reason="non_finite"} 1.0' in gw_metrics
        alerts_issued = re.search(
            rb'tocsin_alerts_total\{hazard="hydro",level="blue",msg_type="Alert"\} ([0-9.]+)', worker_metrics
        )
        assert alerts_issued is not None and float(alerts_issued.group(1)) >= 1.0
        assert stack.procs["gateway"].stop() == 0, stack.procs["gateway"].text()[-3000:]
