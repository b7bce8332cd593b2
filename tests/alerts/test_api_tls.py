"""The operator API over TLS (TOCSIN_API_TLS_CERT / _KEY): HTTPS with a verified certificate works,
plain HTTP to the same port does not, and the login still applies."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tocsin.alerts.api import build_app
from tocsin.alerts.auth import Authenticator, Role, UserRecord, UsersFile, hash_secret, write_users_file
from tocsin.alerts.view import AlertView
from tocsin.api import tls_context


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by openssl (what an operator would do for a test install)."""
    cert, key = tmp / "api.crt", tmp / "api.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_context_needs_both_files() -> None:
    assert tls_context("", "") is None
    with pytest.raises(ValueError, match="go together"):
        tls_context("/etc/tocsin/api.crt", "")


def test_https_with_login(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    users = tmp_path / "users.json"
    write_users_file(
        users,
        UsersFile(users=[UserRecord(name="v", role=Role.VIEWER, password_hash=hash_secret("v-pass-123", n=2**10))]),
    )
    view = AlertView()
    view.mark_caught_up()

    async def main() -> None:
        runner = web.AppRunner(build_app(view, auth=Authenticator(users)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context(str(cert), str(key)))
        await site.start()
        port = runner.addresses[0][1]
        trust = ssl.create_default_context(cafile=str(cert))
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"https://127.0.0.1:{port}/alerts", ssl=trust) as r:
                    assert r.status == 401
                login = aiohttp.BasicAuth("v", "v-pass-123")
                async with http.get(f"https://127.0.0.1:{port}/alerts", ssl=trust, auth=login) as r:
                    assert r.status == 200 and (await r.json())["count"] == 0
                with pytest.raises(aiohttp.ClientError):  # a client that does not trust the certificate
                    async with http.get(f"https://127.0.0.1:{port}/healthz") as r:
                        pass
                with pytest.raises(aiohttp.ClientError):  # plain HTTP on the TLS port
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        pass
        finally:
            await runner.cleanup()

    asyncio.run(main())
