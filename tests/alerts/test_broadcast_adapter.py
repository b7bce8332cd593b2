"""BroadcastAdapter against the emergency-broadcast platform emulator running as a real subprocess."""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.alerts.emulators import EmulatorControl, RecordingSleep, emulator_process, run
from tocsin.alerts.adapters.base import Adapter, AdapterError, DeliveryResult, Notification, Outcome, send_with_retries
from tocsin.alerts.adapters.broadcast import STOP_CHANNEL, BroadcastAdapter, stop_notification
from tocsin.simulators.broadcast_platform import (
    BroadcastPlatformThread,
    BroadcastRequest,
    BroadcastState,
    PlatformConfig,
    Schedule,
    areas_overlap,
)

API_KEY = "tocsin-broadcast-key-91c2e4"
WRONG_KEY = "wrong-secret-3b8f70"
DISTRICT = "330106"  # 120 terminals
TOWN = "330106001"  # 15 terminals, inside DISTRICT
VILLAGE = "330106001002"  # 3 terminals, inside TOWN
OTHER_TOWN = "330108002"
OTHER_VILLAGE = "330109003004"
FINGERPRINT = "hydro:330106:flood"
BANNER = re.compile(r"^broadcast-platform listening on (http://\S+)$")


def make_notification(**overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "alert_id": "330106TOCSIN20240701120000-hydro-flood-001",
        "fingerprint": FINGERPRINT,
        "revision": 1,
        "channel": "broadcast",
        "recipients": [TOWN],
        "text": "山洪黄色预警：西湖区转塘街道沿河村民请立即转移至安全地带。",
        "priority": 2,
        "idempotency_key": "330106TOCSIN20240701120000-hydro-flood-001:broadcast",
        "correlation_id": "corr-1",
    }
    fields.update(overrides)
    return Notification(**fields)


# --- emulator process -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stderr_path = tmp_path_factory.mktemp("broadcast-platform") / "stderr.log"
    env = {"TOCSIN_BROADCAST_API_KEY": API_KEY}
    with emulator_process("tocsin.simulators.broadcast_platform", [], env, BANNER, stderr_path) as url:
        yield url


class PlatformControl(EmulatorControl):
    """Synchronous client for the emulator's control plane and broadcast list."""

    def broadcasts(self) -> list[dict[str, Any]]:
        status, body = self.request("GET", "/v1/broadcasts", api_key=API_KEY)
        assert status == 200
        return body["broadcasts"]

    def states(self) -> dict[str, str]:
        """broadcast_id -> state."""
        return {b["broadcast_id"]: b["state"] for b in self.broadcasts()}


@pytest.fixture
def pf(platform_url: str) -> PlatformControl:
    control = PlatformControl(platform_url)
    control.reset()
    return control


def adapter_for(pf: PlatformControl, **kwargs: Any) -> BroadcastAdapter:
    kwargs.setdefault("timeout_s", 3.0)
    return BroadcastAdapter(pf.base_url, kwargs.pop("api_key", API_KEY), **kwargs)


async def send_all(adapter: BroadcastAdapter, notes: list[Notification]) -> list[DeliveryResult]:
    """Send in order (the platform's scheduling depends on arrival order)."""
    return [await adapter.send(n) for n in notes]


# --- starting broadcasts --------------------------------------------------------------------------


def test_broadcast_starts_playing_and_is_listed(pf: PlatformControl) -> None:
    n = make_notification(recipients=[DISTRICT, OTHER_TOWN, OTHER_VILLAGE], priority=3, exercise=True)

    async def body() -> DeliveryResult:
        async with adapter_for(pf) as adapter:
            return await adapter.send(n)

    result = run(body())
    assert result.outcome is Outcome.ACCEPTED and result.ok and not result.retryable
    assert result.provider_ref.startswith("bc-")
    assert "playing on 138 terminals" in result.detail  # 120 + 15 + 3
    [bc] = pf.broadcasts()
    assert bc["broadcast_id"] == result.provider_ref
    assert bc["request_id"] == n.idempotency_key
    assert bc["alert_id"] == FINGERPRINT  # the incident key, stable across revisions
    assert bc["area_codes"] == [DISTRICT, OTHER_TOWN, OTHER_VILLAGE]
    assert (bc["level"], bc["priority"], bc["repeat"]) == (3, 3, 3)
    assert bc["text"] == n.text
    assert bc["exercise"] is True
    assert (bc["state"], bc["terminals"]) == ("playing", 138)


