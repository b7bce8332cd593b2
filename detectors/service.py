"""The detector stage as both transports use it: raw telemetry record in, detections out.

``store`` is any mapping from device id to that device's detector state: a Faust table in the
worker, a dict in embedded mode. ``handle`` counts and skips a record that fails to decode (the
gateway already validated it; this guards against a foreign producer). The worker decodes inside its
per-record guard instead and calls ``apply``, so such a record becomes a dead letter
(``worker.deadletter``) with its bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from tocsin.detectors.engine import DetectorEngine
from tocsin.schemas.detection import Detection
from tocsin.schemas.records import decode_telemetry
from tocsin.schemas.stage import CapCounter, LabelCache, decode_or_skip, replayed
from tocsin.schemas.telemetry import DeadmanTick, Telemetry

log = logging.getLogger(__name__)


class DetectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.readings = Counter(
            "tocsin_detector_readings_total", "telemetry records processed", ["family"], registry=registry
        )
        self.undecodable = Counter(
            "tocsin_detector_undecodable_total", "records that failed to decode", registry=registry
        )
        self.replayed = Counter(
            "tocsin_detector_replayed_total", "redelivered records already in the state, skipped", registry=registry
        )
        self.duplicates = Counter(
            "tocsin_detector_duplicates_total",
            "readings already applied (same device, seq and time: a gateway's at-least-once redelivery), skipped",
            registry=registry,
        )
        self.detections = Counter(
            "tocsin_detections_total", "detection transitions", ["family", "kind", "state"], registry=registry
        )
        self.capped = Counter(
            "tocsin_detector_state_capped_total",
            "readings refused or state entries evicted or merged by a state cap (rules limits)",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "tocsin_worker_detection_latency_seconds",
            "gateway receipt of a reading (its Kafka record timestamp) to the detection it caused",
            ["family"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=registry,
        )


class DetectorStage:
    def __init__(
        self, engine: DetectorEngine, metrics: DetectorMetrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine, self.metrics, self.clock = engine, metrics, clock
        self._capped = CapCounter(lambda reason, n: metrics.capped.labels(reason).inc(n))
        self._readings = LabelCache(metrics.readings)

    def handle(
        self,
        value: bytes,
        store: MutableMapping[str, Any],
        position: tuple[int, ...] | None = None,
        received_s: float | None = None,
        correlation_id: str | None = None,
    ) -> list[Detection]:
        """``position``: the record's Kafka (partition, offset), and for a reading of a batch record
        its index in the batch (schemas/batch.py). After a crash, Kafka may redeliver
        records whose effect is already in the (changelogged) state; the state remembers the last
        position it includes, and such replays are skipped, so a restart neither re-opens nor
        re-clears. A device's records stay in one partition (keyed by device id).

        ``received_s``: when the gateway received the reading (epoch seconds: the Kafka record
        timestamp); the detection latency is measured from it. ``correlation_id``: the reading's
        (the gateway's ``tocsin-correlation-id`` header), copied onto every detection it causes."""
        record = decode_or_skip(decode_telemetry, value, self.metrics.undecodable.inc, log, "telemetry")
        if record is None:
            return []
        return self.apply(record, store, position, received_s, correlation_id)

    def apply(
        self,
        record: Telemetry | DeadmanTick,
        store: MutableMapping[str, Any],
        position: tuple[int, ...] | None = None,
        received_s: float | None = None,
        correlation_id: str | Callable[[Telemetry], str] | None = None,
    ) -> list[Detection]:
        """``handle`` for a record already decoded (``tocsin.schemas.records.decode_telemetry``): the worker
        decodes inside its per-record guard, so an undecodable record becomes a dead letter there.
        May raise (a detector kernel refusing its input): the caller decides what to do with it.
        ``correlation_id`` may be a function of the reading, called only when it caused detections."""
        if isinstance(record, DeadmanTick):
            return self._tick(record, store, position)
        reading = record
        previous = store.get(reading.device_id)
        if previous is not None and replayed(previous.get("position"), position):
            self.metrics.replayed.inc()
            return []
        seen = reading_identity(reading)
        recent = previous.get("seen", []) if previous is not None else []
        if seen is not None and seen in recent:
            self.metrics.duplicates.inc()
            return []
        self._readings(reading.family.value).inc()
        state, detections = self.engine.process(reading, previous, received_s)
        self._capped.update(self.engine.capped)
        if position is not None:
            state["position"] = list(position)
        if seen is not None:
            state["seen"] = [*recent[-(SEEN_PER_DEVICE - 1) :], seen]
        elif recent:
            state["seen"] = recent
        store[reading.device_id] = state
        if correlation_id and detections:
            if callable(correlation_id):
                correlation_id = correlation_id(reading)
            detections = [
                d if d.correlation_id else d.model_copy(update={"correlation_id": correlation_id}) for d in detections
            ]
        now = self.clock()
        for d in detections:
            self.metrics.detections.labels(d.family.value, d.kind, d.state.value).inc()
            if received_s is not None:
                self.metrics.latency.labels(d.family.value).observe(max(0.0, now - received_s))
            log.info(
                "detection %s %s",
                d.kind,
                d.state.value,
                extra={
                    "correlation_id": d.correlation_id,
                    "device_id": d.device_id,
                    "detection_id": d.id,
                    "kind": d.kind,
                    "state": d.state.value,
                    "level": d.level.value if d.level else None,
                    "value": d.value,
                },
            )
        return detections

    def _tick(
        self, tick: DeadmanTick, store: MutableMapping[str, Any], position: tuple[int, ...] | None
    ) -> list[Detection]:
        device = self.engine.registry.get(tick.device_id) if self.engine.registry else None
        if device is None:
            return []  # removed from the registry since the tick was sent
        previous = store.get(tick.device_id)
        if previous is not None and replayed(previous.get("position"), position):
            return []
        state, detections = self.engine.tick(device, tick.ts, previous)
        if position is not None:
            state["position"] = list(position)
        if previous is not None and "seen" in previous:
            state["seen"] = previous["seen"]
        store[tick.device_id] = state
        for d in detections:
            self.metrics.detections.labels(d.family.value, d.kind, d.state.value).inc()
        return detections


# Readings remembered per device to skip a duplicate: the gateways are at-least-once, and a reading a
# killed gateway produced but had not acknowledged comes back through another (or its restarted self)
# as a new Kafka record -- the position check above cannot tell it from a new reading. A gas reading
# applied twice counts twice towards the consecutive readings a set-point needs (a false open); rain
# reports are idempotent by their end time in the rainfall kernel. Redeliveries are recent (a
# gateway's unacknowledged window), so a short memory is enough.
SEEN_PER_DEVICE = 32


def reading_identity(reading: Telemetry) -> list[int] | None:
    """(seq, device time in ms) of a reading with a sequence number: what a redelivery repeats
    and a device restarting its counter does not (its clock moved on); None without ``seq``."""
    if reading.seq is None:
        return None
    return [reading.seq, int(reading.ts.timestamp() * 1000)]
