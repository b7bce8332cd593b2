"""All of Tocsin's Kafka client code outside the Faust worker: producers, consumers, admin, lag.

ingest/, detectors/ and alerts/ hold no Kafka client code: they take sinks, followers, readers and
writers as arguments, and this module gives the Kafka ones (the embedded mode gives in-process
ones, tocsin/bus.py). Every client here is kafka-python and is built with the security settings of
schemas/transport.py (``kafka_python_kwargs``: TLS, SASL/SCRAM), so those are honoured in one
place; the Faust worker (tocsin/worker.py ``broker_credentials``) takes the same settings for aiokafka.

- :class:`KafkaSink`: the gateway's producer (acks=all, idempotent); :func:`ensure_topics` (replication
  factor min(3, brokers) and min.insync.replicas 2 on three brokers, :func:`replication_factor`).
- :class:`TopicFollower`: read topics from the beginning, then follow them (no consumer group): the
  operator API's view and the silence store (:func:`kafka_silence_store`).
- :class:`KafkaWriter`, :func:`publish_silence`, :func:`delete_silence`: the operator API's writes.
- :func:`read_since`, :func:`read_split`, :func:`committed_offsets`: the worker's delivery sweep.
- :class:`ConsumerLag`: the worker's lag probe; :func:`influx_consumer`: the InfluxDB sink's group.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from tocsin.alerts.silence_store import SilenceStore
from tocsin.alerts.silences import Silence
from tocsin.ingest.sinks import Done, Headers
from tocsin.schemas import topics as names
from tocsin.schemas.ack import Ack
from tocsin.schemas.transport import KafkaTransport, kafka_python_kwargs
from tocsin.schemas.wire import encode

log = logging.getLogger(__name__)
_RDKAFKA_LOG = logging.getLogger("librdkafka")  # confluent-kafka's log lines and errors

TopicPartition = tuple[str, int]


# --------------------------------------------------------------------------- clients
def _admin(bootstrap: str, client_id: str) -> Any:
    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id=client_id, **kafka_python_kwargs())


def _reader(bootstrap: str) -> Any:
    """A consumer without a group that commits nothing (assigned and positioned by hand)."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, **kafka_python_kwargs()
    )


