"""Embedded mode (``tocsin run``): gateway, detectors and alerts in one process, no external service.

An embedded MQTT broker (amqtt) accepts devices on localhost; the gateway validates their messages
into an in-process bus that carries the Kafka topic names; the detector and alert stages and the
notifier are the very ones the Kafka worker runs. SMS and broadcasts go to an injected
:class:`Downstream` (``tocsin run`` and the scenario runs give the emulators of
simulators/downstream.py); alerts are also published, retained, on the broker's operator topics.

Time. Embedded runs replay history compressed (``make run``, ``tocsin simulate run``): device time
runs far faster than the wall clock. The alert engine follows device time (:class:`DeviceTimeClock`).
With ``deadman_clock="device"`` (scenario runs, simulators/run.py) so does the deadman: its ticks are
due at every ``device_tick_s`` of the device time of the readings the detectors have processed
(:class:`DeviceTimeTicker`), and a reading counts as seen at that device time, so a device silent for
15 min of device time is offline although that took a second of wall time. The default, ``"wall"``,
is the Kafka worker's wall-clock timer; ``tocsin run`` keeps it because the demo's gas detectors,
cameras and seismic stations report only around their hazard (on device time they would be offline
for most of the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any, Literal, Protocol, cast

from prometheus_client import CollectorRegistry

from tocsin.alerts.engine import AlertConfig, confirm_settings
from tocsin.bus import MemoryBus, MemorySink
from tocsin.detectors.engine import detection_key
from tocsin.detectors.rules import Rules
from tocsin.guard import DeadLetterMetrics, RecordGuard, SourceRecord
from tocsin.ingest.gateway import CORRELATION_HEADER, RECEIVED_HEADER, GatewayCore, MqttGateway, header
from tocsin.ingest.metrics import GatewayMetrics
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert
from tocsin.schemas.deadletter import DeadLetter, WorkerDeadLetter
from tocsin.schemas.detection import Detection
from tocsin.schemas.records import decode_alert, decode_detection, decode_telemetry
from tocsin.schemas.registry import RegistryLike
from tocsin.schemas.telemetry import DeadmanTick
from tocsin.schemas.wire import encode
from tocsin.topology import AGENTS, TIMERS, Endpoints, Topology, build_adapters

log = logging.getLogger(__name__)

EMITTED_HEADER = "tocsin-emitted-ms"
"""Embedded bus only: when a detection was emitted (Kafka records carry it as their timestamp)."""


def _header_s(headers: Any, name: str) -> float | None:
    """A millisecond-epoch header as epoch seconds, or None."""
    raw = header(headers, name)
    try:
        return int(raw) / 1000.0 if raw is not None else None
    except ValueError:
        return None


def _detect_agent(topic: str) -> str:
    return f"detect-{topic.removeprefix('telemetry.')}"


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` when it can be bound, otherwise a free ephemeral port."""
    for port in (preferred, 0):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


async def start_broker(host: str, port: int) -> Any:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    return broker


@dataclass
class Summary:
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    worker_dead_letters: list[WorkerDeadLetter] = field(default_factory=list)
    deliveries: Counter[tuple[str, str]] = field(default_factory=Counter)
    topic_counts: Counter[str] = field(default_factory=Counter)


