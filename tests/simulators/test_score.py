"""simulators/score.py: the scoring arithmetic on hand-made ground truths and alert streams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.cli import main as cli_main
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.scenario import GroundTruth, HazardTruth, ObservedAlert, OutageTruth, TargetArrival
from tocsin.simulators.run import read_alerts_jsonl
from tocsin.simulators.score import Score, format_table, score

T0 = datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)
BLUE, YELLOW, ORANGE, RED = WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE, WarningLevel.RED


def _t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _hazard(hid: str, family: Family, kind: str, detectable_s: float, **kw: object) -> HazardTruth:
    base: dict[str, object] = {
        "hazard_id": hid,
        "family": family,
        "kind": kind,
        "lat": 30.0,
        "lon": 120.0,
        "start": _t(detectable_s - 60),
        "detectable_from": _t(detectable_s),
    }
    base.update(kw)
    return HazardTruth.model_validate(base)


def _truth(*hazards: HazardTruth, faults: tuple[str, ...] = (), end_s: float = 7200) -> GroundTruth:
    return GroundTruth(scenario="hand", seed=1, start=T0, end=_t(end_s), hazards=list(hazards), faults=list(faults))


def _alert(
    at_s: float,
    fingerprint: str,
    *,
    msg_type: MsgType = MsgType.ALERT,
    level: WarningLevel = YELLOW,
    revision: int = 0,
    references: tuple[str, ...] = (),
    devices: tuple[str, ...] = (),
    circle: tuple[float, float, float] | None = None,
    polygons: tuple[tuple[tuple[float, float], ...], ...] = (),
    event: str = "暴雨",
    sim: bool = True,
) -> ObservedAlert:
    family, area, group = fingerprint.split(":")
    alert = Alert(
        identifier=f"{area}TOCSIN-{family}-{group}-{at_s:.0f}-{revision:03d}",
        fingerprint=fingerprint,
        revision=revision,
        msg_type=msg_type,
        hazard=Family(family),
        event=event,
        level=level,
        # wall-clock sent far from the simulated time, so a test fails if sim_time is ignored
        sent=_t(at_s + 86400) if sim else _t(at_s),
        onset=_t(at_s),
        area=AlertArea(code=area, desc="青山镇", circle=circle, polygons=list(polygons)),
        headline="h",
        description="d",
        references=list(references),
        devices=list(devices),
    )
    return ObservedAlert(alert=alert, sim_time=_t(at_s) if sim else None)


def test_true_positive_lead_time_and_level() -> None:
    truth = _truth(_hazard("rain-1", Family.HYDRO, "rainstorm", 1000, expected_level=ORANGE))
    a1 = _alert(1450, "hydro:330110:rainstorm", level=YELLOW)
    a2 = _alert(
        2000,
        "hydro:330110:rainstorm",
        msg_type=MsgType.UPDATE,
        level=ORANGE,
        revision=1,
        references=(a1.alert.identifier,),
    )
    s = score(truth, [a2, a1])  # any order
    (h,) = s.hazards
    assert h.detected and h.first_alert == _t(1450)
    assert h.lead_time_s == 450.0
    assert h.highest_level is ORANGE and h.level_reached is True and h.messages == 2
    assert (s.true_positives, s.missed, s.false_positives, s.matched_incidents) == (1, 0, 0, 1)
    assert s.precision == 1.0 and s.recall == 1.0


def test_sent_is_used_without_sim_time_and_early_alert_within_tolerance_is_negative_lead() -> None:
    truth = _truth(_hazard("leak", Family.HAZMAT, "gas_leak", 600, expected_level=ORANGE))
    s = score(truth, [_alert(570, "hazmat:330110:gas_leak", sim=False, event="危险化学品泄漏")], tolerance_s=60)
    (h,) = s.hazards
    assert h.lead_time_s == -30.0  # reported as is
    assert h.level_reached is False and h.highest_level is YELLOW


def test_miss_and_false_positive() -> None:
    truth = _truth(_hazard("leak", Family.HAZMAT, "gas_leak", 600))
    s = score(truth, [_alert(900, "hydro:330110:rainstorm")])
    (h,) = s.hazards
    assert not h.detected and h.lead_time_s is None and h.first_alert is None
    assert (s.true_positives, s.missed, s.false_positives) == (0, 1, 1)
    assert s.false_positive_fingerprints == ["hydro:330110:rainstorm"]
    assert s.precision == 0.0 and s.recall == 0.0


def test_alert_outside_the_window_is_a_false_positive() -> None:
    truth = _truth(_hazard("rain", Family.HYDRO, "rainstorm", 3000, end=_t(4000)))
    too_early = _alert(3000 - 61, "hydro:330110:rainstorm")
    too_late = _alert(4000 + 1801, "hydro:330111:rainstorm")
    s = score(truth, [too_early, too_late], tolerance_s=60, grace_s=1800)
    assert s.hazards[0].detected is False
    assert s.false_positives == 2
    # the window's edges are inclusive
    s2 = score(
        truth, [_alert(3000 - 60, "hydro:330110:rainstorm"), _alert(5800, "hydro:330111:rainstorm")], grace_s=1800
    )
    assert s2.false_positives == 0 and s2.hazards[0].lead_time_s == -60.0 and s2.hazards[0].messages == 2


def test_revisions_of_one_false_alert_count_once() -> None:
    truth = _truth()
    a = _alert(100, "hazmat:330110:gas_leak", event="危险化学品泄漏")
    u1 = _alert(200, "hazmat:330110:gas_leak", msg_type=MsgType.UPDATE, revision=1, references=(a.alert.identifier,))
    u2 = _alert(
        300,
        "hazmat:330110:gas_leak",
        msg_type=MsgType.UPDATE,
        level=ORANGE,
        revision=2,
        references=(a.alert.identifier, u1.alert.identifier),
    )
    s = score(truth, [a, u1, u2])
    assert s.false_positives == 1 and s.false_positive_fingerprints == ["hazmat:330110:gas_leak"]
    assert s.precision == 0.0 and s.recall is None and s.alert_messages == 3


def test_cancel_is_not_a_detection_nor_a_false_positive() -> None:
    truth = _truth(_hazard("rain", Family.HYDRO, "rainstorm", 1000))
    cancel = _alert(1500, "hydro:330110:rainstorm", msg_type=MsgType.CANCEL, revision=3, references=("x",))
    s = score(truth, [cancel])
    assert s.hazards[0].detected is False
    assert (s.false_positives, s.cancels, s.missed) == (0, 1, 1)
    assert s.precision is None


def test_late_revision_of_a_matched_incident_is_not_a_false_positive() -> None:
    truth = _truth(_hazard("rain", Family.HYDRO, "rainstorm", 1000, end=_t(2000)))
    a = _alert(1200, "hydro:330110:rainstorm")
    late = _alert(
        2000 + 1801, "hydro:330110:rainstorm", msg_type=MsgType.UPDATE, revision=1, references=(a.alert.identifier,)
    )
    s = score(truth, [a, late], grace_s=1800)
    assert (s.false_positives, s.late_revisions, s.hazards[0].messages) == (0, 1, 1)
    # but a new incident of the same fingerprint after the window is a false positive
    again = _alert(2000 + 1900, "hydro:330110:rainstorm", revision=2)
    assert score(truth, [a, late, again], grace_s=1800).false_positives == 1


def test_two_hazards_of_one_family_are_told_apart() -> None:
    north = _hazard("rain-n", Family.HYDRO, "rainstorm", 1000, lat=30.3, lon=120.1, devices=["RG01"])
    south = _hazard("rain-s", Family.HYDRO, "rainstorm", 1200, lat=29.9, lon=120.1, devices=["RG07"])
    flood = _hazard("river", Family.HYDRO, "river_flood", 1500, area_codes=["330111"])
    truth = _truth(north, south, flood)
    alerts = [
        _alert(1300, "hydro:330110:rainstorm", devices=("RG07",)),  # devices: the southern cell
        _alert(1400, "hydro:330112:rainstorm", circle=(30.31, 120.1, 5.0)),  # nearest: the northern cell
        _alert(1600, "hydro:330111:flood", devices=("WL01",)),  # kind: the river
    ]
    s = score(truth, alerts)
    by_id = {h.hazard_id: h for h in s.hazards}
    assert by_id["rain-s"].lead_time_s == 100.0 and by_id["rain-s"].fingerprints == ["hydro:330110:rainstorm"]
    assert by_id["rain-n"].lead_time_s == 400.0 and by_id["rain-n"].fingerprints == ["hydro:330112:rainstorm"]
    assert by_id["river"].lead_time_s == 100.0 and by_id["river"].fingerprints == ["hydro:330111:flood"]
    assert (s.true_positives, s.false_positives, s.matched_incidents) == (3, 0, 3)


def test_an_alert_area_of_boundaries_matches_the_hazard_inside_them() -> None:
    north = _hazard("rain-n", Family.HYDRO, "rainstorm", 1000, lat=30.3, lon=120.1)
    south = _hazard("rain-s", Family.HYDRO, "rainstorm", 1000, lat=29.9, lon=120.1)
    # a boundary round the southern cell, whose nearest vertex is closer to the northern one
    ring = ((29.8, 120.0), (29.8, 120.2), (30.25, 120.1), (29.8, 120.0))
    s = score(_truth(north, south), [_alert(1100, "hydro:330110:rainstorm", polygons=(ring,))])
    by_id = {h.hazard_id: h for h in s.hazards}
    assert by_id["rain-s"].fingerprints == ["hydro:330110:rainstorm"] and by_id["rain-n"].fingerprints == []


def test_earthquake_warning_time_per_target() -> None:
    origin = _t(5000)
    quake = _hazard(
        "quake-1",
        Family.SEISMIC,
        "earthquake",
        5006.5,
        expected_level=YELLOW,
        targets=[
            TargetArrival(target="临江区政府", distance_km=40.0, p_arrival=_t(5006.8), s_arrival=_t(5011.7)),
            TargetArrival(target="高铁临江段", distance_km=70.0, p_arrival=_t(5011.8), s_arrival=_t(5020.2)),
            TargetArrival(target="近场", distance_km=5.0, p_arrival=_t(5001.8), s_arrival=_t(5003.2)),
        ],
        start=origin,
    )
    s = score(_truth(quake), [_alert(5009.0, "seismic:330110:earthquake", level=BLUE, event="地震")])
    (h,) = s.hazards
    assert h.lead_time_s == 2.5
    assert [(x.target, x.warning_s) for x in h.targets] == [
        ("临江区政府", 2.7),
        ("高铁临江段", 11.2),
        ("近场", -5.8),  # inside the blind zone: the shaking came first
    ]
    assert h.level_reached is False
    assert "S-wave warning +11.2 s" in format_table(s)
    missed = score(_truth(quake), []).hazards[0]
    assert [x.warning_s for x in missed.targets] == [None, None, None] and not missed.detected


def test_device_health_expected_and_unexpected() -> None:
    truth = _truth(_hazard("rain", Family.HYDRO, "rainstorm", 1000), faults=("offline:RG03",))
    expected = _alert(1100, "hydro:330110:offline", level=BLUE, devices=("RG03",), event="监测设备离线")
    unexpected = _alert(1100, "fire:330110:offline", level=BLUE, devices=("FC01",), event="监测设备离线")
    s = score(truth, [expected, unexpected])
    assert [(d.fingerprint, d.expected) for d in s.device_health] == [
        ("fire:330110:offline", False),
        ("hydro:330110:offline", True),
    ]
    assert s.false_positives == 1 and s.false_positive_fingerprints == ["fire:330110:offline"]
    assert s.hazards[0].detected is False  # a device-health alert never detects a hazard
    # a scenario with no offline fault: every offline alert is unexpected
    s2 = score(_truth(), [expected])
    assert s2.false_positives == 1 and not s2.device_health[0].expected


def test_table_lists_every_hazard() -> None:
    truth = _truth(_hazard("rain", Family.HYDRO, "rainstorm", 1000), _hazard("leak", Family.HAZMAT, "gas_leak", 10))
    text = format_table(score(truth, [_alert(1010, "hydro:330110:rainstorm")]))
    assert "rain" in text and "detected" in text and "MISSED" in text and "TP 1  missed 1  FP 0" in text


# ------------------------------------------------------------------ properties
_FPS = ["hydro:330110:rainstorm", "hydro:330111:flood", "hazmat:330110:gas_leak", "fire:330110:forest_fire"]
_alerts = st.lists(
    st.tuples(
        st.floats(0, 8000, allow_nan=False),
        st.sampled_from(_FPS),
        st.sampled_from([MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL]),
        st.sampled_from(list(WarningLevel)),
    ),
    max_size=12,
)
_truths = st.lists(
    st.tuples(st.sampled_from([Family.HYDRO, Family.HAZMAT, Family.FIRE]), st.floats(0, 7000, allow_nan=False)),
    max_size=4,
)


def _build(
    spec_h: list[tuple[Family, float]], spec_a: list[tuple[float, str, MsgType, WarningLevel]]
) -> tuple[GroundTruth, list[ObservedAlert]]:
    kinds = {Family.HYDRO: "rainstorm", Family.HAZMAT: "gas_leak", Family.FIRE: "forest_fire"}
    truth = _truth(*(_hazard(f"h{i}", fam, kinds[fam], at) for i, (fam, at) in enumerate(spec_h)))
    alerts = [
        # Updates and Cancels all belong to one incident per fingerprint; each Alert opens its own
        _alert(at, fp, msg_type=mt, level=lvl, revision=i, references=(f"{fp}/1",) if mt is not MsgType.ALERT else ())
        for i, (at, fp, mt, lvl) in enumerate(spec_a)
    ]
    return truth, alerts


@settings(max_examples=150, deadline=None)
@given(_truths, _alerts, st.floats(0, 8000, allow_nan=False))
def test_an_unrelated_family_alert_never_turns_a_detection_into_a_miss(
    spec_h: list[tuple[Family, float]], spec_a: list[tuple[float, str, MsgType, WarningLevel]], at: float
) -> None:
    truth, alerts = _build(spec_h, spec_a)
    before = score(truth, alerts)
    # seismic: no hazard of that family in these truths
    after = score(truth, [*alerts, _alert(at, "seismic:330110:earthquake", event="地震")])
    for b, a in zip(before.hazards, after.hazards, strict=True):
        assert a.detected == b.detected and a.lead_time_s == b.lead_time_s
    assert after.false_positives == before.false_positives + 1


@settings(max_examples=150, deadline=None)
@given(_truths, _alerts)
def test_counts_are_consistent(
    spec_h: list[tuple[Family, float]], spec_a: list[tuple[float, str, MsgType, WarningLevel]]
) -> None:
    truth, alerts = _build(spec_h, spec_a)
    s = score(truth, alerts)
    fingerprints = {o.alert.fingerprint for o in alerts}
    assert 0 <= s.false_positives <= len(fingerprints)
    assert s.false_positives == len(s.false_positive_fingerprints)
    assert s.true_positives + s.missed == len(truth.hazards)
    assert s.cancels == sum(o.alert.msg_type is MsgType.CANCEL for o in alerts)
    assert s.alert_messages == len(alerts)
    for h in s.hazards:
        assert h.detected == (h.lead_time_s is not None)
        if h.detected:
            assert h.first_alert is not None and h.first_alert >= h.detectable_from - timedelta(seconds=60)
    if s.precision is not None:
        assert 0.0 <= s.precision <= 1.0
    # scoring is independent of the order the alerts arrive in
    assert score(truth, list(reversed(alerts))) == s


# ------------------------------------------------------------------ alerts files and `tocsin simulate score`
def test_alerts_jsonl_takes_observed_and_bare_alerts(tmp_path: Path) -> None:
    truth = _truth(_hazard("rain", Family.HYDRO, "rainstorm", 1000, expected_level=YELLOW))
    observed = _alert(1300, "hydro:330110:rainstorm")
    bare = _alert(1500, "hydro:330111:rainstorm", sim=False).alert  # as dumped from Kafka `alerts`
    lines = [observed.model_dump_json(), "", bare.model_dump_json()]
    parsed = read_alerts_jsonl("\n".join(lines))
    assert parsed == [observed, ObservedAlert(alert=bare)]
    assert '"severity"' in lines[2]  # the wire form carries the derived severity, and still parses

    (tmp_path / "truth.json").write_text(truth.model_dump_json(), encoding="utf-8")
    (tmp_path / "alerts.jsonl").write_text("\n".join(lines), encoding="utf-8")
    out = tmp_path / "score.json"
    rc = cli_main(
        [
            "simulate",
            "score",
            "--truth",
            str(tmp_path / "truth.json"),
            "--alerts",
            str(tmp_path / "alerts.jsonl"),
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    s = Score.model_validate_json(out.read_text(encoding="utf-8"))
    assert s == score(truth, parsed)
    assert s.hazards[0].lead_time_s == 300.0 and s.hazards[0].messages == 2 and s.false_positives == 0


def test_alerts_jsonl_names_the_bad_line() -> None:
    with pytest.raises(ValueError, match="alerts line 2"):
        read_alerts_jsonl(
            '{"alert": null}\n'.replace("null", _alert(1, "hydro:330110:rainstorm").alert.model_dump_json()) + "{}"
        )


GW_FP = "hydro:330110:gateway-GW1:offline"


def _offline(
    at_s: float, msg_type: MsgType, revision: int, devices: tuple[str, ...], first_id: str = ""
) -> ObservedAlert:
    ident = f"330110TOCSIN-offline-{at_s:.0f}-{revision:03d}"
    alert = Alert(
        identifier=ident,
        fingerprint=GW_FP,
        revision=revision,
        msg_type=msg_type,
        hazard=Family.HYDRO,
        event="监测设备离线",
        level=BLUE,
        sent=_t(at_s + 86400),
        onset=_t(at_s),
        area=AlertArea(code="330110", desc="白沙镇"),
        headline="网关GW1监测设备离线",
        description="d",
        references=[first_id] if first_id else [],
        devices=list(devices),
    )
    return ObservedAlert(alert=alert, sim_time=_t(at_s))


def _outage_truth(back_s: float | None = 4000) -> GroundTruth:
    outage = OutageTruth(
        outage_id="gateway-GW1",
        family=Family.HYDRO,
        area_code="330110",
        group="gateway-GW1",
        devices=["RG11", "RG12"],
        start=_t(2400),
        detectable_from=_t(3000),
        back=_t(back_s) if back_s is not None else None,
    )
    return GroundTruth(
        scenario="outage",
        seed=1,
        start=T0,
        end=_t(7200),
        faults=["offline:RG11", "offline:RG12"],
        outages=[outage],
    )


def test_outage_detected_as_one_grouped_alert_and_cleared() -> None:
    first = _offline(3020, MsgType.ALERT, 0, ("RG11",))
    fid = first.alert.identifier
    stream = [
        first,
        _offline(3050, MsgType.UPDATE, 1, ("RG11", "RG12"), fid),
        _offline(4000, MsgType.UPDATE, 2, ("RG12",), fid),
        _offline(4010, MsgType.CANCEL, 3, ("RG12",), fid),
    ]
    s = score(_outage_truth(), list(reversed(stream)))
    (o,) = s.outages
    assert o.detected and o.fingerprint == GW_FP and o.outage_id == "gateway-GW1"
    assert o.first_alert == _t(3020) and o.lead_time_s == 20.0
    assert o.incidents == 1 and o.messages == 3 and o.devices_alerted == ["RG11", "RG12"]
    assert o.cleared_at == _t(4010) and o.back == _t(4000)
    assert s.outages_missed == 0 and s.false_positives == 0 and s.precision is None and s.recall is None
    assert [d.expected for d in s.device_health] == [True]
    assert "outage gateway-GW1 hydro:330110:gateway-GW1:offline RG11,RG12: detected, lead 20.0 s, 1 alert(s)" in (
        format_table(s)
    )


def test_outage_missed_split_or_outside_its_window() -> None:
    truth = _outage_truth()
    none = score(truth, [])
    assert none.outages_missed == 1 and not none.outages[0].detected and "MISSED" in format_table(none)
    # two incidents for one outage (the group's alert flapped) are reported as such
    a, b = _offline(3020, MsgType.ALERT, 0, ("RG11",)), _offline(3500, MsgType.ALERT, 0, ("RG12",))
    split = score(truth, [a, _offline(3100, MsgType.CANCEL, 1, ("RG11",), a.alert.identifier), b])
    assert split.outages[0].incidents == 2 and split.outages[0].cleared_at == _t(3100)
    # an alert of another gateway, or long before the outage, does not detect it
    other = _offline(3020, MsgType.ALERT, 0, ("RG11",))
    other = ObservedAlert(
        alert=other.alert.model_copy(update={"fingerprint": "hydro:330110:gateway-GW2:offline"}), sim_time=_t(3020)
    )
    early = _offline(1000, MsgType.ALERT, 0, ("RG11",))
    s = score(truth, [other, early])
    assert s.outages_missed == 1
    # an outage that outlasts the scenario is detected without an all-clear
    (o,) = score(_outage_truth(back_s=None), [_offline(3020, MsgType.ALERT, 0, ("RG11",))]).outages
    assert o.detected and o.cleared_at is None and o.back is None
