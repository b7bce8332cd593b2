"""Fuzz: no MQTT message makes the gateway raise; each becomes one Kafka record or one dead letter.

10,000 cases here (``make test``), 100,000 with ``make fuzz`` (TOCSIN_FUZZ_SCALE=10). The corpus
(tests/fuzz/corpus.py): random bytes, truncated and oversize JSON, huge numbers, NaN/Infinity, deep
nesting, wrong types and coercible strings/booleans, unicode oddities (lone surrogates in topics and
payloads), miniSEED records with every header field and blockette mutated, wrong topic shapes,
spoofed identities, status payloads up to 6 MB.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.fuzz.corpus import MESSAGES, NOW, REGISTRY
from tests.fuzz.harness import SCALE, assert_clean, fuzz, timeout_s
from tocsin.ingest.gateway import GatewayCore
from tocsin.ingest.metrics import GatewayMetrics
from tocsin.kafka import key_partition
from tocsin.schemas.batch import is_batch, unpack
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.topics import DEADLETTER, DEVICE_STATUS, TELEMETRY_TOPICS

KAFKA_MAX_RECORD_BYTES = 1_048_576  # Kafka's default message.max.bytes / max.request.size (1 MiB)
GATEWAY_CASES = 10_000


class Recorder:
    """An in-process sink (as in embedded mode) that completes every send at once.

    The test clears ``records`` before each message: kept for a whole run, 100,000 messages'
    records (dead letters carry up to 256 KiB of the payload) grew the process to 4 GB.
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Any) -> None:
        self.records.append((topic, key or b"", value))
        on_done(None)

    def flush(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.mark.timeout(timeout_s(300))
def test_fuzz_gateway_handle_never_raises_and_always_produces_one_record() -> None:
    sink = Recorder()
    cores = [
        GatewayCore(sink, GatewayMetrics(CollectorRegistry()), clock=lambda: NOW),
        GatewayCore(sink, GatewayMetrics(CollectorRegistry()), registry=REGISTRY, clock=lambda: NOW),
    ]
    counter = [0]

    def one(message: tuple[str, bytes]) -> str:
        topic, payload = message
        counter[0] += 1
        core = cores[counter[0] % 2]
        acks: list[int] = []
        sink.records.clear()
        core.handle(topic, payload, lambda: acks.append(len(sink.records)))
        produced = sink.records
        assert len(produced) == 1, f"{len(produced)} records for one message"
        assert acks == [1], "acknowledged once, after its record"
        kafka_topic, key, value = produced[0]
        assert len(value) + len(key) < KAFKA_MAX_RECORD_BYTES
        if kafka_topic == DEADLETTER:
            letter = DeadLetter.model_validate_json(value)
            assert letter.message and letter.raw_size == len(payload)
            assert letter.raw == payload[: len(letter.raw)]
            return f"dead:{letter.reason.value}"
        assert kafka_topic in (*TELEMETRY_TOPICS, DEVICE_STATUS)
        return kafka_topic

    stats = fuzz("gateway", MESSAGES, one, GATEWAY_CASES)
    assert_clean(stats, GATEWAY_CASES * SCALE)
    assert stats.outcomes.get(f"dead:{Reason.INTERNAL.value}", 0) == 0, stats.outcomes
    # the corpus reaches every outcome, not only the early refusals
    reached = {k for k in stats.outcomes}
    assert {"telemetry.hydro", "telemetry.seismic", "devices.status", "dead:bad_topic", "dead:too_large"} <= reached
    assert {"dead:schema", "dead:undecodable", "dead:identity_mismatch", "dead:out_of_range"} <= reached


class PartitionedRecorder(Recorder):
    """A sink that knows its topics' partition counts (2), as the librdkafka sink does: the gateway
    then writes batch records (schemas/batch.py)."""

    def partition_for(self, topic: str, key: bytes) -> int | None:
        return key_partition(key, 2)

    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Any, **_: Any) -> None:  # type: ignore[override]
        super().send(topic, key, value, on_done)


@pytest.mark.timeout(timeout_s(300))
def test_fuzz_gateway_reads_never_raise_and_every_message_is_one_reading_or_one_dead_letter() -> None:
    """Socket reads of up to 12 corpus messages through ``handle_many`` with batch records on: no
    escape; every message acknowledged once; every message is one reading (alone or in a batch
    record), one status record or one dead letter."""
    sink = PartitionedRecorder()
    core = GatewayCore(sink, GatewayMetrics(CollectorRegistry()), clock=lambda: NOW, batch_readings=100)
    reads = st.lists(MESSAGES, min_size=1, max_size=12)

    def one(messages: list[tuple[str, bytes]]) -> str:
        acks: list[int] = []
        sink.records.clear()
        core.handle_many([(t, p, lambda k=k: acks.append(k)) for k, (t, p) in enumerate(messages)])  # type: ignore[misc]
        assert sorted(acks) == list(range(len(messages))), "each message acknowledged once"
        parts = 0
        batched = False
        for kafka_topic, key, value in sink.records:
            assert len(value) + len(key) < KAFKA_MAX_RECORD_BYTES
            if kafka_topic in TELEMETRY_TOPICS and is_batch(value):
                readings = unpack(value)
                assert len(readings) >= 2 and all(readings)
                parts += len(readings)
                batched = True
            else:
                parts += 1
        assert parts == len(messages), f"{parts} readings and letters for {len(messages)} messages"
        return "batched" if batched else "single"

    stats = fuzz("gateway_reads", reads, one, GATEWAY_CASES // 10)
    assert_clean(stats, GATEWAY_CASES // 10 * SCALE)
    assert stats.outcomes.get("batched", 0) > 0, stats.outcomes  # the corpus reaches the batch records
