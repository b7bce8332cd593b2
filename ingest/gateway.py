"""MQTT -> Kafka gateway: validate every message, produce it (or its dead letter), then ack it.

At-least-once: a QoS 1 message is acknowledged to the broker only after the sink (Kafka, acks=all)
has acknowledged the record. The number of records awaiting acks is bounded: when the bound is
reached, the MQTT callback waits, which stops reading from the broker (backpressure); nothing is
dropped. Kafka records are keyed by device id, so each device's readings stay in order.
"""

from __future__ import annotations

import collections
import functools
import gc
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tocsin.ingest.metrics import GatewayMetrics
from tocsin.ingest.mqtt_client import FastClient, Oversize, Publish
from tocsin.ingest.sinks import Headers, HeaderSink, RecordSink
from tocsin.ingest.validate import DEFAULT_LIMITS, Accepted, DuplicateWindow, Limits, parse_status, validate_telemetry
from tocsin.schemas import topics
from tocsin.schemas.batch import BATCH_MAGIC, BATCH_MAX_BYTES, BATCH_MAX_READINGS, pack
from tocsin.schemas.deadletter import TOPIC_MAX_CHARS, DeadLetter, Reason, printable
from tocsin.schemas.registry import RegistryLike
from tocsin.schemas.topics import DeviceTopic, parse_device_topic
from tocsin.schemas.wire import encode

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

CORRELATION_HEADER = "tocsin-correlation-id"
"""Kafka record header carrying the reading's correlation id (the payload models are strict)."""
RECEIVED_HEADER = "tocsin-received-ms"
"""Kafka record header: when the gateway received the reading (ms since the epoch, ASCII)."""
DEAD_LETTER_LOG_INTERVAL_S = 60.0
"""At most one INFO line per dead-letter reason in this interval (the others at DEBUG)."""
TOPIC_CACHE_SIZE = 200_000
"""Topics whose parse the gateway remembers (one per device; emptied when full)."""
_UNPARSED = object()
LIVE_AGE_S = 3600.0
"""Readings older than this (device time) are backfill: counted, kept out of the ingest latency."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def correlation_id(device_id: str, ts: datetime, seq: int | None) -> str:
    """The correlation id of one reading, derived from its identity (device, device time, sequence).

    Deterministic, so a message the broker redelivers (gateway crash before the ack) carries the same
    id, and the embedded pipeline derives exactly what the Kafka gateway sends."""
    ident = f"{device_id}|{ts.astimezone(UTC).isoformat()}|{'' if seq is None else seq}"
    return "c-" + hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]


def header(headers: Any, name: str) -> str | None:
    """A header's value as text from Kafka/Faust headers (a mapping or (name, bytes) pairs), or None."""
    if not headers:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    for k, v in items:
        if k == name and v is not None:
            return v.decode("utf-8", errors="replace") if isinstance(v, bytes | bytearray) else str(v)
    return None


class _Outgoing(NamedTuple):
    """The one Kafka record a message becomes (its reading's record, or its dead letter)."""

    topic: str
    key: bytes
    value: bytes
    accepted: Accepted | None = None
    headers: Headers | None = None
    cid: str = ""
    received_ms: int | None = None


