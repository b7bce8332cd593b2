"""Operators' MQTT alert topics: the current message of each incident, retained, QoS 1.

Recipients are topics (``tocsin/v1/alerts/<area>/<hazard>/<incident>``, schemas/topics.py); the text
is the alert's JSON, so an operator console that subscribes to ``tocsin/v1/alerts/#`` receives the
current message of every active incident at once. A message that ends its incident (a Cancel) is
published without the retain flag, then an empty retained message clears the incident's topic: the
other incidents of the area and hazard keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tocsin.alerts.adapters.base import DeliveryResult, Notification, Outcome

log = logging.getLogger(__name__)


class MqttAlertAdapter:
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "tocsin-alerts",
        username: str = "",
        password: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:  # verified TLS (schemas/transport.py)
            self.client.tls_set_context(tls)
        self.client.on_connect = lambda *_a: self._connected.set()
        self.client.on_disconnect = lambda *_a: self._connected.clear()

    def __repr__(self) -> str:
        return f"MqttAlertAdapter({self._host}:{self._port})"

    async def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()
        await asyncio.to_thread(self._connected.wait, 10.0)

    async def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def send(self, n: Notification) -> DeliveryResult:
        if not self._connected.is_set():
            return DeliveryResult(Outcome.RETRY, detail=f"not connected to MQTT {self._host}:{self._port}")
        try:
            payload = n.text.encode("utf-8")
            infos = []
            for t in n.recipients:
                infos.append(self.client.publish(t, payload, qos=1, retain=not n.ends_incident))
                if n.ends_incident:  # an empty retained message deletes the topic's retained one
                    infos.append(self.client.publish(t, b"", qos=1, retain=True))
            for info in infos:
                await asyncio.to_thread(info.wait_for_publish, 5.0)
            if not all(i.is_published() for i in infos):
                return DeliveryResult(Outcome.RETRY, detail="broker did not acknowledge in 5 s")
        except (RuntimeError, ValueError, OSError) as exc:
            return DeliveryResult(Outcome.RETRY, detail=f"publish failed: {exc}")
        return DeliveryResult(Outcome.ACCEPTED, provider_ref=",".join(str(i.mid) for i in infos))
