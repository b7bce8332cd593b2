"""Earthquake network confirmation: pick coincidence, grid-search location, magnitude, shaking, warning time.

Pure numpy; nothing here imports the rest of the project. The pipeline an alert engine runs on the
station triggers (P-wave picks) of one event:

1. :func:`coincidence` - the heaviest set of distinct stations whose pick times are mutually
   consistent with one P wave crossing the network; a single noisy station cannot confirm an event.
2. :func:`locate` - epicentre and origin time by grid search at a fixed depth (uniform P velocity).
3. :func:`magnitude_estimate` - median of the per-station Pd magnitudes
   (Wu & Zhao 2006) over P-wave-only windows: a station whose S wave arrives inside the 3 s Pd
   window is used with its window cut before the predicted S arrival (from its Pd profile, with a
   growth correction, :func:`truncated_pd_magnitude`) or left out, never with S-inflated Pd.
4. :func:`predicted_pgv_ms` / :func:`predicted_intensity` - expected shaking at a target site.
5. :func:`s_warning_time_s` - seconds between the alert and the S wave at the target.

Geometry: spherical Earth of radius :data:`EARTH_RADIUS_KM`; epicentral distances are great-circle
(haversine) distances, hypocentral distances ``sqrt(epicentral**2 + depth**2)`` (station elevation
ignored). Times are epoch seconds; latitudes / longitudes in degrees.

Inputs accept either :class:`Pick` objects or plain mappings with the same keys (``station_id``,
``lat``, ``lon``, ``t_s``, optional ``weight``, ``pd_cm``), so JSON decoded from a topic can be
passed straight in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tocsin.schemas.seismology import (
    EARTH_RADIUS_KM,
    I_V_OFFSET,
    I_V_SLOPE,
    intensity_from_pgv,
    magnitude_from_pd,
    pd_from_magnitude,
    round_intensity,
)

__all__ = [
    "DEFAULT_PGV_MODEL",
    "EARTH_RADIUS_KM",
    "PD_SATURATION_MAGNITUDE",
    "Coincidence",
    "Location",
    "MagnitudeEstimate",
    "Pick",
    "PgvModel",
    "QuietStation",
    "StationMagnitude",
    "blind_zone_radius_km",
    "coincidence",
    "haversine_km",
    "local_xy_km",
    "locate",
    "magnitude_estimate",
    "magnitude_from_pd",
    "pd_from_magnitude",
    "predicted_intensity",
    "predicted_pgv_ms",
    "s_warning_time_s",
    "shaking_radius_km",
    "p_only_steps",
    "truncated_pd_magnitude",
    "xy_to_latlon",
]


# Branch-and-bound node budget per anchor pick in :func:`coincidence`; past it the best cluster found
# so far (at least the greedy one) is kept. Only reached with many mutually inconsistent picks.
_MAX_NODES = 5000
# Grid nodes times stations evaluated at once in :func:`locate` (bounds temporary memory).
_BLOCK_ELEMENTS = 1 << 20
QUIET_TOLERANCE_S = 2.0
"""Default slack (s) of the not-yet-arrived constraint in :func:`locate`: an untriggered station is
taken to have not seen P only up to ``now_s - quiet_tolerance_s`` (packet length, trigger delay of a
weaker record, transport and processing latency between stations)."""
MAX_QUIET_STATIONS = 32
"""At most this many untriggered stations (the nearest to the picks) constrain :func:`locate`."""


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def _haversine_arr(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(0.5 * dphi) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(0.5 * dlmb) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (km) between two points given in degrees, on a sphere of radius 6371 km."""
    return float(_haversine_arr(lat1, lon1, lat2, lon2))


def _wrap_lon(lon: ArrayLike) -> np.ndarray:
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def local_xy_km(lat: ArrayLike, lon: ArrayLike, lat0: float, lon0: float) -> tuple[Any, Any]:
    """Equirectangular projection about (lat0, lon0): ``(x east km, y north km)``.

    ``x = R * dlon * cos(lat0)``, ``y = R * dlat`` (radians; ``dlon`` wrapped to [-180, 180)). Exact
    along the meridian and parallel through the origin; the east-west scale is off by a relative
    ``tan(lat0) * dlat`` elsewhere (~0.1% at 10 km north of a 40 deg origin), so use it for local
    grids, not for distances (use :func:`haversine_km`). Works element-wise on arrays; scalars in
    give floats out. :func:`xy_to_latlon` is its exact inverse.
    """
    x = EARTH_RADIUS_KM * np.radians(_wrap_lon(np.asarray(lon, dtype=np.float64) - lon0)) * math.cos(math.radians(lat0))
    y = EARTH_RADIUS_KM * np.radians(np.asarray(lat, dtype=np.float64) - lat0)
    if np.ndim(x) == 0 and np.ndim(y) == 0:
        return float(x), float(y)
    return x, y


def xy_to_latlon(x_km: ArrayLike, y_km: ArrayLike, lat0: float, lon0: float) -> tuple[Any, Any]:
    """Inverse of :func:`local_xy_km`: ``(lat, lon)`` in degrees (lat clipped to +-90, lon wrapped)."""
    c = math.cos(math.radians(lat0))
    if c <= 1e-12:
        raise ValueError("the equirectangular projection is undefined at the poles")
    lat = np.clip(lat0 + np.degrees(np.asarray(y_km, dtype=np.float64) / EARTH_RADIUS_KM), -90.0, 90.0)
    lon = _wrap_lon(lon0 + np.degrees(np.asarray(x_km, dtype=np.float64) / (EARTH_RADIUS_KM * c)))
    if np.ndim(lat) == 0 and np.ndim(lon) == 0:
        return float(lat), float(lon)
    return lat, lon


# ---------------------------------------------------------------------------------------------
# Picks
# ---------------------------------------------------------------------------------------------


def _finite(name: str, v: Any) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


