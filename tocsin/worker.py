"""The Kafka-mode worker: one Faust app whose thin agents call the same stages as embedded mode.

- ``detect_<family>``: ``telemetry.<family>`` -> DetectorStage (state: table ``detector-<family>``,
  keyed by device) -> ``detections`` keyed by hazard and area.
- ``confirm``: ``detections`` -> AlertStage (state: table ``alert-lifecycle``, keyed by
  fingerprint) -> ``alerts``.
- ``deliver``: ``alerts`` -> Notifier (SMS, MQTT) -> ``alerts.deliveries`` (audit).

Tables are changelogged in Kafka, so a restarted or rebalanced worker resumes with its state.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import View
from prometheus_client import CollectorRegistry

from alerts.adapters.base import Adapter
from alerts.adapters.broadcast import STOP_CHANNEL, BroadcastAdapter
from alerts.adapters.mqtt_alerts import MqttAlertAdapter
from alerts.adapters.sms import SmsAdapter
from alerts.engine import AlertConfig, AlertEngine
from alerts.notify import Notifier, NotifyMetrics
from alerts.ratelimit import PriorityRateLimiter, RateLimited
from alerts.receipts import SmsReceipt, receipt_record
from alerts.routing import load_routing
from alerts.service import AlertMetrics, AlertStage
from alerts.silence_store import SilenceStore
from detectors.engine import DetectorEngine, detection_key
from detectors.rules import load_rules
from detectors.service import DetectorMetrics, DetectorStage
from schemas import topics
from schemas.alert import Alert, AlertStatus
from schemas.common import Family
from schemas.detection import LifecycleTick
from schemas.registry import open_registry
from schemas.telemetry import DeadmanTick
from schemas.wire import encode
from tocsin.settings import Settings

log = logging.getLogger(__name__)


def _raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def create_app(settings: Settings, metrics_registry: CollectorRegistry) -> faust.App:
    registry = open_registry(settings.registry_file)
    rules = load_rules(settings.rules_file)
    app = faust.App(
        settings.worker_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=settings.worker_data_dir,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_in_thread=False,
        table_standby_replicas=0,
    )
    det_stage = DetectorStage(DetectorEngine(rules, registry), DetectorMetrics(metrics_registry))
    alert_stage = AlertStage(
        AlertEngine(
            AlertConfig(
                sender=settings.alert_sender,
                status=AlertStatus(settings.alert_status),
                max_detection_age_s=settings.alert_max_detection_age_s,
                cool_down_s=settings.alert_cool_down_s,
                confirm=dict(settings.alert_confirm),
                reminder_s=settings.alert_reminder_s,
            ),
            registry,
        ),
        AlertMetrics(metrics_registry),
    )
    detections = _raw_topic(app, topics.DETECTIONS)
    alerts = _raw_topic(app, topics.ALERTS)
    deliveries = _raw_topic(app, topics.DELIVERIES)

    sources = {family: _raw_topic(app, topics.kafka_telemetry(family)) for family in Family}
    for family, source in sources.items():
        table = app.Table(f"detector-{family.value}", default=None, partitions=settings.kafka_partitions)

        async def detect(stream: Any, table: Any = table) -> None:
            async for event in stream.events():
                msg = event.message  # its timestamp: when the gateway received the reading
                for d in det_stage.handle(event.value, table, (msg.partition, msg.offset), msg.timestamp):
                    await detections.send(key=detection_key(d), value=encode(d))

        app.agent(source, name=f"detect-{family.value}")(detect)

    @app.timer(interval=settings.deadman_tick_s, on_leader=True)
    async def deadman() -> None:
        """The wall clock drives offline detection: one tick per registered device, sent through the
        device's own partition so it is judged in order with its readings (never-seen devices too)."""
        if registry is None:
            return
        now = datetime.now(UTC)
        for device in registry.devices:
            tick = DeadmanTick(device_id=device.device_id, ts=now)
            await sources[device.family].send(key=device.device_id.encode(), value=encode(tick))

    lifecycle = app.Table("alert-lifecycle", default=None, partitions=settings.kafka_partitions)

    @app.timer(interval=settings.deadman_tick_s)
    async def alert_clock() -> None:
        """Cool-downs, flapping holds and reminders need a clock: one tick per active alert of this
        worker's partitions, through the alert's own partition of ``detections``."""
        now = datetime.now(UTC)
        for fingerprint, state in list(lifecycle.items()):
            if state and (state.get("active") or state.get("pending")) and "triggers" not in state:
                tick = LifecycleTick(fingerprint=fingerprint, ts=now)
                await detections.send(key=AlertStage.tick_key(fingerprint), value=encode(tick))

    @app.agent(detections, name="confirm")
    async def confirm(stream: Any) -> None:
        async for event in stream.events():
            for a in alert_stage.handle(event.value, lifecycle, (event.message.partition, event.message.offset)):
                log.warning("ALERT %s %s %s: %s", a.msg_type.value, a.level.value, a.identifier, a.headline)
                await alerts.send(key=a.fingerprint.encode(), value=encode(a))

    adapters: dict[str, Adapter] = {}
    if settings.mqtt_host:
        adapters["mqtt"] = MqttAlertAdapter(
            settings.mqtt_host,
            settings.mqtt_port,
            client_id=f"{settings.worker_id}-alerts",
            username=settings.mqtt_username,
            password=settings.mqtt_password.get_secret_value(),
        )
    if settings.sms_url:
        sms = SmsAdapter(
            settings.sms_url,
            settings.sms_api_key.get_secret_value(),
            sender_id=settings.sms_sender_id,
            callback_url=settings.sms_callback_url or None,
        )
        adapters["sms"] = RateLimited(sms, PriorityRateLimiter(settings.sms_rate_per_s))
    if settings.broadcast_url:
        broadcast = BroadcastAdapter(settings.broadcast_url, settings.broadcast_api_key.get_secret_value())
        adapters["broadcast"] = adapters[STOP_CHANNEL] = broadcast
    silences = SilenceStore(settings.kafka_bootstrap)
    notifier = Notifier(
        registry,
        adapters,
        NotifyMetrics(metrics_registry),
        routing=load_routing(settings.routing_file),
        silences=silences.silences,
    )
    started: list[bool] = []
    starting = asyncio.Lock()

    async def start_delivery() -> None:
        async with starting:
            if not started:
                for a in set(adapters.values()):
                    await a.start()
                silences.start()
                await asyncio.to_thread(silences.wait_caught_up, 10.0)
                started.append(True)

    # Several alerts are delivered at once, so a red warning is not stuck behind a blue fan-out: the
    # providers' limiters serve the higher priority first. Offsets are committed only up to the
    # oldest alert still being delivered, so a crash redelivers (and the idempotency keys dedupe).
    @app.agent(alerts, name="deliver", concurrency=settings.deliver_concurrency)
    async def deliver(stream: Any) -> None:
        async for value in stream:
            await start_delivery()
            alert = Alert.model_validate_json(value)
            for record in await notifier.deliver(alert):
                await deliveries.send(key=record.alert_id.encode(), value=encode(record))

    @app.page("/callbacks/sms")
    class SmsReceipts(View):  # type: ignore[misc]
        """The carrier's delivery receipts -> audit records on ``alerts.deliveries``."""

        async def post(self, request: Any) -> Any:
            try:
                record = receipt_record(SmsReceipt.model_validate_json(await request.read()))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                return self.json({"error": str(exc)[:300]}, status=422)
            await deliveries.send(key=record.alert_id.encode(), value=encode(record))
            return self.json({"recorded": True})

    @app.page("/healthz")
    async def healthz(_self: Any, request: Any) -> Any:
        return _self.json({"status": "ok"})

    @app.page("/metrics")
    async def metrics(_self: Any, request: Any) -> Any:
        from prometheus_client import generate_latest

        return _self.bytes(generate_latest(metrics_registry), content_type="text/plain; version=0.0.4")

    return app


def run_worker(settings: Settings) -> None:
    registry = CollectorRegistry()
    app = create_app(settings, registry)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()
