"""The InfluxDB sink commits Kafka offsets only after a successful write, so an outage loses nothing."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from tocsin.ingest.influx import InfluxKafkaSink, alert_point, packet_pga, to_point
from tocsin.ingest.metrics import GatewayMetrics
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import GasReading, RainIncrement, SeismicPacket

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


@dataclass
class Rec:
    value: bytes
    topic: str = "telemetry.hydro"


class FakeConsumer:
    """Just enough of KafkaConsumer: poll returns queued batches; commit records the position."""

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = [[Rec(v) for v in b] for b in batches]
        self.committed = 0
        self.delivered = 0
        self.paused = 0
        self.closed = False

    def poll(self, timeout_ms: int = 0) -> dict[str, list[Rec]]:
        if self.paused or not self.batches:
            return {}
        batch = self.batches.pop(0)
        self.delivered += len(batch)
        return {"tp": batch}

    def commit(self) -> None:
        self.committed = self.delivered

    def assignment(self) -> set[str]:
        return {"tp"}

    def pause(self, *_tps: str) -> None:
        self.paused += 1

    def resume(self, *_tps: str) -> None:
        self.paused -= 1

    def close(self) -> None:
        self.closed = True


class FlakyWriter:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.points: list[str] = []

    def write(self, points: list) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("influxdb down")
        self.points += [p.to_line_protocol() for p in points]


def rain(k: int) -> bytes:
    r = RainIncrement(device_id="RG1", site="s1", ts=T0 + timedelta(minutes=k), seq=k, rain_mm=1.5, interval_s=60)
    return r.model_dump_json().encode()


def sink(consumer: FakeConsumer, writer: FlakyWriter) -> tuple[InfluxKafkaSink, CollectorRegistry, list[float]]:
    reg = CollectorRegistry()
    sleeps: list[float] = []
    return InfluxKafkaSink(consumer, writer, GatewayMetrics(reg), sleep=sleeps.append), reg, sleeps


def test_outage_retries_the_same_batch_and_commits_after_success() -> None:
    consumer = FakeConsumer([[rain(1), rain(2)], [rain(3)]])
    writer = FlakyWriter(failures=3)
    s, reg, sleeps = sink(consumer, writer)
    stop = threading.Event()
    assert s.step(stop) == 2
    assert sleeps == [0.5, 1.0, 2.0]  # capped exponential backoff, consumer paused meanwhile
    assert consumer.committed == 2 and consumer.paused == 0
    assert s.step(stop) == 1
    assert len(writer.points) == 3 and consumer.committed == 3
    assert reg.get_sample_value("tocsin_gateway_influx_points_total", {"outcome": "ok"}) == 3
    assert reg.get_sample_value("tocsin_gateway_influx_points_total", {"outcome": "retried"}) == 6


def test_stop_during_outage_leaves_the_batch_uncommitted() -> None:
    consumer = FakeConsumer([[rain(1)]])
    writer = FlakyWriter(failures=100)
    s, _, _ = sink(consumer, writer)
    stop = threading.Event()
    stop.set()
    assert s.step(stop) == 0
    assert consumer.committed == 0  # replayed by the next run: nothing lost


def test_undecodable_records_are_counted_not_fatal() -> None:
    consumer = FakeConsumer([[b"not json", rain(1)]])
    writer = FlakyWriter(failures=0)
    s, reg, _ = sink(consumer, writer)
    assert s.step(threading.Event()) == 1
    assert reg.get_sample_value("tocsin_gateway_influx_points_total", {"outcome": "undecodable"}) == 1


def test_points_carry_family_tags_and_values() -> None:
    reg = Registry(
        devices=[Device(device_id="RG1", family=Family.HYDRO, site="s1", lat=30, lon=120, area=Area(code="330110"))]
    )
    line = to_point(RainIncrement.model_validate_json(rain(4)), reg).to_line_protocol()
    assert line.startswith("hydro,area=330110,device=RG1,site=s1,type=hydro.rain ")
    assert "rain_mm=1.5" in line and "seq=4i" in line
    assert line.endswith(str(int((T0 + timedelta(minutes=4)).timestamp() * 1000)))
    gas = GasReading(device_id="G1", site="p", ts=T0, gas="H2S", value=12.5, unit="mg/m3")
    assert "gas=H2S" in to_point(gas).to_line_protocol() and "value=12.5" in to_point(gas).to_line_protocol()
    seis = SeismicPacket(device_id="S1", site="n", ts=T0, sample_rate_hz=100, samples=[3e-5, -4e-5, 0.0, 0.0])
    fields = to_point(seis).to_line_protocol().split(" ")[1]
    assert "peak=4e-05" in fields and "n=4i" in fields


def _alert(msg_type: str, circle: tuple[float, float, float] | None = None, devices: list[str] | None = None) -> Alert:
    return Alert(
        identifier=f"id-{msg_type}",
        fingerprint="hydro:330110:rainstorm",
        revision=0 if msg_type == "Alert" else 1,
        msg_type=MsgType(msg_type),
        hazard=Family.HYDRO,
        event="暴雨",
        level=WarningLevel("yellow"),
        sent=T0,
        onset=T0,
        area=AlertArea(code="330110", desc="青山镇", circle=circle),
        headline="暴雨黄色预警",
        description="d",
        devices=devices or [],
        value=52.5,
    )


def test_points_carry_the_registry_position_for_the_geomap() -> None:
    reg = Registry(
        devices=[
            Device(device_id="RG1", family=Family.HYDRO, site="s1", lat=30.25, lon=120.5, area=Area(code="330110"))
        ]
    )
    fields = to_point(RainIncrement.model_validate_json(rain(4)), reg).to_line_protocol().split(" ")[1]
    assert set(fields.split(",")) == {"interval_s=60", "lat=30.25", "lon=120.5", "rain_mm=1.5", "seq=4i"}
    # unknown device: no position (and no area tag)
    assert "lat=" not in to_point(RainIncrement.model_validate_json(rain(4))).to_line_protocol()


def test_seismic_pga_golden_values() -> None:
    # velocity: largest |first difference| x rate = |(-4e-5) - 3e-5| x 100 = 7e-3 m/s2
    vel = SeismicPacket(device_id="S1", site="n", ts=T0, sample_rate_hz=100, samples=[3e-5, -4e-5, 0.0, 0.0])
    assert packet_pga(vel) == pytest.approx(7e-3)
    acc = SeismicPacket(device_id="S1", site="n", ts=T0, sample_rate_hz=50, unit="m/s2", samples=[0.1, -0.3, 0.2])
    assert packet_pga(acc) == pytest.approx(0.3)
    counts = SeismicPacket(device_id="S1", site="n", ts=T0, sample_rate_hz=50, unit="counts", samples=[1.0, 9.0])
    assert packet_pga(counts) is None and "pga=" not in to_point(counts).to_line_protocol()
    one = SeismicPacket(device_id="S1", site="n", ts=T0, sample_rate_hz=100, samples=[5e-5])
    assert packet_pga(one) == 0.0
    assert "pga=0.007" in to_point(vel).to_line_protocol()


def test_alert_points_locate_by_circle_else_by_registry_devices_else_by_boundary() -> None:
    reg = Registry(
        devices=[
            Device(device_id="RG1", family=Family.HYDRO, site="s1", lat=30.0, lon=120.0, area=Area(code="330110")),
            Device(device_id="RG2", family=Family.HYDRO, site="s1", lat=30.5, lon=121.0, area=Area(code="330110")),
        ]
    )
    line = alert_point(_alert("Alert", devices=["RG1", "RG2", "gone"]), reg).to_line_protocol()
    tags, fields, ts = line.split(" ", 1)[0], line.split(" ", 1)[1].rsplit(" ", 1)[0], line.rsplit(" ", 1)[1]
    assert tags == (
        "alerts,area=330110,fingerprint=hydro:330110:rainstorm,hazard=hydro,level=yellow,msg_type=Alert,status=Actual"
    )
    assert "active=1i" in fields and "lat=30.25" in fields and "lon=120.5" in fields and "value=52.5" in fields
    assert ts == str(int(T0.timestamp() * 1000))
    circled = alert_point(_alert("Update", circle=(30.1, 120.2, 5.0)), reg).to_line_protocol()
    assert "lat=30.1" in circled and "lon=120.2" in circled and "revision=1i" in circled
    cancel = alert_point(_alert("Cancel")).to_line_protocol()
    assert "active=0i" in cancel and "lat=" not in cancel
    # an area given by boundaries, devices unknown: the mean vertex of the first boundary
    square = ((30.0, 120.0), (30.0, 120.2), (30.4, 120.2), (30.4, 120.0), (30.0, 120.0))
    bounded = _alert("Alert").model_copy(update={"area": AlertArea(code="330110", desc="青山镇", polygons=[square])})
    line = alert_point(bounded).to_line_protocol()
    assert "lat=30.2" in line and "lon=120.1" in line


def test_sink_writes_alerts_from_the_alerts_topic() -> None:
    consumer = FakeConsumer([])
    consumer.batches = [[Rec(rain(1)), Rec(_alert("Alert").model_dump_json().encode(), "alerts")]]
    writer = FlakyWriter(failures=0)
    s, reg, _ = sink(consumer, writer)
    assert s.step(threading.Event()) == 2
    assert writer.points[0].startswith("hydro,") and writer.points[1].startswith("alerts,")
    assert reg.get_sample_value("tocsin_gateway_influx_points_total", {"outcome": "ok"}) == 2
