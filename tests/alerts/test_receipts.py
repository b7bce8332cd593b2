"""Carrier delivery receipts become audit records naming the alert message and its incident."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from tocsin.alerts.adapters.sms import receipt_callback_url
from tocsin.alerts.receipts import SmsReceipt, parse_message_key, receipt_record


def receipt(**kw: object) -> SmsReceipt:
    base = {
        "message_id": "m-1",
        "to": "+8613800000001",
        "status": "DELIVRD",
        "idempotency_key": "hazmat:330110:gas_leak#2:+8613800000001",
        "delivered_at": "2026-11-29T08:02:20+00:00",
        "extra": "ignored",
    }
    return SmsReceipt.model_validate(base | kw)


def test_message_key_names_fingerprint_and_revision() -> None:
    assert parse_message_key("hazmat:330110:gas_leak#2") == ("hazmat:330110:gas_leak", 2)
    assert parse_message_key("hydro:110105:offline.gateway-gw1#13") == ("hydro:110105:offline.gateway-gw1", 13)
    for bad in ("something-else", "11010500000000_20240701195942_0", "hazmat:x:gas#1", "hazmat:330110:gas#x"):
        with pytest.raises(ValueError, match="not a Tocsin message key"):
            parse_message_key(bad)


def test_receipt_record() -> None:
    record = receipt_record(receipt())
    assert (record.alert_id, record.fingerprint, record.revision) == (
        "hazmat:330110:gas_leak#2",
        "hazmat:330110:gas_leak",
        2,
    )
    assert (record.channel, record.outcome, record.recipient) == ("sms", "delivered", "+861****0001")
    assert record.correlation_id == ""
    assert (
        receipt_record(receipt(), "gw1-RG01-2026-11-29T16:02:17Z-7").correlation_id == "gw1-RG01-2026-11-29T16:02:17Z-7"
    )
    assert receipt_record(receipt(status="UNDELIV")).outcome == "undelivered"
    with pytest.raises(ValueError, match="disagree"):
        receipt_record(receipt(to="+8613800000009"))


def test_callback_url_carries_the_correlation_id() -> None:
    assert receipt_callback_url("http://w:6066/callbacks/sms", "") == "http://w:6066/callbacks/sms"
    url = receipt_callback_url("http://w:6066/callbacks/sms?a=1", "gw1 RG01&x")
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("w:6066", "/callbacks/sms")
    assert parse_qsl(parts.query) == [("a", "1"), ("correlation_id", "gw1 RG01&x")]
