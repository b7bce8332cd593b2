"""Health, readiness, correlation ids and latency histograms of the processes (without services).

The gateway's HTTP server (/metrics /healthz /readyz), the correlation id the gateway derives and
sends as a record header, the latency histograms of every stage with injected clocks, and the
operator API's /readyz and /metrics. Every exposition passes ``promtool check metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tocsin.alerts.adapters.base import DeliveryResult, Notification, Outcome
from tocsin.alerts.api import build_app
from tocsin.alerts.engine import AlertEngine
from tocsin.alerts.notify import Notifier, NotifyMetrics
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.alerts.view import AlertView
from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.service import DetectorMetrics, DetectorStage
from tocsin.ingest.gateway import CORRELATION_HEADER, RECEIVED_HEADER, GatewayCore, correlation_id, header
from tocsin.ingest.metrics import GatewayMetrics, HealthServer
from tocsin.ingest.sinks import Done
from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import GasReading
from tocsin.schemas.wire import encode

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def noop() -> None:
    return None


# --------------------------------------------------------------------------- correlation id
def test_correlation_id_is_derived_from_the_reading_identity() -> None:
    cid = correlation_id("RG01", T0, 17)
    assert cid == "c-" + hashlib.sha256(b"RG01|2026-11-29T08:00:00+00:00|17").hexdigest()[:16]
    # the same instant written with another offset is the same reading
    assert correlation_id("RG01", T0.astimezone(timezone(timedelta(hours=8))), 17) == cid
    assert correlation_id("RG01", T0, 18) != cid
    assert correlation_id("RG02", T0, 17) != cid
    assert correlation_id("RG01", T0, None) != correlation_id("RG01", T0, 0)


@given(st.text(min_size=1, max_size=64), st.integers(min_value=0, max_value=2**31), st.integers(0, 10**9))
def test_correlation_id_shape(device: str, seq: int, offset_s: int) -> None:
    cid = correlation_id(device, T0 + timedelta(seconds=offset_s), seq)
    assert len(cid) == 18 and cid.startswith("c-") and int(cid[2:], 16) >= 0


def test_header_lookup_accepts_pairs_and_mappings() -> None:
    assert header([("a", b"1"), (CORRELATION_HEADER, b"c-1")], CORRELATION_HEADER) == "c-1"
    assert header({CORRELATION_HEADER: b"c-2"}, CORRELATION_HEADER) == "c-2"
    assert header(None, CORRELATION_HEADER) is None and header([], CORRELATION_HEADER) is None
    assert header([("other", b"x")], CORRELATION_HEADER) is None


class HeaderSink:
    accepts_headers = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int | None]] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        self.sent.append((topic, key, value, headers, timestamp_ms))
        on_done(None)

    def flush(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None


class PlainSink(HeaderSink):
    accepts_headers = False

    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Done) -> None:  # type: ignore[override]
        self.sent.append((topic, key, value, None, None))
        on_done(None)


def _rain(seq: int | None, ts: datetime) -> bytes:
    body: dict[str, Any] = {"type": "hydro.rain", "device_id": "RG01", "site": "qs", "ts": ts.isoformat()}
    if seq is not None:
        body["seq"] = seq
    body |= {"rain_mm": 1.5, "interval_s": 300}
    return json.dumps(body).encode()


TOPIC = "tocsin/v1/hydro/qs/RG01/telemetry"


def test_gateway_sends_the_correlation_id_and_receive_time_as_headers() -> None:
    now = T0 + timedelta(seconds=2.5)
    reg = CollectorRegistry()
    sink = HeaderSink()
    core = GatewayCore(sink, GatewayMetrics(reg), clock=lambda: now)
    acks: list[int] = []
    core.handle(TOPIC, _rain(1, T0), lambda: acks.append(1))
    topic, key, value, headers, stamp = sink.sent[0]
    assert (topic, key, acks) == ("telemetry.hydro", b"RG01", [1])
    assert dict(headers or []) == {
        CORRELATION_HEADER: correlation_id("RG01", T0, 1).encode(),
        RECEIVED_HEADER: str(int(now.timestamp() * 1000)).encode(),
    }
    assert stamp == int(now.timestamp() * 1000)
    assert b"correlation" not in value  # the payload stays the strict reading
    # The broker redelivers the same message (gateway restarted before its ack): same id. (The
    # duplicate window of this gateway refuses it; a fresh gateway accepts it with the same id.)
    sink2 = HeaderSink()
    GatewayCore(sink2, GatewayMetrics(CollectorRegistry()), clock=lambda: now).handle(TOPIC, _rain(1, T0), noop)
    assert sink2.sent[0][3] == headers
    # Ingest latency: device ts -> accepted, by family.
    assert reg.get_sample_value("tocsin_gateway_ingest_latency_seconds_count", {"family": "hydro"}) == 1
    assert reg.get_sample_value("tocsin_gateway_ingest_latency_seconds_sum", {"family": "hydro"}) == 2.5
    assert reg.get_sample_value("tocsin_gateway_ingest_latency_seconds_bucket", {"family": "hydro", "le": "2.5"}) == 1
    assert reg.get_sample_value("tocsin_gateway_ingest_latency_seconds_bucket", {"family": "hydro", "le": "1.0"}) == 0


def test_ingest_latency_clamps_clocks_ahead_and_counts_backfill_apart() -> None:
    now = T0 + timedelta(hours=3)
    reg = CollectorRegistry()
    core = GatewayCore(HeaderSink(), GatewayMetrics(reg), clock=lambda: now)
    core.handle(TOPIC, _rain(1, now + timedelta(seconds=30)), noop)  # device clock 30 s ahead
    core.handle(TOPIC, _rain(2, now - timedelta(hours=2)), noop)  # replayed history
    core.handle(TOPIC, _rain(3, now - timedelta(seconds=59)), noop)
    assert reg.get_sample_value("tocsin_gateway_ingest_latency_seconds_count", {"family": "hydro"}) == 2
    assert reg.get_sample_value("tocsin_gateway_ingest_latency_seconds_sum", {"family": "hydro"}) == 59.0
    assert reg.get_sample_value("tocsin_gateway_backfill_readings_total", {"family": "hydro"}) == 1


def test_sinks_without_headers_still_get_every_record() -> None:
    sink = PlainSink()
    GatewayCore(sink, GatewayMetrics(CollectorRegistry()), clock=lambda: T0).handle(TOPIC, _rain(1, T0), noop)
    assert [s[0] for s in sink.sent] == ["telemetry.hydro"]


# --------------------------------------------------------------------------- stages: ids and latencies
def _gas(k: int, value: float) -> bytes:
    ts = T0 + timedelta(seconds=5 * k)
    return encode(GasReading(device_id="G1", site="p", ts=ts, gas="H2S", value=value, unit="mg/m3"))


REGISTRY = Registry(
    devices=[
        Device(
            device_id="G1",
            family=Family.HAZMAT,
            site="p",
            lat=30.0,
            lon=120.0,
            interval_s=5,
            area=Area(code="330110", district="测试区", town="青山镇", village="横溪村"),
        )
    ],
    sms_recipients={"330110": ["+8613800000001", "+8613800000002"]},
)


class FakeSms:
    name = "sms"

    def __init__(self) -> None:
        self.seen: list[Notification] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, n: Notification) -> DeliveryResult:
        self.seen.append(n)
        return DeliveryResult(Outcome.ACCEPTED, provider_ref="m1")


def _pipeline_once() -> tuple[CollectorRegistry, list[Detection], list[Alert], list[Any], FakeSms]:
    reg = CollectorRegistry()
    det = DetectorStage(DetectorEngine(None, REGISTRY), DetectorMetrics(reg), clock=lambda: 1000.75)
    stage = AlertStage(AlertEngine(registry=REGISTRY), AlertMetrics(reg), clock=lambda: 2000.5)
    table: dict[str, Any] = {}
    lifecycle: dict[str, Any] = {}
    detections: list[Detection] = []
    alerts: list[Alert] = []
    for k, v in enumerate([1.0, 12.0, 13.0]):  # two consecutive readings above 10 mg/m3 H2S open
        for d in det.handle(_gas(k, v), table, None, 1000.0, f"c-{k}"):
            detections.append(d)
            alerts += stage.handle(encode(d), lifecycle, None, 2000.0)
    sms = FakeSms()
    sent_at = alerts[0].sent if alerts else T0
    notifier = Notifier(REGISTRY, {"sms": sms}, NotifyMetrics(reg), clock=lambda: sent_at + timedelta(seconds=0.3))
    records = asyncio.run(notifier.deliver(alerts[0])) if alerts else []
    return reg, detections, alerts, records, sms


def test_correlation_id_flows_from_reading_to_sms_and_latencies_are_measured() -> None:
    reg, detections, alerts, records, sms = _pipeline_once()
    assert [(d.state.value, d.correlation_id) for d in detections] == [("open", "c-2")]
    assert [(a.msg_type.value, a.correlation_id) for a in alerts] == [("Alert", "c-2")]
    assert {r.correlation_id for r in records} == {"c-2"} and len(records) == 2
    assert {n.correlation_id for n in sms.seen} == {"c-2"}
    assert reg.get_sample_value("tocsin_worker_detection_latency_seconds_sum", {"family": "hazmat"}) == 0.75
    assert reg.get_sample_value("tocsin_worker_alert_latency_seconds_sum", {"hazard": "hazmat"}) == 0.5
    assert reg.get_sample_value("tocsin_worker_alert_latency_seconds_count", {"hazard": "hazmat"}) == 1
    # first accepted SMS of the alert: one observation per channel, not per recipient
    assert reg.get_sample_value("tocsin_worker_delivery_latency_seconds_count", {"channel": "sms"}) == 1
    assert reg.get_sample_value("tocsin_worker_delivery_latency_seconds_sum", {"channel": "sms"}) == pytest.approx(0.3)


def test_worker_metrics_pass_promtool(promtool: str) -> None:
    from tocsin.worker import RebalanceMetrics

    reg = _pipeline_once()[0]
    rebalance = RebalanceMetrics(reg)
    rebalance.stale.labels("detections").inc()
    rebalance.reseeks.labels("alerts").inc()
    _promtool_ok(promtool, generate_latest(reg))


def test_rebalance_counters_start_at_zero_for_every_topic_given() -> None:
    """The dashboard's re-seek panel and the re-seek rule read ``increase(...)``: a counter with no
    series until its first event shows "no data" instead of 0."""
    from tocsin.worker import RebalanceMetrics

    reg = CollectorRegistry()
    rebalance = RebalanceMetrics(reg, ["alerts", "detections"])
    for name in ("tocsin_worker_stale_records_total", "tocsin_worker_partition_reseeks_total"):
        assert reg.get_sample_value(name, {"topic": "alerts"}) == 0.0
        assert reg.get_sample_value(name, {"topic": "detections"}) == 0.0
        assert reg.get_sample_value(name, {"topic": "telemetry.hydro"}) is None
    rebalance.reseeks.labels("alerts").inc()
    assert reg.get_sample_value("tocsin_worker_partition_reseeks_total", {"topic": "alerts"}) == 1.0


def _promtool_ok(promtool: str, text: bytes) -> None:
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


# --------------------------------------------------------------------------- gateway HTTP server
def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


@pytest.fixture
def health() -> Iterator[tuple[HealthServer, dict[str, bool], CollectorRegistry]]:
    reg = CollectorRegistry()
    core = GatewayCore(HeaderSink(), GatewayMetrics(reg), clock=lambda: T0 + timedelta(seconds=1))
    core.handle(TOPIC, _rain(1, T0), noop)
    core.handle(TOPIC, b"{not json", noop)
    state = {"live": True, "mqtt": False, "kafka": True}
    server = HealthServer(
        reg,
        live=lambda: (state["live"], {}),
        ready=lambda: (state["mqtt"] and state["kafka"], {"mqtt_connected": state["mqtt"], "kafka": state["kafka"]}),
    ).start()
    yield server, state, reg
    server.stop()


def test_gateway_health_server(health: tuple[HealthServer, dict[str, bool], CollectorRegistry], promtool: str) -> None:
    server, state, _reg = health
    base = f"http://127.0.0.1:{server.port}"
    assert _get(f"{base}/healthz")[:2] == (200, b'{"status": "ok"}')
    status, body, ctype = _get(f"{base}/readyz")
    assert status == 503 and ctype == "application/json"
    assert json.loads(body) == {"status": "unavailable", "mqtt_connected": False, "kafka": True}
    state["mqtt"] = True
    assert _get(f"{base}/readyz")[0] == 200
    state["kafka"] = False
    assert _get(f"{base}/readyz")[0] == 503
    state["live"] = False
    assert _get(f"{base}/healthz")[0] == 503
    assert _get(f"{base}/nowhere")[0] == 404
    status, metrics, ctype = _get(f"{base}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert b'tocsin_gateway_dead_letters_total{reason="undecodable"} 1.0' in metrics
    assert b'tocsin_gateway_ingest_latency_seconds_count{family="hydro"} 1.0' in metrics
    _promtool_ok(promtool, metrics)


def test_a_failing_probe_is_unavailable_not_a_crash() -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("kafka client closed")

    server = HealthServer(CollectorRegistry(), ready=broken).start()
    try:
        status, body, _ = _get(f"http://127.0.0.1:{server.port}/readyz")
        assert status == 503 and json.loads(body) == {"status": "unavailable", "error": "RuntimeError"}
    finally:
        server.stop()


# --------------------------------------------------------------------------- operator API
def test_operator_api_readyz_and_metrics(promtool: str) -> None:
    view = AlertView()
    reg = CollectorRegistry()

    async def body() -> bytes:
        async with TestClient(TestServer(build_app(view, metrics_registry=reg))) as client:
            r = await client.get("/readyz")
            assert r.status == 503 and (await r.json())["status"] == "starting"
            view.mark_caught_up()
            r = await client.get("/readyz")
            assert r.status == 200 and (await r.json())["alerts_caught_up"] is True
            assert (await client.get("/healthz")).status == 200
            assert (await client.get("/alerts?hazard=volcano")).status == 401  # no credentials (alerts/auth.py)
            m = await client.get("/metrics")
            assert m.status == 200 and m.headers["Content-Type"].startswith("text/plain")
            return await m.read()

    text = asyncio.run(body())
    assert b'tocsin_api_requests_total{method="GET",route="/readyz",status="503"} 1.0' in text
    assert b'tocsin_api_requests_total{method="GET",route="/alerts",status="401"} 1.0' in text
    assert b'tocsin_api_auth_failures_total{status="401"} 1.0' in text
    assert b"tocsin_api_ready 1.0" in text and b"tocsin_api_fingerprints 0.0" in text
    assert b"tocsin_api_evicted_total 0.0" in text
    _promtool_ok(promtool, text)


def test_embedded_bus_carries_the_gateway_headers() -> None:
    from tocsin.bus import MemoryBus, MemorySink

    async def body() -> tuple[Any, ...]:
        bus = MemoryBus(asyncio.get_running_loop())
        q = bus.subscribe("telemetry.hydro")
        core = GatewayCore(MemorySink(bus), GatewayMetrics(CollectorRegistry()), clock=lambda: T0)
        core.handle(TOPIC, _rain(4, T0), noop)
        return await asyncio.wait_for(q.get(), 5)

    topic, key, _value, headers = asyncio.run(body())
    assert (topic, key) == ("telemetry.hydro", b"RG01")
    assert header(headers, CORRELATION_HEADER) == correlation_id("RG01", T0, 4)
    assert header(headers, RECEIVED_HEADER) == str(int(T0.timestamp() * 1000))


def test_lag_gauge_follows_the_assignment() -> None:
    from tocsin.worker import LagMetrics

    reg = CollectorRegistry()
    lag = LagMetrics(reg)
    lag.update({("telemetry.hydro", 0): 12, ("telemetry.hydro", 1): 0})
    value = reg.get_sample_value
    assert value("tocsin_worker_consumer_lag", {"topic": "telemetry.hydro", "partition": "0"}) == 12
    lag.update({("telemetry.hydro", 1): 3})  # partition 0 went to another worker in a rebalance
    assert value("tocsin_worker_consumer_lag", {"topic": "telemetry.hydro", "partition": "0"}) is None
    assert value("tocsin_worker_consumer_lag", {"topic": "telemetry.hydro", "partition": "1"}) == 3
