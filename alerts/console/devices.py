"""Device health for the duty console: per registered device, is it reporting, stale, offline or faulty?

A pure read model (no I/O, injected clock). The runtime feeds it what reaches Kafka (or the embedded
demo's bus), each with its arrival time (the record timestamp, epoch seconds):

- readings (``telemetry.<family>``): the device's last reading time;
- statuses (``devices.status``, schemas/status.py): ``offline`` (orderly or MQTT last will),
  ``fault`` (the device reports a fault of its own), ``online``;
- detections (``detections``, ``detections.urgent``) of kind ``offline`` (the worker's dead-man
  detector) and ``sensor_fault`` (stuck, drifting, spiking or out-of-range sensors);
- dead letters (``telemetry.deadletter``) whose MQTT topic names the device, for the reasons a device
  causes (out of range, not finite, schema, identity mismatch, clock, size).

The state is derived when asked, at the clock's ``now``, in this precedence:

1. ``offline``: its newest status says offline, or the dead-man detection is open, and no reading
   arrived after that;
2. ``faulty``: its newest status says fault, a sensor-fault detection is open, or dead letters of the
   device arrived within ``fault_window_s``;
3. ``stale``: no reading for more than ``stale_factor`` x its registered interval (``unknown`` instead
   when nothing was ever seen and that much time has not passed since ``silent_since``);
4. ``reporting``.

Memory is bounded: only devices of the registry are tracked (others are ignored, devices that leave
the registry are dropped), each with a fixed-size record (at most ``DEAD_LETTER_MEMORY`` dead-letter
times), and every reason string is cut to ``REASON_MAX_CHARS``. Thread-safe (Kafka followers feed it
from their own threads).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from tocsin.schemas import topics
from tocsin.schemas.batch import is_batch, unpack
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.detection import Detection, DetectionKind, DetectionState
from tocsin.schemas.records import PoisonRecord
from tocsin.schemas.registry import Device
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.wire import decode


class Health(StrEnum):
    FAULTY = "faulty"
    OFFLINE = "offline"
    STALE = "stale"
    UNKNOWN = "unknown"
    REPORTING = "reporting"


ORDER: tuple[Health, ...] = (Health.FAULTY, Health.OFFLINE, Health.STALE, Health.UNKNOWN, Health.REPORTING)
"""The order the console lists the groups in: what needs somebody first."""
REASON_MAX_CHARS = 200
DEAD_LETTER_MEMORY = 20
FAULT_REASONS = frozenset(
    {
        Reason.UNDECODABLE,
        Reason.SCHEMA,
        Reason.NON_FINITE,
        Reason.OUT_OF_RANGE,
        Reason.IDENTITY_MISMATCH,
        Reason.FUTURE_TIMESTAMP,
        Reason.STALE_TIMESTAMP,
        Reason.TOO_LARGE,
    }
)
"""Dead-letter reasons that say something about the device (not duplicates, not the gateway's own
failures, not unregistered senders or topics without a device)."""
_DEVICE_ID = re.compile(rb'"device_id"\s*:\s*"([^"\\]{1,128})"')


def cut(text: str, limit: int = REASON_MAX_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(s: float) -> str:
    s = max(0.0, s)
    if s < 180:
        return f"{s:.0f} 秒"
    if s < 7200:
        return f"{s / 60:.0f} 分钟"
    return f"{s / 3600:.1f} 小时"


@dataclass
class _Track:
    last_seen: float | None = None
    run_start: float | None = None  # first reading of the current unbroken run of readings
    status: DeviceState | None = None
    status_at: float = float("-inf")
    status_reason: str = ""
    offline_at: float | None = None  # the dead-man detection open since (arrival)
    fault_at: float | None = None  # a sensor-fault detection open since (arrival)
    fault_reason: str = ""
    dead_letters: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=DEAD_LETTER_MEMORY))


_NOTHING = _Track()  # what is known of a device never heard of (read only)


@dataclass(frozen=True)
class DeviceHealth:
    device_id: str
    family: str
    site: str
    area_code: str
    area: str
    interval_s: float
    state: Health
    since: float
    reason: str
    last_seen: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.device_id,
            "family": self.family,
            "site": self.site,
            "area_code": self.area_code,
            "area": self.area,
            "interval_s": self.interval_s,
            "state": self.state.value,
            "since": _iso(self.since),
            "reason": self.reason,
            "last_seen": _iso(self.last_seen) if self.last_seen is not None else None,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class DeviceHealthModel:
    """Per registered device: the evidence of its health, and its state at the clock's now."""

    def __init__(
        self,
        registry: Any,
        *,
        clock: Callable[[], float] = time.time,
        stale_factor: float = 2.0,
        fault_window_s: float = 900.0,
        silent_since: float | None = None,
    ) -> None:
        """``registry``: a Registry or RegistryWatcher (None: no devices). ``silent_since``: from when
        a device never seen counts as silent (default: now; the Kafka wiring passes now minus the
        look-back it replays, so a device with nothing in that window is stale at once)."""
        if stale_factor <= 1:
            raise ValueError("stale_factor must be above 1")
        self.registry, self.clock = registry, clock
        self.stale_factor, self.fault_window_s = stale_factor, fault_window_s
        self.silent_since = clock() if silent_since is None else silent_since
        self._tracks: dict[str, _Track] = {}
        self._index: dict[str, Device] = {}
        self._indexed_of: object = None  # the registry's device list the index was built from
        self._snapshot: tuple[float, list[DeviceHealth]] | None = None
        self._lock = threading.Lock()
        self.ignored = 0  # evidence about devices outside the registry

    # ------------------------------------------------------------------ evidence
    def _device(self, device_id: str) -> Device | None:
        """The registered device (the index is rebuilt when the registry loads a new device list)."""
        devices = getattr(self.registry, "devices", None)
        if devices is not self._indexed_of:
            self._index = {d.device_id: d for d in devices or ()}
            self._indexed_of = devices
        return self._index.get(device_id)

    def _track(self, device_id: str) -> _Track | None:
        if self._device(device_id) is None:
            self.ignored += 1
            return None
        t = self._tracks.get(device_id)
        if t is None:
            t = self._tracks[device_id] = _Track()
        return t

    def reading(self, device_id: str, at_s: float) -> None:
        with self._lock:
            t = self._track(device_id)
            if t is None:
                return
            device = self._index[device_id]
            stale_after = self.stale_factor * device.interval_s
            broken = (
                t.last_seen is None
                or at_s - t.last_seen > stale_after
                or (t.status is DeviceState.OFFLINE and t.status_at >= t.last_seen)
                or (t.offline_at is not None and t.offline_at >= t.last_seen)
            )
            if broken and (t.last_seen is None or at_s >= t.last_seen):
                t.run_start = at_s
            if t.last_seen is None or at_s > t.last_seen:
                t.last_seen = at_s

    def status(self, status: DeviceStatus, at_s: float) -> None:
        with self._lock:
            t = self._track(status.device_id)
            if t is None or at_s < t.status_at:  # an older status than the one in force
                return
            t.status, t.status_at, t.status_reason = status.state, at_s, cut(status.reason)

    def detection(self, d: Detection, at_s: float) -> None:
        if d.kind not in (DetectionKind.OFFLINE, DetectionKind.SENSOR_FAULT):
            return
        with self._lock:
            t = self._track(d.device_id)
            if t is None:
                return
            open_ = d.state is not DetectionState.CLEAR
            if d.kind == DetectionKind.OFFLINE:
                t.offline_at = (t.offline_at if t.offline_at is not None else at_s) if open_ else None
            else:
                t.fault_at = (t.fault_at if t.fault_at is not None else at_s) if open_ else None
                faults = d.evidence.get("faults") if isinstance(d.evidence, dict) else None
                what = ", ".join(str(f) for f in faults[:5]) if isinstance(faults, list) else ""
                t.fault_reason = cut(what) if open_ else ""

    def dead_letter(self, letter: DeadLetter, at_s: float) -> None:
        if letter.reason not in FAULT_REASONS:
            return
        where = topics.parse_device_topic(letter.mqtt_topic)
        if where is None:
            return
        with self._lock:
            t = self._track(where.device_id)
            if t is None:
                return
            what = f"{letter.reason.value}" + (f" {letter.field}" if letter.field else "") + f": {letter.message}"
            t.dead_letters.append((at_s, cut(what, 120)))

    # ------------------------------------------------------------------ records (Kafka or the embedded bus)
    def apply_record(self, topic: str, key: bytes | None, value: bytes | None, at_s: float) -> bool:
        """One record of a topic the console follows; False when it could not be read or is not about
        a device (malformed, a lifecycle tick, another topic). Never raises for bad input; evidence
        about devices outside the registry is dropped (counted in ``ignored``)."""
        if not value:
            return False
        try:
            if topic in topics.TELEMETRY_TOPICS:
                ids = list(_reading_devices(key, value))
                for device_id in ids:
                    self.reading(device_id, at_s)
                return bool(ids)
            if topic == topics.DEVICE_STATUS:
                self.status(decode(DeviceStatus, value), at_s)
            elif topic in (topics.DETECTIONS, topics.DETECTIONS_URGENT):
                if b'"tocsin.lifecycle_tick"' in value[:60]:
                    return False
                self.detection(decode(Detection, value), at_s)
            elif topic == topics.DEADLETTER:
                self.dead_letter(decode(DeadLetter, value), at_s)
            else:
                return False
        except (ValidationError, ValueError, PoisonRecord):
            return False
        return True

    # ------------------------------------------------------------------ states
    def snapshot(self, max_age_s: float = 0.0) -> list[DeviceHealth]:
        """Every registered device with its state now, in the console's order (group, then id);
        ``max_age_s``: the previous snapshot serves if it is at most that old (consoles polling and
        metric scrapes at once cost one judgement of the fleet)."""
        now = self.clock()
        cached = self._snapshot
        if cached is not None and max_age_s > 0 and 0 <= now - cached[0] <= max_age_s:
            return list(cached[1])
        devices: list[Device] = list(getattr(self.registry, "devices", None) or [])
        with self._lock:
            known = {d.device_id for d in devices}
            for gone in [k for k in self._tracks if k not in known]:
                del self._tracks[gone]
            rows = [self._judge(d, self._tracks.get(d.device_id), now) for d in devices]
        rank = {h: i for i, h in enumerate(ORDER)}
        rows.sort(key=lambda r: (rank[r.state], r.device_id))
        self._snapshot = (now, rows)
        return list(rows)

    def counts(self, rows: list[DeviceHealth] | None = None, max_age_s: float = 0.0) -> dict[str, int]:
        out = {h.value: 0 for h in ORDER}
        for r in rows if rows is not None else self.snapshot(max_age_s):
            out[r.state.value] += 1
        return out

    def _judge(self, d: Device, t: _Track | None, now: float) -> DeviceHealth:
        t = t or _NOTHING
        last = t.last_seen

        def row(state: Health, since: float, reason: str) -> DeviceHealth:
            return DeviceHealth(
                d.device_id,
                d.family.value,
                d.site,
                d.area.code,
                d.area.desc,
                d.interval_s,
                state,
                since,
                cut(reason) if reason else "",
                last,
            )

        # 1. offline
        if t.status is DeviceState.OFFLINE and (last is None or t.status_at >= last):
            return row(Health.OFFLINE, t.status_at, f"设备状态：离线（{t.status_reason or '未说明'}）")
        if t.offline_at is not None and (last is None or t.offline_at >= last):
            return row(Health.OFFLINE, t.offline_at, "离线检测：超过上报周期未收到数据")
        # 2. faulty
        faults: list[tuple[float, str]] = []
        if t.status is DeviceState.FAULT:
            faults.append((t.status_at, f"设备自报故障（{t.status_reason or '未说明'}）"))
        if t.fault_at is not None:
            faults.append((t.fault_at, f"传感器故障{'：' + t.fault_reason if t.fault_reason else ''}"))
        # (an arrival stamped ahead of this clock, another host's, counts as recent)
        recent = [(at, what) for at, what in t.dead_letters if now - at <= self.fault_window_s]
        if recent:
            many = "≥" if len(recent) == DEAD_LETTER_MEMORY else ""
            window = _duration(self.fault_window_s)
            faults.append(
                (min(at for at, _ in recent), f"{window}内{many}{len(recent)} 条死信，最近：{max(recent)[1]}")
            )
        if faults:
            return row(Health.FAULTY, min(at for at, _ in faults), "；".join(what for _, what in faults))
        # 3. stale / unknown, 4. reporting
        stale_after = self.stale_factor * d.interval_s
        if last is None:
            if now - self.silent_since > stale_after:
                return row(
                    Health.STALE,
                    self.silent_since + stale_after,
                    f"至少 {_duration(now - self.silent_since)} 无数据（应每 {_duration(d.interval_s)} 上报）",
                )
            return row(Health.UNKNOWN, self.silent_since, "尚未收到数据")
        if now - last > stale_after:
            return row(
                Health.STALE,
                last + stale_after,
                f"已 {_duration(now - last)} 无数据（应每 {_duration(d.interval_s)} 上报）",
            )
        return row(Health.REPORTING, t.run_start if t.run_start is not None else last, "")


def _reading_devices(key: bytes | None, value: bytes) -> Iterator[str]:
    """The device ids of a telemetry record: its key for a single reading, each reading's for a batch."""
    if is_batch(value):
        for line in unpack(value):
            m = _DEVICE_ID.search(line[:400])
            if m:
                yield m.group(1).decode("utf-8", "replace")
        return
    m = _DEVICE_ID.search(value[:400])
    if m:
        yield m.group(1).decode("utf-8", "replace")
    elif key:
        yield key.decode("utf-8", "replace")


__all__ = ["DeviceHealth", "DeviceHealthModel", "Health", "ORDER", "cut"]
