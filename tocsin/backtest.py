"""Offline backtest: run a detector over a recorded series with the live path's code.

Input rows become the same telemetry models the gateway produces, and go through the same
``DetectorEngine`` (or, for the generic detectors, the same kernels) as in the worker. Output is
JSONL: one ``{"type": "detection", ...}`` line per detection transition and, for the anomaly
detector, one ``{"type": "score", "ts", "value", "score"}`` line per input row.

Inputs: CSV with a header (``timestamp,value`` at least; other columns by name), JSONL (telemetry
payloads as devices publish them, or ``{"timestamp", "value"}`` objects), or miniSEED (seismic).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from detectors.engine import DetectorEngine
from detectors.kernels.levels import LevelRule, LevelState, step_level
from detectors.rules import Rules
from schemas.common import Family, WarningLevel
from schemas.registry import Area, Device, Registry
from schemas.telemetry import TELEMETRY_ADAPTER, Telemetry

DEVICE, SITE = "backtest", "backtest"
DETECTORS = ("rainfall", "water_level", "gas", "fire", "seismic", "threshold", "anomaly")
_FAMILY = {
    "rainfall": Family.HYDRO,
    "water_level": Family.HYDRO,
    "gas": Family.HAZMAT,
    "fire": Family.FIRE,
    "seismic": Family.SEISMIC,
}


class BacktestError(ValueError):
    pass


@dataclass(frozen=True)
class Row:
    ts: datetime
    value: float | None
    fields: dict[str, Any]


def _parse_ts(text: str) -> datetime:
    if ":" not in text:  # an ISO time has one; epoch seconds never do (and a failed float() is slow)
        try:
            t = float(text)
            return datetime.fromtimestamp(t, UTC)
        except ValueError:
            pass
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def read_rows(path: Path) -> Iterator[Row | Telemetry]:
    suffix = path.suffix.lower()
    if suffix in (".mseed", ".miniseed", ".ms"):
        from ingest.mseed import decode_mseed, to_packet_fields

        for record in decode_mseed(path.read_bytes()):
            yield TELEMETRY_ADAPTER.validate_python({**to_packet_fields(record), "device_id": DEVICE, "site": SITE})
        return
    with path.open(encoding="utf-8") as fh:
        if suffix == ".csv":
            for i, rec in enumerate(csv.DictReader(fh), start=2):
                try:
                    ts = _parse_ts(rec.get("timestamp") or rec.get("ts") or "")
                    value = float(rec["value"]) if rec.get("value") not in (None, "") else None
                except (KeyError, ValueError) as exc:
                    raise BacktestError(f"{path}:{i}: needs timestamp and value columns ({exc})") from exc
                yield Row(ts, value, dict(rec))
            return
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if "type" in obj:
                yield TELEMETRY_ADAPTER.validate_python({**obj, "device_id": DEVICE, "site": SITE})
            else:
                try:
                    yield Row(_parse_ts(str(obj.get("timestamp", obj.get("ts")))), float(obj["value"]), obj)
                except (KeyError, ValueError) as exc:
                    raise BacktestError(f"{path}:{i}: needs timestamp and value ({exc})") from exc


def _reading(detector: str, row: Row, prev: Row | None, params: dict[str, str]) -> Telemetry:
    base: dict[str, Any] = {"device_id": DEVICE, "site": SITE, "ts": row.ts}
    if detector == "rainfall":
        interval = float(params.get("interval_s", 0) or 0) or ((row.ts - prev.ts).total_seconds() if prev else 300.0)
        base |= {"type": "hydro.rain", "rain_mm": row.value, "interval_s": interval}
    elif detector == "water_level":
        base |= {"type": "hydro.level", "level_m": row.value}
    elif detector == "gas":
        base |= {
            "type": "hazmat.gas",
            "gas": row.fields.get("gas") or params.get("gas", "CH4"),
            "unit": row.fields.get("unit") or params.get("unit", "%LEL"),
            "value": row.value,
        }
    else:
        raise BacktestError(f"detector {detector} needs telemetry JSONL input, not timestamp,value rows")
    return TELEMETRY_ADAPTER.validate_python(base)


def _engine(detector: str, params: dict[str, str]) -> DetectorEngine:
    thresholds = {
        k: float(v) for k, v in params.items() if k.endswith("_m") or k.endswith("_mm") or k.startswith("level")
    }
    device = Device(
        device_id=DEVICE,
        family=_FAMILY[detector],
        site=SITE,
        lat=0,
        lon=0,
        area=Area(code="100000"),
        thresholds=thresholds,
    )
    return DetectorEngine(Rules(), Registry(devices=[device]))


def run(detector: str, path: Path, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Yield the output records of one backtest."""
    if detector not in DETECTORS:
        raise BacktestError(f"unknown detector {detector!r}; one of {', '.join(DETECTORS)}")
    if detector == "threshold":
        yield from _threshold(path, params)
        return
    if detector == "anomaly":
        yield from _anomaly(path, params)
        return
    engine = _engine(detector, params)
    state: dict[str, Any] | None = None
    prev: Row | None = None
    for item in read_rows(path):
        if isinstance(item, Row):
            if item.value is None:
                continue
            reading = _reading(detector, item, prev, params)
            prev = item
        else:
            reading = item
        state, detections = engine.process(reading, state)
        for d in detections:
            yield {"type": "detection", **json.loads(d.model_dump_json())}


