"""The console's device states on the real path: devices publish over MQTT to the real gateway, which
writes Kafka; the operator API (``python -m tocsin.api``) follows the Kafka topics and shows each
registered device as reporting, offline, stale or faulty, and counts them in ``tocsin_console_devices``.

Five devices of one run: A sends a reading (reporting: it reports hourly), B's status says
``offline`` (an MQTT last will), C reports every second and sends one reading (stale after 2 s), D
sends a reading with a NaN (a dead letter: faulty), E's status says ``fault`` (faulty). F's one
reading reached Kafka 30 minutes before the API started (it reports every 10 minutes): the API
replays it from Kafka at its record time, so F is stale since 10 minutes ago, not reporting.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.stack import Stack, api_auth, mqtt_device, publish, running_stack, village
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Device, Registry

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
SITE = f"site-{RUN}"
A, B, C, D, E, F = (f"{x}-{RUN}" for x in ("RGA", "RGB", "RGC", "RGD", "RGE", "RGF"))
INTERVALS = {A: 3600.0, B: 3600.0, C: 1.0, D: 3600.0, E: 3600.0, F: 600.0}
F_AGE_S = 1800


def registry() -> Registry:
    area = village("339901")
    return Registry(
        devices=[
            Device(device_id=d, family=Family.HYDRO, site=SITE, lat=30.3, lon=120.1, area=area, interval_s=iv)
            for d, iv in INTERVALS.items()
        ]
    )


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("devices")
    producer = KafkaProducer(bootstrap_servers=services["TOCSIN_KAFKA_BOOTSTRAP"], acks="all")
    try:  # as the gateway would have written it half an hour ago (the record time is its receive time)
        sent_ms = int((time.time() - F_AGE_S) * 1000)
        producer.send(topics.kafka_telemetry(Family.HYDRO), key=F.encode(), value=reading(F, 1), timestamp_ms=sent_ms)
        producer.flush(30)
    finally:
        producer.close(10)
    env = {"TOCSIN_CONSOLE_STALE_FACTOR": "2", "TOCSIN_CONSOLE_FAULT_WINDOW_S": "600"}
    with running_stack(services, tmp, RUN, registry(), env, roles=("gateway", "api"), from_now=False) as s:
        yield s


def reading(device: str, seq: int, rain: str = "0.5") -> bytes:
    ts = datetime.now(UTC).isoformat()
    return (
        f'{{"type":"hydro.rain","device_id":"{device}","site":"{SITE}","ts":"{ts}",'
        f'"seq":{seq},"rain_mm":{rain},"interval_s":60}}'
    ).encode()


def get(stack: Stack, path: str, user: str = "张查看") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{stack.api_port}{path}", headers=api_auth(user))
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def device_states(stack: Stack) -> dict[str, Any]:
    status, body = get(stack, "/console/api/devices")
    assert status == 200
    data: dict[str, Any] = json.loads(body)
    return data


def test_reporting_offline_stale_and_faulty_from_the_real_topics(stack: Stack, services: dict[str, str]) -> None:
    first = device_states(stack)
    assert first["available"] and {d["id"] for d in first["devices"]} == set(INTERVALS)
    with mqtt_device(services, f"dev-{RUN}") as client:
        publish(client, topics.mqtt_telemetry(Family.HYDRO, SITE, C), reading(C, 1))
        publish(client, topics.mqtt_telemetry(Family.HYDRO, SITE, A), reading(A, 1))
        publish(client, topics.mqtt_status(Family.HYDRO, SITE, B), b"offline")
        publish(client, topics.mqtt_telemetry(Family.HYDRO, SITE, D), reading(D, 1, rain="NaN"))
        publish(client, topics.mqtt_telemetry(Family.HYDRO, SITE, E), reading(E, 1))
        fault = {"state": "fault", "reason": "翻斗卡滞"}
        publish(client, topics.mqtt_status(Family.HYDRO, SITE, E), json.dumps(fault, ensure_ascii=False).encode())

    want = {A: "reporting", B: "offline", C: "stale", D: "faulty", E: "faulty", F: "stale"}

    def settled() -> dict[str, Any] | None:
        data = device_states(stack)
        return data if {d["id"]: d["state"] for d in data["devices"]} == want else None

    data = wait_until(settled, 60, f"device states {want}")
    rows = {d["id"]: d for d in data["devices"]}
    assert [d["id"] for d in data["devices"]] == [D, E, B, C, F, A]  # faulty, offline, stale first
    assert "last-will" in rows[B]["reason"]
    assert "non_finite" in rows[D]["reason"] and "1 条死信" in rows[D]["reason"]
    assert rows[E]["reason"] == "设备自报故障（翻斗卡滞）"
    assert rows[C]["last_seen"] is not None and "无数据" in rows[C]["reason"]
    assert rows[A]["last_seen"] is not None and rows[A]["family"] == "hydro" and rows[A]["area"]
    f_seen = datetime.fromisoformat(rows[F]["last_seen"]).timestamp()
    assert abs(f_seen - (time.time() - F_AGE_S)) < 120 and re.match(r"已 3[01] 分钟 无数据", rows[F]["reason"])
    assert data["counts"] == {"faulty": 2, "offline": 1, "stale": 2, "unknown": 0, "reporting": 1}

    _, metrics = get(stack, "/metrics", "王工")
    text = metrics.decode()
    for state, n in data["counts"].items():
        assert f'tocsin_console_devices{{state="{state}"}} {n}.0' in text, state
