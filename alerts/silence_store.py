"""Silences on Kafka: the compacted topic ``alerts.silences`` is the source of truth.

Each record is keyed by the silence id; its value is the :class:`~alerts.silences.Silence` JSON, or
empty (a tombstone) once the silence is deleted. Compaction keeps the last value of every id, so
reading the topic from the beginning rebuilds the current set. :class:`SilenceStore` does that in a
background thread and then follows the topic, so every process (workers' notifiers, the operator
API) sees a silence a moment after the operator creates it::

    store = SilenceStore(bootstrap)
    store.start()
    store.wait_caught_up(30)
    notifier = Notifier(..., silences=store.silences)

:class:`TopicFollower` is the generic part (read topics from the beginning, then follow them, with
no consumer group); the operator API uses it as well.

Ended silences stay on the topic (and in memory) until someone deletes them; a periodic cleanup
that tombstones silences ended long ago would bound both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from alerts.silences import Silence
from schemas import topics
from schemas.transport import kafka_python_kwargs
from schemas.wire import decode, encode

log = logging.getLogger(__name__)

SILENCES = topics.SILENCES

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def has_ended(silence: Silence, now: datetime) -> bool:
    """True once the silence can never be active again (a recurring one without ``until`` never ends)."""
    if silence.recurrence == "none":
        return now >= silence.ends_at
    return silence.until is not None and now > silence.until


# --------------------------------------------------------------------------- topic
def ensure_silence_topic(bootstrap: str, topic: str = SILENCES) -> bool:
    """Create the compacted silences topic if it is missing; True if it was created here."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), client_id="tocsin-silences-admin", **kafka_python_kwargs()
    )
    try:
        if topic in set(admin.list_topics()):
            return False
        new = NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs={"cleanup.policy": "compact"})
        try:
            admin.create_topics([new])
        except TopicAlreadyExistsError:
            return False
        log.info("created compacted topic %s", topic)
        return True
    finally:
        admin.close()


def _producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        **kafka_python_kwargs(),
        acks="all",
        client_id="tocsin-silences",
        max_block_ms=10_000,
        request_timeout_ms=10_000,
    )


def _send(bootstrap: str, key: str, value: bytes | None, producer: Any, topic: str, timeout_s: float) -> Any:
    own = producer is None
    p = _producer(bootstrap) if own else producer
    try:
        return p.send(topic, key=key.encode("utf-8"), value=value).get(timeout=timeout_s)
    finally:
        if own:
            p.close(timeout=5)


def publish_silence(
    bootstrap: str, silence: Silence, *, producer: Any = None, topic: str = SILENCES, timeout_s: float = 10.0
) -> Any:
    """Write (create or replace) a silence; returns the record metadata once Kafka has it.

    ``producer``: a long-lived kafka-python ``KafkaProducer`` to reuse (else one is made for this call)."""
    return _send(bootstrap, silence.id, encode(silence), producer, topic, timeout_s)


def delete_silence(
    bootstrap: str, silence_id: str, *, producer: Any = None, topic: str = SILENCES, timeout_s: float = 10.0
) -> Any:
    """Write the tombstone of a silence (a null value: compaction then removes the id)."""
    return _send(bootstrap, silence_id, None, producer, topic, timeout_s)


# --------------------------------------------------------------------------- follower
class TopicFollower:
    """Reads topics from the beginning, then follows them, in a daemon thread (kafka-python, no group).

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
    ) -> None:
        self.bootstrap, self.topics, self.name = bootstrap, tuple(topics), name
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
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        from kafka import KafkaConsumer

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
                    for tp in parts - assigned:
                        if tp in self._positions:
                            consumer.seek(tp, self._positions[tp])
                        else:
                            consumer.seek_to_beginning(tp)
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


# --------------------------------------------------------------------------- store
class SilenceStore:
    """The current silences, kept from the compacted topic by a background thread.

    ``silences()`` is what :class:`~alerts.notify.Notifier` takes: the silences that have not ended
    (current and future ones; recurring ones until their ``until``). ``apply()`` takes one raw record,
    so tests can feed the store without Kafka.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        clock: Clock = _utcnow,
        topic: str = SILENCES,
        create_topic: bool = True,
        on_rejected: Callable[[Any, str], object] | None = None,
    ) -> None:
        """``on_rejected(record, why)``: called (in the follower's thread) with every kafka-python record
        that is skipped as malformed; the worker sets them aside on ``worker.deadletter``."""
        self.bootstrap, self.clock, self.topic, self.create_topic = bootstrap, clock, topic, create_topic
        self.on_rejected = on_rejected
        self._by_id: dict[str, Silence] = {}
        self._cond = threading.Condition(threading.RLock())
        self._follower = TopicFollower(bootstrap, [topic], self._record, name=f"silences-{topic}")

    def _record(self, rec: Any) -> None:
        why = self.apply(rec.key, rec.value)
        if why is not None and self.on_rejected is not None:
            self.on_rejected(rec, why)

    # lifecycle
    def start(self) -> None:
        if self.create_topic:
            try:
                ensure_silence_topic(self.bootstrap, self.topic)
            except Exception as e:  # noqa: BLE001 - the follower picks the topic up once it exists
                log.warning("could not ensure topic %s: %s", self.topic, e)
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    @property
    def caught_up(self) -> bool:
        return self._follower.caught_up

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._follower.wait_caught_up(timeout_s)

    # records
    def apply(self, key: bytes | None, value: bytes | None) -> str | None:
        """Apply one record of the topic: a silence, or a tombstone. Malformed records are logged and
        skipped: the return value says why (None when the record was applied)."""
        if not key:
            log.warning("silence record without a key skipped")
            return "silence record without a key"
        try:
            silence_id = key.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("silence record with a non-UTF-8 key %r skipped", key[:100])
            return "silence record with a non-UTF-8 key"
        if not value:
            with self._cond:
                self._by_id.pop(silence_id, None)
                self._cond.notify_all()
            return None
        try:
            silence = decode(Silence, value)
        except ValidationError as e:
            errors = e.errors(include_url=False, include_input=False)[:3]
            log.warning("malformed silence %r skipped: %s", silence_id, errors)
            return f"malformed silence: {errors}"[:2000]
        if silence.id != silence_id:
            log.warning("silence %r under key %r skipped: the key must be the id", silence.id, silence_id)
            return "silence under another key than its id"
        with self._cond:
            self._by_id[silence_id] = silence
            self._cond.notify_all()
        return None

    # queries
    def get(self, silence_id: str) -> Silence | None:
        """The silence with this id, ended or not."""
        with self._cond:
            return self._by_id.get(silence_id)

    def all(self) -> list[Silence]:
        with self._cond:
            return sorted(self._by_id.values(), key=lambda s: (s.starts_at, s.id))

    def silences(self) -> list[Silence]:
        """The silences that have not ended, by start time."""
        now = self.clock()
        return [s for s in self.all() if not has_ended(s, now)]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``predicate()`` holds (re-checked after every applied record), at most ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)
