"""Silences and the alert lifecycle on real Kafka, through a real worker.

The stack (tests/integration/stack.py: SMS and broadcast emulators, gateway, worker, operator API as
processes) runs once for the module. Detections are produced straight to Kafka ``detections`` (the
detector side has its own end-to-end tests), so each test controls exactly what the alert stage sees.

1. A silence created over the operator API's HTTP endpoint suppresses the SMS of a matching alert,
   but not the alert (on Kafka ``alerts``) nor its audit (``alerts.deliveries``, outcome
   ``suppressed`` naming the silence); once the silence is deleted, the next message is delivered.
2. Escalation yellow -> orange -> red -> all-clear is Alert, Update, Update, Cancel, each
   referencing every earlier message of the incident.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.stack import SMS_KEY, Stack, api_auth, running_stack
from tocsin.detectors.engine import detection_key
from tocsin.schemas import topics
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Registry
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
AREA = f"{random.randint(4, 5)}{random.randint(0, 99999):05d}"
PHONE = f"+86137{random.randint(0, 99999999):08d}"


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    registry = Registry(sms_recipients={AREA: [PHONE]})
    with running_stack(services, tmp_path_factory.mktemp("silence"), RUN, registry) as s:
        yield s


@pytest.fixture(scope="module")
def producer(stack: Stack) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=stack.env["TOCSIN_KAFKA_BOOTSTRAP"], acks="all")
    yield p
    p.close(10)


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """As the supervisor 王工: an area-wide silence takes that role."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
    headers = {"Content-Type": "application/json", **api_auth("王工")}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def detection(device: str, kind: str, state: DetectionState, level: WarningLevel | None, rev: int) -> Detection:
    now = datetime.now(UTC)
    return Detection(
        id=f"{device}:{kind}:{rev}",
        device_id=device,
        site=f"site-{RUN}",
        family=Family.HYDRO,
        kind=kind,
        state=state,
        level=level,
        value=40.0 + 20 * rev,
        threshold=35.0,
        unit="mm",
        window_s=3600.0,
        onset=now - timedelta(minutes=1),
        ts=now,
        revision=rev,
        area_code=AREA,
        town="青山镇",
        correlation_id=f"silence-{RUN}-{device}-{rev}",
    )


def send(producer: KafkaProducer, d: Detection) -> None:
    producer.send(topics.DETECTIONS, key=detection_key(d), value=encode(d)).get(timeout=30)


def records(bootstrap: str, topic: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every record of ``topic`` (from the start, bounded by a 1.5 s idle timeout) that ``keep`` accepts."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1500,
    )
    try:
        return [v for v in (json.loads(r.value) for r in consumer if r.value) if keep(v)]
    finally:
        consumer.close()