def test_covered_areas_count_once_and_repeat_is_configurable(pf: PlatformControl) -> None:
    n = make_notification(recipients=[DISTRICT, TOWN, VILLAGE, TOWN])

    async def body() -> DeliveryResult:
        async with adapter_for(pf, repeat=5) as adapter:
            return await adapter.send(n)

    result = run(body())
    assert result.outcome is Outcome.ACCEPTED
    [bc] = pf.broadcasts()
    assert bc["area_codes"] == [DISTRICT, TOWN, VILLAGE]
    assert bc["terminals"] == 120  # the town and village are inside the district
    assert bc["repeat"] == 5
    assert bc["exercise"] is False


def test_duplicate_request_id_not_stored_twice(pf: PlatformControl) -> None:
    n = make_notification()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            return await send_all(adapter, [n, n])

    first, second = run(body())
    assert first.outcome is Outcome.ACCEPTED
    assert second.outcome is Outcome.DUPLICATE and second.ok
    assert second.provider_ref == first.provider_ref
    assert "duplicate" in second.detail
    assert len(pf.broadcasts()) == 1
    assert pf.stats()["duplicates"] == 1


def test_request_id_reused_for_another_broadcast_is_rejected(pf: PlatformControl) -> None:
    n = make_notification()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            return await send_all(adapter, [n, make_notification(text="另一条广播")])

    first, reused = run(body())
    assert first.outcome is Outcome.ACCEPTED
    assert reused.outcome is Outcome.REJECTED
    assert "HTTP 409" in reused.detail
    assert [b["text"] for b in pf.broadcasts()] == [n.text]


# --- the all-clear --------------------------------------------------------------------------------


def test_all_clear_stops_every_revision_of_the_incident(pf: PlatformControl) -> None:
    r1 = make_notification(alert_id="id-001", revision=1, recipients=[TOWN], idempotency_key="id-001")
    r2 = make_notification(alert_id="id-002", revision=2, recipients=[OTHER_TOWN], idempotency_key="id-002")
    other = make_notification(
        alert_id="fire-001", fingerprint="fire:330109:smoke", recipients=[OTHER_VILLAGE], idempotency_key="fire-001"
    )
    cancel = make_notification(
        alert_id="id-003", revision=3, channel=STOP_CHANNEL, recipients=[], text="", idempotency_key="id-003"
    )

    async def body() -> tuple[list[DeliveryResult], list[DeliveryResult]]:
        async with adapter_for(pf) as adapter:
            started = await send_all(adapter, [r1, r2, other])
            stops = await send_all(adapter, [cancel, cancel, stop_notification(r1, idempotency_key="id-004")])
            return started, stops

    (s1, s2, s_other), (stop, again, later) = run(body())
    assert stop.outcome is Outcome.ACCEPTED
    assert "stopped 2 broadcasts" in stop.detail
    assert set(stop.provider_ref.split(",")) == {s1.provider_ref, s2.provider_ref}
    assert again.outcome is Outcome.DUPLICATE and again.provider_ref == stop.provider_ref
    assert later.outcome is Outcome.ACCEPTED and "stopped 0 broadcasts" in later.detail  # nothing left: still ok
    states = pf.states()
    assert states == {s1.provider_ref: "stopped", s2.provider_ref: "stopped", s_other.provider_ref: "playing"}
    stats = pf.stats()
    assert (stats["stop_requests"], stats["stopped"], stats["duplicates"]) == (2, 2, 1)


