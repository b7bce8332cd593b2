"""SmsAdapter against the SMS-carrier emulator running as a real subprocess, plus the retry helper."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from tests.alerts.emulators import EmulatorControl, RecordingSleep, emulator_process, run
from tocsin.alerts.adapters.base import (
    Adapter,
    AdapterError,
    DeliveryResult,
    Notification,
    Outcome,
    backoff_delay_s,
    send_with_retries,
)
from tocsin.alerts.adapters.sms import SmsAdapter, parse_retry_after
from tocsin.simulators.sms_gateway import GatewayConfig, SmsGatewayThread

API_KEY = "tocsin-test-key-7f3a9c1e"
WRONG_KEY = "wrong-secret-55d0b2"
ALICE = "+8613800000001"
BOB = "+8613800000002"
CAROL = "+8613800000003"
BANNER = re.compile(r"^sms-gateway listening on (http://\S+)$")


def make_notification(**overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "alert_id": "cap-2024-0001",
        "fingerprint": "hydro:330106:gauge-7",
        "revision": 1,
        "channel": "sms",
        "recipients": [ALICE],
        "text": "【杭州西湖区】山洪黄色预警：请立即转移至安全地带。",
        "priority": 2,
        "idempotency_key": "cap-2024-0001:sms:r1",
        "correlation_id": "corr-1",
    }
    fields.update(overrides)
    return Notification(**fields)


# --- emulator process -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = ["--receipt-delay-s", "0.1", "--rate-limit-per-s", "1000"]
    stderr_path = tmp_path_factory.mktemp("sms-gateway") / "stderr.log"
    with emulator_process(
        "tocsin.simulators.sms_gateway", args, {"TOCSIN_SMS_API_KEY": API_KEY}, BANNER, stderr_path
    ) as url:
        yield url


class GatewayControl(EmulatorControl):
    """Synchronous client for the emulator's control plane and message list."""

    def messages(self) -> list[dict[str, Any]]:
        status, body = self.request("GET", "/v1/sms", api_key=API_KEY)
        assert status == 200
        return body["messages"]


@pytest.fixture
def gw(gateway_url: str) -> GatewayControl:
    control = GatewayControl(gateway_url)
    control.reset()
    return control


def adapter_for(gw: GatewayControl, **kwargs: Any) -> SmsAdapter:
    kwargs.setdefault("timeout_s", 3.0)
    return SmsAdapter(gw.base_url, kwargs.pop("api_key", API_KEY), **kwargs)


# --- happy path -----------------------------------------------------------------------------------


def test_accepted_send_is_stored(gw: GatewayControl) -> None:
    n = make_notification()

    async def body() -> DeliveryResult:
        async with adapter_for(gw) as adapter:
            return await adapter.send(n)

    result = run(body())
    assert result.outcome is Outcome.ACCEPTED and result.ok and not result.retryable
    assert result.provider_ref.startswith("sm-")
    [msg] = gw.messages()
    assert msg["to"] == ALICE
    assert msg["text"] == n.text
    assert msg["idempotency_key"] == f"{n.idempotency_key}:{ALICE}"
    assert msg["priority"] == 2
    assert msg["message_id"] == result.provider_ref
    assert msg["segments"] == 1


def test_one_request_per_recipient(gw: GatewayControl) -> None:
    n = make_notification(recipients=[ALICE, BOB, CAROL, BOB])

    async def body() -> tuple[DeliveryResult, DeliveryResult]:
        async with adapter_for(gw) as adapter:
            return await adapter.send(n), await adapter.send_one(n, ALICE)

    aggregate, again = run(body())
    assert aggregate.outcome is Outcome.ACCEPTED
    assert again.outcome is Outcome.DUPLICATE
    assert sorted(m["to"] for m in gw.messages()) == [ALICE, BOB, CAROL]  # BOB deduplicated
    assert gw.stats()["requests"] == 4


def test_duplicate_idempotency_key_not_stored_twice(gw: GatewayControl) -> None:
    n = make_notification()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(gw) as adapter:
            return [await adapter.send(n), await adapter.send(n)]

    first, second = run(body())
    assert first.outcome is Outcome.ACCEPTED
    assert second.outcome is Outcome.DUPLICATE and second.ok
    assert second.provider_ref == first.provider_ref
    assert len(gw.messages()) == 1
    assert gw.stats()["duplicates"] == 1


