"""Unit tests for detectors/kernels/gas.py (set-points, unit conversion) and
detectors/kernels/fire.py (bearings, k-of-window persistence)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.kernels import fire, gas
from tocsin.detectors.kernels.levels import run_levels
from tocsin.schemas.common import WarningLevel
from tocsin.schemas.telemetry import GasReading

T0 = datetime(2026, 7, 1, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Gas
# ---------------------------------------------------------------------------------------------


def test_ppm_to_mg_m3_golden() -> None:
    assert gas.ppm_to_mg_m3("H2S", 10.0) == pytest.approx(10 * 34.08 / 24.45)
    assert gas.ppm_to_mg_m3("H2S", 10.0) == pytest.approx(13.93865030674847, rel=1e-12)
    assert gas.ppm_to_mg_m3("CO", 20.0) == pytest.approx(20 * 28.01 / 24.45)
    assert gas.ppm_to_mg_m3("Cl2", 1.0) == pytest.approx(70.90 / 24.45)
    assert gas.ppm_to_mg_m3("NH3", 0.0) == 0.0
    with pytest.raises(KeyError):
        gas.ppm_to_mg_m3("XYZ", 1.0)


def test_to_unit() -> None:
    assert gas.to_unit("H2S", 12.5, "mg/m3", "mg/m3") == 12.5
    assert gas.to_unit("h2s", 10.0, "ppm", "mg/m3") == pytest.approx(10 * 34.08 / 24.45)  # case-insensitive
    assert gas.to_unit("CL2", 2.0, "ppm", "mg/m3") == pytest.approx(2 * 70.90 / 24.45)
    with pytest.raises(ValueError, match="no molar mass for XYZ"):
        gas.to_unit("XYZ", 1.0, "ppm", "mg/m3")
    with pytest.raises(ValueError, match="cannot convert mg/m3 to ppm"):
        gas.to_unit("H2S", 1.0, "mg/m3", "ppm")
    with pytest.raises(ValueError):
        gas.to_unit("O2", 20.9, "%vol", "%LEL")


@pytest.mark.parametrize("name", ["CH4", "C3H8", "H2S"])
def test_lel_rule_yellow_25_orange_50(name: str) -> None:
    [r] = gas.rules_for(name, "%LEL")
    assert (r.kind, r.unit) == ("gas_lel", "%LEL")
    assert r.rule.sets == (None, 25.0, 50.0, None)
    assert r.rule.clears == (None, 22.5, 45.0, None)
    assert r.rule.above is True
    assert run_levels(r.rule, [(v,) * 4 for v in (10, 25, 49, 50, 46, 44.9, 22.4)]) == [0, 2, 2, 3, 3, 2, 0]


@pytest.mark.parametrize(
    ("name", "unit", "kind", "l1", "l2"),
    [
        ("H2S", "mg/m3", "gas_h2s", 10.0, 20.0),
        ("h2s", "ppm", "gas_h2s", 10.0, 20.0),  # rule in mg/m3 whatever the reading's unit
        ("CO", "mg/m3", "gas_co", 20.0, 40.0),
        ("NH3", "ppm", "gas_nh3", 20.0, 40.0),
        ("Cl2", "mg/m3", "gas_cl2", 1.0, 2.0),
    ],
)
def test_toxic_rules(name: str, unit: str, kind: str, l1: float, l2: float) -> None:
    [r] = gas.rules_for(name, unit)
    assert (r.kind, r.unit) == (kind, "mg/m3")
    assert r.rule.sets == (None, l1, l2, None)
    assert r.rule.clears == pytest.approx((None, 0.9 * l1, 0.9 * l2, None))


def test_h2s_levels_golden() -> None:
    [r] = gas.rules_for("H2S", "mg/m3")
    values = [5, 10, 19.9, 20, 18.1, 17.9, 9.1, 8.9]
    assert run_levels(r.rule, [(v,) * 4 for v in values]) == [0, 2, 2, 3, 3, 2, 2, 0]


@pytest.mark.parametrize("name", ["O2", "o2"])
def test_oxygen_high_and_low_rules(name: str) -> None:
    high, low = gas.rules_for(name, "%vol")
    assert (high.kind, high.unit, low.kind, low.unit) == ("o2_high", "%vol", "o2_low", "%vol")
    assert high.rule.sets == (None, 23.5, None, None) and high.rule.above is True
    assert high.rule.clears == pytest.approx((None, 23.2, None, None))
    assert low.rule.sets == (None, 19.5, None, None) and low.rule.above is False
    assert low.rule.clears == pytest.approx((None, 19.8, None, None))
    normal_air = [(20.9,) * 4]
    assert run_levels(high.rule, normal_air) == [0] and run_levels(low.rule, normal_air) == [0]
    assert run_levels(low.rule, [(v,) * 4 for v in (19.4, 19.7, 19.9)]) == [2, 2, 0]
    assert run_levels(high.rule, [(v,) * 4 for v in (23.6, 23.3, 23.1)]) == [2, 2, 0]


@pytest.mark.parametrize(("name", "unit"), [("SO2", "mg/m3"), ("XYZ", "ppm"), ("NO2", "ppm"), ("C6H6", "mg/m3")])
def test_unknown_gas_has_no_rule(name: str, unit: str) -> None:
    assert gas.rules_for(name, unit) == []
    assert gas.rules_for(name, unit, {"level2": 5.0}) == []  # level2 alone is not enough


def test_overrides() -> None:
    [lel] = gas.rules_for("CH4", "%LEL", {"level1": 20.0})
    assert lel.rule.sets == (None, 20.0, 50.0, None)
    [h2s] = gas.rules_for("H2S", "mg/m3", {"level2": 15.0})
    assert h2s.rule.sets == (None, 10.0, 15.0, None)
    [h2s] = gas.rules_for("H2S", "mg/m3", {"level1": 5.0, "level2": 12.0})
    assert h2s.rule.sets == (None, 5.0, 12.0, None)
    high, low = gas.rules_for("O2", "%vol", {"o2_low": 18.0, "o2_high": 22.0})
    assert low.rule.sets[1] == 18.0 and low.rule.clears[1] == pytest.approx(18.3)
    assert high.rule.sets[1] == 22.0 and high.rule.clears[1] == pytest.approx(21.7)
    # an unlisted gas gets a rule from a site set-point
    [so2] = gas.rules_for("SO2", "mg/m3", {"level1": 5.0, "level2": 10.0})
    assert (so2.kind, so2.unit, so2.rule.sets) == ("gas_so2", "mg/m3", (None, 5.0, 10.0, None))


def test_unlisted_gas_with_only_level1_has_no_zero_level2() -> None:
    # Regression: level 2 defaulted to 0.0, so any reading (even 0) was an orange alarm.
    [r] = gas.rules_for("SO2", "mg/m3", {"level1": 5.0})
    assert r.rule.sets == (None, 5.0, 10.0, None)  # level 2 at 200 % of level 1, as for listed gases
    assert run_levels(r.rule, [(v,) * 4 for v in (0.0, 4.0, 5.0, 10.0)]) == [0, 0, 2, 3]


# ---------------------------------------------------------------------------------------------
# Fire: bearings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [(359, 1, 2), (1, 359, 2), (0, 180, 180), (10, 350, 20), (90, 90, 0), (720.5, 0.5, 0), (0, 270, 90)],
)
def test_bearing_diff(a: float, b: float, d: float) -> None:
    assert fire.bearing_diff(a, b) == pytest.approx(d)


@pytest.mark.parametrize(
    ("bearings", "mean"),
    [
        ([350, 10], 0.0),
        ([359, 1], 0.0),
        ([355, 5, 15], 5.0),
        ([10, 20], 15.0),
        ([90], 90.0),
        ([270, 280], 275.0),
        ([0, 90], 45.0),
        ([179, 181], 180.0),
    ],
)
def test_circular_mean(bearings: list[float], mean: float) -> None:
    m = fire.circular_mean(bearings)
    assert 0.0 <= m < 360.0
    assert m == pytest.approx(mean, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 359.99), min_size=1, max_size=6))
def test_property_circular_mean_is_a_valid_bearing(bearings: list[float]) -> None:
    m = fire.circular_mean(bearings)
    assert 0.0 <= m < 360.0
    # for one bearing it is that bearing
    assert fire.bearing_diff(fire.circular_mean(bearings[:1]), bearings[0]) < 1e-9


# ---------------------------------------------------------------------------------------------
# Fire: persistence
# ---------------------------------------------------------------------------------------------

P = fire.FireParams()  # k=3, 900 s window, min confidence 0.6, 3 degrees, clear after 1800 s


def _hits(*hits: fire.Hit, p: fire.FireParams = P) -> list[fire.Hit]:
    out: list[fire.Hit] = []
    for h in hits:
        out = fire.add_hit(out, h, p)
    return out


def test_three_consistent_hits_in_the_window_are_a_fire() -> None:
    hits = _hits((0.0, 100.0, 0.7, "smoke"), (300.0, 101.0, 0.9, "smoke"), (600.0, 99.5, 0.65, "smoke"))
    assert fire.evaluate(hits[:2], 300.0, P) == fire.Persistence(False, 2, 100.5, 0.9, "smoke")
    pers = fire.evaluate(hits, 600.0, P)
    assert pers.active is True
    assert pers.count == 3
    assert pers.bearing_deg == 100.17  # circular mean 100.1666..., rounded to 0.01
    assert pers.confidence == 0.9
    assert pers.kind == "smoke"


def test_k_of_window_uses_an_open_window() -> None:
    hits = _hits((0.0, 100.0, 0.8, "smoke"), (300.0, 100.0, 0.8, "smoke"), (900.0, 100.0, 0.8, "smoke"))
    # the hit at t=0 is exactly one window before now: outside (now - 900, now]
    pers = fire.evaluate(hits, 900.0, P)
    assert (pers.active, pers.count) == (False, 2)
    assert fire.evaluate(hits, 899.0, P).count == 3


def test_hits_below_min_confidence_are_ignored() -> None:
    hits = _hits((0.0, 100.0, 0.8, "smoke"), (300.0, 100.0, 0.8, "smoke"))
    assert fire.add_hit(hits, (600.0, 100.0, 0.59, "flame"), P) == hits
    with_low = _hits((0.0, 100.0, 0.8, "smoke"), (300.0, 100.0, 0.59, "smoke"), (600.0, 100.0, 0.8, "smoke"))
    assert (fire.evaluate(with_low, 600.0, P).active, len(with_low)) == (False, 2)
    at_min = _hits((0.0, 100.0, 0.8, "smoke"), (300.0, 100.0, 0.6, "smoke"), (600.0, 100.0, 0.8, "smoke"))
    assert fire.evaluate(at_min, 600.0, P).active is True


def test_inconsistent_bearings_do_not_count() -> None:
    hits = _hits((0.0, 100.0, 0.8, "smoke"), (300.0, 110.0, 0.8, "smoke"), (600.0, 100.5, 0.8, "smoke"))
    pers = fire.evaluate(hits, 600.0, P)
    assert (pers.active, pers.count, pers.bearing_deg) == (False, 2, 100.25)
    # support is measured from the newest hit
    hits = _hits((0.0, 100.0, 0.8, "smoke"), (300.0, 100.0, 0.8, "smoke"), (600.0, 120.0, 0.8, "smoke"))
    assert fire.evaluate(hits, 600.0, P).count == 1
    # the tolerance is inclusive
    hits = _hits((0.0, 97.0, 0.8, "smoke"), (300.0, 103.0, 0.8, "smoke"), (600.0, 100.0, 0.8, "smoke"))
    assert fire.evaluate(hits, 600.0, P).active is True


def test_persistence_across_north() -> None:
    hits = _hits((0.0, 359.0, 0.8, "smoke"), (300.0, 1.0, 0.8, "smoke"), (600.0, 0.5, 0.7, "smoke"))
    pers = fire.evaluate(hits, 600.0, P)
    assert (pers.active, pers.count) == (True, 3)
    assert pers.bearing_deg == 0.17
    # symmetric around north: the reported bearing is 0, never 360
    hits = _hits((0.0, 359.0, 0.8, "smoke"), (300.0, 1.0, 0.8, "smoke"), (600.0, 0.0, 0.8, "smoke"))
    pers = fire.evaluate(hits, 600.0, P)
    assert pers.active and pers.bearing_deg == 0.0
    hits = _hits((0.0, 359.999, 0.8, "smoke"), (300.0, 359.998, 0.8, "smoke"), (600.0, 359.997, 0.8, "smoke"))
    assert fire.evaluate(hits, 600.0, P).bearing_deg == 0.0  # 359.998 rounds to 360.00 = north


def test_flame_in_the_support_makes_the_kind_flame() -> None:
    hits = _hits((0.0, 50.0, 0.8, "smoke"), (300.0, 50.0, 0.8, "flame"), (600.0, 50.0, 0.8, "smoke"))
    assert fire.evaluate(hits, 600.0, P).kind == "flame"
    # a flame at another bearing is not support
    hits = _hits((0.0, 80.0, 0.8, "flame"), (300.0, 50.0, 0.8, "smoke"), (600.0, 50.0, 0.8, "smoke"))
    assert fire.evaluate(hits, 600.0, P).kind == "smoke"


def test_add_hit_sorts_and_prunes() -> None:
    hits = _hits((600.0, 10.0, 0.8, "smoke"), (0.0, 10.0, 0.8, "smoke"), (300.0, 10.0, 0.8, "smoke"))
    assert [h[0] for h in hits] == [0.0, 300.0, 600.0]
    # kept for max(window, clear_after) = 1800 s behind the newest qualifying hit
    assert [h[0] for h in fire.add_hit(hits, (1799.0, 10.0, 0.8, "smoke"), P)] == [0.0, 300.0, 600.0, 1799.0]
    assert [h[0] for h in fire.add_hit(hits, (1800.0, 10.0, 0.8, "smoke"), P)] == [300.0, 600.0, 1800.0]
    # a low-confidence hit neither joins nor prunes
    assert fire.add_hit(hits, (5000.0, 10.0, 0.1, "smoke"), P) == hits


def test_evaluate_without_recent_hits() -> None:
    assert fire.evaluate([], 100.0, P) == fire.Persistence(False, 0, 0.0, 0.0, "smoke")
    hits = _hits((0.0, 10.0, 0.8, "smoke"))
    assert fire.evaluate(hits, 2000.0, P).count == 0


def test_custom_params() -> None:
    p = fire.FireParams(k=2, window_s=60.0, min_confidence=0.9, bearing_tol_deg=10.0)
    hits = _hits((0.0, 10.0, 0.95, "smoke"), (30.0, 19.0, 0.91, "smoke"), p=p)
    assert fire.evaluate(hits, 30.0, p).active is True
    assert fire.evaluate(hits, 61.0, p).active is False


def test_quiet_for() -> None:
    assert fire.quiet_for([], 100.0) == math.inf
    hits = _hits((100.0, 10.0, 0.8, "smoke"), (600.0, 10.0, 0.8, "smoke"))
    assert fire.quiet_for(hits, 1000.0) == 400.0
    assert fire.quiet_for(hits, 600.0) == 0.0


def test_combustible_gas_in_percent_volume_is_judged_in_lel() -> None:
    # methane LEL 4.4 %vol (IEC 60079-20-1): 1.1 %vol is 25 %LEL (level 1, yellow), 2.2 %vol 50 %LEL
    # (level 2, orange), GB/T 50493-2019 set-points
    engine = DetectorEngine()
    levels = []
    state = None
    for i, vol in enumerate([0.5, 1.09, 1.1, 1.1, 2.2, 2.2]):
        r = GasReading(device_id="ch4", site="s", ts=T0 + timedelta(seconds=10 * i), gas="CH4", value=vol, unit="%vol")
        state, dets = engine.process(r, state)
        levels += [(d.kind, d.level, d.unit, d.value) for d in dets]
    assert levels == [
        ("gas_lel", WarningLevel.YELLOW, "%LEL", pytest.approx(25.0)),
        ("gas_lel", WarningLevel.ORANGE, "%LEL", pytest.approx(50.0)),
    ]
    [rule] = gas.rules_for("CH4", "%vol", {"lel_vol": 5.0})  # a sensor calibrated to 5 %vol
    assert gas.to_unit("CH4", 1.25, "%vol", rule.unit, rule.lel_vol) == pytest.approx(25.0)
    assert gas.rules_for("XYZ", "%vol") == []  # no LEL known: no rule
