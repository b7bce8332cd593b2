"""paho's MQTT client with buffered socket reads, for a receiver of many small messages.

paho reads a packet with several ``recv`` calls (the fixed header a byte at a time, then the rest)
and reads one packet per ``select`` round; at thousands of QoS 1 messages a second those system
calls cost more than the gateway's own work on a message. This client reads the socket in 64 KiB
blocks into a buffer and parses every complete packet in the buffer before going back to
``select``. paho's packet state machine is unchanged: it still asks for the bytes it needs and
accepts fewer than it asked for, exactly as from a socket.

Written against paho-mqtt 2.1 (``_sock_recv``, ``loop_read`` and ``_sock_close`` are paho's
internal hooks; the dependency is pinned below 3).
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_BLOCK_BYTES = 65_536


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        if len(buf) < bufsize:
            try:
                data = super()._sock_recv(max(bufsize, READ_BLOCK_BYTES))
            except BlockingIOError:
                if not buf:
                    raise
                data = b""
            else:
                if not data and not buf:
                    return b""  # connection closed by the peer
            buf += data
        out = bytes(buf[:bufsize])
        del buf[:bufsize]
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's ``loop_read``, repeated while whole packets wait in the buffer (``select`` would not
        wake up for bytes already read from the socket)."""
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rbuf and self._sock is not None:
            before = len(self._rbuf)
            rc = super().loop_read(max_packets)
            if len(self._rbuf) == before:  # a partial packet: the rest comes with the next read
                break
        return rc

    def _sock_close(self) -> None:
        self._rbuf.clear()  # bytes of the old connection never reach the next one
        super()._sock_close()
