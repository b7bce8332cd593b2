"""Safety rule on the real stack: a supervisor's silence over the whole district holds back a blue
warning, and still lets a red warning reach the residents by SMS and the loudspeakers by broadcast.

The silence goes in through the operator API (supervisor role, as an area-wide silence needs), travels
on Kafka ``alerts.silences`` to the worker, and the worker's notifier applies it; detections are
produced straight to Kafka ``detections`` so the test controls exactly what the alert stage sees.
The silence is deleted at the end, so later stacks on the same Kafka never see it.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.stack import BROADCAST_KEY, Stack, api_auth, read_records, running_stack
from tocsin.detectors.engine import detection_key
from tocsin.schemas import topics
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Registry
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
DISTRICT = f"6{random.randint(0, 99999):05d}"
PHONE = f"+86136{random.randint(0, 99999999):08d}"


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    registry = Registry(sms_recipients={DISTRICT: [PHONE]})
    with running_stack(services, tmp_path_factory.mktemp("red"), RUN, registry) as s:
        yield s


def call(method: str, url: str, who: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
    headers = {"Content-Type": "application/json", **api_auth(who)}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def detection(device: str, kind: str, level: WarningLevel) -> Detection:
    now = datetime.now(UTC)
    return Detection(
        id=f"{device}:{kind}:0",
        device_id=device,
        site=f"site-{RUN}",
        family=Family.HYDRO,
        kind=kind,
        state=DetectionState.OPEN,
        level=level,
        value=120.0,
        threshold=100.0,
        unit="mm",
        window_s=10800.0,
        onset=now - timedelta(minutes=1),
        ts=now,
        revision=0,
        area_code=DISTRICT,
        town="临江区",
        correlation_id=f"red-{RUN}-{device}",
    )


def outcomes(stack: Stack, alert_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for raw in read_records(stack.env["TOCSIN_KAFKA_BOOTSTRAP"], topics.DELIVERIES):
        r = json.loads(raw.value or b"{}")
        if r.get("alert_id") == alert_id:
            out.setdefault(r["channel"], set()).add(r["outcome"])
    return out


def issued(stack: Stack, fingerprint: str) -> dict[str, Any] | None:
    for raw in read_records(stack.env["TOCSIN_KAFKA_BOOTSTRAP"], topics.ALERTS):
        a = json.loads(raw.value or b"{}")
        if a.get("fingerprint") == fingerprint:
            return a
    return None


def broadcasts(stack: Stack, fingerprint: str) -> list[dict[str, Any]]:
    url = f"{stack.broadcast_url}/v1/broadcasts?alert_id={urllib.parse.quote(fingerprint)}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {BROADCAST_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(json.loads(resp.read())["broadcasts"])


def test_a_district_wide_silence_never_holds_back_a_red_warning(stack: Stack) -> None:
    api = f"http://127.0.0.1:{stack.api_port}"
    now = datetime.now(UTC)
    silence = {
        "area": DISTRICT,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(minutes=20)).isoformat(),
        "reason": f"全区检修 {RUN}",
    }
    # an operator may not silence the whole district; the supervisor may
    status, body = call("POST", f"{api}/silences", "李值班", silence)
    assert status == 403, body
    status, body = call("POST", f"{api}/silences", "王工", silence)
    assert status in (200, 201, 202), body
    silence_id = body["id"]
    producer = KafkaProducer(bootstrap_servers=stack.env["TOCSIN_KAFKA_BOOTSTRAP"], acks="all")
    try:
        wait_until(
            lambda: silence_id in [s["id"] for s in call("GET", f"{api}/silences", "王工")[1]["silences"]],
            30,
            "the silence listed",
        )
        time.sleep(2.0)  # the worker's silence store follows the same compacted topic

        blue = detection(f"RG-{RUN}", "rainfall", WarningLevel.BLUE)
        red = detection(f"WL-{RUN}", "water_level", WarningLevel.RED)
        for d in (blue, red):
            producer.send(topics.DETECTIONS, key=detection_key(d), value=encode(d)).get(timeout=30)

        blue_alert = wait_until(lambda: issued(stack, f"hydro:{DISTRICT}:rainstorm"), 60, "the blue alert")
        red_alert = wait_until(lambda: issued(stack, f"hydro:{DISTRICT}:flood"), 60, "the red alert")
        assert (blue_alert["level"], red_alert["level"]) == ("blue", "red")

        # the blue warning is held back by the silence (its deliveries recorded as suppressed) ...
        held = wait_until(lambda: outcomes(stack, blue_alert["identifier"]).get("sms"), 60, "blue SMS records")
        assert held == {"suppressed"}
        # ... the red one reaches the residents' phones and the district's loudspeakers
        texts = wait_until(lambda: [m for m in stack.sms_messages([PHONE]) if "红色" in m["text"]], 60, "the red SMS")
        assert len(texts) == 1 and "洪水红色预警" in texts[0]["text"]
        assert not [m for m in stack.sms_messages([PHONE]) if "蓝色" in m["text"]]
        played = wait_until(lambda: broadcasts(stack, red_alert["fingerprint"]), 60, "the red broadcast")
        assert len(played) == 1

        def both_channels() -> dict[str, set[str]] | None:
            got = outcomes(stack, red_alert["identifier"])
            return got if {"sms", "broadcast"} <= set(got) else None

        sent = wait_until(both_channels, 60, "the red delivery records")
        assert "suppressed" not in set().union(*sent.values())
        assert "accepted" in sent["sms"] and "accepted" in sent["broadcast"]
        # the override is counted where the on-call engineer looks
        metrics = stack.worker_metrics()
        assert 'tocsin_alert_silence_overrides_total{hazard="hydro",level="red"} 1.0' in metrics
    finally:
        producer.close(10)
        call("DELETE", f"{api}/silences/{silence_id}", "王工")
