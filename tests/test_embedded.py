"""Embedded mode (what `make run` runs): the demo scenario through broker, gateway, detectors,
alerts and delivery in one process. No external service: the broker is amqtt, the bus in-process,
the SMS carrier emulator a thread."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.engine import AlertConfig
from schemas import topics
from schemas.alert import AlertStatus, MsgType
from simulators.demo import demo_messages, demo_registry
from tocsin.embedded import DeviceTimeClock, EmbeddedPipeline, free_port, publish_messages


async def _run_demo(status: AlertStatus) -> tuple[EmbeddedPipeline, dict]:
    port = free_port(0)
    pipeline = EmbeddedPipeline(demo_registry(), mqtt_port=port, alert_config=AlertConfig(status=status))
    await pipeline.start()
    try:
        messages = demo_messages()
        published = await asyncio.to_thread(publish_messages, messages, "127.0.0.1", port, speed=5000.0)
        assert published == len(messages)
        assert await pipeline.bus.idle(settle_s=1.0, timeout_s=60)
        stats = pipeline.sms_server_stats()
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
    first = {}
    for a in s.alerts:
        first.setdefault(a.hazard.value, a)
    assert set(first) == {"hydro", "hazmat", "fire", "seismic"}
    assert all(a.msg_type is MsgType.ALERT for a in first.values())
    # the leak peaks above the H2S level-2 set-point (orange) and then clears
    leak = [(a.msg_type, a.level.value) for a in s.alerts if a.fingerprint.endswith(":gas_leak")]
    assert leak[0] == (MsgType.ALERT, "yellow") and (MsgType.UPDATE, "orange") in leak
    assert leak[-1][0] is MsgType.CANCEL
    # every Update/Cancel references all earlier identifiers of its incident
    by_fp: dict[str, list] = {}
    for a in s.alerts:
        if a.msg_type is MsgType.ALERT:
            by_fp[a.fingerprint] = []
        earlier = by_fp[a.fingerprint]
        assert a.references == [e.identifier for e in earlier]
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
