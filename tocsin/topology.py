"""The one topology: Tocsin's stages and their wiring, defined once.

::

    telemetry.<family> --detect--> detections / detections.urgent --confirm--> alerts --deliver--> alerts.deliveries
          ^  deadman ticks (one per registered device)     ^  lifecycle ticks (one per active alert)

- detect: :class:`~tocsin.detectors.service.DetectorStage` (state per device), fed by the gateway's
  telemetry and by the deadman's clock ticks, sent through each device's own telemetry topic.
- confirm: :class:`~tocsin.alerts.service.AlertStage` (state per fingerprint), fed by detections and by
  lifecycle ticks (cool-downs, flapping holds, reminders), sent through the alert's own key.
- deliver: :class:`~tocsin.alerts.notify.Notifier` over the adapters (:func:`build_adapters`: MQTT, SMS,
  broadcast), writing one audit record per delivery.
- every record of every stage and every clock tick runs inside one guard (tocsin/guard.py): a
  record that cannot be handled is set aside as a dead letter, a tick that fails is counted and
  logged; neither stops the driver.

Two thin drivers run this definition: the Faust worker (tocsin/worker.py: Kafka topics, changelogged
tables, timers) and the embedded mode (tocsin/embedded.py: an in-process bus, dict state, asyncio
tasks). Each driver only moves records between the stages built here; neither builds a stage,
an adapter or a tick itself.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from tocsin.alerts.adapters.base import Adapter
from tocsin.alerts.adapters.broadcast import STOP_CHANNEL, BroadcastAdapter
from tocsin.alerts.adapters.mqtt_alerts import MqttAlertAdapter
from tocsin.alerts.adapters.sms import SmsAdapter
from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.notify import Notifier, NotifyMetrics
from tocsin.alerts.ratelimit import PriorityRateLimiter, RateLimited
from tocsin.alerts.routing import DEFAULT_ROUTING, Routing
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.alerts.silences import Silence
from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.rules import Rules
from tocsin.detectors.service import DetectorMetrics, DetectorStage
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.detection import LifecycleTick
from tocsin.schemas.registry import RegistryLike
from tocsin.schemas.telemetry import DeadmanTick
from tocsin.schemas.wire import encode

Record = tuple[str, bytes, bytes]
"""(topic, key, value) of a record a stage or a clock emits."""

AGENTS = (*(f"detect-{f.value}" for f in Family), "confirm", "confirm-urgent", "deliver", "silences")
"""The names the guard counts dead letters under (``tocsin_worker_deadletters_total{agent}``)."""
TIMERS = ("deadman", "alert-clock")
"""The clocks the guard runs (``tocsin_worker_timer_failures_total{timer}``)."""


@dataclass(frozen=True)
class Endpoints:
    """Where alerts go: the MQTT broker's operator topics, the SMS gateway, the broadcast platform.
    An empty host or URL leaves that adapter out."""

    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_client_id: str = "tocsin-alerts"
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_tls: ssl.SSLContext | None = None
    sms_url: str = ""
    sms_api_key: str = ""
    sms_sender_id: str = "TOCSIN"
    sms_callback_url: str | None = None
    sms_rate_per_s: float = 100.0
    sms_timeout_s: float = 5.0
    broadcast_url: str = ""
    broadcast_api_key: str = ""


def build_adapters(e: Endpoints) -> dict[str, Adapter]:
    """The delivery adapters by channel; the broadcast platform also takes the stop of a broadcast."""
    adapters: dict[str, Adapter] = {}
    if e.mqtt_host:
        adapters["mqtt"] = MqttAlertAdapter(
            e.mqtt_host,
            e.mqtt_port,
            client_id=e.mqtt_client_id,
            username=e.mqtt_username,
            password=e.mqtt_password,
            tls=e.mqtt_tls,
        )
    if e.sms_url:
        sms = SmsAdapter(
            e.sms_url,
            e.sms_api_key,
            timeout_s=e.sms_timeout_s,
            sender_id=e.sms_sender_id,
            callback_url=e.sms_callback_url,
        )
        adapters["sms"] = RateLimited(sms, PriorityRateLimiter(e.sms_rate_per_s))
    if e.broadcast_url:
        adapters["broadcast"] = adapters[STOP_CHANNEL] = BroadcastAdapter(e.broadcast_url, e.broadcast_api_key)
    return adapters


@dataclass
class Topology:
    """The stages of one process, built from one registry, one rules file and one alert config."""

    registry: RegistryLike | None
    detector: DetectorStage
    alerter: AlertStage
    notifier: Notifier
    adapters: dict[str, Adapter]

    @classmethod
    def build(
        cls,
        registry: RegistryLike | None,
        rules: Rules,
        alert_config: AlertConfig,
        adapters: dict[str, Adapter],
        metrics_registry: CollectorRegistry,
        *,
        detector_clock: Callable[[], float] = time.time,
        alert_clock: Callable[[], datetime] | None = None,
        routing: Routing = DEFAULT_ROUTING,
        silences: Callable[[], list[Silence]] = list,
        notify_base_delay_s: float = 0.5,
    ) -> Topology:
        """``detector_clock``: what the detection latency is measured against (epoch s);
        ``alert_clock``: the alert engine's now (default: the wall clock)."""
        engine_kwargs: dict[str, Any] = {"clock": alert_clock} if alert_clock is not None else {}
        return cls(
            registry,
            DetectorStage(DetectorEngine(rules, registry), DetectorMetrics(metrics_registry), clock=detector_clock),
            AlertStage(AlertEngine(alert_config, registry, **engine_kwargs), AlertMetrics(metrics_registry)),
            Notifier(
                registry,
                adapters,
                NotifyMetrics(metrics_registry),
                routing=routing,
                silences=silences,
                base_delay_s=notify_base_delay_s,
            ),
            adapters,
        )

    async def start_adapters(self) -> None:
        for a in set(self.adapters.values()):
            await a.start()

    async def stop_adapters(self) -> None:
        for a in set(self.adapters.values()):
            try:
                await a.stop()
            except Exception:  # noqa: BLE001 - stopping: the others must stop too
                pass

    # ------------------------------------------------------------------ clocks
    def deadman_ticks(self, now: datetime) -> list[Record]:
        """One tick per registered device (never-seen ones too), through the device's own telemetry
        topic and key, so it is judged in order with the device's readings."""
        if self.registry is None:
            return []
        return [
            (
                topics.kafka_telemetry(d.family),
                d.device_id.encode(),
                encode(DeadmanTick(device_id=d.device_id, ts=now)),
            )
            for d in self.registry.devices
        ]

    def lifecycle_ticks(self, states: Iterable[tuple[str, Any]], now: datetime) -> list[Record]:
        """One tick per active alert that needs one (``states``: fingerprint, lifecycle state),
        through the alert's own key of ``detections``."""
        return [
            (topics.DETECTIONS, AlertStage.tick_key(fp), encode(LifecycleTick(fingerprint=fp, ts=now)))
            for fp, state in states
            if self.alerter.engine.needs_tick(state)
        ]
