"""Detector engine: one reading plus the device's state in, new state plus detections out.

Transport-free and deterministic: the Faust agents and the embedded runner both call
``DetectorEngine.process`` and only differ in where the state dict is kept (a changelogged Faust
table keyed by device, or a dict). Detections are state transitions (open, update, clear), never one
record per sample while a condition persists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from tocsin.detectors.kernels import anomaly as anomaly_k
from tocsin.detectors.kernels import deadman as deadman_k
from tocsin.detectors.kernels import fire as fire_k
from tocsin.detectors.kernels import gas as gas_k
from tocsin.detectors.kernels import rainfall as rain_k
from tocsin.detectors.kernels import rise as rise_k
from tocsin.detectors.kernels import seismic as seis_k
from tocsin.detectors.kernels import sensor_faults as sf_k
from tocsin.detectors.kernels.levels import LevelRule, LevelState, step_level
from tocsin.detectors.rules import AnomalyChannel, Rules
from tocsin.schemas import topics
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionKind, DetectionState
from tocsin.schemas.registry import Device, RegistryLike
from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, Telemetry, WaterLevel

State = dict[str, Any]
_K = TypeVar("_K")


class Source(Protocol):
    """What a transition needs to know of its origin: a reading, or the deadman's clock tick."""

    @property
    def device_id(self) -> str: ...

    @property
    def site(self) -> str: ...

    @property
    def family(self) -> Family: ...

    @property
    def ts(self) -> datetime: ...


class _Source(NamedTuple):
    device_id: str
    site: str
    family: Family
    ts: datetime


LEVELS = (WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE, WarningLevel.RED)
PD_PROFILE_STEP_S = 0.5  # seconds between the Pd profile's windows (0.5, 1.0, ... up to the Pd window)
PD_EARLY_EVERY_S = 1.0  # before the Pd window fills, the profile so far is sent every this many seconds


ANOMALY_PREFIX = "anomaly:"  # state keys of the anomaly channels: anomaly:<channel>


_UNIT_SUFFIXES = {"_mm": "mm", "_m": "m", "_deg": "deg", "_hz": "Hz", "_s": "s"}


def _field_unit(r: Telemetry, field: str) -> str:
    """The unit of a scored field: a gas reading's own unit, else the field name's unit suffix."""
    if isinstance(r, GasReading) and field == "value":
        return r.unit
    return next((u for suffix, u in _UNIT_SUFFIXES.items() if field.endswith(suffix)), "")


def _anomaly_kind(channel: str) -> str:
    return f"anomaly_{channel}"[:40].lower()


def _degree(intensity: float) -> int:
    """GB/T 17742-2020 degree of an instrumental intensity (already rounded to 0.1): the value rounded,
    VI for 5.5 <= I < 6.5."""
    return math.floor(intensity + 0.5 + 1e-9)


def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def _from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def detection_key(d: Detection) -> bytes:
    """Kafka key of a detection: all detections of one hazard in one area meet in one partition."""
    return f"{d.family.value}:{d.area_code or d.site}".encode()


def detection_topic(d: Detection, urgent_from: WarningLevel | None) -> str:
    """The Kafka topic of a detection: ``detections.urgent`` for seismic triggers (seconds of S-wave
    warning are at stake) and for levels at or above ``urgent_from`` (None: no urgent lane), so they
    never wait behind a backlog of routine detections; ``detections`` for the rest. Both topics have
    the same keys and partition count, so a fingerprint's detections meet in the same worker; the
    alert engine skips a detection older than one its source already applied (the lanes reorder)."""
    if urgent_from is None:
        return topics.DETECTIONS
    if d.kind == DetectionKind.P_TRIGGER or (d.level is not None and d.level.rank >= urgent_from.rank):
        return topics.DETECTIONS_URGENT
    return topics.DETECTIONS


class _LiveKernels:
    """Streaming kernels (seismic filters and triggers) kept alive between readings, each under the
    saved form it last wrote into a state. A state that still holds that very dict gets the live
    kernel back instead of one rebuilt from the dict (``from_dict`` designs filters and converts
    every buffered sample); any other dict (a state decoded from the changelog, an older state
    given again) is restored from the dict as before. A kernel is taken out while a reading runs, so
    a reading that fails leaves the next one to restore it from the state it was given. Bounded:
    beyond ``limit`` kernels the oldest are dropped (and restored from their dicts when needed)."""

    def __init__(self, limit: int = 16_384) -> None:
        self.limit = limit
        self._by_id: dict[int, tuple[object, Any]] = {}

    def take(self, saved: dict[str, Any], restore: Callable[[dict[str, Any]], _K]) -> _K:
        entry = self._by_id.pop(id(saved), None)
        if entry is not None and entry[0] is saved:  # held here, so its id cannot have been reused
            return entry[1]  # type: ignore[no-any-return]
        return restore(saved)

    def keep(self, saved: dict[str, Any], kernel: object) -> dict[str, Any]:
        while len(self._by_id) >= self.limit:
            del self._by_id[next(iter(self._by_id))]
        self._by_id[id(saved)] = (saved, kernel)
        return saved


