"""Registry and rules text that reaches the public: plain characters, lengths the headline can hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.detectors.rules import load_rules
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import PLACE_NAME_MAX_CHARS, Area, Device, Registry, load_registry

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["青山\x00镇", "\x1b[31m青山镇", "青山\u202e镇", "青山\u200b镇", "青山\u2028镇"])
def test_registry_name_with_control_or_bidi_character_is_refused_naming_the_field(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "registry.json"
    path.write_text(
        '{"devices": [{"device_id": "RG01", "family": "hydro", "site": "s1", "lat": 30, "lon": 120,'
        ' "area": {"code": "330110", "town": ' + json.dumps(bad) + "}}]}",
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as err:
        load_registry(path)
    assert "devices.0.area.town" in str(err.value) and "U+" in str(err.value)


def test_rules_source_with_escape_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text('hydro:\n  rain:\n    - {window_h: 1, level: blue, mm: 35, source: "a\\e[0m"}\n', encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_rules(path)
    assert "hydro.rain.0.source" in str(err.value)


def test_over_long_town_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="town"):
        Area(code="330110", town="镇" * (PLACE_NAME_MAX_CHARS + 1))


def _longest_registry() -> tuple[Registry, Device]:
    name = "镇" * PLACE_NAME_MAX_CHARS
    dev = Device(
        device_id="R" * 64,
        family=Family.HYDRO,
        site="S" * 64,
        gateway="G" * 64,
        lat=30.0,
        lon=120.0,
        area=Area(code="330110", district=name, town=name, village=name),
    )
    return Registry(devices=[dev]), dev


@pytest.mark.parametrize(
    ("kind", "state", "level"),
    [("water_level", DetectionState.OPEN, WarningLevel.RED), ("offline", DetectionState.OPEN, None)],
)
def test_longest_allowed_names_still_build_a_valid_alert(
    kind: str, state: DetectionState, level: WarningLevel | None
) -> None:
    # headlines are capped at 200 characters (tocsin.schemas.alert.Alert): the longest names must fit
    registry, dev = _longest_registry()
    engine = AlertEngine(AlertConfig(), registry=registry, clock=lambda: T0)
    d = Detection(
        id="d-1",
        device_id=dev.device_id,
        site=dev.site,
        family=Family.HYDRO,
        kind=kind,
        state=state,
        level=level,
        ts=T0,
        onset=T0,
        value=1.0,
        area_code="330110",
        town=dev.area.town,
        village=dev.area.village,
    )
    _state, alerts = engine.process(d, None)
    assert alerts, "an alert is issued"
    for a in alerts:
        assert PLACE_NAME_MAX_CHARS * 2 <= len(a.headline) <= 200


@pytest.mark.parametrize("body", ["seismic: {freqmin_hz: 5.0}", "seismic: {freqmin_hz: 2, freqmax_hz: 2}"])
def test_rules_band_that_some_accepted_packet_cannot_take_is_refused(tmp_path: Path, body: str) -> None:
    # the slowest accepted packet is 10 Hz (tocsin.schemas.seismic_band): Nyquist 5 Hz must lie above freqmin_hz
    path = tmp_path / "rules.yaml"
    path.write_text(body + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="freq"):
        load_rules(path)
