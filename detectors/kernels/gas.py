"""Gas set-points per GB/T 50493-2019 (defaults; every value is overridable per site or device).

Combustible gas: level-1 alarm at 25 %LEL, level-2 at 50 %LEL. Toxic gas: level 1 at 100 % OEL,
level 2 at 200 % OEL, with the usual set-points in mg/m3. Oxygen: high 23.5 %vol, low 19.5 %vol.
Alarm levels map to warning levels: level 1 -> yellow, level 2 -> orange (red is reserved for a
confirmed multi-sensor incident in alerts/).

Combustible gas reported in %vol (some infrared methane sensors) is judged in %LEL like any other
combustible reading: ``%LEL = 100 * %vol / LEL``, with the LEL in %vol of IEC 60079-20-1 (GB/T
3836.11): methane 4.4, propane 1.7, hydrogen 4.0 (``lel_vol`` overrides it per site or device, e.g.
5.0 for a methane sensor calibrated to the older 5 %vol). Without an LEL such a reading gets no rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from tocsin.detectors.kernels.levels import LevelRule

MOLAR_VOLUME_L = 24.45  # litres per mole at 25 degC, 101.325 kPa
MOLAR_MASS_G = {
    "H2S": 34.08,
    "CO": 28.01,
    "NH3": 17.03,
    "Cl2": 70.90,
    "SO2": 64.07,
    "NO2": 46.01,
    "HCN": 27.03,
}
TOXIC_SETPOINTS_MG_M3 = {"H2S": (10.0, 20.0), "CO": (20.0, 40.0), "NH3": (20.0, 40.0), "Cl2": (1.0, 2.0)}
LEL_SETPOINTS = (25.0, 50.0)
LEL_VOL = {"CH4": 4.4, "C3H8": 1.7, "H2": 4.0}  # lower explosive limits, %vol (IEC 60079-20-1)
O2_HIGH = 23.5
O2_LOW = 19.5


def ppm_to_mg_m3(gas: str, ppm: float) -> float:
    return ppm * MOLAR_MASS_G[gas] / MOLAR_VOLUME_L


@dataclass(frozen=True)
class GasRule:
    """How one gas channel is judged: a value converted to ``unit``, then a LevelRule."""

    kind: str  # detection kind, e.g. gas_lel, gas_h2s, o2_low
    unit: str
    rule: LevelRule
    lel_vol: float | None = None  # a %vol combustible reading is converted with this LEL


def rules_for(gas: str, unit: str, overrides: dict[str, float] | None = None) -> list[GasRule]:
    """The level rules for a gas reading; ``overrides`` may set ``level1``/``level2`` (in the
    reading's unit family) or ``o2_low``/``o2_high``. Unknown toxic gases get no rule (the generic
    anomaly detector covers them)."""
    o = overrides or {}
    if unit == "%LEL":
        l1, l2 = o.get("level1", LEL_SETPOINTS[0]), o.get("level2", LEL_SETPOINTS[1])
        return [GasRule("gas_lel", "%LEL", LevelRule.simple((None, l1, l2, None), clear_ratio=0.9))]
    if unit == "%vol" and gas.upper() != "O2":
        lel = o.get("lel_vol", next((v for g, v in LEL_VOL.items() if g.upper() == gas.upper()), None))
        if lel is None or lel <= 0:
            return []
        l1, l2 = o.get("level1", LEL_SETPOINTS[0]), o.get("level2", LEL_SETPOINTS[1])
        return [GasRule("gas_lel", "%LEL", LevelRule.simple((None, l1, l2, None), clear_ratio=0.9), lel)]
    if gas.upper() == "O2":
        hi, lo = o.get("o2_high", O2_HIGH), o.get("o2_low", O2_LOW)
        return [
            GasRule("o2_high", "%vol", LevelRule.simple((None, hi, None, None), clear_offset=0.3)),
            GasRule("o2_low", "%vol", LevelRule.simple((None, lo, None, None), clear_offset=0.3, above=False)),
        ]
    key = next((g for g in TOXIC_SETPOINTS_MG_M3 if g.upper() == gas.upper()), None)
    if key is None and "level1" not in o:
        return []
    if key is not None:
        l1, l2 = TOXIC_SETPOINTS_MG_M3[key]
    else:  # an unlisted gas with a site set-point: level 2 defaults to 200 % of level 1, as listed gases
        l1 = o["level1"]
        l2 = 2.0 * l1
    l1, l2 = o.get("level1", l1), o.get("level2", l2)
    return [GasRule(f"gas_{(key or gas).lower()}", "mg/m3", LevelRule.simple((None, l1, l2, None), clear_ratio=0.9))]


def to_unit(gas: str, value: float, unit: str, target: str, lel_vol: float | None = None) -> float:
    """Convert a reading to the rule's unit: ppm -> mg/m3, and %vol -> %LEL given the LEL in %vol."""
    if unit == target:
        return value
    if unit == "%vol" and target == "%LEL" and lel_vol:
        return 100.0 * value / lel_vol
    if unit == "ppm" and target == "mg/m3":
        key = next((g for g in MOLAR_MASS_G if g.upper() == gas.upper()), None)
        if key is None:
            raise ValueError(f"no molar mass for {gas}: send mg/m3")
        return ppm_to_mg_m3(key, value)
    raise ValueError(f"cannot convert {unit} to {target}")
