"""The real Prometheus scrapes a running native stack, and every dashboard panel's query returns data.

Gateway, worker, operator API and the two provider emulators run as real processes on the real
Mosquitto, Kafka and InfluxDB (tests/integration/stack.py); a Prometheus of our own (the binary the
harness provisions) scrapes them every second with the repository's alerting rules loaded. The demo
district's scenario is published over MQTT: rain, river level, a gas leak, a forest fire, an
earthquake, plus a NaN reading and an impostor payload (dead letters). Then every target must be up,
every PromQL query of the pipeline dashboard must return a finite sample from Prometheus, and every
Flux query of the hazard and Geomap dashboards must return rows from InfluxDB (a database created
for this run, so rows from other runs cannot satisfy it). The Geomap's devices come back at their
registry positions.

Panels that only have data after an event get the event: dead letters from the scenario's two bad
messages, deliveries and delivery latency from the SMS and broadcast emulators, backfill from the
scenario's readings older than an hour. Consumer lag is a gauge that is 0 when the worker keeps up:
0 is a sample, so it counts as data. Emulated third parties have no /metrics and are not scraped.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from influxdb_client import InfluxDBClient

from tests.integration.procs import REPO, Proc, free_port, wait_until
from tests.integration.stack import running_stack
from tocsin.simulators.demo import CENTRE, DISTRICT, demo_messages, demo_registry
from tocsin.simulators.run import publish_messages

pytestmark = pytest.mark.integration

DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
# Grafana's variables, as Grafana would fill them for a "last 3 hours" view.
PROM_VARS = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "15s"}
JOBS = ("tocsin-gateway", "tocsin-worker", "tocsin-api", "prometheus")


def prom_queries() -> list[tuple[str, str]]:
    board = json.loads((DASHBOARDS / "pipeline-health.json").read_text(encoding="utf-8"))
    out = []
    for panel in board["panels"]:
        for t in panel["targets"]:
            expr = t["expr"]
            for var, value in PROM_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
            out.append((f"{panel['title']} [{t['refId']}]", expr))
    return out


def flux_queries(bucket: str) -> list[tuple[str, str]]:
    out = []
    for name in ("hazards-live.json", "geomap.json"):
        board = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for t in panel["targets"]:
                q = t["query"].replace("v.defaultBucket", json.dumps(bucket))
                q = q.replace("v.timeRangeStart", "-3h").replace("v.timeRangeStop", "now()")
                q = q.replace("v.windowPeriod", "1m")
                assert "v." not in q.replace("r._", ""), f"unsubstituted Flux variable in {q!r}"
                out.append((f"{name}: {panel['title']} [{t['refId']}]", q))
    return out


def influx_query(url: str, q: str) -> dict[str, Any]:
    data = urllib.parse.urlencode({"q": q}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as resp:
        return dict(json.loads(resp.read()))


@pytest.fixture
def influx_db(services: dict[str, str]) -> Iterator[str]:
    """A database of this run only (InfluxDB 1.8: the v2 API's bucket)."""
    name = f"tocsin_obs_{uuid.uuid4().hex[:8]}"
    result = influx_query(services["TOCSIN_INFLUX_URL"], f'CREATE DATABASE "{name}"')
    assert "error" not in json.dumps(result), result
    yield name
    influx_query(services["TOCSIN_INFLUX_URL"], f'DROP DATABASE "{name}"')


@pytest.fixture
def prometheus_bin(promtool: str) -> str:
    """The promtool fixture provisions Debian's prometheus package, which has both binaries."""
    found = shutil.which("prometheus") or str(Path(promtool).with_name("prometheus"))
    assert Path(found).exists(), "prometheus binary not provisioned"
    return found


def prom_get(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def finite_samples(result: list[dict[str, Any]]) -> list[float]:
    values = [float(r["value"][1]) for r in result]
    return [v for v in values if math.isfinite(v)]


def test_prometheus_scrapes_every_process_and_every_panel_has_data(
    services: dict[str, str], tmp_path: Path, influx_db: str, prometheus_bin: str, promtool: str
) -> None:
    run_id = uuid.uuid4().hex[:8]
    registry = demo_registry()
    extra = {
        "TOCSIN_INFLUX_BUCKET": influx_db,
        # the scenario covers 70 minutes of device time ending now: let its detections alert
        "TOCSIN_ALERT_MAX_DETECTION_AGE_S": "5400",
        "TOCSIN_CONSUMER_LAG_INTERVAL_S": "1",
        "TOCSIN_DEADMAN_TICK_S": "2",
    }
    with running_stack(services, tmp_path, run_id, registry, extra) as stack:
        # Our own Prometheus, scraping this stack every second, with the repository's rules loaded.
        prom_port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "tocsin-gateway", "static_configs": [{"targets": [f"127.0.0.1:{stack.gateway_port}"]}]},
                {"job_name": "tocsin-worker", "static_configs": [{"targets": [f"127.0.0.1:{stack.worker_port}"]}]},
                {"job_name": "tocsin-api", "static_configs": [{"targets": [f"127.0.0.1:{stack.api_port}"]}]},
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom_port}"]}]},
            ],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        check = subprocess.run([promtool, "check", "config", str(config_file)], capture_output=True, timeout=60)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        prom = Proc(
            [
                prometheus_bin,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
        try:
            # 1. Every target is up, as Prometheus itself reports it.
            def all_up() -> list[dict[str, Any]] | None:
                try:
                    active = prom_get(prom_port, "/api/v1/targets", state="active")["activeTargets"]
                except OSError:
                    return None
                ok = len(active) == len(JOBS) and all(t["health"] == "up" for t in active)
                return active if ok else None

            try:
                active = wait_until(all_up, 60, "every scrape target up", interval_s=0.5)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{prom.text()[-2000:]}\n{stack.logs()}") from None
            assert sorted(t["labels"]["job"] for t in active) == sorted(JOBS)
            up = prom_get(prom_port, "/api/v1/query", query="up")["result"]
            assert sorted((r["metric"]["job"], r["value"][1]) for r in up) == sorted((j, "1") for j in JOBS)

            # 2. The demo scenario, as the devices would publish it.
            messages = demo_messages()
            published = publish_messages(
                messages, "127.0.0.1", int(services["TOCSIN_MQTT_PORT"]), speed=600.0, max_gap_s=0.2
            )
            assert published == len(messages)

            # 3. Every panel query returns data; polled together, bounded in time.
            prom_pending = dict(prom_queries())
            flux_pending = dict(flux_queries(influx_db))
            assert len(prom_pending) >= 25 and len(flux_pending) >= 10
            deadline = time.monotonic() + 120
            with InfluxDBClient(url=services["TOCSIN_INFLUX_URL"], token="", org="-", timeout=20_000) as client:
                query_api = client.query_api()
                flux_rows: dict[str, list[dict[str, Any]]] = {}
                while (prom_pending or flux_pending) and time.monotonic() < deadline:
                    for title, expr in list(prom_pending.items()):
                        if finite_samples(prom_get(prom_port, "/api/v1/query", query=expr)["result"]):
                            del prom_pending[title]
                    for title, q in list(flux_pending.items()):
                        rows = [rec.values for table in query_api.query(q) for rec in table.records]
                        if rows:
                            flux_rows[title] = rows
                            del flux_pending[title]
                    time.sleep(1.0)
                assert not prom_pending and not flux_pending, (
                    f"panels without data after 120 s: {sorted(prom_pending) + sorted(flux_pending)}\n{stack.logs()}"
                )

                # 4. Golden checks on the map: every device at its registry position, alerts located.
                devices = flux_rows["geomap.json: Devices [A]"]
                where = {r["device"]: (r["lat"], r["lon"]) for r in devices}
                assert where == {d.device_id: (d.lat, d.lon) for d in registry.devices}
                alerts_query = dict(flux_queries(influx_db))["geomap.json: Active alerts [A]"]

                def rain_alerts() -> list[dict[str, Any]] | None:
                    rows = [rec.values for table in query_api.query(alerts_query) for rec in table.records]
                    return [r for r in rows if str(r["fingerprint"]).startswith(f"hydro:{DISTRICT}:")] or None

                ours = wait_until(rain_alerts, 30, "the demo's rain alert on the map", interval_s=1)
                assert all(r["msg_type"] in ("Alert", "Update") for r in ours)
                for r in ours:  # located at a demo gauge (the alert's circle is its device's position)
                    assert abs(r["lat"] - CENTRE[0]) < 0.2 and abs(r["lon"] - CENTRE[1]) < 0.2
        finally:
            prom.stop()
