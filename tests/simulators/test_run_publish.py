"""simulators/run.py's publisher: status messages retained, as devices publish them; telemetry not.

Against a real MQTT broker in process (amqtt, as in embedded mode) on 127.0.0.1: after the
scenario's devices have published, a subscriber that connects later receives each device's
current status (the broker kept it) and none of the telemetry."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tocsin.embedded import free_port, start_broker
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device
from tocsin.simulators.devices import RainGauge
from tocsin.simulators.run import is_status, publish_paced

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def test_status_topics_are_the_retained_ones() -> None:
    assert is_status("tocsin/v1/hydro/qingshan/RG01/status")
    assert not is_status("tocsin/v1/hydro/qingshan/RG01/telemetry")
    assert not is_status("tocsin/v1/alerts/330110/hydro")


def _late_subscriber(port: int, expect: int, timeout_s: float = 5.0) -> list[tuple[str, bytes, bool]]:
    got: list[tuple[str, bytes, bool]] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="late-operator", protocol=mqtt.MQTTv311)

    def on_connect(c: mqtt.Client, *_a: object) -> None:
        c.subscribe("tocsin/v1/#", qos=1)

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        got.append((m.topic, bytes(m.payload), bool(m.retain)))
        if len(got) >= expect:
            done.set()

    client.on_connect, client.on_message = on_connect, on_message
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        done.wait(timeout_s)
        # a little longer, so that telemetry wrongly retained would show up too
        threading.Event().wait(0.5)
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_a_late_subscriber_gets_each_devices_last_status_and_no_telemetry() -> None:
    area = Area(code="330110", district="临江区")
    g1 = RainGauge(Device(device_id="RG01", family=Family.HYDRO, site="qs", lat=30.0, lon=120.0, area=area))
    g2 = RainGauge(Device(device_id="RG02", family=Family.HYDRO, site="qs", lat=30.0, lon=120.0, area=area))
    messages = [g1.online(T0), g2.online(T0), g1.report(T0, 1.0), g2.report(T0, 0.5), g2.last_will(T0)]

    async def run() -> list[tuple[str, bytes, bool]]:
        port = free_port(0)
        broker = await start_broker("127.0.0.1", port)
        try:
            n = await asyncio.to_thread(publish_paced, messages, [0.0] * len(messages), "127.0.0.1", port)
            assert n == len(messages)
            return await asyncio.to_thread(_late_subscriber, port, 2)
        finally:
            await broker.shutdown()

    got = asyncio.run(run())
    assert sorted(got) == [
        (g1.status_topic, messages[0].payload, True),  # RG01 online
        (g2.status_topic, b"offline", True),  # RG02's last word: its last will replaced its online
    ]