# --- failures -------------------------------------------------------------------------------------


def test_http500_retries_then_succeeds(gw: GatewayControl) -> None:
    gw.faults("http500", count=2)
    n = make_notification()
    sleep = RecordingSleep()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(gw) as adapter:
            return await send_with_retries(adapter, n, base_delay_s=0.5, max_delay_s=30.0, sleep=sleep)

    results = run(body())
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.ACCEPTED]
    assert "HTTP 500" in results[0].detail
    rng = random.Random(n.idempotency_key)  # full jitter, seeded by the idempotency key
    assert sleep.delays_s == [rng.uniform(0, 0.5), rng.uniform(0, 1.0)]
    assert len(gw.messages()) == 1
    assert gw.stats()["faulted"] == 2


def test_http429_gives_retry_after(gw: GatewayControl) -> None:
    gw.faults("http429", count=2, retry_after_s=3)
    n = make_notification()
    sleep = RecordingSleep()

    async def body() -> tuple[DeliveryResult, list[DeliveryResult]]:
        async with adapter_for(gw) as adapter:
            single = await adapter.send(n)
            return single, await send_with_retries(adapter, n, sleep=sleep)

    single, results = run(body())
    assert single.outcome is Outcome.RETRY
    assert single.retry_after_s == 3.0
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.ACCEPTED]
    assert sleep.delays_s == [3.0]  # the server's hint is a floor on the jittered delay


def test_reject_is_final_without_retry(gw: GatewayControl) -> None:
    gw.faults("reject", count=-1)
    sleep = RecordingSleep()

    async def body() -> list[DeliveryResult]:
        async with adapter_for(gw) as adapter:
            return await send_with_retries(adapter, make_notification(), sleep=sleep)

    [result] = run(body())
    assert result.outcome is Outcome.REJECTED and not result.ok and not result.retryable
    assert "number barred" in result.detail
    assert sleep.delays_s == []
    assert gw.stats()["faulted"] == 1
    assert gw.messages() == []


def test_timeout_is_retry(gw: GatewayControl) -> None:
    gw.faults("timeout", count=1)
    n = make_notification()

    async def body() -> tuple[DeliveryResult, float, DeliveryResult]:
        async with adapter_for(gw, timeout_s=0.5) as adapter:
            started_s = time.monotonic()
            stalled = await adapter.send(n)
            elapsed_s = time.monotonic() - started_s
            return stalled, elapsed_s, await adapter.send(n)

    stalled, elapsed_s, retried = run(body())
    assert stalled.outcome is Outcome.RETRY
    assert "timeout" in stalled.detail
    assert 0.4 <= elapsed_s < 3.0
    assert retried.outcome is Outcome.ACCEPTED  # the gateway still serves while one request stalls


def test_connection_refused_is_retry() -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def body() -> DeliveryResult:
        async with SmsAdapter(f"http://127.0.0.1:{port}", API_KEY, timeout_s=2.0) as adapter:
            return await adapter.send(make_notification())

    result = run(body())
    assert result.outcome is Outcome.RETRY
    assert API_KEY not in result.detail


def test_wrong_api_key_is_rejected(gw: GatewayControl) -> None:
    async def body() -> tuple[DeliveryResult, str]:
        async with adapter_for(gw, api_key=WRONG_KEY) as adapter:
            return await adapter.send(make_notification()), repr(adapter)

    result, adapter_repr = run(body())
    assert result.outcome is Outcome.REJECTED
    assert "401" in result.detail
    assert WRONG_KEY not in result.detail and WRONG_KEY not in adapter_repr
    assert gw.messages() == []
    assert gw.stats()["unauthorized"] == 1


