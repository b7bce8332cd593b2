"""The operator API and console inside the embedded demo (``make run``, tocsin/embedded.py).

No Kafka there: the API's read model is fed from the in-process bus (``alerts``, deliveries, acks,
release events), the console's device states from the same bus (readings, statuses, detections,
dead letters, at their arrival on the bus), acks and release decisions are published on the bus,
and silences live in memory (and are applied by the demo's notifier). One demo login, a supervisor
named ``demo`` with a random password, is made for the run and printed; the server listens on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tocsin.alerts.silences import Silence
from tocsin.schemas import topics
from tocsin.schemas.wire import encode

DEMO_USER = "demo"


class MemorySilences:
    """Silences for the embedded mode: the API's SilenceSource and SilenceWriter in one, in memory."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}
        self._lock = threading.Lock()

    @property
    def caught_up(self) -> bool:
        return True

    def get(self, silence_id: str) -> Silence | None:
        with self._lock:
            return self._by_id.get(silence_id)

    def silences(self) -> list[Silence]:
        with self._lock:
            return list(self._by_id.values())

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        return predicate()  # writes apply at once

    async def publish(self, silence: Silence) -> object:
        with self._lock:
            self._by_id[silence.id] = silence
        return None

    async def delete(self, silence_id: str) -> object:
        with self._lock:
            self._by_id.pop(silence_id, None)
        return None


@dataclass
class EmbeddedConsole:
    url: str
    user: str
    password: str
    runner: web.AppRunner
    feed: asyncio.Task[None]
    users_file: str

    async def stop(self) -> None:
        self.feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.feed
        await self.runner.cleanup()
        with contextlib.suppress(OSError):
            os.unlink(self.users_file)


async def start_console(pipeline: Any, port: int, host: str = "127.0.0.1") -> EmbeddedConsole:
    """Serve the API and console for a started :class:`~tocsin.embedded.EmbeddedPipeline`."""
    from tocsin.alerts.api import AlertView, build_app
    from tocsin.alerts.auth import Authenticator, Role, UserRecord, UsersFile, hash_secret, write_users_file
    from tocsin.alerts.console import ReleaseView
    from tocsin.alerts.console.devices import DeviceHealthModel

    bus = pipeline.bus
    view, releases, silences = AlertView(), ReleaseView(), MemorySilences()
    view.mark_caught_up()
    pipeline.notifier.silences = silences.silences  # the demo's deliveries honour the console's silences
    devices = DeviceHealthModel(pipeline.registry) if pipeline.registry is not None else None
    health_topics = (
        (*topics.TELEMETRY_TOPICS, topics.DEVICE_STATUS, topics.DETECTIONS, topics.DETECTIONS_URGENT, topics.DEADLETTER)
        if devices is not None
        else ()
    )
    queue = bus.subscribe(topics.ALERTS, topics.DELIVERIES, topics.ACKS, topics.RELEASES, *health_topics)

    async def feed() -> None:
        while True:
            topic, key, value, _headers = await queue.get()
            try:
                if topic == topics.RELEASES:
                    releases.apply_record(value)
                elif topic in health_topics:
                    assert devices is not None
                    devices.apply_record(topic, key, value, time.time())
                else:
                    view.apply_record(topic, value)
            finally:
                bus.done()

    async def publish_ack(ack: Any) -> None:
        bus.publish(topics.ACKS, ack.fingerprint.encode(), encode(ack))

    async def publish_release(event: Any) -> None:
        bus.publish(topics.RELEASES, event.fingerprint.encode(), encode(event))

    password = secrets.token_urlsafe(9)
    fd, users_file = tempfile.mkstemp(prefix="tocsin-demo-users-", suffix=".json")
    os.close(fd)
    record = UserRecord(name=DEMO_USER, role=Role.SUPERVISOR, password_hash=hash_secret(password))
    write_users_file(users_file, UsersFile(users=[record]))
    app = build_app(
        view,
        silence_store=silences,
        silence_writer=silences,
        ack_publisher=publish_ack,
        auth=Authenticator(users_file),
        console={
            "releases": releases,
            "publish_release": publish_release,
            "registry": pipeline.registry,
            "devices": devices,
        },
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    task = asyncio.create_task(feed(), name="console-feed")
    return EmbeddedConsole(f"http://{host}:{bound}/console/", DEMO_USER, password, runner, task, users_file)
