"""Multi-level threshold with hysteresis, hold-down and cool-down. Pure; state is a small dict.

Ranks: 0 none, 1 blue, 2 yellow, 3 orange, 4 red. Each level has its own set threshold and a
separate clear threshold. ``values`` gives the quantity compared at each level (usually the same
value four times; rainfall compares a different window ratio per level).

- Escalation: when some level's set threshold is crossed, the target is the highest such level; it
  must persist for ``hold_down`` consecutive samples before the rank rises to it.
- De-escalation: when the current level's clear threshold is crossed for ``cool_down`` consecutive
  samples, the rank falls to the highest lower level that is still on the firing side of its own
  clear threshold (or 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

N_LEVELS = 4


@dataclass(frozen=True)
class LevelRule:
    sets: tuple[float | None, float | None, float | None, float | None]
    clears: tuple[float | None, float | None, float | None, float | None]
    above: bool = True  # True: firing when value >= set; False: firing when value <= set (e.g. low O2)
    hold_down: int = 1
    cool_down: int = 1

    @classmethod
    def simple(
        cls,
        sets: Sequence[float | None],
        *,
        clear_ratio: float | None = None,
        clear_offset: float | None = None,
        above: bool = True,
        hold_down: int = 1,
        cool_down: int = 1,
    ) -> LevelRule:
        """Clear thresholds derived from the sets, by ratio (x0.9) or by offset (-0.1 m)."""
        if len(sets) != N_LEVELS:
            raise ValueError("sets needs one entry per level (blue, yellow, orange, red); use None to skip")

        def clear(s: float | None) -> float | None:
            if s is None:
                return None
            if clear_offset is not None:
                return s - clear_offset if above else s + clear_offset
            ratio = 0.9 if clear_ratio is None else clear_ratio
            return s * ratio if above else s / ratio

        return cls(tuple(sets), tuple(clear(s) for s in sets), above, hold_down, cool_down)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LevelState:
    rank: int = 0
    pending: int = 0  # consecutive samples with a higher target
    calm: int = 0  # consecutive samples past the current clear threshold

    def to_dict(self) -> dict[str, int]:
        return {"rank": self.rank, "pending": self.pending, "calm": self.calm}

    @classmethod
    def from_dict(cls, d: dict[str, int] | None) -> LevelState:
        return cls(**d) if d else cls()


def _firing(value: float, threshold: float | None, above: bool) -> bool:
    if threshold is None or math.isnan(value):
        return False
    return value >= threshold if above else value <= threshold


def step_level(rule: LevelRule, state: LevelState, values: Sequence[float]) -> LevelState:
    """One sample through the level machine; returns the new state (the input is not modified)."""
    target = 0
    for r in range(N_LEVELS, 0, -1):
        if _firing(values[r - 1], rule.sets[r - 1], rule.above):
            target = r
            break
    if target > state.rank:
        pending = state.pending + 1
        if pending >= rule.hold_down:
            return LevelState(rank=target)
        return LevelState(rank=state.rank, pending=pending)
    if state.rank == 0:
        return LevelState()
    if _firing(values[state.rank - 1], rule.clears[state.rank - 1], rule.above):
        return LevelState(rank=state.rank)
    calm = state.calm + 1
    if calm < rule.cool_down:
        return LevelState(rank=state.rank, calm=calm)
    for r in range(state.rank - 1, 0, -1):
        if _firing(values[r - 1], rule.clears[r - 1], rule.above):
            return LevelState(rank=r)
    return LevelState()


def run_levels(rule: LevelRule, values: Sequence[Sequence[float]], state: LevelState | None = None) -> list[int]:
    """Batch helper: the rank after each sample (used by tests and the backtest)."""
    st = state or LevelState()
    out = []
    for v in values:
        st = step_level(rule, st, v)
        out.append(st.rank)
    return out
