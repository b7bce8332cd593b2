"""``BatchedState.flush`` and ``ConfirmedAcks`` (tocsin/changelog.py): a batch's records are
acknowledged only once Kafka confirmed every changelog record its flush produced; a failed record is
sent again with the key's current value; a late or failed batch is counted once.

The messages are Faust's own ``ConsumerMessage`` (its reference count and final acknowledgement); the
table stands for a Faust table (``data`` and ``send_changelog``) whose sends are plain futures that
the test resolves as Kafka would."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types.tuples import ConsumerMessage
from prometheus_client import CollectorRegistry

from tocsin.changelog import ChangelogMetrics, ConfirmedAcks
from tocsin.worker import BatchedState

AGENT = "confirm"


class Table:
    """What ``BatchedState`` uses of a Faust table; every changelog send is recorded with its future."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sends: list[tuple[int, str, Any, asyncio.Future[Any]]] = []

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def keys(self) -> Any:
        return self.data.keys()

    def send_changelog(self, partition: int, key: str, value: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sends.append((partition, key, value, future))
        return future


class Consumer:
    """Records the final acknowledgements (what Faust's ``Consumer.ack`` would make committable)."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: ConsumerMessage) -> bool:
        message.acked = True
        self.acked.append(message.offset)
        return True


class Event:
    """A stream's event: one reference on its message, as the conductor gives it for one agent."""

    def __init__(self, consumer: Consumer, offset: int) -> None:
        self.consumer = consumer
        self.message = ConsumerMessage("detections", 1, offset, 0.0, 0, [], b"k", b"v", None)
        self.message.incref()

    def ack(self) -> bool:
        return self.message.ack(self.consumer)


def _counted(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"agent": AGENT})


