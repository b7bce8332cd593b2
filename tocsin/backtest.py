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

from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.kernels.levels import LevelRule, LevelState, step_level
from tocsin.detectors.rules import Rules
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import TELEMETRY_ADAPTER, Telemetry

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


def _one_line(exc: Exception) -> str:
    """A validation error's first problem on one line (``field: message``); other errors as they are."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first['msg']}" if where else str(first["msg"])
        except (IndexError, KeyError, TypeError):
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_rows(path: Path) -> Iterator[Row | Telemetry]:
    """The rows of ``path``; a file without rows, a CSV without a ``timestamp`` (or ``ts``) and a
    ``value`` column, or a bad line raise ``BacktestError`` naming the file and the line."""
    n = 0
    for item in _read_rows(path):
        n += 1
        yield item
    if n == 0:
        raise BacktestError(f"{path}: no data rows")


def _read_rows(path: Path) -> Iterator[Row | Telemetry]:
    suffix = path.suffix.lower()
    if suffix in (".mseed", ".miniseed", ".ms"):
        from tocsin.ingest.mseed import decode_mseed, to_packet_fields

        for record in decode_mseed(path.read_bytes()):
            yield TELEMETRY_ADAPTER.validate_python({**to_packet_fields(record), "device_id": DEVICE, "site": SITE})
        return
    with path.open(encoding="utf-8", newline="" if suffix == ".csv" else None) as fh:
        if suffix == ".csv":
            reader = csv.DictReader(fh)
            head = [h.strip() for h in reader.fieldnames or []]
            if not head:
                return
            missing = [
                c
                for c, ok in (("timestamp", "timestamp" in head or "ts" in head), ("value", "value" in head))
                if not ok
            ]
            if missing:
                raise BacktestError(f"{path} line 1: no {' and no '.join(missing)} column (header: {','.join(head)})")
            for rec in reader:
                i = reader.line_num
                try:
                    ts = _parse_ts(rec.get("timestamp") or rec.get("ts") or "")
                    value = float(rec["value"]) if rec.get("value") not in (None, "") else None
                except (KeyError, ValueError) as exc:
                    raise BacktestError(f"{path} line {i}: needs a timestamp and a number value ({exc})") from exc
                yield Row(ts, value, dict(rec))
            return
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BacktestError(f"{path} line {i}: not JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise BacktestError(f"{path} line {i}: not a JSON object")
            try:
                if "type" in obj:
                    yield TELEMETRY_ADAPTER.validate_python({**obj, "device_id": DEVICE, "site": SITE})
                else:
                    yield Row(_parse_ts(str(obj.get("timestamp", obj.get("ts")))), float(obj["value"]), obj)
            except (KeyError, ValueError, TypeError) as exc:
                raise BacktestError(f"{path} line {i}: {_one_line(exc)}") from exc


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


_OWN_PARAMS: dict[str, frozenset[str]] = {
    "rainfall": frozenset({"interval_s"}),
    "water_level": frozenset(),
    "gas": frozenset({"gas", "unit"}),
    "fire": frozenset(),
    "seismic": frozenset(),
    "threshold": frozenset({"blue", "yellow", "orange", "red", "clear_ratio", "below", "hold_down", "cool_down"}),
}


def check_params(detector: str, params: dict[str, str]) -> None:
    """Refuse a parameter the detector does not read (a typo would otherwise be ignored)."""
    if detector == "anomaly":
        from tocsin.detectors.kernels.anomaly import EnsembleParams

        known = {"threshold", *EnsembleParams.__dataclass_fields__}
    elif detector in _FAMILY:
        from tocsin.schemas.registry import THRESHOLD_KEYS

        known = set(_OWN_PARAMS[detector]) | set(THRESHOLD_KEYS[_FAMILY[detector]])
    else:
        known = set(_OWN_PARAMS.get(detector, ()))
    for key in params:
        rain = detector == "rainfall" and key.startswith("rain_") and key.endswith("_mm")
        if key not in known and not rain:
            extra = ", rain_<hours>h_<level>_mm" if detector == "rainfall" else ""
            raise BacktestError(
                f"unknown parameter {key!r} for the {detector} detector (known: {', '.join(sorted(known))}{extra})"
            )


def _engine(detector: str, params: dict[str, str]) -> DetectorEngine:
    own = _OWN_PARAMS.get(detector, frozenset())
    try:
        thresholds = {k: float(v) for k, v in params.items() if k not in own}
    except ValueError as exc:
        raise BacktestError(f"parameter values must be numbers ({exc})") from exc
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
    check_params(detector, params)
    if detector == "threshold":
        yield from _threshold(path, params)
        return
    if detector == "anomaly":
        yield from _anomaly(path, params)
        return
    engine = _engine(detector, params)
    sensitive = any(params.get(k) for k in ("counts_per_m_s", "counts_per_m_s2"))
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
            if getattr(reading, "unit", None) == "counts" and not sensitive:
                raise BacktestError(
                    f"{path}: seismic data in counts needs the station sensitivity "
                    "(--sensitivity COUNTS_PER_M_S, or --param counts_per_m_s2=... for an accelerometer)"
                )
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
        if not head:
            raise BacktestError(f"{path}: no data rows")
        tcol = head.index("timestamp") if "timestamp" in head else (head.index("ts") if "ts" in head else -1)
        if tcol < 0 or "value" not in head:
            raise BacktestError(f"{path} line 1: needs timestamp and value columns (header: {','.join(head)})")
        vcol = head.index("value")
        n = 0
        for rec in reader:
            try:
                text = rec[vcol]
                if text == "":
                    continue
                n += 1
                yield _Point(_parse_ts(rec[tcol]), float(text))
            except (IndexError, ValueError) as exc:
                raise BacktestError(
                    f"{path} line {reader.line_num}: needs a timestamp and a number value ({exc})"
                ) from exc
        if n == 0:
            raise BacktestError(f"{path}: no data rows")


def _anomaly(path: Path, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    from tocsin.detectors.kernels.anomaly import EnsembleParams, EnsembleScorer

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
