"""A fleet of simulated field devices published from ONE process: ``tocsin fleet``.

Each device has its own identity (``device_id``, ``site``), its own sequence numbers and its own
report interval, and publishes like a real device: QoS 1 JSON telemetry on
``<root>/<family>/<site>/<device_id>/telemetry``, a retained ``online`` status on ``.../status``
when its connection comes up, ``offline`` as its MQTT last will, an orderly ``offline`` at the end,
and reconnection (with the unacknowledged messages resent, DUP set) when the broker drops it.

Families and rates (per device, ``--rate-multiplier`` divides every interval; each device starts at
a random phase and each interval gets +/-10 % jitter, so devices are not synchronised):

=========  =====  ========  ==========================================================
kind       share  interval  payload
=========  =====  ========  ==========================================================
rain       35 %   300 s     ``hydro.rain`` tipping-bucket increment (mostly 0 mm)
level      25 %   300 s     ``hydro.level`` stage with a slow drift
gas        25 %   10 s      ``hazmat.gas`` CH4 %LEL near zero
fire       14 %   60 s      ``fire.detection`` low-confidence (< 0.6) smoke from a sweep
seismic    1 %    1 s       ``seismic.waveform`` 1 s packets, 100 Hz noise, m/s
=========  =====  ========  ==========================================================

Seismic is kept to 1 % of the fleet: a 100 Hz station is 100 samples/s of payload where a rain gauge
sends one number every 5 minutes, so 10,000 seismic stations (1 M samples/s of JSON) would measure
the JSON encoder, not the fleet. Fire cameras report at their sweep interval with confidences below
the detector's 0.6, so a fleet never raises a fire alert. At the defaults 10,000 devices offer
~385 messages/s, dominated by gas detectors and seismic packets.

Connections (the trade-off): a real device has its own TCP connection and last will; that is what
``connections = devices`` (the default, while the process's file-descriptor limit allows) gives.
With fewer connections, devices are multiplexed round-robin over them like sensors behind a data
concentrator: each device still has its own topics, identity, sequence numbers and online/offline
statuses, but MQTT allows one will per connection, so an unclean drop marks only the connection's
first device offline (the others fall silent, which the worker's deadman catches). Fewer
connections cost fewer file descriptors and broker sessions and batch more per socket.

The MQTT client is a small asyncio MQTT 3.1.1 publisher (CONNECT with will, PUBLISH QoS 1 with a
bounded in-flight window per connection, PUBACK, PINGREQ, DISCONNECT): one event loop drives every
connection, where paho would need a thread or a hand-driven loop per client. ``--max`` publishes as
fast as the broker acknowledges, round-robin over the devices, to find the maximum messages/s.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import resource
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tocsin.schemas.common import Family
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, WaterLevel
from tocsin.schemas.topics import MQTT_ROOT, mqtt_status, mqtt_telemetry
from tocsin.schemas.wire import encode

# --------------------------------------------------------------------------------------------------
# The fleet (pure)


@dataclass(frozen=True)
class KindSpec:
    family: Family
    code: str  # in device ids
    share: float
    interval_s: float


KINDS: dict[str, KindSpec] = {
    "rain": KindSpec(Family.HYDRO, "RG", 0.35, 300.0),
    "level": KindSpec(Family.HYDRO, "WL", 0.25, 300.0),
    "gas": KindSpec(Family.HAZMAT, "GD", 0.25, 10.0),
    "fire": KindSpec(Family.FIRE, "FC", 0.14, 60.0),
    "seismic": KindSpec(Family.SEISMIC, "SS", 0.01, 1.0),
}
SEISMIC_RATE_HZ = 100.0
DEVICES_PER_SITE = 100


@dataclass(frozen=True)
class SimDevice:
    index: int
    kind: str
    device_id: str
    site: str
    family: Family
    interval_s: float
    phase: float  # fraction of the interval before the first report, in [0, 1)

    def topic(self, root: str = MQTT_ROOT) -> str:
        return _rooted(mqtt_telemetry(self.family, self.site, self.device_id), root)

    def status_topic(self, root: str = MQTT_ROOT) -> str:
        return _rooted(mqtt_status(self.family, self.site, self.device_id), root)


def _rooted(topic: str, root: str) -> str:
    return root + topic[len(MQTT_ROOT) :] if root != MQTT_ROOT else topic


def allocate(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``n`` devices by ``shares`` (largest remainder; sums to exactly ``n``)."""
    total = sum(s for s in shares.values() if s > 0)
    if n < 0 or total <= 0:
        raise ValueError("need n >= 0 and at least one positive share")
    exact = {k: n * s / total for k, s in shares.items() if s > 0}
    counts = {k: math.floor(v) for k, v in exact.items()}
    left = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:left]:
        counts[k] += 1
    return counts


