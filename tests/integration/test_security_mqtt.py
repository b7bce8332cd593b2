"""MQTT authorization and TLS on a real Mosquitto, configured exactly as the harness configures it.

The module starts its own broker with deploy/local/services.sh (own state dir, free ports: the shared
broker's ACL stays untouched) for a registry of two devices in different families and sites: the
harness generates the CA and certificates (deploy/pki.sh), the ACL and the password file (``tocsin
mqtt-auth``). Devices and services speak MQTT 5, so every refusal is read from the broker's own
answer (PUBACK / SUBACK / CONNACK reason code 135 "Not authorized", MQTT 5.0 section 2.4), and the
real gateway runs over TLS to show that nothing a device may not publish reaches Kafka.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.procs import REPO, Proc, free_port, tocsin, wait_until
from tests.integration.stack import http_status, read_records, skip_history, village
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Device, Registry
from tocsin.schemas.transport import MqttTransport, mqtt_tls_context

pytestmark = pytest.mark.integration

SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87


class Broker:
    def __init__(self, env: dict[str, str], registry: Registry, state: Path, tag: str) -> None:
        self.env, self.registry, self.state, self.tag = env, registry, state, tag
        self.plain = int(env["TOCSIN_MQTT_PORT"])
        self.auth = int(env["TOCSIN_MQTT_SECURE_PORT"])
        self.tls = int(env["TOCSIN_MQTT_TLS_PORT"])
        self.ca = str(state / "pki" / "ca.crt")
        self.creds: dict[str, str] = json.loads((state / "mosquitto" / "credentials.json").read_text())


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    run = uuid.uuid4().hex[:6]
    state = tmp_path_factory.mktemp("mqtt-sec")
    registry = Registry(
        devices=[
            Device(
                device_id=f"RG-{run}", family=Family.HYDRO, site=f"a-{run}", lat=30.3, lon=120.1, area=village("330110")
            ),
            Device(
                device_id=f"GD-{run}",
                family=Family.HAZMAT,
                site=f"b-{run}",
                lat=30.3,
                lon=120.1,
                area=village("330110"),
            ),
        ]
    )
    reg_file = state / "registry.json"
    reg_file.write_text(registry.model_dump_json())
    env = {
        **os.environ,
        "TOCSIN_STATE": str(state),
        "TOCSIN_CACHE": str(state / "cache"),  # mosquitto needs nothing cached; no wait on others' provisioning
        "TOCSIN_MQTT_PORT": str(free_port()),
        "TOCSIN_MQTT_SECURE_PORT": str(free_port()),
        "TOCSIN_MQTT_TLS_PORT": str(free_port()),
        "TOCSIN_MQTT_REGISTRY": str(reg_file),
    }
    proc = subprocess.run([*SERVICES, "up", "mosquitto"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield Broker(env, registry, state, run)
    finally:
        subprocess.run([*SERVICES, "down", "mosquitto"], env=env, capture_output=True, timeout=60)


class Client:
    """A paho MQTT 5 client that records the broker's answers (CONNACK, PUBACK, SUBACK reason codes)."""

    def __init__(
        self, broker: Broker, user: str | None, *, tls: ssl.SSLContext | None = None, plain_port: int = 0
    ) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5)
        if user is not None:
            self.c.username_pw_set(user, broker.creds[user])
        if not plain_port:
            self.c.tls_set_context(tls if tls is not None else _ctx(broker.ca))
        self.port = plain_port or broker.tls
        self.connack: Any = None
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self.done = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self._put(self.pubacks, mid, int(rc.value))
        self.c.on_subscribe = lambda _c, _u, mid, rcs, _p: self._put(self.subacks, mid, [int(r.value) for r in rcs])
        self.c.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self.done:
            self.connack = int(reason.value)
            self.done.notify_all()

    def _put(self, box: dict[int, Any], mid: int, value: Any) -> None:
        with self.done:
            box[mid] = value
            self.done.notify_all()

    def _wait(self, ready: Any, what: str) -> None:
        with self.done:
            assert self.done.wait_for(ready, 10), f"no {what} within 10 s"

    def connect(self) -> int:
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        return int(self.connack)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        mid = self.c.publish(topic, payload, qos=1, retain=retain).mid
        self._wait(lambda: mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[mid]

    def subscribe(self, topic: str) -> int:
        _rc, mid = self.c.subscribe(topic, qos=1)
        self._wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return int(self.subacks[mid][0])

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _ctx(ca: str) -> ssl.SSLContext:
    ctx = mqtt_tls_context(MqttTransport(mqtt_tls_ca=ca))
    assert ctx is not None
    return ctx


def _rain(device: str, site: str, seq: int, marker: float) -> bytes:
    reading = {"type": "hydro.rain", "device_id": device, "site": site, "ts": datetime.now(UTC).isoformat()}
    return json.dumps({**reading, "seq": seq, "rain_mm": marker, "interval_s": 300}).encode()


def test_device_confined_to_its_own_topics_and_nothing_forged_reaches_kafka(
    broker: Broker, services: dict[str, str], tmp_path: Path
) -> None:
    rg, gd = broker.registry.devices
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    run = uuid.uuid4().hex[:8]
    start = skip_history(bootstrap, f"sec-{run}")  # topic ends now: only this test's records are read
    reg_file = broker.state / "registry.json"
    port = free_port()
    gateway = Proc(
        tocsin("gateway"),
        tmp_path / "gateway.log",
        {
            **services,
            "TOCSIN_MQTT_PORT": str(broker.tls),
            "TOCSIN_MQTT_TLS_CA": broker.ca,
            "TOCSIN_MQTT_USERNAME": "gateway",
            "TOCSIN_MQTT_PASSWORD": broker.creds["gateway"],
            "TOCSIN_MQTT_CLIENT_ID": f"gw-sec-{run}",
            "TOCSIN_MQTT_SHARE_GROUP": f"sec{run}",
            "TOCSIN_REGISTRY_FILE": str(reg_file),
            "TOCSIN_METRICS_PORT": str(port),
        },
    )
    dev = Client(broker, rg.device_id)
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 60, "gateway /readyz over TLS")
        assert dev.connect() == 0
        # Each forgery is a reading the gateway would accept (or dead-letter) if it arrived; marked by rain_mm.
        forged = {
            "another device": (topics.mqtt_telemetry(gd.family, gd.site, gd.device_id), gd.device_id, gd.site, 1.1),
            "another device, own site": (
                topics.mqtt_telemetry(rg.family, rg.site, rg.device_id + "x"),
                rg.device_id + "x",
                rg.site,
                1.2,
            ),
            "another site": (topics.mqtt_telemetry(rg.family, gd.site, rg.device_id), rg.device_id, gd.site, 1.3),
            "another family": (topics.mqtt_telemetry(Family.HAZMAT, rg.site, rg.device_id), rg.device_id, rg.site, 1.4),
            "another device's status": (
                topics.mqtt_status(gd.family, gd.site, gd.device_id),
                gd.device_id,
                gd.site,
                1.5,
            ),
        }
        for what, (topic, device, site, marker) in forged.items():
            assert dev.publish(topic, _rain(device, site, 1, marker)) == NOT_AUTHORIZED, what
        # Its own topic goes through, after the forgeries on the same connection (in order).
        assert (
            dev.publish(topics.mqtt_telemetry(rg.family, rg.site, rg.device_id), _rain(rg.device_id, rg.site, 7, 2.5))
            == 0
        )

        def own_arrived() -> list[Any]:
            recs = read_records(bootstrap, topics.kafka_telemetry(Family.HYDRO), start, idle_ms=500)
            return [r for r in recs if r.key == rg.device_id.encode()]

        arrived = wait_until(own_arrived, 30, "the device's own reading on Kafka telemetry.hydro")
        assert [json.loads(r.value)["rain_mm"] for r in arrived] == [2.5]
        # Telemetry and status are keyed by device id, dead letters by MQTT topic: all carry the run's tag.
        tag = broker.tag.encode()
        for name in (*topics.TELEMETRY_TOPICS, topics.DEADLETTER, topics.DEVICE_STATUS):
            ours = [
                r for r in read_records(bootstrap, name, start, idle_ms=300) if tag in (r.key or b"") + (r.value or b"")
            ]
            expected = arrived if name == topics.kafka_telemetry(Family.HYDRO) else []
            assert [r.value for r in ours] == [r.value for r in expected], f"forged messages reached Kafka {name}"
    finally:
        dev.close()
        gateway.stop()


