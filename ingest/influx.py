"""InfluxDB time-series sink (v2 API through influxdb-client; works against InfluxDB 1.8 and 2.x).

One measurement per family; tags device, site, area (when the registry knows the device) and the
reading's type; the reading's numeric values as fields, plus the device's ``lat``/``lon`` from the
registry (the Grafana Geomap). Seismic packets are stored as one point per packet (peak, RMS and
an unfiltered PGA), not one point per sample. Alert messages from Kafka ``alerts`` go to measurement
``alerts``. The sink reads from Kafka, not from the gateway, so the time series never slows or
endangers the alerting path.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from pydantic import ValidationError

from tocsin.ingest.metrics import GatewayMetrics
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.batch import expand
from tocsin.schemas.records import PoisonRecord
from tocsin.schemas.registry import RegistryLike
from tocsin.schemas.telemetry import (
    TELEMETRY_ADAPTER,
    DeadmanTick,
    FireDetection,
    GasReading,
    RainIncrement,
    SeismicPacket,
    Telemetry,
    WaterLevel,
)
from tocsin.schemas.topics import ALERTS

log = logging.getLogger(__name__)


def to_point(reading: Telemetry, registry: RegistryLike | None = None) -> Point:
    p = Point(reading.family.value).tag("device", reading.device_id).tag("site", reading.site)
    p = p.tag("type", reading.type).time(reading.ts, WritePrecision.MS)
    dev = registry.get(reading.device_id) if registry else None
    if dev is not None:
        p = p.tag("area", dev.area.code).field("lat", float(dev.lat)).field("lon", float(dev.lon))
    if isinstance(reading, RainIncrement):
        p = p.field("rain_mm", reading.rain_mm).field("interval_s", reading.interval_s)
    elif isinstance(reading, WaterLevel):
        p = p.field("level_m", reading.level_m)
    elif isinstance(reading, GasReading):
        p = p.tag("gas", reading.gas).tag("unit", reading.unit).field("value", reading.value)
    elif isinstance(reading, FireDetection):
        p = p.tag("kind", reading.kind).field("confidence", reading.confidence)
        p = p.field("bearing_deg", reading.bearing_deg)
    elif isinstance(reading, SeismicPacket):
        peak = max(abs(s) for s in reading.samples)
        rms = math.sqrt(sum(s * s for s in reading.samples) / len(reading.samples))
        p = p.tag("channel", reading.channel).tag("unit", reading.unit)
        p = p.field("peak", peak).field("rms", rms).field("n", len(reading.samples))
        pga = packet_pga(reading)
        if pga is not None:
            p = p.field("pga", pga)
    if reading.seq is not None:
        p = p.field("seq", reading.seq)
    return p


def packet_pga(packet: SeismicPacket) -> float | None:
    """Peak ground acceleration of one packet in m/s2, unfiltered: the packet's peak for acceleration,
    the largest first difference times the sample rate for velocity, None for raw counts (the gain is
    in the registry, not in the packet). The detectors' band-passed PGA is the reference; this one is
    for the live dashboard."""
    if packet.unit == "m/s2":
        return max(abs(s) for s in packet.samples)
    if packet.unit != "m/s":
        return None
    s = packet.samples
    return max((abs(b - a) for a, b in zip(s, s[1:], strict=False)), default=0.0) * packet.sample_rate_hz


def alert_point(alert: Alert, registry: RegistryLike | None = None) -> Point:
    """One point per alert message in measurement ``alerts`` (the Geomap's active alerts): tags hazard,
    level, msg_type, status, area, fingerprint; ``active`` 1 for Alert/Update and 0 for Cancel; the
    location from the alert's circle, else the mean position of its devices the registry knows, else
    the mean vertex of its first boundary polygon."""
    p = Point("alerts").tag("hazard", alert.hazard.value).tag("level", alert.level.value)
    p = p.tag("msg_type", alert.msg_type.value).tag("status", alert.status.value)
    p = p.tag("area", alert.area.code).tag("fingerprint", alert.fingerprint).time(alert.sent, WritePrecision.MS)
    p = p.field("active", 0 if alert.msg_type is MsgType.CANCEL else 1).field("revision", alert.revision)
    p = p.field("headline", alert.headline).field("identifier", alert.identifier)
    if alert.value is not None and math.isfinite(alert.value):
        p = p.field("value", float(alert.value))
    located: tuple[float, float] | None = None
    if alert.area.circle is not None:
        located = (alert.area.circle[0], alert.area.circle[1])
    elif registry is not None:
        known = [d for d in (registry.get(dev) for dev in alert.devices) if d is not None]
        if known:
            located = (sum(d.lat for d in known) / len(known), sum(d.lon for d in known) / len(known))
    if located is None and alert.area.polygons:  # the mean vertex of its first boundary
        ring = alert.area.polygons[0][:-1]
        located = (sum(v[0] for v in ring) / len(ring), sum(v[1] for v in ring) / len(ring))
    if located is not None:
        p = p.field("lat", float(located[0])).field("lon", float(located[1]))
    return p


class InfluxWriter(Protocol):
    def write(self, points: list[Point]) -> None: ...


class InfluxHttpWriter:
    """Synchronous batch writes through influxdb-client's v2 API; raises on failure."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_ms: int = 10_000) -> None:
        self._bucket, self._org = bucket, org
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, points: list[Point]) -> None:
        self._api.write(bucket=self._bucket, org=self._org, record=points)

    def close(self) -> None:
        self._client.close()


