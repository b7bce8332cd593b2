"""Per-camera persistence of smoke/flame detections. Pure; state is a list of recent hits.

A tower camera sweeps every few minutes and reports what it sees with a bearing and a confidence.
A fire is declared when at least ``k`` detections at or above ``min_confidence`` fall within
``window_s`` at bearings within ``bearing_tol_deg`` of the newest one; the bearing reported is the
circular mean of those hits. It clears when no qualifying hit has been seen for ``clear_after_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Hit = tuple[float, float, float, str]  # (t epoch s, bearing deg, confidence, kind)


@dataclass(frozen=True)
class FireParams:
    k: int = 3
    window_s: float = 900.0
    min_confidence: float = 0.6
    bearing_tol_deg: float = 3.0
    clear_after_s: float = 1800.0
    max_hits: int = 64  # newest hits kept (bounded state): k of them decide, the newest clears


def bearing_diff(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def circular_mean(bearings: Sequence[float]) -> float:
    s = sum(math.sin(math.radians(b)) for b in bearings)
    c = sum(math.cos(math.radians(b)) for b in bearings)
    return _wrap360(math.degrees(math.atan2(s, c)))


def _wrap360(deg: float) -> float:
    """``deg`` in [0, 360): a tiny negative angle wraps to 360.0 in floating point, which is north."""
    d = deg % 360.0
    return 0.0 if d >= 360.0 else d


@dataclass(frozen=True)
class Persistence:
    active: bool
    count: int
    bearing_deg: float
    confidence: float
    kind: str  # "flame" when any supporting hit saw flame, else "smoke"


def add_hit(hits: Sequence[Hit], hit: Hit, p: FireParams) -> list[Hit]:
    """Keep qualifying hits within the window of the newest one, in time order."""
    out = list(hits)
    if hit[2] >= p.min_confidence:
        out.append(hit)
        out.sort()
    newest = out[-1][0] if out else hit[0]
    return [h for h in out if h[0] > newest - max(p.window_s, p.clear_after_s)][-p.max_hits :]


def evaluate(hits: Sequence[Hit], now_s: float, p: FireParams) -> Persistence:
    recent = [h for h in hits if h[0] > now_s - p.window_s]
    if not recent:
        return Persistence(False, 0, 0.0, 0.0, "smoke")
    anchor = recent[-1][1]
    support = [h for h in recent if bearing_diff(h[1], anchor) <= p.bearing_tol_deg]
    kind = "flame" if any(h[3] == "flame" for h in support) else "smoke"
    return Persistence(
        active=len(support) >= p.k,
        count=len(support),
        bearing_deg=_wrap360(round(circular_mean([h[1] for h in support]), 2)),
        confidence=round(max(h[2] for h in support), 3),
        kind=kind,
    )


# (distinct sweeps counted, time of the last counted hit, its sweep id or None)
SweepTally = tuple[int, float, int | None]


def tally_sweep(tally: SweepTally | None, t: float, sweep: int | None, min_sweep_s: float) -> SweepTally:
    """Count one more qualifying hit into the camera's distinct sweeps.

    A camera may report a fire several times in one revolution (frames, boxes); persistence is
    about revolutions. With sweep ids, a hit whose id differs from the last counted one is a new
    sweep. Without them, a hit at least ``min_sweep_s`` after the last counted hit is (towers turn
    360 degrees every 2-6 minutes, so 120 s is shorter than any revolution)."""
    if tally is None:
        return (1, t, sweep)
    n, last_t, last_id = tally
    new = sweep != last_id if sweep is not None and last_id is not None else t - last_t >= min_sweep_s
    return (n + 1, t, sweep) if new else (n, last_t if sweep is None else t, last_id if sweep is None else sweep)


def quiet_for(hits: Sequence[Hit], now_s: float) -> float:
    """Seconds since the last qualifying hit (infinity when none)."""
    return now_s - hits[-1][0] if hits else math.inf
