"""The detector stage as both transports use it: raw telemetry record in, detections out.

``store`` is any mapping from device id to that device's detector state: a Faust table in the
worker, a dict in embedded mode. A record that fails to decode is counted and skipped (the gateway
already validated it; this guards against a foreign producer), never raised.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from detectors.engine import DetectorEngine
from schemas.detection import Detection
from schemas.telemetry import TELEMETRY_ADAPTER, DeadmanTick

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
        self.detections = Counter(
            "tocsin_detections_total", "detection transitions", ["family", "kind", "state"], registry=registry
        )


class DetectorStage:
    def __init__(self, engine: DetectorEngine, metrics: DetectorMetrics) -> None:
        self.engine, self.metrics = engine, metrics

    def handle(
        self,
        value: bytes,
        store: MutableMapping[str, Any],
        position: tuple[int, int] | None = None,
        received_s: float | None = None,
    ) -> list[Detection]:
        """``position``: the record's Kafka (partition, offset). After a crash, Kafka may redeliver
        records whose effect is already in the (changelogged) state; the state remembers the last
        position it includes, and such replays are skipped, so a restart neither re-opens nor
        re-clears. A device's records stay in one partition (keyed by device id)."""
        if DeadmanTick.is_tick(value):
            return self._tick(value, store, position)
        try:
            reading = TELEMETRY_ADAPTER.validate_json(value)
        except ValidationError as exc:
            self.metrics.undecodable.inc()
            log.error("undecodable telemetry record skipped: %s", exc.errors(include_url=False)[:1])
            return []
        previous = store.get(reading.device_id)
        if position is not None and previous is not None and _replayed(previous.get("position"), position):
            self.metrics.replayed.inc()
            return []
        self.metrics.readings.labels(reading.family.value).inc()
        state, detections = self.engine.process(reading, previous, received_s)
        if position is not None:
            state["position"] = list(position)
        store[reading.device_id] = state
        for d in detections:
            self.metrics.detections.labels(d.family.value, d.kind, d.state.value).inc()
        return detections

    def _tick(self, value: bytes, store: MutableMapping[str, Any], position: tuple[int, int] | None) -> list[Detection]:
        tick = DeadmanTick.model_validate_json(value)
        device = self.engine.registry.get(tick.device_id) if self.engine.registry else None
        if device is None:
            return []  # removed from the registry since the tick was sent
        previous = store.get(tick.device_id)
        if position is not None and previous is not None and _replayed(previous.get("position"), position):
            return []
        state, detections = self.engine.tick(device, tick.ts, previous)
        if position is not None:
            state["position"] = list(position)
        store[tick.device_id] = state
        for d in detections:
            self.metrics.detections.labels(d.family.value, d.kind, d.state.value).inc()
        return detections


def _replayed(stored: list[int] | None, position: tuple[int, int]) -> bool:
    """True when (partition, offset) is at or before what the state already includes."""
    return stored is not None and stored[0] == position[0] and stored[1] >= position[1]
