"""Anomaly channels configured in the rules file (``anomaly.channels``): what is scored, what is not,
which rule wins, the per-device cap, and promotion (a level) on or off."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.rules import Rules, load_rules, numeric_fields
from tocsin.detectors.service import DetectorMetrics, DetectorStage
from tocsin.schemas.common import WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, Telemetry, WaterLevel
from tocsin.schemas.wire import encode

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
FAST = {"warmup_n": 20, "n_bins": 0, "week_bins": 0}  # learn quickly, no daily/weekly profiles


def _rules(*channels: dict[str, Any], **limits: Any) -> Rules:
    return Rules.model_validate(
        {"anomaly": {"params": FAST, "open_score": 0.5, "channels": list(channels)}, "limits": limits}
    )


def _wobble(k: int) -> float:
    return 0.1 * ((k * 7) % 5 - 2)  # -0.2 .. 0.2, bounded and repeating


def _levels(device: str, n: int, step_at: int | None = None) -> list[Telemetry]:
    return [
        WaterLevel(
            device_id=device,
            site="river",
            ts=T0 + timedelta(minutes=k),
            level_m=2.0 + _wobble(k) + (5.0 if step_at is not None and k >= step_at else 0.0),
        )
        for k in range(n)
    ]


def _gas(device: str, gas: str, k: int, value: float) -> GasReading:
    return GasReading(
        device_id=device, site="plant", ts=T0 + timedelta(seconds=10 * k), gas=gas, value=value, unit="ppm"
    )


def _run(engine: DetectorEngine, readings: list[Telemetry]) -> tuple[dict[str, Any], list[Detection]]:
    states: dict[str, Any] = {}
    out: list[Detection] = []
    for r in readings:
        states[r.device_id], dets = engine.process(r, states.get(r.device_id))
        out += dets
    return states, out


def test_a_configured_channel_is_scored_and_an_unconfigured_one_is_not() -> None:
    engine = DetectorEngine(_rules({"type": "hydro.level", "field": "level_m"}))
    states, dets = _run(engine, _levels("WL1", 60, step_at=50))
    opened = [d for d in dets if d.kind == "anomaly_level_m" and d.state is DetectionState.OPEN]
    assert [d.value for d in opened] == [7.0 + _wobble(50)]  # the step, once (the wobble opens nothing)
    d = opened[0]
    assert d.level is None  # not promoted: no warning level
    ev = d.evidence
    assert ev["score"] >= 0.5 and ev["field"] == "level_m" and ev["promoted"] is False
    assert 1.8 <= ev["baseline"] <= 2.2  # the recent baseline the step was judged against
    assert 0 < ev["baseline_sd"] < 0.3
    assert ev["samples"] == 51
    # the same readings without a channel: no anomaly state, no anomaly detection
    states, dets = _run(DetectorEngine(_rules()), _levels("WL1", 60, step_at=50))
    assert not [d for d in dets if d.kind.startswith("anomaly")]
    assert not [k for k in states["WL1"]["k"] if k.startswith("anomaly:")]
    # a channel of another type does not score water levels either
    states, dets = _run(DetectorEngine(_rules({"type": "hydro.rain", "field": "rain_mm"})), _levels("WL1", 60, 50))
    assert not [k for k in states["WL1"]["k"] if k.startswith("anomaly:")]


def test_any_numeric_field_of_any_family_can_be_a_channel() -> None:
    assert numeric_fields("hydro.level") == ("level_m",)
    assert set(numeric_fields("hydro.rain")) == {"rain_mm", "interval_s"}
    assert numeric_fields("hazmat.gas") == ("value",)
    assert {"confidence", "bearing_deg", "elevation_deg", "sweep"} <= set(numeric_fields("fire.detection"))
    engine = DetectorEngine(
        _rules({"type": "fire.detection", "field": "confidence"}, {"type": "hydro.rain", "field": "rain_mm"})
    )
    fire = FireDetection(device_id="CAM1", site="tower", ts=T0, kind="smoke", confidence=0.7, bearing_deg=10.0)
    rain = RainIncrement(device_id="RG1", site="hill", ts=T0, rain_mm=0.5, interval_s=300.0)
    assert "anomaly:confidence" in engine.process(fire, None)[0]["k"]
    assert "anomaly:rain_mm" in engine.process(rain, None)[0]["k"]
    # an optional field the reading leaves out is not scored (and not an error)
    engine = DetectorEngine(_rules({"type": "fire.detection", "field": "elevation_deg"}))
    assert "anomaly:elevation_deg" not in engine.process(fire, None)[0]["k"]


def test_gas_value_is_scored_per_gas_and_a_named_gas_only_for_that_gas() -> None:
    every = DetectorEngine(_rules({"type": "hazmat.gas", "field": "value"}))
    st = None
    for k, gas in enumerate(["VOC", "C6H6", "voc"]):  # gas names are case-blind, as the gas cap counts them
        st, _ = every.process(_gas("GD1", gas, k, 1.0), st)
    assert st is not None and {k for k in st["k"] if k.startswith("anomaly:")} == {
        "anomaly:gas_VOC",
        "anomaly:gas_C6H6",
    }
    assert st["k"]["anomaly:gas_VOC"]["n"] == 2
    one = DetectorEngine(_rules({"type": "hazmat.gas", "field": "value", "gas": "voc"}))
    st = None
    for k, gas in enumerate(["VOC", "C6H6"]):
        st, _ = one.process(_gas("GD1", gas, k, 1.0), st)
    assert st is not None and {k for k in st["k"] if k.startswith("anomaly:")} == {"anomaly:gas_VOC"}


def test_per_device_rule_wins_over_per_type_and_other_devices_keep_the_type_rule() -> None:
    engine = DetectorEngine(
        _rules(
            {"type": "hydro.level", "field": "level_m"},
            {"type": "hydro.level", "field": "level_m", "devices": ["WL2"], "params": {"warmup_n": 1000}},
            {"type": "hydro.level", "field": "level_m", "devices": ["WL3"], "promote_to": "orange"},
        )
    )
    readings = [r for pair in zip(_levels("WL1", 60, 50), _levels("WL3", 60, 50), strict=True) for r in pair]
    _, dets = _run(engine, readings)
    opened = {d.device_id: d.level for d in dets if d.state is DetectionState.OPEN}
    assert opened == {"WL1": None, "WL3": WarningLevel.ORANGE}
    # WL2's own rule keeps it warming up for 1,000 samples: the step the type's rule would catch is not
    states, dets = _run(engine, _levels("WL2", 60, 50))
    assert dets == [] and states["WL2"]["k"]["anomaly:level_m"]["n"] == 60


def test_promotion_off_by_default_and_on_gives_the_level_from_the_rules() -> None:
    _, dets = _run(DetectorEngine(_rules({"type": "hydro.level", "field": "level_m"})), _levels("WL1", 60, 50))
    assert {d.level for d in dets} == {None}
    _, dets = _run(
        DetectorEngine(_rules({"type": "hydro.level", "field": "level_m", "promote_to": "orange"})),
        _levels("WL1", 60, 50),
    )
    opened = [d for d in dets if d.state is DetectionState.OPEN]
    assert [d.level for d in opened] == [WarningLevel.ORANGE] and opened[0].evidence["promoted"] is True


def test_anomaly_channels_per_device_are_capped_and_counted_in_the_metric() -> None:
    rules = _rules({"type": "hazmat.gas", "field": "value"}, max_anomaly_channels=2)
    stage = DetectorStage(DetectorEngine(rules), metrics := DetectorMetrics(CollectorRegistry()))
    table: dict[str, Any] = {}
    for k, gas in enumerate(["G1", "G2", "G3", "G4", "G1"]):
        stage.handle(encode(_gas("GD1", gas, k, 1.0)), table)
        table = json.loads(json.dumps(table))
    k = table["GD1"]["k"] if "GD1" in table else next(iter(table.values()))["k"]
    assert sorted(key for key in k if key.startswith("anomaly:")) == ["anomaly:gas_G1", "anomaly:gas_G2"]
    assert k["anomaly:gas_G1"]["n"] == 2  # a held channel keeps being scored
    assert metrics.capped.labels("anomaly_channel_refused")._value.get() == 2.0  # G3 and G4


def test_a_channel_removed_from_the_rules_forgets_its_state_and_clears_its_detection() -> None:
    configured = DetectorEngine(_rules({"type": "hydro.level", "field": "level_m"}))
    states, dets = _run(configured, _levels("WL1", 52, step_at=50))
    assert "anomaly_level_m" in states["WL1"]["open"]
    st, dets = DetectorEngine(_rules()).process(_levels("WL1", 53, step_at=50)[-1], states["WL1"])
    assert [(d.kind, d.state) for d in dets] == [("anomaly_level_m", DetectionState.CLEAR)]
    assert not [k for k in st["k"] if k.startswith("anomaly:")] and st["open"] == {}


def test_changed_scorer_shape_starts_the_channel_afresh() -> None:
    states, _ = _run(DetectorEngine(_rules({"type": "hydro.level", "field": "level_m"})), _levels("WL1", 30))
    other = Rules.model_validate(
        {"anomaly": {"params": {"short_n": 4}, "channels": [{"type": "hydro.level", "field": "level_m"}]}}
    )
    st, _ = DetectorEngine(other).process(_levels("WL1", 31)[-1], states["WL1"])
    assert st["k"]["anomaly:level_m"]["n"] == 1 and len(st["k"]["anomaly:level_m"]["buf"]) == 4


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"type": "hydro.level", "field": "rain_mm"}, "no numeric field 'rain_mm'"),
        ({"type": "hazmat.gas", "field": "gas"}, "no numeric field 'gas'"),
        ({"type": "hazmat.gas", "field": "seq"}, "no numeric field 'seq'"),
        ({"type": "hydro.level", "field": "level_m", "gas": "CO"}, "gas is only for hazmat.gas"),
        ({"type": "hydro.level", "field": "level_m", "params": {"warmup": 3}}, "unknown anomaly parameter 'warmup'"),
        ({"type": "hydro.level", "field": "level_m", "open_score": 0.4}, "must not exceed open_score"),
        ({"type": "hydro.level", "field": "level_m", "promote_to": "purple"}, "promote_to"),
        ({"type": "hydro.level", "field": "level_m", "devices": []}, "devices"),
        ({"type": "hydro.flow", "field": "flow"}, "type"),
        ({"type": "hydro.level", "field": "level_m", "extra": 1}, "extra"),
    ],
)
def test_channels_are_loaded_strictly(channel: dict[str, Any], message: str, tmp_path: Any) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"anomaly": {"channels": [channel]}}), encoding="utf-8")
    with pytest.raises((ValidationError, ValueError), match=message):
        load_rules(path)


def test_the_documented_example_loads(tmp_path: Any) -> None:
    text = (Path(__file__).parents[2] / "docs" / "anomaly.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "rules.yaml"
    path.write_text(block, encoding="utf-8")
    rules = load_rules(path)
    tank = [ch for ch in rules.anomaly.channels if ch.devices]
    assert [(ch.gas, ch.promote_to) for ch in tank] == [("VOC", WarningLevel.YELLOW)]
    engine = DetectorEngine(rules)
    st, _ = engine.process(_gas("GD-tank-01", "VOC", 0, 1.0), None)
    st, _ = engine.process(_gas("GD-tank-01", "CO", 1, 1.0), st)
    assert [k for k in st["k"] if k.startswith("anomaly:")] == ["anomaly:gas_VOC"]


def test_the_rules_reference_example_loads(tmp_path: Any) -> None:
    text = (Path(__file__).parents[2] / "docs" / "detection-rules.md").read_text(encoding="utf-8")
    (block,) = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:] if "anomaly:" in b.split("```", 1)[0]]
    path = tmp_path / "rules.yaml"
    path.write_text("\n".join(line.removeprefix("  ") for line in block.splitlines()), encoding="utf-8")
    channels = load_rules(path).anomaly.channels
    assert [(c.type, c.field, c.promote_to) for c in channels] == [
        ("hydro.level", "level_m", None),
        ("hazmat.gas", "value", WarningLevel.YELLOW),
    ]
