"""Settings from the environment, prefix ``TOCSIN_`` (e.g. ``TOCSIN_KAFKA_BOOTSTRAP``).

Secrets are ``SecretStr``: they print as ``**********`` in logs and reprs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tocsin.alerts.sms_text import check_signature
from tocsin.schemas.transport import KafkaTransport, MqttTransport


class Settings(MqttTransport, KafkaTransport):
    """Every setting; the brokers' transport security (TLS, SASL) comes from the two bases, which the
    clients built outside the process's entry points read on their own (schemas/transport.py)."""

    model_config = SettingsConfigDict(env_prefix="TOCSIN_", frozen=True, extra="ignore")

    # MQTT (devices and operators' alert topics)
    mqtt_host: str = Field(default="127.0.0.1", description="MQTT broker host")
    mqtt_port: int = Field(default=1883, description="MQTT broker port")
    mqtt_username: str = Field(default="", description="MQTT user of this process (empty: anonymous)")
    mqtt_password: SecretStr = Field(default=SecretStr(""), description="MQTT password")
    mqtt_client_id: str = Field(default="tocsin-gateway-1", description="MQTT client id (persistent session)")
    mqtt_share_group: str = Field(default="tocsin", description="shared-subscription group of the gateways")
    mqtt_session_expiry_s: int = Field(default=3600, description="MQTT 5 session expiry of the gateway")

    # Kafka
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_partitions: int = Field(default=2, description="partitions of the topics Tocsin creates")
    kafka_replication_factor: int = Field(
        default=0,
        ge=0,
        description="replicas of the topics Tocsin creates; 0: min(3, brokers registered at the time: set 3 "
        "where a process may start before every broker). min.insync.replicas follows: 1 below 3, else 2 of 3",
    )
    kafka_max_in_flight: int = Field(default=10_000, description="gateway records awaiting Kafka acks")
    kafka_batch_readings: int = Field(
        default=1,
        ge=1,
        le=500,
        description="gateway: most readings of one MQTT socket read written as one Kafka batch record "
        "(same topic and partition, schemas/batch.py; 100 for docs/throughput.md's worker figure); "
        "1: one record per reading. Above 1 only once every worker and InfluxDB sink reads batch records",
    )

    # InfluxDB (v2 API)
    influx_url: str = Field(default="", description="InfluxDB URL; empty disables the time-series sink")
    influx_token: SecretStr = Field(default=SecretStr(""), description="InfluxDB token (1.8: user:password)")
    influx_org: str = Field(default="-", description="InfluxDB org ('-' for 1.8)")
    influx_bucket: str = Field(default="tocsin", description="InfluxDB bucket (1.8: database[/rp])")

    # Validation
    registry_file: str = Field(default="", description="device registry (YAML/JSON); empty: accept any device")
    rules_file: str = Field(default="", description="detector rules (YAML/JSON); empty: built-in defaults")
    max_payload_bytes: int = Field(default=262_144, description="larger MQTT payloads are dead-lettered")
    max_future_skew_s: float = Field(default=300.0, description="device clocks ahead by more are refused")
    max_age_s: float = Field(default=7 * 86_400.0, description="readings older than this are refused")
    dedup_window: int = Field(default=1024, description="sequence numbers remembered per device")

    # Worker (Faust)
    worker_id: str = Field(default="tocsin-worker", description="Faust app id (consumer group)")
    worker_data_dir: str = Field(default="var/worker", description="Faust data directory")
    worker_web_port: int = Field(default=6066, description="Faust web server port (health, metrics)")
    deadman_tick_s: float = Field(default=10.0, description="how often registered devices are checked for silence")
    worker_session_timeout_s: float = Field(
        default=10.0,
        ge=6.0,
        description="worker Kafka group session timeout: a killed worker's partitions move to the others after this"
        " (Faust's default, 60 s, held them that long; heartbeats every third of it, at most 3 s)",
    )
    worker_producer_linger_ms: float = Field(
        default=5.0,
        ge=0,
        description="worker Kafka producer linger: table changelog records share produce requests",
    )
    worker_fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        description="worker Kafka consumer long-poll wait (Faust hardcodes 1500; patched in tocsin/worker.py)",
    )
    worker_stall_reseek_s: float = Field(
        default=10.0,
        ge=0,
        description="a partition whose committed offset stays put this long while records wait and none is in"
        " flight is sought back to it (tocsin_worker_partition_reseeks_total); 0: off",
    )
    worker_detect_batch_max: int = Field(
        default=5000,
        ge=1,
        description="detect agents: readings taken per batch; each device's state is written once a batch",
    )
    worker_detect_batch_ms: float = Field(
        default=500.0,
        gt=0,
        description=(
            "detect agents: longest wait for a batch to fill "
            "(readings are judged at once; this delays only the state write and the commit)"
        ),
    )
    worker_confirm_batch_max: int = Field(
        default=1000,
        ge=1,
        description="confirm agent: detections taken per batch; each fingerprint's state is written once a batch",
    )
    worker_confirm_batch_ms: float = Field(
        default=20.0,
        gt=0,
        description="confirm agent: longest wait for a batch to fill (a red alert waits at most this long)",
    )

    # Delivery
    sms_url: str = Field(default="", description="SMS gateway base URL; empty disables SMS")
    sms_api_key: SecretStr = Field(default=SecretStr(""), description="SMS gateway API key")
    sms_sender_id: str = Field(default="TOCSIN", description="SMS sender id")
    sms_signature: str = Field(
        default="",
        description="registered sender signature put in 【】 at the start of every SMS, e.g. 临江区应急管理局 "
        "(the routing file's sms_signature wins); empty: unset. Vague or test signatures are refused",
    )
    sms_callback_url: str = Field(
        default="", description="where the carrier posts delivery receipts (the worker's /callbacks/sms)"
    )
    sms_rate_per_s: float = Field(default=100.0, description="the SMS provider's rate limit (messages per second)")
    worker_gc_freeze_after_s: float = Field(
        default=10.0,
        ge=0,
        description="worker: this long after start, freeze the start-up heap out of the garbage "
        "collector's full collections (shorter pauses); 0: off",
    )
    deliver_concurrency: int = Field(default=4, description="alert messages a worker delivers at once")
    delivery_sweep_s: float = Field(
        default=3600.0,
        ge=0,
        description="a starting worker delivers again the alert messages of this many seconds whose "
        "fan-out the audit shows incomplete (alerts/sweep.py; idempotent); 0: off",
    )
    delivery_sweep_every_s: float = Field(
        default=60.0,
        ge=0,
        description="a running worker sweeps again this often, over the last two periods (at most "
        "TOCSIN_DELIVERY_SWEEP_S); a message past the committed offset that was not being delivered "
        "in two passes in a row is delivered too (stuck); 0: only at start",
    )
    alert_fast_lane_level: Literal["", "blue", "yellow", "orange", "red"] = Field(
        default="orange",
        description="urgent lane: detections at or above this level (and seismic triggers) travel on "
        "Kafka detections.urgent, and alert messages at or above it are delivered the moment they are "
        "issued (alerts/fastlane.py), not after the round trip through Kafka alerts; empty: off",
    )
    alert_sender: str = Field(
        default="11010500000000",
        pattern=r"^\d{14}$",
        description="issuing unit's 14-digit code (GB/T 35965.1-2018 Appendix A: GB/T 2260 area, GB/T 4657 "
        "organisation, internal 000, extension 00): CAP sender and the prefix of every identifier",
    )
    alert_status: str = Field(default="Actual", description="CAP status of every alert: Actual, Exercise or Test")
    alert_max_detection_age_s: float = Field(
        default=900.0, description="detections older than this never become public alerts (history replays); 0: off"
    )
    alert_confirm: dict[str, tuple[int, float]] = Field(
        default_factory=dict,
        description='JSON, incident -> [k sensors, or one sustained s], e.g. {"gas_leak": [2, 60]}; absent: at once',
    )
    alert_cool_down_s: float = Field(default=0.0, description="quiet time after the last clear before the all-clear")
    alert_reminder_s: float = Field(default=0.0, description="re-send active alerts this often; 0: never")
    alert_flap_toggles: int = Field(
        default=2,
        ge=1,
        description="more reversals of an alert's level (the Alert, a fall after a rise, a rise after a fall) "
        "than this within TOCSIN_ALERT_FLAP_WINDOW_S: flapping (one 'unstable' message, then only escalations)",
    )
    alert_flap_window_s: float = Field(default=3600.0, gt=0, description="window of the flapping count")
    alert_flap_settle_s: float = Field(
        default=3600.0,
        gt=0,
        description="a flapping alert settles after this long without a change: one Update at its level, or the Cancel",
    )
    routing_file: str = Field(default="", description="routing file (YAML/JSON); empty: residents by SMS+broadcast")
    broadcast_url: str = Field(default="", description="emergency-broadcast platform base URL; empty disables it")
    broadcast_api_key: SecretStr = Field(default=SecretStr(""), description="broadcast platform API key")

    # Observability
    metrics_port: int = Field(default=0, description="Prometheus /metrics port of this process; 0: off")
    bind_host: str = Field(
        default="127.0.0.1",
        description="address the gateway's metrics and the worker's web server listen on (0.0.0.0 in containers)",
    )
    log_level: str = Field(default="INFO", description="logging level")
    log_format: str = Field(
        default="json", description="service logs: json (one object per line) or text; `tocsin run` is always text"
    )
    consumer_lag_interval_s: float = Field(
        default=10.0, description="how often the worker measures its Kafka consumer lag (tocsin_worker_consumer_lag)"
    )

    # Operator API read model
    api_retention_days: float = Field(
        default=7.0, gt=0, description="operator API: ended alerts older than this (in alert time) are evicted"
    )
    api_max_ended: int = Field(
        default=10_000, ge=0, description="operator API: ended alerts kept at most (oldest evicted; active: all)"
    )
    console_stale_factor: float = Field(
        default=2.0,
        gt=1,
        description="console: a device is stale after this many registered reporting intervals without a reading",
    )
    console_fault_window_s: float = Field(
        default=900.0, gt=0, description="console: a device with a dead letter this recent is shown faulty"
    )
    console_lookback_s: float = Field(
        default=3600.0,
        gt=0,
        description="console: readings and dead letters replayed from Kafka at start (statuses, detections: all)",
    )

    @field_validator("sms_signature")
    @classmethod
    def _signature(cls, v: str) -> str:
        return check_signature(v) if v else v

    # Security (docs/security.md)
    dev: bool = Field(
        default=False,
        description="development mode: placeholder and harness dev secrets are accepted, and an operator API "
        "without a users file makes a one-off demo supervisor (login printed); never in production",
    )
    api_users_file: str = Field(
        default="", description="operator API users and API tokens (JSON/YAML, hashed; `tocsin users`)"
    )
    api_tls_cert: str = Field(default="", description="operator API TLS certificate (PEM); with the key: HTTPS")
    api_tls_key: str = Field(default="", description="operator API TLS private key (PEM)")
    api_silence_max_hours: float = Field(
        default=24.0, gt=0, description="operator API: longest span of a silence (recurring: starts_at to until)"
    )
    api_auth_max_failures: int = Field(
        default=5, ge=1, description="operator API: failed logins per client or user before a lock-out"
    )
    api_auth_window_s: float = Field(
        default=60.0, gt=0, description="operator API: the window the failed logins are counted in"
    )
    sms_callback_secret: SecretStr = Field(
        default=SecretStr(""),
        description="shared with the SMS carrier: receipts to /callbacks/sms carry an HMAC-SHA256 of it; "
        "empty: every receipt is refused",
    )
    worker_table_routes: bool = Field(
        default=False, description="worker web server: serve Faust's /table/... state pages (off: 404)"
    )