@dataclass(frozen=True)
class Pick:
    """A station's P-wave trigger: onset time ``t_s`` (epoch s) at ``(lat, lon)`` (deg).

    ``weight`` (>= 0) is the station's vote in :func:`coincidence` (e.g. 1.0 for a strong-motion
    station, 0.5 for a MEMS sensor). ``pd_cm`` is the peak P displacement (cm) measured after the
    onset, if any, for :func:`magnitude_estimate`; ``pd_profile_cm`` optionally the peak displacement
    over the first ``step, 2*step, ...`` seconds (``pd_step_s``), which lets a station whose S wave
    falls inside the Pd window still give a magnitude from its P-only start (:func:`magnitude_estimate`).
    """

    station_id: str
    lat: float
    lon: float
    t_s: float
    weight: float = 1.0
    pd_cm: float | None = None
    pd_profile_cm: tuple[float, ...] | None = None
    pd_step_s: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pd_profile_cm"] = None if self.pd_profile_cm is None else list(self.pd_profile_cm)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pick:
        pd = d.get("pd_cm")
        profile = d.get("pd_profile_cm")
        return cls(
            station_id=str(d["station_id"]),
            lat=float(d["lat"]),
            lon=float(d["lon"]),
            t_s=float(d["t_s"]),
            weight=float(d.get("weight", 1.0)),
            pd_cm=None if pd is None else float(pd),
            pd_profile_cm=None if profile is None else tuple(float(x) for x in profile),
            pd_step_s=float(d.get("pd_step_s", 0.5)),
        )


@dataclass(frozen=True)
class QuietStation:
    """A live station that has not triggered (P not seen yet) at ``(lat, lon)`` (deg): evidence for
    :func:`locate` that the P wave has not reached it. Live means its data are coming in: a station
    whose data stopped must not be given as one (its silence says nothing about the P wave)."""

    station_id: str
    lat: float
    lon: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuietStation:
        return cls(str(d["station_id"]), float(d["lat"]), float(d["lon"]))


def _as_quiet(q: QuietStation | Mapping[str, Any]) -> QuietStation:
    station = q if isinstance(q, QuietStation) else QuietStation.from_dict(q)
    lat = _finite("lat", station.lat)
    _finite("lon", station.lon)
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"lat must lie in [-90, 90], got {station.lat!r}")
    return station


def _as_pick(p: Pick | Mapping[str, Any]) -> Pick:
    pick = p if isinstance(p, Pick) else Pick.from_dict(p)
    lat = _finite("lat", pick.lat)
    _finite("lon", pick.lon)
    _finite("t_s", pick.t_s)
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"lat must lie in [-90, 90], got {pick.lat!r}")
    if not (_finite("weight", pick.weight) >= 0.0):
        raise ValueError(f"weight must be >= 0, got {pick.weight!r}")
    return pick


# ---------------------------------------------------------------------------------------------
# Coincidence
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coincidence:
    """Result of :func:`coincidence`.

    ``station_ids`` and ``picks`` are the cluster in pick-time order (one pick per station);
    ``weight`` is the sum of their weights, ``confirmed`` whether it reaches ``min_weight`` (and the
    cluster is not empty); ``first_t_s`` is the earliest pick time of the cluster (None if empty).
    """

    station_ids: tuple[str, ...]
    weight: float
    confirmed: bool
    first_t_s: float | None
    picks: tuple[Pick, ...]

    @property
    def n(self) -> int:
        return len(self.station_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "station_ids": list(self.station_ids),
            "weight": self.weight,
            "confirmed": self.confirmed,
            "first_t_s": self.first_t_s,
            "picks": [p.to_dict() for p in self.picks],
        }


