"""DetectorEngine throughput per family (``make bench`` entry ``detector_engine``).

Each family's readings go through ``DetectorEngine.process`` with the state kept in memory, as the
worker's in-memory Faust table hands it back, and each new state is encoded as the table writes it
to its changelog (Faust's JSON codec, orjson). The figure is CPU time per reading
(``time.process_time``, best of the repeats), beside two references measured in the same run:

- ``validate``: the gateway's strict validation of the same reading's payload (the issue 15
  reference: ``ratio`` = engine rate / validation rate);
- ``stdlib_roundtrip`` (rain): the state also encoded and decoded again with the standard
  library's ``json`` per reading, the figure issue 15 quoted (2.5k/s).

Families: a rain gauge reporting every 5 minutes for 24 h; a river gauge with warning levels every
5 minutes; a gas detector (CH4 in %LEL) every 10 s; a fire camera's hits; 1 s packets of 100 Hz
velocity from a three-component seismometer (HHZ, HHN, HHE).

``python -m tests.bench.engine [family ...]`` runs it alone.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.utils import json as faust_json

from tocsin.detectors.engine import DetectorEngine
from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import Telemetry

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _device(device_id: str, family: Family, **thresholds: float) -> Device:
    area = Area(code="340100")
    return Device(device_id=device_id, family=family, site="s1", lat=30.0, lon=120.0, area=area, thresholds=thresholds)


REGISTRY = Registry(
    devices=[
        _device("RG01", Family.HYDRO),
        _device("WL01", Family.HYDRO, warning_level_m=5.0, guaranteed_level_m=6.0, record_level_m=7.0),
        _device("GD01", Family.HAZMAT),
        _device("CAM01", Family.FIRE),
        _device("SS01", Family.SEISMIC),
    ]
)


def _rain(n: int) -> Iterable[tuple[str, dict[str, Any]]]:
    for k in range(n):
        ts = T0 + timedelta(minutes=5 * k, microseconds=123_456)
        mm = 0.5 if k % 3 else 0.2
        yield "hydro/s1/RG01", {"type": "hydro.rain", "rain_mm": mm, "interval_s": 300, "ts": ts}


def _water(n: int) -> Iterable[tuple[str, dict[str, Any]]]:
    for k in range(n):
        ts = T0 + timedelta(minutes=5 * k, microseconds=654_321)
        level = 3.0 + 2.5 * math.sin(k / 40)  # slowly through the blue and yellow levels and back
        yield "hydro/s1/WL01", {"type": "hydro.level", "level_m": round(level, 3), "ts": ts}


def _gas(n: int) -> Iterable[tuple[str, dict[str, Any]]]:
    rng = random.Random(1)
    for k in range(n):
        ts = T0 + timedelta(seconds=10 * k)
        value = round(2.0 + rng.uniform(-0.5, 0.5) + (30.0 if 100 <= k % 400 < 110 else 0.0), 2)
        yield "hazmat/s1/GD01", {"type": "hazmat.gas", "gas": "CH4", "value": value, "unit": "%LEL", "ts": ts}


def _fire(n: int) -> Iterable[tuple[str, dict[str, Any]]]:
    rng = random.Random(2)
    for k in range(n):
        ts = T0 + timedelta(seconds=30 * k)
        yield (
            "fire/s1/CAM01",
            {
                "type": "fire.detection",
                "kind": "smoke" if k % 5 else "flame",
                "confidence": round(rng.uniform(0.5, 0.95), 3),
                "bearing_deg": round(120.0 + rng.uniform(-1, 1), 2),
                "sweep": k // 2,
                "ts": ts,
            },
        )


def _seismic(n: int) -> Iterable[tuple[str, dict[str, Any]]]:
    """1 s packets at 100 Hz from three components, in turn; an event every 60 s of station time."""
    rng = random.Random(3)
    for k in range(n):
        second, channel = divmod(k, 3)
        ts = T0 + timedelta(seconds=second)
        quake = 20 <= second % 60 < 26
        samples = [round(rng.gauss(0, 1e-6) * (300 if quake else 1), 12) for _ in range(100)]
        yield (
            "seismic/s1/SS01",
            {
                "type": "seismic.waveform",
                "channel": ("HHZ", "HHN", "HHE")[channel],
                "sample_rate_hz": 100.0,
                "samples": samples,
                "ts": ts,
            },
        )


FAMILIES: dict[str, tuple[Callable[[int], Iterable[tuple[str, dict[str, Any]]]], int]] = {
    "rain": (_rain, 288),
    "water_level": (_water, 288),
    "gas": (_gas, 400),
    "fire": (_fire, 200),
    "seismic": (_seismic, 180),
}


def _payloads(family: str) -> tuple[list[Telemetry], list[tuple[str, bytes]]]:
    make, n = FAMILIES[family]
    readings, payloads = [], []
    for where, body in make(n):
        site, device = where.split("/")[1:]
        topic = f"tocsin/v1/{where}/telemetry"
        payload = json.dumps({**body, "device_id": device, "site": site, "ts": body["ts"].isoformat()}).encode()
        acc = validate_telemetry(topic, payload, body["ts"])
        assert isinstance(acc, Accepted), acc
        readings.append(acc.reading)
        payloads.append((topic, payload))
    return readings, payloads


def _cpu_per_item(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Best-of-``repeats`` CPU seconds per item of ``fn`` (which handles ``n`` items)."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best / n


def bench_family(family: str, repeats: int = 5) -> dict[str, float]:
    readings, payloads = _payloads(family)
    now = readings[-1].ts
    engine = DetectorEngine(registry=REGISTRY)
    encode = faust_json.dumps

    def engine_only() -> None:
        state = None
        for r in readings:
            state, _ = engine.process(r, state)

    def with_changelog() -> None:  # the worker: the table's changelog encoding of each new state
        state = None
        for r in readings:
            state, _ = engine.process(r, state)
            encode(state)

    def validate() -> None:
        for topic, p in payloads:
            validate_telemetry(topic, p, now)

    n = len(readings)
    engine_only()  # warm-up (caches, first-use imports)
    ours = _cpu_per_item(with_changelog, n, repeats)
    alone = _cpu_per_item(engine_only, n, repeats)
    ref = _cpu_per_item(validate, n, repeats)
    out = {
        "per_s": 1 / ours,
        "cpu_us": ours * 1e6,
        "engine_only_cpu_us": alone * 1e6,
        "changelog_bytes": len(encode(state_after(engine, readings))),
        "validate_cpu_us": ref * 1e6,
        "ratio": ref / ours,
    }
    if family == "rain":

        def stdlib_roundtrip() -> None:  # the figure issue 15 quotes
            state = None
            for r in readings:
                state, _ = engine.process(r, state)
                state = json.loads(json.dumps(state))

        rt = _cpu_per_item(stdlib_roundtrip, n, repeats)
        out |= {"stdlib_roundtrip_per_s": 1 / rt, "stdlib_roundtrip_cpu_us": rt * 1e6}
    return out


def state_after(engine: DetectorEngine, readings: list[Telemetry]) -> dict[str, Any]:
    state = None
    for r in readings:
        state, _ = engine.process(r, state)
    assert state is not None
    return state


def bench_detector_engine(families: Iterable[str] = FAMILIES) -> dict[str, float]:
    """Flat figures per family (``<family>_per_s``, ``<family>_cpu_us``, ...) for results.json."""
    out: dict[str, float] = {}
    for family in families:
        for key, value in bench_family(family).items():
            out[f"{family}_{key}"] = value
    # the names the bench reported before (rain): ours with the changelog, the validation reference
    out["ours_per_s"] = out.get("rain_per_s", 0.0)
    out["reference_per_s"] = 1e6 / out["rain_validate_cpu_us"] if "rain_validate_cpu_us" in out else 0.0
    out["ratio"] = out.get("rain_ratio", 0.0)
    return out


def main(argv: list[str]) -> int:
    for family in argv or list(FAMILIES):
        figures = bench_family(family)
        print(f"{family:12s} " + " ".join(f"{k}={v:,.1f}" for k, v in figures.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
