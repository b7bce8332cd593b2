"""Who may use the operator API: users, API tokens, roles, and the checks on every request.

Credentials
    A user logs in with HTTP Basic (``name:password``); a program uses an API token as
    ``Authorization: Bearer tcn_<id>.<secret>``. Both secrets are stored only as scrypt hashes
    (``hashlib.scrypt``, RFC 7914, from the standard library: memory-hard, no extra dependency;
    N=2**14, r=8, p=1 by default, the parameters are kept in each hash so they can be raised later)
    and compared with :func:`hmac.compare_digest`. A token's ``<id>`` only finds its record; the
    secret after the dot (32 random bytes) is what is verified.

    scrypt is slow on purpose (about 0.1 s of CPU), so a credential that verified is remembered for
    ``cache_ttl_s`` by a SHA-256 of what was sent (never the secret itself); the memory is bounded
    and cleared whenever the users file changes.

Roles (each includes the ones before it)
    ``viewer``: read alerts, silences and the audit trail. ``operator``: acknowledge, create and
    lift silences within the policy (alerts/api.py). ``supervisor``: silences beyond it (an area, a
    whole district, a hazard everywhere) and user management.

Failures
    Repeated failures are refused before any hashing: ``max_failures`` within
    ``window_s`` from one client address, or against one user name or token id, answer ``429`` with
    ``Retry-After`` until the window has passed. At most ``max_keys`` addresses and names are
    remembered (the oldest are forgotten first), so a flood of made-up names cannot exhaust memory.
    A credential verified within ``cache_ttl_s`` still works during a lock-out, so guessing at a
    name cannot lock its owner's running session out (it locks out new logins for the window).

The users file (``TOCSIN_API_USERS_FILE``) is JSON (YAML too, if PyYAML is installed)::

    {"users": [{"name": "li.wei", "role": "operator", "password_hash": "scrypt$16384$8$1$...$..."}],
     "tokens": [{"id": "a1b2c3d4e5f6", "user": "dashboard", "secret_hash": "scrypt$...", "created": "..."}]}

Write it with ``tocsin users`` (tocsin/cli.py); it is re-read when its modification time changes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tcn_"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MIN_N = 2**10  # weaker hashes in a users file are refused (a typo, or someone lowering the bar)
_MAXMEM = 128 * 1024 * 1024


class AuthError(Exception):
    """The root of this module's errors (a bad users file, a malformed hash)."""


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.SUPERVISOR: 3}


# --------------------------------------------------------------------------- hashing
def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$<salt b64>$<hash b64>`` of ``secret`` with a fresh 16-byte salt."""
    if not secret:
        raise ValueError("an empty secret cannot be hashed")
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` matches ``encoded`` (from :func:`hash_secret`); constant-time comparison.

    Raises :class:`AuthError` for a malformed hash or parameters below N=1024."""
    n, r, p, salt, want = _parse_hash(encoded)
    got = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=len(want))
    return hmac.compare_digest(got, want)


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        scheme, n_s, r_s, p_s, salt_s, hash_s = encoded.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, want = base64.b64decode(salt_s, validate=True), base64.b64decode(hash_s, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise AuthError("not a scrypt hash made by tocsin") from exc
    if scheme != "scrypt" or n < _MIN_N or n & (n - 1) or r < 1 or p < 1 or not salt or len(want) < 16:
        raise AuthError(f"scrypt parameters refused (N={n}, r={r}, p={p}; N must be a power of two >= {_MIN_N})")
    return n, r, p, salt, want


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_token() -> tuple[str, str]:
    """A new API token: (its id, the whole token ``tcn_<id>.<secret>`` to hand out once)."""
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}{token_id}.{secrets.token_urlsafe(32)}"


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a ``tcn_<id>.<secret>`` token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, dot, secret = token[len(TOKEN_PREFIX) :].partition(".")
    return (token_id, secret) if dot and token_id and secret else None


# --------------------------------------------------------------------------- the store
class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^:\s]+$", description="no colon, no blank")
    role: Role
    password_hash: str | None = Field(default=None, description="absent: this user only has tokens")
    disabled: bool = False


class TokenRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    user: str = Field(min_length=1)
    secret_hash: str
    created: AwareDatetime | None = None
    expires: AwareDatetime | None = None
    note: str = ""


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[UserRecord] = Field(default_factory=list)
    tokens: list[TokenRecord] = Field(default_factory=list)

    def user(self, name: str) -> UserRecord | None:
        return next((u for u in self.users if u.name == name), None)

    def token(self, token_id: str) -> TokenRecord | None:
        return next((t for t in self.tokens if t.id == token_id), None)


def read_users_file(path: str | Path) -> UsersFile:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data: Any = yaml.safe_load(text) or {}
        else:
            data = json.loads(text) if text.strip() else {}
        store = UsersFile.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise AuthError(f"users file {p} is not valid: {exc}") from exc
    for u in store.users:
        if u.password_hash is not None:
            _parse_hash(u.password_hash)
    for t in store.tokens:
        _parse_hash(t.secret_hash)
        if store.user(t.user) is None:
            raise AuthError(f"users file {p}: token {t.id} belongs to unknown user {t.user!r}")
    names = [u.name for u in store.users]
    if len(names) != len(set(names)) or len(store.tokens) != len({t.id for t in store.tokens}):
        raise AuthError(f"users file {p}: a user name or token id appears twice")
    return store


