"""One alert end to end on the real services.

A rain gauge publishes over MQTT (Mosquitto) a burst that crosses the 1-hour critical rainfall
(35 mm) -> gateway -> Kafka telemetry.hydro -> Faust worker detector -> Kafka alerts -> SMS carrier
emulator (a real HTTP server process) and the operators' retained MQTT alert topic. The raw
readings are read back from InfluxDB with Flux, and an invalid payload published alongside is in
the dead-letter topic with its reason and its exact bytes.
"""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from kafka import KafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from schemas import topics
from schemas.registry import Area, Device, Registry
from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def sms_emulator(tmp_path: Path) -> Iterator[str]:
    proc = Proc(tocsin("sms-gateway", "--port", "0", "--api-key", "e2e-key"), tmp_path / "sms.log")
    m = proc.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30)
    yield m.group(1)
    proc.stop()


def _consume(bootstrap: str, topic: str, match: Any, timeout_s: float = 60) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    found: list[bytes] = []
    try:

        def poll() -> list[bytes] | None:
            for rec in consumer:
                if match(rec.value):
                    found.append(rec.value)
            return found or None

        wait_until(poll, timeout_s, f"a matching record on {topic}", interval_s=0)
    finally:
        consumer.close()
    return found


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def test_rain_burst_alert_travels_end_to_end(
    services: dict[str, str], tmp_path: Path, run_id: str, sms_emulator: str, promtool: str
) -> None:
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"
    device, site = f"RG-{run_id}", f"site-{run_id}"
    phones = [f"+86138{random.randint(0, 99999999):08d}" for _ in range(2)]
    registry = Registry(
        devices=[
            Device(
                device_id=device,
                family="hydro",
                site=site,
                lat=30.3,
                lon=120.1,
                interval_s=300,
                area=Area(code=area, district="测试区", town="青山镇", village="横溪村"),
            )
        ],
        sms_recipients={area: phones},
    )
    reg_file = tmp_path / "registry.json"
    reg_file.write_text(registry.model_dump_json(), encoding="utf-8")
    env = {
        **services,
        "TOCSIN_REGISTRY_FILE": str(reg_file),
        "TOCSIN_MQTT_CLIENT_ID": f"gw-{run_id}",
        "TOCSIN_MQTT_SHARE_GROUP": f"g{run_id}",
        "TOCSIN_WORKER_ID": f"tocsin-e2e-{run_id}",
        "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(free_port()),
        "TOCSIN_SMS_URL": sms_emulator,
        "TOCSIN_SMS_API_KEY": "e2e-key",
        "TOCSIN_METRICS_PORT": str(free_port()),
    }
    env["TOCSIN_SMS_CALLBACK_URL"] = f"http://127.0.0.1:{env['TOCSIN_WORKER_WEB_PORT']}/callbacks/sms"
    gateway = Proc(tocsin("gateway"), tmp_path / "gateway.log", env)
    start_group_at_end(services["TOCSIN_KAFKA_BOOTSTRAP"], env["TOCSIN_WORKER_ID"])
    worker = Proc(tocsin("worker"), tmp_path / "worker.log", env)
    try:
        gateway.wait_for(r"gateway connected to MQTT", 60)
        worker.wait_for(r"Worker\]: Ready", 120)

        # An operator console on the retained alert topic.
        received: list[dict[str, Any]] = []
        got_alert = threading.Event()
        op = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"op-{run_id}")

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            received.append(json.loads(msg.payload))
            got_alert.set()

        op.on_message = on_message
        op.on_connect = lambda c, *_a: c.subscribe(topics.mqtt_alert(area, "hydro"), qos=1)
        op.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
        op.loop_start()

        # The gauge: 8 reports of 6 mm every 5 minutes (48 mm in the last hour), QoS 1.
        dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
        dev.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
        dev.loop_start()
        now = datetime.now(UTC)
        topic = topics.mqtt_telemetry("hydro", site, device)
        for k in range(8):
            ts = now - timedelta(minutes=5 * (7 - k))
            body = {
                "type": "hydro.rain",
                "device_id": device,
                "site": site,
                "ts": ts.isoformat(),
                "seq": k + 1,
                "rain_mm": 6.0,
                "interval_s": 300,
            }
            dev.publish(topic, json.dumps(body).encode(), qos=1).wait_for_publish(10)
        bad = (
            b'{"type":"hydro.rain","device_id":"'
            + device.encode()
            + b'","site":"'
            + site.encode()
            + b'","ts":"'
            + now.isoformat().encode()
            + b'","rain_mm":NaN,"interval_s":300}'
        )
        dev.publish(topic, bad, qos=1).wait_for_publish(10)
        dev.loop_stop()
        dev.disconnect()

        # 1. The operators' MQTT topic gets the alert.
        assert got_alert.wait(90), f"no MQTT alert; worker log:\n{worker.text()[-3000:]}"
        alert = received[0]
        assert alert["msg_type"] == "Alert"
        assert alert["level"] == "blue" and alert["severity"] == "Minor"
        assert alert["hazard"] == "hydro" and alert["area"]["code"] == area
        assert "暴雨" in alert["headline"]
        assert alert["value"] >= 35.0

        # 2. The SMS carrier emulator received one message per registered recipient.
        def sms_for_area() -> list[dict[str, Any]] | None:
            req = urllib.request.Request(f"{sms_emulator}/v1/sms", headers={"Authorization": "Bearer e2e-key"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                msgs = json.loads(resp.read())["messages"]
            mine = [m for m in msgs if m["to"] in phones]
            return mine if len(mine) >= len(phones) else None

        sms = wait_until(sms_for_area, 30, "SMS to both recipients")
        assert sorted(m["to"] for m in sms) == sorted(phones)
        assert all("暴雨蓝色预警" in m["text"] for m in sms)
        assert len({m["idempotency_key"] for m in sms}) == len(phones)

        # 3. The alert is on Kafka `alerts`.
        bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
        on_kafka = _consume(bootstrap, topics.ALERTS, lambda v: json.loads(v)["identifier"] == alert["identifier"])
        assert json.loads(on_kafka[0])["area"]["code"] == area

        # 3b. The carrier's delivery receipts reached the worker and are in the audit, one per phone.
        def delivered(v: bytes) -> bool:
            record = json.loads(v)
            return bool(record["alert_id"] == alert["identifier"] and record["outcome"] == "delivered")

        wait_until(
            lambda: (
                len({json.loads(r)["recipient"] for r in _consume(bootstrap, topics.DELIVERIES, delivered)})
                == len(phones)
                or None
            ),
            30,
            "a delivery receipt per recipient",
        )

        # 4. The invalid payload is a dead letter with its reason and its exact bytes.
        letters = _consume(bootstrap, topics.DEADLETTER, lambda v: json.loads(v)["mqtt_topic"] == topic)
        letter = json.loads(letters[0])
        assert letter["reason"] == "non_finite"
        assert base64.b64decode(letter["raw_b64"]) == bad

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
        op.loop_stop()
        op.disconnect()

        # 6. Both processes expose Prometheus metrics that promtool accepts, with the counts of this run.
        gw_metrics = _get(f"http://127.0.0.1:{env['TOCSIN_METRICS_PORT']}/metrics")
        worker_metrics = _get(f"http://127.0.0.1:{env['TOCSIN_WORKER_WEB_PORT']}/metrics")
        for text in (gw_metrics, worker_metrics):
            proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        assert b'tocsin_gateway_dead_letters_total{reason="non_finite"} 1.0' in gw_metrics
        alerts_issued = re.search(
            rb'tocsin_alerts_total\{hazard="hydro",level="blue",msg_type="Alert"\} ([0-9.]+)', worker_metrics
        )
        assert alerts_issued is not None and float(alerts_issued.group(1)) >= 1.0
    finally:
        assert gateway.stop() == 0, gateway.text()[-3000:]
        worker.stop()
