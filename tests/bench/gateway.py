"""Gateway throughput on the real broker and Kafka, beside the native pipe, in one run.

Both paths read the same QoS 1 messages from the same Mosquitto, published once by the same
``mosquitto_pub -l`` processes, and both are subscribed (and proven to deliver) before publishing:

- native: ``mosquitto_sub -q 1 -t <filter> -C <readings> | kcat -P -X acks=all -t bench.gw.native``
  (no validation, no acknowledgement after Kafka: mosquitto_sub acks on receipt; ``-C`` ends the
  pipe after the readings, the EOF makes kcat send its last block);
- gateway: the unchanged ``tocsin gateway`` code (default log level, JSON logs, no InfluxDB sink,
  manual MQTT acks after Kafka acks=all) producing into ``bench.telemetry.hydro``.

Rate of a path = readings / (time its Kafka topic holds them all - time the publishers started).
The ratio gateway / native is the figure; both share this machine's cores, as in issue 15.

Isolation on shared services: the publishers use the topic root ``benchgw/v1`` instead of
``tocsin/v1`` (the gateway is pointed at it, as the alert-latency bench points the worker at its
own Kafka topics), so no other gateway takes a share of the bench's messages, and the gateway
writes ``bench.telemetry.<family>`` (same partition count as ``telemetry.<family>``), so no
running worker reads 100,000 bench readings as live rain.

Then the InfluxDB sink: the project's sink (``InfluxKafkaSink``: Kafka consumer, points, writes
through influxdb-client) drains the gateway's readings from Kafka into a database of its own, beside
InfluxDB's own line-protocol write of the same points (``POST /api/v2/write`` of prepared bodies of
the same batch size) into another one.

Tools: ``mosquitto_pub``, ``mosquitto_sub`` (Debian ``mosquitto-clients``) and ``kcat`` (Debian
``kcat``), which ``deploy/local/services.sh`` installs when it provisions the services. Mosquitto,
Kafka and InfluxDB are started with ``services.sh up`` when not running (and left running).
Knobs: ``--gateway-readings N`` of ``tests.bench.run`` (100,000), ``TOCSIN_BENCH_GW_PUBLISHERS`` (4),
``TOCSIN_BENCH_GW_TIMEOUT_S`` (120: bound of each wait), ``TOCSIN_BENCH_KEEP=1`` (keep the logs),
``TOCSIN_BENCH_GW_SINK=kafka-python`` (the gateway on kafka-python's producer instead of librdkafka),
``TOCSIN_BENCH_GW_PYSPY=<file>`` (the gateway under ``py-spy record``: collapsed stacks of all threads).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]
ROOT = "benchgw/v1"
NATIVE_TOPIC = "bench.gw.native"
PREFIX = "bench."
MQTT = ("127.0.0.1", int(os.environ.get("TOCSIN_MQTT_PORT", "1883")))
# The local harness's ports (TOCSIN_*_PORT, as tests/conftest.py reads them) unless given whole.
KAFKA = os.environ.get("TOCSIN_KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('TOCSIN_KAFKA_PORT', '9092')}"
INFLUX = os.environ.get("TOCSIN_INFLUX_URL") or f"http://127.0.0.1:{os.environ.get('TOCSIN_INFLUX_PORT', '8086')}"
DEFAULT_READINGS = 100_000

# ``tocsin gateway`` with the bench topic root and Kafka topic prefix; everything else unchanged.
_GATEWAY = "\n".join(
    [
        "import sys",
        "from tocsin.schemas import topics",
        f"topics.MQTT_ROOT = {ROOT!r}",
        "topics.MQTT_TELEMETRY_FILTER = topics.MQTT_ROOT + '/+/+/+/telemetry'",
        "topics.MQTT_STATUS_FILTER = topics.MQTT_ROOT + '/+/+/+/status'",
        "import os, tocsin.ingest.sinks",
        "if os.environ.get('TOCSIN_BENCH_GW_SINK') == 'kafka-python':",
        "    tocsin.ingest.sinks.RdKafkaSink = tocsin.ingest.sinks.KafkaSink",
        "import tocsin.ingest.validate as v",
        "_kt = v.kafka_telemetry",
        f"v.kafka_telemetry = lambda family: {PREFIX!r} + _kt(family)",
        "from tocsin.cli import main",
        "sys.exit(main(['gateway']))",
    ]
)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _ensure_services(names: list[str]) -> None:
    ports = {
        "mosquitto": MQTT[1],
        "kafka": int(KAFKA.rsplit(":", 1)[1]),
        "influxdb": int(INFLUX.rsplit(":", 1)[1].split("/")[0]),
    }
    down = [n for n in names if not _port_open("127.0.0.1", ports[n])]
    if down:
        subprocess.run([*SERVICES, "up", *down], check=True, timeout=600)


def _tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("mosquitto_pub", "mosquitto_sub", "kcat")}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not on PATH: `bash deploy/local/services.sh provision` installs the Debian "
            "packages mosquitto-clients and kcat"
        )
    return {n: str(p) for n, p in found.items()}


def _admin_topics(names: list[str], partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=KAFKA.split(","), client_id="tocsin-bench-gw")
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        if missing:
            configs = {"retention.ms": str(3_600_000)}
            try:
                admin.create_topics([NewTopic(n, partitions, 1, topic_configs=configs) for n in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


class _Offsets:
    """Sum of the end offsets of a topic's partitions (records ever written to it)."""

    def __init__(self) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(bootstrap_servers=KAFKA.split(","), client_id="tocsin-bench-gw-offsets")

    def total(self, topic: str) -> int:
        from kafka import TopicPartition

        deadline = time.monotonic() + 30
        parts = self.consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = self.consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        return sum(self.consumer.end_offsets(tps).values())

    def close(self) -> None:
        self.consumer.close()


