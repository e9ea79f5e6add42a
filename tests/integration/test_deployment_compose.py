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
