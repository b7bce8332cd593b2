"""Scale-out of ``tocsin worker``: 1, 2 and 3 workers in one consumer group drain the same
pre-produced telemetry from a 6-partition topic; readings/s of each group, its ratio to one worker,
and the CPU of every worker.

The load (issue 15's measurement): 500 registered rain gauges, 120 reports each (0.5 mm every 5
minutes over the last 10 hours, seq 1..120: 60,000 readings; ``TOCSIN_BENCH_SCALE_READINGS``),
produced straight into Kafka before any worker starts (librdkafka, keyed by gauge, the gateway's
partitioner). No report crosses a threshold: this is the detector path (decode, the gauge's state
from the table, the rainfall windows, the state's changelog record), not alerting.

For each N in 1, 2, 3 (``TOCSIN_BENCH_SCALE_WORKERS``, "1,2,3"): a fresh consumer group (its own
``TOCSIN_WORKER_ID``) and topics of its own, N worker processes started together; once the group
has formed (every worker ready -- assigned, not rebalancing -- twice 1 s apart; ``ready_s`` from
start, ``rebalances`` the most assignments one worker went through) the readings are produced in
one burst (``produce_s``, a few seconds against a drain several times longer: the workers drain a
backlog, as after an outage). Every 0.25 s the bench reads each worker's
``tocsin_detector_readings_total`` (/metrics) and its CPU time (/proc). The rate is the readings
counted between the first poll that saw a reading and the poll that saw them all, over that time.
The machine: ``machine_busy_cores`` (all processes, /proc/stat), of it the workers'
(``workers_cores``), the broker's (``broker_cores``) and everyone else's (``others_cores``: on a
shared development machine, other jobs). Per worker: its partitions of the telemetry topic, the
readings it handled, CPU seconds during the drain and CPU utilisation (CPU s / drain s; one core =
1.0). ``cpu_us_per_reading`` sums all the
workers' CPU.

Isolation on a shared broker: the workers run the unchanged ``tocsin worker`` code with every topic
name prefixed ``bench.scale.<run>.`` (as the alert-latency bench renames its topics); the run's topics
are deleted at the end. Kafka is started with ``services.sh up`` when it is not running.
Reference: the 1-worker group of the same run (the ratios), and the machine's cores
(``os.cpu_count``): on a 2-core machine the broker, the bench and N workers share two cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]
GAUGES = 500
PARTITIONS = 6
READINGS = int(os.environ.get("TOCSIN_BENCH_SCALE_READINGS", "60000"))
COUNTS = tuple(int(n) for n in os.environ.get("TOCSIN_BENCH_SCALE_WORKERS", "1,2,3").split(","))
TIMEOUT_S = float(os.environ.get("TOCSIN_BENCH_SCALE_TIMEOUT_S", "300"))  # bound of one group's drain


def _worker_script(prefix: str) -> str:
    """``tocsin worker`` with every Kafka topic name prefixed (set before the worker imports them)."""
    return "\n".join(
        [
            "import sys",
            "from tocsin.schemas import topics",
            "_kt = topics.kafka_telemetry",
            f"topics.kafka_telemetry = lambda family: {prefix!r} + _kt(family)",
            "topics.TELEMETRY_TOPICS = tuple(topics.kafka_telemetry(f) for f in topics.Family)",
            "for name in ('DEADLETTER', 'WORKER_DEADLETTER', 'DEVICE_STATUS', 'DETECTIONS', 'DETECTIONS_URGENT',",
            "             'ALERTS', 'DELIVERIES', 'ACKS', 'RELEASES', 'SILENCES'):",
            f"    setattr(topics, name, {prefix!r} + getattr(topics, name))",
            "import tocsin.alerts.release",
            "tocsin.alerts.release.RELEASES = topics.RELEASES",
            "import tocsin.worker",
            "tocsin.worker.RELEASES = topics.RELEASES",
            "from tocsin.cli import main",
            "sys.exit(main(['worker']))",
        ]
    )


def _registry(path: Path, gauges: list[str]) -> None:
    from tocsin.schemas.common import Family
    from tocsin.schemas.registry import Area, Device, Registry

    area = Area(code="330110", district="测试区", town="青山镇", village="横溪村")
    devices = [
        Device(device_id=g, family=Family.HYDRO, site="bench", lat=30.3, lon=120.1, area=area, interval_s=300)
        for g in gauges
    ]
    path.write_text(Registry(devices=devices).model_dump_json(), encoding="utf-8")


def _produce(bootstrap: str, topic: str, gauges: list[str], per_gauge: int) -> int:
    from confluent_kafka import Producer

    from tocsin.schemas.telemetry import RainIncrement
    from tocsin.schemas.wire import encode

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random", "acks": "all"}
    )
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    n = 0
    for k in range(per_gauge):
        ts = end - timedelta(minutes=5 * (per_gauge - 1 - k))
        for g in gauges:
            value = encode(RainIncrement(device_id=g, site="bench", ts=ts, seq=k + 1, rain_mm=0.5, interval_s=300))
            while True:
                try:
                    producer.produce(topic, key=g.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.1)
            n += 1
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} bench readings not acknowledged by Kafka")
    return n


def _broker_pid() -> int | None:
    """The local harness's Kafka broker process (``services.sh status kafka``), if it runs here."""
    out = subprocess.run([*SERVICES, "status", "kafka"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _drain(n: int, env: dict[str, str], tmp: Path, bootstrap: str, gauges: list[str]) -> dict[str, float]:
    from tests.integration.scale import Member, cpu_seconds
    from tocsin.schemas import topics

    prefix = f"{env['TOCSIN_WORKER_ID']}.{n}w."
    group_env = {**env, "TOCSIN_WORKER_ID": f"{env['TOCSIN_WORKER_ID']}-{n}w"}
    t0 = time.monotonic()
    script = [sys.executable, "-c", _worker_script(prefix)]
    members = [Member(f"w{n}-{i}", group_env, tmp, script) for i in range(n)]
    try:
        # the group forms (every worker assigned, none rebalancing, twice 1 s apart), then the burst
        stable = 0
        while stable < 2:
            if time.monotonic() - t0 > TIMEOUT_S:
                raise RuntimeError(f"{n} workers not ready after {TIMEOUT_S} s")
            stable = stable + 1 if all([m.ready() for m in members]) else 0
            time.sleep(1)
        t_ready = time.monotonic() - t0
        t = time.monotonic()
        total = _produce(bootstrap, prefix + topics.kafka_telemetry("hydro"), gauges, max(1, READINGS // GAUGES))
        produce_s = time.monotonic() - t
        seen = [0.0] * n
        cpu0: list[float] = [0.0] * n
        broker = _broker_pid()
        broker0 = machine0 = None
        t_first = t_done = 0.0
        at_first = 0.0
        while True:
            now = time.monotonic()
            if now - t0 > TIMEOUT_S:
                raise RuntimeError(f"{n} workers: {sum(seen):.0f} of {total} readings after {TIMEOUT_S} s")
            for i, m in enumerate(members):
                if m.proc.p.poll() is not None:
                    raise RuntimeError(f"{m.name} exited {m.proc.p.returncode}: {m.proc.text()[-3000:]}")
                seen[i] = m.metric("tocsin_detector_readings_total", '{family="hydro"}')
            done = sum(seen)
            if not t_first and done > 0:
                t_first, at_first = now, done
                cpu0 = [cpu_seconds(m.pid) for m in members]
                broker0 = cpu_seconds(broker) if broker else None
                machine0 = _machine_jiffies()
            if done >= total:
                t_done = now
                break
            time.sleep(0.25)
        cpu = [cpu_seconds(m.pid) - c for m, c in zip(members, cpu0, strict=True)]
        drain_s = t_done - t_first
        busy, total_j = (a - b for a, b in zip(_machine_jiffies(), machine0 or (0, 0), strict=True))
        machine_busy_cores = busy / total_j * (os.cpu_count() or 1) if total_j else float("nan")
        broker_cpu = cpu_seconds(broker) - broker0 if broker and broker0 is not None else float("nan")
        rebalances = max(len(re.findall("Executing _on_partitions_assigned", m.proc.text())) for m in members)
        owned = [sorted(m.owned(prefix + topics.kafka_telemetry("hydro"))) for m in members]
        out = {
            f"w{n}_per_s": (total - at_first) / drain_s,
            f"w{n}_drain_s": drain_s,
            f"w{n}_ready_s": t_ready,
            f"w{n}_rebalances": float(rebalances),
            f"w{n}_produce_s": produce_s,
            f"w{n}_cpu_us_per_reading": sum(cpu) / (total - at_first) * 1e6,
            f"w{n}_workers_cores": sum(cpu) / drain_s,
            f"w{n}_broker_cores": broker_cpu / drain_s,
            f"w{n}_machine_busy_cores": machine_busy_cores,
            f"w{n}_others_cores": machine_busy_cores - (sum(cpu) + broker_cpu) / drain_s,
        }
        for i in range(n):
            out[f"w{n}_{i}_partitions"] = float(len(owned[i]))
            out[f"w{n}_{i}_readings"] = seen[i]
            out[f"w{n}_{i}_cpu_s"] = cpu[i]
            out[f"w{n}_{i}_cpu_util"] = cpu[i] / drain_s
        return out
    finally:
        for m in members:
            m.proc.stop()


def bench_scaleout() -> dict[str, float]:
    from kafka.admin import KafkaAdminClient

    from tocsin.kafka import ensure_topics
    from tocsin.schemas import topics

    if subprocess.run([*SERVICES, "status", "kafka"], capture_output=True, timeout=60).returncode != 0:
        subprocess.run([*SERVICES, "up", "kafka"], check=True, capture_output=True, timeout=900)
    bootstrap = f"127.0.0.1:{os.environ.get('TOCSIN_KAFKA_PORT', '9092')}"
    run = uuid.uuid4().hex[:8]
    prefix = f"bench.scale.{run}"  # the topics of the N-worker group: <prefix>.<N>w.<topic>
    names = [*topics.ALL_KAFKA_TOPICS, topics.RELEASES, topics.SILENCES]
    gauges = [f"RG{i:04d}" for i in range(GAUGES)]
    keep = os.environ.get("TOCSIN_BENCH_KEEP")
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-bench-scale-"))
    _registry(tmp / "registry.json", gauges)
    env = {
        "TOCSIN_KAFKA_BOOTSTRAP": bootstrap,
        "TOCSIN_KAFKA_PARTITIONS": str(PARTITIONS),
        "TOCSIN_REGISTRY_FILE": str(tmp / "registry.json"),
        "TOCSIN_WORKER_ID": prefix,
        "TOCSIN_MQTT_HOST": "",
        "TOCSIN_SMS_URL": "",
        "TOCSIN_DELIVERY_SWEEP_S": "0",
        "TOCSIN_CONSUMER_LAG_INTERVAL_S": "1",  # the lag metric names each worker's partitions
        "TOCSIN_DEV": "1",
    }
    from tests.integration.scale import partition_of

    per_partition = [0] * PARTITIONS
    for g in gauges:
        per_partition[partition_of(g, PARTITIONS)] += 1
    results: dict[str, Any] = {
        "cores": float(os.cpu_count() or 0),
        "partitions": float(PARTITIONS),
        "readings": float(max(1, READINGS // GAUGES) * GAUGES),
        "gauges_per_partition_max": float(max(per_partition)),
        "gauges_per_partition_min": float(min(per_partition)),
    }
    try:
        for n in COUNTS:
            ensure_topics(bootstrap, [f"{prefix}.{n}w.{t}" for t in names], PARTITIONS)
            results.update(_drain(n, env, tmp, bootstrap, gauges))
            print(f"  scaleout {n} worker(s): {results[f'w{n}_per_s']:.0f} readings/s", flush=True)
        base = results.get("w1_per_s")
        for n in COUNTS:
            if base and n != 1:
                results[f"w{n}_ratio"] = results[f"w{n}_per_s"] / base
        results["load_1m"] = os.getloadavg()[0]
    finally:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tocsin-bench-scale")
        try:
            mine = [t for t in admin.list_topics() if t.startswith(prefix)]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()
        if not keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  scaleout logs kept in {tmp}")
    return results
