"""The native Tocsin stack for integration tests: SMS and broadcast emulators, gateway, worker and
operator API as real subprocesses on the real local services, each on its own free port.

``running_stack`` starts them (all, or the ``roles`` a test needs), waits until every process
answers its readiness endpoint (bounded), and stops them all afterwards, whatever happened in
between. A test may stop the worker mid-run (``Stack.stop_worker``, SIGTERM or SIGKILL) and start
another with the same id (``Stack.start_worker``). Also here: the pieces the tests share (a
one-device registry, an MQTT device, rain and gas payloads, reading Kafka topics, the SMS
emulator's messages, ``promtool check metrics``).
"""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from kafka import KafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until
from tocsin.alerts.auth import Role, UserRecord, UsersFile, hash_secret, write_users_file
from tocsin.schemas import topics
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.transport import KAFKA_PYTHON_RECEIVE_MAX_BYTES

ROLES = ("sms", "broadcast", "gateway", "worker", "api")
SMS_KEY = "stack-sms-key"
BROADCAST_KEY = "stack-broadcast-key"
RECEIPT_SECRET = "stack-receipt-secret"  # signs the SMS emulator's receipts (alerts/receipts.py)
# The operator API's users (name -> role, password); hashed with the smallest accepted scrypt cost.
API_USERS = {
    "王工": (Role.SUPERVISOR, "stack-supervisor-pw"),
    "李值班": (Role.OPERATOR, "stack-operator-pw"),
    "张查看": (Role.VIEWER, "stack-viewer-pw"),
    "赵备班": (Role.OPERATOR, "stack-standby-pw"),  # logs in only where a test says so
}


def write_api_users(path: Path) -> Path:
    """The users file of ``API_USERS`` (see alerts/auth.py)."""
    records = [UserRecord(name=n, role=r, password_hash=hash_secret(pw, n=2**10)) for n, (r, pw) in API_USERS.items()]
    write_users_file(path, UsersFile(users=records))
    return path


