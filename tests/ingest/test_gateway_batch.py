"""The gateway's batch records (``GatewayCore.handle_many``, schemas/batch.py): the readings of one
socket read that go to the same topic and partition share a record; each reading is still validated,
deduplicated and dead-lettered on its own; a message is acknowledged only once its record is in Kafka.

No Kafka here: the sink records what it is given and completes it when the test says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from tocsin.ingest.gateway import CORRELATION_HEADER, RECEIVED_HEADER, GatewayCore, correlation_id
from tocsin.ingest.influx import InfluxKafkaSink
from tocsin.ingest.metrics import GatewayMetrics
from tocsin.kafka import key_partition
from tocsin.schemas.batch import expand, is_batch
from tocsin.schemas.records import decode_telemetry
from tocsin.schemas.topics import DEADLETTER, kafka_telemetry

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=1)
PARTITIONS = 2


class Sink:
    """Knows each topic's partition count (as the librdkafka sink asks the brokers); holds the
    completions until ``complete``."""

    accepts_headers = True

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._pending: list[Callable[[BaseException | None], None]] = []

    def partition_for(self, topic: str, key: bytes) -> int | None:
        return key_partition(key, PARTITIONS)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Callable[[BaseException | None], None],
        headers: Any = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": headers, "partition": partition})
        self._pending.append(on_done)

    def complete(self, error: BaseException | None = None) -> None:
        pending, self._pending = self._pending, []
        for done in pending:
            done(error)

    def flush(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None


class PlainSink(Sink):
    partition_for = None  # type: ignore[assignment]


def rain(device: str, seq: int) -> tuple[str, bytes]:
    body = {
        "type": "hydro.rain",
        "device_id": device,
        "site": "qs",
        "ts": (T0 + timedelta(seconds=seq)).isoformat(),
        "seq": seq,
        "rain_mm": 0.5,
        "interval_s": 60,
    }
    return f"tocsin/v1/hydro/qs/{device}/telemetry", json.dumps(body).encode()


DEVICES = [f"RG{i:02d}" for i in range(8)]


def core_of(sink: Sink, batch_readings: int = 100) -> GatewayCore:
    return GatewayCore(sink, GatewayMetrics(CollectorRegistry()), clock=lambda: NOW, batch_readings=batch_readings)


def one_read(acked: list[int]) -> list[tuple[str, bytes, Callable[[], None]]]:
    """Two readings of each device, a reading naming another device than its topic, in one read."""
    messages = []
    for seq in range(2):
        for d in DEVICES:
            topic, payload = rain(d, seq)
            k = len(messages)
            messages.append((topic, payload, lambda k=k: acked.append(k)))  # type: ignore[misc]
    topic, payload = rain("RG00", 7)
    k = len(messages)
    messages.append((topic.replace("RG00", "RG99"), payload, lambda k=k: acked.append(k)))  # type: ignore[misc]
    return messages


def test_the_readings_of_a_read_share_one_record_per_partition_and_are_acked_with_it() -> None:
    sink, acked = Sink(), []
    messages = one_read(acked)
    core_of(sink).handle_many(messages)
    batches = [r for r in sink.sent if is_batch(r["value"])]
    letters = [r for r in sink.sent if r["topic"] == DEADLETTER]
    assert len(letters) == 1 and len(sink.sent) == len(batches) + 1
    assert {r["partition"] for r in batches} == set(range(PARTITIONS)) and len(batches) == PARTITIONS
    # every reading once, in its key's partition, each device's in order, as a single record holds it
    single = Sink()
    alone = core_of(single, batch_readings=1)
    for topic, payload, _ in messages[:-1]:
        alone.handle(topic, payload, lambda: None)
    expected = {r["value"] for r in single.sent}
    got = [(r["partition"], v) for r in batches for v in expand(r["value"])]
    assert sorted(v for _, v in got) == sorted(expected)  # type: ignore[type-var]
    for partition, value in got:
        reading = decode_telemetry(value)
        assert partition == key_partition(reading.device_id.encode(), PARTITIONS)  # type: ignore[union-attr]
    for d in DEVICES:
        seqs = [decode_telemetry(v).seq for _, v in got if decode_telemetry(v).device_id == d]  # type: ignore[union-attr]
        assert seqs == [0, 1]
    for r in batches:  # the receive time travels; the correlation ids are derived from the readings
        assert dict(r["headers"]) == {RECEIVED_HEADER: str(int(NOW.timestamp() * 1000)).encode()}
        assert r["topic"] == kafka_telemetry("hydro")
    assert {CORRELATION_HEADER} == {k for k, _ in single.sent[0]["headers"]} - {RECEIVED_HEADER}
    assert dict(single.sent[0]["headers"])[CORRELATION_HEADER].decode() == correlation_id("RG00", T0, 0)
    # nothing is acked before Kafka has the records; then every message is, once
    assert acked == []
    sink.complete()
    assert sorted(acked) == list(range(len(messages)))


def test_a_record_holds_at_most_batch_readings_and_a_lone_reading_stays_single() -> None:
    sink = Sink()
    core_of(sink, batch_readings=3).handle_many(one_read([])[:-1])
    sizes = sorted(len(expand(r["value"])) for r in sink.sent)
    assert max(sizes) == 3 and sum(sizes) == 2 * len(DEVICES)
    for r in sink.sent:
        if not is_batch(r["value"]):  # a single-reading record keeps its correlation header
            assert CORRELATION_HEADER in dict(r["headers"])


def test_a_failed_batch_record_acks_nothing_and_its_readings_come_back_as_new() -> None:
    sink, acked = Sink(), []
    core = core_of(sink)
    messages = one_read(acked)[:-1]
    core.handle_many(messages)
    sink.complete(ConnectionError("broker gone"))
    assert acked == []
    sink.sent.clear()
    core.handle_many(messages)  # the broker redelivers them: not duplicates, the first try never landed
    assert sum(len(expand(r["value"])) for r in sink.sent) == len(messages)
    assert all(r["topic"] != DEADLETTER for r in sink.sent)
    sink.complete()
    assert sorted(acked) == list(range(len(messages)))


def test_a_sink_that_cannot_tell_partitions_gets_one_record_per_reading() -> None:
    sink = PlainSink()
    core_of(sink).handle_many(one_read([])[:-1])
    assert len(sink.sent) == 2 * len(DEVICES) and not any(is_batch(r["value"]) for r in sink.sent)


def test_key_partition_is_the_worker_producers_partition() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    aiokafka = DefaultPartitioner()
    for key in [b"RG00", b"ST00HHZ", b"GAS0042", "森林防火-07".encode(), b"x" * 100, b""]:
        for n in (1, 2, 3, 6, 12):
            assert key_partition(key, n) == aiokafka(key, list(range(n)), list(range(n)))


def test_the_influx_sink_writes_a_point_per_reading_of_a_batch() -> None:
    sink = Sink()
    core_of(sink).handle_many(one_read([])[:-1])
    values = [r["value"] for r in sink.sent] + [sink.sent[0]["value"][:-1]]  # and one cut short
    metrics = GatewayMetrics(CollectorRegistry())
    influx = InfluxKafkaSink(consumer=None, writer=None, metrics=metrics)  # type: ignore[arg-type]
    points = influx.points(values)
    assert len(points) == 2 * len(DEVICES)
    undecodable = metrics.influx_writes.labels("undecodable")._value.get()
    assert undecodable == 1
