"""The Kafka-mode worker: one Faust app whose thin agents call the same stages as embedded mode.

- ``detect_<family>``: ``telemetry.<family>`` -> DetectorStage (state: table ``detector-<family>``,
  keyed by device) -> ``detections`` keyed by hazard and area.
- ``confirm``: ``detections`` -> AlertStage (state: table ``alert-lifecycle``, keyed by
  fingerprint) -> ``alerts``.
- ``deliver``: ``alerts`` -> Notifier (SMS, MQTT) -> ``alerts.deliveries`` (audit).

Every agent handles each record inside one ``RecordGuard`` (tocsin/guard.py): a record that does
not decode, or whose handling raises, goes to ``worker.deadletter`` with its bytes and the agent goes
on with the next one (docs/bad-input.md).

Tables are changelogged in Kafka, so a restarted or rebalanced worker resumes with its state.
The gateway's ``tocsin-correlation-id`` record header is copied onto the detections (and by the
alert engine onto alerts and deliveries). The web port serves ``/healthz`` (liveness), ``/readyz``
(started, partitions assigned, not rebalancing or recovering) and ``/metrics``, including the
consumer lag per topic and partition (``tocsin_worker_consumer_lag``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import faust
import prometheus_client
from faust.web import View
from prometheus_client import CollectorRegistry, Gauge

from tocsin.alerts.engine import AlertConfig, confirm_settings
from tocsin.alerts.fastlane import FastLane, FastLaneMetrics
from tocsin.alerts.receipts import SmsReceipt, receipt_record, verify_receipt
from tocsin.alerts.release import RELEASES, Action, ReleaseDesk, ReleaseEvent, ReleaseGate, ReleaseMetrics
from tocsin.alerts.routing import load_routing
from tocsin.alerts.sweep import Sweep, Sweeper, identified, parsed
from tocsin.changelog import ChangelogMetrics, ConfirmedAcks, Sent
from tocsin.detectors.engine import detection_key, detection_topic
from tocsin.detectors.rules import load_rules
from tocsin.guard import BatchReading, DeadLetterMetrics, RecordGuard
from tocsin.ingest.gateway import CORRELATION_HEADER, correlation_id, header
from tocsin.kafka import (
    ConsumerLag,
    TopicPartition,
    committed_offsets,
    ensure_changelogs,
    kafka_silence_store,
    partitions_by_topic,
    read_since,
    read_split,
    replication_factor,
)
from tocsin.logs import dict_config, register_client_metrics
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertStatus
from tocsin.schemas.batch import is_batch, unpack
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.deadletter import WorkerReason
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.records import PoisonRecord, decode_alert, decode_detection, decode_telemetry
from tocsin.schemas.registry import devices_outside_boundaries, open_registry
from tocsin.schemas.telemetry import Telemetry
from tocsin.schemas.transport import KafkaTransport, kafka_ssl_context, mqtt_tls_context
from tocsin.schemas.wire import encode
from tocsin.settings import Settings
from tocsin.stall import StallWatch
from tocsin.topology import AGENTS, TIMERS, Endpoints, Topology, build_adapters

log = logging.getLogger(__name__)


class LagMetrics:
    """``tocsin_worker_consumer_lag{topic,partition}``: records not yet consumed (and committed)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "tocsin_worker_consumer_lag",
            "records behind the end of the partition (end offset minus committed offset), this worker's partitions",
            ["topic", "partition"],
            registry=registry,
        )
        self._shown: set[TopicPartition] = set()

    def update(self, lags: dict[TopicPartition, int]) -> None:
        for topic, partition in self._shown - set(lags):  # partitions this worker no longer owns
            self.lag.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(lag)
        self._shown = set(lags)


class RebalanceMetrics:
    """What the worker's consumer does about records a rebalance left behind (``patch_stale_acks``,
    ``StallWatch``)."""

    def __init__(self, registry: CollectorRegistry, topics: Iterable[str] = ()) -> None:
        self.stale = prometheus_client.Counter(
            "tocsin_worker_stale_records_total",
            "records fetched before a rebalance and dropped unhandled after it (fetched again from the"
            " committed offset, not counted as handled)",
            ["topic"],
            registry=registry,
        )
        self.reseeks = prometheus_client.Counter(
            "tocsin_worker_partition_reseeks_total",
            "partitions sought back to their committed offset: committed offset stalled with records waiting"
            " and none in flight",
            ["topic"],
            registry=registry,
        )
        for topic in topics:  # a series at 0 from the start: rules and panels see "none", not "no data"
            self.stale.labels(topic)
            self.reseeks.labels(topic)