def test_all_clear_without_broadcasts_is_success(pf: PlatformControl) -> None:
    n = stop_notification(make_notification())
    assert (n.channel, n.recipients, n.text) == (STOP_CHANNEL, [], "")
    assert n.idempotency_key == f"{make_notification().idempotency_key}:stop"

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            return await send_with_retries(adapter, n, sleep=RecordingSleep())

    [result] = run(body())
    assert result.outcome is Outcome.ACCEPTED and result.provider_ref == ""


def test_stop_one_broadcast_is_idempotent(pf: PlatformControl) -> None:
    async def body() -> DeliveryResult:
        async with adapter_for(pf) as adapter:
            return await adapter.send(make_notification())

    ref = run(body()).provider_ref
    path = f"/v1/broadcasts/{ref}/stop"
    assert pf.request("POST", path)[0] == 401
    for _ in range(2):
        assert pf.request("POST", path, api_key=API_KEY) == (200, {"broadcast_id": ref, "state": "stopped"})
    status, body_ = pf.request("POST", "/v1/broadcasts/bc-unknown/stop", api_key=API_KEY)
    assert status == 404 and body_["error"]
    assert pf.states() == {ref: "stopped"}
    assert pf.stats()["stopped"] == 1


# --- scheduling -----------------------------------------------------------------------------------


def test_higher_priority_preempts_lower_in_overlapping_area(pf: PlatformControl) -> None:
    low = make_notification(priority=1, recipients=[TOWN], idempotency_key="low")
    elsewhere = make_notification(priority=1, recipients=[OTHER_TOWN], idempotency_key="elsewhere")
    high = make_notification(priority=4, recipients=[DISTRICT], idempotency_key="high", fingerprint="quake:330106:eew")

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            started = await send_all(adapter, [low, elsewhere, high])
            await adapter.send(stop_notification(high))
            return started

    r_low, r_elsewhere, r_high = run(body())
    assert all(r.outcome is Outcome.ACCEPTED for r in (r_low, r_elsewhere, r_high))
    assert "playing" in r_high.detail
    listed = {b["broadcast_id"]: b for b in pf.broadcasts()}
    assert listed[r_low.provider_ref]["state"] == "preempted"
    assert listed[r_low.provider_ref]["preempted_by"] == r_high.provider_ref
    assert listed[r_elsewhere.provider_ref]["state"] == "playing"  # no overlap, untouched
    assert listed[r_high.provider_ref]["state"] == "stopped"  # and pre-emption is final
    assert pf.stats()["preempted"] == 1


def test_lower_priority_is_queued_until_the_higher_one_stops(pf: PlatformControl) -> None:
    high = make_notification(priority=4, recipients=[DISTRICT], idempotency_key="high", fingerprint="quake:330106:eew")
    low = make_notification(priority=2, recipients=[VILLAGE], idempotency_key="low")
    same = make_notification(priority=4, recipients=[TOWN], idempotency_key="same", fingerprint="fire:330106:smoke")

    async def body() -> tuple[list[DeliveryResult], dict[str, str]]:
        async with adapter_for(pf) as adapter:
            started = await send_all(adapter, [high, low, same])
            queued_states = pf.states()
            await adapter.send(stop_notification(high))
            return started, queued_states

    (r_high, r_low, r_same), before = run(body())
    assert r_low.outcome is Outcome.ACCEPTED and "queued" in r_low.detail
    assert r_same.outcome is Outcome.ACCEPTED and "queued" in r_same.detail  # equal rank: first come first served
    assert before == {r_high.provider_ref: "playing", r_low.provider_ref: "queued", r_same.provider_ref: "queued"}
    # the stop frees the district: the more urgent queued one plays, the other waits behind it
    after = pf.states()
    assert after == {r_high.provider_ref: "stopped", r_low.provider_ref: "queued", r_same.provider_ref: "playing"}
    assert pf.stats()["queued"] == 2


