"""tocsin fleet: many devices from one process, each with its own identity, statuses and sequence."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tocsin.ingest.validate import Accepted, parse_status, validate_telemetry
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.simulators.fleet import (
    CONNACK,
    KINDS,
    PUBACK,
    PUBLISH,
    Fleet,
    FleetConfig,
    PacketReader,
    PayloadFactory,
    allocate,
    assign_connections,
    encode_connect,
    encode_publish,
    next_due,
    offered_rate,
    plan_devices,
    run_fleet,
    varint,
)

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# The fleet plan


def test_default_mix_of_ten_thousand_devices_and_its_offered_rate() -> None:
    devices = plan_devices(10_000)
    counts = allocate(10_000, {k: s.share for k, s in KINDS.items()})
    assert counts == {"rain": 3500, "level": 2500, "gas": 2500, "fire": 1400, "seismic": 100}
    assert len({d.device_id for d in devices}) == 10_000
    assert [d.index for d in devices] == list(range(10_000))
    # 3500/300 + 2500/300 + 2500/10 + 1400/60 + 100/1
    assert offered_rate(devices) == pytest.approx(11.6667 + 8.3333 + 250 + 23.3333 + 100, abs=1e-3)
    assert offered_rate(plan_devices(10_000, rate_multiplier=4)) == pytest.approx(4 * offered_rate(devices))
    first = devices[0]
    assert (first.device_id, first.site, first.kind, first.interval_s) == ("FLT-RG00000", "flt-rain-000", "rain", 300.0)
    assert devices[3600].device_id == "FLT-WL00100" and devices[3600].site == "flt-level-001"
    assert first.topic() == "tocsin/v1/hydro/flt-rain-000/FLT-RG00000/telemetry"
    assert first.status_topic("sim/v9") == "sim/v9/hydro/flt-rain-000/FLT-RG00000/status"


def test_plan_is_deterministic_per_seed_and_checks_its_inputs() -> None:
    a, b, c = plan_devices(50, seed=1), plan_devices(50, seed=1), plan_devices(50, seed=2)
    assert a == b and [d.phase for d in a] != [d.phase for d in c]
    assert all(0.0 <= d.phase < 1.0 for d in a)
    assert [d.kind for d in plan_devices(4, shares={"gas": 1, "seismic": 1})] == ["gas", "gas", "seismic", "seismic"]
    with pytest.raises(ValueError, match="unknown device kinds"):
        plan_devices(5, shares={"volcano": 1.0})
    with pytest.raises(ValueError):
        plan_devices(5, rate_multiplier=0)


@given(st.integers(0, 50_000), st.dictionaries(st.sampled_from(list(KINDS)), st.floats(0.001, 10), min_size=1))
def test_allocate_property_sums_to_n_and_stays_within_one_of_the_share(n: int, shares: dict[str, float]) -> None:
    counts = allocate(n, shares)
    assert sum(counts.values()) == n
    total = sum(shares.values())
    for k, s in shares.items():
        assert abs(counts[k] - n * s / total) < 1.0


def test_next_due_golden_and_bounds() -> None:
    assert next_due(100.0, 10.0, 0.1, 0.5) == 110.0
    assert next_due(100.0, 10.0, 0.1, 0.0) == 109.0
    assert next_due(0.0, 300.0, 0.0, 0.99) == 300.0


@given(st.floats(0, 1e6), st.floats(0.01, 1e4), st.floats(0, 0.5), st.floats(0, 0.999999))
def test_next_due_property_within_jitter(prev: float, interval: float, jitter: float, u: float) -> None:
    nxt = next_due(prev, interval, jitter, u)
    assert prev + interval * (1 - jitter) - 1e-6 <= nxt <= prev + interval * (1 + jitter) + 1e-6
    assert nxt > prev


@pytest.mark.parametrize(("n", "c", "sizes"), [(10, 3, [4, 3, 3]), (5, 5, [1] * 5), (3, 8, [1, 1, 1]), (0, 2, [])])
def test_assign_connections_round_robin(n: int, c: int, sizes: list[int]) -> None:
    groups = [g for g in assign_connections(n, c) if g]
    assert [len(g) for g in groups] == sizes
    assert sorted(i for g in groups for i in g) == list(range(n))
    if n == 10:
        assert groups[0] == [0, 3, 6, 9]


def test_every_payload_is_what_the_gateway_accepts() -> None:
    factory = PayloadFactory(seed=3)
    devices = plan_devices(200, rate_multiplier=2.0)
    kinds = set()
    for d in devices:
        for seq in (0, 1, 7):
            result = validate_telemetry(d.topic(), factory.telemetry(d, seq, NOW), NOW)
            assert isinstance(result, Accepted), (d, getattr(result, "message", ""))
            assert result.reading.seq == seq and result.reading.device_id == d.device_id
            kinds.add(result.reading.type)
    assert kinds == {"hydro.rain", "hydro.level", "hazmat.gas", "fire.detection", "seismic.waveform"}
    seismic = next(d for d in devices if d.kind == "seismic")
    packet = json.loads(factory.telemetry(seismic, 0, NOW))
    assert len(packet["samples"]) == 50 and packet["sample_rate_hz"] == 100.0  # 1 s packets at 2x: 0.5 s
    fire = next(d for d in devices if d.kind == "fire")
    assert all(json.loads(factory.telemetry(fire, s, NOW))["confidence"] < 0.6 for s in range(50))
    status = parse_status(devices[0].status_topic(), factory.status(devices[0], DeviceState.ONLINE, NOW), NOW)
    assert isinstance(status, DeviceStatus) and status.state is DeviceState.ONLINE and status.ts == NOW
    will = parse_status(devices[0].status_topic(), b"offline", NOW)
    assert isinstance(will, DeviceStatus) and will.reason == "last-will"


# --------------------------------------------------------------------------------------------------
# MQTT wire format


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"), (268_435_455, "ffffff7f")],
)
def test_varint_matches_the_spec_examples(n: int, encoded: str) -> None:
    assert varint(n).hex() == encoded


def test_varint_out_of_range() -> None:
    with pytest.raises(ValueError):
        varint(268_435_456)


def test_connect_and_publish_golden_bytes() -> None:
    packet = encode_connect("d1", keepalive=60, will=("t/s", b"offline"), username="u", password="p")
    assert packet == (
        b"\x10\x22"  # CONNECT, remaining length 34
        b"\x00\x04MQTT\x04"  # protocol name, level 4 (3.1.1)
        b"\xee"  # user, password, will retain, will QoS 1, will flag, clean session
        b"\x00\x3c"  # keepalive 60
        b"\x00\x02d1"
        b"\x00\x03t/s"
        b"\x00\x07offline"
        b"\x00\x01u"
        b"\x00\x01p"
    )
    assert encode_connect("x") == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x"
    assert encode_publish("a/b", b"hi", 258) == b"\x32\x09\x00\x03a/b\x01\x02hi"
    assert encode_publish("a/b", b"", 1, retain=True, dup=True)[0] == 0x3B


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8), st.integers(1, 50))
def test_packet_reader_reassembles_any_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = (
        b"".join(encode_publish("t", p, i + 1) for i, p in enumerate(payloads)) + b"\x40\x02\x00\x05\x20\x02\x00\x00"
    )
    reader = PacketReader()
    packets = []
    for k in range(0, len(stream), chunk):
        packets += reader.feed(stream[k : k + chunk])
    assert [p[0] for p in packets] == [PUBLISH] * len(payloads) + [PUBACK, CONNACK]
    assert [p[2][5:] for p in packets[: len(payloads)]] == payloads
    assert packets[-2][2] == b"\x00\x05" and reader.buf == bytearray()


# --------------------------------------------------------------------------------------------------
# Integration: real Mosquitto


class _Recorder:
    """Subscribes to a fleet's whole topic root; records telemetry seqs and statuses per device."""

    def __init__(self, host: str, port: int, root: str) -> None:
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.statuses: dict[str, list[str]] = defaultdict(list)
        self.telemetry = 0
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-rec-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = lambda c, *_a: c.subscribe(f"{root}/#", qos=1)
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        device, leaf = parts[-2], parts[-1]
        with self.lock:
            if leaf == "telemetry":
                self.telemetry += 1
                self.seqs[device].append(json.loads(msg.payload)["seq"])
            elif not msg.payload:
                self.statuses[device].append("<cleared>")
            elif msg.payload == b"offline":
                self.statuses[device].append("will")
            else:
                self.statuses[device].append(json.loads(msg.payload)["state"])

    def wait_for(self, telemetry: int, cleared: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                done = sum(1 for s in self.statuses.values() if s and s[-1] == "<cleared>")
                if self.telemetry >= telemetry and done >= cleared:
                    break
            time.sleep(0.05)
        time.sleep(0.3)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _check_run(rec: _Recorder, fleet: Fleet, report: dict[str, Any]) -> None:
    n = len(fleet.devices)
    assert report["published"] == report["acked"] > 0
    assert report["status_acked"] >= 3 * n  # online, offline, cleared
    assert rec.telemetry == report["acked"]
    assert set(rec.statuses) == {d.device_id for d in fleet.devices}
    for d in fleet.devices:
        st_ = rec.statuses[d.device_id]
        assert st_[0] == "online" and st_[-2:] == ["offline", "<cleared>"], (d.device_id, st_)
        sent = fleet.stats.per_device[d.device_id]
        assert rec.seqs.get(d.device_id, []) == list(range(sent)), d.device_id


@pytest.mark.integration
def test_fleet_of_500_devices_at_rate_each_device_online_and_gapless(services: dict[str, str]) -> None:
    host, port = services["TOCSIN_MQTT_HOST"], int(services["TOCSIN_MQTT_PORT"])
    root = f"tocsin-test-{uuid.uuid4().hex[:8]}/v1"
    rec = _Recorder(host, port, root)
    try:
        cfg = FleetConfig(
            devices=500, duration_s=3.0, rate_multiplier=20.0, root=root, prefix="T500", clear_retained=True, seed=5
        )
        report, fleet = run_fleet(cfg, host, port)
        rec.wait_for(report["acked"], 500)
        assert report["connections"] == 500 and report["reconnects"] == 0
        assert report["offered_per_s"] == pytest.approx(20 * (175 / 300 + 125 / 300 + 125 / 10 + 70 / 60 + 5), abs=0.01)
        _check_run(rec, fleet, report)
        gas = [d for d in fleet.devices if d.kind == "gas"]
        assert all(fleet.stats.per_device[d.device_id] >= 2 for d in gas)  # every 0.5 s for 3 s, random phase
    finally:
        rec.stop()


@pytest.mark.integration
def test_fleet_max_mode_multiplexed_connections(services: dict[str, str]) -> None:
    host, port = services["TOCSIN_MQTT_HOST"], int(services["TOCSIN_MQTT_PORT"])
    root = f"tocsin-test-{uuid.uuid4().hex[:8]}/v1"
    rec = _Recorder(host, port, root)
    try:
        cfg = FleetConfig(
            devices=200,
            duration_s=1.0,
            max_mode=True,
            connections=8,
            window=50,
            root=root,
            prefix="TMAX",
            clear_retained=True,
        )
        report, fleet = run_fleet(cfg, host, port)
        rec.wait_for(report["acked"], 200)
        assert report["connections"] == 8 and report["max_per_s"] > 0 and report["offered_per_s"] is None
        _check_run(rec, fleet, report)
    finally:
        rec.stop()


@pytest.mark.integration
def test_fleet_reconnects_after_the_broker_drops_a_device(services: dict[str, str]) -> None:
    """A client taking over a device's client id makes Mosquitto drop the device's connection: the
    broker publishes its will, the device reconnects, says online again and goes on without a gap."""
    host, port = services["TOCSIN_MQTT_HOST"], int(services["TOCSIN_MQTT_PORT"])
    root = f"tocsin-test-{uuid.uuid4().hex[:8]}/v1"
    rec = _Recorder(host, port, root)
    cfg = FleetConfig(
        devices=20,
        duration_s=3.0,
        rate_multiplier=50.0,
        root=root,
        prefix="TREC",
        clear_retained=True,
        shares={"gas": 1.0},
    )
    fleet = Fleet(cfg, host, port)
    victim = fleet.devices[0].device_id
    out: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: out.update(report=asyncio.run(fleet.run())))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while fleet.stats.acked < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=victim)
        intruder.connect(host, port)
        intruder.loop_start()
        time.sleep(0.1)
        intruder.disconnect()
        intruder.loop_stop()
        runner.join(30)
        assert not runner.is_alive()
        report = out["report"]
        rec.wait_for(report["acked"], 20)
        assert report["reconnects"] >= 1
        statuses = rec.statuses[victim]
        assert statuses.count("online") >= 2 and "will" in statuses
        assert statuses.index("will") < len(statuses) - 1 - statuses[::-1].index("online")
        for d in fleet.devices:
            seqs = rec.seqs[d.device_id]
            assert sorted(set(seqs)) == list(range(fleet.stats.per_device[d.device_id]))  # resent, never lost
    finally:
        rec.stop()
