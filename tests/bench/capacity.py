"""The figures docs/capacity.md derives from that no other bench gives (run by hand, results as JSON):

- ``state``: per device kind of ``tocsin fleet`` (simulators/fleet.py), the telemetry record's bytes,
  the detector state's JSON bytes that the worker's table writes to its Kafka changelog per reading
  (last and mean over a run of the kind's own interval: 24 h of a 5-minute rain gauge, 400 readings of
  the others), and the CPU of ``DetectorEngine.process`` + that encoding per reading. The reference is
  the record itself: ``changelog_per_record`` is state bytes / record bytes.
- ``brokers``: ``kcat -P`` (acks=all, idempotent, linger 5 ms, no compression unless ``--compression
  gzip``: with it kcat's own gzip is the limit, not the brokers) of the same N records into a
  6-partition topic of the single broker and of the 3-broker cluster (``services.sh up kafka3``:
  replication factor 3, min.insync.replicas 2), in one run, alternating, best of ``--rounds``:
  msg/s, MB/s and cluster / single. On one machine the three brokers share its cores, so the ratio is
  the cost of replication on the same CPU, not what three machines would give.

    python -m tests.bench.capacity state
    python -m tests.bench.capacity plan [--set worker_readings_s=10000 ...]   # docs/capacity.md's tables
    python -m tests.bench.capacity brokers --records 200000 --bytes 165   # needs kafka and kafka3 up
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def bench_state() -> dict[str, Any]:
    from tocsin.detectors.engine import DetectorEngine
    from tocsin.ingest.validate import Accepted, validate_telemetry
    from tocsin.schemas import topics
    from tocsin.simulators.fleet import KINDS, PayloadFactory, plan_devices

    now = datetime.now(UTC)
    factory = PayloadFactory()
    first: dict[str, Any] = {}
    for d in plan_devices(10_000):
        first.setdefault(d.kind, d)
    out: dict[str, Any] = {}
    for kind, d in sorted(first.items()):
        engine, state = DetectorEngine(), None
        n = 288 if kind == "rain" else 400
        t0 = now - timedelta(seconds=d.interval_s * (n + 1))
        sizes, cpu, record = [], 0.0, 0
        for k in range(n):
            payload = factory.telemetry(d, k + 1, t0 + timedelta(seconds=d.interval_s * k))
            record = len(payload)
            acc = validate_telemetry(topics.mqtt_telemetry(d.family, d.site, d.device_id), payload, now)
            assert isinstance(acc, Accepted), acc
            c = time.process_time()
            state, _ = engine.process(acc.reading, state)
            encoded = json.dumps(state)
            cpu += time.process_time() - c
            sizes.append(len(encoded))
        mean = sum(sizes) / len(sizes)
        out[kind] = {
            "interval_s": KINDS[kind].interval_s,
            "share": KINDS[kind].share,
            "record_bytes": record,
            "state_bytes_last": sizes[-1],
            "state_bytes_mean": round(mean),
            "changelog_per_record": round(mean / record, 1),
            "engine_cpu_us": round(1e6 * cpu / n, 1),
        }
    return out


def _kcat(bootstrap: str, topic: str, path: Path, compression: str) -> tuple[float, float]:
    """Seconds to produce every line of ``path`` (key TAB value), and kcat's CPU seconds."""
    args = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-l", str(path)]
    for conf in ("acks=all", "enable.idempotence=true", f"compression.codec={compression}", "linger.ms=5"):
        args += ["-X", conf]
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = os.times()
    assert proc.returncode == 0, proc.stderr[-2000:]
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def _record(rng: random.Random, i: int, size: int) -> str:
    """A JSON value of ``size`` characters shaped like a reading or a detector state (timestamps and
    readings with random digits: it compresses like them, unlike a run of one character)."""
    t = 1_796_000_000 + 10 * i
    pairs: list[str] = []
    text = ""
    while len(text) < size:
        pairs.append(f"[{t + 10 * len(pairs)},{rng.uniform(0, 40):.2f}]")
        text = f'{{"device_id":"D{i % 5000:05d}","ts":{t},"w":[{",".join(pairs)}]}}'
    return text[: size - 2] + "]}"


def _harness_env() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "deploy" / "local" / "services.sh"), "env"], capture_output=True, text=True, timeout=60
    ).stdout
    return dict(w.split("=", 1) for w in shlex.split(out) if "=" in w)


