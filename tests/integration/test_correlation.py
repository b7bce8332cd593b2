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
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import Proc, wait_until
from tests.integration.stack import (
    SMS_KEY,
    check_metrics,
    mqtt_device,
    one_device_registry,
    publish,
    rain_burst,
    running_stack,
    village,
    wait_records,
)
from tocsin.ingest.gateway import CORRELATION_HEADER, correlation_id
from tocsin.schemas import topics
from tocsin.schemas.common import Family

pytestmark = pytest.mark.integration


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


def test_one_correlation_id_from_mqtt_to_the_phone(services: dict[str, str], tmp_path: Path, promtool: str) -> None:
    run_id = uuid.uuid4().hex[:8]
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"
    device, site = f"RGC-{run_id}", f"site-{run_id}"
    phones = [f"+86139{random.randint(0, 99999999):08d}" for _ in range(2)]
    registry = one_device_registry(device, Family.HYDRO, site, village(area), phones, interval_s=300)
    env = {
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_LOG_FORMAT": "json",
        # the gateway's line per accepted reading is at DEBUG (at INFO it cost throughput, issue 15)
        "TOCSIN_LOG_LEVEL": "DEBUG",
        "TOCSIN_CONSUMER_LAG_INTERVAL_S": "1",
    }
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    with running_stack(services, tmp_path, run_id, registry, env, roles=("sms", "gateway", "worker")) as stack:
        gateway, worker = stack.procs["gateway"], stack.worker
        start = stack.start_offsets  # every topic's end before the run: read this run's records only
        gw_url = f"http://127.0.0.1:{stack.gateway_port}"
        worker_url = f"http://127.0.0.1:{stack.worker_port}"
        # Health and readiness of both processes (the stack waited for both /readyz).
        assert http(f"{gw_url}/healthz")[0] == 200 and http(f"{worker_url}/healthz")[0] == 200
        status, body = http(f"{gw_url}/readyz")
        assert status == 200 and json.loads(body) == {"status": "ok", "mqtt_connected": True, "kafka": True}
        status, body = http(f"{worker_url}/readyz")
        assert status == 200 and json.loads(body)["partitions_assigned"] is True

        # The gauge: 8 reports of 6 mm every 5 minutes; the 6th (36 mm in the hour) crosses 35 mm.
        topic = topics.mqtt_telemetry("hydro", site, device)
        burst = rain_burst(device, site, datetime.now(UTC).replace(microsecond=0))
        ids = {b["seq"]: correlation_id(device, datetime.fromisoformat(b["ts"]), b["seq"]) for b in burst}
        with mqtt_device(services, device) as dev:
            for b in burst:
                publish(dev, topic, b)

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
        assert not any(SMS_KEY in line for line in (worker.text(), gateway.text()))  # the API key is never logged

        # Kafka: the telemetry record's header, the alert, the delivery audit records
        telemetry = wait_records(bootstrap, "telemetry.hydro", lambda rec: rec.key == device.encode(), 8, start)
        assert {dict(rec.headers)[CORRELATION_HEADER].decode() for rec in telemetry} == set(ids.values())
        alerts = wait_records(
            bootstrap, topics.ALERTS, lambda rec: json.loads(rec.value)["identifier"] == alert_id, 1, start
        )
        assert json.loads(alerts[0].value)["correlation_id"] == cid
        # dispatch records name the message's identifier, carrier receipts its delivery key
        sent = json.loads(alerts[0].value)
        names = {alert_id, f"{sent['fingerprint']}#{sent['revision']}"}
        audit = wait_records(
            bootstrap,
            topics.DELIVERIES,
            lambda rec: json.loads(rec.value)["alert_id"] in names and json.loads(rec.value)["channel"] == "sms",
            2 * len(phones),  # accepted by the carrier, then its delivery receipt, per phone
            start,
        )
        assert sorted(json.loads(rec.value)["outcome"] for rec in audit) == ["accepted"] * 2 + ["delivered"] * 2
        assert {json.loads(rec.value)["correlation_id"] for rec in audit} == {cid}

        # The carrier saw the header on every message of this alert.
        carrier = wait_until(
            lambda: m if len(m := stack.sms_messages(phones)) == len(phones) else None, 30, "SMS at the carrier"
        )
        assert {m["correlation_id"] for m in carrier} == {cid}

        # Metrics: promtool accepts both, and the latency histograms and the lag gauge are there.
        gw_metrics = http(f"{gw_url}/metrics")[1]
        worker_metrics = wait_until(
            lambda: (lambda t: t if b"tocsin_worker_consumer_lag{" in t else None)(http(f"{worker_url}/metrics")[1]),
            30,
            "the consumer lag gauge",
        )
        for text in (gw_metrics, worker_metrics):
            check_metrics(promtool, text)
        assert b'tocsin_gateway_ingest_latency_seconds_count{family="hydro"} 8.0' in gw_metrics
        for name in (
            b'tocsin_worker_detection_latency_seconds_count{family="hydro"}',
            b'tocsin_worker_alert_latency_seconds_count{hazard="hydro"}',
            b'tocsin_worker_delivery_latency_seconds_count{channel="sms"}',
        ):
            assert name in worker_metrics, name
        assert gateway.stop() == 0, gateway.text()[-3000:]
