"""Two gateways on one MQTT shared subscription; one is killed (SIGKILL) mid-stream: every QoS 1
reading the devices published reaches Kafka (0 lost), in its device's partition.

Real Mosquitto and Kafka (tests/integration/scale.py). Eight gas detectors publish 250 readings
each (seq 1..250, QoS 1, acknowledged by the broker). Gateway A is killed after about 40 % of
them. What A had taken from the broker but not acknowledged stays in A's persistent session:
Mosquitto does not hand it to B (measured: ``stranded`` below), so A is restarted with its client
id, as its supervisor would, and resumes its session. At-least-once: a reading A produced but had
not acknowledged comes back to A's successor and is produced again; such duplicates are counted
and reported (the gateway's own duplicate filter is per process and starts empty); the detectors
skip them by (device, seq, device time) (detectors/service.py, tests/detectors/test_service.py).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.procs import free_port, wait_until
from tests.integration.scale import PARTITIONS, Gateway, at_least_partitions, elapsed, partition_of, start_gateways
from tests.integration.stack import gas_reading, read_records, village
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Device, Registry

pytestmark = pytest.mark.integration

DEVICES, READINGS, KILL_AT = 8, 250, 100  # readings per device; A is killed after round KILL_AT


def _in_kafka(bootstrap: str, start: dict[Any, int], devices: set[str]) -> list[tuple[str, int, int]]:
    """(device, seq, partition) of this run's readings on ``telemetry.hazmat`` since ``start``."""
    out = []
    for r in read_records(bootstrap, topics.kafka_telemetry("hazmat"), start, idle_ms=800):
        d = json.loads(r.value)
        if d.get("device_id") in devices:
            out.append((d["device_id"], d["seq"], r.partition))
    return out


def test_killed_gateway_loses_no_reading(services: dict[str, str], tmp_path: Path) -> None:
    t0 = time.monotonic()
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    hazmat = topics.kafka_telemetry("hazmat")
    assert at_least_partitions(bootstrap, [hazmat])[hazmat] >= PARTITIONS
    run = uuid.uuid4().hex[:6]
    site = f"plant-{run}"
    devices = [f"GD{run}-{i}" for i in range(DEVICES)]
    registry = Registry(
        devices=[
            Device(device_id=d, family=Family.HAZMAT, site=site, lat=30.3, lon=120.1, area=village("330110"))
            for d in devices
        ]
    )
    reg_file = tmp_path / "registry.json"
    reg_file.write_text(registry.model_dump_json(), encoding="utf-8")
    env = {
        **services,
        "TOCSIN_REGISTRY_FILE": str(reg_file),
        "TOCSIN_MQTT_SHARE_GROUP": f"g{run}",
        "TOCSIN_KAFKA_PARTITIONS": str(PARTITIONS),
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_LOG_LEVEL": "WARNING",
    }
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    tps = [TopicPartition(hazmat, p) for p in sorted(consumer.partitions_for_topic(hazmat) or ())]
    start = dict(consumer.end_offsets(tps))
    consumer.close()
    gateways: list[Gateway] = []
    clients: list[mqtt.Client] = []
    try:
        gateways += start_gateways([("gw-a", f"gw-{run}-a"), ("gw-b", f"gw-{run}-b")], env, tmp_path)
        t_ready = elapsed(t0)
        for d in devices:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{d}-{free_port()}")
            c.max_inflight_messages_set(50)
            c.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
            c.loop_start()
            clients.append(c)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=READINGS + 60)
        infos = []
        for k in range(1, READINGS + 1):
            for d, c in zip(devices, clients, strict=True):
                body = json.dumps(gas_reading(d, site, k, base + timedelta(seconds=k), 1.0)).encode()
                infos.append(c.publish(topics.mqtt_telemetry("hazmat", site, d), body, qos=1))
            if k == KILL_AT:
                gateways[0].proc.stop(sig=signal.SIGKILL)
                t_kill = elapsed(t0)
            time.sleep(0.02)
        for info in infos:
            info.wait_for_publish(30)  # the broker has every reading (QoS 1 PUBACK)
        t_published = elapsed(t0)
        want = {(d, k) for d in devices for k in range(1, READINGS + 1)}

        # B alone: what reaches Kafka within 8 s (or all of it)
        def complete() -> bool:
            return want <= {(d, s) for d, s, _p in _in_kafka(bootstrap, start, set(devices))}

        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not complete():
            time.sleep(1)
        stranded = len(want - {(d, s) for d, s, _p in _in_kafka(bootstrap, start, set(devices))})
        # A's supervisor restarts it: same client id, its persistent session with what it held
        gateways += start_gateways([("gw-a2", f"gw-{run}-a")], env, tmp_path)
        wait_until(complete, 30, "every reading in Kafka", interval_s=1)
        t_complete = elapsed(t0)
        time.sleep(2)  # redeliveries still on their way would show now
        got = _in_kafka(bootstrap, start, set(devices))
        counts = Counter((d, s) for d, s, _p in got)
        assert set(counts) == want, sorted(want - set(counts))[:10]  # 0 lost (and nothing foreign)
        duplicates = sum(n - 1 for n in counts.values())
        # each device's readings in the partition every producer here gives its key (murmur2): the one
        # the worker's deadman ticks for that device go to
        misplaced = [(d, s, p) for d, s, p in got if p != partition_of(d, len(tps))]
        assert not misplaced, misplaced[:5]
        print(
            f"\nscale-out gateways: {len(want)} readings; ready {t_ready} s, A killed at {t_kill} s, published"
            f" {t_published} s, complete {t_complete} s; stranded in A's session until it returned {stranded};"
            f" duplicates in Kafka {duplicates}"
        )
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        for g in gateways:
            g.proc.stop()
