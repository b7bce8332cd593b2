"""A worker stopped mid-stream resumes from its changelogged tables: no duplicate open, no missed clear.

Real Mosquitto and Kafka: a gateway and a Faust worker run as processes; a gas detector's H2S rises
above the level-1 set-point, the worker is stopped (SIGTERM, then in a second test SIGKILL) while
the readings continue, the leak subsides, and a new worker process with the same id takes over.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from schemas import topics
from schemas.registry import Area, Device, Registry
from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until

pytestmark = pytest.mark.integration


def _detections(bootstrap: str, device: str, kind: str = "gas_h2s") -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        topics.DETECTIONS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1500,
    )
    try:
        return [
            d for d in (json.loads(r.value) for r in consumer) if d.get("device_id") == device and d.get("kind") == kind
        ]
    finally:
        consumer.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restarted_worker_neither_reopens_nor_misses_the_clear(
    services: dict[str, str], tmp_path: Path, stop_signal: int
) -> None:
    run = uuid.uuid4().hex[:8]
    device, site, area = f"GD-{run}", f"park-{run}", "330110"
    registry = Registry(
        devices=[Device(device_id=device, family="hazmat", site=site, lat=30.2, lon=120.2, area=Area(code=area))]
    )
    (tmp_path / "registry.json").write_text(registry.model_dump_json(), encoding="utf-8")
    env = {
        **services,
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_REGISTRY_FILE": str(tmp_path / "registry.json"),
        "TOCSIN_MQTT_CLIENT_ID": f"gw-{run}",
        "TOCSIN_MQTT_SHARE_GROUP": f"g{run}",
        "TOCSIN_WORKER_ID": f"tocsin-restart-{run}",
        "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(free_port()),
    }
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    gateway = Proc(tocsin("gateway"), tmp_path / "gateway.log", env)
    start_group_at_end(services["TOCSIN_KAFKA_BOOTSTRAP"], env["TOCSIN_WORKER_ID"])
    worker = Proc(tocsin("worker"), tmp_path / "worker-1.log", env)
    worker2: Proc | None = None
    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
    try:
        gateway.wait_for(r"gateway connected to MQTT", 60)
        worker.wait_for(r"Worker\]: Ready", 120)
        dev.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
        dev.loop_start()
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        topic = topics.mqtt_telemetry("hazmat", site, device)

        def publish(k: int, value: float) -> None:
            body = {
                "type": "hazmat.gas",
                "device_id": device,
                "site": site,
                "seq": k,
                "ts": (t0 + timedelta(seconds=5 * k)).isoformat(),
                "gas": "H2S",
                "value": value,
                "unit": "mg/m3",
            }
            dev.publish(topic, json.dumps(body).encode(), qos=1).wait_for_publish(10)

        # Leak: 3 readings above 10 mg/m3 (hold-down 2) -> one open (yellow).
        for k, v in enumerate([1.0, 12.0, 13.0, 14.0, 13.5]):
            publish(k, v)
        wait_until(lambda: [d for d in _detections(bootstrap, device) if d["state"] == "open"], 60, "the open")
        # Stop the worker mid-stream; the readings go on (still high, then clearing).
        assert worker.stop(sig=stop_signal) is not None
        for k, v in enumerate([13.0, 12.5, 11.0, 6.0, 2.0, 1.0], start=5):
            publish(k, v)
            time.sleep(0.05)
        worker2 = Proc(tocsin("worker"), tmp_path / "worker-2.log", env)
        worker2.wait_for(r"Worker\]: Ready", 120)
        states = wait_until(
            lambda: (s := [d["state"] for d in _detections(bootstrap, device)]) and "clear" in s and s, 90, "the clear"
        )
        time.sleep(3)  # anything late (a re-opened detection) would show now
        states = [d["state"] for d in _detections(bootstrap, device)]
        detail = [(d["state"], d["revision"], d["ts"][11:19], d["value"]) for d in _detections(bootstrap, device)]
        assert states.count("open") == 1, detail
        assert states.count("clear") == 1, states
        assert states[-1] == "clear"
    finally:
        dev.loop_stop()
        dev.disconnect()
        gateway.stop()
        worker.stop()
        if worker2:
            worker2.stop()
