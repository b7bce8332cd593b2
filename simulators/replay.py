"""Replay recorded device feeds onto MQTT: ``tocsin replay FILE...``.

A recorded feed becomes a *timeline*: (device time, MQTT topic, payload bytes) items, sorted by
device time (stable, so messages of one device keep their file order). Inputs:

- JSONL: one telemetry payload per line, exactly as devices publish it (the topic comes from the
  payload's ``type``/``site``/``device_id``), or the scenario builder's ``messages.jsonl`` lines
  ``{"t": ..., "topic": ..., "payload": "<text>"}`` / ``"payload_b64"`` (the topic from the line,
  or derived from the payload when absent; the bytes are replayed as they are, malformed or not).
- CSV (``timestamp,value`` plus optional ``device_id``, ``site``, ``kind``, ``gas``, ``unit``,
  ``interval_s`` columns; the CLI's ``--device/--site/--kind/--gas/--unit`` fill in what the file
  lacks), read with :func:`tocsin.backtest.read_rows`; each row becomes a ``hydro.rain``
  (``kind=rain_mm``), ``hydro.level`` (``level_m``) or ``hazmat.gas`` (``gas``) payload built
  with the schema's models. Rain rows cover the time since the device's previous row.
- miniSEED: every data record is republished as its own raw binary payload on the station's
  seismic topic (the gateway recognises binary miniSEED there), or, with ``mseed_as="json"``, as a
  ``seismic.waveform`` JSON packet. Device id = station code and site = network code, unless given.

Pacing (pure, :func:`schedule`): the wall-clock offset of each item is its device-time distance
from the first item divided by ``speed``; ``speed=None`` is as fast as possible (all offsets 0,
publishing limited only by the broker's acks and the in-flight window).

Rebasing (pure, :func:`rebase`): every timestamp is shifted by one constant, ``now - first device
time``, so the first message is stamped now and the feed keeps its internal timing (gaps, a
device's clock skew). JSON payloads get their ``ts`` rewritten (same UTC offset); raw miniSEED
records get their header start time (BTIME) rewritten, shifted by the delta rounded to BTIME's
0.1 ms resolution. At ``speed > 1`` rebased timestamps run ahead of the wall clock (the gateway
refuses readings more than ``TOCSIN_MAX_FUTURE_SKEW_S`` ahead), so rebase real-time replays to
the first message, and fast ones (backfills) to the last (``--rebase-end``: the feed ends now).

The publisher (:func:`publish_timeline`) is the thin I/O part: one paho connection, QoS 1, at
most ``max_in_flight`` unacknowledged messages, waits for every acknowledgement.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from tocsin.schemas.common import Family
from tocsin.schemas.telemetry import GasReading, RainIncrement, WaterLevel, family_of
from tocsin.schemas.topics import mqtt_telemetry
from tocsin.schemas.wire import encode

Format = Literal["auto", "jsonl", "csv", "mseed"]
PayloadKind = Literal["json", "mseed", "bytes"]
CSV_KINDS = ("rain_mm", "level_m", "gas")
_MSEED_SUFFIXES = (".mseed", ".miniseed", ".ms")


class ReplayError(ValueError):
    """A recorded feed cannot be turned into a timeline (with the file and line)."""


@dataclass(frozen=True)
class TimelineItem:
    t: datetime  # device time of the message (aware)
    topic: str
    payload: bytes
    kind: PayloadKind = "json"  # json: a JSON object with "ts"; mseed: raw records; bytes: left as is


@dataclass(frozen=True)
class CsvDefaults:
    """What a CSV file's columns may leave out: the device identity and the kind of value."""

    device_id: str | None = None
    site: str | None = None
    kind: str | None = None  # rain_mm, level_m or gas
    gas: str = "CH4"
    unit: str = "%LEL"
    interval_s: float = 300.0  # the first rain row's interval, when the file has no interval_s column


# --------------------------------------------------------------------------------------------------
# Reading feeds (pure apart from reading the file)


def detect_format(path: Path) -> Literal["jsonl", "csv", "mseed"]:
    suffix = path.suffix.lower()
    if suffix in _MSEED_SUFFIXES:
        return "mseed"
    if suffix == ".csv":
        return "csv"
    return "jsonl"


def _aware(text: Any) -> datetime:
    if isinstance(text, int | float) and not isinstance(text, bool):
        return datetime.fromtimestamp(float(text), UTC)
    ts = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _has_ts(obj: dict[str, Any]) -> bool:
    """A JSON payload whose ``ts`` can be rebased (a malformed one is replayed untouched)."""
    try:
        _aware(obj["ts"])
    except (KeyError, ValueError, TypeError, OverflowError, OSError):
        return False
    return isinstance(obj["ts"], str)


