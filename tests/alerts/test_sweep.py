"""The delivery sweep's decision: which alert messages have a fan-out the audit shows incomplete."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from alerts.adapters.base import Notification
from alerts.sweep import FINAL, incomplete, parsed
from schemas.alert import Alert
from schemas.delivery import DeliveryRecord
from schemas.wire import encode
from tests.alerts.factories import alert_message

T = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
PHONES = ["+8613800000001", "+8613800000002", "+8613800000003"]


def alert(identifier: str) -> Alert:
    return alert_message(identifier)


def plan(a: Alert) -> list[Notification]:
    """Three SMS and the operators' topic, as the notifier would route it."""
    common = {"alert_id": a.identifier, "fingerprint": a.fingerprint, "revision": 0, "priority": 2}
    return [
        Notification(channel="mqtt", recipients=["t"], text="x", idempotency_key=f"{a.identifier}:mqtt", **common),
        *(
            Notification(channel="sms", recipients=[p], text="x", idempotency_key=a.identifier, **common)
            for p in PHONES
        ),
    ]


def record(a: Alert, channel: str, outcome: str, recipient: str = "r") -> DeliveryRecord:
    return DeliveryRecord(
        alert_id=a.identifier,
        fingerprint=a.fingerprint,
        revision=0,
        channel=channel,
        recipient=recipient,
        outcome=outcome,
        attempts=1,
        ts=T,
    )


def test_a_fan_out_cut_short_is_delivered_again_and_a_complete_one_is_not() -> None:
    done, cut, silent = alert("A-1"), alert("A-2"), alert("A-3")
    records = [record(done, "mqtt", "accepted"), *(record(done, "sms", "accepted", p) for p in PHONES)]
    records += [record(cut, "mqtt", "accepted"), record(cut, "sms", "accepted", PHONES[0])]  # killed after 1 SMS
    # silenced: the SMS are recorded as suppressed, which ends them (the silence is the decision)
    records += [record(silent, "mqtt", "accepted"), *(record(silent, "sms", "suppressed", p) for p in PHONES)]
    assert incomplete([done, cut, silent], records, plan) == [cut]


def test_receipts_and_other_messages_records_do_not_count() -> None:
    a, other = alert("A-1"), alert("A-9")
    records = [record(a, "mqtt", "accepted")]
    records += [record(a, "sms", "delivered", p) for p in PHONES]  # carrier receipts: not dispatch outcomes
    records += [record(other, "sms", "accepted", p) for p in PHONES]
    assert incomplete([a], records, plan) == [a]


def test_each_message_once_in_the_order_read() -> None:
    a, b = alert("A-1"), alert("A-2")
    assert incomplete([b, a, b, a], [], plan) == [b, a]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["mqtt", "sms"]), st.sampled_from([*FINAL, "delivered"]))))
def test_incomplete_exactly_when_some_channel_has_fewer_final_records_than_planned(
    rows: list[tuple[int, str, str]],
) -> None:
    alerts = [alert(f"A-{i}") for i in range(4)]
    records = [record(alerts[i], channel, outcome) for i, channel, outcome in rows]
    got = {a.identifier for a in incomplete(alerts, records, plan)}
    for a in alerts:
        final = [r for r in records if r.alert_id == a.identifier and r.outcome in FINAL]
        short = sum(r.channel == "mqtt" for r in final) < 1 or sum(r.channel == "sms" for r in final) < 3
        assert (a.identifier in got) is short


def test_parsed_skips_what_does_not_decode() -> None:
    a = alert("A-1")
    assert parsed(Alert, [encode(a), b"{not json", b'{"identifier": "x"}']) == [a]
