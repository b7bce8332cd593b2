"""The contracts that moved into schemas/ keep their wire form (docs/architecture.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import tocsin.alerts.view
from tocsin.schemas.ack import Ack
from tocsin.schemas.confirm import ConfirmRules
from tocsin.schemas.detection import DetectionKind, is_gas_kind


def test_detection_kinds_are_the_wire_strings() -> None:
    # the strings detections carried before the enum existed (and that stored detections still carry)
    assert {k.value for k in DetectionKind} == {
        "rainfall",
        "water_level",
        "water_rise",
        "fire",
        "p_trigger",
        "offline",
        "sensor_fault",
    }
    assert DetectionKind("p_trigger") is DetectionKind.P_TRIGGER
    assert is_gas_kind("gas_h2s") and is_gas_kind("o2_low") and not is_gas_kind("anomaly_gas_ppm")


def test_ack_wire_form() -> None:
    raw = b'{"fingerprint":"hydro:110105:flood","identifier":"A1","by":"li","note":"","at":"2026-07-01T08:00:00+08:00"}'
    ack = Ack.model_validate_json(raw)
    assert ack.at == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert tocsin.alerts.view.Ack is Ack  # the API reads and writes the schemas model


def test_confirm_rules_defaults() -> None:
    # GUIDE section 3: three stations confirm an earthquake; two cameras locate a fire
    rules = ConfirmRules()
    assert rules.seismic.min_stations == 3.0 and rules.fire.k_cameras == 2
