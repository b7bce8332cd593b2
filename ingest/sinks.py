"""Where the gateway puts records: Kafka in production (tocsin/kafka.py ``KafkaSink``), the
in-process bus in embedded mode (tocsin/bus.py ``MemorySink``).

Both call ``on_done(error_or_None)`` exactly once per record, from any thread, once the record is
durable downstream (Kafka: acknowledged by all in-sync replicas).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]
Headers = list[tuple[str, bytes]]


class RecordSink(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Done) -> None: ...

    def flush(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


class HeaderSink(Protocol):
    """A RecordSink that also carries record headers (the correlation id) and the record timestamp
    (the gateway's receive time); the gateway checks ``accepts_headers`` before passing them."""

    accepts_headers: bool

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_done: Done,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None: ...
