"""Kafka over SASL_SSL (SCRAM-SHA-512 over TLS) on the harness broker's second listener.

The harness (deploy/local/services.sh, TOCSIN_KAFKA_SECURE=1, the default) adds the listener to the
suite's single Kafka, with a certificate from its own CA (deploy/pki.sh) and a SCRAM user; ``up`` on
a broker started without it restarts that broker with it. The gateway and the worker are given only
the secure bootstrap address and credentials, so a rain burst that becomes an alert proves that
their producers, consumers, admin clients and Faust app all authenticate; a client without valid
credentials is refused.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.conn import BrokerConnection
from kafka.errors import KafkaError

from tests.integration.procs import REPO
from tests.integration.stack import (
    mqtt_device,
    publish,
    rain_burst,
    rain_gauge,
    running_stack,
    skip_history,
    wait_records,
)
from tocsin.schemas import topics
from tocsin.schemas.transport import KafkaTransport, kafka_python_kwargs

pytestmark = pytest.mark.integration

SERVICES = ["bash", str(REPO / "deploy" / "local" / "services.sh")]


@pytest.fixture(scope="module")
def secure_kafka(services: dict[str, str]) -> Iterator[dict[str, str]]:
    """TOCSIN_ settings of a client of the SASL_SSL listener (``up`` adds it if the broker lacks it)."""
    # A broker that already serves the secure port is not restarted (other sessions may be using it).
    out = subprocess.run([*SERVICES, "env"], capture_output=True, text=True, timeout=60, check=True).stdout
    port = int(next((ln.rsplit(":", 1)[1] for ln in out.splitlines() if "SECURE_BOOTSTRAP=" in ln), "9094"))
    with socket.socket() as s:
        s.settimeout(2)
        serving = s.connect_ex(("127.0.0.1", port)) == 0
    no_restart = {"TOCSIN_UP_NO_RESTART": "1"} if serving else {}
    up = subprocess.run(
        [*SERVICES, "up", "kafka"], capture_output=True, text=True, timeout=600, env={**os.environ, **no_restart}
    )
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    out = subprocess.run([*SERVICES, "env"], capture_output=True, text=True, timeout=60, check=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    assert "TOCSIN_KAFKA_SECURE_BOOTSTRAP" in env, "the harness runs Kafka without its SASL_SSL listener"
    yield {
        "TOCSIN_KAFKA_BOOTSTRAP": env["TOCSIN_KAFKA_SECURE_BOOTSTRAP"],
        "TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TOCSIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "TOCSIN_KAFKA_SASL_USERNAME": env["TOCSIN_KAFKA_SCRAM_USER"],
        "TOCSIN_KAFKA_SASL_PASSWORD": Path(env["TOCSIN_KAFKA_SCRAM_PASSWORD_FILE"]).read_text().strip(),
        "TOCSIN_KAFKA_SSL_CA": str(Path(env["TOCSIN_PKI_DIR"]) / "ca.crt"),
    }


def _transport(secure: dict[str, str], **override: str) -> KafkaTransport:
    fields = {
        k.removeprefix("TOCSIN_").lower(): v for k, v in {**secure, **override}.items() if k != "TOCSIN_KAFKA_BOOTSTRAP"
    }
    return KafkaTransport(**fields)


def test_gateway_and_worker_raise_an_alert_over_sasl_ssl(
    services: dict[str, str], secure_kafka: dict[str, str], tmp_path: Path
) -> None:
    run_id, area, device, site, _phones, registry = rain_gauge("+86139")
    plain = services["TOCSIN_KAFKA_BOOTSTRAP"]  # the same broker; only the test reads through it
    env = {**services, **secure_kafka}
    start = skip_history(plain, f"tocsin-stack-{run_id}")
    with running_stack(env, tmp_path, run_id, registry, roles=("gateway", "worker"), from_now=False) as stack:
        with mqtt_device(services, device) as dev:
            for body in rain_burst(device, site, datetime.now(UTC)):
                publish(dev, topics.mqtt_telemetry("hydro", site, device), body)

        def ours(rec: object) -> bool:
            alert = json.loads(rec.value)  # type: ignore[attr-defined]
            return bool(alert["area"]["code"] == area and alert["msg_type"] == "Alert")

        try:
            alerts = wait_records(plain, topics.ALERTS, ours, start=start, timeout_s=90)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{stack.logs()}") from None
        alert = json.loads(alerts[0].value)
        # 8 x 6 mm in 35 min: 48 mm crosses the 35 mm / 1 h critical rainfall (blue) of GUIDE section 3
        assert alert["level"] == "blue" and alert["hazard"] == "hydro"


def _connects(bootstrap: str, kwargs: dict[str, Any]) -> bool:
    """Whether one connection to ``bootstrap`` gets through TLS and SASL (kafka-python's own connection
    state machine: it ends ``connected`` only after a successful SASL handshake)."""
    host, port = bootstrap.rsplit(":", 1)
    conn = BrokerConnection(host, int(port), socket.AF_INET, **kwargs)
    try:
        return bool(conn.connect_blocking(10))
    finally:
        conn.close()


def test_kafka_secure_listener_refuses_clients_without_valid_credentials(secure_kafka: dict[str, str]) -> None:
    bootstrap = secure_kafka["TOCSIN_KAFKA_BOOTSTRAP"]
    # the right credentials get through (so the refusals below are about the credentials)
    assert _connects(bootstrap, kafka_python_kwargs(_transport(secure_kafka)))
    ok = KafkaProducer(bootstrap_servers=bootstrap, **kafka_python_kwargs(_transport(secure_kafka)), max_block_ms=10000)
    try:
        assert ok.send("tocsin.security.check", b"x").get(10).offset >= 0
    finally:
        ok.close()
    wrong = _transport(secure_kafka, TOCSIN_KAFKA_SASL_PASSWORD="not-the-password")
    assert not _connects(bootstrap, kafka_python_kwargs(wrong)), "a wrong SCRAM password was accepted"
    other_user = _transport(secure_kafka, TOCSIN_KAFKA_SASL_USERNAME="intruder")
    assert not _connects(bootstrap, kafka_python_kwargs(other_user)), "an unknown SCRAM user was accepted"
    # Without SASL the TCP (and TLS) connection opens, but no request is served.
    tls_only = kafka_python_kwargs(_transport(secure_kafka, TOCSIN_KAFKA_SECURITY_PROTOCOL="SSL"))
    for what, kwargs in (("TLS without SASL", tls_only), ("PLAINTEXT", {})):
        with pytest.raises(KafkaError):
            producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=3000, **kwargs)
            producer.send("tocsin.security.check", b"x").get(3)
            pytest.fail(f"{what} was served")  # pragma: no cover - only reached if the broker served it
