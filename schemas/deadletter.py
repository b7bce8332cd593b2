"""Dead letter: a message the gateway refused, with the raw bytes and the reason."""

from __future__ import annotations

import base64
from enum import StrEnum

from pydantic import AwareDatetime, Field

from schemas.common import WireModel


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


class DeadLetter(WireModel):
    reason: Reason
    message: str = Field(max_length=2000)
    field: str | None = Field(default=None, description="dotted path of the offending field, when known")
    mqtt_topic: str
    received_at: AwareDatetime
    raw_b64: str = Field(description="the payload exactly as received, base64")
    raw_size: int = Field(ge=0)

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)

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
        return cls(
            reason=reason,
            message=message[:2000],
            field=field,
            mqtt_topic=mqtt_topic,
            received_at=received_at,  # type: ignore[arg-type]
            raw_b64=base64.b64encode(raw).decode("ascii"),
            raw_size=len(raw),
        )
