"""The gateway's MQTT receive path (ingest/mqtt_client.py): the packet splitter against packets encoded
here from the specification (MQTT 3.1.1 and 5, section 2.2 fixed header, 3.3 PUBLISH), fed in pieces
cut anywhere; malformed input ends in MalformedPacket (and on a socket in a closed connection and
``on_malformed``), never in a hang or another exception."""

from __future__ import annotations

import socket
import struct

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt._packet import decode_publish
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket as PahoMalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tocsin.ingest.mqtt_client import (
    MAX_REMAINING_LENGTH,
    READ_BLOCK_BYTES,
    FastClient,
    MalformedPacket,
    Other,
    Oversize,
    Packet,
    Publish,
    _varint,
    pubacks,
    split_packets,
)


def varint(n: int) -> bytes:
    """MQTT variable byte integer (spec 1.5.5): 7 bits a byte, least significant first."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_body(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes, mqtt5: bool) -> bytes:
    """Variable header (topic, packet id for QoS > 0, MQTT 5 properties) and payload (spec 3.3.2)."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if mqtt5:
        body += varint(len(props)) + props
    return body + payload


def publish(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes, mqtt5: bool, flags: int = 0) -> bytes:
    body = publish_body(topic, payload, qos, mid, props, mqtt5)
    return bytes([0x30 | qos << 1 | flags]) + varint(len(body)) + body


# Spec table 2.2.3 (MQTT 3.1.1) / 1.5.5 (MQTT 5): the boundaries of 1 to 4 bytes.
VARINT_GOLDEN = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINT_GOLDEN)
def test_remaining_length_golden_values(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded
    assert _varint(memoryview(encoded), 0, len(encoded)) == (value, len(encoded))
    assert _varint(memoryview(encoded), 0, len(encoded) - 1) is None  # one byte short: incomplete
    assert value <= MAX_REMAINING_LENGTH


def test_a_fifth_remaining_length_byte_is_malformed() -> None:
    with pytest.raises(MalformedPacket):
        split_packets(b"\x30\xff\xff\xff\xff\x01", mqtt5=True)


def test_a_packet_of_the_largest_length_waits_for_its_bytes() -> None:
    head = bytes([0x32]) + varint(MAX_REMAINING_LENGTH) + b"\x00\x01a\x00\x01\x00"
    assert split_packets(head + b"x" * 1000, mqtt5=True) == ([], 0)


def test_puback_bytes() -> None:
    # PUBACK: 0x40, remaining length 2, packet id big-endian (spec 3.4)
    assert pubacks([1, 258, 65_535]) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    assert pubacks([]) == b""


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
        (b"\x32\x04\x00\x01a\x00", "packet id beyond the packet"),
        (b"\x30\x03\x00\x05a", "topic beyond the packet"),
        (b"\x30\x01\x00", "shorter than its topic length"),
        (b"\x30\x03\x00\x01a", "without its property length"),
        (b"\x30\x05\x00\x01a\x09b", "properties beyond the packet"),
        (b"\x30\x07\x00\x01a\xff\xff\xff\xff", "property length"),
    ],
)
def test_malformed_publish(data: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket):
        split_packets(data, mqtt5=True)


def test_qos0_publish_311_has_no_property_length() -> None:
    data = publish(b"t/1", b'{"a":1}', 0, 0, b"", mqtt5=False)
    assert split_packets(data, mqtt5=False) == ([Publish(b"t/1", b'{"a":1}', 0, 0)], len(data))


