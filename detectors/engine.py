"""Detector engine: one reading plus the device's state in, new state plus detections out.

Transport-free and deterministic: the Faust agents and the embedded runner both call
``DetectorEngine.process`` and only differ in where the state dict is kept (a changelogged Faust
table keyed by device, or a dict). Detections are state transitions (open, update, clear), never one
record per sample while a condition persists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectors.kernels import fire as fire_k
from detectors.kernels import gas as gas_k
from detectors.kernels import rainfall as rain_k
from detectors.kernels import seismic as seis_k
from detectors.kernels.levels import LevelRule, LevelState, step_level
from detectors.rules import Rules
from schemas.common import WarningLevel
from schemas.detection import Detection, DetectionState
from schemas.registry import Device, RegistryLike
from schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, Telemetry, WaterLevel

State = dict[str, Any]
LEVELS = (WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE, WarningLevel.RED)


def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def _from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def detection_key(d: Detection) -> bytes:
    """Kafka key of a detection: all detections of one hazard in one area meet in one partition."""
    return f"{d.family.value}:{d.area_code or d.site}".encode()


class DetectorEngine:
    def __init__(self, rules: Rules | None = None, registry: RegistryLike | None = None) -> None:
        self.rules = rules or Rules()
        self.registry = registry

    # ------------------------------------------------------------------ entry point
    def process(self, reading: Telemetry, state: State | None) -> tuple[State, list[Detection]]:
        st: State = {"k": {}, "open": {}} if not state else {"k": dict(state["k"]), "open": dict(state["open"])}
        device = self.registry.get(reading.device_id) if self.registry else None
        out: list[Detection] = []
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
        return st, out

    # ------------------------------------------------------------------ transitions
    def _transition(
        self,
        st: State,
        reading: Telemetry,
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
    def _rain(self, r: RainIncrement, st: State, device: Device | None) -> list[Detection]:
        hr = self.rules.hydro
        now = _epoch(r.ts)
        reports = rain_k.add_report([tuple(x) for x in st["k"].get("rain", [])], now, r.interval_s, r.rain_mm)
        st["k"]["rain"] = [list(x) for x in reports]
        rules = self._rain_rules(device)
        windows = sorted({rule.window_h for rule in rules})
        acc = {w: rain_k.accumulation(reports, now, w * 3600.0)[0] for w in windows}
        # Per level, the largest ratio of accumulation to that level's threshold over its windows.
        ratios = [0.0, 0.0, 0.0, 0.0]
        worst: dict[int, Any] = {}
        for rule in rules:
            ratio = acc[rule.window_h] / rule.mm
            i = rule.level.rank - 1
            if ratio >= ratios[i]:
                ratios[i] = ratio
                worst[i] = rule
        sets = tuple(1.0 if i in worst else None for i in range(4))
        lrule = LevelRule.simple(sets, clear_ratio=hr.rain_clear_ratio)  # type: ignore[arg-type]
        rank = self._levels(st, "rain_level", lrule, tuple(ratios))
        level = WarningLevel.from_rank(rank) if rank else None
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
        warning = th.get("warning_level_m")
        if warning is None:
            return []
        hr = self.rules.hydro
        sets = (
            warning - th.get("approach_margin_m", hr.approach_margin_m),
            warning,
            th.get("guaranteed_level_m"),
            th.get("record_level_m"),
        )
        rule = LevelRule.simple(sets, clear_offset=hr.level_clear_offset_m)
        rank = self._levels(st, "water_level", rule, (r.level_m,) * 4)
        return self._transition(
            st,
            r,
            device,
            "water_level",
            active=rank > 0,
            level=WarningLevel.from_rank(rank) if rank else None,
            value=r.level_m,
            threshold=sets[rank - 1] if rank else warning,
            unit="m",
            evidence={"warning_level_m": warning, "guaranteed_level_m": sets[2], "record_level_m": sets[3]},
        )

    # ------------------------------------------------------------------ hazmat
    def _gas(self, r: GasReading, st: State, device: Device | None) -> list[Detection]:
        overrides = dict(self.rules.hazmat.setpoints.get(r.gas, {}))
        if device:
            overrides.update(
                {k: v for k, v in device.thresholds.items() if k in ("level1", "level2", "o2_low", "o2_high")}
            )
        out: list[Detection] = []
        for g in gas_k.rules_for(r.gas, r.unit, overrides):
            try:
                value = gas_k.to_unit(r.gas, r.value, r.unit, g.unit)
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
        p = fire_k.FireParams(fr.k, fr.window_s, fr.min_confidence, fr.bearing_tol_deg, fr.clear_after_s)
        now = _epoch(r.ts)
        hits = fire_k.add_hit(
            [tuple(h) for h in st["k"].get("fire", [])], (now, r.bearing_deg, r.confidence, r.kind), p
        )
        st["k"]["fire"] = [list(h) for h in hits]
        pers = fire_k.evaluate(hits, now, p)
        is_open = "fire" in st["open"]
        active = pers.active or (is_open and fire_k.quiet_for(hits, now) < p.clear_after_s)
        level = WarningLevel.ORANGE if pers.kind == "flame" else WarningLevel.YELLOW
        if is_open and not pers.active:
            level = WarningLevel(st["open"]["fire"]["level"])
        return self._transition(
            st,
            r,
            device,
            "fire",
            active=active,
            level=level,
            value=pers.confidence,
            threshold=p.min_confidence,
            evidence={"bearing_deg": pers.bearing_deg, "hits": pers.count, "kind": pers.kind},
        )

    # ------------------------------------------------------------------ seismic
    def _seismic(self, r: SeismicPacket, st: State, device: Device | None) -> list[Detection]:
        """Station trigger (band-pass, recursive STA/LTA, hysteresis) with running PGA/PGV/intensity.

        Opens a ``p_trigger`` detection at the trigger-on sample, updates it when the intensity
        estimate grows by 0.5 or more, clears it at trigger-off. Only velocity (m/s) channels.
        """
        if r.unit != "m/s":
            return []
        sr = self.rules.seismic
        saved = st["k"].get("seis")
        trig = (
            seis_k.StationTrigger.from_dict(saved)
            if saved
            else seis_k.StationTrigger(sr.freqmin_hz, sr.freqmax_hz, 4, sr.sta_s, sr.lta_s, sr.thr_on, sr.thr_off)
        )
        events = trig.process(r.samples, r.sample_rate_hz, _epoch(r.ts))
        out: list[Detection] = []
        reported = st["k"].get("seis_reported_i", 0.0)
        peaks = {
            "pga_ms2": round(trig.pga_ms2, 6),
            "pgv_ms": round(trig.pgv_ms, 6),
            "intensity": trig.intensity,
        }
        for ev in events:
            at = _from_epoch(ev["t"])
            if ev["event"] == "on":
                # The peaks so far (to the end of this packet) travel with the opening record.
                reported = trig.intensity if trig.triggered else 0.0
                evidence = {
                    "ratio": round(ev["ratio"], 3),
                    "channel": r.channel,
                    **(peaks if trig.triggered else {}),
                }
                out += self._transition(
                    st,
                    r,
                    device,
                    "p_trigger",
                    active=True,
                    level=None,
                    value=ev["ratio"],
                    at=at,
                    evidence=evidence,
                )
            else:
                out += self._transition(
                    st,
                    r,
                    device,
                    "p_trigger",
                    active=False,
                    level=None,
                    value=ev["intensity"],
                    at=at,
                    evidence={k: round(ev[k], 6) for k in ("pga_ms2", "pgv_ms", "intensity")},
                )
        if trig.triggered and trig.intensity >= reported + 0.5:
            reported = trig.intensity
            out += self._transition(
                st,
                r,
                device,
                "p_trigger",
                active=True,
                level=None,
                value=trig.intensity,
                at=r.end,
                material_change=True,
                evidence=peaks,
            )
        st["k"]["seis"] = trig.to_dict()
        st["k"]["seis_reported_i"] = reported
        return out
