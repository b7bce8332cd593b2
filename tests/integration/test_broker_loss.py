"""One of three Kafka brokers killed (kill -9) mid-stream: no reading lost or doubled, every alert's
SMS sent exactly once.

Real services: the local harness's 3-node KRaft cluster (``services.sh up kafka3``: replication factor
3, min.insync.replicas 2, on ports derived from ``TOCSIN_KAFKA_PORT``, started here and stopped after),
Mosquitto, a gateway, a Faust worker and the SMS carrier emulator as processes
(tests/integration/stack.py). Six gas detectors, each in its own area with two SMS recipients, report
every 0.4 s; their leaks start one after another, so alerts are being made before, during and after
the loss. The broker killed is the coordinator of the worker's consumer group (it also leads a third
of every topic's partitions); it is started again once the stream is over, and takes part in the
cluster again before the end (its partitions caught up).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from tests.conftest import SERVICES
from tests.integration.procs import wait_until
from tests.integration.stack import gas_reading, mqtt_device, publish, read_records, running_stack
from tocsin.kafka import ensure_topics
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry

pytestmark = pytest.mark.integration

N_DEVICES = 6
PHONES_PER_AREA = 2
ROUNDS = 24  # one reading per device per round
ROUND_S = 0.4
KILL_AT_ROUND = 9  # devices 0-2 are high by then (their alerts under way), 3-5 go high after the kill
HIGH = (14.0, 15.0, 16.0, 15.5)  # H2S above the 10 mg/m3 level-1 set-point: one yellow alert each


def _harness(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run([*SERVICES, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"services.sh {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def kafka3() -> Iterator[str]:
    """A fresh 3-node cluster (its own ports, beside the single broker); its bootstrap servers."""
    env = {**os.environ, "TOCSIN_KAFKA_WIPE": "1"}
    exported = dict(w.split("=", 1) for w in shlex.split(_harness("env")) if "=" in w)
    bootstrap = exported.get("TOCSIN_KAFKA3_BOOTSTRAP")
    assert bootstrap, "services.sh env names no TOCSIN_KAFKA3_BOOTSTRAP"
    try:
        _harness("up", "kafka3", env=env, timeout=180)
        yield bootstrap
    finally:
        _harness("down", "kafka3", timeout=120)


def _state_dir() -> Path:
    return Path(os.environ.get("TOCSIN_STATE") or Path.home() / ".cache" / "tocsin" / "state")


def _coordinator(bootstrap: str, group: str) -> int:
    """The broker coordinating ``group`` (kafka-python has no public call for it)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-broker-loss")
    try:
        return int(admin._find_coordinator_ids([group])[group])  # noqa: SLF001
    finally:
        admin.close()


def _registry(run: str) -> tuple[Registry, dict[str, list[str]], list[tuple[str, str]]]:
    """Six gas detectors in six fresh areas; (registry, area -> phones, [(device, site)])."""
    base = random.randint(100000, 899999)
    devices, recipients, ids = [], {}, []
    for d in range(N_DEVICES):
        area, device, site = str(base + d), f"GB-{run}-{d}", f"plant-{run}-{d}"
        devices.append(
            Device(device_id=device, family=Family.HAZMAT, site=site, lat=31.8, lon=117.2, area=Area(code=area))
        )
        recipients[area] = [f"+86137{base % 10000:04d}{d:02d}{k:02d}" for k in range(PHONES_PER_AREA)]
        ids.append((device, site))
    return Registry(devices=devices, sms_recipients=recipients), recipients, ids


