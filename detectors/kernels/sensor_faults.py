"""Gas-sensor fault checks. Pure; state is small JSON-able data (lists and numbers).

GB/T 50493-2019 requires a gas detection system to signal a detector fault distinctly from a gas
alarm. The standard does not prescribe how a fault is recognised from the data; the four checks
below are the usual data-quality heuristics, with every threshold a parameter:

* ``"stuck"``: the last ``stuck_n`` readings (the current one included) all lie within
  ``stuck_tol`` of each other (``max - min <= stuck_tol``); a live sensor shows noise. Many
  detectors suppress readings near zero and legitimately report a constant 0 in clean air, so with
  ``stuck_exempt_zero`` a run whose readings all lie within ``stuck_tol`` of 0 is not "stuck".
  Choose ``stuck_tol`` below the noise and ``stuck_n`` long enough for the reporting resolution.
* ``"out_of_range"``: the reading is below ``lo`` or above ``hi`` of the sensor's measuring range
  (either may be None = unbounded), or is not a finite number.
* ``"spike"``: a jump no real gas signal can produce, followed by a return. The sensor is taken as
  first order with time constant ``tau_s``: its output moves towards the true concentration at
  ``|dx/dt| <= S / tau_s``, where ``S`` bounds how far apart reading and concentration can be
  (the span ``hi - lo``). Integrated over ``dt`` seconds between two readings the largest possible
  change is ``S * (1 - exp(-dt / tau_s))`` (``= max_slew_per_s * dt`` for ``dt << tau_s``, and never
  more than ``S``). ``max_slew_per_s`` sets ``S = max_slew_per_s * tau_s``; when it is None,
  ``S = hi - lo`` (no check when either is None). A reading whose change from the previous one
  (``dt > 0``) exceeds that bound is an *impossible jump*; if within the next ``spike_n`` readings
  a reading comes back to within ``spike_return_frac * |jump|`` of the pre-jump value, "spike" is
  reported on that returning reading (it is a momentary fault: the next reading does not report it
  again). A jump that does not come back is not a fault here (it may be a real release seen by a
  slow reporting interval); the gas rules judge the level.
* ``"zero_drift"``: only for sensors that read zero in clean air (``zero_based``; set it False for
  O2). Assumption: over ``drift_window_s`` (a day) the sensor spends well over ``drift_quantile``
  (5 %) of the time in clean air, so that quantile of its readings is its zero point. When that
  quantile lies more than ``drift_limit`` from 0 (either side), the zero has drifted. ``drift_limit``
  None means 5 % of the span ``hi - lo`` (no check without a span). The readings are thinned to at
  most one per ``drift_window_s / drift_max_points`` seconds (bounded state) and the check needs at
  least ``drift_min_n`` of them spanning at least half the window. The quantile interpolates
  linearly between order statistics (numpy's default method).

Readings are taken in arrival order; a reading not newer than the previous one (``dt <= 0``) skips
the spike jump test. A non-finite reading reports "out_of_range" (plus the stuck/drift status of
the state) and changes nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["FAULTS", "FaultParams", "FaultTracker", "step_limit"]

FAULTS = ("stuck", "out_of_range", "spike", "zero_drift")


@dataclass(frozen=True)
class FaultParams:
    stuck_n: int = 30
    stuck_tol: float = 0.0
    max_slew_per_s: float | None = None  # None: (hi - lo) / tau_s
    tau_s: float = 30.0  # first-order time constant (T90 ~ 2.3 tau)
    drift_window_s: float = 86400.0
    drift_limit: float | None = None  # None: 5 % of (hi - lo)
    drift_quantile: float = 0.05
    drift_min_n: int = 12
    drift_max_points: int = 288
    spike_n: int = 2
    spike_return_frac: float = 0.5
    stuck_exempt_zero: bool = True
    zero_based: bool = True

    def __post_init__(self) -> None:
        checks = (
            ("stuck_n", self.stuck_n >= 2),
            ("stuck_tol", self.stuck_tol >= 0),
            ("max_slew_per_s", self.max_slew_per_s is None or self.max_slew_per_s > 0),
            ("tau_s", self.tau_s > 0),
            ("drift_window_s", self.drift_window_s > 0),
            ("drift_limit", self.drift_limit is None or self.drift_limit >= 0),
            ("drift_quantile", 0 <= self.drift_quantile <= 1),
            ("drift_min_n", self.drift_min_n >= 1),
            ("drift_max_points", self.drift_max_points >= 1),
            ("spike_n", self.spike_n >= 1),
            ("spike_return_frac", 0 <= self.spike_return_frac < 1),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> FaultParams:
        """Params from a mapping whose values may be strings; "none"/"" give None for the optional
        fields, "true"/"false" the booleans. Unknown keys raise ``ValueError``."""
        kinds = {f.name: str(f.type) for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, raw in (m or {}).items():
            name = str(key).strip()
            if name not in kinds:
                raise ValueError(f"unknown fault parameter {name!r}; known: {', '.join(kinds)}")
            kw[name] = _convert(name, raw, kinds[name])
        return cls(**kw)


def _convert(name: str, raw: Any, kind: str) -> Any:
    text = raw.strip().lower() if isinstance(raw, str) else None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} must be a boolean, got {raw!r}")
    if "None" in kind and (raw is None or text in ("none", "null", "")):
        return None
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be a number, got {raw!r}")
    try:
        value = float(text) if text is not None else float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if kind == "int":
        if not value.is_integer():
            raise ValueError(f"{name} must be an integer, got {raw!r}")
        return int(value)
    return value


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default ``quantile`` method)."""
    h = (len(sorted_values) - 1) * q
    i = math.floor(h)
    if i + 1 >= len(sorted_values):
        return sorted_values[-1]
    a, b = sorted_values[i], sorted_values[i + 1]
    return a + (h - i) * (b - a)


