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
