"""Area boundaries: WGS 84 polygon rings, their validation and point-in-polygon (pure, no I/O).

A ring is a sequence of ``(lat, lon)`` vertices in degrees, WGS 84 (the CAP 1.2 ``<polygon>``
convention: latitude first). :func:`check_ring` turns what an operator wrote (closed or not,
consecutive repeats allowed) into the canonical closed ring or raises ``ValueError`` saying why:

* every coordinate finite and in range (latitude -90..90, longitude -180..180), rounded to 6
  decimals (about 0.1 m: what CAP carries, so the checks hold for the ring sent);
* at least 3 and at most :data:`MAX_RING_VERTICES` distinct vertices;
* not degenerate (all vertices on one line: no area);
* no crossing the antimeridian (a longitude span of 180 degrees or more is refused: the ring would
  be read the long way round);
* no self-intersection (two edges crossing or touching other than at their shared vertex, or an
  edge doubling back on the previous one), checked by a sweep over the edges' longitude extents.

Planar geometry in degrees: fine for administrative areas of a district (tens of km), where a
boundary vertex is at most a few hundred metres from the next; the point-in-polygon answer on an
edge itself is either side (a device on a boundary line belongs to one of the two areas).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

MAX_RING_VERTICES = 1000
"""Most distinct vertices of one ring: a town boundary simplified to ~50 m needs a few hundred."""

COORD_DECIMALS = 6
"""Vertices are kept to 6 decimals (about 0.1 m), as CAP renders them: the ring checked is the ring sent."""

LatLon = tuple[float, float]
Ring = tuple[LatLon, ...]


def parse_cap_polygon(text: str) -> list[LatLon]:
    """A CAP 1.2 polygon string, ``"lat,lon lat,lon ..."``, as vertices (ValueError when malformed)."""
    points: list[LatLon] = []
    for pair in text.split():
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(f"polygon vertex {pair!r} is not 'lat,lon'")
        try:
            points.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ValueError(f"polygon vertex {pair!r} is not 'lat,lon' in degrees") from None
        if len(points) > MAX_RING_VERTICES + 1:
            break  # check_ring names the limit
    return points


def check_ring(points: Iterable[Sequence[float]], *, check_crossings: bool = True) -> Ring:
    """The closed ring of ``points`` (first vertex repeated at the end), or ValueError naming the fault.

    ``check_crossings`` False skips the self-intersection sweep (for rings already checked once,
    e.g. an alert message built from the registry's boundaries)."""
    ring: list[LatLon] = []
    for i, p in enumerate(points):
        if len(ring) > MAX_RING_VERTICES + 1:
            raise ValueError(f"a polygon has at most {MAX_RING_VERTICES} vertices")
        if len(p) != 2:
            raise ValueError(f"vertex {i} must be [lat, lon], got {len(p)} numbers")
        lat, lon = float(p[0]), float(p[1])
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"vertex {i} ({lat!r}, {lon!r}) is not a WGS 84 lat, lon in degrees")
        lat, lon = round(lat, COORD_DECIMALS) + 0.0, round(lon, COORD_DECIMALS) + 0.0  # + 0.0: no -0.0
        if not ring or ring[-1] != (lat, lon):  # consecutive repeats collapse
            ring.append((lat, lon))
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()  # open; closed again below
    if len(ring) > MAX_RING_VERTICES:
        raise ValueError(f"a polygon has at most {MAX_RING_VERTICES} vertices, got {len(ring)}")
    if len(set(ring)) < 3:
        raise ValueError(f"a polygon needs at least 3 distinct vertices, got {len(set(ring))}")
    lons = [lon for _, lon in ring]
    if max(lons) - min(lons) >= 180:
        raise ValueError("a polygon must not span 180 degrees of longitude or more (antimeridian)")
    a, b = ring[0], next(p for p in ring if p != ring[0])
    if all(_orient(a, b, c) == 0 for c in ring):
        raise ValueError("a polygon's vertices all lie on one line (no area)")
    if check_crossings:
        crossing = first_self_intersection(ring)
        if crossing is not None:
            i, j = crossing
            raise ValueError(f"a polygon must not intersect itself: edge {i} meets edge {j}")
    if signed_area(ring) == 0.0:
        raise ValueError("a polygon must enclose an area (its edges cancel out)")
    return (*ring, ring[0])


def _open(ring: Sequence[LatLon]) -> Sequence[LatLon]:
    return ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring


