"""The delivery sweep's decision (which alert messages have a fan-out the audit shows incomplete)
and its schedule (a pass at start over the whole window, then a short pass every period)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.alerts.factories import alert_message
from tocsin.alerts.adapters.base import Notification
from tocsin.alerts.sweep import FINAL, Sweep, Sweeper, identified, incomplete, parsed, windows
from tocsin.schemas.alert import Alert
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.wire import encode

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


def test_windows_are_the_whole_window_at_start_then_two_periods() -> None:
    w = windows(3600.0, 300.0)
    assert [next(w) for _ in range(4)] == [3600.0, 600.0, 600.0, 600.0]
    assert list(windows(3600.0, 0.0)) == [3600.0]  # start only
    w = windows(400.0, 300.0)
    assert [next(w) for _ in range(2)] == [400.0, 400.0]  # never longer than the window


class FakeKafka:
    """What the sweeper reads, pass by pass: the alert messages (a ``Sweep`` of ``Alert`` lists,
    encoded here as Kafka would hold them, or an exception) and the audit, and what was asked."""

    def __init__(self, answers: list[Any], records: list[DeliveryRecord]) -> None:
        self.answers, self.records = answers, records
        self.asked: list[tuple[set[int], float]] = []
        self.audit_reads = 0

    async def read_alerts(self, partitions: set[int], since_s: float) -> Sweep:
        self.asked.append((partitions, since_s))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        below, past = answer
        return Sweep(identified([encode(a) for a in below]), identified([encode(a) for a in past]))

    async def read_records(self, since_s: float) -> list[DeliveryRecord]:
        self.audit_reads += 1
        return self.records


def _run(
    kafka: FakeKafka,
    owned: list[set[int] | None],
    busy: frozenset[str] = frozenset(),
    done: frozenset[str] = frozenset(),
) -> tuple[Sweeper, list[str]]:
    """Run a sweeper (window 1 h, every 5 min) until ``owned`` says None; returns it and what it delivered."""
    delivered: list[str] = []

    async def deliver(a: Alert) -> None:
        delivered.append(a.identifier)

    async def sleep(s: float) -> None:
        assert s == 300.0

    async def owned_now() -> set[int] | None:
        return owned.pop(0)

    sweeper = Sweeper(
        window_s=3600.0,
        every_s=300.0,
        owned=owned_now,
        read_alerts=kafka.read_alerts,
        read_records=kafka.read_records,
        busy=busy.__contains__,
        done=done.__contains__,
        route=plan,
        deliver=deliver,
        clock=lambda: 10_000.0,
        sleep=sleep,
    )
    asyncio.run(sweeper.run())
    return sweeper, delivered


def complete(a: Alert) -> list[DeliveryRecord]:
    return [record(a, "mqtt", "accepted"), *(record(a, "sms", "accepted", p) for p in PHONES)]


def test_the_sweeper_passes_at_start_and_then_every_period_delivering_what_is_cut_short() -> None:
    done, cut, later_cut = alert("A-1"), alert("A-2"), alert("A-3")
    kafka = FakeKafka(
        [
            ([done, cut], []),  # start: cut was killed after its MQTT delivery
            ConnectionError("broker away"),  # second pass: skipped, logged, not fatal
            ([later_cut], []),  # third pass: a commit went past a fan-out while running
        ],
        [*complete(done), record(cut, "mqtt", "accepted")],
    )
    sweeper, delivered = _run(kafka, [{0, 1}, {0, 1}, {1}, None])  # None: the worker lost its partitions
    assert delivered == ["A-2", "A-3"]
    assert kafka.asked == [({0, 1}, 10_000.0 - 3600.0), ({0, 1}, 10_000.0 - 600.0), ({1}, 10_000.0 - 600.0)]
    assert (sweeper.passes, sweeper.checked, sweeper.redelivered) == (3, 3, 2)


def test_a_message_past_the_committed_offset_is_delivered_once_it_was_idle_for_a_whole_period() -> None:
    stuck, moving, in_flight, whole = alert("S-1"), alert("S-2"), alert("S-3"), alert("S-4")
    kafka = FakeKafka(
        [
            # start: all four are past the committed offset and none is delivered yet (the agent may
            # be about to read them): nothing is checked, the audit is not read
            ([], [stuck, moving, in_flight, whole]),
            # a period later: ``moving`` was delivered and committed meanwhile; the other three are
            # still past the committed offset
            ([moving], [stuck, in_flight, whole]),
            ([moving], []),
        ],
        [*complete(whole), *complete(moving)],
    )
    sweeper, delivered = _run(kafka, [{0}, {0}, {0}, None], busy=frozenset({"S-3"}))
    # stuck: delivered in the second pass; in_flight: this worker is on it; whole: the audit is complete
    assert delivered == ["S-1"]
    assert sweeper.redelivered == 1
    assert kafka.audit_reads == 1  # only in the second pass: at start nothing needed checking, and
    # in the third ``moving`` was judged already


def test_what_this_worker_delivered_itself_is_not_checked_and_the_audit_not_read() -> None:
    mine = [alert(f"M-{k}") for k in range(50)]
    kafka = FakeKafka([(mine[:40], mine[40:]), (mine[:40], mine[40:])], [])
    sweeper, delivered = _run(kafka, [{0}, {0}, None], done=frozenset(a.identifier for a in mine))
    assert delivered == [] and sweeper.checked == 0
    assert kafka.audit_reads == 0


def test_a_sweeper_with_no_window_does_nothing() -> None:
    async def never(*_a: Any) -> Any:
        raise AssertionError("no pass expected")

    sweeper = Sweeper(
        window_s=0.0,
        every_s=300.0,
        owned=never,
        read_alerts=never,
        read_records=never,
        busy=lambda _i: False,
        done=lambda _i: False,
        route=plan,
        deliver=never,
        clock=float,
    )
    asyncio.run(sweeper.run())
    assert sweeper.passes == 0


def test_identified_keeps_the_alert_messages_and_skips_what_is_not_one() -> None:
    a = alert("I-1")
    raw = encode(a)
    assert identified([b"{not json", b'{"identifier": 7}', b'["I-1"]', b"{}", raw]) == [("I-1", raw)]


def test_a_committed_message_is_judged_once_unless_it_was_being_delivered() -> None:
    whole, busy_now = alert("J-1"), alert("J-2")
    kafka = FakeKafka([([whole, busy_now], []), ([whole, busy_now], [])], complete(whole))
    sweeper, delivered = _run(kafka, [{0}, {0}, None], busy=frozenset({"J-2"}))
    assert delivered == [] and kafka.audit_reads == 1 and sweeper.checked == 1
