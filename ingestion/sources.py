"""Configured exchange sources of an entity: add (read-only key checked first), test, and sync them.

A source is a row of ``source_credentials``: its kind (``binance``), its name (also the account name of its
records), non-secret settings (``config``) and its encrypted credentials. Syncing a source that fails is
recorded on that row (``last_sync_status`` unavailable | refused | failed, with the message) and never stops
the other sources; what was staged before the failure stays (each page commits with its cursor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from ingestion import connectors
from ingestion.connectors import connector_for, is_other_kind
from ingestion.credentials import (CredentialError, EnvKeyProvider, KeyProvider, SourceInfo, list_sources,
                                   load_credentials, record_sync_outcome, store_source)
from ingestion.breakers import Admission, admit_sync, describe, record_sync_result
from ingestion.retry import BreakerPolicy
from ingestion.binance.sync import (ApiCredentials, BinanceOptions, BinanceSync, SyncStats, check_read_only,
                                         make_client)
from ingestion.sync_outages import (clear_sync_outages, first_incomplete_day, last_day_read,
                                              mark_sync_failed)
from ingestion.ccxt.client import (RetryPolicy, SourceAccessError, SourceError, SourceUnavailable,
                                            call_exchange)
from warehouse.entities import Entity

KINDS = ("binance", "kraken", "ccxt.<exchange id>", "fireblocks")  # the last three: ingestion/connectors.py
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
    """API key and secret from a JSON file ``{"api_key": ..., "api_secret": ...}``, else from the environment
    (``COINFRS_BINANCE_API_KEY`` / ``COINFRS_BINANCE_API_SECRET``). Never from the command line."""
    if is_other_kind(kind):
        return connector_for(kind).read_credentials(path)
    return connectors.read_json_credentials(kind, path, {"api_key": ("api_key",), "api_secret": ("api_secret", "secret")})


def binance_options(config: dict[str, Any]) -> BinanceOptions:
    retry = RetryPolicy(attempts=int(config.get("retry_attempts", RetryPolicy.attempts)),
                        initial_seconds=float(config.get("retry_initial_seconds", RetryPolicy.initial_seconds)),
                        max_seconds=float(config.get("retry_max_seconds", RetryPolicy.max_seconds)))
    since = date.fromisoformat(config.get("since", "2020-01-01"))
    until = date.fromisoformat(config["until"]) + timedelta(days=1) if config.get("until") else None
    return BinanceOptions(api_url=config.get("api_url"), rate_limit_ms=config.get("rate_limit_ms"),
                          timeout_ms=int(config.get("timeout_ms", 10_000)), retry=retry,
                          since=datetime(since.year, since.month, since.day, tzinfo=timezone.utc),
                          until=datetime(until.year, until.month, until.day, tzinfo=timezone.utc) if until else None)


def _client(kind: str, credentials: dict[str, str], config: dict[str, Any]):
    if kind != "binance":
        raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    options = binance_options(config)
    return make_client(ApiCredentials(credentials["api_key"], credentials["api_secret"]), options), options


def add_source(engine: Engine, entity: Entity, kind: str, name: str, credentials: dict[str, str],
               config: dict[str, Any], provider: KeyProvider | None = None, *, replace: bool = False) -> tuple[SourceInfo, dict]:
    """Check the key is read-only (refused otherwise, saying which permission to remove), then store it encrypted."""
    config = validate_config(config)
    if is_other_kind(kind):
        restrictions = connector_for(kind).check(credentials, config)
    else:
        exchange, options = _client(kind, credentials, config)
        restrictions = check_read_only(exchange, options.retry)
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
    summary: str | None = None  # what the connector found, said its own way (kinds of ingestion/connectors.py)


def inspect_source(engine: Engine, entity: Entity, name: str, provider: KeyProvider | None = None) -> SourceReport:
    source = _one_source(engine, entity, name)
    with engine.connect() as conn:
        credentials = load_credentials(conn, source, provider or EnvKeyProvider())
    if is_other_kind(source.kind):
        return SourceReport(source.name, *connector_for(source.kind).inspect(credentials, source.config))
    exchange, options = _client(source.kind, credentials, source.config)
    restrictions = check_read_only(exchange, options.retry)
    markets = call_exchange(exchange, "load_markets", exchange.load_markets, policy=options.retry)
    spot = call_exchange(exchange, "GET /api/v3/account", exchange.privateGetAccount, {"omitZeroBalances": "true"},
                         policy=options.retry)
    futures = call_exchange(exchange, "GET /fapi/v2/balance", exchange.fapiPrivateV2GetBalance, {}, policy=options.retry)
    balances = {"spot": {b["asset"]: b["free"] for b in spot.get("balances", [])},
                "futures": {b["asset"]: b["balance"] for b in futures}}
    return SourceReport(source.name, restrictions, len(markets), balances)


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
    stats: SyncStats | None = None
    errors: list[str] = field(default_factory=list)


def sync_source(engine: Engine, entity: Entity, source: SourceInfo, provider: KeyProvider) -> SourceSyncResult:
    """Sync one source; a failure is recorded on the source and returned, not raised."""
    if is_other_kind(source.kind):
        return sync_other_source(engine, entity, source, provider)
    stats: SyncStats | None = None
    options = binance_options(source.config)
    with engine.connect() as conn:
        first_day = first_incomplete_day(conn, entity, source.kind, source.name, BinanceSync.window_streams(),
                                         options.since)
    last_day = last_day_read(entity, options.until)
    policy = BreakerPolicy.from_env()
    with engine.begin() as conn:
        admission = admit_sync(conn, source.id, policy)
    if admission.action == "skip":  # the source is not called while its breaker is open
        status, message = "circuit_open", admission.message
    else:
        try:
            with engine.connect() as conn:
                credentials = load_credentials(conn, source, provider)
            exchange, options = _client(source.kind, credentials, source.config)
            sync = BinanceSync(engine, entity.id, source.name, exchange, options)
            stats = sync.stats
            sync.run()
            status, message = "succeeded", None
        except SourceAccessError as error:
            status, message = "refused", str(error)
        except SourceUnavailable as error:
            status, message = "unavailable", str(error)
        except (SourceError, CredentialError) as error:
            status, message = "failed", str(error)
    with engine.begin() as conn:
        message = _apply_breaker(conn, source, admission, policy, status, message)
        record_sync_outcome(conn, source.id, status, message)
        if status == "succeeded":
            clear_sync_outages(conn, entity, source.kind, first_day, last_day)
        else:  # the days not read through are partial, never silently empty
            mark_sync_failed(conn, entity, source.kind, source.name, first_day, last_day, status, message or status)
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


def sync_other_source(engine: Engine, entity: Entity, source: SourceInfo, provider: KeyProvider) -> SourceSyncResult:
    """``sync_source`` for the kinds of ingestion/connectors.py; a failure also records the days it may miss as
    source outages (those closes are partial), a success clears them."""
    stats, staging_source = None, source.kind
    policy = BreakerPolicy.from_env()
    with engine.begin() as conn:
        admission = admit_sync(conn, source.id, policy)
    try:
        connector = connector_for(source.kind)
        staging_source = connector.staging_source
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
        connectors.clear_sync_outages(engine, entity.id, staging_source, source.name)
    else:
        connectors.record_sync_outage(engine, entity.id, staging_source, source.name, source.config, f"{status}: {message}")
    return SourceSyncResult(source.name, source.kind, status, message, stats)


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