class BatchedState(MutableMapping[str, Any]):
    """A Faust table seen through one batch of events: writes are held (with the partition of the
    event that made them) and ``flush`` writes each key's last value once, to the table and its
    changelog partition. Reads see the held writes first. The partition is explicit because Faust's
    own ``table[key] = value`` takes it from the stream's current event, which in a batch is the
    last event taken, not necessarily one of the key's partition."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition = 0  # of the event being handled: set before each one
        self._held: dict[str, tuple[Any, int]] = {}
        self._outstanding: list[Sent] = []  # changelog sends not confirmed at the last flush

    def __getitem__(self, key: str) -> Any:
        if key in self._held:
            return self._held[key][0]
        value = self.table.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._held[key] = (value, self.partition)

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("lifecycle states are never deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(set(self._held) | set(self.table.keys()))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> list[Sent]:
        """Write the held values to the in-memory table and queue them to its changelog; returns the
        changelog sends a batch ending now must see confirmed (their futures resolve when Kafka has
        the record): this flush's, and those of earlier flushes still unconfirmed -- two agents may
        share the state, and a record of one may have had its write flushed by the other's batch."""
        sent = [s for s in self._outstanding if not s.future.done()]
        for key, (value, partition) in self._held.items():
            self.table.data[key] = value
            sent.append(Sent(key, partition, self.table.send_changelog(partition, key, value)))
        self._held.clear()
        self._outstanding = sent
        return list(sent)

    def send_again(self, key: str, partition: int) -> asyncio.Future[Any]:
        """Queue the key's current value to its changelog partition once more (after a failed send)."""
        future: asyncio.Future[Any] = self.table.send_changelog(partition, key, self.table.data[key])
        self._outstanding.append(Sent(key, partition, future))
        return future


async def run_batched(
    stream: Any,
    handle: Callable[[Any], Awaitable[object]],
    state: BatchedState,
    lock: asyncio.Lock,
    batch_max: int,
    within_s: float,
    acks: ConfirmedAcks,
    *,
    yield_each: bool = False,
) -> None:
    """An agent's body: ``handle(message)`` runs for each record as soon as the stream hands it over
    (a stream processor; ``handle`` is the record's guarded handling), and every batch the stream
    takes (``batch_max`` records, or what came within ``within_s``) ends with ``state.flush()``
    under ``lock``. A record enters the batch only once ``handle`` returned for it. The batch's
    acknowledgement (the offsets Faust may commit) is held by ``acks`` until Kafka confirmed every
    changelog record of the flush (tocsin/changelog.py); the agent goes on meanwhile. ``yield_each``:
    give the event loop back after each record (a routine lane, so that urgent work runs in between)."""

    async def handle_now(value: Any) -> Any:
        await handle(stream.current_event.message)
        if yield_each:
            await asyncio.sleep(0)
        return value

    def ack(event: Any) -> None:  # as Faust's ``Stream.ack``, for an event the stream already released
        if event.ack():
            message = event.message
            stream._on_message_out(message.tp, message.offset, message)

    def release(event: Any) -> None:  # no longer waited for, never committed (as ``patch_stale_acks``)
        release_uncommitted(stream.app.consumer, event.message)

    stream.add_processor(handle_now)
    async for events in stream.take_events(batch_max, within=within_s):
        async with lock:
            sent = state.flush()
        acks.hold(events, sent, state.send_again, ack, release)  # before the stream's own acknowledgement


def reading_correlation_id(reading: Telemetry) -> str:
    """The correlation id the gateway gives a reading (``tocsin.ingest.gateway.correlation_id``)."""
    return correlation_id(reading.device_id, reading.ts, reading.seq)


def _raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def patch_fetch_max_wait(ms: int) -> None:
    """Set the long-poll wait of Faust's aiokafka consumer (one of the three places Tocsin patches Faust,
    with ``patch_stale_acks`` and ``patch_strict_commits``).

    faust-streaming 0.15 hardcodes ``fetch_max_wait_ms=1500`` in
    ``AIOKafkaConsumerThread._create_worker_consumer`` and has no setting for it. aiokafka keeps one
    fetch request in flight per broker, and leaves out of it the partitions that still have buffered
    records: under load the busy ``detections`` partitions are buffered, so the request covers only
    the idle ones (``alerts``, ticks) and the broker holds it for the whole wait. Once the buffer is
    drained the agent idles until that request returns: processing came in bursts every 1.5 s, well
    below the CPU's capacity, and a red alert waited behind it. A short wait costs one empty fetch
    per ``ms`` when the worker is idle. The value is read by ``AIOKafkaConsumer.start`` (it builds
    its fetcher there), so setting it on the freshly created consumer is enough.
    """
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    original = getattr(cls, "_tocsin_original_create_worker_consumer", cls._create_worker_consumer)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer

    cls._tocsin_original_create_worker_consumer = original  # type: ignore[attr-defined]
    cls._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def release_uncommitted(consumer: Any, message: Any) -> None:
    """Stop waiting for ``message`` without adding its offset to the offsets Faust commits (a record
    dropped unhandled, or handled but whose state Kafka has not confirmed when a rebalance starts):
    the partition's owner reads it again from the last commit."""
    from faust.types.tuples import ack_lock

    with ack_lock:
        message.acked = True
        consumer._unacked_messages.discard(message)


