"""The operator API's read model: every incident (fingerprint) with its messages, deliveries and acks,
built from the records of ``alerts``, ``alerts.deliveries`` and ``alerts.acks`` (fed by the runtime's
follower, tocsin/api.py, or directly by tests). Bounded memory: see alerts/api.py. No I/O."""

from __future__ import annotations

import heapq
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from tocsin.schemas import topics
from tocsin.schemas.ack import Ack
from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.wire import decode

log = logging.getLogger(__name__)

ACKS = topics.ACKS
VIEW_TOPICS = (topics.ALERTS, topics.DELIVERIES, ACKS)

DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_MAX_ENDED = 10_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertSummary(BaseModel):
    fingerprint: str
    identifier: str
    revision: int
    msg_type: MsgType
    status: AlertStatus
    active: bool
    level: WarningLevel
    hazard: Family
    event: str
    area: AlertArea
    headline: str
    sent: datetime
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None


class AlertDetail(AlertSummary):
    current: Alert
    history: list[Alert]
    deliveries: list[DeliveryRecord]
    delivery_summary: dict[str, dict[str, int]] = Field(description="channel -> outcome -> count")
    acks: list[Ack]


class AuditEvent(BaseModel):
    ts: datetime
    kind: Literal["message", "delivery", "ack"]
    fingerprint: str
    identifier: str
    summary: str
    record: dict[str, Any]


# --------------------------------------------------------------------------- the view
@dataclass
class _Incident:
    """Everything seen for one fingerprint; ``seq`` numbers give the arrival order across topics."""

    messages: list[tuple[int, Alert]] = field(default_factory=list)
    deliveries: list[tuple[int, DeliveryRecord]] = field(default_factory=list)
    acks: list[tuple[int, Ack]] = field(default_factory=list)
    identifiers: set[str] = field(default_factory=set)
    seen: set[Any] = field(default_factory=set)  # deliveries and acks already applied (replays are no-ops)
    last_ts: datetime | None = None  # time of the latest record (message sent, delivery ts, ack at)
    stamp: tuple[datetime, int] | None = None  # its entry in the eviction heap while it is ended

    @property
    def ended(self) -> bool:
        """Evictable: cancelled, or only records whose alert message has not been seen."""
        return not self.messages or self.messages[-1][1].msg_type is MsgType.CANCEL