def bench_brokers(records: int, size: int, rounds: int, compression: str) -> dict[str, Any]:
    from tocsin.kafka import ensure_topics

    env = _harness_env()
    targets = {"single": env["TOCSIN_KAFKA_BOOTSTRAP"], "cluster3": env["TOCSIN_KAFKA3_BOOTSTRAP"]}
    run = f"bench.capacity.{int(time.time())}"
    for name, bootstrap in targets.items():
        ensure_topics(bootstrap, [f"{run}.{name}"], 6)  # replication: min(3, brokers), min ISR to match
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.txt"
        with path.open("w", encoding="utf-8") as f:
            for i in range(records):
                f.write(f"D{i % 5000:05d}\t{_record(rng, i, size)}\n")
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for name, bootstrap in targets.items():
                wall, cpu = _kcat(bootstrap, f"{run}.{name}", path, compression)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
    out: dict[str, Any] = {"records": records, "record_bytes": size, "rounds": rounds, "compression": compression}
    out["loadavg"] = [round(x, 1) for x in os.getloadavg()]
    for name, (wall, cpu) in best.items():
        out[name] = {"msg_per_s": round(records / wall), "mb_per_s": round(records * size / wall / 1e6, 1)}
        out[name]["kcat_cpu_s"] = round(cpu, 2)
    out["cluster3_over_single"] = round(out["cluster3"]["msg_per_s"] / out["single"]["msg_per_s"], 2)
    return out


# --------------------------------------------------------------------------- plan (docs/capacity.md)
# Today's per-process figures; each names its source (docs/capacity.md, "Measured figures").
FIGURES: dict[str, float] = {
    # F1 docs/throughput.md, make bench gateway, 100,000 readings: lowest of the 2026-12-02 runs (12-22k)
    "gateway_msg_s": 12000.0,
    # F3 docs/throughput.md, make bench worker: one worker, mixed telemetry in batch records of 11 readings
    # (TOCSIN_KAFKA_BATCH_READINGS > 1), 9,500-11,250/s at 78-90 % of a core; 4,200 with one reading per record
    "worker_readings_s": 10000.0,
    "sink_points_s": 20664.0,  # F5 docs/throughput.md, make bench influx_sink (2026-12-02)
    "influxdb_points_s": 194544.0,  # F6 the same run: InfluxDB's own line-protocol write
    "mosquitto_msg_s": 15032.0,  # F2 docs/throughput.md: the native pipe through one Mosquitto, same run as F1
    "utilisation": 0.6,  # target: a backlog of D seconds drains in D * u / (1 - u) = 1.5 D
    "peak_factor": 3.0,  # design load = average x this (storms, reconnect bursts): an assumption
}
# (messages/s per device, record bytes, mean changelog bytes per reading) per kind: simulators/fleet.py
# intervals, ``python -m tests.bench.capacity state`` bytes (F7)
KIND_LOAD = {
    "rain": (1 / 300, 147, 4884),
    "level": (1 / 300, 132, 345),
    "gas": (1 / 10, 152, 858),
    "fire": (1 / 60, 204, 86),
    "seismic": (1.0, 1071, 1801),
}
FLEET_MIX = {"rain": 0.35, "level": 0.25, "gas": 0.25, "fire": 0.14, "seismic": 0.01}
# the largest shipped scenario, simulators/scenarios/bad_day.yaml: hydro 6 (3 rain, 3 level), hazmat 5,
# fire 3, seismic 6
DISTRICT = {"rain": 3, "level": 3, "gas": 5, "fire": 3, "seismic": 6}