def patch_stale_acks(on_stale: Callable[[Any], None]) -> None:
    """Never count a record that a stream dropped unhandled as handled (Faust patched in one more place).

    After a rebalance Faust's stream drops the records fetched before it (their ``generation_id`` is
    the old one) and those that reach it while the flow is suspended, and counts on fetching them
    again from the committed offset. Faust's pure-Python stream iterator (``NO_CYTHON``, or no
    compiled extension for the platform) acknowledges each record it drops, and ``Consumer.ack`` adds
    its offset to the offsets to commit: the next commit moves past records nobody handled, and if
    the partition moves on (another member joins) or this worker dies before it handles the copies it
    fetches again, they are never handled. The compiled iterator does not acknowledge them. A record a
    stream took is marked ``tracked`` before it is handled; a dropped one never is. Such a record is
    here released (no longer waited for) but its offset is not committed; ``on_stale(message)``
    counts it."""
    from faust.app.base import App
    from faust.transport.consumer import Consumer

    original = getattr(Consumer, "_tocsin_original_ack", Consumer.ack)

    def ack(self: Any, message: Any) -> bool:
        app: App = self.app
        if not message.tracked and not message.acked and app.topics.acks_enabled_for(message.topic):
            stale = message.generation_id != app.consumer_generation_id or not app.flow_control.is_active()
            if stale:
                release_uncommitted(self, message)
                on_stale(message)
                return False
        return bool(original(self, message))

    Consumer._tocsin_original_ack = original  # type: ignore[attr-defined]
    Consumer.ack = ack  # type: ignore[method-assign]


def patch_strict_commits(strict_topics: frozenset[str]) -> None:
    """Never commit past a record of ``strict_topics`` that was not handled (Faust patched in one more place).

    Faust's ``Consumer._new_offset`` commits up to the first gap in the handled offsets, but lets a
    gap of exactly one record at the head through: with the committed offset at 34 and 35, 36
    handled, it commits 37 though 34 never was (it allows for a record missing from a compacted or
    transactional topic). After a rebalance a record can go missing exactly so: the new owner of a
    ``detections`` partition handled records it fetched just before Faust sought its partitions back
    to the committed offsets, and one record in between was never handed to the agent; the commit
    moved past it and its alert was lost (tests/integration/test_scaleout_workers.py, seen in 1 run of
    8). The topics the worker's agents read (telemetry, detections, alerts, and ``alerts.releases``:
    the operators' release decisions, which the operator API and the worker produce without
    transactions to a topic with the delete policy) are neither compacted nor transactional: their
    offsets have no holes, so for them a missing head offset is a record not handled, and the commit
    waits; ``StallWatch`` then seeks the partition back to it. Holes Faust recorded itself (its gap
    tree) are left to Faust."""
    from faust.transport.consumer import Consumer

    original = getattr(Consumer, "_tocsin_original_new_offset", Consumer._new_offset)

    def new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic in strict_topics:
            acked = self._acked.get(tp)
            committed = self._committed_offset.get(tp)
            if acked and committed is not None and min(acked) > committed:
                gaps = self._gap.get(tp)
                if not (gaps and gaps.overlaps(committed)):
                    return None  # the record at the committed offset is not handled yet
        result: int | None = original(self, tp)
        return result

    Consumer._tocsin_original_new_offset = original  # type: ignore[attr-defined]
    Consumer._new_offset = new_offset  # type: ignore[method-assign]


