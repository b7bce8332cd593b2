"""The stages skip Kafka redeliveries whose effect is already in the state (restart after a crash)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from alerts.engine import AlertEngine
from alerts.service import AlertMetrics, AlertStage
from detectors.engine import DetectorEngine
from detectors.service import DetectorMetrics, DetectorStage
from schemas.telemetry import GasReading
from schemas.wire import encode

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def gas(k: int, value: float) -> bytes:
    return encode(
        GasReading(device_id="G1", site="p", ts=T0 + timedelta(seconds=5 * k), gas="H2S", value=value, unit="mg/m3")
    )


def test_replayed_offsets_neither_reopen_nor_reclear() -> None:
    reg = CollectorRegistry()
    det = DetectorStage(DetectorEngine(), DetectorMetrics(reg))
    alerts = AlertStage(AlertEngine(), AlertMetrics(reg))
    table: dict = {}
    lifecycle: dict = {}
    values = [1.0, 12.0, 13.0, 2.0]
    issued = []
    for offset, v in enumerate(values):
        for d in det.handle(gas(offset, v), table, (0, offset)):
            issued += alerts.handle(encode(d), lifecycle, (0, offset))
    assert [a.msg_type.value for a in issued] == ["Alert", "Cancel"]
    # A crash before the offset commit: Kafka redelivers offsets 0..3 to a worker whose tables
    # already hold their effect. Nothing is emitted again.
    replayed = [d for offset, v in enumerate(values) for d in det.handle(gas(offset, v), table, (0, offset))]
    assert replayed == []
    assert reg.get_sample_value("tocsin_detector_replayed_total") == 4
    # The same offset in another partition (partition count changed) is new data, not a replay.
    assert det.handle(gas(5, 1.0), table, (1, 0)) == []
    # Without offsets (embedded mode) every record is processed.
    assert det.handle(gas(9, 1.0), table) == []
    assert reg.get_sample_value("tocsin_detector_readings_total", {"family": "hazmat"}) == 6
