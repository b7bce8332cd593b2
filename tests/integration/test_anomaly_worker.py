"""The live worker scores a channel without a domain rule with the ensemble anomaly detector.

Real Mosquitto and Kafka: a gateway and a Faust worker as processes (tests/integration/stack.py).
A gas detector reports a gas without set-points (VOC): the generic anomaly detector scores it.
After the warm-up (lowered to 40 samples through the rules file) a step far above anything seen
opens an ``anomaly_gas_voc`` detection carrying the score and the baseline; it has no warning
level (operators only).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.common import Family
from schemas.registry import Area
from tests.integration.procs import wait_until
from tests.integration.stack import gas_reading, mqtt_device, one_device_registry, publish, read_records, running_stack

pytestmark = pytest.mark.integration


def _anomalies(bootstrap: str, device: str) -> list[dict[str, Any]]:
    return [
        d
        for d in (json.loads(r.value) for r in read_records(bootstrap, topics.DETECTIONS))
        if d.get("device_id") == device and d.get("kind") == "anomaly_gas_voc"
    ]


def test_worker_scores_an_unruled_gas_channel(services: dict[str, str], tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    device, site = f"GV-{run}", f"plant-{run}"
    registry = one_device_registry(device, Family.HAZMAT, site, Area(code="330110"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"anomaly": {"params": {"warmup_n": 40}, "open_score": 0.5}}), encoding="utf-8")
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    n_quiet = 60
    with (
        running_stack(
            services,
            tmp_path,
            run,
            registry,
            {"TOCSIN_INFLUX_URL": "", "TOCSIN_RULES_FILE": str(rules)},
            roles=("gateway", "worker"),
        ),
        mqtt_device(services, device) as dev,
    ):
        t0 = datetime.now(UTC) - timedelta(seconds=n_quiet + 30)
        topic = topics.mqtt_telemetry("hazmat", site, device)
        for k in range(n_quiet):
            value = 2.0 + 0.1 * ((k * 7) % 5 - 2)  # 1.8 .. 2.2, a bounded wobble
            publish(dev, topic, gas_reading(device, site, k, t0 + timedelta(seconds=k), value, gas="VOC"))
        for k in range(n_quiet, n_quiet + 3):
            publish(dev, topic, gas_reading(device, site, k, t0 + timedelta(seconds=k), 12.0, gas="VOC"))
        opened = wait_until(
            lambda: [d for d in _anomalies(bootstrap, device) if d["state"] == "open"], 60, "the anomaly open"
        )
        assert all(o["value"] == 12.0 for o in opened)  # the quiet wobble opened nothing
        d = opened[0]
        assert d["level"] is None  # operators only: no public warning level
        assert d["value"] == 12.0
        assert d["evidence"]["score"] >= 0.5
        assert 1.5 < d["evidence"]["baseline"] < 2.5  # the recent baseline the step is judged against
