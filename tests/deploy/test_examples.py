"""The shipped examples (deploy/examples/) load, and every misspelt key is refused naming it and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tocsin.alerts.routing import load_routing
from tocsin.detectors.rules import load_rules
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.geo import point_in_ring
from tocsin.schemas.registry import devices_outside_boundaries, load_registry
from tocsin.simulators.demo import QUADRANT_TOWNS, demo_registry

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_registry_example_loads_with_every_family() -> None:
    reg = load_registry(EXAMPLES / "registry.yaml")
    assert {d.family for d in reg.devices} == set(Family)
    wl = reg.get("WL01")
    assert wl is not None
    assert wl.thresholds["warning_level_m"] == 12.0
    assert wl.area.code == "330110"
    assert reg.sms_recipients["330110"] == ["+8613800000001", "+8613800000002"]
    # boundaries: the town's (open in the file, closed on load) covers its gauges; the chemical park's
    # own boundary (CAP string form) is more specific than its town's
    town = reg.boundary("330110", "青山镇", "横溪村")
    assert town is not None and town.key == ("330110", "青山镇", "") and len(town.polygon) == 8
    assert town.polygon[0] == town.polygon[-1] == (30.392, 119.884)
    for dev in ("WL01", "RG01"):
        d = reg.get(dev)
        assert d is not None and point_in_ring(d.lat, d.lon, town.polygon)
    park = reg.boundary("330110", "白沙镇", "化工园区")
    gd = reg.get("GD01")
    assert park is not None and park.key == ("330110", "白沙镇", "化工园区") and len(park.polygon) == 5
    assert gd is not None and point_in_ring(gd.lat, gd.lon, park.polygon)
    assert reg.boundary("330110", "石门镇", "林场") is None  # no boundary: the alert keeps its circle
    assert devices_outside_boundaries(reg) == []
    # the simulated district's towns and chemical park hold their devices too
    demo = demo_registry()
    assert devices_outside_boundaries(demo) == []
    assert {b.town for b in demo.boundaries} == set(QUADRANT_TOWNS)
    assert all(demo.within_boundary(d.device_id) for d in demo.devices if d.area.town)


def test_rules_example_loads() -> None:
    rules = load_rules(EXAMPLES / "rules.yaml")
    # CMA rainstorm red: 100 mm in 3 h (GUIDE section 3)
    red = [r for r in rules.hydro.rain if r.level is WarningLevel.RED]
    assert [(r.window_h, r.mm) for r in red] == [(3, 100)]
    assert rules.hazmat.setpoints["H2S"] == {"level1": 10, "level2": 20}
    assert rules.confirm.incidents["gas_lel"].k == 2


def test_every_line_of_the_examples_is_commented() -> None:
    for name in ("registry.yaml", "rules.yaml"):
        for n, line in enumerate((EXAMPLES / name).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                assert "#" in line, f"{name}:{n} has no comment"


def _misspelt(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    lines = text.replace(old, new).splitlines()
    line = next(i for i, s in enumerate(lines, 1) if new in s)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, line


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("warning_level_m: 12.0", "warning_level: 12.0"),  # a threshold key of a hydro gauge
        ("rain_1h_blue_mm:", "rain_1h_bleu_mm:"),  # a rain threshold
        ("counts_per_m_s: 1.5e9", "count_per_m_s: 1.5e9"),  # a seismic sensitivity
        ("    interval_s: 10 ", "    interval: 10 "),  # a device field
        ("  - name: 临江区政府", "  - nmae: 临江区政府"),  # a target field
        ("village: 化工园区                     # the", "vilage: 化工园区 # the"),  # a boundary field
    ],
)
def test_misspelt_registry_key_is_named_with_its_line(tmp_path: Path, old: str, new: str) -> None:
    path, line = _misspelt(tmp_path, "registry.yaml", old, new)
    key = new.strip().split(":")[0].lstrip("- ")
    with pytest.raises(ValueError) as err:
        load_registry(path)
    msg = str(err.value)
    assert key in msg
    assert f"{path} line {line}:" in msg


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ("[30.401, 119.936]", "[30.401, 219.936]", "vertex 1 .* not a WGS 84 lat, lon"),
        ("[30.386, 119.981]", "[30.290, 119.981]", "must not intersect itself"),  # the east side folds over
        ("30.2352,120.0668 ", "30.2352 120.0668 ", "not 'lat,lon'"),
    ],
)
def test_bad_boundary_is_refused_naming_its_line(tmp_path: Path, old: str, new: str, why: str) -> None:
    path, line = _misspelt(tmp_path, "registry.yaml", old, new)
    lines = path.read_text(encoding="utf-8").splitlines()
    key_line = max(n for n in range(1, line + 1) if "polygon:" in lines[n - 1])  # the boundary's polygon key
    with pytest.raises(ValueError, match=f"(?s)line {key_line}:.*boundaries\\.[01]\\.polygon.*{why}"):
        load_registry(path)


def test_threshold_of_another_family_is_refused(tmp_path: Path) -> None:
    # a gas set-point on a water-level gauge would be ignored by the hydro detector
    path, line = _misspelt(tmp_path, "registry.yaml", "record_level_m: 14.8", "level2: 14.8")
    with pytest.raises(ValueError, match=f"(?s)line {line}:.*unknown threshold 'level2' for a hydro device"):
        load_registry(path)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("deadman_k: 3.0", "deadmen_k: 3.0"),  # top level
        ("rain_clear_ratio: 0.8", "rain_clear_ration: 0.8"),  # a section key
        ("O2: {o2_low: 19.5", "O2: {o2_lo: 19.5"),  # a gas set-point
        ("stuck_n: 30", "stuck_count: 30"),  # a fault parameter
        ("warmup_n: 200", "warmup: 200"),  # an anomaly parameter
        ("k_cameras: 2", "k_camera: 2"),  # a confirmation rule
        ("public_min_intensity: 4.5", "public_min_intensty: 4.5"),  # the earthquake public floor
    ],
)
def test_misspelt_rules_key_is_named_with_its_line(tmp_path: Path, old: str, new: str) -> None:
    path, line = _misspelt(tmp_path, "rules.yaml", old, new)
    key = new.split("{")[-1].split(":")[0].strip()
    with pytest.raises(ValueError) as err:
        load_rules(path)
    msg = str(err.value)
    assert key in msg
    assert f"{path} line {line}:" in msg


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("routes:\n  - name: x\n    channels: [sms]\n    audience: pubic\n", "audience"),
        ("routes:\n  - name: x\n    channels: [smss]\n", "channels"),
        ("routes:\n  - name: x\n    channels: [sms]\n    resident: true\n", "resident"),
    ],
)
def test_routing_refuses_unknown_values_and_keys(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError, match=key):
        load_routing(path)
