"""Plumbing shared by the local HTTP emulators of third-party providers.

Used by :mod:`tocsin.simulators.sms_gateway` and :mod:`tocsin.simulators.broadcast_platform`: JSON error answers,
Bearer auth, body validation, fault injection, the control plane every emulator offers (no auth,
for tests and demos)::

    GET  /healthz           liveness
    POST /_control/faults   {"mode": ..., "count": N, "retry_after_s": S}: the next N guarded
                            requests fail that way (count -1: until reset)
    POST /_control/reset    back to the initial state
    GET  /_control/stats    request counters

and the ways to run one: :func:`serve_app` on a running loop, :class:`EmulatorThread` from
synchronous code, and :func:`run_until_signalled` for the ``python -m`` command line.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=StrEnum)
B = TypeVar("B", bound=BaseModel)
C = TypeVar("C")
S = TypeVar("S", bound="EmulatorState")

NO_FAULT = "none"
"""The value of every emulator's ``FaultMode.NONE``."""


# --- answers --------------------------------------------------------------------------------------


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def retry_later(status: int, message: str, retry_after_s: int) -> web.Response:
    """An error answer with a ``Retry-After`` header (429, 503)."""
    resp = error(status, message)
    resp.headers["Retry-After"] = str(retry_after_s)
    return resp


def authorized(request: web.Request, api_key: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


def unauthorized(realm: str) -> web.Response:
    resp = error(401, "invalid or missing API key")
    resp.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return resp


def parse_body(model: type[B], raw: bytes) -> B | web.Response:
    """Validate a JSON body; 400 for malformed JSON or a non-object, 422 for invalid fields."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] in ("json_invalid", "model_type") for e in errors):
            return error(400, "body must be a JSON object")
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
        return error(422, "validation failed", details=details)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# --- fault injection ------------------------------------------------------------------------------


class FaultRequest(BaseModel, Generic[M]):
    """Body of ``POST /_control/faults``; each emulator binds ``M`` to its ``FaultMode``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: M
    count: int = Field(default=1, ge=-1, description="-1: until reset")
    retry_after_s: int = Field(default=1, ge=0, le=3600, description="Retry-After of injected 429/503 answers")


@dataclass
class FaultPlan(Generic[M]):
    """The injected failure still to come: ``mode`` for the next ``remaining`` requests (-1: no end)."""

    mode: M
    remaining: int = 0
    retry_after_s: int = 1

    def take(self) -> M | None:
        if self.mode == NO_FAULT or self.remaining == 0:
            return None
        if self.remaining > 0:
            self.remaining -= 1
        return self.mode


async def stalled_timeout(shutting_down: asyncio.Event, timeout_s: float) -> web.Response:
    """An injected timeout: stall past the client's patience, but let a server shutdown cut it short."""
    try:
        await asyncio.wait_for(shutting_down.wait(), timeout_s)
    except TimeoutError:
        pass
    return error(504, "upstream timeout (injected)")


# --- control plane --------------------------------------------------------------------------------


class EmulatorState(Protocol):
    """What the shared routes need from an emulator's state."""

    @property
    def faults(self) -> FaultPlan[Any]: ...

    @property
    def shutting_down(self) -> asyncio.Event: ...

    def reset(self) -> None: ...


def add_common_routes(
    app: web.Application,
    key: web.AppKey[S],
    fault_request: type[FaultRequest[Any]],
    stats: Callable[[S], dict[str, Any]],
) -> None:
    """Add ``/healthz`` and the control plane, and set ``shutting_down`` when the server shuts down.

    ``stats`` builds the body of ``GET /_control/stats`` from the state stored under ``key``.
    """

    async def on_shutdown(app: web.Application) -> None:
        app[key].shutting_down.set()

    async def set_faults(request: web.Request) -> web.Response:
        parsed = parse_body(fault_request, await request.read())
        if isinstance(parsed, web.Response):
            return parsed
        plan = request.app[key].faults
        plan.mode, plan.remaining, plan.retry_after_s = parsed.mode, parsed.count, parsed.retry_after_s
        return web.json_response({"mode": parsed.mode, "count": parsed.count})

    async def reset(request: web.Request) -> web.Response:
        request.app[key].reset()
        return web.json_response({"status": "reset"})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats(request.app[key]))

    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/_control/faults", set_faults)
    app.router.add_post("/_control/reset", reset)
    app.router.add_get("/_control/stats", get_stats)


