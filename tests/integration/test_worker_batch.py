"""Batch records (schemas/batch.py) on a telemetry topic, read by a real worker on real Kafka.

One batch record on partition 0 of ``telemetry.hazmat`` holds, in order: a valid gas reading of
device A (seq 0), a reading missing its fields, a valid reading of A (seq 1), the first reading
again (a gateway's redelivery: same seq and device time), and a valid reading of device B. Then a
batch record cut short (no final newline).

Then: the bad reading is on ``worker.deadletter`` alone, with its own bytes and its index in the
batch; the cut-short record is there as a whole; A's state (its table's changelog) is at the batch's
offset and the index of its last reading, and remembers both sequence numbers; B's state is written
too; the duplicate was counted as one; the worker is the process started.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.stack import Stack, running_stack, wait_records
from tocsin.schemas import topics
from tocsin.schemas.batch import BATCH_MAGIC, pack
from tocsin.schemas.common import Family
from tocsin.schemas.deadletter import WorkerDeadLetter, WorkerReason
from tocsin.schemas.registry import Registry
from tocsin.schemas.telemetry import GasReading
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
P = 0


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        services, tmp_path_factory.mktemp("batch"), RUN, Registry(), {"TOCSIN_INFLUX_URL": ""}, roles=("worker",)
    ) as s:
        yield s


def gas(device: str, seq: int, ts: datetime) -> bytes:
    return encode(GasReading(device_id=device, site=f"p-{RUN}", ts=ts, seq=seq, gas="CH4", value=1.0, unit="%LEL"))


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_batch_record_is_judged_reading_by_reading(stack: Stack) -> None:
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    worker_id = stack.env["TOCSIN_WORKER_ID"]
    pid = stack.worker.p.pid
    topic = topics.kafka_telemetry(Family.HAZMAT)
    now = datetime.now(UTC)
    dev_a, dev_b = f"GA-{RUN}", f"GB-{RUN}"
    bad = b'{"type":"hazmat.gas","device_id":"' + dev_a.encode() + b'"}'
    first = gas(dev_a, 0, now - timedelta(seconds=10))
    readings = [first, bad, gas(dev_a, 1, now - timedelta(seconds=5)), first, gas(dev_b, 0, now)]
    cut_short = BATCH_MAGIC + first  # no final newline: not a whole envelope

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def put(value: bytes, key: bytes) -> int:
        return int(producer.send(topic, key=key, value=value, partition=P).get(timeout=30).offset)

    before = metric(stack.worker_metrics(), "tocsin_detector_duplicates_total")
    at = put(pack(readings), dev_a.encode())
    cut_at = put(cut_short, dev_a.encode())
    producer.close(10)

    # 1. The bad reading alone, with its bytes and index; the cut-short record as a whole.
    def ours(rec: Any) -> bool:
        letter = json.loads(rec.value)
        return letter["topic"] == topic and letter["partition"] == P and letter["offset"] in (at, cut_at)

    found = wait_records(bootstrap, topics.WORKER_DEADLETTER, ours, want=2, start=stack.start_offsets, timeout_s=60)
    letters = {x.offset: x for x in (WorkerDeadLetter.model_validate_json(r.value) for r in found)}
    assert set(letters) == {at, cut_at}, stack.logs()
    assert (letters[at].raw, letters[at].batch_index, letters[at].reason) == (bad, 1, WorkerReason.SCHEMA)
    assert letters[at].agent == "detect-hazmat"
    assert (letters[cut_at].raw, letters[cut_at].batch_index) == (cut_short, None)
    assert letters[cut_at].reason is WorkerReason.UNDECODABLE

    # 2. A's state at the batch's offset and its last reading's index, both readings remembered; B's too.
    changelog = f"{worker_id}-detector-{Family.HAZMAT.value}-changelog"

    def state_of(device: str, position: list[int]) -> Any:
        def match(r: Any) -> bool:
            return (
                r.key is not None
                and device.encode() in r.key
                and r.value is not None
                and json.loads(r.value).get("position") == position
            )

        return json.loads(wait_records(bootstrap, changelog, match, timeout_s=30)[-1].value)

    state_a = state_of(dev_a, [P, at, 3 - 1])  # index 2: the duplicate (index 3) did not change the state
    assert [s[0] for s in state_a["seen"]] == [0, 1]
    state_of(dev_b, [P, at, 4])

    # 3. The duplicate counted, the same worker process, no agent crash.
    deadline = time.monotonic() + 10
    while metric(stack.worker_metrics(), "tocsin_detector_duplicates_total") < before + 1:
        assert time.monotonic() < deadline, "the duplicate reading was not counted"
        time.sleep(0.2)
    assert stack.worker.p.poll() is None and stack.worker.p.pid == pid
    for sign in ("Crashed reason", "Restarting dead", "Max restarts exceeded"):
        assert sign not in stack.worker.text()
