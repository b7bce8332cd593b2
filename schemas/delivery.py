"""Delivery record: the audit of one notification to one channel (and its attempts)."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from tocsin.schemas.common import WireModel


class DeliveryRecord(WireModel):
    alert_id: str
    fingerprint: str
    revision: int = Field(ge=0)
    channel: str
    recipient: str = Field(description="masked phone number, topic or area codes")
    outcome: str = Field(description="accepted, duplicate, retry (gave up), rejected, suppressed")
    attempts: int = Field(ge=0)
    detail: str = ""
    ts: AwareDatetime
    correlation_id: str = ""
