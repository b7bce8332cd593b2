"""Run a scenario end to end through the embedded pipeline (``tocsin simulate run``) and score it.

The scenario's device messages are published to the embedded MQTT broker (tocsin/embedded.py:
broker, gateway, detectors, alert lifecycle, delivery in one process) and every alert message the
pipeline emits is recorded with the *simulated* time it appeared at, then scored against the
scenario's ground truth (simulators/score.py).

Time. The replay is compressed: a gap of ``g`` seconds of device time between two consecutive
messages takes ``min(g / speed, max_gap_s)`` seconds of wall time (``pacing``). Around every
earthquake of the ground truth (from 20 s before it is detectable to 20 s after the S wave reaches
its farthest target) the replay runs at ``seismic_speed`` (1, real time) instead, so that the
warning times before the S wave mean something. The :class:`ReplayClock` maps the wall clock back
to device time: it knows which message the publisher is at and advances linearly at that gap's
pace, never past the next unpublished message nor the last one. An alert's ``sim_time`` is the
replay clock when the alert appeared on the in-process ``alerts`` topic, except that it is never
later than the device time of the reading that caused it (the alert's detection, seen on the
in-process ``detections`` topic) plus the wall time since that reading was published: compression
must not multiply the pipeline's latency (50 ms at 900x would be 45 s of device time). Around
earthquakes (real time) both are the same. A device whose clock is skewed shifts that second bound
by its skew; the replay clock still bounds it from above.

Device time is laid so that the last message's device time is the wall-clock time at which it is
published: no message is ever ahead of the wall clock (the gateway refuses readings more than
``TOCSIN_MAX_FUTURE_SKEW_S`` ahead), and the end of the scenario is "now". Earlier messages lag the
wall clock by up to the scenario's span, so, as in ``tocsin run``, the alert stage's detection-age
gate (``TOCSIN_ALERT_MAX_DETECTION_AGE_S``) is off in these runs: it exists to keep a *history*
replay from warning the public, and a compressed scenario is exactly such a history.

The deadman runs on device time in these runs (tocsin/embedded.py): its ticks fall due as the
readings the detectors process advance device time, each reading bounded by this replay clock (a
device whose clock runs ahead cannot drag it forward), so a device silent for 15 min of device time
is offline although that took a second of wall time, and an outage is flagged at the device time
it would be in production. See simulators/score.py for how device-health alerts are scored.

Status messages (``.../status``: ``online``, the last will's ``offline``) are published retained,
as devices do (a subscriber arriving later learns each device's state); telemetry is not.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from tocsin.schemas import topics
from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection, LifecycleTick
from tocsin.schemas.registry import Registry
from tocsin.schemas.scenario import GroundTruth, ObservedAlert
from tocsin.schemas.transport import apply_mqtt_tls
from tocsin.simulators.demo import Message
from tocsin.simulators.score import Score, format_table, score

log = logging.getLogger(__name__)

__all__ = [
    "FAMILY_SPEED",
    "ReplayClock",
    "is_status",
    "RunResult",
    "choose_speed",
    "layout_start",
    "Plan",
    "pacing",
    "plan_scenario",
    "Progress",
    "publish_messages",
    "publish_paced",
    "read_alerts_jsonl",
    "resolve_scenario",
    "run_messages",
    "run_scenario",
    "slow_windows",
    "write_run_outputs",
]

# Default compression per hazard family when a scenario gives no speed: the slowest (most
# time-critical) family present wins; a quiet day uses the fastest. Seismic windows always run at
# ``seismic_speed`` whatever the base speed.
FAMILY_SPEED = {Family.HAZMAT: 60.0, Family.FIRE: 240.0, Family.HYDRO: 600.0, Family.SEISMIC: 60.0}
QUIET_SPEED = 1200.0
MAX_WALL_S = 90.0  # a scenario's base speed is raised so that its replay lasts at most about this


def choose_speed(truth: GroundTruth, hint: float | None = None, *, max_wall_s: float = MAX_WALL_S) -> float:
    """The base replay speed: the scenario's hint, else the slowest family's default, raised so the
    whole span replays within ``max_wall_s`` (seismic windows excepted)."""
    if hint:
        return float(hint)
    speeds = [FAMILY_SPEED[h.family] for h in truth.hazards]
    base = min(speeds) if speeds else QUIET_SPEED
    span_s = (truth.end - truth.start).total_seconds()
    return max(base, span_s / max_wall_s)


def slow_windows(truth: GroundTruth, *, margin_s: float = 20.0) -> list[tuple[datetime, datetime]]:
    """Device-time windows to replay in real time: every earthquake, from just before it is
    detectable until its S wave has reached the farthest target."""
    out = []
    for h in truth.hazards:
        if h.family is not Family.SEISMIC:
            continue
        last = max([x.s_arrival for x in h.targets], default=h.detectable_from + timedelta(seconds=30))
        out.append((h.detectable_from - timedelta(seconds=margin_s), last + timedelta(seconds=margin_s)))
    return out


def pacing(
    times: Sequence[datetime],
    speed: float,
    *,
    max_gap_s: float = 1.0,
    slow: Sequence[tuple[datetime, datetime]] = (),
    slow_speed: float = 1.0,
) -> list[float]:
    """Wall-clock offset (s) of each message from the first. Pure."""
    out: list[float] = []
    acc = 0.0
    for i, t in enumerate(times):
        if i:
            prev = times[i - 1]
            gap = (t - prev).total_seconds()
            if gap > 0:
                # the part of the gap inside a real-time window at slow_speed, the rest compressed
                inside = sum(max(0.0, (min(t, hi) - max(prev, lo)).total_seconds()) for lo, hi in slow)
                inside = min(inside, gap)
                acc += inside / slow_speed + min((gap - inside) / speed, max_gap_s)
        out.append(acc)
    return out


def layout_start(truth_span_s: float, wall_s: float, now: datetime) -> datetime:
    """Scenario start such that its end falls at ``now + wall_s``, when the replay ends."""
    return now + timedelta(seconds=wall_s) - timedelta(seconds=truth_span_s)


class ReplayClock:
    """Device time of the replay, read from any thread: which message the publisher is at, plus
    the wall time elapsed since, at that gap's pace, capped at the next message (``now``).

    ``since_reading(t)``: the device time ``t`` of a reading plus the wall time elapsed since that
    reading was published, uncompressed: when an alert caused by that reading would have appeared
    with the pipeline's real latency. In a compressed replay ``now`` inflates the latency by the
    speed (50 ms at 900x is 45 s of device time); an alert's sim time is the earlier of the two."""

    def __init__(self, times: Sequence[datetime], offsets: Sequence[float], monotonic: Callable[[], float]) -> None:
        if len(times) != len(offsets):
            raise ValueError("times and offsets differ in length")
        self.times, self.offsets, self.monotonic = list(times), list(offsets), monotonic
        self._at: tuple[int, float] | None = None  # (index published, monotonic time), one atomic swap
        self._marks = [math.nan] * len(self.times)  # monotonic time each message was published
        self.finished = False

    def mark(self, index: int) -> None:
        mono = self.monotonic()
        self._marks[index] = mono
        self._at = (index, mono)

    @property
    def published(self) -> int:
        """How many messages the publisher has sent so far."""
        at = self._at
        return 0 if at is None else at[0] + 1

    def since_reading(self, t: datetime) -> datetime | None:
        """None when no message at or before ``t`` has been published."""
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0 or math.isnan(self._marks[i]):
            return None
        return t + timedelta(seconds=max(0.0, self.monotonic() - self._marks[i]))

    def now(self) -> datetime | None:
        at = self._at
        if at is None:
            return self.times[0] if self.times else None
        i, mono = at
        t = self.times[i]
        if i + 1 >= len(self.times) or self.finished:
            return t
        gap_s = (self.times[i + 1] - t).total_seconds()
        wall_gap = self.offsets[i + 1] - self.offsets[i]
        if gap_s <= 0 or wall_gap <= 0:
            return t
        advanced = min((self.monotonic() - mono) * gap_s / wall_gap, gap_s)
        return t + timedelta(seconds=max(0.0, advanced))