# Values no deployment may run with: the placeholders of deploy/secrets/*.env.example, the local
# harness's development passwords (deploy/local/services.sh) and the keys of the docs' examples.
PLACEHOLDER_MARKERS = ("change-me", "changeme")
DEV_SECRETS = frozenset({"gateway-dev", "device-demo-dev", "operator-dev", "devkey", "embedded-demo"})
SECRET_SETTINGS = ("mqtt_password", "influx_token", "sms_api_key", "broadcast_api_key", "sms_callback_secret")


class UnsafeSecret(ValueError):
    """A secret is a known placeholder or development value, outside development mode."""


def unsafe_secret(value: str) -> bool:
    """Whether ``value`` is (or, as InfluxDB's ``user:password``, contains) a known placeholder or dev secret."""
    low = value.strip().lower()
    if not low:
        return False
    parts = {low, *low.split(":")}
    return bool(parts & DEV_SECRETS) or any(m in low for m in PLACEHOLDER_MARKERS)


def refuse_dev_secrets(settings: Settings, extra: dict[str, str] | None = None) -> None:
    """Raise :class:`UnsafeSecret` naming every setting (and ``extra`` name -> value) that holds a
    placeholder or development secret, unless ``TOCSIN_DEV`` is on. Never prints the values."""
    if settings.dev:
        return
    values = {f"TOCSIN_{n.upper()}": getattr(settings, n).get_secret_value() for n in SECRET_SETTINGS}
    bad = [name for name, v in {**values, **(extra or {})}.items() if unsafe_secret(v)]
    if bad:
        raise UnsafeSecret(
            f"{', '.join(bad)} hold a placeholder or development secret: set real ones "
            "(or TOCSIN_DEV=1 on a development machine)"
        )


def markdown_table() -> str:
    """The configuration table of the README (a test keeps the two in step)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, f in Settings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        default = default.get_secret_value() if isinstance(default, SecretStr) else default
        shown = "(secret) " if f.annotation is SecretStr else ""
        value = f"`{default}`" if default != "" else "(empty)"
        rows.append(f"| `TOCSIN_{name.upper()}` | {value} | {shown}{f.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
