"""Helpers for integration tests: real subprocesses with logs, and bounded waits."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process whose combined output goes to a log file we can search."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.p.poll() is not None:
                raise AssertionError(f"{self.log.name} exited {self.p.returncode}:\n{self.text()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not in {self.log.name} after {timeout_s} s:\n{self.text()[-4000:]}")

    def stop(self, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._fh.close()
        return int(self.p.returncode)


def tocsin(*args: str) -> list[str]:
    return [sys.executable, "-m", "tocsin.cli", *args]


def wait_until(fn: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.25) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def start_group_at_end(bootstrap: str, group: str, names: tuple[str, ...] | None = None) -> dict[Any, int]:
    """Commit the end offsets of ``names`` (default: the topics a worker reads) for a new consumer group,
    so a worker of that group starts with the records produced from now on instead of replaying the
    shared topics' history (a new group's offset reset is ``earliest``). Returns the committed ends."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from tocsin.kafka import ensure_topics
    from tocsin.schemas import topics

    names = names or (*topics.TELEMETRY_TOPICS, topics.DETECTIONS, topics.DETECTIONS_URGENT, topics.ALERTS)
    ensure_topics(bootstrap, names, 2)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or ())]
        consumer.assign(tps)
        ends: dict[Any, int] = consumer.end_offsets(tps)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
        return ends
    finally:
        consumer.close()
