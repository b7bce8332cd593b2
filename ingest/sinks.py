"""Where the gateway puts records: Kafka in production, the in-process bus in embedded mode.

Both call ``on_done(error_or_None)`` exactly once per record, from any thread, once the record is
durable downstream (Kafka: acknowledged by all in-sync replicas).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

from schemas.transport import KafkaTransport, kafka_python_kwargs

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]
Headers = list[tuple[str, bytes]]


class RecordSink(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Done) -> None: ...

    def flush(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


class HeaderSink(Protocol):
    """A RecordSink that also carries record headers (the correlation id) and the record timestamp
    (the gateway's receive time); the gateway checks ``accepts_headers`` before passing them."""

    accepts_headers: bool

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None: ...


class KafkaSink:
    """kafka-python producer: acks=all, idempotent, batched and compressed, keyed by device."""

    def __init__(self, bootstrap: str, *, client_id: str = "tocsin-gateway", linger_ms: int = 5) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            **kafka_python_kwargs(),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            linger_ms=linger_ms,
            batch_size=256 * 1024,
            retries=2**31 - 1,
            delivery_timeout_ms=2**31 - 1,  # never give up on a record: the MQTT ack waits for it
            max_block_ms=5_000,
            request_timeout_ms=15_000,
        )

    accepts_headers = True

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """``headers``: record headers (the correlation id); ``timestamp_ms``: the record's Kafka
        timestamp (the gateway's receive time, which the worker's detection latency is measured from)."""
        try:
            fut = self._producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=timestamp_ms)
        except Exception as exc:  # noqa: BLE001 - buffer full or metadata timeout: report, don't ack
            on_done(exc)
            return
        fut.add_callback(lambda _md: on_done(None))
        fut.add_errback(on_done)

    def usable(self) -> bool:
        """True while the producer holds a connection to a broker (its ``connection-count`` metric;
        the periodic metadata refresh keeps one open even when no reading arrives)."""
        try:
            count = self._producer.metrics().get("producer-metrics", {}).get("connection-count", 0)
            return bool(count and count >= 1) or bool(self._producer.bootstrap_connected())
        except Exception:  # noqa: BLE001 - closed or broken producer: not usable
            return False

    def flush(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for buffered records; what is still pending stays unacknowledged."""
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:  # Kafka unreachable: the caller sees records still in flight
            log.warning("Kafka flush not complete after %.0f s", timeout_s)

    def close(self) -> None:
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.close(timeout=10)
        except KafkaTimeoutError:  # unsent records' MQTT messages were never acked: the broker keeps them
            log.warning("Kafka producer closed with records still unacknowledged")


class KafkaDeliveryError(RuntimeError):
    """librdkafka refused or failed a record (its error text); the record's message stays unacked."""


def librdkafka_security(t: KafkaTransport | None = None) -> dict[str, Any]:
    """The transport security of ``TOCSIN_KAFKA_*`` as librdkafka properties (empty for PLAINTEXT)."""
    t = t if t is not None else KafkaTransport()
    if t.kafka_security_protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security.protocol": t.kafka_security_protocol.lower()}
    if t.uses_tls:
        conf["ssl.endpoint.identification.algorithm"] = "https"
        if t.kafka_ssl_ca:
            conf["ssl.ca.location"] = t.kafka_ssl_ca
    if t.uses_sasl:
        conf["sasl.mechanism"] = t.kafka_sasl_mechanism
        conf["sasl.username"] = t.kafka_sasl_username
        conf["sasl.password"] = t.kafka_sasl_password.get_secret_value()
    return conf


class RdKafkaSink:
    """confluent-kafka (librdkafka) producer: acks=all, idempotent, batched (linger) and compressed,
    keyed by device. Batching, compression and the network run in librdkafka's own threads, outside
    the GIL; one thread of ours serves the delivery reports (``on_done``). A record is never given
    up on (``message.timeout.ms`` 0: the MQTT ack waits for it), as with :class:`KafkaSink`."""

    accepts_headers = True

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "tocsin-gateway",
        linger_ms: int = 5,
        max_queued: int = 100_000,
        transport: KafkaTransport | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self._brokers_down = False
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "gzip",  # what every consumer here reads (kafka-python, aiokafka: no lz4)
                "linger.ms": linger_ms,
                "batch.size": 256 * 1024,
                "message.timeout.ms": 0,
                "queue.buffering.max.messages": max_queued,
                "error_cb": self._on_error,
                **librdkafka_security(transport),
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="kafka-delivery-reports", daemon=True)
        self._thread.start()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._ALL_BROKERS_DOWN:  # noqa: SLF001 - librdkafka's public error code
            self._brokers_down = True
        log.warning("kafka producer: %s", err)

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """As :meth:`KafkaSink.send`; ``on_done`` runs on the delivery-report thread."""

        def report(err: Any, _msg: Any) -> None:
            if err is None:
                self._brokers_down = False
                on_done(None)
            else:
                on_done(KafkaDeliveryError(str(err)))

        try:
            self._producer.produce(
                topic, value, key, on_delivery=report, headers=cast(Any, headers), timestamp=timestamp_ms or 0
            )
        except Exception as exc:  # noqa: BLE001 - BufferError (queue full) or KafkaException: report, don't ack
            on_done(exc)

    def usable(self) -> bool:
        """True when a broker answers a metadata request (and librdkafka has not reported every broker
        down since the last delivered record)."""
        if self._brokers_down:
            return False
        try:
            return bool(self._producer.list_topics(timeout=2.0).brokers)
        except Exception:  # noqa: BLE001 - no broker reachable: not usable
            return False

    def flush(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for queued records; what is still pending stays unacknowledged."""
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("Kafka flush not complete after %.0f s (%d records pending)", timeout_s, left)

    def close(self) -> None:
        self.flush(10.0)
        self._stop.set()
        self._thread.join(5.0)


def ensure_topics(bootstrap: str, topics: tuple[str, ...], partitions: int) -> None:
    """Create the Kafka topics Tocsin uses if they are missing (idempotent)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tocsin-admin", **kafka_python_kwargs())
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
