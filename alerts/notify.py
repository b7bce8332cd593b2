"""Route an alert to its audiences and deliver it through the adapters, recording every outcome.

Routing comes from alerts/routing.py (a routing file, or the default: the area's residents by SMS
and broadcast); the operators' MQTT topic always gets the alert. Exercises and tests never reach
public routes. The idempotency key is the alert message's :func:`message_key` (fingerprint +
revision), extended per recipient by the SMS adapter, so a retry or a worker restart never sends the same
message twice to anyone. Silences (alerts/silences.py) replace deliveries by audit records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

from tocsin.alerts.adapters.base import Adapter, DeliveryResult, Notification, Outcome, send_with_retries
from tocsin.alerts.adapters.broadcast import STOP_CHANNEL
from tocsin.alerts.adapters.sms import mask_phone
from tocsin.alerts.release import enforced_auto
from tocsin.alerts.routing import DEFAULT_ROUTING, Routing, plan
from tocsin.alerts.silences import Silence, overridden, silencing
from tocsin.alerts.sms_text import compose_sms
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertStatus, MsgType
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.registry import RegistryLike
from tocsin.schemas.wire import encode

log = logging.getLogger(__name__)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "tocsin_alert_deliveries_total", "delivery outcomes", ["channel", "outcome"], registry=registry
        )
        self.attempts = Counter(
            "tocsin_alert_delivery_attempts_total", "delivery attempts", ["channel"], registry=registry
        )
        self.silence_overrides = Counter(
            "tocsin_alert_silence_overrides_total",
            "alert messages delivered despite a matching silence (red or earthquake: never silenced)",
            ["hazard", "level"],
            registry=registry,
        )
        self.latency = Histogram(
            "tocsin_worker_delivery_latency_seconds",
            "alert message issued (its sent time) to the first delivery a channel's provider accepted",
            ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )


def message_key(alert: Alert) -> str:
    """The idempotency key of an alert message's deliveries, ``<fingerprint>#<revision>``.

    Not the CAP identifier: that carries the time the message was entered (GB/T 35965.1-2018
    Appendix A), so when a crash replays a detection against the old state the same message comes
    out again under a new identifier; its fingerprint and revision are the same, and the providers
    dedupe it by this key."""
    return f"{alert.fingerprint}#{alert.revision}"


def broadcast_text(alert: Alert) -> str:
    """Text for the broadcast terminals' text-to-speech: headline, then what to do."""
    tag = "演练，" if alert.status is AlertStatus.EXERCISE else ("测试，" if alert.status is AlertStatus.TEST else "")
    return f"{tag}{alert.headline}。{alert.instruction or alert.description}"


def sms_text(alert: Alert, signature: str = "") -> str:
    """``【signature】`` (the registered sender signature, first, as carriers require), an exercise or
    test mark in the body, headline, description and instruction, at most 500 characters with the
    instruction whole (alerts/sms_text.py ``compose_sms``). ``signature``: already checked and in 【】."""
    marks = {AlertStatus.EXERCISE: "（演练）", AlertStatus.TEST: "（测试）"}
    mark = marks.get(alert.status, "")
    return compose_sms(signature, mark, alert.headline, alert.description, alert.instruction)


