"""Credentials, lock-out, roles and the silence policy of the operator API (alerts/auth.py, alerts/api.py)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tocsin.alerts.api import silence_policy
from tocsin.alerts.auth import (
    Authenticator,
    AuthError,
    Denied,
    FailureLimiter,
    Role,
    TokenRecord,
    UserRecord,
    UsersFile,
    hash_secret,
    new_token,
    read_users_file,
    verify_secret,
    write_users_file,
)
from tocsin.alerts.silences import Silence

CHEAP = 2**10  # the smallest N the users file accepts: fast tests, same code path


# --------------------------------------------------------------------------- hashing
def test_scrypt_known_answer_rfc7914() -> None:
    """RFC 7914 section 12, second vector: P="password", S="NaCl", N=1024, r=8, p=16, dkLen=64."""
    expected = bytes.fromhex(
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
    )
    encoded = f"scrypt$1024$8$16${base64.b64encode(b'NaCl').decode()}${base64.b64encode(expected).decode()}"
    assert verify_secret("password", encoded) is True
    assert verify_secret("Password", encoded) is False


def test_hash_is_salted_and_verifies() -> None:
    a, b = hash_secret("correct horse", n=CHEAP), hash_secret("correct horse", n=CHEAP)
    assert a != b and a.startswith("scrypt$1024$8$1$")
    assert verify_secret("correct horse", a) and verify_secret("correct horse", b)
    assert not verify_secret("correct horse ", a)
    assert "correct horse" not in a


@pytest.mark.parametrize(
    "bad",
    ["plain-text-password", "scrypt$512$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44, "scrypt$1000$8$1$AA==$" + "A" * 44],
)
def test_malformed_or_weak_hashes_are_refused(bad: str) -> None:
    with pytest.raises(AuthError):
        verify_secret("x", bad)


# --------------------------------------------------------------------------- the limiter
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_limiter_locks_after_max_failures_until_the_window_passes() -> None:
    clock = Clock()
    lim = FailureLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(2):
        lim.failed("client:1.2.3.4")
        clock.t += 10
    assert lim.retry_after_s("client:1.2.3.4") == 0
    lim.failed("client:1.2.3.4")  # third failure at t=1020; the first was at 1000
    assert lim.retry_after_s("client:1.2.3.4") == pytest.approx(40.0)
    assert lim.retry_after_s("client:5.6.7.8") == 0
    clock.t = 1060.0  # the first failure leaves the window
    assert lim.retry_after_s("client:1.2.3.4") == 0


def test_limiter_success_clears_and_memory_is_bounded() -> None:
    lim = FailureLimiter(max_failures=2, window_s=60, max_keys=100, clock=Clock())
    for i in range(1000):
        lim.failed(f"user:made-up-{i}")
    assert len(lim) == 100
    lim.failed("user:li")
    lim.failed("user:li")
    assert lim.retry_after_s("user:li") > 0
    lim.succeeded("user:li")
    assert lim.retry_after_s("user:li") == 0


# --------------------------------------------------------------------------- the authenticator
def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture
def users(tmp_path: Path) -> tuple[Path, str]:
    token_id, token = new_token()
    store = UsersFile(
        users=[
            UserRecord(name="li", role=Role.OPERATOR, password_hash=hash_secret("li-password-1", n=CHEAP)),
            UserRecord(
                name="gone", role=Role.SUPERVISOR, password_hash=hash_secret("gone-pass-12", n=CHEAP), disabled=True
            ),
            UserRecord(name="dashboard", role=Role.VIEWER),
        ],
        tokens=[TokenRecord(id=token_id, user="dashboard", secret_hash=hash_secret(token.partition(".")[2], n=CHEAP))],
    )
    path = tmp_path / "users.json"
    write_users_file(path, store)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path, token


def test_basic_and_token_give_the_stored_identity(users: tuple[Path, str]) -> None:
    path, token = users
    auth = Authenticator(path)
    p = auth.authenticate(basic("li", "li-password-1"), "10.0.0.1")
    assert (p.name, p.role, p.via) == ("li", Role.OPERATOR, "password")
    t = auth.authenticate(f"Bearer {token}", "10.0.0.1")
    assert (t.name, t.role) == ("dashboard", Role.VIEWER) and t.via.startswith("token:")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Digest abc",
        basic("li", "wrong-password"),
        basic("nobody", "li-password-1"),
        basic("gone", "gone-pass-12"),  # disabled
        basic("dashboard", ""),  # a token-only user has no password
        "Basic !!!not-base64",
        "Bearer tcn_nothing.here",
        "Bearer not-a-token",
    ],
)
def test_bad_credentials_are_401(users: tuple[Path, str], header: str | None) -> None:
    auth = Authenticator(users[0])
    with pytest.raises(Denied) as e:
        auth.authenticate(header, "10.0.0.2")
    assert e.value.status == 401


def test_repeated_failures_lock_out_even_the_right_password(users: tuple[Path, str]) -> None:
    clock = Clock()
    auth = Authenticator(users[0], limiter=FailureLimiter(max_failures=3, window_s=60, clock=clock))
    path, token = users
    assert auth.authenticate(f"Bearer {token}", "10.0.0.3").name == "dashboard"  # a session in use
    for _ in range(3):
        with pytest.raises(Denied):
            auth.authenticate(basic("li", "guess"), "10.0.0.3")
    with pytest.raises(Denied) as e:
        auth.authenticate(basic("li", "li-password-1"), "10.0.0.4")  # the user is locked, whatever the address
    assert e.value.status == 429 and e.value.retry_after_s > 0
    with pytest.raises(Denied) as e:
        auth.authenticate(basic("other", "x"), "10.0.0.3")  # and so is the address, whatever the user
    assert e.value.status == 429
    # the session verified before the guessing goes on working: guessing cannot lock its owner out
    assert auth.authenticate(f"Bearer {token}", "10.0.0.3").name == "dashboard"
    clock.t += 61
    assert auth.authenticate(basic("li", "li-password-1"), "10.0.0.3").name == "li"


def test_expired_and_revoked_tokens_are_refused(users: tuple[Path, str]) -> None:
    path, token = users
    now = datetime(2026, 7, 14, tzinfo=UTC)
    auth = Authenticator(path, wall_clock=lambda: now)
    assert auth.authenticate(f"Bearer {token}", "10.0.0.5").name == "dashboard"
    store = read_users_file(path)
    store.tokens = []  # revoked (tocsin users revoke)
    write_users_file(path, store)
    os.utime(path, ns=(1, 1))  # a different modification time, even within the same clock tick
    with pytest.raises(Denied):
        auth.authenticate(f"Bearer {token}", "10.0.0.5")  # the remembered verification is forgotten too

    token_id, token2 = new_token()
    store.tokens = [
        TokenRecord(
            id=token_id,
            user="dashboard",
            secret_hash=hash_secret(token2.partition(".")[2], n=CHEAP),
            expires=now - timedelta(seconds=1),
        )
    ]
    write_users_file(path, store)
    os.utime(path, ns=(2, 2))
    with pytest.raises(Denied):
        auth.authenticate(f"Bearer {token2}", "10.0.0.5")


def test_users_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text('{"users": [{"name": "a", "role": "admin"}]}')
    with pytest.raises(AuthError):
        read_users_file(path)
    path.write_text('{"users": [{"name": "a", "role": "viewer", "password_hash": "hunter2"}]}')
    with pytest.raises(AuthError):
        read_users_file(path)


def test_roles_include_the_lower_ones() -> None:
    assert Role.SUPERVISOR.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.SUPERVISOR)


# --------------------------------------------------------------------------- the silence policy
T0 = datetime(2026, 7, 14, 2, tzinfo=UTC)


def silence(hours: float = 2, **match: str) -> Silence:
    return Silence(
        id="s",
        starts_at=T0,
        ends_at=T0 + timedelta(hours=hours),
        creator="li",
        reason="检修",
        **match,  # type: ignore[arg-type]
    )


def test_operator_may_silence_a_device_or_site_but_not_an_area() -> None:
    assert silence_policy(silence(device="RG-1"), Role.OPERATOR) is None
    assert silence_policy(silence(site="S-1", hazard="hydro"), Role.OPERATOR) is None
    for wide in (silence(area="330110"), silence(area="330110001"), silence(hazard="seismic")):
        refusal = silence_policy(wide, Role.OPERATOR)
        assert refusal is not None and refusal.status == 403 and refusal.error == "supervisor_required"
        assert silence_policy(wide, Role.SUPERVISOR) is None


def test_no_silence_longer_than_the_maximum_whoever_asks() -> None:
    ten_years = silence(hours=10 * 365 * 24, device="RG-1")
    for role in (Role.OPERATOR, Role.SUPERVISOR):
        refusal = silence_policy(ten_years, role)
        assert refusal is not None and (refusal.status, refusal.error) == (422, "too_long")
    assert silence_policy(silence(hours=24, device="RG-1"), Role.OPERATOR) is None
    assert silence_policy(silence(hours=24.01, device="RG-1"), Role.OPERATOR) is not None
    assert silence_policy(silence(hours=30, device="RG-1"), Role.OPERATOR, timedelta(hours=48)) is None
    daily = Silence(
        id="mw",
        device="RG-1",
        starts_at=T0,
        ends_at=T0 + timedelta(hours=2),
        recurrence="daily",
        creator="li",
        reason="r",
    )
    assert silence_policy(daily, Role.SUPERVISOR) is not None  # no `until`: it would never end
    bounded = daily.model_copy(update={"until": T0 + timedelta(hours=20)})
    assert silence_policy(bounded, Role.OPERATOR) is None


def test_a_broken_users_file_keeps_the_users_last_read(users: tuple[Path, str]) -> None:
    path, _ = users
    auth = Authenticator(path)
    path.write_text("{not json", encoding="utf-8")
    os.utime(path, ns=(3, 3))
    assert auth.authenticate(basic("li", "li-password-1"), "10.0.0.6").name == "li"
    path.unlink()
    assert auth.authenticate(basic("li", "li-password-1"), "10.0.0.6").name == "li"
    with pytest.raises(FileNotFoundError):
        Authenticator(path)  # but no API starts without users


def test_cli_adds_users_and_issues_tokens_without_secrets_in_argv(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    env = {**os.environ, "TOCSIN_API_USERS_FILE": str(path)}

    def users(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tocsin.cli", "users", *args]
        return subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, timeout=60)

    assert users("add", "wang", "--role", "supervisor", "--password-stdin", stdin="short\n").returncode != 0
    r = users("add", "wang", "--role", "supervisor", "--password-stdin", stdin="a-long-enough-pw\n")
    assert r.returncode == 0, r.stderr
    assert users("token", "nobody").returncode != 0
    r = users("token", "wang", "--expires-days", "30")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("tcn_") and token.partition(".")[2] not in path.read_text()
    assert "a-long-enough-pw" not in path.read_text()
    auth = Authenticator(path)
    assert auth.authenticate(basic("wang", "a-long-enough-pw"), "c").role is Role.SUPERVISOR
    assert auth.authenticate(f"Bearer {token}", "c").name == "wang"
    token_id = token[len("tcn_") :].partition(".")[0]
    assert users("revoke", token_id).returncode == 0
    os.utime(path, ns=(4, 4))
    with pytest.raises(Denied):
        auth.authenticate(f"Bearer {token}", "c")
