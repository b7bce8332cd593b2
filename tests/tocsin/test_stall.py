"""The worker's stalled-partition watch (tocsin/stall.py): which partitions are sought back to their
committed offset, and which are left alone."""

from __future__ import annotations

from tocsin.stall import StallWatch

P = ("telemetry.hydro", 3)
Q = ("telemetry.hydro", 4)


def test_a_partition_stalled_with_records_waiting_is_sought_back_once_per_period() -> None:
    watch = StallWatch[tuple[str, int]](60.0)
    assert watch.observe(0.0, {P: 10}, {P: 14}, []) == []
    assert watch.observe(59.0, {P: 10}, {P: 14}, []) == []
    assert watch.observe(60.0, {P: 10}, {P: 14}, []) == [P]
    # the seek gets a full period to show its effect before the next one
    assert watch.observe(100.0, {P: 10}, {P: 14}, []) == []
    assert watch.observe(120.0, {P: 10}, {P: 14}, []) == [P]


def test_progress_caught_up_in_flight_or_unknown_is_not_a_stall() -> None:
    watch = StallWatch[tuple[str, int]](60.0)
    watch.observe(0.0, {P: 10, Q: 5}, {P: 14, Q: 9}, [])
    # P's committed offset moved: its clock starts again; Q has a record in flight
    assert watch.observe(61.0, {P: 11, Q: 5}, {P: 14, Q: 9}, [Q]) == []
    assert watch.observe(100.0, {P: 11, Q: 5}, {P: 11, Q: 9}, []) == []  # P caught up; Q's clock restarted
    assert watch.observe(159.0, {P: 11, Q: 5}, {P: 11, Q: 9}, []) == []
    assert watch.observe(160.0, {P: 11, Q: 5}, {P: 11, Q: 9}, []) == [Q]
    # no committed offset yet, or no end offset seen: nothing to judge
    fresh = StallWatch[tuple[str, int]](1.0)
    assert fresh.observe(0.0, {P: None, Q: 3}, {P: 9, Q: None}, []) == []
    assert fresh.observe(5.0, {P: None, Q: 3}, {P: 9, Q: None}, []) == []


def test_a_partition_no_longer_assigned_or_a_reset_forgets_its_clock() -> None:
    watch = StallWatch[tuple[str, int]](60.0)
    watch.observe(0.0, {P: 10}, {P: 14}, [])
    watch.observe(30.0, {}, {}, [])  # revoked
    assert watch.observe(60.0, {P: 10}, {P: 14}, []) == []  # assigned again: a new clock
    watch.reset()
    assert watch.observe(119.0, {P: 10}, {P: 14}, []) == []
    assert watch.observe(179.0, {P: 10}, {P: 14}, []) == [P]


def test_off() -> None:
    watch = StallWatch[tuple[str, int]](0.0)
    assert watch.observe(0.0, {P: 1}, {P: 9}, []) == []
    assert watch.observe(1e9, {P: 1}, {P: 9}, []) == []
