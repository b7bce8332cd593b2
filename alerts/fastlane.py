"""The fast lane: an urgent alert message is delivered by the worker that issued it, at once.

The durable path is unchanged: every alert message goes to Kafka ``alerts`` and the ``deliver``
agent delivers what it reads there, committing its offset only after the delivery. The fast lane
only starts that same delivery earlier -- when the ``confirm`` agent issues the message -- so a red
warning does not also wait for the producer's linger, the broker round trip and the ``deliver``
agent's fetch and queue (about half of the red alert's latency under load, see README "Latency").

When the ``deliver`` agent then reads the message, it *claims* it here: if the fast lane started
it, the agent awaits that delivery (its offset is still committed only after it) instead of
delivering again. If the fast lane failed, was cancelled, or never saw the message (another worker
issued it, or the process restarted in between), the claim returns False and the agent delivers it
as usual; the providers' idempotency keys (alert identifier, recipient, revision) keep a recipient
from getting a message twice in every one of these cases.

Only messages at or above ``min_rank`` (a warning level's rank: 3 orange, 4 red) take the lane, at
most ``max_in_flight`` at once (beyond that they wait for the durable path like everything else),
so a burst of low-level alerts keeps the ``deliver`` agent's concurrency bound. The lane remembers
``keep`` finished deliveries for their claim; older ones are forgotten (a claim then redelivers,
and the idempotency keys dedupe it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from tocsin.schemas.alert import Alert

log = logging.getLogger(__name__)


class FastLaneMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "tocsin_alert_fast_lane_total",
            "urgent alert messages and what became of their fast-lane delivery",
            ["outcome"],  # started, claimed (the deliver agent found it done or in flight), failed, full
            registry=registry,
        )


class FastLane:
    def __init__(
        self,
        deliver: Callable[[Alert], Awaitable[None]],
        metrics: FastLaneMetrics,
        *,
        min_rank: int,
        max_in_flight: int = 64,
        keep: int = 10_000,
    ) -> None:
        self._deliver, self.metrics = deliver, metrics
        self.min_rank, self.max_in_flight, self.keep = min_rank, max_in_flight, keep
        # identifier -> the delivery in flight, or once it finished, whether it delivered
        self._tasks: OrderedDict[str, asyncio.Task[bool] | bool] = OrderedDict()
        self._in_flight = 0

    def offer(self, alert: Alert) -> bool:
        """Start delivering ``alert`` now if it is urgent and the lane has room; True if started."""
        if alert.level.rank < self.min_rank or alert.identifier in self._tasks:
            return False
        if self._in_flight >= self.max_in_flight:
            self.metrics.messages.labels("full").inc()
            return False
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(alert), name=f"fast-lane-{alert.identifier}")
        self._tasks[alert.identifier] = task
        self.metrics.messages.labels("started").inc()
        self._forget_old()
        return True

    async def claim(self, identifier: str) -> bool:
        """Called by the durable path for every message it reads: True when the fast lane delivered
        it (awaited here if still in flight), False when the caller must deliver it itself."""
        entry = self._tasks.pop(identifier, None)
        if entry is None:
            return False
        if isinstance(entry, bool):  # finished before the claim: its outcome
            return self._claimed(entry)
        try:
            return self._claimed(await asyncio.shield(entry))
        except asyncio.CancelledError:
            if not entry.cancelled():
                raise  # the caller itself is being cancelled: the durable path retries after a restart
            return self._claimed(False)

    def _claimed(self, delivered: bool) -> bool:
        self.metrics.messages.labels("claimed" if delivered else "failed").inc()
        return delivered

    def in_flight(self) -> int:
        return self._in_flight

    async def _run(self, alert: Alert) -> bool:
        """Deliver; True when delivered. A failure is logged and reported as False, never raised."""
        identifier = alert.identifier
        delivered = False
        try:
            await self._deliver(alert)
            delivered = True
        except Exception:  # noqa: BLE001 - the deliver agent delivers it again
            log.exception("fast-lane delivery of %s failed; the deliver agent delivers it", identifier)
        finally:
            self._in_flight -= 1
            if identifier in self._tasks:  # not claimed yet: keep the outcome, not the task and its frames
                self._tasks[identifier] = delivered
        return delivered

    def _forget_old(self) -> None:
        """Past ``keep`` remembered deliveries, forget the oldest finished ones (never one in flight)."""
        excess = len(self._tasks) - self.keep
        for identifier in list(self._tasks):
            if excess <= 0:
                break
            if isinstance(self._tasks[identifier], bool):
                del self._tasks[identifier]
                excess -= 1
