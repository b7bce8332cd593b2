"""SMS delivery over the carrier HTTP API (``POST /v1/sms``, one request per recipient).

Every recipient gets its own idempotency key, ``f"{n.idempotency_key}:{recipient}"``, so a retried
notification re-sends only where the carrier has no record yet; recipients already delivered come
back as ``DUPLICATE``, which counts as success.

The API key is held as a :class:`pydantic.SecretStr` and only unwrapped to build the
``Authorization`` header; it never reaches logs, ``repr`` or a result's ``detail``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from tocsin.alerts.adapters.base import DeliveryResult, Notification, Outcome
from tocsin.alerts.adapters.http import HttpProvider, checked, taken
from tocsin.alerts.adapters.http import parse_retry_after as parse_retry_after  # re-exported: part of this module's API

log = logging.getLogger(__name__)

_MAX_LISTED_FAILURES = 20


def mask_phone(number: str) -> str:
    """Shorten a phone number for logs: ``+8613800001234`` -> ``+861****1234``."""
    if len(number) <= 8:
        return "****"
    return f"{number[:4]}****{number[-4:]}"


class SmsAdapter(HttpProvider):
    """:class:`tocsin.alerts.adapters.base.Adapter` for the SMS carrier API (see ``tocsin.simulators.sms_gateway``)."""

    name = "sms"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        sender_id: str = "TOCSIN",
        callback_url: str | None = None,
        max_concurrency: int = 16,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s=timeout_s, wall_clock_s=wall_clock_s)
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._sender_id = sender_id
        self._callback_url = callback_url
        self._max_concurrency = max_concurrency

    def _repr_fields(self) -> dict[str, object]:
        return {"sender_id": self._sender_id}

    async def send(self, n: Notification) -> DeliveryResult:
        """Send to every recipient and aggregate.

        All recipients ok -> ``ACCEPTED`` (``DUPLICATE`` if every one was a duplicate). Otherwise the
        worst outcome wins, ``REJECTED`` over ``RETRY``, with the failed recipients in ``detail``.
        Note that a single rejected recipient makes the whole result final; callers that need to
        keep retrying the others should track recipients themselves with :meth:`send_one`.
        """
        recipients = list(dict.fromkeys(n.recipients))
        if not recipients:
            return DeliveryResult(Outcome.REJECTED, detail="notification has no recipients")
        self._require_session()
        gate = asyncio.Semaphore(self._max_concurrency)

        async def one(recipient: str) -> DeliveryResult:
            async with gate:
                return await self.send_one(n, recipient)

        results = await asyncio.gather(*(one(r) for r in recipients))
        return _aggregate(recipients, results)

    async def send_one(self, n: Notification, recipient: str) -> DeliveryResult:
        """POST the notification to a single recipient and classify the carrier's answer."""
        payload: dict[str, Any] = {
            "to": recipient,
            "text": n.text,
            "sender_id": self._sender_id,
            "idempotency_key": f"{n.idempotency_key}:{recipient}",
            "priority": n.priority,
        }
        if self._callback_url:
            payload["callback_url"] = receipt_callback_url(self._callback_url, n.correlation_id)
        result = await self._post_json("/v1/sms", payload, _accepted, correlation_id=n.correlation_id)
        log.info(
            "sms %s to %s key=%s: %s %s",
            n.alert_id,
            mask_phone(recipient),
            n.idempotency_key,
            result.outcome,
            result.detail,
        )
        return result


class SmsAnswer(BaseModel):
    """What the carrier answers to an accepted ``POST /v1/sms`` (2xx)."""

    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(min_length=1, max_length=200)
    duplicate: bool = False


def _accepted(status: int, data: dict[str, Any]) -> DeliveryResult:
    answer = checked(SmsAnswer, status, data)
    if isinstance(answer, DeliveryResult):
        return answer
    return taken(answer.message_id, f"HTTP {status}", duplicate=answer.duplicate)


def _aggregate(recipients: list[str], results: list[DeliveryResult]) -> DeliveryResult:
    if all(r.ok for r in results):
        outcome = Outcome.DUPLICATE if all(r.outcome is Outcome.DUPLICATE for r in results) else Outcome.ACCEPTED
        ref = results[0].provider_ref if len(results) == 1 else ""
        dups = sum(r.outcome is Outcome.DUPLICATE for r in results)
        return DeliveryResult(outcome, provider_ref=ref, detail=f"{len(results)} ok ({dups} duplicate)")
    failed = [(to, r) for to, r in zip(recipients, results, strict=True) if not r.ok]
    outcome = Outcome.REJECTED if any(r.outcome is Outcome.REJECTED for _, r in failed) else Outcome.RETRY
    listed = "; ".join(f"{to} {r.outcome}: {r.detail}" for to, r in failed[:_MAX_LISTED_FAILURES])
    more = len(failed) - _MAX_LISTED_FAILURES
    if more > 0:
        listed += f"; and {more} more"
    waits = [r.retry_after_s for _, r in failed if r.retry_after_s is not None]
    return DeliveryResult(
        outcome,
        detail=f"{len(failed)}/{len(results)} recipients failed: {listed}",
        retry_after_s=max(waits) if outcome is Outcome.RETRY and waits else None,
    )


def receipt_callback_url(base: str, correlation_id: str) -> str:
    """The per-message callback URL: the carrier posts the receipt to it verbatim, so the correlation
    id rides along as a query parameter and the receipt's audit record carries it too."""
    if not correlation_id:
        return base
    parts = urlsplit(base)
    query = urlencode([*parse_qsl(parts.query), ("correlation_id", correlation_id)])
    return urlunsplit(parts._replace(query=query))
