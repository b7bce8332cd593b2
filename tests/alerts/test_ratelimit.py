"""The SMS provider limit is honoured, and red warnings jump the queue ahead of blue ones."""

from __future__ import annotations

import asyncio

from tocsin.alerts.ratelimit import PriorityRateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s
        await asyncio.sleep(0)


def test_rate_and_priority_order() -> None:
    clock = FakeTime()
    order: list[str] = []

    async def main() -> None:
        limiter = PriorityRateLimiter(10.0, burst=2, monotonic=clock.monotonic, sleep=clock.sleep)

        async def send(name: str, priority: int) -> None:
            await limiter.acquire(priority)
            order.append(f"{name}@{clock.now:.1f}")

        tasks = [asyncio.create_task(send(f"blue{i}", 1)) for i in range(6)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(send("red", 4)))
        await asyncio.gather(*tasks)
        assert limiter.granted == 7

    asyncio.run(main())
    # red arrives while five blues still wait: it takes the next slot (the second of the burst);
    # the blues follow in arrival order, one every 0.1 s
    assert order == ["blue0@0.0", "red@0.0", "blue1@0.1", "blue2@0.2", "blue3@0.3", "blue4@0.4", "blue5@0.5"]
    assert abs(sum(clock.slept) - 0.5) < 1e-9  # 7 sends at 10/s with a burst of 2: 0.5 s, no faster