class _RainPlan:
    """What the rain detector needs of one set of rain rules, worked out once."""

    __slots__ = ("checks", "horizon_s", "level_rule", "windows_h", "windows_s")

    def __init__(self, rules: tuple[Any, ...], clear_ratio: float) -> None:
        self.windows_h: list[float] = sorted({rule.window_h for rule in rules})
        self.windows_s = [w * 3600.0 for w in self.windows_h]
        self.horizon_s = max(rule.window_h for rule in rules) * 3600.0  # only what the longest window needs
        index = {w: i for i, w in enumerate(self.windows_h)}
        # (rule, its window's index, its threshold in hundredths, its level's index), in rules order
        self.checks = [
            (rule, index[rule.window_h], max(1, rain_k.to_units(rule.mm)), rule.level.rank - 1) for rule in rules
        ]
        levels = {i for *_, i in self.checks}
        sets = tuple(1.0 if i in levels else None for i in range(4))
        self.level_rule = LevelRule.simple(sets, clear_ratio=clear_ratio)


def _transitions(st: State, kind: str, active: bool, level: WarningLevel | None, material_change: bool) -> bool:
    """Whether :meth:`DetectorEngine._transition` with these arguments makes a record (opens,
    updates or clears), so a reading that changes nothing builds no evidence."""
    cur = st["open"].get(kind)
    if cur is None:
        return active
    return not active or material_change or (level.value if level else None) != cur["level"]


