"""The fast lane: urgent messages start at once, the durable path claims them instead of sending again."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.alerts.factories import alert_message
from tocsin.alerts.fastlane import FastLane, FastLaneMetrics
from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family, WarningLevel


def _alert(identifier: str, level: WarningLevel) -> Alert:
    return alert_message(identifier, level, Family.HYDRO)


class Recorder:
    """The delivery the lane runs: records each call; can be held open or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail: set[str] = set()

    async def __call__(self, alert: Alert) -> None:
        self.calls.append(alert.identifier)
        await self.release.wait()
        if alert.identifier in self.fail:
            raise RuntimeError("carrier adapter bug")


def in_loop(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (bounded: 10 s)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 10))

    return run


def _lane(rec: Recorder, registry: CollectorRegistry, **kw: int) -> FastLane:
    return FastLane(rec, FastLaneMetrics(registry), min_rank=WarningLevel.ORANGE.rank, **kw)


def _count(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("tocsin_alert_fast_lane_total", {"outcome": outcome}) or 0.0


@in_loop
async def test_urgent_message_is_delivered_once_and_claimed() -> None:
    rec, reg = Recorder(), CollectorRegistry()
    lane = _lane(rec, reg)
    assert lane.offer(_alert("a1", WarningLevel.RED))
    assert not lane.offer(_alert("a1", WarningLevel.RED))  # the same message twice: started once
    await asyncio.sleep(0)
    assert rec.calls == ["a1"]
    assert await lane.claim("a1") is True  # the durable path must not send it again
    assert await lane.claim("a1") is False  # claimed once: a second read (redelivery) sends via idempotency
    assert rec.calls == ["a1"]
    assert (_count(reg, "started"), _count(reg, "claimed")) == (1.0, 1.0)


@in_loop
async def test_levels_below_the_lane_wait_for_the_durable_path() -> None:
    rec, reg = Recorder(), CollectorRegistry()
    lane = _lane(rec, reg)
    assert not lane.offer(_alert("b1", WarningLevel.YELLOW))
    assert lane.offer(_alert("o1", WarningLevel.ORANGE))
    await asyncio.sleep(0)
    assert rec.calls == ["o1"]
    assert await lane.claim("b1") is False


@in_loop
async def test_claim_waits_for_a_delivery_in_flight() -> None:
    rec, reg = Recorder(), CollectorRegistry()
    rec.release.clear()
    lane = _lane(rec, reg)
    lane.offer(_alert("r1", WarningLevel.RED))
    claim = asyncio.ensure_future(lane.claim("r1"))
    await asyncio.sleep(0.01)
    assert not claim.done()  # the durable path's offset waits for the delivery to finish
    assert lane.in_flight() == 1
    rec.release.set()
    assert await asyncio.wait_for(claim, 5) is True
    assert lane.in_flight() == 0


@in_loop
async def test_a_failed_fast_delivery_is_delivered_by_the_durable_path() -> None:
    rec, reg = Recorder(), CollectorRegistry()
    rec.fail.add("r2")
    lane = _lane(rec, reg)
    lane.offer(_alert("r2", WarningLevel.RED))
    assert await lane.claim("r2") is False
    assert _count(reg, "failed") == 1.0
    assert lane.in_flight() == 0


@in_loop
async def test_a_cancelled_fast_delivery_is_delivered_by_the_durable_path() -> None:
    rec, reg = Recorder(), CollectorRegistry()
    rec.release.clear()
    lane = _lane(rec, reg)
    lane.offer(_alert("r3", WarningLevel.RED))
    await asyncio.sleep(0)
    for task in asyncio.all_tasks():
        if task.get_name() == "fast-lane-r3":
            task.cancel()
    assert await lane.claim("r3") is False


@in_loop
async def test_the_lane_is_bounded_and_forgets_old_finished_deliveries() -> None:
    rec, reg = Recorder(), CollectorRegistry()
    rec.release.clear()
    lane = _lane(rec, reg, max_in_flight=2, keep=3)
    assert lane.offer(_alert("x1", WarningLevel.RED))
    assert lane.offer(_alert("x2", WarningLevel.RED))
    assert not lane.offer(_alert("x3", WarningLevel.RED))  # full: left to the durable path
    assert _count(reg, "full") == 1.0
    rec.release.set()
    await asyncio.sleep(0.01)
    for i in range(4, 9):
        assert lane.offer(_alert(f"x{i}", WarningLevel.RED))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert len(lane._tasks) <= 3  # only the newest finished ones are remembered
    assert await lane.claim("x1") is False  # forgotten: delivered again, deduped by idempotency keys
    assert await lane.claim("x8") is True


@pytest.mark.parametrize("n", [1, 5, 40])
@in_loop
async def test_every_offered_message_is_delivered_exactly_once_by_one_of_the_paths(n: int) -> None:
    rec, reg = Recorder(), CollectorRegistry()
    lane = _lane(rec, reg, max_in_flight=4, keep=1000)
    durable: list[str] = []
    for i in range(n):
        lane.offer(_alert(f"m{i}", WarningLevel.RED if i % 3 else WarningLevel.BLUE))
    for i in range(n):  # what the deliver agent does for each message it reads from Kafka
        if not await lane.claim(f"m{i}"):
            durable.append(f"m{i}")
    assert sorted(rec.calls + durable) == sorted(f"m{i}" for i in range(n))
