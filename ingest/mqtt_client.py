"""paho's MQTT client with its own receive path, for a receiver of many small QoS 1 messages.

paho stays in charge of connecting, subscribing, keep-alive, reconnecting and every packet other than
an incoming QoS 0 or 1 PUBLISH. What this client changes:

- **Reads**: paho reads a packet with several ``recv`` calls (the fixed header a byte at a time, then
  the rest) and one packet per ``select`` round. This client reads the socket in 64 KiB blocks into a
  buffer and splits every complete packet out of it (:func:`split_packets`: memoryview slices, no copy
  of the buffer per packet).
- **PUBLISH, QoS 0 and 1**: with ``on_publish_batch`` set, the PUBLISH packets of one read go to it as
  one list of :class:`Publish` (topic bytes, payload bytes, packet id, QoS), without paho's
  ``MQTTMessage``, property decoding, debug formatting, locks and topic-callback matching. Any other
  packet (CONNACK, SUBACK, PINGRESP, DISCONNECT, QoS 2 flows) is handed to paho's own handler
  unchanged, after the PUBLISH packets that came before it.
- **Oversize PUBLISH** (``max_publish_bytes``, with ``on_oversize``): a QoS 0 or 1 PUBLISH whose
  remaining length exceeds the limit is handed over as :class:`Oversize` (topic, packet id, size,
  its first bytes) as soon as its header is in, and the rest of it is dropped as it arrives: the
  buffer never holds more than the limit plus one read, whatever size a device sent (MQTT allows
  256 MB).
- **PUBACKs**: :meth:`FastClient.ack_many` queues the acknowledgements of many messages as one write,
  on the connection they came on (:attr:`FastClient.connection`) or not at all: a packet id belongs to
  its session, and a session that did not survive a reconnect numbers its messages from 1 again.
- **Malformed packets** (a remaining length over 4 bytes, a PUBLISH whose topic, packet id or
  properties overrun the packet, QoS 3, packet id 0, and any packet paho's handlers refuse as a
  protocol error): the connection is closed (paho reconnects; the broker redelivers what was not
  acknowledged) and ``on_malformed`` is called with the reason.

Written against paho-mqtt 2.x (``_sock_recv``, ``_packet_handle``, ``_in_packet``, ``_packet_queue``,
``_loop_rc_handle`` and ``_sock_close`` are paho's internal hooks; the dependency is pinned below 3).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket as PahoMalformedPacket

log = logging.getLogger(__name__)

READ_BLOCK_BYTES = 65_536
PUBLISH = 0x30
PUBACK = 0x40
CONNACK = 0x20
MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four varint bytes can carry (MQTT 3.1.1 and 5, 2.2.3)."""


class MalformedPacket(ValueError):
    """A packet that breaks the MQTT encoding; the connection it came on cannot be trusted further."""


class Publish(NamedTuple):
    """One incoming PUBLISH of QoS 0 or 1, as the fast path hands it over."""

    topic: bytes
    payload: bytes
    mid: int  # packet id (0 for QoS 0)
    qos: int


class Other(NamedTuple):
    """Any other packet: its first byte and its body (variable header and payload)."""

    command: int
    body: bytes


class Oversize(NamedTuple):
    """A PUBLISH of QoS 0 or 1 larger than the client's limit: reported as soon as its topic and packet
    id are in, its remaining bytes skipped as they arrive (never buffered whole)."""

    topic: bytes
    head: bytes  # the first bytes after the packet id (MQTT 5: the properties, then the payload)
    mid: int
    qos: int
    size: int  # the packet's remaining length (variable header and payload), bytes


Packet = Publish | Other | Oversize

