"""``make bench`` entry ``console_follower``: what following the telemetry topics costs the operator API.

N single-reading records of 5,000 gauges are produced to ``telemetry.hydro`` on the local Kafka; then
the API's follower (tocsin.kafka.TopicFollower from the time the production started, as
tocsin/api.py wires it) feeds them to the console's device-state model (alerts/console/devices.py),
and, as the reference, a plain kafka-python consumer reads the same records and does nothing with
them. Reported: CPU microseconds per record of each (the process's CPU time, all threads) and
their ratio.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.bench.gateway import KAFKA, _ensure_services

GAUGES = 5_000


def _produce(n: int) -> tuple[int, int]:
    from kafka import KafkaProducer

    from tocsin.kafka import ensure_topics

    ensure_topics(KAFKA, ["telemetry.hydro"], 3)
    producer = KafkaProducer(bootstrap_servers=KAFKA, linger_ms=20, batch_size=256_000)
    start_ms = int(time.time() * 1000) - 1
    for i in range(n):
        dev = f"B{i % GAUGES:05d}"
        value = json.dumps(
            {"type": "hydro.rain", "device_id": dev, "site": "s1", "ts": "2026-12-03T07:00:00+00:00", "seq": i}
            | {"rain_mm": 0.5, "interval_s": 60}
        ).encode()
        producer.send("telemetry.hydro", key=dev.encode(), value=value)
    producer.flush()
    producer.close()
    return start_ms, n


def _follow(start_ms: int, n: int) -> tuple[float, int]:
    from tocsin.alerts.console.devices import DeviceHealthModel
    from tocsin.kafka import TopicFollower
    from tocsin.schemas.common import Family
    from tocsin.schemas.registry import Area, Device, Registry

    area = Area(code="330110")
    devices = [
        Device(device_id=f"B{i:05d}", family=Family.HYDRO, site="s1", lat=30, lon=120, area=area) for i in range(GAUGES)
    ]
    model = DeviceHealthModel(Registry(devices=devices))
    seen = [0]
    done = threading.Event()

    def feed(rec: Any) -> None:
        model.apply_record(rec.topic, rec.key, rec.value, rec.timestamp / 1000)
        seen[0] += 1
        if seen[0] >= n:
            done.set()

    follower = TopicFollower(KAFKA, ["telemetry.hydro"], feed, name="bench-console", since_ms=lambda: start_ms)
    c0 = time.process_time()
    follower.start()
    done.wait(300)
    cpu = time.process_time() - c0
    follower.stop()
    return cpu, model.counts()["reporting"]


def _plain(start_ms: int, n: int) -> float:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=KAFKA, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition("telemetry.hydro", p) for p in consumer.partitions_for_topic("telemetry.hydro") or ()]
    consumer.assign(parts)
    for tp, at in consumer.offsets_for_times(dict.fromkeys(parts, start_ms)).items():
        consumer.seek(tp, at.offset if at is not None else consumer.end_offsets([tp])[tp])
    c0, got, deadline = time.process_time(), 0, time.monotonic() + 300
    while got < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got += len(records)
    cpu = time.process_time() - c0
    consumer.close()
    return cpu


def bench_console_follower(n: int = 200_000) -> dict[str, float]:
    _ensure_services(["kafka"])
    start_ms, n = _produce(n)
    cpu, reporting = _follow(start_ms, n)
    plain = _plain(start_ms, n)
    return {
        "records": float(n),
        "gauges_reporting": float(reporting),
        "follower_us_cpu_per_record": cpu / n * 1e6,
        "plain_consumer_us_cpu_per_record": plain / n * 1e6,
        "follower_vs_plain_consumer": cpu / plain,
    }
