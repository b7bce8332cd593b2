"""Physics-informed hazard kernels for the simulators: pure functions, no I/O.

Every random draw comes from a ``numpy.random.Generator`` passed in, so a scenario built twice with
the same seed gives the same numbers. Times are epoch seconds, distances km unless named otherwise.

Earthquake
    Straight rays in a uniform half-space: P at :data:`VP_KM_S` = 6.0 km/s, S at :data:`VS_KM_S` =
    3.5 km/s (the values the alert kernel assumes; S-P time is ``R/8.4`` s, about ``R/8``). Ground
    motion is made to agree with the detector and alert kernels, so that the detectors "see" what the
    physics says:

    * PGV (m/s) at hypocentral distance R is the alert kernel's own relation
      (``tocsin.alerts.kernels.quake.predicted_pgv_ms``: Yu et al. 2013 intensity attenuation, eastern China,
      long axis, rewritten as PGV through GB/T 17742-2020), so the observed and predicted intensities
      agree.
    * PGA (m/s^2) is the value whose GB/T 17742-2020 intensity ``I_A = 3.17 lg PGA + 6.59`` equals the
      PGV intensity ``I_V = 3.00 lg PGV + 9.77``, i.e. ``lg PGA = (I_V - 6.59) / 3.17``; the S wave's
      dominant frequency is then ``PGA / (2 pi PGV)`` (about 2 Hz for moderate shaking).
    * The synthetic trace as a whole (P coda, S wave and coda) is then scaled so that the intensity the
      detector measures from it (0.1-10 Hz band, PGA and PGV, GB/T 17742-2020) is the relation's
      intensity at that distance (:func:`s_wave_scale`): the observed and predicted intensities agree
      to the standard's rounding, whatever the sample grid.
    * Pd (peak P displacement in the first 3 s) follows Wu & Zhao (2006), the relation the alert
      kernel inverts for magnitude (``pd_from_magnitude``).

    The trace is band-limited background noise (a secondary-microseism peak near 0.2 Hz over a
    weaker 1-15 Hz floor), then the P wave (4 Hz), the S wave and an exponentially decaying coda.

Gas plume
    Steady Gaussian plume with ground reflection; Briggs (1973) rural sigma_y, sigma_z for the
    Pasquill-Gifford stability classes A-F. Concentrations in g/m3, converted to mg/m3, ppm (at
    25 degC, 24.45 L/mol) or %LEL.

Rain
    A moving Gaussian rain cell (peak intensity mm/h, radius = 1 sigma), with a smooth rise and
    fall in time; rain at a gauge is the time integral of the intensity. River stage responds through
    a linear reservoir (runoff coefficient, storage constant K) and a power-law rating curve.

Forest fire
    A smoke column grows after ignition; a tower sees it when the column top clears the horizon
    (earth curvature with 4/3 refraction, plus the tower's terrain mask) and the contrast through the
    haze (Koschmieder, meteorological visibility V) is high enough. Bearings are great-circle initial
    bearings from the tower, with Gaussian noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tocsin.alerts.kernels.quake import haversine_km, predicted_pgv_ms
from tocsin.detectors.kernels.gas import MOLAR_MASS_G as _DETECTOR_MOLAR_MASS_G
from tocsin.detectors.kernels.gas import MOLAR_VOLUME_L
from tocsin.detectors.kernels.seismic import INTENSITY_BAND_HZ, Bandpass
from tocsin.schemas.seismology import (
    EARTH_RADIUS_KM,
    intensity_from_pga,
    intensity_from_pgv,
    pd_from_magnitude,
    pga_for_intensity,
)

VP_KM_S = 6.0  # P-wave velocity, upper crust
VS_KM_S = 3.5  # S-wave velocity (the alert kernel's warning-time value)

# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, R = 6371 km)."""
    return haversine_km(lat1, lon1, lat2, lon2)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from true north, [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    b = math.degrees(math.atan2(y, x)) % 360.0
    return 0.0 if b >= 360.0 else b


def destination(lat: float, lon: float, bearing: float, dist_km: float) -> tuple[float, float]:
    """The point ``dist_km`` from (lat, lon) along the initial bearing ``bearing`` (great circle)."""
    d = dist_km / EARTH_RADIUS_KM
    p1, l1, th = math.radians(lat), math.radians(lon), math.radians(bearing)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th))
    l2 = l1 + math.atan2(math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def local_xy_m(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    """(east, north) metres of (lat, lon) from (lat0, lon0), equirectangular (fine within a few km)."""
    x = math.radians(lon - lon0) * math.cos(math.radians(lat0)) * EARTH_RADIUS_KM * 1000.0
    y = math.radians(lat - lat0) * EARTH_RADIUS_KM * 1000.0
    return x, y


# ---------------------------------------------------------------------------------------------
# Earthquake
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quake:
    lat: float
    lon: float
    depth_km: float
    magnitude: float
    origin_s: float  # epoch seconds


@dataclass(frozen=True)
class Arrival:
    epi_km: float
    hypo_km: float
    p_s: float  # epoch seconds of the P arrival
    s_s: float  # epoch seconds of the S arrival


@dataclass(frozen=True)
class GroundMotion:
    pgv_ms: float
    pga_ms2: float
    intensity: float  # GB/T 17742-2020 I_V of the PGV (equal to I_A of the PGA by construction)
    pd_cm: float  # peak P displacement over the first 3 s (Wu & Zhao 2006)
    s_freq_hz: float  # dominant S frequency giving PGA / PGV


def arrivals(q: Quake, lat: float, lon: float, vp: float = VP_KM_S, vs: float = VS_KM_S) -> Arrival:
    """P and S arrival times at a site from the hypocentral distance and the two velocities."""
    epi = distance_km(q.lat, q.lon, lat, lon)
    hypo = math.hypot(epi, q.depth_km)
    return Arrival(epi, hypo, q.origin_s + hypo / vp, q.origin_s + hypo / vs)


def ground_motion(magnitude: float, hypo_km: float) -> GroundMotion:
    """PGV, PGA, intensity and Pd at hypocentral distance ``hypo_km`` (see the module docstring)."""
    pgv = predicted_pgv_ms(magnitude, hypo_km)
    i_v = intensity_from_pgv(pgv)
    pga = pga_for_intensity(i_v)
    f_s = min(8.0, max(0.5, pga / (2.0 * math.pi * pgv)))
    pd = pd_from_magnitude(magnitude, max(hypo_km, 1.0))
    return GroundMotion(pgv, 2.0 * math.pi * f_s * pgv, i_v, pd, f_s)


def _spectral_noise(n: int, df: float, rng: np.random.Generator, shape: np.ndarray) -> np.ndarray:
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white) * shape
    x = np.fft.irfft(spec, n)
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    return x / rms


def seismic_noise(
    n: int, df: float, rng: np.random.Generator, microseism_ms: float = 1.5e-6, floor_ms: float = 1.5e-7
) -> np.ndarray:
    """Background ground velocity (m/s): a secondary-microseism band (log-Gaussian peak at 0.2 Hz,
    RMS ``microseism_ms``) plus a weaker 1-15 Hz cultural/wind floor (RMS ``floor_ms``)."""
    if n <= 0:
        return np.zeros(0)
    f = np.fft.rfftfreq(n, 1.0 / df)
    lf = np.log(np.maximum(f, 1e-6))
    micro = np.exp(-0.5 * ((lf - math.log(0.2)) / 0.45) ** 2)
    floor = ((f >= 1.0) & (f <= 15.0)).astype(float)
    return microseism_ms * _spectral_noise(n, df, rng, micro) + floor_ms * _spectral_noise(n, df, rng, floor)


def _band_noise(n: int, df: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    f = np.fft.rfftfreq(n, 1.0 / df)
    return _spectral_noise(n, df, rng, ((f >= lo) & (f <= hi)).astype(float))


P_FREQ_HZ = 4.0
P_WINDOW_S = 3.0


def quake_waveform(
    q: Quake,
    lat: float,
    lon: float,
    t0_s: float,
    n: int,
    df: float,
    rng: np.random.Generator,
    *,
    noise: bool = True,
) -> np.ndarray:
    """Vertical ground velocity (m/s) at a station, ``n`` samples at ``df`` Hz from epoch ``t0_s``.

    P: displacement ``A_p e(t) sin(2 pi 4 Hz t)`` with ``e`` rising in 0.05 s, growing 60 % until 1 s after
    the S arrival (the P coda) and decaying (3 s) after that, scaled
    so its peak over the first 3 s is Pd; its velocity is the exact derivative. S: velocity
    ``e_s(t) sin(2 pi f_s t)`` (rise 0.3 s, decay with a magnitude-dependent duration) plus a 0.8-3.5 Hz
    coda at a third of its amplitude, the sum scaled (:func:`s_wave_scale`) so that the whole trace,
    measured as GB/T 17742-2020 and the detector measure it, carries the relation's intensity at that
    distance (its PGV then comes out 10-20 % below the relation's PGV, its PGA above the S wave's own).

    Times: ``t0_s`` and ``q.origin_s`` enter only through their difference, so a caller that wants the
    same trace whatever the absolute start passes both relative to one reference (simulators/scenario.py
    passes them relative to the scenario's start).
    """
    a = arrivals(q, lat, lon)
    gm = ground_motion(q.magnitude, a.hypo_km)
    t = t0_s + np.arange(n) / df
    v = seismic_noise(n, df, rng) if noise else np.zeros(n)
    w = 2.0 * math.pi * P_FREQ_HZ
    tp = t - a.p_s
    on = tp >= 0
    if np.any(on):
        tau = tp[on]
        # the P coda grows by 60 % until the S wave is established (S + 1 s; later P phases such as
        # pP, sP, PmP), then decays (3 s), so a station's trigger stays on from P through S: one pick
        sp = a.s_s - a.p_s + 1.0

        def env(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rise = 1.0 - np.exp(-x / 0.05)
            g = np.where(x < sp, 1.0 + 0.6 * x / sp, 1.6 * np.exp(-(x - sp) / 3.0))
            dg = np.where(x < sp, 0.6 / sp, -g / 3.0)
            return rise * g, np.exp(-x / 0.05) / 0.05 * g + rise * dg

        e, de = env(tau)
        grid = np.arange(0.0, P_WINDOW_S, 1.0 / df)
        unit_peak = float(np.max(np.abs(env(grid)[0] * np.sin(w * grid))))
        amp = gm.pd_cm / 100.0 / unit_peak
        v[on] += amp * (de * np.sin(w * tau) + e * w * np.cos(w * tau))
    ts = t - a.s_s
    son = ts >= 0
    if np.any(son):
        tau = ts[son]
        dur = max(1.5, 10.0 ** (0.5 * q.magnitude - 2.1))
        env = (1.0 - np.exp(-tau / 0.3)) * np.exp(-tau / dur)
        s = env * np.sin(2.0 * math.pi * gm.s_freq_hz * tau)
        coda_env = (1.0 - np.exp(-tau / 1.0)) * np.exp(-tau / (2.0 * dur))
        coda = _band_noise(n, df, rng, 0.8, 3.5)[son] * coda_env / 3.0
        part = np.zeros(n)
        part[son] = s + coda
        part /= float(np.max(np.abs(part))) or 1.0
        v += part * s_wave_scale(v, part, df, gm.intensity)
    return v


def trace_intensity(velocity_ms: np.ndarray, df: float) -> float:
    """The instrumental intensity a velocity trace carries, unrounded: GB/T 17742-2020 (I_V when I_A and
    I_V are both >= 6, else their mean) of its PGA and PGV, measured as the detector measures them
    (0.1-10 Hz causal band-pass, PGA the first difference times the rate); -inf for a flat trace."""
    v = Bandpass(*INTENSITY_BAND_HZ, df, 4).process(velocity_ms)
    return _intensity_of(v, df)


def _intensity_of(v_band: np.ndarray, df: float) -> float:
    pgv = float(np.max(np.abs(v_band))) if v_band.size else 0.0
    pga = float(np.max(np.abs(np.diff(v_band)))) * df if v_band.size > 1 else 0.0
    i_a, i_v = intensity_from_pga(pga), intensity_from_pgv(pgv)
    return i_v if (i_a >= 6.0 and i_v >= 6.0) else 0.5 * (i_a + i_v)


def s_wave_scale(base: np.ndarray, s_part: np.ndarray, df: float, intensity: float) -> float:
    """The factor ``k`` for which ``base + k * s_part`` carries the instrumental intensity ``intensity``
    (:func:`trace_intensity`, unrounded), to 1e-9 by bisection; 0 when ``s_part`` is flat.

    The S wave and its coda are scaled so that the whole trace, P coda included, measures the relation's
    intensity. Scaling the S part alone to the relation's PGV, as before, let the trace measure up to
    0.4 degree more: the P coda still rides under the S peak, and the coda's 0.8-3.5 Hz content and the
    S onset raise the PGA above the S wave's own, so I_A and with it the GB/T mean came out high (M4.8 at
    18.3 km: 5.3 to 5.6 for 5.23, a VI instead of a V at the scenario's nearest station, depending on
    where the sample grid fell)."""
    band = Bandpass(*INTENSITY_BAND_HZ, df, 4)
    b = band.process(np.asarray(base, dtype=float))
    s = Bandpass(*INTENSITY_BAND_HZ, df, 4).process(np.asarray(s_part, dtype=float))
    if not np.any(s):
        return 0.0
    lo, hi = 0.0, 1e-3
    while _intensity_of(b + hi * s, df) < intensity:
        hi *= 2.0
        if hi > 1e3:  # 1000 m/s of S wave would still not do: no physical target
            raise ValueError(f"intensity {intensity!r} out of reach of the S wave")
    while hi - lo > 1e-9 * hi:
        mid = 0.5 * (lo + hi)
        if _intensity_of(b + mid * s, df) < intensity:
            lo = mid
        else:
            hi = mid
    return hi


# ---------------------------------------------------------------------------------------------
# Gas plume
# ---------------------------------------------------------------------------------------------

# Briggs (1973) rural dispersion, x in metres: sigma_y = a x (1 + b x)^-0.5; sigma_z = c x (1 + d x)^e
_BRIGGS_RURAL = {
    "A": (0.22, 0.0001, 0.20, 0.0, 0.0),
    "B": (0.16, 0.0001, 0.12, 0.0, 0.0),
    "C": (0.11, 0.0001, 0.08, 0.0002, -0.5),
    "D": (0.08, 0.0001, 0.06, 0.0015, -0.5),
    "E": (0.06, 0.0001, 0.03, 0.0003, -1.0),
    "F": (0.04, 0.0001, 0.016, 0.0003, -1.0),
}
STABILITY_CLASSES = tuple(_BRIGGS_RURAL)

# the same conversion as the gas detector (ppm <-> mg/m3), plus the combustibles it reads in %LEL
MOLAR_MASS_G = {**_DETECTOR_MOLAR_MASS_G, "CH4": 16.04, "C3H8": 44.10, "H2": 2.016}
LEL_PCT_VOL = {"CH4": 5.0, "C3H8": 2.1, "H2": 4.0}


def briggs_sigmas(x_m: float, stability: str) -> tuple[float, float]:
    """(sigma_y, sigma_z) in metres at ``x_m`` downwind for Pasquill-Gifford class A-F (Briggs rural)."""
    a, b, c, d, e = _BRIGGS_RURAL[stability.upper()]
    sy = a * x_m * (1.0 + b * x_m) ** -0.5
    sz = c * x_m * (1.0 + d * x_m) ** e
    return sy, sz


def plume_g_m3(
    rate_g_s: float,
    wind_ms: float,
    x_m: float,
    y_m: float,
    *,
    z_m: float = 1.5,
    source_h_m: float = 2.0,
    stability: str = "D",
) -> float:
    """Steady Gaussian plume with ground reflection at ``x_m`` downwind and ``y_m`` crosswind (g/m3).

    ``C = Q / (2 pi u sy sz) exp(-y^2/2sy^2) [exp(-(z-H)^2/2sz^2) + exp(-(z+H)^2/2sz^2)]``; zero upwind.
    """
    if x_m <= 1.0 or rate_g_s <= 0.0:
        return 0.0
    u = max(wind_ms, 0.5)
    sy, sz = briggs_sigmas(x_m, stability)
    vert = math.exp(-((z_m - source_h_m) ** 2) / (2 * sz * sz)) + math.exp(-((z_m + source_h_m) ** 2) / (2 * sz * sz))
    return rate_g_s / (2.0 * math.pi * u * sy * sz) * math.exp(-(y_m * y_m) / (2 * sy * sy)) * vert


def plume_axes_m(src_lat: float, src_lon: float, lat: float, lon: float, wind_from_deg: float) -> tuple[float, float]:
    """(downwind, crosswind) metres of a receptor from the source; the wind blows FROM ``wind_from_deg``."""
    e, n = local_xy_m(lat, lon, src_lat, src_lon)
    to = math.radians((wind_from_deg + 180.0) % 360.0)
    ux, uy = math.sin(to), math.cos(to)  # downwind unit vector (east, north)
    return e * ux + n * uy, -e * uy + n * ux


def convert_concentration(g_m3: float, gas: str, unit: str) -> float:
    """g/m3 -> ``mg/m3``, ``ppm`` (25 degC) or ``%LEL`` (of the gas's lower explosive limit)."""
    mg = g_m3 * 1000.0
    if unit == "mg/m3":
        return mg
    ppm = mg * MOLAR_VOLUME_L / MOLAR_MASS_G[gas]
    if unit == "ppm":
        return ppm
    if unit == "%LEL":
        return ppm / (LEL_PCT_VOL[gas] * 1e4) * 100.0
    raise ValueError(f"cannot express {gas} in {unit}")


def first_order_response(values: Sequence[float], dt_s: float, t90_s: float, y0: float = 0.0) -> np.ndarray:
    """A first-order sensor's output sampled every ``dt_s`` for a piecewise-constant input.

    ``dy/dt = (x - y)/tau`` with ``tau = t90 / ln 10`` (90 % of a step reached at t90); exact per step.
    """
    tau = t90_s / math.log(10.0)
    k = 1.0 - math.exp(-dt_s / tau) if tau > 0 else 1.0
    out = np.empty(len(values))
    y = y0
    for i, x in enumerate(values):
        y += (x - y) * k
        out[i] = y
    return out


# ---------------------------------------------------------------------------------------------
# Rain and river
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RainCell:
    lat: float  # centre at start_s
    lon: float
    heading_deg: float  # direction of travel
    speed_km_h: float
    radius_km: float  # 1 sigma of the Gaussian profile
    peak_mm_h: float
    start_s: float
    duration_s: float  # rises over the first fifth, falls over the last fifth

    def centre(self, t_s: float) -> tuple[float, float]:
        d = self.speed_km_h * max(0.0, min(t_s, self.start_s + self.duration_s) - self.start_s) / 3600.0
        return destination(self.lat, self.lon, self.heading_deg, d)

    def envelope(self, t_s: float) -> float:
        tau = t_s - self.start_s
        if tau <= 0.0 or tau >= self.duration_s:
            return 0.0
        ramp = self.duration_s / 5.0
        return min(1.0, tau / ramp, (self.duration_s - tau) / ramp)


def rain_intensity_mm_h(cells: Sequence[RainCell], lat: float, lon: float, t_s: float) -> float:
    total = 0.0
    for c in cells:
        env = c.envelope(t_s)
        if env <= 0.0:
            continue
        clat, clon = c.centre(t_s)
        r = distance_km(clat, clon, lat, lon)
        total += c.peak_mm_h * env * math.exp(-0.5 * (r / c.radius_km) ** 2)
    return total


def rain_depth_mm(
    cells: Sequence[RainCell], lat: float, lon: float, t0_s: float, t1_s: float, step_s: float = 30.0
) -> float:
    """Rain (mm) at a point over ``(t0, t1]``: the time integral of the intensity (trapezoid rule)."""
    if t1_s <= t0_s:
        return 0.0
    n = max(1, math.ceil((t1_s - t0_s) / step_s))
    ts = np.linspace(t0_s, t1_s, n + 1)
    vals = np.array([rain_intensity_mm_h(cells, lat, lon, float(t)) for t in ts])
    return float(np.sum(0.5 * (vals[1:] + vals[:-1])) * (t1_s - t0_s) / n / 3600.0)


def linear_reservoir(rain_mm: Sequence[float], dt_s: float, k_s: float, runoff_coeff: float) -> np.ndarray:
    """Outflow (mm/h over the catchment) of a linear reservoir ``dS/dt = c P - S/K`` fed each step with
    ``rain_mm[i]`` (exact for rain uniform within a step)."""
    a = math.exp(-dt_s / k_s)
    s = 0.0
    out = np.empty(len(rain_mm))
    for i, p in enumerate(rain_mm):
        inflow = runoff_coeff * p / dt_s  # mm/s
        s = s * a + inflow * k_s * (1.0 - a)
        out[i] = s / k_s * 3600.0
    return out


def river_stage_m(q_mm_h: float, base_m: float, gain_m: float, exponent: float = 0.6) -> float:
    """Rating curve inverted: stage = base + gain * Q^exponent (Q in mm/h of catchment runoff)."""
    return base_m + gain_m * max(q_mm_h, 0.0) ** exponent


# ---------------------------------------------------------------------------------------------
# Forest fire
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fire:
    lat: float
    lon: float
    ignition_s: float
    max_column_m: float = 600.0  # smoke column height reached once the fire is established
    growth_s: float = 900.0  # e-folding time of the column's growth
    flame_after_s: float = 1800.0  # flames visible (close towers) after this long


def smoke_column_m(fire: Fire, t_s: float) -> float:
    dt = t_s - fire.ignition_s
    return 0.0 if dt <= 0 else fire.max_column_m * (1.0 - math.exp(-dt / fire.growth_s))


def hidden_height_m(dist_km: float) -> float:
    """Height hidden below the horizon at ``dist_km`` (earth curvature, 4/3-earth refraction)."""
    return dist_km * dist_km / (2.0 * (4.0 / 3.0) * EARTH_RADIUS_KM) * 1000.0


def smoke_visibility(
    fire: Fire, tower_lat: float, tower_lon: float, t_s: float, *, mask_m: float = 30.0, visibility_km: float = 25.0
) -> float:
    """0..1: how clearly a tower sees the fire's smoke (0: not at all).

    The part of the column above the horizon and the terrain mask, relative to 100 m, times the
    Koschmieder contrast ``exp(-3.912 d / V)`` of a dark plume seen through haze of visibility V.
    """
    d = distance_km(tower_lat, tower_lon, fire.lat, fire.lon)
    shown = smoke_column_m(fire, t_s) - hidden_height_m(d) - mask_m
    if shown <= 0.0:
        return 0.0
    return min(1.0, shown / 100.0) * math.exp(-3.912 * d / visibility_km)


def fire_confidence(visibility: float) -> float:
    """Camera confidence for a given smoke visibility (0.5 at the edge, ~0.95 when clear)."""
    return 0.0 if visibility <= 0 else min(0.97, 0.45 + 0.55 * math.sqrt(visibility))