async def _until(condition: Any) -> None:
    """Let the event loop run until ``condition()`` (bounded in steps, not in time)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def _batch(consumer: Consumer, offsets: range, state: BatchedState, writes: dict[str, int]) -> list[Event]:
    events = [Event(consumer, o) for o in offsets]
    for key, partition in writes.items():
        state.partition = partition
        state[key] = {"position": [partition, offsets[-1]]}
    return events


def test_a_batch_is_acknowledged_once_kafka_confirmed_all_its_changelog_records() -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        acks = ConfirmedAcks(AGENT, ChangelogMetrics(registry, [AGENT]), confirm_s=60.0)
        table, consumer = Table(), Consumer()
        state = BatchedState(table)
        events = _batch(consumer, range(10, 13), state, {"fp-a": 1, "fp-b": 1})
        sent = state.flush()
        assert [(s.key, s.partition) for s in sent] == [("fp-a", 1), ("fp-b", 1)]
        assert table.data["fp-a"] == {"position": [1, 12]}  # the in-memory table has it at once
        acks.hold(events, sent, state.send_again)
        for event in events:  # the stream's own acknowledgement at the end of the batch
            event.ack()
        assert consumer.acked == [] and acks.batches == 1
        assert _counted(registry, "tocsin_worker_changelog_held_records") == 3
        table.sends[0][3].set_result("ok")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert consumer.acked == []  # one record of two confirmed: still held
        table.sends[1][3].set_result("ok")
        await asyncio.wait_for(acks.wait_all(), 60)  # bounded: a hold that never ends fails
        assert consumer.acked == [10, 11, 12]
        assert _counted(registry, "tocsin_worker_changelog_held_records") == 0
        assert _counted(registry, "tocsin_worker_changelog_unconfirmed_total") == 0

    asyncio.run(run())


def test_a_failed_record_is_sent_again_with_the_current_value_and_the_batch_counted_once() -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        acks = ConfirmedAcks(AGENT, ChangelogMetrics(registry, [AGENT]), confirm_s=60.0, retry_s=0.0)
        table, consumer = Table(), Consumer()
        state = BatchedState(table)
        events = _batch(consumer, range(5, 7), state, {"fp-a": 2})
        acks.hold(events, state.flush(), state.send_again)
        for event in events:
            event.ack()
        # a later batch wrote the key meanwhile (held, not flushed): sent again is the table's value
        later = _batch(consumer, range(7, 8), state, {"fp-a": 2})
        table.sends[0][3].set_exception(RuntimeError("NotEnoughReplicas"))
        await _until(lambda: len(table.sends) == 2)
        assert table.sends[1][:3] == (2, "fp-a", {"position": [2, 6]})
        assert _counted(registry, "tocsin_worker_changelog_unconfirmed_total") == 1
        assert consumer.acked == []
        # the later batch's flush also waits for the send still outstanding for this state
        later_sent = state.flush()
        assert {s.future for s in later_sent} >= {table.sends[1][3]}
        acks.hold(later, later_sent, state.send_again)
        later[0].ack()
        table.sends[1][3].set_exception(RuntimeError("NotEnoughReplicas"))  # fails again: counted once per batch
        await _until(lambda: len(table.sends) >= 5)
        assert _counted(registry, "tocsin_worker_changelog_unconfirmed_total") == 2  # one per batch
        assert consumer.acked == []
        for *_, future in table.sends:
            if not future.done():
                future.set_result("ok")
        await asyncio.wait_for(acks.wait_all(), 60)  # bounded: a hold that never ends fails
        assert sorted(consumer.acked) == [5, 6, 7]
        assert table.data["fp-a"] == {"position": [2, 7]}

    asyncio.run(run())


def test_a_batch_unconfirmed_past_the_bound_is_counted_and_still_held() -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        acks = ConfirmedAcks(AGENT, ChangelogMetrics(registry, [AGENT]), confirm_s=0.001)
        table, consumer = Table(), Consumer()
        state = BatchedState(table)
        events = _batch(consumer, range(40, 41), state, {"fp-z": 0})
        acks.hold(events, state.flush(), state.send_again)
        events[0].ack()
        await _until(lambda: _counted(registry, "tocsin_worker_changelog_unconfirmed_total") == 1)
        assert consumer.acked == [] and acks.batches == 1 and len(table.sends) == 1  # a stall is not a failure
        table.sends[0][3].set_result("ok")
        await asyncio.wait_for(acks.wait_all(), 60)  # bounded: a hold that never ends fails
        assert consumer.acked == [40]
        assert _counted(registry, "tocsin_worker_changelog_unconfirmed_total") == 1

    asyncio.run(run())


def test_a_batch_without_changelog_records_is_left_to_the_stream() -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        acks = ConfirmedAcks(AGENT, ChangelogMetrics(registry, [AGENT]), confirm_s=60.0)
        state, consumer = BatchedState(Table()), Consumer()
        events = [Event(consumer, 3)]
        acks.hold(events, state.flush(), state.send_again)
        events[0].ack()
        assert consumer.acked == [3] and acks.batches == 0

    asyncio.run(run())


def test_a_late_batch_lets_go_of_its_records_uncommitted_when_a_rebalance_starts() -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        rebalancing = [False]
        acks = ConfirmedAcks(
            AGENT,
            ChangelogMetrics(registry, [AGENT]),
            confirm_s=60.0,
            retry_s=0.0,
            rebalancing=lambda: rebalancing[0],
            owned=lambda events: False,  # the rebalance moves the partition to another worker
        )
        table, consumer = Table(), Consumer()
        state = BatchedState(table)
        events = _batch(consumer, range(70, 72), state, {"fp-r": 1})
        released: list[int] = []
        acks.hold(events, state.flush(), state.send_again, release=lambda e: released.append(e.message.offset))
        for event in events:
            event.ack()
        table.sends[0][3].set_exception(RuntimeError("MessageSizeTooLarge"))
        await _until(lambda: len(table.sends) == 2)  # late: sent again
        rebalancing[0] = True  # a rebalance starts while the batch waits
        await _until(lambda: released == [70, 71])
        assert consumer.acked == []  # let go, never committed
        assert _counted(registry, "tocsin_worker_changelog_held_records") == 0
        rebalancing[0] = False  # over, and the partition moved to another worker
        await asyncio.wait_for(acks.wait_all(), 60)  # bounded: a hold that never ends fails
        table.sends[1][3].set_exception(RuntimeError("MessageSizeTooLarge"))
        await asyncio.sleep(0)
        assert len(table.sends) == 2  # no longer sent again: the partition's next owner writes the state
        assert consumer.acked == []

    asyncio.run(run())


def test_a_released_batch_of_a_partition_kept_is_sent_until_kafka_has_it() -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        rebalancing = [False]
        acks = ConfirmedAcks(
            AGENT,
            ChangelogMetrics(registry, [AGENT]),
            confirm_s=60.0,
            retry_s=0.0,
            rebalancing=lambda: rebalancing[0],
            owned=lambda events: True,  # the rebalance gave the partition back to this worker
        )
        table, consumer = Table(), Consumer()
        state = BatchedState(table)
        events = _batch(consumer, range(80, 81), state, {"fp-k": 1})
        released: list[int] = []
        acks.hold(events, state.flush(), state.send_again, release=lambda e: released.append(e.message.offset))
        events[0].ack()
        table.sends[0][3].set_exception(RuntimeError("NotLeaderForPartition"))
        await _until(lambda: len(table.sends) == 2)
        rebalancing[0] = True
        await _until(lambda: released == [80])
        rebalancing[0] = False
        table.sends[1][3].set_exception(RuntimeError("NotLeaderForPartition"))
        await _until(lambda: len(table.sends) == 3)  # still this worker's: the state is sent again
        table.sends[2][3].set_result("ok")
        await asyncio.wait_for(acks.wait_all(), 60)  # bounded: a hold that never ends fails
        assert consumer.acked == []  # the records were let go: their copies read again are acknowledged
        assert _counted(registry, "tocsin_worker_changelog_held_records") == 0

    asyncio.run(run())
