"""Geodesy and seismology shared by the detectors, the alert kernels and the simulators: constants and
pure formulas, written once (no I/O, no numpy: scalar floats).

- Earth: a sphere of the IUGG mean radius :data:`EARTH_RADIUS_KM`.
- Instrumental intensity, GB/T 17742-2020: ``I_A = 3.17*lg(PGA m/s^2) + 6.59``,
  ``I_V = 3.00*lg(PGV m/s) + 9.77``; if both are >= 6 the intensity is ``I_V``, else their mean;
  rounded half-up to 0.1 and clamped to [1, 12].
- Magnitude from the peak P displacement of the first ~3 s (Wu & Zhao 2006, southern California):
  ``log10(Pd cm) = -3.463 + 0.729*M - 1.374*log10(R km)``.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius (IUGG), km."""

# GB/T 17742-2020 intensity from peak ground acceleration (m/s^2) and velocity (m/s)
I_A_SLOPE, I_A_OFFSET = 3.17, 6.59
I_V_SLOPE, I_V_OFFSET = 3.00, 9.77
INTENSITY_MIN, INTENSITY_MAX = 1.0, 12.0

# Wu & Zhao (2006): log10(Pd) = PD_A + PD_B*M - PD_C*log10(R), +- 0.305
PD_A, PD_B, PD_C = -3.463, 0.729, 1.374


def intensity_from_pga(pga_ms2: float) -> float:
    """``I_A = 3.17*lg(PGA m/s^2) + 6.59`` (unrounded, unclamped; -inf for a zero peak)."""
    return I_A_SLOPE * math.log10(pga_ms2) + I_A_OFFSET if pga_ms2 > 0.0 else -math.inf


def intensity_from_pgv(pgv_ms: float) -> float:
    """``I_V = 3.00*lg(PGV m/s) + 9.77`` (unrounded, unclamped; -inf for a zero peak)."""
    return I_V_SLOPE * math.log10(pgv_ms) + I_V_OFFSET if pgv_ms > 0.0 else -math.inf


def pga_for_intensity(intensity: float) -> float:
    """The PGA (m/s^2) whose ``I_A`` equals ``intensity``: ``10**((I - 6.59) / 3.17)``."""
    return 10.0 ** ((intensity - I_A_OFFSET) / I_A_SLOPE)


def round_intensity(value: float) -> float:
    """An instrumental intensity as reported: rounded half-up to 0.1, clamped to [1.0, 12.0]."""
    if value <= INTENSITY_MIN:
        return INTENSITY_MIN
    if value >= INTENSITY_MAX:
        return INTENSITY_MAX
    rounded = float(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    return min(INTENSITY_MAX, max(INTENSITY_MIN, rounded))


def instrumental_intensity(pga_ms2: float, pgv_ms: float) -> float:
    """Instrumental seismic intensity per GB/T 17742-2020 from PGA (m/s^2) and PGV (m/s).

    The intensity is ``I_V`` when both ``I_A`` and ``I_V`` are >= 6.0, else ``(I_A + I_V)/2``;
    rounded half-up to 0.1 and clamped to [1.0, 12.0]. A zero peak gives ``lg = -inf`` and hence 1.0.
    """
    pga, pgv = float(pga_ms2), float(pgv_ms)
    if not (pga >= 0.0 and pgv >= 0.0) or math.isinf(pga) or math.isinf(pgv):
        raise ValueError(f"peaks must be finite and non-negative, got PGA={pga_ms2!r}, PGV={pgv_ms!r}")
    i_a, i_v = intensity_from_pga(pga), intensity_from_pgv(pgv)
    return round_intensity(i_v if (i_a >= 6.0 and i_v >= 6.0) else 0.5 * (i_a + i_v))


def magnitude_from_pd(pd_cm: float, hypo_km: float) -> float:
    """Magnitude from peak P-wave displacement, ``M = (log10(Pd) + 3.463 + 1.374*log10(R)) / 0.729``:
    Pd in cm (first ~3 s of P), R the hypocentral distance in km."""
    if not (pd_cm > 0.0 and math.isfinite(pd_cm)):
        raise ValueError(f"pd_cm must be positive, got {pd_cm!r}")
    if not (hypo_km > 0.0 and math.isfinite(hypo_km)):
        raise ValueError(f"hypo_km must be positive, got {hypo_km!r}")
    return (math.log10(pd_cm) - PD_A + PD_C * math.log10(hypo_km)) / PD_B


def pd_from_magnitude(magnitude: float, hypo_km: float) -> float:
    """Forward form of :func:`magnitude_from_pd`: expected Pd (cm) at ``hypo_km`` for ``magnitude``."""
    if not (hypo_km > 0.0 and math.isfinite(hypo_km)):
        raise ValueError(f"hypo_km must be positive, got {hypo_km!r}")
    return 10.0 ** (PD_A + PD_B * magnitude - PD_C * math.log10(hypo_km))
