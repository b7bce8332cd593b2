"""Earthquake location with and without the not-yet-arrived constraint, on the simulator's quakes.

One run per scenario: the scenario's seismic packets go through the detector engine once, and the
same detections, in the same order, through two alert engines that differ only in
``seismic_quiet_tolerance_s`` (None: picks only; the default: live untriggered stations constrain
the location). Each engine's clock is the detection's device time (no processing delay). Per engine:

- the epicentre error (km, against the scenario's true epicentre) of every location, and of the
  first location at 3, 4 and 5 picks (the first alert is at 3);
- the warning level of the first alert and the highest level, the first and the last magnitude;
- the first alert's time after the origin, and the pick count it came at (lead time).

Scenarios: the two shipped ones with an earthquake (``m55_earthquake_40km``, ``bad_day``) and a ring of
variants of the first (the same eight-station network, the M5.5 event moved to 12 bearings at 10, 25
and 40 km from the network's centre; the hydro devices left out).

    .venv/bin/python -m tests.bench.quake_location [--quick] [--out var/bench/quake_location.json]

``make bench`` runs it as ``quake_location`` (summary figures); the per-scenario table is printed and
written as JSON by the command above.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.kernels.quake import haversine_km
from tocsin.detectors.engine import DetectorEngine
from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection
from tocsin.simulators.scenario import build
from tocsin.simulators.scenario_spec import EarthquakeSpec, Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
START = datetime(2026, 7, 1, tzinfo=UTC)
VARIANTS = (("m55_ring", 20.0, (10.0, 25.0, 40.0)), ("m55_sparse", 60.0, (30.0, 60.0)))
"""(name, network radius km, event distances km from the centre): the shipped network (eight stations
8-20 km from the centre), and the same eight stations spread over 24-60 km (a sparse network)."""
VARIANT_BEARINGS = tuple(range(0, 360, 30))
CONFIGS: dict[str, float | None] = {"picks_only": None, "with_quiet": AlertConfig().seismic_quiet_tolerance_s}
SENSITIVITY: dict[str, float | None] = {"with_quiet_1s": 1.0}
"""A tighter tolerance than the default, measured beside it (not in the summary's level check)."""


def _variants(quick: bool) -> list[tuple[str, Scenario]]:
    base = load_scenario(SCENARIOS / "m55_earthquake_40km.yaml")
    quake = next(h for h in base.hazards if isinstance(h, EarthquakeSpec))
    out = []
    bearings = VARIANT_BEARINGS[::3] if quick else VARIANT_BEARINGS
    for name, radius, distances in VARIANTS:
        per_family = {Family.SEISMIC: base.network.per_family[Family.SEISMIC]}
        net = base.network.model_copy(update={"per_family": per_family, "radius_km": radius})
        for km in distances:
            for b in bearings:
                # the expected level is worked out from the registry (:func:`_expected_level`)
                h = quake.model_copy(update={"bearing_deg": float(b), "distance_km": km})
                s = base.model_copy(update={"network": net, "hazards": [h], "faults": base.faults.model_copy()})
                out.append((f"{name}_{km:g}km_{b:03d}", s))
    return out


def _detections(s: Scenario) -> tuple[Any, list[Detection], Any]:
    registry, messages, truth = build(s, START)
    engine = DetectorEngine(registry=registry)
    states: dict[str, Any] = {}
    found: list[Detection] = []
    for m in messages:
        if "/seismic/" not in m.topic:
            continue
        accepted = validate_telemetry(m.topic, m.payload, m.t, registry=registry)
        if not isinstance(accepted, Accepted):
            continue
        r = accepted.reading
        states[r.device_id], out = engine.process(r, states.get(r.device_id), m.t.timestamp())
        found += out
    return registry, found, truth


def _expected_level(registry: Any, quake: Any) -> WarningLevel:
    """The level the standard gives: Yu Yanxiang et al. (2013) I = 5.7123 + 1.3626 M - 4.2903 lg(R + 25)
    (R hypocentral km) at the nearest station or target, whichever is larger, as a GB/T 17742-2020
    degree -> colour (VI yellow, VII orange, VIII red, below VI blue)."""
    m, depth = float(quake.params["magnitude"]), float(quake.params["depth_km"])
    places = [(d.lat, d.lon) for d in registry.devices if d.family is Family.SEISMIC]
    places += [(t.lat, t.lon) for t in registry.targets]
    r = min(math.hypot(haversine_km(quake.lat, quake.lon, la, lo), depth) for la, lo in places)
    i = 5.7123 + 1.3626 * m - 4.2903 * math.log10(r + 25.0)
    return (
        WarningLevel.RED
        if i >= 7.5
        else WarningLevel.ORANGE
        if i >= 6.5
        else WarningLevel.YELLOW
        if i >= 5.5
        else WarningLevel.BLUE
    )


def _run(
    registry: Any, detections: list[Detection], truth: Any, tolerance_s: float | None, expected: WarningLevel | None
) -> dict[str, Any]:
    quake = next(h for h in truth.hazards if h.kind == "earthquake")
    now = [START]
    engine = AlertEngine(AlertConfig(seismic_quiet_tolerance_s=tolerance_s), registry, clock=lambda: now[0])
    store: dict[str, Any] = {}
    errors: list[tuple[int, float]] = []
    levels: list[str] = []
    timeline: list[tuple[str, float]] = []  # (level, s after the origin) of every Alert and Update
    first: dict[str, Any] | None = None
    mags: list[float] = []
    for d in detections:
        now[0] = d.ts
        key = engine.fingerprint(d)
        store[key], alerts = engine.process(d, store.get(key))
        epi = store[key].get("epicentre")
        if epi is not None and store[key].get("active"):
            err = haversine_km(epi["lat"], epi["lon"], quake.lat, quake.lon)
            if not errors or errors[-1] != (epi["n_picks"], err):
                errors.append((epi["n_picks"], err))
        for a in alerts:
            if a.msg_type.value == "Cancel":
                continue
            levels.append(a.level.value)
            timeline.append((a.level.value, round((d.ts - quake.start).total_seconds(), 3)))
            if a.unit == "M":
                mags.append(a.value)
            if first is None:
                first = {
                    "after_origin_s": round((d.ts - quake.start).total_seconds(), 3),
                    "picks": errors[-1][0] if errors else 0,
                    "level": a.level.value,
                }

    def at(n: int) -> float | None:
        return next((round(e, 2) for k, e in errors if k == n), None)

    return {
        "first_alert": first,
        "max_level": max(levels, key=lambda v: WarningLevel(v).rank) if levels else None,
        "max_level_at_s": next(
            (t for lv, t in timeline if lv == max(levels, key=lambda v: WarningLevel(v).rank)), None
        ),
        "expected_level": expected.value if expected else None,
        "error_km_at_3": at(3),
        "error_km_at_4": at(4),
        "error_km_at_5": at(5),
        "error_km_3_picks_max": round(max((e for k, e in errors if k == 3), default=math.nan), 2),
        "error_km_3_picks_last": next((round(e, 2) for k, e in reversed(errors) if k == 3), None),
        "error_km_last": round(errors[-1][1], 2) if errors else None,
        "first_magnitude": mags[0] if mags else None,
        "last_magnitude": mags[-1] if mags else None,
        "locations": len(errors),
    }


def measure(quick: bool = False) -> dict[str, Any]:
    named = [(n, load_scenario(SCENARIOS / f"{n}.yaml")) for n in ("m55_earthquake_40km", "bad_day")]
    rows: dict[str, Any] = {}
    for name, s in [*named, *_variants(quick)]:
        registry, found, truth = _detections(s)
        quake = next(h for h in truth.hazards if h.kind == "earthquake")
        expected = quake.expected_level if name in dict(named) else _expected_level(registry, quake)
        rows[name] = {k: _run(registry, found, truth, tol, expected) for k, tol in {**CONFIGS, **SENSITIVITY}.items()}
    return rows


def summary(rows: dict[str, Any]) -> dict[str, float]:
    def col(variant: str, key: str) -> list[float]:
        return [r[variant][key] for r in rows.values() if r[variant][key] is not None]

    out: dict[str, float] = {"scenarios": float(len(rows))}
    for variant in (*CONFIGS, *SENSITIVITY):
        for key in ("error_km_at_3", "error_km_3_picks_last", "error_km_at_4", "error_km_last"):
            vals = col(variant, key)
            out[f"{variant}.{key}.median"] = statistics.median(vals) if vals else math.nan
            out[f"{variant}.{key}.p90"] = sorted(vals)[int(0.9 * (len(vals) - 1))] if vals else math.nan
    worse = 0
    for r in rows.values():
        a, b = r["picks_only"]["max_level"], r["with_quiet"]["max_level"]
        exp = r["picks_only"]["expected_level"]
        if (
            a
            and b
            and exp
            and abs(WarningLevel(b).rank - WarningLevel(exp).rank) > abs(WarningLevel(a).rank - WarningLevel(exp).rank)
        ):
            worse += 1
    out["level_further_from_expected"] = float(worse)
    first_worse = 0
    for r in rows.values():
        fa, fb, exp = r["picks_only"]["first_alert"], r["with_quiet"]["first_alert"], r["picks_only"]["expected_level"]
        if fa and fb and exp:
            da = abs(WarningLevel(fa["level"]).rank - WarningLevel(exp).rank)
            db = abs(WarningLevel(fb["level"]).rank - WarningLevel(exp).rank)
            first_worse += db > da
    out["first_level_further_from_expected"] = float(first_worse)
    out["max_level_later"] = float(
        sum(
            1
            for r in rows.values()
            if (r["with_quiet"]["max_level_at_s"] or 0.0) > (r["picks_only"]["max_level_at_s"] or 0.0)
        )
    )
    for k in ("max_level", "first_alert"):
        out[f"{k}_changed"] = float(sum(r["picks_only"][k] != r["with_quiet"][k] for r in rows.values()))
    for variant in (*CONFIGS, *SENSITIVITY):
        out[f"{variant}.error_over_5km_at_3"] = float(
            sum(1 for r in rows.values() if (r[variant]["error_km_at_3"] or 0.0) > 5.0)
        )
        out[f"{variant}.error_over_5km_3_picks_last"] = float(
            sum(1 for r in rows.values() if (r[variant]["error_km_3_picks_last"] or 0.0) > 5.0)
        )
    return out


def bench_quake_location() -> dict[str, float]:
    return summary(measure(quick=True))


def _table(rows: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':28s} {'err@3 km':>17s} {'last err@3':>17s} {'err@4 km':>17s} {'last km':>15s} "
        f"{'max level':>15s} {'exp':>6s} {'first M':>11s} {'first alert':>14s}"
    ]

    def pair(r: dict[str, Any], k: str) -> str:
        a, b = r["picks_only"][k], r["with_quiet"][k]
        return f"{a!s:>7s} -> {b!s:<7s}"

    for name, r in rows.items():
        fa = r["picks_only"]["first_alert"] or {}
        lines.append(
            f"{name:28s} {pair(r, 'error_km_at_3'):>17s} {pair(r, 'error_km_3_picks_last'):>17s} "
            f"{pair(r, 'error_km_at_4'):>17s} {pair(r, 'error_km_last'):>15s} {pair(r, 'max_level'):>15s} "
            f"{r['picks_only']['expected_level']!s:>6s} {pair(r, 'first_magnitude'):>11s} "
            f"{fa.get('after_origin_s')!s:>8s}s@{fa.get('picks')!s}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="4 bearings instead of 12 per ring distance")
    ap.add_argument("--out", default="var/bench/quake_location.json")
    args = ap.parse_args(argv)
    rows = measure(args.quick)
    print(_table(rows))
    summ = summary(rows)
    print(json.dumps(summ, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summ, "scenarios": rows}, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
