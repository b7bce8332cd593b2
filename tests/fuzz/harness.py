"""Fuzz harness: run a strategy's cases through a target, count them, time them, keep the results.

The number of cases scales with ``TOCSIN_FUZZ_SCALE`` (1 in ``make test``, 10 in ``make fuzz``);
results are written to ``var/fuzz/<name>.json`` (cases, escapes, slowest case in seconds).
"""

from __future__ import annotations

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
OUT = Path(__file__).resolve().parents[2] / "var" / "fuzz"


@dataclass
class FuzzStats:
    name: str
    cases: int = 0
    escapes: int = 0
    slow_cases: int = 0
    max_case_s: float = 0.0
    total_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    first_escape: str = ""

    def save(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{self.name}.json").write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


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
        started = time.perf_counter()
        try:
            outcome = target(case)
        except Exception as exc:  # noqa: BLE001 - what the fuzz run is counting
            outcome = "ESCAPE"
            stats.escapes += 1
            stats.first_escape = stats.first_escape or f"{type(exc).__name__}: {exc} <- {case!r}"[:2000]
        took = time.perf_counter() - started
        stats.cases += 1
        stats.total_s += took
        stats.max_case_s = max(stats.max_case_s, took)
        stats.slow_cases += took > SLOW_CASE_S
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1

    run()
    stats.save()
    return stats
