"""The operator API's process: its Kafka wiring and entry point (``python -m tocsin.api``).

The HTTP handlers and the read model are in alerts/api.py and know nothing of Kafka: this module
feeds the view from ``alerts``, ``alerts.deliveries`` and ``alerts.acks`` (a
:class:`~tocsin.kafka.TopicFollower`), keeps the silences (``kafka_silence_store``), writes acks and
silences (:class:`~tocsin.kafka.KafkaWriter`), reads the settings and starts the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
import time
from datetime import timedelta
from typing import Any

from aiohttp import web

from tocsin.alerts.api import DEFAULT_SILENCE_MAX, build_app
from tocsin.alerts.auth import (
    Authenticator,
    AuthError,
    FailureLimiter,
    Role,
    UserRecord,
    UsersFile,
    hash_secret,
    write_users_file,
)
from tocsin.alerts.console import ReleaseView, influx_series_reader
from tocsin.alerts.console.devices import DeviceHealthModel
from tocsin.alerts.release import ReleaseEvent
from tocsin.alerts.view import VIEW_TOPICS, AlertView
from tocsin.kafka import KafkaWriter, TopicFollower, ensure_topics, kafka_silence_store
from tocsin.logs import setup_logging
from tocsin.schemas import topics
from tocsin.schemas.registry import open_registry
from tocsin.schemas.wire import encode
from tocsin.settings import Settings, UnsafeSecret, refuse_dev_secrets

log = logging.getLogger(__name__)


def kafka_app(
    view: AlertView,
    bootstrap: str,
    *,
    partitions: int | None = None,
    console: dict[str, Any] | None = None,
    settings: Settings | None = None,
    **kwargs: Any,
) -> web.Application:
    """:func:`tocsin.alerts.api.build_app` wired to Kafka: the view follows the topics, silences come from the
    compacted topic, acks and silences are produced; all of it starts and stops with the app.

    With ``console`` (keyword arguments of :func:`tocsin.alerts.console.setup_console`), the console too:
    its release events are followed from ``alerts.releases`` and its decisions produced there; the
    device registry (``TOCSIN_REGISTRY_FILE``) and the InfluxDB series (``TOCSIN_INFLUX_*``) come
    from the settings unless given."""
    settings = settings if settings is not None else Settings()
    kafka = KafkaWriter(bootstrap)
    store = kafka_silence_store(bootstrap)
    followers = [
        TopicFollower(
            bootstrap,
            VIEW_TOPICS,
            lambda rec: view.apply_record(rec.topic, rec.value),
            name="operator-api-view",
            on_caught_up=view.mark_caught_up,
        )
    ]
    wanted = list(VIEW_TOPICS)
    if console is not None:
        console = _console_wiring(bootstrap, kafka, settings, dict(console))
        releases = console["releases"]
        followers.append(
            TopicFollower(
                bootstrap,
                (topics.RELEASES,),
                lambda rec: releases.apply_record(rec.value),
                name="operator-api-releases",
            )
        )
        wanted.append(topics.RELEASES)
        devices = console.get("devices")
        if devices is not None:
            followers += device_followers(bootstrap, devices, settings.console_lookback_s)
    app = build_app(
        view,
        silence_store=store,
        silence_writer=kafka,
        ack_publisher=kafka.publish_ack,
        console=console,
        **kwargs,
    )
    n = partitions if partitions is not None else settings.kafka_partitions

    async def start(_app: web.Application) -> None:
        try:
            await asyncio.to_thread(ensure_topics, bootstrap, wanted, n)
        except Exception as e:  # noqa: BLE001 - the followers pick the topics up once they exist
            log.warning("could not ensure topics %s: %s", wanted, e)
        await asyncio.to_thread(store.start)
        for feed in followers:
            feed.start()

    async def stop(_app: web.Application) -> None:
        for feed in followers:
            feed.stop()
        await asyncio.to_thread(store.stop)
        await asyncio.to_thread(kafka.close)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def _console_wiring(bootstrap: str, kafka: KafkaWriter, settings: Settings, console: dict[str, Any]) -> dict[str, Any]:
    """The console's arguments completed from the runtime: a release view, a Kafka publisher of
    release decisions (the API's producer), the registry and the InfluxDB series reader."""
    console.setdefault("releases", ReleaseView())
    if console.get("publish_release") is None:

        def send(event: ReleaseEvent) -> Any:
            value = encode(event)
            return kafka.producer().send(topics.RELEASES, key=event.fingerprint.encode(), value=value).get(timeout=10)

        async def publish(event: ReleaseEvent) -> object:
            return await asyncio.to_thread(send, event)

        console["publish_release"] = publish
    if console.get("registry") is None:
        try:
            console["registry"] = open_registry(settings.registry_file)
        except Exception as e:  # noqa: BLE001 - the map then shows the outline and alerts only
            log.warning("console map without a device registry: %s", e)
    if console.get("devices") is None and console.get("registry") is not None:
        console["devices"] = DeviceHealthModel(
            console["registry"],
            stale_factor=settings.console_stale_factor,
            fault_window_s=settings.console_fault_window_s,
            silent_since=time.time() - settings.console_lookback_s,
        )
    if console.get("read_series") is None and settings.influx_url:
        console["read_series"] = influx_series_reader(
            settings.influx_url, settings.influx_token.get_secret_value(), settings.influx_org, settings.influx_bucket
        )
    return console


DEVICE_TOPICS_RECENT = (*topics.TELEMETRY_TOPICS, topics.DEADLETTER)
DEVICE_TOPICS_ALL = (topics.DEVICE_STATUS, topics.DETECTIONS, topics.DETECTIONS_URGENT)


def device_followers(bootstrap: str, devices: DeviceHealthModel, lookback_s: float) -> list[TopicFollower]:
    """Two followers feeding the console's device states, each record at its Kafka timestamp (the
    gateway's receive time for readings): readings and dead letters of the last ``lookback_s``
    (the busy topics), statuses and detections from the beginning (retained, few)."""

    def feed(rec: Any) -> None:
        devices.apply_record(rec.topic, rec.key, rec.value, rec.timestamp / 1000.0)

    return [
        TopicFollower(
            bootstrap,
            DEVICE_TOPICS_RECENT,
            feed,
            name="operator-api-device-readings",
            since_ms=lambda: int((time.time() - lookback_s) * 1000),
        ),
        TopicFollower(bootstrap, DEVICE_TOPICS_ALL, feed, name="operator-api-device-status"),
    ]


async def serve(
    host: str,
    port: int,
    bootstrap: str,
    view: AlertView | None = None,
    *,
    auth: Authenticator | None = None,
    ssl_context: ssl.SSLContext | None = None,
    silence_max: timedelta = DEFAULT_SILENCE_MAX,
) -> None:
    app = kafka_app(
        view if view is not None else AlertView(),
        bootstrap,
        auth=auth,
        silence_max=silence_max,
        console={"secure_cookie": ssl_context is not None},
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    address = runner.addresses[0] if runner.addresses else (host, port)
    scheme = "https" if ssl_context is not None else "http"
    log.info("operator API listening on %s://%s:%s (kafka %s)", scheme, address[0], address[1], bootstrap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("operator API stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tocsin.api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790, help="0: any free port (logged)")
    args = parser.parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format, "operator-api")
    try:
        refuse_dev_secrets(settings)
        auth = authenticator(settings)
        ssl_context = tls_context(settings.api_tls_cert, settings.api_tls_key)
    except (UnsafeSecret, ValueError, OSError) as e:
        log.error("operator API not started: %s", e)
        return 2
    view = AlertView(retention=timedelta(days=settings.api_retention_days), max_ended=settings.api_max_ended)
    silence_max = timedelta(hours=settings.api_silence_max_hours)
    asyncio.run(
        serve(
            args.host,
            args.port,
            settings.kafka_bootstrap,
            view,
            auth=auth,
            ssl_context=ssl_context,
            silence_max=silence_max,
        )
    )
    return 0


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server context (TLS 1.2 at least) from PEM files; None when neither is set."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("TOCSIN_API_TLS_CERT and TOCSIN_API_TLS_KEY go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def authenticator(settings: Any) -> Authenticator:
    """From ``TOCSIN_API_USERS_FILE``; without one, only in development mode (``TOCSIN_DEV``): a
    one-off users file with the supervisor ``demo`` and a random password, printed once."""
    limiter = FailureLimiter(settings.api_auth_max_failures, settings.api_auth_window_s)
    path = settings.api_users_file
    if not path:
        if not settings.dev:
            raise ValueError(
                "no TOCSIN_API_USERS_FILE: add users with `tocsin users add` (or set TOCSIN_DEV=1 for a demo login)"
            )
        import secrets
        import tempfile

        password = secrets.token_urlsafe(12)
        fd, path = tempfile.mkstemp(prefix="tocsin-dev-users-", suffix=".json")
        os.close(fd)
        write_users_file(
            path, UsersFile(users=[UserRecord(name="demo", role=Role.SUPERVISOR, password_hash=hash_secret(password))])
        )
        print(f"operator API development login (TOCSIN_DEV): demo / {password}", file=sys.stderr, flush=True)
    try:
        return Authenticator(path, limiter=limiter)
    except AuthError as e:
        raise ValueError(str(e)) from e


if __name__ == "__main__":
    raise SystemExit(main())
