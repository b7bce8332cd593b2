"""deploy/docker-compose.yml and everything it references, checked without a Docker engine.

The compose file, the Prometheus scrape config for it, Grafana's provisioning and dashboards, the
Mosquitto config and the Dockerfile must agree with each other, with the repository's files and
with the code (settings, metric names). Each test names the reference it checks.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from tocsin.schemas.registry import Registry
from tocsin.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SECRETS = DEPLOY / "secrets"
SECRET_EXAMPLES = sorted(SECRETS.glob("*.env.example"))
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
PROM_COMPOSE = DEPLOY / "prometheus" / "prometheus.compose.yml"
GRAFANA = DEPLOY / "grafana"
SETTINGS = {f"TOCSIN_{name.upper()}" for name in Settings.model_fields}
SECRET_SETTINGS = {f"TOCSIN_{n.upper()}" for n, f in Settings.model_fields.items() if f.annotation is SecretStr}
TOCSIN_VAR = re.compile(r"\bTOCSIN_[A-Z0-9_]+")
METRIC_DEF = re.compile(
    r"\b(?:Counter|Gauge|Histogram|Summary|CounterMetricFamily|GaugeMetricFamily)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\""
)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict) and doc["services"]
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def env_file_vars(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"bad line in {path.name}: {line!r}"
            out[key] = value
    return out


def env_files(svc: dict[str, Any]) -> list[Path]:
    """A service's env files; ``secrets/<name>.env`` is the operator's copy of ``<name>.env.example``."""
    raw = svc.get("env_file", [])
    names = [raw] if isinstance(raw, str) else [e if isinstance(e, str) else e["path"] for e in raw]
    out = []
    for name in names:
        p = DEPLOY / name
        example = p.with_name(p.name + ".example")
        out.append(p if p.exists() or not example.exists() else example)
    return out


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {str(k): str(v) for k, v in env.items()}


def command_text(svc: dict[str, Any]) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = svc.get(key)
        if isinstance(value, list):
            parts.append(" ".join(str(v) for v in value))
        elif value:
            parts.append(str(value))
    return "\n".join(parts)


def is_tocsin(svc: dict[str, Any]) -> bool:
    """Services running the Tocsin image (gateway, worker, operator API, emulators)."""
    return "build" in svc and str(svc.get("image", "")).startswith("tocsin")


def exposed_ports(svc: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in svc.get("expose", [])}
    for p in svc.get("ports", []):
        ports.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def bind_mounts(svc: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of every bind mount (a named volume has no slash in its source)."""
    out = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                out.append(((DEPLOY / vol["source"]).resolve(), vol["target"]))
            continue
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((DEPLOY / source).resolve(), target))
    return out


def host_path(svc: dict[str, Any], container_path: str) -> Path | None:
    """The repository file that a service sees at ``container_path``, through its bind mounts."""
    want = PurePosixPath(container_path)
    for host, target in bind_mounts(svc):
        t = PurePosixPath(target)
        if want == t or t in want.parents:
            return host.joinpath(*want.relative_to(t).parts)
    return None


# --------------------------------------------------------------------------- compose structure


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
    expected = {"mosquitto", "kafka", "influxdb", "prometheus", "grafana", "gateway", "worker"}
    expected |= {"operator-api", "sms-gateway", "broadcast-platform"}
    assert expected <= set(services)


def test_build_context_and_dockerfile_exist(services: dict[str, dict[str, Any]]) -> None:
    builds = [svc["build"] for svc in services.values() if "build" in svc]
    assert builds
    for build in builds:
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_every_bind_mount_exists_and_every_named_volume_is_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for host, _ in bind_mounts(svc):
            # deploy/pki/ is made on the host by deploy/pki.sh (private keys: never in the repository)
            generated = host == DEPLOY / "pki" or DEPLOY / "pki" in host.parents
            assert host.exists() or generated, f"{name}: {host} does not exist"
            assert REPO in host.parents, f"{name}: {host} is outside the repository"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source and not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


def test_depends_on_names_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else list(deps):
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name


