"""Scenarios: a YAML file -> the district's registry, every device message, and the ground truth.

A scenario names its devices (an inline ``devices`` list, or a generated ``network`` of N devices per
family around a centre), a start time, a duration and a seed, the hazards with their parameters and
start offsets (seconds after the scenario start), background noise, and faults (devices going
offline, stuck sensors, clock skew, malformed payloads, duplicates). :func:`build` turns it into a
:class:`~tocsin.schemas.registry.Registry`, the device messages in publishing order
(:class:`tocsin.simulators.demo.Message`) and a :class:`~tocsin.schemas.scenario.GroundTruth`; the same scenario,
seed and start give the same bytes.

The parts: the spec (simulators/scenario_spec.py: the file's model, :func:`load_scenario`), the
builder (simulators/scenario_build.py: registry and messages), the ground truth
(simulators/ground_truth.py); this module joins them and writes the outputs.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tocsin.schemas.registry import Registry
from tocsin.schemas.scenario import GroundTruth
from tocsin.simulators.demo import Message
from tocsin.simulators.devices import iso
from tocsin.simulators.ground_truth import ground_truth
from tocsin.simulators.scenario_build import ScenarioBuilder, apply_offline, duplicate_messages, malformed_messages
from tocsin.simulators.scenario_spec import Scenario

__all__ = ["build", "message_line", "write_outputs"]


def build(scenario: Scenario, start: datetime | None = None) -> tuple[Registry, list[Message], GroundTruth]:
    """The registry, every device message (publishing order) and the ground truth of a scenario.

    ``start`` overrides the scenario's start; without either, the scenario ends now (for a live run
    through a gateway, whose timestamps must not be in the future).
    """
    s = scenario
    if start is None:
        start = s.start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=s.duration_s)
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    b = ScenarioBuilder(s, start)
    msgs = b.run()
    msgs = apply_offline(b, msgs)
    base = sorted(msgs, key=lambda m: m.t)
    extra = malformed_messages(b, base, s.faults.malformed) + duplicate_messages(b, base, s.faults.duplicates)
    messages = sorted(base + extra, key=lambda m: m.t)
    return b.registry, messages, ground_truth(b, messages)


def message_line(m: Message) -> str:
    """One JSONL line: t, topic, payload (text, or base64 with ``payload_b64`` when not UTF-8), note."""
    row: dict[str, str] = {"t": iso(m.t), "topic": m.topic}
    try:
        row["payload"] = m.payload.decode("utf-8")
    except UnicodeDecodeError:
        row["payload_b64"] = base64.b64encode(m.payload).decode("ascii")
    row["note"] = m.note
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def write_outputs(
    out_dir: str | Path, registry: Registry, messages: list[Message], truth: GroundTruth
) -> dict[str, Path]:
    """Write ``registry.yaml``, ``registry.json``, ``messages.jsonl`` and ``ground_truth.json`` to ``out_dir``."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "registry_json": out / "registry.json",
        "registry_yaml": out / "registry.yaml",
        "messages": out / "messages.jsonl",
        "ground_truth": out / "ground_truth.json",
    }
    data = registry.model_dump(mode="json")
    paths["registry_json"].write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    paths["registry_yaml"].write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with paths["messages"].open("w", encoding="utf-8") as fh:
        for m in messages:
            fh.write(message_line(m) + "\n")
    paths["ground_truth"].write_text(truth.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return paths