def _topic_of_payload(obj: dict[str, Any]) -> str:
    type_name = obj.get("type")
    fam = family_of(type_name) if isinstance(type_name, str) else None
    if fam is None:
        raise ValueError(f"unknown telemetry type {type_name!r}")
    return mqtt_telemetry(fam, str(obj["site"]), str(obj["device_id"]))


def jsonl_timeline(lines: Iterable[str], *, source: str = "<jsonl>") -> list[TimelineItem]:
    """Timeline of JSONL lines: telemetry payloads, or ``{"t", "topic"?, "payload" | "payload_b64"}``."""
    items: list[TimelineItem] = []
    for i, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("line is not a JSON object")
            if "payload" in obj or "payload_b64" in obj:
                if "payload_b64" in obj:
                    payload = base64.b64decode(obj["payload_b64"], validate=True)
                else:
                    payload = str(obj["payload"]).encode("utf-8")
                try:
                    inner = json.loads(payload)
                except ValueError:
                    inner = None
                kind: PayloadKind = "json" if isinstance(inner, dict) and _has_ts(inner) else "bytes"
                topic = obj.get("topic")
                if not topic:
                    if not isinstance(inner, dict):
                        raise ValueError("no topic, and the payload is not telemetry JSON to derive it from")
                    topic = _topic_of_payload(inner)
                when = obj.get("t", inner.get("ts") if isinstance(inner, dict) else None)
                if when is None:
                    raise ValueError("no device time: needs 't' (or a payload with 'ts')")
                items.append(TimelineItem(_aware(when), str(topic), payload, kind))
            else:
                items.append(TimelineItem(_aware(obj["ts"]), _topic_of_payload(obj), text.encode("utf-8"), "json"))
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise ReplayError(f"{source}:{i}: {exc}") from exc
    return items


def csv_timeline(path: Path, defaults: CsvDefaults) -> list[TimelineItem]:
    """Timeline of a ``timestamp,value`` CSV, one payload per row built with the telemetry models."""
    from tocsin.backtest import BacktestError, Row, read_rows

    if path.suffix.lower() != ".csv":
        raise ReplayError(f"{path}: CSV files are read by their .csv suffix")
    items: list[TimelineItem] = []
    previous: dict[str, datetime] = {}
    seqs: dict[str, int] = {}
    try:
        rows = list(read_rows(path))
    except BacktestError as exc:
        raise ReplayError(str(exc)) from exc
    for i, row in enumerate(rows, start=2):
        if not isinstance(row, Row) or row.value is None:
            continue
        f = row.fields
        device = f.get("device_id") or defaults.device_id
        site = f.get("site") or defaults.site
        kind = f.get("kind") or defaults.kind
        if not device or not site or kind not in CSV_KINDS:
            raise ReplayError(
                f"{path}:{i}: needs device_id, site and kind ({'/'.join(CSV_KINDS)}) from columns or options"
            )
        seq = seqs.get(device, 0)
        seqs[device] = seq + 1
        base: dict[str, Any] = {"device_id": device, "site": site, "ts": row.ts, "seq": seq}
        try:
            model: RainIncrement | WaterLevel | GasReading
            if kind == "rain_mm":
                prev = previous.get(device)
                interval = float(f.get("interval_s") or 0) or (
                    (row.ts - prev).total_seconds() if prev else defaults.interval_s
                )
                model = RainIncrement(**base, rain_mm=row.value, interval_s=interval)
            elif kind == "level_m":
                model = WaterLevel(**base, level_m=row.value)
            else:
                gas = {"gas": f.get("gas") or defaults.gas, "unit": f.get("unit") or defaults.unit, "value": row.value}
                model = GasReading.model_validate(base | gas)
        except ValueError as exc:
            raise ReplayError(f"{path}:{i}: {exc}") from exc
        previous[device] = row.ts
        items.append(TimelineItem(row.ts, mqtt_telemetry(model.family, site, device), encode(model), "json"))
    return items


def mseed_timeline(
    data: bytes,
    *,
    device_id: str | None = None,
    site: str | None = None,
    mseed_as: Literal["raw", "json"] = "raw",
    source: str = "<mseed>",
) -> list[TimelineItem]:
    """One item per miniSEED data record: the record's own bytes, or a seismic.waveform JSON packet."""
    from tocsin.ingest.mseed import MseedError, decode_mseed, to_packet_fields
    from tocsin.schemas.telemetry import SeismicPacket

    try:
        records = decode_mseed(data)
    except MseedError as exc:
        raise ReplayError(f"{source}: {exc}") from exc
    items: list[TimelineItem] = []
    offset = 0
    for rec in records:
        raw = data[offset : offset + rec.record_length]
        offset += rec.record_length
        device = device_id or rec.station
        where = site or rec.network or "mseed"
        topic = mqtt_telemetry(Family.SEISMIC, where, device)
        if mseed_as == "raw":
            items.append(TimelineItem(rec.start, topic, raw, "mseed"))
        else:
            fields = to_packet_fields(rec) | {"device_id": device, "site": where}
            if rec.sequence_number is not None:
                fields["seq"] = rec.sequence_number
            try:
                packet = SeismicPacket(**fields)
            except ValueError as exc:
                raise ReplayError(f"{source}: record at {rec.start.isoformat()}: {exc}") from exc
            items.append(TimelineItem(rec.start, topic, encode(packet), "json"))
    return items


