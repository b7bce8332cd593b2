"""Shipped scenarios load and build; builds are deterministic; ground truth is honest; faults show."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tocsin.ingest.validate import Accepted, DuplicateWindow, parse_status, validate_telemetry
from tocsin.schemas.common import WarningLevel
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.registry import Registry, load_registry
from tocsin.schemas.scenario import GroundTruth
from tocsin.schemas.status import DeviceStatus
from tocsin.simulators import physics as ph
from tocsin.simulators.demo import CENTRE, DISTRICT, Message
from tocsin.simulators.scenario import build, write_outputs
from tocsin.simulators.scenario_spec import SCENARIO_DIR, Scenario, load_scenario, scenario_paths

SHIPPED = {
    "quiet_day": set(),
    "typhoon_rainstorm": {"rainstorm", "river_flood"},
    "m55_earthquake_40km": {"earthquake"},
    "chemical_leak": {"gas_leak"},
    "two_tower_fire": {"forest_fire"},
    "bad_day": {"rainstorm", "river_flood", "gas_leak", "forest_fire", "earthquake"},
    "gateway_outage": set(),
}

_BUILT: dict[str, tuple[Registry, list[Message], GroundTruth]] = {}


def _built(name: str) -> tuple[Registry, list[Message], GroundTruth]:
    if name not in _BUILT:
        _BUILT[name] = build(load_scenario(SCENARIO_DIR / f"{name}.yaml"))
    return _BUILT[name]


def _digest(msgs: list[Message]) -> str:
    h = hashlib.sha256()
    for m in msgs:
        h.update(m.t.isoformat().encode() + b"\0" + m.topic.encode() + b"\0" + m.payload + b"\0" + m.note.encode())
    return h.hexdigest()


def test_the_shipped_set() -> None:
    assert {p.stem for p in scenario_paths()} >= set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scenario_builds_with_honest_truth(name: str) -> None:
    registry, msgs, truth = _built(name)
    s = load_scenario(name)  # a bare name is looked up in SCENARIO_DIR
    assert truth.scenario == s.name == name
    assert truth.start == s.start and truth.end == truth.start + timedelta(seconds=s.duration_s)
    assert truth.messages == len(msgs) and 0 < len(msgs) < 5_000
    assert [m.t for m in msgs] == sorted(m.t for m in msgs)
    assert all(truth.start <= m.t <= truth.end + timedelta(minutes=2) for m in msgs)
    assert {h.kind for h in truth.hazards} == SHIPPED[name]
    assert truth.undetectable == []
    # the demo's district, so routing and SMS recipients work
    assert registry.sms_recipients[DISTRICT]
    assert {d.area.code for d in registry.devices} == {DISTRICT}
    assert registry.targets and registry.targets[0].lat == CENTRE[0]
    ids = {d.device_id for d in registry.devices}
    for h in truth.hazards:
        assert h.start <= h.detectable_from <= truth.end
        assert h.expected_level is not None
        assert h.devices and set(h.devices) <= ids
        assert h.area_codes == [DISTRICT]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_clean_message_passes_the_gateway(name: str) -> None:
    registry, msgs, _ = _built(name)
    dups = DuplicateWindow()
    for m in msgs:
        if m.topic.endswith("/status"):
            assert isinstance(parse_status(m.topic, m.payload, m.t), DeviceStatus)
            continue
        out = validate_telemetry(m.topic, m.payload, m.t + timedelta(seconds=1), registry=registry, duplicates=dups)
        if m.note.startswith("bad:"):
            assert isinstance(out, DeadLetter), m
        elif m.note == "duplicate":
            assert isinstance(out, DeadLetter) and out.reason is Reason.DUPLICATE
        else:
            assert isinstance(out, Accepted), (m, out)


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    s = load_scenario("bad_day")
    _, a, ta = build(s)
    _, b, tb = build(load_scenario(SCENARIO_DIR / "bad_day.yaml"))
    assert _digest(a) == _digest(b)
    assert ta.model_dump_json() == tb.model_dump_json()
    _, c, _ = build(s.model_copy(update={"seed": s.seed + 1}))
    assert _digest(c) != _digest(a)
    # a different start moves the timestamps but keeps the structure
    _, d, _ = build(s, start=s.start + timedelta(hours=1) if s.start else None)
    assert len(d) == len(a) and _digest(d) != _digest(a)


def test_seq_increases_per_device_and_duplicates_repeat_it() -> None:
    _, msgs, truth = _built("bad_day")
    seen: dict[str, list[int]] = {}
    for m in msgs:
        if m.topic.endswith("/telemetry") and not m.note.startswith("bad:") and m.note != "duplicate":
            obj = json.loads(m.payload)
            seen.setdefault(obj["device_id"], []).append(obj["seq"])
    for dev, seqs in seen.items():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), dev
    dups = [m for m in msgs if m.note == "duplicate"]
    assert len(dups) == 6 and "duplicates:6" in truth.faults
    originals = {(m.topic, m.payload) for m in msgs if m.note != "duplicate"}
    assert all((m.topic, m.payload) in originals for m in dups)


def test_malformed_payloads_fail_validation() -> None:
    registry, msgs, truth = _built("bad_day")
    bad = [m for m in msgs if m.note.startswith("bad:")]
    assert len(bad) == 8 and "malformed:8" in truth.faults
    reasons = set()
    for m in bad:
        out = validate_telemetry(m.topic, m.payload, m.t, registry=registry)
        assert isinstance(out, DeadLetter)
        reasons.add(out.reason)
    assert {Reason.UNDECODABLE, Reason.NON_FINITE, Reason.SCHEMA, Reason.IDENTITY_MISMATCH} <= reasons


def test_offline_stuck_and_skew_faults_show_in_the_messages() -> None:
    _, msgs, truth = _built("bad_day")
    start = truth.start
    rg02 = [m for m in msgs if "/RG02/" in m.topic]
    down, up = start + timedelta(seconds=3600), start + timedelta(seconds=5400)
    assert not [m for m in rg02 if m.topic.endswith("/telemetry") and down <= m.t < up]
    assert [m for m in rg02 if m.topic.endswith("/telemetry") and m.t >= up]
    wills = [m for m in rg02 if m.payload == b"offline"]
    assert len(wills) == 1 and down < wills[0].t < down + timedelta(minutes=2)
    assert any(m.topic.endswith("/status") and m.t == up for m in rg02)
    stuck = [json.loads(m.payload)["value"] for m in msgs if "/GD02/telemetry" in m.topic and m.note == ""]
    after = stuck[len(stuck) // 2 :]
    assert len(set(after)) == 1
    for m in msgs:
        if "/RG03/telemetry" in m.topic and m.note == "":
            ts = datetime.fromisoformat(json.loads(m.payload)["ts"])
            assert ts - m.t == timedelta(seconds=45)
    assert {"offline:RG02", "stuck:GD02", "skew:RG03:+45", "skew:FC02:-20"} <= set(truth.faults)


def test_quiet_day_has_no_hazard_and_stays_under_thresholds() -> None:
    _, msgs, truth = _built("quiet_day")
    assert truth.hazards == [] and truth.faults == []
    rain = [json.loads(m.payload)["rain_mm"] for m in msgs if "/telemetry" in m.topic and b"hydro.rain" in m.payload]
    assert 0 < sum(rain) and max(rain) < 2.0  # some drizzle, far from 35 mm/h
    seismic = [m for m in msgs if "/seismic/" in m.topic and m.topic.endswith("/telemetry")]
    assert seismic  # noise only


def test_earthquake_truth_lists_p_and_s_arrivals_at_every_target() -> None:
    registry, msgs, truth = _built("m55_earthquake_40km")
    (q,) = truth.hazards
    assert q.params["magnitude"] == 5.5
    assert ph.distance_km(q.lat, q.lon, *CENTRE) == pytest.approx(40.0, abs=0.01)
    assert {t.target for t in q.targets} == {t.name for t in registry.targets}
    for t in q.targets:
        hypo = (t.distance_km**2 + 10.0**2) ** 0.5
        assert (t.p_arrival - q.start).total_seconds() == pytest.approx(hypo / 6.0, abs=0.01)
        assert (t.s_arrival - q.start).total_seconds() == pytest.approx(hypo / 3.5, abs=0.01)
        assert t.s_arrival > q.detectable_from  # the district gets a warning time
    # detectable at the third station's P arrival
    stations = [d for d in registry.devices if d.device_id.startswith("SS")]
    p = sorted(ph.arrivals(ph.Quake(q.lat, q.lon, 10.0, 5.5, q.start.timestamp()), d.lat, d.lon).p_s for d in stations)
    assert q.detectable_from.timestamp() == pytest.approx(p[2], abs=1e-3)
    assert len([m for m in msgs if "/seismic/" in m.topic]) <= 8 * 160 + 8


def test_gas_truth_is_the_first_reading_at_the_set_point() -> None:
    _, msgs, truth = _built("chemical_leak")
    (leak,) = truth.hazards
    assert leak.devices == ["GD01"]  # the downwind detector; upwind / crosswind ones stay clean
    gd01 = [(m.t, json.loads(m.payload)["value"]) for m in msgs if "/GD01/telemetry" in m.topic]
    first = next(t for t, v in gd01 if v >= 10.0)  # H2S level 1: 10 mg/m3
    assert leak.detectable_from == first
    assert leak.start < first < leak.start + timedelta(minutes=5)
    gd03 = [json.loads(m.payload)["value"] for m in msgs if "/GD03/telemetry" in m.topic]
    assert max(gd03) < 1.0  # upwind


def test_fire_truth_and_both_towers() -> None:
    _, msgs, truth = _built("two_tower_fire")
    (fire,) = truth.hazards
    assert fire.devices == ["FC01", "FC02"]
    hits = [m for m in msgs if m.note == "fire 0"]
    assert fire.detectable_from == min(m.t for m in hits if json.loads(m.payload)["confidence"] >= 0.6)
    for m in hits:
        obj = json.loads(m.payload)
        tower = (30.37, 120.14) if obj["device_id"] == "FC01" else (30.34, 120.21)
        true = ph.bearing_deg(*tower, fire.lat, fire.lon)
        assert abs((obj["bearing_deg"] - true + 180) % 360 - 180) < 2.5


def test_write_outputs(tmp_path: Path) -> None:
    registry, msgs, truth = _built("bad_day")
    paths = write_outputs(tmp_path / "out", registry, msgs, truth)
    assert load_registry(paths["registry_yaml"]).model_dump() == registry.model_dump()
    assert load_registry(paths["registry_json"]).model_dump() == registry.model_dump()
    assert GroundTruth.model_validate_json(paths["ground_truth"].read_text()) == truth
    lines = [json.loads(x) for x in paths["messages"].read_text().splitlines()]
    assert len(lines) == len(msgs)
    for row, m in zip(lines, msgs, strict=True):
        raw = base64.b64decode(row["payload_b64"]) if "payload_b64" in row else row["payload"].encode()
        assert raw == m.payload and row["topic"] == m.topic and row["note"] == m.note
        assert datetime.fromisoformat(row["t"]) == m.t
    assert any("payload_b64" in row for row in lines)  # the non-UTF-8 malformed payload


def test_start_defaults_to_ending_now_and_network_is_generated() -> None:
    s = Scenario.model_validate(
        {
            "name": "tiny",
            "duration_s": 900,
            "seed": 1,
            "network": {"per_family": {"hydro": 3, "hazmat": 2, "fire": 1, "seismic": 3}},
        }
    )
    before = datetime.now(UTC)
    registry, msgs, truth = build(s)
    assert before - timedelta(seconds=2) <= truth.end <= datetime.now(UTC) + timedelta(seconds=1)
    kinds = sorted(d.device_id[:2] for d in registry.devices)
    assert kinds == ["FC", "GD", "GD", "RG", "RG", "SS", "SS", "SS", "WL"]
    # placement depends on the seed only
    assert build(s, start=truth.start)[0].model_dump() == registry.model_dump()


def test_invalid_scenarios_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly one of devices"):
        Scenario.model_validate({"name": "x", "duration_s": 60})
    with pytest.raises(ValueError, match="either lat and lon"):
        Scenario.model_validate(
            {
                "name": "x",
                "duration_s": 60,
                "network": {},
                "hazards": [{"kind": "forest_fire", "hazard_id": "f", "lat": 30.0}],
            }
        )
    s = Scenario.model_validate(
        {"name": "x", "duration_s": 60, "network": {}, "faults": {"offline": [{"device": "NOPE", "at_s": 1}]}}
    )
    with pytest.raises(ValueError, match="unknown device"):
        build(s, start=datetime(2026, 1, 1, tzinfo=UTC))


def test_outage_truth_groups_a_gateways_devices_from_the_messages() -> None:
    registry, msgs, truth = _built("gateway_outage")
    assert {d.device_id: d.gateway for d in registry.devices if d.gateway} == dict.fromkeys(
        ["RG11", "RG12", "WL11"], "GW-BS01"
    )
    assert not truth.hazards and len(truth.outages) == 1
    o = truth.outages[0]
    assert o.fingerprint == "hydro:330110:gateway-GW-BS01:offline" and o.devices == ["RG11", "RG12", "WL11"]
    down, up = truth.start + timedelta(seconds=2400), truth.start + timedelta(seconds=4200)
    tele = {d: [m.t for m in msgs if f"/{d}/telemetry" in m.topic] for d in o.devices}
    # the first device past 3 x 300 s of silence since its last report before the fault
    assert o.start == down
    assert o.detectable_from == min(max(t for t in ts if t < down) for ts in tele.values()) + timedelta(seconds=900)
    # back: the last of the three to report again
    assert o.back == max(min(t for t in ts if t >= up) for ts in tele.values())
    # the devices elsewhere kept reporting through the outage
    others = {m.topic.split("/")[4] for m in msgs if m.topic.endswith("/telemetry") and down <= m.t < up}
    assert others == {"RG01", "WL01", "GD01"}
    # bad_day: RG02 (no gateway) alone for its site
    (rg02,) = _built("bad_day")[2].outages
    assert rg02.devices == ["RG02"] and rg02.group == "site-" + registry_site("bad_day", "RG02")


def registry_site(name: str, device_id: str) -> str:
    return next(d.site for d in _built(name)[0].devices if d.device_id == device_id)


def test_outages_too_short_for_the_deadman_or_apart_are_told_apart() -> None:
    base = load_scenario("gateway_outage")
    short = base.model_copy(
        update={
            "faults": base.faults.model_copy(
                update={"offline": [base.faults.offline[0].model_copy(update={"back_s": 2700})]}
            )
        }
    )
    assert build(short)[2].outages == []  # 5 min of silence: under 3 x 300 s, invisible
    off = base.faults.offline
    apart = base.model_copy(
        update={
            "faults": base.faults.model_copy(
                update={"offline": [off[0], off[1].model_copy(update={"at_s": 5400, "back_s": 6900})]}
            )
        }
    )
    outages = build(apart)[2].outages
    assert [(o.outage_id, o.devices) for o in outages] == [
        ("gateway-GW-BS01-1", ["RG11"]),
        ("gateway-GW-BS01-2", ["RG12"]),
    ]


def test_stuck_seismic_station_and_camera_in_a_scenario() -> None:
    s = Scenario.model_validate(
        {
            "name": "stuck",
            "start": "2026-05-01T10:00:00+08:00",
            "duration_s": 1800,
            "seed": 3,
            "devices": [
                {"device_id": "SS01", "kind": "seismic", "site": "seis-net", "lat": 30.3, "lon": 120.1},
                {"device_id": "FC01", "kind": "camera", "site": "tower", "lat": 30.37, "lon": 120.14, "sweep_s": 180},
            ],
            "hazards": [
                {
                    "kind": "forest_fire",
                    "hazard_id": "f",
                    "bearing_deg": 40,
                    "distance_km": 12,
                    "expected": {"forest_fire": "orange"},
                }
            ],
            "noise": {"seismic_windows": [[600, 60]], "fire_false_positives_per_sweep": 1.0},
            "faults": {"stuck": [{"device": "SS01", "at_s": 630}, {"device": "FC01", "at_s": 900}]},
        }
    )
    _, msgs, truth = build(s)
    assert {"stuck:SS01", "stuck:FC01"} <= set(truth.faults)
    seis = [json.loads(m.payload)["samples"] for m in msgs if "/SS01/telemetry" in m.topic]
    assert len(seis) == 60 and len({x for p in seis[30:] for x in p}) == 1  # flat from 630 s
    assert len({x for p in seis[:29] for x in p}) > 100  # live noise before
    frames: dict[int, list[tuple[str, float, float]]] = {}
    notes: dict[int, set[str]] = {}
    for m in msgs:
        if "/FC01/telemetry" in m.topic:
            obj = json.loads(m.payload)
            frames.setdefault(obj["sweep"], []).append((obj["kind"], obj["confidence"], obj["bearing_deg"]))
            notes.setdefault(obj["sweep"], set()).add(m.note.split(" (")[0])
    frozen = sorted(k for k, n in notes.items() if n == {"stuck: frozen frame"})
    live = sorted(k for k, n in notes.items() if "stuck: frozen frame" not in n)
    assert len(frozen) >= 3 and max(live) < min(frozen)
    assert all(frames[k] == frames[max(live)] for k in frozen)  # the last live frame over and over


def test_expected_levels_are_the_scenario_files_own() -> None:
    # stated in typhoon_rainstorm.yaml from the CMA table and the river's warning levels
    _, _, truth = _built("typhoon_rainstorm")
    assert {h.kind: h.expected_level for h in truth.hazards} == {
        "rainstorm": WarningLevel.ORANGE,
        "river_flood": WarningLevel.ORANGE,
    }


def test_a_detectable_hazard_without_a_stated_level_is_refused() -> None:
    sc = load_scenario(SCENARIO_DIR / "chemical_leak.yaml")
    leak = sc.hazards[0].model_copy(update={"expected": {}})
    with pytest.raises(ValueError, match="state expected"):
        build(sc.model_copy(update={"hazards": [leak]}))
