"""Anomaly detections reach the operators' channels only, unless the rules promote the channel.

Detector engine (rules with an anomaly channel) -> alert engine -> routing plan, default routing:
residents by SMS and broadcast (public), the operators' MQTT topic (agency). A non-promoted anomaly
is a blue alert with ``public`` False (never SMS or broadcast, CAP scope Restricted); a promoted one
is a public warning at the rules' level.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from tocsin.alerts.cap import CAP_NS, render_cap
from tocsin.alerts.engine import ANOMALY_EVENT, AlertConfig, AlertEngine
from tocsin.alerts.routing import DEFAULT_ROUTING, Route, Routing, plan
from tocsin.detectors.engine import DetectorEngine
from tocsin.detectors.rules import Rules
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.telemetry import GasReading, WaterLevel

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
AREA = Area(code="330110", district="临江区", town="青山镇")
REGISTRY = Registry(
    devices=[Device(device_id="WL1", family=Family.HYDRO, site="river", lat=30.0, lon=120.0, area=AREA)],
    sms_recipients={"330110": ["+8613800000001"]},
)
FAST = {"warmup_n": 20, "n_bins": 0, "week_bins": 0}


def _rules(**channel: Any) -> Rules:
    ch = {"type": "hydro.level", "field": "level_m", **channel}
    return Rules.model_validate({"anomaly": {"params": FAST, "open_score": 0.5, "channels": [ch]}})


def _detections(rules: Rules, n: int = 80, step: tuple[int, int] = (50, 55)) -> list[Detection]:
    """A gauge wobbling around 2 m, 5 m higher for samples step[0] .. step[1] - 1, then back."""
    engine = DetectorEngine(rules, registry=REGISTRY)
    st, out = None, []
    for k in range(n):
        x = 2.0 + 0.1 * ((k * 7) % 5 - 2) + (5.0 if step[0] <= k < step[1] else 0.0)
        st, dets = engine.process(
            WaterLevel(device_id="WL1", site="river", ts=T0 + timedelta(minutes=k), level_m=x), st
        )
        out += dets
    return out


def _alerts(dets: list[Detection]) -> list[Alert]:
    engine = AlertEngine(AlertConfig(), registry=REGISTRY, clock=lambda: T0 + timedelta(hours=1))
    states: dict[str, Any] = {}
    out: list[Alert] = []
    for d in dets:
        key = engine.fingerprint(d)
        states[key], alerts = engine.process(d, states.get(key))
        out += alerts
    return out


def _channels(alert: Alert, routing: Routing = DEFAULT_ROUTING) -> set[tuple[str, str]]:
    return {(d.route, d.channel) for d in plan(alert, routing, REGISTRY)}


def test_a_non_promoted_anomaly_reaches_operators_only() -> None:
    dets = _detections(_rules())
    assert [(d.kind, d.state) for d in dets] == [
        ("anomaly_level_m", DetectionState.OPEN),
        ("anomaly_level_m", DetectionState.CLEAR),
    ]
    alerts = _alerts(dets)
    assert [(a.msg_type, a.level, a.public) for a in alerts] == [
        (MsgType.ALERT, WarningLevel.BLUE, False),
        (MsgType.CANCEL, WarningLevel.BLUE, False),
    ]
    first = alerts[0]
    assert first.event == ANOMALY_EVENT and first.fingerprint == "hydro:330110:anomaly_level_m"
    assert "预警" not in first.headline and "预警" not in alerts[1].headline  # a notice, not a warning
    assert "不是灾害预警" in first.instruction
    # the evidence travels in the text: the value, the recent baseline (about 2 m) and the score
    assert "监测值6.8m" in first.description  # k = 50: 2.0 - 0.2 + 5.0
    assert "基线1.99" in first.description and "异常分数" in first.description
    for a in alerts:
        assert _channels(a) == {("operators", "mqtt")}  # never the residents' SMS or broadcast
        root = ET.fromstring(render_cap(a))
        assert root.findtext("c:scope", namespaces={"c": CAP_NS}) == "Restricted"
    # an agencies' SMS route still gets it; a public route naming the hazard does not
    routing = Routing(
        routes=[
            Route(name="duty", audience="agency", channels=["sms"], recipients=["+8613900000009"]),
            Route(
                name="town", audience="public", channels=["sms", "broadcast"], hazards=[Family.HYDRO], residents=True
            ),
        ]
    )
    assert _channels(first, routing) == {("duty", "sms")}


def test_a_promoted_anomaly_is_a_public_warning_at_the_rules_level() -> None:
    dets = _detections(_rules(promote_to="yellow"))
    assert [(d.state, d.level) for d in dets] == [
        (DetectionState.OPEN, WarningLevel.YELLOW),
        (DetectionState.CLEAR, WarningLevel.YELLOW),
    ]
    alerts = _alerts(dets)
    assert [(a.msg_type, a.level, a.public) for a in alerts] == [
        (MsgType.ALERT, WarningLevel.YELLOW, True),
        (MsgType.CANCEL, WarningLevel.YELLOW, True),
    ]
    assert "黄色预警" in alerts[0].headline and "不是灾害预警" not in alerts[0].instruction
    for a in alerts:
        assert _channels(a) == {("public", "sms"), ("public", "broadcast"), ("operators", "mqtt")}
    plan_sms = [d for d in plan(alerts[0], DEFAULT_ROUTING, REGISTRY) if d.channel == "sms"]
    assert plan_sms[0].recipients == ("+8613800000001",)


def test_sensor_faults_still_make_no_alert() -> None:
    d = Detection(
        id="GD1:sensor_fault:0:0",
        device_id="GD1",
        site="plant",
        family=Family.HAZMAT,
        kind="sensor_fault",
        state=DetectionState.OPEN,
        level=None,
        value=3.0,
        onset=T0,
        ts=T0,
        revision=0,
        area_code="330110",
    )
    assert _alerts([d]) == []


def test_a_gas_anomaly_is_its_own_incident_not_a_gas_leak() -> None:
    rules = Rules.model_validate(
        {"anomaly": {"params": FAST, "open_score": 0.5, "channels": [{"type": "hazmat.gas", "field": "value"}]}}
    )
    engine = DetectorEngine(rules)
    st, dets = None, []
    for k in range(60):
        x = 2.0 + 0.1 * ((k * 7) % 5 - 2) + (10.0 if k == 50 else 0.0)
        st, out = engine.process(
            GasReading(
                device_id="GD1", site="plant", ts=T0 + timedelta(seconds=10 * k), gas="VOC", value=x, unit="ppm"
            ),
            st,
        )
        dets += out
    alerts = _alerts(dets)
    assert alerts and {a.fingerprint for a in alerts} == {"hazmat:110105:anomaly_gas_voc"}
    assert not any(a.public for a in alerts)
