"""Two workers in one consumer group on 6-partition topics; one is killed (SIGKILL) mid-stream and a
third takes its place: every alert is issued once, no SMS is lost or repeated, and the device state
the killed worker held comes back from its changelog.

Real Kafka and the SMS carrier emulator (tests/integration/stack.py, scale.py). Twelve rain gauges,
two on each partition of ``telemetry.hydro``, each in an area of its own with two SMS recipients.
Each gauge reports 8 x 6 mm every 5 minutes (``rain_burst``): 35 mm in an hour (the blue rainstorm
signal's critical rainfall, CMA) is crossed by the 6th report (36 mm) and by no fewer: the 5th to
8th alone make 24 mm. Reports 1-4 are processed and committed before the kill, so a gauge whose
state was on the killed worker alerts only if its new owner restored the first 24 mm from the
changelog. The kill comes after report 5 is produced, while reports 6-8 follow.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.scale import (
    PARTITIONS,
    GroupProgress,
    Member,
    at_least_partitions,
    elapsed,
    keys_on_every_partition,
    partition_of,
    start_members,
    wait_committed,
)
from tests.integration.stack import rain_burst, read_records, running_stack, village
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Device, Registry

pytestmark = pytest.mark.integration

PER_PARTITION = 2  # gauges per partition of telemetry.hydro
PHONES_PER_AREA = 2


def test_killed_worker_loses_no_alert_and_repeats_no_sms(services: dict[str, str], tmp_path: Path) -> None:
    t_start = time.monotonic()
    bootstrap = services["TOCSIN_KAFKA_BOOTSTRAP"]
    counts = at_least_partitions(bootstrap)
    assert min(counts.values()) >= PARTITIONS, counts
    run = uuid.uuid4().hex[:6]
    gauges = keys_on_every_partition(f"RG{run}", PER_PARTITION)
    base = random.randint(100, 899) * 1000  # 12 areas no other run's alerts reach
    area_of = {g: f"{base + i:06d}" for i, g in enumerate(gauges)}
    phones = {area_of[g]: [f"+86139{random.randint(0, 99999999):08d}" for _ in range(PHONES_PER_AREA)] for g in gauges}
    site = f"site-{run}"
    registry = Registry(
        devices=[
            Device(
                device_id=g,
                family=Family.HYDRO,
                site=site,
                lat=30.3,
                lon=120.1,
                area=village(area_of[g]),
                interval_s=300,
            )
            for g in gauges
        ],
        sms_recipients=phones,
    )
    extra = {"TOCSIN_KAFKA_PARTITIONS": str(PARTITIONS), "TOCSIN_INFLUX_URL": "", "TOCSIN_CONSUMER_LAG_INTERVAL_S": "1"}
    end = datetime.now(UTC).replace(microsecond=0)
    bursts = {g: rain_burst(g, site, end) for g in gauges}
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")
    members: list[Member] = []
    with running_stack(services, tmp_path, run, registry, extra, roles=("sms",)) as stack:
        progress = GroupProgress(bootstrap, stack.env["TOCSIN_WORKER_ID"], [topics.kafka_telemetry("hydro")])
        try:

            def send_round(k: int) -> None:
                for g in gauges:
                    producer.send(
                        topics.kafka_telemetry("hydro"), key=g.encode(), value=json.dumps(bursts[g][k]).encode()
                    )
                producer.flush(10)

            members += start_members(["w1", "w2"], stack.env, tmp_path)
            t_ready = elapsed(t_start)
            for k in range(4):  # 24 mm each: no detection yet
                send_round(k)
            wait_committed(progress, progress.ends(), 60)
            w1, w2 = members
            hydro = topics.kafka_telemetry("hydro")

            def assignment() -> set[int] | None:
                """w1's partitions of telemetry.hydro once both workers report theirs (and cover all)."""
                mine = w1.owned(hydro)
                return mine if mine and (mine | w2.owned(hydro)) == set(range(PARTITIONS)) else None

            owned: set[int] = wait_until(assignment, 15, "assignments")
            on_killed = [g for g in gauges if partition_of(g) in owned]
            assert on_killed, f"w1 owns {owned}: no gauge of this run there"

            send_round(4)  # 30 mm
            time.sleep(0.2)
            w1.proc.stop(sig=signal.SIGKILL)
            t_kill = elapsed(t_start)
            for k in range(5, 8):  # 36 mm (blue), 42, 48
                send_round(k)
                time.sleep(0.2)
            members += start_members(["w3"], stack.env, tmp_path)
            t_rejoined = elapsed(t_start)

            want = {p for ps in phones.values() for p in ps}
            wait_until(lambda: {x["to"] for x in stack.sms_messages(want)} == want, 60, "an SMS to every recipient")
            t_all_sms = elapsed(t_start)
            # the killed worker's partitions moved within the group's session timeout (10 s), not
            # Faust's 60 s default: its gauges' alerts were late by seconds, not a minute
            assert t_all_sms - t_kill < 40, (t_kill, t_all_sms)
            wait_committed(progress, progress.ends(), 30)
            time.sleep(3)  # a repeated or late message would show now
            sms = stack.sms_messages(want)
            stats = stack.sms_stats()

            # 0 duplicate SMS: one message per recipient, under the delivery key <fingerprint>#<revision>
            per_phone = Counter(m["to"] for m in sms)
            assert set(per_phone.values()) == {1}, per_phone
            alerts = [
                a
                for a in (json.loads(r.value) for r in read_records(bootstrap, topics.ALERTS, stack.start_offsets))
                if a["area"]["code"] in phones
            ]
            by_area: dict[str, set[tuple[str, int, str]]] = defaultdict(set)
            for a in alerts:
                by_area[a["area"]["code"]].add((a["msg_type"], a["revision"], a["identifier"]))
            # 0 lost, 0 extra: each area exactly one blue Alert (a replayed detection may write the same
            # message to Kafka again: same identifier, same delivery key, deduplicated by the carrier)
            assert set(by_area) == set(phones), sorted(set(phones) - set(by_area))
            assert all(len(v) == 1 and next(iter(v))[0] == "Alert" for v in by_area.values()), dict(by_area)
            assert {a["level"] for a in alerts} == {"blue"}
            # every message its own CAP identifier, whichever worker issued it (alerts/cap_id.py)
            assert len({ident for v in by_area.values() for _t, _r, ident in v}) == len(by_area), dict(by_area)
            for a in alerts:
                key = f"{a['fingerprint']}#{a['revision']}"
                assert {m["idempotency_key"] for m in sms if m["to"] in phones[a["area"]["code"]]} == {
                    f"{key}:{p}" for p in phones[a["area"]["code"]]
                }
            # the gauges of the killed worker crossed 35 mm with their 6th report, not later: their
            # first 24 mm came back from the changelog (without it: 30 mm after the 8th, no alert at all)
            detections = [
                d
                for d in (json.loads(r.value) for r in read_records(bootstrap, topics.DETECTIONS, stack.start_offsets))
                if d.get("device_id") in area_of and d.get("kind") == "rainfall"
            ]
            opens = {(d["device_id"], d["id"]) for d in detections if d["state"] == "open"}
            assert Counter(dev for dev, _ in opens) == Counter(gauges), sorted(opens)
            first_open = {d["device_id"]: d for d in detections if d["state"] == "open"}
            assert all(first_open[g]["value"] == pytest.approx(36.0) for g in gauges), {
                g: first_open[g]["value"] for g in on_killed
            }
            recovered = [m.proc.text() for m in members[1:]]
            print(
                f"\nscale-out kill: ready {t_ready} s, kill at {t_kill} s, w3 ready {t_rejoined} s,"
                f" all SMS {t_all_sms} s;"
                f" w1 owned {sorted(owned)} ({len(on_killed)} gauges); alert records {len(alerts)} for {len(by_area)}"
                f" areas; carrier duplicates refused {stats['duplicates']}; SMS stored {len(sms)};"
                f" changelog recovery lines {sum(t.count('Restoring state from changelog') for t in recovered)}"
            )
        finally:
            for m in members:
                m.proc.stop()
            progress.close()
            producer.close()
