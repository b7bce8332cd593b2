"""The fuzz harness itself: its file is written when a run passes, finds escapes, or is stopped."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import pytest
from hypothesis import strategies as st

from tests.fuzz import harness


def test_a_run_that_is_stopped_still_writes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "OUT", tmp_path)
    seen: list[int] = []

    def target(case: int) -> str:
        seen.append(case)
        if len(seen) == 3:
            raise ValueError("an escape")
        if len(seen) == 5:
            raise KeyboardInterrupt  # as a pytest timeout or a signal stops a run: not an escape
        return "ok"

    with pytest.raises(KeyboardInterrupt):
        harness.fuzz("stopped", st.integers(0, 10**9), target, 50)
    saved = json.loads((tmp_path / "stopped.json").read_text())
    assert saved["cases"] == 4 and saved["escapes"] == 1 and saved["outcomes"] == {"ok": 3, "ESCAPE": 1}
    assert saved["finished"] is False and saved["error"].startswith("KeyboardInterrupt")
    assert saved["first_escape"].startswith("ValueError: an escape <- ")


def test_a_case_is_slow_by_its_cpu_time_not_by_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "OUT", tmp_path)
    monkeypatch.setattr(harness, "SLOW_CASE_S", 0.03)
    monkeypatch.setattr(harness, "HANG_CASE_S", 1.5)

    def target(case: int) -> str:
        if case == 1:  # busy: 0.06 s of CPU
            end = time.process_time() + 0.06
            while time.process_time() < end:
                pass
        elif case == 2:  # waits 1.6 s: no CPU, but over the hang bound
            time.sleep(1.6)
        return "ok"

    stats = harness.FuzzStats("timing")
    for case in (0, 1, 2):
        stats.record(case, target, reraise=False)
    assert stats.slow_cases == 1 and stats.slowest_case == "1" and stats.max_case_cpu_s >= 0.06
    assert stats.hung_cases == 1 and stats.max_case_wall_s >= 1.6
    with pytest.raises(AssertionError):
        harness.assert_clean(stats, 3)


def test_the_garbage_collectors_time_is_not_the_cases() -> None:
    """A full collection over a large heap during a cheap case is counted apart (max_case_gc_s)."""
    heap = [[i] for i in range(1_000_000)]  # a heap whose full collection takes a measurable time
    stats = harness.FuzzStats("gc")

    def target(case: int) -> str:
        gc.collect()
        return "ok"

    stats.record(0, target, reraise=False)
    assert stats.max_case_gc_s > 0.01, stats
    assert stats.max_case_cpu_s < stats.max_case_gc_s / 5, stats
    del heap
