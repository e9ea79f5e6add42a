"""Settings, validated at start-up (environment variables prefixed ``COINFRS_`` or ``DATABASE_URL``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COINFRS_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "COINFRS_DATABASE_URL"),
        description="PostgreSQL URL. Unset: Coinfrs starts its embedded PostgreSQL in data_dir.",
    )
    app_database_url: str | None = Field(
        default=None, description="The application's own login (role coinfrs_app, `coinfrs db set-role-password`): "
                                  "the CLI's, Dagster's and the sensors' sessions connect with it when set. Unset: "
                                  "they connect with DATABASE_URL and switch to COINFRS_DB_ROLE.")
    api_database_url: str | None = Field(
        default=None, description="The read API's own login (role coinfrs_api, SELECT only): the API connects with "
                                  "it when set. Unset: with DATABASE_URL, switching to COINFRS_API_DB_ROLE.")
    db_role: str = Field(default="coinfrs_app", pattern=r"^[a-z_][a-z0-9_]*$|^$",
                         description="Role the application's sessions run as (created by the migrations; "
                                     "empty: the login user's own privileges).")
    api_db_role: str = Field(default="coinfrs_api", pattern=r"^[a-z_][a-z0-9_]*$|^$",
                             description="Role the read API's sessions run as (read-only; empty: the login user's).")
    data_dir: Path = Field(default=PROJECT_ROOT / ".coinfrs", description="Embedded database and local state.")
    inbox_dir: Path = Field(default=PROJECT_ROOT / "inbox", description="CSV files dropped here are imported by the sensor.")
    inbox_create_entities: bool = Field(default=False, description="A file under inbox/<name>/ for which no entity "
                                        "exists creates the entity (off: it goes to failed/, so a mistyped directory "
                                        "never makes an entity the schedule then closes every night).")
    close_schedule_time: str = Field(default="01:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                                     description="When the daily close of the previous day runs, HH:MM UTC.")
    celery_broker_url: str = Field(default="redis://127.0.0.1:6379/0",
                                   description="Celery broker of the distributed close (`coinfrs worker start`).")
    celery_backend_url: str = Field(default="redis://127.0.0.1:6379/1",
                                    description="Celery result backend of the distributed close.")
    api_rate_limit_per_minute: int = 600
    redis_url: str | None = Field(default=None, description="Redis shared by the API workers (rate limits); unset: "
                                                            "each API process counts on its own.")
    alert_webhook_url: SecretStr | None = Field(default=None, description="Slack-compatible webhook for close "
                                                "alerts (a secret: never logged). Unset: no alerts are sent.")
    alert_timeout_seconds: float = Field(default=5.0, gt=0, description="Timeout of one alert webhook request.")
    api_cors_origins: list[str] = Field(default_factory=list,
                                        description="Origins allowed by CORS (JSON list). Empty: CORS off.")
    api_max_body_bytes: int = Field(default=65_536, description="Largest request body accepted (413 beyond).")
    api_max_query_bytes: int = Field(default=4_096, description="Longest query string accepted (414 beyond).")
    api_max_range_days: int = Field(default=366, description="Longest from..to range answered synchronously.")
    api_freshness_hours: int = Field(default=36, description="An account synced longer ago than this is stale.")
    api_cache_mb: int = Field(default=64, ge=0, description="Per API process: megabytes of JSON answers kept while "
                                                            "the database is unchanged (0: no cache).")
    api_snapshot_poll_ms: int = Field(default=100, ge=0, description="Per API process: how often the database "
                                      "snapshot is read, so keys and cached answers are checked without a query "
                                      "per request (0: a query per request).")
    api_db_pool_size: int = Field(default=8, ge=1, description="Database connections (and request threads) per "
                                                                "API process (one more for the version watch).")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
