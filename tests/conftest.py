"""Shared fixtures. Integration tests get the real local services (deploy/local/services.sh):
started here if they are not already running, and stopped after the session if started here."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]
NEEDED = ("mosquitto", "kafka", "influxdb")


def _running(name: str) -> bool:
    return subprocess.run([*SERVICES, "status", name], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    """Endpoints of the real Mosquitto, Kafka and InfluxDB on 127.0.0.1."""
    started = [n for n in NEEDED if not _running(n)]
    if started:
        # A Kafka started here starts empty: workers in new consumer groups read from the earliest offset,
        # and must not replay the records of earlier runs on this machine.
        # TOCSIN_UP_NO_RESTART: a service another session started meanwhile is used as it is, never
        # restarted (a restart, and the wipe with it, would pull Kafka from under that session's tests).
        env = {**os.environ, "TOCSIN_KAFKA_WIPE": "1", "TOCSIN_UP_NO_RESTART": "1"}
        proc = subprocess.run([*SERVICES, "up", *started], capture_output=True, text=True, timeout=1500, env=env)
        if proc.returncode != 0:
            pytest.fail(f"could not start {started}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    env = {
        "TOCSIN_MQTT_HOST": "127.0.0.1",
        "TOCSIN_MQTT_PORT": os.environ.get("TOCSIN_MQTT_PORT", "1883"),
        "TOCSIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{os.environ.get('TOCSIN_KAFKA_PORT', '9092')}",
        "TOCSIN_INFLUX_URL": f"http://127.0.0.1:{os.environ.get('TOCSIN_INFLUX_PORT', '8086')}",
        "TOCSIN_INFLUX_BUCKET": os.environ.get("TOCSIN_INFLUX_DB", "tocsin"),
        "TOCSIN_INFLUX_ORG": "-",
        "TOCSIN_DEV": "1",  # the local harness's development secrets are accepted (docs/security.md)
    }
    yield env
    if started and not os.environ.get("TOCSIN_KEEP_SERVICES"):
        subprocess.run([*SERVICES, "down", *started], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian's prometheus package), provisioned by the harness if missing."""
    found = shutil.which("promtool")
    if not found:
        proc = subprocess.run([*SERVICES, "provision", "prometheus"], capture_output=True, text=True, timeout=900)
        found = shutil.which("promtool")
        if not found:
            pytest.fail(f"promtool could not be provisioned:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return found
