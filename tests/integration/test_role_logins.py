"""The least-privilege roles' own logins (migration 0031, ``coinfrs db set-role-password``): a deployment connects
the read API as ``coinfrs_api`` itself (``COINFRS_API_DATABASE_URL``), not as the owner switched to it, so no
statement of its sessions can become the owner again."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from warehouse.db import get_engine, get_owner_engine
from warehouse.roles import RolePasswordError, set_role_password
from warehouse.settings import get_settings


@pytest.fixture()
def own_logins(database_url: str) -> Iterator[dict[str, str]]:
    """Passwords for both roles, and their URLs in COINFRS_APP_DATABASE_URL / COINFRS_API_DATABASE_URL."""
    urls = {}
    with get_owner_engine(database_url).begin() as conn:
        for role, setting in (("coinfrs_app", "COINFRS_APP_DATABASE_URL"), ("coinfrs_api", "COINFRS_API_DATABASE_URL")):
            password = secrets.token_hex(16)
            set_role_password(conn, role, password)
            urls[setting] = make_url(database_url).set(username=role, password=password).render_as_string(
                hide_password=False)
    os.environ.update(urls)
    get_settings.cache_clear()
    try:
        yield urls
    finally:
        for setting in urls:
            os.environ.pop(setting, None)
        get_settings.cache_clear()


def test_the_api_connects_with_its_own_login_and_can_read_but_not_write(engine: sa.Engine, own_logins) -> None:
    from api.deps import api_engine_for

    with get_owner_engine().begin() as conn:
        conn.execute(sa.text("INSERT INTO entities (name) VALUES ('acme-fund')"))
    api = api_engine_for()  # no engine given: the API's own setting
    assert api.url.username == "coinfrs_api"
    with api.connect() as conn:
        assert tuple(conn.execute(sa.text("SELECT session_user, current_user")).one()) == ("coinfrs_api",) * 2
        assert conn.execute(sa.text("SELECT name FROM entities")).scalar_one() == "acme-fund"
        with pytest.raises(sa.exc.DBAPIError, match="permission denied to set role"):
            conn.execute(sa.text("SET ROLE postgres"))  # a login that never was the owner cannot become it
    # even outside the API's read-only sessions the role's privileges refuse every write
    plain = sa.create_engine(own_logins["COINFRS_API_DATABASE_URL"])
    try:
        for statement in ("INSERT INTO entities (name) VALUES ('beta')", "UPDATE entities SET name = 'x'",
                          "DELETE FROM entities", "TRUNCATE entities CASCADE", "CREATE TABLE evil (id int)"):
            with plain.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="permission denied"):
                conn.execute(sa.text(statement))
    finally:
        plain.dispose()
    with get_owner_engine().connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entities")).scalar_one() == 1


def test_the_application_connects_with_its_own_login(engine: sa.Engine, own_logins) -> None:
    app = get_engine()  # no URL given: COINFRS_APP_DATABASE_URL
    assert app.url.username == "coinfrs_app"
    with app.begin() as conn:
        assert tuple(conn.execute(sa.text("SELECT session_user, current_user")).one()) == ("coinfrs_app",) * 2
        conn.execute(sa.text("INSERT INTO entities (name) VALUES ('acme-fund')"))
    with app.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="permission denied"):
        conn.execute(sa.text("TRUNCATE entities CASCADE"))


def test_a_role_password_is_refused_when_short_or_for_another_role(database_url: str) -> None:
    with get_owner_engine(database_url).begin() as conn:
        with pytest.raises(RolePasswordError, match="at least 16"):
            set_role_password(conn, "coinfrs_api", "short")
        with pytest.raises(RolePasswordError, match="unknown role"):
            set_role_password(conn, "postgres", secrets.token_hex(16))


def test_the_command_sets_a_password_from_the_environment_and_refuses_in_one_line(database_url: str) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(root), "PW": secrets.token_hex(16),
           "SHORT": "short", "COLUMNS": "200"}  # rich wraps at the terminal width

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestration.cli", "db", "set-role-password", *args], cwd=root,
                              env=env, input=stdin, capture_output=True, text=True, timeout=120)

    done = run("--role", "coinfrs_api", "--password-env", "PW", "--json")
    assert done.returncode == 0, done
    assert json.loads(done.stdout)["role"] == "coinfrs_api" and env["PW"] not in done.stdout + done.stderr
    assert run("--role", "coinfrs_api", stdin=secrets.token_hex(16) + "\n").returncode == 0  # from standard input
    for args, expected in ((("--role", "coinfrs_api", "--password-env", "SHORT"), "at least 16 characters"),
                           (("--role", "postgres", "--password-env", "PW"), "unknown role 'postgres'"),
                           (("--role", "coinfrs_api", "--password-env", "NOT_SET_ANYWHERE"), "is not set")):
        done = run(*args)
        output = done.stdout + done.stderr
        assert done.returncode == 1 and expected in output and "Traceback" not in output, done
        assert len(output.strip().splitlines()) == 1, output
