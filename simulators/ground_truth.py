"""The ground truth of a built scenario (:class:`~tocsin.schemas.scenario.GroundTruth`), computed from the
generated messages and the default detector rules (``tocsin.detectors.rules.Rules()``), independently of
the detector engine.

``detectable_from``: the first rain report at which a rolling window total (pro rata, as the
rainfall kernel) reaches any rainfall rule, the first water level within the approach margin of the
warning level, the first gas reading at the level-1 set-point, the first camera detection of the
fire at the minimum confidence, and the P arrival at the third station that is streaming (with 10 s
of data before it for the LTA). The ``expected_level`` is stated in the scenario file (``expected:
{<truth kind>: <level>}`` on each hazard), written from the standard's table for the hazard's data
(CMA rainstorm signals, the warning/guaranteed/record water levels, GB/T 50493-2019 set-points,
GB/T 17742-2020 intensity), never computed from the detector's rules, so a wrong threshold cannot
move the expectation with it; a detectable hazard without one is refused. A hazard whose data never
crosses a threshold is listed under ``undetectable``. Truth times are true (publishing) times, not
skewed device clocks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np

from tocsin.alerts.kernels.quake import predicted_intensity
from tocsin.detectors.kernels import gas as gas_k
from tocsin.detectors.kernels import rainfall as rain_k
from tocsin.detectors.kernels import seismic as seis_k
from tocsin.detectors.rules import Rules
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.scenario import GroundTruth, HazardTruth, OutageTruth, TargetArrival
from tocsin.simulators import physics
from tocsin.simulators.demo import Message
from tocsin.simulators.scenario_build import ScenarioBuilder
from tocsin.simulators.scenario_spec import EarthquakeSpec, FireSpec, GasLeakSpec, HazardBase, LatLon, RainstormSpec

# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


def clean_readings(msgs: Iterable[Message]) -> dict[str, list[tuple[datetime, dict[str, object]]]]:
    """Per device, the (publish time, payload) of every well-formed telemetry message, duplicates removed."""
    out: dict[str, list[tuple[datetime, dict[str, object]]]] = {}
    for m in msgs:
        if not m.topic.endswith("/telemetry") or m.note.startswith("bad:") or m.note == "duplicate":
            continue
        obj = json.loads(m.payload)
        out.setdefault(str(obj["device_id"]), []).append((m.t, obj))
    return out


def _stated(h: HazardBase, kind: str) -> WarningLevel:
    """The level the scenario file states for this hazard's ``kind`` of truth (its ground truth)."""
    level = h.expected.get(kind)
    if level is None:
        raise ValueError(
            f"scenario hazard {h.hazard_id}: its data is detectable as {kind}; state expected: {{{kind}: <level>}} "
            "from the standard's table"
        )
    return level


def _rain_truth(
    b: ScenarioBuilder, h: RainstormSpec, readings: dict[str, list[tuple[datetime, dict[str, object]]]]
) -> list[HazardTruth]:
    rules = Rules().hydro
    first: datetime | None = None
    devices: list[str] = []
    for d in b.specs:
        if d.kind != "rain":
            continue
        reports: list[rain_k.Report] = []
        hit = False
        for t, obj in readings.get(d.device_id, []):
            ts = t.timestamp()
            reports = rain_k.add_report(reports, ts, float(obj["interval_s"]), float(obj["rain_mm"]))  # type: ignore[arg-type]
            for r in rules.rain:
                total, _ = rain_k.accumulation(reports, ts, r.window_h * 3600.0)
                if total >= r.mm - 1e-9:
                    hit = True
                    first = t if first is None or t < first else first
        if hit:
            devices.append(d.device_id)
    out: list[HazardTruth] = []
    cell = max(h.cells, key=lambda c: c.peak_mm_h)
    lat, lon = cell.resolve(b.centre)
    start = b.start + timedelta(seconds=h.start_s + min(c.start_s for c in h.cells))
    end = b.start + timedelta(seconds=h.start_s + max(c.start_s + c.duration_s for c in h.cells))
    params: dict[str, float | str] = {"cells": float(len(h.cells)), "peak_mm_h": cell.peak_mm_h}
    if first is not None:
        out.append(
            _truth(
                b,
                h.hazard_id,
                Family.HYDRO,
                "rainstorm",
                (lat, lon),
                start,
                first,
                end,
                _stated(h, "rainstorm"),
                devices,
                params,
            )
        )
    # the river
    hr = Rules().hydro
    first_l: datetime | None = None
    lvl_devices = []
    for d in b.specs:
        if d.kind != "level":
            continue
        th = b.devices[d.device_id].thresholds
        warning = th.get("warning_level_m")
        if warning is None:
            continue
        sets = (
            warning - hr.approach_margin_m,
            warning,
            th.get("guaranteed_level_m", math.inf),
            th.get("record_level_m", math.inf),
        )
        hit = False
        for t, obj in readings.get(d.device_id, []):
            level = float(obj["level_m"])  # type: ignore[arg-type]
            rank = sum(level >= s for s in sets)
            if rank:
                hit = True
                first_l = t if first_l is None or t < first_l else first_l
        if hit:
            lvl_devices.append(d.device_id)
    if first_l is not None:
        dev = b.devices[lvl_devices[0]]
        out.append(
            _truth(
                b,
                f"{h.hazard_id}-river",
                Family.HYDRO,
                "river_flood",
                (dev.lat, dev.lon),
                start,
                first_l,
                None,
                _stated(h, "river_flood"),
                lvl_devices,
                params,
            )
        )
    return out