def _reading(device: str, ts: datetime, seq: int) -> str:
    return json.dumps(
        {
            "type": "hydro.rain",
            "device_id": device,
            "site": "s1",
            "ts": ts.isoformat(timespec="milliseconds"),
            "seq": seq,
            "rain_mm": 0.5,
            "interval_s": 60,
        },
        separators=(",", ":"),
    )


def _topic(device: str) -> str:
    return f"{ROOT}/hydro/s1/{device}/telemetry"


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_gateway(readings: int | None = None) -> dict[str, float]:
    n_total = readings or int(os.environ.get("TOCSIN_BENCH_GW_READINGS", DEFAULT_READINGS))
    publishers = int(os.environ.get("TOCSIN_BENCH_GW_PUBLISHERS", "4"))
    timeout_s = float(os.environ.get("TOCSIN_BENCH_GW_TIMEOUT_S", "120"))
    per_pub = n_total // publishers
    n = per_pub * publishers
    tools = _tools()
    _ensure_services(["mosquitto", "kafka"])
    from tocsin.settings import Settings

    partitions = Settings().kafka_partitions
    gw_topic = PREFIX + "telemetry.hydro"
    _admin_topics([NATIVE_TOPIC, gw_topic, PREFIX + "telemetry.fire"], partitions)
    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-bench-gw-"))
    procs: list[subprocess.Popen[bytes]] = []
    offsets = _Offsets()
    env = {
        **os.environ,
        "TOCSIN_MQTT_HOST": MQTT[0],
        "TOCSIN_MQTT_PORT": str(MQTT[1]),
        "TOCSIN_KAFKA_BOOTSTRAP": KAFKA,
        "TOCSIN_MQTT_CLIENT_ID": f"bench-gw-{run}",
        "TOCSIN_MQTT_SHARE_GROUP": f"bench{run}",
        "TOCSIN_MQTT_SESSION_EXPIRY_S": "60",
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_METRICS_PORT": "0",
        "TOCSIN_REGISTRY_FILE": "",
    }
    for name in ("TOCSIN_LOG_LEVEL", "TOCSIN_LOG_FORMAT"):  # the defaults are what is measured
        env.pop(name, None)
    gw_log = tmp / "gateway.log"
    profile = os.environ.get("TOCSIN_BENCH_GW_PYSPY")  # py-spy collapsed stacks of every thread
    try:
        with open(gw_log, "wb") as log_out:
            spy = [shutil.which("py-spy") or "py-spy", "record", "-r", "200", "-f", "raw", "-o", profile, "--"]
            gw = subprocess.Popen(
                [*(spy if profile else []), sys.executable, "-c", _GATEWAY],
                cwd=REPO,
                env=env,
                stdout=log_out,
                stderr=subprocess.STDOUT,
            )
        procs.append(gw)
        # Native path: a persistent MQTT 5 session subscribed (-E: exit once the broker acknowledged the
        # subscription), so the broker holds every reading for it from then on; then the pipe resumes
        # that session and exits after exactly the readings (-C), which makes kcat flush them at EOF
        # (kcat reads its stdin in blocks: without the EOF the last readings would wait in its buffer).
        native_id = f"bench-native-{run}"
        session = [tools["mosquitto_sub"], "-h", MQTT[0], "-p", str(MQTT[1]), "-V", "mqttv5", "-c", "-x", "300"]
        session += ["-i", native_id, "-q", "1", "-t", f"{ROOT}/hydro/s1/+/telemetry"]
        subprocess.run([*session, "-E"], check=True, timeout=30)
        native_err = open(tmp / "native.err", "wb")  # noqa: SIM115 - closed in finally
        sub = subprocess.Popen([*session, "-C", str(n)], stdout=subprocess.PIPE, stderr=native_err)
        kcat = subprocess.Popen(
            [tools["kcat"], "-P", "-b", KAFKA, "-t", NATIVE_TOPIC, "-X", "acks=all"],
            stdin=sub.stdout,
            stderr=native_err,
        )
        assert sub.stdout is not None
        sub.stdout.close()  # kcat holds the pipe now
        procs += [sub, kcat]

        # The gateway subscribed and delivering into Kafka: probe readings (fire detections, outside
        # the native pipe's filter and the rain topic counted below) until their topic grew.
        probe_topic = PREFIX + "telemetry.fire"
        base_probe = offsets.total(probe_topic)
        deadline = time.monotonic() + timeout_s
        probe = 0
        probe_dev = f"PROBE{run}"
        while time.monotonic() < deadline:
            if gw.poll() is not None:
                raise RuntimeError(f"the gateway exited ({gw.returncode}); log: {gw_log.read_text()[-2000:]}")
            probe += 1
            line = json.dumps(
                {
                    "type": "fire.detection",
                    "device_id": probe_dev,
                    "site": "probe",
                    "ts": datetime.now(UTC).isoformat(),
                    "seq": probe,
                    "kind": "smoke",
                    "confidence": 0.5,
                    "bearing_deg": 10.0,
                }
            )
            subprocess.run(
                [tools["mosquitto_pub"], "-h", MQTT[0], "-p", str(MQTT[1]), "-q", "1"]
                + ["-t", f"{ROOT}/fire/probe/{probe_dev}/telemetry", "-m", line],
                check=True,
                timeout=10,
            )
            time.sleep(0.5)
            if offsets.total(probe_topic) > base_probe:
                break
        else:
            raise RuntimeError("the gateway delivered no probe reading within the timeout")
        time.sleep(1.0)  # let the last probes through
        base_native, base_gw = offsets.total(NATIVE_TOPIC), offsets.total(gw_topic)

        # The readings: one device per publisher, spread over the last 50 minutes of device time (live
        # readings, not backfill: the gateway observes their ingest latency).
        step_s = min(1.0, 3000.0 / per_pub)
        start_ts = datetime.now(UTC) - timedelta(seconds=per_pub * step_s + 10)
        files = []
        for p in range(publishers):
            device = f"RG{run}{p:02d}"
            path = tmp / f"pub{p}.txt"
            path.write_text(
                "".join(_reading(device, start_ts + timedelta(seconds=k * step_s), k) + "\n" for k in range(per_pub)),
                encoding="utf-8",
            )
            files.append((device, path))
        gw_pid = gw.pid
        if profile:  # py-spy runs the gateway as its child
            deadline = time.monotonic() + 10
            while not _children(gw.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            gw_pid = _children(gw.pid)[0]
        gw_cpu0, native_cpu0 = _cpu_s(gw_pid), _cpu_s(sub.pid) + _cpu_s(kcat.pid)
        pubs = []
        t0 = time.perf_counter()
        for device, path in files:
            with open(path, "rb") as stdin:
                pubs.append(
                    subprocess.Popen(
                        [tools["mosquitto_pub"], "-h", MQTT[0], "-p", str(MQTT[1]), "-q", "1", "-l"]
                        + ["-t", _topic(device), "-i", f"bench-pub-{run}-{device}"],
                        stdin=stdin,
                    )
                )
        procs += pubs
        done: dict[str, float] = {}
        native_cpu_end = native_cpu0
        counts = {"native": 0, "gateway": 0}
        last_change, last_sum = time.perf_counter(), -1
        deadline = time.monotonic() + timeout_s
        published_s = None
        while time.monotonic() < deadline and len(done) < 2:
            now = time.perf_counter()
            if published_s is None and all(p.poll() is not None for p in pubs):
                published_s = now - t0
            counts["native"] = offsets.total(NATIVE_TOPIC) - base_native
            counts["gateway"] = offsets.total(gw_topic) - base_gw
            for name, c in counts.items():
                if name not in done and c >= n:
                    done[name] = now - t0
            if sub.poll() is None:  # the native pipe's CPU while it runs (mosquitto_sub exits after -C)
                native_cpu_end = _cpu_s(sub.pid) + _cpu_s(kcat.pid)
            total = sum(counts.values())
            if total != last_sum:
                last_change, last_sum = now, total
            elif now - last_change > 20:
                break  # no progress on either path for 20 s: report what arrived
            time.sleep(0.05)
        gw_cpu = _cpu_s(gw_pid) - gw_cpu0
        native_cpu = native_cpu_end - native_cpu0
        elapsed = time.perf_counter() - t0
        lines = sum(1 for _ in open(gw_log, "rb"))
    finally:
        if profile and procs:  # stop the gateway under py-spy, then py-spy (SIGINT: it writes its output)
            for child in _children(procs[0].pid):
                os.kill(child, signal.SIGTERM)
            time.sleep(3)
            procs[0].send_signal(signal.SIGINT)
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=35)
            except subprocess.TimeoutExpired:
                p.kill()
        offsets.close()
        if not os.environ.get("TOCSIN_BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"gateway bench logs kept in {tmp}", flush=True)

    def rate(name: str) -> float:
        return n / done[name] if name in done else counts[name] / elapsed

    native, gateway = rate("native"), rate("gateway")
    return {
        "readings": n,
        "publishers": publishers,
        "publish_s": published_s if published_s is not None else float("nan"),
        "native_per_s": native,
        "native_in_kafka": counts["native"],
        "gateway_per_s": gateway,
        "gateway_in_kafka": counts["gateway"],
        "gateway_lost": n - min(n, counts["gateway"]),
        "ratio": gateway / native,
        "gateway_cpu_s": gw_cpu,
        "gateway_per_cpu_s": counts["gateway"] / gw_cpu if gw_cpu > 0 else float("nan"),
        "gateway_log_lines": lines,
        "native_cpu_s": native_cpu,
        "native_per_cpu_s": counts["native"] / native_cpu if native_cpu > 0 else float("nan"),
        "load_avg_1m": os.getloadavg()[0],
    }


def _influx(path: str, **params: str) -> bytes:
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"{INFLUX}{path}", data=data, timeout=30) as resp:
        return bytes(resp.read())