def test_exercise_never_interrupts_a_real_broadcast(pf: PlatformControl) -> None:
    real = make_notification(priority=1, recipients=[TOWN], idempotency_key="real")
    drill = make_notification(priority=4, recipients=[DISTRICT], exercise=True, idempotency_key="drill")
    drill_elsewhere = make_notification(priority=4, recipients=[OTHER_TOWN], exercise=True, idempotency_key="drill-2")
    real_elsewhere = make_notification(priority=1, recipients=[OTHER_TOWN], idempotency_key="real-2")

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            return await send_all(adapter, [real, drill, drill_elsewhere, real_elsewhere])

    refs = [r.provider_ref for r in run(body())]
    states = pf.states()
    assert [states[r] for r in refs] == ["playing", "queued", "preempted", "playing"]


# --- failures -------------------------------------------------------------------------------------


def test_http500_retries_then_succeeds(pf: PlatformControl) -> None:
    pf.faults("http500", count=2)
    n = make_notification()
    sleep = RecordingSleep()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            return await send_with_retries(adapter, n, base_delay_s=0.5, max_delay_s=30.0, sleep=sleep)

    results = run(body())
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.ACCEPTED]
    assert "HTTP 500" in results[0].detail
    rng = random.Random(n.idempotency_key)  # full jitter, seeded by the idempotency key
    assert sleep.delays_s == [rng.uniform(0, 0.5), rng.uniform(0, 1.0)]
    assert len(pf.broadcasts()) == 1
    assert pf.stats()["faulted"] == 2


def test_http429_and_503_give_retry_after(pf: PlatformControl) -> None:
    n = make_notification()
    sleep = RecordingSleep()

    async def body() -> tuple[DeliveryResult, list[DeliveryResult]]:
        async with adapter_for(pf) as adapter:
            pf.faults("http429", count=1, retry_after_s=3)
            single = await adapter.send(n)
            pf.faults("http503", count=1, retry_after_s=2)
            return single, await send_with_retries(adapter, n, sleep=sleep)

    single, results = run(body())
    assert single.outcome is Outcome.RETRY and "HTTP 429" in single.detail
    assert single.retry_after_s == 3.0
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.ACCEPTED]
    assert "HTTP 503" in results[0].detail and results[0].retry_after_s == 2.0
    assert sleep.delays_s == [2.0]  # the server's hint is a floor on the jittered delay


def test_reject_is_final_without_retry(pf: PlatformControl) -> None:
    pf.faults("reject", count=-1)
    sleep = RecordingSleep()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(pf) as adapter:
            return await send_with_retries(adapter, make_notification(), sleep=sleep)

    [result] = run(body())
    assert result.outcome is Outcome.REJECTED and not result.ok and not result.retryable
    assert "HTTP 403" in result.detail and "area not authorised" in result.detail
    assert sleep.delays_s == []
    assert pf.stats()["faulted"] == 1
    assert pf.broadcasts() == []


def test_timeout_is_retry(pf: PlatformControl) -> None:
    pf.faults("timeout", count=1)
    n = make_notification()

    async def body() -> tuple[DeliveryResult, float, DeliveryResult]:
        async with adapter_for(pf, timeout_s=0.5) as adapter:
            started_s = time.monotonic()
            stalled = await adapter.send(n)
            elapsed_s = time.monotonic() - started_s
            return stalled, elapsed_s, await adapter.send(n)

    stalled, elapsed_s, retried = run(body())
    assert stalled.outcome is Outcome.RETRY
    assert "timeout" in stalled.detail
    assert 0.4 <= elapsed_s < 3.0
    assert retried.outcome is Outcome.ACCEPTED  # the platform still serves while one request stalls


