"""Parse and validate one MQTT telemetry message: accepted reading or dead letter, never an exception.

Pure apart from the duplicate window it is given; the clock is the ``received_at`` argument.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from tocsin.ingest.mseed import MseedError, decode_mseed, looks_like_mseed, to_packet_fields
from tocsin.schemas.common import Family
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.registry import RegistryLike
from tocsin.schemas.status import DeviceStatus
from tocsin.schemas.telemetry import TELEMETRY_ADAPTER, Telemetry, family_of
from tocsin.schemas.topics import DeviceTopic, kafka_telemetry, parse_device_topic
from tocsin.schemas.wire import encode

_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "out_of_range"}
_NONFINITE_ERRORS = {"finite_number"}


@dataclass(frozen=True, kw_only=True)  # by name only: a positional call put the age in the skew slot
class Limits:
    max_payload_bytes: int = 262_144
    max_status_bytes: int = 4_096  # a status is "online"/"offline" or a small JSON object
    max_future_skew_s: float = 300.0
    max_age_s: float = 7 * 86_400.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Accepted:
    reading: Telemetry
    kafka_topic: str
    key: bytes
    value: bytes  # the canonical re-encoding of the reading


class DuplicateWindow:
    """Remembers the last ``size`` sequence numbers per device (LRU over devices, bounded)."""

    def __init__(self, size: int = 1024, max_devices: int = 100_000) -> None:
        self._size = size
        self._max_devices = max_devices
        self._seen: OrderedDict[str, OrderedDict[int, None]] = OrderedDict()

    def check_and_add(self, device_id: str, seq: int) -> bool:
        """True when ``seq`` was already seen for this device; otherwise records it."""
        seqs = self._seen.get(device_id)
        if seqs is None:
            seqs = self._seen[device_id] = OrderedDict()
            if len(self._seen) > self._max_devices:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(device_id)
        if seq in seqs:
            return True
        seqs[seq] = None
        if len(seqs) > self._size:
            seqs.popitem(last=False)
        return False

    def forget(self, device_id: str, seq: int) -> None:
        """Undo ``check_and_add`` when the record could not be delivered, so a redelivery is accepted."""
        seqs = self._seen.get(device_id)
        if seqs is not None:
            seqs.pop(seq, None)


def mseed_packet(payload: bytes) -> dict[str, Any]:
    """The SeismicPacket fields of a binary miniSEED payload (one or more records of one channel).

    Consecutive records are merged into one packet when they continue each other (same channel and
    rate, each starting where the previous one ended, within half a sample); otherwise MseedError.
    The first record's sequence number becomes ``seq`` (duplicate detection).
    """
    records = decode_mseed(payload)
    if not records:
        raise MseedError("no records")
    first = records[0]
    samples: list[float] = []
    expected = first.start
    for rec in records:
        if rec.channel != first.channel or rec.sample_rate_hz != first.sample_rate_hz:
            raise MseedError("records of different channels or rates in one payload")
        if rec.sample_rate_hz > 0 and abs((rec.start - expected).total_seconds()) > 0.5 / rec.sample_rate_hz:
            raise MseedError(f"gap or overlap between records at {rec.start.isoformat()}")
        samples.extend(float(x) for x in rec.samples)
        if rec.sample_rate_hz > 0:
            try:  # a rate of 1e-30 Hz puts the record's end beyond any datetime
                expected = rec.start + timedelta(seconds=rec.num_samples / rec.sample_rate_hz)
            except OverflowError:
                raise MseedError(
                    f"{rec.num_samples} samples at {rec.sample_rate_hz:g} Hz end beyond any representable time"
                ) from None
    fields = to_packet_fields(first)
    fields["samples"] = samples
    if first.sequence_number is not None:
        fields["seq"] = first.sequence_number
    return fields


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


class _NonFinite(ValueError):
    pass


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _parse_json(payload: bytes) -> Any:
    """The payload's JSON, as ``json.loads`` reads it (NaN and infinity refused with _NonFinite).

    Fast path: orjson, which reads the same documents the same way except that it refuses NaN,
    infinity, numbers beyond a double and lone surrogates (-> the reference path below decides what
    they are) and reads integers beyond 64 bits as floats (a run of 19 digits anywhere -> the
    reference path, which keeps them exact)."""
    if not _LONG_DIGITS.search(payload):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    return _DECODER.decode(payload.decode("utf-8"))


def validate_telemetry(
    topic: str,
    payload: bytes,
    received_at: datetime,
    *,
    limits: Limits = DEFAULT_LIMITS,
    registry: RegistryLike | None = None,
    duplicates: DuplicateWindow | None = None,
    where: DeviceTopic | None = None,
) -> Accepted | DeadLetter:
    """``where``: ``parse_device_topic(topic)`` when the caller already has it (else parsed here)."""

    def dead(reason: Reason, message: str, field: str | None = None) -> DeadLetter:
        return DeadLetter.of(
            payload, reason=reason, message=message, mqtt_topic=topic, received_at=received_at, field=field
        )

    if len(payload) > limits.max_payload_bytes:
        return dead(Reason.TOO_LARGE, f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}")
    if where is None:
        where = parse_device_topic(topic)
    if where is None or where.leaf != "telemetry":
        return dead(Reason.BAD_TOPIC, "topic is not tocsin/v1/<family>/<site>/<device_id>/telemetry")
    reading = _fast_reading(payload, where.family)
    if reading is None:
        got = _strict_reading(payload, where, dead)
        if isinstance(got, DeadLetter):
            return got
        reading = got
    mismatch = _identity_mismatch(where, reading)
    if mismatch:
        return dead(Reason.IDENTITY_MISMATCH, mismatch[1], mismatch[0])
    if registry is not None:
        dev = registry.get(reading.device_id)
        if dev is None:
            return dead(Reason.UNKNOWN_DEVICE, f"device {reading.device_id} is not in the registry", "device_id")
        if dev.family != where.family or dev.site != reading.site:
            return dead(
                Reason.IDENTITY_MISMATCH,
                f"registry has {reading.device_id} as {dev.family}/{dev.site}, not {where.family}/{reading.site}",
                "site",
            )
    if reading.ts > received_at + timedelta(seconds=limits.max_future_skew_s):
        ahead = (reading.ts - received_at).total_seconds()
        return dead(Reason.FUTURE_TIMESTAMP, f"ts is {ahead:.0f} s ahead of the gateway clock", "ts")
    if reading.ts < received_at - timedelta(seconds=limits.max_age_s):
        age = (received_at - reading.ts).total_seconds()
        return dead(Reason.STALE_TIMESTAMP, f"ts is {age:.0f} s old (limit {limits.max_age_s:.0f} s)", "ts")
    if duplicates is not None and reading.seq is not None:
        if duplicates.check_and_add(reading.device_id, reading.seq):
            return dead(Reason.DUPLICATE, f"seq {reading.seq} of {reading.device_id} already received", "seq")
    return Accepted(
        reading=reading,
        kafka_topic=kafka_telemetry(where.family),
        key=reading.device_id.encode("utf-8"),
        value=encode(reading),
    )


def _fast_reading(payload: bytes, family: Family) -> Telemetry | None:
    """The reading of a well-formed JSON payload of ``family``, parsed and validated in one pass by
    pydantic's own JSON reader; None for anything else (miniSEED, a 19-digit run, invalid JSON,
    NaN, a schema or range error, another family), which :func:`_strict_reading` then reads and
    classifies. On a payload both accept they give the same reading (tests/ingest/test_validate.py)."""
    if payload[:1] != b"{" or _LONG_DIGITS.search(payload) or (family is Family.SEISMIC and looks_like_mseed(payload)):
        return None
    try:
        reading: Telemetry = TELEMETRY_ADAPTER.validate_json(payload)
    except ValueError:  # ValidationError included
        return None
    return reading if reading.family is family else None


def _strict_reading(payload: bytes, where: DeviceTopic, dead: Callable[..., DeadLetter]) -> Telemetry | DeadLetter:
    """The reference path: decode (miniSEED or JSON as ``json.loads`` reads it), then validate the
    object; every refusal becomes its dead letter with its reason."""
    if where.family is Family.SEISMIC and looks_like_mseed(payload):
        try:
            obj = mseed_packet(payload)
        except MseedError as exc:
            return dead(Reason.UNDECODABLE, f"miniSEED: {exc}")
        obj |= {"device_id": where.device_id, "site": where.site}
    else:
        try:
            obj = _parse_json(payload)
        except _NonFinite as exc:
            return dead(Reason.NON_FINITE, f"{exc} is not a finite number")
        except (UnicodeDecodeError, ValueError) as exc:
            return dead(Reason.UNDECODABLE, f"payload is not UTF-8 JSON: {exc}")
        except RecursionError:  # e.g. b"[" * 100_000, well under the size limit
            return dead(Reason.UNDECODABLE, "payload JSON is nested too deeply")
    if not isinstance(obj, dict):
        return dead(Reason.SCHEMA, f"payload must be a JSON object, got {type(obj).__name__}")
    type_name = obj.get("type")
    fam = family_of(type_name) if isinstance(type_name, str) else None
    if fam is not None and fam != where.family:
        return dead(Reason.IDENTITY_MISMATCH, f"type {type_name} is not {where.family} telemetry", "type")
    try:
        reading: Telemetry = TELEMETRY_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        return _classify(exc, dead)
    return reading


def _identity_mismatch(where: DeviceTopic, reading: Telemetry) -> tuple[str, str] | None:
    if reading.device_id != where.device_id:
        return (
            "device_id",
            f"payload device_id {reading.device_id!r} differs from topic device {where.device_id!r}",
        )
    if reading.site != where.site:
        return "site", f"payload site {reading.site!r} differs from topic site {where.site!r}"
    return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    # A discriminated union puts the payload type first: ('hydro.rain', 'rain_mm') -> 'rain_mm'.
    parts = loc[1:] if loc and isinstance(loc[0], str) and loc[0] in _TYPE_TAGS else loc
    return ".".join(str(p) for p in parts)


_TYPE_TAGS = {"fire.detection", "hydro.rain", "hydro.level", "seismic.waveform", "hazmat.gas"}


def _classify(exc: ValidationError, dead: Callable[[Reason, str, str | None], DeadLetter]) -> DeadLetter:
    errors = exc.errors(include_url=False)
    summary = "; ".join(f"{_field_path(e['loc']) or '(payload)'}: {e['msg']}" for e in errors[:5])
    field = _field_path(errors[0]["loc"]) or None
    kinds = {e["type"] for e in errors}
    if kinds & _NONFINITE_ERRORS:
        return dead(Reason.NON_FINITE, summary, field)
    if kinds <= _RANGE_ERRORS:
        return dead(Reason.OUT_OF_RANGE, summary, field)
    return dead(Reason.SCHEMA, summary, field)


def parse_status(
    topic: str, payload: bytes, received_at: datetime, *, limits: Limits = DEFAULT_LIMITS
) -> DeviceStatus | DeadLetter:
    """A device's retained status: bare ``online``/``offline`` (typical last will) or JSON with ``state``."""

    def dead(reason: Reason, message: str, field: str | None = None) -> DeadLetter:
        return DeadLetter.of(
            payload, reason=reason, message=message, mqtt_topic=topic, received_at=received_at, field=field
        )

    if len(payload) > limits.max_status_bytes:
        return dead(Reason.TOO_LARGE, f"status payload of {len(payload)} bytes exceeds {limits.max_status_bytes}")
    where = parse_device_topic(topic)
    if where is None or where.leaf != "status":
        return dead(Reason.BAD_TOPIC, "topic is not tocsin/v1/<family>/<site>/<device_id>/status")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return dead(Reason.UNDECODABLE, "status payload is not UTF-8")
    fields: dict[str, object] = {"state": text, "ts": received_at, "reason": ""}
    if text.startswith("{"):
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            return dead(Reason.UNDECODABLE, f"status payload is not JSON: {exc}")
        except RecursionError:
            return dead(Reason.UNDECODABLE, "status payload JSON is nested too deeply")
        if not isinstance(obj, dict):
            return dead(Reason.SCHEMA, "status payload must be a JSON object")
        # The topic names the device; a payload may repeat its identity but not contradict it.
        identity = {"device_id": where.device_id, "site": where.site, "family": where.family}
        for name, expected in identity.items():
            if name in obj and obj.pop(name) != expected:
                return dead(Reason.IDENTITY_MISMATCH, f"status payload {name} differs from the topic", name)
        fields.update(obj)
    elif text in ("offline",):
        fields["reason"] = "last-will"
    try:
        return DeviceStatus(device_id=where.device_id, site=where.site, family=where.family, **fields)  # type: ignore[arg-type]
    except ValidationError as exc:
        return _classify(exc, dead)
