"""Decoding of the Kafka records the worker reads, one function per topic.

Each takes the record value exactly as read (``None`` for a null value) and returns the decoded
model, or raises :class:`PoisonRecord` with a dead-letter reason: nothing else, whatever the bytes
(tests/schemas/test_records_fuzz.py). The worker dead-letters a poison record and goes on.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Discriminator, Field, Tag, TypeAdapter, ValidationError

from tocsin.schemas.alert import Alert
from tocsin.schemas.deadletter import WorkerReason
from tocsin.schemas.detection import Detection, LifecycleTick
from tocsin.schemas.telemetry import (
    DeadmanTick,
    FireDetection,
    GasReading,
    RainIncrement,
    SeismicPacket,
    Telemetry,
    WaterLevel,
)

T = TypeVar("T")


class PoisonRecord(ValueError):
    """A record that is not a message of its topic; ``reason`` says how (undecodable or schema)."""

    def __init__(self, reason: WorkerReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decode(validator: TypeAdapter[T] | type[BaseModel], raw: bytes | None, what: str) -> Any:
    if not raw:
        raise PoisonRecord(WorkerReason.UNDECODABLE, f"empty {what} record")
    try:
        if isinstance(validator, TypeAdapter):
            return validator.validate_json(raw)
        return validator.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        reason = WorkerReason.UNDECODABLE if errors and errors[0]["type"] == "json_invalid" else WorkerReason.SCHEMA
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"])
        raise PoisonRecord(reason, f"{what}: {where + ': ' if where else ''}{first['msg']}"[:2000]) from None


# One parse per record, whatever the key order or spacing of the JSON (a byte-prefix check for the
# ticks would send a tick written by another JSON encoder to the wrong model).
_TELEMETRY_RECORD: TypeAdapter[Telemetry | DeadmanTick] = TypeAdapter(
    Annotated[
        FireDetection | RainIncrement | WaterLevel | SeismicPacket | GasReading | DeadmanTick,
        Field(discriminator="type"),
    ]
)


def _detection_or_tick(value: Any) -> str:
    return "tick" if isinstance(value, dict) and value.get("type") == "tocsin.lifecycle_tick" else "detection"


_DETECTION_RECORD: TypeAdapter[Detection | LifecycleTick] = TypeAdapter(
    Annotated[
        Annotated[Detection, Tag("detection")] | Annotated[LifecycleTick, Tag("tick")],
        Discriminator(_detection_or_tick),
    ]
)


def decode_telemetry(raw: bytes | None) -> Telemetry | DeadmanTick:
    """``telemetry.<family>``: a device reading, or the worker's own deadman tick."""
    record: Telemetry | DeadmanTick = _decode(_TELEMETRY_RECORD, raw, "telemetry")
    return record


def decode_detection(raw: bytes | None) -> Detection | LifecycleTick:
    """``detections`` and ``detections.urgent``: a detection, or the worker's own lifecycle tick."""
    record: Detection | LifecycleTick = _decode(_DETECTION_RECORD, raw, "detection")
    return record


def decode_alert(raw: bytes | None) -> Alert:
    """``alerts``: an alert message (Alert, Update or Cancel)."""
    alert: Alert = _decode(Alert, raw, "alert")
    return alert
