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
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ingest.mqtt_client import (
    MAX_REMAINING_LENGTH,
    FastClient,
    MalformedPacket,
    Other,
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
