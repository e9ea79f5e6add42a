"""A Dagster home of the docker-compose deployment (deploy/dagster.yaml) with its storage on a test's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[2]


def deployment_dagster_home(url: sa.URL, name: str, tmp_path: Path, monkeypatch) -> Path:
    """A DAGSTER_HOME with deploy/dagster.yaml, its storage in database ``name``."""
    socket_dir = url.query.get("host")  # the embedded server listens on a unix socket only
    monkeypatch.setenv("DAGSTER_PG_HOST", "localhost" if socket_dir else (url.host or "127.0.0.1"))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the code servers and run workers inherit all of these
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    config["storage"]["postgres"]["postgres_db"]["port"] = url.port or 5432
    if socket_dir:
        config["storage"]["postgres"]["postgres_db"]["params"] = {"host": socket_dir}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home