def test_invalid_recipient_rejects_and_is_named(gw: GatewayControl) -> None:
    n = make_notification(recipients=[ALICE, "12345"])

    async def body() -> DeliveryResult:
        async with adapter_for(gw) as adapter:
            return await adapter.send(n)

    result = run(body())
    assert result.outcome is Outcome.REJECTED
    assert "1/2 recipients failed" in result.detail and "12345" in result.detail and "422" in result.detail
    assert [m["to"] for m in gw.messages()] == [ALICE]


def test_rejected_beats_retry_in_aggregate(gw: GatewayControl) -> None:
    gw.faults("http500", count=1)
    n = make_notification(recipients=[ALICE, "not-a-number"])

    async def body() -> DeliveryResult:
        async with adapter_for(gw, max_concurrency=1) as adapter:  # sequential: ALICE takes the 500
            return await adapter.send(n)

    result = run(body())
    assert result.outcome is Outcome.REJECTED
    assert "2/2 recipients failed" in result.detail
    assert f"{ALICE} retry" in result.detail and "not-a-number rejected" in result.detail


def test_api_key_never_leaks(gw: GatewayControl, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    details: list[str] = []

    async def body() -> list[str]:
        async with adapter_for(gw, timeout_s=0.5) as adapter:
            for mode in ("none", "http500", "http429", "reject", "timeout"):
                gw.faults(mode, count=1)
                details.append((await adapter.send(make_notification(idempotency_key=mode))).detail)
            return [repr(adapter), str(adapter), str(vars(adapter))]

    shown = run(body())
    for text in [*shown, *details, caplog.text]:
        assert API_KEY not in text
    assert "api_key='*" in shown[0]


# --- delivery receipts ----------------------------------------------------------------------------


def test_delivery_receipt_reaches_callback(gw: GatewayControl) -> None:
    n = make_notification()

    async def body() -> tuple[DeliveryResult, dict[str, Any]]:
        receipts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_receipt(request: web.Request) -> web.Response:
            await receipts.put({**await request.json(), "query": dict(request.query)})
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/receipts", on_receipt)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            callback_url = f"http://127.0.0.1:{runner.addresses[0][1]}/receipts?worker=w1"
            async with adapter_for(gw, callback_url=callback_url) as adapter:
                result = await adapter.send(n)
                receipt = await asyncio.wait_for(receipts.get(), timeout=5.0)
                await adapter.send(n)  # duplicate: no second receipt
                await asyncio.sleep(0.5)
                assert receipts.empty()
            return result, receipt
        finally:
            await runner.cleanup()

    result, receipt = run(body())
    assert receipt["message_id"] == result.provider_ref
    assert receipt["to"] == ALICE
    assert receipt["status"] == "DELIVRD"
    assert receipt["idempotency_key"] == f"{n.idempotency_key}:{ALICE}"
    assert datetime.fromisoformat(receipt["delivered_at"]).tzinfo is not None
    # the per-message callback URL carries the correlation id (and keeps the configured query)
    assert receipt["query"] == {"worker": "w1", "correlation_id": "corr-1"}


# --- emulator API edges ---------------------------------------------------------------------------


def test_emulator_validates_and_authenticates(gw: GatewayControl) -> None:
    good = {"to": ALICE, "text": "hi", "sender_id": "TOCSIN", "idempotency_key": "k1", "priority": 1}
    assert gw.request("GET", "/healthz")[0] == 200
    assert gw.request("POST", "/v1/sms", good)[0] == 401
    assert gw.request("POST", "/v1/sms", good, api_key=WRONG_KEY)[0] == 401
    assert gw.request("GET", "/v1/sms")[0] == 401
    for bad in (
        {**good, "to": "13800000000"},
        {**good, "to": "+0123456789"},
        {**good, "text": ""},
        {**good, "text": "x" * 1001},
        {**good, "priority": 5},
        {**good, "unexpected": True},
    ):
        status, body = gw.request("POST", "/v1/sms", bad, api_key=API_KEY)
        assert status == 422, bad
        assert body["error"]
    assert gw.request("POST", "/v1/sms", ["not", "an", "object"], api_key=API_KEY)[0] == 400
    status, body = gw.request("POST", "/v1/sms", {**good, "text": "x" * 1000}, api_key=API_KEY)
    assert status == 202 and body["segments"] == 7 and body["duplicate"] is False
    status, again = gw.request("POST", "/v1/sms", {**good, "text": "x" * 1000}, api_key=API_KEY)
    assert status == 200 and again == {**body, "duplicate": True}
    assert gw.stats()["invalid"] == 7
    assert gw.request("POST", "/_control/faults", {"mode": "explode"})[0] == 422


def test_token_bucket_rate_limit_in_thread() -> None:
    config = GatewayConfig(api_key=API_KEY, rate_limit_per_s=1.0)

    async def body(base_url: str) -> list[DeliveryResult]:
        async with SmsAdapter(base_url, API_KEY, timeout_s=2.0) as adapter:
            return [await adapter.send(make_notification(idempotency_key=f"k{i}")) for i in range(3)]

    with SmsGatewayThread(config) as gateway:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", gateway.base_url)
        assert not gateway.base_url.endswith(":0")
        results = run(body(gateway.base_url))
        stats = GatewayControl(gateway.base_url).stats()
    assert results[0].outcome is Outcome.ACCEPTED
    assert [r.outcome for r in results[1:]] == [Outcome.RETRY, Outcome.RETRY]
    assert all(r.retry_after_s is not None and r.retry_after_s >= 1.0 for r in results[1:])
    assert stats["rate_limited"] == 2 and stats["accepted"] == 1


# --- contract and retry helper, without the network -----------------------------------------------


class ScriptedAdapter:
    name = "scripted"

    def __init__(self, outcomes: list[DeliveryResult]) -> None:
        self._outcomes = list(outcomes)
        self.sent = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, n: Notification) -> DeliveryResult:
        self.sent += 1
        return self._outcomes.pop(0)


