"""Decoding of the Kafka records the worker reads, one function per topic.

Each takes the record value exactly as read (``None`` for a null value) and returns the decoded
model, or raises :class:`PoisonRecord` with a dead-letter reason: nothing else, whatever the bytes
(tests/schemas/test_records_fuzz.py). The worker dead-letters a poison record and goes on.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.alert import Alert
from schemas.deadletter import WorkerReason
from schemas.detection import Detection, LifecycleTick
from schemas.telemetry import TELEMETRY_ADAPTER, DeadmanTick, Telemetry

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


def decode_telemetry(raw: bytes | None) -> Telemetry | DeadmanTick:
    """``telemetry.<family>``: a device reading, or the worker's own deadman tick."""
    if raw is not None and DeadmanTick.is_tick(raw):
        tick: DeadmanTick = _decode(DeadmanTick, raw, "deadman tick")
        return tick
    reading: Telemetry = _decode(TELEMETRY_ADAPTER, raw, "telemetry")
    return reading


def decode_detection(raw: bytes | None) -> Detection | LifecycleTick:
    """``detections`` and ``detections.urgent``: a detection, or the worker's own lifecycle tick."""
    if raw is not None and LifecycleTick.is_tick(raw):
        tick: LifecycleTick = _decode(LifecycleTick, raw, "lifecycle tick")
        return tick
    detection: Detection = _decode(Detection, raw, "detection")
    return detection


def decode_alert(raw: bytes | None) -> Alert:
    """``alerts``: an alert message (Alert, Update or Cancel)."""
    alert: Alert = _decode(Alert, raw, "alert")
    return alert