def is_status(topic: str) -> bool:
    """A device's status topic (``tocsin/v1/<family>/<site>/<device>/status``): published retained."""
    return topic.endswith("/status")


def publish_paced(
    messages: Sequence[Message],
    offsets: Sequence[float],
    host: str,
    port: int,
    *,
    clock: ReplayClock | None = None,
    client_id: str = "tocsin-scenario-devices",
    stop: threading.Event | None = None,
    ack_timeout_s: float = 60.0,
) -> int:
    """Publish like the devices (QoS 1; status messages retained) at the wall offsets given (absolute
    schedule: no drift); blocking, run it in a thread. Returns the messages the broker acknowledged.

    A broker restart does not end the run: the client reconnects (every 1-5 s), messages published
    meanwhile wait in its queue and go out, with those not yet acknowledged, once it is back. The
    end waits up to ``ack_timeout_s`` for the last acknowledgements."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    apply_mqtt_tls(client)  # TOCSIN_MQTT_TLS_CA set: verified TLS (schemas/transport.py)
    connected = threading.Event()
    acked: set[int] = set()  # mids the broker acknowledged (MQTTMessageInfo raises while disconnected)
    client.on_connect = lambda *_a: connected.set()
    client.on_publish = lambda _c, _u, mid, *_a: acked.add(mid)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)  # unbounded: nothing is dropped while the broker is away
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError(f"scenario devices could not connect to MQTT {host}:{port}")
        infos = []
        t0 = time.monotonic()
        for i, (m, off) in enumerate(zip(messages, offsets, strict=True)):
            if stop is not None and stop.is_set():
                break
            delay = t0 + off - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # disconnected: paho queues a QoS 1 message (rc NO_CONN) and sends it after the reconnect
            infos.append(client.publish(m.topic, m.payload, qos=1, retain=is_status(m.topic)))
            if clock is not None:
                clock.mark(i)
        deadline, pending = time.monotonic() + ack_timeout_s, 0
        while pending < len(infos) and time.monotonic() < deadline:
            if infos[pending].mid in acked:
                pending += 1
            else:
                time.sleep(0.02)
        return sum(1 for info in infos if info.mid in acked)
    finally:
        if clock is not None:
            clock.finished = True
        client.disconnect()
        client.loop_stop()


@dataclass(frozen=True)
class Progress:
    """Where a scenario run is (``tocsin simulate run`` prints one line every few seconds)."""

    wall_s: float  # since the replay started
    sim_time: datetime | None  # the replay clock: device time reached
    fraction: float  # of the scenario's span (device time), 0..1
    published: int
    messages: int
    detections: int
    alerts: int

    def line(self) -> str:
        sim = f"{self.sim_time.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if self.sim_time is not None else "-"
        return (
            f"device time {sim} ({self.fraction:4.0%}), published {self.published}/{self.messages} messages, "
            f"{self.detections} detections, {self.alerts} alert messages"
        )


@dataclass
class RunResult:
    truth: GroundTruth
    observed: list[ObservedAlert]
    score: Score
    speed: float
    published: int
    messages: int
    wall_s: float
    dead_letters: dict[str, int] = field(default_factory=dict)
    topic_counts: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.truth.scenario,
            "speed": self.speed,
            "messages": self.messages,
            "published": self.published,
            "wall_s": round(self.wall_s, 2),
            "alert_messages": len(self.observed),
            "dead_letters": self.dead_letters,
            "topic_counts": self.topic_counts,
            "deliveries": self.deliveries,
        }


async def run_messages(
    registry: Registry,
    messages: Sequence[Message],
    truth: GroundTruth,
    *,
    speed: float,
    offsets: Sequence[float] | None = None,
    on_alert: Callable[[ObservedAlert], None] | None = None,
    settle_s: float = 1.5,
    max_gap_s: float = 1.0,
    seismic_speed: float = 1.0,
    pipeline: Any = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 5.0,
) -> RunResult:
    """Publish ``messages`` to a running (or a new) embedded pipeline and score what it alerts.
    ``pipeline``: an already started EmbeddedPipeline (the caller stops it); None: one is made.
    ``on_progress`` is called every ``progress_every_s`` of wall time while the messages are
    published, and once when the last one is out."""
    from tocsin.alerts.engine import AlertConfig
    from tocsin.embedded import EmbeddedPipeline, free_port
    from tocsin.simulators.downstream import EmulatedDownstream

    started = time.monotonic()
    own = pipeline is None
    if own:
        # max_detection_age_s=0: a compressed scenario is a history replay (see the module docstring)
        pipeline = EmbeddedPipeline(
            registry,
            mqtt_port=free_port(0),
            alert_config=AlertConfig(max_detection_age_s=0.0),
            deadman_clock="device",
            downstream=EmulatedDownstream(),
        )
        await pipeline.start()
    times = [m.t for m in messages]
    if offsets is None:
        offsets = pacing(times, speed, max_gap_s=max_gap_s, slow=slow_windows(truth), slow_speed=seismic_speed)
    clock = ReplayClock(times, offsets, time.monotonic)
    pipeline.replay_clock = clock.now  # bounds the deadman's device time (tocsin/embedded.py)
    observed: list[ObservedAlert] = []
    queue = pipeline.bus.subscribe(topics.ALERTS)
    det_queue = pipeline.bus.subscribe(topics.DETECTIONS)
    reading_t: dict[str, datetime] = {}  # detection id -> device time of the reading that caused it
    span_s = (truth.end - truth.start).total_seconds()
    replay_started = time.monotonic()

    def progress() -> Progress:
        drain_detections()
        now = clock.now()
        done = (now - truth.start).total_seconds() / span_s if now is not None and span_s > 0 else 0.0
        return Progress(
            wall_s=time.monotonic() - replay_started,
            sim_time=now,
            fraction=min(1.0, max(0.0, done)),
            published=clock.published,
            messages=len(messages),
            detections=len(reading_t),
            alerts=len(observed),
        )

    async def report_progress() -> None:
        assert on_progress is not None
        while True:
            await asyncio.sleep(progress_every_s)
            on_progress(progress())

    def drain_detections() -> None:
        while not det_queue.empty():
            value = det_queue.get_nowait()[2]
            try:
                if not LifecycleTick.is_tick(value):
                    d = Detection.model_validate_json(value)
                    reading_t[d.id] = d.ts
            except ValueError:
                pass
            finally:
                pipeline.bus.done()

    def sim_time_of(alert: Alert) -> datetime | None:
        drain_detections()
        now = clock.now()
        causes = [c for c in (clock.since_reading(reading_t[i]) for i in alert.detections if i in reading_t) if c]
        return min([now, *causes]).astimezone(UTC) if now is not None else None

    async def watch_detections() -> None:
        while True:
            await asyncio.sleep(0.2)
            drain_detections()

    async def watch() -> None:
        while True:
            record = await queue.get()  # (topic, key, value[, headers])
            try:
                alert = Alert.model_validate_json(record[2])
                o = ObservedAlert(alert=alert, sim_time=sim_time_of(alert))
                observed.append(o)
                if on_alert is not None:
                    on_alert(o)
            except Exception:  # noqa: BLE001 - keep watching; a bad record must not stall bus.idle()
                log.exception("scenario alert watch: unreadable alert record")
            finally:
                pipeline.bus.done()

    watcher = asyncio.create_task(watch(), name="scenario-alert-watch")
    det_watcher = asyncio.create_task(watch_detections(), name="scenario-detection-watch")
    reporter = (
        asyncio.create_task(report_progress(), name="scenario-progress")
        if on_progress is not None and progress_every_s > 0
        else None
    )
    stop = threading.Event()
    try:
        published = await asyncio.to_thread(
            publish_paced, messages, offsets, "127.0.0.1", pipeline.mqtt_port, clock=clock, stop=stop
        )
        if reporter is not None:
            reporter.cancel()
            reporter = None
            assert on_progress is not None
            on_progress(progress())
        await pipeline.bus.idle(settle_s=settle_s, timeout_s=120)
    finally:
        stop.set()
        watcher.cancel()
        det_watcher.cancel()
        if reporter is not None:
            reporter.cancel()
        if own:
            await pipeline.stop()
    s = pipeline.summary
    dead: dict[str, int] = {}
    for d in s.dead_letters:
        dead[d.reason.value] = dead.get(d.reason.value, 0) + 1
    return RunResult(
        truth=truth,
        observed=observed,
        score=score(truth, observed),
        speed=speed,
        published=published,
        messages=len(messages),
        wall_s=time.monotonic() - started,
        dead_letters=dead,
        topic_counts=dict(sorted(pipeline.bus.counts.items())),
        deliveries={f"{c}:{o}": n for (c, o), n in sorted(s.deliveries.items())},
    )


def publish_messages(
    messages: Sequence[Message], host: str, port: int, *, speed: float = 120.0, max_gap_s: float = 1.0
) -> int:
    """Publish like the devices would (QoS 1), pacing by device time divided by ``speed`` (a gap is
    never longer than ``max_gap_s`` of wall time); blocking. Returns the messages acknowledged."""
    offsets = pacing([m.t for m in messages], speed, max_gap_s=max_gap_s)
    return publish_paced(messages, offsets, host, port, client_id="tocsin-demo-devices")


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A shipped scenario's name (``quiet_day``) or a YAML file's path."""
    from tocsin.simulators.scenario_spec import SCENARIO_DIR

    p = Path(name_or_path)
    if p.is_file():
        return p
    for suffix in (".yaml", ".yml"):
        cand = SCENARIO_DIR / f"{name_or_path}{suffix}"
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in SCENARIO_DIR.glob("*.y*ml"))
    raise FileNotFoundError(f"no scenario {name_or_path!r} (a YAML path, or one of {', '.join(known)})")