def sms_to(stack: Stack, phone: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{stack.sms_url}/v1/sms", headers={"Authorization": f"Bearer {SMS_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [m for m in json.loads(resp.read())["messages"] if m["to"] == phone]


def test_a_silence_suppresses_delivery_but_not_the_alert_or_its_audit(stack: Stack, producer: KafkaProducer) -> None:
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    api = f"http://127.0.0.1:{stack.api_port}"
    now = datetime.now(UTC)
    silence = {
        "area": AREA,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "creator": "王工",
        "reason": f"雨量计检修 {RUN}",
    }
    status, created = http("POST", f"{api}/silences", silence)
    assert status in (200, 201, 202), created
    silence_id = created["id"]
    wait_until(lambda: silence_id in [s["id"] for s in http("GET", f"{api}/silences")[1]["silences"]], 30, "listed")
    # The API read it back from Kafka; the worker's store reads the same compacted topic. Give it a
    # bounded moment to do the same before the alert arrives.
    time.sleep(2.0)
    device = f"RG-{RUN}"
    fingerprint = f"hydro:{AREA}:rainstorm"
    send(producer, detection(device, "rainfall", DetectionState.OPEN, WarningLevel.BLUE, 0))

    # 1. The alert is issued and on Kafka all the same.
    alerts = wait_until(
        lambda: records(bootstrap, topics.ALERTS, lambda a: a.get("fingerprint") == fingerprint),
        60,
        "the silenced alert on Kafka",
    )
    first = alerts[0]
    assert (first["msg_type"], first["level"]) == ("Alert", "blue")

    # 2. Its audit: the SMS (and broadcast) deliveries recorded as suppressed, naming the silence.
    def suppressed() -> list[dict[str, Any]]:
        return records(
            bootstrap,
            topics.DELIVERIES,
            lambda r: r.get("alert_id") == first["identifier"] and r.get("outcome") == "suppressed",
        )

    held = wait_until(suppressed, 60, "suppressed delivery records")
    assert {r["channel"] for r in held} >= {"sms"}
    assert all(silence_id in r["detail"] and "王工" in r["detail"] and RUN in r["detail"] for r in held)
    # 3. The carrier got nothing (the records are written after the sends would have happened).
    assert sms_to(stack, PHONE) == []

    # Delete the silence; the next message of the incident (escalation to orange) is delivered.
    status, _ = http("DELETE", f"{api}/silences/{silence_id}")
    assert status in (200, 202)
    wait_until(lambda: silence_id not in [s["id"] for s in http("GET", f"{api}/silences")[1]["silences"]], 30, "gone")
    time.sleep(2.0)  # the worker's store reads the tombstone
    send(producer, detection(device, "rainfall", DetectionState.UPDATE, WarningLevel.ORANGE, 1))
    texts = wait_until(lambda: sms_to(stack, PHONE), 60, "the SMS after the silence was deleted")
    assert len(texts) == 1 and "暴雨橙色预警" in texts[0]["text"]
    update = wait_until(
        lambda: records(
            bootstrap, topics.ALERTS, lambda a: a.get("fingerprint") == fingerprint and a.get("msg_type") == "Update"
        ),
        30,
        "the Update on Kafka",
    )[0]
    delivered = wait_until(
        lambda: records(
            bootstrap,
            topics.DELIVERIES,
            lambda r: r.get("alert_id") == update["identifier"] and r.get("channel") == "sms",
        ),
        30,
        "the Update's SMS delivery record",
    )
    assert {r["outcome"] for r in delivered} <= {"accepted", "delivered"} and "accepted" in {
        r["outcome"] for r in delivered
    }


def test_escalation_yellow_orange_red_then_all_clear_is_one_reference_chain(
    stack: Stack, producer: KafkaProducer
) -> None:
    bootstrap = stack.env["TOCSIN_KAFKA_BOOTSTRAP"]
    device = f"WL-{RUN}"
    fingerprint = f"hydro:{AREA}:flood"
    steps = [
        (DetectionState.OPEN, WarningLevel.YELLOW),
        (DetectionState.UPDATE, WarningLevel.ORANGE),
        (DetectionState.UPDATE, WarningLevel.RED),
        (DetectionState.CLEAR, None),
    ]
    for rev, (state, level) in enumerate(steps):
        send(producer, detection(device, "water_level", state, level, rev))

    chain = wait_until(
        lambda: (
            found
            if len(found := records(bootstrap, topics.ALERTS, lambda a: a.get("fingerprint") == fingerprint)) >= 4
            else None
        ),
        60,
        "Alert, Update, Update, Cancel on Kafka",
    )
    assert [(a["msg_type"], a["level"]) for a in chain] == [
        ("Alert", "yellow"),
        ("Update", "orange"),
        ("Update", "red"),
        ("Cancel", "red"),
    ]
    ids = [a["identifier"] for a in chain]
    # CAP 1.2 ``references`` names the earlier messages referenced, not necessarily all: each message
    # references the original Alert and the message it replaces (alerts/engine.py ``_bound_chain``)
    assert [a["references"] for a in chain] == [[], [ids[0]], [ids[0], ids[1]], [ids[0], ids[2]]]
    assert len(set(ids)) == 4
    assert [a["revision"] for a in chain] == [0, 1, 2, 3]
    assert "洪水" in chain[0]["headline"] and chain[3]["headline"].endswith("解除")