def write_users_file(path: str | Path, store: UsersFile) -> None:
    """Write atomically, readable by the owner only (it holds hashes, not secrets, but still)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(store.model_dump_json(indent=2, exclude_none=True) + "\n")
    os.replace(tmp, p)


# --------------------------------------------------------------------------- rate limiting
class FailureLimiter:
    """Counts authentication failures per key (client address, user name, token id) in a sliding
    window; a key with ``max_failures`` failures in the last ``window_s`` is locked until its oldest
    failure leaves the window. Bounded: at most ``max_keys`` keys (least recently failed dropped)."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("max_failures, window_s and max_keys must be positive")
        self.max_failures, self.window_s, self.max_keys, self.clock = max_failures, window_s, max_keys, clock
        self._fails: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = self._fails.get(key)
        if times is None:
            return []
        times[:] = [t for t in times if now - t < self.window_s]
        if not times:
            del self._fails[key]
        return times

    def retry_after_s(self, *keys: str) -> float:
        """0 when none of ``keys`` is locked, else the seconds until all are free again."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[-self.max_failures] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                times.append(now)
                del times[: -self.max_failures]  # more than that is never needed
                self._fails[key] = times
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._fails.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._fails)


# --------------------------------------------------------------------------- the authenticator
class Principal(BaseModel):
    """Who made a request, as established from the credential."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    via: str = Field(description="password, token:<id> or dev")


class Denied(Exception):
    """A request without a valid credential: ``status`` 401, or 429 with ``retry_after_s``."""

    def __init__(self, status: int, reason: str, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.status, self.reason, self.retry_after_s = status, reason, retry_after_s


class Authenticator:
    """Verifies ``Authorization`` headers against the users file (see the module docstring)."""

    def __init__(
        self,
        users_file: str | Path,
        *,
        limiter: FailureLimiter | None = None,
        cache_ttl_s: float = 300.0,
        cache_max: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(users_file)
        self.limiter = limiter if limiter is not None else FailureLimiter(clock=clock)
        self.cache_ttl_s, self.cache_max, self.clock, self.wall_clock = cache_ttl_s, cache_max, clock, wall_clock
        self._cache: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._store = UsersFile()
        self.reload()

    def reload(self) -> None:
        """Re-read the users file if it changed (and forget every remembered credential).

        The first read raises (:class:`AuthError`, :class:`OSError`): no API without users. Later, a
        missing or broken file keeps the users last read (logged), so a typo during an incident does
        not lock every operator out."""
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime == self._mtime:
                return
            store = read_users_file(self.path)
        except (OSError, AuthError) as exc:
            if self._mtime is None:
                raise
            log.error("users file %s not re-read, the previous users stay: %s", self.path, exc)
            return
        with self._lock:
            self._store, self._mtime = store, mtime
            self._cache.clear()

    @property
    def store(self) -> UsersFile:
        return self._store

    def authenticate(self, authorization: str | None, client: str) -> Principal:
        """The principal of an ``Authorization`` header value, or :class:`Denied`. Blocking (scrypt):
        call it in a thread."""
        self.reload()
        scheme, _, value = (authorization or "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic":
            try:
                name, colon, secret = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (ValueError, binascii.Error):
                name, colon, secret = "", "", ""
            subject = f"user:{name}"
            if not colon:
                self._fail(client, subject, "malformed Basic credentials")
        elif scheme == "bearer":
            parts = split_token(value)
            subject = f"token:{parts[0] if parts else '?'}"
            if parts is None:
                self._fail(client, subject, "malformed API token")
        else:
            raise Denied(401, "authentication required (HTTP Basic or a Bearer API token)")
        # A credential that verified recently is known before the lock-out is consulted: someone
        # guessing an operator's password cannot lock out the operator's session in use.
        key = hashlib.sha256(f"{scheme} {value}".encode()).digest()
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache[key] = (now + self.cache_ttl_s, hit[1])  # sliding: a session in use stays known
                self._cache.move_to_end(key)
                return hit[1]
        wait = self.limiter.retry_after_s(f"client:{client}", subject)
        if wait > 0:
            raise Denied(429, "too many failed attempts; try again later", wait)
        principal = self._basic(name, secret) if scheme == "basic" else self._bearer(*(parts or ("", "")))
        if principal is None:
            self._fail(client, subject, "invalid credentials")
        assert principal is not None
        self.limiter.succeeded(subject)
        with self._lock:
            self._cache[key] = (now + self.cache_ttl_s, principal)
            while len(self._cache) > self.cache_max:
                self._cache.popitem(last=False)
        return principal

    def _fail(self, client: str, subject: str, reason: str) -> None:
        self.limiter.failed(f"client:{client}", subject)
        raise Denied(401, reason)

    def _basic(self, name: str, password: str) -> Principal | None:
        user = self._store.user(name)
        if user is None or user.disabled or user.password_hash is None:
            verify_secret(password, _dummy_hash())  # the same work as for a real user: names stay private
            return None
        if not verify_secret(password, user.password_hash):
            return None
        return Principal(name=user.name, role=user.role, via="password")

    def _bearer(self, token_id: str, secret: str) -> Principal | None:
        token = self._store.token(token_id)
        user = self._store.user(token.user) if token is not None else None
        if token is None or user is None or user.disabled:
            verify_secret(secret, _dummy_hash())
            return None
        if token.expires is not None and token.expires <= self.wall_clock():
            return None
        if not verify_secret(secret, token.secret_hash):
            return None
        return Principal(name=user.name, role=user.role, via=f"token:{token.id}")


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(secrets.token_urlsafe(16))
