"""One correlation id follows one reading end to end, on the real services.

A rain gauge's burst crosses the 1-hour critical rainfall (35 mm) over Mosquitto -> gateway -> Kafka
-> Faust worker -> SMS carrier emulator. The reading that crossed it has one correlation id (derived
by the gateway from device, device time and sequence number) and that id is on: the gateway's JSON
"reading accepted" line, the worker's detection, alert and SMS delivery lines, the Kafka telemetry
record's header, the Kafka ``alerts`` record, the ``alerts.deliveries`` audit records and the
carrier's ``X-Correlation-ID``. Both processes also answer /healthz and /readyz, and their /metrics
(latency histograms, consumer lag) pass ``promtool check metrics``.
"""

from __future__ import annotations

import json
import random
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from ingest.gateway import CORRELATION_HEADER, correlation_id
from schemas import topics
from schemas.common import Family
from schemas.registry import Area, Device, Registry
from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def sms_emulator(tmp_path: Path) -> Iterator[str]:
    proc = Proc(tocsin("sms-gateway", "--port", "0", "--api-key", "corr-key"), tmp_path / "sms.log")
    m = proc.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30)
    yield m.group(1)
    proc.stop()


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    """The JSON log lines of a process (Faust's banner and other plain lines are skipped)."""
    out = []
    for line in proc.text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def find_line(proc: Proc, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((r for r in json_lines(proc) if pred(r)), None)


def http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def records(
    bootstrap: str,
    topic: str,
    match: Callable[[Any], bool],
    want: int,
    start: dict[TopicPartition, int],
    timeout_s: float = 30,
) -> list[Any]:
    """Records of ``topic`` matching ``match``, read from the offsets in ``start`` (not the history)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, consumer_timeout_ms=1000)
    found: list[Any] = []
    try:
        tps = [tp for tp in start if tp.topic == topic]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])

        def poll() -> list[Any] | None:
            found.extend(rec for rec in consumer if match(rec))
            return found if len(found) >= want else None

        return wait_until(poll, timeout_s, f"{want} matching records on {topic}", interval_s=0)
    finally:
        consumer.close()


def test_one_correlation_id_from_mqtt_to_the_phone(
    services: dict[str, str], tmp_path: Path, sms_emulator: str, promtool: str
) -> None:
    run_id = uuid.uuid4().hex[:8]
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"
    device, site = f"RGC-{run_id}", f"site-{run_id}"
    phones = [f"+86139{random.randint(0, 99999999):08d}" for _ in range(2)]
    registry = Registry(
        devices=[
            Device(
                device_id=device,
                family=Family.HYDRO,
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
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_LOG_FORMAT": "json",
        "TOCSIN_REGISTRY_FILE": str(reg_file),
        "TOCSIN_MQTT_CLIENT_ID": f"gwc-{run_id}",
        "TOCSIN_MQTT_SHARE_GROUP": f"c{run_id}",
        "TOCSIN_WORKER_ID": f"tocsin-corr-{run_id}",
        "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(free_port()),
        "TOCSIN_SMS_URL": sms_emulator,
        "TOCSIN_SMS_API_KEY": "corr-key",
        "TOCSIN_METRICS_PORT": str(free_port()),
        "TOCSIN_CONSUMER_LAG_INTERVAL_S": "1",
    }
    gw_url = f"http://127.0.0.1:{env['TOCSIN_METRICS_PORT']}"
    worker_url = f"http://127.0.0.1:{env['TOCSIN_WORKER_WEB_PORT']}"
    start = start_group_at_end(services["TOCSIN_KAFKA_BOOTSTRAP"], env["TOCSIN_WORKER_ID"])
    start |= start_group_at_end(services["TOCSIN_KAFKA_BOOTSTRAP"], f"corr-audit-{run_id}", (topics.DELIVERIES,))
    gateway = Proc(tocsin("gateway"), tmp_path / "gateway.log", env)
    worker = Proc(tocsin("worker"), tmp_path / "worker.log", env)
    try:
        gateway.wait_for(r"gateway connected to MQTT", 60)
        worker.wait_for(r"Worker\]: Ready", 120)
        # Health and readiness of both processes (readiness may trail "Ready" by a rebalance).
        assert http(f"{gw_url}/healthz")[0] == 200 and http(f"{worker_url}/healthz")[0] == 200
        status, body = wait_until(
            lambda: (lambda r: r if r[0] == 200 else None)(http(f"{gw_url}/readyz")), 30, "gateway ready"
        )
        assert json.loads(body) == {"status": "ok", "mqtt_connected": True, "kafka": True}
        status, body = wait_until(
            lambda: (lambda r: r if r[0] == 200 else None)(http(f"{worker_url}/readyz")), 60, "worker ready"
        )
        assert json.loads(body)["partitions_assigned"] is True

        # The gauge: 8 reports of 6 mm every 5 minutes; the 6th (36 mm in the hour) crosses 35 mm.
        dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
        dev.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
        dev.loop_start()
        now = datetime.now(UTC).replace(microsecond=0)
        topic = topics.mqtt_telemetry("hydro", site, device)
        ids = {}
        for k in range(8):
            ts = now - timedelta(minutes=5 * (7 - k))
            ids[k + 1] = correlation_id(device, ts, k + 1)
            body_ = {"type": "hydro.rain", "device_id": device, "site": site, "ts": ts.isoformat(), "seq": k + 1}
            body_ |= {"rain_mm": 6.0, "interval_s": 300}
            dev.publish(topic, json.dumps(body_).encode(), qos=1).wait_for_publish(10)
        dev.loop_stop()
        dev.disconnect()

        # The worker's detection line names the reading that opened it: the 6th.
        opened = wait_until(
            lambda: find_line(worker, lambda r: r.get("device_id") == device and r.get("state") == "open"),
            90,
            "the worker's detection line",
        )
        cid = opened["correlation_id"]
        assert cid == ids[6], (cid, ids)
        assert opened["role"] == "worker" and opened["level"] == "INFO" and opened["kind"].startswith("rain")
        datetime.fromisoformat(opened["ts"])  # ISO 8601 with its offset

        # gateway: accepted line of that reading
        accepted = find_line(gateway, lambda r: r.get("correlation_id") == cid)
        assert accepted is not None and accepted["message"] == "reading accepted"
        assert accepted["device_id"] == device and accepted["seq"] == 6 and accepted["role"] == "gateway"

        # worker: alert line, then the SMS delivery lines (one per phone, accepted)
        alert_line = wait_until(
            lambda: find_line(worker, lambda r: r.get("correlation_id") == cid and r.get("msg_type") == "Alert"),
            30,
            "the alert line",
        )
        alert_id = alert_line["alert_id"]
        assert alert_line["fingerprint"].startswith(f"hydro:{area}:")
        sms_lines = wait_until(
            lambda: (
                [
                    r
                    for r in json_lines(worker)
                    if r.get("correlation_id") == cid and r.get("channel") == "sms" and r.get("outcome") == "accepted"
                ]
                or None
            ),
            30,
            "SMS delivery lines",
        )
        assert {r["alert_id"] for r in sms_lines} == {alert_id}
        assert not any("corr-key" in line for line in (worker.text(), gateway.text()))  # the API key is never logged

        # Kafka: the telemetry record's header, the alert, the delivery audit records
        bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
        telemetry = records(bootstrap, "telemetry.hydro", lambda rec: rec.key == device.encode(), 8, start)
        assert {dict(rec.headers)[CORRELATION_HEADER].decode() for rec in telemetry} == set(ids.values())
        alerts = records(
            bootstrap, topics.ALERTS, lambda rec: json.loads(rec.value)["identifier"] == alert_id, 1, start
        )
        assert json.loads(alerts[0].value)["correlation_id"] == cid
        audit = records(
            bootstrap,
            topics.DELIVERIES,
            lambda rec: json.loads(rec.value)["alert_id"] == alert_id and json.loads(rec.value)["channel"] == "sms",
            len(phones),
            start,
        )
        assert {json.loads(rec.value)["correlation_id"] for rec in audit} == {cid}

        # The carrier saw the header on every message of this alert.
        def carrier() -> list[dict[str, Any]] | None:
            req = urllib.request.Request(f"{sms_emulator}/v1/sms", headers={"Authorization": "Bearer corr-key"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                mine = [m for m in json.loads(resp.read())["messages"] if m["to"] in phones]
            return mine if len(mine) == len(phones) else None

        assert {m["correlation_id"] for m in wait_until(carrier, 30, "SMS at the carrier")} == {cid}

        # Metrics: promtool accepts both, and the latency histograms and the lag gauge are there.
        gw_metrics = http(f"{gw_url}/metrics")[1]
        worker_metrics = wait_until(
            lambda: (lambda t: t if b"tocsin_worker_consumer_lag{" in t else None)(http(f"{worker_url}/metrics")[1]),
            30,
            "the consumer lag gauge",
        )
        for text in (gw_metrics, worker_metrics):
            proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        assert b'tocsin_gateway_ingest_latency_seconds_count{family="hydro"} 8.0' in gw_metrics
        for name in (
            b'tocsin_worker_detection_latency_seconds_count{family="hydro"}',
            b'tocsin_worker_alert_latency_seconds_count{hazard="hydro"}',
            b'tocsin_worker_delivery_latency_seconds_count{channel="sms"}',
        ):
            assert name in worker_metrics, name
    finally:
        assert gateway.stop() == 0, gateway.text()[-3000:]
        worker.stop()
