"""In-process bus for embedded mode: the same topic names as Kafka, carried by asyncio queues.

Records are (topic, key, value, headers) with the same bytes and headers as on Kafka (the gateway's
correlation id and receive time travel as headers there too), so the stages cannot tell the
difference. Unbounded queues are fine here: embedded mode is a demo and development tool.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tocsin.ingest.sinks import Done

Headers = tuple[tuple[str, bytes], ...]
Record = tuple[str, bytes | None, bytes, Headers]


class MemoryBus:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._subs: dict[str, list[asyncio.Queue[Record]]] = {}
        self.counts: Counter[str] = Counter()
        self.pending = 0  # records published but not yet marked done by their consumer

    def subscribe(self, *topics: str) -> asyncio.Queue[Record]:
        q: asyncio.Queue[Record] = asyncio.Queue()
        for t in topics:
            self._subs.setdefault(t, []).append(q)
        return q

    def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Call from the loop's thread."""
        self.counts[topic] += 1
        carried: Headers = tuple(headers or ())
        for q in self._subs.get(topic, []):
            self.pending += 1
            q.put_nowait((topic, key, value, carried))

    def done(self) -> None:
        self.pending -= 1

    async def idle(self, settle_s: float = 0.3, timeout_s: float = 60.0) -> bool:
        """Wait until nothing has been pending for ``settle_s``; False on timeout."""
        deadline = self.loop.time() + timeout_s
        quiet_since = None
        while self.loop.time() < deadline:
            if self.pending == 0:
                quiet_since = quiet_since or self.loop.time()
                if self.loop.time() - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            await asyncio.sleep(0.05)
        return False


class MemorySink:
    """RecordSink for the gateway in embedded mode (called from paho's thread); carries headers like
    the Kafka sink (the record timestamp is already in the gateway's ``tocsin-received-ms`` header)."""

    accepts_headers = True

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        def publish() -> None:
            self.bus.publish(topic, key, value, headers)
            on_done(None)

        self.bus.loop.call_soon_threadsafe(publish)

    def flush(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None