def signed_area(ring: Sequence[LatLon]) -> float:
    """Shoelace area in square degrees (sign: orientation), of an open or closed ring."""
    pts = _open(ring)
    n = len(pts)
    return 0.5 * sum(pts[k][1] * pts[(k + 1) % n][0] - pts[(k + 1) % n][1] * pts[k][0] for k in range(n))


def _orient(a: LatLon, b: LatLon, c: LatLon) -> float:
    return (b[1] - a[1]) * (c[0] - a[0]) - (b[0] - a[0]) * (c[1] - a[1])


def _on_segment(a: LatLon, b: LatLon, p: LatLon) -> bool:
    """``p`` (collinear with a-b) within the bounding box of a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_meet(a: LatLon, b: LatLon, c: LatLon, d: LatLon) -> bool:
    """Segments a-b and c-d share at least one point (crossing, touching or overlapping)."""
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if ((o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)) and ((o3 > 0 and o4 < 0) or (o3 < 0 and o4 > 0)):
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def first_self_intersection(ring: Sequence[LatLon]) -> tuple[int, int] | None:
    """Two edges ``(i, j)`` (edge k runs from vertex k to k+1) that meet other than at the vertex
    adjacent edges share, or None for a simple ring. Adjacent edges that double back (collinear,
    overlapping) count as meeting. A sweep over longitude: only edges whose longitude extents
    overlap are compared, near-linear for real boundaries, quadratic at worst."""
    pts = list(_open(ring))
    n = len(pts)
    edges = [(pts[k], pts[(k + 1) % n]) for k in range(n)]
    for k in range(n):  # an edge doubling back on the next one (a spike)
        a, b = edges[k]
        c = edges[(k + 1) % n][1]
        if _orient(a, b, c) == 0 and (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0:
            return k, (k + 1) % n
    order = sorted(range(n), key=lambda k: min(edges[k][0][1], edges[k][1][1]))
    active: list[int] = []
    for k in order:
        a, b = edges[k]
        lo = min(a[1], b[1])
        active = [j for j in active if max(edges[j][0][1], edges[j][1][1]) >= lo]
        lat_lo, lat_hi = min(a[0], b[0]), max(a[0], b[0])
        for j in active:
            if abs(j - k) == 1 or abs(j - k) == n - 1:
                continue  # adjacent: they share a vertex (doubling back is checked above)
            c, d = edges[j]
            if max(c[0], d[0]) < lat_lo or min(c[0], d[0]) > lat_hi:
                continue
            if segments_meet(a, b, c, d):
                return min(j, k), max(j, k)
        active.append(k)
    return None


def point_in_ring(lat: float, lon: float, ring: Sequence[LatLon]) -> bool:
    """``(lat, lon)`` inside the ring (even-odd rule, a horizontal ray towards increasing longitude).
    A point exactly on an edge may fall either side."""
    pts = _open(ring)
    inside = False
    n = len(pts)
    j = n - 1
    for i in range(n):
        (lat_i, lon_i), (lat_j, lon_j) = pts[i], pts[j]
        if (lat_i > lat) != (lat_j > lat):
            cross_lon = lon_i + (lat - lat_i) * (lon_j - lon_i) / (lat_j - lat_i)
            if lon < cross_lon:
                inside = not inside
        j = i
    return inside


def in_any(lat: float, lon: float, rings: Iterable[Sequence[LatLon]]) -> bool:
    """``(lat, lon)`` inside at least one of ``rings``."""
    return any(point_in_ring(lat, lon, r) for r in rings)


# ------------------------------------------------------------------------------------ pydantic types
def _from_cap_text(value: object) -> object:
    return parse_cap_polygon(value) if isinstance(value, str) else value


def _checked(value: Ring) -> Ring:
    return check_ring(value)


def _shape_checked(value: Ring) -> Ring:
    return check_ring(value, check_crossings=False)


_Vertices = Annotated[tuple[tuple[float, float], ...], Field(min_length=3, max_length=MAX_RING_VERTICES + 1)]

Polygon = Annotated[_Vertices, BeforeValidator(_from_cap_text), AfterValidator(_checked)]
"""A boundary as configured: ``[[lat, lon], ...]`` (or a CAP string ``"lat,lon lat,lon ..."``),
closed or not; stored as the closed ring, fully checked (:func:`check_ring`)."""

RingField = Annotated[_Vertices, AfterValidator(_shape_checked)]
"""A ring on the wire (an alert message): closed ring, ranges, vertex count and area checked; the
self-intersection sweep is left to where the boundary was configured (the registry)."""
