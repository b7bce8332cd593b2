"""Silences: the compacted Kafka topic ``alerts.silences`` is the source of truth.

Each record is keyed by the silence id; its value is the :class:`~tocsin.alerts.silences.Silence` JSON, or
empty (a tombstone) once the silence is deleted. Compaction keeps the last value of every id, so
reading the topic from the beginning rebuilds the current set. :class:`SilenceStore` keeps that set
from the records an injected follower reads (the Kafka one is made by tocsin/kafka.py
``kafka_silence_store``: a background thread that reads the topic and then follows it), so every
process (workers' notifiers, the operator API) sees a silence a moment after the operator creates it::

    store = kafka_silence_store(bootstrap)
    store.start()
    store.wait_caught_up(30)
    notifier = Notifier(..., silences=store.silences)

Ended silences stay on the topic (and in memory) until someone deletes them; a periodic cleanup
that tombstones silences ended long ago would bound both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from tocsin.alerts.silences import Silence
from tocsin.schemas import topics
from tocsin.schemas.wire import decode

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


class Follower(Protocol):
    """Reads a topic from the beginning, then follows it (tocsin/kafka.py ``TopicFollower``)."""

    @property
    def caught_up(self) -> bool: ...

    def wait_caught_up(self, timeout_s: float) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


FollowerFactory = Callable[[Callable[[Any], object]], Follower]


# --------------------------------------------------------------------------- store
class SilenceStore:
    """The current silences, kept from the compacted topic by a background thread.

    ``silences()`` is what :class:`~tocsin.alerts.notify.Notifier` takes: the silences that have not ended
    (current and future ones; recurring ones until their ``until``). ``apply()`` takes one raw record,
    so tests can feed the store without Kafka.
    """

    def __init__(
        self,
        follow: FollowerFactory | None = None,
        *,
        clock: Clock = _utcnow,
        on_rejected: Callable[[Any, str], object] | None = None,
    ) -> None:
        """``follow(on_record)``: makes the reader of the topic that calls ``on_record`` with every
        record (tocsin/kafka.py ``kafka_silence_store``); without it the store is fed through
        :meth:`apply` only (and is caught up at once). ``on_rejected(record, why)``: called (in the
        follower's thread) with every record that is skipped as malformed; the worker sets them
        aside on ``worker.deadletter``."""
        self.clock, self.on_rejected = clock, on_rejected
        self._by_id: dict[str, Silence] = {}
        self._cond = threading.Condition(threading.RLock())
        self._follower = follow(self._record) if follow is not None else None

    def _record(self, rec: Any) -> None:
        why = self.apply(rec.key, rec.value)
        if why is not None and self.on_rejected is not None:
            self.on_rejected(rec, why)

    # lifecycle
    def start(self) -> None:
        if self._follower is not None:
            self._follower.start()

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()

    @property
    def caught_up(self) -> bool:
        return self._follower.caught_up if self._follower is not None else True

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._follower.wait_caught_up(timeout_s) if self._follower is not None else True

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
