"""The operator API as a real process on real Kafka.

An alert chain (Alert, Update, Cancel) and its delivery records are produced to Kafka; the API
(``python -m tocsin.api``) shows it active, then cancelled, with its history and deliveries; an
ack goes through ``alerts.acks`` and is shown; a silence created over HTTP reaches a
:class:`SilenceStore` running here (as a worker's notifier would have it), and so does its deletion.
"""

from __future__ import annotations

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
from tests.integration.stack import api_auth, write_api_users
from tocsin.alerts.silence_store import SILENCES
from tocsin.kafka import delete_silence, kafka_silence_store
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.topics import ACKS
from tocsin.schemas.wire import encode

pytestmark = pytest.mark.integration


def http(method: str, url: str, body: Any = None, user: str | None = "李值班") -> tuple[int, Any, str]:
    """(status, parsed JSON or None, content type) of one request as ``user`` (of stack.API_USERS; None:
    no credentials); HTTP errors are returned, not raised."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
    headers = {"Content-Type": "application/json", **(api_auth(user) if user else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            raw, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raw, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
    parsed = json.loads(raw) if "json" in ctype else raw.decode("utf-8")
    return status, parsed, ctype


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def api(services: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "tocsin.api", "--host", "127.0.0.1", "--port", str(port)],
        tmp_path / "api.log",
        {
            "TOCSIN_KAFKA_BOOTSTRAP": services["TOCSIN_KAFKA_BOOTSTRAP"],
            "TOCSIN_API_USERS_FILE": str(write_api_users(tmp_path / "users.json")),
        },
    )
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for(r"operator API listening on", 60)
        wait_until(lambda: http("GET", f"{base}/healthz")[0] == 200, 90, "the API caught up with Kafka")
        yield base, proc
    finally:
        code = proc.stop()
    assert code == 0, proc.text()[-3000:]


def chain(run_id: str, area: str) -> list[Alert]:
    fp = f"hydro:{area}:it-{run_id}"
    onset = datetime.now(UTC).replace(microsecond=0)
    out = []
    for rev, (msg_type, level) in enumerate(
        [
            (MsgType.ALERT, WarningLevel.BLUE),
            (MsgType.UPDATE, WarningLevel.ORANGE),
            (MsgType.CANCEL, WarningLevel.ORANGE),
        ]
    ):
        out.append(
            Alert(
                identifier=f"{area}{run_id}-hydro-rain-{rev:03d}",
                fingerprint=fp,
                revision=rev,
                msg_type=msg_type,
                hazard=Family.HYDRO,
                event="暴雨",
                level=level,
                sent=onset + timedelta(minutes=5 * rev),
                onset=onset,
                area=AlertArea(code=area, desc="青山镇横溪村"),
                headline=f"青山镇横溪村暴雨{level.zh}预警" + ("解除" if msg_type is MsgType.CANCEL else ""),
                description="测试",
                references=[f"{area}{run_id}-hydro-rain-{r:03d}" for r in range(rev)],
                devices=[f"RG-{run_id}"],
                sites=[f"site-{run_id}"],
            )
        )
    return out


def deliveries(alert: Alert) -> list[DeliveryRecord]:
    return [
        DeliveryRecord(
            alert_id=alert.identifier,
            fingerprint=alert.fingerprint,
            revision=alert.revision,
            channel=channel,
            recipient=recipient,
            outcome=outcome,
            attempts=attempts,
            ts=alert.sent + timedelta(seconds=2),
        )
        for channel, recipient, outcome, attempts in [
            ("mqtt", f"tocsin/v1/alerts/{alert.area.code}/hydro/rainstorm", "accepted", 1),
            ("sms", "138****0001", "accepted", 2),
        ]
    ]


def test_operator_api_on_real_kafka(services: dict[str, str], api: tuple[str, Proc], run_id: str) -> None:
    base, proc = api
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"
    alert, update, cancel = chain(run_id, area)
    fp = alert.fingerprint
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def produce(a: Alert) -> None:
        producer.send(topics.ALERTS, key=fp.encode(), value=encode(a)).get(timeout=30)
        for d in deliveries(a):
            producer.send(topics.DELIVERIES, key=d.alert_id.encode(), value=encode(d)).get(timeout=30)

    def listed(state: str) -> dict[str, Any] | None:
        status, data, _ = http("GET", f"{base}/alerts?state={state}&hazard=hydro&area={area}")
        assert status == 200, data
        return next((a for a in data["alerts"] if a["fingerprint"] == fp), None)

    store = kafka_silence_store(bootstrap)
    store.start()
    silence_id = f"it-{run_id}"
    try:
        # 1. Alert: active.
        produce(alert)
        item = wait_until(lambda: listed("active"), 30, "the alert listed as active")
        assert item["identifier"] == alert.identifier and item["msg_type"] == "Alert" and item["level"] == "blue"
        assert item["acknowledged"] is False and item["status"] == "Actual"

        # 2. Update, Cancel: no longer active, still there with state=all.
        produce(update)
        produce(cancel)

        def cancelled() -> dict[str, Any] | None:
            found = listed("all")
            return found if found and found["msg_type"] == "Cancel" else None

        item = wait_until(cancelled, 30, "the Cancel")
        assert item["active"] is False and item["level"] == "orange"
        assert listed("active") is None

        # 3. The detail: three messages in order, every delivery, the CAP of the current message.
        def full_detail() -> dict[str, Any] | None:
            status, data, _ = http("GET", f"{base}/alerts/{fp}")
            return data if status == 200 and len(data["deliveries"]) == 6 else None

        detail = wait_until(full_detail, 30, "all six delivery records")
        assert [m["msg_type"] for m in detail["history"]] == ["Alert", "Update", "Cancel"]
        assert [m["identifier"] for m in detail["history"]] == [alert.identifier, update.identifier, cancel.identifier]
        assert detail["current"]["identifier"] == cancel.identifier
        assert {(d["channel"], d["outcome"], d["attempts"]) for d in detail["deliveries"]} == {
            ("mqtt", "accepted", 1),
            ("sms", "accepted", 2),
        }
        assert detail["delivery_summary"] == {"mqtt": {"accepted": 3}, "sms": {"accepted": 3}}
        assert "青山镇横溪村暴雨橙色预警解除" in detail["headline"]
        assert cancel.identifier in detail["cap"] and "<msgType>Cancel</msgType>" in detail["cap"]
        status, xml, ctype = http("GET", f"{base}/alerts/{fp}/cap")
        assert status == 200 and ctype.startswith("application/cap+xml") and "AllClear" in xml
        assert http("GET", f"{base}/alerts/hydro:{area}:nothing")[0] == 404

        # 4. Ack: recorded on Kafka, visible on the very next GET.
        status, body, _ = http("POST", f"{base}/alerts/{fp}/ack", {"by": "李值班", "note": "已核实"})
        assert status == 201, body
        assert body["ack"]["identifier"] == cancel.identifier and body["visible"] is True
        acked = listed("all")
        assert acked is not None and acked["acknowledged"] is True and acked["acknowledged_by"] == "李值班"
        status, body, _ = http("POST", f"{base}/alerts/{fp}/ack", {"by": "王工", "note": "who?"})
        assert status == 403 and body["error"] == "identity_mismatch"
        assert http("POST", f"{base}/alerts/hydro:{area}:nothing/ack", {"by": "x"})[0] == 404

        # 5. The audit trail of the incident.
        status, audit, _ = http("GET", f"{base}/audit?fingerprint={fp}")
        kinds = [e["kind"] for e in audit["events"]]
        assert kinds.count("message") == 3 and kinds.count("delivery") == 6 and kinds.count("ack") == 1
        times = [datetime.fromisoformat(e["ts"]) for e in audit["events"]]
        assert times == sorted(times)

        # 6. Silences: a malformed record on the topic is skipped; one created over HTTP reaches the store.
        assert store.wait_caught_up(30), "the silence store did not catch up"
        producer.send(SILENCES, key=f"bad-{run_id}".encode(), value=b"{not a silence").get(timeout=30)
        now = datetime.now(UTC)
        new = {
            "id": silence_id,
            "device": f"RG-{run_id}",
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(),
            "creator": "王工",
            "reason": "雨量计检修",
        }
        status, body, _ = http("POST", f"{base}/silences", {**new, "ends_at": new["starts_at"]}, user="王工")
        assert status == 422 and "ends_at must be after starts_at" in body["detail"]
        status, body, _ = http("POST", f"{base}/silences", new, user="王工")
        assert status == 201, body
        status, listing, _ = http("GET", f"{base}/silences")
        assert status == 200 and silence_id in [s["id"] for s in listing["silences"]]
        seen = wait_until(lambda: store.get(silence_id), 10, "the silence in the SilenceStore")
        assert seen.creator == "王工" and seen in store.silences()

        status, body, _ = http("DELETE", f"{base}/silences/{silence_id}")
        assert status == 200 and body["deleted"] is True, body
        status, listing, _ = http("GET", f"{base}/silences")
        assert silence_id not in [s["id"] for s in listing["silences"]]
        wait_until(lambda: store.get(silence_id) is None, 10, "the tombstone in the SilenceStore")
        assert http("DELETE", f"{base}/silences/{silence_id}")[0] == 404
        assert "Traceback" not in proc.text(), proc.text()[-3000:]
    finally:
        store.stop()
        delete_silence(bootstrap, f"bad-{run_id}", producer=producer)
        if store.get(silence_id) is not None:
            delete_silence(bootstrap, silence_id, producer=producer)
        producer.close(timeout=10)
    assert ACKS == "alerts.acks"
