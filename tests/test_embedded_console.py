"""The console in the embedded demo (``make run``): the API's read model is fed from the in-process
bus, the demo login works, and a silence made in the console mutes the demo's public deliveries of
that device (while red and earthquake warnings stay unsilenced: alerts/silences.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import aiohttp

from tocsin.console_demo import start_console
from tocsin.embedded import EmbeddedPipeline, free_port
from tocsin.simulators.demo import demo_messages, demo_registry
from tocsin.simulators.run import publish_messages


def test_console_serves_the_demo_and_its_silences_reach_the_notifier() -> None:
    async def main() -> None:
        pipeline = EmbeddedPipeline(demo_registry(), mqtt_port=free_port(0))
        await pipeline.start()
        console = await start_console(pipeline, free_port(0))
        try:
            messages = demo_messages()
            await asyncio.to_thread(publish_messages, messages, "127.0.0.1", pipeline.mqtt_port, speed=5000.0)
            assert await pipeline.bus.idle(settle_s=0.5, timeout_s=60)
            base = console.url.removesuffix("/console/")
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # an IP host
                r = await http.post(f"{base}/console/login", json={"name": console.user, "password": console.password})
                assert r.status == 200
                csrf = (await r.json())["csrf"]
                listed = await (await http.get(f"{base}/alerts?state=all")).json()
                # the same incidents the pipeline issued, by fingerprint
                assert {a["fingerprint"] for a in listed["alerts"]} == {a.fingerprint for a in pipeline.summary.alerts}
                # the device states, fed from the same bus: every registered device, the ones that sent
                # readings just now reporting
                health = await (await http.get(f"{base}/console/api/devices")).json()
                registered = {d.device_id for d in pipeline.registry.devices}
                assert health["available"] and {d["id"] for d in health["devices"]} == registered
                states = {d["id"]: d["state"] for d in health["devices"]}
                sent = {m.topic.split("/")[4] for m in messages if m.topic.endswith("/telemetry")}
                assert sent == registered
                # the demo's two bad RG02 messages (a NaN, another device's identity) are dead letters
                assert {d: s for d, s in states.items() if s != "reporting"} == {"RG02": "faulty"}
                rg02 = next(d for d in health["devices"] if d["id"] == "RG02")
                assert "2 条死信" in rg02["reason"] and health["counts"]["faulty"] == 1
                now = datetime.now(UTC)
                body = {
                    "device": "RG01",
                    "starts_at": now.isoformat(),
                    "ends_at": (now + timedelta(hours=1)).isoformat(),
                    "reason": "演示：检修",
                }
                r = await http.post(f"{base}/silences", json=body, headers={"X-CSRF-Token": csrf})
                assert r.status == 201, await r.text()
                created = await r.json()
                assert created["creator"] == "demo"
            assert [s.id for s in pipeline.notifier.silences()] == [created["id"]]
        finally:
            await console.stop()
            await pipeline.stop()

    asyncio.run(main())


def test_make_run_prints_the_console_url_and_a_login() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tocsin.cli", "run", "--speed", "5000", "--mqtt-port", "0", "--console-port", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("Console"))
    assert "http://127.0.0.1:" in line and "/console/" in line and "login demo / " in line
