"""Simulated field devices: the exact MQTT topics and JSON payloads real devices publish.

Each simulator wraps a registry :class:`~tocsin.schemas.registry.Device` and turns physical quantities
(true rain, river stage, ground velocity, gas concentration, smoke visibility) into what the
instrument reports: tipping-bucket quantisation, sensor lag, drift and noise, 1 s seismic packets,
per-sweep camera detections. Every telemetry payload carries ``type``, ``device_id``, ``site``,
``ts`` (ISO 8601 with the +08:00 offset of the district's devices) and a per-device ``seq`` that
increases by one per message. Status messages go to the device's ``status`` topic: JSON
``{"state": "online", "ts": ...}`` when it connects, and the bare ``offline`` of its MQTT last will
when it drops off (the gateway reads that as reason ``last-will``).

``Message.t`` is the (true) time the device publishes; a device with a skewed clock stamps ``ts``
with its own wrong time.

Stuck instruments keep reporting (fresh ``ts`` and ``seq``) what no longer moves: a gas detector its
last value, a seismic station a flat line (every sample the last value before it stuck: a dead
digitiser), a camera the detections of its last live sweep over and over (a frozen frame: same
bearings, kinds and confidences, nothing new). The scenario builder adds the river gauge's stuck
float and the rain gauge's jammed bucket.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np

from tocsin.schemas import topics
from tocsin.schemas.registry import Device
from tocsin.simulators import physics
from tocsin.simulators.demo import Message

BEIJING = timezone(timedelta(hours=8))

__all__ = [
    "BEIJING",
    "DeviceSim",
    "FireCamera",
    "GasDetector",
    "LevelGauge",
    "Message",
    "RainGauge",
    "SeismicStation",
    "iso",
]


def iso(t: datetime) -> str:
    """Device timestamp: milliseconds, +08:00."""
    return t.astimezone(BEIJING).isoformat(timespec="milliseconds")


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class DeviceSim:
    """Common behaviour: topics, sequence numbers, clock skew, status and last will."""

    def __init__(self, device: Device, *, clock_skew_s: float = 0.0) -> None:
        self.device = device
        self.clock_skew_s = clock_skew_s
        self.seq = 0
        self.telemetry_topic = topics.mqtt_telemetry(device.family, device.site, device.device_id)
        self.status_topic = topics.mqtt_status(device.family, device.site, device.device_id)

    def telemetry(
        self, t: datetime, type_: str, note: str = "", *, stamp: datetime | None = None, **fields: object
    ) -> Message:
        """A telemetry message published at ``t``; ``ts`` is ``stamp`` (default ``t``) on the device's clock."""
        self.seq += 1
        stamp = (stamp or t) + timedelta(seconds=self.clock_skew_s)
        body = {
            "type": type_,
            "device_id": self.device.device_id,
            "site": self.device.site,
            "ts": iso(stamp),
            "seq": self.seq,
            **fields,
        }
        return Message(t, self.telemetry_topic, _dumps(body), note)

    def online(self, t: datetime, note: str = "status: online") -> Message:
        return Message(t, self.status_topic, _dumps({"state": "online", "ts": iso(t), "reason": "connected"}), note)

    def last_will(self, t: datetime, note: str = "status: offline (last will)") -> Message:
        return Message(t, self.status_topic, b"offline", note)


class RainGauge(DeviceSim):
    """Tipping-bucket gauge: reports the bucket tips since its previous report, every ``interval_s``.

    Rain that has not yet filled the bucket stays in it and counts towards the next report.
    """

    def __init__(self, device: Device, *, bucket_mm: float = 0.5, clock_skew_s: float = 0.0) -> None:
        super().__init__(device, clock_skew_s=clock_skew_s)
        if bucket_mm <= 0:
            raise ValueError("bucket_mm must be positive")
        self.bucket_mm = bucket_mm
        self.in_bucket_mm = 0.0

    def tips(self, true_mm: float) -> float:
        """Add ``true_mm`` of rain; the reported (quantised) millimetres."""
        self.in_bucket_mm += max(0.0, true_mm)
        n = math.floor(self.in_bucket_mm / self.bucket_mm + 1e-9)
        self.in_bucket_mm = max(0.0, self.in_bucket_mm - n * self.bucket_mm)
        return round(n * self.bucket_mm, 3)

    def report(self, t: datetime, true_mm: float, interval_s: float | None = None, note: str = "") -> Message:
        return self.telemetry(
            t, "hydro.rain", note, rain_mm=self.tips(true_mm), interval_s=float(interval_s or self.device.interval_s)
        )


