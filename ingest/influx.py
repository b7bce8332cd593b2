"""InfluxDB time-series sink (v2 API through influxdb-client; works against InfluxDB 1.8 and 2.x).

One measurement per family; tags device, site, area (when the registry knows the device) and the
reading's type; the reading's numeric values as fields. Seismic packets are stored as one point
per packet (peak and RMS), not one point per sample.
"""

from __future__ import annotations

import logging
import math

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import WriteOptions

from ingest.metrics import GatewayMetrics
from schemas.registry import Registry
from schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, Telemetry, WaterLevel

log = logging.getLogger(__name__)


def to_point(reading: Telemetry, registry: Registry | None = None) -> Point:
    p = Point(reading.family.value).tag("device", reading.device_id).tag("site", reading.site)
    p = p.tag("type", reading.type).time(reading.ts, WritePrecision.MS)
    dev = registry.get(reading.device_id) if registry else None
    if dev is not None:
        p = p.tag("area", dev.area.code)
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
    if reading.seq is not None:
        p = p.field("seq", reading.seq)
    return p


class InfluxSink:
    """Batched, retried writes; outcomes counted in the gateway metrics."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        metrics: GatewayMetrics,
        registry: Registry | None = None,
    ) -> None:
        self._bucket, self._org, self._metrics, self._registry = bucket, org, metrics, registry
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=10_000)
        self._write = self._client.write_api(
            write_options=WriteOptions(
                batch_size=2_000,
                flush_interval=1_000,
                retry_interval=1_000,
                max_retries=5,
                max_retry_delay=30_000,
            ),
            success_callback=self._ok,
            error_callback=self._failed,
            retry_callback=self._retry,
        )

    def _ok(self, _conf: object, data: str) -> None:
        self._metrics.influx_writes.labels("ok").inc(data.count("\n") + 1)

    def _failed(self, _conf: object, data: str, exc: Exception) -> None:
        self._metrics.influx_writes.labels("failed").inc(data.count("\n") + 1)
        log.error("influxdb write failed after retries: %s", exc)

    def _retry(self, _conf: object, _data: str, exc: Exception) -> None:
        self._metrics.influx_writes.labels("retried").inc()
        log.warning("influxdb write retrying: %s", exc)

    def write(self, reading: Telemetry) -> None:
        self._write.write(bucket=self._bucket, org=self._org, record=to_point(reading, self._registry))

    def close(self) -> None:
        self._write.close()  # flushes the pending batch
        self._client.close()