def plan_devices(
    n: int,
    *,
    shares: dict[str, float] | None = None,
    intervals: dict[str, float] | None = None,
    rate_multiplier: float = 1.0,
    prefix: str = "FLT",
    seed: int = 0,
) -> list[SimDevice]:
    """The fleet's devices: ids ``<prefix>-<code><n>``, sites of 100 devices, random phases (seeded)."""
    if rate_multiplier <= 0:
        raise ValueError("rate_multiplier must be > 0")
    shares = shares or {k: s.share for k, s in KINDS.items()}
    unknown = set(shares) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown device kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    counts = allocate(n, shares)
    rng = np.random.default_rng(seed)
    devices: list[SimDevice] = []
    for kind in KINDS:
        spec = KINDS[kind]
        interval = (intervals or {}).get(kind, spec.interval_s) / rate_multiplier
        for k in range(counts.get(kind, 0)):
            i = len(devices)
            devices.append(
                SimDevice(
                    index=i,
                    kind=kind,
                    device_id=f"{prefix}-{spec.code}{k:05d}",
                    site=f"{prefix.lower()}-{kind}-{k // DEVICES_PER_SITE:03d}",
                    family=spec.family,
                    interval_s=interval,
                    phase=float(rng.random()),
                )
            )
    return devices


def offered_rate(devices: Sequence[SimDevice]) -> float:
    """Telemetry messages per second the fleet offers at its configured intervals."""
    return sum(1.0 / d.interval_s for d in devices)


def next_due(prev_due: float, interval_s: float, jitter: float, u: float) -> float:
    """The next report time: one interval on, stretched by ``jitter * (2u - 1)`` (u uniform in [0, 1))."""
    return prev_due + interval_s * (1.0 + jitter * (2.0 * u - 1.0))


def assign_connections(n_devices: int, n_connections: int) -> list[list[int]]:
    """Device indexes per connection, round-robin (so every connection mixes the families)."""
    if n_connections < 1:
        raise ValueError("need at least one connection")
    n_connections = min(n_connections, max(n_devices, 1))
    return [list(range(j, n_devices, n_connections)) for j in range(n_connections)]