def test_env_files_exist_and_the_example_has_no_real_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for path in env_files(svc):
            assert path.exists(), f"{name}: env file {path} missing"
    assert "deploy/secrets/*.env" in (REPO / ".gitignore").read_text().splitlines()
    assert SECRET_EXAMPLES
    for example in SECRET_EXAMPLES:
        for key, value in env_file_vars(example).items():
            assert value.startswith("change-me") or value.startswith("tocsin:change-me"), key


# Which secrets each service may see (docs/security.md, "Secrets"): nothing more.
SECRET_NEEDS = {
    "mqtt-auth": {"MQTT_GATEWAY_PASSWORD", "MQTT_WORKER_PASSWORD", "MQTT_OPERATOR_PASSWORD"},
    "kafka": {"KAFKA_SCRAM_PASSWORD"},
    "kafka-2": {"KAFKA_SCRAM_PASSWORD"},
    "kafka-3": {"KAFKA_SCRAM_PASSWORD"},
    "influxdb": {"INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_USER_PASSWORD"},
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD", "TOCSIN_INFLUX_TOKEN"},
    "gateway": {"MQTT_GATEWAY_PASSWORD", "KAFKA_SCRAM_PASSWORD", "TOCSIN_INFLUX_TOKEN"},
    "worker": {
        "MQTT_WORKER_PASSWORD",
        "KAFKA_SCRAM_PASSWORD",
        "TOCSIN_SMS_API_KEY",
        "TOCSIN_SMS_CALLBACK_SECRET",
        "TOCSIN_BROADCAST_API_KEY",
    },
    "operator-api": {"KAFKA_SCRAM_PASSWORD"},
    "sms-gateway": {"TOCSIN_SMS_API_KEY", "TOCSIN_SMS_CALLBACK_SECRET"},
    "broadcast-platform": {"TOCSIN_BROADCAST_API_KEY"},
}


def test_each_service_gets_only_the_secrets_it_needs(services: dict[str, dict[str, Any]]) -> None:
    every = {k for example in SECRET_EXAMPLES for k in env_file_vars(example)}
    for name, svc in services.items():
        got = {k for path in env_files(svc) for k in env_file_vars(path)}
        assert got == SECRET_NEEDS.get(name, set()), f"{name}: {sorted(got)}"
    assert set().union(*SECRET_NEEDS.values()) == every  # every secret is used by someone
    assert all(len(v) < len(every) for v in SECRET_NEEDS.values())
    # no secret on a command line (``ps`` shows those to every user of the host)
    for name, svc in services.items():
        assert "--api-key" not in command_text(svc), name


def test_tocsin_env_vars_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    seen: set[str] = set()
    tocsin_services = [n for n, s in services.items() if is_tocsin(s)]
    assert {"gateway", "worker", "operator-api", "sms-gateway", "broadcast-platform"} <= set(tocsin_services)
    for name in tocsin_services:
        svc = services[name]
        names = set(environment(svc)) | set(TOCSIN_VAR.findall(command_text(svc)))
        for path in env_files(svc):
            names |= {k for k in env_file_vars(path) if k.startswith("TOCSIN_")}
        tocsin_names = {n for n in names if n.startswith("TOCSIN_")}
        unknown = tocsin_names - SETTINGS
        assert not unknown, f"{name}: {sorted(unknown)} are not settings in tocsin/settings.py"
        seen |= tocsin_names
    # secrets only through the env file, never written into the compose file
    for name, svc in services.items():
        leaked = set(environment(svc)) & SECRET_SETTINGS
        assert not leaked, f"{name}: secrets {sorted(leaked)} set in docker-compose.yml"
    assert {"TOCSIN_MQTT_PASSWORD", "TOCSIN_SMS_API_KEY", "TOCSIN_BROADCAST_API_KEY", "TOCSIN_INFLUX_TOKEN"} <= seen


def test_shared_secrets_agree_in_the_example() -> None:
    env = {k: v for example in SECRET_EXAMPLES for k, v in env_file_vars(example).items()}
    user, _, password = env["TOCSIN_INFLUX_TOKEN"].partition(":")
    assert (user, password) == ("tocsin", env["INFLUXDB_USER_PASSWORD"])


