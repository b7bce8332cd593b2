"""Every detection the engine makes over a shipped scenario's readings, as JSON lines, with its CPU
time: to compare two versions of ``detectors/`` on the same data (issue 15: the faster engine must
give the same detections).

    PYTHONPATH=<other tree>:. python -m tests.bench.engine_scenarios bad_day /tmp/old.jsonl
    python -m tests.bench.engine_scenarios bad_day /tmp/new.jsonl && cmp /tmp/old.jsonl /tmp/new.jsonl

(run the first from outside the worktree so that ``<other tree>`` comes first on the path). The
readings are the scenario's messages with a fixed start, validated as the gateway does; the state is
kept in a dict, as in embedded mode.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tocsin.detectors.engine import DetectorEngine
from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.simulators.scenario import build
from tocsin.simulators.scenario_spec import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"


def detections(name: str) -> tuple[list[str], int, float]:
    """(detections as JSON, messages, engine CPU seconds) over scenario ``name``."""
    registry, messages, _ = build(load_scenario(SCENARIOS / f"{name}.yaml"), datetime(2026, 7, 1, tzinfo=UTC))
    engine = DetectorEngine(registry=registry)
    states: dict[str, Any] = {}
    out: list[str] = []
    cpu = 0.0
    for m in messages:
        accepted = validate_telemetry(m.topic, m.payload, m.t, registry=registry)
        if not isinstance(accepted, Accepted):
            continue  # the scenario's malformed and duplicate messages
        r = accepted.reading
        t0 = time.process_time()
        states[r.device_id], found = engine.process(r, states.get(r.device_id))
        cpu += time.process_time() - t0
        out += [d.model_dump_json() for d in found]
    return out, len(messages), cpu


def main(argv: list[str]) -> int:
    name, path = argv
    found, n, cpu = detections(name)
    Path(path).write_text("\n".join(found) + "\n", encoding="utf-8")
    print(f"{name}: {n} messages, {len(found)} detections, engine CPU {cpu:.3f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
