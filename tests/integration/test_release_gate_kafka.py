"""The release gate in the real worker on the real Kafka, without an operator: a held warning is
escalated to the duty supervisor by SMS at T1 and released to the public at T2 (so a missing operator
cannot keep it from the public past the national 10-minute mark, issue 17); a red warning configured
``approve`` goes out at once (enforced in code). T1 and T2 are shortened to seconds here."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.stack import Stack, rain_gauge, read_records, running_stack, wait_records
from tocsin.alerts.release import Action, ReleaseEvent
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.wire import encode

GAUGE = rain_gauge("+86135")
SUPERVISOR = "+8613500000777"
T1_S, T2_S = 2.0, 6.0


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("release")
    routing = {
        "routes": [{"name": "public", "audience": "public", "channels": ["sms"], "residents": True}],
        "release": {"rules": [{"mode": "approve"}], "t1_s": T1_S, "t2_s": T2_S, "supervisors": [SUPERVISOR]},
    }
    (tmp / "routing.json").write_text(json.dumps(routing), encoding="utf-8")
    env = {"TOCSIN_ROUTING_FILE": str(tmp / "routing.json")}
    with running_stack(services, tmp, GAUGE.run_id, GAUGE.registry, env, roles=("sms", "worker")) as s:
        yield s


def produce(stack: Stack, level: WarningLevel) -> Alert:
    run, now = uuid.uuid4().hex[:8], datetime.now(UTC)
    a = Alert(
        identifier=f"{GAUGE.area}{run}-hydro-000",
        fingerprint=f"hydro:{GAUGE.area}:{run}",
        revision=0,
        msg_type=MsgType.ALERT,
        hazard=Family.HYDRO,
        event="暴雨",
        level=level,
        sent=now,
        onset=now,
        area=AlertArea(code=GAUGE.area, desc="青山镇横溪村"),
        headline=f"青山镇横溪村暴雨{level.zh}预警",
        description="发布测试",
        devices=[GAUGE.device],
    )
    producer = KafkaProducer(bootstrap_servers=stack.env["TOCSIN_KAFKA_BOOTSTRAP"], acks="all")
    try:
        producer.send(topics.ALERTS, key=a.fingerprint.encode(), value=encode(a)).get(timeout=30)
    finally:
        producer.close(10)
    return a


def texts(stack: Stack, phones: list[str], headline: str) -> list[dict[str, object]]:
    return [m for m in stack.sms_messages(phones) if headline in str(m["text"])]


def test_unapproved_warning_is_escalated_then_released_and_red_is_never_held(stack: Stack) -> None:
    held = produce(stack, WarningLevel.YELLOW)
    t0 = time.monotonic()
    # operators would have it at once; the public not before T2
    time.sleep(T1_S / 2)
    assert texts(stack, GAUGE.phones, held.headline) == []
    # T1: the duty supervisor is told (the worker's release clock ticks every 5 s)
    sup = wait_until(
        lambda: [m for m in stack.sms_messages([SUPERVISOR]) if "等待审批" in str(m["text"])],
        30,
        "the supervisor's escalation SMS",
    )
    assert held.area.desc in str(sup[0]["text"])
    # T2: released to the public without anybody's approval
    got = wait_until(lambda: len(texts(stack, GAUGE.phones, held.headline)) == 2, 40, "the timed release")
    assert got and time.monotonic() - t0 >= T2_S
    bootstrap, key = stack.env["TOCSIN_KAFKA_BOOTSTRAP"], held.fingerprint.encode()
    records = wait_records(bootstrap, topics.RELEASES, lambda r: r.key == key, want=3)
    events = [ReleaseEvent.model_validate_json(r.value) for r in records]
    assert [e.action for e in events] == [Action.HELD, Action.ESCALATED, Action.TIMED_RELEASE]
    assert all(e.by == "tocsin" for e in events)

    # red, although the routing file says approve for everything: out at once
    red = produce(stack, WarningLevel.RED)
    t_red = time.monotonic()
    wait_until(lambda: len(texts(stack, GAUGE.phones, red.headline)) == 2, 20, "the red warning's SMS")
    assert time.monotonic() - t_red < T1_S + 5  # no wait for T2 (nor the 5 s tick): not held
    assert [r for r in read_records(bootstrap, topics.RELEASES) if r.key == red.fingerprint.encode()] == []


def test_a_held_warning_survives_a_worker_crash_and_is_released_at_t2(stack: Stack) -> None:
    held = produce(stack, WarningLevel.ORANGE)
    bootstrap, key = stack.env["TOCSIN_KAFKA_BOOTSTRAP"], held.fingerprint.encode()
    wait_records(bootstrap, topics.RELEASES, lambda r: r.key == key, want=1)  # HELD, with the alert
    assert texts(stack, GAUGE.phones, held.headline) == []
    stack.stop_worker(signal.SIGKILL)
    stack.start_worker()  # a new worker, which never saw the alert's hold
    # a restarted worker takes up to a minute to recover its tables on this shared broker
    got = wait_until(lambda: len(texts(stack, GAUGE.phones, held.headline)) == 2, 120, "the timed release")
    assert got
    actions = [
        ReleaseEvent.model_validate_json(r.value).action
        for r in wait_records(bootstrap, topics.RELEASES, lambda r: r.key == key, want=2)
    ]
    assert actions[0] is Action.HELD and Action.TIMED_RELEASE in actions