def test_scaled_services_share_groups_and_get_unique_ids(services: dict[str, dict[str, Any]]) -> None:
    gateway, worker = services["gateway"], services["worker"]
    for svc in (gateway, worker):
        assert "container_name" not in svc  # --scale needs generated names
        assert not [p for p in svc.get("ports", [])]  # a fixed host port cannot be bound by N replicas
    assert "TOCSIN_MQTT_CLIENT_ID" not in environment(gateway)
    assert "TOCSIN_MQTT_CLIENT_ID=tocsin-gateway-$(hostname)" in command_text(gateway).replace("$$", "$")
    assert environment(gateway)["TOCSIN_MQTT_SHARE_GROUP"]
    assert environment(worker)["TOCSIN_WORKER_ID"] == "tocsin-worker"
    for svc in (gateway, worker):
        assert environment(svc)["TOCSIN_BIND_HOST"] == "0.0.0.0"


def test_registry_file_is_mounted_and_parses(services: dict[str, dict[str, Any]]) -> None:
    for name in ("gateway", "worker"):
        svc = services[name]
        path = host_path(svc, environment(svc)["TOCSIN_REGISTRY_FILE"])
        assert path is not None and path.is_file(), name
        assert len(Registry.model_validate_json(path.read_text(encoding="utf-8")).devices) > 0


def test_workers_reach_the_emulators_by_service_name(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["worker"])
    for key, service in (("TOCSIN_SMS_URL", "sms-gateway"), ("TOCSIN_BROADCAST_URL", "broadcast-platform")):
        m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", env[key])
        assert m and m.group(1) == service and int(m.group(2)) in exposed_ports(services[service])
        assert f"--port {m.group(2)}" in command_text(services[service])
    for svc in services.values():
        for key in ("TOCSIN_KAFKA_BOOTSTRAP", "TOCSIN_MQTT_HOST", "TOCSIN_INFLUX_URL"):
            value = interpolate(environment(svc), {}).get(key)  # the defaults of ${VAR:-default}
            for item in value.split(",") if value else ():
                host = re.sub(r"^https?://", "", item).split(":")[0]
                assert host in services, f"{key}={value}: no service {host}"


# --------------------------------------------------------------------------- mosquitto