class LevelGauge(DeviceSim):
    """Radar / pressure stage gauge: the stage (m above datum) with millimetre noise."""

    def __init__(self, device: Device, *, noise_m: float = 0.004, clock_skew_s: float = 0.0) -> None:
        super().__init__(device, clock_skew_s=clock_skew_s)
        self.noise_m = noise_m

    def report(self, t: datetime, stage_m: float, rng: np.random.Generator, note: str = "") -> Message:
        level = stage_m + float(rng.normal(0.0, self.noise_m))
        return self.telemetry(t, "hydro.level", note, level_m=round(level, 3))


class SeismicStation(DeviceSim):
    """Broadband velocity channel: 1 s packets of ``sample_rate_hz`` samples, quantised to 1 nm/s.

    From ``stuck_from`` on, every sample is the last one before it (a flat line), across calls."""

    def __init__(
        self, device: Device, *, sample_rate_hz: float = 100.0, channel: str = "HHZ", clock_skew_s: float = 0.0
    ) -> None:
        super().__init__(device, clock_skew_s=clock_skew_s)
        self.df = sample_rate_hz
        self.channel = channel
        self.last_sample: float | None = None  # the last sample sent (a stuck digitiser repeats it)

    def packets(
        self, t0: datetime, velocity_ms: np.ndarray, note: str = "", *, stuck_from: datetime | None = None
    ) -> list[Message]:
        per = int(round(self.df))
        out = []
        q = np.round(np.asarray(velocity_ms, dtype=float), 9)
        n = (len(q) // per) * per
        if stuck_from is not None and n:
            first = max(0, math.ceil((stuck_from - t0).total_seconds() * self.df - 1e-9))
            if first < n:
                flat = q[first - 1] if first > 0 else (self.last_sample if self.last_sample is not None else q[0])
                q = q.copy()
                q[first:] = flat
                note = note or "stuck: flat line"
        if n:
            self.last_sample = float(q[n - 1])
        for k in range(0, len(q) - per + 1, per):
            t = t0 + timedelta(seconds=k / self.df)
            samples = [float(x) for x in q[k : k + per]]
            out.append(
                self.telemetry(
                    t + timedelta(seconds=1.0),  # published when the packet is complete
                    "seismic.waveform",
                    note,
                    channel=self.channel,
                    sample_rate_hz=self.df,
                    unit="m/s",
                    samples=samples,
                    stamp=t,  # a packet's ts is its first sample's time
                )
            )
        return out


class GasDetector(DeviceSim):
    """Fixed gas detector: first-order sensor (``t90_s``), zero drift, noise, optional stuck output.

    ``readings`` takes the true concentration (in the detector's unit) at each sampling time.
    """

    def __init__(
        self,
        device: Device,
        *,
        gas: str,
        unit: str,
        t90_s: float = 30.0,
        drift_per_h: float = 0.0,
        noise: float = 0.05,
        resolution: float = 0.1,
        clock_skew_s: float = 0.0,
    ) -> None:
        super().__init__(device, clock_skew_s=clock_skew_s)
        self.gas, self.unit = gas, unit
        self.t90_s, self.drift_per_h, self.noise, self.resolution = t90_s, drift_per_h, noise, resolution

    def response(self, times_s: Sequence[float], true: Sequence[float]) -> np.ndarray:
        """The sensing element's output (no noise, no drift) for the true concentration at each time."""
        if not len(true):
            return np.zeros(0)
        dt = float(times_s[1] - times_s[0]) if len(times_s) > 1 else float(self.device.interval_s)
        return physics.first_order_response(true, dt, self.t90_s)

    def readings(
        self,
        times: Sequence[datetime],
        true: Sequence[float],
        rng: np.random.Generator,
        *,
        stuck_from: datetime | None = None,
        note: str = "",
    ) -> list[Message]:
        if not times:
            return []
        t0 = times[0]
        secs = [(t - t0).total_seconds() for t in times]
        y = self.response(secs, true)
        out: list[Message] = []
        stuck: float | None = None
        limit = 100.0 if self.unit in ("%LEL", "%vol") else 1e6
        for t, s, v in zip(times, secs, y, strict=True):
            value = v + self.drift_per_h * s / 3600.0 + float(rng.normal(0.0, self.noise))
            value = min(limit, max(0.0, round(value / self.resolution) * self.resolution))
            if stuck_from is not None and t >= stuck_from:
                stuck = value if stuck is None else stuck
                value = stuck
            out.append(self.telemetry(t, "hazmat.gas", note, gas=self.gas, value=round(value, 4), unit=self.unit))
        return out


class FireCamera(DeviceSim):
    """A tower camera sweeping 360 degrees every ``sweep_s``; one detection per thing it sees per sweep.

    A target at bearing b is seen ``b/360 * sweep_s`` after the sweep starts. Bearings carry Gaussian
    noise of ``bearing_sigma_deg``. False positives (cloud shadows, dust) arrive at ``fp_rate`` per
    sweep (Poisson) at random bearings with modest confidences.
    """

    def __init__(
        self,
        device: Device,
        *,
        sweep_s: float = 180.0,
        bearing_sigma_deg: float = 0.5,
        mask_m: float = 30.0,
        visibility_km: float = 25.0,
        clock_skew_s: float = 0.0,
    ) -> None:
        super().__init__(device, clock_skew_s=clock_skew_s)
        self.sweep_s, self.bearing_sigma_deg = sweep_s, bearing_sigma_deg
        self.mask_m, self.visibility_km = mask_m, visibility_km
        self.sweep_no = 0
        self.last_seen: list[tuple[float, str, float, str]] = []  # the last live sweep: a frozen frame repeats it

    def sweep(
        self,
        t_start: datetime,
        fires: Sequence[physics.Fire],
        rng: np.random.Generator,
        *,
        fp_rate: float = 0.0,
        min_visibility: float = 0.05,
        frozen: bool = False,
    ) -> list[Message]:
        """One sweep beginning at ``t_start``: messages in the order the camera turns past them.
        ``frozen`` (a stuck camera): the detections of the last live sweep again, nothing new."""
        if frozen:
            return self._emit(
                t_start, [(b, kind, conf, f"stuck: frozen frame ({note})") for b, kind, conf, note in self.last_seen]
            )
        d = self.device
        seen: list[tuple[float, str, float, str]] = []  # (bearing, kind, confidence, note)
        t0 = t_start.timestamp()
        for i, f in enumerate(fires):
            true_b = physics.bearing_deg(d.lat, d.lon, f.lat, f.lon)
            t_s = t0 + true_b / 360.0 * self.sweep_s
            vis = physics.smoke_visibility(f, d.lat, d.lon, t_s, mask_m=self.mask_m, visibility_km=self.visibility_km)
            if vis < min_visibility:
                continue
            dist = physics.distance_km(d.lat, d.lon, f.lat, f.lon)
            kind = "flame" if (t_s - f.ignition_s >= f.flame_after_s and dist <= 12.0) else "smoke"
            conf = physics.fire_confidence(vis) + float(rng.normal(0.0, 0.02))
            b = (true_b + float(rng.normal(0.0, self.bearing_sigma_deg))) % 360.0
            seen.append((b, kind, min(0.99, max(0.0, conf)), f"fire {i}"))
        for _ in range(int(rng.poisson(fp_rate)) if fp_rate > 0 else 0):
            b = float(rng.uniform(0.0, 360.0))
            conf = float(rng.uniform(0.30, 0.66))
            seen.append((b, "smoke", conf, "false positive: " + ("cloud" if rng.random() < 0.5 else "dust")))
        self.last_seen = [(round(b, 2) % 360.0, kind, round(conf, 3), note) for b, kind, conf, note in sorted(seen)]
        return self._emit(t_start, self.last_seen)

    def _emit(self, t_start: datetime, seen: Sequence[tuple[float, str, float, str]]) -> list[Message]:
        out = []
        for b, kind, conf, note in seen:
            t = t_start + timedelta(milliseconds=round(b / 360.0 * self.sweep_s * 1000.0))
            out.append(
                self.telemetry(
                    t,
                    "fire.detection",
                    note,
                    kind=kind,
                    confidence=round(conf, 3),
                    bearing_deg=b,
                    elevation_deg=0.5,
                    sweep=self.sweep_no,
                )
            )
        self.sweep_no += 1
        return out
