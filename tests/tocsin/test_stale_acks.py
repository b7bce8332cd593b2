"""``patch_stale_acks`` (tocsin/worker.py): a record a Faust stream dropped unhandled after a rebalance
is released but its offset is never committed; a record a stream handled is acknowledged as before."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from tocsin.worker import patch_stale_acks

TOPIC = "detections"


def _consumer(generation: int, flowing: bool = True) -> Any:
    """What ``Consumer.ack`` reads of a consumer and its app, as plain objects."""
    app = SimpleNamespace(
        consumer_generation_id=generation,
        topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == TOPIC),
        flow_control=SimpleNamespace(is_active=lambda: flowing),
    )
    return SimpleNamespace(
        app=app,
        _unacked_messages=set(),
        _committed_offset=defaultdict(lambda: None),
        _acked_index=defaultdict(set),
        _acked=defaultdict(list),
        _n_acked=0,
        _waiting_for_ack=None,
    )


def _message(offset: int, generation: int, *, tracked: bool, topic: str = TOPIC) -> ConsumerMessage:
    m = ConsumerMessage(topic, 2, offset, 0.0, 0, [], b"k", b"v", None, generation_id=generation)
    m.tracked = tracked
    return m


def test_a_dropped_record_is_released_not_committed_and_counted() -> None:
    dropped: list[Any] = []
    patch_stale_acks(dropped.append)
    consumer = _consumer(generation=4)
    old = _message(7, generation=3, tracked=False)  # fetched before the rebalance, dropped by the stream
    consumer._unacked_messages.add(old)
    assert Consumer.ack(consumer, old) is False
    assert old.acked and old not in consumer._unacked_messages
    assert dict(consumer._acked) == {} and consumer._n_acked == 0  # nothing to commit
    assert dropped == [old]
    # the same offset fetched again and handled under the new generation: committed as usual
    again = _message(7, generation=4, tracked=True)
    assert Consumer.ack(consumer, again) is True
    assert consumer._acked[TP(TOPIC, 2)] == [7]


def test_records_dropped_while_the_flow_is_suspended_are_not_committed_either() -> None:
    dropped: list[Any] = []
    patch_stale_acks(dropped.append)
    consumer = _consumer(generation=4, flowing=False)
    assert Consumer.ack(consumer, _message(8, generation=4, tracked=False)) is False
    assert dict(consumer._acked) == {} and len(dropped) == 1


def test_handled_records_and_topics_without_acks_are_acknowledged_as_before() -> None:
    dropped: list[Any] = []
    patch_stale_acks(dropped.append)
    consumer = _consumer(generation=4)
    assert Consumer.ack(consumer, _message(9, generation=4, tracked=True)) is True
    assert consumer._acked[TP(TOPIC, 2)] == [9]
    # a topic Faust does not commit offsets for: the original path, nothing counted
    assert Consumer.ack(consumer, _message(1, generation=3, tracked=False, topic="other")) is False
    assert dropped == []
    # patching twice keeps one layer (the original is remembered)
    patch_stale_acks(dropped.append)
    assert Consumer.ack(consumer, _message(10, generation=3, tracked=False)) is False
    assert len(dropped) == 1


def _offsets(committed: int, acked: list[int]) -> Any:
    """What ``Consumer._new_offset`` reads: committed offset, handled offsets, gap tree."""
    from intervaltree import IntervalTree

    tp = TP(TOPIC, 2)
    consumer = SimpleNamespace(
        _committed_offset=defaultdict(lambda: None, {tp: committed}),
        _acked=defaultdict(list, {tp: list(acked)}),
        _acked_index=defaultdict(set, {tp: set(acked)}),
        _gap=defaultdict(IntervalTree),
    )
    return consumer


def test_a_commit_never_moves_past_a_head_record_not_handled() -> None:
    from tocsin.worker import patch_strict_commits

    patch_strict_commits(frozenset({TOPIC}))
    tp = TP(TOPIC, 2)
    # committed 34 (the next record to handle); 35 and 36 handled, 34 not: Faust alone commits 37
    holed = _offsets(34, [35, 36])
    assert Consumer._new_offset(holed, tp) is None
    assert holed._acked[tp] == [35, 36]  # kept: committed once 34 is handled
    holed._acked[tp].append(34)
    assert Consumer._new_offset(holed, tp) == 37
    # no hole: as Faust does
    assert Consumer._new_offset(_offsets(34, [34, 35]), tp) == 36
    # a hole Faust recorded itself (its gap tree) is Faust's business
    gapped = _offsets(34, [35, 36])
    gapped._gap[tp].addi(34, 35)
    assert Consumer._new_offset(gapped, tp) == 37
    # a topic not in the set (a compacted one, say): Faust's own rule, one missing head record let through
    other = TP("alerts.silences", 0)
    lax = _offsets(0, [])
    lax._committed_offset[other], lax._acked[other], lax._acked_index[other] = 34, [35, 36], {35, 36}
    assert Consumer._new_offset(lax, other) == 37