def _ceil(x: float) -> int:
    return int(-(-x // 1))


def plan_case(avg_msg_s: float, record_b: float, state_b: float, peak: float, f: dict[str, float]) -> dict[str, Any]:
    """Processes for an average load (messages/s) with the given bytes per reading: the formulas of
    docs/capacity.md. Every process count is N + 1 (one may fail or be upgraded)."""
    design = avg_msg_s * peak
    u = f["utilisation"]

    def n_plus_1(capacity: float) -> int:
        return _ceil(design / (capacity * u)) + 1

    workers = n_plus_1(f["worker_readings_s"])
    return {
        "avg_msg_s": round(avg_msg_s, 1),
        "design_msg_s": round(design),
        "gateways": n_plus_1(f["gateway_msg_s"]),
        "workers": workers,
        "partitions": max(6, 12 * _ceil(2 * workers / 12)),  # >= 2 x workers, a multiple of 12
        "mosquitto": max(1, _ceil(design / (f["mosquitto_msg_s"] * u))),
        "influx_sinks": n_plus_1(f["sink_points_s"]),
        "influxdb_write_pct": round(100 * design / f["influxdb_points_s"], 2),
        "kafka_produce_mb_s": round(design * (record_b + state_b) / 1e6, 2),
        "kafka_replicated_write_mb_s": round(3 * design * (record_b + state_b) / 1e6, 2),
        "telemetry_gb_day_per_replica": round(avg_msg_s * record_b * 86400 / 1e9, 1),
        "changelog_pct_of_bytes": round(100 * state_b / (record_b + state_b)),
    }


def mix_load(counts: Mapping[str, float]) -> tuple[float, float, float]:
    """(messages/s, mean record bytes, mean changelog bytes) of ``counts`` devices per kind."""
    rate = sum(n * KIND_LOAD[k][0] for k, n in counts.items())
    record = sum(n * KIND_LOAD[k][0] * KIND_LOAD[k][1] for k, n in counts.items()) / rate
    state = sum(n * KIND_LOAD[k][0] * KIND_LOAD[k][2] for k, n in counts.items()) / rate
    return rate, record, state


def plan(f: dict[str, float]) -> dict[str, Any]:
    peak = f["peak_factor"]
    district = mix_load(DISTRICT)
    hefei = mix_load({k: 85_000 * s for k, s in FLEET_MIX.items()})
    chem_rate = 800e6 / 86400  # 800 M records a day
    gas = KIND_LOAD["gas"]
    return {
        "figures": f,
        "a_district": plan_case(*district, peak, f),
        "b_85000_sensors": plan_case(*hefei, peak, f),
        "c_440000_points": plan_case(chem_rate, gas[1], gas[2], peak, f),
    }


ROWS = (
    ("avg_msg_s", "average load, messages/s"),
    ("design_msg_s", "design load (x peak factor), messages/s"),
    ("gateways", "gateway processes (N+1)"),
    ("mosquitto", "Mosquitto brokers"),
    ("workers", "worker processes (N+1)"),
    ("partitions", "partitions per topic"),
    ("influx_sinks", "InfluxDB sink processes (N+1)"),
    ("influxdb_write_pct", "% of one InfluxDB node's measured write rate"),
    ("kafka_produce_mb_s", "Kafka produce at design load, MB/s"),
    ("kafka_replicated_write_mb_s", "Kafka writes x 3 replicas, MB/s"),
    ("telemetry_gb_day_per_replica", "telemetry per day per replica, GB (uncompressed)"),
    ("changelog_pct_of_bytes", "% of Kafka bytes that are table changelogs"),
)


def markdown(result: dict[str, Any]) -> str:
    """The table of docs/capacity.md (tests/test_capacity_doc.py keeps the two equal)."""
    cases = ("a_district", "b_85000_sensors", "c_440000_points")
    lines = ["| | (a) district | (b) 85,000 sensors | (c) 440,000 points |", "|---|---|---|---|"]
    for key, label in ROWS:
        cells = []
        for case in cases:
            v = result[case][key]
            cells.append(f"{v:,.0f}" if isinstance(v, int) or float(v).is_integer() and v >= 10 else f"{v:,}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("state")
    p = sub.add_parser("plan", help="docs/capacity.md's tables from the figures (override any: --set key=value)")
    p.add_argument("--markdown", action="store_true", help="the table of docs/capacity.md")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"one of {sorted(FIGURES)}")
    b = sub.add_parser("brokers")
    b.add_argument("--records", type=int, default=200_000)
    b.add_argument("--bytes", type=int, default=165, help="value bytes per record")
    b.add_argument("--rounds", type=int, default=2)
    b.add_argument("--compression", default="none", help="none: the brokers' cost; gzip: what Tocsin's producers use")
    args = ap.parse_args()
    if args.cmd == "state":
        result = bench_state()
    elif args.cmd == "plan":
        figures = dict(FIGURES)
        for kv in args.set:
            key, _, value = kv.partition("=")
            assert key in figures, f"unknown figure {key}: one of {sorted(figures)}"
            figures[key] = float(value)
        result = plan(figures)
        if args.markdown:
            print(markdown(result))
            return 0
    else:
        result = bench_brokers(args.records, args.bytes, args.rounds, args.compression)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