class PayloadFactory:
    """Telemetry payloads built with the schema's models (every one validated), per device kind."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.noise = self.rng.normal(0.0, 2e-7, 8192).round(10)

    def telemetry(self, d: SimDevice, seq: int, ts: datetime) -> bytes:
        base: dict[str, Any] = {"device_id": d.device_id, "site": d.site, "ts": ts, "seq": seq}
        u = float(self.rng.random())
        model: RainIncrement | WaterLevel | GasReading | FireDetection | SeismicPacket
        if d.kind == "rain":
            rain = 0.0 if u < 0.9 else round(0.5 * (1 + int(u * 40) % 4), 1)
            model = RainIncrement(**base, rain_mm=rain, interval_s=round(d.interval_s, 3))
        elif d.kind == "level":
            model = WaterLevel(**base, level_m=round(2.0 + 0.001 * (d.index % 500) + 0.01 * u, 3))
        elif d.kind == "gas":
            model = GasReading(**base, gas="CH4", unit="%LEL", value=round(2.0 * u, 2))
        elif d.kind == "fire":
            model = FireDetection(
                **base, kind="smoke", confidence=round(0.05 + 0.3 * u, 2), bearing_deg=round(359.0 * u, 1), sweep=seq
            )
        else:
            n = int(SEISMIC_RATE_HZ * max(d.interval_s, 0.01))
            start = (seq * n + d.index * 97) % (len(self.noise) - n)
            model = SeismicPacket(
                **base, sample_rate_hz=SEISMIC_RATE_HZ, unit="m/s", samples=self.noise[start : start + n].tolist()
            )
        return encode(model)

    @staticmethod
    def status(d: SimDevice, state: DeviceState, ts: datetime, reason: str = "") -> bytes:
        return encode(
            DeviceStatus(device_id=d.device_id, site=d.site, family=d.family, state=state, ts=ts, reason=reason)
        )


# --------------------------------------------------------------------------------------------------
# MQTT 3.1.1 wire format (pure)

CONNECT, CONNACK, PUBLISH, PUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 12, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


def varint(n: int) -> bytes:
    """MQTT remaining-length encoding (1..4 bytes)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def encode_connect(
    client_id: str,
    *,
    keepalive: int = 60,
    will: tuple[str, bytes] | None = None,
    username: str = "",
    password: str = "",
    clean: bool = True,
) -> bytes:
    """CONNECT, MQTT 3.1.1; the will (if any) is QoS 1 and retained, as a device's status is."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20
        payload += _str(will[0]) + _str(will[1])
    if username:
        flags |= 0x80
        payload += _str(username)
        if password:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + payload
    return bytes([CONNECT << 4]) + varint(len(body)) + body


def encode_publish(topic: str, payload: bytes, packet_id: int, *, retain: bool = False, dup: bool = False) -> bytes:
    """PUBLISH QoS 1."""
    body = _str(topic) + struct.pack(">H", packet_id) + payload
    first = (PUBLISH << 4) | 0x02 | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes([first]) + varint(len(body)) + body


class PacketReader:
    """Splits a byte stream into (packet type, flags, body) tuples."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self.buf += data
        out: list[tuple[int, int, bytes]] = []
        while len(self.buf) >= 2:
            length, mult, pos = 0, 1, 1
            while True:
                if pos >= len(self.buf):
                    return out
                byte = self.buf[pos]
                length += (byte & 0x7F) * mult
                mult *= 128
                pos += 1
                if not byte & 0x80:
                    break
                if pos > 4:
                    raise ValueError("malformed remaining length")
            if len(self.buf) < pos + length:
                return out
            head = self.buf[0]
            out.append((head >> 4, head & 0x0F, bytes(self.buf[pos : pos + length])))
            del self.buf[: pos + length]
        return out


# --------------------------------------------------------------------------------------------------
# Connections (asyncio I/O)


@dataclass
class FleetStats:
    published: int = 0  # telemetry handed to a connection
    acked: int = 0  # telemetry acknowledged by the broker
    status_acked: int = 0
    reconnects: int = 0
    last_ack: float = 0.0
    per_device: dict[str, int] = field(default_factory=dict)  # telemetry messages (== last seq + 1)


class _Link(asyncio.Protocol):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.reader = PacketReader()

    def data_received(self, data: bytes) -> None:
        for ptype, _flags, body in self.reader.feed(data):
            if ptype == PUBACK:
                self.conn.on_puback(struct.unpack(">H", body[:2])[0])
            elif ptype == CONNACK:
                self.conn.on_connack(body[1] if len(body) > 1 else 255)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.on_lost()