class InfluxKafkaSink:
    """Telemetry from Kafka into InfluxDB, resuming from Kafka offsets instead of spooling to disk.

    Why this design: Kafka already holds every accepted reading durably, so the sink is just another
    consumer group (``tocsin-influx``) that commits its offsets only after InfluxDB accepted the batch.
    An InfluxDB outage therefore never touches the MQTT -> Kafka path and loses nothing: the sink
    pauses its partitions, retries the same batch with capped exponential backoff, and catches up
    when InfluxDB returns (as far back as the topics' retention). A crash between write and commit
    replays a batch; InfluxDB overwrites a point with the same measurement, tags and timestamp, so
    the replay is harmless.
    """

    def __init__(
        self,
        consumer: Any,
        writer: InfluxWriter,
        metrics: GatewayMetrics,
        registry: RegistryLike | None = None,
        *,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.consumer, self.writer, self.metrics, self.registry = consumer, writer, metrics, registry
        self.max_backoff_s, self.sleep = max_backoff_s, sleep
        self.written = 0

    def points(self, values: list[bytes], topics: list[str] | None = None) -> list[Point]:
        """Points of a batch; ``topics[i]`` is the Kafka topic of ``values[i]`` (telemetry when absent).
        A telemetry batch record (schemas/batch.py) gives a point per reading; a reading that does not
        decode is counted (``undecodable``) and its neighbours are written."""
        out = []
        for i, v in enumerate(values):
            if topics is not None and topics[i] == ALERTS:
                try:
                    out.append(alert_point(Alert.model_validate_json(v), self.registry))
                except ValidationError:
                    self.metrics.influx_writes.labels("undecodable").inc()
                continue
            try:
                readings = expand(v)
            except PoisonRecord:
                self.metrics.influx_writes.labels("undecodable").inc()
                continue
            for r in readings:
                if not r:
                    self.metrics.influx_writes.labels("undecodable").inc()
                    continue
                if DeadmanTick.is_tick(r):
                    continue
                try:
                    out.append(to_point(TELEMETRY_ADAPTER.validate_json(r), self.registry))
                except ValidationError:
                    self.metrics.influx_writes.labels("undecodable").inc()
        return out

    def step(self, stop: threading.Event, poll_timeout_ms: int = 500) -> int:
        """One poll-write-commit cycle; returns the number of points written."""
        batch = self.consumer.poll(timeout_ms=poll_timeout_ms)
        records = [rec for recs in batch.values() for rec in recs]
        if not records:
            return 0
        points = self.points([r.value for r in records], [str(getattr(r, "topic", "")) for r in records])
        backoff = 0.5
        while points:
            try:
                self.writer.write(points)
                break
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, retry, lose nothing
                self.metrics.influx_writes.labels("retried").inc(len(points))
                log.warning("influxdb write failed (%s); retrying in %.1f s, Kafka keeps the data", exc, backoff)
                paused = self.consumer.assignment()
                self.consumer.pause(*paused)
                self.sleep(backoff)
                self.consumer.poll(timeout_ms=0)  # keep the group membership alive while paused
                self.consumer.resume(*paused)
                backoff = min(backoff * 2, self.max_backoff_s)
                if stop.is_set():
                    return 0  # uncommitted: the next run replays this batch
        self.consumer.commit()
        self.metrics.influx_writes.labels("ok").inc(len(points))
        self.written += len(points)
        return len(points)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step(stop)
            except Exception:  # noqa: BLE001 - Kafka hiccups: the consumer reconnects; never die
                log.exception("influx sink cycle failed")
                self.sleep(1.0)
        self.consumer.close()
