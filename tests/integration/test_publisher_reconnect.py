"""The scenario/demo publishers go on after a broker restart (own Mosquitto on free ports)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.procs import REPO, free_port
from tocsin.schemas import topics
from tocsin.simulators.demo import Message
from tocsin.simulators.run import publish_paced

SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]


def test_publish_paced_survives_a_broker_restart(tmp_path: Path) -> None:
    reg = tmp_path / "registry.json"
    reg.write_text('{"devices": []}', encoding="utf-8")
    port = free_port()
    env = {
        **os.environ,
        "TOCSIN_STATE": str(tmp_path / "state"),
        "TOCSIN_CACHE": str(tmp_path / "cache"),
        "TOCSIN_MQTT_PORT": str(port),
        "TOCSIN_MQTT_SECURE_PORT": str(free_port()),
        "TOCSIN_MQTT_TLS_PORT": str(free_port()),
        "TOCSIN_MQTT_REGISTRY": str(reg),
    }

    def services(action: str) -> None:
        proc = subprocess.run([*SERVICES, action, "mosquitto"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    services("up")
    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    topic = topics.mqtt_telemetry("hydro", "s1", "RG01")
    messages = [Message(t0 + timedelta(seconds=i), topic, b'{"n": %d}' % i) for i in range(60)]
    offsets = [i * 0.1 for i in range(60)]  # 6 s of publishing
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["acked"] = publish_paced(messages, offsets, "127.0.0.1", port, ack_timeout_s=60)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            result["error"] = exc

    worker = threading.Thread(target=run)
    try:
        worker.start()
        time.sleep(1.0)  # about 10 messages out
        services("down")  # the broker goes away mid-run ...
        assert worker.is_alive(), f"the publisher stopped with the broker: {result}"
        services("up")  # ... and comes back
        worker.join(90)
        assert not worker.is_alive(), "publisher still running 90 s after the restart"
        assert "error" not in result, f"publisher died: {result['error']!r}"
        assert result["acked"] == len(messages)
    finally:
        subprocess.run([*SERVICES, "down", "mosquitto"], env=env, capture_output=True, timeout=60)
        worker.join(5)
        assert not worker.is_alive()
