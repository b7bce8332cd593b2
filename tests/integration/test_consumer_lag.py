"""The worker's consumer lag per topic and partition, on real Kafka.

Records produced while the worker's group is not running are lag (end offset minus the group's
committed offset, measured by the same :class:`ConsumerLag` the worker runs); once the worker
runs and has consumed them, its ``tocsin_worker_consumer_lag`` gauge for that partition is 0.
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until
from tocsin.kafka import ConsumerLag
from tocsin.schemas.telemetry import GasReading
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

TOPIC, PARTITION, N = "telemetry.hazmat", 0, 30


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from a Prometheus text exposition (labels in any order)."""
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if got == labels:
            return float(m.group(2))
    return None


def test_lag_is_positive_while_the_group_is_behind_then_zero(services: dict[str, str], tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    group = f"tocsin-lag-{run_id}"
    start_group_at_end(bootstrap, group)

    # The group is not running: N readings arrive for it.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    for k in range(N):
        reading = GasReading(
            device_id=f"LAG-{run_id}", site="lag", ts=t0 + timedelta(seconds=k), gas="H2S", value=0.5, unit="mg/m3"
        )
        producer.send(TOPIC, key=reading.device_id.encode(), value=encode(reading), partition=PARTITION)
    producer.flush(30)
    producer.close()

    lag = ConsumerLag(bootstrap, group)
    try:
        behind = lag.sample()
        assert behind[(TOPIC, PARTITION)] >= N  # others' tests may add records to the shared topic
        assert set(behind) >= {(TOPIC, 0), (TOPIC, 1), ("detections", 0), ("alerts", 1)}
        assert lag.sample({(TOPIC, PARTITION)}).keys() == {(TOPIC, PARTITION)}  # restricted to an assignment
    finally:
        lag.close()

    env = {
        **services,
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_SMS_URL": "",
        "TOCSIN_REGISTRY_FILE": "",
        "TOCSIN_WORKER_ID": group,
        "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(free_port()),
        "TOCSIN_CONSUMER_LAG_INTERVAL_S": "0.5",
    }
    base = f"http://127.0.0.1:{env['TOCSIN_WORKER_WEB_PORT']}"
    worker = Proc(tocsin("worker"), tmp_path / "worker.log", env)
    try:
        worker.wait_for(r"Worker\]: Ready", 120)

        def metrics() -> str:
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
                return str(resp.read().decode())

        def caught_up() -> str | None:
            text = metrics()
            return text if sample(text, "tocsin_worker_consumer_lag", topic=TOPIC, partition="0") == 0 else None

        text = wait_until(caught_up, 60, f"zero lag on {TOPIC}[{PARTITION}]")
        readings = sample(text, "tocsin_detector_readings_total", family="hazmat")
        assert readings is not None and readings >= N
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as resp:
            assert resp.status == 200
    finally:
        worker.stop()