def bench_influx_sink(readings: int | None = None) -> dict[str, float]:
    """The project's InfluxDB sink draining rain readings from Kafka vs InfluxDB's own line-protocol
    write of the same points (prepared bodies, same batch size), each into a database of its own.

    The readings: produced straight into a Kafka topic of this run (``bench.influx.<run>``), as the
    gateway writes them (canonical JSON). Sink rate = points / (time from the sink's first poll to
    the last point written); reference rate = points / time of ``POST /api/v2/write`` of the line
    protocol of the same points (``to_point(...).to_line_protocol()``, prepared before the clock
    starts) in batches as large as the sink's (at most 5,000 records a poll)."""
    import threading

    from kafka import KafkaConsumer, KafkaProducer
    from prometheus_client import CollectorRegistry

    from tocsin.ingest.influx import InfluxHttpWriter, InfluxKafkaSink, to_point
    from tocsin.ingest.metrics import GatewayMetrics
    from tocsin.schemas.telemetry import RainIncrement
    from tocsin.schemas.wire import encode

    n = readings or min(50_000, int(os.environ.get("TOCSIN_BENCH_GW_READINGS", DEFAULT_READINGS)))
    _ensure_services(["kafka", "influxdb"])
    run = uuid.uuid4().hex[:8]
    topic, db_sink, db_ref = f"bench.influx.{run}", f"bench_sink_{run}", f"bench_ref_{run}"
    _admin_topics([topic], 2)
    start = datetime.now(UTC) - timedelta(hours=1)
    values = [
        encode(
            RainIncrement(
                device_id=f"RG{k % 500:03d}",
                site="s1",
                ts=start + timedelta(milliseconds=35 * k),
                seq=k,
                rain_mm=0.5,
                interval_s=60,
            )
        )
        for k in range(n)
    ]
    producer = KafkaProducer(bootstrap_servers=KAFKA.split(","), linger_ms=20, batch_size=512 * 1024)
    for v in values:
        producer.send(topic, v)
    producer.flush(60)
    producer.close()
    for db in (db_sink, db_ref):
        _influx("/query", q=f'CREATE DATABASE "{db}"')
    try:
        # The project's sink, on a consumer of the bench topic only (InfluxKafkaSink.connect subscribes
        # to every telemetry topic; everything else is unchanged).
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=KAFKA.split(","),
            group_id=f"bench-influx-{run}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5_000,
        )
        writer = InfluxHttpWriter(INFLUX, "", "-", db_sink)
        sink = InfluxKafkaSink(consumer, writer, GatewayMetrics(CollectorRegistry()))
        stop = threading.Event()
        deadline = time.monotonic() + float(os.environ.get("TOCSIN_BENCH_GW_TIMEOUT_S", "120"))
        t0 = time.perf_counter()
        batches = []
        while sink.written < n and time.monotonic() < deadline:
            got = sink.step(stop)
            if got:
                batches.append(got)
        sink_s = time.perf_counter() - t0
        consumer.close()
        writer.close()

        # The reference: the same points, line protocol prepared beforehand, posted in the same batches.
        from tocsin.schemas.telemetry import TELEMETRY_ADAPTER

        lines = [to_point(TELEMETRY_ADAPTER.validate_json(v)).to_line_protocol() for v in values]
        size = max(batches) if batches else 5_000
        bodies = ["\n".join(lines[i : i + size]).encode() for i in range(0, len(lines), size)]
        url = f"{INFLUX}/api/v2/write?" + urllib.parse.urlencode({"bucket": db_ref, "org": "-", "precision": "ms"})
        t0 = time.perf_counter()
        for body in bodies:
            req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                assert resp.status == 204, resp.status
        ref_s = time.perf_counter() - t0

        def count(db: str) -> int:
            out = json.loads(_influx("/query", db=db, q="SELECT count(rain_mm) FROM hydro"))
            series = out["results"][0].get("series") or [{"values": [[0, 0]]}]
            return int(series[0]["values"][0][1])

        in_sink, in_ref = count(db_sink), count(db_ref)
    finally:
        for db in (db_sink, db_ref):
            _influx("/query", q=f'DROP DATABASE "{db}"')
    return {
        "points": n,
        "batch": size,
        "sink_per_s": sink.written / sink_s,
        "sink_points_in_influx": in_sink,
        "reference_per_s": n / ref_s,
        "reference_points_in_influx": in_ref,
        "ratio": (sink.written / sink_s) / (n / ref_s),
    }
