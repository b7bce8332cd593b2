"""A Kafka broker restart does not flood the logs: one line per connection state change, and metrics.

Real services: the single Kafka broker of the local harness is stopped for 10 s and started again
(``services.sh down kafka`` / ``up kafka``) while a gateway and a Faust worker run
(tests/integration/stack.py). Before tocsin/logs.py's ``ClientConnectionGate`` the worker wrote 1,044
ERROR lines for such a restart (one per reconnect attempt of aiokafka and kafka-python); now each
client library writes "connection lost" once, "reconnected" once, and counts the rest in
``tocsin_client_connection_errors_total``.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import SERVICES
from tests.integration.procs import wait_until
from tests.integration.stack import one_device_registry, running_stack, village
from tocsin.schemas.common import Family

pytestmark = pytest.mark.integration

DOWN_S = 10.0
MAX_ERROR_LINES = 10  # per process, for the whole restart


def _metric(port: int, name: str, client: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    prefix = f'{name}{{client="{client}"}} '
    return next((float(ln[len(prefix) :]) for ln in text.splitlines() if ln.startswith(prefix)), None)


def _harness(*args: str) -> None:
    proc = subprocess.run([*SERVICES, *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"services.sh {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def test_a_broker_restart_logs_a_line_per_state_change(services: dict[str, str], tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    registry = one_device_registry(f"RG-{run}", Family.HYDRO, f"site-{run}", village("340100"))
    with running_stack(
        services, tmp_path, run, registry, {"TOCSIN_INFLUX_URL": ""}, roles=("gateway", "worker")
    ) as stack:
        procs = {"worker": (stack.worker, stack.worker_port), "gateway": (stack.procs["gateway"], stack.gateway_port)}
        marks = {name: len(p.text()) for name, (p, _port) in procs.items()}
        t0 = time.monotonic()
        _harness("down", "kafka")
        seen_down: dict[str, bool] = {"aiokafka": False}
        while time.monotonic() - t0 < DOWN_S:  # the worker's web server still answers: its gauge says 0
            if _metric(stack.worker_port, "tocsin_client_connection_up", "aiokafka") == 0.0:
                seen_down["aiokafka"] = True
            time.sleep(0.5)
        _harness("up", "kafka")
        outage_s = time.monotonic() - t0

        def recovered() -> bool:
            return (
                all(
                    _metric(stack.worker_port, "tocsin_client_connection_up", c) == 1.0
                    for c in ("aiokafka", "kafka-python")
                )
                and _metric(stack.gateway_port, "tocsin_client_connection_up", "librdkafka") == 1.0
            )

        wait_until(recovered, 90, "every client reconnected", interval_s=1.0)
        assert seen_down["aiokafka"], "the worker's aiokafka gauge never showed the outage"
        for name, (proc, _port) in procs.items():
            assert proc.p.poll() is None, f"{name} exited:\n{proc.text()[-3000:]}"

        errors_total = _metric(stack.worker_port, "tocsin_client_connection_errors_total", "aiokafka") or 0.0
        outages = _metric(stack.worker_port, "tocsin_client_disconnections_total", "aiokafka") or 0.0
        gw_errors = _metric(stack.gateway_port, "tocsin_client_connection_errors_total", "librdkafka") or 0.0
        report = []
        for name, (proc, _port) in procs.items():
            lines = [json.loads(ln) for ln in proc.text()[marks[name] :].splitlines() if ln.startswith("{")]
            errors = [r for r in lines if r["level"] == "ERROR"]
            changes = Counter((r.get("client"), r.get("connection")) for r in lines if r.get("connection"))
            assert len(errors) <= MAX_ERROR_LINES, (name, [r["message"][:160] for r in errors])
            report.append(f"{name}: {len(errors)} ERROR lines, state changes {dict(changes)}")
            if name == "worker":
                assert changes[("aiokafka", "disconnected")] == 1, changes
                assert changes[("aiokafka", "reconnected")] == 1, changes
            else:  # its outage may have begun before the mark (a "retrying" warning at start-up merges into it)
                assert changes[("librdkafka", "reconnected")] == 1, changes
                assert changes[("librdkafka", "disconnected")] <= 1, changes
        # the errors were there, counted rather than logged
        assert outages == 1.0 and errors_total > 10 * MAX_ERROR_LINES, (outages, errors_total)
        print(
            f"\nbroker down {outage_s:.1f} s; worker aiokafka connection errors counted {errors_total:.0f} "
            f"(1 outage), gateway librdkafka {gw_errors:.0f}; " + "; ".join(report)
        )
