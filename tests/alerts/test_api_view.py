"""The operator API over a view fed directly (no Kafka): list, show, ack, silences, audit, CAP."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import BasicAuth, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tocsin.alerts.api import _EvictedCollector, build_app
from tocsin.alerts.auth import Authenticator, Role, UserRecord, UsersFile, hash_secret, write_users_file
from tocsin.alerts.silence_store import SILENCES, SilenceStore, has_ended
from tocsin.alerts.silences import Silence
from tocsin.alerts.view import ACKS, AlertView
from tocsin.schemas import topics
from tocsin.schemas.ack import Ack
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.wire import encode

T0 = datetime(2026, 7, 14, 2, 0, tzinfo=UTC)
FP = "hydro:330110:rain"


def message(rev: int, msg_type: MsgType, level: WarningLevel, *, fp: str = FP, hazard: Family = Family.HYDRO) -> Alert:
    area = fp.split(":")[1]
    return Alert(
        identifier=f"{area}00020260714100000-{hazard.value}-x-{rev:03d}",
        fingerprint=fp,
        revision=rev,
        msg_type=msg_type,
        hazard=hazard,
        event="暴雨",
        level=level,
        sent=T0 + timedelta(minutes=10 * rev),
        onset=T0,
        area=AlertArea(code=area, desc="青山镇横溪村"),
        headline=f"青山镇横溪村暴雨{level.zh}预警",
        description="1小时雨量48mm。",
        references=[],
    )


def delivery(alert: Alert, channel: str, outcome: str, minutes: float = 0.5) -> DeliveryRecord:
    return DeliveryRecord(
        alert_id=alert.identifier,
        fingerprint=alert.fingerprint,
        revision=alert.revision,
        channel=channel,
        recipient="138****0001" if channel == "sms" else "tocsin/v1/alerts/330110/hydro/rainstorm",
        outcome=outcome,
        attempts=1 if outcome == "accepted" else 5,
        ts=alert.sent + timedelta(minutes=minutes),
    )


ALERT = message(0, MsgType.ALERT, WarningLevel.BLUE)
UPDATE = message(1, MsgType.UPDATE, WarningLevel.RED)
CANCEL = message(2, MsgType.CANCEL, WarningLevel.RED)


def silence_body(**over: Any) -> dict[str, Any]:
    body = {
        "area": "330110",
        "hazard": "hydro",
        "starts_at": (T0 - timedelta(hours=1)).isoformat(),
        "ends_at": (T0 + timedelta(hours=3)).isoformat(),
        "creator": "李值班",
        "reason": "雨量计检修",
    }
    return {**body, **over}


class FakeSilences:
    """A real SilenceStore (never started) fed by a writer that applies records directly."""

    def __init__(self, apply: bool = True) -> None:
        self.store = SilenceStore(clock=lambda: T0)
        self.apply = apply
        self.written: list[tuple[str, bytes | None]] = []

    async def publish(self, silence: Silence) -> None:
        self.written.append((silence.id, encode(silence)))
        if self.apply:
            self.store.apply(silence.id.encode(), encode(silence))

    async def delete(self, silence_id: str) -> None:
        self.written.append((silence_id, None))
        if self.apply:
            self.store.apply(silence_id.encode(), None)


# Who the tests log in as: every handler test runs as a supervisor (tests/alerts/test_auth.py and
# tests/integration/test_security_api.py test the roles); cheap scrypt (N=2**10) keeps them fast.
USERS = {"李值班": (Role.SUPERVISOR, "supervisor-pass-1"), "viewer": (Role.VIEWER, "viewer-pass-123")}


def users_file() -> Path:
    path = Path(tempfile.mkdtemp()) / "users.json"
    records = [UserRecord(name=n, role=r, password_hash=hash_secret(pw, n=2**10)) for n, (r, pw) in USERS.items()]
    write_users_file(path, UsersFile(users=records))
    return path


def run(
    view: AlertView, body: Callable[[TestClient[Any, Any]], Awaitable[None]], user: str = "李值班", **kwargs: Any
) -> None:
    async def main() -> None:
        auth = Authenticator(users_file())
        app: web.Application = build_app(view, clock=lambda: T0 + timedelta(minutes=30), auth=auth, **kwargs)
        login = BasicAuth(user, USERS[user][1], encoding="utf-8")
        async with TestClient(TestServer(app), auth=login) as client:
            await body(client)

    asyncio.run(main())


@pytest.fixture
def view() -> AlertView:
    v = AlertView()
    v.apply_alert(ALERT)
    v.apply_delivery(delivery(ALERT, "sms", "accepted"))
    v.apply_delivery(delivery(ALERT, "mqtt", "accepted", 0.1))
    v.mark_caught_up()
    return v


# --------------------------------------------------------------------------- view
def test_view_is_idempotent_and_skips_malformed_records() -> None:
    v = AlertView()
    assert v.apply_record(topics.ALERTS, encode(ALERT))
    assert not v.apply_record(topics.ALERTS, encode(ALERT))  # replay: same identifier
    d = delivery(ALERT, "sms", "accepted")
    assert v.apply_record(topics.DELIVERIES, encode(d))
    assert not v.apply_record(topics.DELIVERIES, encode(d))
    assert not v.apply_record(topics.ALERTS, b"{not json")
    assert not v.apply_record(topics.ALERTS, b'{"identifier": "x"}')
    assert not v.apply_record(ACKS, None)
    assert not v.apply_record("elsewhere", encode(ALERT))
    detail = v.detail(FP)
    assert detail is not None and len(detail.history) == 1 and len(detail.deliveries) == 1


def test_deliveries_before_their_alert_are_kept_but_not_listed() -> None:
    v = AlertView()
    v.apply_delivery(delivery(ALERT, "sms", "accepted"))
    assert v.summaries("all") == [] and v.detail(FP) is None
    v.apply_alert(ALERT)
    detail = v.detail(FP)
    assert detail is not None and len(detail.deliveries) == 1


def test_current_message_is_the_last_and_cancel_ends_activity(view: AlertView) -> None:
    assert [s.fingerprint for s in view.summaries()] == [FP]
    view.apply_alert(UPDATE)
    (s,) = view.summaries()
    assert s.msg_type is MsgType.UPDATE and s.level is WarningLevel.RED and s.active
    view.apply_alert(CANCEL)
    assert view.summaries() == []
    (s,) = view.summaries("all")
    assert s.msg_type is MsgType.CANCEL and not s.active


def test_audit_is_time_ordered_and_filtered(view: AlertView) -> None:
    view.apply_alert(UPDATE)
    view.apply_ack(Ack(fingerprint=FP, identifier=ALERT.identifier, by="李值班", at=T0 + timedelta(minutes=2)))
    other = message(0, MsgType.ALERT, WarningLevel.YELLOW, fp="fire:330111:smoke", hazard=Family.FIRE)
    view.apply_alert(other)
    events = view.audit(FP)
    assert [e.kind for e in events] == ["message", "delivery", "delivery", "ack", "message"]
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert events[3].summary == "acknowledged by 李值班"
    assert "sms to 138****0001: accepted" in events[2].summary
    assert [e.kind for e in view.audit(FP, since=T0 + timedelta(minutes=1))] == ["ack", "message"]
    assert {e.fingerprint for e in view.audit()} == {FP, "fire:330111:smoke"}


# --------------------------------------------------------------------------- HTTP: alerts
def test_list_and_filters(view: AlertView) -> None:
    view.apply_alert(message(0, MsgType.ALERT, WarningLevel.YELLOW, fp="fire:420111:smoke", hazard=Family.FIRE))

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.get("/alerts")
        assert r.status == 200 and r.content_type == "application/json" and r.charset == "utf-8"
        text = await r.text()
        assert "青山镇横溪村暴雨蓝色预警" in text  # Chinese unescaped
        data = await r.json()
        assert data["count"] == 2
        assert [a["hazard"] for a in data["alerts"]] == ["fire", "hydro"]  # yellow before blue
        item = data["alerts"][1]
        assert item["fingerprint"] == FP and item["identifier"] == ALERT.identifier
        assert item["msg_type"] == "Alert" and item["level"] == "blue" and item["status"] == "Actual"
        assert item["area"]["code"] == "330110" and item["sent"] == "2026-07-14T02:00:00Z"
        assert item["acknowledged"] is False and item["acknowledged_by"] is None
        assert [a["fingerprint"] for a in (await (await client.get("/alerts?hazard=hydro")).json())["alerts"]] == [FP]
        assert (await (await client.get("/alerts?area=42")).json())["count"] == 1
        assert (await (await client.get("/alerts?area=33&hazard=fire")).json())["count"] == 0
        assert (await client.get("/alerts?hazard=volcano")).status == 422
        assert (await client.get("/alerts?state=sleeping")).status == 422
        h = await client.get("/healthz")
        assert h.status == 200 and (await h.json())["status"] == "ok"

    run(view, body)


def test_show_history_deliveries_and_cap(view: AlertView) -> None:
    view.apply_alert(UPDATE)
    view.apply_delivery(delivery(UPDATE, "sms", "gave_up"))

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.get(f"/alerts/{FP}")
        assert r.status == 200
        data = await r.json()
        assert data["current"]["identifier"] == UPDATE.identifier and data["msg_type"] == "Update"
        assert [m["msg_type"] for m in data["history"]] == ["Alert", "Update"]
        assert len(data["deliveries"]) == 3
        assert data["delivery_summary"] == {"sms": {"accepted": 1, "gave_up": 1}, "mqtt": {"accepted": 1}}
        assert data["history"][0]["severity"] == "Minor"
        assert data["cap"].startswith("<?xml") and UPDATE.identifier in data["cap"]
        cap = await client.get(f"/alerts/{FP}/cap")
        assert cap.status == 200 and cap.content_type == "application/cap+xml"
        assert "暴雨" in await cap.text()
        old = await client.get(f"/alerts/{FP}/cap", params={"identifier": ALERT.identifier})
        assert ALERT.identifier in await old.text()
        assert (await client.get(f"/alerts/{FP}/cap", params={"identifier": "nope"})).status == 404
        assert (await client.get("/alerts/hydro:999999:x")).status == 404

    run(view, body)


def test_without_cap_module(view: AlertView) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        data = await (await client.get(f"/alerts/{FP}")).json()
        assert "cap" not in data
        assert (await client.get(f"/alerts/{FP}/cap")).status == 501

    run(view, body, load_cap=lambda: None)


def test_ack_is_published_and_then_shown(view: AlertView) -> None:
    published: list[Ack] = []

    async def publisher(ack: Ack) -> None:
        published.append(ack)
        view.apply_record(ACKS, encode(ack))  # what the consumer thread would do

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.post(f"/alerts/{FP}/ack", json={"by": "李值班", "note": "已电话通知村支书"})
        assert r.status == 201, await r.text()
        assert (await r.json())["visible"] is True
        (ack,) = published
        assert ack.fingerprint == FP and ack.identifier == ALERT.identifier and ack.by == "李值班"
        item = (await (await client.get("/alerts")).json())["alerts"][0]
        assert item["acknowledged"] is True and item["acknowledged_by"] == "李值班"
        assert item["acknowledged_at"] == "2026-07-14T02:30:00Z"
        data = await (await client.get(f"/alerts/{FP}")).json()
        assert data["acks"][0]["note"] == "已电话通知村支书"
        # An escalation after the ack needs a new ack.
        view.apply_alert(UPDATE)
        item = (await (await client.get("/alerts")).json())["alerts"][0]
        assert item["acknowledged"] is False
        # Validation and unknown fingerprints.
        assert (await client.post("/alerts/hydro:999999:x/ack", json={"by": "x"})).status == 404
        # The identity is the credential's: a body naming someone else is refused, none names the caller.
        r = await client.post(f"/alerts/{FP}/ack", json={"by": "王工", "note": "冒名"})
        assert r.status == 403 and (await r.json())["error"] == "identity_mismatch"
        assert len(published) == 1
        r = await client.post(f"/alerts/{FP}/ack", json={"note": "no name"})
        assert r.status == 201 and (await r.json())["ack"]["by"] == "李值班"
        assert (await client.post(f"/alerts/{FP}/ack", json={"by": "   "})).status == 422
        assert (await client.post(f"/alerts/{FP}/ack", json={"identifier": "nope"})).status == 422
        assert (await client.post(f"/alerts/{FP}/ack", data=b"{")).status == 400
        assert len(published) == 2  # the first ack and the one without a name; nothing refused

    run(view, body, ack_publisher=publisher)


def test_ack_not_seen_back_in_time_is_202(view: AlertView) -> None:
    async def lost(ack: Ack) -> None:
        return None

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.post(f"/alerts/{FP}/ack", json={"by": "李值班"})
        assert r.status == 202 and (await r.json())["visible"] is False

    run(view, body, ack_publisher=lost, visible_timeout_s=0.2)


def test_read_only_without_publishers(view: AlertView) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        assert (await client.post(f"/alerts/{FP}/ack", json={})).status == 503
        assert (await client.get("/silences")).status == 503

    run(view, body)


# --------------------------------------------------------------------------- HTTP: silences
def test_silences_create_list_delete(view: AlertView) -> None:
    fake = FakeSilences()

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.post("/silences", json=silence_body())
        assert r.status == 201, await r.text()
        created = await r.json()
        sid = created["id"]
        assert sid.startswith("sil-") and created["active_now"] is True and created["creator"] == "李值班"
        listed = (await (await client.get("/silences")).json())["silences"]
        assert [s["id"] for s in listed] == [sid]
        assert fake.store.get(sid) is not None
        # Same id again: a replacement.
        r = await client.post("/silences", json=silence_body(id=sid, reason="延长检修"))
        assert r.status == 200 and fake.store.get(sid).reason == "延长检修"  # type: ignore[union-attr]
        r = await client.delete(f"/silences/{sid}")
        assert r.status == 200 and (await r.json())["deleted"] is True
        assert fake.written[-1] == (sid, None)
        assert (await (await client.get("/silences")).json())["silences"] == []
        assert (await client.delete(f"/silences/{sid}")).status == 404

    run(view, body, silence_store=fake.store, silence_writer=fake)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"ends_at": (T0 - timedelta(hours=2)).isoformat()}, "ends_at must be after starts_at"),
        ({"area": None, "hazard": None}, "at least one matcher"),
        ({"reason": ""}, "reason"),
        ({"starts_at": "2026-07-14T02:00:00"}, "timezone"),
        ({"hazard": "volcano"}, "hazard"),
        ({"colour": "red"}, "colour"),
        ({"recurrence": "daily", "ends_at": (T0 + timedelta(days=2)).isoformat()}, "shorter than its period"),
    ],
)
def test_invalid_silences_are_422_with_the_pydantic_message(
    view: AlertView, over: dict[str, Any], message: str
) -> None:
    fake = FakeSilences()

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.post("/silences", json=silence_body(**over))
        assert r.status == 422
        data = await r.json()
        assert data["error"] == "validation" and message in data["detail"] and data["errors"]
        assert fake.written == []

    run(view, body, silence_store=fake.store, silence_writer=fake)


def test_ended_silence_refused_and_unseen_silence_is_202(view: AlertView) -> None:
    fake = FakeSilences(apply=False)

    async def body(client: TestClient[Any, Any]) -> None:
        ended = silence_body(
            starts_at=(T0 - timedelta(days=2)).isoformat(), ends_at=(T0 - timedelta(days=1)).isoformat()
        )
        r = await client.post("/silences", json=ended)
        assert r.status == 422 and "already ended" in (await r.json())["detail"]
        r = await client.post("/silences", json=silence_body(id="mw-1"))
        assert r.status == 202 and (await r.json())["visible"] is False

    run(view, body, silence_store=fake.store, silence_writer=fake, visible_timeout_s=0.2)


def test_audit_endpoint(view: AlertView) -> None:
    view.apply_alert(UPDATE)

    async def body(client: TestClient[Any, Any]) -> None:
        data = await (await client.get("/audit", params={"fingerprint": FP})).json()
        assert [e["kind"] for e in data["events"]] == ["message", "delivery", "delivery", "message"]
        assert data["events"][0]["record"]["identifier"] == ALERT.identifier
        # An offset's unencoded '+' arrives as a space and is still understood.
        r = await client.get("/audit?since=2026-07-14T10:05:00+08:00")
        assert [e["kind"] for e in (await r.json())["events"]] == ["message"]
        assert (await client.get("/audit?since=2026-07-14T10:05:00")).status == 422  # no offset

    run(view, body)


# --------------------------------------------------------------------------- silence store, no Kafka
def test_store_applies_records_tombstones_and_skips_malformed() -> None:
    now = [T0]
    store = SilenceStore(clock=lambda: now[0])
    s = Silence.model_validate({**silence_body(), "id": "mw-1"})
    weekly = Silence.model_validate(
        {
            **silence_body(id="mw-2", device="RG-1", area=None, hazard=None),
            "starts_at": (T0 - timedelta(days=30)).isoformat(),
            "ends_at": (T0 - timedelta(days=30) + timedelta(hours=2)).isoformat(),
            "recurrence": "weekly",
            "until": (T0 + timedelta(days=30)).isoformat(),
        }
    )
    store.apply(b"mw-1", encode(s))
    store.apply(b"mw-2", encode(weekly))
    store.apply(b"bad", b"{not json")
    store.apply(b"bad2", b'{"id": "bad2"}')
    store.apply(b"other", encode(s))  # key is not the id
    store.apply(None, encode(s))
    store.apply(b"\xff", encode(s))
    assert [x.id for x in store.silences()] == ["mw-2", "mw-1"]
    now[0] = T0 + timedelta(hours=4)  # mw-1 ended; the weekly one goes on
    assert [x.id for x in store.silences()] == ["mw-2"] and store.get("mw-1") == s
    now[0] = T0 + timedelta(days=31)
    assert store.silences() == [] and has_ended(weekly, now[0])
    store.apply(b"mw-1", b"")  # empty value: tombstone
    store.apply(b"mw-2", None)
    assert store.all() == [] and store.wait_for(lambda: store.get("mw-1") is None, 0.1)
    assert SILENCES == "alerts.silences" and ACKS == "alerts.acks"


# --------------------------------------------------------------------------- the bound on memory
def sent_at(fp: str, msg_type: MsgType, sent: datetime, ident: str, level: WarningLevel = WarningLevel.BLUE) -> Alert:
    """A message of ``fp`` with its own identifier, sent at ``sent``."""
    return message(0, msg_type, level, fp=fp).model_copy(update={"identifier": ident, "sent": sent})


def incident(v: AlertView, fp: str, start: datetime, end: datetime | None, tag: str = "") -> list[Alert]:
    """An Alert at ``start`` (with an SMS delivery a minute later) and, with ``end``, its Cancel."""
    msgs = [sent_at(fp, MsgType.ALERT, start, f"{fp}{tag}-a")]
    v.apply_alert(msgs[0])
    v.apply_delivery(delivery(msgs[0], "sms", "accepted", 1))
    if end is not None:
        msgs.append(sent_at(fp, MsgType.CANCEL, end, f"{fp}{tag}-c"))
        v.apply_alert(msgs[-1])
    return msgs


def test_ended_incidents_older_than_the_retention_are_evicted_active_ones_kept() -> None:
    v = AlertView(retention=timedelta(days=7), max_ended=100)
    incident(v, "hydro:330110:old", T0, T0 + timedelta(hours=1))  # ended 7 days + 1 h before the last message
    incident(v, "hydro:330111:active", T0 - timedelta(days=30), None)  # older still, but active
    incident(v, "hydro:330112:recent", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    assert v.ended_count == 2 and v.evicted == 0
    incident(v, "fire:330113:now", T0 + timedelta(days=7, hours=2), None)  # alert time moves on
    assert v.fingerprints() == {"hydro:330111:active", "hydro:330112:recent", "fire:330113:now"}
    assert v.evicted == 1 and v.ended_count == 1
    registry = CollectorRegistry()
    registry.register(_EvictedCollector(v))  # what the API's /metrics exposes
    assert registry.get_sample_value("tocsin_api_evicted_total") == 1.0
    assert v.detail("hydro:330110:old") is None and v.audit("hydro:330110:old") == []
    # What is kept stays queryable, its audit whole.
    assert [e.kind for e in v.audit("hydro:330112:recent")] == ["message", "delivery", "message"]
    assert [s.fingerprint for s in v.summaries()] == ["fire:330113:now", "hydro:330111:active"]
    assert len(v) == 3


def test_retention_is_counted_in_alert_time_not_by_deliveries_or_acks() -> None:
    v = AlertView(retention=timedelta(days=7), max_ended=100)
    incident(v, "hydro:330110:old", T0, T0 + timedelta(hours=1))
    late = Ack(fingerprint="other:1:x", identifier="nothing", by="李值班", at=T0 + timedelta(days=30))
    v.apply_ack(late)  # an ack (record time far ahead) does not move the retention clock
    assert "hydro:330110:old" in v.fingerprints()
    # Exactly at the horizon is kept; past it is evicted.
    v.apply_alert(sent_at("fire:330124:x", MsgType.ALERT, T0 + timedelta(days=7, hours=1), "f-1"))
    assert "hydro:330110:old" in v.fingerprints()
    v.apply_alert(sent_at("fire:330124:x", MsgType.UPDATE, T0 + timedelta(days=7, hours=1, seconds=1), "f-2"))
    assert "hydro:330110:old" not in v.fingerprints()


def test_beyond_the_count_the_oldest_ended_incident_goes_first() -> None:
    v = AlertView(retention=timedelta(days=365), max_ended=2)
    incident(v, "hydro:330121:a", T0, T0 + timedelta(hours=1))
    incident(v, "hydro:330122:b", T0 - timedelta(hours=5), T0 + timedelta(hours=2))
    # An ack after its Cancel makes a newer: b (latest record T0+2h) is now the oldest.
    v.apply_ack(
        Ack(fingerprint="hydro:330121:a", identifier="hydro:330121:a-c", by="李值班", at=T0 + timedelta(hours=3))
    )
    incident(v, "hydro:330123:c", T0 + timedelta(hours=1), T0 + timedelta(hours=2, minutes=30))
    assert v.fingerprints() == {"hydro:330121:a", "hydro:330123:c"} and v.ended_count == 2
    # Active ones are never evicted, even with no room at all for ended ones.
    w = AlertView(max_ended=0)
    for k in range(5):
        incident(w, f"hydro:33013{k}:x", T0 + timedelta(minutes=k), None)
    incident(w, "hydro:330199:ended", T0, T0 + timedelta(hours=1))
    assert len(w) == 5 and w.ended_count == 0 and w.evicted == 1


def test_an_evicted_incident_is_not_brought_back_by_its_late_records() -> None:
    v = AlertView(max_ended=0)
    alert, cancel = incident(v, FP, T0, T0 + timedelta(hours=1))
    assert v.fingerprints() == set()
    assert not v.apply_alert(alert)  # a duplicate of an evicted message
    assert not v.apply_delivery(delivery(cancel, "sms", "accepted", 2))
    assert not v.apply_ack(Ack(fingerprint=FP, identifier=cancel.identifier, by="李值班", at=T0))
    assert v.fingerprints() == set() and v.summaries("all") == []
    # A new incident under the same fingerprint (a new identifier) is a new alert.
    again = sent_at(FP, MsgType.ALERT, T0 + timedelta(days=1), "new-incident")
    assert v.apply_alert(again)
    detail = v.detail(FP)
    assert detail is not None and detail.history == [again] and detail.active


def test_records_without_their_message_count_as_ended() -> None:
    v = AlertView(retention=timedelta(days=7), max_ended=1)
    early = sent_at("hydro:330121:a", MsgType.ALERT, T0, "a-1")
    v.apply_delivery(delivery(early, "sms", "accepted"))  # overtook its alert
    assert v.ended_count == 1 and v.fingerprints() == {"hydro:330121:a"}
    v.apply_alert(early)  # its alert arrives: active, the delivery is attached
    assert v.ended_count == 0
    detail = v.detail("hydro:330121:a")
    assert detail is not None and len(detail.deliveries) == 1
    other = sent_at("hydro:330122:b", MsgType.ALERT, T0, "b-1")
    v.apply_delivery(delivery(other, "sms", "accepted", 1))
    v.apply_delivery(delivery(other, "sms", "rejected", 2))  # same orphan, newer: still one ended
    assert v.ended_count == 1
    v.apply_alert(sent_at("hydro:330123:c", MsgType.ALERT, T0 + timedelta(days=8), "c-1"))
    assert v.fingerprints() == {"hydro:330121:a", "hydro:330123:c"}  # the orphan is past the retention


def test_bound_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="retention"):
        AlertView(retention=timedelta(0))
    with pytest.raises(ValueError, match="max_ended"):
        AlertView(max_ended=-1)


def test_evicted_fingerprint_is_404_and_has_no_audit() -> None:
    v = AlertView(max_ended=0)
    incident(v, FP, T0, T0 + timedelta(hours=1))
    v.mark_caught_up()

    async def body(client: TestClient[Any, Any]) -> None:
        assert (await client.get(f"/alerts/{FP}")).status == 404
        assert (await (await client.get("/alerts", params={"state": "all"})).json())["count"] == 0
        assert (await (await client.get("/audit", params={"fingerprint": FP})).json())["events"] == []

    run(v, body)


FPS = [f"{h}:33011{k}:x" for h in ("hydro", "fire") for k in range(3)]
OPS = st.one_of(
    st.tuples(st.just("msg"), st.sampled_from(FPS), st.sampled_from(list(MsgType)), st.integers(0, 20 * 24)),
    st.tuples(st.just("dup"), st.integers(0, 1000), st.just(MsgType.ALERT), st.just(0)),
    st.tuples(st.sampled_from(["delivery", "ack"]), st.sampled_from(FPS), st.just(MsgType.ALERT), st.integers(0, 480)),
)


@settings(max_examples=150, deadline=None)
@given(max_ended=st.integers(0, 4), retention_h=st.integers(1, 96), ops=st.lists(OPS, max_size=60))
def test_property_active_alerts_are_never_evicted_and_the_bound_holds(
    max_ended: int, retention_h: int, ops: list[tuple[str, Any, MsgType, int]]
) -> None:
    """Any interleaving of messages (any order of times), duplicates, deliveries and acks: every
    fingerprint whose latest message is not a Cancel is there with that message; ended incidents
    are never more than ``max_ended`` nor older than the retention before the newest message."""
    v = AlertView(retention=timedelta(hours=retention_h), max_ended=max_ended)
    applied: list[Alert] = []
    latest: dict[str, Alert] = {}
    for n, (op, fp, msg_type, hours) in enumerate(ops):
        if op == "msg":
            m = sent_at(fp, msg_type, T0 + timedelta(hours=hours), f"m{n}")
            assert v.apply_alert(m)
            applied.append(m)
            latest[fp] = m
        elif op == "dup":
            if applied:
                assert not v.apply_alert(applied[fp % len(applied)])
        else:
            cur = latest.get(fp) or sent_at(fp, MsgType.ALERT, T0, f"unseen-{fp}")
            if op == "delivery":
                v.apply_delivery(delivery(cur, "sms", "accepted", hours))
            else:
                v.apply_ack(Ack(fingerprint=fp, identifier=cur.identifier, by="值班", at=T0 + timedelta(hours=hours)))

        active = {fp for fp, m in latest.items() if m.msg_type is not MsgType.CANCEL}
        for fp in active:
            assert v.current(fp) == latest[fp]
        assert v.ended_count <= max_ended
        assert len(v.fingerprints()) <= len(active) + max_ended
        if applied:
            horizon = max(m.sent for m in applied) - timedelta(hours=retention_h)
            for fp in v.fingerprints() - active:
                assert max(e.ts for e in v.audit(fp)) >= horizon
