"""Where the gateway puts records: Kafka in production, the in-process bus in embedded mode.

Both call ``on_done(error_or_None)`` exactly once per record, from any thread, once the record is
durable downstream (Kafka: acknowledged by all in-sync replicas).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from schemas.transport import kafka_python_kwargs

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