class Connection:
    """One MQTT connection carrying one or more devices; QoS 1 with a bounded in-flight window."""

    def __init__(
        self,
        fleet: Fleet,
        client_id: str,
        devices: list[SimDevice],
        *,
        window: int,
    ) -> None:
        self.fleet, self.client_id, self.devices, self.window = fleet, client_id, devices, window
        self.transport: asyncio.Transport | None = None
        self.connected = False
        self.closing = False
        self.pending: deque[tuple[str, bytes, bool, int]] = deque()  # topic, payload, retain, kind
        self.inflight: dict[int, tuple[bytes, int]] = {}  # packet id -> (packet, kind)
        self.next_pid = 1
        self.space = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.last_sent = 0.0
        self._connack: asyncio.Future[int] | None = None
        self._reconnecting = False
        self._pump_due = False

    # kind: 0 telemetry, 1 status (counted separately)
    def will(self) -> tuple[str, bytes]:
        return self.devices[0].status_topic(self.fleet.root), b"offline"

    async def connect(self, timeout_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: _Link(self), self.fleet.host, self.fleet.port, ssl=self.fleet.tls
        )
        self.transport = transport  # type: ignore[assignment]
        transport.write(
            encode_connect(
                self.client_id,
                keepalive=self.fleet.keepalive_s,
                will=self.will(),
                username=self.fleet.username,
                password=self.fleet.password,
            )
        )
        rc = await asyncio.wait_for(self._connack, timeout_s)
        if rc != 0:
            transport.close()
            raise ConnectionError(f"{self.client_id}: broker refused the connection (CONNACK rc={rc})")
        self.connected = True
        self.last_sent = time.monotonic()
        # unacknowledged messages of a lost connection first, flagged as duplicates
        for packet, _kind in self.inflight.values():
            transport.write(bytes([packet[0] | 0x08]) + packet[1:])
        now = self.fleet.now()
        self.drained.clear()
        for d in reversed(self.devices):
            self.pending.appendleft(
                (d.status_topic(self.fleet.root), self.fleet.factory.status(d, DeviceState.ONLINE, now), True, 1)
            )
        self._pump()

    def on_connack(self, rc: int) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(rc)

    def send(self, topic: str, payload: bytes, *, retain: bool = False, kind: int = 0) -> None:
        self.pending.append((topic, payload, retain, kind))
        self.drained.clear()
        self._kick()

    def _kick(self) -> None:
        """Write on the next loop iteration: everything queued meanwhile goes out in one write."""
        if not self._pump_due:
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_due = False
        if not self.connected or self.transport is None:
            return
        chunks = []
        while self.pending and len(self.inflight) < self.window:
            topic, payload, retain, kind = self.pending.popleft()
            pid = self.next_pid
            self.next_pid = pid % 65535 + 1
            packet = encode_publish(topic, payload, pid, retain=retain)
            self.inflight[pid] = (packet, kind)
            chunks.append(packet)
        if chunks:
            self.transport.write(b"".join(chunks))
            self.last_sent = time.monotonic()

    def on_puback(self, pid: int) -> None:
        entry = self.inflight.pop(pid, None)
        if entry is not None:
            self.fleet.on_ack(entry[1])
        self._kick()
        if len(self.inflight) + len(self.pending) < self.window:
            self.space.set()
        if not self.inflight and not self.pending:
            self.drained.set()

    def ping_if_idle(self, now: float) -> None:
        if self.connected and self.transport is not None and now - self.last_sent > self.fleet.keepalive_s / 2:
            self.transport.write(PINGREQ_PACKET)
            self.last_sent = now

    def on_lost(self) -> None:
        self.connected = False
        self.transport = None
        if not self.closing and not self._reconnecting:
            self._reconnecting = True
            self.fleet.stats.reconnects += 1
            self.fleet.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.2
        try:
            while not self.closing:
                await asyncio.sleep(delay)
                try:
                    await self.connect()
                    return
                except (OSError, TimeoutError, ConnectionError):
                    delay = min(delay * 2, 10.0)
        finally:
            self._reconnecting = False

    async def close(self, offline: bool, clear_retained: bool, timeout_s: float) -> None:
        """Orderly end: offline statuses (retained), optionally cleared, then DISCONNECT (no will)."""
        now = self.fleet.now()
        for d in self.devices:
            if offline:
                status = self.fleet.factory.status(d, DeviceState.OFFLINE, now, "shutdown")
                self.send(d.status_topic(self.fleet.root), status, retain=True, kind=1)
            if clear_retained:
                self.send(d.status_topic(self.fleet.root), b"", retain=True, kind=1)
        try:
            await asyncio.wait_for(self.drained.wait(), timeout_s)
        except TimeoutError:
            pass
        self.closing = True
        if self.transport is not None:
            self.transport.write(DISCONNECT_PACKET)
            self.transport.close()


