"""A worker stopped mid-stream resumes from its changelogged tables: no duplicate open, no missed clear.

Real Mosquitto and Kafka: a gateway and a Faust worker run as processes (tests/integration/stack.py);
a gas detector's H2S rises above the level-1 set-point, the worker is stopped (SIGTERM, then in a
second test SIGKILL) while the readings continue, the leak subsides, and a new worker process with
the same id takes over.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import wait_until
from tests.integration.stack import gas_reading, mqtt_device, one_device_registry, publish, read_records, running_stack
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area

pytestmark = pytest.mark.integration


def _detections(bootstrap: str, device: str, kind: str = "gas_h2s") -> list[dict[str, Any]]:
    return [
        d
        for d in (json.loads(r.value) for r in read_records(bootstrap, topics.DETECTIONS))
        if d.get("device_id") == device and d.get("kind") == kind
    ]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restarted_worker_neither_reopens_nor_misses_the_clear(
    services: dict[str, str], tmp_path: Path, stop_signal: int
) -> None:
    run = uuid.uuid4().hex[:8]
    device, site = f"GD-{run}", f"park-{run}"
    registry = one_device_registry(device, Family.HAZMAT, site, Area(code="330110"))
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    with (
        running_stack(
            services, tmp_path, run, registry, {"TOCSIN_INFLUX_URL": ""}, roles=("gateway", "worker")
        ) as stack,
        mqtt_device(services, device) as dev,
    ):
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        topic = topics.mqtt_telemetry("hazmat", site, device)

        def send(k: int, value: float) -> None:
            publish(dev, topic, gas_reading(device, site, k, t0 + timedelta(seconds=5 * k), value))

        # Leak: 3 readings above 10 mg/m3 (hold-down 2) -> one open (yellow).
        for k, v in enumerate([1.0, 12.0, 13.0, 14.0, 13.5]):
            send(k, v)
        wait_until(lambda: [d for d in _detections(bootstrap, device) if d["state"] == "open"], 60, "the open")
        # Stop the worker mid-stream; the readings go on (still high, then clearing).
        t_stop = time.monotonic()
        assert stack.stop_worker(stop_signal) is not None
        for k, v in enumerate([13.0, 12.5, 11.0, 6.0, 2.0, 1.0], start=5):
            send(k, v)
            time.sleep(0.05)
        stack.start_worker()
        t_ready = time.monotonic()
        states = wait_until(
            lambda: (s := [d["state"] for d in _detections(bootstrap, device)]) and "clear" in s and s, 90, "the clear"
        )
        t_clear = time.monotonic()
        print(
            f"\nworker restart ({signal.Signals(stop_signal).name}): new worker ready {t_ready - t_stop:.1f} s"
            f" after the stop, the clear {t_clear - t_stop:.1f} s after it"
        )
        time.sleep(3)  # anything late (a re-opened detection) would show now
        states = [d["state"] for d in _detections(bootstrap, device)]
        detail = [(d["state"], d["revision"], d["ts"][11:19], d["value"]) for d in _detections(bootstrap, device)]
        assert states.count("open") == 1, detail
        assert states.count("clear") == 1, states
        assert states[-1] == "clear"
