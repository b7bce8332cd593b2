"""Shared set-up of the scale-out tests and the ``scaleout`` bench: topics of at least 6 partitions,
several ``tocsin worker`` processes in one consumer group, device ids spread over every partition,
and the group's progress read from Kafka.

The topics are the real ones (``telemetry.<family>``, ``detections`` ...). A topic that already exists
with fewer partitions (made by an earlier test with the default count) is grown: every test uses
device ids and areas of its own, so no test's keys move while it runs, and the workers size their
tables by the topics as they are (tocsin/kafka.py ``partitions_by_topic``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions
from kafka.partitioner.default import murmur2

from tests.integration.procs import Proc, free_port, tocsin, wait_until
from tocsin.schemas import topics

PARTITIONS = 6  # issue 15: scale-out on topics of at least 6 partitions
# what a worker reads, and the topics its agents write that another worker reads
WORKER_TOPICS = (*topics.TELEMETRY_TOPICS, topics.DETECTIONS, topics.DETECTIONS_URGENT, topics.ALERTS)


def partition_of(key: str, partitions: int = PARTITIONS) -> int:
    """The partition of a record key as the Java client, kafka-python, aiokafka and (with
    ``murmur2_random``) the gateway's librdkafka producer choose it."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def keys_on_every_partition(prefix: str, per_partition: int, partitions: int = PARTITIONS) -> list[str]:
    """``per_partition`` keys ``<prefix>-<n>`` for each partition, in partition order."""
    chosen: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(v) < per_partition for v in chosen.values()):
        key = f"{prefix}-{n}"
        bucket = chosen[partition_of(key, partitions)]
        if len(bucket) < per_partition:
            bucket.append(key)
        n += 1
    return [k for p in range(partitions) for k in chosen[p]]


def at_least_partitions(bootstrap: str, names: Iterable[str] = WORKER_TOPICS, n: int = PARTITIONS) -> dict[str, int]:
    """Make ``names`` exist with at least ``n`` partitions (create, or grow); their counts after."""
    from tocsin.kafka import ensure_topics, existing_partitions

    names = list(names)
    ensure_topics(bootstrap, names, n)
    counts = existing_partitions(bootstrap, names)
    short = {t: c for t, c in counts.items() if c < n}
    if short:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tocsin-test-scale")
        try:
            admin.create_partitions({t: NewPartitions(total_count=n) for t in short})
        finally:
            admin.close()

        def grown() -> dict[str, int] | None:
            now = existing_partitions(bootstrap, names)
            return now if all(c >= n for c in now.values()) else None

        counts = wait_until(grown, 30, f"{sorted(short)} grown to {n} partitions")
    return counts


class Member:
    """One ``tocsin worker`` of a group: its process, web port and data directory."""

    def __init__(self, name: str, env: dict[str, str], tmp_path: Path, args: list[str] | None = None) -> None:
        """``args``: the command (default ``tocsin worker``; the bench runs it with its topic names)."""
        self.name = name
        self.port = free_port()
        self.env = {
            **env,
            "TOCSIN_WORKER_WEB_PORT": str(self.port),
            "TOCSIN_WORKER_DATA_DIR": str(tmp_path / name),
        }
        if env.get("TOCSIN_SMS_CALLBACK_URL"):
            self.env["TOCSIN_SMS_CALLBACK_URL"] = f"http://127.0.0.1:{self.port}/callbacks/sms"
        self.proc = Proc(args or tocsin("worker"), tmp_path / f"{name}.log", self.env)

    @property
    def pid(self) -> int:
        return int(self.proc.p.pid)

    def ready(self) -> bool:
        from tests.integration.stack import http_status

        if self.proc.p.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.p.returncode}:\n{self.proc.text()[-4000:]}")
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200

    def metric(self, name: str, labels: str = "") -> float:
        """A sample of this worker's /metrics (``labels``: the exposition's ``{...}`` text, labels in
        alphabetical order as prometheus_client writes them); 0 if absent."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(f"{name}{labels} "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def owned(self, topic: str) -> set[int]:
        """The partitions of ``topic`` this worker reports a lag for (its assignment, as of its last
        lag sample; ``TOCSIN_CONSUMER_LAG_INTERVAL_S``)."""
        import re
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        pat = rf'tocsin_worker_consumer_lag\{{partition="(\d+)",topic="{re.escape(topic)}"\}}'
        return {int(m) for m in re.findall(pat, text)}


def start_members(
    names: Sequence[str], env: dict[str, str], tmp_path: Path, timeout_s: float = 90, args: list[str] | None = None
) -> list[Member]:
    """Start the workers ``names`` together (one group: ``TOCSIN_WORKER_ID`` of ``env``) and wait,
    bounded, until every one answers ready (assigned, not rebalancing, not recovering)."""
    members = [Member(n, env, tmp_path, args) for n in names]
    wait_until(lambda: all([m.ready() for m in members]), timeout_s, f"workers {list(names)} ready", interval_s=0.5)
    return members


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GroupProgress:
    """How far a consumer group has committed on some topics (one kafka-python client, reused)."""

    def __init__(self, bootstrap: str, group: str, names: Sequence[str]) -> None:
        self.group = group
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tocsin-test-progress")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
        self.tps = [TopicPartition(t, p) for t in names for p in sorted(self.consumer.partitions_for_topic(t) or ())]

    def ends(self) -> dict[Any, int]:
        return dict(self.consumer.end_offsets(self.tps))

    def committed(self) -> dict[Any, int]:
        got = self.admin.list_consumer_group_offsets(self.group, partitions=self.tps)
        return {tp: m.offset for tp, m in got.items() if m.offset >= 0}

    def behind(self, ends: dict[Any, int]) -> int:
        """Records of ``ends`` the group has not committed yet."""
        done = self.committed()
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def wait_committed(progress: GroupProgress, ends: dict[Any, int], timeout_s: float) -> None:
    wait_until(lambda: progress.behind(ends) == 0, timeout_s, f"group {progress.group} at {ends}", interval_s=0.3)


def elapsed(t0: float) -> float:
    return round(time.monotonic() - t0, 2)


class Gateway:
    """One ``tocsin gateway`` of a shared-subscription group (``TOCSIN_MQTT_SHARE_GROUP`` of ``env``)
    with its own MQTT client id (its persistent session) and metrics port."""

    def __init__(self, name: str, client_id: str, env: dict[str, str], tmp_path: Path) -> None:
        self.name, self.client_id = name, client_id
        self.port = free_port()
        self.env = {**env, "TOCSIN_MQTT_CLIENT_ID": client_id, "TOCSIN_METRICS_PORT": str(self.port)}
        self.proc = Proc(tocsin("gateway"), tmp_path / f"{name}.log", self.env)

    def ready(self) -> bool:
        from tests.integration.stack import http_status

        if self.proc.p.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.p.returncode}:\n{self.proc.text()[-4000:]}")
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200


def start_gateways(
    specs: Sequence[tuple[str, str]], env: dict[str, str], tmp_path: Path, timeout_s: float = 60
) -> list[Gateway]:
    """Start the gateways ``(name, client id)`` and wait, bounded, until each answers ready."""
    gws = [Gateway(n, c, env, tmp_path) for n, c in specs]
    wait_until(lambda: all([g.ready() for g in gws]), timeout_s, f"gateways {[n for n, _ in specs]} ready", 0.3)
    return gws
