"""Dead letters: a message the gateway refused, or a Kafka record a worker agent could not handle,
each with the raw bytes and the reason."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, Field

from tocsin.schemas.common import WireModel


class Reason(StrEnum):
    UNDECODABLE = "undecodable"  # not UTF-8 / not JSON / not a known binary format
    SCHEMA = "schema"  # JSON that fails validation (missing, wrong type, unknown field)
    NON_FINITE = "non_finite"  # NaN or infinity anywhere
    OUT_OF_RANGE = "out_of_range"  # a value outside its physical range
    IDENTITY_MISMATCH = "identity_mismatch"  # payload names another device, site or family than its topic
    UNKNOWN_DEVICE = "unknown_device"  # not in the device registry (when one is configured)
    FUTURE_TIMESTAMP = "future_timestamp"  # device clock ahead of ours by more than the skew guard
    STALE_TIMESTAMP = "stale_timestamp"  # older than the accepted age
    TOO_LARGE = "too_large"  # payload over the size limit
    DUPLICATE = "duplicate"  # a sequence number already seen within the window
    BAD_TOPIC = "bad_topic"  # topic outside the tocsin/v1 scheme
    INTERNAL = "internal"  # the gateway itself failed on the message (a bug): exception type and message kept


RAW_MAX_BYTES = 262_144
"""At most this much of the payload is kept in a dead letter (the first bytes; ``raw_size`` keeps the
original size), so that a dead letter always fits Kafka's default 1 MiB record limit."""
TOPIC_MAX_CHARS = 1_024
FIELD_MAX_CHARS = 200
MESSAGE_MAX_CHARS = 2_000


def kept_raw(raw: bytes, limit: int) -> dict[str, Any]:
    """The ``raw_b64``, ``raw_size`` and ``raw_truncated`` fields of a dead letter: the first ``limit`` bytes."""
    return {
        "raw_b64": base64.b64encode(raw[:limit]).decode("ascii"),
        "raw_size": len(raw),
        "raw_truncated": len(raw) > limit,
    }


class RawPayload:
    """The payload bytes of a dead letter (its ``raw_b64`` field), decoded."""

    if TYPE_CHECKING:  # the field is declared by each model, in its place in the field order
        raw_b64: str

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)


def printable(text: str, limit: int) -> str:
    """``text`` as valid UTF-8 (lone surrogates written as ``\\udXXX``), cut to ``limit`` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe[:limit]


class DeadLetter(RawPayload, WireModel):
    reason: Reason
    message: str = Field(max_length=MESSAGE_MAX_CHARS)
    field: str | None = Field(
        default=None, max_length=FIELD_MAX_CHARS, description="dotted path of the offending field, when known"
    )
    mqtt_topic: str = Field(max_length=TOPIC_MAX_CHARS)
    received_at: AwareDatetime
    raw_b64: str = Field(description="the payload as received (its first RAW_MAX_BYTES bytes), base64")
    raw_size: int = Field(ge=0, description="size of the payload as received, bytes")
    raw_truncated: bool = Field(default=False, description="raw_b64 holds only the first RAW_MAX_BYTES bytes")

    @classmethod
    def of(
        cls,
        raw: bytes,
        *,
        reason: Reason,
        message: str,
        mqtt_topic: str,
        received_at: object,
        field: str | None = None,
    ) -> DeadLetter:
        """A dead letter whose text fields are always encodable and whose size is bounded (under 1 MiB)."""
        return cls(
            reason=reason,
            message=printable(message, MESSAGE_MAX_CHARS),
            field=None if field is None else printable(field, FIELD_MAX_CHARS),
            mqtt_topic=printable(mqtt_topic, TOPIC_MAX_CHARS),
            received_at=received_at,  # type: ignore[arg-type]
            **kept_raw(raw, RAW_MAX_BYTES),
        )


# base64 makes 4 bytes of 3: 700,000 raw bytes stay well under Kafka's default 1 MiB record limit
WORKER_RAW_MAX = 700_000


class WorkerReason(StrEnum):
    """Why the worker set a Kafka record aside (``worker.deadletter``)."""

    UNDECODABLE = "undecodable"  # empty, not UTF-8, or not JSON
    SCHEMA = "schema"  # JSON, but not a message of the topic's models
    PROCESSING = "processing"  # decoded, but handling it raised (a detector, the alert engine, delivery)


class WorkerDeadLetter(RawPayload, WireModel):
    """A Kafka record a worker agent could not handle, kept with its bytes and where it came from.

    The agent goes on with the next record after producing this; the source offset is committed
    only once Kafka has the dead letter."""

    reason: WorkerReason
    agent: str = Field(min_length=1, max_length=100, description="Faust agent name, e.g. detect-seismic")
    topic: str = Field(description="source topic")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    exception_type: str = Field(max_length=200, description="qualified class name of what was raised")
    message: str = Field(max_length=2000, description="the exception's message (truncated)")
    failed_at: AwareDatetime
    key_b64: str | None = Field(default=None, description="the record key exactly as read, base64")
    raw_b64: str = Field(description="the record value as read, base64 (empty for a null value)")
    raw_size: int = Field(ge=0, description="size of the value as read, bytes")
    raw_truncated: bool = Field(
        default=False, description="only the first WORKER_RAW_MAX bytes are kept (Kafka's 1 MiB record limit)"
    )
    correlation_id: str = ""
    batch_index: int | None = Field(
        default=None,
        ge=0,
        description="the reading's index in a batch record (schemas/batch.py); raw_b64 is then that reading's bytes",
    )

    @classmethod
    def of(
        cls,
        raw: bytes | None,
        *,
        reason: WorkerReason,
        agent: str,
        topic: str,
        partition: int,
        offset: int,
        exc: BaseException,
        failed_at: object,
        key: bytes | None = None,
        correlation_id: str = "",
        batch_index: int | None = None,
    ) -> WorkerDeadLetter:
        kind = type(exc)
        return cls(
            reason=reason,
            agent=agent[:100],
            topic=topic,
            partition=partition,
            offset=offset,
            exception_type=f"{kind.__module__}.{kind.__qualname__}"[:200],
            message=str(exc)[:2000],
            failed_at=failed_at,  # type: ignore[arg-type]
            key_b64=None if key is None else base64.b64encode(key).decode("ascii"),
            **kept_raw(raw or b"", WORKER_RAW_MAX),
            correlation_id=correlation_id[:200],
            batch_index=batch_index,
        )