def test_only_the_worker_writes_alerts_and_devices_read_nothing(broker: Broker) -> None:
    rg, gd = broker.registry.devices
    area = f"9{uuid.uuid4().int % 100000:05d}"
    alert_topic = topics.mqtt_alert(area, "hydro", "rainstorm")
    own = topics.mqtt_telemetry(rg.family, rg.site, rg.device_id)
    users = (rg.device_id, gd.device_id, "worker", "operator", "gateway")
    dev, other, worker, op, gw = clients = [Client(broker, u) for u in users]
    try:
        for c in clients:
            assert c.connect() == 0
        # A device cannot publish on the alert tree, nor can an operator's console.
        assert dev.publish(alert_topic, b'{"level":"red"}', retain=True) == NOT_AUTHORIZED
        assert op.publish(alert_topic, b'{"level":"red"}', retain=True) == NOT_AUTHORIZED
        # Another device may ask for the first one's telemetry (Mosquitto grants the filter), but the read
        # rule is checked per message: it gets nothing, while the gateway gets the reading.
        other.subscribe(own)
        other.subscribe(f"{topics.MQTT_ROOT}/#")
        assert gw.subscribe(own) == 1
        assert dev.publish(own, _rain(rg.device_id, rg.site, 1, 0.5)) == 0
        wait_until(lambda: gw.messages, 10, "the reading at the gateway")
        # The operator subscribes (retained: a forged alert would be delivered now); then the worker publishes.
        assert op.subscribe(alert_topic) == 1
        assert worker.publish(alert_topic, b'{"level":"blue"}', retain=True) == 0
        wait_until(lambda: op.messages, 10, "the worker's alert at the operator")
        time.sleep(0.5)
        assert [m.payload for m in op.messages] == [b'{"level":"blue"}']
        assert [m.topic for m in gw.messages] == [own]
        assert other.messages == []
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("listener", ["tls", "auth"])
def test_anonymous_refused_on_secure_listeners(broker: Broker, listener: str) -> None:
    anon = Client(broker, None, plain_port=broker.auth if listener == "auth" else 0)
    try:
        assert anon.connect() == NOT_AUTHORIZED
    finally:
        anon.close()


