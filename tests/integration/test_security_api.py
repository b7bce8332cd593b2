"""Every unauthenticated or unauthorised action on the operator API and the worker's web server is
refused, on the real processes over real Kafka (tests/integration/stack.py: SMS emulator, worker,
operator API; docs/security.md).

Tried as an attacker would: reading alerts and the audit trail without credentials, an ack signed
with someone else's name, a viewer acknowledging or silencing, an operator silencing an area or the
whole district, a ten-year silence, a forged SMS receipt, the worker's ``/table`` pages, and
guessing a password until the lock-out. The legitimate twin of each is allowed, so a refusal is
the policy and not a broken route."""

from __future__ import annotations

import base64
import json
import random
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.procs import Proc, free_port, wait_until
from tests.integration.stack import API_USERS, RECEIPT_SECRET, Stack, api_auth, running_stack, wait_records
from tocsin.alerts.receipts import signed_headers
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.registry import Registry
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
AREA = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"
FP = f"hydro:{AREA}:sec-{RUN}"


def call(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("security")
    with running_stack(services, tmp, RUN, Registry(), roles=("sms", "worker", "api")) as s:
        yield s


@pytest.fixture(scope="module")
def alert(stack: Stack) -> Alert:
    """One alert message on Kafka, shown by the API."""
    now = datetime.now(UTC).replace(microsecond=0)
    a = Alert(
        identifier=f"{AREA}{RUN}-hydro-sec-000",
        fingerprint=FP,
        revision=0,
        msg_type=MsgType.ALERT,
        hazard=Family.HYDRO,
        event="暴雨",
        level=WarningLevel.ORANGE,
        sent=now,
        onset=now,
        area=AlertArea(code=AREA, desc="青山镇横溪村"),
        headline="青山镇横溪村暴雨橙色预警",
        description="安全测试",
        devices=[f"RG-{RUN}"],
        sites=[f"site-{RUN}"],
    )
    producer = KafkaProducer(bootstrap_servers=stack.env["TOCSIN_KAFKA_BOOTSTRAP"], acks="all")
    try:
        producer.send(topics.ALERTS, key=FP.encode(), value=encode(a)).get(timeout=30)
    finally:
        producer.close(10)
    api = f"http://127.0.0.1:{stack.api_port}"
    wait_until(lambda: call(f"{api}/alerts/{FP}", headers=api_auth("张查看"))[0] == 200, 60, "the alert in the API")
    return a


def silence(**over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "device": f"RG-{RUN}",
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "reason": "安全测试",
    }
    return {**body, **over}


def test_reading_needs_credentials_probes_do_not(stack: Stack, alert: Alert) -> None:
    api = f"http://127.0.0.1:{stack.api_port}"
    for path in ("/alerts", "/audit", f"/alerts/{FP}", f"/alerts/{FP}/cap", "/silences", "/users", "/whoami"):
        status, body = call(f"{api}{path}")
        assert status == 401 and body["error"] == "unauthorized", (path, body)
    wrong = {"Authorization": "Basic " + base64.b64encode("张查看:not-the-password".encode()).decode()}
    assert call(f"{api}/alerts", headers=wrong)[0] == 401
    assert call(f"{api}/alerts", headers={"Authorization": "Bearer tcn_0123456789ab.forged"})[0] == 401
    assert call(f"{api}/alerts", "POST")[0] in (401, 405)
    assert call(f"{api}/silences", "POST", silence())[0] == 401
    assert call(f"{api}/silences/any", "DELETE")[0] == 401
    assert call(f"{api}/alerts/{FP}/ack", "POST", {"note": "x"})[0] == 401
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert call(f"{api}{probe}")[0] == 200, probe
    status, listing = call(f"{api}/alerts?state=all&area={AREA}", headers=api_auth("张查看"))
    assert status == 200 and [a["fingerprint"] for a in listing["alerts"]] == [FP]


def test_acks_carry_the_credentials_identity(stack: Stack, alert: Alert) -> None:
    api = f"http://127.0.0.1:{stack.api_port}"
    ack = f"{api}/alerts/{FP}/ack"
    status, body = call(ack, "POST", {"by": "值班主任", "note": "冒名"}, api_auth("李值班"))
    assert status == 403 and body["error"] == "identity_mismatch"
    status, body = call(ack, "POST", {"note": "已核实"}, api_auth("张查看"))  # a viewer may not ack
    assert status == 403 and body["error"] == "forbidden"
    status, body = call(ack, "POST", {"note": "已核实"}, api_auth("李值班"))
    assert status in (201, 202) and body["ack"]["by"] == "李值班"
    # the audit trail (and Kafka) hold exactly the one genuine ack
    status, audit = call(f"{api}/audit?fingerprint={FP}", headers=api_auth("张查看"))
    acks = [e["record"] for e in audit["events"] if e["kind"] == "ack"]
    assert status == 200 and [(a["by"], a["note"]) for a in acks] == [("李值班", "已核实")]
    on_kafka = wait_records(
        stack.env["TOCSIN_KAFKA_BOOTSTRAP"], topics.ACKS, lambda r: r.key == FP.encode(), want=1, timeout_s=20
    )
    assert [json.loads(r.value)["by"] for r in on_kafka] == ["李值班"]


def test_silences_follow_the_roles_and_the_maximum(stack: Stack, alert: Alert) -> None:
    api = f"http://127.0.0.1:{stack.api_port}"
    url = f"{api}/silences"
    assert call(url, "POST", silence(), api_auth("张查看"))[1]["error"] == "forbidden"
    # an operator may not silence an area, the whole district or a hazard everywhere
    for wide in (
        {"device": None, "area": AREA},
        {"device": None, "area": AREA[:2]},
        {"device": None, "hazard": "seismic"},
    ):
        status, body = call(url, "POST", silence(**wide), api_auth("李值班"))
        assert status == 403 and body["error"] == "supervisor_required", (wide, body)
    # nobody may silence for ten years, nor forever
    decade = silence(ends_at=(datetime.now(UTC) + timedelta(days=3650)).isoformat(), device=None, area=AREA)
    status, body = call(url, "POST", decade, api_auth("王工"))
    assert status == 422 and body["error"] == "too_long"
    status, body = call(url, "POST", silence(recurrence="daily"), api_auth("王工"))  # no `until`: never ends
    assert status == 422 and body["error"] == "too_long"
    # a forged creator is refused; without one the creator is the caller
    status, body = call(url, "POST", silence(creator="值班主任"), api_auth("李值班"))
    assert status == 403 and body["error"] == "identity_mismatch"
    assert all(s["creator"] != "值班主任" for s in call(url, headers=api_auth("张查看"))[1]["silences"])
    status, created = call(url, "POST", silence(id=f"sec-dev-{RUN}"), api_auth("李值班"))
    assert status in (201, 202) and created["creator"] == "李值班", created
    status, created = call(url, "POST", silence(id=f"sec-area-{RUN}", device=None, area=AREA), api_auth("王工"))
    assert status in (201, 202) and created["creator"] == "王工", created
    # the operator may not widen or replace the supervisor's silence; lifting is allowed
    status, body = call(url, "POST", silence(id=f"sec-area-{RUN}"), api_auth("李值班"))
    assert status == 403 and body["error"] == "supervisor_required"
    assert call(f"{url}/sec-area-{RUN}", "DELETE", headers=api_auth("张查看"))[0] == 403
    for sid in (f"sec-dev-{RUN}", f"sec-area-{RUN}"):
        assert call(f"{url}/{sid}", "DELETE", headers=api_auth("李值班"))[0] in (200, 202)
    # user management is the supervisor's
    assert call(f"{api}/users", headers=api_auth("李值班"))[0] == 403
    status, users = call(f"{api}/users", headers=api_auth("王工"))
    assert status == 200 and {u["name"] for u in users["users"]} == set(API_USERS)
    assert "password_hash" not in json.dumps(users)


def test_forged_sms_receipts_are_401_and_counted(stack: Stack) -> None:
    worker = f"http://127.0.0.1:{stack.worker_port}"
    receipt = {
        "message_id": f"sm-forged-{RUN}",
        "to": "+8613800001234",
        "status": "DELIVRD",
        # <message key>:<recipient>, the message key being <fingerprint>#<revision> (alerts/notify.py)
        "idempotency_key": f"hydro:{AREA}:sec#0:+8613800001234",
        "delivered_at": datetime.now(UTC).isoformat(),
    }
    raw = json.dumps(receipt).encode()
    now = datetime.now(UTC).timestamp()
    attempts = [
        {},  # unsigned
        signed_headers("guessed-secret", raw, now),  # signed with the wrong secret
        signed_headers(RECEIPT_SECRET, raw, now - 3600),  # a captured receipt replayed an hour later
    ]
    for headers in attempts:
        status, body = call(f"{worker}/callbacks/sms", "POST", raw, headers)
        assert status == 401 and body["error"] == "unauthorized", body
    metrics = stack.worker_metrics()
    assert "tocsin_worker_sms_receipts_refused_total 3.0" in metrics, metrics[-2000:]
    # the genuine one, signed with the shared secret, is recorded
    status, body = call(f"{worker}/callbacks/sms", "POST", raw, signed_headers(RECEIPT_SECRET, raw, now))
    assert status == 200 and body == {"recorded": True}


def test_worker_table_pages_are_off(stack: Stack) -> None:
    worker = f"http://127.0.0.1:{stack.worker_port}"
    for path in ("/table/", "/table/alert-lifecycle/", "/router/", "/assignment/"):
        assert call(f"{worker}{path}")[0] == 404, path


def test_password_guessing_is_locked_out(stack: Stack) -> None:
    """Last: it locks this client (127.0.0.1) out for the window. The earlier tests' two bad
    credentials count too (5 failures a minute per client or user: TOCSIN_API_AUTH_MAX_FAILURES)."""
    api = f"http://127.0.0.1:{stack.api_port}"
    statuses = []
    for i in range(6):
        guess = {"Authorization": "Basic " + base64.b64encode(f"赵备班:guess-{i}".encode()).decode()}
        statuses.append(call(f"{api}/alerts", headers=guess)[0])
    assert statuses[0] == 401 and statuses[-1] == 429 and set(statuses) == {401, 429}, statuses
    status, body = call(f"{api}/alerts", headers=api_auth("赵备班"))  # even the right password, for now
    assert status == 429 and body["error"] == "locked_out"
    # a session verified before the guessing (王工 logged in above) is not locked out by it
    assert call(f"{api}/alerts", headers=api_auth("王工"))[0] == 200
    metrics = call(f"{api}/metrics")[1]
    locked = statuses.count(429) + 1
    assert f'tocsin_api_auth_failures_total{{status="429"}} {locked}.0' in metrics


def test_development_mode_makes_a_one_off_login(services: dict[str, str], tmp_path: Path) -> None:
    """TOCSIN_DEV without a users file: a random supervisor password printed once, and still no open API."""
    port = free_port()
    env = {"TOCSIN_KAFKA_BOOTSTRAP": services["TOCSIN_KAFKA_BOOTSTRAP"], "TOCSIN_DEV": "1", "TOCSIN_API_USERS_FILE": ""}
    proc = Proc([sys.executable, "-m", "tocsin.api", "--port", str(port)], tmp_path / "api.log", env)
    try:
        password = proc.wait_for(r"development login \(TOCSIN_DEV\): demo / (\S+)", 60).group(1)
        proc.wait_for(r"operator API listening on", 60)
        api = f"http://127.0.0.1:{port}"
        assert call(f"{api}/whoami")[0] == 401
        demo = {"Authorization": "Basic " + base64.b64encode(f"demo:{password}".encode()).decode()}
        status, me = call(f"{api}/whoami", headers=demo)
        assert status == 200 and (me["name"], me["role"]) == ("demo", "supervisor")
    finally:
        assert proc.stop() == 0, proc.text()[-3000:]