def writer_producer(bootstrap: str, client_id: str) -> Any:
    """A producer for single, awaited writes (acks=all; a send fails after 10 s rather than hang)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        **kafka_python_kwargs(),
        acks="all",
        client_id=client_id,
        max_block_ms=10_000,
        request_timeout_ms=10_000,
    )


# --------------------------------------------------------------------------- topics: replication
MAX_AUTO_REPLICATION = 3


def configured_replication_factor() -> int:
    """``TOCSIN_KAFKA_REPLICATION_FACTOR`` (0: automatic)."""
    from tocsin.settings import Settings

    return Settings().kafka_replication_factor


def auto_replication_factor(brokers: int, configured: int = 0) -> int:
    """``configured`` if set (> 0), else min(3, ``brokers``): three copies once the cluster has three
    brokers, as many as there are below that (a single development broker: 1)."""
    return configured if configured > 0 else max(1, min(MAX_AUTO_REPLICATION, brokers))


def min_insync_replicas(replication_factor: int) -> int:
    """The replicas an acks=all write needs: 1 below 3 copies (2 would stop writes whenever one of two
    brokers is down), else a majority (2 of 3): one broker may fail with no acknowledged write lost."""
    return 1 if replication_factor < 3 else replication_factor // 2 + 1


def replication_settings(admin: Any, configured: int | None = None) -> tuple[int, dict[str, str]]:
    """(replication factor, topic configs) for new topics, from the brokers ``admin`` sees."""
    configured = configured_replication_factor() if configured is None else configured
    brokers = 0 if configured > 0 else len(admin.describe_cluster().get("brokers") or ())
    rf = auto_replication_factor(brokers, configured)
    return rf, {"min.insync.replicas": str(min_insync_replicas(rf))}


def replication_factor(bootstrap: str, configured: int | None = None, *, timeout_s: float = 30.0) -> int:
    """The replication factor for topics that other code creates (the worker's Faust changelogs):
    ``TOCSIN_KAFKA_REPLICATION_FACTOR``, or min(3, brokers) read from the cluster (retried for up to
    ``timeout_s``; then the last error is raised: guessing 1 on a 3-broker cluster would leave the
    tables' changelogs on one broker)."""
    configured = configured_replication_factor() if configured is None else configured
    if configured > 0:
        return configured
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = _admin(bootstrap, "tocsin-admin-replication")
            try:
                return replication_settings(admin, configured)[0]
            finally:
                admin.close()
        except Exception:  # noqa: BLE001 - Kafka not reachable yet: retry until the deadline
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    *,
    config: dict[str, str] | None = None,
    client_id: str = "tocsin-admin",
    replication: int | None = None,
) -> list[str]:
    """Create the topics that are missing (idempotent); returns those created here. ``config``:
    topic configs of the new topics (e.g. ``{"cleanup.policy": "compact"}``). ``replication``: the
    replication factor (default ``TOCSIN_KAFKA_REPLICATION_FACTOR``, 0: min(3, brokers)); the new
    topics get ``min.insync.replicas`` to match (:func:`min_insync_replicas`)."""
    admin = _admin(bootstrap, client_id)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        rf, replicated = replication_settings(admin, replication)
        new = [
            NewTopic(
                t, num_partitions=partitions, replication_factor=rf, topic_configs={**replicated, **(config or {})}
            )
            for t in missing
        ]
        try:
            admin.create_topics(new)
        except TopicAlreadyExistsError:
            return []
        return missing
    finally:
        admin.close()


def existing_partitions(bootstrap: str, topics: Iterable[str], client_id: str = "tocsin-admin") -> dict[str, int]:
    """Partition count of each of ``topics`` that exists (missing topics are left out; none is created).

    A topic's partition count is fixed at its creation (``TOCSIN_KAFKA_PARTITIONS`` then): the
    worker sizes its tables' changelogs by the topics as they are, not by the setting, since a
    changelog of another size than its source topic fails every table write (Faust
    ``PartitionsMismatch``)."""
    admin = _admin(bootstrap, client_id)
    try:
        wanted = [t for t in topics if t in set(admin.list_topics())]
        if not wanted:
            return {}
        return {d["topic"]: len(d["partitions"]) for d in admin.describe_topics(wanted) if not d.get("error_code")}
    finally:
        admin.close()


def partitions_by_topic(bootstrap: str, topics: Iterable[str], default: int) -> dict[str, int]:
    """Each of ``topics``' partition count: as it exists, else ``default`` (a topic still to be made).
    Kafka unreachable: ``default`` for all, with a warning (the worker then starts as before)."""
    names_ = list(topics)
    try:
        found = existing_partitions(bootstrap, names_)
    except Exception as exc:  # noqa: BLE001 - the broker is down at start: Faust will wait for it
        log.warning("partition counts of %s not read (%s): using %d", names_, exc, default)
        found = {}
    for topic, n in found.items():
        if n != default:
            log.warning(
                "topic %s has %d partitions (TOCSIN_KAFKA_PARTITIONS is %d): its table follows the topic",
                topic,
                n,
                default,
            )
    return {t: found.get(t, default) for t in names_}


def ensure_changelogs(bootstrap: str, app_id: str, tables: dict[str, int]) -> list[str]:
    """Create the compacted changelog topics of the worker's tables (Faust's names,
    ``<app id>-<table>-changelog``; ``tables``: name -> partitions) that are missing.

    Faust creates them itself when the app starts, moments before the group forms; the consumer's
    metadata may not list a topic made that late (aiokafka refreshes it every 5 minutes), and the
    group leader's assignor then leaves that table out ("Ignoring missing topic"): its changelog
    partitions were neither assigned nor restored after a rebalance (seen in
    tests/integration/test_scaleout_workers.py for ``alert-lifecycle``). Made here first, they are in
    the first metadata."""
    created: list[str] = []
    try:
        for n in sorted(set(tables.values())):
            names_ = [f"{app_id}-{t}-changelog" for t, p in tables.items() if p == n]
            created += ensure_topics(
                bootstrap, names_, n, config={"cleanup.policy": "compact"}, client_id="tocsin-worker-admin"
            )
    except Exception as exc:  # noqa: BLE001 - Kafka down at start: Faust makes them once it connects
        log.warning("changelog topics not created ahead (%s): Faust will create them", exc)
    return created


def ensure_silence_topic(bootstrap: str, topic: str = names.SILENCES) -> bool:
    """Create the compacted silences topic (one partition) if it is missing; True if it was created here."""
    created = ensure_topics(
        bootstrap, [topic], 1, config={"cleanup.policy": "compact"}, client_id="tocsin-silences-admin"
    )
    if created:
        log.info("created compacted topic %s", topic)
    return bool(created)


# --------------------------------------------------------------------------- gateway
class KafkaSink:
    """kafka-python producer: acks=all, idempotent, batched and compressed, keyed by device."""

    def __init__(self, bootstrap: str, *, client_id: str = "tocsin-gateway", linger_ms: int = 5) -> None:
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
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:  # Kafka unreachable: the caller sees records still in flight
            log.warning("Kafka flush not complete after %.0f s", timeout_s)

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        except KafkaTimeoutError:  # unsent records' MQTT messages were never acked: the broker keeps them
            log.warning("Kafka producer closed with records still unacknowledged")


# --------------------------------------------------------------------------- gateway (librdkafka)
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


CALLER_SERVES_S = 0.02
"""While a caller served the delivery reports this recently, the report thread leaves them to it."""


PARTITIONS_TTL_S = 300.0
"""How long the gateway's producer trusts a topic's partition count (batch records, ``partition_for``)."""
PARTITIONS_RETRY_S = 10.0

_KEY_HASHES: dict[bytes, int] = {}


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` as Kafka's default partitioner picks it (murmur2 of
    the key, sign bit cleared, modulo the count): librdkafka's ``murmur2_random``, the Java client,
    kafka-python and aiokafka agree. The hashes of the keys seen (device ids) are kept, bounded."""
    h = _KEY_HASHES.get(key)
    if h is None:
        from kafka.partitioner.default import murmur2

        if len(_KEY_HASHES) >= 100_000:
            _KEY_HASHES.clear()
        h = _KEY_HASHES[key] = murmur2(key) & 0x7FFFFFFF
    return h % partitions


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
                # the key's partition as the Java client, kafka-python and aiokafka (the worker) choose it:
                # librdkafka's own default (CRC32) put a device's readings in another partition than the
                # worker's deadman ticks for that device, i.e. with 2+ workers at another worker's table
                "partitioner": "murmur2_random",
                "queue.buffering.max.messages": max_queued,
                "error_cb": self._on_error,
                "logger": _RDKAFKA_LOG,  # into Python logging (tocsin/logs.py: one line per outage), not stderr
                **librdkafka_security(transport),
            }
        )
        self._stop = threading.Event()
        self._partition_counts: dict[str, tuple[int, float]] = {}  # topic -> (count, monotonic time to ask again)
        self._round_hooks: list[Callable[[], None]] = []
        self._caller_served_at = float("-inf")
        self._thread = threading.Thread(target=self._serve_reports, name="kafka-delivery-reports", daemon=True)
        self._thread.start()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._ALL_BROKERS_DOWN:  # noqa: SLF001 - librdkafka's public error code
            self._brokers_down = True
        _RDKAFKA_LOG.warning("kafka producer: %s", err)

    def add_round_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` on the delivery-report thread after every round of reports (one ``poll``
        serves all that are ready): the gateway acknowledges a round's MQTT messages in one write."""
        self._round_hooks.append(hook)

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self._caller_served_at < CALLER_SERVES_S:
                time.sleep(CALLER_SERVES_S / 2)  # a busy caller serves them: no second thread for the GIL
            else:
                self.serve_reports(0.05, caller=False)

    def serve_reports(self, timeout_s: float = 0.0, *, caller: bool = True) -> int:
        """Serve the delivery reports that are ready (waiting up to ``timeout_s`` for one), then the
        round hooks; any thread. The report thread does it in a loop, except while a busy caller does it
        between its sends (within the last ``CALLER_SERVES_S``). Returns the number of reports served."""
        if caller:
            self._caller_served_at = time.monotonic()
        served = int(self._producer.poll(timeout_s))
        if served:
            for hook in self._round_hooks:
                try:
                    hook()
                except Exception:  # noqa: BLE001 - the report thread must survive a hook's bug
                    log.exception("delivery round hook failed")
        return served

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        """As :meth:`KafkaSink.send`; ``on_done`` runs on the delivery-report thread. ``partition``:
        this one (a batch record: :meth:`partition_for` of its readings' keys), else the key's."""

        def report(err: Any, _msg: Any) -> None:
            if err is None:
                self._brokers_down = False
                on_done(None)
            else:
                on_done(KafkaDeliveryError(str(err)))

        try:
            self._producer.produce(
                topic,
                value,
                key,
                -1 if partition is None else partition,  # -1: librdkafka's partitioner picks it
                on_delivery=report,
                headers=cast(Any, headers),
                timestamp=timestamp_ms or 0,
            )
        except Exception as exc:  # noqa: BLE001 - BufferError (queue full) or KafkaException: report, don't ack
            on_done(exc)

    def partition_for(self, topic: str, key: bytes) -> int | None:
        """The partition this producer's partitioner (murmur2, as the Java client, kafka-python and
        aiokafka) gives ``key`` in ``topic``, or None while the topic's partition count is not known.
        The count is asked of the brokers once per ``PARTITIONS_TTL_S`` per topic (a failed or empty
        answer again after ``PARTITIONS_RETRY_S``)."""
        now = time.monotonic()
        known = self._partition_counts.get(topic)
        if known is None or now >= known[1]:
            count = 0
            try:
                meta = self._producer.list_topics(topic, timeout=5.0).topics.get(topic)
                if meta is not None and meta.error is None:
                    count = len(meta.partitions)
            except Exception as exc:  # noqa: BLE001 - no answer: records follow their keys one by one
                log.warning("partitions of %s not known: %s", topic, exc)
            known = self._partition_counts[topic] = (count, now + (PARTITIONS_TTL_S if count else PARTITIONS_RETRY_S))
        if not known[0]:
            return None
        return key_partition(key, known[0])

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


# --------------------------------------------------------------------------- followers
class TopicFollower:
    """Reads topics from the beginning, then follows them, in a daemon thread (no consumer group).

    ``on_record`` gets every kafka-python ``ConsumerRecord`` in partition order; an exception it raises
    is logged and the record skipped. Partitions are assigned by hand (all partitions of the topics,
    refreshed every ``refresh_s``, so topics created later are picked up) and the position of every
    partition is remembered, so a consumer rebuilt after an error resumes where it was instead of
    replaying the topics. "Caught up" means every partition that existed at the first assignment has
    been read up to its end offset of that moment.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Iterable[str],
        on_record: Callable[[Any], object],
        *,
        name: str,
        on_caught_up: Callable[[], None] | None = None,
        refresh_s: float = 10.0,
        prepare: Callable[[], object] | None = None,
        since_ms: Callable[[], int] | None = None,
    ) -> None:
        """``prepare()``: run once by :meth:`start` before the thread (e.g. create the topic); if it
        raises, that is logged and the follower starts anyway (it picks the topics up once they exist).
        ``since_ms()``: a partition read for the first time starts at the first record of that time
        (epoch ms; the end when there is none) instead of the beginning."""
        self.since_ms = since_ms
        self.bootstrap, self.topics, self.name, self.prepare = bootstrap, tuple(topics), name, prepare
        self.on_record, self.on_caught_up, self.refresh_s = on_record, on_caught_up, refresh_s
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._positions: dict[Any, int] = {}  # TopicPartition -> next offset to apply
        self._targets: dict[Any, int] | None = None  # end offsets at the first assignment
        self._thread: threading.Thread | None = None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def start(self) -> None:
        if self._thread is not None:
            return
        if self.prepare is not None:
            try:
                self.prepare()
            except Exception as e:  # noqa: BLE001 - the follower picks the topics up once they exist
                log.warning("%s: could not prepare %s: %s", self.name, ", ".join(self.topics), e)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=self.bootstrap.split(","),
                    **kafka_python_kwargs(),
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    client_id=self.name,
                    metadata_max_age_ms=10_000,
                )
            except Exception as e:  # noqa: BLE001 - Kafka not reachable yet: retry
                log.warning("%s: cannot connect to Kafka %s (%s); retrying", self.name, self.bootstrap, e)
                self._stop.wait(2.0)
                continue
            try:
                self._follow(consumer)
            except Exception:  # noqa: BLE001 - never let the thread die; resume from the remembered positions
                log.exception("%s: consumer failed; reconnecting", self.name)
                self._stop.wait(1.0)
            finally:
                try:
                    consumer.close()
                except Exception:  # noqa: BLE001
                    log.debug("%s: close failed", self.name, exc_info=True)

    def _follow(self, consumer: Any) -> None:
        from kafka import TopicPartition

        assigned: set[Any] = set()
        next_refresh = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_refresh:
                parts = {TopicPartition(t, p) for t in self.topics for p in consumer.partitions_for_topic(t) or ()}
                if parts != assigned:
                    consumer.assign(sorted(parts))
                    fresh = sorted(tp for tp in parts - assigned if tp not in self._positions)
                    for tp in parts - assigned:
                        if tp in self._positions:
                            consumer.seek(tp, self._positions[tp])
                    if fresh and self.since_ms is not None:
                        since = self.since_ms()
                        found = consumer.offsets_for_times(dict.fromkeys(fresh, since))
                        ends = consumer.end_offsets(fresh)
                        for tp in fresh:
                            at = found.get(tp)
                            consumer.seek(tp, at.offset if at is not None else ends[tp])
                    elif fresh:
                        consumer.seek_to_beginning(*fresh)
                    assigned = parts
                if self._targets is None:
                    self._targets = dict(consumer.end_offsets(sorted(parts))) if parts else {}
                next_refresh = time.monotonic() + self.refresh_s
            batches = consumer.poll(timeout_ms=500)
            for tp, records in batches.items():
                for rec in records:
                    try:
                        self.on_record(rec)
                    except Exception:  # noqa: BLE001 - a bad record must not stop the others
                        log.exception("%s: record %s[%d]@%d skipped", self.name, tp.topic, tp.partition, rec.offset)
                    self._positions[tp] = rec.offset + 1
            if not self._caught_up.is_set() and self._targets is not None:
                if all(tp in assigned and consumer.position(tp) >= end for tp, end in self._targets.items()):
                    self._caught_up.set()
                    log.info("%s: caught up with %s", self.name, ", ".join(self.topics))
                    if self.on_caught_up is not None:
                        self.on_caught_up()


def kafka_silence_store(
    bootstrap: str,
    *,
    topic: str = names.SILENCES,
    create_topic: bool = True,
    on_rejected: Callable[[Any, str], object] | None = None,
    **kwargs: Any,
) -> SilenceStore:
    """A :class:`~tocsin.alerts.silence_store.SilenceStore` kept from the compacted topic by a
    :class:`TopicFollower` (which first creates the topic when ``create_topic``)."""

    def follow(on_record: Callable[[Any], object]) -> TopicFollower:
        prepare = functools.partial(ensure_silence_topic, bootstrap, topic) if create_topic else None
        return TopicFollower(bootstrap, [topic], on_record, name=f"silences-{topic}", prepare=prepare)

    return SilenceStore(follow, on_rejected=on_rejected, **kwargs)


# --------------------------------------------------------------------------- writers
def _send(bootstrap: str, key: str, value: bytes | None, producer: Any, topic: str, timeout_s: float) -> Any:
    own = producer is None
    p = writer_producer(bootstrap, "tocsin-silences") if own else producer
    try:
        return p.send(topic, key=key.encode("utf-8"), value=value).get(timeout=timeout_s)
    finally:
        if own:
            p.close(timeout=5)


def publish_silence(
    bootstrap: str, silence: Silence, *, producer: Any = None, topic: str = names.SILENCES, timeout_s: float = 10.0
) -> Any:
    """Write (create or replace) a silence; returns the record metadata once Kafka has it.

    ``producer``: a long-lived ``KafkaProducer`` to reuse (else one is made for this call)."""
    return _send(bootstrap, silence.id, encode(silence), producer, topic, timeout_s)


def delete_silence(
    bootstrap: str, silence_id: str, *, producer: Any = None, topic: str = names.SILENCES, timeout_s: float = 10.0
) -> Any:
    """Write the tombstone of a silence (a null value: compaction then removes the id)."""
    return _send(bootstrap, silence_id, None, producer, topic, timeout_s)


class KafkaWriter:
    """The operator API's writes to Kafka (acks, silences) through one lazily made producer."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: Any = None
        self._lock = threading.Lock()

    def producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = writer_producer(self.bootstrap, "tocsin-operator-api")
            return self._producer

    def _send_ack(self, ack: Ack) -> Any:
        return self.producer().send(names.ACKS, key=ack.fingerprint.encode("utf-8"), value=encode(ack)).get(timeout=10)

    async def publish_ack(self, ack: Ack) -> object:
        return await asyncio.to_thread(self._send_ack, ack)

    async def publish(self, silence: Silence) -> object:
        return await asyncio.to_thread(
            functools.partial(publish_silence, self.bootstrap, silence, producer=self.producer())
        )

    async def delete(self, silence_id: str) -> object:
        return await asyncio.to_thread(
            functools.partial(delete_silence, self.bootstrap, silence_id, producer=self.producer())
        )

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


# --------------------------------------------------------------------------- readers (delivery sweep)
def read_since(bootstrap: str, topic: str, since_ms: int, timeout_s: float = 30.0) -> list[bytes]:
    """Record values of ``topic`` from ``since_ms`` (epoch ms) to its current end, every partition
    (kafka-python, blocking: call it in a thread). Bounded by ``timeout_s``."""
    return [v for _p, _o, v in _read(bootstrap, topic, since_ms, None, timeout_s)]


def read_split(
    bootstrap: str,
    topic: str,
    since_ms: int,
    partitions: Iterable[int],
    committed: dict[int, int],
    timeout_s: float = 30.0,
) -> tuple[list[bytes], list[bytes]]:
    """Record values of ``topic`` (these ``partitions``) from ``since_ms`` to its end, split at the
    group's ``committed`` offsets: (below them, at or past them). A partition without a committed
    offset is all past."""
    below: list[bytes] = []
    past: list[bytes] = []
    for partition, offset, value in _read(bootstrap, topic, since_ms, partitions, timeout_s):
        (below if offset < committed.get(partition, 0) else past).append(value)
    return below, past


def _read(
    bootstrap: str, topic: str, since_ms: int, partitions: Iterable[int] | None, timeout_s: float
) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of ``topic`` (``partitions``, default all) from ``since_ms`` to the end."""
    from kafka import TopicPartition

    consumer = _reader(bootstrap)
    try:
        chosen = sorted(partitions) if partitions is not None else sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in chosen]
        if not tps:
            return []
        starts = consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = consumer.end_offsets(tps)
        todo = {tp for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
        if not todo:
            return []
        consumer.assign(sorted(todo, key=lambda tp: tp.partition))
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        out: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, recs in consumer.poll(timeout_ms=500).items():
                out += [(tp.partition, r.offset, r.value) for r in recs if r.offset < ends[tp] and r.value is not None]
                if consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return out
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset per partition of ``topic`` (kafka-python, blocking)."""
    admin = _admin(bootstrap, f"{group}-sweep")
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0}


