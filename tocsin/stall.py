"""Stalled partitions of the worker's consumer: which ones to seek back to their committed offset.

A partition is stalled when its committed offset has not moved for ``stall_s`` while records wait
past it (its end offset is beyond the committed one) and no record of it is being handled. A worker
that keeps up commits every few seconds, and one that is merely behind handles some of the
partition's records all the while (they are in flight: not stalled); a stalled one would wait
forever, since nothing it has fetched will ever be handled. Seeking it to its committed offset
fetches those records again: those already handled are skipped by the stages' replay guards
(detectors/service.py, alerts/service.py) and the deliveries' idempotency keys.

Pure: no Faust, no Kafka, no clock of its own (tocsin/worker.py feeds it).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass
class StallWatch(Generic[P]):
    """``observe`` once per check; it returns the partitions to seek back (each at most once per
    ``stall_s``). ``stall_s`` 0 turns the watch off."""

    stall_s: float
    _since: dict[P, tuple[int, float]] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every partition (after a rebalance: offsets and assignment start afresh)."""
        self._since.clear()

    def observe(
        self, now: float, committed: Mapping[P, int | None], ends: Mapping[P, int | None], busy: Iterable[P]
    ) -> list[P]:
        """``committed``: each assigned partition's committed offset (None: none yet); ``ends``: its
        end offset as last seen (None: unknown); ``busy``: partitions with a record in flight."""
        if self.stall_s <= 0:
            return []
        in_flight = set(busy)
        stalled: list[P] = []
        for tp in list(self._since):
            if tp not in committed:
                del self._since[tp]  # no longer assigned
        for tp, offset in committed.items():
            end = ends.get(tp)
            if offset is None or end is None or end <= offset or tp in in_flight:
                self._since.pop(tp, None)  # caught up, unknown, or progressing
                continue
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset:
                self._since[tp] = (offset, now)  # the committed offset moved: start the clock again
            elif now - seen[1] >= self.stall_s:
                stalled.append(tp)
                self._since[tp] = (offset, now)  # give the seek a full period before the next one
        return stalled
