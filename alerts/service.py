"""The alert stage as both transports use it: raw detection record in, alert messages out.

``store`` maps a fingerprint to its lifecycle state (a Faust table in the worker, a dict in
embedded mode). Detections are keyed by hazard and area, so every fingerprint's detections meet in
one partition and its state is owned by one worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from tocsin.alerts.engine import AlertEngine
from tocsin.schemas.alert import Alert
from tocsin.schemas.detection import Detection, LifecycleTick
from tocsin.schemas.records import decode_detection
from tocsin.schemas.stage import CapCounter, decode_or_skip, replayed

log = logging.getLogger(__name__)


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.alerts = Counter(
            "tocsin_alerts_total", "alert messages issued", ["hazard", "level", "msg_type"], registry=registry
        )
        self.undecodable = Counter(
            "tocsin_alert_undecodable_total", "detections that failed to decode", registry=registry
        )
        self.replayed = Counter(
            "tocsin_alert_replayed_total", "redelivered detections already in the state, skipped", registry=registry
        )
        self.superseded = Counter(
            "tocsin_alert_superseded_total",
            "detections older than one their source already applied (the two detection topics reorder), skipped",
            registry=registry,
        )
        self.unchanged = Counter(
            "tocsin_alert_unchanged_total",
            "detections that changed no lifecycle state (no table write, no message)",
            registry=registry,
        )
        self.capped = Counter(
            "tocsin_alert_state_capped_total",
            "incident sources or remembered source stamps refused or evicted by a state cap",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "tocsin_worker_alert_latency_seconds",
            "detection emitted (its Kafka record timestamp) to the alert message it caused",
            ["hazard"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )


class AlertStage:
    def __init__(self, engine: AlertEngine, metrics: AlertMetrics, *, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.metrics, self.clock = engine, metrics, clock
        self._capped = CapCounter(lambda reason, n: metrics.capped.labels(reason).inc(n))

    def handle(
        self,
        value: bytes,
        store: MutableMapping[str, Any],
        position: tuple[int, int] | None = None,
        emitted_s: float | None = None,
        lane: str = "",
    ) -> list[Alert]:
        """``position``: the detection's Kafka (partition, offset) in its ``lane`` (its topic: "" for
        ``detections``, "urgent" for ``detections.urgent``); replays already in the state are skipped.
        Each lane has its own replay guard: offsets of two topics do not compare.
        ``emitted_s``: when the detection was emitted (its Kafka record timestamp, epoch seconds); the
        alert latency is measured from it (lifecycle ticks' alerts are timer-driven: not measured)."""
        record = decode_or_skip(decode_detection, value, self.metrics.undecodable.inc, log, "detection")
        if record is None:
            return []
        return self.apply(record, store, position, emitted_s, lane)

    def apply(
        self,
        record: Detection | LifecycleTick,
        store: MutableMapping[str, Any],
        position: tuple[int, int] | None = None,
        emitted_s: float | None = None,
        lane: str = "",
    ) -> list[Alert]:
        """``handle`` for a record already decoded (``tocsin.schemas.records.decode_detection``): the worker
        decodes inside its per-record guard, so an undecodable record becomes a dead letter there."""
        # the partition issues under its own identifier extension (alerts/cap_id.py ``issuer_code``)
        self.engine.issuer_lane = position[0] if position is not None else 0
        if isinstance(record, LifecycleTick):
            tick = record
            previous = store.get(tick.fingerprint)
            state, alerts = self.engine.tick(previous, tick.ts)
            if state is not None and (alerts or state != previous):  # a quiet tick changes nothing: no write
                store[tick.fingerprint] = state
            self._count(alerts)
            return alerts
        detection = record
        key = self.engine.fingerprint(detection)
        previous = store.get(key)
        guard = f"position.{lane}" if lane else "position"
        if previous is not None and replayed(previous.get(guard), position):
            self.metrics.replayed.inc()
            return []
        superseded, stale = self.engine.superseded, self.engine.stale
        # seismic: the area's offline stations (kept beside the incidents, in the same partition), which
        # the earthquake location must not count as stations the P wave has not reached yet
        health_key = self.engine.station_health_key(detection)
        health = store.get(health_key) if health_key else None
        state, alerts = self.engine.process(detection, previous, health)
        if self.engine.superseded != superseded:
            self.metrics.superseded.inc()
        elif health_key and self.engine.stale == stale:
            new_health = self.engine.station_health(detection, health)
            if new_health is not None:
                store[health_key] = new_health
        self._capped.update(self.engine.capped)
        if not alerts and previous is not None and _same_apart_from_position(state, previous):
            # A no-op: no warning level, too old (history), or superseded by a later detection of its
            # source (every detection that is applied records its source's stamp, so nothing else
            # leaves the state as it was). The state is not written, so it keeps an older ``position``
            # and a crash before a later write redelivers this detection. That replay is harmless: it
            # is the same no-op against any later state (levels do not appear, ages and stamps only
            # grow). Skipping the write saves a changelog record per such detection.
            self.metrics.unchanged.inc()
            return alerts
        if position is not None:
            state[guard] = list(position)
        store[key] = state
        self._count(alerts)
        if emitted_s is not None:
            now = self.clock()
            for a in alerts:
                self.metrics.latency.labels(a.hazard.value).observe(max(0.0, now - emitted_s))
        return alerts

    def _count(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.metrics.alerts.labels(a.hazard.value, a.level.value, a.msg_type.value).inc()
            log.info(
                "alert %s %s %s",
                a.msg_type.value,
                a.level.value,
                a.identifier,
                extra={
                    "correlation_id": a.correlation_id,
                    "alert_id": a.identifier,
                    "fingerprint": a.fingerprint,
                    "msg_type": a.msg_type.value,
                    "hazard": a.hazard.value,
                    "level": a.level.value,
                },
            )

    @staticmethod
    def tick_key(fingerprint: str) -> bytes:
        """The ``detections`` key whose partition holds this fingerprint (``<family>:<area>``)."""
        return fingerprint.rsplit(":", 1)[0].encode()


def _same_apart_from_position(state: dict[str, Any], previous: dict[str, Any]) -> bool:
    """True when ``state`` equals ``previous`` in every key but the lanes' replay guards (``position*``)."""
    keys = {k for k in state if not k.startswith("position")}
    if keys != {k for k in previous if not k.startswith("position")}:
        return False
    return all(state[k] == previous[k] for k in keys)
