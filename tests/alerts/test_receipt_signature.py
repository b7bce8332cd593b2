"""Signed SMS receipts (alerts/receipts.py): the wire format, and what is refused."""

from __future__ import annotations

import hashlib
import hmac

from tocsin.alerts.receipts import MAX_SKEW_S, SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers, verify_receipt

SECRET = "receipt-secret-4f1d9a"
BODY = b'{"message_id":"sm-1","to":"+8613800001234","status":"DELIVRD"}'
NOW = 1_784_000_000.0


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The format a carrier integrator implements: hex HMAC-SHA256(secret, "<unix time>." + body)."""
    headers = signed_headers(SECRET, BODY, NOW)
    assert headers[TIMESTAMP_HEADER] == "1784000000"
    mac = hmac.new(SECRET.encode(), b"1784000000." + BODY, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={mac}"
    assert verify_receipt(SECRET, headers, BODY, NOW + 5) is None


def test_forged_tampered_stale_and_unsigned_receipts_are_refused() -> None:
    good = signed_headers(SECRET, BODY, NOW)
    assert verify_receipt(SECRET, {}, BODY, NOW) is not None
    assert verify_receipt(SECRET, signed_headers("guessed-secret", BODY, NOW), BODY, NOW) == "bad signature"
    assert verify_receipt(SECRET, good, BODY.replace(b"DELIVRD", b"UNDELIV"), NOW) == "bad signature"
    assert verify_receipt(SECRET, good, BODY, NOW + MAX_SKEW_S + 1) == "stale or future timestamp"
    assert verify_receipt(SECRET, {**good, TIMESTAMP_HEADER: "1784000001"}, BODY, NOW) == "bad signature"
    assert verify_receipt(SECRET, {**good, TIMESTAMP_HEADER: "soon"}, BODY, NOW) == "malformed timestamp"
    # no secret configured: nothing can be authenticated, so nothing is accepted
    assert verify_receipt("", good, BODY, NOW) is not None
