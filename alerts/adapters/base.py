"""The contract every delivery adapter implements, plus a shared retry helper.

An adapter turns a :class:`Notification` into a :class:`DeliveryResult`. Provider and network
failures are *classified* (``RETRY`` or ``REJECTED``), never raised, so the dispatcher can apply one
retry policy to every channel. Exceptions from ``send`` mean a programming or configuration error
(for example sending before ``start``) and derive from :class:`AdapterError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Sleep = Callable[[float], Awaitable[object]]


class Notification(BaseModel):
    """One rendered message for one channel, ready to hand to an adapter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str = Field(min_length=1, description="CAP identifier of the alert message")
    fingerprint: str = Field(min_length=1, description="hazard/area/source key that stays across revisions")
    revision: int = Field(ge=0)
    channel: str = Field(min_length=1)
    recipients: list[str]
    text: str
    priority: int = Field(ge=1, le=4, description="1 blue .. 4 red; higher is sent first")
    idempotency_key: str = Field(min_length=1, description="stable across retries of the same delivery")
    exercise: bool = False
    correlation_id: str = ""
    ends_incident: bool = False
    """The message ends its incident (a Cancel): channels that keep a current state (the retained
    MQTT topic) clear it after delivering the message."""


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """The provider already had this idempotency key; counts as success."""
    RETRY = "retry"
    """Temporary failure (5xx, 429, timeout, connection error); the same request may succeed later."""
    REJECTED = "rejected"
    """Permanent failure; retrying the same request will not help."""


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    provider_ref: str = ""
    detail: str = ""
    retry_after_s: float | None = None
    """Provider's hint for the earliest sensible retry, when it gave one."""

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE)

    @property
    def retryable(self) -> bool:
        return self.outcome is Outcome.RETRY


@runtime_checkable
class Adapter(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, n: Notification) -> DeliveryResult:
        """Deliver ``n``; classify provider/network failures into the result instead of raising."""
        ...


class AdapterError(Exception):
    """Root of adapter exceptions: misuse or misconfiguration, never a provider failure."""


def backoff_delay_s(
    attempt: int,
    rng: random.Random,
    *,
    base_delay_s: float,
    max_delay_s: float,
    retry_after_s: float | None = None,
) -> float:
    """Delay before retry number ``attempt`` (0-based): full jitter over ``base * 2**attempt``.

    A provider's ``retry_after_s`` is a floor on the delay; the result never exceeds ``max_delay_s``
    so a hostile or confused provider cannot stall an emergency delivery indefinitely.
    """
    ceiling_s = min(max_delay_s, base_delay_s * (2**attempt))
    delay_s = rng.uniform(0.0, ceiling_s)
    if retry_after_s is not None:
        delay_s = max(delay_s, retry_after_s)
    return min(max(delay_s, 0.0), max_delay_s)


async def send_with_retries(
    adapter: Adapter,
    n: Notification,
    *,
    max_attempts: int = 5,
    base_delay_s: float = 0.5,
    max_delay_s: float = 30.0,
    sleep: Sleep = asyncio.sleep,
) -> list[DeliveryResult]:
    """Send ``n`` until it succeeds, is rejected, or ``max_attempts`` are used up.

    Returns every attempt's result in order; the last one is the verdict. Jitter is drawn from
    ``random.Random(n.idempotency_key)`` so the delay sequence of a given delivery is reproducible.
    No sleep follows the final attempt.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if base_delay_s < 0 or max_delay_s < 0:
        raise ValueError("delays must not be negative")
    rng = random.Random(n.idempotency_key)
    results: list[DeliveryResult] = []
    for attempt in range(max_attempts):
        result = await adapter.send(n)
        results.append(result)
        if not result.retryable or attempt == max_attempts - 1:
            break
        await sleep(
            backoff_delay_s(
                attempt,
                rng,
                base_delay_s=base_delay_s,
                max_delay_s=max_delay_s,
                retry_after_s=result.retry_after_s,
            )
        )
    return results
