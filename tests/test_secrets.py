"""Processes refuse placeholder and development secrets outside development mode (tocsin/settings.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from tocsin.settings import Settings, UnsafeSecret, refuse_dev_secrets, unsafe_secret

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("value", "unsafe"),
    [
        ("change-me-sms", True),  # deploy/compose.env.example
        ("tocsin:change-me-influx-tocsin", True),  # InfluxDB 1.8 user:password token
        ("gateway-dev", True),  # deploy/local/services.sh
        ("operator-dev", True),
        ("CHANGEME", True),
        ("", False),  # unset is not a placeholder (the feature is off)
        ("k3Jd9-Qa7x0PzT", False),
    ],
)
def test_known_placeholders(value: str, unsafe: bool) -> None:
    assert unsafe_secret(value) is unsafe


def test_refused_unless_development_mode() -> None:
    s = Settings(sms_api_key=SecretStr("change-me-sms"), mqtt_password=SecretStr("gateway-dev"), dev=False)
    with pytest.raises(UnsafeSecret) as e:
        refuse_dev_secrets(s)
    assert "TOCSIN_SMS_API_KEY" in str(e.value) and "TOCSIN_MQTT_PASSWORD" in str(e.value)
    assert "change-me-sms" not in str(e.value) and "gateway-dev" not in str(e.value)
    refuse_dev_secrets(s.model_copy(update={"dev": True}))
    refuse_dev_secrets(Settings(sms_api_key=SecretStr("k3Jd9-Qa7x0PzT"), dev=False))


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_emulator_refuses_a_placeholder_key_and_takes_none_on_the_command_line() -> None:
    r = _run(["-m", "tocsin.simulators.sms_gateway", "--port", "0"], {"TOCSIN_SMS_API_KEY": "change-me-sms"})
    assert r.returncode == 2 and "placeholder" in r.stderr
    r = _run(["-m", "tocsin.simulators.broadcast_platform", "--api-key", "real-looking-key-1"], {})
    assert r.returncode == 2 and "unrecognized arguments: --api-key" in r.stderr


def test_operator_api_refuses_dev_secrets_and_a_missing_users_file() -> None:
    r = _run(["-m", "tocsin.api", "--port", "0"], {"TOCSIN_SMS_CALLBACK_SECRET": "change-me-callback"})
    assert r.returncode == 2 and "TOCSIN_SMS_CALLBACK_SECRET" in r.stdout + r.stderr
    r = _run(["-m", "tocsin.api", "--port", "0"], {})
    assert r.returncode == 2 and "TOCSIN_API_USERS_FILE" in r.stdout + r.stderr