# The PUBACK of every packet id, prebuilt: acknowledging is a lookup and a join.
_PUBACKS = [bytes((PUBACK, 2, mid >> 8, mid & 0xFF)) for mid in range(65_536)]


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int] | None:
    """(value, position after it) of the variable byte integer at ``pos``; None when the bytes
    before ``end`` do not complete it; MalformedPacket when it runs over 4 bytes."""
    value = 0
    mult = 1
    for i in range(4):
        if pos + i >= end:
            return None
        byte = buf[pos + i]
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos + i + 1
        mult *= 128
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def split_packets(
    data: bytes | bytearray, mqtt5: bool, *, fast: bool = True, max_publish: int | None = None
) -> tuple[list[Packet], int]:
    """The complete packets at the start of ``data`` and the number of bytes they take.

    An incomplete packet at the end is left for the next call (its bytes are not counted). With
    ``fast``, PUBLISH packets of QoS 0 and 1 come back as :class:`Publish`, everything else as
    :class:`Other`; without it every packet is :class:`Other`. MalformedPacket when a packet breaks
    the encoding (the packets before it are lost with the connection: they are not acknowledged).

    ``max_publish`` (with ``fast``): a QoS 0 or 1 PUBLISH whose remaining length exceeds it comes back
    as :class:`Oversize` once its topic and packet id are in ``data``, and counts whole: the number
    returned may then pass ``len(data)``, by the bytes of it still to come (the caller skips them)."""
    buf = memoryview(data)
    end = len(buf)
    pos = 0
    out: list[Packet] = []
    append = out.append
    try:
        while pos < end:
            head = buf[pos]
            if pos + 1 < end and not buf[pos + 1] & 0x80:  # the common case: a one-byte remaining length
                length, body = buf[pos + 1], pos + 2
            else:
                got = _varint(buf, pos + 1, end)
                if got is None:
                    break
                length, body = got
            stop = body + length
            if max_publish is not None and length > max_publish and fast and head & 0xF0 == PUBLISH:
                if head & 0x06 != 0x04:  # QoS 2 goes to paho, whatever its size
                    big = _oversize(buf, head, body, min(end, stop), length)
                    if big is None:  # its topic and packet id are still to come
                        break
                    append(big)
                    pos = stop
                    continue
            if stop > end:
                break
            if fast and head & 0xF0 == PUBLISH and head & 0x06 != 0x04:
                qos = (head >> 1) & 0x03
                if qos == 3:
                    raise MalformedPacket("PUBLISH with QoS 3")
                if length < 2:
                    raise MalformedPacket("PUBLISH shorter than its topic length")
                topic_end = body + 2 + (buf[body] << 8 | buf[body + 1])
                p = topic_end
                mid = 0
                if qos:
                    p += 2
                    if p > stop:
                        raise MalformedPacket("PUBLISH packet id beyond the packet")
                    mid = buf[topic_end] << 8 | buf[topic_end + 1]
                    if mid == 0:
                        raise MalformedPacket("PUBLISH with packet id 0")
                elif topic_end > stop:
                    raise MalformedPacket("PUBLISH topic beyond the packet")
                if mqtt5:
                    if p >= stop:
                        raise MalformedPacket("PUBLISH without its property length")
                    if buf[p] & 0x80:
                        got = _varint(buf, p, stop)
                        if got is None:
                            raise MalformedPacket("PUBLISH property length beyond the packet")
                        plen, p = got
                    else:
                        plen, p = buf[p], p + 1
                    p += plen
                    if p > stop:
                        raise MalformedPacket("PUBLISH properties beyond the packet")
                append(Publish(bytes(buf[body + 2 : topic_end]), bytes(buf[p:stop]), mid, qos))
            else:
                append(Other(head, bytes(buf[body:stop])))
            pos = stop
    finally:
        buf.release()
    return out, pos


OVERSIZE_HEAD_BYTES = 4_096
"""The first bytes of an oversize PUBLISH kept for its dead letter."""


