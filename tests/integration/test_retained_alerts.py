"""Retained alert topics on the real Mosquitto: one per incident, and a Cancel clears only its own."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from tests.alerts.factories import T0
from tocsin.alerts.adapters.mqtt_alerts import MqttAlertAdapter
from tocsin.alerts.notify import Notifier, NotifyMetrics
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel


def _alert(area: str, kind: str, msg_type: MsgType, revision: int) -> Alert:
    return Alert(
        identifier=f"{kind}-{revision}",
        fingerprint=f"hydro:{area}:{kind}",
        revision=revision,
        msg_type=msg_type,
        status=AlertStatus.ACTUAL,
        hazard=Family.HYDRO,
        event=kind,
        level=WarningLevel.YELLOW,
        sent=T0 + timedelta(minutes=revision),
        onset=T0,
        area=AlertArea(code=area, desc="青山镇"),
        headline=f"{kind} {msg_type.value}",
        description="d",
        devices=["D01"],
        sites=["s"],
    )


def _retained(port: int, area: str, wait_s: float = 3.0) -> dict[str, bytes]:
    """The retained messages under ``tocsin/v1/alerts/<area>/#`` as a fresh subscriber sees them."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got[msg.topic] = msg.payload

    c.on_message = on_message
    c.on_subscribe = lambda *_a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe(f"{topics.MQTT_ROOT}/alerts/{area}/#", qos=1)
        assert done.wait(5), "no SUBACK"
        time.sleep(wait_s)  # retained messages follow the SUBACK at once; this bounds the wait
    finally:
        c.disconnect()
        c.loop_stop()
    return got


def test_cancel_of_one_incident_leaves_the_other_retained(services: dict[str, str]) -> None:
    port = int(services["TOCSIN_MQTT_PORT"])
    area = f"9{uuid.uuid4().int % 100000:05d}"  # unique: retained messages outlive the test
    adapter = MqttAlertAdapter("127.0.0.1", port, client_id=f"alerts-{area}")
    notifier = Notifier(None, {"mqtt": adapter}, NotifyMetrics(CollectorRegistry()))
    flood_topic = f"tocsin/v1/alerts/{area}/hydro/flood"
    rain_topic = f"tocsin/v1/alerts/{area}/hydro/rainstorm"

    async def run() -> None:
        await adapter.start()
        try:
            for alert in (_alert(area, "flood", MsgType.ALERT, 0), _alert(area, "rainstorm", MsgType.ALERT, 0)):
                records = await notifier.deliver(alert)
                assert [r.outcome for r in records] == ["accepted"]
            both = await asyncio.to_thread(_retained, port, area)
            assert set(both) == {flood_topic, rain_topic}
            assert b'"rainstorm Alert"' in both[rain_topic]

            records = await notifier.deliver(_alert(area, "rainstorm", MsgType.CANCEL, 1))
            assert [r.outcome for r in records] == ["accepted"]
            after = await asyncio.to_thread(_retained, port, area)
            assert set(after) == {flood_topic}, "the Cancel cleared another incident, or not its own"
            assert after[flood_topic] == both[flood_topic]
        finally:
            # leave nothing retained on the shared broker
            adapter.client.publish(flood_topic, b"", qos=1, retain=True).wait_for_publish(5)
            await adapter.stop()

    asyncio.run(run())
