"""The real gateway writing batch records (``TOCSIN_KAFKA_BATCH_READINGS``), read by a real worker.

20 gas detectors send 10 readings each over Mosquitto (QoS 1, published back to back, so the
gateway's socket reads hold many). The gateway runs with ``TOCSIN_KAFKA_BATCH_READINGS=100``.

Then: ``telemetry.hazmat`` holds every reading exactly once, each device's in order and in the
partition of its key (the worker's deadman ticks for that device go there too), some of them in
batch records; the worker counted every reading; every MQTT message was acknowledged (nothing is
left in flight at the gateway).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.stack import Stack, gas_reading, mqtt_device, read_records, running_stack, village
from tocsin.kafka import existing_partitions, key_partition
from tocsin.schemas import topics
from tocsin.schemas.batch import expand, is_batch
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Device, Registry

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
DEVICES = [f"GD{i:02d}-{RUN}" for i in range(20)]
SITE = f"plant-{RUN}"
PER_DEVICE = 10


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    area = village("639999")
    registry = Registry(
        devices=[
            Device(device_id=d, family=Family.HAZMAT, site=SITE, lat=30.3, lon=120.1, area=area, interval_s=5)
            for d in DEVICES
        ]
    )
    env = {"TOCSIN_INFLUX_URL": "", "TOCSIN_KAFKA_BATCH_READINGS": "100"}
    with running_stack(
        services, tmp_path_factory.mktemp("gwbatch"), RUN, registry, env, roles=("gateway", "worker")
    ) as s:
        yield s


def metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_the_gateway_batches_a_read_and_the_worker_judges_every_reading(stack: Stack, services: dict[str, str]) -> None:
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    hazmat = 'tocsin_detector_readings_total{family="hazmat"}'
    before = metric(stack.worker_metrics(), hazmat)
    start = datetime.now(UTC) - timedelta(seconds=60)
    with mqtt_device(services, f"dev-{RUN}") as client:
        sent = []
        for seq in range(PER_DEVICE):
            for d in DEVICES:
                body = gas_reading(d, SITE, seq, start + timedelta(seconds=5 * seq), 1.0)
                sent.append(client.publish(f"tocsin/v1/hazmat/{SITE}/{d}/telemetry", json.dumps(body).encode(), qos=1))
        for info in sent:
            info.wait_for_publish(10)

    topic = topics.kafka_telemetry(Family.HAZMAT)
    want = len(DEVICES) * PER_DEVICE
    deadline = time.monotonic() + 60
    while True:
        records = read_records(bootstrap, topic, stack.start_offsets)
        ours: list[tuple[Any, dict[str, Any]]] = []
        for r in records:
            for value in expand(r.value):
                reading = json.loads(value or b"{}")
                if reading.get("device_id") in DEVICES:
                    ours.append((r, reading))
        if len(ours) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(ours) == want, f"{len(ours)} of {want} readings in Kafka"
    assert len({(x["device_id"], x["seq"]) for _, x in ours}) == want  # each once
    partitions = existing_partitions(bootstrap, [topic])[topic]
    for d in DEVICES:
        mine = [(r, x) for r, x in ours if x["device_id"] == d]
        assert [x["seq"] for _, x in mine] == list(range(PER_DEVICE)), d  # in order
        assert {r.partition for r, _ in mine} <= {key_partition(d.encode(), partitions)}, d
    batches = {(r.partition, r.offset) for r, _ in ours if is_batch(r.value)}
    assert batches, "no batch record: the readings all travelled alone"

    deadline = time.monotonic() + 60
    while metric(stack.worker_metrics(), hazmat) < before + want:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.5)
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.gateway_port}/metrics", timeout=10) as resp:
        gateway_metrics = resp.read().decode()
    assert metric(gateway_metrics, "tocsin_gateway_in_flight ") == 0  # every message acknowledged
    assert metric(gateway_metrics, 'tocsin_gateway_records_produced_total{topic="' + topic + '"}') >= want
    gateway = stack.procs["gateway"].text()
    assert "Traceback" not in gateway, gateway[-3000:]
