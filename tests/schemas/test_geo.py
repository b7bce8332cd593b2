"""Area boundary rings (schemas/geo.py): validation, self-intersection, point-in-polygon; and the
pydantic fields that carry them (registry boundaries, alert area polygons)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tocsin.schemas.alert import MAX_AREA_POLYGONS, MAX_AREA_VERTICES, AlertArea
from tocsin.schemas.common import Family
from tocsin.schemas.geo import (
    MAX_RING_VERTICES,
    check_ring,
    first_self_intersection,
    parse_cap_polygon,
    point_in_ring,
    signed_area,
)
from tocsin.schemas.registry import Area, Boundary, Device, Registry, devices_outside_boundaries

SQUARE = [(30.0, 120.0), (30.0, 120.1), (30.1, 120.1), (30.1, 120.0)]


# ------------------------------------------------------------------------------------------ golden
def test_an_open_ring_is_closed_and_a_closed_one_kept() -> None:
    closed = (*SQUARE, SQUARE[0])
    assert check_ring(SQUARE) == closed
    assert check_ring(closed) == closed
    # consecutive repeats collapse; a repeated closing vertex too
    assert check_ring([SQUARE[0], SQUARE[0], *SQUARE[1:], SQUARE[0], SQUARE[0]]) == closed


@pytest.mark.parametrize(
    ("ring", "why"),
    [
        ([(30.0, 120.0), (30.0, 120.1)], "at least 3 distinct"),
        ([(30.0, 120.0), (30.0, 120.1), (30.0, 120.0), (30.0, 120.1)], "at least 3 distinct"),
        ([(30.0, 120.0), (30.0, 120.1), (30.0, 120.2)], "on one line"),
        ([(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)], "intersect itself"),  # a bow tie
        ([(0.0, 0.0), (0.0, 2.0), (0.0, 1.0), (1.0, 1.0)], "intersect itself"),  # an edge doubling back
        # a figure eight touching itself at one vertex
        ([(0.0, 0.0), (1.0, 1.0), (2.0, 0.0), (2.0, 2.0), (1.0, 1.0), (0.0, 2.0)], "intersect itself"),
        ([(91.0, 120.0), (30.0, 120.1), (30.1, 120.1)], "vertex 0 .* not a WGS 84"),
        ([(30.0, 120.0), (30.0, 180.5), (30.1, 120.1)], "vertex 1 .* not a WGS 84"),
        ([(30.0, 120.0), (30.0, math.nan), (30.1, 120.1)], "vertex 1 .* not a WGS 84"),
        ([(30.0, 120.0), (30.0, math.inf), (30.1, 120.1)], "vertex 1 .* not a WGS 84"),
        ([(30.0, -179.5), (30.0, 179.5), (30.1, 179.5)], "antimeridian"),
        ([(30.0, 120.0, 5.0), (30.0, 120.1), (30.1, 120.1)], r"\[lat, lon\]"),
    ],
)
def test_bad_rings_are_refused(ring: list[tuple[float, ...]], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_ring(ring)


def _circle(n: int, radius: float = 0.1, centre: tuple[float, float] = (30.0, 120.0)) -> list[tuple[float, float]]:
    return [
        (centre[0] + radius * math.sin(2 * math.pi * k / n), centre[1] + radius * math.cos(2 * math.pi * k / n))
        for k in range(n)
    ]


def test_vertex_count_is_bounded() -> None:
    assert len(check_ring(_circle(MAX_RING_VERTICES))) == MAX_RING_VERTICES + 1
    with pytest.raises(ValueError, match=f"at most {MAX_RING_VERTICES}"):
        check_ring(_circle(MAX_RING_VERTICES + 1))
    # a huge input is refused as soon as it is known to be too long
    with pytest.raises(ValueError, match=f"at most {MAX_RING_VERTICES}"):
        check_ring(iter(_circle(1_000_000)))


def test_cap_polygon_strings() -> None:
    assert parse_cap_polygon("30,120 30,120.1\n30.1,120.1  30,120") == [
        (30.0, 120.0),
        (30.0, 120.1),
        (30.1, 120.1),
        (30.0, 120.0),
    ]
    for bad in ("30,120 30 120.1", "30,120,1 30,120.1", "30,east 30,120.1"):
        with pytest.raises(ValueError, match="lat,lon"):
            parse_cap_polygon(bad)


def test_point_in_polygon_golden() -> None:
    # a concave "C": the notch (30.05, 120.05..120.1) is outside
    c = [(30.0, 120.0), (30.0, 120.1), (30.04, 120.1), (30.04, 120.03), (30.06, 120.03), (30.06, 120.1)]
    c += [(30.1, 120.1), (30.1, 120.0)]
    ring = check_ring(c)
    assert point_in_ring(30.02, 120.05, ring)
    assert point_in_ring(30.05, 120.01, ring)
    assert not point_in_ring(30.05, 120.05, ring)  # in the notch
    assert not point_in_ring(30.05, 120.2, ring)  # east, level with the notch
    assert not point_in_ring(29.9, 120.05, ring)


# -------------------------------------------------------------------------------------- properties
def _exact_meet(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]) -> bool:
    """Closed segments a-b and c-d share a point, in exact rational arithmetic (the oracle)."""
    fa, fb, fc, fd = ((Fraction(p[0]), Fraction(p[1])) for p in (a, b, c, d))

    def orient(p: tuple[Fraction, Fraction], q: tuple[Fraction, Fraction], r: tuple[Fraction, Fraction]) -> int:
        v = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
        return (v > 0) - (v < 0)

    def within(p: tuple[Fraction, Fraction], q: tuple[Fraction, Fraction], r: tuple[Fraction, Fraction]) -> bool:
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    o1, o2, o3, o4 = orient(fa, fb, fc), orient(fa, fb, fd), orient(fc, fd, fa), orient(fc, fd, fb)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    return any(
        o == 0 and within(p, q, r)
        for o, p, q, r in ((o1, fa, fb, fc), (o2, fa, fb, fd), (o3, fc, fd, fa), (o4, fc, fd, fb))
    )


def _simple_by_brute_force(ring: list[tuple[float, float]]) -> bool:
    """Every pair of edges: adjacent ones share only their common vertex, others nothing."""
    n = len(ring)
    edges = [(ring[k], ring[(k + 1) % n]) for k in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            (a, b), (c, d) = edges[i], edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):
                shared, p, q = (b, a, d) if j == i + 1 else (a, b, c)
                # adjacent: they meet beyond the shared vertex when one far end lies on the other edge
                if _exact_meet(shared, p, q, q) or _exact_meet(shared, q, p, p):
                    return False
                continue
            if _exact_meet(a, b, c, d):
                return False
    return True


# small integer grids make touching, collinear and crossing cases common
_grid_point = st.tuples(st.integers(0, 4).map(float), st.integers(0, 4).map(float))


@settings(max_examples=400, deadline=None)
@given(st.lists(_grid_point, min_size=3, max_size=8, unique=True))
def test_self_intersection_sweep_agrees_with_brute_force(points: list[tuple[float, float]]) -> None:
    assert (first_self_intersection(points) is None) == _simple_by_brute_force(points), points


@st.composite
def _star(draw: st.DrawFn) -> list[tuple[float, float]]:
    """A star-shaped (hence simple) ring: distinct angles in order round a centre, any radii."""
    n = draw(st.integers(3, 60))
    angles = sorted(draw(st.lists(st.integers(0, 3599), min_size=n, max_size=n, unique=True)))
    radii = draw(st.lists(st.floats(0.01, 0.5), min_size=n, max_size=n))
    lat0 = draw(st.floats(-60, 60))
    lon0 = draw(st.floats(-170, 170))
    ring = [
        (lat0 + r * math.sin(math.radians(a / 10)), lon0 + r * math.cos(math.radians(a / 10)))
        for a, r in zip(angles, radii, strict=True)
    ]
    return ring


@settings(max_examples=300, deadline=None)
@given(_star(), st.booleans(), st.integers(0, 59))
def test_star_shaped_rings_are_accepted_and_canonical(ring: list[tuple[float, float]], close: bool, rot: int) -> None:
    try:
        checked = check_ring([*ring, ring[0]] if close else ring)
    except ValueError as exc:
        # float rounding can put three neighbours of a thin spike on one line: only that is refused
        assert "intersect itself" in str(exc) or "on one line" in str(exc), exc
        return
    assert checked[0] == checked[-1] and len(checked) == len(ring) + 1
    assert check_ring(checked) == checked  # idempotent
    k = rot % len(ring)
    assert set(check_ring(ring[k:] + ring[:k])) == set(checked)  # any starting vertex: the same ring
    assert abs(signed_area(checked)) > 0


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-80, 80),
    st.floats(-170, 170),
    st.floats(0.001, 1.0),
    st.floats(0.001, 1.0),
    st.floats(-1.5, 1.5),
    st.floats(-1.5, 1.5),
)
@example(lat0=0.0, lon0=1.8984375, h=1.0, w=0.25, fy=0.5, fx=1.5e-06)  # a west edge moved by the rounding
def test_point_in_rectangle_agrees_with_the_bounds(
    lat0: float, lon0: float, h: float, w: float, fy: float, fx: float
) -> None:
    ring = check_ring([(lat0, lon0), (lat0, lon0 + w), (lat0 + h, lon0 + w), (lat0 + h, lon0)])
    lat, lon = lat0 + fy * h, lon0 + fx * w
    # the bounds of the ring as checked: its vertices are rounded to CAP's 6 decimals
    south, north = min(p[0] for p in ring), max(p[0] for p in ring)
    west, east = min(p[1] for p in ring), max(p[1] for p in ring)
    on_edge = min(abs(lat - south), abs(lat - north), abs(lon - west), abs(lon - east)) < 1e-9
    if not on_edge:
        assert point_in_ring(lat, lon, ring) == (south < lat < north and west < lon < east)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)), min_size=0, max_size=12))
def test_anything_is_a_ring_or_a_value_error(points: list[tuple[float, float]]) -> None:
    try:
        ring = check_ring(points)
    except ValueError:
        return
    assert ring[0] == ring[-1] and 4 <= len(ring) <= MAX_RING_VERTICES + 1
    assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in ring)
    assert first_self_intersection(ring) is None


# ----------------------------------------------------------------------------------- pydantic fields
def test_boundary_takes_pairs_or_a_cap_string_and_is_strict() -> None:
    a = Boundary(code="330110", town="青山镇", polygon=SQUARE)
    b = Boundary.model_validate({"code": "330110", "town": "青山镇", "polygon": "30,120 30,120.1 30.1,120.1 30.1,120"})
    assert a.polygon == b.polygon == check_ring(SQUARE)
    with pytest.raises(ValidationError, match="Extra inputs"):
        Boundary.model_validate({"code": "330110", "polygon": SQUARE, "ring": SQUARE})
    with pytest.raises(ValidationError, match="intersect itself"):
        Boundary(code="330110", polygon=[(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)])
    with pytest.raises(ValidationError, match="at most 1001 items"):
        Boundary(code="330110", polygon=_circle(MAX_RING_VERTICES + 2))
    with pytest.raises(ValidationError, match="control or formatting"):
        Boundary(code="330110", town="青山\u202e镇", polygon=SQUARE)


def test_registry_lookup_takes_the_most_specific_boundary() -> None:
    town = Boundary(code="330110", town="青山镇", polygon=SQUARE)
    village = Boundary(code="330110", town="青山镇", village="横溪村", polygon=_circle(12, 0.01, (30.05, 120.05)))
    district = Boundary(code="330110", polygon=_circle(40, 0.5, (30.0, 120.0)))
    reg = Registry(boundaries=[town, village, district])
    assert reg.boundary("330110", "青山镇", "横溪村") is village
    assert reg.boundary("330110", "青山镇", "石桥村") is town
    assert reg.boundary("330110", "白沙镇") is district
    assert reg.boundary("330111", "青山镇") is None
    assert reg.polygon(("330110", "青山镇", "")) == town.polygon
    assert reg.polygon(("330110", "白沙镇", "")) is None
    # one boundary per area
    with pytest.raises(ValidationError, match=r"boundaries\[1\]: a second boundary for area 330110/青山镇"):
        Registry(boundaries=[town, Boundary(code="330110", town="青山镇", polygon=_circle(5))])

    # devices inside their own area's boundary (village before town); unknown or uncovered: False
    def gauge(dev: str, lat: float, lon: float, town: str, village: str = "") -> Device:
        return Device(
            device_id=dev,
            family=Family.HYDRO,
            site="s",
            lat=lat,
            lon=lon,
            area=Area(code="330110", town=town, village=village),
        )

    reg = Registry(
        devices=[
            gauge("IN", 30.05, 120.05, "青山镇"),
            gauge("VILLAGE", 30.05, 120.05, "青山镇", "横溪村"),
            gauge("OUT-OF-VILLAGE", 30.02, 120.02, "青山镇", "横溪村"),  # in the town, not in its village
            gauge("NONE", 31.0, 121.0, "白沙镇", ""),
        ],
        boundaries=[town, village],
    )
    assert [reg.within_boundary(d) for d in ("IN", "VILLAGE", "OUT-OF-VILLAGE", "NONE", "unknown")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert devices_outside_boundaries(reg) == [
        "OUT-OF-VILLAGE (30.02, 120.02) lies outside the boundary of 青山镇横溪村"
    ]
    # a registry without boundaries: no polygon anywhere
    assert Registry().boundary("330110", "青山镇") is None
    assert Area(code="330110", town="青山镇").desc == "青山镇"


def test_alert_area_polygons_are_bounded() -> None:
    ring = check_ring(_circle(8))
    area = AlertArea(code="330110", desc="青山镇", polygons=[ring] * MAX_AREA_POLYGONS)
    assert AlertArea.model_validate_json(area.model_dump_json()) == area  # the wire round trip
    with pytest.raises(ValidationError, match=f"at most {MAX_AREA_POLYGONS} items"):
        AlertArea(code="330110", desc="青山镇", polygons=[ring] * (MAX_AREA_POLYGONS + 1))
    big = check_ring(_circle(MAX_RING_VERTICES))
    n = MAX_AREA_VERTICES // len(big) + 1
    with pytest.raises(ValidationError, match=f"at most {MAX_AREA_VERTICES} polygon vertices"):
        AlertArea(code="330110", desc="青山镇", polygons=[big] * n)
    with pytest.raises(ValidationError, match="WGS 84"):
        AlertArea(code="330110", desc="青山镇", polygons=[[(30.0, 120.0), (95.0, 120.1), (30.1, 120.1)]])