def broker_credentials(t: KafkaTransport) -> Any:
    """Faust's (aiokafka's) Kafka credentials for the transport settings: SASL (with TLS for SASL_SSL),
    TLS alone, or None for PLAINTEXT."""
    ctx = kafka_ssl_context(t)
    if t.uses_sasl:
        return faust.SASLCredentials(
            username=t.kafka_sasl_username,
            password=t.kafka_sasl_password.get_secret_value(),
            ssl_context=ctx,
            mechanism=t.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(ctx) if ctx is not None else None


def endpoints(settings: Settings) -> Endpoints:
    """The worker's delivery endpoints from its settings."""
    return Endpoints(
        mqtt_host=settings.mqtt_host,
        mqtt_port=settings.mqtt_port,
        # one MQTT client id per worker instance: scaled replicas with the same id would keep
        # disconnecting each other (the broker drops the older session)
        mqtt_client_id=f"{settings.worker_id}-alerts-{socket.gethostname()}-{os.getpid()}"[:64],
        mqtt_username=settings.mqtt_username,
        mqtt_password=settings.mqtt_password.get_secret_value(),
        mqtt_tls=mqtt_tls_context(settings) if settings.mqtt_host else None,
        sms_url=settings.sms_url,
        sms_api_key=settings.sms_api_key.get_secret_value(),
        sms_sender_id=settings.sms_sender_id,
        sms_callback_url=settings.sms_callback_url or None,
        sms_rate_per_s=settings.sms_rate_per_s,
        broadcast_url=settings.broadcast_url,
        broadcast_api_key=settings.broadcast_api_key.get_secret_value(),
    )


def create_app(settings: Settings, metrics_registry: CollectorRegistry) -> faust.App:
    patch_fetch_max_wait(settings.worker_fetch_max_wait_ms)
    strict_topics = frozenset(
        {*topics.TELEMETRY_TOPICS, topics.DETECTIONS, topics.DETECTIONS_URGENT, topics.ALERTS, topics.RELEASES}
    )
    rebalance_metrics = RebalanceMetrics(metrics_registry, sorted(strict_topics))
    batched_agents = [*(f"detect-{f.value}" for f in Family), "confirm", "confirm-urgent"]
    changelog_metrics = ChangelogMetrics(metrics_registry, batched_agents)

    def confirmed_acks(agent: str) -> ConfirmedAcks:
        # a batch still unconfirmed when a rebalance starts lets go of its records (tocsin/changelog.py)
        def rebalancing() -> bool:  # ``app`` is built below
            return bool(app.rebalancing)

        def owned(events: Any) -> bool:
            assigned = app.consumer.assignment()
            return all(e.message.tp in assigned for e in events)

        return ConfirmedAcks(
            agent, changelog_metrics, settings.worker_changelog_confirm_s, rebalancing=rebalancing, owned=owned
        )

    def on_stale(message: Any) -> None:
        rebalance_metrics.stale.labels(message.topic).inc()
        log.info(
            "record %s[%d]@%d fetched before a rebalance dropped: fetched again from the committed offset",
            message.topic,
            message.partition,
            message.offset,
        )

    patch_stale_acks(on_stale)
    patch_strict_commits(strict_topics)
    registry = open_registry(settings.registry_file)
    if registry is not None:
        for problem in devices_outside_boundaries(registry.current()):
            log.warning("registry %s: %s; its alerts keep the 5 km circle", settings.registry_file, problem)
    rules = load_rules(settings.rules_file)
    app = faust.App(
        settings.worker_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=settings.worker_data_dir,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=replication_factor(settings.kafka_bootstrap, settings.kafka_replication_factor),
        producer_acks=-1,
        # a changelog record not delivered by then fails and is sent again (tocsin/changelog.py)
        producer_request_timeout=settings.worker_producer_request_timeout_s,
        # Every table write is a changelog record: unbatched, that is one produce request per detection.
        producer_linger=settings.worker_producer_linger_ms / 1000.0,
        consumer_auto_offset_reset="earliest",
        web_host=settings.bind_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        # /table/... serves detector and alert state, /router the cluster's worker URLs: off unless asked
        web_tables_enabled=settings.worker_table_routes,
        web_router_enabled=settings.worker_table_routes,
        web_stats_enabled=False,
        web_graph_enabled=False,
        table_standby_replicas=0,
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 3),
        broker_credentials=broker_credentials(settings),
    )
    alert_config = AlertConfig(
        sender=settings.alert_sender,
        status=AlertStatus(settings.alert_status),
        max_detection_age_s=settings.alert_max_detection_age_s,
        cool_down_s=settings.alert_cool_down_s,
        reminder_s=settings.alert_reminder_s,
        flap_toggles=settings.alert_flap_toggles,
        flap_window_s=settings.alert_flap_window_s,
        flap_settle_s=settings.alert_flap_settle_s,
        # the rules file's confirm: section; TOCSIN_ALERT_CONFIRM overrides it per incident
        **confirm_settings(rules.confirm, settings.alert_confirm),
    )
    detections = _raw_topic(app, topics.DETECTIONS)
    urgent_detections = _raw_topic(app, topics.DETECTIONS_URGENT)
    lanes = {topics.DETECTIONS: detections, topics.DETECTIONS_URGENT: urgent_detections}
    urgent_from = WarningLevel(settings.alert_fast_lane_level) if settings.alert_fast_lane_level else None
    alerts = _raw_topic(app, topics.ALERTS)
    deliveries = _raw_topic(app, topics.DELIVERIES)

    dead_letters = _raw_topic(app, topics.WORKER_DEADLETTER)

    async def send_dead_letter(key: bytes, value: bytes) -> None:
        """Returns once Kafka has the dead letter (raises if it cannot take it)."""
        await dead_letters.maybe_declare()
        delivered = await dead_letters.send(key=key, value=value)
        await delivered

    # the agents, and the silence store's reader of ``alerts.silences`` (a thread, not an agent)
    guard = RecordGuard(send_dead_letter, DeadLetterMetrics(metrics_registry, AGENTS, TIMERS))

    sources = {family: _raw_topic(app, topics.kafka_telemetry(family)) for family in Family}
    # a table's changelog has as many partitions as its source topic has (not the setting's count)
    sized = partitions_by_topic(
        settings.kafka_bootstrap, [*map(topics.kafka_telemetry, Family), topics.DETECTIONS], settings.kafka_partitions
    )
    ensure_changelogs(
        settings.kafka_bootstrap,
        settings.worker_id,
        {
            **{f"detector-{f.value}": sized[topics.kafka_telemetry(f)] for f in Family},
            "alert-lifecycle": sized[topics.DETECTIONS],
        },
    )
    sources_by_topic = {topics.kafka_telemetry(family): source for family, source in sources.items()}
    # Each reading is judged the moment the stream hands it over, so a seismic trigger never waits
    # for a batch to fill; what is batched is the durable part, as in ``confirm`` below: the device
    # states a batch of readings left are held (``BatchedState``) and each is written once per batch
    # to its table and changelog (a seismic channel sends a packet a second, a gas detector one every
    # few seconds: one changelog record per reading was the biggest cost after the engine itself).
    # The batch's offsets are acknowledged once Kafka confirmed that write (tocsin/changelog.py); a
    # reading is added to the batch only after its detections were sent (``lock``: no write while a
    # reading is half handled), so a crash before the write is confirmed replays readings against the
    # old state (their detections are issued again: the alert engine's replay guard and the
    # idempotency keys dedupe them) -- never a lost detection; a crash after it finds the state's
    # ``position`` at or past the readings' offsets.
    for family, source in sources.items():
        table = app.Table(f"detector-{family.value}", default=None, partitions=sized[topics.kafka_telemetry(family)])
        name = f"detect-{family.value}"
        held = BatchedState(table)
        held_lock = asyncio.Lock()

        async def detect_reading(
            raw: bytes | None,
            position: tuple[int, ...],
            received_s: float,
            cid: str | None,
            held: BatchedState,
            lock: asyncio.Lock,
        ) -> None:
            record = decode_telemetry(raw)
            async with lock:
                held.partition = position[0]
                # a batch's reading has no header: its id is derived as the gateway derives it, if needed
                for d in det_stage.apply(record, held, position, received_s, cid or reading_correlation_id):
                    await lanes[detection_topic(d, urgent_from)].send(key=detection_key(d), value=encode(d))

        async def detect_one(
            msg: Any, held: BatchedState = held, lock: asyncio.Lock = held_lock, name: str = name
        ) -> None:
            raw = msg.value
            if not is_batch(raw):
                cid = header(msg.headers, CORRELATION_HEADER)
                await detect_reading(raw, (msg.partition, msg.offset), msg.timestamp, cid, held, lock)
                return
            # A batch record (schemas/batch.py): a malformed envelope raises here (the guard sets the
            # whole record aside); each reading is then guarded on its own, as ``guard.run`` would
            # (inline: no coroutine per reading), so a bad one is set aside alone and the next judged.
            # The state's lock is held for the record (at most BATCH_MAX_READINGS readings).
            readings = unpack(raw)
            partition, offset, received_s = msg.partition, msg.offset, msg.timestamp
            async with lock:
                held.partition = partition
                for i, piece in enumerate(readings):
                    try:
                        record = decode_telemetry(piece)
                        position = (partition, offset, i)
                        for d in det_stage.apply(record, held, position, received_s, reading_correlation_id):
                            await lanes[detection_topic(d, urgent_from)].send(key=detection_key(d), value=encode(d))
                    except Exception as exc:  # noqa: BLE001 - the guard's rule; BaseException (cancellation) passes
                        one = BatchReading(msg.topic, partition, offset, msg.key, piece, msg.headers, i)
                        await guard.set_aside(name, one, exc)

        def detect_agent(name: str, held: BatchedState, lock: asyncio.Lock, one: Any) -> Any:
            acks = confirmed_acks(name)

            async def detect(stream: Any) -> None:
                await run_batched(
                    stream,
                    lambda msg: guard.run(name, msg, lambda: one(msg)),
                    held,
                    lock,
                    settings.worker_detect_batch_max,
                    settings.worker_detect_batch_ms / 1000.0,
                    acks,
                )

            return detect

        app.agent(source, name=name)(detect_agent(name, held, held_lock, detect_one))

    @app.timer(interval=settings.deadman_tick_s, on_leader=True)
    async def deadman() -> None:
        """The wall clock drives offline detection: one tick per registered device, sent through the
        device's own partition so it is judged in order with its readings (never-seen devices too)."""

        async def send_ticks() -> None:
            for topic, key, value in topology.deadman_ticks(datetime.now(UTC)):
                await sources_by_topic[topic].send(key=key, value=value)

        await guard.tick("deadman", send_ticks)

    lifecycle = app.Table("alert-lifecycle", default=None, partitions=sized[topics.DETECTIONS])

    @app.timer(interval=settings.deadman_tick_s)
    async def alert_clock() -> None:
        """Cool-downs, flapping holds and reminders need a clock: one tick per active alert of this
        worker's partitions, through the alert's own partition of ``detections``."""

        async def send_ticks() -> None:
            for _topic, key, value in topology.lifecycle_ticks(list(lifecycle.items()), datetime.now(UTC)):
                await detections.send(key=key, value=value)

        await guard.tick("alert-clock", send_ticks)

    # Each detection is handled the moment the stream hands it over (a stream processor), so a red
    # detection never waits for a batch to fill; its alerts are sent at once, urgent ones also into
    # the fast lane. What is batched is the durable part: the states the detections left are held
    # (``BatchedState``) and written once per fingerprint per batch, and the batch's offsets are
    # acknowledged once Kafka confirmed that write (``ConfirmedAcks``, tocsin/changelog.py; the agent
    # goes on meanwhile, and a red alert was sent before its batch ended). A batch is
    # what arrived within ``batch_ms`` (more when the agent is behind). ``lock`` keeps a write from
    # happening while a detection is half handled: its state is written only after all its alerts
    # were sent. A crash before a detection's state is written replays the detection against the
    # old state, which issues the same message again (the deliveries' idempotency keys dedupe it) --
    # never a lost one; a crash after it finds the state's ``position`` at or past the detection's
    # offset and skips it. A detection whose handling raises is set aside on ``worker.deadletter``
    # (the guard returns once Kafka has it) and the agent goes on; if the dead letter cannot be
    # produced, the detection is not acknowledged (the agent stops before it reaches the batch).
    #
    # Two agents share that state: ``confirm`` reads ``detections`` and ``confirm-urgent`` reads
    # ``detections.urgent`` (seismic triggers, orange and red: detectors/engine.py
    # ``detection_topic``). Under load the routine topic builds a backlog (a garbage collection or a
    # CPU stall of a few hundred ms takes seconds to drain); the urgent topic has its own fetch
    # position and stream queue, so a red detection does not queue behind it, and ``confirm`` gives
    # the event loop back after every detection, so the urgent agent and the fast-lane deliveries run
    # between two routine detections instead of after a whole batch. Measured: README, "Latency".
    batch_max, batch_within = settings.worker_confirm_batch_max, settings.worker_confirm_batch_ms / 1000.0
    batch = BatchedState(lifecycle)
    lock = asyncio.Lock()

    def confirm_agent(lane: str) -> Any:
        name = f"confirm-{lane}" if lane else "confirm"

        async def confirm_one(msg: Any) -> None:
            record = decode_detection(msg.value)
            async with lock:
                batch.partition = msg.partition
                for a in alert_stage.apply(record, batch, (msg.partition, msg.offset), msg.timestamp, lane):
                    log.warning(
                        "ALERT %s %s %s: %s",
                        a.msg_type.value,
                        a.level.value,
                        a.identifier,
                        a.headline,
                        extra={
                            "correlation_id": a.correlation_id,
                            "alert_id": a.identifier,
                            "fingerprint": a.fingerprint,
                        },
                    )
                    # the detection's own partition: a fingerprint's messages stay in order, and the
                    # ``deliver`` agent that claims a fast-lane delivery runs in this worker
                    # (``alerts`` and both detection topics have as many partitions: Faust co-assigns them)
                    await alerts.send(key=a.fingerprint.encode(), value=encode(a), partition=msg.partition)
                    fast_lane.offer(a)

        acks = confirmed_acks(name)

        async def confirm(stream: Any) -> None:
            await run_batched(
                stream,
                lambda msg: guard.run(name, msg, lambda: confirm_one(msg)),
                batch,
                lock,
                batch_max,
                batch_within,
                acks,
                yield_each=not lane,  # let urgent work run between two routine detections
            )

        return confirm

    app.agent(detections, name="confirm")(confirm_agent(""))
    app.agent(urgent_detections, name="confirm-urgent")(confirm_agent("urgent"))

    event_loop: list[asyncio.AbstractEventLoop] = []

    def silence_rejected(record: Any, why: str) -> None:
        """In the silence store's thread: a malformed silence is set aside like an agent's record (the
        store reads the compacted topic from the beginning at every start, so until the record is
        replaced or deleted, every start sets it aside again: an operator's silence is not in force)."""
        reason = WorkerReason.UNDECODABLE if "json_invalid" in why else WorkerReason.SCHEMA
        letter = guard.dead_letter("silences", record, PoisonRecord(reason, why))
        asyncio.run_coroutine_threadsafe(letter, event_loop[0]).result(timeout=30)

    silences = kafka_silence_store(settings.kafka_bootstrap, on_rejected=silence_rejected)
    routing = load_routing(settings.routing_file)
    topology = Topology.build(
        registry,
        rules,
        alert_config,
        build_adapters(endpoints(settings)),
        metrics_registry,
        routing=routing,
        silences=silences.silences,
    )
    det_stage, alert_stage, notifier = topology.detector, topology.alerter, topology.notifier
    # the release gate (alerts/release.py): public routes of ``approve`` alerts wait for a decision
    # that arrives on ``alerts.releases``; the gate's own events are recorded there too
    releases = _raw_topic(app, RELEASES)

    async def record_release(event: ReleaseEvent) -> None:
        await releases.send(key=event.fingerprint.encode(), value=encode(event))

    desk = ReleaseDesk(
        ReleaseGate(routing.release),
        notifier,
        record_release,
        ReleaseMetrics(metrics_registry),
        lambda: datetime.now(UTC),
    )
    started: list[bool] = []
    starting = asyncio.Lock()

    async def start_delivery() -> None:
        async with starting:
            if not started:
                event_loop.append(asyncio.get_running_loop())
                await topology.start_adapters()
                silences.start()
                await asyncio.to_thread(silences.wait_caught_up, 10.0)
                started.append(True)

    # Several alerts are delivered at once, so a red warning is not stuck behind a blue fan-out: the
    # providers' limiters serve the higher priority first. Offsets are committed only up to the
    # oldest alert still being delivered, so a crash redelivers (and the idempotency keys dedupe).
    # Urgent messages were already started by the fast lane (alerts/fastlane.py) when ``confirm``
    # issued them: the agent then awaits that delivery instead of starting its own.
    busy: Counter[str] = Counter()  # identifiers of the messages this worker is delivering now
    done: OrderedDict[str, None] = OrderedDict()  # ... and of the last ones it delivered to the end

    async def deliver_and_record(alert: Alert) -> None:
        await start_delivery()
        busy[alert.identifier] += 1
        try:
            for record in await desk.deliver(alert):
                await deliveries.send(key=record.alert_id.encode(), value=encode(record))
        finally:
            busy[alert.identifier] -= 1
            if not busy[alert.identifier]:
                del busy[alert.identifier]
        done[alert.identifier] = None
        done.move_to_end(alert.identifier)
        if len(done) > 100_000:
            done.popitem(last=False)

    fast_lane = FastLane(
        deliver_and_record,
        FastLaneMetrics(metrics_registry),
        min_rank=WarningLevel(settings.alert_fast_lane_level).rank if settings.alert_fast_lane_level else 99,
        max_in_flight=settings.deliver_concurrency * 16,
    )

    @app.agent(alerts, name="deliver", concurrency=settings.deliver_concurrency)
    async def deliver(stream: Any) -> None:
        async for event in stream.events():

            async def handle(value: bytes | None = event.message.value) -> None:
                alert = decode_alert(value)
                if not await fast_lane.claim(alert.identifier):  # not already delivered by the fast lane
                    await deliver_and_record(alert)

            await guard.run("deliver", event.message, handle)

    @app.agent(releases, name="releases")
    async def release_decisions(stream: Any) -> None:
        """Operators' approvals and rejections (the console) -> the public deliveries held."""
        async for value in stream:
            try:
                event = ReleaseEvent.model_validate_json(value)
            except ValueError as e:
                log.warning("malformed release event skipped: %s", e)
                continue
            if event.action not in (Action.APPROVE, Action.REJECT):
                continue
            await start_delivery()
            try:
                records = await desk.apply(event)
            except Exception:  # noqa: BLE001 - one bad decision must not stop the agent
                log.exception("release event %s of %s not applied", event.action, event.identifier)
                continue
            for record in records:
                await deliveries.send(key=record.alert_id.encode(), value=encode(record))

    @app.task
    async def restore_releases() -> None:
        """After a restart: the messages still held (alerts.releases of the last T2 and more) are
        held again from their first time, so T2 releases them even though this worker never saw them."""
        since_ms = int((time.time() - routing.release.t2_s - 300) * 1000)
        try:
            values = await asyncio.to_thread(read_since, settings.kafka_bootstrap, RELEASES, since_ms)
        except Exception as e:  # noqa: BLE001 - Kafka down: nothing to restore from, deliveries go on
            log.error("release gate not restored from %s: %s", RELEASES, e)
            return
        events = []
        for v in values:
            try:
                events.append(ReleaseEvent.model_validate_json(v))
            except ValueError:
                continue
        if events and (held := desk.gate.restore(events)):
            log.warning("release gate restored %d held message(s) from %s", held, RELEASES)

    @app.timer(interval=5.0)
    async def release_clock() -> None:
        """Escalation (T1) and the T2 policy of the messages held for approval."""
        if desk.gate.pending:
            await start_delivery()
            for record in await desk.tick():
                await deliveries.send(key=record.alert_id.encode(), value=encode(record))

    async def owned_alert_partitions() -> set[int] | None:
        """The ``alerts`` partitions of this worker once no rebalance is going on (up to 10 min for
        an assignment: a dead member's session must expire first). Empty when it still has none (a
        worker beyond the partition count): that pass is skipped, the next one asks again."""
        for _ in range(1200):
            assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.ALERTS}
            if assigned and not app.rebalancing:
                return assigned
            await asyncio.sleep(0.5)
        return set()

    async def read_alerts_for_sweep(partitions: set[int], since_s: float) -> Sweep:
        def read() -> Sweep:  # in a thread: Kafka reads and JSON decoding stay off the event loop
            bootstrap = settings.kafka_bootstrap
            committed = committed_offsets(bootstrap, settings.worker_id, topics.ALERTS)
            below, past = read_split(bootstrap, topics.ALERTS, int(since_s * 1000), partitions, committed)
            return Sweep(identified(below), identified(past))

        return await asyncio.to_thread(read)

    async def read_records_for_sweep(since_s: float) -> list[DeliveryRecord]:
        def read() -> list[DeliveryRecord]:
            return parsed(DeliveryRecord, read_since(settings.kafka_bootstrap, topics.DELIVERIES, int(since_s * 1000)))

        return await asyncio.to_thread(read)

    sweeper = Sweeper(
        window_s=settings.delivery_sweep_s,
        every_s=settings.delivery_sweep_every_s,
        owned=owned_alert_partitions,
        read_alerts=read_alerts_for_sweep,
        read_records=read_records_for_sweep,
        busy=busy.__contains__,
        done=done.__contains__,
        route=notifier.route,
        deliver=deliver_and_record,
        clock=time.time,
    )

    @app.task
    async def delivery_sweep() -> None:
        """At start, when this worker owns its partitions, then every ``delivery_sweep_every_s``:
        finish the fan-outs that the audit shows incomplete among the alert messages the group has
        already committed (alerts/sweep.py)."""
        await sweeper.run()

    @app.task
    async def freeze_startup_heap() -> None:
        """Move what the worker built while starting (modules, Faust, pydantic schemas, the registry:
        most of its heap) out of the garbage collector's reach, so a full collection scans only what
        changes while it runs. Measured: README, "Latency"."""
        if not settings.worker_gc_freeze_after_s:
            return
        await asyncio.sleep(settings.worker_gc_freeze_after_s)
        gc.collect()
        gc.freeze()
        log.info("garbage collector: %d start-up objects frozen", gc.get_freeze_count())

    receipts_refused = prometheus_client.Counter(
        "tocsin_worker_sms_receipts_refused_total",
        "SMS receipts refused with 401: unsigned, bad signature, stale timestamp, or no secret configured",
        registry=metrics_registry,
    )
    callback_secret = settings.sms_callback_secret.get_secret_value()
    if settings.sms_callback_url and not callback_secret:
        log.warning("TOCSIN_SMS_CALLBACK_SECRET is empty: every SMS receipt will be refused (401)")

    @app.page("/callbacks/sms")
    class SmsReceipts(View):  # type: ignore[misc]
        """The carrier's delivery receipts (signed, alerts/receipts.py) -> audit records on ``alerts.deliveries``."""

        async def post(self, request: Any) -> Any:
            body = await request.read()
            why = verify_receipt(callback_secret, request.headers, body, time.time())
            if why is not None:
                receipts_refused.inc()
                log.warning("SMS receipt refused from %s: %s", request.remote, why)
                return self.json({"error": "unauthorized", "detail": why}, status=401)
            try:
                receipt = SmsReceipt.model_validate_json(body)
                record = receipt_record(receipt, request.query.get("correlation_id", ""))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                return self.json({"error": str(exc)[:300]}, status=422)
            await deliveries.send(key=record.alert_id.encode(), value=encode(record))
            return self.json({"recorded": True})

    @app.page("/healthz")
    async def healthz(_self: Any, request: Any) -> Any:
        return _self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(_self: Any, request: Any) -> Any:
        checks = worker_readiness(app)
        ok = all(checks.values())
        return _self.json({"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503)

    lag_metrics = LagMetrics(metrics_registry)
    lag = ConsumerLag(settings.kafka_bootstrap, settings.worker_id)

    @app.timer(interval=settings.consumer_lag_interval_s)
    async def consumer_lag() -> None:
        """Per topic and partition of this worker's assignment: end offset minus committed offset."""
        assigned = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        try:
            lag_metrics.update(await asyncio.to_thread(lag.sample, assigned))
        except Exception as exc:  # noqa: BLE001 - Kafka hiccup: keep the last values, try again later
            log.warning("consumer lag not measured: %s", exc)

    stall = StallWatch[Any](settings.worker_stall_reseek_s)
    last_generation: list[int] = []
    # checked six times per period (every 1.7 s at the default 10 s); off: once an hour, doing nothing
    stall_check_s = min(10.0, max(1.0, settings.worker_stall_reseek_s / 6)) if settings.worker_stall_reseek_s else 3600

    @app.timer(interval=stall_check_s)
    async def stalled_partitions() -> None:
        """Seek a partition whose commits stalled with records waiting and none in flight back to its
        committed offset (tocsin/stall.py): whatever left its records unhandled, they are fetched again."""
        if not settings.worker_stall_reseek_s or app.rebalancing or getattr(app, "in_recovery", False):
            stall.reset()
            return
        consumer: Any = app.consumer
        if last_generation != [app.consumer_generation_id]:
            last_generation[:] = [app.consumer_generation_id]
            stall.reset()
        changelogs = set(app.tables.changelog_topics)
        assigned = [tp for tp in consumer.assignment() if tp.topic not in changelogs]
        committed = {tp: consumer._committed_offset.get(tp) for tp in assigned}
        ends: dict[Any, int | None] = {}
        for tp in assigned:
            try:
                ends[tp] = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet: unknown
                ends[tp] = None
        # an agent that handles a record of a topic may hold that topic's other records in its queue
        busy_topics = {m.topic for m in list(consumer.unacked) if not m.acked}
        busy = [tp for tp in assigned if tp.topic in busy_topics]
        for tp in stall.observe(time.monotonic(), committed, ends, busy):
            offset = committed[tp]
            log.warning(
                "partition %s[%d] stalled at committed offset %s with records waiting (end %s) and none in"
                " flight: seeking back to it (last offset read %s, handled but not committed %s)",
                tp.topic,
                tp.partition,
                offset,
                ends[tp],
                consumer._read_offset.get(tp),
                sorted(consumer._acked.get(tp, ()))[:10],
            )
            rebalance_metrics.reseeks.labels(tp.topic).inc()
            await consumer.seek(tp, offset)

    @app.page("/metrics")
    async def metrics(_self: Any, request: Any) -> Any:
        from prometheus_client import generate_latest

        return _self.bytes(generate_latest(metrics_registry), content_type="text/plain; version=0.0.4")

    return app


def worker_readiness(app: faust.App) -> dict[str, bool]:
    """Ready: the app started, holds partitions, and is neither rebalancing nor recovering tables."""
    try:
        assigned = bool(app.consumer.assignment())
    except Exception:  # noqa: BLE001 - no consumer yet
        assigned = False
    return {
        "started": bool(app.started),
        "partitions_assigned": assigned,
        "not_rebalancing": not app.rebalancing,
        "not_recovering": not getattr(app, "in_recovery", False),
    }


def run_worker(settings: Settings) -> None:
    registry = CollectorRegistry()
    register_client_metrics(registry)
    app = create_app(settings, registry)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        logging_config=dict_config(settings.log_level, settings.log_format, "worker"),
    )
    worker.execute_from_commandline()
