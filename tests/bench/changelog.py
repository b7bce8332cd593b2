"""The CPU cost of holding a batch's acknowledgement until Kafka confirmed its changelog records
(tocsin/changelog.py ``ConfirmedAcks``), beside the same batches acknowledged at once.

Each batch: ``records`` Faust ``ConsumerMessage``s (one reference each, as the conductor gives one
agent), ``keys`` table writes flushed by ``BatchedState.flush`` into a table whose changelog sends are
asyncio futures, resolved on the next loop iteration (what Kafka's confirmation does, minus the
network). Reference: flush, then every record acknowledged (what the worker did before the hold).
Measured: the hold, its task and the confirmation, then the same acknowledgements. No Kafka: this is
the worker's own added CPU per batch; the broker's round trip is not on the agent's path (the agent
does not wait for it). Knobs: ``TOCSIN_BENCH_HOLD_BATCHES`` (2,000), records and keys per batch
``TOCSIN_BENCH_HOLD_RECORDS`` (20) and ``TOCSIN_BENCH_HOLD_KEYS`` (10), about the confirm agent's
batches at 1,000 detections/s.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from faust.types.tuples import ConsumerMessage
from prometheus_client import CollectorRegistry

from tocsin.changelog import ChangelogMetrics, ConfirmedAcks
from tocsin.worker import BatchedState


class _Table:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def keys(self) -> Any:
        return self.data.keys()

    def send_changelog(self, partition: int, key: str, value: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        loop.call_soon(future.set_result, None)  # confirmed on the next iteration
        return future


class _Consumer:
    def ack(self, message: ConsumerMessage) -> bool:
        message.acked = True
        return True


class _Event:
    def __init__(self, consumer: _Consumer, offset: int) -> None:
        self.consumer = consumer
        self.message = ConsumerMessage("detections", 0, offset, 0.0, 0, [], b"k", b"v", None)
        self.message.incref()

    def ack(self) -> bool:
        return self.message.ack(self.consumer)


def _run(batches: int, records: int, keys: int, hold: bool) -> float:
    """CPU seconds for ``batches`` batches, held or acknowledged at once."""

    async def main() -> float:
        consumer = _Consumer()
        state = BatchedState(_Table())
        acks = ConfirmedAcks("bench", ChangelogMetrics(CollectorRegistry(), ["bench"]), confirm_s=60.0)
        offset = 0
        t0 = time.process_time()
        for _ in range(batches):
            events = [_Event(consumer, offset + i) for i in range(records)]
            offset += records
            for k in range(keys):
                state[f"fp-{k}"] = {"position": [0, offset]}
            sent = state.flush()
            if hold:
                acks.hold(events, sent, state.send_again)
            for event in events:  # the stream's own acknowledgement at the end of the batch
                event.ack()
            await asyncio.sleep(0)  # the agent takes the next batch; confirmations arrive meanwhile
        await acks.wait_all()
        return time.process_time() - t0

    return asyncio.run(main())


def bench_changelog_hold() -> dict[str, float]:
    batches = int(os.environ.get("TOCSIN_BENCH_HOLD_BATCHES", "2000"))
    records = int(os.environ.get("TOCSIN_BENCH_HOLD_RECORDS", "20"))
    keys = int(os.environ.get("TOCSIN_BENCH_HOLD_KEYS", "10"))
    _run(200, records, keys, True)  # warm-up
    plain = min(_run(batches, records, keys, False) for _ in range(3))
    held = min(_run(batches, records, keys, True) for _ in range(3))
    return {
        "batches": float(batches),
        "records_per_batch": float(records),
        "keys_per_batch": float(keys),
        "plain_us_per_batch": plain / batches * 1e6,
        "held_us_per_batch": held / batches * 1e6,
        "added_us_per_batch": (held - plain) / batches * 1e6,
        "added_us_per_record": (held - plain) / (batches * records) * 1e6,
        "ratio": held / plain,
    }
