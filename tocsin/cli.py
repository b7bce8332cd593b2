"""The ``tocsin`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tocsin.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SERVICES_SH = REPO / "deploy" / "local" / "services.sh"


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# --------------------------------------------------------------------------- run (embedded)
def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return asyncio.run(_run_embedded(args))


async def _run_embedded(args: argparse.Namespace) -> int:
    from alerts.engine import AlertConfig
    from schemas.alert import AlertStatus
    from simulators.demo import DISTRICT, DISTRICT_NAME, demo_messages, demo_registry
    from tocsin.embedded import EmbeddedPipeline, free_port, publish_messages

    started = time.monotonic()
    port = free_port(args.mqtt_port)
    registry = demo_registry()

    def on_alert(alert: Any, records: list[Any]) -> None:
        outcomes: dict[str, list[str]] = {}
        for r in records:
            outcomes.setdefault(r.channel, []).append(r.outcome)
        sent = "  ".join(
            f"{ch} {sum(o in ('accepted', 'duplicate') for o in outs)}/{len(outs)}" for ch, outs in outcomes.items()
        )
        print(
            f"[{time.monotonic() - started:5.1f}s] {alert.msg_type.value.upper():6s} "
            f"{alert.hazard.value:7s} {alert.level.value:6s}({alert.level.roman:>3s}) "
            f"{alert.headline}  [{sent}]",
            flush=True,
        )

    status = AlertStatus(args.status)
    pipeline = EmbeddedPipeline(registry, mqtt_port=port, alert_config=AlertConfig(status=status), on_alert=on_alert)
    await pipeline.start()
    messages = demo_messages()
    span_min = (messages[-1].t - messages[0].t).total_seconds() / 60
    print(f"Tocsin embedded demo: {DISTRICT_NAME} ({DISTRICT}), CAP status {status.value}", flush=True)
    print(f"  MQTT broker   mqtt://127.0.0.1:{port}  (devices publish tocsin/v1/<family>/<site>/<device>/telemetry)")
    print(f"  SMS emulator  {pipeline.sms_server.base_url}")
    print(
        f"Replaying {len(messages)} device messages ({span_min:.0f} min of device time at {args.speed:g}x) ...",
        flush=True,
    )
    published = await asyncio.to_thread(publish_messages, messages, "127.0.0.1", port, speed=args.speed)
    await pipeline.bus.idle(settle_s=1.0, timeout_s=60)
    if args.keep_running:
        print("Demo done; broker still running for your devices. Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    stats = pipeline.sms_server_stats()
    await pipeline.stop()
    s = pipeline.summary
    print("\nSummary")
    print(f"  device messages published   {published}")
    print("  records per topic (telemetry.* includes the deadman's clock ticks)")
    for t in sorted(s.topic_counts):
        print(f"    {t:26s}{s.topic_counts[t]}")
    for d in s.dead_letters:
        print(f"  dead letter: {d.reason.value:18s} {d.mqtt_topic}: {d.message}")
    by_hazard: dict[str, int] = {}
    for a in s.alerts:
        by_hazard[a.hazard.value] = by_hazard.get(a.hazard.value, 0) + 1
    print(f"  alert messages by hazard     {by_hazard}")
    print(f"  deliveries                   {dict(sorted((f'{c}:{o}', n) for (c, o), n in s.deliveries.items()))}")
    print(
        f"  SMS carrier stored           {stats.get('stored')} messages ({stats.get('duplicates')} duplicates refused)"
    )
    print(f"  wall time                    {time.monotonic() - started:.1f} s")
    missing = {"hydro", "hazmat", "fire", "seismic"} - set(by_hazard)
    if missing:
        print(f"  NOT DETECTED: {sorted(missing)}", flush=True)
        return 1
    return 0


# --------------------------------------------------------------------------- gateway (Kafka)
def cmd_gateway(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from ingest.gateway import GatewayCore, MqttGateway
    from ingest.influx import InfluxHttpWriter, InfluxKafkaSink
    from ingest.metrics import GatewayMetrics
    from ingest.sinks import KafkaSink, ensure_topics
    from ingest.validate import Limits
    from schemas import topics
    from schemas.registry import open_registry

    s = Settings()
    _logging(s.log_level)
    log = logging.getLogger("tocsin.gateway")
    registry = open_registry(s.registry_file, on_error=lambda e: log.error("registry not reloaded: %s", e))
    reg = CollectorRegistry()
    metrics = GatewayMetrics(reg)
    if s.metrics_port:
        start_http_server(s.metrics_port, addr="127.0.0.1", registry=reg)
    ensure_topics(s.kafka_bootstrap, topics.ALL_KAFKA_TOPICS, s.kafka_partitions)
    stop = threading.Event()
    sink_thread = None
    if s.influx_url:
        writer = InfluxHttpWriter(s.influx_url, s.influx_token.get_secret_value(), s.influx_org, s.influx_bucket)
        influx = InfluxKafkaSink.connect(s.kafka_bootstrap, writer, metrics, registry)
        sink_thread = threading.Thread(target=influx.run, args=(stop,), name="influx-sink", daemon=True)
    kafka = KafkaSink(s.kafka_bootstrap, client_id=s.mqtt_client_id)
    core = GatewayCore(
        kafka,
        metrics,
        limits=Limits(s.max_payload_bytes, s.max_future_skew_s, s.max_age_s),
        registry=registry,
        max_in_flight=s.kafka_max_in_flight,
        dedup_window=s.dedup_window,
    )
    gw = MqttGateway(
        core,
        host=s.mqtt_host,
        port=s.mqtt_port,
        client_id=s.mqtt_client_id,
        username=s.mqtt_username,
        password=s.mqtt_password.get_secret_value(),
        share_group=s.mqtt_share_group,
        session_expiry_s=s.mqtt_session_expiry_s,
    )
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if registry is not None:
        signal.signal(signal.SIGHUP, lambda *_: log.info("registry reloaded: %s", registry.reload()))
    gw.start()
    if sink_thread:
        sink_thread.start()
    log.info("gateway started: mqtt %s:%s -> kafka %s", s.mqtt_host, s.mqtt_port, s.kafka_bootstrap)
    stop.wait()
    drained = gw.stop(30.0)
    kafka.close()
    if sink_thread:
        sink_thread.join(15)
    log.info("gateway stopped (drained=%s)", drained)
    return 0 if drained else 1


# --------------------------------------------------------------------------- worker (Faust)
def cmd_worker(args: argparse.Namespace) -> int:
    from tocsin.worker import run_worker

    sys.argv = [sys.argv[0], "worker"]
    run_worker(Settings())
    return 0


# --------------------------------------------------------------------------- simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.demo import demo_messages
    from tocsin.embedded import publish_messages

    s = Settings()
    n = publish_messages(demo_messages(), s.mqtt_host, s.mqtt_port, speed=args.speed)
    print(f"published {n} demo device messages to mqtt://{s.mqtt_host}:{s.mqtt_port}")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from simulators.demo import demo_registry

    Path(args.out).write_text(demo_registry().model_dump_json(indent=2), encoding="utf-8")
    print(f"wrote the demo district registry to {args.out}")
    return 0


# --------------------------------------------------------------------------- backtest
def cmd_backtest(args: argparse.Namespace) -> int:
    import json

    from detectors.backtest import BacktestError, run

    params = {}
    for kv in args.param:
        if "=" not in kv:
            print(f"--param needs k=v, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        params[k.strip()] = v.strip()
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    n = 0
    try:
        for record in run(args.detector, Path(args.input), params):
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            n += record.get("type") == "detection"
    except (BacktestError, OSError, ValueError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.out:
            out.close()
    print(f"{n} detections", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- services
def cmd_services(args: argparse.Namespace) -> int:
    if not SERVICES_SH.exists():
        print(f"missing {SERVICES_SH}", file=sys.stderr)
        return 2
    return subprocess.call(["bash", str(SERVICES_SH), args.action, *args.names], env=os.environ.copy())


def cmd_sms_gateway(args: argparse.Namespace) -> int:
    from simulators import sms_gateway

    return int(sms_gateway.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tocsin", description="Tocsin early-warning backend")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="embedded all-in-one demo: broker, gateway, detectors, alerts; no services")
    r.add_argument("--speed", type=float, default=120.0, help="device time compression of the demo")
    r.add_argument(
        "--mqtt-port",
        type=int,
        default=int(os.environ.get("TOCSIN_MQTT_PORT", "1883")),
        help="embedded broker port (a free one is used if taken)",
    )
    r.add_argument("--status", choices=["Actual", "Exercise", "Test"], default="Actual", help="CAP status")
    r.add_argument("--keep-running", action="store_true", help="keep the broker up after the demo")
    r.set_defaults(func=cmd_run)

    sub.add_parser("gateway", help="MQTT -> Kafka gateway (TOCSIN_* settings)").set_defaults(func=cmd_gateway)
    sub.add_parser("worker", help="Faust worker: detectors, alerts, delivery").set_defaults(func=cmd_worker)

    sm = sub.add_parser("simulate", help="publish the demo scenario's device messages to TOCSIN_MQTT_*")
    sm.add_argument("--speed", type=float, default=120.0)
    sm.set_defaults(func=cmd_simulate)

    rg = sub.add_parser("demo-registry", help="write the demo district's device registry (JSON)")
    rg.add_argument("out")
    rg.set_defaults(func=cmd_registry)

    bt = sub.add_parser("backtest", help="run a detector offline over a recorded series; JSONL out")
    bt.add_argument("--detector", required=True, help="rainfall, water_level, gas, fire, seismic, threshold, anomaly")
    bt.add_argument("--input", required=True, help="CSV (timestamp,value), JSONL or miniSEED")
    bt.add_argument("--param", action="append", default=[], help="k=v detector parameter (repeatable)")
    bt.add_argument("--out", help="output file (default stdout)")
    bt.set_defaults(func=cmd_backtest)

    sv = sub.add_parser("services", help="local real services: mosquitto, kafka, influxdb, prometheus")
    sv.add_argument("action", choices=["up", "down", "status", "provision"])
    sv.add_argument("names", nargs="*")
    sv.set_defaults(func=cmd_services)

    sg = sub.add_parser("sms-gateway", help="run the SMS carrier emulator (see simulators/sms_gateway.py)")
    sg.add_argument("rest", nargs=argparse.REMAINDER)
    sg.set_defaults(func=cmd_sms_gateway)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sms-gateway"] and not {"-h", "--help"} & set(argv[1:2]):
        # its options belong to the emulator's own parser
        return cmd_sms_gateway(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
