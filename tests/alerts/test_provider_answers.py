"""The SMS and broadcast adapters count a message only on a well-formed acceptance (alerts/adapters/http.py).

A real HTTP server on 127.0.0.1 answers what a misconfigured proxy, a captive portal or a changed
provider API would; none of it may count as ``accepted`` (it is ``retry``: the idempotency key makes
the retry safe)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from tocsin.alerts.adapters.base import Notification, Outcome
from tocsin.alerts.adapters.broadcast import BroadcastAdapter
from tocsin.alerts.adapters.sms import SmsAdapter

KEY = "provider-test-key-83e1"


def note(channel: str, recipients: list[str]) -> Notification:
    return Notification(
        alert_id="33011000020260714100000-hydro-rain-000",
        fingerprint="hydro:330110:rain",
        revision=0,
        channel=channel,
        recipients=recipients,
        text="【测试】暴雨红色预警",
        priority=4,
        idempotency_key="k1",
    )


@asynccontextmanager
async def provider(status: int, body: bytes, content_type: str | None) -> AsyncIterator[str]:
    async def answer(_request: web.Request) -> web.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


BAD_ANSWERS = [
    (200, b"<html><body>Welcome to the hotel Wi-Fi</body></html>", "text/html"),
    (200, b'{"message_id": "sm-1"}', "text/plain"),
    (200, b"", None),
    (204, b"", None),
    (200, b'["sm-1"]', "application/json"),
    (202, b'{"status": "ok"}', "application/json"),  # no message id / broadcast id
    (202, b'{"message_id": "", "broadcast_id": ""}', "application/json"),
    (202, b"not json", "application/json"),
]


@pytest.mark.parametrize(("status", "body", "ctype"), BAD_ANSWERS)
def test_malformed_acceptances_are_not_counted(status: int, body: bytes, ctype: str | None) -> None:
    async def main() -> None:
        async with provider(status, body, ctype) as url:
            async with SmsAdapter(url, KEY, timeout_s=5) as sms:
                r = await sms.send(note("sms", ["+8613800001234"]))
                assert r.outcome is Outcome.RETRY and not r.ok, r
            async with BroadcastAdapter(url, KEY, timeout_s=5) as bc:
                r = await bc.send(note("broadcast", ["330110"]))
                assert r.outcome is Outcome.RETRY and not r.ok, r

    asyncio.run(main())


def test_well_formed_acceptances_count() -> None:
    async def main() -> None:
        sms_ok = b'{"message_id": "sm-1", "segments": 1, "duplicate": false}'
        async with provider(202, sms_ok, "application/json; charset=utf-8") as url:
            async with SmsAdapter(url, KEY, timeout_s=5) as sms:
                r = await sms.send(note("sms", ["+8613800001234"]))
        assert r.outcome is Outcome.ACCEPTED and r.provider_ref == "sm-1"
        bc_ok = b'{"broadcast_id": "bc-1", "state": "playing", "terminals": 12, "duplicate": true}'
        async with provider(200, bc_ok, "application/json") as url:
            async with BroadcastAdapter(url, KEY, timeout_s=5) as bc:
                r = await bc.send(note("broadcast", ["330110"]))
        assert r.outcome is Outcome.DUPLICATE and r.provider_ref == "bc-1"

    asyncio.run(main())