def _threshold(path: Path, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Generic multi-level threshold with hysteresis: --param blue=.. yellow=.. orange=.. red=.."""
    sets = [float(params[lv.value]) if lv.value in params else None for lv in WarningLevel]
    if not any(s is not None for s in sets):
        raise BacktestError("threshold needs at least one of --param blue=/yellow=/orange=/red=")
    rule = LevelRule.simple(
        sets,
        clear_ratio=float(params.get("clear_ratio", 0.9)),
        above=params.get("below", "false").lower() not in ("1", "true", "yes"),
        hold_down=int(params.get("hold_down", 1)),
        cool_down=int(params.get("cool_down", 1)),
    )
    state, onset = LevelState(), None
    for row in read_rows(path):
        if not isinstance(row, Row) or row.value is None:
            continue
        before = state.rank
        state = step_level(rule, state, (row.value,) * 4)
        if state.rank != before:
            kind = "open" if before == 0 else ("clear" if state.rank == 0 else "update")
            onset = row.ts if before == 0 else onset
            level = WarningLevel.from_rank(state.rank or before).value
            yield {
                "type": "detection",
                "kind": "threshold",
                "state": kind,
                "level": level,
                "value": row.value,
                "ts": row.ts.isoformat(),
                "onset": onset.isoformat() if onset else None,
            }


class _Point(NamedTuple):
    ts: datetime
    value: float


def _series(path: Path) -> Iterator[_Point]:
    """(time, value) of every row with a value: ``read_rows`` without the per-row dictionaries for
    CSV (the anomaly backtest's hot path), the same rows otherwise."""
    if path.suffix.lower() != ".csv":
        for row in read_rows(path):
            if isinstance(row, Row) and row.value is not None:
                yield _Point(row.ts, row.value)
        return
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        head = [h.strip() for h in next(reader, [])]
        tcol = head.index("timestamp") if "timestamp" in head else (head.index("ts") if "ts" in head else -1)
        if tcol < 0 or "value" not in head:
            raise BacktestError(f"{path}: needs timestamp and value columns")
        vcol = head.index("value")
        for i, rec in enumerate(reader, start=2):
            try:
                text = rec[vcol]
                if text == "":
                    continue
                yield _Point(_parse_ts(rec[tcol]), float(text))
            except (IndexError, ValueError) as exc:
                raise BacktestError(f"{path}:{i}: needs timestamp and value columns ({exc})") from exc


def _anomaly(path: Path, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    from detectors.kernels.anomaly import EnsembleParams, EnsembleScorer

    threshold = float(params.get("threshold", 0.9))
    scorer = EnsembleScorer(EnsembleParams.from_mapping({k: v for k, v in params.items() if k != "threshold"}))
    active, onset = False, None
    update = scorer.update
    for row in _series(path):
        score = update(row.ts.timestamp(), row.value)
        yield {"type": "score", "ts": row.ts.isoformat(), "value": row.value, "score": round(score, 6)}
        if score >= threshold and not active:
            active, onset = True, row.ts
            yield {
                "type": "detection",
                "kind": "anomaly",
                "state": "open",
                "value": row.value,
                "score": round(score, 6),
                "ts": row.ts.isoformat(),
                "onset": onset.isoformat(),
            }
        elif score < threshold * 0.8 and active:
            active = False
            yield {
                "type": "detection",
                "kind": "anomaly",
                "state": "clear",
                "value": row.value,
                "score": round(score, 6),
                "ts": row.ts.isoformat(),
                "onset": onset.isoformat() if onset else None,
            }
