"""Shared set-up of the delivery-adapter tests: an emulator (SMS carrier, broadcast platform) run as
a real subprocess on a free port, a client of its control plane, and helpers for async test bodies."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    """Run one async test body on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


class RecordingSleep:
    def __init__(self) -> None:
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)


def _wait_for_banner(proc: subprocess.Popen[str], banner: re.Pattern[str], what: str, timeout_s: float) -> str:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # keeps draining stdout for the life of the process
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, name=f"{what}-stdout", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while (remaining_s := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining_s)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"{what} exited early with code {proc.wait(5)}")
        if match := banner.match(line):
            return match.group(1)
    raise RuntimeError(f"{what} printed no banner within {timeout_s}s")


@contextmanager
def emulator_process(
    module: str, args: list[str], env: dict[str, str], banner: re.Pattern[str], stderr_path: Path
) -> Iterator[str]:
    """``python -m module --host 127.0.0.1 --port 0 *args`` with ``env`` added (secrets go there, never
    on the command line); yields the URL its banner line names; stopped on exit."""
    what = module.rsplit(".", 1)[-1].replace("_", " ")
    cmd = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *args]
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, **env}
        )
    try:
        try:
            url = _wait_for_banner(proc, banner, what, timeout_s=20.0)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; stderr:\n{stderr_path.read_text()}") from exc
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class EmulatorControl:
    """Synchronous client of an emulator's HTTP API and control plane (``/_control/...``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: Any = None, *, api_key: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if api_key is not None:
            req.add_header("Authorization", f"Bearer {api_key}")
        try:
            with self._opener.open(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def faults(self, mode: str, count: int = 1, **extra: Any) -> None:
        status, _ = self.request("POST", "/_control/faults", {"mode": mode, "count": count, **extra})
        assert status == 200

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/_control/stats")[1]

    def reset(self) -> None:
        status, _ = self.request("POST", "/_control/reset")
        assert status == 200
