"""Poison records on every topic the worker reads: each one is set aside, the worker stays up.

Real Kafka and a real worker process (tests/integration/stack.py) with the SMS emulator. On
partition 0 of each topic the worker consumes, a poison record is produced, then a valid one:

- ``telemetry.<family>``: bytes that are not JSON (fire), a deadman tick without its time (hydro),
  the issue's seismic packet at 0.5 Hz, below the shared seismic band 10..1000 Hz
  (schemas/seismic_band.py) so the worker's decoder refuses it (seismic), a reading
  missing its fields (hazmat); then a valid reading of each family.
- ``detections``: a detection missing its fields and a lifecycle tick with an empty fingerprint;
  ``detections.urgent``: an object with a number as its id; then a valid detection on each, which
  must become an alert message.
- ``alerts``: an object with a few alert keys and no valid one; then a valid alert, which must be
  delivered (its SMS audit record on ``alerts.deliveries``: accepted).
- ``alerts.silences`` (read by the worker's silence store, a thread, not an agent; its dead letters
  carry the agent name ``silences``): a malformed silence, then a valid one, which must suppress
  the SMS of an alert in its area (audit record ``suppressed``, naming the silence).

Then: every poison record is on ``worker.deadletter`` with its topic, partition, offset, reason and
bytes; every valid record had its effect (the detector state written at its offset -- the table's
changelog --, the alert, the delivery); the worker process is the one started (same PID) and its
log shows no agent crash or restart. ``alerts.acks`` is not read by the worker (the operator API
reads it), so it is not part of this test.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.alerts.factories import alert_message
from tests.integration.stack import Stack, running_stack, wait_records
from tocsin.alerts.silences import Silence
from tocsin.schemas import topics
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.deadletter import WorkerDeadLetter, WorkerReason
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Registry
from tocsin.schemas.telemetry import FireDetection, GasReading, SeismicPacket, WaterLevel
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
# three areas no other run's alerts reach: detections lane, urgent lane, alerts topic (+ a silenced one)
AREAS = [f"{random.randint(6, 7)}{random.randint(0, 99999):05d}" for _ in range(4)]
PHONE = f"+86136{random.randint(0, 99999999):08d}"
P = 0  # every record of the test goes to partition 0 of its topic


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    registry = Registry(sms_recipients={area: [PHONE] for area in AREAS})
    with running_stack(
        services, tmp_path_factory.mktemp("poison"), RUN, registry, {"TOCSIN_INFLUX_URL": ""}, roles=("sms", "worker")
    ) as s:
        yield s


def seismic_packet(rate_hz: float, ts: datetime) -> SeismicPacket:
    samples = [0.0, 1e-6, -1e-6, 0.0] * max(1, int(rate_hz))
    return SeismicPacket(device_id=f"ST-{RUN}", site=f"s-{RUN}", ts=ts, sample_rate_hz=rate_hz, samples=samples)


def low_rate_packet(ts: datetime) -> bytes:
    """The issue's seismic crasher, 0.5 Hz: raw JSON, since SeismicPacket itself refuses the rate now."""
    body = {
        "type": "seismic.waveform",
        "device_id": f"ST-{RUN}",
        "site": f"s-{RUN}",
        "ts": ts.isoformat(),
        "sample_rate_hz": 0.5,
        "samples": [0.0, 1e-6, -1e-6, 0.0],
    }
    return json.dumps(body).encode()


def detection(area: str, level: WarningLevel, now: datetime) -> Detection:
    return Detection(
        id=f"GD-{RUN}:gas_h2s:{area}:0",
        device_id=f"GD-{RUN}",
        site=f"p-{RUN}",
        family=Family.HAZMAT,
        kind="gas_h2s",
        state=DetectionState.OPEN,
        level=level,
        value=25.0 if level is WarningLevel.ORANGE else 12.0,
        threshold=10.0,
        unit="mg/m3",
        onset=now - timedelta(seconds=30),
        ts=now,
        area_code=area,
        town="青山镇",
    )


# The topics are shared with other tests, some of which read them with a plain ``json.loads(v)[key]``:
# poison on ``detections*`` and ``alerts`` is a JSON object with the keys they look at (and fails the
# schema all the same); undecodable bytes go to ``telemetry.fire`` only, whose readers filter by key.
# Every kind of bad record on every topic is in tests/test_guard.py and tests/schemas/test_records_fuzz.py.
ALERT_LOOKALIKE = {
    "identifier": f"poison-{RUN}",
    "fingerprint": f"poison-{RUN}",
    "msg_type": "poison",
    "level": "poison",
    "devices": [],
    "correlation_id": "",
    "area": {},
}


