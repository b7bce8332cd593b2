"""Route an alert to its audiences and deliver it through the adapters, recording every outcome.

Routing (for now): the operators' MQTT topic always; SMS to the numbers registered for the alert's
area, only for ``Actual`` alerts (exercises and tests never reach the public). The idempotency key
is the alert message's identifier (fingerprint + revision), extended per recipient by the SMS
adapter, so a retry or a worker restart never sends the same message twice to anyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from alerts.adapters.base import Adapter, DeliveryResult, Notification, Outcome, send_with_retries
from alerts.adapters.sms import mask_phone
from schemas import topics
from schemas.alert import Alert, AlertStatus
from schemas.delivery import DeliveryRecord
from schemas.registry import RegistryLike
from schemas.wire import encode

log = logging.getLogger(__name__)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "tocsin_alert_deliveries_total", "delivery outcomes", ["channel", "outcome"], registry=registry
        )
        self.attempts = Counter(
            "tocsin_alert_delivery_attempts_total", "delivery attempts", ["channel"], registry=registry
        )


def sms_text(alert: Alert) -> str:
    tag = (
        "【演练】" if alert.status is AlertStatus.EXERCISE else ("【测试】" if alert.status is AlertStatus.TEST else "")
    )
    return f"{tag}【{alert.area.desc}】{alert.headline}。{alert.description}{alert.instruction}"


class Notifier:
    def __init__(
        self,
        registry: RegistryLike | None,
        adapters: dict[str, Adapter],
        metrics: NotifyMetrics,
        *,
        max_attempts: int = 5,
        base_delay_s: float = 0.5,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry, self.adapters, self.metrics = registry, adapters, metrics
        self.max_attempts, self.base_delay_s, self.sleep, self.clock = (
            max_attempts,
            base_delay_s,
            sleep,
            clock,
        )

    def route(self, alert: Alert) -> list[Notification]:
        common: dict[str, Any] = {
            "alert_id": alert.identifier,
            "fingerprint": alert.fingerprint,
            "revision": alert.revision,
            "priority": alert.level.rank,
            "exercise": alert.status is not AlertStatus.ACTUAL,
            "correlation_id": alert.correlation_id,
        }
        out = []
        if "mqtt" in self.adapters:
            out.append(
                Notification(
                    channel="mqtt",
                    recipients=[topics.mqtt_alert(alert.area.code, alert.hazard)],
                    text=encode(alert).decode("utf-8"),
                    idempotency_key=f"{alert.identifier}:mqtt",
                    **common,
                )
            )
        numbers = self.registry.sms_recipients.get(alert.area.code, []) if self.registry else []
        if "sms" in self.adapters and numbers and alert.status is AlertStatus.ACTUAL:
            text = sms_text(alert)
            out += [
                Notification(channel="sms", recipients=[n], text=text, idempotency_key=alert.identifier, **common)
                for n in numbers
            ]
        return out

    async def deliver(self, alert: Alert) -> list[DeliveryRecord]:
        notes = sorted(self.route(alert), key=lambda n: -n.priority)
        results = await asyncio.gather(*(self._one(n) for n in notes))
        return list(results)

    async def _one(self, n: Notification) -> DeliveryRecord:
        adapter = self.adapters[n.channel]
        attempts: list[DeliveryResult] = await send_with_retries(
            adapter, n, max_attempts=self.max_attempts, base_delay_s=self.base_delay_s, sleep=self.sleep
        )
        self.metrics.attempts.labels(n.channel).inc(len(attempts))
        last = attempts[-1]
        outcome = last.outcome.value if last.ok or last.outcome is Outcome.REJECTED else "gave_up"
        self.metrics.deliveries.labels(n.channel, outcome).inc()
        recipient = ",".join(mask_phone(r) if n.channel == "sms" else r for r in n.recipients)
        if not last.ok:
            log.error("delivery of %s via %s to %s failed: %s", n.alert_id, n.channel, recipient, last.detail)
        return DeliveryRecord(
            alert_id=n.alert_id,
            fingerprint=n.fingerprint,
            revision=n.revision,
            channel=n.channel,
            recipient=recipient,
            outcome=outcome,
            attempts=len(attempts),
            detail=last.detail[:500],
            ts=self.clock(),
            correlation_id=n.correlation_id,
        )
