"""The stages' shared frame (schemas/stage.py): replay guard, cap counting, poison skipping."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter

from tocsin.schemas.records import decode_telemetry
from tocsin.schemas.stage import CapCounter, LabelCache, decode_or_skip, replayed


def test_replayed_only_at_or_before_the_stored_position_of_the_same_partition() -> None:
    assert replayed([0, 10], (0, 10))
    assert replayed([0, 10], (0, 3))
    assert not replayed([0, 10], (0, 11))
    assert not replayed([1, 10], (0, 3))  # another partition: offsets do not compare
    assert not replayed(None, (0, 3))
    assert not replayed([0, 10], None)  # no position (embedded mode): never a replay


def test_cap_counter_adds_only_what_the_totals_grew_by() -> None:
    seen: list[tuple[str, int]] = []
    caps = CapCounter(lambda reason, n: seen.append((reason, n)))
    caps.update({})
    caps.update({"a": 2})
    caps.update({"a": 2, "b": 1})
    caps.update({"a": 5, "b": 1})
    assert seen == [("a", 2), ("b", 1), ("a", 3)]


def test_decode_or_skip_counts_and_logs_a_poison_record(caplog: object) -> None:
    poisoned: list[int] = []
    log = logging.getLogger("test.stage")
    assert decode_or_skip(decode_telemetry, b"{not json", lambda: poisoned.append(1), log, "telemetry") is None
    assert decode_or_skip(decode_telemetry, None, lambda: poisoned.append(1), log, "telemetry") is None
    assert poisoned == [1, 1]
    tick = b'{"type":"tocsin.tick","device_id":"RG01","ts":"2026-01-01T00:00:00Z"}'
    assert decode_or_skip(decode_telemetry, tick, lambda: poisoned.append(1), log, "telemetry") is not None
    assert poisoned == [1, 1]


def test_label_cache_resolves_each_child_once_and_counts_into_it() -> None:
    reg = CollectorRegistry()
    c = Counter("t_readings", "x", ["family"], registry=reg)
    cache = LabelCache(c)
    assert cache("hydro") is cache("hydro")
    cache("hydro").inc()
    cache("seismic").inc(2)
    assert reg.get_sample_value("t_readings_total", {"family": "hydro"}) == 1
    assert reg.get_sample_value("t_readings_total", {"family": "seismic"}) == 2
