"""Worker throughput on the real stack: one ``tocsin worker`` draining mixed telemetry from Kafka.

A district's fleet (docs/throughput.md says why these proportions), simulated over as much device
time as it takes to send ``TOCSIN_BENCH_WORKER_READINGS`` records (60,000 by default):

- 400 rain gauges, one increment every 300 s, and 100 river/reservoir level gauges every 300 s;
- 100 fixed gas detectors (chemical plants), one reading every 5 s;
- 20 forest-fire tower cameras, one report per 120 s sweep;
- 6 seismic stations x 3 channels (HHZ, HHN, HHE) at 100 Hz, one 1 s packet of 100 samples per
  channel per second.

That is about 40 records/s for the fleet: 50 % gas, 45 % seismic packets, 4 % hydro, 0.4 % fire.
The values are a quiet day (noise, light rain, gas at background), so detections are rare and the
figure is the cost of reading, decoding and judging telemetry.

The records are produced into Kafka ahead of time, as the gateway produces them under load with
``TOCSIN_KAFKA_BATCH_READINGS`` above 1 (gzip, into topics of the run,
``bench.w<run>.telemetry.<family>``; the worker's other topics are the run's too): the readings are
taken in ``TOCSIN_BENCH_WORKER_BATCH`` (64) at a time, as the gateway takes one socket read of MQTT
messages, and the readings of one such window that go to the same topic and partition (the device
key's murmur2 partition) become one batch record (schemas/batch.py); a reading alone in its group is
a single record keyed by its device with the correlation header (``gateway_records``). 64 messages
of this mix (590 B of JSON each on average, about 640 B with the MQTT framing and topic) are 40 KB,
less than one 64 KiB socket read of a busy gateway; the JSON reports ``readings_per_record``
(11.1 with 64: 3.5 with 16, 6.3 with 32, 20 with 128). ``TOCSIN_BENCH_WORKER_BATCH=1``: one record
per reading. Then:

1. Reference: a plain confluent-kafka consumer reads the same records from the beginning, splits
   the batch records and decodes each reading with ``tocsin.schemas.records.decode_telemetry`` (what the
   worker's agents do first): readings/s and CPU.
2. One real ``tocsin worker`` (Faust) on a fresh consumer group drains them. Its processing is
   followed on its own ``/metrics`` (``tocsin_detector_readings_total``) every 0.5 s; the rate is
   the readings between the first and the last observed change over that time. CPU: /proc of the
   worker process over the same interval. The consumer group's committed offsets are followed too:
   ``commit_lag_s`` is how long after the last reading was processed the group had committed all of
   them (bounded by Faust's commit interval), ``max_commit_lag`` the most readings processed but
   not yet committed (committed records times the mean readings per record).

A seismic packet counts as one reading; ``samples_per_s`` counts its samples too.
Knobs: ``TOCSIN_BENCH_WORKER_READINGS`` (60000), ``TOCSIN_BENCH_WORKER_BATCH`` (64),
``TOCSIN_BENCH_WORKER_TIMEOUT_S`` (300),
``TOCSIN_BENCH_PROFILE=<file>`` (the worker under cProfile, CPU time),
``TOCSIN_BENCH_PYSPY=<file>`` (py-spy's sampled stacks of the worker, collapsed: a dev dependency),
``TOCSIN_BENCH_WORKER_FLOOR=1`` (the worker's stages do nothing but count: the floor of Faust,
aiokafka and the per-record guard and decoding), ``TOCSIN_BENCH_KEEP=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tests.bench.latency import _cpu_s, _free_port, _Proc

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = float(os.environ.get("TOCSIN_BENCH_WORKER_TIMEOUT_S", "300"))
PARTITIONS = 2  # the worker's default (TOCSIN_KAFKA_PARTITIONS)

# (kind, devices, seconds between two records of one device)
FLEET = (
    ("rain", 400, 300.0),
    ("level", 100, 300.0),
    ("gas", 100, 5.0),
    ("fire", 20, 120.0),
    ("seismic", 18, 1.0),  # 6 stations x 3 channels
)
CHANNELS = ("HHZ", "HHN", "HHE")


def _topics(run: str) -> dict[str, str]:
    p = f"bench.w{run}"
    return {
        "DETECTIONS": f"{p}.detections",
        "DETECTIONS_URGENT": f"{p}.detections.urgent",
        "ALERTS": f"{p}.alerts",
        "DELIVERIES": f"{p}.alerts.deliveries",
        "WORKER_DEADLETTER": f"{p}.worker.deadletter",
    }


def _telemetry_topic(run: str, family: str) -> str:
    return f"bench.w{run}.telemetry.{family}"


# The unchanged worker with the run's topic names; under cProfile when TOCSIN_BENCH_PROFILE is set.
_WORKER = """
import os, sys
from tocsin.schemas import topics
from tocsin.schemas.common import Family
run = os.environ["TOCSIN_BENCH_RUN"]
for name, value in {names!r}.items():
    setattr(topics, name, value)