def test_adapters_satisfy_the_protocol() -> None:
    assert isinstance(SmsAdapter("http://127.0.0.1:1", API_KEY), Adapter)
    assert isinstance(ScriptedAdapter([]), Adapter)


def test_send_before_start_raises() -> None:
    async def body() -> None:
        await SmsAdapter("http://127.0.0.1:1", API_KEY).send(make_notification())

    with pytest.raises(AdapterError):
        run(body())


def test_retries_stop_after_max_attempts_without_trailing_sleep() -> None:
    adapter = ScriptedAdapter([DeliveryResult(Outcome.RETRY)] * 3)
    sleep = RecordingSleep()
    results = run(send_with_retries(adapter, make_notification(), max_attempts=3, sleep=sleep))
    assert [r.outcome for r in results] == [Outcome.RETRY] * 3
    assert len(sleep.delays_s) == 2


def test_retry_delays_are_deterministic_and_capped() -> None:
    n = make_notification()
    runs: list[list[float]] = []
    for _ in range(2):
        sleep = RecordingSleep()
        script = [DeliveryResult(Outcome.RETRY)] * 7 + [DeliveryResult(Outcome.DUPLICATE)]
        results = run(
            send_with_retries(
                ScriptedAdapter(script), n, max_attempts=10, base_delay_s=1.0, max_delay_s=4.0, sleep=sleep
            )
        )
        assert results[-1].ok and len(results) == 8
        runs.append(sleep.delays_s)
    assert runs[0] == runs[1]
    assert all(0.0 <= d <= min(4.0, 2.0**i) for i, d in enumerate(runs[0]))


def test_retry_after_is_a_floor_capped_by_max_delay() -> None:
    rng = random.Random("k")
    assert backoff_delay_s(0, rng, base_delay_s=0.5, max_delay_s=30.0, retry_after_s=7.0) == 7.0
    assert backoff_delay_s(0, rng, base_delay_s=0.5, max_delay_s=30.0, retry_after_s=120.0) == 30.0


def test_invalid_max_attempts() -> None:
    with pytest.raises(ValueError):
        run(send_with_retries(ScriptedAdapter([]), make_notification(), max_attempts=0))


def test_parse_retry_after() -> None:
    now = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("5", now_s=now.timestamp()) == 5.0
    http_date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(http_date, now_s=now.timestamp()) == 90.0
    assert parse_retry_after("soon", now_s=now.timestamp()) is None
    assert parse_retry_after(None, now_s=now.timestamp()) is None
