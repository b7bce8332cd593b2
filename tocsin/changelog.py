"""A batch's acknowledgement held until Kafka has confirmed the table changelog records it produced.

The worker's batched agents (tocsin/worker.py ``run_batched``) write their table state once per
batch (``BatchedState.flush``): into the in-memory table at once, and to the table's changelog
topic through Faust's producer, which only queues the records. Faust commits the input offsets of
acknowledged records, and the producer flush it does before a commit gives up after 0.1 s without
progress and does not look at failed sends. Acknowledging a batch as soon as its changelog records
are queued could therefore commit its input offsets while its state has not reached Kafka: a crash
then would restart the worker from a changelog without that state and past the records that made it.

``ConfirmedAcks.hold`` keeps one more reference on every message of the batch (Faust's own
acknowledgement at the end of the batch then does not release it) and waits, in a task of its own,
for Kafka's confirmation (acks=all) of each changelog record of the batch; then it acknowledges the
batch and Faust may commit its offsets. The agent does not wait: it goes on with the next records
(the urgent lane's alerts are emitted while a record is handled, before its batch ends, and never
wait for any of this). A record whose send fails is sent again with the key's value at that time
(the latest state, which includes the failed one), after ``retry_s`` (doubled at every new failure of
the batch, up to ``RETRY_MAX_S``). A batch still unconfirmed
after ``confirm_s``, or with a failed send, is counted once
(``tocsin_worker_changelog_unconfirmed_total``) and logged; it stays unacknowledged until Kafka
confirms: its offsets are not committed, and a restart reads its records again. A rebalance that
starts while a batch is late does not wait for it (Faust's would wait for every record in flight):
the batch lets go of its records uncommitted, the partitions' owner reads them again from the last
commit, and its changelog records are sent again only if this worker still holds the partitions
once the rebalance is over (another owner may have written newer state).

No Faust import: the events need only ``message.incref()`` and ``ack()``, the sends are asyncio
futures. Measured cost and rationale: docs/throughput.md, "Changelog durability".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

RETRY_MAX_S = 60.0  # longest wait before a failed changelog record is sent again
WATCH_S = 1.0  # how often a late batch looks for a rebalance


@dataclass(frozen=True)
class Sent:
    """One changelog record of a batch: the table key, its changelog partition and the send's future
    (resolved when Kafka confirmed the record, or failed)."""

    key: str
    partition: int
    future: asyncio.Future[Any]


class ChangelogMetrics:
    """``tocsin_worker_changelog_unconfirmed_total{agent}`` and ``tocsin_worker_changelog_held_records{agent}``."""

    def __init__(self, registry: CollectorRegistry, agents: Iterable[str] = ()) -> None:
        self.unconfirmed = prometheus_client.Counter(
            "tocsin_worker_changelog_unconfirmed_total",
            "batches whose table changelog records Kafka had not confirmed within TOCSIN_WORKER_CHANGELOG_CONFIRM_S,"
            " or refused (sent again): their input offsets are not committed until it confirms",
            ["agent"],
            registry=registry,
        )
        self.held = prometheus_client.Gauge(
            "tocsin_worker_changelog_held_records",
            "input records handled whose acknowledgement (offset commit) waits for Kafka to confirm their"
            " batch's table changelog records",
            ["agent"],
            registry=registry,
        )
        for agent in agents:  # a series at 0 from the start: rules and panels see "none", not "no data"
            self.unconfirmed.labels(agent)
            self.held.labels(agent)


class ConfirmedAcks:
    """The batches of one agent whose acknowledgement waits for their changelog records (see the module)."""

    def __init__(
        self,
        agent: str,
        metrics: ChangelogMetrics,
        confirm_s: float,
        retry_s: float = 1.0,
        rebalancing: Callable[[], bool] = lambda: False,
        owned: Callable[[Sequence[Any]], bool] = lambda events: True,
    ) -> None:
        self.agent = agent
        self.confirm_s = confirm_s
        self.retry_s = retry_s
        self.rebalancing = rebalancing  # a rebalance is going on
        self.owned = owned  # this worker still holds the partitions of these events
        self._unconfirmed = metrics.unconfirmed.labels(agent)
        self._held = metrics.held.labels(agent)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def batches(self) -> int:
        """Batches still waiting for Kafka."""
        return len(self._tasks)

    def hold(
        self,
        events: Sequence[Any],
        sent: Sequence[Sent],
        send_again: Callable[[str, int], asyncio.Future[Any]],
        ack: Callable[[Any], object] = lambda event: event.ack(),
        release: Callable[[Any], object] = lambda event: None,
    ) -> None:
        """Keep ``events`` unacknowledged until every record of ``sent`` is confirmed, then ``ack`` each;
        ``send_again(key, partition)`` sends a key's current value once more after a failed send;
        ``release(event)`` lets go of a record without acknowledging it (a rebalance while the batch
        is late). Returns at once: call it before the batch's own acknowledgement (the end of the
        ``take_events`` iteration)."""
        if not sent:
            return
        for event in events:
            event.message.incref()
        self._held.inc(len(events))
        task = asyncio.get_running_loop().create_task(self._confirm(list(events), list(sent), send_again, ack, release))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_all(self) -> None:
        """Until every batch held now is acknowledged (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _confirm(
        self,
        events: list[Any],
        sent: list[Sent],
        send_again: Callable[[str, int], asyncio.Future[Any]],
        ack: Callable[[Any], object],
        release: Callable[[Any], object],
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending: dict[asyncio.Future[Any], Sent] = {s.future: s for s in sent}
        late = False
        retry_s = self.retry_s
        to_send: list[Sent] = []  # failed, sent again at ``send_at``
        send_at = 0.0
        released = False
        while pending or to_send:
            if late and self.rebalancing():
                if not released:
                    self._release(events, release)
                    released = True
                while self.rebalancing():
                    await asyncio.sleep(WATCH_S)
                if not self.owned(events):
                    log.warning(
                        "changelog records of a released %s batch no longer sent again: its partitions moved to"
                        " another worker, which reads its records again",
                        self.agent,
                    )
                    return
            if to_send and loop.time() >= send_at:
                for s in to_send:
                    try:
                        again = send_again(s.key, s.partition)
                    except Exception as exc:  # noqa: BLE001 - the producer refused at once: try again later
                        log.warning("changelog record of %s not sent again: %r", self.agent, exc)
                        again = loop.create_future()
                        again.set_exception(exc)
                    pending[again] = Sent(s.key, s.partition, again)
                to_send = []
            if not late:
                timeout = max(0.0, started + self.confirm_s - loop.time())
            else:  # wake up to watch for a rebalance and to send again
                timeout = WATCH_S if not to_send else max(0.0, min(WATCH_S, send_at - loop.time()))
            done: set[asyncio.Future[Any]] = set()
            if pending:
                done, _ = await asyncio.wait(set(pending), timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
            else:
                await asyncio.sleep(timeout)
            failed: list[tuple[Sent, BaseException]] = []
            for future in done:
                s = pending.pop(future)
                error = asyncio.CancelledError() if future.cancelled() else future.exception()
                if error is not None:
                    failed.append((s, error))
            if not late and (failed or pending):  # a send failed, or the bound passed with sends pending
                late = True
                self._unconfirmed.inc()
                log.error(
                    "changelog of a %s batch not confirmed by Kafka (%d of %d records %s): its %d input"
                    " records stay unacknowledged (offsets not committed) until it is",
                    self.agent,
                    len(pending) + len(failed),
                    len(sent),
                    f"failed: {failed[0][1]!r}" if failed else f"pending after {self.confirm_s:g} s",
                    len(events),
                )
            if failed:
                if not to_send:
                    send_at = loop.time() + retry_s
                    retry_s = min(2 * retry_s, RETRY_MAX_S)  # a refusal that lasts is not retried every second
                to_send.extend(s for s, _error in failed)
        if released:  # still this worker's: the state reached Kafka, the records were let go already
            log.warning(
                "changelog of a released %s batch confirmed by Kafka after %.1f s", self.agent, loop.time() - started
            )
            return
        for event in events:
            ack(event)
        self._held.dec(len(events))
        if late:
            log.warning(
                "changelog of a %s batch confirmed by Kafka after %.1f s: its %d input records acknowledged",
                self.agent,
                loop.time() - started,
                len(events),
            )

    def _release(self, events: list[Any], release: Callable[[Any], object]) -> None:
        """A rebalance while the batch is unconfirmed: its records are released without being
        acknowledged (Faust's rebalance waits for every record in flight, and would wait for Kafka); they
        are read again from the last commit. Once the rebalance is over, its changelog records are sent
        again only if this worker still holds the partitions (another owner may write newer state)."""
        for event in events:
            release(event)
        self._held.dec(len(events))
        log.warning(
            "changelog of a %s batch still unconfirmed at a rebalance: its %d input records released"
            " uncommitted (read again from the last commit)",
            self.agent,
            len(events),
        )
