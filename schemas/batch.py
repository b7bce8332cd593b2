"""A telemetry Kafka record that carries several readings: the gateway's batch envelope, version 1.

Under load the gateway takes many readings in at once (one socket read of MQTT PUBLISH packets).
It may then write the readings of one read that go to the same Kafka topic and partition as one
record instead of one record each, so that a worker pays its per-record cost (Faust, aiokafka, the
guard) once per batch. The layout is line-framed, so a reader splits it without parsing JSON and
keeps each reading's bytes exactly as the gateway validated them::

    tocsin.batch.v1\\n
    <reading 1: its canonical JSON, as a single record would hold it>\\n
    <reading 2>\\n
    ...

A reading's JSON never holds a raw newline (JSON escapes control characters in strings; ``pack``
refuses one anyway), and a single-reading record starts with ``{``, so the first bytes tell the two
apart. A record is bounded: at most :data:`BATCH_MAX_READINGS` readings and :data:`BATCH_MAX_BYTES`
bytes, well inside Kafka's default 1 MiB record limit.

Each reading of a batch is decoded, validated, deduplicated (device, seq, device time) and, when it
fails, dead-lettered on its own (its bytes and its index in the batch): one bad reading never drops
its neighbours. A record that is not a well-formed envelope (over the bounds, no reading) is refused
as a whole with :class:`~tocsin.schemas.records.PoisonRecord` and dead-lettered with its bytes.

All the readings of one batch record share a topic and a partition, which is the partition each
reading's own key (its device id) maps to; so a device's readings stay in order in one partition
whether they travel alone or in batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from tocsin.schemas.deadletter import WorkerReason
from tocsin.schemas.records import PoisonRecord

BATCH_MAGIC = b"tocsin.batch.v1\n"
"""The first bytes of a batch record: the envelope's name and version, then a newline."""
BATCH_MAX_READINGS = 500
"""At most this many readings in one batch record."""
BATCH_MAX_BYTES = 524_288
"""At most this many bytes in one batch record (envelope included)."""


def is_batch(raw: bytes | None) -> bool:
    """True when ``raw`` is a batch record (it starts with :data:`BATCH_MAGIC`)."""
    return raw is not None and raw.startswith(BATCH_MAGIC)


def pack(readings: Sequence[bytes]) -> bytes:
    """One batch record of ``readings`` (each a reading's JSON bytes). Raises ``ValueError`` for an
    empty list, more than :data:`BATCH_MAX_READINGS` readings, a record over :data:`BATCH_MAX_BYTES`,
    or a reading that is empty or holds a newline."""
    if not readings:
        raise ValueError("a batch record holds at least one reading")
    if len(readings) > BATCH_MAX_READINGS:
        raise ValueError(f"{len(readings)} readings: a batch record holds at most {BATCH_MAX_READINGS}")
    for r in readings:
        if not r or b"\n" in r:
            raise ValueError("a reading in a batch record must be non-empty and hold no newline")
    out = BATCH_MAGIC + b"\n".join(readings) + b"\n"
    if len(out) > BATCH_MAX_BYTES:
        raise ValueError(f"a batch record of {len(out)} bytes: at most {BATCH_MAX_BYTES}")
    return out


def packed_size(readings: Sequence[bytes]) -> int:
    """The size ``pack(readings)`` would have, without building it."""
    return len(BATCH_MAGIC) + sum(len(r) + 1 for r in readings)


def unpack(raw: bytes) -> list[bytes]:
    """The readings' bytes of a batch record (``is_batch(raw)`` is true), in order. An empty line
    comes back as ``b""`` (the reader refuses it as that reading's own poison record). Raises
    :class:`PoisonRecord` (undecodable) when the record is over the bounds, holds no reading or does
    not end with a newline (cut short)."""
    if len(raw) > BATCH_MAX_BYTES:
        raise PoisonRecord(WorkerReason.UNDECODABLE, f"batch record of {len(raw)} bytes: at most {BATCH_MAX_BYTES}")
    body = raw[len(BATCH_MAGIC) :]
    if not body.endswith(b"\n"):
        raise PoisonRecord(WorkerReason.UNDECODABLE, "batch record does not end with a newline (cut short?)")
    readings = body[:-1].split(b"\n")
    if len(readings) > BATCH_MAX_READINGS:
        raise PoisonRecord(
            WorkerReason.UNDECODABLE, f"batch record of {len(readings)} readings: at most {BATCH_MAX_READINGS}"
        )
    return readings


def expand(raw: bytes | None) -> list[bytes | None]:
    """The readings of a telemetry record: the batch's readings, or ``[raw]`` for a single-reading
    (or null) record. Raises :class:`PoisonRecord` as :func:`unpack` does."""
    if is_batch(raw):
        assert raw is not None
        return list(unpack(raw))
    return [raw]
