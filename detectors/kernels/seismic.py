"""Seismic kernels: filtering, STA/LTA characteristic functions, triggering and ground-motion peaks.

Pure numpy/scipy; nothing here imports the rest of the project. The layering follows the usual
trigger pipeline: a characteristic function (STA/LTA of the band-passed signal), hysteresis on it
(``trigger_onset`` / ``TriggerState``), then quantities measured while triggered (peaks, intensity).

Every streaming class carries its state explicitly, so that feeding a signal in arbitrary chunks
gives exactly the output of one call on the whole signal, and exposes ``to_dict()`` /
``from_dict()`` with plain JSON types (floats, ints, bools, lists) so a stream processor can
checkpoint it. The batch functions are thin wrappers around a fresh streaming object.

Conventions matched with ObsPy (``obspy.signal.trigger``, checked against ObsPy 1.5.1 through the
fixtures in ``tests/detectors/golden``):

* ``recursive_sta_lta``: ``csta = 1/nsta``, ``clta = 1/nlta`` exponential averages of ``x**2``;
  ``sta`` starts at 0 and ``lta`` at the smallest normal float; sample 0 does not update the
  averages; the first ``nlta`` outputs are 0.
* ``classic_sta_lta``: boxcar means of ``x**2`` over ``nsta`` / ``nlta`` samples ending at the
  current sample; the first ``nlta - 1`` outputs are 0; an LTA below the smallest normal float is
  replaced by it. Unlike ObsPy's C version, a signal shorter than ``nlta`` is not an error (it
  simply yields zeros).
* ``trigger_onset``: a trigger turns on at the first sample with ``cft >= thr_on`` and stays on
  while ``cft >= thr_off``; the reported off index is the *last* sample with ``cft >= thr_off``
  (both comparisons are ``>=``, as in ObsPy). A trigger still on at the end is closed at the last
  sample. NaN counts as below both thresholds.

Where ObsPy's C versions return NaN (an all-zero stretch of input), these kernels return 0.
Both STA/LTA kernels require ``1 <= nsta <= nlta``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import signal

from tocsin.schemas.seismology import instrumental_intensity, magnitude_from_pd

__all__ = [
    "ACCELERATION",
    "INTENSITY_BAND_HZ",
    "VELOCITY",
    "AccelerationToVelocity",
    "Bandpass",
    "ComponentMotion",
    "GroundMotion",
    "ClassicStaLta",
    "RecursiveStaLta",
    "StationTrigger",
    "TriggerState",
    "bandpass_batch",
    "classic_sta_lta",
    "instrumental_intensity",
    "magnitude_from_pd",
    "pd_from_displacement",
    "pd_profile",
    "peak_ground_motion",
    "recursive_sta_lta",
    "trigger_onset",
    "vector_peak",
    "velocity_to_displacement",
]

_TINY = float(np.finfo(np.float64).tiny)

# ``scipy.signal.sosfilt`` spends ~90% of a 100-sample call validating and reshaping its arguments.
# Its compiled kernel is private API, so it is used only if it imports and reproduces the public
# function bit for bit on a probe input at import time; otherwise the public function is used.
try:
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except Exception:  # pragma: no cover - depends on the scipy build
    _sosfilt_kernel = None


def _sosfilt_fast(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.array(x, dtype=np.float64, order="C").reshape(1, -1)
    z = np.array(zi, dtype=np.float64, order="C").reshape(1, -1, 2)
    _sosfilt_kernel(np.ascontiguousarray(sos, dtype=np.float64), y, z)  # in place
    return y[0], z[0]


def _sosfilt_public(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, zf = signal.sosfilt(sos, x, zi=zi)
    return y, zf


def _probe_sosfilt_fast() -> bool:
    if _sosfilt_kernel is None:
        return False
    try:
        sos = signal.butter(4, [1.0, 20.0], btype="bandpass", fs=100.0, output="sos")
        x = np.sin(np.arange(37) * 0.7) + np.cos(np.arange(37) * 0.13)
        zi = np.linspace(-1.0, 1.0, sos.shape[0] * 2).reshape(-1, 2)
        y0, z0 = _sosfilt_public(sos, x, zi)
        y1, z1 = _sosfilt_fast(sos, x, zi)
        return bool(np.array_equal(y0, y1) and np.array_equal(z0, z1))
    except Exception:  # pragma: no cover - depends on the scipy build
        return False


_sosfilt = _sosfilt_fast if _probe_sosfilt_fast() else _sosfilt_public


def _as_1d(x: ArrayLike, name: str = "x") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _check_windows(nsta: int, nlta: int) -> tuple[int, int]:
    for name, v in (("nsta", nsta), ("nlta", nlta)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    nsta, nlta = int(nsta), int(nlta)
    if nsta > nlta:
        raise ValueError(f"nsta ({nsta}) must not exceed nlta ({nlta})")
    return nsta, nlta


# ---------------------------------------------------------------------------------------------
# Recursive STA/LTA
# ---------------------------------------------------------------------------------------------


class RecursiveStaLta:
    """Streaming recursive STA/LTA (Withers 1998), ObsPy conventions.

    ``sta[i] = csta*x[i]**2 + (1-csta)*sta[i-1]`` and likewise for ``lta``; the output is
    ``sta/lta``, forced to 0 for the first ``nlta`` samples of the stream. State: the two
    averages and the number of samples seen. Both averages are run through
    ``scipy.signal.lfilter`` with the carried value as initial condition, which performs the
    same floating-point operations as the sample loop, so chunked output equals batch output
    bit for bit.
    """

    def __init__(self, nsta: int, nlta: int) -> None:
        self.nsta, self.nlta = _check_windows(nsta, nlta)
        csta = 1.0 / self.nsta
        clta = 1.0 / self.nlta
        self._icsta = 1.0 - csta
        self._iclta = 1.0 - clta
        self._b_sta = np.array([csta])
        self._a_sta = np.array([1.0, -self._icsta])
        self._b_lta = np.array([clta])
        self._a_lta = np.array([1.0, -self._iclta])
        self.sta = 0.0
        self.lta = _TINY
        self.n = 0

    def process(self, chunk: ArrayLike) -> np.ndarray:
        x = _as_1d(chunk, "chunk")
        m = x.size
        out = np.zeros(m)
        if m == 0:
            return out
        skip = 1 if self.n == 0 else 0  # ObsPy's loop starts at sample 1
        if m > skip:
            q = np.square(x[skip:])
            sta, _ = signal.lfilter(self._b_sta, self._a_sta, q, zi=[self._icsta * self.sta])
            lta, _ = signal.lfilter(self._b_lta, self._a_lta, q, zi=[self._iclta * self.lta])
            np.divide(sta, lta, out=out[skip:], where=lta > 0.0)
            self.sta = float(sta[-1])
            self.lta = float(lta[-1])
        warm = self.nlta - self.n
        if warm > 0:
            out[: min(m, warm)] = 0.0
        self.n += m
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"nsta": self.nsta, "nlta": self.nlta, "sta": self.sta, "lta": self.lta, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecursiveStaLta:
        obj = cls(d["nsta"], d["nlta"])
        obj.sta = float(d["sta"])
        obj.lta = float(d["lta"])
        obj.n = int(d["n"])
        return obj


def recursive_sta_lta(x: ArrayLike, nsta: int, nlta: int) -> np.ndarray:
    """Recursive STA/LTA of a whole trace (same output as ``obspy.signal.trigger.recursive_sta_lta``)."""
    return RecursiveStaLta(nsta, nlta).process(x)


def _recursive_sta_lta_reference(x: ArrayLike, nsta: int, nlta: int) -> np.ndarray:
    """Plain-Python twin of :func:`recursive_sta_lta`, kept for tests."""
    a = [float(v) for v in _as_1d(x)]
    nsta, nlta = _check_windows(nsta, nlta)
    csta, clta = 1.0 / nsta, 1.0 / nlta
    icsta, iclta = 1.0 - csta, 1.0 - clta
    sta, lta = 0.0, _TINY
    out = [0.0] * len(a)
    for i in range(1, len(a)):
        q = a[i] * a[i]
        sta = csta * q + icsta * sta
        lta = clta * q + iclta * lta
        out[i] = sta / lta if lta > 0.0 else 0.0
    for i in range(min(nlta, len(a))):
        out[i] = 0.0
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Classic STA/LTA
# ---------------------------------------------------------------------------------------------


class ClassicStaLta:
    """Streaming classic (boxcar) STA/LTA, ObsPy conventions.

    State: the last ``nlta`` squared samples (oldest first; zeros before the stream starts), the
    running LTA window sum and the sample counter.

    * STA: each window sum is added up directly from the buffer, oldest sample first (``nsta``
      vectorised adds per chunk). All terms are non-negative, so there is no cancellation, and
      the order of operations does not depend on the chunking.
    * LTA: a running sum (add the newest, subtract the leaving squared sample) evaluated as one
      sequential ``np.cumsum`` continued from the carried value, so chunking does not change a
      single bit. So that rounding errors (e.g. left behind by a large burst) do not persist, the
      sum is recomputed exactly (``math.fsum`` of the window) at every global sample index that
      is a multiple of ``nlta``; those points depend only on the index, not on the chunking.
    """

    def __init__(self, nsta: int, nlta: int) -> None:
        self.nsta, self.nlta = _check_windows(nsta, nlta)
        self.buf = np.zeros(self.nlta)
        self.s_lta = 0.0
        self.n = 0

    def process(self, chunk: ArrayLike) -> np.ndarray:
        x = _as_1d(chunk, "chunk")
        m = x.size
        if m == 0:
            return np.zeros(0)
        nsta, nlta = self.nsta, self.nlta
        ext = np.concatenate((self.buf, np.square(x)))  # ext[nlta + i] is new sample i
        base = nlta - nsta + 1  # ext index of the oldest term of the STA window ending at sample 0
        s_sta = ext[base : base + m].copy()
        for k in range(1, nsta):
            s_sta += ext[base + k : base + k + m]
        d_lta = ext[nlta:] - ext[:m]
        s_lta = np.empty(m)
        cl = self.s_lta
        start = 0
        for a in [*range((-self.n) % nlta, m, nlta), m]:
            if a > start:
                s_lta[start:a] = np.cumsum(np.concatenate(([cl], d_lta[start:a])))[1:]
                cl = float(s_lta[a - 1])
            if a < m:
                cl = math.fsum(ext[a + 1 : nlta + a + 1].tolist())  # the window ending at sample a
                s_lta[a] = cl
                start = a + 1
        self.s_lta = cl
        sta = s_sta / nsta
        lta = np.maximum(s_lta, 0.0) / nlta
        lta[lta < _TINY] = _TINY
        out = sta / lta
        warm = nlta - 1 - self.n
        if warm > 0:
            out[: min(m, warm)] = 0.0
        self.buf = ext[-nlta:].copy()
        self.n += m
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "nsta": self.nsta,
            "nlta": self.nlta,
            "buf": self.buf.tolist(),
            "s_lta": self.s_lta,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassicStaLta:
        obj = cls(d["nsta"], d["nlta"])
        buf = np.asarray(d["buf"], dtype=np.float64)
        if buf.shape != (obj.nlta,):
            raise ValueError(f"buf must hold nlta={obj.nlta} values, got {buf.shape}")
        obj.buf = buf
        obj.s_lta = float(d["s_lta"])
        obj.n = int(d["n"])
        return obj


def classic_sta_lta(x: ArrayLike, nsta: int, nlta: int) -> np.ndarray:
    """Classic STA/LTA of a whole trace (same output as ``obspy.signal.trigger.classic_sta_lta``)."""
    return ClassicStaLta(nsta, nlta).process(x)


def _classic_sta_lta_reference(x: ArrayLike, nsta: int, nlta: int) -> np.ndarray:
    """Plain-Python twin of :func:`classic_sta_lta` (exact window sums), kept for tests."""
    a = [float(v) ** 2 for v in _as_1d(x)]
    nsta, nlta = _check_windows(nsta, nlta)
    out = [0.0] * len(a)
    for i in range(nlta - 1, len(a)):
        sta = math.fsum(a[max(0, i - nsta + 1) : i + 1]) / nsta
        lta = max(math.fsum(a[max(0, i - nlta + 1) : i + 1]) / nlta, _TINY)
        out[i] = sta / lta
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Band-pass filter
# ---------------------------------------------------------------------------------------------


def _butter_sos(freqmin: float, freqmax: float, df: float, corners: int) -> tuple[np.ndarray, str]:
    """Butterworth SOS as ObsPy builds it; falls back to a high-pass when freqmax >= Nyquist.

    Designed once per parameter set (a design costs about a millisecond, and the streaming filters
    are rebuilt from their saved state for every packet); each caller gets its own copy."""
    sos, kind = _butter_sos_cached(float(freqmin), float(freqmax), float(df), corners)
    return sos.copy(), kind


@functools.lru_cache(maxsize=64)
def _butter_sos_cached(freqmin: float, freqmax: float, df: float, corners: int) -> tuple[np.ndarray, str]:
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"df must be a positive sampling rate, got {df!r}")
    if isinstance(corners, bool) or int(corners) != corners or corners < 1:
        raise ValueError(f"corners must be a positive integer, got {corners!r}")
    nyq = 0.5 * df
    if not (0.0 < freqmin < nyq):
        raise ValueError(f"freqmin must lie in (0, Nyquist={nyq}), got {freqmin!r}")
    if not freqmax > freqmin:
        raise ValueError(f"freqmax ({freqmax!r}) must exceed freqmin ({freqmin!r})")
    if freqmax / nyq - 1.0 > -1e-6:  # same test as obspy.signal.filter.bandpass
        sos, kind = signal.butter(int(corners), freqmin, btype="highpass", fs=df, output="sos"), "highpass"
    else:
        sos, kind = signal.butter(int(corners), [freqmin, freqmax], btype="bandpass", fs=df, output="sos"), "bandpass"
    return sos, kind


class Bandpass:
    """Causal Butterworth band-pass (``sosfilt``) carrying the filter state across chunks.

    If ``freqmax`` is at or above the Nyquist frequency the filter becomes a high-pass at
    ``freqmin`` (what ``obspy.signal.filter.bandpass`` does); ``kind`` says which was built.
    With ``steady_start=False`` (the default, as ObsPy) the filter starts at rest. With
    ``steady_start=True`` its state is initialised, at the very first sample of the stream, to
    the steady state for a constant input equal to that sample (``sosfilt_zi``), which removes
    the start-up transient caused by a DC offset. Either way the output is chunk-invariant.
    """

    def __init__(self, freqmin: float, freqmax: float, df: float, corners: int = 4, steady_start: bool = False) -> None:
        self.freqmin = float(freqmin)
        self.freqmax = float(freqmax)
        self.df = float(df)
        self.corners = int(corners)
        self.steady_start = bool(steady_start)
        self.sos, self.kind = _butter_sos(self.freqmin, self.freqmax, self.df, self.corners)
        self.zi = np.zeros((self.sos.shape[0], 2))
        self.started = False

    def process(self, chunk: ArrayLike) -> np.ndarray:
        x = _as_1d(chunk, "chunk")
        if x.size == 0:
            return np.zeros(0)
        if not self.started:
            if self.steady_start:
                self.zi = signal.sosfilt_zi(self.sos) * x[0]
            self.started = True
        y, self.zi = _sosfilt(self.sos, x, self.zi)
        return y

    def to_dict(self) -> dict[str, Any]:
        return {
            "freqmin": self.freqmin,
            "freqmax": self.freqmax,
            "df": self.df,
            "corners": self.corners,
            "steady_start": self.steady_start,
            "started": self.started,
            "zi": self.zi.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bandpass:
        obj = cls(d["freqmin"], d["freqmax"], d["df"], d["corners"], d.get("steady_start", False))
        zi = np.asarray(d["zi"], dtype=np.float64)
        if zi.shape != obj.zi.shape:
            raise ValueError(f"zi must have shape {obj.zi.shape}, got {zi.shape}")
        obj.zi = zi
        obj.started = bool(d["started"])
        return obj


def bandpass_batch(x: ArrayLike, freqmin: float, freqmax: float, df: float, corners: int = 4) -> np.ndarray:
    """Causal band-pass of a whole trace, starting at rest.

    Same as ``obspy.signal.filter.bandpass(x, freqmin, freqmax, df, corners, zerophase=False)``.
    """
    return Bandpass(freqmin, freqmax, df, corners).process(x)


# ---------------------------------------------------------------------------------------------
# Triggering
# ---------------------------------------------------------------------------------------------


class TriggerState:
    """Streaming hysteresis trigger with ObsPy ``trigger_onset`` semantics (``>=`` on both sides).

    ``process(cft_chunk, start_index)`` returns ``('on', i)`` at the first sample with
    ``cft >= thr_on`` while off, and ``('off', j)`` when, while on, a sample falls below
    ``thr_off``; ``j`` is the last sample that was still ``>= thr_off`` (ObsPy's off index), so it
    can be ``start_index - 1`` when the drop is the first sample of a chunk. ``start_index`` is the
    global index of the chunk's first sample. The only state is whether the trigger is on.
    Requires ``thr_off <= thr_on``.
    """

    def __init__(self, thr_on: float, thr_off: float) -> None:
        thr_on, thr_off = float(thr_on), float(thr_off)
        if not (math.isfinite(thr_on) and math.isfinite(thr_off)):
            raise ValueError("thresholds must be finite")
        if thr_off > thr_on:
            raise ValueError(f"thr_off ({thr_off}) must not exceed thr_on ({thr_on})")
        self.thr_on = thr_on
        self.thr_off = thr_off
        self.triggered = False

    def process(self, cft_chunk: ArrayLike, start_index: int = 0) -> list[tuple[str, int]]:
        c = _as_1d(cft_chunk, "cft_chunk")
        m = c.size
        events: list[tuple[str, int]] = []
        if m == 0:
            return events
        above_on = c >= self.thr_on
        below_off = ~(c >= self.thr_off)  # NaN counts as below
        pos = 0
        while pos < m:
            if not self.triggered:
                k = int(np.argmax(above_on[pos:]))
                if not above_on[pos + k]:
                    break
                i = pos + k
                events.append(("on", start_index + i))
                self.triggered = True
                pos = i + 1  # c[i] >= thr_on >= thr_off: sample i cannot switch it off
            else:
                k = int(np.argmax(below_off[pos:]))
                if not below_off[pos + k]:
                    break
                j = pos + k
                events.append(("off", start_index + j - 1))
                self.triggered = False
                pos = j + 1  # c[j] < thr_off <= thr_on: sample j cannot switch it on
        return events

    def to_dict(self) -> dict[str, Any]:
        return {"thr_on": self.thr_on, "thr_off": self.thr_off, "triggered": self.triggered}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TriggerState:
        obj = cls(d["thr_on"], d["thr_off"])
        obj.triggered = bool(d["triggered"])
        return obj


def trigger_onset(cft: ArrayLike, thr_on: float, thr_off: float) -> list[tuple[int, int]]:
    """(on, off) sample pairs, as ``obspy.signal.trigger.trigger_onset`` with no ``max_len``.

    On at ``cft >= thr_on``; off at the last sample with ``cft >= thr_off``; a trigger still on
    at the end of ``cft`` is closed at its last sample.
    """
    c = _as_1d(cft, "cft")
    st = TriggerState(thr_on, thr_off)
    pairs: list[tuple[int, int]] = []
    on: int | None = None
    for kind, idx in st.process(c, 0):
        if kind == "on":
            on = idx
        else:
            assert on is not None
            pairs.append((on, idx))
            on = None
    if on is not None:
        pairs.append((on, c.size - 1))
    return pairs


# ---------------------------------------------------------------------------------------------
# Ground motion, intensity, magnitude
# ---------------------------------------------------------------------------------------------


def peak_ground_motion(velocity_ms: ArrayLike, df: float) -> tuple[float, float]:
    """(PGA m/s^2, PGV m/s) of one velocity component; PGA from the first difference times df."""
    v = _as_1d(velocity_ms, "velocity_ms")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    pgv = float(np.max(np.abs(v))) if v.size else 0.0
    pga = float(np.max(np.abs(np.diff(v))) * df) if v.size > 1 else 0.0
    return pga, pgv


def vector_peak(components: Sequence[ArrayLike] | np.ndarray) -> float:
    """Peak over samples of the vector norm sqrt(x^2 + y^2 + z^2) of equal-length components."""
    arr = np.asarray([_as_1d(c, "component") for c in components], dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError("components must all have the same length")
    if arr.shape[1] == 0:
        return 0.0
    return float(np.max(np.sqrt(np.sum(np.square(arr), axis=0))))


def pd_from_displacement(disp_m: ArrayLike) -> float:
    """Peak absolute displacement, converted from m to cm (0.0 for an empty window)."""
    d = _as_1d(disp_m, "disp_m")
    return float(np.max(np.abs(d)) * 100.0) if d.size else 0.0


def pd_profile(
    vel: ArrayLike,
    df: float,
    step_s: float = 0.5,
    highpass_hz: float | None = 0.075,
) -> list[float]:
    """Pd (cm) over the growing windows ``step_s, 2*step_s, ...`` from the start of ``vel`` (m/s).

    Each window is a prefix of ``vel`` processed on its own exactly as the full-window Pd
    (:func:`velocity_to_displacement` with its offset removal over that prefix only, then
    :func:`pd_from_displacement`), so samples after a window (an S wave) do not reach into it, and
    the last value, when ``vel`` spans a whole number of steps, is the full-window Pd. A window longer
    than ``vel`` is not reported. The alert engine cuts a near station's window before the predicted
    S arrival with it (``tocsin.alerts.kernels.quake.truncated_pd_magnitude``).
    """
    v = _as_1d(vel, "vel")
    if not (step_s > 0.0 and math.isfinite(step_s)):
        raise ValueError(f"step_s must be positive, got {step_s!r}")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    out: list[float] = []
    k = 1
    while True:
        n = round(k * step_s * df)
        if n > v.size or n < 1:
            break
        out.append(pd_from_displacement(velocity_to_displacement(v[:n], df, highpass_hz)))
        k += 1
    return out


def velocity_to_displacement(
    vel: ArrayLike,
    df: float,
    highpass_hz: float | None = 0.075,
    pre_event_samples: int | None = None,
    corners: int = 2,
) -> np.ndarray:
    """Displacement (m) from velocity (m/s) for Pd, with drift control.

    1. Remove the offset: the mean of the first ``pre_event_samples`` samples when given (a
       pre-event noise window, preferred), otherwise the mean of the whole trace.
    2. Integrate with the cumulative trapezoid rule, starting from 0 at the first sample.
    3. Unless ``highpass_hz`` is None, apply a causal Butterworth high-pass (``corners`` poles,
       default 0.075 Hz / 2 poles as in Wu & Kanamori's Pd processing) to the displacement,
       starting at rest, to suppress the drift left by any residual offset. Like any high-pass it
       also trims long-period content: a one-sided 1 s displacement pulse loses ~15% of its peak,
       a 0.2 s one ~4%.
    """
    v = _as_1d(vel, "vel")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    if v.size == 0:
        return np.zeros(0)
    if pre_event_samples is not None:
        if pre_event_samples < 1:
            raise ValueError("pre_event_samples must be >= 1")
        offset = float(np.mean(v[:pre_event_samples]))
    else:
        offset = float(np.mean(v))
    v = v - offset
    disp = np.zeros(v.size)
    disp[1:] = np.cumsum(0.5 * (v[1:] + v[:-1])) / df
    if highpass_hz is not None:
        if not (0.0 < highpass_hz < 0.5 * df):
            raise ValueError(f"highpass_hz must lie in (0, Nyquist), got {highpass_hz!r}")
        disp = signal.sosfilt(_highpass_sos(float(highpass_hz), float(df), int(corners)).copy(), disp)
    return disp


@functools.lru_cache(maxsize=64)
def _highpass_sos(highpass_hz: float, df: float, corners: int) -> np.ndarray:
    """The displacement high-pass, designed once per parameter set (a design costs about a
    millisecond and a Pd profile runs one per step); callers filter with a copy."""
    return signal.butter(corners, highpass_hz, btype="highpass", fs=df, output="sos")


# ---------------------------------------------------------------------------------------------
# Three-component ground motion (GB/T 17742-2020)
# ---------------------------------------------------------------------------------------------

# GB/T 17742-2020: PGA and PGV are taken from the records band-passed to 0.1-10 Hz.
INTENSITY_BAND_HZ = (0.1, 10.0)
VELOCITY, ACCELERATION = "m/s", "m/s2"


class AccelerationToVelocity:
    """Streaming ground velocity (m/s) from acceleration (m/s^2), for the trigger and Pd of a
    strong-motion channel: a causal high-pass at ``highpass_hz`` removes the offset (started in the
    steady state of the first sample), the cumulative trapezoid rule integrates, and the same
    high-pass on the velocity stops the drift a residual offset would leave. Chunk-invariant."""

    def __init__(self, df: float, highpass_hz: float = 0.075, corners: int = 2) -> None:
        self.df = float(df)
        self.highpass_hz = float(highpass_hz)
        self.corners = int(corners)
        nyq = 0.5 * self.df
        self.acc_filter = Bandpass(self.highpass_hz, nyq, self.df, self.corners, steady_start=True)
        self.vel_filter = Bandpass(self.highpass_hz, nyq, self.df, self.corners)
        self.a_prev: float | None = None
        self.v_raw = 0.0

    def process(self, acc_ms2: ArrayLike) -> np.ndarray:
        a = self.acc_filter.process(_as_1d(acc_ms2, "acc_ms2"))
        if a.size == 0:
            return np.zeros(0)
        v = _integrate(a, self.a_prev, self.v_raw, self.df)
        self.a_prev, self.v_raw = float(a[-1]), float(v[-1])
        return self.vel_filter.process(v)

    def to_dict(self) -> dict[str, Any]:
        return {
            "df": self.df,
            "highpass_hz": self.highpass_hz,
            "corners": self.corners,
            "acc_filter": self.acc_filter.to_dict(),
            "vel_filter": self.vel_filter.to_dict(),
            "a_prev": self.a_prev,
            "v_raw": self.v_raw,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccelerationToVelocity:
        obj = cls(d["df"], d["highpass_hz"], d["corners"])
        obj.acc_filter = Bandpass.from_dict(d["acc_filter"])
        obj.vel_filter = Bandpass.from_dict(d["vel_filter"])
        obj.a_prev = None if d["a_prev"] is None else float(d["a_prev"])
        obj.v_raw = float(d["v_raw"])
        return obj


def _integrate(a: np.ndarray, a_prev: float | None, v0: float, df: float) -> np.ndarray:
    """Cumulative trapezoid integral of ``a`` continuing from ``v0`` (the value at ``a_prev``); the
    first sample of a stream (``a_prev`` None) is the integral's zero."""
    prev = a[0] if a_prev is None else a_prev
    steps = 0.5 * (np.concatenate(([prev], a[:-1])) + a) / df
    return v0 + np.cumsum(steps)


class ComponentMotion:
    """One component's ground velocity (m/s) and acceleration (m/s^2) in the intensity band.

    A velocity channel is band-passed (``band``, default 0.1-10 Hz) and differentiated (first
    difference times the rate); an acceleration channel is band-passed and integrated (trapezoid
    rule), the velocity band-passed again so that the integral does not drift. Either way both
    motions come out band-limited to ``band``, so a strong-motion station and a velocity station on
    the same ground give the same peaks. Filters start in the steady state of the first sample (no
    transient from an offset). Chunk-invariant; ``to_dict``/``from_dict`` carry the state.
    """

    def __init__(self, unit: str, df: float, band: tuple[float, float] = INTENSITY_BAND_HZ, corners: int = 4) -> None:
        if unit not in (VELOCITY, ACCELERATION):
            raise ValueError(f"unit must be {VELOCITY!r} or {ACCELERATION!r}, got {unit!r}")
        self.unit = unit
        self.df = float(df)
        self.band = (float(band[0]), float(band[1]))
        self.corners = int(corners)
        self.filter = Bandpass(self.band[0], self.band[1], self.df, self.corners, steady_start=True)
        self.vel_filter = Bandpass(self.band[0], self.band[1], self.df, self.corners) if unit == ACCELERATION else None
        self.prev: float | None = None  # last filtered sample (velocity or acceleration)
        self.v_raw = 0.0  # running integral of an acceleration channel

    def process(self, samples: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(velocity m/s, acceleration m/s^2)`` of the chunk, both band-limited."""
        y = self.filter.process(_as_1d(samples, "samples"))
        if y.size == 0:
            return np.zeros(0), np.zeros(0)
        if self.vel_filter is None:
            v = y
            a = np.empty(y.size)
            a[0] = 0.0 if self.prev is None else (y[0] - self.prev) * self.df
            a[1:] = np.diff(y) * self.df
        else:
            a = y
            raw = _integrate(y, self.prev, self.v_raw, self.df)
            self.v_raw = float(raw[-1])
            v = self.vel_filter.process(raw)
        self.prev = float(y[-1])
        return v, a

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "df": self.df,
            "band": list(self.band),
            "corners": self.corners,
            "filter": self.filter.to_dict(),
            "vel_filter": None if self.vel_filter is None else self.vel_filter.to_dict(),
            "prev": self.prev,
            "v_raw": self.v_raw,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComponentMotion:
        obj = cls(d["unit"], d["df"], (d["band"][0], d["band"][1]), d["corners"])
        obj.filter = Bandpass.from_dict(d["filter"])
        obj.vel_filter = None if d["vel_filter"] is None else Bandpass.from_dict(d["vel_filter"])
        obj.prev = None if d["prev"] is None else float(d["prev"])
        obj.v_raw = float(d["v_raw"])
        return obj


class GroundMotion:
    """Running vector peaks (PGA m/s^2, PGV m/s) of one instrument's components, GB/T 17742-2020.

    Each component (``Z``, ``N``, ``E`` or ``1``/``2``/``3``: the last letter of the channel code)
    arrives in its own packets and goes through its own :class:`ComponentMotion`. The components
    are lined up by sample time (``round(t * df)``) and the peaks are taken over the vector
    ``sqrt(x**2 + y**2 + z**2)`` of each sample, within the window set by :meth:`set_window` (the
    station trigger's on to off; a new on resets the peaks). A sample time is folded once every
    component seen recently covers it; a component that falls more than ``max_lag_s`` behind the
    newest is left out meanwhile (its part counts as zero, so the peaks are then a lower bound) and
    its samples older than what was folded are dropped. A single-component station gives the
    component's own peaks. The rate is fixed by the first packet; a component arriving at another
    rate is refused (ValueError).
    """

    def __init__(self, df: float, band: tuple[float, float] = INTENSITY_BAND_HZ, max_lag_s: float = 3.0) -> None:
        self.df = float(df)
        if not (self.df > 0 and math.isfinite(self.df)):
            raise ValueError(f"df must be a positive sampling rate, got {df!r}")
        self.band = (float(band[0]), float(band[1]))
        self.max_lag_s = float(max_lag_s)
        self.components: dict[str, ComponentMotion] = {}
        self.buf: dict[str, tuple[int, list[float], list[float]]] = {}  # comp -> (first index, v, a)
        self.folded: int | None = None  # sample index up to which (exclusive) the vectors are folded
        self.window: tuple[int, int | None] | None = None
        self.pga_ms2 = 0.0
        self.pgv_ms = 0.0

    @property
    def intensity(self) -> float:
        return instrumental_intensity(self.pga_ms2, self.pgv_ms)

    def set_window(self, t_on: float | None, t_off: float | None) -> None:
        """The peak window (epoch s): from ``t_on`` to ``t_off`` inclusive (None: still open). A new
        ``t_on`` resets the peaks; None for both: no window (samples are not folded into peaks)."""
        if t_on is None:
            self.window = None
            return
        on = round(t_on * self.df)
        off = None if t_off is None else round(t_off * self.df)
        if self.window is None or self.window[0] != on:
            self.pga_ms2 = self.pgv_ms = 0.0
        self.window = (on, off)

    def add(self, component: str, unit: str, samples: ArrayLike, t0_epoch_s: float, df: float) -> None:
        """One packet of one component: ``samples`` in ``unit`` (m/s or m/s2) from ``t0_epoch_s``."""
        if float(df) != self.df:
            raise ValueError(f"component {component!r} at {df!r} Hz, the instrument runs at {self.df!r} Hz")
        cm = self.components.get(component)
        if cm is None or cm.unit != unit:
            cm = self.components[component] = ComponentMotion(unit, self.df, self.band)
        v, a = cm.process(samples)
        i0 = round(float(t0_epoch_s) * self.df)
        old = self.buf.get(component)
        end = None if old is None else old[0] + len(old[1])
        if old is None or end is None or i0 - end > round(self.max_lag_s * self.df):
            start, vs, acc = i0, v.tolist(), a.tolist()  # first packet, or after a long gap: a fresh run
        elif i0 >= end:  # next packet, or after a short gap (its missing samples count as zero)
            pad = [0.0] * (i0 - end)
            start, vs, acc = old[0], old[1] + pad + v.tolist(), old[2] + pad + a.tolist()
        else:  # overlaps what this component already sent: only the new part
            start, vs, acc = old[0], old[1] + v[end - i0 :].tolist(), old[2] + a[end - i0 :].tolist()
        if self.folded is not None and start < self.folded:
            cut = self.folded - start
            start, vs, acc = self.folded, vs[cut:], acc[cut:]
        self.buf[component] = (start, vs, acc)
        self._fold()

    def _fold(self) -> None:
        ends = {c: b[0] + len(b[1]) for c, b in self.buf.items()}  # an emptied buffer still marks its end
        with_data = [c for c, b in self.buf.items() if b[1]]
        if not with_data:
            return
        newest = max(ends.values())
        lag = round(self.max_lag_s * self.df)
        hi = min(e for e in ends.values() if e >= newest - lag)
        lo = min(self.buf[c][0] for c in with_data)
        if hi <= lo:
            return
        v2 = np.zeros(hi - lo)
        a2 = np.zeros(hi - lo)
        for c in with_data:
            start, vs, acc = self.buf[c]
            n = min(len(vs), hi - start)
            if n <= 0:
                continue
            v2[start - lo : start - lo + n] += np.square(vs[:n])
            a2[start - lo : start - lo + n] += np.square(acc[:n])
            self.buf[c] = (start + n, vs[n:], acc[n:])
        self.folded = hi if self.folded is None else max(self.folded, hi)
        if self.window is not None:
            on, off = self.window
            w_lo = max(lo, on) - lo
            w_hi = (hi if off is None else min(hi, off + 1)) - lo
            if w_hi > w_lo:
                self.pgv_ms = max(self.pgv_ms, float(np.sqrt(np.max(v2[w_lo:w_hi]))))
                self.pga_ms2 = max(self.pga_ms2, float(np.sqrt(np.max(a2[w_lo:w_hi]))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "df": self.df,
            "band": list(self.band),
            "max_lag_s": self.max_lag_s,
            "components": {c: m.to_dict() for c, m in self.components.items()},
            "buf": {c: [b[0], b[1], b[2]] for c, b in self.buf.items()},
            "folded": self.folded,
            "window": None if self.window is None else list(self.window),
            "pga_ms2": self.pga_ms2,
            "pgv_ms": self.pgv_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroundMotion:
        obj = cls(d["df"], (d["band"][0], d["band"][1]), d["max_lag_s"])
        obj.components = {c: ComponentMotion.from_dict(m) for c, m in d["components"].items()}
        obj.buf = {c: (int(b[0]), [float(x) for x in b[1]], [float(x) for x in b[2]]) for c, b in d["buf"].items()}
        obj.folded = None if d["folded"] is None else int(d["folded"])
        w = d["window"]
        obj.window = None if w is None else (int(w[0]), None if w[1] is None else int(w[1]))
        obj.pga_ms2 = float(d["pga_ms2"])
        obj.pgv_ms = float(d["pgv_ms"])
        return obj


# ---------------------------------------------------------------------------------------------
# Per-station streaming detector
# ---------------------------------------------------------------------------------------------


class StationTrigger:
    """Streaming single-component station detector.

    ``samples`` are ground velocity in m/s. Pipeline: :class:`Bandpass` (default 1-20 Hz; a
    high-pass at ``freqmin`` when ``freqmax`` is at or above Nyquist) -> :class:`RecursiveStaLta`
    (``sta_s`` / ``lta_s`` seconds converted to samples at the packet rate) ->
    :class:`TriggerState`. Because the STA/LTA output is 0 for its first ``nlta`` samples, nothing
    can trigger before the LTA window has filled.

    While triggered it tracks the peak |v| (PGV) and the peak |dv/dt| (PGA, first difference
    times df) of the velocity passed through a second causal filter, ``intensity_band``
    (default 0.1-10 Hz, the band used for instrumental intensity in GB/T 17742-2020;
    None uses the raw samples). Both filters start in steady state for the first sample so a
    DC offset causes no start-up transient. ``pga_ms2`` / ``pgv_ms`` / ``intensity`` are the
    running peaks while triggered and keep the last event's values after it ends; they are reset
    at the next ``on``. These are the peaks of the one component it runs on; the observed intensity
    of a station (GB/T 17742-2020, the vector sum of three components) is :class:`GroundMotion`'s.

    ``process(samples, df, t0_epoch_s)`` returns events ``{"event": "on", "t", "sample",
    "ratio"}`` and ``{"event": "off", "t", "sample", "t_on", "pga_ms2", "pgv_ms", "intensity"}``
    where ``t = t0_epoch_s + (sample - first sample of the packet)/df``. The off sample is the
    last one still above the off threshold, so it can precede the packet. The rate is fixed by
    the first packet; a packet at a different rate restarts the detector (state and warm-up),
    losing any open event.
    """

    def __init__(
        self,
        freqmin: float = 1.0,
        freqmax: float = 20.0,
        corners: int = 4,
        sta_s: float = 0.5,
        lta_s: float = 10.0,
        thr_on: float = 4.0,
        thr_off: float = 1.5,
        intensity_band: tuple[float, float] | None = (0.1, 10.0),
    ) -> None:
        if not (0 < sta_s <= lta_s):
            raise ValueError(f"need 0 < sta_s <= lta_s, got {sta_s!r}, {lta_s!r}")
        if not thr_on > 0:
            raise ValueError(f"thr_on must be positive, got {thr_on!r}")
        self.freqmin = float(freqmin)
        self.freqmax = float(freqmax)
        self.corners = int(corners)
        self.sta_s = float(sta_s)
        self.lta_s = float(lta_s)
        self.intensity_band = None if intensity_band is None else (float(intensity_band[0]), float(intensity_band[1]))
        self.trigger = TriggerState(thr_on, thr_off)
        self.df: float | None = None
        self.bandpass: Bandpass | None = None
        self.peak_filter: Bandpass | None = None
        self.stalta: RecursiveStaLta | None = None
        self.n = 0
        self.v_prev: float | None = None
        self.pga_ms2 = 0.0
        self.pgv_ms = 0.0
        self.t_on: float | None = None

    @property
    def triggered(self) -> bool:
        return self.trigger.triggered

    @property
    def intensity(self) -> float:
        return instrumental_intensity(self.pga_ms2, self.pgv_ms)

    def _setup(self, df: float) -> None:
        df = float(df)
        if not (df > 0 and math.isfinite(df)):
            raise ValueError(f"df must be a positive sampling rate, got {df!r}")
        self.df = df
        self.bandpass = Bandpass(self.freqmin, self.freqmax, df, self.corners, steady_start=True)
        if self.intensity_band is not None:
            lo, hi = self.intensity_band
            self.peak_filter = Bandpass(lo, hi, df, self.corners, steady_start=True)
        else:
            self.peak_filter = None
        nsta = max(1, round(self.sta_s * df))
        nlta = max(nsta, round(self.lta_s * df))
        self.stalta = RecursiveStaLta(nsta, nlta)
        self.trigger = TriggerState(self.trigger.thr_on, self.trigger.thr_off)
        self.n = 0
        self.v_prev = None
        self.pga_ms2 = 0.0
        self.pgv_ms = 0.0
        self.t_on = None

    def _track(self, v: np.ndarray, a: np.ndarray, lo: int, hi: int) -> None:
        """Fold samples lo..hi (inclusive, local indices) into the running peaks."""
        lo = max(lo, 0)
        if hi < lo:
            return
        self.pgv_ms = max(self.pgv_ms, float(np.max(np.abs(v[lo : hi + 1]))))
        self.pga_ms2 = max(self.pga_ms2, float(np.max(np.abs(a[lo : hi + 1]))))

    def process(self, samples: ArrayLike, df: float, t0_epoch_s: float) -> list[dict[str, Any]]:
        x = _as_1d(samples, "samples")
        if self.df is None or float(df) != self.df:
            self._setup(df)
        assert self.bandpass is not None and self.stalta is not None and self.df is not None
        m = x.size
        if m == 0:
            return []
        rate = self.df
        start = self.n
        cft = self.stalta.process(self.bandpass.process(x))
        v = self.peak_filter.process(x) if self.peak_filter is not None else x
        a = np.empty(m)
        a[0] = 0.0 if self.v_prev is None else (v[0] - self.v_prev) * rate
        a[1:] = np.diff(v) * rate
        was_on = self.trigger.triggered
        transitions = self.trigger.process(cft, start)
        events: list[dict[str, Any]] = []
        seg = 0 if was_on else None
        for kind, g in transitions:
            i = g - start
            t = float(t0_epoch_s) + i / rate
            if kind == "on":
                self.pga_ms2 = 0.0
                self.pgv_ms = 0.0
                self.t_on = t
                seg = i
                events.append({"event": "on", "t": t, "sample": g, "ratio": float(cft[i])})
            else:
                if seg is not None:
                    self._track(v, a, seg, i)
                seg = None
                events.append(
                    {
                        "event": "off",
                        "t": t,
                        "sample": g,
                        "t_on": self.t_on,
                        "pga_ms2": self.pga_ms2,
                        "pgv_ms": self.pgv_ms,
                        "intensity": self.intensity,
                    }
                )
        if seg is not None:
            self._track(v, a, seg, m - 1)
        self.v_prev = float(v[-1])
        self.n += m
        return events

    def to_dict(self) -> dict[str, Any]:
        return {
            "freqmin": self.freqmin,
            "freqmax": self.freqmax,
            "corners": self.corners,
            "sta_s": self.sta_s,
            "lta_s": self.lta_s,
            "intensity_band": None if self.intensity_band is None else list(self.intensity_band),
            "trigger": self.trigger.to_dict(),
            "df": self.df,
            "bandpass": None if self.bandpass is None else self.bandpass.to_dict(),
            "peak_filter": None if self.peak_filter is None else self.peak_filter.to_dict(),
            "stalta": None if self.stalta is None else self.stalta.to_dict(),
            "n": self.n,
            "v_prev": self.v_prev,
            "pga_ms2": self.pga_ms2,
            "pgv_ms": self.pgv_ms,
            "t_on": self.t_on,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StationTrigger:
        trig = TriggerState.from_dict(d["trigger"])
        band = d["intensity_band"]
        obj = cls(
            freqmin=d["freqmin"],
            freqmax=d["freqmax"],
            corners=d["corners"],
            sta_s=d["sta_s"],
            lta_s=d["lta_s"],
            thr_on=trig.thr_on,
            thr_off=trig.thr_off,
            intensity_band=None if band is None else (band[0], band[1]),
        )
        obj.trigger = trig
        obj.df = None if d["df"] is None else float(d["df"])
        obj.bandpass = None if d["bandpass"] is None else Bandpass.from_dict(d["bandpass"])
        obj.peak_filter = None if d["peak_filter"] is None else Bandpass.from_dict(d["peak_filter"])
        obj.stalta = None if d["stalta"] is None else RecursiveStaLta.from_dict(d["stalta"])
        obj.n = int(d["n"])
        obj.v_prev = None if d["v_prev"] is None else float(d["v_prev"])
        obj.pga_ms2 = float(d["pga_ms2"])
        obj.pgv_ms = float(d["pgv_ms"])
        obj.t_on = None if d["t_on"] is None else float(d["t_on"])
        return obj
