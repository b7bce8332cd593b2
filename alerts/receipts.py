"""SMS delivery receipts: the carrier's callback, turned into an audit record.

The carrier posts ``{message_id, to, status, idempotency_key, delivered_at}`` to the worker's
``/callbacks/sms``; the idempotency key (``<alert identifier>:<recipient>``) names the alert message,
and the identifier (``<area><org><onset>-<family>-<incident>-<revision>``, see alerts/engine.py)
names its fingerprint and revision. The record goes to ``alerts.deliveries`` with outcome
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


def parse_identifier(identifier: str) -> tuple[str, int]:
    """(fingerprint, revision) of an alert identifier made by alerts/engine.py; ValueError otherwise."""
    try:
        prefix, family, incident, revision = identifier.rsplit("-", 3)
        area = prefix[:6]
        if not (area.isdigit() and revision.isdigit()):
            raise ValueError
        return f"{family}:{area}:{incident}", int(revision)
    except ValueError as exc:
        raise ValueError(f"not a Tocsin alert identifier: {identifier!r}") from exc


def receipt_record(receipt: SmsReceipt, correlation_id: str = "") -> DeliveryRecord:
    """``correlation_id``: from the callback URL's query (the SMS adapter puts it there per message)."""
    alert_id, _, recipient = receipt.idempotency_key.rpartition(":")
    if recipient != receipt.to:
        raise ValueError("idempotency key and recipient disagree")
    fingerprint, revision = parse_identifier(alert_id)
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