@dataclass
class Plan:
    """A scenario ready to replay: its registry, base speed and pacing, learnt from a probe build."""

    scenario: Any
    registry: Registry
    speed: float
    span_s: float
    wall_s: float
    max_gap_s: float = 1.0
    seismic_speed: float = 1.0

    def build(self, now: datetime | None = None) -> tuple[Registry, list[Message], GroundTruth, list[float]]:
        """Build so that the last message is due when the replay (starting ``now``) ends."""
        from tocsin.simulators.scenario import build

        start = layout_start(self.span_s, self.wall_s, now or datetime.now(UTC))
        registry, messages, truth = build(self.scenario, start=start)
        offsets = pacing(
            [m.t for m in messages],
            self.speed,
            max_gap_s=self.max_gap_s,
            slow=slow_windows(truth),
            slow_speed=self.seismic_speed,
        )
        return registry, messages, truth, offsets


def plan_scenario(
    name_or_path: str | Path, *, speed: float | None = None, max_gap_s: float = 1.0, seismic_speed: float = 1.0
) -> Plan:
    """Load a scenario and build it once at a fixed start to learn its span and pacing (scenarios
    are deterministic for their seed, so the real build only shifts the times)."""
    from tocsin.simulators.scenario import build
    from tocsin.simulators.scenario_spec import load_scenario

    scenario = load_scenario(resolve_scenario(name_or_path))
    registry, probe, truth = build(scenario, start=datetime(2026, 1, 1, tzinfo=UTC))
    base = choose_speed(truth, speed or getattr(scenario, "speed", None))
    offsets = pacing(
        [m.t for m in probe], base, max_gap_s=max_gap_s, slow=slow_windows(truth), slow_speed=seismic_speed
    )
    span_s = (probe[-1].t - truth.start).total_seconds() if probe else 0.0
    return Plan(scenario, registry, base, span_s, offsets[-1] if offsets else 0.0, max_gap_s, seismic_speed)


