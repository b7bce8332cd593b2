"""The per-record guard of both drivers: a record a stage cannot handle becomes a dead letter, not a crash.

Both drivers of the topology (tocsin/topology.py) use it: the Faust worker sends the dead letters to
Kafka ``worker.deadletter``, the embedded mode to the same topic of its in-process bus (kept in its
summary and logged). The clocks (deadman, alert lifecycle) run through :meth:`RecordGuard.tick`.

Every Faust agent of the worker (tocsin/worker.py) runs each record's handling through one
:class:`RecordGuard`. When the handling raises -- the record does not decode (``PoisonRecord``), or
a detector, the alert engine or delivery refuses it -- the guard produces a
:class:`~tocsin.schemas.deadletter.WorkerDeadLetter` to ``worker.deadletter`` (reason, agent, source topic,
partition and offset, the exception, the raw key and value), counts it in
``tocsin_worker_deadletters_total{agent,reason}`` and returns, so the agent goes on with the next
record. A reading of a batch record (schemas/batch.py) is guarded on its own (:class:`BatchReading`):
its dead letter holds that reading's bytes and its index in the batch. Without the guard Faust's
supervisor restarts the crashed agent, and a record that always raises would stop its partition.

The dead letter is awaited until Kafka has it, before the guard returns, so before the agent can
acknowledge the source record: if Kafka does not take it, the exception propagates, the record is
not acknowledged and is read again. Cancellation (``asyncio.CancelledError``, a ``BaseException``)
is never caught: Faust stops and rebalances agents by cancelling them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter

from tocsin.ingest.gateway import CORRELATION_HEADER, header
from tocsin.schemas.deadletter import WorkerDeadLetter, WorkerReason
from tocsin.schemas.records import PoisonRecord
from tocsin.schemas.wire import encode

log = logging.getLogger(__name__)

T = TypeVar("T")


class SourceRecord(Protocol):
    """What the guard needs of a consumed record (Faust's ``Message`` has all of it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


class DeadLetterNotTaken(Exception):
    """The dead letter of a batch record's reading could not be produced (:meth:`RecordGuard.set_aside`)."""


@dataclass(slots=True)
class BatchReading:
    """One reading of a batch record (schemas/batch.py) as the guard sees it: the record's topic,
    partition, offset, key and headers, the reading's own bytes and its index in the batch."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    batch_index: int


class DeadLetterMetrics:
    """``tocsin_worker_deadletters_total{agent,reason}``; the series of ``agents`` start at 0, so a
    rule's ``increase()`` sees the first dead letter."""

    def __init__(self, registry: CollectorRegistry, agents: Iterable[str] = (), timers: Iterable[str] = ()) -> None:
        self.deadletters = Counter(
            "tocsin_worker_deadletters",
            "Kafka records a worker agent could not handle, set aside on worker.deadletter",
            ["agent", "reason"],
            registry=registry,
        )
        self.timer_failures = Counter(
            "tocsin_worker_timer_failures",
            "clock ticks (deadman, alert lifecycle) whose run raised; the next tick runs as usual",
            ["timer"],
            registry=registry,
        )
        for agent in agents:
            for reason in WorkerReason:
                self.deadletters.labels(agent, reason.value)
        for timer in timers:
            self.timer_failures.labels(timer)


SendDeadLetter = Callable[[bytes, bytes], Awaitable[object]]


class RecordGuard:
    """``send(key, value)`` must return once Kafka has the record (and raise if it cannot)."""

    def __init__(
        self,
        send: SendDeadLetter,
        metrics: DeadLetterMetrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.send, self.metrics, self.clock = send, metrics, clock

    async def run(self, agent: str, record: SourceRecord, handle: Callable[[], Awaitable[T]]) -> T | None:
        """``await handle()``; if it raises an ``Exception``, dead-letter ``record`` and return None.
        :class:`DeadLetterNotTaken` (a part's dead letter Kafka did not take) passes through."""
        try:
            return await handle()
        except DeadLetterNotTaken:
            raise
        except Exception as exc:  # noqa: BLE001 - the point of the guard; BaseException (cancellation) passes
            await self.dead_letter(agent, record, exc)
            return None

    async def set_aside(self, agent: str, part: BatchReading, exc: Exception) -> None:
        """Dead-letter one reading of a batch record, whose handling raised ``exc``. If Kafka does not
        take the dead letter, raises :class:`DeadLetterNotTaken`, which :meth:`run` lets through: the
        batch record is then not acknowledged (read again), as a single record would not be."""
        try:
            await self.dead_letter(agent, part, exc)
        except Exception as failed:  # noqa: BLE001 - re-raised as what ``run`` does not catch
            raise DeadLetterNotTaken(
                f"dead letter of {part.topic}[{part.partition}]@{part.offset}/{part.batch_index}"
            ) from failed

    async def tick(self, timer: str, handle: Callable[[], Awaitable[T]]) -> T | None:
        """``await handle()`` for one run of a clock (no record to set aside): if it raises an
        ``Exception``, count it in ``tocsin_worker_timer_failures_total{timer}``, log it and return
        None, so the timer runs again at its next tick instead of stopping the driver."""
        try:
            return await handle()
        except Exception:  # noqa: BLE001 - the point of the guard; BaseException (cancellation) passes
            self.metrics.timer_failures.labels(timer).inc()
            log.exception("%s: tick failed; the next one runs as usual", timer)
            return None

    async def dead_letter(self, agent: str, record: SourceRecord, exc: Exception) -> WorkerDeadLetter:
        reason = exc.reason if isinstance(exc, PoisonRecord) else WorkerReason.PROCESSING
        try:
            cid = header(record.headers, CORRELATION_HEADER) or ""
        except Exception:  # noqa: BLE001 - a malformed header must not stop the dead letter
            cid = ""
        index = getattr(record, "batch_index", None)
        letter = WorkerDeadLetter.of(
            record.value,
            reason=reason,
            agent=agent,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            exc=exc,
            failed_at=self.clock(),
            key=record.key,
            correlation_id=cid,
            batch_index=index,
        )
        where = f"{record.topic}/{record.partition}/{record.offset}" + ("" if index is None else f"/{index}")
        await self.send(where.encode(), encode(letter))
        self.metrics.deadletters.labels(agent, reason.value).inc()
        log.error(
            "%s: record %s[%d]@%d set aside on worker.deadletter (%s): %s: %s",
            agent,
            record.topic,
            record.partition,
            record.offset,
            reason.value,
            letter.exception_type,
            letter.message[:300],
            exc_info=reason is WorkerReason.PROCESSING,
            extra={"correlation_id": cid},
        )
        return letter