_props = st.one_of(
    st.just(b""),
    st.binary(max_size=40).map(lambda b: b"\x23\x00\x01" + b),  # topic alias, then anything (opaque)
    st.binary(min_size=130, max_size=300),  # a 2-byte property length
)
_publish = st.tuples(
    st.binary(min_size=1, max_size=80),
    st.binary(max_size=600),
    st.sampled_from([0, 1, 2]),
    st.integers(1, 65_535),
    _props,
    st.sampled_from([0, 1, 8, 9]),  # retain and dup flags
)
_other = st.sampled_from(
    [
        b"\xd0\x00",  # PINGRESP
        b"\x90\x03\x00\x07\x01",  # SUBACK
        b"\x62\x02\x00\x05",  # PUBREL
        b"\x20\x03\x00\x00\x00",  # CONNACK (MQTT 5, no properties)
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.one_of(_publish, _other), max_size=25),
    mqtt5=st.booleans(),
    cuts=st.lists(st.integers(0, 20_000), max_size=12),
    fast=st.booleans(),
)
def test_any_stream_cut_anywhere_gives_every_packet_once_in_order(
    items: list[object], mqtt5: bool, cuts: list[int], fast: bool
) -> None:
    stream = b""
    expected: list[object] = []
    for item in items:
        if isinstance(item, bytes):
            stream += item
            expected.append(Other(item[0], item[2:]))
            continue
        assert isinstance(item, tuple)
        topic, payload, qos, mid, props, flags = item
        if not mqtt5:
            props = b""
        mid = mid if qos else 0
        stream += publish(topic, payload, qos, mid, props, mqtt5, flags)
        if fast and qos < 2:
            expected.append(Publish(topic, payload, mid, qos))
        else:  # QoS 2, or no fast path: paho gets the packet as it came
            expected.append(Other(0x30 | qos << 1 | flags, publish_body(topic, payload, qos, mid, props, mqtt5)))
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    buf = bytearray()
    got: list[object] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        buf += stream[a:b]
        packets, used = split_packets(buf, mqtt5, fast=fast)
        got += packets
        del buf[:used]
    assert got == expected
    assert not buf


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300), mqtt5=st.booleans())
def test_garbage_ends_in_packets_or_malformed_never_anything_else(data: bytes, mqtt5: bool) -> None:
    try:
        packets, used = split_packets(data, mqtt5)
    except MalformedPacket:
        return
    assert 0 <= used <= len(data)
    assert len(packets) <= len(data) // 2


def test_a_malformed_packet_on_the_socket_closes_the_connection_and_is_reported() -> None:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="parser-test", protocol=mqtt.MQTTv5, manual_ack=True)
    reasons: list[str] = []
    batches: list[list[Publish]] = []
    client.on_malformed = reasons.append
    client.on_publish_batch = batches.append
    ours, broker = socket.socketpair()
    try:
        ours.setblocking(False)
        client._sock = ours  # noqa: SLF001 - the socket paho would have connected
        broker.sendall(publish(b"t", b"ok", 1, 3, b"", True) + b"\x36\x05\x00\x01a\x00\x01")
        rc = client.loop_read()
        assert rc == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert client._sock is None  # noqa: SLF001 - closed: paho reconnects, the broker redelivers
        assert reasons == ["PUBLISH with QoS 3"]
        assert batches == []  # nothing before the bad packet is handed on (or acknowledged)
        assert broker.recv(10) == b""  # the peer sees the close
    finally:
        broker.close()
        if client._sock is not None:  # noqa: SLF001
            ours.close()


def _socket_client(fast: bool) -> tuple[FastClient, socket.socket, socket.socket, list[str], list[list[Publish]]]:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="parser-test", protocol=mqtt.MQTTv5, manual_ack=True)
    reasons: list[str] = []
    batches: list[list[Publish]] = []
    client.on_malformed = reasons.append
    if fast:
        client.on_publish_batch = batches.append
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours  # noqa: SLF001 - the socket paho would have connected
    return client, ours, broker, reasons, batches


@pytest.mark.parametrize(
    ("data", "fast"),
    [
        (b"\x00\x00", True),  # packet type 0 (reserved)
        (b"\xf0\x00", True),  # AUTH: paho has no handler for it
        (b"\xd0\x01\x00", True),  # PINGRESP with a body
        (b"\x36\x06\x00\x01a\x00\x01\x00", False),  # QoS 3 on paho's own path (no on_publish_batch)
    ],
    ids=["reserved-type", "auth", "pingresp-with-body", "qos3-paho-path"],
)
def test_a_packet_paho_refuses_is_counted_like_a_malformed_one(data: bytes, fast: bool) -> None:
    """paho answers these with a protocol error (no exception): the connection closes as for any malformed
    packet, and ``on_malformed`` (the gateway's counter) hears of it."""
    client, ours, broker, reasons, batches = _socket_client(fast)
    try:
        broker.sendall(publish(b"t", b"ok", 1, 3, b"", True) + data)
        rc = client.loop_read()
        assert rc == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert client._sock is None  # noqa: SLF001
        assert len(reasons) == 1 and reasons[0]
        assert broker.recv(10) == b""
    finally:
        broker.close()
        if client._sock is not None:  # noqa: SLF001
            ours.close()


