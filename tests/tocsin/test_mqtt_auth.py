"""Mosquitto ACL and password file from the registry (tocsin/mqtt_auth.py)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tocsin.mqtt_auth import MqttAuthError, acl_text, mosquitto_hash, write_auth
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry

AREA = Area(code="330110")


def _device(device_id: str, family: Family = Family.HYDRO, site: str = "qingshan") -> Device:
    return Device(device_id=device_id, family=family, site=site, lat=30.3, lon=120.1, area=AREA)


def test_each_device_may_write_only_its_own_two_topics() -> None:
    acl = acl_text(Registry(devices=[_device("RG01"), _device("GD01", Family.HAZMAT, "chem-park")]))
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in acl.split("\n\n") if b.startswith("user ")}
    assert blocks["user RG01"] == [
        "topic write tocsin/v1/hydro/qingshan/RG01/telemetry",
        "topic write tocsin/v1/hydro/qingshan/RG01/status",
    ]
    assert blocks["user GD01"] == [
        "topic write tocsin/v1/hazmat/chem-park/GD01/telemetry",
        "topic write tocsin/v1/hazmat/chem-park/GD01/status",
    ]
    assert blocks["user worker"] == ["topic write tocsin/v1/alerts/#"]
    assert blocks["user operator"] == ["topic read tocsin/v1/alerts/#"]
    # nobody else writes the alert tree; no pattern rules (%u) and no rule before the first user
    assert [line for line in acl.splitlines() if "alerts" in line and "write" in line] == [
        "topic write tocsin/v1/alerts/#"
    ]
    assert "pattern" not in acl
    assert all(line.startswith(("#", "user ")) for line in acl.split("\n\n")[0].splitlines())


@pytest.mark.parametrize("device_id", ["gateway", "worker", "operator"])
def test_a_device_named_like_a_service_user_is_refused(device_id: str) -> None:
    with pytest.raises(MqttAuthError, match="service user"):
        acl_text(Registry(devices=[_device(device_id)]))


def test_a_device_id_that_breaks_the_password_file_is_refused() -> None:
    with pytest.raises(MqttAuthError, match="cannot be an MQTT user"):
        acl_text(Registry(devices=[_device("RG:01")]))


def test_credentials_are_kept_created_and_dropped(tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"RG01": "kept-password", "OLD": "gone"}))
    counts = write_auth(
        Registry(devices=[_device("RG01"), _device("RG02")]), creds, tmp_path / "acl", tmp_path / "passwd"
    )
    got = json.loads(creds.read_text())
    assert set(got) == {"gateway", "worker", "operator", "RG01", "RG02"}
    assert got["RG01"] == "kept-password" and len(got["RG02"]) >= 32
    assert counts == {"users": 5, "devices": 2, "new": 4, "dropped": 1}
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    passwd = (tmp_path / "passwd").read_text()
    assert "kept-password" not in passwd and passwd.count("$7$101$") == 5


def test_hash_matches_mosquitto_passwd_for_the_same_salt(tmp_path: Path) -> None:
    """The reference: mosquitto_passwd's own line for a password; our hash with its salt must equal it."""
    tool = shutil.which("mosquitto_passwd") or shutil.which("/usr/sbin/mosquitto_passwd")
    if tool is None:  # provisioned like promtool (tests/conftest.py): the harness installs Debian's mosquitto
        services = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services.sh"
        subprocess.run(["bash", str(services), "provision", "mosquitto"], capture_output=True, timeout=900)
        tool = shutil.which("mosquitto_passwd") or shutil.which("/usr/sbin/mosquitto_passwd")
    assert tool is not None, "mosquitto_passwd could not be provisioned (deploy/local/services.sh provision mosquitto)"
    f = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(f), "dev", "correct horse"], check=True, capture_output=True, timeout=30)
    reference = f.read_text().strip().split(":", 1)[1]
    _, kind, iterations, salt_b64, _digest = reference.split("$")
    assert kind == "7"
    assert mosquitto_hash("correct horse", base64.b64decode(salt_b64), int(iterations)) == reference