def api_auth(name: str) -> dict[str, str]:
    """The ``Authorization`` header of ``API_USERS[name]`` (HTTP Basic)."""
    token = base64.b64encode(f"{name}:{API_USERS[name][1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Stack:
    env: dict[str, str]
    sms_url: str  # empty when the stack has no SMS emulator
    broadcast_url: str  # empty when the stack has no broadcast emulator
    gateway_port: int  # /metrics /healthz /readyz
    worker_port: int  # Faust web: /metrics /healthz /readyz /callbacks/sms
    api_port: int  # operator API: /metrics /healthz /readyz
    procs: dict[str, Proc] = field(default_factory=dict)
    start_offsets: dict[Any, int] = field(default_factory=dict)  # topic ends at the start (with from_now)
    ready_timeout_s: float = 120.0
    _start: Callable[[str, list[str], dict[str, str] | None], Proc] | None = None
    _workers: int = 1

    def logs(self) -> str:
        return "\n".join(f"---- {name} ----\n{p.text()[-2500:]}" for name, p in self.procs.items())

    @property
    def worker(self) -> Proc:
        """The worker started last."""
        return self.procs["worker" if self._workers == 1 else f"worker-{self._workers}"]

    def stop_worker(self, sig: int = signal.SIGTERM) -> int:
        """Stop the current worker (SIGTERM: a clean shutdown; SIGKILL: a crash); its exit code."""
        return self.worker.stop(sig=sig)

    def start_worker(self) -> Proc:
        """Start a new worker with the same id, data directory and port; returns once it is ready."""
        assert self._start is not None and self.worker.p.poll() is not None, "stop the running worker first"
        self._workers += 1
        proc = self._start(f"worker-{self._workers}", tocsin("worker"), self.env)
        _wait_http(f"http://127.0.0.1:{self.worker_port}/readyz", proc, self.ready_timeout_s, "worker /readyz")
        return proc

    def sms_messages(self, phones: Collection[str] | None = None) -> list[dict[str, Any]]:
        """What the SMS emulator has stored (to ``phones`` only, when given)."""
        req = urllib.request.Request(f"{self.sms_url}/v1/sms", headers={"Authorization": f"Bearer {SMS_KEY}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            msgs: list[dict[str, Any]] = json.loads(resp.read())["messages"]
        return msgs if phones is None else [m for m in msgs if m["to"] in phones]

    def sms_stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.sms_url}/_control/stats", timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def worker_metrics(self) -> str:
        """The current worker's /metrics text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.worker_port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())


def http_status(url: str, timeout_s: float = 3.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _wait_http(url: str, proc: Proc, timeout_s: float, what: str) -> None:
    def ok() -> bool:
        if proc.p.poll() is not None:
            raise AssertionError(f"{proc.log.name} exited {proc.p.returncode}:\n{proc.text()[-4000:]}")
        return http_status(url) == 200

    try:
        wait_until(ok, timeout_s, what, interval_s=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{proc.log.name}:\n{proc.text()[-3000:]}") from None


def skip_history(bootstrap: str, group_id: str) -> dict[Any, int]:
    """Start a new worker group at the end of every Tocsin topic (see procs.start_group_at_end);
    returns the committed end offsets (TopicPartition -> offset)."""
    return start_group_at_end(bootstrap, group_id, (*topics.ALL_KAFKA_TOPICS, topics.SILENCES))


@contextmanager
def running_stack(
    services: dict[str, str],
    tmp_path: Path,
    run_id: str,
    registry: Registry,
    extra_env: dict[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    from_now: bool = True,
    *,
    roles: Collection[str] = ROLES,
    sms_args: Sequence[str] = ("--receipt-delay-s", "0.2"),
) -> Iterator[Stack]:
    """Emulators, gateway, worker and operator API with their own consumer groups, client ids and ports.
    ``from_now``: the worker's group starts at the end of the topics (see ``skip_history``; the ends are
    ``Stack.start_offsets``). ``roles``: the processes to start (of ``ROLES``); ``sms_args``: the SMS
    emulator's options besides its port and key (say ``--rate-limit-per-s 30``)."""
    unknown = set(roles) - set(ROLES)
    assert not unknown, f"unknown roles {unknown}"
    reg_file = tmp_path / "registry.json"
    reg_file.write_text(registry.model_dump_json(), encoding="utf-8")
    with ExitStack() as stop:
        procs: dict[str, Proc] = {}

        def start(name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
            proc = Proc(args, tmp_path / f"{name}.log", env)
            procs[name] = proc
            stop.callback(proc.stop)
            return proc

        sms_url = broadcast_url = ""
        if "sms" in roles:
            sms_env = {"TOCSIN_SMS_API_KEY": SMS_KEY, "TOCSIN_SMS_CALLBACK_SECRET": RECEIPT_SECRET}
            sms = start("sms", tocsin("sms-gateway", "--port", "0", *sms_args), sms_env)
            sms_url = sms.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30).group(1)
        if "broadcast" in roles:
            bcast = start(
                "broadcast",
                [*tocsin()[:2], "tocsin.simulators.broadcast_platform", "--port", "0"],
                {"TOCSIN_BROADCAST_API_KEY": BROADCAST_KEY},
            )
            broadcast_url = bcast.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30).group(1)
        gateway_port, worker_port, api_port = free_port(), free_port(), free_port()
        env = {
            **services,
            "TOCSIN_REGISTRY_FILE": str(reg_file),
            "TOCSIN_MQTT_CLIENT_ID": f"gw-{run_id}",
            "TOCSIN_MQTT_SHARE_GROUP": f"g{run_id}",
            "TOCSIN_WORKER_ID": f"tocsin-stack-{run_id}",
            "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "worker"),
            "TOCSIN_WORKER_WEB_PORT": str(worker_port),
            "TOCSIN_METRICS_PORT": str(gateway_port),
            "TOCSIN_SMS_URL": sms_url,
            "TOCSIN_SMS_API_KEY": SMS_KEY if sms_url else "",
            "TOCSIN_SMS_CALLBACK_URL": f"http://127.0.0.1:{worker_port}/callbacks/sms" if sms_url else "",
            "TOCSIN_BROADCAST_URL": broadcast_url,
            "TOCSIN_BROADCAST_API_KEY": BROADCAST_KEY if broadcast_url else "",
            "TOCSIN_SMS_CALLBACK_SECRET": RECEIPT_SECRET,
            "TOCSIN_API_USERS_FILE": str(write_api_users(tmp_path / "api-users.json")),
            "TOCSIN_DEV": "1",  # the local harness's development secrets are accepted
            # the delivery sweep would also finish other tests' fan-outs of the last hour on the shared
            # broker (their alerts sit below this group's start offsets): on only where a test asks
            "TOCSIN_DELIVERY_SWEEP_S": "0",
            **(extra_env or {}),
        }
        stack = Stack(env, sms_url, broadcast_url, gateway_port, worker_port, api_port, procs)
        stack.ready_timeout_s, stack._start = ready_timeout_s, start
        if from_now:
            stack.start_offsets = skip_history(env["TOCSIN_KAFKA_BOOTSTRAP"], env["TOCSIN_WORKER_ID"])
        waits: list[tuple[str, Proc, str]] = []  # (url answering 200 when up, process, what)
        if "gateway" in roles:
            gateway = start("gateway", tocsin("gateway"), env)
            waits.append((f"http://127.0.0.1:{gateway_port}/readyz", gateway, "gateway /readyz"))
        if "worker" in roles:
            worker = start("worker", tocsin("worker"), env)
            waits.append((f"http://127.0.0.1:{worker_port}/readyz", worker, "worker /readyz"))
        if "api" in roles:
            api = start("api", [*tocsin()[:2], "tocsin.api", "--port", str(api_port)], env)
            waits.append((f"http://127.0.0.1:{api_port}/metrics", api, "operator API /metrics"))
        for url, proc, what in waits:
            _wait_http(url, proc, ready_timeout_s, what)
        yield stack