topics.kafka_telemetry = lambda f: f"bench.w{{run}}.telemetry.{{Family(f).value}}"
topics.TELEMETRY_TOPICS = tuple(topics.kafka_telemetry(f) for f in Family)
if os.environ.get("TOCSIN_BENCH_WORKER_FLOOR"):  # the Faust floor: readings counted, not judged
    from tocsin.detectors.service import DetectorStage
    def _count_only(self, record, store, *args, **kwargs):
        self._readings(record.family.value).inc()
        return []
    DetectorStage.apply = _count_only
from tocsin.cli import main
out = os.environ.get("TOCSIN_BENCH_PROFILE")
if out:
    import cProfile, time
    prof = cProfile.Profile(time.process_time)
    try:
        prof.runcall(main, ["worker"])
    finally:
        prof.dump_stats(out)
else:
    sys.exit(main(["worker"]))
"""


def _registry() -> Any:
    from tocsin.schemas.common import Family
    from tocsin.schemas.registry import Area, Device, Registry

    fam = {"rain": Family.HYDRO, "level": Family.HYDRO, "gas": Family.HAZMAT, "fire": Family.FIRE}
    devices = []
    for kind, n, every in FLEET:
        for i in range(n):
            dev_id, site = _device(kind, i)
            devices.append(
                Device(
                    device_id=dev_id,
                    family=fam.get(kind, Family.SEISMIC),
                    site=site,
                    lat=31.8 + i * 1e-3,
                    lon=117.2 + i * 1e-3,
                    area=Area(code=f"34{i % 100:04d}"),
                    interval_s=every,
                )
            )
    return Registry(devices=devices)


def _device(kind: str, i: int) -> tuple[str, str]:
    if kind == "seismic":  # one device id per station channel: a channel's packets stay in order
        return f"ST{i // 3:02d}{CHANNELS[i % 3]}", f"st{i // 3:02d}"
    return f"{kind.upper()}{i:04d}", f"site{i % 40:02d}"


def fleet_records(n: int, end: datetime, seed: int = 15) -> list[tuple[str, str, bytes]]:
    """``n`` (family, device id, value) records of the fleet in device-time order, the last at ``end``."""
    from tocsin.schemas.telemetry import FireDetection, GasReading, RainIncrement, SeismicPacket, WaterLevel

    rng = np.random.default_rng(seed)
    rate = sum(devices / every for _, devices, every in FLEET)
    span_s = n / rate * 1.05 + max(every for _, _, every in FLEET)  # enough events, then the first n
    events: list[tuple[float, str, int]] = []
    for kind, devices, every in FLEET:
        for i in range(devices):
            t = float(rng.uniform(0, every))  # each device's phase
            while t < span_s:
                events.append((t, kind, i))
                t += every
    events.sort()
    events = events[:n]
    start = end - timedelta(seconds=events[-1][0])
    seq: dict[tuple[str, int], int] = {}
    out: list[tuple[str, str, bytes]] = []
    for t, kind, i in events:
        dev_id, site = _device(kind, i)
        ts = start + timedelta(seconds=t)
        k = seq[(kind, i)] = seq.get((kind, i), -1) + 1
        common: dict[str, Any] = {"device_id": dev_id, "site": site, "ts": ts, "seq": k}
        reading: Any
        if kind == "rain":
            reading = RainIncrement(
                **common, rain_mm=round(float(rng.choice([0.0, 0.0, 0.0, 0.2, 0.5])), 1), interval_s=300
            )
        elif kind == "level":
            reading = WaterLevel(**common, level_m=round(12.0 + 0.01 * float(rng.normal()), 3))
        elif kind == "gas":
            reading = GasReading(**common, gas="CH4", value=round(abs(float(rng.normal(1.0, 0.3))), 2), unit="%LEL")
        elif kind == "fire":
            reading = FireDetection(
                **common,
                kind="smoke",
                confidence=round(float(rng.uniform(0.05, 0.3)), 2),
                bearing_deg=float(k * 30 % 360),
            )
        else:
            samples = np.round(rng.normal(0.0, 1e-6, 100), 10).tolist()
            reading = SeismicPacket(
                **common, channel=CHANNELS[i % 3], sample_rate_hz=100.0, unit="m/s", samples=samples
            )
        out.append((reading.family.value, dev_id, reading.model_dump_json(exclude_none=True).encode()))
    return out


def gateway_records(
    records: list[tuple[str, str, bytes]], window: int, partitions: int = PARTITIONS
) -> list[tuple[str, int, str, bytes, int]]:
    """The Kafka records the gateway writes for ``records`` (family, device id, reading) when it takes
    them in ``window`` at a time (one socket read of MQTT messages): the readings of one window that
    go to the same topic and partition (the device key's murmur2 partition, as the gateway's producer
    picks it) become one batch record (schemas/batch.py), split where the envelope's bounds say so;
    a group of one stays a single-reading record. ``window`` 1: one record per reading. Returns
    (family, partition, key of the group's first reading, value, readings in it) in order."""
    from kafka.partitioner.default import murmur2

    from tocsin.schemas.batch import BATCH_MAX_BYTES, BATCH_MAX_READINGS, pack, packed_size

    out: list[tuple[str, int, str, bytes, int]] = []
    for start in range(0, len(records), window):
        groups: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        for family, dev_id, value in records[start : start + window]:
            part = (murmur2(dev_id.encode()) & 0x7FFFFFFF) % partitions
            groups.setdefault((family, part), []).append((dev_id, value))
        for (family, part), group in groups.items():
            chunk: list[tuple[str, bytes]] = []
            for item in group:
                values = [v for _, v in chunk] + [item[1]]
                if chunk and (len(values) > BATCH_MAX_READINGS or packed_size(values) > BATCH_MAX_BYTES):
                    out.append(_one(family, part, chunk, pack))
                    chunk = []
                chunk.append(item)
            out.append(_one(family, part, chunk, pack))
    return out


def _one(family: str, part: int, chunk: list[tuple[str, bytes]], pack: Any) -> tuple[str, int, str, bytes, int]:
    value = chunk[0][1] if len(chunk) == 1 else pack([v for _, v in chunk])
    return family, part, chunk[0][0], value, len(chunk)


def _produce(bootstrap: str, run: str, records: list[tuple[str, int, str, bytes, int]]) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from tocsin.schemas.common import Family

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(_telemetry_topic(run, f.value), PARTITIONS, 1, config={"retention.ms": "3600000"}) for f in Family]
    for fut in admin.create_topics(new).values():
        fut.result(30)
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "gzip",  # as the gateway produces (ingest/sinks.py)
            "linger.ms": 5,
        }
    )
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for k, (family, part, dev_id, value, n) in enumerate(records):
        while True:
            try:
                p.produce(
                    _telemetry_topic(run, family),
                    value,
                    key=dev_id.encode(),
                    partition=part,
                    # a batch's readings each derive their correlation id (as the worker does)
                    headers=[("tocsin-correlation-id", f"{run}-{k}".encode())] if n == 1 else None,
                    on_delivery=report,
                )
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if p.flush(60) or failed:
        raise RuntimeError(f"producing the bench records failed: {failed[:3]}")


