"""Kill the worker in the middle of an SMS fan-out and start it again: nobody gets the warning twice
and nobody is missed. Real Mosquitto, Kafka, gateway and worker processes, and the SMS carrier
emulator as a real HTTP server that rate-limits us (so the fan-out takes seconds); the processes are
those of tests/integration/stack.py."""

from __future__ import annotations

import random
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.procs import start_group_at_end, wait_until
from tests.integration.stack import gas_reading, mqtt_device, one_device_registry, publish, running_stack
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area

pytestmark = pytest.mark.integration
N_RECIPIENTS = 120


@pytest.mark.parametrize(
    ("values", "fast_lane", "lost_commit"),
    [
        ((1.0, 14.0, 15.0, 16.0), False, False),  # H2S above level 1 (10 mg/m3): yellow, via Kafka alerts
        ((1.0, 24.0, 25.0, 26.0), True, False),  # above level 2 (20 mg/m3): orange, the fast lane at issue
        # the group's alerts offset committed past the message in flight (as Faust once did): the
        # restarted worker's delivery sweep (alerts/sweep.py) finishes the fan-out from the audit
        ((1.0, 14.0, 15.0, 16.0), False, True),
    ],
    ids=["yellow-durable-path", "orange-fast-lane", "offset-committed-past-the-fan-out"],
)
def test_worker_killed_mid_fanout_sends_each_sms_exactly_once(
    services: dict[str, str], tmp_path: Path, values: tuple[float, ...], fast_lane: bool, lost_commit: bool
) -> None:
    run = uuid.uuid4().hex[:8]
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"  # no other test's alerts reach these numbers
    device, site = f"GD-{run}", f"park-{run}"
    phones = [f"+86139{run[:4].encode().hex()[:4]}{i:04d}" for i in range(N_RECIPIENTS)]
    registry = one_device_registry(device, Family.HAZMAT, site, Area(code=area), phones)
    env = {
        "TOCSIN_INFLUX_URL": "",
        "TOCSIN_SMS_CALLBACK_URL": "",  # no delivery receipts: only the fan-out itself
        "TOCSIN_SMS_RATE_PER_S": "25",  # what we were told the carrier allows; it enforces 30/s
        "TOCSIN_DELIVERY_SWEEP_S": "3600",  # on, as in production (the stack turns it off by default)
        "TOCSIN_DELIVERY_SWEEP_EVERY_S": "20",  # a message the agent left unread is delivered within 40 s
    }
    with (
        running_stack(
            services,
            tmp_path,
            run,
            registry,
            env,
            roles=("sms", "gateway", "worker"),
            sms_args=("--rate-limit-per-s", "30"),
        ) as stack,
        mqtt_device(services, device) as dev,
    ):
        t0 = datetime.now(UTC) - timedelta(minutes=2)
        topic = topics.mqtt_telemetry("hazmat", site, device)
        for k, value in enumerate(values):  # one alert
            publish(dev, topic, gas_reading(device, site, k + 1, t0 + timedelta(seconds=10 * k), value))

        # Mid fan-out: some numbers have their SMS, most do not yet.
        wait_until(
            lambda: 10 <= stack.sms_stats()["stored"] < N_RECIPIENTS // 2 or None,
            90,
            "the fan-out to start",
            interval_s=0.05,
        )
        metrics = stack.worker_metrics()
        # the shared Kafka may carry other runs' urgent detections: the lane starts exactly the urgent
        # (orange, red) messages this worker issued, and ours is among them only when it is orange
        issued = [line for line in stack.worker.text().splitlines() if "ALERT Alert " in line]
        urgent = sum(1 for line in issued if "ALERT Alert orange " in line or "ALERT Alert red " in line)
        ours = [line for line in issued if f": {area}" in line]
        assert len(ours) == 1, ours
        assert ("ALERT Alert orange " in ours[0]) is fast_lane, ours
        # a labelled counter has no sample until its first increment: absent means 0
        prefix = 'tocsin_alert_fast_lane_total{outcome="started"} '
        started = next((float(ln[len(prefix) :]) for ln in metrics.splitlines() if ln.startswith(prefix)), 0.0)
        assert started == float(urgent) and urgent >= int(fast_lane), [
            line for line in metrics.splitlines() if "fast_lane" in line
        ]
        stack.stop_worker(signal.SIGKILL)
        stored_at_kill = stack.sms_stats()["stored"]
        assert stored_at_kill < N_RECIPIENTS
        if lost_commit:  # once the dead member's session expired (the group is empty), commit the end
            wait_until(
                lambda: _commit_alerts_at_end(services["TOCSIN_KAFKA_BOOTSTRAP"], stack.env["TOCSIN_WORKER_ID"]),
                120,
                "the alerts offsets committed past the fan-out",
                interval_s=2.0,
            )

        worker2 = stack.start_worker()
        wait_until(lambda: len(stack.sms_messages()) >= N_RECIPIENTS or None, 180, "every recipient's SMS")

        msgs = stack.sms_messages()
        per_phone = Counter(m["to"] for m in msgs)
        assert set(per_phone) == set(phones)  # nobody missed
        assert max(per_phone.values()) == 1, per_phone.most_common(3)  # nobody warned twice
        assert len({m["idempotency_key"] for m in msgs}) == N_RECIPIENTS
        lines = [line for line in worker2.text().splitlines() if area in line and "delivering it again" in line]
        swept = any("committed with an incomplete fan-out" in line for line in lines)
        assert swept is lost_commit  # the sweep acts on committed messages only where the offsets lost the fan-out
        # Faust once left the message at the committed offset unread after the restart; the sweep's
        # stuck pass delivered it then (alerts/sweep.py). Shown, not failed: it is the safety net working.
        stuck = [line for line in lines if "not consumed for a whole period" in line]
        stats = stack.sms_stats()
        assert "gave_up" not in worker2.text() and "failed:" not in worker2.text()
        print(
            f"\nstored at kill {stored_at_kill}; duplicates refused by the carrier after restart: "
            f"{stats['duplicates']}; rate-limited requests: {stats.get('rate_limited')}; "
            f"delivered by the stuck-message sweep: {len(stuck)}"
        )


def _commit_alerts_at_end(bootstrap: str, group: str) -> bool:
    """Commit the group's ``alerts`` offsets at the end; False while the group still has a member."""
    try:
        start_group_at_end(bootstrap, group, (topics.ALERTS,))
    except Exception:  # noqa: BLE001 - the broker refuses a commit from outside a non-empty group
        return False
    return True
