"""The batch envelope (schemas/batch.py): what ``pack`` writes, ``unpack`` gives back exactly; the
bounds hold; any bytes after the magic give readings or a PoisonRecord, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.schemas.batch import (
    BATCH_MAGIC,
    BATCH_MAX_BYTES,
    BATCH_MAX_READINGS,
    expand,
    is_batch,
    pack,
    packed_size,
    unpack,
)
from tocsin.schemas.deadletter import WorkerReason
from tocsin.schemas.records import PoisonRecord, decode_telemetry
from tocsin.schemas.stage import replayed

# a reading's bytes: anything without a newline, not empty (what a JSON encoder may write)
reading_bytes = st.binary(min_size=1, max_size=300).filter(lambda b: b"\n" not in b)


@settings(max_examples=300, deadline=None)
@given(st.lists(reading_bytes, min_size=1, max_size=40))
def test_pack_then_unpack_gives_the_readings_back(readings: list[bytes]) -> None:
    raw = pack(readings)
    assert is_batch(raw)
    assert len(raw) == packed_size(readings)
    assert unpack(raw) == readings
    assert expand(raw) == readings


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_after_the_magic_give_readings_or_a_poison_record(tail: bytes) -> None:
    raw = BATCH_MAGIC + tail
    try:
        readings = unpack(raw)
    except PoisonRecord as exc:
        assert exc.reason is WorkerReason.UNDECODABLE
        return
    assert 1 <= len(readings) <= BATCH_MAX_READINGS
    assert all(b"\n" not in r for r in readings)
    for r in readings:  # each reading then decodes or is its own poison record
        try:
            decode_telemetry(r)
        except PoisonRecord:
            pass


def test_a_single_reading_record_is_not_a_batch() -> None:
    single = b'{"type":"hazmat.gas","device_id":"G1"}'
    assert not is_batch(single) and not is_batch(None) and not is_batch(b"")
    assert expand(single) == [single] and expand(None) == [None]


def test_pack_refuses_what_the_envelope_cannot_hold() -> None:
    with pytest.raises(ValueError):
        pack([])
    with pytest.raises(ValueError):
        pack([b'{"a":1}\n{"b":2}'])  # a newline inside a reading would split it in two
    with pytest.raises(ValueError):
        pack([b"{}", b""])
    with pytest.raises(ValueError):
        pack([b"{}"] * (BATCH_MAX_READINGS + 1))
    with pytest.raises(ValueError):
        pack([b"x" * BATCH_MAX_BYTES])


def test_unpack_refuses_records_over_the_bounds_or_cut_short() -> None:
    too_many = BATCH_MAGIC + b"{}\n" * (BATCH_MAX_READINGS + 1)
    too_big = BATCH_MAGIC + b"x" * BATCH_MAX_BYTES + b"\n"
    for raw in (too_many, too_big, BATCH_MAGIC, BATCH_MAGIC + b'{"type":"hazmat.gas"}'):
        with pytest.raises(PoisonRecord) as err:
            unpack(raw)
        assert err.value.reason is WorkerReason.UNDECODABLE
    # an empty line is a reading of its own (refused when decoded), not the end of the batch
    assert unpack(BATCH_MAGIC + b"{}\n\n{}\n") == [b"{}", b"", b"{}"]
    with pytest.raises(PoisonRecord):
        decode_telemetry(b"")


def test_readings_of_one_batch_record_are_ordered_by_their_index() -> None:
    assert not replayed([0, 10, 0], (0, 10, 1))  # A's second reading of the batch is new
    assert replayed([0, 10, 1], (0, 10, 1))  # a redelivered batch: the readings already applied
    assert replayed([0, 10, 2], (0, 10, 0))
    assert replayed([0, 11], (0, 10, 5))  # a later single record includes the whole batch before it
    assert not replayed([0, 10, 5], (0, 11))
    assert replayed([0, 10, 5], (0, 9))
    assert not replayed([0, 9], (0, 10, 0))
    assert not replayed([1, 10, 5], (0, 10, 0))  # another partition: offsets do not compare
