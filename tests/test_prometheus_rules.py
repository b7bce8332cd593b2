"""The Prometheus configuration and the pipeline's alerting rules, checked by the real promtool."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "rules.yml"), ("test", "rules", "rules_test.yml")],
    ids=["config", "rules", "rule-unit-tests"],
)
def test_promtool(promtool: str, args: tuple[str, ...]) -> None:
    proc = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def _exported_names() -> set[str]:
    """Every sample name the gateway, worker and operator API export."""
    from prometheus_client import CollectorRegistry

    from tocsin.alerts.api import build_app
    from tocsin.alerts.notify import NotifyMetrics
    from tocsin.alerts.release import ReleaseMetrics
    from tocsin.alerts.service import AlertMetrics
    from tocsin.alerts.view import AlertView
    from tocsin.detectors.service import DetectorMetrics
    from tocsin.guard import DeadLetterMetrics
    from tocsin.ingest.metrics import GatewayMetrics
    from tocsin.logs import register_client_metrics
    from tocsin.worker import LagMetrics, RebalanceMetrics

    reg = CollectorRegistry()
    for metrics in (
        GatewayMetrics,
        DetectorMetrics,
        AlertMetrics,
        NotifyMetrics,
        LagMetrics,
        RebalanceMetrics,
        DeadLetterMetrics,
        ReleaseMetrics,
    ):
        metrics(reg)
    register_client_metrics(reg)
    build_app(AlertView(), clock=lambda: datetime.now(UTC), metrics_registry=reg, console={})  # with the console's
    names = set()
    for family in reg.collect():
        names.add(family.name)
        kind = family.type
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(kind, ())
        names.update(family.name + s for s in suffixes)
    return names


def test_rules_use_only_metrics_the_code_exports() -> None:
    used = set(re.findall(r"\b(tocsin_[a-z_]+)\b", (DEPLOY / "rules.yml").read_text(encoding="utf-8")))
    assert used, "no tocsin metric in the rules"
    assert used - _exported_names() == set()


def test_metric_names_follow_the_conventions() -> None:
    names = _exported_names()
    assert {
        "tocsin_worker_consumer_lag",
        "tocsin_gateway_ingest_latency_seconds_bucket",
        "tocsin_worker_detection_latency_seconds_bucket",
        "tocsin_worker_alert_latency_seconds_bucket",
        "tocsin_worker_delivery_latency_seconds_bucket",
        "tocsin_api_requests_total",
        "tocsin_worker_deadletters_total",
    } <= names
    for name in names:
        assert name.startswith("tocsin_"), name
        if "latency" in name:
            assert re.search(r"_seconds(_bucket|_count|_sum)?$", name), name


def test_every_metric_is_in_the_operations_table() -> None:
    readme = (DEPLOY.parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(tocsin_[a-z_]+)`", readme))
    exported = {n for n in _exported_names() if not n.endswith(("_bucket", "_count", "_sum"))}
    exported = {n for n in exported if n.endswith("_total") or f"{n}_total" not in exported}
    assert exported - documented == set()
