"""Offline (dead-man) detection driven by a wall clock, not by the next message. Pure; state is a dict.

A device registered with a reporting interval is *offline* at ``now_s`` when it has been silent for
more than ``k`` intervals: ``now_s - last_seen > k * interval_s`` (strictly: exactly ``k``
intervals of silence is still online). A registered device that has never reported is judged from
``started_at_s`` (when the watcher started) instead, so a sensor that never comes up is still
caught. Devices without a positive, finite interval are never judged, nor are devices that are not
in ``expected`` (unregistered senders).

``DeadmanState`` turns that into transitions, one per outage: ``tick`` reports ``("offline", dev)``
only when a device becomes offline (not again on later ticks while it stays silent), and ``seen``
reports ``("online", dev)`` when an offline device reports again. Pass arrival (wall-clock) times to
``seen`` so that device clock skew does not matter; ``last_seen`` keeps the latest time given. A
device that leaves ``expected`` while offline is forgotten by the next ``tick`` without a
transition. Transitions within one call are sorted by device id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["DeadmanState", "Transition", "offline_devices"]

Transition = tuple[str, str]  # ("offline" | "online", device_id)


def _judged(interval_s: float | None) -> bool:
    return interval_s is not None and math.isfinite(interval_s) and interval_s > 0


def offline_devices(
    expected: Mapping[str, float],
    last_seen: Mapping[str, float],
    started_at_s: float,
    now_s: float,
    k: float = 3.0,
) -> set[str]:
    """The devices of ``expected`` (device id -> reporting interval, s) silent for more than ``k``
    intervals at ``now_s``; a device absent from ``last_seen`` counts from ``started_at_s``."""
    out: set[str] = set()
    for dev, interval in expected.items():
        if not _judged(interval):
            continue
        since = last_seen.get(dev, started_at_s)
        if now_s - since > k * interval:
            out.add(dev)
    return out


class DeadmanState:
    """Last-seen times and the current offline set, with one transition per outage."""

    def __init__(self, started_at_s: float) -> None:
        self.started_at_s = float(started_at_s)
        self.last_seen: dict[str, float] = {}
        self.offline: set[str] = set()

    def seen(self, device_id: str, t_epoch_s: float) -> list[Transition]:
        """A message from ``device_id`` at ``t_epoch_s``: ``[("online", dev)]`` if it was offline."""
        prev = self.last_seen.get(device_id)
        t = float(t_epoch_s)
        self.last_seen[device_id] = t if prev is None else max(prev, t)
        if device_id in self.offline:
            self.offline.discard(device_id)
            return [("online", device_id)]
        return []

    def tick(self, now_s: float, expected: Mapping[str, float], k: float = 3.0) -> list[Transition]:
        """Wall-clock check: ``[("offline", dev), ...]`` for the devices newly offline at ``now_s``."""
        now_off = offline_devices(expected, self.last_seen, self.started_at_s, now_s, k)
        self.offline &= {d for d, iv in expected.items() if _judged(iv)}
        new = sorted(now_off - self.offline)
        self.offline |= now_off
        return [("offline", dev) for dev in new]

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at_s": self.started_at_s,
            "last_seen": dict(self.last_seen),
            "offline": sorted(self.offline),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeadmanState:
        obj = cls(d["started_at_s"])
        obj.last_seen = {str(dev): float(t) for dev, t in d["last_seen"].items()}
        obj.offline = {str(dev) for dev in d["offline"]}
        return obj
