"""Offline inhibition by topology: the silent devices of one field gateway (or, without a gateway,
of one site) make one operators' alert 'X offline (n/m devices)', updated as the count changes and
cancelled when the last one is back; other gateways and sites of the area get alerts of their own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.routing import DEFAULT_ROUTING, plan
from tocsin.alerts.service import AlertStage
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry

T0 = datetime(2026, 6, 1, 2, 0, 0, tzinfo=UTC)
AREA = Area(code="330110", district="余杭区", town="良渚街道")


def _device(device_id: str, site: str, gateway: str = "", family: Family = Family.HYDRO) -> Device:
    return Device(
        device_id=device_id, family=family, site=site, lat=30.3, lon=120.0, area=AREA, interval_s=300, gateway=gateway
    )


REGISTRY = Registry(
    devices=[
        _device("rg-01", "dam", gateway="gw-north"),
        _device("rg-02", "dam", gateway="gw-north"),
        _device("wl-01", "bridge", gateway="gw-north"),  # another site behind the same gateway
        _device("rg-03", "village"),  # no gateway: grouped by site
        _device("rg-04", "village"),
        _device("gs-01", "plant", gateway="gw-north", family=Family.HAZMAT),  # other family: not counted
    ],
    sms_recipients={"330110": ["+8613800000001"]},
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _offline(device: str, site: str, state: DetectionState, t: datetime) -> Detection:
    return Detection(
        id=f"{device}:offline:{int(t.timestamp() * 1000)}:0",
        device_id=device,
        site=site,
        family=Family.HYDRO,
        kind="offline",
        state=state,
        value=900.0 if state is DetectionState.OPEN else 0.0,
        unit="s",
        onset=t,
        ts=t,
        area_code="330110",
    )


def _run(engine: AlertEngine, clock: Clock, steps: list[tuple[str, str, DetectionState]]) -> list[list[Alert]]:
    """Feed the detections through the alert stage (JSON state, as in the Faust table), a minute apart."""
    from tocsin.schemas.wire import encode

    stage_store: dict[str, dict] = {}
    out = []
    stage = AlertStage(engine, _metrics())
    for device, site, state in steps:
        clock.now += timedelta(minutes=1)
        alerts = stage.handle(encode(_offline(device, site, state, clock.now)), stage_store)
        for k, v in stage_store.items():
            stage_store[k] = json.loads(json.dumps(v, allow_nan=False))
        out.append(alerts)
    return out


def _metrics():  # type: ignore[no-untyped-def]
    from prometheus_client import CollectorRegistry

    from tocsin.alerts.service import AlertMetrics

    return AlertMetrics(CollectorRegistry())


OPEN, CLEAR = DetectionState.OPEN, DetectionState.CLEAR


def test_a_gateway_going_offline_is_one_alert_updated_with_the_count_then_cancelled() -> None:
    clock = Clock()
    engine = AlertEngine(AlertConfig(), REGISTRY, clock=clock)
    per = _run(
        engine,
        clock,
        [
            ("rg-01", "dam", OPEN),
            ("rg-02", "dam", OPEN),
            ("wl-01", "bridge", OPEN),
            ("rg-02", "dam", CLEAR),
            ("rg-01", "dam", CLEAR),
            ("wl-01", "bridge", CLEAR),
        ],
    )
    kinds = [[a.msg_type for a in alerts] for alerts in per]
    assert kinds == [
        [MsgType.ALERT],
        [MsgType.UPDATE],
        [MsgType.UPDATE],
        [MsgType.UPDATE],
        [MsgType.UPDATE],
        [MsgType.CANCEL],
    ]
    alerts = [a for alerts in per for a in alerts]
    assert {a.fingerprint for a in alerts} == {"hydro:330110:gateway-gw-north:offline"}
    # 3 hydro devices hang off gw-north in this area (the gas detector is another family's alert)
    assert [a.headline for a in alerts[:5]] == [
        "余杭区网关gw-north监测设备离线（1/3台）",
        "余杭区网关gw-north监测设备离线（2/3台）",
        "余杭区网关gw-north监测设备离线（3/3台）",
        "余杭区网关gw-north监测设备离线（2/3台）",
        "余杭区网关gw-north监测设备离线（1/3台）",
    ]
    assert "rg-01、rg-02、wl-01" in alerts[2].description
    assert all(a.level is WarningLevel.BLUE and a.event == "监测设备离线" for a in alerts)
    # one reference chain, identifiers unique and naming the gateway
    # the original Alert and the message each replaces (CAP 1.2 references; the chain is bounded)
    ids = [a.identifier for a in alerts]
    assert [a.references for a in alerts] == [ids[:i] if i <= 2 else [ids[0], ids[i - 1]] for i in range(len(ids))]
    assert len({a.identifier for a in alerts}) == 6 and alerts[0].fingerprint.endswith(":gateway-gw-north:offline")
    assert alerts[-1].headline.endswith("解除")
    # operators only, never the public
    assert [d.channel for d in plan(alerts[0], DEFAULT_ROUTING, REGISTRY)] == ["mqtt"]


def test_devices_without_a_gateway_group_by_site_apart_from_the_gateway() -> None:
    clock = Clock()
    engine = AlertEngine(AlertConfig(), REGISTRY, clock=clock)
    per = _run(
        engine,
        clock,
        [("rg-03", "village", OPEN), ("rg-01", "dam", OPEN), ("rg-04", "village", OPEN), ("rg-03", "village", CLEAR)],
    )
    flat = [a for alerts in per for a in alerts]
    assert [(a.msg_type, a.fingerprint) for a in flat] == [
        (MsgType.ALERT, "hydro:330110:site-village:offline"),
        (MsgType.ALERT, "hydro:330110:gateway-gw-north:offline"),
        (MsgType.UPDATE, "hydro:330110:site-village:offline"),
        (MsgType.UPDATE, "hydro:330110:site-village:offline"),
    ]
    assert flat[0].headline.endswith("站点village监测设备离线（1/2台）")
    assert flat[2].headline.endswith("（2/2台）") and flat[3].headline.endswith("（1/2台）")
    assert flat[0].identifier != flat[1].identifier


def test_unregistered_devices_group_by_site_with_an_unknown_total() -> None:
    clock = Clock()
    engine = AlertEngine(AlertConfig(), None, clock=clock)
    per = _run(
        engine, clock, [("x-1", "hill", OPEN), ("x-2", "hill", OPEN), ("x-1", "hill", CLEAR), ("x-2", "hill", CLEAR)]
    )
    flat = [a for alerts in per for a in alerts]
    assert [a.msg_type for a in flat] == [MsgType.ALERT, MsgType.UPDATE, MsgType.UPDATE, MsgType.CANCEL]
    assert flat[0].fingerprint == "hydro:330110:site-hill:offline"
    assert flat[0].headline.endswith("站点hill监测设备离线（1台）") and flat[1].headline.endswith("（2台）")


def test_the_same_device_reported_twice_does_not_update() -> None:
    clock = Clock()
    engine = AlertEngine(AlertConfig(), REGISTRY, clock=clock)
    per = _run(engine, clock, [("rg-01", "dam", OPEN), ("rg-01", "dam", OPEN)])
    assert [[a.msg_type for a in alerts] for alerts in per] == [[MsgType.ALERT], []]


def test_the_tick_key_of_a_gateway_alert_is_its_detections_partition_key() -> None:
    assert AlertStage.tick_key("hydro:330110:offline.gateway-gw-north") == b"hydro:330110"


def test_registry_files_without_gateway_still_load_and_bad_gateways_are_refused() -> None:
    raw = {
        "device_id": "rg-09",
        "family": "hydro",
        "site": "dam",
        "lat": 30.0,
        "lon": 120.0,
        "area": {"code": "330110"},
    }
    assert Device.model_validate_json(json.dumps(raw)).gateway == ""
    assert Device.model_validate_json(json.dumps({**raw, "gateway": "gw:7"})).gateway == "gw:7"
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Device.model_validate_json(json.dumps({**raw, "gateway": "bad gateway"}))