# --- runners --------------------------------------------------------------------------------------


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def serve_app(
    app: web.Application, *, host: str = "127.0.0.1", port: int = 0, shutdown_timeout_s: float = 5.0
) -> AsyncIterator[str]:
    """Run ``app`` on the current loop; yields its base URL with the actually bound port."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield f"http://{_url_host(host)}:{bound_port}"
    finally:
        await runner.cleanup()


class EmulatorThread(Generic[C]):
    """An emulator on its own event loop in a daemon thread, for embedded demos and sync tests.

    Subclasses name the thread (``_thread_name``), say what failed in errors (``_label``) and serve
    their configuration (:meth:`_serve`).
    """

    _thread_name: ClassVar[str]
    _label: ClassVar[str]

    def __init__(
        self,
        config: C,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self._config = config
        self._host = host
        self._port = port
        self._startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._base_url = ""

    def _serve(self) -> AbstractAsyncContextManager[str]:
        """``serve(self._config, host=self._host, port=self._port)`` of the emulator's module."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self._base_url

    def start(self) -> str:
        """Start serving and return the base URL; raises if the server did not come up in time."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout_s):
            raise RuntimeError(f"{self._label} did not start within {self._startup_timeout_s}s")
        if self._error is not None:
            raise RuntimeError(f"{self._label} failed to start") from self._error
        return self._base_url

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"{self._label} thread did not stop within {timeout_s}s")
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start() through self._error
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        async with self._serve() as url:
            self._base_url = url
            self._ready.set()
            await self._stop_event.wait()


# --- command line ---------------------------------------------------------------------------------


def parse_args(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    default_port: int,
    key_env: str,
    add_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> argparse.Namespace:
    """The common flags; ``add_options`` adds the emulator's own between ``--api-key-file`` and the rest.

    The API key is never a command-line argument (``ps`` shows those to every local user): it is
    read from ``--api-key-file`` (first line) or the environment variable ``key_env``, into
    ``args.api_key``. Placeholders and development keys are refused unless ``TOCSIN_DEV`` is on."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key-file", help=f"file holding the API key (default: ${key_env})")
    add_options(parser)
    parser.add_argument("--fault-timeout-s", type=float, default=30.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    args.api_key = read_secret(parser, key_env, args.api_key_file)
    return args


def read_secret(parser: argparse.ArgumentParser, env: str, path: str | None) -> str:
    """A secret from the first line of ``path`` or the environment variable ``env``; exits (via
    ``parser.error``) when it is missing or a known placeholder outside development mode."""
    import os

    from tocsin.settings import unsafe_secret

    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.readline().strip()
        except OSError as exc:
            parser.error(f"cannot read {path}: {exc.strerror}")
    else:
        value = os.environ.get(env, "").strip()
    if not value:
        parser.error(f"no API key: set {env} or --api-key-file")
    dev = os.environ.get("TOCSIN_DEV", "").strip().lower() in ("1", "true", "yes", "on")
    if unsafe_secret(value) and not dev:
        parser.error(f"{env}: a placeholder or development key; set a real one (or TOCSIN_DEV=1)")
    return value


async def _serve_until_signalled(server: AbstractAsyncContextManager[str], name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server as url:
        print(f"{name} listening on {url}", flush=True)
        await stop.wait()


def run_until_signalled(server: AbstractAsyncContextManager[str], name: str) -> int:
    """Serve until SIGINT/SIGTERM, printing ``{name} listening on {url}`` once connections are accepted."""
    asyncio.run(_serve_until_signalled(server, name))
    return 0
