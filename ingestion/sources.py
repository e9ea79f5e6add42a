"""Configured sources of an entity (exchanges, custodians): add (read-only key checked first), test, and sync them.

A source is a row of ``source_credentials``: its kind (``binance``, ``kraken``, ``ccxt.<id>``, ``fireblocks``; each
a ``Connector`` of ingestion/connectors.py), its name (also the account name of its records), non-secret settings
(``config``) and its encrypted credentials. Syncing a source that fails is
recorded on that row (``last_sync_status`` unavailable | refused | failed, with the message) and never stops
the other sources; what was staged before the failure stays (each page commits with its cursor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from ingestion.breakers import Admission, admit_sync, describe, record_sync_result
from ingestion.connectors import (KINDS, clear_sync_outages, connector_for, first_incomplete_day, last_day_read,
                                  record_sync_outage, since_of, until_of)
from ingestion.credentials import (CredentialError, EnvKeyProvider, KeyProvider, SourceInfo, list_sources,
                                   load_credentials, record_sync_outcome, store_source)
from ingestion.retry import BreakerPolicy, SourceAccessError, SourceError, SourceUnavailable
from warehouse.entities import Entity

__all__ = ["CONFIG_KEYS", "KINDS", "SourceReport", "SourceSyncResult", "add_source", "inspect_source", "read_credentials",
           "sync_entity_sources", "sync_source", "validate_config"]
# config key -> (type, meaning)
CONFIG_KEYS: dict[str, tuple[type, str]] = {
    "api_url": (str, "replace Binance's hosts (a proxy, or the local test server); paths are kept"),
    "since": (str, "first day to fetch (YYYY-MM-DD) on the first sync"),
    "until": (str, "last day to fetch (YYYY-MM-DD), for a bounded backfill; default: up to now"),
    "rate_limit_ms": (float, "ccxt's rate limiter: milliseconds per unit of request weight (default ccxt's 50)"),
    "timeout_ms": (int, "HTTP timeout per request"),
    "retry_attempts": (int, "attempts per call for transient errors"),
    "retry_initial_seconds": (float, "first backoff; doubles per attempt, with jitter"),
    "retry_max_seconds": (float, "longest backoff"),
    "isolated_pairs": (str, "Binance: isolated margin pairs to read besides those listed now and those read before, "
                            "comma-separated (pairs closed or disabled before the first sync)"),
}


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in config.items():
        if key not in CONFIG_KEYS:
            raise ValueError(f"unknown source setting {key!r}; known: {', '.join(sorted(CONFIG_KEYS))}")
        kind = CONFIG_KEYS[key][0]
        try:
            clean[key] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"source setting {key!r}: {value!r} is not a {kind.__name__}") from None
    for key in ("since", "until"):
        if key in clean:
            date.fromisoformat(clean[key])
    return clean


def read_credentials(kind: str, path: Path | None) -> dict[str, str]:
    """The credentials of a source of ``kind`` from a JSON file, else from the environment (``COINFRS_<KIND>_...``);
    never from the command line (each connector says which fields)."""
    return connector_for(kind).read_credentials(path)


def add_source(engine: Engine, entity: Entity, kind: str, name: str, credentials: dict[str, str],
               config: dict[str, Any], provider: KeyProvider | None = None, *, replace: bool = False) -> tuple[SourceInfo, dict]:
    """Check the key is read-only (refused otherwise, saying which permission to remove), then store it encrypted."""
    config = validate_config(config)
    restrictions = connector_for(kind).check(credentials, config)
    provider = provider or EnvKeyProvider()
    with engine.begin() as conn:
        info = store_source(conn, entity.id, kind, name, credentials, config, provider, replace=replace)
    return info, restrictions


@dataclass(frozen=True)
class SourceReport:
    """What ``coinfrs source test`` found (inspect_source): permissions and what the account holds now (no secrets)."""

    name: str
    restrictions: dict[str, Any]
    markets: int
    balances: dict[str, dict[str, str]]
    summary: str | None = None  # what the connector found, said its own way


def inspect_source(engine: Engine, entity: Entity, name: str, provider: KeyProvider | None = None) -> SourceReport:
    source = _one_source(engine, entity, name)
    with engine.connect() as conn:
        credentials = load_credentials(conn, source, provider or EnvKeyProvider())
    return SourceReport(source.name, *connector_for(source.kind).inspect(credentials, source.config))


def _one_source(engine: Engine, entity: Entity, name: str) -> SourceInfo:
    with engine.connect() as conn:
        found = list_sources(conn, entity.id, name=name, enabled_only=False)
    if not found:
        raise LookupError(f"entity {entity.name!r} has no source named {name!r}")
    return found[0]


@dataclass
class SourceSyncResult:
    source: str
    kind: str
    status: str  # succeeded | unavailable | refused | failed | circuit_open (skipped: the breaker is open)
    message: str | None
    stats: Any = None  # the connector's own stats (records seen and inserted per stream, calls, ...)
    errors: list[str] = field(default_factory=list)


def sync_source(engine: Engine, entity: Entity, source: SourceInfo, provider: KeyProvider) -> SourceSyncResult:
    """Sync one source; a failure is recorded on the source and returned, not raised. The days it could not read
    become source outages (those closes are partial); a success clears the outages its failed syncs recorded."""
    stats, staging_source, window = None, source.kind, None
    policy = BreakerPolicy.from_env()
    with engine.begin() as conn:
        admission = admit_sync(conn, source.id, policy)
    try:
        connector = connector_for(source.kind)
        staging_source = connector.staging_source
        until = until_of(source.config) if connector.bounded else None
        with engine.connect() as conn:
            window = (first_incomplete_day(conn, entity, staging_source, source.name,
                                           connector.window_streams() if connector.window_streams else None,
                                           since_of(source.config)), last_day_read(entity, until))
        if admission.action == "skip":  # the source is not called while its breaker is open
            raise _BreakerOpen(admission.message or "circuit breaker open")
        with engine.connect() as conn:
            credentials = load_credentials(conn, source, provider)
        run = connector.make_sync(engine, entity.id, source.name, credentials, source.config)
        stats = run.stats
        run.run()
        status, message = "succeeded", None
    except _BreakerOpen as error:
        status, message = "circuit_open", str(error)
    except SourceAccessError as error:
        status, message = "refused", str(error)
    except SourceUnavailable as error:
        status, message = "unavailable", str(error)
    except (SourceError, CredentialError, ValueError) as error:
        status, message = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - a connector bug must not stop the other sources or the close
        status, message = "failed", f"unexpected {type(error).__name__} in the {source.kind} connector: {str(error)[:300]}"
    with engine.begin() as conn:
        message = _apply_breaker(conn, source, admission, policy, status, message)
        record_sync_outcome(conn, source.id, status, message)
        if status == "succeeded":
            clear_sync_outages(conn, entity, staging_source, source.name)
        else:  # the days not read through are partial, never silently empty
            first, last = window or (since_of(source.config).date(), last_day_read(entity, None))
            record_sync_outage(conn, entity, staging_source, source.name, first, last, status, message or status)
    return SourceSyncResult(source.name, source.kind, status, message, stats)


def _apply_breaker(conn, source: SourceInfo, admission: Admission, policy: BreakerPolicy, status: str,
                   message: str | None) -> str | None:
    """A sync that ran (or probed) moves the source's breaker; the message then says when it opens."""
    if admission.action == "skip":
        return message
    breaker = record_sync_result(conn, source.id, status == "succeeded", policy, error=message)
    if breaker.state == "open" and status != "succeeded":
        return f"{message} (circuit breaker now {describe(breaker, policy)})"
    return message


class _BreakerOpen(Exception):
    """The source's circuit breaker is open: its sync is skipped, not attempted."""


def sync_entity_sources(engine: Engine, entity: Entity, *, names: list[str] | None = None,
                        provider: KeyProvider | None = None) -> list[SourceSyncResult]:
    """Sync the enabled sources of ``entity`` (all, or those named). No source configured: nothing, no network."""
    with engine.connect() as conn:
        sources = list_sources(conn, entity.id)
    if names:
        unknown = sorted(set(names) - {s.name for s in sources})
        if unknown:
            raise LookupError(f"entity {entity.name!r} has no enabled source named {', '.join(unknown)}")
        sources = [s for s in sources if s.name in names]
    if not sources:
        return []
    provider = provider or EnvKeyProvider()
    return [sync_source(engine, entity, s, provider) for s in sources]
