"""The delivery sweep: a starting worker finishes fan-outs a previous run left incomplete.

The ``deliver`` agent commits an ``alerts`` offset only after the message's delivery, so a crash
normally redelivers it. That guarantee rests on Faust's offset bookkeeping, which has been seen to
commit past a message whose fan-out was still in flight (one run of the fan-out restart test: 94 of
120 recipients never warned; Faust's gap and ack logic is the suspect). A missed warning is the
worst outcome here, so the worker does not rely on it alone: when it starts, it reads the alert
messages of the last ``window`` from the ``alerts`` partitions it owns, and the delivery audit
(``alerts.deliveries``) of the same time, and delivers again every message with fewer final delivery
records on some channel than the routing plans for it. The providers' idempotency keys (alert
identifier, recipient, revision) make that safe: a recipient already served gets nothing new, and
the audit shows a ``duplicate``.

``incomplete`` is the pure part: which messages to deliver again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

from pydantic import BaseModel

from alerts.adapters.base import Notification
from schemas.alert import Alert
from schemas.delivery import DeliveryRecord

M = TypeVar("M", bound=BaseModel)

# Dispatch outcomes that end a notification (a carrier's later receipt, ``delivered`` or
# ``undelivered``, is not one: it follows an ``accepted``).
FINAL = frozenset({"accepted", "duplicate", "rejected", "gave_up", "suppressed"})


def incomplete(
    alerts: Iterable[Alert],
    records: Iterable[DeliveryRecord],
    plan: Callable[[Alert], list[Notification]],
) -> list[Alert]:
    """The alert messages (in the order given, each once) whose final delivery records fall short of
    the notifications ``plan`` makes for them, on any channel."""
    done: Counter[tuple[str, str]] = Counter((r.alert_id, r.channel) for r in records if r.outcome in FINAL)
    out: list[Alert] = []
    seen: set[str] = set()
    for alert in alerts:
        if alert.identifier in seen:
            continue
        seen.add(alert.identifier)
        wanted = Counter(n.channel for n in plan(alert))
        if any(done[(alert.identifier, channel)] < n for channel, n in wanted.items()):
            out.append(alert)
    return out


def read_since(
    bootstrap: str,
    topic: str,
    since_ms: int,
    *,
    partitions: Iterable[int] | None = None,
    before: dict[int, int] | None = None,
    timeout_s: float = 30.0,
) -> list[bytes]:
    """Record values of ``topic`` from ``since_ms`` (epoch ms) to its current end (kafka-python,
    blocking: call it in a thread). ``partitions``: only these; ``before``: per partition, only
    offsets below this one (the group's committed offset; a partition missing from it: none).
    Bounded by ``timeout_s``."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        chosen = sorted(partitions) if partitions is not None else sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in chosen]
        if not tps:
            return []
        starts = consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = consumer.end_offsets(tps)
        # a partition the group has no offset for is read in full by the group anyway: nothing to sweep
        stop = {tp: ends[tp] if before is None else min(ends[tp], before.get(tp.partition, 0)) for tp in tps}
        todo = {tp for tp in tps if starts.get(tp) is not None and starts[tp].offset < stop[tp]}
        if not todo:
            return []
        consumer.assign(sorted(todo, key=lambda tp: tp.partition))
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, recs in consumer.poll(timeout_ms=500).items():
                out += [r.value for r in recs if r.offset < stop[tp] and r.value is not None]
                if consumer.position(tp) >= stop[tp]:
                    todo.discard(tp)
        return out
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset per partition of ``topic`` (kafka-python, blocking)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id=f"{group}-sweep")
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0}


def parsed(model: type[M], values: Iterable[bytes]) -> list[M]:
    """The values that decode as ``model`` (others were never valid messages: skipped)."""
    out: list[M] = []
    for v in values:
        try:
            out.append(model.model_validate_json(v))
        except ValueError:
            continue
    return out