def test_lost_response_retry_comes_back_duplicate(pf: PlatformControl) -> None:
    start = make_notification()
    stop = stop_notification(start)
    sleep = RecordingSleep()

    async def body() -> tuple[list[DeliveryResult], list[DeliveryResult]]:
        async with adapter_for(pf, timeout_s=0.5) as adapter:
            pf.faults("lost_response", count=1)
            started = await send_with_retries(adapter, start, sleep=sleep)
            pf.faults("lost_response", count=1)
            return started, await send_with_retries(adapter, stop, sleep=sleep)

    started, stopped = run(body())
    assert [r.outcome for r in started] == [Outcome.RETRY, Outcome.DUPLICATE]  # applied, answer lost
    assert [r.outcome for r in stopped] == [Outcome.RETRY, Outcome.DUPLICATE]
    assert stopped[-1].provider_ref == started[-1].provider_ref
    assert pf.states() == {started[-1].provider_ref: "stopped"}
    assert pf.stats()["accepted"] == 1


def test_connection_refused_is_retry() -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def body() -> list[DeliveryResult]:
        async with BroadcastAdapter(f"http://127.0.0.1:{port}", API_KEY, timeout_s=2.0) as adapter:
            return await send_all(adapter, [make_notification(), stop_notification(make_notification())])

    for result in run(body()):
        assert result.outcome is Outcome.RETRY
        assert API_KEY not in result.detail


def test_wrong_api_key_is_rejected(pf: PlatformControl) -> None:
    async def body() -> tuple[list[DeliveryResult], str]:
        async with adapter_for(pf, api_key=WRONG_KEY) as adapter:
            sent = await send_all(adapter, [make_notification(), stop_notification(make_notification())])
            return sent, repr(adapter)

    results, adapter_repr = run(body())
    for result in results:
        assert result.outcome is Outcome.REJECTED
        assert "HTTP 401" in result.detail
        assert WRONG_KEY not in result.detail
    assert WRONG_KEY not in adapter_repr
    assert pf.broadcasts() == []
    assert pf.stats()["unauthorized"] == 2


def test_invalid_area_code_is_rejected_with_the_platforms_message(pf: PlatformControl) -> None:
    n = make_notification(recipients=[TOWN, "12345"])

    async def body() -> DeliveryResult:
        async with adapter_for(pf) as adapter:
            return await adapter.send(n)

    result = run(body())
    assert result.outcome is Outcome.REJECTED
    assert "HTTP 422" in result.detail
    assert "invalid area code '12345'" in result.detail and "area_codes" in result.detail
    assert pf.broadcasts() == []
    assert pf.stats()["invalid"] == 1


