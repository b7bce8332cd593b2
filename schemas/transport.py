"""How Tocsin's processes reach the brokers: TLS for MQTT, SASL/SCRAM over TLS for Kafka.

Both come from the environment (prefix ``TOCSIN_``) and default to what the local test harness runs
(plain MQTT, PLAINTEXT Kafka), so every client that builds its connection through this module
follows the deployment's settings without being handed them:

- MQTT: ``TOCSIN_MQTT_TLS_CA`` set -> TLS, the broker's certificate verified against that CA (and
  its host name checked); ``TOCSIN_MQTT_TLS_CERT``/``_KEY``: a client certificate, for brokers that
  ask for one.
- Kafka: ``TOCSIN_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
  ``TOCSIN_KAFKA_SASL_MECHANISM`` (SCRAM-SHA-512 by default), ``TOCSIN_KAFKA_SASL_USERNAME`` /
  ``_PASSWORD`` and ``TOCSIN_KAFKA_SSL_CA`` (the CA that signs the brokers' certificates).

:func:`kafka_python_kwargs` is what kafka-python's producers, consumers and admin clients take;
:func:`kafka_ssl_context` and :class:`KafkaTransport` give aiokafka/Faust the same. No client library
is imported here.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal, Protocol

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class TransportError(ValueError):
    """Inconsistent transport settings (say SASL without a user)."""


class MqttTransport(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_", frozen=True, extra="ignore")

    mqtt_tls_ca: str = Field(
        default="", description="MQTT: CA certificate (PEM) of the broker; set: connect over TLS and verify it"
    )
    mqtt_tls_cert: str = Field(default="", description="MQTT: client certificate (PEM), with TOCSIN_MQTT_TLS_KEY")
    mqtt_tls_key: str = Field(default="", description="MQTT: private key (PEM) of the client certificate")

    @model_validator(mode="after")
    def _pairs(self) -> MqttTransport:
        if bool(self.mqtt_tls_cert) != bool(self.mqtt_tls_key):
            raise TransportError("TOCSIN_MQTT_TLS_CERT and TOCSIN_MQTT_TLS_KEY go together")
        if self.mqtt_tls_cert and not self.mqtt_tls_ca:
            raise TransportError("a client certificate needs TLS: set TOCSIN_MQTT_TLS_CA too")
        return self


class KafkaTransport(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_", frozen=True, extra="ignore")

    kafka_security_protocol: KafkaProtocol = Field(
        default="PLAINTEXT", description="Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(default="SCRAM-SHA-512", description="Kafka: SASL mechanism")
    kafka_sasl_username: str = Field(default="", description="Kafka: SASL user of this process")
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), description="Kafka: SASL password")
    kafka_ssl_ca: str = Field(
        default="", description="Kafka: CA certificate (PEM) of the brokers (SSL/SASL_SSL; empty: system CAs)"
    )

    @model_validator(mode="after")
    def _sasl_user(self) -> KafkaTransport:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise TransportError(
                f"TOCSIN_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "TOCSIN_KAFKA_SASL_USERNAME and TOCSIN_KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")


def _verifying_context(ca: str, cert: str = "", key: str = "") -> ssl.SSLContext:
    """TLS 1.2+, the peer's chain checked against ``ca`` (system CAs when empty), host name checked."""
    ctx = ssl.create_default_context(cafile=ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def mqtt_tls_context(t: MqttTransport | None = None) -> ssl.SSLContext | None:
    """The TLS context for an MQTT connection, or None for plain TCP (no CA configured)."""
    t = t if t is not None else MqttTransport()
    if not t.mqtt_tls_ca:
        return None
    return _verifying_context(t.mqtt_tls_ca, t.mqtt_tls_cert, t.mqtt_tls_key)


class _TlsClient(Protocol):
    def tls_set_context(self, context: ssl.SSLContext | None = None) -> None: ...


def apply_mqtt_tls(client: _TlsClient, t: MqttTransport | None = None) -> bool:
    """Switch a paho client to verified TLS when the settings ask for it; True when they did."""
    ctx = mqtt_tls_context(t)
    if ctx is None:
        return False
    client.tls_set_context(ctx)
    return True


def kafka_ssl_context(t: KafkaTransport | None = None) -> ssl.SSLContext | None:
    """The TLS context for Kafka connections (SSL, SASL_SSL), or None when they are not encrypted."""
    t = t if t is not None else KafkaTransport()
    return _verifying_context(t.kafka_ssl_ca) if t.uses_tls else None


# kafka-python 2.x refuses any response frame above ``receive_message_max_bytes`` (default 1,000,000)
# while its consumer asks for up to ``fetch_max_bytes`` (default 52,428,800) per fetch and 1,048,576 per
# partition: a consumer behind by more than about 1 MB on a topic fails the same fetch forever
# ("InvalidReceiveError: Invalid frame length"). Upstream later made the default 100 MiB
# (dpkp/kafka-python#3074, #3075); every kafka-python client here gets that limit explicitly.
KAFKA_PYTHON_RECEIVE_MAX_BYTES = 100 * 1024 * 1024


def kafka_python_kwargs(t: KafkaTransport | None = None) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient: the
    frame limit above a fetch's size (:data:`KAFKA_PYTHON_RECEIVE_MAX_BYTES`), plus the security
    settings (none for PLAINTEXT)."""
    t = t if t is not None else KafkaTransport()
    kw: dict[str, Any] = {"receive_message_max_bytes": KAFKA_PYTHON_RECEIVE_MAX_BYTES}
    if t.kafka_security_protocol == "PLAINTEXT":
        return kw
    kw["security_protocol"] = t.kafka_security_protocol
    if t.uses_tls:
        kw["ssl_context"] = kafka_ssl_context(t)
    if t.uses_sasl:
        kw["sasl_mechanism"] = t.kafka_sasl_mechanism
        kw["sasl_plain_username"] = t.kafka_sasl_username
        kw["sasl_plain_password"] = t.kafka_sasl_password.get_secret_value()
    return kw
