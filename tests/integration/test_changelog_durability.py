"""A batch's input offsets are committed only once Kafka confirmed its table changelog records
(tocsin/changelog.py), with a real worker on real Kafka.

The detector table of the hazmat family has its changelog topic's ``max.message.bytes`` set below
the size of one state record: the broker refuses every changelog record of that table
(MESSAGE_TOO_LARGE, not retried by the producer), as it would refuse a state that outgrew the
topic's limit. A gas reading then:

1. is handled (its state is in the worker's memory) but its changelog record is not confirmed: the
   batch is counted (``tocsin_worker_changelog_unconfirmed_total``) and held;
2. its offset is not committed, even after a commit that came later (a rain reading produced after
   it, whose changelog is healthy, is committed): without the hold, Faust commits it, since its
   pre-commit producer flush returns once the refused send is done;
3. once the topic takes records again, the state reaches the changelog (sent again) and then the
   reading's offset is committed, and nothing is held any more.

And the urgent lane: a red detection's alert is issued while the alert lifecycle's changelog refuses
its state, and the detection's offset waits for that state.

And a rebalance: a worker that joins while a batch waits does not wait for it; the state still
reaches the changelog and the offset is committed once the topic takes records again.

Also: the operators' release decisions (``alerts.releases``) are under the strict commit rule (its
re-seek counter exists from the start, like every strict topic's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from tests.integration.procs import Proc, free_port, tocsin, wait_until
from tests.integration.stack import Stack, http_status, running_stack, wait_records
from tocsin.detectors.engine import detection_key, detection_topic
from tocsin.kafka import committed_offsets
from tocsin.schemas import topics
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Registry
from tocsin.schemas.telemetry import GasReading, RainIncrement
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
P = 1


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_WORKER_CHANGELOG_CONFIRM_S": "1",
        "TOCSIN_WORKER_DETECT_BATCH_MS": "50",
    }
    with running_stack(services, tmp_path_factory.mktemp("changelog"), RUN, Registry(), env, roles=("worker",)) as s:
        yield s


def metric(text: str, name: str, labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def set_max_message_bytes(bootstrap: str, topic: str, limit: int | None) -> None:
    """The changelog topic's configuration: compacted, and ``max.message.bytes`` when given (a
    whole-set update: the compaction is restated; None: the broker's default limit)."""
    configs = {"cleanup.policy": "compact"}
    if limit is not None:
        configs["max.message.bytes"] = str(limit)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"changelog-test-{RUN}")
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        admin.close()