def test_mosquitto_is_tls_only_with_acl_and_passwords_generated_from_the_registry(
    services: dict[str, dict[str, Any]],
) -> None:
    broker = services["mosquitto"]
    conf_path = host_path(broker, "/mosquitto/config/mosquitto.conf")
    assert conf_path is not None and conf_path.is_file()
    conf = dict(line.split(None, 1) for line in conf_path.read_text().splitlines() if line.strip() and line[0] != "#")
    assert conf["allow_anonymous"] == "false" and conf["listener"].split() == ["8883"]
    assert [p.split(":")[-1] for p in broker["ports"]] == ["8883"]
    # ACL, password file and certificate live in the volume that the mqtt-auth job writes
    vols = {v.split(":")[1]: v.split(":")[0] for v in broker["volumes"]}
    init = services["mqtt-auth"]
    init_vols = {v.split(":")[0]: v.split(":")[1] for v in init["volumes"]}
    for key in ("acl_file", "password_file", "cafile", "certfile", "keyfile"):
        directory = str(PurePosixPath(conf[key]).parent)
        assert init_vols[vols[directory]] == directory, key
    script = command_text(init)
    assert "tocsin mqtt-auth --registry /etc/tocsin/registry.json" in script
    assert host_path(init, "/etc/tocsin/registry.json") is not None
    secrets = {k for path in env_files(init) for k in env_file_vars(path)}
    for _user, var in re.findall(r"--password-from-env (\w+)=(\w+)", script):
        assert var in secrets, var
    # each Tocsin service connects over TLS as its own user
    for name, user in (("gateway", "gateway"), ("worker", "worker")):
        text = command_text(services[name])
        assert f"TOCSIN_MQTT_USERNAME={user}" in text
        assert f"--password-from-env {user}=" in script
        assert environment(services[name])["TOCSIN_MQTT_PORT"] == "8883"
        assert environment(services[name])["TOCSIN_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


# --------------------------------------------------------------------------- prometheus


def scrape_targets(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    out = []
    for job in config["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                host, port = target.rsplit(":", 1)
                out.append((job["job_name"], host, int(port)))
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                out.append((job["job_name"], name, int(sd["port"])))
    return out


def test_prometheus_compose_targets_are_services_exposing_the_port(services: dict[str, dict[str, Any]]) -> None:
    prom = services["prometheus"]
    config_path = host_path(prom, "/etc/prometheus/prometheus.yml")
    assert config_path == PROM_COMPOSE
    config = load_yaml(PROM_COMPOSE)
    targets = scrape_targets(config)
    assert {job for job, _, _ in targets} == {"tocsin-gateway", "tocsin-worker", "tocsin-api", "prometheus"}
    for job, host, port in targets:
        assert host in services, f"{job}: {host} is not a compose service"
        assert port in exposed_ports(services[host]), f"{job}: {host} does not expose {port}"
    gw_env, wk_env = environment(services["gateway"]), environment(services["worker"])
    assert ("tocsin-gateway", "gateway", int(gw_env["TOCSIN_METRICS_PORT"])) in targets
    assert ("tocsin-worker", "worker", int(wk_env["TOCSIN_WORKER_WEB_PORT"])) in targets
    api_port = int(re.search(r"--port (\d+)", command_text(services["operator-api"])).group(1))  # type: ignore[union-attr]
    assert ("tocsin-api", "operator-api", api_port) in targets
    for rule_file in config["rule_files"]:
        mounted = host_path(prom, str(PurePosixPath("/etc/prometheus") / rule_file))
        assert mounted is not None and mounted.is_file() and mounted.parent == DEPLOY / "prometheus"


def test_promtool_accepts_the_compose_config(promtool: str) -> None:
    import subprocess

    proc = subprocess.run([promtool, "check", "config", str(PROM_COMPOSE)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


# --------------------------------------------------------------------------- grafana


def grafana_datasources() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in load_yaml(path)["datasources"]:
            out[ds["uid"]] = ds
    return out


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def test_grafana_provisioning_is_mounted_and_points_at_existing_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    prov = host_path(grafana, "/etc/grafana/provisioning")
    assert prov == GRAFANA / "provisioning"
    providers = [p for f in sorted((prov / "dashboards").glob("*.y*ml")) for p in load_yaml(f)["providers"]]
    assert providers
    for provider in providers:
        folder = host_path(grafana, provider["options"]["path"])
        assert folder is not None and folder.is_dir(), provider
        assert sorted(f.name for f in folder.glob("*.json")) == sorted(dashboards())


def test_datasources_reach_services_and_their_env_is_provided(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    provided = set(environment(grafana))
    for path in env_files(grafana):
        provided |= set(env_file_vars(path))
    sources = grafana_datasources()
    assert {"tocsin-prometheus", "tocsin-influxdb"} <= set(sources)
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.y*ml"):
        for var in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", path.read_text()):
            assert var in provided, f"{path.name} needs ${{{var}}}, not set for the grafana service"
    for ds in sources.values():
        m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", ds["url"])
        assert m and m.group(1) in services and int(m.group(2)) in exposed_ports(services[m.group(1)])
    assert sources["tocsin-influxdb"]["jsonData"]["version"] == "Flux"
    influx_env = environment(services["influxdb"])
    assert influx_env["INFLUXDB_HTTP_FLUX_ENABLED"] == "true"


def test_dashboards_are_valid_and_use_provisioned_datasources() -> None:
    sources = grafana_datasources()
    boards = dashboards()
    assert {b["title"] for b in boards.values()} == {
        "Tocsin pipeline health",
        "Hazards live",
        "Devices and active alerts",
    }
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            where = f"{name}: {panel['title']}"
            assert panel["datasource"]["uid"] in sources, where
            assert panel["targets"], where
            for target in panel["targets"]:
                ds = sources[target["datasource"]["uid"]]
                assert target["datasource"]["type"] == ds["type"], where
                field = "expr" if ds["type"] == "prometheus" else "query"
                assert target[field].strip(), where
    geomaps = [p for b in boards.values() for p in b["panels"] if p["type"] == "geomap"]
    assert len(geomaps) == 1
    refs = {t["refId"] for t in geomaps[0]["targets"]}
    for layer in geomaps[0]["options"]["layers"]:
        assert layer["filterData"]["options"] in refs
        assert (layer["location"]["latitude"], layer["location"]["longitude"]) == ("lat", "lon")


def defined_metrics() -> set[str]:
    names: set[str] = set()
    for package in ("ingest", "detectors", "alerts", "tocsin"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(METRIC_DEF.findall(path.read_text(encoding="utf-8")))
    return names


def test_pipeline_dashboard_uses_exactly_the_metrics_the_code_defines() -> None:
    board = dashboards()["pipeline-health.json"]
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    used = set(re.findall(r"\btocsin_[a-z0-9_]+", exprs))
    defined = defined_metrics()
    assert defined, "no metric definitions found"

    def base(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|total)$", "", name)

    unknown = {u for u in used if u not in defined and base(u) not in defined}
    assert not unknown, f"panels query metrics no process defines: {sorted(unknown)}"
    unused = {d for d in defined if d not in used and not any(base(u) == d for u in used)}
    assert not unused, f"metrics without a panel on the pipeline dashboard: {sorted(unused)}"


# --------------------------------------------------------------------------- dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_copies_existing_sources_and_bakes_in_no_secret() -> None:
    copies = 0
    for op, rest in dockerfile_instructions():
        if op in ("COPY", "ADD"):
            args = shlex.split(rest)
            if any(a.startswith("--from=") for a in args):
                continue
            sources = [a for a in args if not a.startswith("--")][:-1]
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"
                copies += 1
        if op in ("ENV", "ARG"):
            assert not set(TOCSIN_VAR.findall(rest)) & SECRET_SETTINGS, rest
            assert not set(TOCSIN_VAR.findall(rest)) - SETTINGS, rest
    assert copies >= 2
    # every package setuptools installs is copied into the build stage
    copied = {shlex.split(rest)[0] for op, rest in dockerfile_instructions() if op == "COPY" and "--from" not in rest}
    packages = {"tocsin", "ingest", "detectors", "alerts", "schemas", "simulators"}
    assert packages <= copied
    assert "pyproject.toml" in " ".join(copied) or any("pyproject.toml" in r for _, r in dockerfile_instructions())
    assert any(op == "RUN" and "pip" in rest and " ." in rest for op, rest in dockerfile_instructions())
    assert any(op == "USER" for op, _ in dockerfile_instructions())


# --------------------------------------------------------------------------- three brokers (profile kafka3)
KAFKA3_ENV = DEPLOY / "kafka3.env"
KAFKA_NODES = ("kafka", "kafka-2", "kafka-3")
COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation of ``${VAR:-default}`` (and ``$$`` -> ``$``) through a parsed
    document, for the variables the file uses (the engine is not here to do it)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1)) or (m.group(2) if m.group(2) is not None else "")

    return COMPOSE_VAR.sub(sub, value)


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def node_properties(svc: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The properties a node runs with: its entry point's choice, and its ``sed`` of the template."""
    node_env = environment(svc)
    if node_env["CLUSTER_NODES"] != "3":
        return properties(host_path(svc, "/etc/kafka/tocsin.properties").read_text(encoding="utf-8"))  # type: ignore[union-attr]
    template = host_path(svc, "/etc/kafka/tocsin-cluster.properties")
    assert template is not None and template.is_file()
    text = template.read_text(encoding="utf-8")
    text = text.replace("@NODE_ID@", node_env["NODE_ID"]).replace("@ADVERTISED_HOST@", node_env["ADVERTISED_HOST"])
    assert not re.search(r"@[A-Z_]+@", text), "placeholder left"
    return properties(text)


@pytest.mark.parametrize("brokers", [1, 3])
def test_kafka_profiles_single_node_and_three_brokers(compose: dict[str, Any], brokers: int) -> None:
    env = env_file_vars(KAFKA3_ENV) if brokers == 3 else {}
    doc = interpolate(compose, env)
    services = doc["services"]
    profiles = set(env.get("COMPOSE_PROFILES", "").split(",")) - {""}
    active = {n for n, svc in services.items() if not svc.get("profiles") or set(svc["profiles"]) & profiles}
    nodes = [n for n in KAFKA_NODES if n in active]
    assert nodes == list(KAFKA_NODES[:brokers])
    assert not services["kafka"].get("profiles")  # the first broker runs in both set-ups
    assert {services[n]["image"] for n in KAFKA_NODES} == {"apache/kafka:4.0.0"}
    props = {n: node_properties(services[n], env) for n in nodes}
    internal = doc["networks"]["kafka-internal"]
    assert internal["internal"] is True
    assert {n for n, svc in services.items() if "kafka-internal" in (svc.get("networks") or {})} == set(KAFKA_NODES)
    aliases = {n: services[n]["networks"]["kafka-internal"]["aliases"] for n in KAFKA_NODES}
    san = re.search(r"SAN=\$\{TOCSIN_PKI_SAN:-([^}]*)\}", (DEPLOY / "pki.sh").read_text(encoding="utf-8"))
    assert san
    for name in nodes:
        p, node_env = props[name], environment(services[name])
        assert p["node.id"] == node_env["NODE_ID"]
        assert p["process.roles"] == "broker,controller"
        # the clients' listener: SASL_SSL on 9094, advertised under the service's name (the certificate's SAN)
        advertised = dict(a.split("://", 1) for a in p["advertised.listeners"].split(","))
        assert p["listener.security.protocol.map"].count("SASL_SSL:SASL_SSL") == 1
        sasl_host = advertised["SASL_SSL"].rsplit(":", 1)[0]
        assert sasl_host == name and f"DNS:{name}" in san.group(1).split(",")
        assert "9094" in services[name]["expose"]
        # the health check's listener
        assert advertised[next(k for k in advertised if "localhost:9092" in advertised[k])] == "localhost:9092"
    tocsin_envs = [environment(services[n]) for n in ("gateway", "worker", "operator-api")]
    for e in tocsin_envs:
        assert e["TOCSIN_KAFKA_BOOTSTRAP"].split(",") == [f"{n}:9094" for n in nodes]
        assert e["TOCSIN_KAFKA_REPLICATION_FACTOR"] == ("3" if brokers == 3 else "0")
    for n in ("gateway", "worker", "operator-api"):
        deps = services[n]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert all(deps[k] == {"condition": "service_healthy", "required": False} for k in KAFKA_NODES[1:])
    if brokers == 1:
        assert props["kafka"]["controller.quorum.voters"] == "1@localhost:9093"
        return
    # one cluster: the same id, the same three voters reached at the nodes' own internal aliases
    assert len({environment(services[n])["CLUSTER_ID"] for n in nodes}) == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", environment(services["kafka"])["CLUSTER_ID"])
    voters = {p["controller.quorum.voters"] for p in props.values()}
    assert len(voters) == 1
    voter_hosts = {int(v.split("@")[0]): v.split("@")[1] for v in voters.pop().split(",")}
    for name in nodes:
        p, node_id = props[name], int(environment(services[name])["NODE_ID"])
        listeners = dict(a.split("://", 1) for a in p["listeners"].split(","))
        assert voter_hosts[node_id] == listeners["CONTROLLER"]
        host = listeners["CONTROLLER"].rsplit(":", 1)[0]
        assert aliases[name] == [host]  # bound to the internal network only
        assert listeners[p["inter.broker.listener.name"]].rsplit(":", 1)[0] == host
        assert (p["default.replication.factor"], p["min.insync.replicas"]) == ("3", "2")
        assert (p["offsets.topic.replication.factor"], p["transaction.state.log.min.isr"]) == ("3", "2")
        assert p["unclean.leader.election.enable"] == "false"
    assert len({bind[0] for n in nodes for bind in [(services[n]["volumes"][-1],)]}) == 3  # a data volume each


def test_kafka_entry_point_is_valid_shell_and_refuses_a_lone_extra_node(compose: dict[str, Any]) -> None:
    """The entry point (after compose's ``$$`` -> ``$``) parses with ``sh -n``; a second node started
    without deploy/kafka3.env stops at once with a message instead of formatting a cluster of its own."""
    import subprocess

    doc = interpolate(compose, {})
    script = doc["services"]["kafka-2"]["entrypoint"][2]
    assert doc["services"]["kafka"]["entrypoint"][2] == script
    assert subprocess.run(["sh", "-n", "-c", script], capture_output=True, timeout=10).returncode == 0
    proc = subprocess.run(
        ["sh", "-ec", script],
        env={"PATH": "/usr/bin:/bin", **environment(doc["services"]["kafka-2"])},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 1 and "deploy/kafka3.env" in proc.stderr, proc.stderr
