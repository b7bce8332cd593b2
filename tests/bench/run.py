"""Benchmarks (``make bench``): each figure is measured beside a reference in the same run and
reported as a ratio, so results compare across machines. Output: JSON in ``--out``.

- validate: the gateway's full validation of a rain reading vs bare ``json.loads`` of the same bytes.
- sta_lta: the streaming recursive STA/LTA over 100-sample packets vs its plain-Python twin.
- station_trigger: the whole per-packet seismic detector vs the same packets' ``json.loads``.
- detector_engine: DetectorEngine.process per reading of each family (rain, river level, gas, fire,
  100 Hz seismic packets), with the state's changelog encoding as the worker's Faust table writes it:
  CPU time per reading vs the strict validation of the same reading (tests/bench/engine.py).
- console_devices: the console's device-state model per telemetry record (single and batch of 11)
  vs ``json.loads`` of the same bytes, and one snapshot of 10,000 devices (ms).
- console_follower: the operator API's follower of the telemetry topics feeding the console's
  device states, CPU per record vs a plain kafka-python consumer of the same 200,000 records
  (tests/bench/console.py).
- sms_dispatch: SMS sent through the priority rate limiter to the carrier emulator, both at 100/s:
  achieved rate / configured limit.
- gateway: ``tocsin gateway`` vs the native pipe ``mosquitto_sub | kcat`` on the same 100,000 QoS 1
  readings, msg/s each and gateway / native (tests/bench/gateway.py); ``--gateway-readings N``.
- influx_sink: the InfluxDB sink (Kafka -> points -> influxdb-client) vs InfluxDB's own line-protocol
  write of the same points (POST /api/v2/write of prepared bodies): points/s each and sink / reference.
- worker: one ``tocsin worker`` draining mixed telemetry of the four families (100 Hz seismic packets
  included) produced into Kafka ahead of time in the gateway's batch records (11 readings per record
  on average; ``TOCSIN_BENCH_WORKER_BATCH=1``: one per reading): readings/s, CPU, commit lag, vs a
  plain confluent-kafka consumer decoding the same readings (tests/bench/worker.py); ``--worker-readings N``.
- changelog_hold: a batch's acknowledgement held until its changelog records are confirmed
  (tocsin/changelog.py) vs the same batches acknowledged at once: CPU per batch and per record, with
  confirmations that arrive on the next loop iteration (tests/bench/changelog.py).
- scaleout: 1, 2 and 3 ``tocsin worker`` processes in one consumer group draining the same 60,000
  pre-produced rain readings of 500 gauges from a 6-partition topic: readings/s each, the ratio to
  one worker, and every worker's CPU (tests/bench/scaleout.py; docs/capacity.md explains the figure).
- quake_location: epicentre error of the earthquake location with and without the not-yet-arrived
  constraint (live untriggered stations), the warning levels and the first alert's pick count, on the
  simulator's quakes, both in the same run (tests/bench/quake_location.py; the full table:
  ``python -m tests.bench.quake_location``).
- alert_latency: red detection -> first SMS at the carrier emulator through Kafka and a real worker,
  under 1,000 background detections/s, vs a bare Kafka round trip (tests/bench/latency.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def _rate(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` calls per second of ``fn`` called ``n`` times."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def bench_validate() -> dict[str, float]:
    from tocsin.ingest.validate import validate_telemetry

    now = datetime.now(UTC)
    topic = "tocsin/v1/hydro/s1/RG01/telemetry"
    payload = json.dumps(
        {
            "type": "hydro.rain",
            "device_id": "RG01",
            "site": "s1",
            "ts": now.isoformat(),
            "seq": 1,
            "rain_mm": 1.5,
            "interval_s": 60,
        }
    ).encode()
    ours = _rate(lambda: validate_telemetry(topic, payload, now), 20_000)
    ref = _rate(lambda: json.loads(payload), 20_000)
    return {"ours_per_s": ours, "reference_per_s": ref, "ratio": ours / ref}


def bench_sta_lta() -> dict[str, float]:
    from tocsin.detectors.kernels.seismic import RecursiveStaLta, _recursive_sta_lta_reference

    rng = np.random.default_rng(1)
    packets = [rng.normal(0, 1e-5, 100) for _ in range(200)]
    det = RecursiveStaLta(50, 1000)

    def ours() -> None:
        for p in packets:
            det.process(p)

    def ref() -> None:
        for p in packets:
            _recursive_sta_lta_reference(p, 50, 1000)

    o, r = _rate(ours, 5) * 200, _rate(ref, 5) * 200
    return {"ours_packets_per_s": o, "reference_packets_per_s": r, "ratio": o / r}


def bench_station_trigger() -> dict[str, float]:
    from tocsin.detectors.kernels.seismic import StationTrigger

    rng = np.random.default_rng(2)
    packets = [rng.normal(0, 1e-5, 100) for _ in range(200)]
    encoded = [json.dumps({"samples": p.tolist()}) for p in packets]
    trig = StationTrigger()

    def ours() -> None:
        for i, p in enumerate(packets):
            trig.process(p, 100.0, float(i))

    def ref() -> None:
        for e in encoded:
            json.loads(e)

    o, r = _rate(ours, 5) * 200, _rate(ref, 5) * 200
    return {"ours_packets_per_s": o, "reference_packets_per_s": r, "ratio": o / r}


def bench_detector_engine() -> dict[str, float]:
    from tests.bench.engine import bench_detector_engine as per_family

    return per_family()


def bench_console_devices() -> dict[str, float]:
    """The console's device-state model (alerts/console/devices.py) as the operator API feeds it from
    every telemetry record: records/s of a single reading and of a batch record of 11 readings vs
    ``json.loads`` of the same bytes, and one snapshot of 10,000 registered devices (ms, the cost of
    a console refresh or a /metrics scrape)."""
    from tocsin.alerts.console.devices import DeviceHealthModel
    from tocsin.schemas.batch import pack
    from tocsin.schemas.common import Family
    from tocsin.schemas.registry import Area, Device, Registry

    n_dev = 10_000
    area = Area(code="330110")
    registry = Registry(
        devices=[
            Device(device_id=f"D{i:05d}", family=Family.HYDRO, site="s1", lat=30.0, lon=120.0, area=area)
            for i in range(n_dev)
        ]
    )
    t = [1_780_000_000.0]
    model = DeviceHealthModel(registry, clock=lambda: t[0])

    def one(i: int) -> bytes:
        return json.dumps(
            {
                "type": "hydro.rain",
                "device_id": f"D{i:05d}",
                "site": "s1",
                "ts": "2026-07-01T08:00:00+00:00",
                "seq": i,
                "rain_mm": 0.5,
                "interval_s": 60,
            }
        ).encode()

    single = one(42)
    batch = pack([one(i) for i in range(11)])
    topic = "telemetry.hydro"
    single_rate = _rate(lambda: model.apply_record(topic, b"D00042", single, t[0]), 20_000)
    loads_rate = _rate(lambda: json.loads(single), 20_000)
    batch_rate = _rate(lambda: model.apply_record(topic, b"D00000", batch, t[0]), 5_000)
    batch_loads_rate = _rate(lambda: [json.loads(x) for x in batch.split(b"\n")[1:-1]], 5_000)
    for i in range(0, n_dev, 2):
        model.reading(f"D{i:05d}", t[0])
    t[0] += 300
    snap_s = min(_timed(model.snapshot) for _ in range(5))
    return {
        "single_records_per_s": single_rate,
        "single_vs_json_loads": single_rate / loads_rate,
        "batch11_records_per_s": batch_rate,
        "batch11_vs_json_loads": batch_rate / batch_loads_rate,
        "snapshot_10k_devices_ms": snap_s * 1000,
    }


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


BENCHES = {
    "validate": bench_validate,
    "sta_lta": bench_sta_lta,
    "station_trigger": bench_station_trigger,
    "detector_engine": bench_detector_engine,
    "console_devices": bench_console_devices,
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="var/bench")
    ap.add_argument("--gateway-readings", type=int, default=None, help="readings of the gateway bench (100,000)")
    ap.add_argument("--worker-readings", type=int, default=None, help="readings of the worker bench (60,000)")
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()
    if args.worker_readings:
        os.environ["TOCSIN_BENCH_WORKER_READINGS"] = str(args.worker_readings)
    if args.gateway_readings:
        os.environ["TOCSIN_BENCH_GW_READINGS"] = str(args.gateway_readings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "when": datetime.now(UTC).isoformat(),
    }
    for name, fn in BENCHES.items():
        if args.only and name not in args.only:
            continue
        results[name] = {k: round(v, 3) for k, v in fn().items()}
        print(f"{name:16s} {json.dumps(results[name])}", flush=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"wrote {path}")
    return 0


def bench_sms_dispatch() -> dict[str, float]:
    """SMS dispatch rate through the priority rate limiter against the carrier emulator's own limit
    (both 100/s): achieved / configured. The carrier refuses anything faster (429)."""
    import asyncio

    from tocsin.alerts.adapters.base import Notification, send_with_retries
    from tocsin.alerts.adapters.sms import SmsAdapter
    from tocsin.alerts.ratelimit import PriorityRateLimiter, RateLimited
    from tocsin.simulators.sms_gateway import GatewayConfig, SmsGatewayThread

    limit, n = 100.0, 600
    server = SmsGatewayThread(GatewayConfig(api_key="bench", rate_limit_per_s=limit, receipt_delay_s=0.0))
    url = server.start()

    async def main() -> tuple[float, int]:
        adapter = RateLimited(SmsAdapter(url, "bench"), PriorityRateLimiter(limit, burst=2))
        await adapter.start()
        notes = [
            Notification(
                alert_id="A",
                fingerprint="f",
                revision=0,
                channel="sms",
                recipients=[f"+861380000{i:04d}"],
                text="测试",
                priority=1 + i % 4,
                idempotency_key="A",
            )
            for i in range(n)
        ]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(send_with_retries(adapter, x, base_delay_s=0.05) for x in notes))
        elapsed = time.perf_counter() - t0
        await adapter.stop()
        return elapsed, sum(len(r) - 1 for r in results)

    try:
        elapsed, retries = asyncio.run(main())
    finally:
        server.stop()
    achieved = n / elapsed
    return {"configured_per_s": limit, "achieved_per_s": achieved, "ratio": achieved / limit, "retries": retries}


BENCHES["sms_dispatch"] = bench_sms_dispatch
from tests.bench.fleet import bench_fleet  # noqa: E402 (MQTT fleet publisher vs bare paho)

BENCHES["fleet"] = bench_fleet
from tests.bench.latency import bench_alert_latency  # noqa: E402 (red alert latency on the real stack)

BENCHES["alert_latency"] = bench_alert_latency
from tests.bench.gateway import bench_gateway, bench_influx_sink  # noqa: E402 (real stack)

BENCHES["gateway"] = bench_gateway
from tests.bench.scaleout import bench_scaleout  # noqa: E402 (real Kafka, 1-3 workers)

BENCHES["scaleout"] = bench_scaleout
BENCHES["influx_sink"] = bench_influx_sink
from tests.bench.worker import bench_worker  # noqa: E402 (real stack: one worker draining mixed telemetry)

BENCHES["worker"] = bench_worker
from tests.bench.changelog import bench_changelog_hold  # noqa: E402 (the changelog hold's own CPU)

BENCHES["changelog_hold"] = bench_changelog_hold
from tests.bench.quake_location import bench_quake_location  # noqa: E402 (simulated quakes, in process)

BENCHES["quake_location"] = bench_quake_location
from tests.bench.console import bench_console_follower  # noqa: E402 (real Kafka: the API's device-state feed)

BENCHES["console_follower"] = bench_console_follower


if __name__ == "__main__":
    raise SystemExit(main())