async def run_scenario(
    name_or_path: str | Path,
    *,
    speed: float | None = None,
    seismic_speed: float = 1.0,
    out_dir: Path | None = None,
    on_alert: Callable[[ObservedAlert], None] | None = None,
    on_start: Callable[[GroundTruth, float, float], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 5.0,
) -> RunResult:
    """Plan, start an embedded pipeline with the scenario's registry, build the messages so that
    the scenario ends when the replay does, run, score; write ``out_dir`` when given.
    ``on_start(truth, speed, planned wall seconds)`` is called just before the replay."""
    from tocsin.alerts.engine import AlertConfig
    from tocsin.embedded import EmbeddedPipeline, free_port
    from tocsin.simulators.downstream import EmulatedDownstream

    plan = await asyncio.to_thread(plan_scenario, name_or_path, speed=speed, seismic_speed=seismic_speed)
    pipeline = EmbeddedPipeline(
        plan.registry,
        mqtt_port=free_port(0),
        alert_config=AlertConfig(max_detection_age_s=0.0),
        deadman_clock="device",
        downstream=EmulatedDownstream(),
    )
    await pipeline.start()
    try:
        registry, messages, truth, offsets = await asyncio.to_thread(plan.build)
        if on_start is not None:
            on_start(truth, plan.speed, offsets[-1] if offsets else 0.0)
        result = await run_messages(
            registry,
            messages,
            truth,
            speed=plan.speed,
            offsets=offsets,
            on_alert=on_alert,
            pipeline=pipeline,
            on_progress=on_progress,
            progress_every_s=progress_every_s,
        )
    finally:
        await pipeline.stop()
    if out_dir is not None:
        write_run_outputs(out_dir, result)
    return result


def write_run_outputs(out_dir: Path, result: RunResult) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "alerts.jsonl").open("w", encoding="utf-8") as f:
        for o in result.observed:
            f.write(o.model_dump_json() + "\n")
    (out_dir / "score.json").write_text(result.score.model_dump_json(indent=2), encoding="utf-8")
    (out_dir / "ground_truth.json").write_text(result.truth.model_dump_json(indent=2), encoding="utf-8")
    (out_dir / "run.json").write_text(json.dumps(result.summary(), indent=2, ensure_ascii=False), encoding="utf-8")


def read_alerts_jsonl(text: str, source: str = "alerts") -> list[ObservedAlert]:
    """Lines of ObservedAlert (``{"alert": ..., "sim_time": ...}``) or bare Alert JSON (as dumped
    from Kafka ``alerts``; scored at their ``sent``). Blank lines are skipped. A bad line raises
    ``ValueError("<source> line N: <first problem>")`` on one line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if isinstance(obj, dict) and "alert" in obj:
                out.append(ObservedAlert.model_validate(obj))
            else:
                out.append(ObservedAlert(alert=Alert.model_validate(obj)))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{source} line {n}: {where + ': ' if where else ''}{first['msg']}") from exc
        except ValueError as exc:
            raise ValueError(f"{source} line {n}: not JSON ({exc})") from exc
    return out


def print_result(result: RunResult, write: Callable[[str], Any] = print) -> None:
    write(format_table(result.score))
    dl = ", ".join(f"{k} {v}" for k, v in sorted(result.dead_letters.items())) or "none"
    write(
        f"  published {result.published}/{result.messages} messages at {result.speed:g}x in {result.wall_s:.1f} s;"
        f" dead letters: {dl}"
    )
