"""Fuzz harness: run a strategy's cases through a target, count them, time them, keep the results.

The number of cases scales with ``TOCSIN_FUZZ_SCALE`` (1 in ``make test``, 10 in ``make fuzz``);
results are written to ``var/fuzz/<name>.json`` (cases, escapes, slowest case): every
``SAVE_EVERY`` cases while the run goes on and once more when it ends, whether it passed, found
escapes or was stopped by an exception (a pytest timeout, hypothesis, memory), with that exception
in ``error``; so a failed run is diagnosable from its file.

The slow-case bound is on the CPU time the case costs this process (``time.process_time``), not on
wall time. The targets are synchronous and do no I/O that waits (the gateway's sink completes at
once, the loaders read a small local file), so the CPU a case burns is the cost hostile input can
impose; wall time on a 2-core machine shared by several runs is mostly the scheduler's (measured:
a registry case of 0.03 s CPU took 0.3 s wall at a load of 7, and the 100,000-case gateway run got
35 % of a core). Wall time is still recorded, and a case that waits ``HANG_CASE_S`` of wall time
counts as a hang (a lock or a blocking call that CPU time would not show).

The CPU time of the garbage collector's runs during a case is taken out of the case's time (and
kept, as ``max_case_gc_s``), as hypothesis does for its deadline: a full collection walks the whole
heap, hypothesis' record of every example drawn so far included, so its cost grows with the run and
not with the case (measured: one gateway case of 1 ms CPU was charged 0.64 s after 70,000 cases;
the same case alone costs 1 ms however often it runs).
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("TOCSIN_FUZZ_SCALE", "1"))
SLOW_CASE_S = 1.0
"""Most CPU time one case may cost."""
HANG_CASE_S = 30.0
"""Most wall time one case may take: only a case that waits on something gets near it."""
SAVE_EVERY = 10_000
OUT = Path(__file__).resolve().parents[2] / "var" / "fuzz"


class _GcClock:
    """CPU seconds spent in the garbage collector since the process started (a gc callback)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.total += time.process_time() - self._started


GC = _GcClock()


def timeout_s(base_s: float) -> float:
    """The pytest timeout of a fuzz test that takes up to ``base_s`` at scale 1: scaled with the cases."""
    return base_s * max(1.0, SCALE)


@dataclass
class FuzzStats:
    name: str
    scale: float = SCALE
    cases: int = 0
    escapes: int = 0
    slow_cases: int = 0
    hung_cases: int = 0
    max_case_cpu_s: float = 0.0
    max_case_wall_s: float = 0.0
    max_case_gc_s: float = 0.0
    slowest_case: str = ""
    total_cpu_s: float = 0.0
    total_wall_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    first_escape: str = ""
    finished: bool = False
    error: str = ""

    def record(self, case: Any, target: Callable[[Any], str], *, reraise: bool) -> str:
        """Run ``target(case)``, timed and counted; an exception is an escape (raised again if ``reraise``)."""
        cpu0, wall0, gc0 = time.process_time(), time.perf_counter(), GC.total
        error: Exception | None = None
        try:
            outcome = target(case)
        except Exception as exc:  # noqa: BLE001 - what the fuzz run is counting
            outcome, error = "ESCAPE", exc
            self.escapes += 1
            self.first_escape = self.first_escape or f"{type(exc).__name__}: {exc} <- {_describe(case)}"[:2000]
        gc_s = GC.total - gc0
        cpu, wall = time.process_time() - cpu0 - gc_s, time.perf_counter() - wall0
        self.max_case_gc_s = max(self.max_case_gc_s, gc_s)
        self.cases += 1
        self.total_cpu_s += cpu
        self.total_wall_s += wall
        if cpu > self.max_case_cpu_s:
            self.max_case_cpu_s, self.slowest_case = cpu, _describe(case)
        self.max_case_wall_s = max(self.max_case_wall_s, wall)
        self.slow_cases += cpu > SLOW_CASE_S
        self.hung_cases += wall > HANG_CASE_S
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.cases % SAVE_EVERY == 0:
            self.save()
        if error is not None and reraise:
            raise error
        return outcome

    def save(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def _describe(case: Any) -> str:
    if isinstance(case, tuple) and len(case) == 2 and isinstance(case[1], bytes | bytearray):
        topic, payload = case  # an MQTT message: the payload's size and start, not all of it
        return f"topic={topic!r:.200} payload={len(payload)} bytes {bytes(payload[:120])!r}"
    return repr(case)[:400]


def fuzz(name: str, cases: st.SearchStrategy[Any], target: Callable[[Any], str], examples: int) -> FuzzStats:
    """Run ``target`` on ``examples * SCALE`` cases; ``target`` returns an outcome label or raises (an escape).

    Escapes are counted rather than stopping the run, so one run reports how many there are.
    """
    n = max(1, round(examples * SCALE))
    stats = FuzzStats(name)

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def run(case: Any) -> None:
        stats.record(case, target, reraise=False)

    try:
        run()
        stats.finished = True
    except BaseException as exc:  # a timeout or an error of the run itself: kept in the file, then raised
        stats.error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        stats.save()
    return stats


def assert_clean(stats: FuzzStats, expected_cases: float) -> None:
    """The checks every fuzz target makes: all cases ran, none escaped, none was slow or hung."""
    assert stats.cases >= expected_cases, (stats.cases, expected_cases)
    assert stats.escapes == 0, stats.first_escape
    assert stats.slow_cases == 0 and stats.max_case_cpu_s < SLOW_CASE_S, (stats.max_case_cpu_s, stats.slowest_case)
    assert stats.hung_cases == 0, (stats.max_case_wall_s, "wall seconds: a case waited on something")