class DeviceTimeClock:
    """The alert engine's clock in embedded mode: the device time of the newest detection, plus the
    wall time since it arrived.

    The embedded mode replays history compressed (``make run``, scenarios), so device time runs far
    ahead of the wall clock's pace and lags it by up to the replay's span. Against the wall clock an
    earthquake's S-wave warning times would all read "already in the blind zone"; against this clock
    they are what the devices' own time says, as they are in production where the two agree.
    Before any detection it is the wall clock.
    """

    def __init__(self, wall: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._t: datetime | None = None
        self._at = 0.0

    def observe(self, t: datetime) -> None:
        if self._t is None or t > self._t:
            self._t, self._at = t, self._wall()

    def __call__(self) -> datetime:
        if self._t is None:
            return datetime.now(UTC)
        return self._t + timedelta(seconds=self._wall() - self._at)


class DeviceTimeTicker:
    """When the deadman ticks on device time: at every multiple of ``every_s`` (epoch seconds) that
    device time crosses as it advances. Pure.

    ``advance(t)`` gives the tick times due now that device time has reached ``t``: the first call
    one tick at ``t`` itself (the deadman's first check), later every boundary in ``(last, t]``; a
    jump over more than ``max_burst`` boundaries (a long gap in the data) gives only the latest
    ``max_burst``. Time never runs backwards: an earlier ``t`` gives nothing.
    """

    def __init__(self, every_s: float, *, max_burst: int = 120) -> None:
        if not (math.isfinite(every_s) and every_s > 0):
            raise ValueError("every_s must be positive and finite")
        if max_burst < 1:
            raise ValueError("max_burst must be at least 1")
        self.every_s, self.max_burst = float(every_s), max_burst
        self.last: float | None = None  # epoch seconds of the latest tick given

    def advance(self, t: datetime) -> list[datetime]:
        now = t.timestamp()
        if self.last is None:
            self.last = now
            return [t]
        first = math.floor(self.last / self.every_s) + 1
        last = math.floor(now / self.every_s)
        if last < first:
            return []
        first = max(first, last - self.max_burst + 1)
        self.last = last * self.every_s
        return [datetime.fromtimestamp(k * self.every_s, UTC) for k in range(first, last + 1)]


def reading_time(value: bytes) -> datetime | None:
    """The device timestamp (``ts``) of a canonical telemetry record, or None."""
    try:
        ts = json.loads(value).get("ts")
        t = datetime.fromisoformat(ts) if isinstance(ts, str) else None
    except (ValueError, AttributeError):
        return None
    return t if t is not None and t.tzinfo is not None else None


def default_device_tick_s(registry: RegistryLike | None, floor_s: float = 5.0) -> float:
    """Deadman tick period on device time: half the shortest reporting interval, at least ``floor_s``
    (a gas detector reporting every 60 s is offline after 180 s, noticed within 30 s)."""
    intervals = [d.interval_s for d in (registry.devices if registry else []) if d.interval_s and d.interval_s > 0]
    return max(floor_s, min(intervals) / 2.0) if intervals else 30.0


class Downstream(Protocol):
    """Where an embedded run delivers SMS and broadcasts: ``start()`` (blocking) gives the base URLs
    of the SMS gateway and the broadcast platform, reached with ``api_key``."""

    api_key: str

    def start(self) -> tuple[str, str]: ...

    def stop(self) -> None: ...

    def sms_stats(self) -> dict[str, Any]: ...


class EmbeddedPipeline:
    """Everything but the devices: broker, gateway, bus, stages, notifier; SMS and broadcasts go to
    ``downstream`` when given (without it, alerts are delivered on MQTT only)."""

    def __init__(
        self,
        registry: RegistryLike | None,
        rules: Rules | None = None,
        *,
        mqtt_port: int = 1883,
        alert_config: AlertConfig | None = None,
        on_alert: Callable[[Alert, list[Any]], None] | None = None,
        metrics_registry: CollectorRegistry | None = None,
        deadman_tick_s: float = 5.0,
        deadman_clock: Literal["device", "wall"] = "wall",
        device_tick_s: float | None = None,
        downstream: Downstream | None = None,
    ) -> None:
        self.registry, self.rules = registry, rules or Rules()
        self.downstream = downstream
        self.mqtt_port = mqtt_port
        self.alert_config = alert_config or AlertConfig(**confirm_settings(self.rules.confirm))
        self.on_alert = on_alert
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self.summary = Summary()
        self.deadman_tick_s = deadman_tick_s
        self.lifecycle: dict[str, Any] = {}  # the alert stage's state, per fingerprint
        self.device_states: dict[str, Any] = {}  # the detector stage's state, per device
        self.device_clock = DeviceTimeClock()
        # the deadman on device time: the stream's own clock (the newest reading's device time), and
        # an optional bound from the replay (``replay_clock``: the publisher's position, see
        # simulators/run.py) so that a device whose clock runs ahead cannot drag device time forward
        self.deadman_clock = deadman_clock
        self.stream_clock = DeviceTimeClock()
        self.ticker = DeviceTimeTicker(device_tick_s or default_device_tick_s(registry))
        self.replay_clock: Callable[[], datetime | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._offsets: Counter[str] = Counter()  # the bus's position per topic, for the dead letters

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.bus = MemoryBus(loop)
        self.broker = await start_broker("127.0.0.1", self.mqtt_port)
        reg = self.metrics_registry
        self.core = GatewayCore(MemorySink(self.bus), GatewayMetrics(reg), registry=self.registry)
        self.gateway = MqttGateway(
            self.core,
            host="127.0.0.1",
            port=self.mqtt_port,
            client_id="tocsin-embedded-gateway",
            share_group=None,
            mqtt5=False,
        )
        sms_url = broadcast_url = ""
        key = self.downstream.api_key if self.downstream is not None else ""
        if self.downstream is not None:
            sms_url, broadcast_url = await asyncio.to_thread(self.downstream.start)
        endpoints = Endpoints(
            mqtt_host="127.0.0.1",
            mqtt_port=self.mqtt_port,
            mqtt_client_id="tocsin-embedded-alerts",
            sms_url=sms_url,
            sms_api_key=key,
            broadcast_url=broadcast_url,
            broadcast_api_key=key,
        )
        stage_clock = (lambda: self.stream_clock().timestamp()) if self.deadman_clock == "device" else time.time
        self.topology = Topology.build(
            self.registry,
            self.rules,
            self.alert_config,
            build_adapters(endpoints),
            reg,
            detector_clock=stage_clock,
            alert_clock=self.device_clock,
            notify_base_delay_s=0.2,
        )
        self.adapters = self.topology.adapters
        self.detector, self.alerter, self.notifier = (
            self.topology.detector,
            self.topology.alerter,
            self.topology.notifier,
        )
        await self.topology.start_adapters()
        self.guard = RecordGuard(self._dead_letter, DeadLetterMetrics(reg, AGENTS, TIMERS))
        self._tasks = [
            asyncio.create_task(self._consume(topics.TELEMETRY_TOPICS, _detect_agent, self._detect_one), name="detect"),
            asyncio.create_task(self._consume((topics.DETECTIONS,), lambda _: "confirm", self._confirm_one)),
            asyncio.create_task(self._consume((topics.ALERTS,), lambda _: "deliver", self._deliver_one)),
            asyncio.create_task(self._collect(topics.DEADLETTER, self._keep_dead_letter)),
            asyncio.create_task(self._collect(topics.WORKER_DEADLETTER, self._keep_worker_dead_letter)),
            asyncio.create_task(self._deadman(), name="deadman"),
            asyncio.create_task(self._alert_clock(), name="alert-clock"),
        ]
        self.gateway.start()
        if not await asyncio.to_thread(self.gateway.connected.wait, 10.0):
            raise RuntimeError(f"gateway could not connect to the embedded broker on port {self.mqtt_port}")

    def _keep_dead_letter(self, value: bytes) -> None:
        self.summary.dead_letters.append(DeadLetter.model_validate_json(value))

    def _keep_worker_dead_letter(self, value: bytes) -> None:
        self.summary.worker_dead_letters.append(WorkerDeadLetter.model_validate_json(value))

    async def _dead_letter(self, key: bytes, value: bytes) -> None:
        """The guard's dead letters go to the bus's ``worker.deadletter`` (kept in the summary)."""
        self.bus.publish(topics.WORKER_DEADLETTER, key, value)

    def _publish_ticks(self, now: datetime) -> None:
        """One deadman tick per registered device, through its telemetry topic (as the worker does)."""
        for topic, key, value in self.topology.deadman_ticks(now):
            self.bus.publish(topic, key, value)

    async def _deadman(self) -> None:
        """Wall-clock ticks through the same path as in the worker (see tocsin/worker.py); on device
        time the ticks come from ``_detect`` instead, as readings advance device time."""
        if self.registry is None or self.deadman_clock == "device":
            return

        async def tick() -> None:
            self._publish_ticks(datetime.now(UTC))

        while True:
            await self.guard.tick("deadman", tick)
            await asyncio.sleep(self.deadman_tick_s)

    def _device_seen_s(self, value: bytes) -> float:
        """Device time: a reading advances the stream's clock (its ``ts``, capped by the replay's
        position when known) and counts as seen at it; ticks that became due are published."""
        t = reading_time(value)
        if t is not None:
            bound = self.replay_clock() if self.replay_clock is not None else None
            self.stream_clock.observe(min(t, bound) if bound is not None else t)
        now = self.stream_clock()
        if t is not None:
            for due in self.ticker.advance(now):
                self._publish_ticks(due)
        return now.timestamp()

    async def _consume(
        self, names: tuple[str, ...], agent: Callable[[str], str], handle: Callable[[bytes, Any], Awaitable[None]]
    ) -> None:
        """One stage's loop: every record of the topics ``names`` through ``handle(value, headers)``,
        inside the guard (a record it cannot handle becomes a dead letter, the loop goes on)."""
        q = self.bus.subscribe(*names)
        while True:
            topic, key, value, headers = await q.get()
            self._offsets[topic] += 1
            record = SimpleNamespace(
                topic=topic, partition=0, offset=self._offsets[topic] - 1, key=key, value=value, headers=headers
            )
            try:
                await self.guard.run(agent(topic), cast(SourceRecord, record), partial(handle, value, headers))
            finally:
                self.bus.done()

    async def _detect_one(self, value: bytes, headers: Any) -> None:
        if self.deadman_clock == "device" and not DeadmanTick.is_tick(value):
            received_s = self._device_seen_s(value)
        else:
            received_s = _header_s(headers, RECEIVED_HEADER) or time.time()
        cid = header(headers, CORRELATION_HEADER)
        record = decode_telemetry(value)
        for d in self.detector.apply(record, self.device_states, received_s=received_s, correlation_id=cid):
            emitted = [(EMITTED_HEADER, str(int(time.time() * 1000)).encode())]
            self.bus.publish(topics.DETECTIONS, detection_key(d), encode(d), emitted)

    async def _confirm_one(self, value: bytes, headers: Any) -> None:
        record = decode_detection(value)
        if isinstance(record, Detection):
            self.device_clock.observe(record.ts)
        for a in self.alerter.apply(record, self.lifecycle, emitted_s=_header_s(headers, EMITTED_HEADER)):
            self.bus.publish(topics.ALERTS, a.fingerprint.encode(), encode(a))

    async def _deliver_one(self, value: bytes, _headers: Any) -> None:
        alert = decode_alert(value)
        self.summary.alerts.append(alert)
        records = await self.notifier.deliver(alert)
        for r in records:
            self.summary.deliveries[(r.channel, r.outcome)] += 1
            self.bus.publish(topics.DELIVERIES, r.alert_id.encode(), encode(r))
        if self.on_alert:
            self.on_alert(alert, records)

    async def _alert_clock(self) -> None:
        """Lifecycle ticks for active alerts, as in the worker (tocsin/worker.py)."""

        async def tick() -> None:
            for topic, key, value in self.topology.lifecycle_ticks(list(self.lifecycle.items()), datetime.now(UTC)):
                self.bus.publish(topic, key, value)

        while True:
            await asyncio.sleep(self.deadman_tick_s)
            await self.guard.tick("alert-clock", tick)

    async def _collect(self, topic: str, keep: Callable[[bytes], None]) -> None:
        """The dead letters of the gateway and of the stages, kept in the summary."""
        q = self.bus.subscribe(topic)
        while True:
            _topic, _key, value, _headers = await q.get()
            keep(value)
            self.bus.done()

    async def stop(self) -> None:
        await asyncio.to_thread(self.gateway.stop, 10.0)
        for t in self._tasks:
            t.cancel()
        await self.topology.stop_adapters()
        if self.downstream is not None:
            await asyncio.to_thread(self.downstream.stop)
        with contextlib.suppress(Exception):
            await self.broker.shutdown()
        self.summary.topic_counts = Counter(self.bus.counts)
