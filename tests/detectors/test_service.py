"""The stages skip Kafka redeliveries whose effect is already in the state (restart after a crash)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from tocsin.alerts.engine import AlertEngine
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.service import DetectorMetrics, DetectorStage
from tocsin.schemas.telemetry import GasReading
from tocsin.schemas.wire import encode

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


def gas_seq(seq: int, k: int, value: float) -> bytes:
    return encode(
        GasReading(
            device_id="G2", site="p", ts=T0 + timedelta(seconds=5 * k), seq=seq, gas="H2S", value=value, unit="mg/m3"
        )
    )


def test_a_reading_a_gateway_produced_twice_counts_once() -> None:
    """At-least-once gateways: a reading produced again (a new Kafka record, a new offset) is skipped
    by its (seq, device time); a device whose counter restarted (same seq, later time) is not."""
    reg = CollectorRegistry()
    det = DetectorStage(DetectorEngine(), DetectorMetrics(reg))
    table: dict = {}
    offsets = iter(range(100))
    # H2S level 1 (10 mg/m3) opens after 2 consecutive readings above it. One reading of 12 produced
    # twice (offsets 1 and 2) would be two such readings: a false open on the duplicate.
    out = []
    for seq, k, v in [(1, 0, 1.0), (2, 1, 12.0), (2, 1, 12.0), (3, 2, 3.0)]:
        out += det.handle(gas_seq(seq, k, v), table, (0, next(offsets)))
    assert out == []
    assert reg.get_sample_value("tocsin_detector_duplicates_total") == 1
    # two real readings above it do open
    out = [d for seq, k in [(4, 3), (5, 4)] for d in det.handle(gas_seq(seq, k, 12.0), table, (0, next(offsets)))]
    assert [(d.state.value, d.value) for d in out] == [("open", 12.0)]
    # the device restarted its counter: seq 1 again, later, is a new reading (it clears after 2 below)
    assert reg.get_sample_value("tocsin_detector_readings_total", {"family": "hazmat"}) == 5
    det.handle(gas_seq(1, 20, 1.0), table, (0, next(offsets)))
    assert reg.get_sample_value("tocsin_detector_readings_total", {"family": "hazmat"}) == 6