# ------------------------------------------------------------------ against paho's own encoder and decoder
def _paho_frames(mqtt5: bool, items: list[tuple[str, bytes, int, int, bool, bool, Properties | None]]) -> bytes:
    """The PUBLISH packets paho itself writes for ``items`` (its ``_send_publish``, the queue captured)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
    out: list[bytes] = []
    client._sock = object()  # type: ignore[assignment]  # noqa: SLF001 - "connected": paho encodes

    def capture(_cmd: int, packet: bytes | bytearray, *_a: object, **_k: object) -> MQTTErrorCode:
        out.append(bytes(packet))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._packet_queue = capture  # type: ignore[method-assign,assignment]  # noqa: SLF001
    for topic, payload, qos, mid, retain, dup, props in items:
        client._send_publish(mid, topic.encode(), payload, qos, retain, dup, properties=props)  # noqa: SLF001
    client._sock = None  # noqa: SLF001
    return b"".join(out)


def _paho_props(draw_kind: int, n: int) -> Properties | None:
    if draw_kind == 0:
        return None
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [(f"k{i}", "v" * (i * 7 % 200)) for i in range(n)]
    if draw_kind == 2:
        p.ContentType = "application/json"
        p.MessageExpiryInterval = 3600
        p.CorrelationData = bytes(range(n % 256))
        p.PayloadFormatIndicator = 1
    return p


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00+#"), min_size=1, max_size=60),
            st.binary(max_size=2_000),
            st.sampled_from([0, 1]),
            st.integers(1, 65_535),
            st.booleans(),
            st.booleans(),
            st.tuples(st.integers(0, 2), st.integers(0, 40)),
        ),
        min_size=1,
        max_size=20,
    ),
    mqtt5=st.booleans(),
    cuts=st.lists(st.integers(0, 50_000), max_size=15),
)
def test_what_paho_encodes_parses_to_what_was_published(
    items: list[tuple[str, bytes, int, int, bool, bool, tuple[int, int]]], mqtt5: bool, cuts: list[int]
) -> None:
    """PUBLISH packets as paho writes them (MQTT 3.1.1 and 5, with and without properties, retain and
    dup, 1- to 3-byte remaining lengths), fed cut anywhere: the same topic, payload, packet id and QoS,
    once each and in order; and paho's own decoder reads each packet the same way."""
    rows = [(t, pl, q, mid, r, d, _paho_props(*k) if mqtt5 else None) for t, pl, q, mid, r, d, k in items]
    stream = _paho_frames(mqtt5, rows)
    expected = [Publish(t.encode(), pl, mid if q else 0, q) for t, pl, q, mid, _r, _d, _p in rows]
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    buf = bytearray()
    got: list[Packet] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        buf += stream[a:b]
        packets, used = split_packets(buf, mqtt5)
        got += packets
        del buf[:used]
    assert got == expected and not buf
    raw, _ = split_packets(stream, mqtt5, fast=False)
    for other, want in zip(raw, expected, strict=True):
        assert isinstance(other, Other)
        paho = decode_publish(other.command, other.body, mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
        assert (paho.topic, bytes(paho.payload), paho.mid, paho.qos) == tuple(want)


def _reference_publish(body: bytes, qos: int, mqtt5: bool) -> Publish | None:
    """A PUBLISH body read field by field as MQTT 3.3 lays it out (None: it breaks the layout)."""
    if qos == 3 or len(body) < 2:
        return None
    at = 2 + (body[0] << 8 | body[1])
    if at > len(body):
        return None
    topic, mid = body[2:at], 0
    if qos:
        if at + 2 > len(body) or body[at : at + 2] == b"\x00\x00":
            return None
        mid, at = body[at] << 8 | body[at + 1], at + 2
    if mqtt5:
        try:
            got = _varint(memoryview(body), at, len(body))
        except MalformedPacket:
            return None
        if got is None or got[1] + got[0] > len(body):
            return None
        at = got[1] + got[0]
    return Publish(topic, body[at:], mid, qos)


def _properties_fit(body: bytes, qos: int) -> bool:
    """Whether an MQTT 5 PUBLISH body's property length stays inside it (paho reads a property list that
    runs over the packet without complaint; this parser refuses it)."""
    at = 2 + (body[0] << 8 | body[1]) + (2 if qos else 0)
    got = _varint(memoryview(body), at, len(body))
    return got is not None and got[1] + got[0] <= len(body)


def _near_miss_body(parts: tuple[bytes, int, bytes, int, int, bytes, int]) -> bytes:
    """A PUBLISH body whose length fields are right or a few bytes off, cut anywhere."""
    topic, topic_off, mid, props_len_off, props_n, payload, cut = parts
    props = b"\x26\x00\x01k\x00\x01v" * props_n
    body = struct.pack("!H", max(0, len(topic) + topic_off)) + topic + mid
    body += varint(max(0, len(props) + props_len_off)) + props + payload
    return body[: len(body) - cut]


_bodies = st.one_of(
    st.binary(max_size=80),
    st.tuples(
        st.binary(max_size=20),
        st.integers(-3, 3),
        st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x00\x07", b"\xff\xff"]),
        st.integers(-3, 3),
        st.integers(0, 20),
        st.binary(max_size=20),
        st.integers(0, 4),
    ).map(_near_miss_body),
)


@settings(max_examples=2_000, deadline=None)
@given(flags=st.integers(0, 15), body=_bodies, mqtt5=st.booleans())
def test_any_publish_body_reads_as_paho_reads_it_or_is_refused(flags: int, body: bytes, mqtt5: bool) -> None:
    """Any bytes as the body of a PUBLISH: where paho's decoder and this parser both accept it, they read
    the same topic, payload, packet id and QoS; where paho accepts a QoS 0 or 1 packet with a packet id
    this parser accepts it too. This parser may refuse more (packet id 0, QoS 3, a property list that
    runs over the packet, which paho reads without complaint) and reads MQTT 5 properties as opaque
    bytes (so it takes some property lists paho refuses: the gateway ignores them)."""
    head = 0x30 | flags
    frame = bytes([head]) + varint(len(body)) + body
    qos = (flags >> 1) & 3
    protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
    try:
        paho = decode_publish(head, body, protocol)
    except PahoMalformedPacket:
        paho = None
    try:
        packets, used = split_packets(frame, mqtt5)
    except MalformedPacket:
        packets = None
    if qos == 2:  # handed to paho unchanged
        assert packets == [Other(head, body)] and used == len(frame)
        return
    assert (packets[0] if packets else None) == _reference_publish(body, qos, mqtt5)
    if packets is not None and paho is not None:
        [ours] = packets
        assert (paho.topic, bytes(paho.payload), paho.mid, paho.qos) == tuple(ours)
    if paho is not None and qos < 2 and (qos == 0 or paho.mid != 0) and (mqtt5 or paho.topic):
        assert packets is not None or (mqtt5 and not _properties_fit(body, qos))
    if packets is not None and paho is None:  # paho refuses what this parser takes: only these two
        [ours] = packets
        assert isinstance(ours, Publish)
        assert mqtt5 or ours.topic == b""  # MQTT 5 property contents; an empty topic (a BAD_TOPIC dead letter)


def test_an_acknowledgement_of_an_old_connection_never_reaches_the_next_one() -> None:
    """A packet id belongs to its session: when the broker's session is gone (expired, or a broker that
    lost its state), the next connection numbers its messages from the start again, and a late PUBACK
    for a message of the old connection (its Kafka write acknowledged only now) would acknowledge
    another message before Kafka has it. Acks tagged with their connection go out on that connection
    only; the broker redelivers what the old connection did not acknowledge."""
    client, ours, broker, _reasons, batches = _socket_client(True)
    old = client.connection
    broker.sendall(publish(b"t", b"a", 1, 5, b"", True))
    client.loop_read()
    assert batches == [[Publish(b"t", b"a", 5, 1)]]
    client.ack_many([5], old)  # acknowledged while its connection lives: sent
    client.loop_write()
    assert broker.recv(100) == pubacks([5])
    client.loop_read()  # nothing more yet
    client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)  # noqa: SLF001 - the connection drops
    broker.close()
    ours2, broker2 = socket.socketpair()
    try:
        ours2.setblocking(False)
        client._sock = ours2  # noqa: SLF001 - paho reconnected
        assert client.connection is not old
        client.ack_many([6], old)  # the old connection's message: not on this one
        client.ack_many([7], client.connection)
        client.loop_write()
        broker2.setblocking(False)
        assert broker2.recv(100) == pubacks([7])
    finally:
        broker2.close()
        ours2.close()