def _truth(
    b: ScenarioBuilder,
    hazard_id: str,
    family: Family,
    kind: str,
    where: LatLon,
    start: datetime,
    detectable: datetime,
    end: datetime | None,
    level: WarningLevel,
    devices: list[str],
    params: dict[str, float | str],
    targets: list[TargetArrival] | None = None,
) -> HazardTruth:
    codes = sorted({b.devices[d].area.code for d in devices} or {b.s.district.code})
    return HazardTruth(
        hazard_id=hazard_id,
        family=family,
        kind=kind,
        lat=round(where[0], 6),
        lon=round(where[1], 6),
        start=start,
        detectable_from=detectable,
        end=end,
        expected_level=level,
        devices=sorted(devices),
        area_codes=codes,
        targets=targets or [],
        params=params,
    )


def _gas_truth(
    b: ScenarioBuilder, h: GasLeakSpec, src: LatLon, readings: dict[str, list[tuple[datetime, dict[str, object]]]]
) -> HazardTruth | None:
    first: datetime | None = None
    devices = []
    for d in b.specs:
        if d.kind != "gas" or d.gas.upper() != h.gas.upper():
            continue
        rules = gas_k.rules_for(d.gas, d.unit, {k: v for k, v in b.devices[d.device_id].thresholds.items()})
        hit = False
        for t, obj in readings.get(d.device_id, []):
            for g in rules:
                try:
                    value = gas_k.to_unit(d.gas, float(obj["value"]), d.unit, g.unit)  # type: ignore[arg-type]
                except ValueError:
                    continue
                if not g.rule.above:
                    continue
                # rank of the highest level whose set-point the reading reaches (level 1 is yellow)
                rank = max((i + 1 for i, sp in enumerate(g.rule.sets) if sp is not None and value >= sp), default=0)
                if rank:
                    hit = True
                    first = t if first is None or t < first else first
        if hit:
            devices.append(d.device_id)
    if first is None:
        return None
    start = b.start + timedelta(seconds=h.start_s)
    params: dict[str, float | str] = {
        "gas": h.gas,
        "rate_g_s": h.rate_g_s,
        "wind_ms": h.wind_ms,
        "wind_from_deg": h.wind_from_deg,
        "stability": h.stability,
    }
    return _truth(
        b,
        h.hazard_id,
        Family.HAZMAT,
        "gas_leak",
        src,
        start,
        first,
        start + timedelta(seconds=h.duration_s),
        _stated(h, "gas_leak"),
        devices,
        params,
    )


