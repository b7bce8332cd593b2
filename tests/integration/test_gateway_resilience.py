"""Gateway resilience on the real services: at-least-once across Kafka and gateway failures.

Each test runs ``tocsin gateway`` as a subprocess against the real Mosquitto and Kafka, has a paho
client (QoS 1, persistent session) publish rain readings with seq 1..N over a few seconds, injects a
failure mid-stream, then reads Kafka back and checks that every sequence number arrived. Duplicates
are allowed by at-least-once delivery: they are counted and printed, never asserted away.

Every wait is bounded in time; every loop in count.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.procs import REPO, Proc, free_port, tocsin, wait_until
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.transport import KAFKA_PYTHON_RECEIVE_MAX_BYTES

pytestmark = pytest.mark.integration

N = 300  # readings per test
PUBLISH_RATE = 75.0  # readings per second: N of them take 4 s
HYDRO = topics.kafka_telemetry("hydro")
SERVICES_SH = ["bash", str(REPO / "deploy" / "local" / "services.sh")]
PRODUCED = "tocsin_gateway_records_produced_total"


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def _mqtt_port(services: dict[str, str]) -> int:
    return int(services["TOCSIN_MQTT_PORT"])


def _gateway_env(services: dict[str, str], run_id: str, **extra: str) -> dict[str, str]:
    """The services' endpoints without InfluxDB, no registry, a client id and share group of our own."""
    env = {k: v for k, v in services.items() if not k.startswith("TOCSIN_INFLUX")}
    env.update(
        TOCSIN_INFLUX_URL="",  # explicit: an inherited value must not switch the Influx sink on
        TOCSIN_REGISTRY_FILE="",
        TOCSIN_MQTT_CLIENT_ID=f"gw-res-{run_id}",
        TOCSIN_MQTT_SHARE_GROUP=f"res{run_id}",
        TOCSIN_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


@dataclass
class Gateway:
    proc: Proc
    metrics_port: int

    def metric(self, name: str, **labels: str) -> float:
        """Current value of one sample of this gateway's /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode("utf-8")
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def produced(self, topic: str) -> float:
        return self.metric(PRODUCED, topic=topic)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return self.proc.stop(30.0, sig)


def start_gateway(tmp_path: Path, env: dict[str, str], name: str) -> Gateway:
    port = free_port()
    proc = Proc(tocsin("gateway"), tmp_path / f"{name}.log", {**env, "TOCSIN_METRICS_PORT": str(port)})
    gw = Gateway(proc, port)
    try:
        proc.wait_for(r"gateway connected to MQTT", 60)
    except BaseException:
        gw.stop(signal.SIGKILL)
        raise
    return gw


class Publisher:
    """A device-side paho client: MQTT 5, QoS 1, its own persistent session."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.infos: list[mqtt.MQTTMessageInfo] = []
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        if not connected.wait(10):
            self.client.loop_stop()
            raise AssertionError(f"publisher {client_id} did not connect to MQTT :{port}")

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)
        self.infos.append(info)
        return info

    def wait_all_acked(self, timeout_s: float = 30.0) -> None:
        """Every QoS 1 publish so far was acknowledged by the broker (PUBACK)."""
        deadline = time.monotonic() + timeout_s
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        unacked = sum(not i.is_published() for i in self.infos)
        assert unacked == 0, f"{unacked} of {len(self.infos)} publishes not acknowledged by the broker"

    def close(self) -> None:
        """Disconnect and let the broker discard the publisher's session."""
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()


