"""The console's device-health model (alerts/console/devices.py): its state machine over readings,
statuses, offline and sensor-fault detections and dead letters, on an injected clock; unit cases and
a property test against a plain re-statement of the rules over random event sequences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.alerts.console.devices import (
    DEAD_LETTER_MEMORY,
    ORDER,
    REASON_MAX_CHARS,
    DeviceHealthModel,
    Health,
)
from tocsin.schemas import topics
from tocsin.schemas.batch import pack
from tocsin.schemas.common import Family
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.detection import Detection, DetectionKind, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.wire import encode

T0 = 1_780_000_000.0
WINDOW = 900.0


def device(device_id: str, interval_s: float = 60.0, family: Family = Family.HYDRO) -> Device:
    return Device(
        device_id=device_id,
        family=family,
        site="site1",
        lat=30.3,
        lon=120.1,
        area=Area(code="330110", town="青山镇"),
        interval_s=interval_s,
    )


REGISTRY = Registry(devices=[device("RG01", 60), device("RG02", 10), device("GS01", 30, Family.HAZMAT)])


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def model(clock: Clock, registry: Registry = REGISTRY) -> DeviceHealthModel:
    return DeviceHealthModel(registry, clock=clock, stale_factor=2.0, fault_window_s=WINDOW)


def states(m: DeviceHealthModel) -> dict[str, Health]:
    return {r.device_id: r.state for r in m.snapshot()}


def status(device_id: str, state: DeviceState, reason: str = "") -> DeviceStatus:
    return DeviceStatus(
        device_id=device_id, site="site1", family=Family.HYDRO, state=state, ts=datetime.now(UTC), reason=reason
    )


def detection(device_id: str, kind: DetectionKind, state: DetectionState, faults: list[str] | None = None) -> Detection:
    t = datetime.fromtimestamp(T0, UTC)
    return Detection(
        id=f"{device_id}:{kind}:1:0",
        device_id=device_id,
        site="site1",
        family=Family.HYDRO,
        kind=kind,
        state=state,
        value=0.0,
        onset=t,
        ts=t,
        evidence={"faults": faults} if faults else {},
    )


def dead(device_id: str, reason: Reason = Reason.OUT_OF_RANGE, message: str = "level_m 99 above 50") -> DeadLetter:
    return DeadLetter.of(
        b"{}",
        reason=reason,
        message=message,
        mqtt_topic=topics.mqtt_telemetry(Family.HYDRO, "site1", device_id),
        received_at=datetime.now(UTC),
        field="level_m",
    )


# --------------------------------------------------------------------------- unit cases
def test_unknown_then_stale_when_nothing_ever_arrives() -> None:
    clock = Clock()
    m = model(clock)
    assert set(states(m).values()) == {Health.UNKNOWN}
    clock.t += 21  # RG02: 2 x 10 s
    s = states(m)
    assert s["RG02"] is Health.STALE and s["RG01"] is Health.UNKNOWN
    row = next(r for r in m.snapshot() if r.device_id == "RG02")
    assert row.since == T0 + 20 and row.reason == "至少 21 秒 无数据（应每 10 秒 上报）"


def test_reporting_until_silent_for_factor_times_the_interval() -> None:
    clock = Clock()
    m = model(clock)
    m.reading("RG01", T0)
    clock.t = T0 + 120  # exactly 2 x 60 s: still reporting
    assert states(m)["RG01"] is Health.REPORTING
    clock.t = T0 + 121
    row = next(r for r in m.snapshot() if r.device_id == "RG01")
    assert row.state is Health.STALE and row.since == T0 + 120 and row.last_seen == T0
    assert "已 121 秒 无数据" in row.reason and "应每 60 秒 上报" in row.reason
    m.reading("RG01", T0 + 121)
    row = next(r for r in m.snapshot() if r.device_id == "RG01")
    assert row.state is Health.REPORTING and row.since == T0 + 121  # a new run of readings


def test_offline_status_until_a_later_reading_or_online_status() -> None:
    clock = Clock(T0 + 10)
    m = model(clock)
    m.reading("RG01", T0)
    m.status(status("RG01", DeviceState.OFFLINE, "last-will"), T0 + 5)
    row = m.snapshot()[0]
    assert (row.device_id, row.state, row.since) == ("RG01", Health.OFFLINE, T0 + 5)
    assert "last-will" in row.reason
    m.reading("RG01", T0 + 8)  # it is back (before its online status arrives)
    assert states(m)["RG01"] is Health.REPORTING
    m.status(status("RG01", DeviceState.OFFLINE), T0 + 9)
    assert states(m)["RG01"] is Health.OFFLINE
    m.status(status("RG01", DeviceState.ONLINE), T0 + 10)
    assert states(m)["RG01"] is Health.REPORTING
    m.status(status("RG01", DeviceState.OFFLINE), T0 + 3)  # older than the status in force: ignored
    assert states(m)["RG01"] is Health.REPORTING


def test_deadman_detection_opens_and_clears() -> None:
    clock = Clock(T0 + 400)
    m = model(clock)
    m.reading("RG01", T0)
    m.detection(detection("RG01", DetectionKind.OFFLINE, DetectionState.OPEN), T0 + 181)
    row = next(r for r in m.snapshot() if r.device_id == "RG01")
    assert row.state is Health.OFFLINE and row.since == T0 + 181 and "离线检测" in row.reason
    m.detection(detection("RG01", DetectionKind.OFFLINE, DetectionState.CLEAR), T0 + 390)
    assert states(m)["RG01"] is Health.STALE  # cleared, but still no reading


def test_faulty_by_status_sensor_fault_or_recent_dead_letters() -> None:
    clock = Clock(T0)
    m = model(clock)
    for d in ("RG01", "RG02", "GS01"):
        m.reading(d, T0)
    m.status(status("RG01", DeviceState.FAULT, "pressure sensor failed"), T0)
    m.detection(detection("RG02", DetectionKind.SENSOR_FAULT, DetectionState.OPEN, ["stuck"]), T0)
    m.dead_letter(dead("GS01"), T0)
    m.dead_letter(dead("GS01", Reason.DUPLICATE), T0)  # not the device's fault
    m.dead_letter(dead("GS01"), T0 + 5)  # stamped by a host whose clock is ahead: recent all the same
    rows = {r.device_id: r for r in m.snapshot()}
    assert {d: r.state for d, r in rows.items()} == {d: Health.FAULTY for d in rows}
    assert "pressure sensor failed" in rows["RG01"].reason
    assert "stuck" in rows["RG02"].reason
    assert "2 条死信" in rows["GS01"].reason and "out_of_range level_m" in rows["GS01"].reason
    m.detection(detection("RG02", DetectionKind.SENSOR_FAULT, DetectionState.CLEAR), T0 + 1)
    m.status(status("RG01", DeviceState.ONLINE), T0 + 1)
    clock.t = T0 + 5 + WINDOW + 1
    for d in ("RG01", "RG02", "GS01"):
        m.reading(d, clock.t)
    assert set(states(m).values()) == {Health.REPORTING}  # the dead letter left the window


def test_offline_wins_over_faulty_and_the_groups_come_in_order() -> None:
    clock = Clock(T0 + 30)
    m = model(clock)
    m.reading("RG02", T0 + 30)
    m.dead_letter(dead("RG01"), T0)
    m.status(status("RG01", DeviceState.OFFLINE), T0 + 1)
    m.dead_letter(dead("GS01"), T0)
    rows = m.snapshot()
    assert [(r.device_id, r.state) for r in rows] == [
        ("GS01", Health.FAULTY),
        ("RG01", Health.OFFLINE),
        ("RG02", Health.REPORTING),
    ]
    assert m.counts(rows) == {"faulty": 1, "offline": 1, "stale": 0, "unknown": 0, "reporting": 1}


def test_memory_is_bounded_to_the_registry_and_reasons_are_cut() -> None:
    clock = Clock()
    m = model(clock)
    for i in range(500):
        m.reading(f"X{i}", T0)
        m.status(status(f"X{i}", DeviceState.OFFLINE), T0)
    assert m._tracks == {} and m.ignored == 1000
    for _ in range(3 * DEAD_LETTER_MEMORY):
        m.dead_letter(dead("RG01", message="x" * 1900), T0)
    m.status(status("RG02", DeviceState.FAULT, "y" * 200), T0)
    rows = {r.device_id: r for r in m.snapshot()}
    assert len(m._tracks["RG01"].dead_letters) == DEAD_LETTER_MEMORY
    assert f"≥{DEAD_LETTER_MEMORY} 条死信" in rows["RG01"].reason
    assert all(len(r.reason) <= REASON_MAX_CHARS for r in rows.values())
    # a device leaving the registry is dropped, one joining it appears
    smaller = Registry(devices=[device("RG02", 10), device("NEW1", 60)])
    m.registry = smaller
    assert [r.device_id for r in m.snapshot()] == ["RG02", "NEW1"] and set(m._tracks) == {"RG02"}


def test_records_as_they_come_from_kafka() -> None:
    clock = Clock(T0)
    m = model(clock)
    one = b'{"device_id":"RG01","site":"site1","ts":"2026-01-01T00:00:00Z"}'
    two = b'{"device_id":"RG02","site":"site1"}'
    assert m.apply_record(topics.kafka_telemetry(Family.HYDRO), b"RG01", pack([two, one]), T0)
    assert states(m)["RG01"] is Health.REPORTING and states(m)["RG02"] is Health.REPORTING
    assert m.apply_record(topics.DEVICE_STATUS, b"GS01", encode(status("GS01", DeviceState.OFFLINE)), T0)
    assert m.apply_record(topics.DEADLETTER, None, encode(dead("RG01")), T0)
    assert states(m) == {"GS01": Health.OFFLINE, "RG01": Health.FAULTY, "RG02": Health.REPORTING}
    det = encode(detection("RG02", DetectionKind.OFFLINE, DetectionState.OPEN))
    assert m.apply_record(topics.DETECTIONS, b"RG02", det, T0 + 1)
    assert states(m)["RG02"] is Health.OFFLINE
    # malformed or foreign records tell nothing and never raise
    for topic, value in [
        (topics.DEVICE_STATUS, b"{not json"),
        (topics.DEADLETTER, b'{"reason": "nope"}'),
        (topics.DETECTIONS, b'{"type":"tocsin.lifecycle_tick","fingerprint":"x","ts":"2026-01-01T00:00:00Z"}'),
        (topics.kafka_telemetry(Family.HYDRO), b"tocsin.batch.v1\nno newline at the end"),
        (topics.ALERTS, b"{}"),
        (topics.DEVICE_STATUS, b""),
    ]:
        assert not m.apply_record(topic, None, value, T0 + 2)


# --------------------------------------------------------------------------- property
@dataclass(frozen=True)
class Ev:
    kind: str  # reading, status, det_off, det_fault, dead
    device: str
    dt: float  # after the previous event
    arg: str = ""


DEVICES = ("RG01", "RG02", "GS01", "ZZ99")  # ZZ99 is not registered
KIND_ARGS = {
    "reading": [""],
    "status": ["online", "offline", "fault"],
    "det_off": ["open", "clear"],
    "det_fault": ["open", "clear"],
    "dead": ["out_of_range", "duplicate"],
}
events = st.lists(
    st.sampled_from(list(KIND_ARGS)).flatmap(
        lambda kind: st.builds(
            Ev,
            kind=st.just(kind),
            device=st.sampled_from(DEVICES),
            dt=st.sampled_from([0.0, 1.0, 5.0, 15.0, 50.0, 200.0, 1000.0]),
            arg=st.sampled_from(KIND_ARGS[kind]),
        )
    ),
    max_size=40,
)


def expected(evs: list[tuple[float, Ev]], d: Device, now: float) -> Health:
    """The rules of the module docstring, restated over the whole history."""
    mine = [(t, e) for t, e in evs if e.device == d.device_id]
    readings = [t for t, e in mine if e.kind == "reading"]
    last = max(readings) if readings else None
    statuses = [(t, e.arg) for t, e in mine if e.kind == "status" and e.arg in ("online", "offline", "fault")]
    st_t, st_v = max(statuses, key=lambda x: x[0]) if statuses else (None, None)
    # among equal times the later event wins
    if statuses:
        st_v = [v for t, v in statuses if t == st_t][-1]

    def open_since(kind: str) -> float | None:
        since = None
        for t, e in mine:
            if e.kind == kind and e.arg in ("open", "clear"):
                since = (since if since is not None else t) if e.arg == "open" else None
        return since

    off_since, fault_since = open_since("det_off"), open_since("det_fault")
    if st_v == "offline" and (last is None or st_t >= last):  # type: ignore[operator]
        return Health.OFFLINE
    if off_since is not None and (last is None or off_since >= last):
        return Health.OFFLINE
    recent = any(e.kind == "dead" and e.arg == "out_of_range" and now - t <= WINDOW for t, e in mine)
    if st_v == "fault" or fault_since is not None or recent:
        return Health.FAULTY
    if last is None:
        return Health.STALE if now - T0 > 2 * d.interval_s else Health.UNKNOWN
    return Health.STALE if now - last > 2 * d.interval_s else Health.REPORTING


@settings(max_examples=300, deadline=None)
@given(evs=events, tail=st.sampled_from([0.0, 10.0, 25.0, 130.0, 850.0, 900.0, 901.0]))
def test_states_follow_the_rules_over_random_histories(evs: list[Ev], tail: float) -> None:
    clock = Clock()
    m = model(clock)
    timed: list[tuple[float, Ev]] = []
    t = T0
    for e in evs:
        t += e.dt
        clock.t = t
        timed.append((t, e))
        if e.kind == "reading":
            m.reading(e.device, t)
        elif e.kind == "status" and e.arg in ("online", "offline", "fault"):
            m.status(status(e.device, DeviceState(e.arg)), t)
        elif e.kind in ("det_off", "det_fault") and e.arg in ("open", "clear"):
            kind = DetectionKind.OFFLINE if e.kind == "det_off" else DetectionKind.SENSOR_FAULT
            m.detection(detection(e.device, kind, DetectionState(e.arg)), t)
        elif e.kind == "dead" and e.arg in ("out_of_range", "duplicate"):
            m.dead_letter(dead(e.device, Reason(e.arg)), t)
    clock.t = t + tail
    rows = m.snapshot()
    # every registered device exactly once, nothing else, in the console's order
    assert sorted(r.device_id for r in rows) == sorted(d.device_id for d in REGISTRY.devices)
    ranks = [ORDER.index(r.state) for r in rows]
    assert ranks == sorted(ranks)
    assert sum(m.counts(rows).values()) == len(REGISTRY.devices)
    for r in rows:
        d = REGISTRY.get(r.device_id)
        assert d is not None
        assert r.state is expected(timed, d, clock.t), (r, timed)
        assert r.since <= clock.t and len(r.reason) <= REASON_MAX_CHARS
        if r.state is Health.REPORTING:
            assert r.last_seen is not None and clock.t - r.last_seen <= 2 * d.interval_s
            assert r.since <= r.last_seen
    assert set(m._tracks) <= {"RG01", "RG02", "GS01"}


def test_a_snapshot_may_serve_again_for_at_most_its_age() -> None:
    clock = Clock()
    m = model(clock)
    m.reading("RG02", T0)
    assert states(m)["RG02"] is Health.REPORTING
    clock.t = T0 + 30  # RG02 is stale now
    first = m.snapshot(max_age_s=1.0)  # the last snapshot is 30 s old: judged again
    assert {r.device_id: r.state for r in first}["RG02"] is Health.STALE
    m.reading("RG02", T0 + 30.5)
    clock.t = T0 + 30.5
    assert {r.device_id: r.state for r in m.snapshot(max_age_s=1.0)}["RG02"] is Health.STALE  # served again
    assert states(m)["RG02"] is Health.REPORTING  # max_age_s 0: always judged now
    assert m.counts(max_age_s=1.0)["reporting"] == 1