class AlertView:
    """The queryable state, fed record by record (thread-safe: a consumer thread writes, handlers read).

    Applying is idempotent (a message is known by its identifier, a delivery or ack by its content),
    so a replayed topic changes nothing.

    Bounded (see the module docstring): at most ``max_ended`` ended incidents are kept, none whose
    latest record is older than ``retention`` before the newest alert message seen; active incidents
    are never evicted.
    """

    def __init__(self, retention: timedelta = DEFAULT_RETENTION, max_ended: int = DEFAULT_MAX_ENDED) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, not {retention}")
        if max_ended < 0:
            raise ValueError(f"max_ended must be >= 0, not {max_ended}")
        self.retention, self.max_ended = retention, max_ended
        self._cond = threading.Condition(threading.RLock())
        self._incidents: dict[str, _Incident] = {}
        self._seq = 0
        self._caught_up = threading.Event()
        self._alert_time: datetime | None = None  # the newest message's ``sent``: the retention clock
        self._ended: set[str] = set()  # fingerprints of the ended incidents kept
        self._heap: list[tuple[datetime, int, str]] = []  # (last_ts, seq, fingerprint); stale entries skipped
        self._evicted: OrderedDict[str, frozenset[str]] = OrderedDict()  # fingerprint -> its message identifiers
        self._evicted_max = max(max_ended, 1024)
        self.evicted = 0  # incidents evicted so far

    # ------------------------------------------------------------------ feeding
    def apply_record(self, topic: str, value: bytes | None) -> bool:
        """Apply one raw Kafka record of ``alerts``, ``alerts.deliveries`` or ``alerts.acks``.

        Malformed records are logged and skipped (False)."""
        if not value:
            return False
        try:
            if topic == topics.ALERTS:
                return self.apply_alert(decode(Alert, value))
            if topic == topics.DELIVERIES:
                return self.apply_delivery(decode(DeliveryRecord, value))
            if topic == ACKS:
                return self.apply_ack(decode(Ack, value))
        except ValidationError as e:
            log.warning("malformed record on %s skipped: %s", topic, e.errors(include_url=False)[:3])
            return False
        log.warning("record of unexpected topic %s skipped", topic)
        return False

    def _next(self, fingerprint: str) -> tuple[int, _Incident]:
        self._seq += 1
        return self._seq, self._incidents.setdefault(fingerprint, _Incident())

    def _of_evicted(self, fingerprint: str, identifier: str) -> bool:
        gone = self._evicted.get(fingerprint)
        return gone is not None and identifier in gone

    def apply_alert(self, alert: Alert) -> bool:
        with self._cond:
            inc = self._incidents.get(alert.fingerprint)
            if inc is not None and alert.identifier in inc.identifiers:
                return False
            if self._of_evicted(alert.fingerprint, alert.identifier):
                return False
            seq, inc = self._next(alert.fingerprint)
            inc.messages.append((seq, alert))
            inc.identifiers.add(alert.identifier)
            if self._alert_time is None or alert.sent > self._alert_time:
                self._alert_time = alert.sent
            self._changed(alert.fingerprint, inc, seq, alert.sent)
            self._cond.notify_all()
            return True

    def apply_delivery(self, record: DeliveryRecord) -> bool:
        return self._apply_other(record.fingerprint, record, "deliveries", record.alert_id, record.ts)

    def apply_ack(self, ack: Ack) -> bool:
        return self._apply_other(ack.fingerprint, ack, "acks", ack.identifier, ack.at)

    def _apply_other(
        self, fingerprint: str, item: DeliveryRecord | Ack, attr: str, identifier: str, ts: datetime
    ) -> bool:
        with self._cond:
            inc = self._incidents.get(fingerprint)
            if inc is not None and item in inc.seen:
                return False
            if self._of_evicted(fingerprint, identifier):
                return False
            seq, inc = self._next(fingerprint)
            getattr(inc, attr).append((seq, item))
            inc.seen.add(item)
            self._changed(fingerprint, inc, seq, ts)
            self._cond.notify_all()
            return True

    # ------------------------------------------------------------------ the bound
    def _changed(self, fingerprint: str, inc: _Incident, seq: int, ts: datetime) -> None:
        """Book-keeping after a record was applied to ``inc``, then eviction."""
        if inc.last_ts is None or ts > inc.last_ts:
            inc.last_ts = ts
        assert inc.last_ts is not None
        if inc.ended:
            self._ended.add(fingerprint)
            inc.stamp = (inc.last_ts, seq)
            heapq.heappush(self._heap, (inc.last_ts, seq, fingerprint))
        else:
            self._ended.discard(fingerprint)
            inc.stamp = None
        self._evict()

    def _evict(self) -> None:
        horizon = self._alert_time - self.retention if self._alert_time is not None else None
        heap = self._heap
        while heap:
            ts, seq, fp = heap[0]
            inc = self._incidents.get(fp)
            if inc is None or inc.stamp != (ts, seq):
                heapq.heappop(heap)  # stale: the incident changed since, became active or is gone
                continue
            if len(self._ended) <= self.max_ended and (horizon is None or ts >= horizon):
                break
            heapq.heappop(heap)
            del self._incidents[fp]
            self._ended.discard(fp)
            self._evicted[fp] = self._evicted.pop(fp, frozenset()) | inc.identifiers
            while len(self._evicted) > self._evicted_max:
                self._evicted.popitem(last=False)
            self.evicted += 1
        if len(heap) > 2 * len(self._ended) + 1024:  # too many stale entries: rebuild
            self._heap = [(i.stamp[0], i.stamp[1], fp) for fp in self._ended if (i := self._incidents[fp]).stamp]
            heapq.heapify(self._heap)

    @property
    def ended_count(self) -> int:
        """Ended incidents kept (never above ``max_ended``)."""
        with self._cond:
            return len(self._ended)

    def fingerprints(self) -> set[str]:
        """Every fingerprint kept (with or without a message)."""
        with self._cond:
            return set(self._incidents)

    def mark_caught_up(self) -> None:
        self._caught_up.set()

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``predicate()`` holds (re-checked after every applied record), at most ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)

    # ------------------------------------------------------------------ queries
    def current(self, fingerprint: str) -> Alert | None:
        with self._cond:
            inc = self._incidents.get(fingerprint)
            return inc.messages[-1][1] if inc and inc.messages else None

    def has_ack(self, ack: Ack) -> bool:
        with self._cond:
            inc = self._incidents.get(ack.fingerprint)
            return inc is not None and ack in inc.seen

    def __len__(self) -> int:
        with self._cond:
            return sum(1 for inc in self._incidents.values() if inc.messages)

    @staticmethod
    def _summary_fields(fingerprint: str, inc: _Incident) -> dict[str, Any]:
        cur = inc.messages[-1][1]
        acks = [a for _, a in inc.acks if a.identifier == cur.identifier]
        last = max(acks, key=lambda a: a.at) if acks else None
        return {
            "fingerprint": fingerprint,
            "identifier": cur.identifier,
            "revision": cur.revision,
            "msg_type": cur.msg_type,
            "status": cur.status,
            "active": cur.msg_type is not MsgType.CANCEL,
            "level": cur.level,
            "hazard": cur.hazard,
            "event": cur.event,
            "area": cur.area,
            "headline": cur.headline,
            "sent": cur.sent,
            "acknowledged": last is not None,
            "acknowledged_by": last.by if last else None,
            "acknowledged_at": last.at if last else None,
        }

    def summaries(
        self, state: Literal["active", "all"] = "active", hazard: Family | None = None, area: str | None = None
    ) -> list[AlertSummary]:
        """Fingerprints with at least one message, filtered; active first, then the most severe, then the newest."""
        with self._cond:
            out = [AlertSummary(**self._summary_fields(fp, inc)) for fp, inc in self._incidents.items() if inc.messages]
        out = [
            s
            for s in out
            if (state == "all" or s.active)
            and (hazard is None or s.hazard is hazard)
            and (area is None or s.area.code.startswith(area))
        ]
        out.sort(key=lambda s: (not s.active, -s.level.rank, -s.sent.timestamp()))
        return out

    def detail(self, fingerprint: str) -> AlertDetail | None:
        with self._cond:
            inc = self._incidents.get(fingerprint)
            if inc is None or not inc.messages:
                return None
            fields = self._summary_fields(fingerprint, inc)
            history = [m for _, m in inc.messages]
            deliveries = [d for _, d in inc.deliveries]
            acks = [a for _, a in inc.acks]
        summary: dict[str, dict[str, int]] = {}
        for d in deliveries:
            per = summary.setdefault(d.channel, {})
            per[d.outcome] = per.get(d.outcome, 0) + 1
        return AlertDetail(
            **fields,
            current=history[-1],
            history=history,
            deliveries=deliveries,
            delivery_summary=summary,
            acks=acks,
        )

    def audit(
        self, fingerprint: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> list[AuditEvent]:
        """Every message, delivery record and ack, by time (then arrival order)."""
        rows: list[tuple[datetime, int, AuditEvent]] = []
        with self._cond:
            items = [(fp, inc) for fp, inc in self._incidents.items() if fingerprint is None or fp == fingerprint]
            for fp, inc in items:
                for seq, m in inc.messages:
                    rows.append((m.sent, seq, _event("message", fp, m.identifier, m.sent, _say_message(m), m)))
                for seq, d in inc.deliveries:
                    rows.append((d.ts, seq, _event("delivery", fp, d.alert_id, d.ts, _say_delivery(d), d)))
                for seq, a in inc.acks:
                    rows.append((a.at, seq, _event("ack", fp, a.identifier, a.at, _say_ack(a), a)))
        rows = [r for r in rows if (since is None or r[0] >= since) and (until is None or r[0] <= until)]
        rows.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in rows]


def _event(kind: Any, fp: str, identifier: str, ts: datetime, summary: str, record: BaseModel) -> AuditEvent:
    return AuditEvent(
        ts=ts, kind=kind, fingerprint=fp, identifier=identifier, summary=summary, record=record.model_dump(mode="json")
    )


def _say_message(m: Alert) -> str:
    tag = "" if m.status is AlertStatus.ACTUAL else f"[{m.status.value}] "
    return f"{tag}{m.msg_type.value} rev {m.revision} {m.hazard.value} {m.level.value}: {m.headline}"


def _say_delivery(d: DeliveryRecord) -> str:
    detail = f" ({d.detail})" if d.detail else ""
    return f"{d.channel} to {d.recipient}: {d.outcome} after {d.attempts} attempt(s){detail}"


def _say_ack(a: Ack) -> str:
    return f"acknowledged by {a.by}" + (f": {a.note}" if a.note else "")
