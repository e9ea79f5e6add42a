"""docker-compose.yml (issue 18, item 8): the master key comes from the environment (compose refuses to start
without it; never a literal) to every service that runs closes and never to the API; Redis runs by default and the
API counts its rate limit there."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLOSE_SERVICES = ("code-location", "dagster-webserver", "dagster-daemon", "celery-worker")


def test_the_master_key_is_required_from_the_environment_and_redis_serves_the_api():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in CLOSE_SERVICES:
        key = services[name]["environment"]["COINFRS_ENCRYPTION_KEY"]
        assert re.fullmatch(r"\$\{COINFRS_ENCRYPTION_KEY:\?[^}]+\}", key), f"{name}: {key!r}"
    api = services["api"]
    assert "COINFRS_ENCRYPTION_KEY" not in api["environment"]
    assert api["environment"]["COINFRS_REDIS_URL"].startswith("redis://redis:6379/")
    assert api["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert "profiles" not in services["redis"]  # runs with a plain `docker compose up`
    assert services["celery-worker"]["profiles"] == ["celery"]


def test_services_log_in_as_the_least_privilege_roles_and_only_migrate_knows_the_owner():
    """The owner's URL (DATABASE_URL) only in ``migrate``, which sets both roles' passwords from the environment
    (required, never literal); the close services log in as coinfrs_app, the API as coinfrs_api."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    owners = {name for name, service in services.items() if "DATABASE_URL" in (service.get("environment") or {})}
    assert owners == {"migrate"}
    for name, setting, role in [*((n, "COINFRS_APP_DATABASE_URL", "coinfrs_app") for n in CLOSE_SERVICES),
                                ("api", "COINFRS_API_DATABASE_URL", "coinfrs_api")]:
        url = services[name]["environment"][setting]
        password = "COINFRS_APP_DB_PASSWORD" if role == "coinfrs_app" else "COINFRS_API_DB_PASSWORD"
        assert re.fullmatch(rf"postgresql://{role}:\$\{{{password}:\?[^}}]+\}}@postgres:5432/coinfrs", url), (name, url)
    assert "COINFRS_APP_DATABASE_URL" not in services["api"]["environment"]
    migrate = services["migrate"]
    script = migrate["command"][-1]
    for role, password in (("coinfrs_app", "COINFRS_APP_DB_PASSWORD"), ("coinfrs_api", "COINFRS_API_DB_PASSWORD")):
        assert f"coinfrs db set-role-password --role {role} --password-env {password}" in script
        assert re.fullmatch(rf"\$\{{{password}:\?[^}}]+\}}", migrate["environment"][password])
    assert script.startswith("coinfrs db upgrade && ")
