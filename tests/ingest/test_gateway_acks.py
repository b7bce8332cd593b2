"""The gateway's PUBACKs and its MQTT connections: a message is acknowledged on the connection it came
on, once its Kafka record is durable, and never on a later connection.

A packet id belongs to its MQTT session. When the session does not survive a reconnect (it expired, or
the broker lost its state), the broker numbers the next messages from the start again; a PUBACK for a
message of the old connection whose Kafka write is acknowledged only after the reconnect would then
acknowledge another message that Kafka does not have yet. The broker redelivers what the old connection
left unacknowledged (a persistent session) or the device sends it again; the gateway's record of the
first copy is in Kafka either way."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from paho.mqtt.enums import MQTTErrorCode
from prometheus_client import CollectorRegistry

from tocsin.ingest.gateway import GatewayCore, MqttGateway
from tocsin.ingest.metrics import GatewayMetrics
from tocsin.ingest.mqtt_client import pubacks
from tocsin.ingest.sinks import Done

NOW = datetime(2026, 8, 2, 5, 0, tzinfo=UTC)
TOPIC = b"tocsin/v1/hydro/qs/RG01/telemetry"


class HeldSink:
    """A Kafka stand-in whose writes are acknowledged when the test says so (a slow broker)."""

    def __init__(self, rounds: bool) -> None:
        self.held: list[Done] = []
        self._hooks: list[Callable[[], None]] = []
        if rounds:
            self.add_round_hook = self._hooks.append  # the librdkafka sink's rounds of delivery reports

    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Done) -> None:
        self.held.append(on_done)

    def acknowledge_all(self) -> None:
        held, self.held = self.held, []
        for done in held:
            done(None)
        for hook in self._hooks:
            hook()

    def flush(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None


def _publish_qos1(mid: int, seq: int) -> bytes:
    payload = json.dumps(
        {"type": "hydro.rain", "device_id": "RG01", "site": "qs", "ts": NOW.isoformat(), "seq": seq}
        | {"rain_mm": 1.5, "interval_s": 300}
    ).encode()
    body = struct.pack("!H", len(TOPIC)) + TOPIC + struct.pack("!H", mid) + b"\x00" + payload  # MQTT 5
    assert len(body) < 16_384
    return bytes([0x32, (len(body) & 0x7F) | 0x80, len(body) >> 7]) + body


def _connect(gateway: MqttGateway) -> socket.socket:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.settimeout(0.5)
    gateway.client._sock = ours  # noqa: SLF001 - the socket paho would have connected
    return broker


def _acks_received(broker: socket.socket, gateway: MqttGateway) -> bytes:
    gateway.client.loop_write()
    broker.setblocking(False)
    try:
        return broker.recv(1000)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize("rounds", [True, False], ids=["acks-per-round", "ack-per-record"])
def test_a_late_kafka_acknowledgement_is_not_sent_on_the_next_connection(rounds: bool) -> None:
    sink = HeldSink(rounds)
    core = GatewayCore(sink, GatewayMetrics(CollectorRegistry()), clock=lambda: NOW)
    gateway = MqttGateway(core, host="127.0.0.1", port=1, client_id="acks-test")
    first = _connect(gateway)
    try:
        # on the first connection: one message acknowledged in time, one still waiting for Kafka
        first.sendall(_publish_qos1(5, 1))
        gateway.client.loop_read()
        sink.acknowledge_all()
        assert _acks_received(first, gateway) == pubacks([5])
        first.sendall(_publish_qos1(6, 2))
        gateway.client.loop_read()
        assert len(sink.held) == 1
        gateway.client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)  # noqa: SLF001 - the connection drops
    finally:
        first.close()
    second = _connect(gateway)  # paho reconnected; a new session numbers its messages from 1 again
    try:
        sink.acknowledge_all()  # Kafka acknowledges the old connection's message 6 only now
        assert _acks_received(second, gateway) == b""  # no PUBACK 6: it would acknowledge another message
        second.sendall(_publish_qos1(6, 3))  # the new session's message 6
        gateway.client.loop_read()
        sink.acknowledge_all()
        assert _acks_received(second, gateway) == pubacks([6])  # acknowledged once Kafka has it
    finally:
        second.close()
        if gateway.client._sock is not None:  # noqa: SLF001
            gateway.client._sock.close()  # noqa: SLF001


def test_an_oversize_message_becomes_a_dead_letter_acknowledged_once_kafka_has_it() -> None:
    """A message far over the payload limit (here 2 MB for 256 KiB) is never held whole: the gateway
    dead-letters it (``too_large``, with its size and first bytes) and acknowledges it once that dead
    letter is in Kafka, like any other refused message; the messages around it go through."""
    sink = HeldSink(rounds=True)
    core = GatewayCore(sink, GatewayMetrics(CollectorRegistry()), clock=lambda: NOW)
    gateway = MqttGateway(core, host="127.0.0.1", port=1, client_id="oversize-test")
    sent: list[tuple[str, bytes]] = []
    real_send = sink.send

    def send(topic: str, key: bytes | None, value: bytes, on_done: Done) -> None:
        sent.append((topic, value))
        real_send(topic, key, value, on_done)

    sink.send = send  # type: ignore[method-assign]
    broker = _connect(gateway)
    try:
        payload = b'{"type":"hydro.rain","junk":"' + b"x" * 2_000_000 + b'"}'
        body = struct.pack("!H", len(TOPIC)) + TOPIC + struct.pack("!H", 7) + b"\x00" + payload
        n, length = len(body), bytearray()
        while True:
            n, digit = divmod(n, 128)
            length.append(digit | (0x80 if n else 0))
            if not n:
                break
        big = bytes([0x32]) + bytes(length) + body
        stream = _publish_qos1(5, 1) + big + _publish_qos1(9, 2)
        for at in range(0, len(stream), 60_000):
            broker.sendall(stream[at : at + 60_000])
            gateway.client.loop_read()
            assert len(gateway.client._rbuf) < 1_000_000  # noqa: SLF001 - never the whole message
        gateway.client.loop_read()
        assert [t for t, _ in sent] == ["telemetry.hydro", "telemetry.deadletter", "telemetry.hydro"]
        letter = json.loads(sent[1][1])
        assert letter["reason"] == "too_large" and str(len(body)) in letter["message"]
        assert letter["mqtt_topic"] == TOPIC.decode()
        assert (letter["raw_size"], letter["raw_truncated"]) == (len(body), True)
        assert _acks_received(broker, gateway) == b""  # nothing is durable yet
        sink.acknowledge_all()
        assert _acks_received(broker, gateway) == pubacks([5, 7, 9])
    finally:
        broker.close()
        if gateway.client._sock is not None:  # noqa: SLF001
            gateway.client._sock.close()  # noqa: SLF001