def _bits(mask: int) -> Iterable[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _max_weight_consistent(w: Sequence[float], conflict: Sequence[int]) -> int:
    """Bit mask of a heaviest conflict-free subset (local indices; conflicts given as bit masks);
    among equally heavy subsets, one with the most members.

    Equivalent to a minimum-weight vertex cover of the conflict graph, solved by branch and bound:
    take the vertex ``v`` with most conflicts; either drop ``v``, or keep it and drop all its
    conflicting neighbours. Dropping first makes the first leaf the greedy answer, so hitting the
    node budget still returns a consistent (if possibly sub-optimal) set. When no vertex has more
    than one conflict, the conflicts are disjoint pairs and the lighter of each pair is dropped.
    Ties: among vertices with equal conflicts the lighter, then the later one, is branched on /
    dropped first, so earlier picks are preferred. Deterministic.
    """
    m = len(w)
    full = (1 << m) - 1
    best_mask = -1
    best_removed: tuple[float, int] = (math.inf, 0)  # (weight, count) dropped, compared in that order
    nodes = 0

    def rec(mask: int, removed: tuple[float, int]) -> None:
        nonlocal best_mask, best_removed, nodes
        if removed >= best_removed:
            return
        v, vdeg = -1, 0
        for i in _bits(mask):
            deg = (conflict[i] & mask).bit_count()
            if deg == 0:
                continue
            if deg > vdeg or (deg == vdeg and (w[i] < w[v] or (w[i] == w[v] and i > v))):
                v, vdeg = i, deg
        if vdeg == 0:
            best_mask, best_removed = mask, removed
            return
        if vdeg == 1:
            dropped = []
            for i in _bits(mask):
                nb = conflict[i] & mask
                if nb:
                    j = nb.bit_length() - 1
                    if j > i:  # each pair once; drop the lighter, the later one on a tie
                        dropped.append(i if w[i] < w[j] else j)
            for k in dropped:
                mask &= ~(1 << k)
            total = (math.fsum([removed[0], *(w[k] for k in dropped)]), removed[1] + len(dropped))
            if total < best_removed:
                best_mask, best_removed = mask, total
            return
        nodes += 1
        if nodes > _MAX_NODES and best_mask >= 0:
            return
        rec(mask & ~(1 << v), (removed[0] + w[v], removed[1] + 1))
        nb = conflict[v] & mask
        rec(mask & ~nb, (math.fsum([removed[0], *(w[k] for k in _bits(nb))]), removed[1] + nb.bit_count()))

    rec(full, (0.0, 0))
    return best_mask


def coincidence(
    picks: Sequence[Pick | Mapping[str, Any]],
    window_s: float,
    min_weight: float,
    *,
    vp_km_s: float = 6.0,
    tolerance_s: float = 1.0,
) -> Coincidence:
    """Heaviest set of distinct stations whose picks are consistent with one P wave.

    A cluster is a set of picks, at most one per station, such that

    * every pick lies within ``window_s`` after the earliest pick of the cluster, and
    * every pair is physically consistent: ``|t_i - t_j| <= dist_ij / vp_km_s + tolerance_s``
      (``dist_ij`` the great-circle distance between the stations). A P wave cannot arrive at two
      stations further apart in time than it takes to travel between them; a local noise trigger
      (too late, or too early) breaks this with the real picks.

    Returned is the cluster of largest total weight (then most stations, then earliest first pick;
    the search is exact unless the branch-and-bound budget is hit, see
    :func:`_max_weight_consistent`). ``confirmed`` is ``weight >= min_weight``. The result does not
    depend on the order of ``picks`` (they are sorted by time, station id, weight first).
    """
    if not (window_s >= 0.0 and math.isfinite(window_s)):
        raise ValueError(f"window_s must be finite and >= 0, got {window_s!r}")
    if not (vp_km_s > 0.0 and math.isfinite(vp_km_s)):
        raise ValueError(f"vp_km_s must be positive, got {vp_km_s!r}")
    if not (tolerance_s >= 0.0 and math.isfinite(tolerance_s)):
        raise ValueError(f"tolerance_s must be finite and >= 0, got {tolerance_s!r}")
    ps = sorted(
        (_as_pick(p) for p in picks),
        key=lambda p: (p.t_s, p.station_id, -p.weight, p.lat, p.lon, p.pd_cm is None, p.pd_cm or 0.0),
    )
    n = len(ps)
    if n == 0:
        return Coincidence((), 0.0, False, None, ())
    t = np.array([p.t_s for p in ps])
    lat = np.array([p.lat for p in ps])
    lon = np.array([p.lon for p in ps])
    w = [float(p.weight) for p in ps]
    sid = np.array([p.station_id for p in ps], dtype=object)
    dist = _haversine_arr(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    ok = np.abs(t[:, None] - t[None, :]) <= dist / vp_km_s + tolerance_s
    ok &= sid[:, None] != sid[None, :]
    np.fill_diagonal(ok, True)

    best: list[int] = []
    best_w, best_n = -1.0, 0
    for a in range(n):
        cand = [j for j in range(a, n) if t[j] - t[a] <= window_s and ok[a, j]]
        if math.fsum(w[j] for j in cand) < best_w:
            continue
        conflict = [sum(1 << k for k, jj in enumerate(cand) if not ok[j, jj]) for j in cand]
        mask = _max_weight_consistent([w[j] for j in cand], conflict)
        keep = [cand[k] for k in _bits(mask)]
        kw = math.fsum(w[j] for j in keep)
        if kw > best_w or (kw == best_w and len(keep) > best_n):
            best, best_w, best_n = keep, kw, len(keep)
    kept = tuple(ps[j] for j in sorted(best))
    weight = max(best_w, 0.0)
    return Coincidence(
        station_ids=tuple(p.station_id for p in kept),
        weight=weight,
        confirmed=bool(kept) and weight >= min_weight,
        first_t_s=kept[0].t_s if kept else None,
        picks=kept,
    )


# ---------------------------------------------------------------------------------------------
# Location
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Hypocentre from :func:`locate`: epicentre (deg), fixed depth (km), origin time (epoch s),
    RMS travel-time residual of the picks (s) and the number of picks used; with not-yet-arrived data,
    the number of quiet stations used and the largest amount (s) by which one of them should already
    have seen P at this place (0: none)."""

    lat: float
    lon: float
    depth_km: float
    origin_t_s: float
    rms_s: float
    n: int
    n_quiet: int = 0
    late_s: float = 0.0

    def epi_km(self, lat: float, lon: float) -> float:
        """Epicentral (great-circle) distance to a point, km."""
        return haversine_km(self.lat, self.lon, lat, lon)

    def hypo_km(self, lat: float, lon: float) -> float:
        """Hypocentral distance to a point at the surface, km."""
        return math.hypot(self.epi_km(lat, lon), self.depth_km)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Location:
        return cls(
            float(d["lat"]),
            float(d["lon"]),
            float(d["depth_km"]),
            float(d["origin_t_s"]),
            float(d["rms_s"]),
            int(d["n"]),
            int(d.get("n_quiet", 0)),
            float(d.get("late_s", 0.0)),
        )


def _as_location(loc: Location | Mapping[str, Any]) -> Location:
    return loc if isinstance(loc, Location) else Location.from_dict(loc)


Quiet = tuple[np.ndarray, np.ndarray, float]
"""Untriggered live stations in :func:`locate`: their latitudes, longitudes, and the time (relative to
the earliest pick, s) before which their P arrival would have been seen, ``now - tolerance``."""


def _late(t0: ArrayLike, q_tt: np.ndarray, limit: float) -> np.ndarray:
    """How much earlier than ``limit`` each untriggered station's predicted P arrival ``t0 + tt`` is
    (0 where it is not earlier): the one-sided residuals of the not-yet-arrived constraint."""
    return np.maximum(0.0, limit - np.asarray(t0, dtype=np.float64)[..., None] - q_tt)


def _grid_rms(
    xs: np.ndarray,
    ys: np.ndarray,
    lat0: float,
    lon0: float,
    st_lat: np.ndarray,
    st_lon: np.ndarray,
    t_rel: np.ndarray,
    depth_km: float,
    vp_km_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, RMS residual, origin offset) of every node of the grid ``xs`` x ``ys``, row by row (y)."""
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    gx, gy = gx.ravel(), gy.ravel()
    glat, glon = xy_to_latlon(gx, gy, lat0, lon0)
    glat, glon = np.atleast_1d(glat), np.atleast_1d(glon)
    n_st = st_lat.size
    block = max(1, _BLOCK_ELEMENTS // n_st)
    rms = np.empty(gx.size)
    t0 = np.empty(gx.size)
    for s in range(0, gx.size, block):
        e = min(gx.size, s + block)
        d = _haversine_arr(glat[s:e, None], glon[s:e, None], st_lat[None, :], st_lon[None, :])
        r = t_rel[None, :] - np.hypot(d, depth_km) / vp_km_s
        t0[s:e] = r.mean(axis=1)
        rms[s:e] = np.sqrt(np.mean(np.square(r - t0[s:e, None]), axis=1))
    return gx, gy, rms, t0


def _grid_best(
    xs: np.ndarray,
    ys: np.ndarray,
    lat0: float,
    lon0: float,
    st_lat: np.ndarray,
    st_lon: np.ndarray,
    t_rel: np.ndarray,
    depth_km: float,
    vp_km_s: float,
) -> tuple[float, float, float, float]:
    """(x, y, rms, origin offset) of the grid node with the smallest RMS residual (first on ties)."""
    gx, gy, rms, t0 = _grid_rms(xs, ys, lat0, lon0, st_lat, st_lon, t_rel, depth_km, vp_km_s)
    k = int(np.argmin(rms))
    return float(gx[k]), float(gy[k]), float(rms[k]), float(t0[k])


def _polish(
    x: float,
    y: float,
    lat0: float,
    lon0: float,
    st_lat: np.ndarray,
    st_lon: np.ndarray,
    t_rel: np.ndarray,
    depth_km: float,
    vp_km_s: float,
    iterations: int = 30,
) -> tuple[float, float, float, float]:
    """(x, y, rms, origin offset) after Gauss-Newton steps from the grid node ``(x, y)``: the residuals'
    derivatives from the local projection, each step kept only if the RMS (great-circle travel times)
    falls, so the result is never worse than the node. Three picks fit a place exactly: the grid only
    gets within a node of it, and along the long, flat valley that three stations leave, a node can be
    kilometres from the exact fit."""
    sx, sy = local_xy_km(st_lat, st_lon, lat0, lon0)

    def residuals(px: float, py: float) -> tuple[np.ndarray, float]:
        plat, plon = xy_to_latlon(px, py, lat0, lon0)
        r = t_rel - np.hypot(_haversine_arr(plat, plon, st_lat, st_lon), depth_km) / vp_km_s
        t0 = float(r.mean())
        return r - t0, t0

    r, t0 = residuals(x, y)
    cost = float(r @ r)
    for _ in range(iterations):
        hyp = np.maximum(np.hypot(np.hypot(x - sx, y - sy), depth_km), 1e-6) * vp_km_s
        jac = -np.column_stack(((x - sx) / hyp, (y - sy) / hyp))
        jac -= jac.mean(axis=0)  # the origin time is solved for at every point
        jtj = jac.T @ jac
        try:
            step = np.linalg.solve(jtj + 1e-9 * np.eye(2), -(jac.T @ r))
        except np.linalg.LinAlgError:
            break
        moved = False
        for _ in range(12):
            nx, ny = x + float(step[0]), y + float(step[1])
            nr, nt0 = residuals(nx, ny)
            n_cost = float(nr @ nr)
            if n_cost < cost:
                x, y, r, t0, cost, moved = nx, ny, nr, nt0, n_cost, True
                break
            step = step / 2.0
        if not moved or float(np.hypot(*step)) < 1e-7:
            break
    return x, y, math.sqrt(cost / t_rel.size), t0


LOCATE_BASINS = 4
LOCATE_TIE_S = 1e-3
"""RMS residuals (s) closer than this are an equally good fit (:func:`locate` then takes the place
nearest a station)."""
"""Local minima of the coarse grid refined by :func:`locate` (the lowest first)."""


def _coarse_minima(rms: np.ndarray, n: int, limit: int) -> list[int]:
    """Flat indices of the ``limit`` lowest local minima (no lower neighbour among the 8) of an
    ``n`` x ``n`` grid of RMS values, lowest first (then by index)."""
    g = rms.reshape(n, n)
    padded = np.pad(g, 1, constant_values=np.inf)
    is_min = np.ones_like(g, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                is_min &= g <= padded[1 + dy : 1 + dy + n, 1 + dx : 1 + dx + n]
    idx = np.flatnonzero(is_min)
    order = np.lexsort((idx, rms[idx]))
    return [int(i) for i in idx[order][:limit]]


def _centroid(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float]:
    """The stations' centre: the mean of their unit vectors, back on the sphere (symmetric in the
    stations, no trouble at the antimeridian)."""
    order = np.lexsort((lon, lat))  # one summation order whatever the picks' times
    la, lo = np.radians(lat[order]), np.radians(lon[order])
    x, y, z = (
        float(np.mean(np.cos(la) * np.cos(lo))),
        float(np.mean(np.cos(la) * np.sin(lo))),
        float(np.mean(np.sin(la))),
    )
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


def locate(
    picks: Sequence[Pick | Mapping[str, Any]],
    vp_km_s: float = 6.0,
    depth_km: float = 10.0,
    grid_half_width_km: float = 100.0,
    grid_step_km: float = 1.0,
    refine_step_km: float = 0.1,
    *,
    quiet: Sequence[QuietStation | Mapping[str, Any]] = (),
    now_s: float | None = None,
    quiet_tolerance_s: float = QUIET_TOLERANCE_S,
) -> Location:
    """Epicentre and origin time from P picks by grid search at a fixed depth; of equally good fits, the
    one the live stations that have not triggered yet allow.

    Model: ``t_i = t0 + sqrt(epi_i**2 + depth_km**2) / vp_km_s``, uniform velocity. For each grid
    node the origin time minimising the residuals in the least-squares sense is solved in closed
    form, ``t0 = mean(t_i - tt_i)``. The coarse grid (``grid_step_km``, +-``grid_half_width_km``
    east and north) is centred on the stations' centroid; a second grid at ``refine_step_km`` spans
    +-2 coarse steps around each of the :data:`LOCATE_BASINS` lowest local minima of the coarse
    grid, each one's best fine node is polished by Gauss-Newton steps (:func:`_polish`), and the
    smallest RMS residual wins. Fits within :data:`LOCATE_TIE_S` of it are equally good (three picks
    can fit two places exactly, one of them often a mirror image outside the network): the one
    nearest a station is taken. Grid coordinates use the equirectangular projection about the
    centroid (:func:`local_xy_km`); travel times use exact great-circle distances. Picks are
    weighted equally; use the cluster from :func:`coincidence` so that outliers are already removed.

    Not-yet-arrived data (``quiet``, ``now_s``): each live station that has not triggered by
    ``now_s`` says the P wave reached it after ``now_s - quiet_tolerance_s``. At a fit where such a
    station's predicted arrival ``t0 + tt_u`` comes earlier than that, it has a one-sided residual
    ``late_u = now_s - quiet_tolerance_s - (t0 + tt_u)``. The quiet stations decide between the
    equally good fits only (the tie above; three picks: the two exact solutions): the fits with no
    ``late_u`` above :data:`LOCATE_TIE_S` are kept, and the tie rule chooses among them. When every fit, or none, has
    one, they change nothing: quiet stations that contradict every fit of the picks are not
    evidence about the place (a station whose data come late, or that is too far or too noisy to
    trigger), and the picks-only choice stands. So the quiet stations never move the epicentre off
    the picks' best fits: at worst they choose the other one of two. Quiet stations that also have a
    pick are ignored; only the :data:`MAX_QUIET_STATIONS` nearest the picks' centroid are used. The
    tolerance covers what makes a station's trigger known late or fire late: packet length,
    transport, processing, and the later trigger of a weaker record. ``late_s`` is the chosen fit's
    largest ``late_u`` and ``n_quiet`` the quiet stations used. With no quiet station, or quiet
    stations that tell no fit apart, the result is exactly the picks-only location.

    The search depends on where the stations are, not on which of them triggered first: a grid
    centred on the earliest station finds one or the other of two such fits depending on which of
    two near-simultaneous stations came first. The result is the same for the same picks (and
    quiet stations) in any order and under any station names.

    Needs at least 3 picks (3 unknowns); raises ``ValueError`` otherwise, or when quiet stations
    come without ``now_s``.
    """
    # by time, then place: neither the names nor the order given play a part
    ps = sorted((_as_pick(p) for p in picks), key=lambda p: (p.t_s, p.lat, p.lon, p.station_id))
    if len(ps) < 3:
        raise ValueError(f"locate needs at least 3 picks, got {len(ps)}")
    for name, v in (("vp_km_s", vp_km_s), ("grid_half_width_km", grid_half_width_km)):
        if not (v > 0.0 and math.isfinite(v)):
            raise ValueError(f"{name} must be positive, got {v!r}")
    for name, v in (("grid_step_km", grid_step_km), ("refine_step_km", refine_step_km)):
        if not (v > 0.0 and math.isfinite(v)):
            raise ValueError(f"{name} must be positive, got {v!r}")
    if not (depth_km >= 0.0 and math.isfinite(depth_km)):
        raise ValueError(f"depth_km must be finite and >= 0, got {depth_km!r}")
    if not (quiet_tolerance_s >= 0.0 and math.isfinite(quiet_tolerance_s)):
        raise ValueError(f"quiet_tolerance_s must be finite and >= 0, got {quiet_tolerance_s!r}")
    st_lat = np.array([p.lat for p in ps])
    st_lon = np.array([p.lon for p in ps])
    t_ref = ps[0].t_s
    t_rel = np.array([p.t_s - t_ref for p in ps])  # relative times keep full precision
    lat0, lon0 = _centroid(st_lat, st_lon)
    q = _quiet_set(quiet, ps, lat0, lon0)
    q_arg: Quiet | None = None
    if q:
        if now_s is None or not math.isfinite(float(now_s)):
            raise ValueError(f"quiet stations need a finite now_s, got {now_s!r}")
        limit = float(now_s) - t_ref - quiet_tolerance_s
        q_arg = (np.array([s.lat for s in q]), np.array([s.lon for s in q]), limit)

    n_half = int(math.ceil(grid_half_width_km / grid_step_km - 1e-9))
    coarse = np.arange(-n_half, n_half + 1) * grid_step_km
    gx, gy, g_rms, _ = _grid_rms(coarse, coarse, lat0, lon0, st_lat, st_lon, t_rel, depth_km, vp_km_s)
    m_half = int(math.ceil(2.0 * grid_step_km / refine_step_km - 1e-9))
    fine = np.arange(-m_half, m_half + 1) * refine_step_km
    fits = []
    for k in _coarse_minima(g_rms, coarse.size, LOCATE_BASINS):
        fx_k, fy_k, _, _ = _grid_best(gx[k] + fine, gy[k] + fine, lat0, lon0, st_lat, st_lon, t_rel, depth_km, vp_km_s)
        fits.append(_polish(fx_k, fy_k, lat0, lon0, st_lat, st_lon, t_rel, depth_km, vp_km_s))
    # Places that fit equally well (three picks: two exact solutions): the one the quiet stations allow,
    # then the one nearest a station, i.e. in the network rather than its mirror image outside it.
    least = min(f[2] for f in fits)
    tied = [f for f in fits if f[2] <= least + LOCATE_TIE_S]
    late = [0.0] * len(tied)
    if q_arg is not None:
        late = [_late_max(f, lat0, lon0, q_arg, depth_km, vp_km_s) for f in tied]
        allowed = [f for f, lt in zip(tied, late, strict=True) if lt <= LOCATE_TIE_S]
        if allowed and len(allowed) < len(tied):
            late = [0.0] * len(allowed)
            tied = allowed
    sx, sy = local_xy_km(st_lat, st_lon, lat0, lon0)
    k = min(
        range(len(tied)),
        key=lambda i: (float(np.min(np.hypot(sx - tied[i][0], sy - tied[i][1]))), tied[i][2], tied[i][0], tied[i][1]),
    )
    fx, fy, rms, t0 = tied[k]
    lat, lon = xy_to_latlon(fx, fy, lat0, lon0)
    if q_arg is None:
        return Location(float(lat), float(lon), float(depth_km), t_ref + t0, rms, len(ps))
    return Location(float(lat), float(lon), float(depth_km), t_ref + t0, rms, len(ps), len(q), late[k])


def _late_max(
    fit: tuple[float, float, float, float], lat0: float, lon0: float, quiet: Quiet, depth_km: float, vp_km_s: float
) -> float:
    """The largest one-sided residual (s) of the quiet stations at a fit ``(x, y, rms, origin offset)``."""
    lat, lon = xy_to_latlon(fit[0], fit[1], lat0, lon0)
    q_tt = np.hypot(_haversine_arr(lat, lon, quiet[0], quiet[1]), depth_km) / vp_km_s
    return float(_late(np.float64(fit[3]), q_tt, quiet[2]).max())


def _quiet_set(
    quiet: Sequence[QuietStation | Mapping[str, Any]], ps: Sequence[Pick], lat0: float, lon0: float
) -> list[QuietStation]:
    """The quiet stations :func:`locate` uses: not among the picks, one per station id, the
    :data:`MAX_QUIET_STATIONS` nearest the picks' centroid, in a fixed order (place, then id)."""
    picked = {p.station_id for p in ps}
    by_id: dict[str, QuietStation] = {}
    for s in sorted((_as_quiet(item) for item in quiet), key=lambda s: (s.station_id, s.lat, s.lon)):
        if s.station_id not in picked:
            by_id.setdefault(s.station_id, s)
    ranked = sorted(by_id.values(), key=lambda s: (haversine_km(lat0, lon0, s.lat, s.lon), s.lat, s.lon, s.station_id))
    return sorted(ranked[:MAX_QUIET_STATIONS], key=lambda s: (s.lat, s.lon, s.station_id))


# ---------------------------------------------------------------------------------------------
# Magnitude
# ---------------------------------------------------------------------------------------------

# The first 3 s of P carry too little of a large rupture: Pd magnitudes saturate at about M6.5 (a
# larger event reads about M6.5 until longer windows or more stations come in). At or above this
# value an estimate is flagged as a lower bound.
PD_SATURATION_MAGNITUDE = 6.5


# Pd magnitude from a window cut short by the S wave (see :func:`magnitude_estimate`)
PD_MIN_WINDOW_S = 1.0  # a shorter P-only window is not used: too little of the P wave to scale
S_MARGIN_S = 0.2  # the window must end this long before the predicted S arrival (location, velocity error)
MAX_PD_GROWTH_EXPONENT = 1.0  # Pd(t) extrapolated to the full window at most linearly in t
# The P displacement of one growing rupture rises at most about as t**2 (far-field P displacement follows
# the moment rate, which grows as t**2 for a crack spreading at a constant rupture velocity). A profile
# step faster than t**3 is a new phase arriving, the S wave: the P-only window ends before it, whatever
# the predicted S arrival says (a location from the first three or four picks can put the S wave a
# second late: see :func:`p_only_steps`).
PD_PHASE_JUMP_EXPONENT = 3.0


def p_only_steps(profile_cm: Sequence[float], max_exponent: float = PD_PHASE_JUMP_EXPONENT) -> int:
    """How many leading windows of a Pd profile are P wave by their own evidence: the profile up to the
    first step ``k-1 -> k`` (windows ``k * step``) whose growth exponent ``ln(Pd_k / Pd_(k-1)) / ln(k / (k-1))``
    exceeds ``max_exponent`` (the S wave's arrival), or the whole profile. A non-positive value ends it.

    For the nearest station of the bad_day scenario (M4.8, 18.3 km, S 2.2 s after P) the profile every
    0.5 s is 0.0154, 0.0165, 0.0175, 0.0185, 0.104, 0.266 cm: the steps to 2.0 s grow with exponents
    0.1 to 0.2, the step to 2.5 s with ``ln(0.104 / 0.0185) / ln(5 / 4) = 7.7``: four windows (2.0 s)."""
    n = 0
    prev = 0.0
    for k, pd in enumerate(profile_cm, start=1):
        pd = float(pd)
        if not (pd > 0.0 and math.isfinite(pd)):
            break
        if k > 1 and math.log(pd / prev) > max_exponent * math.log(k / (k - 1)):
            break
        n, prev = k, pd
    return n


@dataclass(frozen=True)
class StationMagnitude:
    """One station's Pd magnitude in :func:`magnitude_estimate`.

    ``window_s`` is the Pd window the magnitude rests on: the full ``pd_window_s`` (``full``), or a
    window cut before the S wave; ``s_after_pick_s`` the predicted S arrival after the pick;
    ``growth`` the exponent of the window correction (0 for a full window)."""

    station_id: str
    magnitude: float
    hypo_km: float
    window_s: float
    s_after_pick_s: float
    full: bool = True
    growth: float = 0.0


@dataclass(frozen=True)
class MagnitudeEstimate:
    """Result of :func:`magnitude_estimate`: the network magnitude (None: no usable station), the
    stations it rests on, and the stations left out because the S wave falls inside their Pd window
    and they carry no Pd profile to cut the window short (``contaminated``)."""

    magnitude: float | None
    stations: tuple[StationMagnitude, ...]
    contaminated: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.stations)

    @property
    def n_full(self) -> int:
        """Stations whose whole Pd window is P wave."""
        return sum(1 for s in self.stations if s.full)


def truncated_pd_magnitude(
    profile_cm: Sequence[float],
    step_s: float,
    hypo_km: float,
    usable_s: float,
    *,
    pd_window_s: float = 3.0,
    min_window_s: float = PD_MIN_WINDOW_S,
) -> tuple[float, float, float] | None:
    """Pd magnitude from the P-only start of a station's Pd profile: ``(M, window_s, growth)``.

    ``profile_cm[k]`` is the peak displacement over the first ``(k + 1) * step_s`` seconds after the
    pick (each prefix processed as the full-window Pd: ``tocsin.detectors.kernels.seismic.pd_profile``).
    The window used is the longest profile window ``w <= min(usable_s, pd_window_s)`` that ends before
    any jump of the profile (:func:`p_only_steps`: the S wave seen in the data); None when it is shorter
    than ``min_window_s`` (or the profile is empty, or its Pd is not positive).

    Window correction: Pd over a window ``w`` shorter than the relation's ``T = pd_window_s`` is a lower
    bound of the full-window Pd (a running peak), so the magnitude would come out low for an event
    whose P displacement is still growing. The station's own growth is extrapolated as a power law,
    ``Pd(T) = Pd(w) * (T / w) ** g``, with ``g`` the log-log slope of the profile over the second half
    of the window, ``g = log(Pd(w) / Pd(w_h)) / log(w / w_h)`` (``w_h`` the profile window nearest
    ``w / 2``, at least one step), clipped to [0, :data:`MAX_PD_GROWTH_EXPONENT`] (at most linear
    growth). Then ``M = magnitude_from_pd(Pd(T), R)``, i.e.
    ``M = M_w + g * log10(T / w) / 0.729``. A small event (displacement already at its peak) gets
    ``g = 0`` and no correction; the correction is at most ``log10(T / w) / 0.729`` (+0.65 for
    ``w = 1 s``, ``T = 3 s``). The exponent comes from the data, not from a calibration: with regional
    data, a time-dependent relation fit per window (Pd(w) against M and R) would replace it.
    """
    if not (step_s > 0.0 and math.isfinite(step_s)):
        raise ValueError(f"step_s must be positive, got {step_s!r}")
    limit = min(usable_s, pd_window_s)
    k = min(p_only_steps(profile_cm), int(math.floor(limit / step_s + 1e-9)))
    w = k * step_s
    if k < 1 or w < min_window_s - 1e-9:
        return None
    pd_w = float(profile_cm[k - 1])
    if not (pd_w > 0.0 and math.isfinite(pd_w)):
        return None
    j = max(1, min(k - 1, int(round(k / 2))))
    growth = 0.0
    if j < k:
        pd_h = float(profile_cm[j - 1])
        if pd_h > 0.0 and math.isfinite(pd_h):
            growth = math.log(pd_w / pd_h) / math.log(k / j)
    growth = min(MAX_PD_GROWTH_EXPONENT, max(0.0, growth))
    if w >= pd_window_s - 1e-9:
        growth = 0.0
    pd_full = pd_w * (pd_window_s / w) ** growth
    return magnitude_from_pd(pd_full, hypo_km), w, growth


def magnitude_estimate(
    picks_with_pd: Sequence[Pick | Mapping[str, Any]],
    location: Location | Mapping[str, Any],
    *,
    pd_window_s: float = 3.0,
    vp_km_s: float = 6.0,
    vs_km_s: float = 3.5,
) -> MagnitudeEstimate:
    """Network Pd magnitude: the median of the station magnitudes whose Pd window is P wave only.

    ``vp_km_s`` is accepted for symmetry with the other kernels; the S arrival is predicted from the
    location's origin time, ``t_S = origin + R / vs``, and counted from the station's pick
    (``s_after_pick = t_S - t_pick``; the pick, a trigger, lags the true P onset, so this is shorter
    than the S-P time ``R * (1/vs - 1/vp)`` and is what falls inside a window that starts at the pick).

    * ``s_after_pick >= pd_window_s + S_MARGIN_S``: the reported Pd (``pd_cm``, over ``pd_window_s``)
      is P wave only; Wu & Zhao (2006), :func:`magnitude_from_pd`.
    * otherwise the S wave falls inside the window and ``pd_cm`` includes S-wave motion (several times
      the P displacement: a first warning a magnitude unit or two too high). With a Pd profile
      (``pd_profile_cm`` every ``pd_step_s``) the window is cut before the S wave, at
      ``s_after_pick - S_MARGIN_S``, and :func:`truncated_pd_magnitude` corrects it to the full window;
      without one (or when the P-only part is shorter than :data:`PD_MIN_WINDOW_S`) the station is
      left out (``contaminated``): its Pd only bounds the P displacement from above.

    * a station whose window is P only but not yet full (no ``pd_cm``, a Pd profile of the first 1 or
      2 s) gives an early magnitude from that profile (:func:`truncated_pd_magnitude`), so the first
      magnitude (and with it the public floor, alerts/engine.py) does not wait the whole window;
      the full-window Pd replaces it when it comes.

    * whatever the location says, a window is P wave only up to the first jump of the station's Pd
      profile (:func:`p_only_steps`): the first three or four picks locate the event a few km and a
      fraction of a second off, enough to predict a near station's S wave inside a window that the
      data show it has reached (Pd five times larger in half a second), which made the first
      magnitude depend on which stations had reported first.

    With no usable station the magnitude is None (pending): an alert then rests on observed intensity
    until a station with a clean window reports, rather than on an S-inflated magnitude.
    """
    del vp_km_s
    if not (vs_km_s > 0.0 and math.isfinite(vs_km_s)):
        raise ValueError(f"vs_km_s must be positive, got {vs_km_s!r}")
    loc = _as_location(location)
    used: list[StationMagnitude] = []
    contaminated: list[str] = []
    for p in picks_with_pd:
        pick = _as_pick(p)
        pd = pick.pd_cm
        r = loc.hypo_km(pick.lat, pick.lon)
        if r <= 0.0:
            continue
        s_after = loc.origin_t_s + r / vs_km_s - pick.t_s
        clean = s_after >= pd_window_s + S_MARGIN_S
        # the station's own profile can show the S wave inside a window the location calls P only
        profile = pick.pd_profile_cm or ()
        jumped = p_only_steps(profile) < len(profile)
        if clean and not jumped and pd is not None and pd > 0.0 and math.isfinite(pd):
            used.append(StationMagnitude(pick.station_id, magnitude_from_pd(pd, r), r, pd_window_s, s_after))
            continue
        if clean:
            # no full-window Pd yet: the profile so far (the first 1 s, 2 s of P), growth-corrected
            early = (
                truncated_pd_magnitude(pick.pd_profile_cm, pick.pd_step_s, r, pd_window_s, pd_window_s=pd_window_s)
                if pick.pd_profile_cm
                else None
            )
            if early is not None:
                m, w, g = early
                used.append(StationMagnitude(pick.station_id, m, r, w, s_after, full=False, growth=g))
            elif jumped:
                contaminated.append(pick.station_id)
            continue
        cut = None
        if pick.pd_profile_cm:
            cut = truncated_pd_magnitude(
                pick.pd_profile_cm, pick.pd_step_s, r, s_after - S_MARGIN_S, pd_window_s=pd_window_s
            )
        if cut is not None:
            m, w, g = cut
            used.append(StationMagnitude(pick.station_id, m, r, w, s_after, full=False, growth=g))
        elif pd is not None or pick.pd_profile_cm:
            contaminated.append(pick.station_id)
    used.sort(key=lambda s: s.station_id)
    mag = float(np.median([s.magnitude for s in used])) if used else None
    return MagnitudeEstimate(mag, tuple(used), tuple(sorted(contaminated)))


# ---------------------------------------------------------------------------------------------
# Predicted shaking
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgvModel:
    """``log10(PGV cm/s) = a + b*M - c*log10(R + d_km)``, R hypocentral distance in km.

    The defaults are the intensity attenuation relation of Yu Yanxiang et al. (2013, "Development
    of ground motion attenuation relations for the new seismic hazard map of China", used for the
    5th-generation zoning map GB 18306-2015), eastern strong-earthquake region, long axis:
    ``I = 5.7123 + 1.3626*M - 4.2903*lg(R + 25)`` (M surface-wave magnitude, R epicentral km),
    rewritten as PGV through the GB/T 17742-2020 relation ``I = 3.00*lg(PGV m/s) + 9.77``, i.e.
    ``lg(PGV cm/s) = (I - 3.77)/3``: ``a = (5.7123 - 3.77)/3``, ``b = 1.3626/3``, ``c = 4.2903/3``,
    ``d = 25 km``. So :func:`predicted_intensity` reproduces that intensity relation exactly.

    Review (behaviour checked against the intensities the Chinese scale and macroseismic practice
    lead one to expect; golden tests in tests/alerts/test_quake_kernels.py):

    ======  ==========  =========  ===============================================
    M       R (hypo)    predicted  expected
    ======  ==========  =========  ===============================================
    5.5     10 km       6.6 (VII)  epicentral intensity of an M5.5 about VII
    5.5     40 km       5.4 (V)    V-VI at a few tens of km
    5.5     100 km      4.2 (IV)   IV: felt indoors, no damage
    4.5     10 km       5.2 (V)    V-VI at the epicentre of an M4.5
    6.5     10 km       7.9 (VIII) VIII at the epicentre of an M6.5
    7.0     100 km      6.3 (VI)   VI a hundred km from an M7
    ======  ==========  =========  ===============================================

    (Integer intensity: the instrumental value rounded, 6.5 <= I < 7.5 is VII.) No value is off by
    a degree, so the coefficients and the near-source term ``R + 25 km`` are kept; the coefficient
    values themselves were not re-checked against the paper's tables in that review.

    Limitations: a point source (for M >= 7 the rupture is tens of km long and shaking along it is
    under-predicted far from the epicentre); the hypocentral instead of the epicentral distance,
    so at the epicentre of a 10 km deep event the prediction is about 0.6 degree below the
    relation's R = 0 value; the relation is fit on surface-wave magnitude while the Pd magnitude
    approximates moment magnitude (close for M 5-7); no site amplification; the long axis is the
    conservative (stronger-shaking) branch, appropriate for a warning. Other regions or a
    mean-axis relation: pass another :class:`PgvModel`.
    """

    a: float = (5.7123 - 3.77) / 3.0
    b: float = 1.3626 / 3.0
    c: float = 4.2903 / 3.0
    d_km: float = 25.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_PGV_MODEL = PgvModel()


def predicted_pgv_ms(magnitude: float, hypo_km: float, model: PgvModel = DEFAULT_PGV_MODEL) -> float:
    """Predicted peak ground velocity (m/s) at hypocentral distance ``hypo_km`` (see :class:`PgvModel`)."""
    m = _finite("magnitude", magnitude)
    r = _finite("hypo_km", hypo_km)
    if r < 0.0 or r + model.d_km <= 0.0:
        raise ValueError(f"hypo_km must be >= 0 (and R + d > 0), got {hypo_km!r}")
    return 10.0 ** (model.a + model.b * m - model.c * math.log10(r + model.d_km)) / 100.0


def predicted_intensity(magnitude: float, hypo_km: float, model: PgvModel = DEFAULT_PGV_MODEL) -> float:
    """Predicted instrumental intensity: GB/T 17742-2020 ``I_V = 3.00*lg(PGV m/s) + 9.77`` of the
    predicted PGV, rounded half-up to 0.1 and clamped to [1.0, 12.0].

    Only the PGV branch of the standard is used (there is no predicted PGA here); the standard
    itself uses ``I_V`` alone at intensities >= 6, where warnings matter.
    """
    return round_intensity(intensity_from_pgv(predicted_pgv_ms(magnitude, hypo_km, model)))


def shaking_radius_km(
    magnitude: float, intensity: float, depth_km: float, model: PgvModel = DEFAULT_PGV_MODEL
) -> float | None:
    """Epicentral radius (km) inside which :func:`predicted_intensity` reaches ``intensity``.

    The predicted intensity falls with hypocentral distance only (a point source), so the places
    where it reaches a value form a disc around the epicentre. With the rounding to 0.1, the
    prediction reaches ``intensity`` where the unrounded ``I_V >= intensity - 0.05``:
    ``3*(a + b*M - c*lg(R + d) - 2) + 9.77 >= intensity - 0.05`` (PGV in cm/s, hence the ``- 2``), i.e.
    ``lg(R + d) <= (a + b*M - 2 - (intensity - 0.05 - 9.77)/3) / c``; the epicentral radius is
    ``sqrt(R**2 - depth**2)``. None when not even the epicentre reaches it (``R < depth``).
    """
    m = _finite("magnitude", magnitude)
    i = _finite("intensity", intensity)
    h = _finite("depth_km", depth_km)
    if h < 0.0:
        raise ValueError(f"depth_km must be >= 0, got {depth_km!r}")
    lg = (model.a + model.b * m - 2.0 - (i - 0.05 - I_V_OFFSET) / I_V_SLOPE) / model.c
    hypo = 10.0**lg - model.d_km
    if hypo < h:
        return None
    return math.sqrt(hypo * hypo - h * h)


# ---------------------------------------------------------------------------------------------
# Warning time
# ---------------------------------------------------------------------------------------------


def s_warning_time_s(
    location: Location | Mapping[str, Any],
    target_lat: float,
    target_lon: float,
    alert_t_s: float,
    vs_km_s: float = 3.5,
) -> float:
    """Seconds from the alert to the S-wave arrival at the target; negative inside the blind zone.

    ``origin_t_s + sqrt(epi**2 + depth**2) / vs_km_s - alert_t_s`` (straight ray, uniform Vs).
    """
    if not (vs_km_s > 0.0 and math.isfinite(vs_km_s)):
        raise ValueError(f"vs_km_s must be positive, got {vs_km_s!r}")
    loc = _as_location(location)
    return loc.origin_t_s + loc.hypo_km(target_lat, target_lon) / vs_km_s - alert_t_s


def blind_zone_radius_km(location: Location | Mapping[str, Any], alert_t_s: float, vs_km_s: float = 3.5) -> float:
    """Epicentral radius (km) inside which the S wave arrives before the alert (warning time <= 0).

    ``sqrt((vs*(alert - origin))**2 - depth**2)``, or 0 if the S wave has not yet reached the surface.
    """
    if not (vs_km_s > 0.0 and math.isfinite(vs_km_s)):
        raise ValueError(f"vs_km_s must be positive, got {vs_km_s!r}")
    loc = _as_location(location)
    r_s = vs_km_s * (alert_t_s - loc.origin_t_s)
    if r_s <= loc.depth_km:
        return 0.0
    return math.sqrt(r_s * r_s - loc.depth_km * loc.depth_km)
