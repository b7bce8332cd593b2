"""SMS delivery receipts: the carrier's callback, turned into an audit record.

The carrier posts ``{message_id, to, status, idempotency_key, delivered_at}`` to the worker's
``/callbacks/sms``; the idempotency key (``<message key>:<recipient>``) names the alert message:
the message key (``<fingerprint>#<revision>``, alerts/notify.py ``message_key``) is the record's
``alert_id`` and gives its fingerprint and revision. The record goes to ``alerts.deliveries`` with outcome
``delivered`` (or ``undelivered`` for any other carrier status), so the after-action review shows
not only that the carrier accepted a message but that the phone received it.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerts.adapters.sms import mask_phone
from schemas.delivery import DeliveryRecord


class SmsReceipt(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(min_length=1, max_length=200)
    to: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$")
    status: str = Field(min_length=1, max_length=40)
    idempotency_key: str = Field(min_length=3, max_length=400)
    delivered_at: AwareDatetime


def parse_message_key(key: str) -> tuple[str, int]:
    """(fingerprint, revision) of a message key ``<family>:<area>:<incident>#<revision>``; ValueError otherwise."""
    try:
        fingerprint, revision = key.rsplit("#", 1)
        family, area, incident = fingerprint.split(":", 2)
        if not (family and incident and area.isdigit() and revision.isdigit()):
            raise ValueError
        return fingerprint, int(revision)
    except ValueError as exc:
        raise ValueError(f"not a Tocsin message key: {key!r}") from exc


def receipt_record(receipt: SmsReceipt, correlation_id: str = "") -> DeliveryRecord:
    """``correlation_id``: from the callback URL's query (the SMS adapter puts it there per message)."""
    alert_id, _, recipient = receipt.idempotency_key.rpartition(":")
    if recipient != receipt.to:
        raise ValueError("idempotency key and recipient disagree")
    fingerprint, revision = parse_message_key(alert_id)
    delivered = receipt.status.upper() == "DELIVRD"
    return DeliveryRecord(
        alert_id=alert_id,
        fingerprint=fingerprint,
        revision=revision,
        channel="sms",
        recipient=mask_phone(receipt.to),
        outcome="delivered" if delivered else "undelivered",
        attempts=0,
        detail=f"carrier receipt {receipt.status} for {receipt.message_id}",
        ts=receipt.delivered_at,
        correlation_id=correlation_id[:200],
    )
