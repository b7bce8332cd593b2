"""Kill the worker in the middle of an SMS fan-out and start it again: nobody gets the warning twice
and nobody is missed. Real Mosquitto, Kafka, gateway and worker processes, and the SMS carrier
emulator as a real HTTP server that rate-limits us (so the fan-out takes seconds)."""

from __future__ import annotations

import json
import random
import signal
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from schemas import topics
from schemas.registry import Area, Device, Registry
from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until

pytestmark = pytest.mark.integration
N_RECIPIENTS = 120


def _messages(url: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{url}/v1/sms", headers={"Authorization": "Bearer fan-key"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return list(json.loads(resp.read())["messages"])


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_control/stats", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def test_worker_killed_mid_fanout_sends_each_sms_exactly_once(services: dict[str, str], tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"  # no other test's alerts reach these numbers
    device, site = f"GD-{run}", f"park-{run}"
    phones = [f"+86139{run[:4].encode().hex()[:4]}{i:04d}" for i in range(N_RECIPIENTS)]
    registry = Registry(
        devices=[Device(device_id=device, family="hazmat", site=site, lat=30.2, lon=120.2, area=Area(code=area))],
        sms_recipients={area: phones},
    )
    (tmp_path / "registry.json").write_text(registry.model_dump_json(), encoding="utf-8")
    sms = Proc(
        tocsin("sms-gateway", "--port", "0", "--api-key", "fan-key", "--rate-limit-per-s", "30"), tmp_path / "sms.log"
    )
    url = sms.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30).group(1)
    env = {
        **services,
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_REGISTRY_FILE": str(tmp_path / "registry.json"),
        "TOCSIN_MQTT_CLIENT_ID": f"gw-{run}",
        "TOCSIN_MQTT_SHARE_GROUP": f"g{run}",
        "TOCSIN_WORKER_ID": f"tocsin-fanout-{run}",
        "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(free_port()),
        "TOCSIN_SMS_URL": url,
        "TOCSIN_SMS_API_KEY": "fan-key",
        "TOCSIN_SMS_RATE_PER_S": "25",  # what we were told the carrier allows; it enforces 30/s
    }
    gateway = Proc(tocsin("gateway"), tmp_path / "gateway.log", env)
    start_group_at_end(services["TOCSIN_KAFKA_BOOTSTRAP"], env["TOCSIN_WORKER_ID"])
    worker = Proc(tocsin("worker"), tmp_path / "worker-1.log", env)
    worker2: Proc | None = None
    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
    try:
        gateway.wait_for(r"gateway connected to MQTT", 60)
        worker.wait_for(r"Worker\]: Ready", 120)
        dev.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
        dev.loop_start()
        t0 = datetime.now(UTC) - timedelta(minutes=2)
        topic = topics.mqtt_telemetry("hazmat", site, device)
        for k, value in enumerate([1.0, 14.0, 15.0, 16.0]):  # H2S above level 1 (10 mg/m3): one alert
            body = {
                "type": "hazmat.gas",
                "device_id": device,
                "site": site,
                "seq": k + 1,
                "gas": "H2S",
                "ts": (t0 + timedelta(seconds=10 * k)).isoformat(),
                "value": value,
                "unit": "mg/m3",
            }
            dev.publish(topic, json.dumps(body).encode(), qos=1).wait_for_publish(10)

        # Mid fan-out: some numbers have their SMS, most do not yet.
        wait_until(
            lambda: 10 <= _stats(url)["stored"] < N_RECIPIENTS // 2 or None, 90, "the fan-out to start", interval_s=0.05
        )
        worker.stop(sig=signal.SIGKILL)
        stored_at_kill = _stats(url)["stored"]
        assert stored_at_kill < N_RECIPIENTS

        worker2 = Proc(tocsin("worker"), tmp_path / "worker-2.log", env)
        worker2.wait_for(r"Worker\]: Ready", 120)
        wait_until(lambda: len(_messages(url)) >= N_RECIPIENTS or None, 120, "every recipient's SMS")

        msgs = _messages(url)
        per_phone = Counter(m["to"] for m in msgs)
        assert set(per_phone) == set(phones)  # nobody missed
        assert max(per_phone.values()) == 1, per_phone.most_common(3)  # nobody warned twice
        assert len({m["idempotency_key"] for m in msgs}) == N_RECIPIENTS
        stats = _stats(url)
        assert "gave_up" not in worker2.text() and "failed:" not in worker2.text()
        print(
            f"\nstored at kill {stored_at_kill}; duplicates refused by the carrier after restart: "
            f"{stats['duplicates']}; rate-limited requests: {stats.get('rate_limited')}"
        )
    finally:
        dev.loop_stop()
        dev.disconnect()
        gateway.stop()
        worker.stop()
        if worker2:
            worker2.stop()
        sms.stop()
