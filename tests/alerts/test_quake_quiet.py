"""Location from not-yet-arrived data: live stations that have not triggered constrain the epicentre
(tocsin.alerts.kernels.quake.locate ``quiet``).

Golden case, worked by hand: a sparse network, nine stations on a 40 km square grid (x east, y north,
km) centred on the origin of the local projection; an event 10 km south of the southern row,
at (0, -50), 10 km deep, P at 6 km/s. The first three stations to trigger are the southern row,
G(-40,-40), G(0,-40), G(40,-40): three stations on one line, so the picks fit the event and its
reflection across that line, (0, -30), equally well (the distances to the three stations are the same):

- G(0,-40): epicentral 10 km, hypocentral sqrt(10^2 + 10^2) = 14.142 km, P at 2.357 s;
- G(+-40,-40): epicentral sqrt(40^2 + 10^2) = 41.231 km, hypocentral 42.426 km, P at 7.071 s (the third pick).

The centre station G(0,0) is 50 km from the event (hypocentral 50.990 km, P at 8.498 s), but only
30 km from the reflection (31.623 km, 5.270 s): had the event been at the reflection, G(0,0) would
have triggered 1.80 s before the third pick. It has not, so with G(0,0) live and quiet at the third
pick, the reflection is ruled out for any tolerance below 1.80 s. Picks only, the tie goes to the
place nearest a station: the reflection, inside the network (20 km off). The quiet stations only
choose between such equally good fits; they never move the epicentre off them.

(The grid is laid out in the local equirectangular projection, whose east-west scale is off by
``tan(lat0) * dlat``, about 0.4 % 40 km south of a 30.6 deg origin: the great-circle times below are
within 0.03 s of the flat ones.)
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tocsin.alerts.kernels.quake import (
    LOCATE_TIE_S,
    MAX_QUIET_STATIONS,
    Location,
    Pick,
    QuietStation,
    haversine_km,
    local_xy_km,
    locate,
    xy_to_latlon,
)

ORIGIN = (30.60, 104.05)  # the projection's origin: grid point (0, 0)
T0 = 1_720_000_000.0
DEPTH_KM, VP = 10.0, 6.0
GRID = {f"G{i:+d}{j:+d}": (40.0 * i, 40.0 * j) for i in (-1, 0, 1) for j in (-1, 0, 1)}
SOUTH_ROW = ("G-1-1", "G+0-1", "G+1-1")
EVENT_XY = (0.0, -50.0)
REFLECTION_XY = (0.0, -30.0)


def _ll(xy: tuple[float, float]) -> tuple[float, float]:
    lat, lon = xy_to_latlon(xy[0], xy[1], *ORIGIN)
    return float(lat), float(lon)


def _arrival(epi: tuple[float, float], station: tuple[float, float]) -> float:
    return T0 + math.hypot(haversine_km(*epi, *station), DEPTH_KM) / VP


def _picks(stations: dict[str, tuple[float, float]], epi: tuple[float, float], ids: tuple[str, ...]) -> list[Pick]:
    return [Pick(s, *_ll(stations[s]), _arrival(epi, _ll(stations[s]))) for s in ids]


def _quiet(stations: dict[str, tuple[float, float]], skip: tuple[str, ...]) -> list[QuietStation]:
    return [QuietStation(s, *_ll(xy)) for s, xy in stations.items() if s not in skip]


def _err_km(loc: Location, xy: tuple[float, float]) -> float:
    return haversine_km(loc.lat, loc.lon, *_ll(xy))


def test_the_golden_case_is_as_worked_out_by_hand() -> None:
    epi = _ll(EVENT_XY)
    picks = _picks(GRID, epi, SOUTH_ROW)
    assert max(p.t_s for p in picks) - T0 == pytest.approx(7.071, abs=0.03)
    assert _arrival(epi, _ll(GRID["G+0+0"])) - T0 == pytest.approx(8.498, abs=0.03)
    assert _arrival(_ll(REFLECTION_XY), _ll(GRID["G+0+0"])) - T0 == pytest.approx(5.270, abs=0.03)
    # the other quiet stations are even later: nothing quiet contradicts the true event
    later = [_arrival(epi, _ll(xy)) for s, xy in GRID.items() if s not in SOUTH_ROW]
    assert min(later) - T0 == pytest.approx(8.498, abs=0.03)


def test_three_picks_alone_take_the_reflection_inside_the_network() -> None:
    loc = locate(_picks(GRID, _ll(EVENT_XY), SOUTH_ROW))
    assert _err_km(loc, REFLECTION_XY) < 1.0  # the tie rule: nearest a station
    assert _err_km(loc, EVENT_XY) > 19.0
    assert loc.n_quiet == 0 and loc.late_s == 0.0


@pytest.mark.parametrize("tolerance_s", [0.0, 1.0, 1.7])
def test_a_quiet_centre_station_rules_out_the_reflection(tolerance_s: float) -> None:
    """At the third pick, G(0,0) is live and quiet: the event is found within 0.5 km (it was 20 km off)."""
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    now = max(p.t_s for p in picks)
    loc = locate(picks, quiet=_quiet(GRID, SOUTH_ROW), now_s=now, quiet_tolerance_s=tolerance_s)
    assert _err_km(loc, EVENT_XY) < 0.5
    assert loc.origin_t_s == pytest.approx(T0, abs=0.05)
    assert loc.n == 3 and loc.n_quiet == 6 and loc.late_s == 0.0 and loc.rms_s < 0.01


def test_a_tolerance_longer_than_the_contradiction_leaves_the_tie_to_the_old_rule() -> None:
    """G(0,0) would have seen P 1.80 s before the third pick at the reflection: a tolerance of 2 s
    covers that, the constraint says nothing, and the tie rule decides as without quiet stations."""
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    now = max(p.t_s for p in picks)
    loc = locate(picks, quiet=_quiet(GRID, SOUTH_ROW), now_s=now, quiet_tolerance_s=2.0)
    assert _err_km(loc, REFLECTION_XY) < 1.0
    # ... until time passes with G(0,0) still quiet: 0.5 s later the reflection is ruled out
    later = locate(picks, quiet=_quiet(GRID, SOUTH_ROW), now_s=now + 0.5, quiet_tolerance_s=2.0)
    assert _err_km(later, EVENT_XY) < 0.5


def test_only_the_station_near_the_reflection_matters() -> None:
    """The quiet stations of the northern rows alone cannot tell the two apart (both places would
    reach them after the third pick): the old tie rule decides."""
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    now = max(p.t_s for p in picks)
    north = [q for q in _quiet(GRID, SOUTH_ROW) if q.station_id.endswith("+1")]
    loc = locate(picks, quiet=north, now_s=now, quiet_tolerance_s=0.5)
    assert _err_km(loc, REFLECTION_XY) < 1.0


def test_without_quiet_stations_the_result_is_the_picks_only_location() -> None:
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    assert locate(picks, quiet=[], now_s=T0 + 100.0) == locate(picks)
    assert locate(picks, quiet=(), now_s=None) == locate(picks)
    # quiet stations that are also picked are not quiet
    picked = [QuietStation(p.station_id, p.lat, p.lon) for p in picks]
    assert locate(picks, quiet=picked, now_s=T0 + 100.0) == locate(picks)


def test_quiet_stations_out_of_reach_change_nothing() -> None:
    """Stations 600 km away, quiet 10 s after the origin: consistent with every fit, so the location is
    the picks-only one, to the bit."""
    picks = _picks(GRID, _ll(EVENT_XY), ("G+0-1", "G-1-1", "G+0+0", "G+1+0"))
    far = [QuietStation(f"F{k}", *_ll((600.0 * math.cos(k), 600.0 * math.sin(k)))) for k in range(5)]
    loc = locate(picks, quiet=far, now_s=T0 + 10.0, quiet_tolerance_s=0.0)
    assert loc == dataclasses.replace(locate(picks), n_quiet=5)


def test_quiet_stations_contradicting_every_fit_are_ignored() -> None:
    """A quiet station 10 km south of the event (its P due with the first pick) contradicts the event;
    half a second after the third pick the centre station contradicts the reflection too. Both fits
    contradicted: the quiet stations are not evidence about the place, the picks-only choice stands
    (the reflection), never a place between the two."""
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    now = max(p.t_s for p in picks)
    quiet = [*_quiet(GRID, SOUTH_ROW), QuietStation("DEAD", *_ll((0.0, -60.0)))]
    at_third = locate(picks, quiet=quiet, now_s=now, quiet_tolerance_s=2.0)
    assert _err_km(at_third, REFLECTION_XY) < 1.0 and at_third.late_s == 0.0  # the event ruled out
    later = locate(picks, quiet=quiet, now_s=now + 0.5, quiet_tolerance_s=2.0)
    assert _err_km(later, REFLECTION_XY) < 1.0 and later.late_s > 0.0
    ref = locate(picks)
    assert (later.lat, later.lon, later.origin_t_s, later.rms_s) == (ref.lat, ref.lon, ref.origin_t_s, ref.rms_s)


def test_the_result_does_not_depend_on_the_order_or_duplicates_of_quiet_stations() -> None:
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    now = max(p.t_s for p in picks)
    quiet = _quiet(GRID, SOUTH_ROW)
    ref = locate(picks, quiet=quiet, now_s=now, quiet_tolerance_s=0.5)
    shuffled = list(reversed(quiet)) + quiet[:2]
    random.Random(3).shuffle(shuffled)
    assert locate(picks, quiet=[q.to_dict() for q in shuffled], now_s=now, quiet_tolerance_s=0.5) == ref


def test_only_the_nearest_quiet_stations_are_used() -> None:
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    many = [QuietStation(f"Q{k:03d}", *_ll((100.0 + k, 100.0))) for k in range(3 * MAX_QUIET_STATIONS)]
    loc = locate(picks, quiet=many, now_s=T0 + 8.0, quiet_tolerance_s=0.5)
    assert loc.n_quiet == MAX_QUIET_STATIONS


def test_bad_arguments_are_refused() -> None:
    picks = _picks(GRID, _ll(EVENT_XY), SOUTH_ROW)
    quiet = _quiet(GRID, SOUTH_ROW)
    with pytest.raises(ValueError, match="now_s"):
        locate(picks, quiet=quiet)
    with pytest.raises(ValueError, match="now_s"):
        locate(picks, quiet=quiet, now_s=math.nan)
    with pytest.raises(ValueError, match="quiet_tolerance_s"):
        locate(picks, quiet=quiet, now_s=T0, quiet_tolerance_s=-1.0)
    with pytest.raises(ValueError, match="lat"):
        locate(picks, quiet=[QuietStation("X", 91.0, 0.0)], now_s=T0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-45.0, 45.0), st.floats(-45.0, 45.0)), min_size=5, max_size=9, unique=True),
    st.floats(-60.0, 60.0),
    st.floats(-60.0, 60.0),
    st.floats(0.0, 3.0),
)
def test_quiet_stations_consistent_with_the_event_never_move_the_location_away_from_it(
    offsets: list[tuple[float, float]], ex: float, ey: float, after_s: float
) -> None:
    """Exact picks of the first three stations; every other station quiet up to a time no later than
    its own arrival (so the constraint holds at the true event). The epicentre is always one of the
    picks' equally good fits (its RMS within the 1 ms tie of the picks-only one), and a picks-only
    location on the event (within 0.5 km) stays on it. The first three stations must make a triangle
    (each at least 2 km from the line through the other two): two stations in one place leave a
    whole curve of exact fits."""
    stations = {f"S{i}": xy for i, xy in enumerate(offsets)}
    epi = _ll((ex, ey))
    arrivals = sorted((_arrival(epi, _ll(xy)), s) for s, xy in stations.items())
    first = tuple(s for _, s in arrivals[:3])
    assume(_min_height_km(*(stations[s] for s in first)) >= 2.0)
    picks = _picks(stations, epi, first)
    # now: between the third pick and the fourth arrival (the fourth station has not triggered yet)
    t3, t4 = arrivals[2][0], arrivals[3][0]
    now = min(t3 + after_s, t4)
    ref = locate(picks)
    loc = locate(picks, quiet=_quiet(stations, first), now_s=now, quiet_tolerance_s=0.0)
    assert loc.rms_s <= ref.rms_s + LOCATE_TIE_S
    if _err_km(ref, (ex, ey)) < 0.5:
        assert _err_km(loc, (ex, ey)) < 0.5


def _min_height_km(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    """The smallest height of the triangle abc (0 for points in line)."""
    area2 = abs((b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1]))
    longest = max(math.dist(a, b), math.dist(b, c), math.dist(c, a))
    return area2 / longest if longest > 0 else 0.0


def test_the_grid_and_projection_round_trip_used_here() -> None:
    x, y = local_xy_km(*_ll(EVENT_XY), *ORIGIN)
    assert (x, y) == pytest.approx(EVENT_XY, abs=1e-9)