# ------------------------------------------------------------------ oversize PUBLISH: bounded memory
def test_an_oversize_publish_is_reported_once_and_its_bytes_skipped_as_they_come() -> None:
    """A PUBLISH larger than the limit is not buffered whole: once its topic and packet id are in, it
    comes out as :class:`Oversize` (topic, packet id, size, the first bytes of the rest) and the rest of
    it is skipped as it arrives, read after read; the packets after it parse as usual. The buffer never
    holds more than the limit plus one read."""
    limit = 10_000
    client, ours, broker, reasons, batches = _socket_client(True)
    big: list[Oversize] = []
    client.max_publish_bytes = limit
    client.on_oversize = big.append
    payload = bytes(range(256)) * 4_000  # 1,024,000 bytes
    frame = publish(b"tocsin/v1/hydro/qs/RG01/telemetry", payload, 1, 9, b"", True)
    stream = publish(b"t", b"before", 1, 8, b"", True) + frame + publish(b"t", b"after", 1, 10, b"", True)
    try:
        biggest = 0
        for at in range(0, len(stream), 50_000):
            broker.sendall(stream[at : at + 50_000])
            for _ in range(2):  # a read takes up to 64 KiB
                assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
                biggest = max(biggest, len(client._rbuf))  # noqa: SLF001
        assert reasons == []
        assert [p for b in batches for p in b] == [Publish(b"t", b"before", 8, 1), Publish(b"t", b"after", 10, 1)]
        [o] = big
        assert (o.topic, o.mid, o.qos) == (b"tocsin/v1/hydro/qs/RG01/telemetry", 9, 1)
        assert o.size == len(publish_body(o.topic, payload, 1, 9, b"", True))  # the remaining length
        assert 0 < len(o.head) <= limit and payload.startswith(o.head[1:])  # MQTT 5: property length first
        assert biggest <= limit + READ_BLOCK_BYTES
    finally:
        broker.close()
        if client._sock is not None:  # noqa: SLF001
            ours.close()


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3_000), min_size=1, max_size=8),
    mqtt5=st.booleans(),
    cuts=st.lists(st.integers(0, 30_000), max_size=10),
    limit=st.integers(0, 2_000),
)
def test_with_a_limit_every_packet_comes_out_once_whole_or_oversize(
    sizes: list[int], mqtt5: bool, cuts: list[int], limit: int
) -> None:
    """Packets around the limit, cut anywhere: those within it parse whole, the others come out as
    :class:`Oversize`, each once and in order, and the bytes of an oversize packet are skipped exactly
    (the next packet is read from its first byte)."""
    frames = [publish(b"a/b", bytes([i % 251]) * n, 1, i + 1, b"", mqtt5) for i, n in enumerate(sizes)]
    stream = b"".join(frames)
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    buf, skip, got = bytearray(), 0, []
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = stream[a:b]
        dropped = min(skip, len(piece))
        skip -= dropped
        buf += piece[dropped:]
        packets, used = split_packets(buf, mqtt5, max_publish=limit)
        got += packets
        skip += max(0, used - len(buf))
        del buf[:used]
    assert not buf and skip == 0
    want = []
    for i, n in enumerate(sizes):
        length = len(publish_body(b"a/b", bytes([i % 251]) * n, 1, i + 1, b"", mqtt5))
        if length > limit:
            want.append(("big", i + 1, length))
        else:
            want.append(("whole", i + 1, n))
    assert [
        ("big", p.mid, p.size) if isinstance(p, Oversize) else ("whole", p.mid, len(p.payload))  # type: ignore[union-attr]
        for p in got
    ] == want
