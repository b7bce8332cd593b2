"""Unit tests for detectors/kernels/deadman.py: wall-clock offline detection with an injected
clock (boundary at k intervals, never-seen devices, one transition per outage, recovery)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels.deadman import DeadmanState, offline_devices

T0 = 1_719_792_000.0


class FakeClock:
    """An injected wall clock: time moves only when the test says so."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


# ---------------------------------------------------------------------------------------------
# offline_devices
# ---------------------------------------------------------------------------------------------


def test_boundary_exactly_k_intervals_is_not_offline() -> None:
    expected = {"a": 60.0}
    last = {"a": T0}
    assert offline_devices(expected, last, T0 - 1000.0, T0 + 180.0) == set()  # exactly 3 x 60 s
    assert offline_devices(expected, last, T0 - 1000.0, T0 + 180.001) == {"a"}  # just after
    assert offline_devices(expected, last, T0 - 1000.0, T0 + 120.0, k=2.0) == set()
    assert offline_devices(expected, last, T0 - 1000.0, T0 + 120.5, k=2.0) == {"a"}


def test_never_seen_device_counts_from_start() -> None:
    expected = {"never": 60.0, "fresh": 60.0}
    last = {"fresh": T0 + 170.0}
    assert offline_devices(expected, last, T0, T0 + 180.0) == set()
    assert offline_devices(expected, last, T0, T0 + 181.0) == {"never"}
    assert offline_devices(expected, {}, T0, T0 + 181.0) == {"never", "fresh"}


def test_only_registered_devices_with_a_valid_interval_are_judged() -> None:
    expected = {"zero": 0.0, "neg": -5.0, "nan": math.nan, "inf": math.inf, "ok": 10.0}
    last = {"stranger": T0 - 1e6}  # not registered: never judged
    assert offline_devices(expected, last, T0 - 1e6, T0) == {"ok"}
    assert offline_devices({}, last, T0, T0 + 1e9) == set()


def test_per_device_intervals() -> None:
    expected = {"fast": 10.0, "slow": 3600.0}
    last = {"fast": T0, "slow": T0}
    assert offline_devices(expected, last, T0, T0 + 31.0) == {"fast"}
    assert offline_devices(expected, last, T0, T0 + 3 * 3600.0 + 1.0) == {"fast", "slow"}


# ---------------------------------------------------------------------------------------------
# DeadmanState with an injected clock
# ---------------------------------------------------------------------------------------------


def test_one_transition_per_outage_and_recovery() -> None:
    clock = FakeClock(T0)
    expected = {"a": 60.0, "b": 60.0}
    dm = DeadmanState(started_at_s=clock())
    assert dm.seen("a", clock()) == []
    assert dm.seen("b", clock()) == []
    transitions: list[tuple[int, str, str]] = []
    for _ in range(100):  # tick every 10 s for 1000 s; "b" keeps reporting every 50 s, "a" is silent
        now = clock.advance(10.0)
        if round(now - T0) % 50 == 0:
            assert dm.seen("b", now) == []
        transitions += [(round(clock() - T0), *tr) for tr in dm.tick(clock(), expected)]
    assert transitions == [(190, "offline", "a")]  # 180 s is not yet "more than 3 intervals"
    assert dm.offline == {"a"}
    # recovery, then a second outage is reported again, once
    assert dm.seen("a", clock()) == [("online", "a")]
    assert dm.seen("a", clock()) == []
    assert dm.tick(clock(), expected) == []
    clock.advance(181.0)
    assert dm.tick(clock(), expected) == [("offline", "a"), ("offline", "b")]
    assert dm.tick(clock.advance(10.0), expected) == []


def test_never_seen_device_fires_once() -> None:
    clock = FakeClock(T0)
    dm = DeadmanState(started_at_s=clock())
    expected = {"ghost": 300.0}
    assert dm.tick(clock.advance(900.0), expected) == []
    assert dm.tick(clock.advance(1.0), expected) == [("offline", "ghost")]
    assert dm.tick(clock.advance(1000.0), expected) == []
    assert dm.seen("ghost", clock()) == [("online", "ghost")]
    assert dm.last_seen == {"ghost": clock()}


def test_seen_keeps_the_latest_time_and_unknown_devices_are_harmless() -> None:
    dm = DeadmanState(T0)
    dm.seen("a", T0 + 100.0)
    dm.seen("a", T0 + 50.0)  # a late, older message does not move last_seen back
    assert dm.last_seen["a"] == T0 + 100.0
    assert dm.seen("stranger", T0) == []
    assert dm.tick(T0 + 1e6, {"a": 60.0}) == [("offline", "a")]


def test_deregistered_device_is_forgotten_silently() -> None:
    dm = DeadmanState(T0)
    assert dm.tick(T0 + 1000.0, {"a": 60.0, "b": 60.0}) == [("offline", "a"), ("offline", "b")]
    assert dm.tick(T0 + 1010.0, {"b": 60.0}) == []
    assert dm.offline == {"b"}
    # registered again while still silent: a new outage, reported once
    assert dm.tick(T0 + 1020.0, {"a": 60.0, "b": 60.0}) == [("offline", "a")]


def test_state_round_trip_mid_outage_does_not_repeat_transitions() -> None:
    dm = DeadmanState(T0)
    dm.seen("a", T0 + 10.0)
    assert dm.tick(T0 + 500.0, {"a": 60.0, "z": 60.0}) == [("offline", "a"), ("offline", "z")]
    d = json.loads(json.dumps(dm.to_dict(), allow_nan=False))
    assert d == {"started_at_s": T0, "last_seen": {"a": T0 + 10.0}, "offline": ["a", "z"]}
    back = DeadmanState.from_dict(d)
    assert back.tick(T0 + 600.0, {"a": 60.0, "z": 60.0}) == []
    assert back.seen("z", T0 + 601.0) == [("online", "z")]


# ---------------------------------------------------------------------------------------------
# Property: transitions alternate per device and agree with offline_devices
# ---------------------------------------------------------------------------------------------

EVENT = st.one_of(
    st.tuples(st.just("seen"), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("tick"), st.just("")),
)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(EVENT, st.floats(0.0, 200.0)), max_size=60),
    intervals=st.fixed_dictionaries({"a": st.sampled_from([10.0, 30.0]), "b": st.just(20.0), "c": st.just(50.0)}),
    cut=st.integers(0, 60),
)
def test_property_alternating_transitions(events: list, intervals: dict, cut: int) -> None:
    clock = FakeClock(T0)
    dm = DeadmanState(clock())
    log: dict[str, list[str]] = {d: [] for d in intervals}
    for i, ((kind, dev), dt) in enumerate(events):
        if i == cut:
            dm = DeadmanState.from_dict(json.loads(json.dumps(dm.to_dict())))
        now = clock.advance(dt)
        trs = dm.seen(dev, now) if kind == "seen" else dm.tick(now, intervals)
        for state, d in trs:
            log[d].append(state)
        if kind == "tick":
            assert dm.offline == offline_devices(intervals, dm.last_seen, T0, now)
    for seq in log.values():
        # offline, online, offline, ...: never the same transition twice in a row
        assert all(s == ("offline" if j % 2 == 0 else "online") for j, s in enumerate(seq))


def test_k_is_passed_through() -> None:
    dm = DeadmanState(T0)
    dm.seen("a", T0)
    assert dm.tick(T0 + 100.0, {"a": 60.0}, k=2.0) == []
    assert dm.tick(T0 + 121.0, {"a": 60.0}, k=2.0) == [("offline", "a")]
    with pytest.raises(KeyError):
        DeadmanState.from_dict({"last_seen": {}, "offline": []})
