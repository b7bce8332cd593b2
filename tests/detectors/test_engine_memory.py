"""The engine keeps state between readings as live objects (rain windows, seismic filters and
triggers; tests/bench/engine.py measures it). Whatever is kept in memory must act exactly as the
state written to the changelog and decoded again (a restarted worker): same detections, same state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bench.engine import FAMILIES, REGISTRY, _payloads
from tocsin.detectors.engine import DetectorEngine


def _normal(state: dict[str, Any] | None) -> Any:
    return json.loads(json.dumps(state))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_in_memory_state_acts_as_the_decoded_changelog(family: str) -> None:
    readings, _ = _payloads(family)
    kept, decoded = DetectorEngine(registry=REGISTRY), DetectorEngine(registry=REGISTRY)
    state_kept: dict[str, Any] | None = None
    state_decoded: dict[str, Any] | None = None
    opened = 0
    for r in readings:
        state_kept, out_kept = kept.process(r, state_kept)
        state_decoded, out_decoded = decoded.process(r, state_decoded)
        state_decoded = _normal(state_decoded)  # what a restarted worker's table would hand back
        assert out_kept == out_decoded
        assert _normal(state_kept) == state_decoded
        opened += sum(d.state.value == "open" for d in out_kept)
    assert opened > 0, "the stream should open at least one detection"  # the comparison covers transitions


def test_an_older_state_given_again_is_not_the_live_one() -> None:
    # the seismic kernels kept alive belong to the newest state; an older one is restored from its dict
    readings, _ = _payloads("seismic")
    engine, fresh = DetectorEngine(registry=REGISTRY), DetectorEngine(registry=REGISTRY)
    state: dict[str, Any] | None = None
    history = []
    for r in readings[:90]:
        history.append(state)
        state, _ = engine.process(r, state)
    old = history[60]
    again, out = engine.process(readings[60], old)
    ref, out_ref = fresh.process(readings[60], _normal(old))
    assert out == out_ref and _normal(again) == _normal(ref)