def _oversize(buf: memoryview, head: int, body: int, end: int, length: int) -> Oversize | None:
    """The :class:`Oversize` of the PUBLISH whose body starts at ``body`` (``end``: the bytes of it
    in the buffer); None until its topic and packet id are in."""
    qos = (head >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    if body + 2 > end:
        return None
    topic_end = body + 2 + (buf[body] << 8 | buf[body + 1])
    p = topic_end + (2 if qos else 0)
    if p > body + length:
        raise MalformedPacket("PUBLISH topic or packet id beyond the packet")
    if p > end:
        return None
    mid = buf[topic_end] << 8 | buf[topic_end + 1] if qos else 0
    if qos and mid == 0:
        raise MalformedPacket("PUBLISH with packet id 0")
    return Oversize(
        bytes(buf[body + 2 : topic_end]), bytes(buf[p : min(end, p + OVERSIZE_HEAD_BYTES)]), mid, qos, length
    )


def pubacks(mids: list[int]) -> bytes:
    """The PUBACK packets (success, the 2-byte form both MQTT 3.1.1 and 5 accept) of ``mids``."""
    return b"".join([_PUBACKS[m] for m in mids])


class FastClient(mqtt.Client):
    """paho's client with the receive path above. Without ``on_publish_batch`` every packet, PUBLISH
    included, goes to paho's handlers (``on_message``) as with a plain client, still read in blocks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._mqtt5 = kwargs.get("protocol") == mqtt.MQTTv5
        self.on_publish_batch: Callable[[list[Publish]], None] | None = None
        self.on_malformed: Callable[[str], None] | None = None
        # With ``on_publish_batch``: a QoS 0/1 PUBLISH whose remaining length exceeds this goes to
        # ``on_oversize`` (in its place among the packets) and is never buffered whole.
        self.max_publish_bytes: int | None = None
        self.on_oversize: Callable[[Oversize], None] | None = None
        self._skip = 0  # bytes of an oversize PUBLISH still to come, to be dropped
        # held while an acknowledgement is queued and while the socket closes: paho's reconnect clears
        # its queue after closing, so a PUBACK is either on its own connection's queue or dropped
        self._ack_lock = threading.RLock()

    @property
    def connection(self) -> object | None:
        """The current connection (an opaque token, None between connections), for :meth:`ack_many`."""
        return self._sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read what the socket has (one block) and handle every complete packet in the buffer."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = self._sock_recv(READ_BLOCK_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            log.warning("MQTT socket read failed: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        buf = self._rbuf
        if self._skip:  # the rest of an oversize PUBLISH
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            buf += memoryview(data)[dropped:]
        else:
            buf += data
        on_batch = self.on_publish_batch
        limit = self.max_publish_bytes if on_batch is not None and self.on_oversize is not None else None
        try:
            packets, used = split_packets(buf, self._mqtt5, fast=on_batch is not None, max_publish=limit)
        except MalformedPacket as exc:
            log.error("malformed MQTT packet from the broker (%s): closing the connection", exc)
            if self.on_malformed is not None:
                self.on_malformed(str(exc))
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
        if used > len(buf):
            self._skip = used - len(buf)
            used = len(buf)
        del buf[:used]
        now = mqtt.time_func()  # the keep-alive sees the bytes received
        with self._msgtime_mutex:
            self._last_bytes_received = now
        batch: list[Publish] = []
        for packet in packets:
            if type(packet) is Publish:
                batch.append(packet)
                continue
            if batch:
                assert on_batch is not None
                on_batch(batch)
                batch = []
            if type(packet) is Oversize:
                assert self.on_oversize is not None
                self.on_oversize(packet)
                continue
            rc = self._paho_handle(packet)
            if rc:
                return self._loop_rc_handle(rc)
            if self._sock is None:  # paho closed the connection (e.g. a DISCONNECT from the broker)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if batch:
            assert on_batch is not None
            on_batch(batch)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _paho_handle(self, packet: Packet) -> MQTTErrorCode:
        """One packet through paho's own handler, as its ``_packet_read`` hands it over."""
        assert isinstance(packet, Other)
        self._in_packet = {
            "command": packet.command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(packet.body),
            "packet": bytearray(packet.body),
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
            if rc == MQTTErrorCode.MQTT_ERR_PROTOCOL and packet.command & 0xF0 != CONNACK:
                # paho refuses it without an exception (a reserved or unhandled packet type, a PINGRESP
                # with a body, a PUBLISH of QoS 3): as malformed as any packet above
                raise PahoMalformedPacket(f"packet type 0x{packet.command:02x} refused by paho")
        except PahoMalformedPacket as exc:
            log.error("malformed MQTT packet from the broker (%s): closing the connection", exc)
            if self.on_malformed is not None:
                self.on_malformed(str(exc))
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            self._in_packet = {
                "command": 0,
                "have_remaining": 0,
                "remaining_count": [],
                "remaining_mult": 1,
                "remaining_length": 0,
                "packet": bytearray(b""),
                "to_process": 0,
                "pos": 0,
            }
        return rc

    def ack_many(self, mids: list[int], connection: object | None = None) -> None:
        """Acknowledge QoS 1 messages in one queued write; any thread. ``connection``: the
        :attr:`connection` they came on; when that one is gone the acknowledgements are dropped (the
        broker redelivers what a surviving session left unacknowledged). None: the current one."""
        with self._ack_lock:
            sock = self._sock
            if mids and sock is not None and (connection is None or connection is sock):
                self._packet_queue(PUBACK, pubacks(mids), 0, 0)

    def _sock_close(self) -> None:
        with self._ack_lock:
            self._rbuf.clear()  # bytes of the old connection never reach the next one
            self._skip = 0
            super()._sock_close()


BufferedClient = FastClient
"""The name of this client before it parsed PUBLISH packets itself (tests, other callers)."""