def test_offsets_wait_for_the_changelog_and_are_committed_once_kafka_confirmed_it(stack: Stack) -> None:
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    group = stack.env["TOCSIN_WORKER_ID"]
    gas_topic, rain_topic = topics.kafka_telemetry(Family.HAZMAT), topics.kafka_telemetry(Family.HYDRO)
    changelog = f"{group}-detector-{Family.HAZMAT.value}-changelog"
    device, gauge = f"GD-{RUN}", f"RG-{RUN}"
    now = datetime.now(UTC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def put(topic: str, value: bytes, key: str) -> int:
        return int(producer.send(topic, key=key.encode(), value=value, partition=P).get(timeout=30).offset)

    def gas(seq: int) -> bytes:
        ts = now - timedelta(seconds=30 - seq)
        return encode(GasReading(device_id=device, site=f"s-{RUN}", ts=ts, seq=seq, gas="CH4", value=1.0, unit="%LEL"))

    def committed(topic: str) -> int:
        return committed_offsets(bootstrap, group, topic).get(P, -1)

    def worker_metric(name: str, agent: str = "detect-hazmat") -> float | None:
        return metric(stack.worker_metrics(), name, f'agent="{agent}"')

    # the strict topics, alerts.releases among them: their re-seek counters exist from the start
    assert metric(stack.worker_metrics(), "tocsin_worker_partition_reseeks_total", f'topic="{topics.RELEASES}"') == 0
    assert worker_metric("tocsin_worker_changelog_unconfirmed_total") == 0

    # 0. Healthy: a reading's offset is committed once its state is in the changelog.
    first = put(gas_topic, gas(0), device)
    wait_until(lambda: committed(gas_topic) > first, 60, "the first reading's offset committed")

    try:
        # 1. The changelog refuses records: the next reading is handled, its batch held and counted.
        set_max_message_bytes(bootstrap, changelog, 40)
        at = put(gas_topic, gas(1), device)
        wait_until(
            lambda: (worker_metric("tocsin_worker_changelog_unconfirmed_total") or 0) >= 1,
            60,
            "the unconfirmed changelog batch counted",
        )
        assert (worker_metric("tocsin_worker_changelog_held_records") or 0) >= 1

        # 2. A later reading of another family (its changelog is healthy) is committed: a commit
        #    happened after the gas reading's batch ended, and the gas reading's offset is not in it.
        rain = RainIncrement(device_id=gauge, site=f"s-{RUN}", ts=now, seq=1, rain_mm=0.2, interval_s=300)
        rain_at = put(rain_topic, encode(rain), gauge)
        wait_until(lambda: committed(rain_topic) > rain_at, 90, "the rain reading's offset committed")
        assert committed(gas_topic) <= at, "the offset of a reading whose state Kafka did not confirm was committed"
        assert (worker_metric("tocsin_worker_changelog_held_records") or 0) >= 1
    finally:
        # 3. The changelog takes records again.
        set_max_message_bytes(bootstrap, changelog, None)

    def state_at_offset(rec: Any) -> bool:
        return rec.key is not None and device.encode() in rec.key and json.loads(rec.value)["position"][:2] == [P, at]

    wait_records(bootstrap, changelog, state_at_offset, timeout_s=90)
    wait_until(lambda: committed(gas_topic) > at, 90, "the reading's offset committed after the confirmation")
    wait_until(lambda: worker_metric("tocsin_worker_changelog_held_records") == 0, 30, "nothing held any more")
    producer.close(10)
    log = stack.worker.text()
    assert "changelog of a detect-hazmat batch confirmed by Kafka after" in log
    for sign in ("Crashed reason", "Restarting dead", "Max restarts exceeded"):
        assert sign not in log


def test_a_red_alert_is_issued_while_its_state_waits_for_the_changelog(stack: Stack) -> None:
    """The urgent lane: a red detection's alert is on ``alerts`` while the alert lifecycle's changelog
        refuses its state; the detection's offset is not committed (even by a commit after a later record
    of a healthy table), and is once Kafka has the state."""
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    group = stack.env["TOCSIN_WORKER_ID"]
    changelog = f"{group}-alert-lifecycle-changelog"
    now = datetime.now(UTC)
    red = Detection(
        id=f"RD-{RUN}:rainfall:{int(now.timestamp() * 1000)}:0",
        device_id=f"RD-{RUN}",
        site=f"s-{RUN}",
        family=Family.HYDRO,
        kind="rainfall",
        state=DetectionState.OPEN,
        level=WarningLevel.RED,
        value=120.0,
        threshold=100.0,
        unit="mm",
        window_s=10800.0,
        onset=now,
        ts=now,
        area_code="719001",
        lat=30.2,
        lon=120.1,
        correlation_id=f"red-{RUN}",
    )
    assert detection_topic(red, WarningLevel.ORANGE) == topics.DETECTIONS_URGENT

    def committed(partition: int) -> int:
        return committed_offsets(bootstrap, group, topics.DETECTIONS_URGENT).get(partition, -1)

    def unconfirmed() -> float:
        name = "tocsin_worker_changelog_unconfirmed_total"
        return metric(stack.worker_metrics(), name, 'agent="confirm-urgent"') or 0

    before = unconfirmed()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        set_max_message_bytes(bootstrap, changelog, 40)
        sent = producer.send(topics.DETECTIONS_URGENT, key=detection_key(red), value=encode(red)).get(timeout=30)
        at, partition = int(sent.offset), int(sent.partition)
        alerts = wait_records(
            bootstrap,
            topics.ALERTS,
            lambda r: json.loads(r.value)["correlation_id"] == red.correlation_id,
            start=stack.start_offsets,
            timeout_s=60,
        )
        assert json.loads(alerts[0].value)["level"] == "red"
        wait_until(lambda: unconfirmed() > before, 60, "the red detection's batch counted as unconfirmed")
        # a later record of a healthy table is committed: a commit happened after the red one's batch ended
        rain_topic, gauge = topics.kafka_telemetry(Family.HYDRO), f"RR-{RUN}"
        rain = RainIncrement(device_id=gauge, site=f"s-{RUN}", ts=now, seq=1, rain_mm=0.2, interval_s=300)
        rain_at = int(producer.send(rain_topic, key=gauge.encode(), value=encode(rain), partition=P).get(30).offset)
        rain_committed = lambda: committed_offsets(bootstrap, group, rain_topic).get(P, -1)  # noqa: E731
        wait_until(lambda: rain_committed() > rain_at, 90, "the rain reading committed")
        assert committed(partition) <= at, "the red detection's offset was committed before its state was in Kafka"
    finally:
        set_max_message_bytes(bootstrap, changelog, None)
        producer.close(10)
    wait_until(lambda: committed(partition) > at, 90, "the red detection's offset committed after the confirmation")


def test_a_rebalance_does_not_wait_for_an_unconfirmed_batch(stack: Stack, tmp_path: Path) -> None:
    """A second worker joins while a batch waits for a refused changelog record: the waiting worker
    lets go of the batch's records uncommitted (Faust's rebalance would otherwise wait for Kafka), both
    workers finish the rebalance, and once the topic takes records again the state reaches the
    changelog and the reading's offset is committed, whichever worker now holds its partition."""
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    group = stack.env["TOCSIN_WORKER_ID"]
    gas_topic = topics.kafka_telemetry(Family.HAZMAT)
    changelog = f"{group}-detector-{Family.HAZMAT.value}-changelog"
    device = f"GR-{RUN}"
    now = datetime.now(UTC)
    reading = GasReading(device_id=device, site=f"s-{RUN}", ts=now, seq=0, gas="CH4", value=1.0, unit="%LEL")
    name = "tocsin_worker_changelog_unconfirmed_total"
    before = metric(stack.worker_metrics(), name, 'agent="detect-hazmat"') or 0
    port = free_port()
    env = {**stack.env, "TOCSIN_WORKER_WEB_PORT": str(port), "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "second")}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    second: Proc | None = None
    try:
        try:
            set_max_message_bytes(bootstrap, changelog, 40)
            at = int(producer.send(gas_topic, key=device.encode(), value=encode(reading), partition=P).get(30).offset)
            wait_until(
                lambda: (metric(stack.worker_metrics(), name, 'agent="detect-hazmat"') or 0) > before,
                60,
                "the unconfirmed batch counted",
            )
            second = Proc(tocsin("worker"), tmp_path / "second.log", env)
            ready = [f"http://127.0.0.1:{p}/readyz" for p in (stack.worker_port, port)]
            wait_until(lambda: all(http_status(u) == 200 for u in ready), 120, "both workers ready after the rebalance")
            assert "released uncommitted" in stack.worker.text()
            assert committed_offsets(bootstrap, group, gas_topic).get(P, -1) <= at
        finally:
            set_max_message_bytes(bootstrap, changelog, None)
            producer.close(10)

        def state_at_offset(rec: Any) -> bool:
            return (
                rec.key is not None and device.encode() in rec.key and json.loads(rec.value)["position"][:2] == [P, at]
            )

        wait_records(bootstrap, changelog, state_at_offset, timeout_s=90)
        committed = lambda: committed_offsets(bootstrap, group, gas_topic).get(P, -1)  # noqa: E731
        wait_until(lambda: committed() > at, 90, "the reading's offset committed")
    finally:
        if second is not None:  # whatever happened: no worker of this test outlives it
            second.stop()