def drop_session(port: int, client_id: str) -> None:
    """Discard a gateway's persistent session (and its queue) on the broker: test hygiene."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect("127.0.0.1", port, keepalive=10, clean_start=True, properties=props)
        client.loop_start()
        connected.wait(5)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


def rain(device: str, site: str, seq: int | None, ts: datetime | None = None, **over: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "hydro.rain",
        "device_id": device,
        "site": site,
        "ts": (ts or datetime.now(UTC)).isoformat(),
        "seq": seq,
        "rain_mm": 0.2,
        "interval_s": 60,
    }
    body.update(over)
    return json.dumps(body).encode()


class PacedPublish(threading.Thread):
    """Publishes readings seq 1..n of one device at a steady rate, in the background."""

    def __init__(self, pub: Publisher, device: str, site: str, n: int = N, rate: float = PUBLISH_RATE) -> None:
        super().__init__(name=f"publish-{device}", daemon=True)
        self.pub, self.device, self.site, self.n, self.rate = pub, device, site, n, rate
        self.topic = topics.mqtt_telemetry("hydro", site, device)
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            for seq in range(1, self.n + 1):
                delay = t0 + (seq - 1) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.pub.publish(self.topic, rain(self.device, self.site, seq))
                self.sent = seq
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def reached(self, count: int, timeout_s: float = 30.0) -> None:
        wait_until(lambda: self.sent >= count or self.error, timeout_s, f"{count} readings published")
        assert self.error is None, self.error

    def finish(self, timeout_s: float = 60.0) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "publisher thread did not finish"
        assert self.error is None, self.error
        assert self.sent == self.n
        self.pub.wait_all_acked()


def await_subscribed(pub: Publisher, gateways: list[Gateway], site: str, run_id: str, timeout_s: float = 30) -> None:
    """Publish status probes until every gateway produced one: their shared subscriptions are live.

    Probes go to ``devices.status``, so they never count towards the telemetry under test.
    """
    probe = topics.mqtt_status("hydro", site, f"probe-{run_id}")
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.25) + 1):
        pub.publish(probe, b"online")
        time.sleep(0.25)
        if all(g.produced(topics.DEVICE_STATUS) > 0 for g in gateways):
            return
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"not every gateway received a status probe within {timeout_s} s")


@dataclass
class Delivery:
    counts: Counter[int] = field(default_factory=Counter)

    def missing(self, n: int = N, first: int = 1) -> list[int]:
        return [s for s in range(first, n + 1) if s not in self.counts]

    def duplicates(self) -> dict[int, int]:
        """seq -> extra copies."""
        return {s: c - 1 for s, c in sorted(self.counts.items()) if c > 1}


def read_seqs(bootstrap: str, device: str, n: int = N, first: int = 1, timeout_s: float = 90.0) -> Delivery:
    """Every record of ``device`` on telemetry.hydro, from the beginning, until all seqs first..n were seen
    and the consumer caught up with the log end (so late duplicates are counted too), or the timeout."""
    consumer = KafkaConsumer(
        HYDRO,
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        receive_message_max_bytes=KAFKA_PYTHON_RECEIVE_MAX_BYTES,  # a shared topic's backlog exceeds 1 MB
    )
    out = Delivery()
    key = device.encode()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            got = 0
            for rec in consumer:  # stops after 1 s without records
                got += 1
                if rec.key == key:
                    out.counts[int(json.loads(rec.value)["seq"])] += 1
                if time.monotonic() > deadline:
                    break
            if got == 0 and not out.missing(n, first):
                break
    finally:
        consumer.close()
    return out


def report(name: str, delivery: Delivery, n: int = N, **extra: object) -> None:
    dups = delivery.duplicates()
    missing = delivery.missing(n)
    more = "".join(f" {k}={v}" for k, v in extra.items())
    print(
        f"\n[{name}] published={n} distinct_in_kafka={len(delivery.counts)} missing={len(missing)} "
        f"duplicates={sum(dups.values())}{more}"
    )
    if dups:
        print(f"[{name}] duplicated seqs (extra copies): {dups}")
    if missing:
        print(f"[{name}] missing seqs: {missing[:50]}{' ...' if len(missing) > 50 else ''}")


def logs(*gateways: Gateway) -> str:
    return "\n".join(f"---- {g.proc.log.name} ----\n{g.proc.text()[-3000:]}" for g in gateways)


def services_sh(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVICES_SH, *args], capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def cleanup(services: dict[str, str]) -> Iterator[list[Any]]:
    """Gateways, publishers and MQTT client ids to stop / discard after the test, whatever happened."""
    things: list[Any] = []
    yield things
    for t in reversed(things):
        if isinstance(t, Gateway):
            t.stop(signal.SIGKILL)
        elif isinstance(t, Publisher):
            t.close()
    for t in things:
        if isinstance(t, str):
            drop_session(_mqtt_port(services), t)


# --------------------------------------------------------------------------- 1. Kafka outage
def test_kafka_stopped_and_restarted_mid_stream_loses_nothing(
    services: dict[str, str], tmp_path: Path, run_id: str, cleanup: list[Any]
) -> None:
    env = _gateway_env(services, run_id)
    cleanup.append(env["TOCSIN_MQTT_CLIENT_ID"])
    site, device = f"site-{run_id}", f"RG-kafka-{run_id}"
    gw = start_gateway(tmp_path, env, "gateway")
    cleanup.append(gw)
    pub = Publisher(_mqtt_port(services), f"pub-{run_id}")
    cleanup.append(pub)
    await_subscribed(pub, [gw], site, run_id)

    stream = PacedPublish(pub, device, site)
    kafka_down = kafka_up = recovered = None
    try:
        stream.start()
        stream.reached(N // 3)
        down = services_sh("down", "kafka")
        assert down.returncode == 0, down.stdout + down.stderr
        kafka_down = time.monotonic()
        stream.reached(2 * N // 3)  # published while Kafka is down
        up = services_sh("up", "kafka")
        assert up.returncode == 0, up.stdout + up.stderr
        kafka_up = time.monotonic()
        stream.finish()

        def all_produced() -> bool:
            return gw.produced(HYDRO) >= N and gw.metric("tocsin_gateway_in_flight") == 0

        try:
            wait_until(all_produced, 90, f"the gateway to produce all {N} readings", interval_s=0.2)
            recovered = time.monotonic()
        except AssertionError:
            pass  # the Kafka read below says what is missing
    finally:
        if services_sh("status", "kafka").returncode != 0:  # leave Kafka running, whatever happened
            up = services_sh("up", "kafka")
            assert up.returncode == 0, up.stdout + up.stderr
    failures = gw.metric("tocsin_gateway_produce_failures_total")
    produced = gw.produced(HYDRO)
    delivery = read_seqs(services["TOCSIN_KAFKA_BOOTSTRAP"], device)
    assert gw.stop() == 0, logs(gw)
    outage = f"{kafka_up - kafka_down:.1f}s" if kafka_up and kafka_down else "?"
    recovery = f"{recovered - kafka_up:.1f}s" if recovered and kafka_up else "not within 90 s"
    report(
        "kafka-restart",
        delivery,
        kafka_outage=outage,
        all_acked_after_kafka_ready=recovery,
        produce_failures=int(failures),
        produced_metric=int(produced),
    )
    assert not delivery.missing(N), f"missing seqs {delivery.missing(N)[:50]}\n{logs(gw)}"


# --------------------------------------------------------------------------- 2. gateway SIGKILL
def test_gateway_killed_mid_stream_resumes_its_session(
    services: dict[str, str], tmp_path: Path, run_id: str, cleanup: list[Any]
) -> None:
    env = _gateway_env(services, run_id)
    cleanup.append(env["TOCSIN_MQTT_CLIENT_ID"])
    site, device = f"site-{run_id}", f"RG-kill-{run_id}"
    gw1 = start_gateway(tmp_path, env, "gateway-1")
    cleanup.append(gw1)
    pub = Publisher(_mqtt_port(services), f"pub-{run_id}")
    cleanup.append(pub)
    await_subscribed(pub, [gw1], site, run_id)

    stream = PacedPublish(pub, device, site)
    stream.start()
    stream.reached(N // 3)
    gw1.stop(signal.SIGKILL)
    produced_before_kill = stream.sent
    stream.finish()  # the rest is published (and acked by the broker) while no gateway runs

    restarted = time.monotonic()
    gw2 = start_gateway(tmp_path, env, "gateway-2")  # same client id and share group
    cleanup.append(gw2)
    delivery = read_seqs(services["TOCSIN_KAFKA_BOOTSTRAP"], device)
    caught_up = time.monotonic() - restarted
    assert gw2.stop() == 0, logs(gw2)
    report(
        "gateway-sigkill",
        delivery,
        published_before_kill=produced_before_kill,
        restart_to_all_read_s=f"{caught_up:.1f}",
    )
    assert not delivery.missing(N), f"missing seqs {delivery.missing(N)[:50]}\n{logs(gw1, gw2)}"


# --------------------------------------------------------------------------- 3. graceful SIGTERM
def test_gateway_sigterm_mid_stream_exits_cleanly_and_loses_nothing(
    services: dict[str, str], tmp_path: Path, run_id: str, cleanup: list[Any]
) -> None:
    env = _gateway_env(services, run_id)
    cleanup.append(env["TOCSIN_MQTT_CLIENT_ID"])
    site, device = f"site-{run_id}", f"RG-term-{run_id}"
    gw1 = start_gateway(tmp_path, env, "gateway-1")
    cleanup.append(gw1)
    pub = Publisher(_mqtt_port(services), f"pub-{run_id}")
    cleanup.append(pub)
    await_subscribed(pub, [gw1], site, run_id)

    stream = PacedPublish(pub, device, site)
    stream.start()
    stream.reached(N // 3)
    t0 = time.monotonic()
    gw1.proc.p.send_signal(signal.SIGTERM)
    try:
        rc = gw1.proc.p.wait(30)
    except subprocess.TimeoutExpired:
        rc = None
    exit_s = time.monotonic() - t0
    assert rc == 0, f"gateway exit code {rc} {exit_s:.1f} s after SIGTERM\n{logs(gw1)}"
    gw1.stop()
    stream.finish()

    gw2 = start_gateway(tmp_path, env, "gateway-2")
    cleanup.append(gw2)
    delivery = read_seqs(services["TOCSIN_KAFKA_BOOTSTRAP"], device)
    assert gw2.stop() == 0, logs(gw2)
    report("gateway-sigterm", delivery, exit_after_sigterm_s=f"{exit_s:.2f}")
    assert not delivery.missing(N), f"missing seqs {delivery.missing(N)[:50]}\n{logs(gw1, gw2)}"


def test_gateway_sigterm_while_kafka_is_down_gives_up_cleanly(
    services: dict[str, str], tmp_path: Path, run_id: str, cleanup: list[Any]
) -> None:
    """Nothing can be drained: the gateway reports it (exit 1, no traceback) within its 30 s drain budget
    plus the producer's 10 s close, leaves the messages unacknowledged, and a restart delivers them."""
    env = _gateway_env(services, run_id)
    cleanup.append(env["TOCSIN_MQTT_CLIENT_ID"])
    site, device = f"site-{run_id}", f"RG-termdown-{run_id}"
    gw1 = start_gateway(tmp_path, env, "gateway-1")
    cleanup.append(gw1)
    pub = Publisher(_mqtt_port(services), f"pub-{run_id}")
    cleanup.append(pub)
    await_subscribed(pub, [gw1], site, run_id)

    stream = PacedPublish(pub, device, site)
    try:
        stream.start()
        stream.reached(N // 3)
        down = services_sh("down", "kafka")
        assert down.returncode == 0, down.stdout + down.stderr
        stream.reached(2 * N // 3)
        t0 = time.monotonic()
        gw1.proc.p.send_signal(signal.SIGTERM)
        try:
            rc = gw1.proc.p.wait(60)
        except subprocess.TimeoutExpired:
            rc = None
        exit_s = time.monotonic() - t0
        stream.finish()
    finally:
        if services_sh("status", "kafka").returncode != 0:  # leave Kafka running, whatever happened
            up = services_sh("up", "kafka")
            assert up.returncode == 0, up.stdout + up.stderr
    gw1.stop()
    log1 = gw1.proc.text()
    print(f"\n[sigterm-kafka-down] exit code {rc} after {exit_s:.1f} s")
    assert rc == 1, f"exit code {rc} {exit_s:.1f} s after SIGTERM with Kafka down\n{logs(gw1)}"
    assert exit_s < 45, f"gateway took {exit_s:.1f} s to give up\n{logs(gw1)}"
    assert "gateway stopped (drained=False)" in log1, logs(gw1)
    assert "Traceback" not in log1, logs(gw1)

    gw2 = start_gateway(tmp_path, env, "gateway-2")
    cleanup.append(gw2)
    delivery = read_seqs(services["TOCSIN_KAFKA_BOOTSTRAP"], device)
    assert gw2.stop() == 0, logs(gw2)
    report("sigterm-kafka-down", delivery, exit_after_sigterm_s=f"{exit_s:.1f}", exit_code=rc)
    assert not delivery.missing(N), f"missing seqs {delivery.missing(N)[:50]}\n{logs(gw1, gw2)}"


# --------------------------------------------------------------------------- 4. shared subscription
def test_two_gateways_share_one_subscription(
    services: dict[str, str], tmp_path: Path, run_id: str, cleanup: list[Any]
) -> None:
    env_a = _gateway_env(services, run_id, TOCSIN_MQTT_CLIENT_ID=f"gw-res-{run_id}-a")
    env_b = _gateway_env(services, run_id, TOCSIN_MQTT_CLIENT_ID=f"gw-res-{run_id}-b")
    cleanup += [env_a["TOCSIN_MQTT_CLIENT_ID"], env_b["TOCSIN_MQTT_CLIENT_ID"]]
    site, device = f"site-{run_id}", f"RG-share-{run_id}"
    gw_a = start_gateway(tmp_path, env_a, "gateway-a")
    cleanup.append(gw_a)
    gw_b = start_gateway(tmp_path, env_b, "gateway-b")
    cleanup.append(gw_b)
    pub = Publisher(_mqtt_port(services), f"pub-{run_id}")
    cleanup.append(pub)
    await_subscribed(pub, [gw_a, gw_b], site, run_id)

    stream = PacedPublish(pub, device, site)
    stream.start()
    stream.finish()
    delivery = read_seqs(services["TOCSIN_KAFKA_BOOTSTRAP"], device)

    def shares() -> tuple[float, float] | None:
        a, b = gw_a.produced(HYDRO), gw_b.produced(HYDRO)
        return (a, b) if a + b >= N else None

    try:
        a, b = wait_until(shares, 30, f"{N} records acknowledged by the two gateways")
    except AssertionError:
        a, b = gw_a.produced(HYDRO), gw_b.produced(HYDRO)
    assert gw_a.stop() == 0, logs(gw_a)
    assert gw_b.stop() == 0, logs(gw_b)
    report("shared-subscription", delivery, gateway_a=int(a), gateway_b=int(b))
    assert not delivery.missing(N), f"missing seqs {delivery.missing(N)[:50]}\n{logs(gw_a, gw_b)}"
    assert a > 0 and b > 0, f"one gateway took no share: a={a} b={b}"
    assert a + b >= N, f"the gateways acknowledged {a} + {b} < {N} records"


# --------------------------------------------------------------------------- 5. dead letters
def test_dead_letters_on_the_real_path(
    services: dict[str, str], tmp_path: Path, run_id: str, cleanup: list[Any]
) -> None:
    site = f"site-{run_id}"
    now = datetime.now(UTC)
    reasons = [
        "undecodable",
        "schema",
        "non_finite",
        "out_of_range",
        "identity_mismatch",
        "future_timestamp",
        "stale_timestamp",
        "too_large",
        "duplicate",
        "unknown_device",
        "bad_topic",
    ]
    dev = {r: f"DL-{run_id}-{r}" for r in reasons}
    tpc = {r: topics.mqtt_telemetry("hydro", site, dev[r]) for r in reasons}
    tpc["bad_topic"] = f"tocsin/v1/volcano/{site}/{dev['bad_topic']}/telemetry"  # matches the filter only
    ok = {r: rain(dev[r], site, 1) for r in reasons}
    payload: dict[str, bytes] = {
        "undecodable": b"\xff\xfe\x00 not json at all",
        "schema": json.dumps({"type": "hydro.rain", "device_id": dev["schema"], "site": site}).encode(),
        "non_finite": ok["non_finite"].replace(b'"rain_mm": 0.2', b'"rain_mm": NaN'),
        "out_of_range": rain(dev["out_of_range"], site, 1, rain_mm=9999.0),
        "identity_mismatch": rain("someone-else", site, 1),
        "future_timestamp": rain(dev["future_timestamp"], site, 1, ts=now + timedelta(days=1)),
        "stale_timestamp": rain(dev["stale_timestamp"], site, 1, ts=now - timedelta(days=30)),
        "too_large": json.dumps({"pad": "x" * 4096}).encode(),
        "duplicate": rain(dev["duplicate"], site, 7),
        "unknown_device": ok["unknown_device"],
        "bad_topic": ok["bad_topic"],
    }
    assert b"NaN" in payload["non_finite"]
    registered = [r for r in reasons if r not in ("unknown_device", "bad_topic")]
    registry = Registry(
        devices=[
            Device(device_id=dev[r], family=Family.HYDRO, site=site, lat=30.3, lon=120.1, area=Area(code="330106"))
            for r in registered
        ]
    )
    reg_file = tmp_path / "registry.json"
    reg_file.write_text(registry.model_dump_json(), encoding="utf-8")
    env = _gateway_env(services, run_id, TOCSIN_REGISTRY_FILE=str(reg_file), TOCSIN_MAX_PAYLOAD_BYTES="2048")
    cleanup.append(env["TOCSIN_MQTT_CLIENT_ID"])
    gw = start_gateway(tmp_path, env, "gateway")
    cleanup.append(gw)
    pub = Publisher(_mqtt_port(services), f"pub-{run_id}")
    cleanup.append(pub)
    await_subscribed(pub, [gw], site, run_id)

    for r in reasons:
        pub.publish(tpc[r], payload[r])
    pub.publish(tpc["duplicate"], payload["duplicate"])  # the same seq again
    pub.wait_all_acked()

    wanted = {tpc[r]: r for r in reasons}
    found: dict[str, list[dict[str, Any]]] = {}
    consumer = KafkaConsumer(
        topics.DEADLETTER,
        bootstrap_servers=services["TOCSIN_KAFKA_BOOTSTRAP"].split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        receive_message_max_bytes=KAFKA_PYTHON_RECEIVE_MAX_BYTES,  # a shared topic's backlog exceeds 1 MB
    )
    try:

        def all_found() -> bool:
            for rec in consumer:
                letter = json.loads(rec.value)
                if letter["mqtt_topic"] in wanted:
                    found.setdefault(letter["mqtt_topic"], []).append(letter)
            return len(found) == len(wanted)

        try:
            wait_until(all_found, 60, "a dead letter for every reason", interval_s=0)
        except AssertionError:
            pass  # reported below, reason by reason
    finally:
        consumer.close()
    dead_total = gw.metric("tocsin_gateway_dead_letters_total", reason="duplicate")
    assert gw.stop() == 0, logs(gw)
    print(f"\n[dead-letters] topics with a dead letter: {len(found)}/{len(wanted)}")
    for r in reasons:
        letters = found.get(tpc[r], [])
        print(f"[dead-letters] {r:18s} -> {[(x['reason'], x['raw_size']) for x in letters]}")
    for r in reasons:
        letters = found.get(tpc[r], [])
        assert letters, f"no dead letter for {r} on {tpc[r]}\n{logs(gw)}"
        assert [x["reason"] for x in letters] == [r], f"{r}: {letters}"
        assert base64.b64decode(letters[0]["raw_b64"]) == payload[r], f"{r}: raw bytes not preserved"
        assert letters[0]["raw_size"] == len(payload[r])
    assert dead_total == 1
    # The first copy of the duplicate was accepted.
    assert read_seqs(services["TOCSIN_KAFKA_BOOTSTRAP"], dev["duplicate"], n=7, first=7, timeout_s=30).counts[7] == 1
