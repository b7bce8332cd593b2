"""Unit tests for detectors/kernels/levels.py: the multi-level threshold machine with hysteresis,
hold-down and cool-down."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels.levels import LevelRule, LevelState, run_levels, step_level

SETS = (10.0, 20.0, 30.0, 40.0)


def _same(values: list[float]) -> list[tuple[float, ...]]:
    """One value compared at all four levels (the usual case)."""
    return [(v,) * 4 for v in values]


# ---------------------------------------------------------------------------------------------
# LevelRule.simple
# ---------------------------------------------------------------------------------------------


def test_simple_default_ratio_is_0_9() -> None:
    rule = LevelRule.simple(SETS)
    assert rule.sets == (10.0, 20.0, 30.0, 40.0)
    assert rule.clears == (9.0, 18.0, 27.0, 36.0)
    assert (rule.above, rule.hold_down, rule.cool_down) == (True, 1, 1)


def test_simple_clear_ratio_and_skipped_levels() -> None:
    rule = LevelRule.simple((10.0, None, 30.0, None), clear_ratio=0.8, hold_down=2, cool_down=3)
    assert rule.sets == (10.0, None, 30.0, None)
    assert rule.clears == (8.0, None, 24.0, None)
    assert (rule.hold_down, rule.cool_down) == (2, 3)


def test_simple_clear_offset_above_and_below() -> None:
    up = LevelRule.simple((None, 10.0, 11.0, 12.0), clear_offset=0.25)
    assert up.clears == (None, 9.75, 10.75, 11.75)
    down = LevelRule.simple((None, 19.5, 18.0, None), clear_offset=0.5, above=False)
    assert down.clears == (None, 20.0, 18.5, None)
    assert down.above is False


def test_simple_offset_wins_over_ratio() -> None:
    rule = LevelRule.simple((10.0, None, None, None), clear_ratio=0.5, clear_offset=1.0)
    assert rule.clears == (9.0, None, None, None)


def test_simple_ratio_below_divides() -> None:
    rule = LevelRule.simple((None, 18.0, None, None), clear_ratio=0.9, above=False)
    assert rule.clears[1] == pytest.approx(20.0)


@pytest.mark.parametrize("sets", [(), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0, 4.0, 5.0)])
def test_simple_needs_four_levels(sets: tuple) -> None:
    with pytest.raises(ValueError, match="one entry per level"):
        LevelRule.simple(sets)


def test_level_state_dict_round_trip() -> None:
    s = LevelState(rank=3, pending=1, calm=2)
    assert s.to_dict() == {"rank": 3, "pending": 1, "calm": 2}
    assert LevelState.from_dict(s.to_dict()) == s
    assert LevelState.from_dict(None) == LevelState(0, 0, 0)
    assert LevelState.from_dict({}) == LevelState(0, 0, 0)


# ---------------------------------------------------------------------------------------------
# Golden sequences
# ---------------------------------------------------------------------------------------------


def test_escalation_through_every_level() -> None:
    rule = LevelRule.simple(SETS)
    values = [5, 9.99, 10, 15, 20, 25, 30, 35, 40, 45]
    assert run_levels(rule, _same(values)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_jump_straight_to_a_high_level_and_straight_down() -> None:
    rule = LevelRule.simple(SETS)
    assert run_levels(rule, _same([0, 35, 0, 41, 8.9])) == [0, 3, 0, 4, 0]


def test_hysteresis_between_clear_and_set_keeps_the_level() -> None:
    rule = LevelRule.simple(SETS)  # clears 9, 18, 27, 36
    values = [25, 19, 18.5, 18, 17.9, 9.5, 9, 8.9]
    assert run_levels(rule, _same(values)) == [2, 2, 2, 2, 1, 1, 1, 0]


def test_hold_down_two_needs_two_consecutive_samples() -> None:
    rule = LevelRule.simple(SETS, hold_down=2)
    values = [15, 15, 15, 5, 15, 5, 25, 25, 45, 35]
    # a single sample over a set point never escalates; the second consecutive one escalates to
    # that sample's own target (35 -> orange, although the first of the two was red)
    assert run_levels(rule, _same(values)) == [0, 1, 1, 0, 0, 0, 0, 2, 2, 3]


def test_hold_down_counts_in_the_state() -> None:
    rule = LevelRule.simple(SETS, hold_down=3)
    s1 = step_level(rule, LevelState(), (15,) * 4)
    assert s1 == LevelState(rank=0, pending=1, calm=0)
    s2 = step_level(rule, s1, (15,) * 4)
    assert s2 == LevelState(rank=0, pending=2, calm=0)
    assert step_level(rule, s2, (15,) * 4) == LevelState(rank=1)
    assert step_level(rule, s2, (5,) * 4) == LevelState()  # the run is broken


def test_cool_down_three() -> None:
    rule = LevelRule.simple(SETS, cool_down=3)
    values = [25, 5, 5, 25, 5, 5, 5, 5]
    # two calm samples then a firing one restart the count
    assert run_levels(rule, _same(values)) == [2, 2, 2, 2, 2, 2, 0, 0]


def test_cool_down_state_and_where_it_lands() -> None:
    rule = LevelRule.simple(SETS, cool_down=3)
    s = step_level(rule, LevelState(rank=3), (10,) * 4)
    assert s == LevelState(rank=3, calm=1)
    s = step_level(rule, s, (10,) * 4)
    assert s == LevelState(rank=3, calm=2)
    # the landing level is judged on the sample that completes the cool-down
    assert step_level(rule, s, (20,) * 4) == LevelState(rank=2)
    assert step_level(rule, s, (10,) * 4) == LevelState(rank=1)
    assert step_level(rule, s, (8,) * 4) == LevelState(rank=0)


def test_de_escalation_to_highest_lower_level_still_above_its_clear() -> None:
    rule = LevelRule.simple(SETS)  # clears 9, 18, 27, 36
    # 28 is below orange's set (30) but above its clear (27): red falls to orange, not yellow
    values = [45, 28, 26.9, 19, 17]
    assert run_levels(rule, _same(values)) == [4, 3, 2, 2, 1]


def test_de_escalation_skips_levels_without_thresholds() -> None:
    rule = LevelRule.simple((None, 20.0, None, 40.0))  # clears -, 18, -, 36
    assert run_levels(rule, _same([25, 45, 35, 30, 17])) == [2, 4, 2, 2, 0]


def test_below_is_for_low_oxygen() -> None:
    rule = LevelRule.simple((None, 19.5, 18.0, None), clear_offset=0.3, above=False)  # clears 19.8, 18.3
    values = [20.9, 19.5, 19.7, 17.9, 18.2, 18.4, 19.9, 23.5]
    assert run_levels(rule, _same(values)) == [0, 2, 2, 3, 3, 2, 0, 0]


def test_per_level_values() -> None:
    # rainfall style: each level compares its own ratio
    rule = LevelRule.simple((1.0, 1.0, 1.0, 1.0), clear_ratio=0.8)
    seq = [(1.2, 0.5, 0.2, 0.1), (1.5, 1.0, 0.6, 0.3), (1.5, 0.85, 0.6, 0.3), (1.5, 0.79, 0.6, 0.3)]
    assert run_levels(rule, seq) == [1, 2, 2, 1]


def test_nan_never_fires() -> None:
    rule = LevelRule.simple(SETS)
    assert step_level(rule, LevelState(), (math.nan,) * 4) == LevelState()


def test_run_levels_starts_from_a_given_state() -> None:
    rule = LevelRule.simple(SETS)
    assert run_levels(rule, _same([19, 17]), LevelState(rank=2)) == [2, 1]
    assert run_levels(rule, []) == []


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

THRESHOLD = st.one_of(st.none(), st.floats(min_value=0.0, max_value=100.0))


@st.composite
def rules(draw: st.DrawFn) -> LevelRule:
    sets = draw(st.tuples(THRESHOLD, THRESHOLD, THRESHOLD, THRESHOLD))
    above = draw(st.booleans())
    hold = draw(st.integers(1, 4))
    cool = draw(st.integers(1, 4))
    if draw(st.booleans()):
        return LevelRule.simple(
            sets, clear_ratio=draw(st.floats(0.5, 1.0)), above=above, hold_down=hold, cool_down=cool
        )
    return LevelRule.simple(sets, clear_offset=draw(st.floats(0.0, 10.0)), above=above, hold_down=hold, cool_down=cool)


VALUE = st.floats(min_value=-10.0, max_value=110.0)
SAMPLES = st.lists(st.one_of(VALUE.map(lambda v: (v,) * 4), st.tuples(VALUE, VALUE, VALUE, VALUE)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(rule=rules(), values=SAMPLES, cut=st.integers(0, 40))
def test_property_chunk_invariance(rule: LevelRule, values: list, cut: int) -> None:
    cut = min(cut, len(values))
    whole = run_levels(rule, values)
    state = LevelState()
    for v in values[:cut]:
        state = step_level(rule, state, v)
    assert run_levels(rule, values[cut:], state) == whole[cut:]
    assert run_levels(rule, values[:cut]) == whole[:cut]
    # and the state survives a dict round trip (how the engine stores it)
    assert run_levels(rule, values[cut:], LevelState.from_dict(state.to_dict())) == whole[cut:]


@settings(max_examples=300, deadline=None)
@given(rule=rules(), values=SAMPLES)
def test_property_rank_in_range_and_only_on_configured_levels(rule: LevelRule, values: list) -> None:
    for rank in run_levels(rule, values):
        assert 0 <= rank <= 4
        if rank:
            assert rule.sets[rank - 1] is not None


def _target(rule: LevelRule, v: float) -> int:
    for r in (4, 3, 2, 1):
        s = rule.sets[r - 1]
        if s is not None and (v >= s if rule.above else v <= s):
            return r
    return 0


@settings(max_examples=300, deadline=None)
@given(rule=rules(), v=VALUE)
def test_property_constant_value_is_stable_after_hold_down(rule: LevelRule, v: float) -> None:
    ranks = run_levels(rule, [(v,) * 4] * (rule.hold_down + 6))
    expected = _target(rule, v)
    assert ranks[: rule.hold_down - 1] == [0] * (rule.hold_down - 1)
    assert ranks[rule.hold_down - 1 :] == [expected] * 7