def poison_json(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def alert_to(area: str, identifier: str) -> bytes:
    a = alert_message(identifier)
    now = datetime.now(UTC)
    a = a.model_copy(
        update={"area": a.area.model_copy(update={"code": area}), "fingerprint": f"hazmat:{area}:gas_leak"}
    )
    return encode(a.model_copy(update={"sent": now, "onset": now}))


def issued_here(log: str, fingerprint: str) -> bool:
    """Whether the worker's JSON log has an ``ALERT Alert`` line for the incident ``fingerprint``."""
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("message", "")).startswith("ALERT Alert ") and entry.get("fingerprint") == fingerprint:
            return True
    return False


def test_poison_on_every_topic_is_dead_lettered_and_the_next_record_is_handled(stack: Stack) -> None:
    t_start = time.monotonic()
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    worker_id = stack.env["TOCSIN_WORKER_ID"]
    pid = stack.worker.p.pid
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    now = datetime.now(UTC)

    def put(topic: str, value: bytes, key: bytes | None = None) -> int:
        return int(producer.send(topic, key=key, value=value, partition=P).get(timeout=30).offset)

    low_rate = low_rate_packet(now)
    poison: list[tuple[str, bytes, WorkerReason, str]] = [  # topic, value, reason, agent
        (topics.kafka_telemetry(Family.FIRE), b"\xff\xfe not json", WorkerReason.UNDECODABLE, "detect-fire"),
        (
            topics.kafka_telemetry(Family.HYDRO),
            f'{{"type":"tocsin.tick","device_id":"RG-{RUN}"}}'.encode(),
            WorkerReason.SCHEMA,
            "detect-hydro",
        ),
        (topics.kafka_telemetry(Family.HAZMAT), b'{"type": "hazmat.gas"}', WorkerReason.SCHEMA, "detect-hazmat"),
        (
            topics.DETECTIONS,
            poison_json(device_id=f"poison-{RUN}", kind="gas_h2s", state="open"),
            WorkerReason.SCHEMA,
            "confirm",
        ),
        (
            topics.DETECTIONS,
            b'{"type":"tocsin.lifecycle_tick","fingerprint":"","ts":"2026-07-01T08:00:00Z"}',
            WorkerReason.SCHEMA,
            "confirm",
        ),
        (topics.DETECTIONS_URGENT, poison_json(id=1, device_id=f"poison-{RUN}"), WorkerReason.SCHEMA, "confirm-urgent"),
        (topics.ALERTS, poison_json(**ALERT_LOOKALIKE), WorkerReason.SCHEMA, "deliver"),
    ]
    # below the shared seismic band: the decoder refuses it (a schema dead letter), the detector never sees it
    poison.append((topics.kafka_telemetry(Family.SEISMIC), low_rate, WorkerReason.SCHEMA, "detect-seismic"))
    placed: dict[tuple[str, int], tuple[bytes, WorkerReason, str]] = {}
    for topic, value, reason, agent in poison:
        placed[(topic, put(topic, value, key=f"poison-{RUN}".encode()))] = (value, reason, agent)

    # alerts.silences: a malformed silence, then a valid one for the last area
    silence_id = f"poison-{RUN}"
    bad_silence = b"{not a silence"
    placed[(topics.SILENCES, put(topics.SILENCES, bad_silence, key=f"poison-{RUN}".encode()))] = (
        bad_silence,
        WorkerReason.UNDECODABLE,
        "silences",
    )
    silence = Silence(
        id=silence_id,
        area=AREAS[3],
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        creator="值班员",
        reason=f"poison test {RUN}",
    )
    put(topics.SILENCES, encode(silence), key=silence_id.encode())

    # The valid records, after the poison in the same partitions.
    readings = {
        Family.FIRE: FireDetection(
            device_id=f"FT-{RUN}", site=f"t-{RUN}", ts=now, kind="smoke", confidence=0.5, bearing_deg=10.0
        ),
        Family.HYDRO: WaterLevel(device_id=f"WL-{RUN}", site=f"h-{RUN}", ts=now, level_m=1.0),
        Family.SEISMIC: seismic_packet(100.0, now),
        Family.HAZMAT: GasReading(device_id=f"GD-{RUN}", site=f"p-{RUN}", ts=now, gas="H2S", value=1.0, unit="mg/m3"),
    }
    reading_at = {
        family: put(topics.kafka_telemetry(family), encode(r), key=r.device_id.encode())
        for family, r in readings.items()
    }
    put(topics.DETECTIONS, encode(detection(AREAS[0], WarningLevel.YELLOW, now)), key=f"hazmat:{AREAS[0]}".encode())
    put(
        topics.DETECTIONS_URGENT,
        encode(detection(AREAS[1], WarningLevel.ORANGE, now)),
        key=f"hazmat:{AREAS[1]}".encode(),
    )
    time.sleep(3.0)  # the worker's silence store (a thread polling every 0.5 s) applies the silence
    delivered_id, silenced_id = f"A-{RUN}-delivered", f"A-{RUN}-silenced"
    put(topics.ALERTS, alert_to(AREAS[2], delivered_id), key=f"hazmat:{AREAS[2]}:gas_leak".encode())
    put(topics.ALERTS, alert_to(AREAS[3], silenced_id), key=f"hazmat:{AREAS[3]}:gas_leak".encode())
    producer.close(10)

    # 1. Every poison record is on worker.deadletter, with where it came from and its bytes.
    def ours(rec: Any) -> bool:
        letter = json.loads(rec.value)
        return (letter["topic"], letter["offset"]) in placed and letter["partition"] == P

    found = wait_records(
        bootstrap, topics.WORKER_DEADLETTER, ours, want=len(placed), start=stack.start_offsets, timeout_s=60
    )
    letters = {(x.topic, x.offset): x for x in (WorkerDeadLetter.model_validate_json(r.value) for r in found)}
    assert set(letters) == set(placed), stack.logs()
    for where, (value, reason, agent) in placed.items():
        letter = letters[where]
        assert (letter.reason, letter.agent, letter.raw) == (reason, agent, value), letter
        assert letter.key_b64 == base64.b64encode(f"poison-{RUN}".encode()).decode()
    seismic_letter = letters[next(w for w in placed if "seismic" in w[0])]
    assert "10..1000 Hz" in seismic_letter.message, seismic_letter

    # 2. Each valid record had its effect.
    for family, offset in reading_at.items():  # the detector state, written at the reading's offset
        device = readings[family].device_id.encode()
        changelog = f"{worker_id}-detector-{family.value}-changelog"
        wait_records(
            bootstrap,
            changelog,
            lambda r, device=device, offset=offset: (  # type: ignore[misc]
                r.key is not None
                and device in r.key
                and r.value is not None
                and json.loads(r.value).get("position") == [P, offset]
            ),
            timeout_s=30,
        )
    for area, lane in ((AREAS[0], "detections"), (AREAS[1], "detections.urgent")):
        issued = wait_records(
            bootstrap,
            topics.ALERTS,
            lambda r, area=area: json.loads(r.value).get("area", {}).get("code") == area,  # type: ignore[misc]
            start=stack.start_offsets,
            timeout_s=30,
        )
        # Other tests' workers on the shared broker read the same topic and may issue their own copy:
        # the log shows that this worker issued it (its ALERT line carries the incident's fingerprint;
        # the identifier is the national one, GB/T 35965.1-2018 Appendix A, with no area in it).
        assert {json.loads(r.value)["msg_type"] for r in issued} == {"Alert"}, lane
        assert issued_here(stack.worker.text(), f"hazmat:{area}:gas_leak"), lane
    records = wait_records(
        bootstrap,
        topics.DELIVERIES,
        lambda r: (
            json.loads(r.value).get("alert_id") in (delivered_id, silenced_id)
            and json.loads(r.value).get("channel") == "sms"
        ),
        want=2,
        start=stack.start_offsets,
        timeout_s=30,
    )
    outcome = {json.loads(r.value)["alert_id"]: json.loads(r.value) for r in records}
    assert outcome[delivered_id]["outcome"] == "accepted", outcome
    assert outcome[silenced_id]["outcome"] == "suppressed" and silence_id in outcome[silenced_id]["detail"], outcome

    # 3. The same worker process, no agent crash or restart, the dead letters counted.
    assert stack.worker.p.poll() is None and stack.worker.p.pid == pid
    log = stack.worker.text()
    for sign in ("Crashed reason", "Restarting dead", "Max restarts exceeded"):  # Faust and mode log these
        assert sign not in log, log[-4000:]
    assert f"malformed silence 'poison-{RUN}' skipped" in log
    metrics = stack.worker_metrics()
    for (_topic, _offset), (_value, reason, agent) in placed.items():
        assert f'tocsin_worker_deadletters_total{{agent="{agent}",reason="{reason.value}"}}' in metrics
    assert time.monotonic() - t_start < 90