def _fire_truth(
    b: ScenarioBuilder,
    idx: int,
    h: FireSpec,
    f: physics.Fire,
    msgs: list[Message],
) -> HazardTruth | None:
    fr = Rules().fire
    first: datetime | None = None
    devices = []
    flames: dict[str, int] = {}
    for m in msgs:
        if m.note != f"fire {idx}" or not m.topic.endswith("/telemetry"):
            continue
        obj = json.loads(m.payload)
        if float(obj["confidence"]) < fr.min_confidence:
            continue
        dev = str(obj["device_id"])
        if dev not in devices:
            devices.append(dev)
        if obj["kind"] == "flame":
            flames[dev] = flames.get(dev, 0) + 1
        first = m.t if first is None or m.t < first else first
    if first is None:
        return None
    params: dict[str, float | str] = {"max_column_m": h.max_column_m, "growth_s": h.growth_s}
    return _truth(
        b,
        h.hazard_id,
        Family.FIRE,
        "forest_fire",
        (f.lat, f.lon),
        datetime.fromtimestamp(f.ignition_s, UTC),
        first,
        None,
        _stated(h, "forest_fire"),
        devices,
        params,
    )


def _outage_truth(
    b: ScenarioBuilder, readings: dict[str, list[tuple[datetime, dict[str, object]]]]
) -> list[OutageTruth]:
    """The offline faults the deadman can see, one per gateway (or site) and overlapping silence.

    A device is flagged once silent for more than ``deadman_k`` x its interval since its last clean
    reading before the fault (or since the scenario start); a fault shorter than that (its first
    reading after ``back_s`` comes first) is invisible and listed nowhere. Devices of one family,
    area and gateway (or site, without a gateway) whose silences overlap make one outage, as the
    alert engine groups them into one equipment alert."""
    k = Rules().deadman_k
    per_group: dict[tuple[Family, str, str], list[tuple[datetime, datetime, datetime | None, str]]] = {}
    for f in b.s.faults.offline:
        dev = b.devices[f.device]
        down = b.start + timedelta(seconds=f.at_s)
        up = b.start + timedelta(seconds=f.back_s) if f.back_s is not None else None
        seen = [t for t, _ in readings.get(f.device, [])]
        last = max((t for t in seen if t < down), default=b.start)
        flagged = last + timedelta(seconds=k * dev.interval_s)
        back = min((t for t in seen if t >= up), default=None) if up is not None else None
        if flagged >= b.end or (back is not None and back <= flagged):
            continue
        group = (f"gateway-{dev.gateway}" if dev.gateway else f"site-{dev.site}").replace(":", "_")
        per_group.setdefault((dev.family, dev.area.code, group), []).append((down, flagged, back, f.device))
    out: list[OutageTruth] = []
    for (family, area, group), spans in sorted(per_group.items(), key=lambda kv: kv[0][1:]):
        merged: list[list[tuple[datetime, datetime, datetime | None, str]]] = []
        for span in sorted(spans, key=lambda x: x[1]):
            if merged and all(e is None or span[1] < e for _, _, e, _ in merged[-1]):
                merged[-1].append(span)
            else:
                merged.append([span])
        for i, m in enumerate(merged):
            backs = [e for _, _, e, _ in m]
            out.append(
                OutageTruth(
                    outage_id=f"{group}-{i + 1}" if len(merged) > 1 else group,
                    family=family,
                    area_code=area,
                    group=group,
                    devices=sorted(x[3] for x in m),
                    start=min(x[0] for x in m),
                    detectable_from=min(x[1] for x in m),
                    back=None if any(e is None for e in backs) else max(e for e in backs if e is not None),
                )
            )
    return sorted(out, key=lambda o: o.detectable_from)


def _observed_intensity(samples: list[float], df: float = 100.0) -> float:
    """GB/T 17742-2020 intensity the generated trace carries: PGA/PGV of its 0.1-10 Hz velocity."""
    if len(samples) < 2:
        return 0.0
    v = seis_k.Bandpass(0.1, 10.0, df, 4, steady_start=True).process(np.asarray(samples, dtype=float))
    pga, pgv = seis_k.peak_ground_motion(v, df)
    return seis_k.instrumental_intensity(pga, pgv)