def test_api_key_never_leaks(pf: PlatformControl, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    details: list[str] = []

    async def body() -> list[str]:
        async with adapter_for(pf, timeout_s=0.5) as adapter:
            for mode in ("none", "http500", "http503", "http429", "reject", "timeout"):
                pf.faults(mode, count=2)
                n = make_notification(idempotency_key=mode)
                details.append((await adapter.send(n)).detail)
                details.append((await adapter.send(stop_notification(n))).detail)
            details.append((await adapter.send(make_notification(recipients=["bad"]))).detail)
            return [repr(adapter), str(adapter), str(vars(adapter))]

    shown = run(body())
    for text in [*shown, *details, caplog.text]:
        assert API_KEY not in text
    assert "api_key='*" in shown[0]
    assert "broadcast" in caplog.text  # the adapter did log, just not the key


# --- emulator API edges ---------------------------------------------------------------------------


def test_emulator_validates_and_authenticates(pf: PlatformControl) -> None:
    good = {
        "request_id": "k1",
        "area_codes": [TOWN],
        "level": 2,
        "priority": 2,
        "text": "测试",
        "repeat": 3,
        "exercise": False,
        "alert_id": "a1",
    }
    assert pf.request("GET", "/healthz") == (200, {"status": "ok"})
    assert pf.request("POST", "/v1/broadcasts", good)[0] == 401
    assert pf.request("POST", "/v1/broadcasts", good, api_key=WRONG_KEY)[0] == 401
    assert pf.request("GET", "/v1/broadcasts")[0] == 401
    assert pf.request("POST", "/v1/broadcasts/stop-by-alert", {"request_id": "s", "alert_id": "a1"})[0] == 401
    bad_bodies = [
        {**good, "area_codes": []},
        *({**good, "area_codes": [code]} for code in ("033010", "33010", "3301060", "33010600100", "3301060010021")),
        {**good, "area_codes": [330106]},
        {**good, "level": 0},
        {**good, "priority": 5},
        {**good, "text": ""},
        {**good, "text": "   "},
        {**good, "text": "x" * 2001},
        {**good, "repeat": 0},
        {**good, "repeat": 11},
        {**good, "exercise": "no"},
        {**good, "alert_id": ""},
        {k: v for k, v in good.items() if k != "request_id"},
        {**good, "unexpected": True},
    ]
    for bad in bad_bodies:
        status, body = pf.request("POST", "/v1/broadcasts", bad, api_key=API_KEY)
        assert status == 422, bad
        assert body["error"] and body["details"]
    assert pf.request("POST", "/v1/broadcasts", ["not", "an", "object"], api_key=API_KEY)[0] == 400
    assert pf.request("POST", "/v1/broadcasts/stop-by-alert", {"alert_id": "a1"}, api_key=API_KEY)[0] == 422
    status, body = pf.request("POST", "/v1/broadcasts", {**good, "text": "x" * 2000}, api_key=API_KEY)
    assert status == 202 and body["state"] == "playing" and body["terminals"] == 15 and body["duplicate"] is False
    status, again = pf.request("POST", "/v1/broadcasts", {**good, "text": "x" * 2000}, api_key=API_KEY)
    assert status == 200 and again == {**body, "duplicate": True}
    stop = {"request_id": "s1", "alert_id": "a1"}
    status, stopped = pf.request("POST", "/v1/broadcasts/stop-by-alert", stop, api_key=API_KEY)
    assert status == 200 and stopped == {"alert_id": "a1", "stopped": [body["broadcast_id"]], "duplicate": False}
    status, _ = pf.request("POST", "/v1/broadcasts/stop-by-alert", {**stop, "alert_id": "a2"}, api_key=API_KEY)
    assert status == 409
    assert pf.stats()["invalid"] == len(bad_bodies) + 2
    assert pf.request("POST", "/_control/faults", {"mode": "explode"})[0] == 422
    status, listed = pf.request("GET", "/v1/broadcasts?alert_id=a2", api_key=API_KEY)
    assert status == 200 and listed == {"broadcasts": []}


def test_platform_thread_in_process() -> None:
    async def body(base_url: str) -> DeliveryResult:
        async with BroadcastAdapter(base_url, API_KEY, timeout_s=2.0) as adapter:
            return await adapter.send(make_notification())

    with BroadcastPlatformThread(PlatformConfig(api_key=API_KEY)) as platform:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", platform.base_url)
        assert not platform.base_url.endswith(":0")
        result = run(body(platform.base_url))
        stats = PlatformControl(platform.base_url).stats()
    assert result.outcome is Outcome.ACCEPTED
    assert stats["accepted"] == 1 and stats["states"]["playing"] == 1
    assert "api_key='***'" in repr(PlatformConfig(api_key=API_KEY)) and API_KEY not in repr(PlatformConfig(API_KEY))


# --- adapter contract, without the network --------------------------------------------------------


def test_adapter_satisfies_the_protocol_and_validates_arguments() -> None:
    assert isinstance(BroadcastAdapter("http://127.0.0.1:1", API_KEY), Adapter)
    assert BroadcastAdapter.name == "broadcast"
    bad_arguments: list[dict[str, Any]] = [{"api_key": ""}, {"timeout_s": 0}, {"repeat": 0}, {"repeat": 11}]
    for kwargs in bad_arguments:
        with pytest.raises(ValueError):
            BroadcastAdapter("http://127.0.0.1:1", **{"api_key": API_KEY, **kwargs})


def test_send_before_start_and_foreign_channel_raise() -> None:
    async def body(n: Notification) -> None:
        await BroadcastAdapter("http://127.0.0.1:1", API_KEY).send(n)

    with pytest.raises(AdapterError, match="before start"):
        run(body(make_notification()))
    with pytest.raises(AdapterError, match="cannot send channel 'sms'"):
        run(body(make_notification(channel="sms")))


def test_no_area_codes_is_rejected_without_a_request() -> None:
    async def body() -> DeliveryResult:  # nothing listens on port 1: a request would be RETRY
        async with BroadcastAdapter("http://127.0.0.1:1", API_KEY) as adapter:
            return await adapter.send(make_notification(recipients=[]))

    result = run(body())
    assert result.outcome is Outcome.REJECTED and "no area codes" in result.detail


# --- scheduling invariants, without the network ---------------------------------------------------

AREA_POOL = ["330106", "330106001", "330106001001", "330106002", "330108", "330108001001"]

_start = st.tuples(
    st.just("start"),
    st.lists(st.sampled_from(AREA_POOL), min_size=1, max_size=3),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 2),  # alert
)
_stop = st.tuples(st.just("stop"), st.integers(0, 30))
_stop_alert = st.tuples(st.just("stop_alert"), st.integers(0, 2))
_ALLOWED = {
    BroadcastState.QUEUED: {BroadcastState.QUEUED, BroadcastState.PLAYING, BroadcastState.STOPPED},
    BroadcastState.PLAYING: {BroadcastState.PLAYING, BroadcastState.PREEMPTED, BroadcastState.STOPPED},
    BroadcastState.PREEMPTED: {BroadcastState.PREEMPTED, BroadcastState.STOPPED},
    BroadcastState.STOPPED: {BroadcastState.STOPPED},
}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_start, _stop, _stop_alert), max_size=30))
def test_schedule_is_consistent_after_any_operations(ops: list[tuple[Any, ...]]) -> None:
    schedule = Schedule()
    for i, op in enumerate(ops):
        before = {bc.broadcast_id: bc.state for bc in schedule.broadcasts}
        if op[0] == "start":
            _, areas, priority, exercise, alert = op
            request = BroadcastRequest(
                request_id=f"r{i}",
                area_codes=areas,
                level=priority,
                priority=priority,
                text="t",
                exercise=exercise,
                alert_id=f"a{alert}",
            )
            schedule.add(request)
        elif op[0] == "stop" and schedule.broadcasts:
            schedule.stop(schedule.broadcasts[op[1] % len(schedule.broadcasts)])
        elif op[0] == "stop_alert":
            schedule.stop_alert(f"a{op[1]}")

        playing = [bc for bc in schedule.broadcasts if bc.state is BroadcastState.PLAYING]
        for j, a in enumerate(playing):  # one broadcast per terminal
            assert not any(a.overlaps(b) for b in playing[j + 1 :])
        for bc in schedule.broadcasts:
            if bc.state is BroadcastState.QUEUED:  # waits only behind an equal or better rank
                assert any(p.overlaps(bc) and p.rank >= bc.rank for p in playing)
            if bc.state is BroadcastState.PREEMPTED:
                assert schedule.by_id[bc.preempted_by].rank > bc.rank
            if bc.broadcast_id in before:
                assert bc.state in _ALLOWED[before[bc.broadcast_id]]


def test_area_overlap_follows_the_code_hierarchy() -> None:
    assert areas_overlap(DISTRICT, VILLAGE) and areas_overlap(VILLAGE, TOWN) and areas_overlap(TOWN, TOWN)
    assert not areas_overlap(TOWN, "330106002") and not areas_overlap(DISTRICT, OTHER_TOWN)