def _reference(bootstrap: str, run: str, n: int) -> dict[str, float]:
    """A plain confluent-kafka consumer that reads the run's telemetry topics from the beginning
    (assigned partitions, no group) and decodes every record."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from tocsin.schemas.batch import expand
    from tocsin.schemas.common import Family
    from tocsin.schemas.records import decode_telemetry

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ref-{run}", "enable.auto.commit": False})
    parts = [
        TopicPartition(_telemetry_topic(run, f.value), p, OFFSET_BEGINNING) for f in Family for p in range(PARTITIONS)
    ]
    c.assign(parts)
    got, t0, cpu0, last = 0, 0.0, 0.0, time.monotonic()
    try:
        while got < n and time.monotonic() - last < 30:
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                if not got:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                for reading in expand(m.value()):
                    decode_telemetry(reading)
                    got += 1
                last = time.monotonic()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        c.close()
    if got < n:
        raise RuntimeError(f"reference consumer read {got} of {n} records")
    return {"per_s": n / wall, "cpu_s": cpu, "cpu_us_per_reading": cpu / n * 1e6}


def _metric_sum(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def _committed(bootstrap: str, group: str, prefix: str) -> int:
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    try:
        res = fut.result(10)
    except Exception:  # noqa: BLE001 - no offsets yet
        return 0
    return sum(tp.offset for tp in res.topic_partitions if tp.topic.startswith(prefix) and tp.offset > 0)


def _delete_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if names:
        for fut in admin.delete_topics(names).values():
            try:
                fut.result(30)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


def bench_worker() -> dict[str, float]:
    n_readings = int(os.environ.get("TOCSIN_BENCH_WORKER_READINGS", "60000"))
    bootstrap = os.environ.get("TOCSIN_KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('TOCSIN_KAFKA_PORT', '9092')}"
    run = uuid.uuid4().hex[:6]
    group = f"tocsin-bench-w{run}"
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-bench-worker-"))
    (tmp / "registry.json").write_text(_registry().model_dump_json(), encoding="utf-8")
    records = fleet_records(n_readings, datetime.now(UTC))
    samples = sum(100 for f, _, _ in records if f == "seismic")
    by_family = {f: sum(1 for r in records if r[0] == f) for f in ("hydro", "hazmat", "fire", "seismic")}
    window = int(os.environ.get("TOCSIN_BENCH_WORKER_BATCH", "64"))
    produced = gateway_records(records, window)
    n_records = len(produced)
    _produce(bootstrap, run, produced)
    del records, produced
    ref = _reference(bootstrap, run, n_readings)
    port = _free_port()
    env = {
        "TOCSIN_BENCH_RUN": run,
        "TOCSIN_KAFKA_BOOTSTRAP": bootstrap,
        "TOCSIN_REGISTRY_FILE": str(tmp / "registry.json"),
        "TOCSIN_WORKER_ID": group,
        "TOCSIN_WORKER_DATA_DIR": str(tmp / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(port),
        "TOCSIN_LOG_LEVEL": "INFO",
        "TOCSIN_MQTT_HOST": "",
        "TOCSIN_SMS_URL": "",
        "TOCSIN_BROADCAST_URL": "",
        # ticks would add records to the telemetry topics while the bench counts them
        "TOCSIN_DEADMAN_TICK_S": "3600",
    }
    script = _WORKER.format(names=_topics(run))
    worker = _Proc([sys.executable, "-c", script], tmp / "worker.log", env)
    spy = None
    if os.environ.get("TOCSIN_BENCH_PYSPY"):  # sampling profile of the worker (collapsed stacks)
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker.p.pid), "--rate", "250"]
            + ["--format", "raw", "--nonblocking", "-o", os.environ["TOCSIN_BENCH_PYSPY"]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        samples_t: list[tuple[float, float, float]] = []  # (time, readings processed, cpu s)
        commits: list[tuple[float, int]] = []
        deadline = time.monotonic() + TIMEOUT_S
        done_at: float | None = None
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            if worker.p.poll() is not None:
                raise RuntimeError(f"worker exited {worker.p.returncode}: {worker.log.read_text()[-3000:]}")
            try:
                n = _metric_sum(port, "tocsin_detector_readings_total")
            except OSError:
                n = 0.0
            now = time.monotonic()
            cpu = _cpu_s(worker.p.pid)
            if not samples_t or n != samples_t[-1][1]:
                samples_t.append((now, n, cpu))
                last_change = now
            if n >= n_readings and done_at is None:
                done_at = now
            if n:
                commits.append((now, _committed(bootstrap, group, f"bench.w{run}.telemetry.")))
                if commits[-1][1] >= n_records:
                    break
            if n and now - last_change > 60:
                raise RuntimeError(f"worker stuck at {n} of {n_readings} readings")
            time.sleep(0.5)
        else:
            raise RuntimeError(f"worker did not drain {n_readings} readings in {TIMEOUT_S} s")
        # the detect agents' dead letters (the silences' reader may set aside poison of the shared
        # ``alerts.silences`` topic: not the bench's records)
        deadletters = sum(
            1
            for line in worker.log.read_text(errors="replace").splitlines()
            if "set aside on worker.deadletter" in line and '"message": "detect-' in line
        )
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        worker.stop()
        _delete_topics(bootstrap, (f"bench.w{run}.", f"{group}-"))
        if not os.environ.get("TOCSIN_BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"worker bench files kept in {tmp}", flush=True)
    moving = [s for s in samples_t if s[1] > 0]
    (t0, n0, c0), (t1, n1, c1) = moving[0], moving[-1]
    wall, cpu = t1 - t0, c1 - c0
    processed = n1 - n0
    rate = processed / wall
    assert done_at is not None
    committed_at = commits[-1][0]
    max_commit_lag = 0
    per_record = n_readings / n_records
    for t, c in commits:  # processed (from the metric samples) minus committed, in readings
        seen = max((s[1] for s in samples_t if s[0] <= t), default=0.0)
        max_commit_lag = max(max_commit_lag, int(seen - c * per_record))
    out = {
        "readings": float(n_readings),
        "gateway_window": float(window),
        "records": float(n_records),
        "readings_per_record": per_record,
        "readings_per_s": rate,
        "samples_per_s": rate * (n_readings + samples - by_family["seismic"]) / n_readings,
        "cpu_s": cpu,
        "cpu_pct_of_core": 100.0 * cpu / wall,
        "cpu_us_per_reading": cpu / processed * 1e6,
        "reference_per_s": ref["per_s"],
        "reference_cpu_us_per_reading": ref["cpu_us_per_reading"],
        "ratio": rate / ref["per_s"],
        "cpu_ratio": ref["cpu_us_per_reading"] / (cpu / processed * 1e6),
        "commit_lag_s": committed_at - done_at,
        "max_commit_lag": float(max_commit_lag),
        "deadletters": float(deadletters),
        **{f"share_{f}": by_family[f] / n_readings for f in by_family},
    }
    return out


if __name__ == "__main__":
    print(json.dumps({k: round(v, 3) for k, v in bench_worker().items()}, indent=2))