def test_client_trusting_another_ca_fails_the_handshake(broker: Broker, tmp_path: Path) -> None:
    other = tmp_path / "other-pki"
    subprocess.run(["bash", str(REPO / "deploy" / "pki.sh"), str(other)], check=True, capture_output=True, timeout=60)
    client = Client(broker, rg_user := broker.registry.devices[0].device_id, tls=_ctx(str(other / "ca.crt")))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.c.connect("127.0.0.1", broker.tls)
    # and with the right CA the same user connects (the refusal above was the certificate's)
    right = Client(broker, rg_user)
    try:
        assert right.connect() == 0
    finally:
        right.close()


def test_replay_publishes_over_tls_as_a_device(broker: Broker, tmp_path: Path) -> None:
    """``tocsin replay`` with the TLS settings and a device's credentials: its own readings are acked
    and arrive; a feed for another device, replayed with the same credentials, is refused by the ACL."""
    rg, gd = broker.registry.devices
    gw = Client(broker, "gateway")
    try:
        assert gw.connect() == 0
        assert gw.subscribe(topics.MQTT_TELEMETRY_FILTER) == 1
        env = {
            "TOCSIN_MQTT_HOST": "127.0.0.1",
            "TOCSIN_MQTT_PORT": str(broker.tls),
            "TOCSIN_MQTT_TLS_CA": broker.ca,
            "TOCSIN_MQTT_USERNAME": rg.device_id,
            "TOCSIN_MQTT_PASSWORD": broker.creds[rg.device_id],
        }
        own = tmp_path / "own.jsonl"
        own.write_bytes(_rain(rg.device_id, rg.site, 1, 0.5) + b"\n" + _rain(rg.device_id, rg.site, 2, 1.0) + b"\n")
        done = subprocess.run(
            tocsin("replay", "--fast", str(own)), env={**os.environ, **env}, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert json.loads(done.stdout)["acked"] == 2
        wait_until(lambda: len(gw.messages) >= 2, 10, "the replayed readings at the gateway")
        assert {m.topic for m in gw.messages} == {topics.mqtt_telemetry(rg.family, rg.site, rg.device_id)}
        # the same credentials replaying another device's feed: the broker refuses every message
        other = tmp_path / "other.jsonl"
        other.write_bytes(
            json.dumps(
                {
                    "type": "hazmat.gas",
                    "device_id": gd.device_id,
                    "site": gd.site,
                    "seq": 1,
                    "ts": datetime.now(UTC).isoformat(),
                    "gas": "H2S",
                    "value": 30.0,
                    "unit": "mg/m3",
                }
            ).encode()
            + b"\n"
        )
        subprocess.run(
            tocsin("replay", "--fast", str(other)), env={**os.environ, **env}, capture_output=True, timeout=60
        )
        time.sleep(0.5)
        assert all(m.topic != topics.mqtt_telemetry(gd.family, gd.site, gd.device_id) for m in gw.messages)
    finally:
        gw.close()
