"""The delivery sweep's decision (which alert messages have a fan-out the audit shows incomplete)
and its schedule (a pass at start over the whole window, then a short pass every period)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from alerts.adapters.base import Notification
from alerts.sweep import FINAL, Sweep, Sweeper, incomplete, parsed, windows
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


def test_windows_are_the_whole_window_at_start_then_two_periods() -> None:
    w = windows(3600.0, 300.0)
    assert [next(w) for _ in range(4)] == [3600.0, 600.0, 600.0, 600.0]
    assert list(windows(3600.0, 0.0)) == [3600.0]  # start only
    w = windows(400.0, 300.0)
    assert [next(w) for _ in range(2)] == [400.0, 400.0]  # never longer than the window


class FakeKafka:
    """What the sweeper reads, pass by pass: (partitions, since) asked, and the answers given."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers, self.asked = answers, []

    async def read(self, partitions: set[int], since_s: float) -> Sweep:
        self.asked.append((partitions, since_s))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _run(kafka: FakeKafka, owned: list[set[int] | None], busy: set[str] = frozenset()) -> tuple[Sweeper, list[str]]:
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
        read=kafka.read,
        busy=busy.__contains__,
        route=plan,
        deliver=deliver,
        clock=lambda: 10_000.0,
        sleep=sleep,
    )
    asyncio.run(sweeper.run())
    return sweeper, delivered


def test_the_sweeper_passes_at_start_and_then_every_period_delivering_what_is_cut_short() -> None:
    done, cut, later_cut = alert("A-1"), alert("A-2"), alert("A-3")
    full = [record(done, "mqtt", "accepted"), *(record(done, "sms", "accepted", p) for p in PHONES)]
    kafka = FakeKafka(
        [
            Sweep([done, cut], [], [*full, record(cut, "mqtt", "accepted")]),  # start: cut killed after MQTT
            ConnectionError("broker away"),  # second pass: skipped, logged, not fatal
            Sweep([later_cut], [], []),  # third pass: a commit went past a fan-out while running
        ]
    )
    sweeper, delivered = _run(kafka, [{0, 1}, {0, 1}, {1}, None])  # None: the worker lost its partitions
    assert delivered == ["A-2", "A-3"]
    assert kafka.asked == [({0, 1}, 10_000.0 - 3600.0), ({0, 1}, 10_000.0 - 600.0), ({1}, 10_000.0 - 600.0)]
    assert (sweeper.passes, sweeper.redelivered) == (3, 2)


def test_a_message_past_the_committed_offset_is_delivered_once_it_was_idle_for_a_whole_period() -> None:
    stuck, moving, in_flight, complete = alert("S-1"), alert("S-2"), alert("S-3"), alert("S-4")
    records = [record(complete, "mqtt", "accepted"), *(record(complete, "sms", "accepted", p) for p in PHONES)]
    moved = [record(moving, "mqtt", "accepted"), *(record(moving, "sms", "accepted", p) for p in PHONES)]
    kafka = FakeKafka(
        [
            # start: all four are past the committed offset and none is delivered yet (the agent may
            # be about to read them): nothing is done
            Sweep([], [stuck, moving, in_flight, complete], records),
            # a period later: ``moving`` was delivered and committed meanwhile; the other three are
            # still past the committed offset
            Sweep([moving], [stuck, in_flight, complete], [*records, *moved]),
            Sweep([moving], [], [*records, *moved]),
        ]
    )
    sweeper, delivered = _run(kafka, [{0}, {0}, {0}, None], busy={"S-3"})
    # stuck: delivered in the second pass; in_flight: this worker is on it; complete: the audit is whole
    assert delivered == ["S-1"]
    assert sweeper.redelivered == 1


def test_a_sweeper_with_no_window_does_nothing() -> None:
    async def never(*_a: Any) -> Any:
        raise AssertionError("no pass expected")

    sweeper = Sweeper(
        window_s=0.0,
        every_s=300.0,
        owned=never,
        read=never,
        busy=lambda _i: False,
        route=plan,
        deliver=never,
        clock=float,
    )
    asyncio.run(sweeper.run())
    assert sweeper.passes == 0