class DetectorEngine:
    def __init__(self, rules: Rules | None = None, registry: RegistryLike | None = None) -> None:
        self.rules = rules or Rules()
        self.registry = registry
        self.capped: dict[str, int] = {}  # state caps (rules ``limits``) that refused or evicted, by reason
        # the rules' anomaly channels by telemetry type, each with its scorer parameters
        self._anomaly_by_type: dict[str, list[tuple[AnomalyChannel, anomaly_k.EnsembleParams]]] = {}
        ar = self.rules.anomaly
        for ch in ar.channels:
            params = anomaly_k.EnsembleParams.from_mapping({**ar.params, **ch.params})
            self._anomaly_by_type.setdefault(ch.type, []).append((ch, params))
        # the registry's per-device rain thresholds that override a rule, and the plans made of them
        self._rain_keys = tuple(f"rain_{rule.window_h:g}h_{rule.level.value}_mm" for rule in self.rules.hydro.rain)
        self._rain_plans: dict[tuple[Any, ...] | None, _RainPlan] = {}
        self._fault_params = sf_k.FaultParams.from_mapping(self.rules.hazmat.fault_params)
        self._live = _LiveKernels()

    def _count_cap(self, reason: str) -> None:
        self.capped[reason] = self.capped.get(reason, 0) + 1

    # ------------------------------------------------------------------ entry point
    def process(
        self, reading: Telemetry, state: State | None, seen_s: float | None = None
    ) -> tuple[State, list[Detection]]:
        """``seen_s``: when the reading reached us (the Kafka record time, epoch s); the deadman judges
        contact by it. Without it (backtests) the reading's own timestamp stands in."""
        st: State = {"k": {}, "open": {}} if not state else {"k": dict(state["k"]), "open": dict(state["open"])}
        device = self.registry.get(reading.device_id) if self.registry else None
        out: list[Detection] = []
        seen = seen_s if seen_s is not None else _epoch(reading.ts)
        st["k"]["last_seen_s"] = max(seen, st["k"].get("last_seen_s", seen))
        if DetectionKind.OFFLINE in st["open"]:
            out += self._transition(st, reading, device, DetectionKind.OFFLINE, active=False, level=None, value=0.0)
        if isinstance(reading, RainIncrement):
            out += self._rain(reading, st, device)
        elif isinstance(reading, WaterLevel):
            out += self._water(reading, st, device)
        elif isinstance(reading, GasReading):
            out += self._gas(reading, st, device)
        elif isinstance(reading, FireDetection):
            out += self._fire(reading, st, device)
        elif isinstance(reading, SeismicPacket):
            out += self._seismic(reading, st, device)
        if self._anomaly_by_type or any(key.startswith(ANOMALY_PREFIX) for key in st["k"]):
            out += self._anomalies(reading, st, device)
        return st, out

    # ------------------------------------------------------------------ deadman
    def tick(self, device: Device, now: datetime, state: State | None) -> tuple[State, list[Detection]]:
        """Wall-clock check of one registered device (the deadman), run on a timer, not on data.

        Offline when silent for more than ``k`` x its reporting interval, counting from its last
        reading, or from the first check for a device that has never reported. One ``offline``
        detection per outage; it clears when the device's next reading is processed.
        """
        st: State = {"k": {}, "open": {}} if not state else {"k": dict(state["k"]), "open": dict(state["open"])}
        now_s = _epoch(now)
        started = st["k"].setdefault("first_check_s", now_s)
        k = self.rules.deadman_k
        offline = bool(
            deadman_k.offline_devices(
                {device.device_id: device.interval_s},
                {device.device_id: st["k"]["last_seen_s"]} if "last_seen_s" in st["k"] else {},
                started,
                now_s,
                k,
            )
        )
        if offline == (DetectionKind.OFFLINE in st["open"]):
            return st, []
        src = _Source(device.device_id, device.site, device.family, now)
        last = st["k"].get("last_seen_s")
        silent_s = now_s - (last if last is not None else started)
        return st, self._transition(
            st,
            src,
            device,
            DetectionKind.OFFLINE,
            active=offline,
            level=None,
            value=round(silent_s, 3),
            threshold=k * device.interval_s,
            unit="s",
            evidence={"last_seen": _from_epoch(last).isoformat() if last is not None else None, "k": k},
        )

    # ------------------------------------------------------------------ transitions
    def _transition(
        self,
        st: State,
        reading: Source,
        device: Device | None,
        kind: str,
        *,
        active: bool,
        level: WarningLevel | None,
        value: float,
        threshold: float | None = None,
        unit: str = "",
        window_s: float | None = None,
        evidence: dict[str, Any] | None = None,
        at: datetime | None = None,
        material_change: bool = False,
    ) -> list[Detection]:
        ts = at or reading.ts
        cur = st["open"].get(kind)
        if active and cur is None:
            cur = {"onset": _epoch(ts), "level": level.value if level else None, "rev": 0}
            state = DetectionState.OPEN
        elif active and cur is not None and ((level.value if level else None) != cur["level"] or material_change):
            cur = {**cur, "level": level.value if level else None, "rev": cur["rev"] + 1}
            state = DetectionState.UPDATE
        elif not active and cur is not None:
            cur = {**cur, "rev": cur["rev"] + 1}
            state = DetectionState.CLEAR
        else:
            return []
        if state is DetectionState.CLEAR:
            st["open"].pop(kind, None)
        else:
            st["open"][kind] = cur
        onset = _from_epoch(cur["onset"])
        return [
            Detection(
                id=f"{reading.device_id}:{kind}:{int(cur['onset'] * 1000)}:{cur['rev']}",
                device_id=reading.device_id,
                site=reading.site,
                family=reading.family,
                kind=kind,
                state=state,
                level=level
                if state is not DetectionState.CLEAR
                else (WarningLevel(cur["level"]) if cur["level"] else None),
                value=round(value, 6),
                threshold=threshold,
                unit=unit,
                window_s=window_s,
                onset=onset,
                ts=ts,
                revision=cur["rev"],
                area_code=device.area.code if device else None,
                town=device.area.town if device else "",
                village=device.area.village if device else "",
                lat=device.lat if device else None,
                lon=device.lon if device else None,
                evidence=evidence or {},
            )
        ]

    def _levels(self, st: State, key: str, rule: LevelRule, values: tuple[float, ...]) -> int:
        prev = LevelState.from_dict(st["k"].get(key))
        new = step_level(rule, prev, values)
        st["k"][key] = new.to_dict()
        return new.rank

    # ------------------------------------------------------------------ hydro
    def _rain_plan(self, device: Device | None) -> _RainPlan:
        """The rain rules of a device (the registry's thresholds over the rules file's), and what
        every reading needs of them, made once per distinct set of thresholds."""
        th = device.thresholds if device else None
        key = tuple(th.get(name) for name in self._rain_keys) if th else None
        plan = self._rain_plans.get(key)
        if plan is None:
            if len(self._rain_plans) >= 4096:  # bounded: thresholds are few; a churning registry starts over
                self._rain_plans.clear()
            plan = self._rain_plans[key] = _RainPlan(self._rain_rules(device), self.rules.hydro.rain_clear_ratio)
        return plan

    def _rain(self, r: RainIncrement, st: State, device: Device | None) -> list[Detection]:
        now = _epoch(r.ts)
        plan = self._rain_plan(device)
        window = st["k"]["rain"] = rain_k.RainWindow.load(st["k"].get("rain"))
        if window.add(now, r.interval_s, r.rain_mm, plan.horizon_s, self.rules.limits.rain_max_reports):
            self._count_cap("rain_reports_merged")
        # Totals and thresholds in integer hundredths of a millimetre (exact: 1,000 x 0.1 mm is
        # 100 mm), so a total exactly at a threshold gives a ratio of exactly 1.0 and fires (>=).
        units = window.units(now, plan.windows_s)
        # Per level, the largest ratio of accumulation to that level's threshold over its windows.
        ratios = [0.0, 0.0, 0.0, 0.0]
        worst: dict[int, Any] = {}
        for rule, w, threshold_units, i in plan.checks:
            ratio = units[w] / threshold_units
            if ratio >= ratios[i]:
                ratios[i] = ratio
                worst[i] = rule
        rank = self._levels(st, "rain_level", plan.level_rule, tuple(ratios))
        level = WarningLevel.from_rank(rank) if rank else None
        if not _transitions(st, "rainfall", rank > 0, level, False):
            return []  # nothing opens, changes or clears: no record to describe
        acc = {w: u / rain_k.UNITS_PER_MM for w, u in zip(plan.windows_h, units, strict=True)}
        basis = worst.get(rank - 1) if rank else max(worst.values(), key=lambda x: acc[x.window_h] / x.mm, default=None)
        value = acc[basis.window_h] if basis else 0.0
        evidence = {f"rain_{w:g}h_mm": round(v, 2) for w, v in acc.items()}
        if basis:
            evidence["rule"] = basis.source
        return self._transition(
            st,
            r,
            device,
            "rainfall",
            active=rank > 0,
            level=level,
            value=value,
            threshold=basis.mm if basis else None,
            unit="mm",
            window_s=basis.window_h * 3600.0 if basis else None,
            evidence=evidence,
        )

    def _rain_rules(self, device: Device | None) -> tuple[Any, ...]:
        rules = self.rules.hydro.rain
        if device is None or not device.thresholds:
            return rules
        out = []
        for rule in rules:
            key = f"rain_{rule.window_h:g}h_{rule.level.value}_mm"
            out.append(rule.model_copy(update={"mm": device.thresholds[key]}) if key in device.thresholds else rule)
        return tuple(out)

    def _water(self, r: WaterLevel, st: State, device: Device | None) -> list[Detection]:
        th = device.thresholds if device else {}
        out = self._rise(r, st, device, th)
        warning = th.get("warning_level_m")
        if warning is None:
            return out
        hr = self.rules.hydro
        sets = (
            warning - th.get("approach_margin_m", hr.approach_margin_m),
            warning,
            th.get("guaranteed_level_m"),
            th.get("record_level_m"),
        )
        rule = LevelRule.simple(sets, clear_offset=hr.level_clear_offset_m)
        rank = self._levels(st, DetectionKind.WATER_LEVEL, rule, (r.level_m,) * 4)
        return out + self._transition(
            st,
            r,
            device,
            DetectionKind.WATER_LEVEL,
            active=rank > 0,
            level=WarningLevel.from_rank(rank) if rank else None,
            value=r.level_m,
            threshold=sets[rank - 1] if rank else warning,
            unit="m",
            evidence={"warning_level_m": warning, "guaranteed_level_m": sets[2], "record_level_m": sets[3]},
        )

    def _rise(self, r: WaterLevel, st: State, device: Device | None, th: dict[str, float]) -> list[Detection]:
        """Rate of rise (Theil-Sen over the last window, m/h); a detection when a limit is set."""
        saved = st["k"].get("rise")
        tracker = rise_k.RiseTracker.from_dict(saved) if saved else rise_k.RiseTracker(self.rules.hydro.rise_window_s)
        rate = tracker.update(_epoch(r.ts), r.level_m)
        st["k"]["rise"] = tracker.to_dict()
        limit = th.get("rise_m_per_h", self.rules.hydro.rise_m_per_h)
        if limit is None or rate is None:
            return []
        is_open = DetectionKind.WATER_RISE in st["open"]
        active = rate >= limit or (is_open and rate >= limit * 0.8)
        return self._transition(
            st,
            r,
            device,
            DetectionKind.WATER_RISE,
            active=active,
            level=WarningLevel.YELLOW if active else None,
            value=round(rate, 4),
            threshold=limit,
            unit="m/h",
        )

    # ------------------------------------------------------------------ anomaly
    def _anomaly_channels(self, r: Telemetry, st: State) -> dict[str, tuple[AnomalyChannel, anomaly_k.EnsembleParams]]:
        """The rules' channels that score this reading, by channel name (the most specific rule of a
        name wins: one listing the device over one for every device, one naming the gas over one
        for every gas; among equals the first). A gas the device's gas cap refused is not scored."""
        gas = r.gas if isinstance(r, GasReading) else None
        if gas is not None and gas.upper() not in st["k"].get("gases", ()):
            return {}
        chosen: dict[str, tuple[AnomalyChannel, anomaly_k.EnsembleParams]] = {}
        for ch, params in self._anomaly_by_type.get(r.type, ()):
            if not ch.applies(r.device_id, gas):
                continue
            name = ch.name_for(gas)
            if name not in chosen or ch.specificity > chosen[name][0].specificity:
                chosen[name] = (ch, params)
        return chosen

    def _anomalies(self, r: Telemetry, st: State, device: Device | None) -> list[Detection]:
        """Score the reading's configured channels (rules ``anomaly.channels``); nothing else is scored.
        The state of a channel the rules no longer score for this device is dropped (its open
        detection cleared)."""
        chosen = self._anomaly_channels(r, st)
        out: list[Detection] = []
        for key in [k for k in st["k"] if k.startswith(ANOMALY_PREFIX)]:
            name = key[len(ANOMALY_PREFIX) :]
            if name not in chosen and not self._anomaly_configured(r.device_id, name):
                del st["k"][key]
                kind = _anomaly_kind(name)
                if kind in st["open"]:
                    out += self._transition(st, r, device, kind, active=False, level=None, value=0.0)
        for name, (ch, params) in chosen.items():
            x = getattr(r, ch.field, None)
            if isinstance(x, bool) or not isinstance(x, int | float):
                continue  # an optional field the reading left out
            out += self._anomaly(r, st, device, name, float(x), ch, params)
        return out

    def _anomaly_configured(self, device_id: str, name: str) -> bool:
        """Whether some channel of the rules can give this device a channel of that name."""
        for channels in self._anomaly_by_type.values():
            for ch, _ in channels:
                if ch.devices is not None and device_id not in ch.devices:
                    continue
                if ch.type == "hazmat.gas":
                    if name.startswith("gas_") and (ch.gas is None or ch.gas.upper() == name[4:].upper()):
                        return True
                elif ch.field == name:
                    return True
        return False

    def _anomaly(
        self,
        r: Telemetry,
        st: State,
        device: Device | None,
        channel: str,
        x: float,
        ch: AnomalyChannel,
        params: anomaly_k.EnsembleParams,
    ) -> list[Detection]:
        """The generic detector on one configured channel: score >= open_score opens an
        ``anomaly_<channel>`` detection; it clears once the score is below clear_score and the value
        is back within floor_z sigma of its baseline. Without ``promote_to`` it has
        no warning level (the alert stage keeps it to operators and agencies); with it, that level."""
        ar = self.rules.anomaly
        key = f"{ANOMALY_PREFIX}{channel}"
        saved = st["k"].get(key)
        n_channels = sum(k.startswith(ANOMALY_PREFIX) for k in st["k"])
        if saved is None and n_channels >= self.rules.limits.max_anomaly_channels:
            self._count_cap("anomaly_channel_refused")  # one more scored channel than a device may have
            return []
        scorer = None
        if saved:
            try:
                scorer = anomaly_k.EnsembleScorer.from_dict(saved, params)
            except (ValueError, KeyError, TypeError):
                scorer = None  # the rules changed the scorer's shape (short_n, bins): learn afresh
        scorer = scorer or anomaly_k.EnsembleScorer(params)
        point = scorer.step(_epoch(r.ts), x)
        st["k"][key] = scorer.to_dict()
        kind = _anomaly_kind(channel)
        open_score = ch.open_score if ch.open_score is not None else ar.open_score
        clear_score = ch.clear_score if ch.clear_score is not None else ar.clear_score
        is_open = kind in st["open"]
        # Open at open_score; stay open while the score holds clear_score or the value is still
        # floor_z sigma off its baseline (the scorer mutes itself for suppress_n samples after an
        # alarm, so the score alone would clear a lasting deviation at its next sample).
        held = point.score >= clear_score or point.z >= params.floor_z
        active = point.score >= open_score or (is_open and held)
        return self._transition(
            st,
            r,
            device,
            kind,
            active=active,
            level=ch.promote_to,
            value=x,
            unit=_field_unit(r, ch.field),
            evidence={
                "score": round(point.score, 4),
                "z": round(point.z, 3),
                "baseline": round(point.baseline, 6),
                "baseline_sd": round(point.scale, 6),
                "samples": scorer.n,
                "field": ch.field,
                "promoted": ch.promote_to is not None,
            },
        )

    # ------------------------------------------------------------------ hazmat
    def _gas(self, r: GasReading, st: State, device: Device | None) -> list[Detection]:
        gases = st["k"].get("gases", [])
        if r.gas.upper() not in gases:
            if len(gases) >= self.rules.limits.max_gases:
                self._count_cap("gas_refused")  # one more distinct gas than a device may have: refused
                return []
            st["k"]["gases"] = [*gases, r.gas.upper()]
        out = self._faults(r, st, device)
        rules = gas_k.rules_for(r.gas, r.unit, self._gas_overrides(r, device))
        if not rules:
            return out
        return out + self._gas_levels(r, st, device, rules)

    def _faults(self, r: GasReading, st: State, device: Device | None) -> list[Detection]:
        """Sensor faults (stuck, out of range, spike, zero drift): the reading may not be trusted."""
        saved = st["k"].get("faults")
        params = self._fault_params
        tracker = sf_k.FaultTracker.from_dict(saved, params) if saved else sf_k.FaultTracker(params)
        th = device.thresholds if device else {}
        hi = th.get("range_max", 100.0 if r.unit in ("%LEL", "%vol") else None)
        faults = tracker.update(_epoch(r.ts), r.value, th.get("range_min", 0.0), hi)
        st["k"]["faults"] = tracker.to_dict()
        before = st["open"].get(DetectionKind.SENSOR_FAULT, {}).get("faults")
        out = self._transition(
            st,
            r,
            device,
            DetectionKind.SENSOR_FAULT,
            active=bool(faults),
            level=None,
            value=r.value,
            evidence={"faults": sorted(faults)},
            material_change=before is not None and sorted(faults) != before,
        )
        if DetectionKind.SENSOR_FAULT in st["open"]:
            st["open"][DetectionKind.SENSOR_FAULT]["faults"] = sorted(faults)
        return out

    def _gas_overrides(self, r: GasReading, device: Device | None) -> dict[str, float]:
        overrides = dict(self.rules.hazmat.setpoints.get(r.gas, {}))
        if device:
            keys = ("level1", "level2", "o2_low", "o2_high", "lel_vol")
            overrides.update({k: v for k, v in device.thresholds.items() if k in keys})
        return overrides

    def _gas_levels(
        self, r: GasReading, st: State, device: Device | None, rules: list[gas_k.GasRule]
    ) -> list[Detection]:
        out: list[Detection] = []
        for g in rules:
            try:
                value = gas_k.to_unit(r.gas, r.value, r.unit, g.unit, g.lel_vol)
            except ValueError:
                continue
            rule = LevelRule(g.rule.sets, g.rule.clears, g.rule.above, self.rules.hazmat.hold_down, 1)
            rank = self._levels(st, g.kind, rule, (value,) * 4)
            level = WarningLevel.from_rank(rank) if rank else None
            out += self._transition(
                st,
                r,
                device,
                g.kind,
                active=rank > 0,
                level=level,
                value=value,
                threshold=g.rule.sets[rank - 1] if rank else next(s for s in g.rule.sets if s is not None),
                unit=g.unit,
                evidence={"gas": r.gas, "raw_value": r.value, "raw_unit": r.unit},
            )
        return out

    # ------------------------------------------------------------------ fire
    def _fire(self, r: FireDetection, st: State, device: Device | None) -> list[Detection]:
        fr = self.rules.fire
        p = fire_k.FireParams(
            fr.k, fr.window_s, fr.min_confidence, fr.bearing_tol_deg, fr.clear_after_s, self.rules.limits.fire_max_hits
        )
        now = _epoch(r.ts)
        held = [tuple(h) for h in st["k"].get(DetectionKind.FIRE, [])]
        hits = fire_k.add_hit(held, (now, r.bearing_deg, r.confidence, r.kind), p)
        if len(held) >= p.max_hits and hits:  # hits still inside the window but beyond the count: evicted
            horizon = hits[-1][0] - max(p.window_s, p.clear_after_s)
            in_window = sum(h[0] > horizon for h in held) + (r.confidence >= p.min_confidence)
            for _ in range(in_window - len(hits)):
                self._count_cap("fire_hit_evicted")
        st["k"][DetectionKind.FIRE] = [list(h) for h in hits]
        pers = fire_k.evaluate(hits, now, p)
        is_open = DetectionKind.FIRE in st["open"]
        active = pers.active or (is_open and fire_k.quiet_for(hits, now) < p.clear_after_s)
        level = WarningLevel.ORANGE if pers.kind == "flame" else WarningLevel.YELLOW
        if is_open and not pers.active:
            level = WarningLevel(st["open"][DetectionKind.FIRE]["level"])
        # Distinct sweeps seeing the fire (the alert stage's persist_sweeps counts these, not records).
        old = st["k"].get("fire_sweeps")
        tally = tuple(old) if old and (active or fire_k.quiet_for(hits, now) <= p.window_s) else None
        if r.confidence >= p.min_confidence:
            tally = fire_k.tally_sweep(tally, now, r.sweep, fr.min_sweep_s)  # type: ignore[arg-type]
        if not active and is_open:
            tally = None  # the detection clears: the next fire counts afresh
        sweeps = tally[0] if tally else 0
        st["k"]["fire_sweeps"] = list(tally) if tally else None
        # one update per new sweep until the alert stage's persistence is reached (bounded records)
        persist = self.rules.confirm.fire.persist_sweeps
        more = is_open and active and sweeps > (old[0] if old else 0) and sweeps <= persist
        return self._transition(
            st,
            r,
            device,
            DetectionKind.FIRE,
            active=active,
            level=level,
            value=pers.confidence,
            threshold=p.min_confidence,
            evidence={"bearing_deg": pers.bearing_deg, "hits": pers.count, "kind": pers.kind, "sweeps": sweeps},
            material_change=more,
        )

    # ------------------------------------------------------------------ seismic
    def _pd_progress(
        self,
        r: SeismicPacket,
        st: State,
        trig: seis_k.StationTrigger,
        samples: np.ndarray,
        events: list[dict[str, Any]],
    ) -> float | None:
        """Pd (cm): peak displacement over the first ``pd_window_s`` after trigger-on (for magnitude).

        The velocity from the trigger sample on is collected across packets in the state; returns Pd
        in the packet where the window fills (whether or not the trigger has ended by then). Before
        that, every ``PD_EARLY_EVERY_S`` the Pd profile so far is left in the state
        (``pd_early_profile``) for an early, partial-window magnitude.
        """
        window_n = max(1, round(self.rules.seismic.pd_window_s * r.sample_rate_hz))
        first = trig.n - len(samples)  # global index of this packet's first sample
        buf = st["k"].get("pd_buf")
        ons = [ev for ev in events if ev["event"] == "on"]
        if ons:
            start = max(0, ons[-1]["sample"] - first)
            buf = samples[start : start + window_n].tolist()
        elif buf is not None:
            buf += samples[: window_n - len(buf)].tolist()
        if ons:
            st["k"]["pd_early"] = 0
        early_n = max(1, round(PD_EARLY_EVERY_S * r.sample_rate_hz))
        if buf is not None and len(buf) < window_n and len(buf) // early_n > st["k"].get("pd_early", 0):
            # The magnitude must not wait the whole window: the profile so far (1 s, 2 s) goes out, and
            # the alert engine makes a growth-corrected magnitude of it (tocsin.alerts.kernels.quake
            # truncated_pd_magnitude) until the full-window Pd replaces it.
            st["k"]["pd_early"] = len(buf) // early_n
            vel = np.asarray(buf[: st["k"]["pd_early"] * early_n])
            profile = seis_k.pd_profile(vel, r.sample_rate_hz, PD_PROFILE_STEP_S)
            st["k"]["pd_early_profile"] = [round(x, 6) for x in profile]
        if buf is not None and len(buf) >= window_n:
            st["k"]["pd_buf"] = None
            st["k"]["pd_early"] = 0
            st["k"].pop("pd_early_profile", None)
            vel = np.asarray(buf)
            # Pd over 0.5, 1.0, ... s as well: the alert engine cuts a near station's window before its
            # S wave with it (tocsin.alerts.kernels.quake.truncated_pd_magnitude); sent with the Pd below
            step = PD_PROFILE_STEP_S
            st["k"]["pd_profile"] = [round(x, 6) for x in seis_k.pd_profile(vel, r.sample_rate_hz, step)]
            return round(seis_k.pd_from_displacement(seis_k.velocity_to_displacement(vel, r.sample_rate_hz)), 6)
        st["k"]["pd_buf"] = buf
        return None

    def _pd_evidence(self, st: State, pd_cm: float) -> dict[str, Any]:
        """Pd, its window, and the Pd profile of the same window (once: taken out of the state)."""
        profile = st["k"].pop("pd_profile", None)
        extra = {} if profile is None else {"pd_profile_cm": profile, "pd_step_s": PD_PROFILE_STEP_S}
        return {"pd_cm": pd_cm, "pd_window_s": self.rules.seismic.pd_window_s, **extra}

    def _seismic_unit(self, r: SeismicPacket, device: Device | None) -> tuple[str, float] | None:
        """``(physical unit, counts per unit)`` of a packet: m/s or m/s2 as sent (gain 1), counts with
        the station's ``counts_per_m_s`` (velocity) or ``counts_per_m_s2`` (acceleration) sensitivity
        from the registry; None for counts without a sensitivity."""
        if r.unit != "counts":
            return r.unit, 1.0
        th = device.thresholds if device else {}
        if th.get("counts_per_m_s"):
            return seis_k.VELOCITY, th["counts_per_m_s"]
        if th.get("counts_per_m_s2"):
            return seis_k.ACCELERATION, th["counts_per_m_s2"]
        return None

    def _ground_motion(self, r: SeismicPacket, st: State, unit: str, x: np.ndarray) -> dict[str, float]:
        """Fold a packet into its instrument's three-component peaks (GB/T 17742-2020: vector sum of
        the 0.1-10 Hz band-passed components) and return the station's peaks: those of the instrument
        with the highest intensity (a station with a seismometer and an accelerometer counts once)."""
        gms: dict[str, Any] = dict(st["k"].get("gm", {}))
        instrument = r.channel[:2]
        saved = gms.get(instrument)
        gm = self._live.take(saved, seis_k.GroundMotion.from_dict) if saved else seis_k.GroundMotion(r.sample_rate_hz)
        if gm.df != r.sample_rate_hz:  # the instrument changed its rate: start over
            gm = seis_k.GroundMotion(r.sample_rate_hz)
        window = st["k"].get("gm_window")
        gm.set_window(*(window or (None, None)))
        gm.add(r.channel[-1], unit, x, _epoch(r.ts), r.sample_rate_hz)
        gms[instrument] = self._live.keep(gm.to_dict(), gm)
        st["k"]["gm"] = gms
        return self._station_peaks(st)

    @staticmethod
    def _station_peaks(st: State) -> dict[str, float]:
        best = {"pga_ms2": 0.0, "pgv_ms": 0.0, "intensity": 0.0}
        for saved in st["k"].get("gm", {}).values():
            pga, pgv = float(saved["pga_ms2"]), float(saved["pgv_ms"])
            i = seis_k.instrumental_intensity(pga, pgv)
            if i > best["intensity"] or (i == best["intensity"] and pgv > best["pgv_ms"]):
                best = {"pga_ms2": pga, "pgv_ms": pgv, "intensity": i}
        return best

    def _set_peak_window(self, st: State, t_on: float | None, t_off: float | None) -> None:
        """The station trigger's on/off window for the peaks of every instrument of the station."""
        st["k"]["gm_window"] = [t_on, t_off]
        gms = st["k"]["gm"] = dict(st["k"].get("gm", {}))  # the given state's own mapping stays as it was
        for name, saved in gms.items():
            gm = self._live.take(saved, seis_k.GroundMotion.from_dict)
            gm.set_window(t_on, t_off)
            gms[name] = self._live.keep(gm.to_dict(), gm)

    def _seismic(self, r: SeismicPacket, st: State, device: Device | None) -> list[Detection]:
        """Station trigger (band-pass, recursive STA/LTA, hysteresis) with running PGA/PGV/intensity.

        Channels: velocity (m/s), acceleration (m/s2, a strong-motion station), or counts with the
        registry's ``counts_per_m_s`` / ``counts_per_m_s2``. The station trigger and Pd run on the
        vertical component (the first channel ending in ``Z``; acceleration is integrated to velocity
        first); every component feeds the intensity, GB/T 17742-2020: PGA and PGV are the peaks of
        the vector sum of the three components band-passed to 0.1-10 Hz
        (:class:`tocsin.detectors.kernels.seismic.GroundMotion`), from trigger-on to trigger-off.

        Opens a ``p_trigger`` detection at the trigger-on sample, updates it when the intensity
        estimate grows by 0.5 or more (whichever component's packet makes it grow) or when Pd is
        ready, clears it at trigger-off.
        """
        known = self._seismic_unit(r, device)
        if known is None:
            return []  # counts without a sensitivity: not a physical quantity
        unit, gain = known
        x = np.asarray(r.samples, dtype=float) / gain
        vertical = r.channel.endswith("Z") and st["k"].setdefault("seis_channel", r.channel) == r.channel
        events: list[dict[str, Any]] = []
        pd_cm: float | None = None
        triggered = DetectionKind.P_TRIGGER in st["open"]
        if vertical:
            sr = self.rules.seismic
            if unit == seis_k.ACCELERATION:
                saved_i = st["k"].get("acc2vel")
                integ = (
                    self._live.take(saved_i, seis_k.AccelerationToVelocity.from_dict)
                    if saved_i and saved_i["df"] == r.sample_rate_hz
                    else seis_k.AccelerationToVelocity(r.sample_rate_hz)
                )
                samples = integ.process(x)
                st["k"]["acc2vel"] = self._live.keep(integ.to_dict(), integ)
            else:
                samples = x
            saved = st["k"].get("seis")
            trig = (
                self._live.take(saved, seis_k.StationTrigger.from_dict)
                if saved
                else seis_k.StationTrigger(sr.freqmin_hz, sr.freqmax_hz, 4, sr.sta_s, sr.lta_s, sr.thr_on, sr.thr_off)
            )
            events = trig.process(samples, r.sample_rate_hz, _epoch(r.ts))
            pd_cm = self._pd_progress(r, st, trig, samples, events)
            st["k"]["seis"] = self._live.keep(trig.to_dict(), trig)
            triggered = trig.triggered
            # the peak window follows the trigger: the last on (and its off, if it ended)
            for ev in events:
                if ev["event"] == "on":
                    self._set_peak_window(st, ev["t"], None)
                elif st["k"].get("gm_window"):
                    self._set_peak_window(st, st["k"]["gm_window"][0], ev["t"])
        out: list[Detection] = []
        reported = st["k"].get("seis_reported_i", 0.0)
        peaks = self._ground_motion(r, st, unit, x)
        for ev in events:
            at = _from_epoch(ev["t"])
            if ev["event"] == "on":
                # The peaks so far (to the end of this packet) travel with the opening record.
                reported = peaks["intensity"] if triggered else 0.0
                evidence = {
                    "ratio": round(ev["ratio"], 3),
                    "channel": r.channel,
                    **({k: round(v, 6) for k, v in peaks.items()} if triggered else {}),
                }
                out += self._transition(
                    st,
                    r,
                    device,
                    DetectionKind.P_TRIGGER,
                    active=True,
                    level=None,
                    value=ev["ratio"],
                    at=at,
                    evidence=evidence,
                )
            else:
                evidence = {k: round(v, 6) for k, v in peaks.items()}
                if pd_cm is not None:  # the window filled in the packet where the trigger ended
                    evidence |= self._pd_evidence(st, pd_cm)
                    pd_cm = None
                out += self._transition(
                    st,
                    r,
                    device,
                    DetectionKind.P_TRIGGER,
                    active=False,
                    level=None,
                    value=peaks["intensity"],
                    at=at,
                    evidence=evidence,
                )
        # re-reported on half a degree of growth, and whenever it reaches a new GB/T degree (the
        # warning colours and the public floor change at degree boundaries: 4.5, 5.5, 6.5, 7.5)
        grew = triggered and (peaks["intensity"] >= reported + 0.5 or _degree(peaks["intensity"]) > _degree(reported))
        early = st["k"].pop("pd_early_profile", None) if pd_cm is None else None
        if (grew or pd_cm is not None or early) and DetectionKind.P_TRIGGER in st["open"]:
            reported = max(reported, peaks["intensity"]) if grew else reported
            pd = {} if pd_cm is None else self._pd_evidence(st, pd_cm)
            if early:
                pd = {"pd_profile_cm": early, "pd_step_s": PD_PROFILE_STEP_S, "pd_partial": True}
            out += self._transition(
                st,
                r,
                device,
                DetectionKind.P_TRIGGER,
                active=True,
                level=None,
                value=peaks["intensity"],
                at=r.end,
                material_change=True,
                evidence={**{k: round(v, 6) for k, v in peaks.items()}, **pd},
            )
        st["k"]["seis_reported_i"] = reported
        return out
