"""Per-provider rate limit with priority: red warnings go out before blue ones.

``PriorityRateLimiter`` hands out send slots at ``rate_per_s`` (token bucket, burst ``burst``) in
priority order (higher first, then first come); ``RateLimited`` wraps any adapter so each attempt
waits for a slot. Every waiting request is served: a lower priority only waits longer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

from tocsin.alerts.adapters.base import Adapter, DeliveryResult, Notification


class PriorityRateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst if burst is not None else int(rate_per_s))
        self._monotonic, self._sleep = monotonic, sleep
        self._tokens = float(self.burst)
        self._last = monotonic()
        self._queue: asyncio.PriorityQueue[tuple[int, int, asyncio.Future[None]]] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self.granted = 0

    async def acquire(self, priority: int) -> None:
        """Wait for a slot; ``priority`` 4 (red) before 1 (blue)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((-priority, next(self._seq), fut))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name="rate-limiter")
        await fut

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate_per_s)
        self._last = now

    async def _run(self) -> None:
        while not self._queue.empty():
            self._refill()
            if self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate_per_s)
                continue
            _, _, fut = self._queue.get_nowait()
            if fut.done():  # the waiter was cancelled
                continue
            self._tokens -= 1.0
            self.granted += 1
            fut.set_result(None)
            await asyncio.sleep(0)  # let the granted sender run before the next grant


class RateLimited:
    """An adapter whose every send waits for a slot of the provider's limiter."""

    def __init__(self, inner: Adapter, limiter: PriorityRateLimiter) -> None:
        self.inner, self.limiter = inner, limiter
        self.name = inner.name

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def send(self, n: Notification) -> DeliveryResult:
        await self.limiter.acquire(n.priority)
        return await self.inner.send(n)
