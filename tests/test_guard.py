"""The worker's per-record guard (tocsin/guard.py): poison records become dead letters, nothing else escapes.

No Kafka here: the guard's ``send`` is a list the test reads (the real topic is exercised by
tests/integration/test_worker_poison.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.alerts.factories import alert_message
from tocsin.alerts.silence_store import SilenceStore
from tocsin.alerts.silences import Silence
from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.service import DetectorMetrics, DetectorStage
from tocsin.guard import BatchReading, DeadLetterMetrics, DeadLetterNotTaken, RecordGuard
from tocsin.schemas.deadletter import WORKER_RAW_MAX, WorkerDeadLetter, WorkerReason
from tocsin.schemas.records import decode_alert, decode_detection, decode_telemetry
from tocsin.schemas.wire import encode

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


@dataclass
class Record:
    value: bytes | None
    topic: str = "telemetry.seismic"
    partition: int = 1
    offset: int = 41
    key: bytes | None = b"ST-1"
    headers: Any = ()


class Harness:
    def __init__(self, fail_send: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.sent: list[tuple[bytes, bytes]] = []
        self.fail_send = fail_send
        self.guard = RecordGuard(self._send, DeadLetterMetrics(self.registry, ["detect-seismic"]), clock=lambda: T0)

    async def _send(self, key: bytes, value: bytes) -> None:
        if self.fail_send:
            raise ConnectionError("broker gone")
        self.sent.append((key, value))

    def letters(self) -> list[WorkerDeadLetter]:
        return [WorkerDeadLetter.model_validate_json(v) for _, v in self.sent]

    def count(self, agent: str, reason: str) -> float | None:
        return self.registry.get_sample_value("tocsin_worker_deadletters_total", {"agent": agent, "reason": reason})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def seismic(rate_hz: float) -> bytes:
    return json.dumps(
        {
            "type": "seismic.waveform",
            "device_id": "ST-1",
            "site": "s1",
            "ts": T0.isoformat(),
            "sample_rate_hz": rate_hz,
            "samples": [0.0, 1e-6, -1e-6, 0.0] * 25,
        }
    ).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x00 not json", WorkerReason.UNDECODABLE),
        (b'{"type": "hydro.level", "device_id": "W', WorkerReason.UNDECODABLE),  # truncated
        (None, WorkerReason.UNDECODABLE),  # a null value (tombstone)
        (b'{"type":"tocsin.tick","device_id":"ST-1"}', WorkerReason.SCHEMA),  # deadman tick without ts
        (b'{"type": "hydro.level", "device_id": "W1"}', WorkerReason.SCHEMA),
        (b"[1, 2, 3]", WorkerReason.SCHEMA),
    ],
    ids=["not-utf8", "truncated", "null", "tick-without-ts", "missing-fields", "array"],
)
def test_a_record_that_does_not_decode_becomes_a_dead_letter_with_its_bytes(
    raw: bytes | None, reason: WorkerReason
) -> None:
    h = Harness()
    handled: list[Any] = []

    async def handle() -> None:
        handled.append(decode_telemetry(raw))

    assert run(h.guard.run("detect-seismic", Record(raw), handle)) is None
    assert handled == []
    [(key, _)] = h.sent
    [letter] = h.letters()
    assert key == b"telemetry.seismic/1/41"
    assert (letter.reason, letter.agent, letter.topic, letter.partition, letter.offset) == (
        reason,
        "detect-seismic",
        "telemetry.seismic",
        1,
        41,
    )
    assert letter.exception_type == "tocsin.schemas.records.PoisonRecord"
    assert letter.raw == (raw or b"") and letter.raw_size == len(raw or b"") and not letter.raw_truncated
    assert letter.key_b64 == base64.b64encode(b"ST-1").decode()
    assert letter.failed_at == T0
    assert h.count("detect-seismic", reason.value) == 1
    others = {r.value for r in WorkerReason} - {reason.value}
    assert all(h.count("detect-seismic", r) == 0 for r in others)  # pre-created at 0 for the rules' increase()


def test_a_reading_of_a_batch_record_is_set_aside_alone_with_its_bytes_and_index() -> None:
    h = Harness()
    handled: list[Any] = []
    good, bad = seismic(100.0), b'{"type": "hydro.level", "device_id": "W1"}'
    for i, raw in enumerate([good, bad, good]):
        one = BatchReading("telemetry.seismic", 1, 41, b"ST-1", raw, (), i)

        async def handle(raw: bytes = raw) -> None:
            handled.append(decode_telemetry(raw))

        run(h.guard.run("detect-seismic", one, handle))
    assert len(handled) == 2
    [(key, _)] = h.sent
    [letter] = h.letters()
    assert key == b"telemetry.seismic/1/41/1"
    assert (letter.raw, letter.batch_index, letter.offset, letter.reason) == (bad, 1, 41, WorkerReason.SCHEMA)
    assert h.count("detect-seismic", WorkerReason.SCHEMA.value) == 1


def test_a_batch_reading_whose_dead_letter_kafka_refuses_leaves_the_record_unacknowledged() -> None:
    h = Harness(fail_send=True)
    part = BatchReading("telemetry.seismic", 1, 41, b"ST-1", b"{}", (), 0)

    async def handle() -> None:  # the worker's batch loop: a reading fails, its dead letter is refused
        await h.guard.set_aside("detect-seismic", part, ValueError("bad reading"))

    with pytest.raises(DeadLetterNotTaken):  # out of the record's guard: Faust does not acknowledge it
        run(h.guard.run("detect-seismic", Record(b"tocsin.batch.v1\n{}\n"), handle))
    assert h.sent == [] and h.count("detect-seismic", WorkerReason.PROCESSING.value) == 0


def test_the_seismic_crasher_is_a_schema_dead_letter_and_the_next_record_is_handled() -> None:
    """The issue's seismic crasher: at 0.5 Hz the Nyquist frequency (0.25 Hz) is below the low corner
    of the detector's band-pass. The worker's decoder shares the gateway's seismic band
    (schemas/seismic_band.py), so such a packet never reaches the detector: it is a ``schema`` dead
    letter, and the next packet goes through the same detector."""
    h = Harness()
    det = DetectorStage(DetectorEngine(), DetectorMetrics(CollectorRegistry()))
    store: dict[str, Any] = {}
    done: list[int] = []

    def handler(rec: Record) -> Any:
        async def handle() -> None:
            det.apply(decode_telemetry(rec.value), store, (rec.partition, rec.offset))
            done.append(rec.offset)

        return handle

    poison, good = Record(seismic(0.5), offset=7), Record(seismic(100.0), offset=8)
    for rec in (poison, good):
        run(h.guard.run("detect-seismic", rec, handler(rec)))
    [letter] = h.letters()
    assert (letter.reason, letter.offset, letter.exception_type) == (
        WorkerReason.SCHEMA,
        7,
        "tocsin.schemas.records.PoisonRecord",
    )
    assert "10..1000 Hz" in letter.message and "Nyquist" in letter.message
    assert letter.raw == poison.value
    assert done == [8] and "ST-1" in store  # the next record went through the same detector
    assert h.count("detect-seismic", "schema") == 1


def test_any_exception_while_handling_a_decoded_record_is_a_processing_dead_letter() -> None:
    """Whatever the stage raises (here a ZeroDivisionError in the middle of an alert's delivery)."""
    h = Harness()

    async def handle() -> None:
        decode_alert(encode(alert_message("A-1")))
        _ = 1 / 0

    assert run(h.guard.run("deliver", Record(b"x", topic="alerts", offset=3), handle)) is None
    [letter] = h.letters()
    assert (letter.reason, letter.agent, letter.topic, letter.offset) == (
        WorkerReason.PROCESSING,
        "deliver",
        "alerts",
        3,
    )
    assert letter.exception_type == "builtins.ZeroDivisionError" and letter.message == "division by zero"
    assert h.count("deliver", "processing") == 1


def test_the_handlers_result_is_returned_and_nothing_is_sent_when_it_succeeds() -> None:
    h = Harness()

    async def handle() -> str:
        return "ok"

    assert run(h.guard.run("detect-seismic", Record(b"{}"), handle)) == "ok"
    assert h.sent == []


def test_cancellation_is_never_swallowed() -> None:
    h = Harness()

    async def handle() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        run(h.guard.run("detect-seismic", Record(b"{}"), handle))
    assert h.sent == []


def test_when_kafka_does_not_take_the_dead_letter_the_error_propagates_so_the_record_is_not_acknowledged() -> None:
    h = Harness(fail_send=True)

    async def handle() -> None:
        decode_alert(b"garbage")

    with pytest.raises(ConnectionError):
        run(h.guard.run("deliver", Record(b"garbage", topic="alerts"), handle))
    assert h.count("deliver", "undecodable") in (None, 0.0)  # counted only once Kafka has it


def test_an_oversized_record_keeps_a_prefix_under_kafkas_record_limit() -> None:
    h = Harness()
    raw = b"x" * (WORKER_RAW_MAX + 5000)

    async def handle() -> None:
        decode_detection(raw)

    run(h.guard.run("confirm", Record(raw, topic="detections"), handle))
    [(_, value)] = h.sent
    [letter] = h.letters()
    assert letter.raw_truncated and letter.raw_size == len(raw) and letter.raw == raw[:WORKER_RAW_MAX]
    assert len(value) < 1_000_000  # Kafka's default max.message.bytes is 1,048,588


def test_the_correlation_id_header_is_kept() -> None:
    h = Harness()

    async def handle() -> None:
        decode_detection(b"{}")

    run(h.guard.run("confirm", Record(b"{}", headers=[("tocsin-correlation-id", b"c-123")]), handle))
    assert h.letters()[0].correlation_id == "c-123"


def test_the_silence_store_reports_each_record_it_skips_and_only_those() -> None:
    """The worker turns these reports into dead letters with agent ``silences`` (tocsin/worker.py)."""
    rejected: list[tuple[int, str]] = []
    store = SilenceStore(on_rejected=lambda rec, why: rejected.append((rec.offset, why)))
    good = Silence(id="s-1", area="3301", starts_at=T0, ends_at=T0.replace(hour=9), creator="ops", reason="drill")
    records = [
        Record(encode(good), topic="alerts.silences", partition=0, offset=0, key=b"s-1"),
        Record(b"{not a silence", topic="alerts.silences", partition=0, offset=1, key=b"s-2"),
        Record(encode(good), topic="alerts.silences", partition=0, offset=2, key=b"s-3"),  # key is not the id
        Record(encode(good), topic="alerts.silences", partition=0, offset=3, key=None),
        Record(None, topic="alerts.silences", partition=0, offset=4, key=b"s-9"),  # a tombstone: fine
    ]
    for rec in records:
        store._record(rec)
    assert [offset for offset, _ in rejected] == [1, 2, 3]
    assert "json_invalid" in rejected[0][1] and "key" in rejected[1][1] and "key" in rejected[2][1]
    assert [s.id for s in store.all()] == ["s-1"]


def test_a_clock_tick_that_raises_is_counted_and_the_next_tick_runs() -> None:
    """The worker's timers and the embedded mode's clocks (deadman, alert lifecycle) run through
    ``RecordGuard.tick`` (tocsin/topology.py): a failing tick must not stop the clock."""
    registry = CollectorRegistry()
    guard = RecordGuard(lambda k, v: asyncio.sleep(0), DeadLetterMetrics(registry, timers=["deadman"]))
    ran: list[int] = []

    async def failing() -> None:
        raise RuntimeError("registry gone")

    async def working() -> int:
        ran.append(1)
        return 7

    assert registry.get_sample_value("tocsin_worker_timer_failures_total", {"timer": "deadman"}) == 0.0
    assert run(guard.tick("deadman", failing)) is None
    assert run(guard.tick("deadman", working)) == 7
    assert ran == [1]
    assert registry.get_sample_value("tocsin_worker_timer_failures_total", {"timer": "deadman"}) == 1.0

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):  # cancellation is how drivers stop: never swallowed
        run(guard.tick("deadman", cancelled))