# --------------------------------------------------------------------------- lag, InfluxDB sink
class ConsumerLag:
    """Lag of a consumer group per topic and partition: the partition's end offset (high-water
    mark) minus the group's committed offset, read from Kafka (kafka-python, blocking: call it in a
    thread). Partitions without a committed offset are not reported (nothing to measure from)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap, self.group = bootstrap.split(","), group
        self._admin: Any = None
        self._consumer: Any = None

    def sample(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        if self._admin is None:
            self._admin = _admin(",".join(self.bootstrap), f"{self.group}-lag")
            self._consumer = _reader(",".join(self.bootstrap))
        committed = {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in self._admin.list_consumer_group_offsets(self.group).items()
            if meta.offset >= 0 and (only is None or (tp.topic, tp.partition) in only)
        }
        if not committed:
            return {}
        from kafka import TopicPartition as KafkaTP

        ends = self._consumer.end_offsets([KafkaTP(t, p) for t, p in committed])
        return {(tp.topic, tp.partition): max(0, end - committed[(tp.topic, tp.partition)]) for tp, end in ends.items()}

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                client.close()
        self._admin = self._consumer = None


def influx_consumer(bootstrap: str, group_id: str = "tocsin-influx") -> Any:
    """The InfluxDB sink's consumer (ingest/influx.py ``InfluxKafkaSink``): telemetry and alerts, in
    a group that commits only after InfluxDB took the batch."""
    return KafkaConsumer(
        *names.TELEMETRY_TOPICS,
        names.ALERTS,
        bootstrap_servers=bootstrap.split(","),
        **kafka_python_kwargs(),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5_000,
        client_id=f"{group_id}-sink",
    )