class Notifier:
    def __init__(
        self,
        registry: RegistryLike | None,
        adapters: dict[str, Adapter],
        metrics: NotifyMetrics,
        *,
        max_attempts: int = 40,
        max_delay_s: float = 10.0,
        base_delay_s: float = 0.5,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        routing: Routing = DEFAULT_ROUTING,
        silences: Callable[[], list[Silence]] = list,
    ) -> None:
        self.registry, self.adapters, self.metrics = registry, adapters, metrics
        self.routing, self.silences = routing, silences
        # A warning is not dropped because a provider throttles or hiccups: temporary failures are
        # retried for minutes (40 attempts, backoff capped at 10 s), permanent ones never.
        self.max_delay_s = max_delay_s
        self.max_attempts, self.base_delay_s, self.sleep, self.clock = (
            max_attempts,
            base_delay_s,
            sleep,
            clock,
        )

    def route(self, alert: Alert, part: Literal["all", "public", "operators"] = "all") -> list[Notification]:
        """The notifications of one alert message, from the routing plan, for the channels we have.

        The operators' MQTT topic of the incident always gets the alert's JSON (the console's current
        state); a Cancel is published and then clears that incident's retained message.
        ``part``: ``public`` only the public routes' notifications (what the release gate holds,
        alerts/release.py), ``operators`` everything else (the MQTT topic, agencies)."""
        common: dict[str, Any] = {
            "alert_id": alert.identifier,
            "fingerprint": alert.fingerprint,
            "revision": alert.revision,
            "priority": alert.level.rank,
            "exercise": alert.status is not AlertStatus.ACTUAL,
            "correlation_id": alert.correlation_id,
        }
        out = []
        public_routes = self.routing.public_routes()
        if "mqtt" in self.adapters and part != "public":
            out.append(
                Notification(
                    channel="mqtt",
                    recipients=[
                        topics.mqtt_alert(
                            alert.area.code,
                            alert.hazard,
                            topics.alert_incident(alert.fingerprint, alert.area.code, alert.hazard),
                        )
                    ],
                    text=encode(alert).decode("utf-8"),
                    idempotency_key=f"{message_key(alert)}:mqtt",
                    ends_incident=alert.msg_type is MsgType.CANCEL,
                    **common,
                )
            )
        for d in plan(alert, self.routing, self.registry):
            if d.channel not in self.adapters or d.channel == "mqtt":
                continue
            if part != "all" and (d.route in public_routes) != (part == "public"):
                continue
            if d.channel == "sms":
                text = sms_text(alert, self.routing.sms_signature or "")
                out += [
                    Notification(channel="sms", recipients=[n], text=text, idempotency_key=message_key(alert), **common)
                    for n in d.recipients
                ]
            elif d.channel == "broadcast" and alert.msg_type is MsgType.CANCEL:
                # the all-clear stops every broadcast of the incident (matched by fingerprint)
                if STOP_CHANNEL in self.adapters:
                    out.append(
                        Notification(
                            channel=STOP_CHANNEL,
                            recipients=list(d.recipients),
                            text="",
                            idempotency_key=f"{message_key(alert)}:{d.route}:stop",
                            **common,
                        )
                    )
            else:
                out.append(
                    Notification(
                        channel=d.channel,
                        recipients=list(d.recipients),
                        text=broadcast_text(alert),
                        idempotency_key=f"{message_key(alert)}:{d.route}",
                        **common,
                    )
                )
        return out

    async def deliver(
        self, alert: Alert, *, hold_public: bool = False, only_public: bool = False
    ) -> list[DeliveryRecord]:
        """Deliver one alert message, red before blue; under an active silence only the operators'
        topic is updated and every other notification is recorded as ``suppressed``. A red or seismic
        alert is never held back: a silence that matches it is logged and counted as overridden.

        The release gate (alerts/release.py) decides ``hold_public``: the public routes' notifications
        are then recorded as ``held`` and not sent (the rest goes out); ``only_public`` sends them
        once released. Red and seismic messages are never held here either, whatever the caller says."""
        if hold_public and enforced_auto(alert):
            log.error(
                "release gate asked to hold %s %s alert %s: released", alert.hazard, alert.level, alert.identifier
            )
            hold_public = False
        held_back: list[DeliveryRecord] = []
        if hold_public:
            why = "public release waits for an operator's approval (release gate)"
            held_back = [self._record(n, "held", 0, why) for n in self.route(alert, "public")]
            for r in held_back:
                self.metrics.deliveries.labels(r.channel, "held").inc()
        part: Literal["all", "public", "operators"] = "public" if only_public else "operators" if hold_public else "all"
        return held_back + await self._deliver(alert, self.route(alert, part))

    async def send(self, n: Notification) -> DeliveryRecord:
        """One notification through its adapter, with retries (the release gate's escalation SMS)."""
        return await self._one(n)

    async def _deliver(self, alert: Alert, routed: list[Notification]) -> list[DeliveryRecord]:
        notes = sorted(routed, key=lambda n: -n.priority)
        active, now = self.silences(), self.clock()
        if (over := overridden(alert, active, now)) is not None:
            self.metrics.silence_overrides.labels(alert.hazard.value, alert.level.value).inc()
            log.warning(
                "silence %s (by %s) matches %s alert %s: delivered anyway (red and earthquake are never silenced)",
                over.id,
                over.creator,
                alert.level.value,
                alert.identifier,
            )
        silence = silencing(alert, active, now)
        if silence is not None:
            why = f"silence {silence.id} by {silence.creator}: {silence.reason}"
            held = [self._record(n, "suppressed", 0, why) for n in notes if n.channel != "mqtt"]
            for r in held:
                self.metrics.deliveries.labels("any", "suppressed").inc()
                self._log(r, logging.INFO)
            notes = [n for n in notes if n.channel == "mqtt"]
            sent = list(await asyncio.gather(*(self._one(n) for n in notes)))
            self._observe_latency(alert, sent)
            return held + sent
        sent = list(await asyncio.gather(*(self._one(n) for n in notes)))
        self._observe_latency(alert, sent)
        return sent

    def _observe_latency(self, alert: Alert, records: list[DeliveryRecord]) -> None:
        """Per channel: the alert's ``sent`` to its first accepted delivery (a redelivered alert's
        ``duplicate`` answers are not a first delivery and are not measured)."""
        first: dict[str, datetime] = {}
        for r in records:
            if r.outcome == "accepted" and (r.channel not in first or r.ts < first[r.channel]):
                first[r.channel] = r.ts
        for channel, ts in first.items():
            self.metrics.latency.labels(channel).observe(max(0.0, (ts - alert.sent).total_seconds()))

    @staticmethod
    def _log(record: DeliveryRecord, level: int) -> None:
        """One line per delivery outcome, with the correlation id (failures at ERROR, with the detail)."""
        failed = level >= logging.ERROR
        log.log(
            level,
            "delivery of %s via %s to %s failed: %s" if failed else "delivery %s via %s: %s",
            record.alert_id,
            record.channel,
            record.recipient if failed else record.outcome,
            *([record.detail] if failed else []),
            extra={
                "correlation_id": record.correlation_id,
                "alert_id": record.alert_id,
                "fingerprint": record.fingerprint,
                "channel": record.channel,
                "outcome": record.outcome,
                "attempts": record.attempts,
                "recipient": record.recipient,
            },
        )

    def _record(self, n: Notification, outcome: str, attempts: int, detail: str) -> DeliveryRecord:
        recipient = ",".join(mask_phone(r) if n.channel == "sms" else r for r in n.recipients)
        return DeliveryRecord(
            alert_id=n.alert_id,
            fingerprint=n.fingerprint,
            revision=n.revision,
            channel=n.channel,
            recipient=recipient,
            outcome=outcome,
            attempts=attempts,
            detail=detail[:500],
            ts=self.clock(),
            correlation_id=n.correlation_id,
        )

    async def _one(self, n: Notification) -> DeliveryRecord:
        adapter = self.adapters[n.channel]
        attempts: list[DeliveryResult] = await send_with_retries(
            adapter,
            n,
            max_attempts=self.max_attempts,
            base_delay_s=self.base_delay_s,
            max_delay_s=self.max_delay_s,
            sleep=self.sleep,
        )
        self.metrics.attempts.labels(n.channel).inc(len(attempts))
        last = attempts[-1]
        outcome = last.outcome.value if last.ok or last.outcome is Outcome.REJECTED else "gave_up"
        self.metrics.deliveries.labels(n.channel, outcome).inc()
        record = self._record(n, outcome, len(attempts), last.detail)
        self._log(record, logging.INFO if last.ok else logging.ERROR)
        return record
