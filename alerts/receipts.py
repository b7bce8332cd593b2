"""SMS delivery receipts: the carrier's callback, turned into an audit record.

The carrier posts ``{message_id, to, status, idempotency_key, delivered_at}`` to the worker's
``/callbacks/sms``; the idempotency key (``<message key>:<recipient>``) names the alert message:
the message key (``<fingerprint>#<revision>``, alerts/notify.py ``message_key``) is the record's
``alert_id`` and gives its fingerprint and revision. The record goes to ``alerts.deliveries`` with outcome
``delivered`` (or ``undelivered`` for any other carrier status), so the after-action review shows
not only that the carrier accepted a message but that the phone received it.

Receipts are authenticated: the carrier signs each one with the secret it shares with Tocsin
(``TOCSIN_SMS_CALLBACK_SECRET``) and the worker refuses (``401``) any receipt whose signature is
missing, wrong, or older than :data:`MAX_SKEW_S`. The signature is an HMAC-SHA256 over the
timestamp and the raw body (``f"{timestamp}.".encode() + body``), hex in the
``X-Tocsin-Signature: sha256=<hex>`` header with the Unix time in ``X-Tocsin-Timestamp``; the
timestamp bounds how long a captured receipt can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tocsin.alerts.adapters.sms import mask_phone
from tocsin.schemas.delivery import DeliveryRecord

SIGNATURE_HEADER = "X-Tocsin-Signature"
TIMESTAMP_HEADER = "X-Tocsin-Timestamp"
MAX_SKEW_S = 300.0


def receipt_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``f"{timestamp}."`` and the body."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(secret: str, body: bytes, now_s: float) -> dict[str, str]:
    """The headers a carrier sends with a receipt ``body`` at Unix time ``now_s``."""
    ts = str(int(now_s))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: receipt_signature(secret, ts, body)}


def verify_receipt(secret: str, headers: Mapping[str, str], body: bytes, now_s: float) -> str | None:
    """None when the receipt is authentic, else why not. ``headers``: the request's (case-insensitive
    in aiohttp; exact names in a plain dict).

    An empty ``secret`` refuses everything (no receipt can be authenticated)."""
    ts, sig = headers.get(TIMESTAMP_HEADER) or "", headers.get(SIGNATURE_HEADER) or ""
    if not secret:
        return "receipts are not accepted: no TOCSIN_SMS_CALLBACK_SECRET"
    if not ts or not sig:
        return f"unsigned receipt ({TIMESTAMP_HEADER} and {SIGNATURE_HEADER} needed)"
    try:
        ts_s = int(ts)
    except ValueError:
        return "malformed timestamp"
    if abs(now_s - ts_s) > MAX_SKEW_S:
        return "stale or future timestamp"
    expected = receipt_signature(secret, ts, body)
    if not hmac.compare_digest(expected.encode("ascii"), sig.strip().encode("utf-8", "replace")):
        return "bad signature"
    return None


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
