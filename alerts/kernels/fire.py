"""Cross-bearing location of a fire seen from two or more lookout towers. Pure numpy.

Each tower reports the bearing (degrees clockwise from true north) of the smoke it sees and a
1-sigma bearing uncertainty. Each report is a ray on the Earth's surface: the great circle leaving
the tower at that bearing. :func:`intersect_bearings` intersects the rays.

Plane: rays are intersected in the plane tangent to the (spherical) Earth at the towers' centroid,
using the gnomonic (central) projection. It maps every great circle to a straight line, so the
intersection of two rays is exact on the sphere, not only to first order; within the ~30 km of a
tower camera its scale differs from 1 by less than 3e-5, so lengths measured in it (the error
ellipse) are true to that order. Each ray's direction in the plane is taken from the projections
of the tower and of a point 10 km along the great circle.

Solution: the point minimising ``sum_i (d_i / s_i)**2``, ``d_i`` its perpendicular distance from ray
``i`` and ``s_i = r_i * sigma_i`` the ray's perpendicular 1-sigma error at the range ``r_i`` of the
fix (sigma in radians). With two towers this is the plain intersection (weights do not matter);
with more it is a weighted least-squares intersection, iterated three times since the weights
depend on the ranges.

Uncertainty (linearised): covariance ``C = (sum_i n_i n_i^T / s_i**2)^-1`` (``n_i`` the unit normal
of ray ``i``). For two rays crossing at angle ``theta`` this is
``C = ((r1*sigma1)**2 * u2 u2^T + (r2*sigma2)**2 * u1 u1^T) / sin(theta)**2`` (``u_i`` the ray
directions: an error across ray 1 slides the fix along ray 2, amplified by ``1/sin(theta)``), so the
reported ``uncertainty_km = sqrt(trace C)`` - the radial RMS position error - is
``sqrt((r1*sigma1)**2 + (r2*sigma2)**2) / sin(theta)``. ``semi_major_km`` / ``semi_minor_km`` are
the 1-sigma axes of the error ellipse (square roots of the eigenvalues of ``C``). With more than two
towers ``C`` is multiplied by ``max(1, chi2 / (n - 2))``, ``chi2 = sum (d_i / s_i)**2``, so rays that
disagree more than their sigmas allow widen the reported uncertainty.

A fix is refused (``None``) when fewer than two towers report, when no two rays cross at
``min_angle_deg`` (5 deg) or more (near-parallel or opposite rays: the intersection is ill-defined),
when the fix lies behind any tower (not in the direction it looks), or when it is farther than
``max_range_km`` from any tower (beyond what a camera can see). All rays must be about the same
fire: an engine with several fires in view groups bearings per fire before calling this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tocsin.schemas.seismology import EARTH_RADIUS_KM

__all__ = [
    "EARTH_RADIUS_KM",
    "FireFix",
    "Tower",
    "destination",
    "initial_bearing_deg",
    "intersect_bearings",
]


Tower = tuple[float, float, float, float]  # (lat deg, lon deg, bearing deg clockwise from north, sigma deg)

_LOOK_AHEAD_KM = 10.0  # second point used to draw each ray in the plane
_MIN_AHEAD_KM = 1e-6  # a fix closer than this along a ray (or behind it) counts as behind the tower
_RANGE_FLOOR_KM = 1e-3  # ranges are floored here when used as weights


@dataclass(frozen=True)
class FireFix:
    """Located fire.

    ``uncertainty_km`` is the radial RMS position error (``sqrt`` of the trace of the covariance,
    see the module docstring); ``ranges_km`` the great-circle distances from each tower, in input
    order; ``semi_major_km`` / ``semi_minor_km`` / ``major_axis_azimuth_deg`` (clockwise from
    north, in [0, 180)) describe the 1-sigma error ellipse; ``angle_deg`` is the largest crossing
    angle between two rays (90 best); ``rms_miss_km`` the RMS perpendicular distance of the rays
    from the fix (0 for two towers).
    """

    lat: float
    lon: float
    uncertainty_km: float
    n_towers: int
    ranges_km: tuple[float, ...]
    semi_major_km: float = 0.0
    semi_minor_km: float = 0.0
    major_axis_azimuth_deg: float = 0.0
    angle_deg: float = 0.0
    rms_miss_km: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "uncertainty_km": self.uncertainty_km,
            "n_towers": self.n_towers,
            "ranges_km": list(self.ranges_km),
            "semi_major_km": self.semi_major_km,
            "semi_minor_km": self.semi_minor_km,
            "major_axis_azimuth_deg": self.major_axis_azimuth_deg,
            "angle_deg": self.angle_deg,
            "rms_miss_km": self.rms_miss_km,
        }


# ---------------------------------------------------------------------------------------------
# Spherical helpers
# ---------------------------------------------------------------------------------------------


def _unit(lat: float, lon: float) -> np.ndarray:
    p, lm = math.radians(lat), math.radians(lon)
    return np.array([math.cos(p) * math.cos(lm), math.cos(p) * math.sin(lm), math.sin(p)])


def _east_north(lat: float, lon: float) -> tuple[np.ndarray, np.ndarray]:
    p, lm = math.radians(lat), math.radians(lon)
    east = np.array([-math.sin(lm), math.cos(lm), 0.0])
    north = np.array([-math.sin(p) * math.cos(lm), -math.sin(p) * math.sin(lm), math.cos(p)])
    return east, north


def _latlon(v: np.ndarray) -> tuple[float, float]:
    v = v / np.linalg.norm(v)
    lat = math.degrees(math.asin(max(-1.0, min(1.0, float(v[2])))))
    lon = math.degrees(math.atan2(float(v[1]), float(v[0])))
    return lat, lon


def _gc_km(a: np.ndarray, b: np.ndarray) -> float:
    """Great-circle distance between unit vectors (atan2 form, accurate at all separations)."""
    return EARTH_RADIUS_KM * math.atan2(float(np.linalg.norm(np.cross(a, b))), float(np.dot(a, b)))


def initial_bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def destination(lat: float, lon: float, bearing_deg: float, distance_km: float) -> tuple[float, float]:
    """Point reached from (lat, lon) after ``distance_km`` along the great circle at ``bearing_deg``."""
    east, north = _east_north(lat, lon)
    b = math.radians(bearing_deg)
    d = distance_km / EARTH_RADIUS_KM
    v = _unit(lat, lon) * math.cos(d) + (math.sin(b) * east + math.cos(b) * north) * math.sin(d)
    return _latlon(v)


# ---------------------------------------------------------------------------------------------
# Intersection
# ---------------------------------------------------------------------------------------------


def _as_tower(t: Sequence[float] | Mapping[str, Any]) -> Tower:
    vals: tuple[Any, ...]
    if isinstance(t, Mapping):
        vals = (t["lat"], t["lon"], t["bearing_deg"], t["sigma_deg"])
    else:
        if len(t) != 4:
            raise ValueError(f"a tower is (lat, lon, bearing_deg, sigma_deg), got {t!r}")
        vals = tuple(t)
    lat, lon, bearing, sigma = (float(v) for v in vals)
    if not all(math.isfinite(v) for v in (lat, lon, bearing, sigma)):
        raise ValueError(f"tower values must be finite, got {t!r}")
    if not -90.0 < lat < 90.0:
        raise ValueError(f"tower lat must lie in (-90, 90), got {lat!r}")
    if not sigma > 0.0:
        raise ValueError(f"sigma_deg must be positive, got {sigma!r}")
    return lat, lon, bearing, sigma


def intersect_bearings(
    towers: Sequence[Sequence[float] | Mapping[str, Any]],
    max_range_km: float = 30.0,
    min_angle_deg: float = 5.0,
) -> FireFix | None:
    """Fire position from tower bearings, or None if the rays give no acceptable fix.

    ``towers``: ``(lat, lon, bearing_deg, sigma_deg)`` tuples/lists (or mappings with those keys);
    bearings clockwise from true north, sigma the 1-sigma bearing error (> 0). Method, uncertainty
    and rejection rules: see the module docstring.
    """
    if not (max_range_km > 0.0):
        raise ValueError(f"max_range_km must be positive, got {max_range_km!r}")
    if not (0.0 <= min_angle_deg <= 90.0):
        raise ValueError(f"min_angle_deg must lie in [0, 90], got {min_angle_deg!r}")
    tw = [_as_tower(t) for t in towers]
    n = len(tw)
    if n < 2:
        return None

    # Tangent plane at the centroid; gnomonic projection q = R * (v / (v . c0)) in (east, north).
    units = [_unit(lat, lon) for lat, lon, _, _ in tw]
    c0 = np.sum(units, axis=0)
    if np.linalg.norm(c0) < 1e-9:
        return None
    c0 /= np.linalg.norm(c0)
    lat0, lon0 = _latlon(c0)
    e0, n0 = _east_north(lat0, lon0)

    def project(v: np.ndarray) -> np.ndarray:
        z = float(np.dot(v, c0))
        if z <= 0.0:
            raise ValueError("towers must lie within one hemisphere")
        q = v / z
        return EARTH_RADIUS_KM * np.array([float(np.dot(q, e0)), float(np.dot(q, n0))])

    origins = np.empty((n, 2))
    dirs = np.empty((n, 2))
    look = _LOOK_AHEAD_KM / EARTH_RADIUS_KM
    for i, ((lat, lon, bearing, _), v) in enumerate(zip(tw, units, strict=True)):
        east, north = _east_north(lat, lon)
        b = math.radians(bearing)
        ahead = v * math.cos(look) + (math.sin(b) * east + math.cos(b) * north) * math.sin(look)
        origins[i] = project(v)
        d = project(ahead) - origins[i]
        dirs[i] = d / np.linalg.norm(d)
    normals = np.column_stack((-dirs[:, 1], dirs[:, 0]))
    sigma_rad = np.radians([t[3] for t in tw])

    # Largest crossing angle between two lines (parallel and opposite rays both give 0).
    sin_max = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            sin_max = max(sin_max, abs(float(dirs[i, 0] * dirs[j, 1] - dirs[i, 1] * dirs[j, 0])))
    angle_deg = math.degrees(math.asin(min(1.0, sin_max)))
    if sin_max <= 0.0 or angle_deg < min_angle_deg:
        return None

    def solve(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.einsum("i,ij,ik->jk", weights, normals, normals)
        rhs = np.einsum("i,ij,i->j", weights, normals, np.einsum("ij,ij->i", normals, origins))
        return np.linalg.solve(a, rhs), a

    x, _ = solve(1.0 / sigma_rad**2)
    for _ in range(3 if n > 2 else 0):
        ahead_km = np.einsum("ij,ij->i", dirs, x - origins)
        x, _ = solve(1.0 / (np.maximum(ahead_km, _RANGE_FLOOR_KM) * sigma_rad) ** 2)

    ahead_km = np.einsum("ij,ij->i", dirs, x - origins)
    if np.any(ahead_km <= _MIN_AHEAD_KM):
        return None
    fix_v = c0 + (x[0] / EARTH_RADIUS_KM) * e0 + (x[1] / EARTH_RADIUS_KM) * n0
    fix_v /= np.linalg.norm(fix_v)
    ranges = np.array([_gc_km(v, fix_v) for v in units])
    if np.any(ranges > max_range_km):
        return None

    s = np.maximum(ranges, _RANGE_FLOOR_KM) * sigma_rad  # perpendicular 1-sigma error of each ray, km
    miss = np.einsum("ij,ij->i", normals, x - origins)
    info = np.einsum("i,ij,ik->jk", 1.0 / s**2, normals, normals)
    cov = np.linalg.inv(info)
    if n > 2:
        cov *= max(1.0, float(np.sum((miss / s) ** 2)) / (n - 2))
    evals, evecs = np.linalg.eigh(0.5 * (cov + cov.T))
    evals = np.maximum(evals, 0.0)
    major = evecs[:, 1]
    lat, lon = _latlon(fix_v)
    return FireFix(
        lat=lat,
        lon=lon,
        uncertainty_km=math.sqrt(float(evals.sum())),
        n_towers=n,
        ranges_km=tuple(float(r) for r in ranges),
        semi_major_km=math.sqrt(float(evals[1])),
        semi_minor_km=math.sqrt(float(evals[0])),
        major_axis_azimuth_deg=math.degrees(math.atan2(float(major[0]), float(major[1]))) % 180.0,
        angle_deg=angle_deg,
        rms_miss_km=math.sqrt(float(np.mean(miss**2))) if n > 2 else 0.0,
    )
