"""`coinfrs db set-role-password`: the password of a least-privilege role's own login (``warehouse/roles.py``).

Exit codes: 0 set; 1 refused (unknown role, short password, no such variable, database unavailable): one line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Optional

import typer

from warehouse.roles import LOGIN_ROLES


def set_role_password_command(
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(LOGIN_ROLES)}.")],
    password_env: Annotated[Optional[str], typer.Option(
        "--password-env", help="Read the password from this environment variable (else from standard input, "
                               "one line). Never on the command line: it would show in the process list.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Let coinfrs_app or coinfrs_api log in with a password (run as the schema owner, DATABASE_URL). The services
    then connect with COINFRS_APP_DATABASE_URL / COINFRS_API_DATABASE_URL (docs/operations.md)."""
    import sqlalchemy as sa

    from orchestration.cli import _fail, console, out
    from warehouse.db import get_owner_engine, redact
    from warehouse.roles import RolePasswordError, set_role_password

    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise _fail(f"environment variable {password_env} is not set")
    else:
        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"password of {role}: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    try:
        engine = get_owner_engine()
        with engine.begin() as conn:
            set_role_password(conn, role, password)
    except RolePasswordError as exc:
        raise _fail(str(exc)) from None
    except RuntimeError as exc:  # no owner URL (warehouse.db.owner_database_url)
        raise _fail(str(exc)) from None
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise _fail(f"cannot set the password of {role}: {first}") from None
    if as_json:
        out.print_json(json.dumps({"role": role, "login": True, "database": redact(str(engine.url))}))
    else:
        console.print(f"{role} may log in with its password on {redact(str(engine.url))}", highlight=False)