def test_broker_killed_mid_stream_loses_and_doubles_nothing(
    services: dict[str, str], kafka3: str, tmp_path: Path
) -> None:
    t_start = time.monotonic()
    run = uuid.uuid4().hex[:8]
    registry, recipients, ids = _registry(run)
    phones = {p for ps in recipients.values() for p in ps}
    # three partitions each: every broker leads a third of every topic
    ensure_topics(kafka3, (*topics.ALL_KAFKA_TOPICS, topics.SILENCES), 3)
    env = {
        **services,
        "TOCSIN_KAFKA_BOOTSTRAP": kafka3,
        "TOCSIN_KAFKA_PARTITIONS": "3",
        "TOCSIN_INFLUX_URL": "",
    }
    start_round = {d: 2 + 3 * d for d in range(N_DEVICES)}  # device d's leak: rounds 2, 5, 8, ... 17
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    sent: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    killed = threading.Event()
    with (
        running_stack(env, tmp_path, run, registry, roles=("sms", "gateway", "worker")) as stack,
        mqtt_device(services, f"dev-{run}") as dev,
    ):
        victim = _coordinator(kafka3, stack.env["TOCSIN_WORKER_ID"])
        pid = int((_state_dir() / "run" / f"kafka3-{victim}.pid").read_text())

        def stream() -> None:
            try:
                for r in range(ROUNDS):
                    if r == KILL_AT_ROUND:
                        os.kill(pid, signal.SIGKILL)
                        killed.set()
                    for d, (device, site) in enumerate(ids):
                        k = r - start_round[d]
                        value = HIGH[min(k, len(HIGH) - 1)] if k >= 0 else 1.0
                        ts = t0 + timedelta(seconds=5 * r)
                        publish(
                            dev,
                            topics.mqtt_telemetry("hazmat", site, device),
                            gas_reading(device, site, r + 1, ts, value),
                        )
                        sent.append((device, r + 1))
                    time.sleep(ROUND_S)
            except BaseException as e:  # noqa: BLE001 - reported by the test below
                errors.append(e)

        streamer = threading.Thread(target=stream, name="stream", daemon=True)
        streamer.start()
        streamer.join(ROUNDS * (ROUND_S + 2.0) + 60)
        assert not streamer.is_alive() and not errors, errors
        assert killed.is_set()
        t_stream = time.monotonic()
        # the stream is over: the killed broker comes back (a plain `up`: no wipe) while we wait for the SMS
        restart = subprocess.Popen(
            [*SERVICES, "up", f"kafka3-{victim}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        want = N_DEVICES * PHONES_PER_AREA
        wait_until(lambda: len(stack.sms_messages(phones)) >= want or None, 90, f"{want} SMS")
        out, _ = restart.communicate(timeout=120)
        assert restart.returncode == 0, out.decode()[-2000:]
        t_sms = time.monotonic()
        time.sleep(3)  # a late duplicate would show now

        msgs = stack.sms_messages(phones)
        per_phone = Counter(m["to"] for m in msgs)
        assert set(per_phone) == phones, f"missed: {phones - set(per_phone)}"  # 0 lost
        assert max(per_phone.values()) == 1, per_phone.most_common(3)  # 0 duplicates
        for area, ps in recipients.items():  # each area's SMS carry its own alert
            texts = {m["text"] for m in msgs if m["to"] in ps}
            assert len(texts) == 1, (area, texts)

        # every reading in Kafka exactly once (acks=all with min.insync.replicas 2: none acknowledged then lost)
        ours = {device for device, _site in ids}
        got = Counter(
            (v["device_id"], v["seq"])
            for v in (json.loads(r.value) for r in read_records(kafka3, topics.kafka_telemetry(Family.HAZMAT)))
            if v.get("device_id") in ours and v.get("type") == "hazmat.gas"
        )
        assert set(got) == set(sent), f"lost readings: {sorted(set(sent) - set(got))[:5]}"
        assert max(got.values()) == 1, got.most_common(3)
        # the restarted broker is back in the cluster
        assert (
            f"broker {victim}"
            in subprocess.run(
                ["kcat", "-L", "-b", kafka3, "-m", "5"], capture_output=True, text=True, timeout=30
            ).stdout
        )
        stats = stack.sms_stats()
        print(
            f"\nkilled broker {victim} (group coordinator) at round {KILL_AT_ROUND}/{ROUNDS}; "
            f"{len(sent)} readings, {len(msgs)} SMS to {len(phones)} numbers; carrier-refused retries: "
            f"{stats.get('duplicates')}; stream {t_stream - t_start:.1f} s, all SMS {t_sms - t_start:.1f} s after start"
        )
