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
from typing import TYPE_CHECKING, Any

from tocsin.schemas.transport import mqtt_tls_context
from tocsin.settings import Settings

if TYPE_CHECKING:
    from tocsin.ingest.validate import Limits

REPO = Path(__file__).resolve().parents[1]
SERVICES_SH = REPO / "deploy" / "local" / "services.sh"


class CommandError(Exception):
    """An expected error of a command (bad input, a missing file): one line on stderr, exit 2."""


def _out_file(path: str) -> Path:
    """An output file whose folder exists (created when missing); an impossible path is a CommandError."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the folder of {p}: {exc.strerror or exc}") from exc
    if p.is_dir():
        raise CommandError(f"{p} is a folder, not a file")
    return p


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Options with their defaults; the epilog (the environment settings read) as written."""


class _Parser(argparse.ArgumentParser):
    """Every (sub)command parser: defaults shown in the help; a usage error exits 2 with one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


_MQTT_CLIENT = (
    "mqtt_host",
    "mqtt_port",
    "mqtt_username",
    "mqtt_password",
    "mqtt_tls_ca",
    "mqtt_tls_cert",
    "mqtt_tls_key",
)
_GATEWAY = (
    *_MQTT_CLIENT,
    "mqtt_client_id",
    "mqtt_share_group",
    "mqtt_session_expiry_s",
    "kafka_bootstrap",
    "kafka_partitions",
    "kafka_max_in_flight",
    "influx_url",
    "influx_token",
    "influx_org",
    "influx_bucket",
    "registry_file",
    "max_payload_bytes",
    "max_future_skew_s",
    "max_age_s",
    "dedup_window",
    "metrics_port",
    "bind_host",
    "log_level",
    "log_format",
    "dev",
)


def _env_epilog(names: tuple[str, ...] | None) -> str:
    """The environment settings a command reads (tocsin/settings.py), with their defaults; None: every one."""
    fields = Settings.model_fields
    chosen = list(fields) if names is None else [n for n in names if n in fields]
    lines = ["environment settings read (tocsin/settings.py, docs/settings.md):"]
    for name in chosen:
        f = fields[name]
        default = "" if f.is_required() else f.default
        shown = "(secret)" if "Secret" in type(default).__name__ else repr(default)
        lines.append(f"  TOCSIN_{name.upper():34s} {shown:>14s}  {f.description or ''}")
    return "\n".join(lines)


def _logging(level: str, fmt: str = "text", role: str = "") -> None:
    from tocsin.logs import setup_logging

    setup_logging(level, fmt, role)


# --------------------------------------------------------------------------- run (embedded)
def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return asyncio.run(_run_embedded(args))


async def _run_embedded(args: argparse.Namespace) -> int:
    from tocsin.alerts.engine import AlertConfig
    from tocsin.embedded import EmbeddedPipeline, free_port
    from tocsin.schemas.alert import AlertStatus
    from tocsin.simulators.demo import DISTRICT, DISTRICT_NAME, demo_messages, demo_registry
    from tocsin.simulators.downstream import EmulatedDownstream
    from tocsin.simulators.run import publish_messages

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
    downstream = EmulatedDownstream()
    pipeline = EmbeddedPipeline(
        registry, mqtt_port=port, alert_config=AlertConfig(status=status), on_alert=on_alert, downstream=downstream
    )
    await pipeline.start()
    console = None
    if not args.no_console:
        from tocsin.console_demo import start_console

        console = await start_console(pipeline, free_port(args.console_port))
    messages = demo_messages()
    span_min = (messages[-1].t - messages[0].t).total_seconds() / 60
    print(f"Tocsin embedded demo: {DISTRICT_NAME} ({DISTRICT}), CAP status {status.value}", flush=True)
    print(f"  MQTT broker   mqtt://127.0.0.1:{port}  (devices publish tocsin/v1/<family>/<site>/<device>/telemetry)")
    print(f"  SMS emulator  {downstream.sms_server.base_url}")
    if console is not None:
        print(f"  Console       {console.url}  (login {console.user} / {console.password}; docs/console.md)")
    print(
        f"Replaying {len(messages)} device messages ({span_min:.0f} min of device time at {args.speed:g}x) ...",
        flush=True,
    )
    published = await asyncio.to_thread(publish_messages, messages, "127.0.0.1", port, speed=args.speed)
    await pipeline.bus.idle(settle_s=1.0, timeout_s=60)
    # at a terminal the console stays open after the replay, so a newcomer can look around
    if args.keep_running or (console is not None and sys.stdin.isatty()):
        where = f"; console at {console.url}" if console is not None else ""
        print(f"Demo done; broker still running for your devices{where}. Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    stats = downstream.sms_stats()
    if console is not None:
        await console.stop()
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
def gateway_limits(s: Settings) -> Limits:
    """The gateway's input limits from the settings, each by name (Limits has more fields than the
    settings name: a positional call once put the age limit into the future-skew slot)."""
    from tocsin.ingest.validate import Limits

    return Limits(max_payload_bytes=s.max_payload_bytes, max_future_skew_s=s.max_future_skew_s, max_age_s=s.max_age_s)


def cmd_gateway(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from tocsin.ingest.gateway import GatewayCore, MqttGateway, tune_gc_for_throughput
    from tocsin.ingest.influx import InfluxHttpWriter, InfluxKafkaSink
    from tocsin.ingest.metrics import GatewayMetrics, HealthServer
    from tocsin.kafka import RdKafkaSink, ensure_topics, influx_consumer
    from tocsin.logs import register_client_metrics
    from tocsin.schemas import topics
    from tocsin.schemas.registry import open_registry

    s = Settings()
    _logging(s.log_level, s.log_format, "gateway")
    _refuse_dev_secrets(s)
    log = logging.getLogger("tocsin.gateway")
    registry = open_registry(s.registry_file, on_error=lambda e: log.error("registry not reloaded: %s", e))
    reg = CollectorRegistry()
    register_client_metrics(reg)  # the client libraries' connection state (tocsin/logs.py)
    metrics = GatewayMetrics(reg)
    ensure_topics(s.kafka_bootstrap, topics.ALL_KAFKA_TOPICS, s.kafka_partitions)
    stop = threading.Event()
    sink_thread = None
    if s.influx_url:
        writer = InfluxHttpWriter(s.influx_url, s.influx_token.get_secret_value(), s.influx_org, s.influx_bucket)
        influx = InfluxKafkaSink(influx_consumer(s.kafka_bootstrap), writer, metrics, registry)
        sink_thread = threading.Thread(target=influx.run, args=(stop,), name="influx-sink", daemon=True)
    kafka = RdKafkaSink(s.kafka_bootstrap, client_id=s.mqtt_client_id)
    core = GatewayCore(
        kafka,
        metrics,
        limits=gateway_limits(s),
        registry=registry,
        max_in_flight=s.kafka_max_in_flight,
        dedup_window=s.dedup_window,
        batch_readings=s.kafka_batch_readings,
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
        tls=mqtt_tls_context(s),
    )
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if registry is not None:
        signal.signal(signal.SIGHUP, lambda *_: log.info("registry reloaded: %s", registry.reload()))

    def live() -> tuple[bool, dict[str, Any]]:
        return gw.alive() and not stop.is_set(), {"mqtt_loop": gw.alive()}

    def ready() -> tuple[bool, dict[str, Any]]:
        mqtt_ok, kafka_ok = gw.ready(), kafka.usable()
        return mqtt_ok and kafka_ok and not stop.is_set(), {"mqtt_connected": mqtt_ok, "kafka": kafka_ok}

    health = None
    if s.metrics_port:
        health = HealthServer(reg, live=live, ready=ready, host=s.bind_host, port=s.metrics_port).start()
    tune_gc_for_throughput()
    gw.start()
    if sink_thread:
        sink_thread.start()
    log.info("gateway started: mqtt %s:%s -> kafka %s", s.mqtt_host, s.mqtt_port, s.kafka_bootstrap)
    stop.wait()
    drained = gw.stop(30.0)
    kafka.close()
    if sink_thread:
        sink_thread.join(15)
    if health is not None:
        health.stop()
    log.info("gateway stopped (drained=%s)", drained)
    return 0 if drained else 1


# --------------------------------------------------------------------------- worker (Faust)
def cmd_worker(args: argparse.Namespace) -> int:
    from tocsin.worker import run_worker

    sys.argv = [sys.argv[0], "worker"]
    settings = Settings()
    _refuse_dev_secrets(settings)
    run_worker(settings)
    return 0


def _refuse_dev_secrets(settings: Settings) -> None:
    from tocsin.settings import UnsafeSecret, refuse_dev_secrets

    try:
        refuse_dev_secrets(settings)
    except UnsafeSecret as e:
        raise SystemExit(f"not started: {e}") from None


def cmd_users(args: argparse.Namespace) -> int:
    from tocsin.users import main as users_main

    return users_main(args)


# --------------------------------------------------------------------------- simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    """``tocsin simulate`` without a subcommand: publish the demo (the original behaviour)."""
    from tocsin.simulators.demo import demo_messages
    from tocsin.simulators.run import publish_messages

    s = Settings()
    n = publish_messages(demo_messages(), s.mqtt_host, s.mqtt_port, speed=getattr(args, "speed", None) or 120.0)
    print(f"published {n} demo device messages to mqtt://{s.mqtt_host}:{s.mqtt_port}")
    return 0


def cmd_simulate_list(args: argparse.Namespace) -> int:
    from tocsin.simulators.scenario_spec import load_scenario, scenario_paths

    for path in scenario_paths():
        sc = load_scenario(path)
        print(f"{path.stem:22s} {sc.description}")
    return 0


def cmd_simulate_build(args: argparse.Namespace) -> int:
    from datetime import datetime

    from tocsin.simulators.run import resolve_scenario
    from tocsin.simulators.scenario import build, write_outputs
    from tocsin.simulators.scenario_spec import load_scenario

    try:
        sc = load_scenario(resolve_scenario(args.scenario))
        start = datetime.fromisoformat(args.start) if args.start else None
        registry, messages, truth = build(sc, start=start)
    except (OSError, ValueError) as exc:
        print(f"simulate build: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(args.out, registry, messages, truth)
    print(
        f"{sc.name}: {len(messages)} messages, {len(truth.hazards)} hazards -> " + ", ".join(map(str, paths.values()))
    )
    return 0


def cmd_simulate_publish(args: argparse.Namespace) -> int:
    if args.scenario == "demo":
        return cmd_simulate(args)
    from tocsin.simulators.run import plan_scenario, publish_paced

    s = Settings()
    try:
        plan = plan_scenario(args.scenario, speed=getattr(args, "speed", None))
    except (OSError, ValueError) as exc:
        print(f"simulate publish: {exc}", file=sys.stderr)
        return 2
    _registry, messages, truth, offsets = plan.build()
    print(
        f"publishing {len(messages)} messages of {truth.scenario} at {plan.speed:g}x "
        f"(about {offsets[-1] if offsets else 0:.0f} s) to mqtt://{s.mqtt_host}:{s.mqtt_port}",
        flush=True,
    )
    n = publish_paced(messages, offsets, s.mqtt_host, s.mqtt_port)
    print(f"published {n}/{len(messages)} messages")
    return 0 if n == len(messages) else 1


def cmd_simulate_run(args: argparse.Namespace) -> int:
    """Every scenario named (``all``: the shipped ones) through the embedded pipeline, scored.
    Exit 1 when a hazard was missed, or a scenario without hazards raised any alert."""
    from tocsin.simulators.run import print_result, run_scenario
    from tocsin.simulators.scenario_spec import scenario_paths

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "aiohttp.access", "tocsin.embedded", "tocsin.ingest.gateway"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    names = [p.stem for p in scenario_paths()] if args.scenarios == ["all"] else args.scenarios
    failed = []
    for name in names:
        started = time.monotonic()

        def on_start(truth: Any, speed: float, wall_s: float) -> None:
            print(f"== {truth.scenario}: {truth.messages} messages at {speed:g}x, about {wall_s:.0f} s", flush=True)

        def on_alert(o: Any, started: float = started) -> None:
            a = o.alert
            print(
                f"[{time.monotonic() - started:5.1f}s] sim {o.sim_time:%H:%M:%S}Z {a.msg_type.value.upper():6s} "
                f"{a.hazard.value:7s} {a.level.value:6s}({a.level.roman:>3s}) {a.headline}",
                flush=True,
            )

        def on_progress(p: Any, started: float = started) -> None:
            print(f"[{time.monotonic() - started:5.1f}s] {p.line()}", flush=True)

        out = Path(args.out) / name if args.out else None
        try:
            result = asyncio.run(
                run_scenario(
                    name,
                    speed=getattr(args, "speed", None),
                    seismic_speed=args.seismic_speed,
                    out_dir=out,
                    on_alert=on_alert,
                    on_start=on_start,
                    on_progress=on_progress,
                    progress_every_s=args.progress_every,
                )
            )
        except (OSError, ValueError) as exc:
            print(f"simulate run {name}: {exc}", file=sys.stderr)
            return 2
        print_result(result)
        if out is not None:
            print(f"  wrote {out}/alerts.jsonl, score.json, ground_truth.json, run.json")
        sc = result.score
        if sc.missed or (not result.truth.hazards and sc.false_positives):
            failed.append(name)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_simulate_score(args: argparse.Namespace) -> int:
    from tocsin.schemas.scenario import GroundTruth
    from tocsin.simulators.run import read_alerts_jsonl
    from tocsin.simulators.score import format_table, score

    try:
        truth = GroundTruth.model_validate_json(Path(args.truth).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"simulate score: {args.truth}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        alerts = read_alerts_jsonl(Path(args.alerts).read_text(encoding="utf-8"), source=args.alerts)
    except OSError as exc:
        print(f"simulate score: {args.alerts}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"simulate score: {exc}", file=sys.stderr)
        return 2
    result = score(truth, alerts, tolerance_s=args.tolerance, grace_s=args.grace)
    print(format_table(result))
    if args.json:
        _out_file(args.json).write_text(result.model_dump_json(indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    if result.missed or (not truth.hazards and result.false_positives):
        print(
            f"simulate score: {result.missed} hazards MISSED, {result.false_positives} false positives", file=sys.stderr
        )
        return 1
    return 0


def cmd_mqtt_auth(args: argparse.Namespace) -> int:
    from tocsin.mqtt_auth import MqttAuthError, ServiceUsers, write_auth
    from tocsin.schemas.registry import load_registry

    fixed: dict[str, str] = {}
    for spec in args.password_from_env:
        user, _, var = spec.partition("=")
        if not user or not os.environ.get(var):
            print(f"mqtt-auth: --password-from-env {spec!r}: need USER=VAR with VAR set and non-empty", file=sys.stderr)
            return 2
        fixed[user] = os.environ[var]
    try:
        counts = write_auth(
            load_registry(args.registry),
            Path(args.credentials),
            Path(args.acl),
            Path(args.passwd),
            ServiceUsers(args.gateway_user, args.worker_user, args.operator_user),
            fixed,
        )
    except (MqttAuthError, ValueError, OSError) as exc:
        print(f"mqtt-auth: {exc}", file=sys.stderr)
        return 2
    print(
        f"mqtt-auth: {counts['users']} users ({counts['devices']} devices, {counts['new']} new, "
        f"{counts['dropped']} dropped) -> {args.acl}, {args.passwd}"
    )
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from tocsin.simulators.demo import demo_registry

    _out_file(args.out).write_text(demo_registry().model_dump_json(indent=2), encoding="utf-8")
    print(f"wrote the demo district registry to {args.out}")
    return 0


# --------------------------------------------------------------------------- backtest
def cmd_backtest(args: argparse.Namespace) -> int:
    import json

    from tocsin.backtest import BacktestError, run

    params = {}
    for kv in args.param:
        if "=" not in kv:
            print(f"--param needs k=v, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        params[k.strip()] = v.strip()
    if args.sensitivity is not None:
        if args.detector != "seismic" or not args.sensitivity > 0:
            print("backtest: --sensitivity (counts per m/s, > 0) is for --detector seismic", file=sys.stderr)
            return 2
        params["counts_per_m_s"] = repr(args.sensitivity)
    if not Path(args.input).is_file():
        print(f"backtest: {args.input}: no such file", file=sys.stderr)
        return 2
    out = open(_out_file(args.out), "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    n = 0
    try:
        for record in run(args.detector, Path(args.input), params):
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            n += record.get("type") == "detection"
    except (BacktestError, OSError, ValueError) as exc:
        print(f"backtest: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        if args.out:
            out.close()
    print(f"{n} detections", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- replay and fleet
def cmd_replay(args: argparse.Namespace) -> int:
    import json

    from tocsin.simulators.replay import CsvDefaults, ReplayError, main_replay

    s = Settings()
    if args.speed is not None and args.speed <= 0:
        print("--speed must be > 0", file=sys.stderr)
        return 2
    defaults = CsvDefaults(
        device_id=args.device, site=args.site, kind=args.kind, gas=args.gas, unit=args.unit, interval_s=args.interval
    )
    try:
        result = main_replay(
            [Path(f) for f in args.files],
            host=s.mqtt_host,
            port=s.mqtt_port,
            fmt=args.format,
            speed=None if args.fast else args.speed,
            rebase_now=args.rebase or args.rebase_end,
            rebase_anchor="last" if args.rebase_end else "first",
            csv_defaults=defaults,
            mseed_as=args.mseed_as,
            show_progress=True if args.progress else None,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value(),
            tls=mqtt_tls_context(s),
        )
    except (ReplayError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict()))
    return 0 if result.acked == result.messages else 1


def cmd_fleet(args: argparse.Namespace) -> int:
    import json

    from tocsin.simulators.fleet import FleetConfig, run_fleet

    s = Settings()
    shares = None
    try:
        if args.mix:
            shares = {k.strip(): float(v) for k, v in (kv.split("=", 1) for kv in args.mix.split(","))}
    except ValueError:
        print(f"--mix needs kind=share,..., got {args.mix!r}", file=sys.stderr)
        return 2
    cfg = FleetConfig(
        devices=args.devices,
        duration_s=args.duration,
        rate_multiplier=args.rate_multiplier,
        max_mode=args.max,
        connections=args.connections,
        window=args.window,
        shares=shares,
        prefix=args.prefix,
        root=args.topic_root,
        clear_retained=args.clear_retained,
    )
    try:
        report, _ = run_fleet(
            cfg,
            s.mqtt_host,
            s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value(),
            tls=mqtt_tls_context(s),
        )
    except (ValueError, OSError, TimeoutError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0 if report["acked"] == report["published"] else 1


# --------------------------------------------------------------------------- services
def cmd_services(args: argparse.Namespace) -> int:
    if not SERVICES_SH.exists():
        print(f"missing {SERVICES_SH}", file=sys.stderr)
        return 2
    return subprocess.call(["bash", str(SERVICES_SH), args.action, *args.names], env=os.environ.copy())


def cmd_sms_gateway(args: argparse.Namespace) -> int:
    from tocsin.simulators import sms_gateway

    return int(sms_gateway.main(args.rest) or 0)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tocsin")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tocsin", description="Tocsin early-warning backend")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    r.add_argument("--console-port", type=int, default=8790, help="the console's port (a free one if taken)")
    r.add_argument("--no-console", action="store_true", help="do not serve the operator API and console")
    r.set_defaults(func=cmd_run)

    sub.add_parser(
        "gateway",
        help="MQTT -> Kafka gateway (TOCSIN_* settings)",
        description="Subscribe to the devices' MQTT topics, validate, and produce to Kafka.",
        epilog=_env_epilog(_GATEWAY),
    ).set_defaults(func=cmd_gateway)
    sub.add_parser(
        "worker",
        help="Faust worker: detectors, alerts, delivery",
        description="Detectors, confirmation, alert lifecycle and delivery over Kafka.",
        epilog=_env_epilog(None),
    ).set_defaults(func=cmd_worker)

    sm = sub.add_parser(
        "simulate",
        help="scenarios: list, build, publish, run (embedded, scored), score; alone: publish the demo",
        epilog=_env_epilog(_MQTT_CLIENT),
    )
    # no default here: the subcommands' --speed falls back to the scenario's hint, the demo's to 120
    sm.add_argument(
        "--speed",
        type=float,
        default=argparse.SUPPRESS,
        help="without a subcommand: the demo's speed (120 if not given)",
    )
    sm.set_defaults(func=cmd_simulate)
    smsub = sm.add_subparsers(dest="simulate_command")
    smsub.add_parser("list", help="the shipped scenarios").set_defaults(func=cmd_simulate_list)
    sb = smsub.add_parser("build", help="write registry, messages.jsonl, ground_truth.json of a scenario")
    sb.add_argument("scenario", help="a name from simulators/scenarios or a YAML path")
    sb.add_argument("--out", required=True, help="output folder (created when missing)")
    sb.add_argument("--start", help="ISO 8601 start with offset (default: the scenario's, else ending now)")
    sb.set_defaults(func=cmd_simulate_build)
    sp = smsub.add_parser(
        "publish",
        help="publish a scenario (or demo) to TOCSIN_MQTT_HOST:PORT, ending now",
        epilog=_env_epilog(_MQTT_CLIENT),
    )
    sp.add_argument("scenario", help="a scenario name or YAML path, or demo")
    sp.add_argument("--speed", type=float, default=argparse.SUPPRESS, help="default: the scenario's hint")
    sp.set_defaults(func=cmd_simulate_publish)
    sr = smsub.add_parser("run", help="run scenarios through the embedded pipeline and score them")
    sr.add_argument("scenarios", nargs="+", help="names or YAML paths; all: every shipped scenario")
    sr.add_argument("--out", help="write <out>/<scenario>/alerts.jsonl, score.json ...")
    sr.add_argument("--speed", type=float, default=argparse.SUPPRESS, help="default: the scenario's hint")
    sr.add_argument("--seismic-speed", type=float, default=1.0, help="speed around earthquakes (1: real time)")
    sr.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        help="seconds of wall time between progress lines (device time, published, detections, alerts); 0: none",
    )
    sr.set_defaults(func=cmd_simulate_run)
    ss = smsub.add_parser("score", help="score alerts (JSONL) against a ground truth")
    ss.add_argument("--truth", required=True, help="ground_truth.json")
    ss.add_argument("--alerts", required=True, help="JSONL of ObservedAlert or bare Alert (Kafka alerts)")
    ss.add_argument("--json", help="write the score as JSON here (its folder is created when missing)")
    ss.add_argument("--tolerance", type=float, default=60.0, help="s before detectable_from still matched")
    ss.add_argument("--grace", type=float, default=1800.0, help="s after a hazard's end still matched")
    ss.set_defaults(func=cmd_simulate_score)

    rg = sub.add_parser("demo-registry", help="write the demo district's device registry (JSON)")
    rg.add_argument("out", help="JSON file to write (its folder is created when missing)")
    rg.set_defaults(func=cmd_registry)

    ma = sub.add_parser(
        "mqtt-auth", help="Mosquitto password file and ACL from the device registry (one user per device)"
    )
    ma.add_argument("--registry", required=True, help="device registry (YAML/JSON)")
    ma.add_argument("--credentials", required=True, help="credentials file (JSON user -> password, kept, 0600)")
    ma.add_argument("--acl", required=True, help="ACL file to write")
    ma.add_argument("--passwd", required=True, help="Mosquitto password file to write (hashes)")
    for role in ("gateway", "worker", "operator"):
        ma.add_argument(f"--{role}-user", default=role, help=f"MQTT user of the {role}")
    ma.add_argument(
        "--password-from-env",
        action="append",
        default=[],
        metavar="USER=VAR",
        help="take USER's password from environment variable VAR (say a service's secret); repeatable",
    )
    ma.set_defaults(func=cmd_mqtt_auth)

    bt = sub.add_parser("backtest", help="run a detector offline over a recorded series; JSONL out")
    bt.add_argument("--detector", required=True, help="rainfall, water_level, gas, fire, seismic, threshold, anomaly")
    bt.add_argument("--input", required=True, help="CSV (timestamp,value), JSONL or miniSEED")
    bt.add_argument(
        "--param", action="append", default=[], help="k=v detector parameter (repeatable; unknown keys are refused)"
    )
    bt.add_argument(
        "--sensitivity",
        type=float,
        help="seismic: station sensitivity in counts per m/s, for miniSEED in counts (registry counts_per_m_s)",
    )
    bt.add_argument("--out", help="output file (its folder is created when missing; default stdout)")
    bt.set_defaults(func=cmd_backtest)

    rp = sub.add_parser(
        "replay",
        help="publish recorded feeds (JSONL, CSV, miniSEED) to TOCSIN_MQTT_*",
        epilog=_env_epilog(_MQTT_CLIENT),
    )
    rp.add_argument("files", nargs="+", help="recorded files")
    rp.add_argument(
        "--format", choices=["auto", "jsonl", "csv", "mseed"], default="auto", help="input format (auto: by suffix)"
    )
    pace = rp.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="N times real time")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker acknowledges")
    rebasing = rp.add_mutually_exclusive_group()
    rebasing.add_argument("--rebase", action="store_true", help="shift timestamps so the first message is now")
    rebasing.add_argument("--rebase-end", action="store_true", help="shift timestamps so the last message is now")
    rp.add_argument("--device", help="device id (CSV; miniSEED default: station code)")
    rp.add_argument("--site", help="site (CSV; miniSEED default: network code)")
    rp.add_argument("--kind", choices=["rain_mm", "level_m", "gas"], help="what a CSV value is")
    rp.add_argument("--gas", default="CH4", help="CSV gas name")
    rp.add_argument("--unit", default="%LEL", help="CSV gas unit")
    rp.add_argument("--interval", type=float, default=300.0, help="CSV rain: first row's interval_s")
    rp.add_argument("--mseed-as", choices=["raw", "json"], default="raw", help="miniSEED records as is, or JSON")
    rp.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a TTY")
    rp.set_defaults(func=cmd_replay)

    fl = sub.add_parser(
        "fleet", help="simulate N devices from one process; JSON report of messages/s", epilog=_env_epilog(_MQTT_CLIENT)
    )
    fl.add_argument("--devices", type=int, default=10_000, help="simulated devices")
    fl.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    fl.add_argument("--rate-multiplier", type=float, default=1.0, help="divides every report interval")
    fl.add_argument("--max", action="store_true", help="publish as fast as the broker acknowledges")
    fl.add_argument("--connections", type=int, default=0, help="MQTT connections (0: one per device, fd limit)")
    fl.add_argument("--window", type=int, default=0, help="in-flight QoS 1 messages per connection (0: auto)")
    fl.add_argument("--mix", help="device shares, e.g. rain=0.35,level=0.25,gas=0.25,fire=0.14,seismic=0.01")
    fl.add_argument("--prefix", default="FLT", help="device id prefix")
    fl.add_argument("--topic-root", default="tocsin/v1", help="topic root (another root keeps gateways out)")
    fl.add_argument("--clear-retained", action="store_true", help="remove the retained statuses at the end")
    fl.set_defaults(func=cmd_fleet)

    sv = sub.add_parser("services", help="local real services: mosquitto, kafka, influxdb, prometheus")
    sv.add_argument("action", choices=["up", "down", "status", "provision"], help="what to do")
    sv.add_argument("names", nargs="*", help="services (default: all)")
    sv.set_defaults(func=cmd_services)

    from tocsin.users import add_parser as add_users_parser

    add_users_parser(sub, cmd_users)

    sg = sub.add_parser(
        "sms-gateway",
        help="run the SMS carrier emulator (see simulators/sms_gateway.py)",
        add_help=False,
    )
    sg.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    sg.set_defaults(func=cmd_sms_gateway)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sms-gateway"]:
        # its options (and --help) belong to the emulator's own parser
        return cmd_sms_gateway(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"tocsin {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tocsin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