def read_timeline(
    paths: Sequence[Path],
    *,
    fmt: Format = "auto",
    csv_defaults: CsvDefaults | None = None,
    mseed_as: Literal["raw", "json"] = "raw",
) -> list[TimelineItem]:
    """Every file's items merged into one timeline, sorted by device time (stable)."""
    items: list[TimelineItem] = []
    for path in paths:
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind == "mseed":
            defaults = csv_defaults or CsvDefaults()
            items += mseed_timeline(
                path.read_bytes(), device_id=defaults.device_id, site=defaults.site, mseed_as=mseed_as, source=str(path)
            )
        elif kind == "csv":
            items += csv_timeline(path, csv_defaults or CsvDefaults())
        else:
            with path.open(encoding="utf-8") as fh:
                items += jsonl_timeline(fh, source=str(path))
    return sorted(items, key=lambda it: it.t)


# --------------------------------------------------------------------------------------------------
# Pacing and rebasing (pure)


def schedule(times: Sequence[float], speed: float | None) -> list[float]:
    """Wall-clock offsets (s from the start) of messages at device ``times`` (s, non-decreasing).

    ``speed`` 1 is real time, N is N times faster; None is as fast as possible (every offset 0).
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if not times:
        return []
    t0 = times[0]
    if speed is None:
        return [0.0] * len(times)
    return [max(0.0, (t - t0) / speed) for t in times]


def _shift_json(payload: bytes, delta: timedelta) -> bytes:
    obj = json.loads(payload)
    obj["ts"] = (_aware(obj["ts"]) + delta).isoformat()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _btime_order(head: bytes) -> str:
    for order in (">", "<"):
        year, doy = struct.unpack_from(order + "HH", head, 20)
        if 1900 <= year <= 2100 and 1 <= doy <= 366:
            return order
    raise ValueError("miniSEED BTIME is implausible in either byte order")


def shift_mseed_record(record: bytes, delta: timedelta) -> bytes:
    """``record`` (one miniSEED data record) with its header start time (BTIME) moved by ``delta``.

    BTIME has 0.1 ms resolution: ``delta`` is rounded to it. Everything else is left untouched
    (time correction, blockette 1001 microseconds), so the decoded start moves by exactly the
    rounded delta.
    """
    order = _btime_order(record)
    year, doy, hour, minute, second, unused, fract = struct.unpack_from(order + "HHBBBBH", record, 20)
    start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(
        days=doy - 1, hours=hour, minutes=minute, seconds=second, microseconds=fract * 100
    )
    ticks = round(delta / timedelta(microseconds=100))
    new = start + timedelta(microseconds=100 * ticks)
    packed = struct.pack(
        order + "HHBBBBH",
        new.year,
        new.timetuple().tm_yday,
        new.hour,
        new.minute,
        new.second,
        unused,
        new.microsecond // 100,
    )
    return record[:20] + packed + record[30:]


def rebase(
    items: Sequence[TimelineItem], now: datetime, anchor: Literal["first", "last"] = "first"
) -> list[TimelineItem]:
    """Every timestamp shifted by one constant so that the first (or, ``anchor="last"``, the last)
    message is stamped ``now``; "last" backfills a history that ends now (for ``--fast`` replays).

    Payloads of kind ``bytes`` (not telemetry JSON: e.g. a scenario's malformed messages) keep their
    bytes; only their device time moves.
    """
    if not items:
        return []
    delta = now - (items[0].t if anchor == "first" else items[-1].t)
    out = []
    for it in items:
        if it.kind == "json":
            payload = _shift_json(it.payload, delta)
        elif it.kind == "mseed":
            payload = shift_mseed_record(it.payload, delta)
        else:
            payload = it.payload
        out.append(replace(it, t=it.t + delta, payload=payload))
    return out


# --------------------------------------------------------------------------------------------------
# Progress bar (pure text; written to stderr by the publisher)


def _hms(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_progress(done: int, total: int, elapsed_s: float, eta_s: float | None, width: int = 24) -> str:
    """``[#########...............]  120/300  40.0%  57.1 msg/s  ETA 0:00:03``."""
    frac = done / total if total else 1.0
    filled = int(frac * width)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = "--:--:--" if eta_s is None else _hms(eta_s)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done:>{len(str(total))}}/{total} {100 * frac:5.1f}% {rate:8.1f} msg/s ETA {eta}"


class Progress:
    """A one-line progress bar redrawn at most ``every_s`` (carriage return, no dependency)."""

    def __init__(self, total: int, out: TextIO, clock: Callable[[], float] = time.monotonic, every_s: float = 0.2):
        self.total, self.out, self.clock, self.every_s = total, out, clock, every_s
        self.started = clock()
        self._last = -1e9

    def update(self, done: int, eta_s: float | None, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        self.out.write("\r" + format_progress(done, self.total, now - self.started, eta_s))
        self.out.flush()

    def close(self, done: int) -> None:
        self.update(done, 0.0, force=True)
        self.out.write("\n")
        self.out.flush()


# --------------------------------------------------------------------------------------------------
# Publisher (I/O)


@dataclass
class ReplayResult:
    messages: int
    acked: int
    elapsed_s: float
    span_s: float  # device time covered by the timeline
    topics: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "acked": self.acked,
            "elapsed_s": round(self.elapsed_s, 3),
            "device_span_s": round(self.span_s, 3),
            "rate_per_s": round(self.acked / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
        }


def publish_timeline(
    items: Sequence[TimelineItem],
    host: str,
    port: int,
    *,
    speed: float | None = 1.0,
    max_in_flight: int = 1000,
    progress: TextIO | None = None,
    username: str = "",
    password: str = "",
    tls: ssl.SSLContext | None = None,
    client_id: str = "",
    ack_timeout_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Publish ``items`` in order, QoS 1, paced by :func:`schedule`; return once every message is acked."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    offsets = schedule([(it.t - items[0].t).total_seconds() for it in items] if items else [], speed)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username:
        client.username_pw_set(username, password or None)
    if tls is not None:  # verified TLS (schemas/transport.py)
        client.tls_set_context(tls)
    client.max_inflight_messages_set(max_in_flight)
    client.reconnect_delay_set(min_delay=1, max_delay=5)  # a broker restart: back within seconds
    connected = threading.Event()
    window = threading.Semaphore(max_in_flight)
    acked = 0
    lock = threading.Lock()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            connected.set()

    def on_publish(_c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1
        window.release()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(host, port, keepalive=30)
    client.loop_start()
    bar = Progress(len(items), progress, clock) if progress is not None else None
    topics: dict[str, int] = {}
    try:
        if not connected.wait(10):
            raise ConnectionError(f"replay could not connect to MQTT {host}:{port}")
        started = clock()
        for n, (it, offset) in enumerate(zip(items, offsets, strict=True)):
            wait = started + offset - clock()
            if wait > 0:
                sleep(wait)
            if not window.acquire(timeout=ack_timeout_s):
                raise TimeoutError(f"no acknowledgement from the broker for {ack_timeout_s} s")
            client.publish(it.topic, it.payload, qos=1)
            topics[it.topic] = topics.get(it.topic, 0) + 1
            if bar is not None:
                elapsed = clock() - started
                eta = offsets[-1] - elapsed if speed is not None else (len(items) - n - 1) * elapsed / (n + 1)
                bar.update(n + 1, max(eta, 0.0))
        deadline = clock() + ack_timeout_s
        while clock() < deadline:
            with lock:
                if acked >= len(items):
                    break
            sleep(0.01)
        elapsed = clock() - started
        if bar is not None:
            bar.close(len(items))
    finally:
        client.disconnect()
        client.loop_stop()
    span = (items[-1].t - items[0].t).total_seconds() if items else 0.0
    return ReplayResult(len(items), acked, elapsed, span, topics)


def main_replay(
    paths: Sequence[Path],
    *,
    host: str,
    port: int,
    fmt: Format = "auto",
    speed: float | None = 1.0,
    rebase_now: bool = False,
    rebase_anchor: Literal["first", "last"] = "first",
    csv_defaults: CsvDefaults | None = None,
    mseed_as: Literal["raw", "json"] = "raw",
    show_progress: bool | None = None,
    username: str = "",
    password: str = "",
    tls: ssl.SSLContext | None = None,
    max_in_flight: int = 1000,
) -> ReplayResult:
    """Read, optionally rebase, and publish; the ``tocsin replay`` command's body."""
    items = read_timeline(paths, fmt=fmt, csv_defaults=csv_defaults, mseed_as=mseed_as)
    if rebase_now:
        items = rebase(items, datetime.now(UTC), rebase_anchor)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    return publish_timeline(
        items,
        host,
        port,
        speed=speed,
        max_in_flight=max_in_flight,
        progress=sys.stderr if show_progress else None,
        username=username,
        password=password,
        tls=tls,
    )
