"""Routing by hazard, level and area to audiences; silences suppress delivery but keep the audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from tocsin.alerts.adapters.base import DeliveryResult, Notification, Outcome
from tocsin.alerts.notify import Notifier, NotifyMetrics
from tocsin.alerts.routing import Route, Routing, load_routing, plan
from tocsin.alerts.silences import Silence, overridden, silencing
from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.registry import Registry

T0 = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
REG = Registry(sms_recipients={"330110": ["+8613800000001", "+8613800000002"]})
ROUTING = Routing(
    routes=[
        Route(name="public", channels=["sms", "broadcast"], residents=True),
        Route(
            name="duty",
            audience="agency",
            channels=["sms"],
            recipients=["+8613900000009", "+8613800000001"],
            exercise=True,
        ),
        Route(
            name="metro",
            audience="infrastructure",
            channels=["sms"],
            hazards=[Family.SEISMIC],
            min_level=WarningLevel.YELLOW,
            recipients=["+8613700000007"],
        ),
        Route(name="other-district", channels=["sms"], areas=["330111"], recipients=["+8613600000006"]),
    ]
)


def alert(
    hazard: Family = Family.HYDRO,
    level: WarningLevel = WarningLevel.BLUE,
    status: AlertStatus = AlertStatus.ACTUAL,
    sites: list[str] | None = None,
) -> Alert:
    return Alert(
        identifier="A-1",
        fingerprint=f"{hazard.value}:330110:x",
        revision=0,
        msg_type=MsgType.ALERT,
        status=status,
        hazard=hazard,
        event="暴雨",
        level=level,
        sent=T0,
        onset=T0,
        area=AlertArea(code="330110", desc="青山镇"),
        headline="青山镇发布暴雨蓝色预警",
        description="d",
        devices=["RG01"],
        sites=sites or ["qingshan"],
    )


def recipients(a: Alert) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in plan(a, ROUTING, REG):
        out.setdefault(f"{d.route}:{d.channel}", []).extend(d.recipients)
    return out


def test_public_agency_and_infrastructure_routes() -> None:
    assert recipients(alert()) == {
        "public:sms": ["+8613800000001", "+8613800000002"],
        "public:broadcast": ["330110"],
        "duty:sms": ["+8613900000009"],  # the officer who is also a resident gets one SMS, not two
    }
    quake = recipients(alert(Family.SEISMIC, WarningLevel.ORANGE))
    assert quake["metro:sms"] == ["+8613700000007"]
    assert "metro:sms" not in recipients(alert(Family.SEISMIC, WarningLevel.BLUE))  # below its min level


def test_exercises_reach_agencies_never_the_public() -> None:
    assert recipients(alert(status=AlertStatus.EXERCISE)) == {"duty:sms": ["+8613900000009", "+8613800000001"]}


def test_routing_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("routes:\n  - name: x\n    channels: []\n", encoding="utf-8")
    with pytest.raises(ValueError, match="routing.yaml"):
        load_routing(bad)


def silence(**kw: object) -> Silence:
    base = {
        "id": "s1",
        "starts_at": T0 - timedelta(hours=1),
        "ends_at": T0 + timedelta(hours=1),
        "creator": "duty-officer-7",
        "reason": "gauge maintenance",
    }
    return Silence.model_validate(base | kw)


def test_silence_matching_and_windows() -> None:
    assert silencing(alert(), [silence(site="qingshan")], T0) is not None
    assert silencing(alert(), [silence(site="elsewhere")], T0) is None
    assert silencing(alert(), [silence(hazard=Family.FIRE)], T0) is None
    assert silencing(alert(), [silence(area="3301")], T0) is not None
    assert silencing(alert(), [silence(device="RG01")], T0 + timedelta(hours=2)) is None  # expired
    weekly = silence(
        hazard=Family.HYDRO,
        starts_at=T0 - timedelta(days=14, minutes=30),
        ends_at=T0 - timedelta(days=14) + timedelta(hours=1),
        recurrence="weekly",
    )
    assert weekly.active_at(T0) and not weekly.active_at(T0 + timedelta(hours=2))
    assert not weekly.active_at(T0 + timedelta(days=1))
    with pytest.raises(ValidationError):
        silence()  # no matcher
    with pytest.raises(ValidationError):
        silence(device="x", recurrence="daily", ends_at=T0 + timedelta(days=2))


class Recorder:
    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, n: Notification) -> DeliveryResult:
        self.sent.append(n)
        return DeliveryResult(Outcome.ACCEPTED)


def test_silence_suppresses_delivery_but_keeps_the_audit_and_the_operator_view() -> None:
    adapters = {name: Recorder(name) for name in ("sms", "mqtt", "broadcast")}
    notifier = Notifier(
        REG,
        adapters,
        NotifyMetrics(CollectorRegistry()),
        routing=ROUTING,
        silences=lambda: [silence(site="qingshan")],
        clock=lambda: T0,
    )
    records = asyncio.run(notifier.deliver(alert()))
    assert adapters["sms"].sent == [] and adapters["broadcast"].sent == []
    assert len(adapters["mqtt"].sent) == 1
    suppressed = [r for r in records if r.outcome == "suppressed"]
    assert len(suppressed) == 4  # 3 SMS + 1 broadcast, each recorded
    assert all("duty-officer-7" in r.detail and "gauge maintenance" in r.detail for r in suppressed)
    # without the silence the same alert is delivered, red before blue across alerts
    notifier.silences = list
    records = asyncio.run(notifier.deliver(alert()))
    assert sorted(r.outcome for r in records) == ["accepted"] * 5
    assert {n.recipients[0] for n in adapters["sms"].sent} == {"+8613800000001", "+8613800000002", "+8613900000009"}


def test_red_and_earthquake_warnings_are_never_silenced() -> None:
    """Safety rule (brief: a red warning or an earthquake early warning always reaches the public):
    a district-wide silence of every hazard holds back an orange flood warning but not a red one,
    and not an earthquake warning of any level; each override is counted."""
    registry = CollectorRegistry()
    adapters = {name: Recorder(name) for name in ("sms", "mqtt", "broadcast")}
    everything = [silence(id=f"all-{h.value}", area="33", hazard=h) for h in Family]
    notifier = Notifier(
        REG, adapters, NotifyMetrics(registry), routing=ROUTING, silences=lambda: everything, clock=lambda: T0
    )
    orange = asyncio.run(notifier.deliver(alert(level=WarningLevel.ORANGE)))
    assert {r.outcome for r in orange if r.channel != "mqtt"} == {"suppressed"}
    assert adapters["sms"].sent == [] and adapters["broadcast"].sent == []

    for hazard, level in ((Family.HYDRO, WarningLevel.RED), (Family.SEISMIC, WarningLevel.BLUE)):
        for a in adapters.values():
            a.sent.clear()
        records = asyncio.run(notifier.deliver(alert(hazard, level)))
        assert "suppressed" not in {r.outcome for r in records}
        # the residents of 330110 get the SMS, the town's loudspeakers the broadcast
        assert {"+8613800000001", "+8613800000002"} <= {n.recipients[0] for n in adapters["sms"].sent}
        assert [n.recipients for n in adapters["broadcast"].sent] == [["330110"]]
    assert registry.get_sample_value("tocsin_alert_silence_overrides_total", {"hazard": "hydro", "level": "red"}) == 1.0
    assert (
        registry.get_sample_value("tocsin_alert_silence_overrides_total", {"hazard": "seismic", "level": "blue"}) == 1.0
    )


@settings(max_examples=300, deadline=None)
@given(
    hazard=st.sampled_from(list(Family)),
    level=st.sampled_from(list(WarningLevel)),
    matchers=st.fixed_dictionaries(
        {},
        optional={
            "hazard": st.sampled_from(list(Family)),
            "area": st.sampled_from(["3", "33", "3301", "330110"]),
            "site": st.just("qingshan"),
            "device": st.just("RG01"),
        },
    ).filter(bool),
)
def test_silencing_never_holds_back_red_or_seismic(hazard: Family, level: WarningLevel, matchers: dict) -> None:
    a = alert(hazard, level)
    s = silence(**matchers)
    held = silencing(a, [s], T0)
    if level is WarningLevel.RED or hazard is Family.SEISMIC:
        assert held is None
        assert (overridden(a, [s], T0) is not None) == s.matches(a)
    else:
        assert (held is not None) == s.matches(a)
        assert overridden(a, [s], T0) is None