# --------------------------------------------------------------------------------------------------
# The fleet runner


@dataclass(frozen=True)
class FleetConfig:
    devices: int = 10_000
    duration_s: float = 60.0
    rate_multiplier: float = 1.0
    max_mode: bool = False
    connections: int = 0  # 0: one per device, capped by the file-descriptor limit
    window: int = 0  # in-flight messages per connection; 0: 20 (rate), max(4, 20000 // connections) (max)
    jitter: float = 0.1
    shares: dict[str, float] | None = None
    prefix: str = "FLT"
    root: str = MQTT_ROOT
    seed: int = 0
    clear_retained: bool = False
    keepalive_s: int = 60
    connect_concurrency: int = 200


def default_connections(n_devices: int, reserve: int = 256) -> int:
    """One connection per device, as far as the soft file-descriptor limit allows (raised to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n_devices + reserve
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    limit = n_devices if soft == resource.RLIM_INFINITY else max(1, soft - reserve)
    return max(1, min(n_devices, limit))


class Fleet:
    def __init__(
        self,
        cfg: FleetConfig,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        tls: ssl.SSLContext | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg, self.host, self.port, self.tls = cfg, host, port, tls
        self.username, self.password, self.now = username, password, now
        self.root, self.keepalive_s = cfg.root, cfg.keepalive_s
        self.devices = plan_devices(
            cfg.devices, shares=cfg.shares, rate_multiplier=cfg.rate_multiplier, prefix=cfg.prefix, seed=cfg.seed
        )
        self.topics = [d.topic(cfg.root) for d in self.devices]
        self.factory = PayloadFactory(cfg.seed)
        self.stats = FleetStats()
        self.seq = [0] * len(self.devices)
        self.connections: list[Connection] = []
        self.conn_of: list[Connection] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_ack(self, kind: int) -> None:
        if kind == 0:
            self.stats.acked += 1
            self.stats.last_ack = time.monotonic()
        else:
            self.stats.status_acked += 1

    def publish(self, d: SimDevice) -> None:
        seq = self.seq[d.index]
        self.seq[d.index] = seq + 1
        self.stats.published += 1
        self.conn_of[d.index].send(self.topics[d.index], self.factory.telemetry(d, seq, self.now()))

    async def _connect_all(self) -> None:
        n_conn = self.cfg.connections or default_connections(len(self.devices))
        groups = assign_connections(len(self.devices), n_conn)
        one_each = len(groups) == len(self.devices)
        window = self.cfg.window or (max(4, min(1000, 20_000 // len(groups))) if self.cfg.max_mode else 20)
        self.conn_of = [None] * len(self.devices)  # type: ignore[list-item]
        for j, idx in enumerate(groups):
            devs = [self.devices[i] for i in idx]
            cid = devs[0].device_id if one_each else f"{self.cfg.prefix}-conn{j:05d}"
            conn = Connection(self, cid, devs, window=window)
            self.connections.append(conn)
            for i in idx:
                self.conn_of[i] = conn
        gate = asyncio.Semaphore(self.cfg.connect_concurrency)

        async def one(c: Connection) -> None:
            async with gate:
                await c.connect()

        await asyncio.gather(*(one(c) for c in self.connections))

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            now = time.monotonic()
            for c in self.connections:
                c.ping_if_idle(now)

    async def _run_rates(self, duration_s: float) -> None:
        rng = np.random.default_rng(self.cfg.seed + 1)
        t0 = time.monotonic()
        heap = [(d.phase * d.interval_s, d.index) for d in self.devices]
        heapq.heapify(heap)
        jitter = self.cfg.jitter
        while heap:
            now = time.monotonic() - t0
            if now >= duration_s:
                return
            due, i = heap[0]
            if due > now:
                await asyncio.sleep(min(due, duration_s) - now)
                continue
            d = self.devices[i]
            self.publish(d)
            heapq.heapreplace(heap, (next_due(due, d.interval_s, jitter, float(rng.random())), i))
            if self.stats.published % 256 == 0:
                await asyncio.sleep(0)

    async def _run_max(self, duration_s: float) -> None:
        stop_at = time.monotonic() + duration_s

        async def producer(c: Connection) -> None:
            k = 0
            while time.monotonic() < stop_at:
                if c.connected and len(c.inflight) + len(c.pending) < c.window:
                    for _ in range(c.window - len(c.inflight) - len(c.pending)):
                        self.publish(c.devices[k % len(c.devices)])
                        k += 1
                    await asyncio.sleep(0)
                else:
                    c.space.clear()
                    try:
                        await asyncio.wait_for(c.space.wait(), max(0.0, stop_at - time.monotonic()))
                    except TimeoutError:
                        return

        await asyncio.gather(*(producer(c) for c in self.connections))

    async def run(self) -> dict[str, Any]:
        t_connect = time.monotonic()
        await self._connect_all()
        connect_s = time.monotonic() - t_connect
        # wait for the online statuses before measuring
        await asyncio.gather(*(c.drained.wait() for c in self.connections))
        self.spawn(self._pinger())
        t0 = time.monotonic()
        if self.cfg.max_mode:
            await self._run_max(self.cfg.duration_s)
        else:
            await self._run_rates(self.cfg.duration_s)
        publish_end = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(c.drained.wait() for c in self.connections)), 60.0)
        acked_s = max(self.stats.last_ack, publish_end) - t0
        await asyncio.gather(*(c.close(True, self.cfg.clear_retained, 30.0) for c in self.connections))
        for task in list(self._tasks):
            task.cancel()
        self.stats.per_device = {d.device_id: self.seq[d.index] for d in self.devices}
        counts: dict[str, int] = {}
        for d in self.devices:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        report: dict[str, Any] = {
            "mode": "max" if self.cfg.max_mode else "rate",
            "devices": len(self.devices),
            "kinds": counts,
            "connections": len(self.connections),
            "window_per_connection": self.connections[0].window if self.connections else 0,
            "connect_s": round(connect_s, 3),
            "duration_s": round(publish_end - t0, 3),
            "offered_per_s": round(offered_rate(self.devices), 2),
            "published": self.stats.published,
            "acked": self.stats.acked,
            "achieved_per_s": round(self.stats.acked / acked_s, 1) if acked_s > 0 else 0.0,
            "status_acked": self.stats.status_acked,
            "reconnects": self.stats.reconnects,
        }
        if self.cfg.max_mode:
            report["max_per_s"] = report["achieved_per_s"]
            report["offered_per_s"] = None
        return report


def run_fleet(
    cfg: FleetConfig,
    host: str,
    port: int,
    *,
    username: str = "",
    password: str = "",
    tls: ssl.SSLContext | None = None,
) -> tuple[dict[str, Any], Fleet]:
    """Run a fleet to completion; its JSON report and the fleet (per-device counts in ``fleet.stats``).
    ``tls``: connect over TLS with this (verifying) context."""
    fleet = Fleet(cfg, host, port, username=username, password=password, tls=tls)
    report = asyncio.run(fleet.run())
    return report, fleet
