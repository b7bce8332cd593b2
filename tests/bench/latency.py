"""Alert latency on the real stack: a red detection produced to Kafka ``detections`` until the SMS
carrier emulator has accepted its first SMS, under 1,000 background detections per second.

Processes: the real Kafka broker (started here if it is not running, and stopped again then), a real
``tocsin worker`` (Faust: confirm agent, deliver agent, MQTT alert topic on Mosquitto if it runs)
and the SMS carrier emulator (``tocsin sms-gateway``, its rate limit and the worker's set far above
the probe rate, so nothing is throttled). Both ends are timed on this machine's wall clock: the
produce time here, the emulator's ``received_at`` there.

Background mix, per 1,000 detections (all in areas of their own, none with SMS recipients, so the
alert stage works but the public is not warned 1,000 times a second; the SMS limiter stays empty):

- 50 %: re-detections (``update``) of an open blue rainfall alert, the value moving: read the
  lifecycle state, recompute the level, write the state (changelog), no message;
- 20 %: a second gauge of the same area opening and clearing in turn under that open blue alert:
  the level never changes, so no message either;
- 20 %: gas readings of two detectors of a plant area toggling open/clear, held below the
  confirmation rule (``gas_leak``: 3 sensors or 600 s sustained): pending, never an alert;
- 10 %: detections without a warning level (anomaly scores, sensor faults): operator information.

The first background second opens every blue rainfall alert (a burst of Alert messages, delivered to
the operators' MQTT topic only); a 30 s warm-up (probes included; ``TOCSIN_BENCH_WARMUP_S``) is
discarded before measuring, 120 s when the bench had to start the broker itself (its JIT);
``warmup_s`` in the results says which.

Probes: every 0.1 s a red rainfall detection for a fresh area (a new fingerprint: an Alert), whose
area has one SMS number; latency = the emulator's receive time of that SMS - the produce time.
Ten a second for 60 s gives about 600 probes, so the p99 is the 6th worst of them and not simply
the worst (with 60 probes it was the maximum); the probes add 10 real red alerts and SMS a second.

Reference, same broker, same load, interleaved with the probes: a bare produce -> consume round
trip of a small record on a topic of its own (``bench.roundtrip``, one partition).

Lanes: every detection goes to the topic the worker's detect agents would give it
(``detection_topic``): the red probes to the urgent lane, the background to the routine one.

Isolation on a shared broker: the worker runs the unchanged ``tocsin worker`` code with the
``detections``, ``detections.urgent``, ``alerts`` and ``alerts.deliveries`` topic names pointed at
``bench.detections``, ``bench.detections.urgent``, ``bench.alerts`` and ``bench.alerts.deliveries``
(one-hour retention), so other workers never read
the bench's 30,000+ detections as live ones; and its consumer group's offsets are committed at the
end of every topic it reads before it starts, so it does not first replay history.

Also reported: the background rate achieved, what the worker got through meanwhile (committed
offsets) and the CPU it spent per detection (/proc), which tell a saturated worker (backlog growing,
latency in seconds) from a slow path, and how many red messages took the fast lane
(alerts/fastlane.py). Knobs (environment): ``TOCSIN_BENCH_RATE`` (1000), ``TOCSIN_BENCH_MEASURE_S``
(60), ``TOCSIN_BENCH_WARMUP_S`` (30), ``TOCSIN_BENCH_PROBE_EVERY_S`` (0.1), ``TOCSIN_BENCH_WORKERS`` (1),
``TOCSIN_BENCH_PROFILE=<file>`` (the worker under cProfile, CPU time: slows it about sixfold),
``TOCSIN_BENCH_KEEP=1`` (keep the processes' logs in the temp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]
ROUNDTRIP_TOPIC = "bench.roundtrip"
BENCH_TOPICS = {
    "DETECTIONS": "bench.detections",
    "DETECTIONS_URGENT": "bench.detections.urgent",
    "ALERTS": "bench.alerts",
    "DELIVERIES": "bench.alerts.deliveries",
}
BENCH_DETECTION_TOPICS = (BENCH_TOPICS["DETECTIONS"], BENCH_TOPICS["DETECTIONS_URGENT"])


def _lane(d: Any) -> str:
    """The bench topic of a detection: the one the worker's detect agents would choose
    (``detection_topic`` with the default urgent level, orange), under its bench name."""
    from tocsin.detectors.engine import detection_topic
    from tocsin.schemas import topics
    from tocsin.schemas.common import WarningLevel

    urgent = detection_topic(d, WarningLevel.ORANGE) == topics.DETECTIONS_URGENT
    return BENCH_TOPICS["DETECTIONS_URGENT"] if urgent else BENCH_TOPICS["DETECTIONS"]


# The worker, with the bench topic names; under cProfile when TOCSIN_BENCH_PROFILE names an output file.
_WORKER = "\n".join(
    [
        "import os, sys",
        "from tocsin.schemas import topics",
        f"for name, value in {BENCH_TOPICS!r}.items():",
        "    setattr(topics, name, value)",
        "from tocsin.cli import main",
        "sys.argv = ['tocsin', 'worker']",
        "out = os.environ.get('TOCSIN_BENCH_PROFILE')",
        "if out:",
        "    import cProfile, time",
        "    prof = cProfile.Profile(time.process_time)",  # CPU time: other processes' load does not count
        "    try:",
        "        prof.runcall(main, ['worker'])",
        "    finally:",
        "        prof.dump_stats(out)",
        "else:",
        "    sys.exit(main(['worker']))",
    ]
)

RATE_PER_S = float(os.environ.get("TOCSIN_BENCH_RATE", "1000"))
PROBE_EVERY_S = float(os.environ.get("TOCSIN_BENCH_PROBE_EVERY_S", "0.1"))
# Load (probes included) before measuring: the first background second opens 50 blue alerts, and a
# broker JVM started minutes before is still compiling its hot paths (measured here: a broker up for
# one minute gave a p99 of 3.8 s that fell to the warm figures after about 40 s of load; with the
# urgent lane, a broker this bench had just started still gave a p99 of 0.6 s after 30 s of load,
# most of it in the first 5 s measured). So: 30 s, and 120 s when the bench starts the broker itself.
WARMUP_S = float(os.environ.get("TOCSIN_BENCH_WARMUP_S", "30"))
COLD_BROKER_WARMUP_S = float(os.environ.get("TOCSIN_BENCH_WARMUP_S", "120"))
MEASURE_S = float(os.environ.get("TOCSIN_BENCH_MEASURE_S", "60"))
WORKERS = int(os.environ.get("TOCSIN_BENCH_WORKERS", "1"))  # worker processes of one group (one per core)
N_BG_AREAS = 50  # rainfall areas (gauges a and b each), and as many gas plant areas


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation): the value below which ``q`` of the sample lies."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))
    return s[k]


def _running(service: str) -> bool:
    return subprocess.run([*SERVICES, "status", service], capture_output=True, timeout=60).returncode == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=REPO)

    def wait_for(self, needle: str, timeout_s: float) -> str:
        import re

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_text(encoding="utf-8", errors="replace")
            m = re.search(needle, text)
            if m:
                return m.group(1) if m.groups() else m.group(0)
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.log.name} exited {self.p.returncode}: {text[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{needle!r} not in {self.log.name} after {timeout_s} s")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._fh.close()


def _background(i: int, t: datetime, onset: datetime, rev: int) -> Any:
    """The i-th background detection of the mix (see the module docstring)."""
    from tocsin.schemas.common import Family, WarningLevel
    from tocsin.schemas.detection import Detection, DetectionState

    slot = i % 10
    area_i = (i // 10) % N_BG_AREAS
    common: dict[str, Any] = {"onset": onset, "ts": t, "revision": rev, "site": "bench", "lat": 30.2, "lon": 120.1}
    if slot < 5:  # re-detection of the open blue rainfall alert of the area (gauge a)
        dev, area = f"bg{area_i}a", f"{610000 + area_i}"
        return Detection(
            id=f"{dev}:rainfall:{int(onset.timestamp() * 1000)}:{rev}",
            device_id=dev,
            family=Family.HYDRO,
            kind="rainfall",
            state=DetectionState.OPEN if rev == 0 else DetectionState.UPDATE,
            level=WarningLevel.BLUE,
            value=36.0 + (i % 7) * 0.5,
            threshold=35.0,
            unit="mm",
            window_s=3600.0,
            area_code=area,
            **common,
        )
    if slot < 7:  # gauge b of the same area opening and clearing at blue: no level change
        dev, area = f"bg{area_i}b", f"{610000 + area_i}"
        state = DetectionState.OPEN if (i // 100) % 2 == 0 else DetectionState.CLEAR
        return Detection(
            id=f"{dev}:rainfall:{int(onset.timestamp() * 1000)}:{rev}",
            device_id=dev,
            family=Family.HYDRO,
            kind="rainfall",
            state=state,
            level=WarningLevel.BLUE if state is DetectionState.OPEN else None,
            value=35.5 if state is DetectionState.OPEN else 20.0,
            threshold=35.0,
            unit="mm",
            window_s=3600.0,
            area_code=area,
            **common,
        )
    if slot < 9:  # two gas detectors below the confirmation rule (3 sensors or 600 s): pending
        dev, area = f"gs{area_i}-{slot - 7}", f"{620000 + area_i}"
        state = DetectionState.OPEN if (i // 200) % 2 == 0 else DetectionState.CLEAR
        return Detection(
            id=f"{dev}:gas_h2s:{int(onset.timestamp() * 1000)}:{rev}",
            device_id=dev,
            family=Family.HAZMAT,
            kind="gas_h2s",
            state=state,
            level=WarningLevel.YELLOW if state is DetectionState.OPEN else None,
            value=12.0 if state is DetectionState.OPEN else 3.0,
            threshold=10.0,
            unit="mg/m3",
            area_code=area,
            **common,
        )
    dev, area = f"an{area_i}", f"{630000 + area_i}"  # no warning level: operators' information only
    return Detection(
        id=f"{dev}:anomaly:{int(onset.timestamp() * 1000)}:{rev}",
        device_id=dev,
        family=Family.HYDRO,
        kind="anomaly",
        state=DetectionState.UPDATE,
        level=None,
        value=0.95,
        area_code=area,
        **common,
    )


def _background_process(
    bootstrap: str, rate: float, stop: Any, measuring: Any, acked: Any, acked_measured: Any
) -> None:
    """The background load, in a process of its own (spawned), so its CPU never holds the GIL
    against the probes' producer and the round-trip reader. It produces with aiokafka: about 50 us
    of CPU per record against kafka-python's 170 us (measured here), so the load generator takes
    about a tenth of a core instead of half of one -- on a two-core machine that half core was taken
    from the worker under test and the broker."""
    import asyncio

    asyncio.run(_background_load(bootstrap, rate, stop, measuring, acked, acked_measured))


async def _background_load(
    bootstrap: str, rate: float, stop: Any, measuring: Any, acked: Any, acked_measured: Any
) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    from tocsin.detectors.engine import detection_key
    from tocsin.schemas.wire import encode

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    pending: set[asyncio.Future[Any]] = set()

    def on_ack(fut: asyncio.Future[Any]) -> None:
        pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            return
        with acked.get_lock():
            acked.value += 1
        if measuring.is_set():
            with acked_measured.get_lock():
                acked_measured.value += 1

    try:
        onset = datetime.now(UTC)
        i, rev, t0 = 0, 0, time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate)
            now = datetime.now(UTC)
            while i < due:
                d = _background(i, now, onset, rev)
                fut = await producer.send(_lane(d), key=detection_key(d), value=encode(d))
                pending.add(fut)
                fut.add_done_callback(on_ack)
                i += 1
                if i % (10 * N_BG_AREAS) == 0:
                    rev += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()


def _probe(k: int, run: str, t: datetime) -> Any:
    from tocsin.schemas.common import Family, WarningLevel
    from tocsin.schemas.detection import Detection, DetectionState

    return Detection(
        id=f"pr{run}-{k}:rainfall:{int(t.timestamp() * 1000)}:0",
        device_id=f"pr{run}-{k}",
        site="bench",
        family=Family.HYDRO,
        kind="rainfall",
        state=DetectionState.OPEN,
        level=WarningLevel.RED,
        value=120.0,
        threshold=100.0,
        unit="mm",
        window_s=10800.0,
        onset=t,
        ts=t,
        area_code=_probe_area(k),
        lat=30.2,
        lon=120.1,
        correlation_id=f"bench-{run}-{k}",
    )


def _probe_area(k: int) -> str:
    return f"{700000 + k}"


def _probe_phone(run_n: int, k: int) -> str:
    return f"+86139{run_n % 100:02d}{k:06d}"


def _prepare_topics(bootstrap: str, group: str) -> None:
    """Create the bench topics if missing, and commit ``group``'s offsets at the end of every topic
    the worker consumes, so it starts with live records instead of replaying history."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError
    from kafka.structs import OffsetAndMetadata

    from tocsin.schemas import topics

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        wanted = [(ROUNDTRIP_TOPIC, 1), *((name, 2) for name in BENCH_TOPICS.values())]
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, n, 1, topic_configs={"retention.ms": "3600000"})
            for name, n in wanted
            if name not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(name, p)
            for name in (*topics.TELEMETRY_TOPICS, *BENCH_DETECTION_TOPICS, BENCH_TOPICS["ALERTS"])
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        ends = consumer.end_offsets(parts)
        consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in ends.items()})
    finally:
        consumer.close()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _committed(bootstrap: str, group: str) -> int:
    """Records of ``bench.detections`` the worker's group has committed (processed), all partitions."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return sum(m.offset for tp, m in offsets.items() if tp.topic in BENCH_DETECTION_TOPICS and m.offset > 0)


_FAST = ("started", "claimed", "full", "failed")


def _metric(port: int, name: str, outcome: str) -> float:
    """One sample of a worker's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _received(sms_url: str) -> dict[str, float]:
    """Phone -> the emulator's receive time (epoch s) of the first SMS to it."""
    req = urllib.request.Request(f"{sms_url}/v1/sms", headers={"Authorization": "Bearer bench"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        msgs = json.loads(resp.read())["messages"]
    out: dict[str, float] = {}
    for m in msgs:
        out.setdefault(m["to"], datetime.fromisoformat(m["received_at"]).timestamp())
    return out


def bench_alert_latency() -> dict[str, float]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from tocsin.detectors.engine import detection_key
    from tocsin.schemas.registry import Registry
    from tocsin.schemas.wire import encode

    started_kafka = not _running("kafka")
    if started_kafka:
        subprocess.run([*SERVICES, "up", "kafka"], check=True, capture_output=True, timeout=900)
    bootstrap = f"127.0.0.1:{os.environ.get('TOCSIN_KAFKA_PORT', '9092')}"
    run = uuid.uuid4().hex[:6]
    run_n = int(run, 16)
    warmup_s = COLD_BROKER_WARMUP_S if started_kafka else WARMUP_S
    n_probes = int((warmup_s + MEASURE_S) / PROBE_EVERY_S) + 20
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-bench-"))
    registry = Registry(sms_recipients={_probe_area(k): [_probe_phone(run_n, k)] for k in range(n_probes)})
    (tmp / "registry.json").write_text(registry.model_dump_json(), encoding="utf-8")
    procs: list[_Proc] = []
    try:
        sms = _Proc(
            [sys.executable, "-m", "tocsin.cli", "sms-gateway", "--port", "0"]
            + ["--rate-limit-per-s", "100000", "--receipt-delay-s", "0"],
            tmp / "sms.log",
            {"TOCSIN_SMS_API_KEY": "bench"},  # keys never on the command line
        )
        procs.append(sms)
        sms_url = sms.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30)
        env = {
            "TOCSIN_KAFKA_BOOTSTRAP": bootstrap,
            "TOCSIN_REGISTRY_FILE": str(tmp / "registry.json"),
            "TOCSIN_WORKER_ID": f"tocsin-bench-{run}",
            "TOCSIN_WORKER_DATA_DIR": str(tmp / "worker"),
            "TOCSIN_WORKER_WEB_PORT": str(_free_port()),
            "TOCSIN_SMS_URL": sms_url,
            "TOCSIN_SMS_API_KEY": "bench",
            "TOCSIN_SMS_RATE_PER_S": "100000",
            "TOCSIN_ALERT_CONFIRM": json.dumps({"gas_leak": [3, 600]}),
            "TOCSIN_LOG_LEVEL": "INFO",
            # the operators' MQTT topic is part of every delivery when Mosquitto runs; not started for this
            "TOCSIN_MQTT_HOST": "127.0.0.1" if _running("mosquitto") else "",
        }
        _prepare_topics(bootstrap, env["TOCSIN_WORKER_ID"])
        web_ports = [_free_port() for _ in range(WORKERS)]
        workers = [
            _Proc(
                [sys.executable, "-c", _WORKER],
                tmp / f"worker-{w}.log",
                {
                    **env,
                    "TOCSIN_WORKER_DATA_DIR": str(tmp / f"worker-{w}"),
                    "TOCSIN_WORKER_WEB_PORT": str(port),
                },
            )
            for w, port in enumerate(web_ports)
        ]
        procs += workers
        for worker in workers:
            worker.wait_for(r"Worker\]: Ready", 180)

        probe_producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        rt_consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=10)
        tp = TopicPartition(ROUNDTRIP_TOPIC, 0)
        rt_consumer.assign([tp])
        rt_consumer.seek_to_end(tp)
        rt_consumer.position(tp)

        # The new consumer group first reads the topics' history (other runs' detections and alerts):
        # one probe without background load, delivered, shows the worker has caught up.
        warm = _probe(n_probes - 1, run, datetime.now(UTC))
        probe_producer.send(_lane(warm), key=detection_key(warm), value=encode(warm))
        probe_producer.flush()
        deadline = time.monotonic() + 240
        while _probe_phone(run_n, n_probes - 1) not in _received(sms_url) and time.monotonic() < deadline:
            time.sleep(0.5)
        caught_up_s = 240 - (deadline - time.monotonic())

        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        stop = threading.Event()
        bg_stop, measuring = ctx.Event(), ctx.Event()
        acked, acked_measured = ctx.Value("q", 0), ctx.Value("q", 0)  # background records acknowledged
        bg = ctx.Process(
            target=_background_process,
            args=(bootstrap, RATE_PER_S, bg_stop, measuring, acked, acked_measured),
            daemon=True,
        )

        rt_sent: dict[bytes, float] = {}
        rt_lat: list[float] = []

        def roundtrip_reader() -> None:
            while not stop.is_set():
                for recs in rt_consumer.poll(timeout_ms=50).values():
                    for r in recs:
                        t_sent = rt_sent.get(r.value)
                        if t_sent is not None and measuring.is_set():
                            rt_lat.append((time.time() - t_sent) * 1000.0)

        bg.start()
        threads = [threading.Thread(target=roundtrip_reader, daemon=True)]
        for th in threads:
            th.start()

        probes: dict[str, float] = {}  # phone -> produce time (epoch s), measured probes only
        t_start = time.monotonic()
        measure_from = t_start + warmup_s
        k = 0
        rt_n = 0
        cpu0 = done0 = 0.0
        while time.monotonic() < measure_from + MEASURE_S:
            if time.monotonic() >= measure_from and not measuring.is_set():
                measuring.set()
                cpu0 = sum(_cpu_s(w.p.pid) for w in workers)
                done0 = _committed(bootstrap, env["TOCSIN_WORKER_ID"])
            d = _probe(k, run, datetime.now(UTC))
            t_sent = time.time()
            probe_producer.send(_lane(d), key=detection_key(d), value=encode(d))
            probe_producer.flush()
            if measuring.is_set():
                probes[_probe_phone(run_n, k)] = t_sent
            k += 1
            time.sleep(PROBE_EVERY_S / 2)
            marker = f"{run}-{rt_n}".encode()
            rt_n += 1
            rt_sent[marker] = time.time()
            probe_producer.send(ROUNDTRIP_TOPIC, value=marker)
            probe_producer.flush()
            time.sleep(PROBE_EVERY_S / 2)
        measured_s = time.monotonic() - measure_from
        probes_t0 = min(probes.values(), default=0.0)
        measuring.clear()
        cpu_used = sum(_cpu_s(w.p.pid) for w in workers) - cpu0
        processed = _committed(bootstrap, env["TOCSIN_WORKER_ID"]) - done0
        stop.set()
        bg_stop.set()
        for th in threads:
            th.join(10)
        bg.join(60)

        deadline = time.monotonic() + 60
        got = _received(sms_url)
        while not set(probes) <= set(got) and time.monotonic() < deadline:
            time.sleep(0.5)
            got = _received(sms_url)
        lat = [(got[p] - probes[p]) * 1000.0 for p in probes if p in got]
        if os.environ.get("TOCSIN_BENCH_KEEP"):  # per probe: (seconds into the measurement, latency ms)
            series = sorted((probes[p] - probes_t0, (got[p] - probes[p]) * 1000.0) for p in probes if p in got)
            (tmp / "probes.json").write_text(json.dumps(series), encoding="utf-8")
        fast = {o: sum(_metric(port, "tocsin_alert_fast_lane_total", o) for port in web_ports) for o in _FAST}
        probe_producer.close(5)
        rt_consumer.close()
        p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
        rt50, rt99 = _pct(rt_lat, 0.5), _pct(rt_lat, 0.99)
        return {
            "red_alert_p50_ms": p50,
            "red_alert_p99_ms": p99,
            "red_alert_max_ms": max(lat, default=float("nan")),
            "red_alert_p90_ms": _pct(lat, 0.9),
            # how many probes missed the 200 ms: a few (one stall) or most (a backlog)
            "red_alert_over_200ms": float(sum(x > 200.0 for x in lat)),
            "n": float(len(lat)),
            "history_catch_up_s": caught_up_s,
            "warmup_s": warmup_s,
            "lost": float(len(probes) - len(lat)),
            "background_per_s": acked_measured.value / measured_s,
            # what the worker did meanwhile: detections it got through (committed offsets, so to
            # within a commit interval) and the CPU they cost it; 1000 / cpu ms is its capacity per core
            "workers": float(WORKERS),
            "worker_processed_per_s": processed / measured_s,
            "worker_cpu_share": cpu_used / measured_s,
            "worker_cpu_ms_per_detection": 1000.0 * cpu_used / max(processed, 1),
            "kafka_roundtrip_p50_ms": rt50,
            "kafka_roundtrip_p99_ms": rt99,
            "kafka_roundtrip_n": float(len(rt_lat)),
            # red messages the worker delivered at issue (fast lane, then claimed by the deliver agent)
            **{f"fast_lane_{o}": n for o, n in fast.items()},
            "ratio_p50": p50 / rt50,
            "ratio_p99": p99 / rt99,
        }
    finally:
        for p in reversed(procs):
            p.stop()
        if started_kafka:
            subprocess.run([*SERVICES, "down", "kafka"], capture_output=True, timeout=120)
        if not os.environ.get("TOCSIN_BENCH_KEEP"):  # the processes' logs, for a look at a bad run
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(bench_alert_latency(), indent=2))
