"""``tocsin users``: the operator API's users file (alerts/auth.py) from the command line.

Passwords are read from the terminal (twice) or, with ``--password-stdin``, from one line of
standard input; they never go on the command line. A token is printed once, when it is issued;
only its hash is kept. The file is ``--file`` or ``TOCSIN_API_USERS_FILE``.

    tocsin users add li.wei --role operator          # asks for the password
    tocsin users token dashboard --expires-days 90   # prints tcn_<id>.<secret> once
    tocsin users revoke <token id> | remove <name> | list
    tocsin users hash --password-stdin                # only prints a hash
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tocsin.alerts.auth import (
    Role,
    TokenRecord,
    UserRecord,
    UsersFile,
    hash_secret,
    new_token,
    read_users_file,
    write_users_file,
)


def add_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    us = sub.add_parser("users", help="operator API users and tokens (hashed file, TOCSIN_API_USERS_FILE)")
    us.add_argument("--file", default=os.environ.get("TOCSIN_API_USERS_FILE", ""), help="the users file")
    us.set_defaults(func=func)
    c = us.add_subparsers(dest="users_command", required=True)
    a = c.add_parser("add", help="add a user, or set an existing user's role and password")
    a.add_argument("name")
    a.add_argument("--role", choices=[r.value for r in Role], required=True)
    a.add_argument("--no-password", action="store_true", help="a user that only gets tokens")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    t = c.add_parser("token", help="issue an API token for a user (printed once)")
    t.add_argument("name")
    t.add_argument("--expires-days", type=float, default=0.0, help="0: no expiry")
    t.add_argument("--note", default="")
    c.add_parser("revoke", help="revoke an API token").add_argument("token_id")
    c.add_parser("remove", help="remove a user and their tokens").add_argument("name")
    c.add_parser("list", help="users, roles and token ids")
    h = c.add_parser("hash", help="print the scrypt hash of a password (nothing is written)")
    h.add_argument("--password-stdin", action="store_true")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        pw = sys.stdin.readline().rstrip("\n")
    else:
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            raise SystemExit("the passwords differ")
    if len(pw) < 12:
        raise SystemExit("a password needs at least 12 characters")
    return pw


def main(args: argparse.Namespace) -> int:
    cmd = args.users_command
    if cmd == "hash":
        print(hash_secret(_password(args.password_stdin)))
        return 0
    if not args.file:
        raise SystemExit("no users file: --file or TOCSIN_API_USERS_FILE")
    path = Path(args.file)
    store = read_users_file(path) if path.exists() else UsersFile()
    if cmd == "list":
        for u in store.users:
            tokens = [t.id for t in store.tokens if t.user == u.name]
            print(f"{u.name}\t{u.role}\t{'disabled' if u.disabled else 'enabled'}\ttokens: {','.join(tokens) or '-'}")
        return 0
    if cmd == "add":
        pw_hash = None if args.no_password else hash_secret(_password(args.password_stdin))
        user = UserRecord(name=args.name, role=Role(args.role), password_hash=pw_hash)
        store.users = [u for u in store.users if u.name != args.name] + [user]
        print(f"user {args.name}: {args.role}")
    elif cmd == "token":
        if store.user(args.name) is None:
            raise SystemExit(f"no user {args.name!r}: add it first")
        token_id, token = new_token()
        secret = token.partition(".")[2]
        now = datetime.now(UTC).replace(microsecond=0)
        expires = now + timedelta(days=args.expires_days) if args.expires_days > 0 else None
        record = TokenRecord(
            id=token_id, user=args.name, secret_hash=hash_secret(secret), created=now, expires=expires, note=args.note
        )
        store.tokens.append(record)
        print(token)
        print(f"token {token_id} for {args.name} (shown once; keep it secret)", file=sys.stderr)
    elif cmd == "revoke":
        before = len(store.tokens)
        store.tokens = [t for t in store.tokens if t.id != args.token_id]
        if len(store.tokens) == before:
            raise SystemExit(f"no token {args.token_id!r}")
    elif cmd == "remove":
        if store.user(args.name) is None:
            raise SystemExit(f"no user {args.name!r}")
        store.users = [u for u in store.users if u.name != args.name]
        store.tokens = [t for t in store.tokens if t.user != args.name]
    write_users_file(path, store)
    return 0
