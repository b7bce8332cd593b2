"""Unit tests for alerts/engine.py: AlertEngine.process turns detections into the CAP lifecycle
(Alert, Update, Cancel) per fingerprint, with seismic network coincidence."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from tocsin.alerts.engine import AlertConfig, AlertEngine, fingerprint_of, incident_group, seismic_level
from tocsin.alerts.kernels.quake import predicted_intensity
from tocsin.schemas.alert import Alert, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.wire import decode, encode

ONSET = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)  # 20:00:00 in Beijing
NOW = datetime(2024, 7, 1, 12, 5, 0, tzinfo=UTC)

OPEN, UPDATE, CLEAR = DetectionState.OPEN, DetectionState.UPDATE, DetectionState.CLEAR
BLUE, YELLOW, ORANGE, RED = WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE, WarningLevel.RED


def _clock() -> datetime:
    return NOW


def _det(
    state: DetectionState,
    level: WarningLevel | None,
    *,
    device: str = "rg-01",
    kind: str = "rainfall",
    family: Family = Family.HYDRO,
    rev: int = 0,
    onset: datetime = ONSET,
    value: float = 40.0,
    area_code: str | None = "110105",
    evidence: dict | None = None,
    **kw,
) -> Detection:
    fields = dict(
        id=f"{device}:{kind}:{int(onset.timestamp() * 1000)}:{rev}",
        device_id=device,
        site="s1",
        family=family,
        kind=kind,
        state=state,
        level=level,
        value=value,
        threshold=35.0,
        unit="mm",
        window_s=3600.0,
        onset=onset,
        ts=onset + timedelta(minutes=5 * rev),
        revision=rev,
        area_code=area_code,
        town="东坝",
        village="单店",
        lat=39.95,
        lon=116.55,
        evidence=evidence or {},
        correlation_id="corr-1",
    )
    fields.update(kw)
    return Detection(**fields)


def _feed(engine: AlertEngine, dets: list[Detection], state: dict | None = None) -> tuple[dict, list[list[Alert]]]:
    out = []
    for d in dets:
        state, alerts = engine.process(d, state)
        json.dumps(state, allow_nan=False)  # the Faust table stores it as JSON
        out.append(alerts)
    assert state is not None
    return state, out


def test_escalation_lifecycle_alert_update_update_cancel() -> None:
    engine = AlertEngine(clock=_clock)
    dets = [
        _det(OPEN, YELLOW, value=36.0),
        _det(UPDATE, ORANGE, rev=1, value=52.0),
        _det(UPDATE, RED, rev=2, value=101.0),
        _det(CLEAR, RED, rev=3, value=20.0),
    ]
    _, per = _feed(engine, dets)
    assert [len(a) for a in per] == [1, 1, 1, 1]
    alerts = [a[0] for a in per]
    assert [a.msg_type for a in alerts] == [MsgType.ALERT, MsgType.UPDATE, MsgType.UPDATE, MsgType.CANCEL]
    assert [a.level for a in alerts] == [YELLOW, ORANGE, RED, RED]
    assert [a.revision for a in alerts] == [0, 1, 2, 3]
    ids = [a.identifier for a in alerts]
    assert len(set(ids)) == 4
    # CAP 1.2 references: the original Alert and the message this one replaces (a bounded chain)
    assert [a.references for a in alerts] == [[], [ids[0]], [ids[0], ids[1]], [ids[0], ids[2]]]
    assert {a.fingerprint for a in alerts} == {"hydro:110105:rainstorm"}
    # GB/T 35965.1-2018 Appendix A: unit code (default 110105 000 000 00), the Beijing time the message
    # was entered (the clock: 12:05:00Z = 20:05:00 Beijing; not the onset 20:00:00), sequence digit:
    # the fixed test clock enters all four in the same second, so the digits count 0..3.
    assert ids == [f"11010500000000_20240701200500_{n}" for n in range(4)]
    assert all(len(i) == 31 for i in ids)
    for a, d in zip(alerts, dets, strict=True):
        assert a.sent == NOW
        assert a.sent.utcoffset() == timedelta(hours=8)
        assert a.onset == ONSET and a.onset.utcoffset() == timedelta(hours=8)
        assert a.status is AlertStatus.ACTUAL
        assert (a.hazard, a.event) == (Family.HYDRO, "暴雨")
        assert a.detections == [d.id]
        assert a.devices == ["rg-01"]
        assert a.value == d.value and a.unit == "mm"
        assert a.correlation_id == "corr-1"
        assert a.severity == a.level.cap_severity
        assert (a.area.code, a.area.desc, a.area.circle) == ("110105", "东坝单店", (39.95, 116.55, 5.0))


def test_message_texts() -> None:
    engine = AlertEngine(clock=_clock)
    _, per = _feed(
        engine,
        [
            _det(OPEN, YELLOW, value=35.5),
            _det(UPDATE, ORANGE, rev=1),
            _det(UPDATE, YELLOW, rev=2),
            _det(CLEAR, YELLOW, rev=3),
        ],
    )
    first, up, down, cancel = (a[0] for a in per)
    assert first.headline == "东坝单店发布暴雨黄色预警"
    assert first.description == "东坝单店监测站rg-011小时监测值35.5mm（阈值35mm），达到暴雨黄色预警（III级）标准。"
    assert first.instruction.startswith("请远离河道")
    assert up.headline == "东坝单店升级为暴雨橙色预警"
    assert down.headline == "东坝单店调整为暴雨黄色预警"
    assert cancel.headline == "东坝单店暴雨黄色预警解除"
    assert cancel.description == "东坝单店暴雨黄色预警（III级）解除，监测值已回落至阈值以下。"
    assert cancel.instruction == ""


def test_sent_is_beijing_time_on_the_wire() -> None:
    engine = AlertEngine(clock=_clock)
    _, per = _feed(engine, [_det(OPEN, YELLOW)])
    alert = per[0][0]
    wire = json.loads(encode(alert))
    assert wire["sent"] == "2024-07-01T20:05:00+08:00"
    assert wire["onset"] == "2024-07-01T20:00:00+08:00"
    assert wire["severity"] == "Moderate"
    assert decode(Alert, encode(alert)) == alert


def test_no_message_while_the_level_is_unchanged() -> None:
    engine = AlertEngine(clock=_clock)
    _, per = _feed(engine, [_det(OPEN, YELLOW), _det(UPDATE, YELLOW, rev=1, value=45.0)])
    assert [len(a) for a in per] == [1, 0]


def test_clear_without_an_open_alert_is_silent() -> None:
    engine = AlertEngine(clock=_clock)
    _, per = _feed(engine, [_det(CLEAR, YELLOW, rev=1)])
    assert per == [[]]


def test_two_devices_level_is_max_and_cancel_waits_for_both() -> None:
    engine = AlertEngine(clock=_clock)
    dets = [
        _det(OPEN, YELLOW, device="rg-01"),
        _det(OPEN, ORANGE, device="rg-02"),
        _det(CLEAR, YELLOW, device="rg-01", rev=1),  # orange still open at rg-02: no change
        _det(UPDATE, RED, device="rg-02", rev=1),
        _det(CLEAR, RED, device="rg-02", rev=2),
    ]
    _, per = _feed(engine, dets)
    got = [[(a.msg_type, a.level) for a in alerts] for alerts in per]
    assert got == [
        [(MsgType.ALERT, YELLOW)],
        [(MsgType.UPDATE, ORANGE)],
        [],
        [(MsgType.UPDATE, RED)],
        [(MsgType.CANCEL, RED)],
    ]
    assert per[1][0].devices == ["rg-01", "rg-02"]
    assert per[3][0].devices == ["rg-02"]
    alerts = [a for alerts in per for a in alerts]
    assert [a.revision for a in alerts] == [0, 1, 2, 3]
    assert alerts[-1].references == [alerts[0].identifier, alerts[-2].identifier]  # the original, the replaced


def test_two_devices_higher_clears_first_steps_down_then_cancels() -> None:
    engine = AlertEngine(clock=_clock)
    dets = [
        _det(OPEN, YELLOW, device="rg-01"),
        _det(OPEN, ORANGE, device="rg-02"),
        _det(CLEAR, ORANGE, device="rg-02", rev=1),
        _det(UPDATE, YELLOW, device="rg-01", rev=1, value=38.0),
        _det(CLEAR, YELLOW, device="rg-01", rev=2),
    ]
    _, per = _feed(engine, dets)
    got = [[(a.msg_type, a.level) for a in alerts] for alerts in per]
    assert got == [
        [(MsgType.ALERT, YELLOW)],
        [(MsgType.UPDATE, ORANGE)],
        [(MsgType.UPDATE, YELLOW)],
        [],
        [(MsgType.CANCEL, YELLOW)],
    ]


def test_a_new_incident_after_cancel_starts_a_new_reference_chain() -> None:
    engine = AlertEngine(clock=_clock)
    later = ONSET + timedelta(hours=2)
    _, per = _feed(
        engine,
        [
            _det(OPEN, YELLOW),
            _det(CLEAR, YELLOW, rev=1),
            _det(OPEN, BLUE, onset=later),
        ],
    )
    first, cancel, again = (a[0] for a in per)
    assert again.msg_type is MsgType.ALERT
    assert again.references == []
    assert again.onset == later
    assert again.identifier not in (first.identifier, cancel.identifier)
    assert again.fingerprint == first.fingerprint
    assert again.revision > cancel.revision  # (fingerprint, revision) stays unique for delivery dedup


def test_status_exercise_propagates() -> None:
    engine = AlertEngine(AlertConfig(status=AlertStatus.EXERCISE, sender="33011041600000"), clock=_clock)
    _, per = _feed(engine, [_det(OPEN, YELLOW), _det(UPDATE, RED, rev=1), _det(CLEAR, RED, rev=2)])
    alerts = [a[0] for a in per]
    assert {a.status for a in alerts} == {AlertStatus.EXERCISE}
    assert {a.sender for a in alerts} == {"33011041600000"}
    assert alerts[0].identifier == "33011041600000_20240701200500_0"


def test_fingerprints_and_groups() -> None:
    assert incident_group("rainfall") == "rainstorm"
    assert incident_group("water_level") == "flood"
    assert incident_group("fire") == "forest_fire"
    assert incident_group("p_trigger") == "earthquake"
    assert incident_group("gas_h2s") == "gas_leak"
    assert incident_group("o2_low") == "gas_leak"
    assert incident_group("landslide") == "landslide"
    gas = _det(OPEN, YELLOW, kind="gas_h2s", family=Family.HAZMAT, area_code=None)
    assert fingerprint_of(gas, "320102") == "hazmat:320102:gas_leak"
    engine = AlertEngine(AlertConfig(default_area_code="320102"), clock=_clock)
    _, per = _feed(engine, [gas])
    alert = per[0][0]
    assert alert.fingerprint == "hazmat:320102:gas_leak"
    assert alert.area.code == "320102"
    assert alert.event == "危险化学品泄漏"
    assert alert.identifier.startswith("11010500000000_")  # the issuing unit's code, not the area's


def test_area_description_falls_back_to_registry_then_code() -> None:
    device = Device(
        device_id="rg-01",
        family=Family.HYDRO,
        site="s1",
        lat=39.9,
        lon=116.4,
        area=Area(code="110105", district="朝阳区"),
    )
    plain = _det(OPEN, YELLOW, town="", village="", lat=None, lon=None)
    _, per = _feed(AlertEngine(registry=Registry(devices=[device]), clock=_clock), [plain])
    assert per[0][0].area.desc == "朝阳区"
    assert per[0][0].area.circle is None
    assert per[0][0].headline == "朝阳区发布暴雨黄色预警"
    _, per = _feed(AlertEngine(clock=_clock), [plain])
    assert per[0][0].area.desc == "110105"


def test_process_does_not_modify_the_given_state() -> None:
    engine = AlertEngine(clock=_clock)
    state, _ = engine.process(_det(OPEN, YELLOW), None)
    snapshot = json.loads(json.dumps(state))
    engine.process(_det(OPEN, ORANGE, device="rg-02"), state)
    engine.process(_det(CLEAR, YELLOW, rev=1), state)
    assert state == snapshot


# ---------------------------------------------------------------------------------------------
# Seismic network coincidence
# ---------------------------------------------------------------------------------------------


# Stations on an east-west line, x km east of the first: a P wave at 6 km/s reaches st-02 4 s and
# st-03 12 s after st-01, so the test's trigger times are physically consistent.
_STATION_X_KM = {"st-01": 0.0, "st-02": 24.0, "st-03": 72.0, "st-04": 90.0}


def _trig(
    station: str,
    t: float,
    state: DetectionState = OPEN,
    intensity: float | None = None,
    rev: int = 0,
    located: bool = True,
):
    x_km = _STATION_X_KM[station]
    return _det(
        state,
        None,
        device=station,
        kind="p_trigger",
        family=Family.SEISMIC,
        onset=ONSET + timedelta(seconds=t),
        rev=rev,
        value=5.0,
        unit="",
        threshold=None,
        window_s=None,
        evidence={} if intensity is None else {"intensity": intensity},
        lat=39.95 if located else None,
        lon=116.55 + x_km / (111.32 * math.cos(math.radians(39.95))) if located else None,
    )


# GB/T 17742-2020 (中国地震烈度表): the intensity degree is the instrumental intensity I rounded to
# the nearest integer, so degree VI is 5.5 <= I < 6.5, VII 6.5 <= I < 7.5, VIII 7.5 <= I < 8.5. The
# warning colours follow the degree: below VI blue, VI yellow, VII orange, VIII and above red.
@pytest.mark.parametrize(
    ("intensity", "level"),
    [
        (0.0, BLUE),
        (5.49, BLUE),  # rounds to V
        (5.5, YELLOW),  # rounds to VI
        (6.0, YELLOW),
        (6.49, YELLOW),  # still VI
        (6.5, ORANGE),  # rounds to VII
        (7.0, ORANGE),
        (7.49, ORANGE),  # still VII
        (7.5, RED),  # rounds to VIII
        (8.0, RED),
        (12.0, RED),
    ],
)
def test_seismic_level_follows_the_rounded_degree(intensity: float, level: WarningLevel) -> None:
    assert seismic_level(intensity) is level


# Predicted intensity from Yu Yanxiang et al. (2013), eastern China long axis,
# I = 5.7123 + 1.3626 M - 4.2903 lg(R + 25), R hypocentral km (alerts/kernels/quake.py PgvModel).
# M5.5 at R = 10 km: 5.7123 + 7.4943 - 4.2903 * lg 35 (1.5441) = 13.2066 - 6.6246 = 6.58 -> 6.6, VII.
# M6.5 at R = 10 km: 5.7123 + 8.8569 - 6.6246 = 7.9446 -> 7.9, VIII.
@pytest.mark.parametrize(
    ("magnitude", "intensity", "level"),
    [(5.5, 6.6, ORANGE), (6.5, 7.9, RED)],
)
def test_predicted_epicentral_shaking_gets_the_colour_of_its_degree(
    magnitude: float, intensity: float, level: WarningLevel
) -> None:
    assert predicted_intensity(magnitude, 10.0) == intensity
    assert seismic_level(predicted_intensity(magnitude, 10.0)) is level


def test_three_stations_within_the_window_give_one_alert() -> None:
    engine = AlertEngine(clock=_clock)
    state, per = _feed(engine, [_trig("st-01", 0.0), _trig("st-02", 4.0)])
    assert per == [[], []]  # two stations are not enough
    state, per = _feed(engine, [_trig("st-03", 12.0)], state)
    [alert] = per[0]
    assert (alert.msg_type, alert.hazard, alert.event, alert.level) == (
        MsgType.ALERT,
        Family.SEISMIC,
        "地震",
        BLUE,
    )
    # onset is the located origin time: before the first trigger, by at most the P travel time
    assert ONSET - timedelta(seconds=20) <= alert.onset <= ONSET
    assert alert.area.circle is not None and "震中约北纬" in alert.description
    assert alert.fingerprint == "seismic:110105:earthquake"
    assert alert.unit == "度" and alert.value == 0.0
    assert alert.identifier == f"11010500000000_{alert.sent:%Y%m%d%H%M%S}_0"
    assert alert.devices == ["st-01", "st-02", "st-03"]
    # a fourth station at the same level adds nothing
    state, per = _feed(engine, [_trig("st-04", 15.0)], state)
    assert per == [[]]
    # a higher intensity estimate escalates
    state, per = _feed(engine, [_trig("st-02", 4.0, UPDATE, intensity=7.2, rev=1)], state)
    [update] = per[0]
    assert (update.msg_type, update.level, update.value, update.revision) == (MsgType.UPDATE, ORANGE, 7.2, 1)
    assert update.references == [alert.identifier]
    # cancel only when every station has cleared
    clears = [_trig(s, t, CLEAR, rev=2) for s, t in (("st-01", 0.0), ("st-02", 4.0), ("st-03", 12.0))]
    state, per = _feed(engine, clears, state)
    assert per == [[], [], []]
    state, per = _feed(engine, [_trig("st-04", 15.0, CLEAR, rev=1)], state)
    [cancel] = per[0]
    assert (cancel.msg_type, cancel.level, cancel.revision) == (MsgType.CANCEL, ORANGE, 2)
    assert cancel.references == [alert.identifier, update.identifier]
    assert state["triggers"] == {} and state["active"] is False


def test_triggers_spread_over_more_than_the_window_give_nothing() -> None:
    engine = AlertEngine(clock=_clock)
    _, per = _feed(engine, [_trig("st-01", 0.0), _trig("st-02", 20.0), _trig("st-03", 40.0)])
    assert per == [[], [], []]


def test_same_station_twice_is_one_station() -> None:
    engine = AlertEngine(clock=_clock)
    _, per = _feed(engine, [_trig("st-01", 0.0), _trig("st-01", 3.0), _trig("st-02", 5.0)])
    assert per == [[], [], []]


def test_seismic_min_stations_and_window_are_configurable() -> None:
    # stations without coordinates: a plain count within the (configurable) window confirms
    engine = AlertEngine(AlertConfig(seismic_min_stations=2, seismic_window_s=60.0), clock=_clock)
    _, per = _feed(engine, [_trig("st-01", 0.0, located=False), _trig("st-02", 50.0, located=False)])
    assert per[0] == [] and [a.msg_type for a in per[1]] == [MsgType.ALERT]


def test_picks_inconsistent_with_one_p_wave_are_not_an_earthquake() -> None:
    # st-01 and st-02 are 24 km apart: triggers 20 s apart cannot be the same P wave (4 s + 1 s)
    engine = AlertEngine(AlertConfig(seismic_min_stations=2, seismic_window_s=30.0), clock=_clock)
    _, per = _feed(engine, [_trig("st-01", 0.0), _trig("st-02", 20.0)])
    assert per == [[], []]


def test_seismic_intensity_sets_the_first_level() -> None:
    engine = AlertEngine(clock=_clock)
    dets = [_trig("st-01", 0.0, intensity=6.4), _trig("st-02", 1.0), _trig("st-03", 2.0, intensity=8.1)]
    _, per = _feed(engine, dets)
    [alert] = per[2]
    assert (alert.level, alert.value) == (RED, 8.1)
    assert alert.severity == "Extreme"


def test_detections_older_than_the_limit_never_alert() -> None:
    # A new worker group reading detections from the start of the topic must not warn the public
    # about last week's rain.
    clock = ONSET + timedelta(minutes=20)
    engine = AlertEngine(AlertConfig(max_detection_age_s=900.0), clock=lambda: clock)
    old = _det(OPEN, BLUE)  # ts = ONSET, 20 minutes before the clock
    state, alerts = engine.process(old, None)
    assert alerts == [] and engine.stale == 1 and state["active"] is False
    fresh = _det(OPEN, BLUE, onset=ONSET + timedelta(minutes=19))
    _, alerts = engine.process(fresh, state)
    assert [a.msg_type for a in alerts] == [MsgType.ALERT]


def test_offline_devices_of_an_area_are_one_operators_alert_never_public() -> None:
    from tocsin.alerts.routing import DEFAULT_ROUTING, plan
    from tocsin.schemas.registry import Registry

    engine = AlertEngine(clock=_clock)
    state = None
    issued = []
    for dev in ("rg-01", "rg-02", "rg-03"):
        state, alerts = engine.process(_det(OPEN, None, device=dev, kind="offline", value=900.0, unit="s"), state)
        issued += alerts
    # inhibition: one alert for the site, updated with the count, not three alerts
    assert [a.msg_type for a in issued] == [MsgType.ALERT, MsgType.UPDATE, MsgType.UPDATE]
    assert issued[2].headline.endswith("站点s1监测设备离线（3台）")
    alert = issued[0]
    assert alert.fingerprint == "hydro:110105:site-s1:offline" and alert.level is BLUE and alert.event == "监测设备离线"
    registry = Registry(sms_recipients={"110105": ["+8613800000001"]})
    assert [d.channel for d in plan(alert, DEFAULT_ROUTING, registry)] == ["mqtt"]  # operators only
    for i, dev in enumerate(("rg-01", "rg-02", "rg-03")):
        state, alerts = engine.process(_det(CLEAR, None, device=dev, kind="offline", value=0.0, unit="s"), state)
        assert [a.msg_type for a in alerts] == ([MsgType.CANCEL] if i == 2 else [MsgType.UPDATE])


def test_s_wave_warning_time_counts_from_the_issue_time_not_the_device_time() -> None:
    """The third trigger's packet is stamped ONSET + 12 s; the alert is issued 6 s later (queueing,
    processing): the text and the blind zone tell the time left from the issue time."""
    from tocsin.alerts.kernels import quake as qk
    from tocsin.schemas.registry import Target

    # a town 150 km east of st-01 on the stations' line
    town_lon = 116.55 + 150.0 / (111.32 * math.cos(math.radians(39.95)))
    registry = Registry(targets=[Target(name="东城镇", lat=39.95, lon=town_lon)])
    issued = ONSET + timedelta(seconds=18)
    engine = AlertEngine(registry=registry, clock=lambda: issued)
    dets = [_trig("st-01", 0.0), _trig("st-02", 4.0), _trig("st-03", 12.0)]
    _, per = _feed(engine, dets)
    [alert] = per[2]
    picks = [qk.Pick(d.device_id, d.lat, d.lon, d.onset.timestamp()) for d in dets]  # type: ignore[arg-type]
    loc = qk.locate(picks)
    left = qk.s_warning_time_s(loc, 39.95, town_lon, issued.timestamp())
    by_device_time = qk.s_warning_time_s(loc, 39.95, town_lon, dets[2].ts.timestamp())
    assert round(by_device_time - left) == 6  # the 6 s between the packet and the issue are gone
    assert 20 < left < 40
    assert f"东城镇：横波约{left:.0f}秒后到达" in alert.description
    blind = qk.blind_zone_radius_km(loc, issued.timestamp())
    assert alert.area.circle is not None and alert.area.circle[2] == pytest.approx(max(10.0, blind), abs=1e-9)
    # an alert issued after the S wave passed the town says so instead of a negative countdown
    late = AlertEngine(registry=registry, clock=lambda: ONSET + timedelta(seconds=120))
    _, per = _feed(late, dets)
    assert "东城镇：已处于盲区" in per[2][0].description


# ---------------------------------------------------------------------------------------------
# Confirmation rules from the rules file (confirm: section), TOCSIN_ALERT_CONFIRM overriding
# ---------------------------------------------------------------------------------------------

RULES_YAML = """
confirm:
  incidents:
    gas_leak: {k: 2, sustain_s: 60}
    flood: {k: 3, sustain_s: 600}
  fire: {persist_sweeps: 2, max_range_km: 5}
  seismic: {min_stations: 2.5, window_s: 20, weights: {st-03: 0.5}}