def _quake_truth(b: ScenarioBuilder, h: EarthquakeSpec, q: physics.Quake, msgs: list[Message]) -> HazardTruth | None:
    streaming: dict[str, list[tuple[float, float]]] = {}
    samples: dict[str, list[float]] = {}
    for m in msgs:
        if "/seismic/" in m.topic and m.topic.endswith("/telemetry") and not m.note.startswith("bad:"):
            if m.note == "duplicate":
                continue
            obj = json.loads(m.payload)
            t = m.t.timestamp()
            dev = str(obj["device_id"])
            streaming.setdefault(dev, []).append((t - 1.0, t))
            if q.origin_s - 30.0 <= t <= q.origin_s + h.record_after_s:
                samples.setdefault(dev, []).extend(obj["samples"])  # type: ignore[arg-type]
    picks = []
    observed = 0.0
    for d in b.specs:
        if d.kind != "seismic":
            continue
        a = physics.arrivals(q, d.lat, d.lon)
        spans = streaming.get(d.device_id, [])
        # needs the LTA warmed up (10 s of data) before the P wave and the P packet itself
        covered = [s for s in spans if s[0] <= a.p_s < s[1]]
        if covered and any(s[0] <= a.p_s - 10.0 for s in spans):
            picks.append((a.p_s, d.device_id))
            observed = max(observed, _observed_intensity(samples.get(d.device_id, [])))
    picks.sort()
    if len(picks) < 3:
        return None
    targets = []
    predicted = 0.0
    for tg in b.registry.targets:
        a = physics.arrivals(q, tg.lat, tg.lon)
        predicted = max(predicted, predicted_intensity(q.magnitude, a.hypo_km))
        targets.append(
            TargetArrival(
                target=tg.name,
                distance_km=round(a.epi_km, 3),
                p_arrival=datetime.fromtimestamp(a.p_s, UTC),
                s_arrival=datetime.fromtimestamp(a.s_s, UTC),
            )
        )
    params: dict[str, float | str] = {
        "magnitude": q.magnitude,
        "depth_km": q.depth_km,
        "epicentral_km_from_centre": round(physics.distance_km(q.lat, q.lon, *b.centre), 3),
        "max_intensity_at_targets": predicted,
        "max_intensity_observed": observed,
    }
    origin = datetime.fromtimestamp(q.origin_s, UTC)
    return _truth(
        b,
        h.hazard_id,
        Family.SEISMIC,
        "earthquake",
        (q.lat, q.lon),
        origin,
        datetime.fromtimestamp(picks[2][0], UTC),
        origin + timedelta(seconds=h.record_after_s),
        _stated(h, "earthquake"),
        [p[1] for p in picks],
        params,
        targets,
    )


# ---------------------------------------------------------------------------------------------
# The whole truth
# ---------------------------------------------------------------------------------------------


def ground_truth(b: ScenarioBuilder, messages: list[Message]) -> GroundTruth:
    """The ground truth of the scenario ``b`` built, from its ``messages`` (publishing order, faults
    included)."""
    s, start = b.s, b.start
    readings = clean_readings(messages)
    hazards: list[HazardTruth] = []
    undetectable: list[str] = []
    fires = dict((h.hazard_id, (i, f)) for i, (h, f) in enumerate(b.fires()))
    quakes = {h.hazard_id: q for h, q in b.quakes()}
    leaks = {h.hazard_id: src for h, src in b.leaks()}
    for h in s.hazards:
        found: list[HazardTruth] = []
        if isinstance(h, RainstormSpec):
            found = _rain_truth(b, h, readings)
        elif isinstance(h, GasLeakSpec):
            found = [t for t in [_gas_truth(b, h, leaks[h.hazard_id], readings)] if t]
        elif isinstance(h, FireSpec):
            i, fire = fires[h.hazard_id]
            found = [t for t in [_fire_truth(b, i, h, fire, messages)] if t]
        elif isinstance(h, EarthquakeSpec):
            found = [t for t in [_quake_truth(b, h, quakes[h.hazard_id], messages)] if t]
        if not found:
            undetectable.append(h.hazard_id)
        hazards += found
    outages = _outage_truth(b, readings)
    fs = s.faults
    faults = (
        [f"offline:{x.device}" for x in fs.offline]
        + [f"stuck:{x.device}" for x in fs.stuck]
        + [f"skew:{x.device}:{x.skew_s:+g}" for x in fs.clock_skew]
        + ([f"malformed:{fs.malformed}"] if fs.malformed else [])
        + ([f"duplicates:{fs.duplicates}"] if fs.duplicates else [])
    )
    return GroundTruth(
        scenario=s.name,
        seed=s.seed,
        start=start,
        end=b.end,
        hazards=sorted(hazards, key=lambda x: x.detectable_from),
        faults=faults,
        outages=outages,
        messages=len(messages),
        undetectable=undetectable,
    )
