"""Transport settings: what each client library is handed (schemas/transport.py)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from tocsin.schemas.transport import (
    KAFKA_PYTHON_RECEIVE_MAX_BYTES,
    KafkaTransport,
    MqttTransport,
    kafka_python_kwargs,
    mqtt_tls_context,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(REPO / "deploy" / "pki.sh"), str(d)], check=True, capture_output=True, timeout=60)
    return str(d / "ca.crt")


def test_plaintext_kafka_adds_only_the_frame_limit_above_a_fetch() -> None:
    # kafka-python 2.3's consumer fetches up to 52,428,800 bytes (fetch_max_bytes) but by default
    # refuses frames above 1,000,000 bytes (dpkp/kafka-python#3074): the limit must cover a fetch.
    assert kafka_python_kwargs(KafkaTransport()) == {"receive_message_max_bytes": 100 * 1024 * 1024}
    assert KAFKA_PYTHON_RECEIVE_MAX_BYTES >= 52_428_800


def test_sasl_ssl_gives_kafka_python_scram_over_a_verifying_tls_context(ca: str) -> None:
    t = KafkaTransport(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="gw", kafka_sasl_password="s3cret", kafka_ssl_ca=ca
    )
    kw = kafka_python_kwargs(t)
    ctx = kw.pop("ssl_context")
    assert kw == {
        "receive_message_max_bytes": KAFKA_PYTHON_RECEIVE_MAX_BYTES,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gw",
        "sasl_plain_password": "s3cret",
    }
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="SASL_USERNAME"):
        KafkaTransport(kafka_security_protocol="SASL_SSL", kafka_sasl_username="gw")


def test_mqtt_is_plain_without_a_ca_and_verified_with_one(ca: str) -> None:
    assert mqtt_tls_context(MqttTransport()) is None
    ctx = mqtt_tls_context(MqttTransport(mqtt_tls_ca=ca))
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_mqtt_client_certificate_needs_its_key_and_tls() -> None:
    with pytest.raises(ValidationError):
        MqttTransport(mqtt_tls_cert="client.crt")
    with pytest.raises(ValidationError):
        MqttTransport(mqtt_tls_cert="client.crt", mqtt_tls_key="client.key")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOCSIN_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TOCSIN_KAFKA_SASL_USERNAME", "worker")
    monkeypatch.setenv("TOCSIN_KAFKA_SASL_PASSWORD", "pw")
    assert kafka_python_kwargs()["sasl_plain_username"] == "worker"
    assert "ssl_context" not in kafka_python_kwargs()
