"""The native Tocsin stack for integration tests: SMS and broadcast emulators, gateway, worker and
operator API as real subprocesses on the real local services, each on its own free port.

``running_stack`` starts them, waits until every process answers its readiness endpoint (bounded),
and stops them all afterwards, whatever happened in between.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from schemas import topics
from schemas.registry import Registry
from tests.integration.procs import Proc, free_port, start_group_at_end, tocsin, wait_until

SMS_KEY = "stack-sms-key"
BROADCAST_KEY = "stack-broadcast-key"


@dataclass
class Stack:
    env: dict[str, str]
    sms_url: str
    broadcast_url: str
    gateway_port: int  # /metrics /healthz /readyz
    worker_port: int  # Faust web: /metrics /healthz /readyz /callbacks/sms
    api_port: int  # operator API: /metrics /healthz /readyz
    procs: dict[str, Proc] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(f"---- {name} ----\n{p.text()[-2500:]}" for name, p in self.procs.items())


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


def skip_history(bootstrap: str, group_id: str) -> int:
    """Start a new worker group at the end of every Tocsin topic (see procs.start_group_at_end);
    returns the number of partitions committed."""
    return len(start_group_at_end(bootstrap, group_id, (*topics.ALL_KAFKA_TOPICS, topics.SILENCES)))


@contextmanager
def running_stack(
    services: dict[str, str],
    tmp_path: Path,
    run_id: str,
    registry: Registry,
    extra_env: dict[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    from_now: bool = True,
) -> Iterator[Stack]:
    """Emulators, gateway, worker and operator API with their own consumer groups, client ids and ports.
    ``from_now``: the worker's group starts at the end of the topics (see ``skip_history``)."""
    reg_file = tmp_path / "registry.json"
    reg_file.write_text(registry.model_dump_json(), encoding="utf-8")
    with ExitStack() as stop:
        procs: dict[str, Proc] = {}

        def start(name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
            proc = Proc(args, tmp_path / f"{name}.log", env)
            procs[name] = proc
            stop.callback(proc.stop)
            return proc

        sms = start("sms", tocsin("sms-gateway", "--port", "0", "--api-key", SMS_KEY, "--receipt-delay-s", "0.2"))
        bcast = start(
            "broadcast", [*tocsin()[:2], "simulators.broadcast_platform", "--port", "0", "--api-key", BROADCAST_KEY]
        )
        sms_url = sms.wait_for(r"listening on (http://127\.0\.0\.1:\d+)", 30).group(1)
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
            "TOCSIN_SMS_API_KEY": SMS_KEY,
            "TOCSIN_SMS_CALLBACK_URL": f"http://127.0.0.1:{worker_port}/callbacks/sms",
            "TOCSIN_BROADCAST_URL": broadcast_url,
            "TOCSIN_BROADCAST_API_KEY": BROADCAST_KEY,
            **(extra_env or {}),
        }
        if from_now:
            skip_history(env["TOCSIN_KAFKA_BOOTSTRAP"], env["TOCSIN_WORKER_ID"])
        gateway = start("gateway", tocsin("gateway"), env)
        worker = start("worker", tocsin("worker"), env)
        api = start("api", [*tocsin()[:2], "alerts.api", "--port", str(api_port)], env)
        stack = Stack(env, sms_url, broadcast_url, gateway_port, worker_port, api_port, procs)
        _wait_http(f"http://127.0.0.1:{gateway_port}/readyz", gateway, ready_timeout_s, "gateway /readyz")
        _wait_http(f"http://127.0.0.1:{worker_port}/readyz", worker, ready_timeout_s, "worker /readyz")
        _wait_http(f"http://127.0.0.1:{api_port}/metrics", api, ready_timeout_s, "operator API /metrics")
        yield stack
