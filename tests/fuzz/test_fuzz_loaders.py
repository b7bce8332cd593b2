"""Fuzz: any registry or rules file loads, or fails with one ValueError naming the file; nothing else.

1,000 cases each here, 10,000 with ``make fuzz``. Files: valid documents with values replaced by wrong
types, huge numbers, NaN, control and bidi characters, over-long names, deep nesting; truncated text;
random bytes; YAML and JSON.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import strategies as st

from tests.fuzz.corpus import REGISTRY, Rng, nested, text, weird
from tests.fuzz.harness import SCALE, assert_clean, fuzz, timeout_s
from tocsin.detectors.rules import Rules, load_rules
from tocsin.schemas.registry import Registry, load_registry

LOADER_CASES = 1_000
REGISTRY_DOC = {
    **json.loads(REGISTRY.model_dump_json()),
    "targets": [{"name": "青山镇", "lat": 30.1, "lon": 120.1}],
    "sms_recipients": {"330110": ["+8613800000001"]},
}
RULES_DOC: dict[str, Any] = {
    "hydro": {"rain": [{"window_h": 1, "level": "blue", "mm": 35, "source": "flash-flood"}]},
    "hazmat": {"setpoints": {"H2S": {"level1": 10}}, "fault_params": {"stuck_n": 30}},
    "seismic": {"freqmin_hz": 1.0, "freqmax_hz": 20.0},
    "confirm": {"incidents": {"gas_leak": {"k": 2}}, "seismic": {"weights": {"st-03": 0.5}}},
}


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def mutated(doc: Any, rng: Rng) -> Any:
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randrange(1, 4)):
        path = rng.choice(_paths(doc)[1:])
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        k = rng.randrange(5)
        if k == 0:
            parent[path[-1]] = weird(rng)
        elif k == 1:  # a name with a control or bidi character, or too long
            parent[path[-1]] = rng.choice(["青山\x00镇", "\x1b[31m", "abc\u202edef", "x" * 51, "镇" * 190, text(rng)])
        elif k == 2:
            parent[path[-1]] = nested(rng.randrange(1, 60))
        elif k == 3 and isinstance(parent, dict):
            parent[text(rng, 8)] = weird(rng)
        else:
            parent[path[-1]] = rng.choice([10**400, float("nan"), -1e308, "", None, True])
    return doc


def file_text(doc: Any, rng: Rng) -> tuple[str, bytes]:
    k = rng.randrange(10)
    if k == 0:
        return ".json", rng.randbytes(rng.randrange(200))
    if k == 1:
        return ".yaml", b"[" * rng.choice([10, 2_000, 50_000])
    body = mutated(doc, rng) if k > 2 else doc
    if rng.random() < 0.5:
        suffix, raw = ".json", json.dumps(body, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        suffix, raw = ".yaml", yaml.safe_dump(body, allow_unicode=True).encode("utf-8", "surrogatepass")
    if rng.randrange(6) == 0:
        raw = raw[: rng.randrange(len(raw) + 1)]
    return suffix, raw


def _run(name: str, doc: Any, load: Any, model: type, tmp_path: Path) -> None:
    def one(seed: int) -> str:
        rng = random.Random(seed)
        suffix, raw = file_text(doc, rng)
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(raw)
        try:
            loaded = load(path)
        except ValueError as exc:  # the one error a loader gives for bad content (UnicodeDecodeError is one)
            assert str(exc), "an error with a message"
            return "refused"
        assert isinstance(loaded, model)
        return "loaded"

    stats = fuzz(name, st.integers(0, 2**64 - 1), one, LOADER_CASES)
    assert_clean(stats, LOADER_CASES * SCALE)
    assert stats.outcomes.get("loaded", 0) > 0 and stats.outcomes.get("refused", 0) > 0


@pytest.mark.timeout(timeout_s(300))
def test_fuzz_registry_loader(tmp_path: Path) -> None:
    _run("registry_loader", REGISTRY_DOC, load_registry, Registry, tmp_path)


@pytest.mark.timeout(timeout_s(300))
def test_fuzz_rules_loader(tmp_path: Path) -> None:
    _run("rules_loader", RULES_DOC, load_rules, Rules, tmp_path)
