"""Passwords of the least-privilege roles' own logins (``coinfrs db set-role-password``).

Migration 0026 creates ``coinfrs_app`` (the CLI, Dagster, sensors) and ``coinfrs_api`` (the read API, SELECT only);
0031 lets them log in, without a password. An operator (or the docker compose ``migrate`` service, from the
environment) sets one here, as the schema owner; the services then connect with ``COINFRS_APP_DATABASE_URL`` and
``COINFRS_API_DATABASE_URL`` (docs/operations.md). No password is stored in the repository, and none is sent to
the server in clear: the SCRAM-SHA-256 verifier is computed by libpq on this side (``PQencryptPasswordConn``), so
the statement (and a server log of it) holds only the verifier.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

LOGIN_ROLES = ("coinfrs_app", "coinfrs_api")
MIN_PASSWORD_LENGTH = 16
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


class RolePasswordError(ValueError):
    """A role or password that cannot be set; the message says why."""


def check_role_password(role: str, password: str) -> None:
    if role not in LOGIN_ROLES:
        raise RolePasswordError(f"unknown role {role!r}; one of {', '.join(LOGIN_ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RolePasswordError(f"the password of {role} must have at least {MIN_PASSWORD_LENGTH} characters "
                                f"(e.g. `openssl rand -hex 24`)")
    if "\x00" in password or password != password.strip():
        raise RolePasswordError(f"the password of {role} holds a NUL byte or leading/trailing spaces")


def set_role_password(conn: Connection, role: str, password: str) -> None:
    """Let ``role`` log in with ``password`` (as its SCRAM-SHA-256 verifier). Run as the schema owner (a role that may
    ALTER the roles: the superuser, or the CREATEROLE user that created them)."""
    check_role_password(role, password)
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if exists is None:
        raise RolePasswordError(f"role {role} does not exist: run `coinfrs db upgrade` first")
    pgconn = conn.connection.driver_connection.pgconn  # psycopg 3
    verifier = pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    if not _VERIFIER.match(verifier):  # only base64 and punctuation: safe as a literal
        raise RolePasswordError("libpq returned an unexpected password verifier")
    # the driver's own SQL (no bind parameters: a utility statement takes none, and a ':' of the verifier is no
    # parameter marker either)
    conn.exec_driver_sql(f"ALTER ROLE {role} WITH LOGIN PASSWORD '{verifier}'")