class GatewayCore:
    """Transport-free heart of the gateway: one message in, one record out, ack when durable."""

    def __init__(
        self,
        sink: RecordSink,
        metrics: GatewayMetrics,
        *,
        limits: Limits = DEFAULT_LIMITS,
        registry: RegistryLike | None = None,
        max_in_flight: int = 10_000,
        dedup_window: int = 1024,
        clock: Clock = utc_now,
        batch_readings: int = 1,
    ) -> None:
        """``batch_readings``: in :meth:`handle_many`, at most this many accepted readings that go to
        the same topic and partition become one batch record (schemas/batch.py); 1 (the default) or a
        sink that cannot tell a key's partition (no ``partition_for``): one record per reading."""
        self.sink, self.metrics, self.limits, self.registry = sink, metrics, limits, registry
        self.batch_readings = min(batch_readings, BATCH_MAX_READINGS)
        self._partition_for: Callable[[str, bytes], int | None] | None = getattr(sink, "partition_for", None)
        self.clock = clock
        self.duplicates = DuplicateWindow(dedup_window)
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when a full window gets room
        self._waiting = 0
        # The gauge reads the count when scraped: no gauge update per message.
        metrics.in_flight.set_function(lambda: self._in_flight)
        self._headers_ok = bool(getattr(sink, "accepts_headers", False))
        # Labelled children resolved once per label value, not once per message.
        self._messages_in: dict[str, Any] = {}
        self._messages_out: dict[str, Any] = {}
        self._latency: dict[str, Any] = {}
        self._backfill: dict[str, Any] = {}
        self._topics: dict[str, DeviceTopic | None | object] = {}
        self._dead_letter_log: dict[str, tuple[float, int]] = {}  # reason -> (last INFO line, skipped since)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def handle(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        """Validate and forward one message; ``ack`` runs once its record is durable downstream.

        Never raises on any topic or payload: the message becomes its Kafka record, or a dead letter
        with a reason; a failure of the gateway itself becomes a dead letter with reason ``internal``.
        """
        self._produce(self._outgoing(topic, payload), ack)

    def handle_many(self, messages: Sequence[tuple[str, bytes, Callable[[], None]]]) -> None:
        """:meth:`handle` for the (topic, payload, ack) messages of one socket read, in order.

        With ``batch_readings`` > 1 and a sink that tells a key's partition, the accepted readings that
        go to the same Kafka topic and partition are written together, up to ``batch_readings`` (and
        the envelope's byte bound) per record: one batch record (schemas/batch.py) instead of one
        record each. Each reading was validated, deduplicated and counted on its own before; a
        refused one is its own dead letter, as in :meth:`handle`. A batch record is acknowledged as a
        whole: every message in it is acked once Kafka has the record, none before. A reading that is
        alone in its group stays a single record (with its correlation header)."""
        partition_for = self._partition_for
        if partition_for is None or self.batch_readings <= 1 or len(messages) < 2:
            for topic, payload, ack in messages:
                self.handle(topic, payload, ack)
            return
        groups: dict[tuple[str, int], list[tuple[_Outgoing, Callable[[], None]]]] = {}
        for topic, payload, ack in messages:
            out = self._outgoing(topic, payload)
            part = None
            if out.accepted is not None:
                try:
                    part = partition_for(out.topic, out.key)
                except Exception:  # noqa: BLE001 - no partition known: the reading goes on its own
                    log.exception("partition of %s not known; the reading is written on its own", out.topic)
            if part is None:
                self._produce(out, ack)
            else:
                groups.setdefault((out.topic, part), []).append((out, ack))
        for (_topic, part), items in groups.items():
            chunk: list[tuple[_Outgoing, Callable[[], None]]] = []
            size = len(BATCH_MAGIC)
            for item in items:
                grown = size + len(item[0].value) + 1
                if chunk and (len(chunk) >= self.batch_readings or grown > BATCH_MAX_BYTES):
                    self._produce_group(chunk, part)
                    chunk, grown = [], len(BATCH_MAGIC) + len(item[0].value) + 1
                chunk.append(item)
                size = grown
            self._produce_group(chunk, part)

    def _produce_group(self, chunk: list[tuple[_Outgoing, Callable[[], None]]], partition: int) -> None:
        if len(chunk) == 1:
            self._produce(chunk[0][0], chunk[0][1])
            return
        first = chunk[0][0]
        received_ms = min(out.received_ms or 0 for out, _ in chunk)
        try:
            value = pack([out.value for out, _ in chunk])
        except ValueError:  # cannot happen for canonical readings within the bounds; never lose them
            log.exception("batch record of %d readings not packed; written one by one", len(chunk))
            for out, ack in chunk:
                self._produce(out, ack)
            return
        acks = [ack for _, ack in chunk]

        def ack_all() -> None:
            for ack in acks:
                ack()

        batch = _Outgoing(
            first.topic,
            first.key,
            value,
            None,
            [(RECEIVED_HEADER, str(received_ms).encode())],
            "",
            received_ms,
        )
        self._produce(batch, ack_all, partition=partition, readings=[out.accepted for out, _ in chunk if out.accepted])

    def _outgoing(self, topic: str, payload: bytes) -> _Outgoing:
        """The record of one message: its reading's, or its dead letter (never raises)."""
        received = self.clock()
        try:
            return self._route(topic, payload, received)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the message unacknowledged
            log.exception("gateway failed on a message from %s", printable(topic, TOPIC_MAX_CHARS))
            letter = DeadLetter.of(
                payload,
                reason=Reason.INTERNAL,
                message=f"{type(exc).__name__}: {exc}",
                mqtt_topic=topic,
                received_at=received,
            )
            return self._dead_letter_record(letter)

    def too_large(self, topic: str, head: bytes, size: int, ack: Callable[[], None]) -> None:
        """A message the MQTT client did not read whole (``size`` bytes of MQTT packet, of which
        ``head`` are the first after the packet id): its dead letter (``too_large``, ``raw_size`` the
        packet's size); ``ack`` runs once that is durable."""
        received = self.clock()
        where = parse_device_topic(topic)
        family = where.family.value if where else "unknown"
        self.metrics.messages_in.labels(family).inc()
        letter = DeadLetter.of(
            head,
            reason=Reason.TOO_LARGE,
            message=f"MQTT message of {size} bytes exceeds the payload limit of {self.limits.max_payload_bytes}"
            f" (only its first {len(head)} bytes are kept)",
            mqtt_topic=topic,
            received_at=received,
        ).model_copy(update={"raw_size": size, "raw_truncated": True})
        self._produce(self._dead_letter_record(letter), ack)

    def _route(self, topic: str, payload: bytes, received: datetime) -> _Outgoing:
        where = self._topics.get(topic, _UNPARSED)
        if where is _UNPARSED:  # a device sends on the same topic every time: split it once
            where = parse_device_topic(topic)
            if len(self._topics) >= TOPIC_CACHE_SIZE:
                self._topics.clear()
            self._topics[topic] = where
        assert where is None or isinstance(where, DeviceTopic)
        family = where.family.value if where else "unknown"
        counter = self._messages_in.get(family)
        if counter is None:
            counter = self._messages_in[family] = self.metrics.messages_in.labels(family)
        counter.inc()
        if where is not None and where.leaf == "status":
            status = parse_status(topic, payload, received, limits=self.limits)
            if isinstance(status, DeadLetter):
                return self._dead_letter_record(status)
            return _Outgoing(topics.DEVICE_STATUS, status.device_id.encode(), encode(status))
        result = validate_telemetry(
            topic,
            payload,
            received,
            limits=self.limits,
            registry=self.registry,
            duplicates=self.duplicates,
            where=where,
        )
        if isinstance(result, DeadLetter):
            return self._dead_letter_record(result)
        reading = result.reading
        cid = correlation_id(reading.device_id, reading.ts, reading.seq)
        age_s = (received - reading.ts).total_seconds()
        if age_s <= LIVE_AGE_S:
            # a device clock slightly ahead gives a negative age: clamp, the skew limit bounds it
            hist = self._latency.get(reading.family.value)
            if hist is None:
                hist = self._latency[reading.family.value] = self.metrics.ingest_latency.labels(reading.family.value)
            hist.observe(max(0.0, age_s))
        else:
            backfill = self._backfill.get(reading.family.value)
            if backfill is None:
                backfill = self._backfill[reading.family.value] = self.metrics.backfill.labels(reading.family.value)
            backfill.inc()
        received_ms = int(received.timestamp() * 1000)
        headers: Headers = [(CORRELATION_HEADER, cid.encode()), (RECEIVED_HEADER, str(received_ms).encode())]
        return _Outgoing(result.kafka_topic, result.key, result.value, result, headers, cid, received_ms)

    def _dead_letter_record(self, letter: DeadLetter) -> _Outgoing:
        """The Kafka record of a dead letter (keyed by its topic, already made valid UTF-8)."""
        reason = letter.reason.value
        self.metrics.dead_letters.labels(reason).inc()
        # Sampled: the first dead letter of a reason at INFO, then one a minute with the count between
        # (a device sending garbage at 10 Hz must not write 10 INFO lines a second); the rest at DEBUG.
        # Every one is a Kafka record and counted in tocsin_gateway_dead_letters_total anyway.
        now = time.monotonic()
        last, skipped = self._dead_letter_log.get(reason, (-DEAD_LETTER_LOG_INTERVAL_S, 0))
        if now - last >= DEAD_LETTER_LOG_INTERVAL_S:
            more = f" (and {skipped} more of this reason since the last such line)" if skipped else ""
            log.info("dead letter %s on %s: %s%s", reason, letter.mqtt_topic, letter.message, more)
            self._dead_letter_log[reason] = (now, 0)
        else:
            self._dead_letter_log[reason] = (last, skipped + 1)
            log.debug("dead letter %s on %s: %s", reason, letter.mqtt_topic, letter.message)
        return _Outgoing(topics.DEADLETTER, letter.mqtt_topic.encode("utf-8"), encode(letter))

    def _produce(
        self,
        out: _Outgoing,
        ack: Callable[[], None],
        *,
        partition: int | None = None,
        readings: list[Accepted] | None = None,
    ) -> None:
        """``readings``: those of a batch record (``out.accepted`` is then None); ``partition``: the
        batch's partition (a single record's follows its key)."""
        topic, accepted, cid = out.topic, out.accepted, out.cid
        held = readings if readings is not None else ([accepted] if accepted is not None else [])
        n = max(1, len(held))
        with self._lock:  # backpressure: blocks the MQTT thread while max_in_flight readings wait
            while self._in_flight >= self._max_in_flight:
                self._waiting += 1
                self._room.wait()
                self._waiting -= 1
            self._in_flight += n
        started = time.perf_counter()
        sent = self._messages_out.get(topic)
        if sent is None:
            sent = self._messages_out[topic] = self.metrics.messages_out.labels(topic)

        def done(error: BaseException | None) -> None:
            with self._lock:
                self._in_flight -= n
                if self._waiting:
                    self._room.notify_all()
            if error is not None:
                # Not acked: the broker redelivers it (same session) and nothing is lost.
                self.metrics.produce_failures.inc()
                for a in held:
                    if a.reading.seq is not None:
                        self.duplicates.forget(a.reading.device_id, a.reading.seq)
                log.error("produce to %s failed, %d message(s) left unacknowledged: %s", topic, n, error)
                return
            self.metrics.produce_latency.observe(time.perf_counter() - started)
            sent.inc(n)
            ack()
            # One line per reading only at DEBUG: at the default level it would cost more than the
            # reading's validation. The correlation id travels in the Kafka record's headers anyway.
            if accepted is not None and log.isEnabledFor(logging.DEBUG):
                r = accepted.reading
                log.debug(
                    "reading accepted",
                    extra={
                        "correlation_id": cid,
                        "device_id": r.device_id,
                        "family": r.family.value,
                        "seq": r.seq,
                        "device_ts": r.ts.isoformat(),
                        "kafka_topic": topic,
                    },
                )

        try:
            if partition is not None:
                send = cast(Any, self.sink).send
                stamp = out.received_ms
                send(topic, out.key, out.value, done, headers=out.headers, timestamp_ms=stamp, partition=partition)
            elif out.headers and self._headers_ok:
                cast(HeaderSink, self.sink).send(
                    topic, out.key, out.value, done, headers=out.headers, timestamp_ms=out.received_ms
                )
            else:
                self.sink.send(topic, out.key, out.value, done)
        except Exception as exc:  # noqa: BLE001 - e.g. the producer's queue is full: a produce failure
            done(exc)

    def drain(self, timeout_s: float) -> bool:
        """Flush the sink and wait until nothing is in flight; True when drained (within ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        self.sink.flush(timeout_s)
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._in_flight == 0


GC_THRESHOLDS = (10_000, 50, 1_000)
"""The gateway process's garbage-collector thresholds (CPython's default: 700, 10, 10)."""


def tune_gc_for_throughput() -> None:
    """For a process that runs the gateway alone (``tocsin gateway``), after its setup: move every
    object alive now (modules, schemas, clients) out of the collector's sight and collect less often.

    Each record in flight holds a few objects (closures, the reading) until Kafka acknowledges it,
    thousands at a time; with the default thresholds the collector walked them over and over (about
    a third of the gateway's CPU per reading in the bench). The gateway makes no reference cycles
    per message, so collecting every 10,000 allocations instead of every 700 frees the same memory."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


OVERSIZE_SLACK_BYTES = 131_072
"""MQTT packet bytes allowed beyond the payload limit (topic up to 64 KiB, packet id, properties)
before the client stops buffering a message and dead-letters it from its first bytes; a payload just
over the limit is still read whole and dead-lettered by validation."""


def _no_ack() -> None:
    """QoS 0: nothing to acknowledge."""


def _topic_text(raw_topic: bytes) -> str:
    try:
        return raw_topic.decode("utf-8")
    except UnicodeDecodeError:  # keep the bytes visible in the dead letter
        return raw_topic.decode("utf-8", "surrogateescape")


class MqttGateway:
    """The MQTT side: persistent session, shared subscription (MQTT 5), QoS 1, manual acks."""

    def __init__(
        self,
        core: GatewayCore,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str = "",
        password: str = "",
        share_group: str | None = "tocsin",
        mqtt5: bool = True,
        session_expiry_s: int = 3600,
        tls: ssl.SSLContext | None = None,
        receive_maximum: int = 1000,
    ) -> None:
        """``tls``: connect over TLS with this context (it verifies the broker; schemas/transport.py).
        ``receive_maximum``: QoS 1 messages the broker may send before this client acked them (MQTT 5;
        the broker may allow fewer: Mosquitto's ``max_inflight_messages``)."""
        self.core = core
        self._host, self._port = host, port
        self._closing = threading.Event()
        self.connected = threading.Event()
        self._mqtt5 = mqtt5
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        prefix = f"$share/{share_group}/" if (share_group and mqtt5) else ""
        self._filters = [prefix + topics.MQTT_TELEMETRY_FILTER, prefix + topics.MQTT_STATUS_FILTER]
        if mqtt5:
            self.client = FastClient(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:
            self.client = FastClient(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                clean_session=False,
                protocol=mqtt.MQTTv311,
                manual_ack=True,
            )
        # QoS 1 packet ids whose records are durable, acknowledged to the broker together: once per
        # round of delivery reports when the sink announces its rounds (librdkafka), else one by one.
        # One queue per MQTT connection (its token beside it): a packet id means another message on
        # the next connection, so the acknowledgements of a closed connection are never sent.
        self._acks: tuple[object | None, collections.deque[int]] = (None, collections.deque())
        add_round_hook = getattr(core.sink, "add_round_hook", None)
        self._batched_acks = add_round_hook is not None
        if add_round_hook is not None:
            add_round_hook(self.flush_acks)
        # A sink that can serve its delivery reports on the caller's thread does so after each batch:
        # the reports (and the acks) of a busy stream then need no switch to the report thread.
        self._serve_reports: Callable[[], object] | None = getattr(core.sink, "serve_reports", None)
        self.client.on_publish_batch = self._on_batch
        self.client.on_malformed = lambda _reason: core.metrics.mqtt_malformed.inc()
        # a message far over the payload limit is dead-lettered from its first bytes, never held whole
        self.client.max_publish_bytes = core.limits.max_payload_bytes + OVERSIZE_SLACK_BYTES
        self.client.on_oversize = self._on_oversize
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        if self._mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._session_expiry_s
            # QoS 1 messages the broker may have unacknowledged at this client: a message is acked only
            # after Kafka has its record, so a small window (the MQTT default would let the broker's own
            # limit decide) caps throughput at window / Kafka ack latency.
            props.ReceiveMaximum = self._receive_maximum
            self.client.connect_async(self._host, self._port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()

    def alive(self) -> bool:
        """Liveness: paho's network loop thread runs (it reconnects by itself while it does)."""
        thread = getattr(self.client, "_thread", None)  # paho keeps its loop_start() thread here
        return thread is not None and thread.is_alive()

    def ready(self) -> bool:
        """Readiness (MQTT side): connected and subscribed, not draining."""
        return self.connected.is_set() and not self._closing.is_set()

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connect refused: %s", reason)
            return
        for f in self._filters:
            client.subscribe(f, qos=1)
        self.connected.set()
        log.info("gateway connected to MQTT %s:%s, subscribed %s", self._host, self._port, self._filters)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if not self._closing.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        """A PUBLISH paho handled itself (QoS 2: the gateway subscribes with QoS 1, so none expected)."""
        if self._closing.is_set():
            return  # not acked: redelivered to the next session
        mid, qos = msg.mid, msg.qos

        def ack() -> None:
            if qos > 0:
                client.ack(mid, qos)

        self._handle(bytes(msg._topic), bytes(msg.payload), ack)  # noqa: SLF001 - no public raw topic

    def _on_batch(self, batch: list[Publish]) -> None:
        """The QoS 0 and 1 PUBLISH packets of one socket read (FastClient's receive path): handled
        together, so that the readings of one read may share batch records (``GatewayCore.handle_many``)."""
        if self._closing.is_set():
            return  # not acked: redelivered to the next session
        connection = self.client.connection  # the batch's (this runs on paho's thread, as a reconnect)
        queue = self._ack_queue(connection)
        messages: list[tuple[str, bytes, Callable[[], None]]] = []
        for raw_topic, payload, mid, qos in batch:
            if qos == 0:
                ack: Callable[[], None] = _no_ack
            elif self._batched_acks:
                ack = functools.partial(queue.append, mid)
            else:
                ack = functools.partial(self.client.ack_many, [mid], connection)
            messages.append((_topic_text(raw_topic), payload, ack))
        try:
            self.core.handle_many(messages)
        except Exception:  # noqa: BLE001 - handle_many() does not raise; belt and braces for the MQTT thread
            log.exception("gateway failed on a read of %d messages", len(messages))
        if self._serve_reports is not None:
            self._serve_reports()

    def _ack_queue(self, connection: object | None) -> collections.deque[int]:
        """The queue of durable packet ids of ``connection`` (a new one when the connection changed)."""
        if self._acks[0] is not connection:
            self._acks = (connection, collections.deque())
        return self._acks[1]

    def _on_oversize(self, big: Oversize) -> None:
        """A PUBLISH over ``max_publish_bytes`` (FastClient's receive path): its dead letter."""
        if self._closing.is_set():
            return  # not acked: redelivered to the next session
        ack: Callable[[], None] = _no_ack
        connection = self.client.connection
        if big.qos and self._batched_acks:
            ack = functools.partial(self._ack_queue(connection).append, big.mid)
        elif big.qos:
            ack = functools.partial(self.client.ack_many, [big.mid], connection)
        topic = big.topic.decode("utf-8", "surrogateescape")
        try:
            self.core.too_large(topic, big.head, big.size, ack)
        except Exception:  # noqa: BLE001 - too_large() does not raise; belt and braces for the MQTT thread
            log.exception("gateway failed on a message from %s", printable(topic, TOPIC_MAX_CHARS))

    def _handle(self, raw_topic: bytes, payload: bytes, ack: Callable[[], None]) -> None:
        topic = _topic_text(raw_topic)
        try:
            self.core.handle(topic, payload, ack)
        except Exception:  # noqa: BLE001 - handle() does not raise; belt and braces for the MQTT thread
            log.exception("gateway failed on a message from %s", printable(topic, TOPIC_MAX_CHARS))

    def flush_acks(self) -> None:
        """Send the PUBACKs of every record made durable since the last call, in one write."""
        connection, acks = self._acks
        if not acks:
            return
        mids = []
        try:
            while True:
                mids.append(acks.popleft())
        except IndexError:
            pass
        self.client.ack_many(mids, connection)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Graceful: stop taking messages, flush what is in flight (acking it), then disconnect."""
        self._closing.set()
        drained = self.core.drain(timeout_s)
        self.flush_acks()
        time.sleep(0.1)  # let paho write the last PUBACKs
        self.client.disconnect()
        self.client.loop_stop()
        return drained
