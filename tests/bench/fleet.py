"""Fleet publisher throughput (``make bench``, entry ``fleet``): the maximum QoS 1 messages/s that
``tocsin.simulators.fleet`` gets acknowledged by the real Mosquitto from one process, beside a reference
in the same run: a bare paho loop publishing the same kind of payloads (pre-built, so it pays for
no payload building) QoS 1 on one connection. Ratio = fleet / paho.

Needs Mosquitto on TOCSIN_MQTT_HOST:PORT; if it is not running the bench starts it with
``deploy/local/services.sh up mosquitto`` and stops it afterwards (leaving it as it found it).
Messages go to a private topic root, so gateways subscribed to ``tocsin/v1`` never see them.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]


def _mosquitto_running() -> bool:
    return subprocess.run([*SERVICES, "status", "mosquitto"], capture_output=True, timeout=60).returncode == 0


def _paho_reference(host: str, port: int, topics: list[str], payloads: list[bytes], seconds: float) -> float:
    """Messages/s of a bare paho client: one connection, QoS 1, up to 100 in flight, all acked."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(100)  # paho scans its in-flight list per ack: larger windows are slower
    window = threading.Semaphore(100)
    acked = [0]
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()

    def on_publish(*_a: object) -> None:
        acked[0] += 1
        window.release()

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise ConnectionError("paho reference could not connect")
        n = 0
        t0 = time.perf_counter()
        stop = t0 + seconds
        while time.perf_counter() < stop:
            for topic, payload in zip(topics, payloads, strict=True):
                window.acquire()
                client.publish(topic, payload, qos=1)
                n += 1
        while acked[0] < n and time.perf_counter() < stop + 30:
            time.sleep(0.001)
        return acked[0] / (time.perf_counter() - t0)
    finally:
        client.disconnect()
        client.loop_stop()


def bench_fleet() -> dict[str, float]:
    from tocsin.simulators.fleet import FleetConfig, PayloadFactory, plan_devices, run_fleet

    host = os.environ.get("TOCSIN_MQTT_HOST", "127.0.0.1")
    port = int(os.environ.get("TOCSIN_MQTT_PORT", "1883"))
    started = False
    if not _mosquitto_running():
        subprocess.run([*SERVICES, "up", "mosquitto"], check=True, capture_output=True, timeout=600)
        started = True
    try:
        root = f"tocsin-bench-{uuid.uuid4().hex[:6]}/v1"
        seconds = 5.0
        devices = plan_devices(1000, prefix="BREF")
        factory = PayloadFactory(seed=1)
        now = datetime.now(UTC)
        topics = [d.topic(root) for d in devices]
        payloads = [factory.telemetry(d, 0, now) for d in devices]
        reference = _paho_reference(host, port, topics, payloads, seconds)

        def fleet(n: int, connections: int) -> float:
            cfg = FleetConfig(
                devices=n,
                duration_s=seconds,
                max_mode=True,
                connections=connections,
                root=root,
                prefix=f"B{connections}",
                clear_retained=True,
            )
            report, _ = run_fleet(cfg, host, port)
            return float(report["max_per_s"])

        one = fleet(1000, 1)
        many = fleet(1000, 100)
        per_device = fleet(10_000, 10_000)
        return {
            "fleet_1conn_per_s": one,
            "fleet_100conn_per_s": many,
            "fleet_10k_conns_per_s": per_device,
            "paho_reference_per_s": reference,
            "ratio": one / reference,
        }
    finally:
        if started:
            subprocess.run([*SERVICES, "down", "mosquitto"], capture_output=True, timeout=120)


if __name__ == "__main__":
    import json

    print(json.dumps({k: round(v, 1) for k, v in bench_fleet().items()}))