# --------------------------------------------------------------------------- shared test pieces
def one_device_registry(
    device: str, family: Family, site: str, area: Area, phones: Sequence[str] = (), **device_fields: Any
) -> Registry:
    """A registry of one device at 30.3 N 120.1 E, with ``phones`` as its area's SMS recipients."""
    return Registry(
        devices=[Device(device_id=device, family=family, site=site, lat=30.3, lon=120.1, area=area, **device_fields)],
        sms_recipients={area.code: list(phones)} if phones else {},
    )


def village(code: str) -> Area:
    """Area ``code`` as 测试区 青山镇 横溪村."""
    return Area(code=code, district="测试区", town="青山镇", village="横溪村")


class Gauge(NamedTuple):
    """One rain gauge of a test run: its own area (a random code no other run's alerts reach), site,
    two SMS recipients, and the registry that holds it (reporting every 300 s)."""

    run_id: str
    area: str
    device: str
    site: str
    phones: list[str]
    registry: Registry


def rain_gauge(phone_prefix: str) -> Gauge:
    """A fresh ``Gauge``; ``phone_prefix`` (say ``+86138``) keeps different tests' numbers apart."""
    run_id = uuid.uuid4().hex[:8]
    area = f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"
    device, site = f"RG-{run_id}", f"site-{run_id}"
    phones = [f"{phone_prefix}{random.randint(0, 99999999):08d}" for _ in range(2)]
    registry = one_device_registry(device, Family.HYDRO, site, village(area), phones, interval_s=300)
    return Gauge(run_id, area, device, site, phones, registry)


@contextmanager
def mqtt_device(services: dict[str, str], client_id: str) -> Iterator[mqtt.Client]:
    """A connected MQTT client (its network loop running) for publishing as a device."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", int(services["TOCSIN_MQTT_PORT"]))
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


def publish(client: mqtt.Client, topic: str, payload: dict[str, Any] | bytes) -> None:
    """Publish with QoS 1 and wait until the broker has it (JSON for a dict)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    client.publish(topic, data, qos=1).wait_for_publish(10)


def rain_burst(device: str, site: str, end: datetime, n: int = 8, mm: float = 6.0) -> list[dict[str, Any]]:
    """``n`` tipping-bucket reports of ``mm`` every 5 minutes, the last at ``end`` (seq 1..n): 8 x 6 mm
    cross the 35 mm/1 h critical rainfall with the 6th."""
    return [
        {
            "type": "hydro.rain",
            "device_id": device,
            "site": site,
            "ts": (end - timedelta(minutes=5 * (n - 1 - k))).isoformat(),
            "seq": k + 1,
            "rain_mm": mm,
            "interval_s": 300,
        }
        for k in range(n)
    ]


def gas_reading(device: str, site: str, seq: int, ts: datetime, value: float, gas: str = "H2S") -> dict[str, Any]:
    return {
        "type": "hazmat.gas",
        "device_id": device,
        "site": site,
        "seq": seq,
        "ts": ts.isoformat(),
        "gas": gas,
        "value": value,
        "unit": "mg/m3",
    }


def _consumer(bootstrap: str, topic: str, start: dict[Any, int] | None, idle_ms: int) -> KafkaConsumer:
    """A group-less consumer of every partition of ``topic``, at ``start``'s offsets or the beginning."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        consumer_timeout_ms=idle_ms,
        receive_message_max_bytes=KAFKA_PYTHON_RECEIVE_MAX_BYTES,  # a shared topic's backlog exceeds 1 MB
    )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    for tp in tps:
        if start is not None and tp in start:
            consumer.seek(tp, start[tp])
        else:
            consumer.seek_to_beginning(tp)
    return consumer


def read_records(bootstrap: str, topic: str, start: dict[Any, int] | None = None, idle_ms: int = 1500) -> list[Any]:
    """Every record of ``topic`` from ``start`` (default: the beginning) until none came for ``idle_ms``."""
    consumer = _consumer(bootstrap, topic, start, idle_ms)
    try:
        return list(consumer)
    finally:
        consumer.close()


def wait_records(
    bootstrap: str,
    topic: str,
    match: Callable[[Any], bool],
    want: int = 1,
    start: dict[Any, int] | None = None,
    timeout_s: float = 30,
) -> list[Any]:
    """At least ``want`` records of ``topic`` (from ``start``, default the beginning) that ``match``
    accepts (it gets the kafka-python record), read by one consumer for at most ``timeout_s``."""
    consumer = _consumer(bootstrap, topic, start, 1000)
    found: list[Any] = []
    try:

        def poll() -> list[Any] | None:
            found.extend(rec for rec in consumer if match(rec))
            return found if len(found) >= want else None

        return wait_until(poll, timeout_s, f"{want} matching records on {topic}", interval_s=0)
    finally:
        consumer.close()


def check_metrics(promtool: str, text: bytes) -> None:
    """``promtool check metrics`` accepts the exposition ``text``."""
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