"""


def _rules_config(tmp_path, env: dict | None = None) -> AlertConfig:  # type: ignore[no-untyped-def]
    from tocsin.alerts.engine import confirm_settings
    from tocsin.detectors.rules import load_rules

    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    return AlertConfig(**confirm_settings(load_rules(path).confirm, env))


def test_confirm_section_defaults_and_file_and_env_override(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tocsin.alerts.engine import confirm_settings
    from tocsin.detectors.rules import Rules

    # no rules file: the documented defaults, which are AlertConfig's own
    defaults = AlertConfig(**confirm_settings(Rules().confirm))
    assert defaults == AlertConfig()
    assert (defaults.confirm, defaults.fire_persist_sweeps, defaults.fire_max_range_km) == ({}, 1, 30.0)
    assert (defaults.seismic_min_stations, defaults.seismic_window_s, defaults.seismic_weights) == (3.0, 30.0, {})
    cfg = _rules_config(tmp_path)
    assert cfg.confirm == {"gas_leak": (2, 60.0), "flood": (3, 600.0)}
    assert (cfg.fire_persist_sweeps, cfg.fire_max_range_km, cfg.fire_k_cameras) == (2, 5.0, 2)
    assert (cfg.seismic_min_stations, cfg.seismic_window_s, cfg.seismic_weights) == (2.5, 20.0, {"st-03": 0.5})
    # TOCSIN_ALERT_CONFIRM replaces the file's rule of the incidents it names, and adds others
    cfg = _rules_config(tmp_path, {"gas_leak": (1, 0.0), "rainstorm": (2, 300.0)})
    assert cfg.confirm == {"gas_leak": (1, 0.0), "flood": (3, 600.0), "rainstorm": (2, 300.0)}


def test_a_bad_confirm_section_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tocsin.detectors.rules import load_rules

    path = tmp_path / "rules.yaml"
    path.write_text("confirm:\n  incidents:\n    gas_leak: {k: 0}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="rules file"):
        load_rules(path)


def test_gas_leak_k_of_n_from_the_rules_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = AlertEngine(_rules_config(tmp_path), clock=_clock)
    gas = dict(kind="gas_h2s", family=Family.HAZMAT, unit="mg/m3", value=12.0)
    state, per = _feed(engine, [_det(OPEN, YELLOW, device="gs-01", **gas)])
    assert per == [[]] and state["pending"] is True  # one detector: held
    state, per = _feed(engine, [_det(OPEN, YELLOW, device="gs-02", **gas)], state)
    assert [a.msg_type for a in per[0]] == [MsgType.ALERT]  # two agree: k = 2


def _camera(device: str, lat: float, lon: float, fire: tuple[float, float], state: DetectionState, rev: int):  # type: ignore[no-untyped-def]
    from tocsin.alerts.kernels import fire as fk

    return _det(
        state,
        YELLOW,
        device=device,
        kind="fire",
        family=Family.FIRE,
        rev=rev,
        value=0.8,
        unit="",
        threshold=None,
        window_s=None,
        lat=lat,
        lon=lon,
        evidence={"bearing_deg": fk.initial_bearing_deg(lat, lon, *fire)},
    )


def test_fire_persist_sweeps_and_cross_bearing_range_from_the_rules_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fire = (30.05, 120.05)  # about 7.4 km from each tower
    a1 = _camera("cam-a", 30.0, 120.0, fire, OPEN, 0)
    a2 = _camera("cam-a", 30.0, 120.0, fire, UPDATE, 1)
    b1 = _camera("cam-b", 30.0, 120.1, fire, OPEN, 1)
    # defaults: one camera alerts at once (unlocated), the second locates it (Update, Observed)
    _, per = _feed(AlertEngine(clock=_clock), [a1, b1])
    assert [(a.msg_type, a.certainty) for alerts in per for a in alerts] == [
        (MsgType.ALERT, "Likely"),
        (MsgType.UPDATE, "Observed"),
    ]
    # persist_sweeps 2: camera a's first sweep is held, its second alerts; max_range_km 5: the
    # crossing 7.4 km away is refused, so camera b does not locate the fire
    engine = AlertEngine(_rules_config(tmp_path), clock=_clock)
    _, per = _feed(engine, [a1, a2, b1])
    assert [[(a.msg_type, a.certainty) for a in alerts] for alerts in per] == [[], [(MsgType.ALERT, "Likely")], []]


def test_seismic_weights_and_min_weight_from_the_rules_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # min weight 2.5: st-01 + st-03 (0.5) is 1.5, not enough; + st-02 (1.0) is 2.5
    engine = AlertEngine(_rules_config(tmp_path), clock=_clock)
    _, per = _feed(engine, [_trig("st-01", 0.0), _trig("st-03", 12.0), _trig("st-02", 4.0)])
    assert per[0] == [] and per[1] == [] and [a.msg_type for a in per[2]] == [MsgType.ALERT]
    # with st-03 at full weight, two stations + st-03 = 3 > 2.5 but two alone (2.0) are not
    engine = AlertEngine(AlertConfig(seismic_min_stations=2.5), clock=_clock)
    _, per = _feed(engine, [_trig("st-01", 0.0), _trig("st-02", 4.0), _trig("st-03", 12.0)])
    assert per[1] == [] and [a.msg_type for a in per[2]] == [MsgType.ALERT]