def _span(p: FaultParams, lo: float | None, hi: float | None) -> float | None:
    """The largest reading-to-concentration distance S used by the slew bound."""
    if p.max_slew_per_s is not None:
        return p.max_slew_per_s * p.tau_s
    if lo is None or hi is None or not hi > lo:
        return None
    return hi - lo


def step_limit(dt_s: float, p: FaultParams, lo: float | None = None, hi: float | None = None) -> float | None:
    """Largest change a first-order sensor can show between two readings ``dt_s`` apart
    (``S * (1 - exp(-dt_s / tau_s))``), or None when no bound is known."""
    s = _span(p, lo, hi)
    if s is None:
        return None
    return s * -math.expm1(-dt_s / p.tau_s)


class FaultTracker:
    """Streaming fault status of one gas channel (see the module docstring)."""

    def __init__(self, params: FaultParams | None = None) -> None:
        self.params = params or FaultParams()
        self.recent: list[float] = []  # the last stuck_n readings
        self.prev: list[float] | None = None  # [t, value] of the previous reading
        self.pending: list[float] | None = None  # [pre-jump value, jump, readings since the jump]
        self.drift: list[list[float]] = []  # thinned [[t, value], ...] over the drift window
        self._offset: float | None = None  # cached zero_offset() of ``drift`` (not state)

    # ---------------------------------------------------------------- checks on the state
    def _stuck(self) -> bool:
        p = self.params
        if len(self.recent) < p.stuck_n:
            return False
        lo_v, hi_v = min(self.recent), max(self.recent)
        if hi_v - lo_v > p.stuck_tol:
            return False
        return not (p.stuck_exempt_zero and max(abs(lo_v), abs(hi_v)) <= p.stuck_tol)

    def zero_offset(self) -> float | None:
        """The drift quantile of the held readings, or None while there are too few."""
        p = self.params
        if len(self.drift) < p.drift_min_n or self.drift[-1][0] - self.drift[0][0] < 0.5 * p.drift_window_s:
            return None
        if self._offset is None:
            self._offset = _quantile(sorted(v for _, v in self.drift), p.drift_quantile)
        return self._offset

    def _zero_drift(self, lo: float | None, hi: float | None) -> bool:
        p = self.params
        if not p.zero_based:
            return False
        limit = p.drift_limit
        if limit is None:
            if lo is None or hi is None or not hi > lo:
                return False
            limit = 0.05 * (hi - lo)
        q = self.zero_offset()
        return q is not None and abs(q) > limit

    # ---------------------------------------------------------------- streaming
    def update(self, t_epoch_s: float, value: float, lo: float | None = None, hi: float | None = None) -> set[str]:
        """Absorb one reading; the faults active now (a subset of ``FAULTS``)."""
        p = self.params
        t, x = float(t_epoch_s), float(value)
        faults: set[str] = set()
        if not (math.isfinite(t) and math.isfinite(x)):
            faults.add("out_of_range")
            if self._stuck():
                faults.add("stuck")
            if self._zero_drift(lo, hi):
                faults.add("zero_drift")
            return faults

        if (lo is not None and x < lo) or (hi is not None and x > hi):
            faults.add("out_of_range")

        # spike: first resolve a pending jump, then test this reading for a new one
        returned = False
        if self.pending is not None:
            x0, jump, k = self.pending
            if abs(x - x0) <= p.spike_return_frac * abs(jump):
                faults.add("spike")
                returned = True
                self.pending = None
            elif k + 1 >= p.spike_n:
                self.pending = None  # it stayed: a step, not a spike
            else:
                self.pending = [x0, jump, k + 1]
        if self.prev is not None and self.pending is None and not returned:
            dt = t - self.prev[0]
            limit = step_limit(dt, p, lo, hi) if dt > 0 else None
            if limit is not None and abs(x - self.prev[1]) > limit:
                self.pending = [self.prev[1], x - self.prev[1], 0]
        self.prev = [t, x]

        # stuck
        self.recent.append(x)
        if len(self.recent) > p.stuck_n:
            del self.recent[: len(self.recent) - p.stuck_n]
        if self._stuck():
            faults.add("stuck")

        # zero drift (thinned buffer over the window ending at the newest reading)
        spacing = p.drift_window_s / p.drift_max_points
        if not self.drift or t >= self.drift[-1][0] + spacing:
            self.drift.append([t, x])
            cut = t - p.drift_window_s
            self.drift = [d for d in self.drift if d[0] >= cut][-p.drift_max_points :]
            self._offset = None
        if self._zero_drift(lo, hi):
            faults.add("zero_drift")
        return faults

    # ---------------------------------------------------------------- state
    def to_dict(self) -> dict[str, Any]:
        return {
            "params": _params_dict(self.params),
            "recent": list(self.recent),
            "prev": None if self.prev is None else list(self.prev),
            "pending": None if self.pending is None else list(self.pending),
            "drift": [list(d) for d in self.drift],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], params: FaultParams | None = None) -> FaultTracker:
        """Restore a tracker; ``params`` (e.g. from current configuration) override the stored ones."""
        obj = cls(params or FaultParams.from_mapping(d["params"]))
        obj.recent = [float(v) for v in d["recent"]][-obj.params.stuck_n :]
        obj.prev = None if d["prev"] is None else [float(v) for v in d["prev"]]
        if d["pending"] is None:
            obj.pending = None
        else:
            x0, jump, k = d["pending"]
            obj.pending = [float(x0), float(jump), int(k)]
        obj.drift = [[float(t), float(v)] for t, v in d["drift"]]
        return obj


@functools.lru_cache(maxsize=64)
def _params_items(params: FaultParams) -> tuple[tuple[str, Any], ...]:
    return tuple(asdict(params).items())


def _params_dict(params: FaultParams) -> dict[str, Any]:
    """``asdict(params)``, worked out once per parameter set (asdict deep-copies field by field)."""
    return dict(_params_items(params))
