"""The frame both stages (detectors/service.py, alerts/service.py) put around their engine.

A stage takes a raw Kafka record, decodes it (``tocsin.schemas.records``), skips a redelivery whose effect
its state already holds (the state remembers the last (partition, offset) it includes), runs its
engine and counts what the engine's state caps refused. These pieces were written twice; they live
here, below both stages (docs/architecture.md: schemas is the bottom layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tocsin.schemas.records import PoisonRecord

T = TypeVar("T")


def replayed(stored: list[int] | None, position: tuple[int, ...] | None) -> bool:
    """True when the record at ``position`` (partition, offset) is at or before what the state
    ``stored`` (its remembered position) already includes. A key's records stay in one partition.

    A reading of a batch record (schemas/batch.py) has a third part, its index in the batch: the
    readings of one record are ordered by it, so the second reading of a device in a batch is not
    taken for a replay of the first. A position without an index is a whole record."""
    if position is None or stored is None or stored[0] != position[0]:
        return False
    if stored[1] != position[1]:
        return stored[1] > position[1]
    return (stored[2] if len(stored) > 2 else _WHOLE) >= (position[2] if len(position) > 2 else _WHOLE)


_WHOLE = 1 << 62  # the index of a whole (single-reading) record: past any batch index


class CapCounter:
    """Turns an engine's running ``capped`` totals (reason -> count) into increments of a counter:
    ``inc(reason, n)`` is called with what was added since the last ``update``."""

    def __init__(self, inc: Callable[[str, int], None]) -> None:
        self._inc = inc
        self._seen: dict[str, int] = {}

    def update(self, totals: Mapping[str, int]) -> None:
        if not totals:
            return
        for reason, n in totals.items():
            before = self._seen.get(reason, 0)
            if n != before:
                self._inc(reason, n - before)
                self._seen[reason] = n


def decode_or_skip(
    decode: Callable[[bytes | None], T],
    value: bytes | None,
    on_poison: Callable[[], None],
    log: logging.Logger,
    what: str,
) -> T | None:
    """``decode(value)``, or None after counting (``on_poison``) and logging a poison record. For a
    driver without dead letters (embedded mode); the worker decodes inside its per-record guard."""
    try:
        return decode(value)
    except PoisonRecord as exc:
        on_poison()
        log.error("undecodable %s record skipped: %s", what, exc)
        return None


class LabelCache:
    """A labelled metric's children by label values, resolved once (``labels()`` takes a lock and
    builds a key per call: it showed in the worker's profile once per reading)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child
