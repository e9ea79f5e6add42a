"""Sync every configured wallet of an entity, chain by chain; a chain that fails is recorded, not fatal.

EVM wallets of one chain are scanned together (one block-range scan); Solana and Bitcoin wallets one by one. A failure (RPC
down, a chain id mismatch, a malformed answer) is written to ``chain_sync_failures`` with how far the chain is
synced (``synced_through``), so the close of a later day can say it is partial and which chain is missing; the
other chains still sync (any error is recorded, with RPC URLs reduced to their host). No wallets: nothing happens and no network is touched.

A failed chain is also recorded as a source outage (``reconciliation.outages``) for every day it leaves incomplete:
from the first day whose cutoff is after ``synced_through`` to the last day asked for (the close run's last day, else
yesterday). Those closes are ``partial`` and their message names the chain (``evm/<chain>``, ``bitcoin/<chain>`` or ``solana``). A
later successful sync clears the chain's outages of the days it now covers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion.chain_reorgs import write_chain_reorg
from ingestion.evm.chains import ChainConfig, ChainConfigError, explorer_from_env, redact_in_text, resolve_chain
from ingestion.evm.sync import last_final_day, sync_evm_chain
from ingestion.bitcoin.sync import settings_from_env, sync_bitcoin_wallet
from ingestion.retry import SourceError
from ingestion.solana.sync import sync_solana_wallet
from ingestion.wallets import (BITCOIN_SOURCE, SOLANA, Wallet, clear_chain_outages, load_wallets, rpc_urls_for,
                               source_of, write_chain_outage, write_sync_failure)
from warehouse.calendar import close_date_of, days_between
from warehouse.entities import Entity

# every connector's terminal failure is a SourceError (ingestion/retry.py: RpcError, ExplorerError, EsploraError,
# BitcoinSyncError, SolanaSyncError); a wallet or chain configured wrong is a ChainConfigError
SYNC_ERRORS = (SourceError, ChainConfigError)


@dataclass
class ChainSyncOutcome:
    chain: str
    wallets: int
    staged: int = 0
    snapshots: int = 0
    orphaned: int = 0
    fork_block: int | None = None
    affected_days: set[date] = field(default_factory=set)
    synced_through: datetime | None = None
    error: str | None = None


def _synced_through(engine: Engine, entity: Entity, chain: str, chain_id: int | None) -> datetime | None:
    with engine.connect() as conn:
        if chain_id is not None:
            return conn.execute(sa.text("SELECT max(timestamp) FROM chain_blocks WHERE entity_id = :e AND chain_id = :c"),
                                dict(e=entity.id, c=chain_id)).scalar()
        if source_of(chain) == BITCOIN_SOURCE:
            return conn.execute(sa.text(
                "SELECT max(snapshot_time) FROM raw_balance_snapshots WHERE entity_id = :e AND source = :s"
                " AND payload->>'chain' = :c"), dict(e=entity.id, s=BITCOIN_SOURCE, c=chain)).scalar()
        return conn.execute(sa.text(
            "SELECT max(snapshot_time) FROM raw_balance_snapshots WHERE entity_id = :e AND source = :s"),
            dict(e=entity.id, s=SOLANA)).scalar()


def outage_days(entity: Entity, synced_through: datetime | None, close_range: tuple[date, date] | None,
                now: datetime | None = None) -> list[date]:
    """The days a chain synced only through ``synced_through`` leaves incomplete, up to the run's last day
    (else yesterday); a chain never synced leaves the whole run (else yesterday) incomplete."""
    last = close_range[1] if close_range else close_date_of(now or datetime.now(timezone.utc), entity.tz) - timedelta(days=1)
    if synced_through is not None:
        first = last_final_day(synced_through, entity) + timedelta(days=1)
    else:
        first = close_range[0] if close_range else last
    return list(days_between(first, last))


def evm_config_for(wallets: list[Wallet]) -> ChainConfig:
    """The chain's configuration: preset (or custom id) with the wallets' RPC URLs first, then the environment's."""
    first = wallets[0]
    urls: list[str] = []
    for wallet in wallets:
        urls.extend(u for u in wallet.rpc_urls if u not in urls)
    return resolve_chain(first.chain, chain_id=first.chain_id, rpc_urls=urls)


def sync_entity_wallets(engine: Engine, entity: Entity, *, chain: str | None = None,
                        configs: dict[str, ChainConfig] | None = None, close_range: tuple[date, date] | None = None,
                        log: Callable[[str], None] = lambda message: None) -> list[ChainSyncOutcome]:
    """Sync the entity's wallets (one chain if ``chain``); ``configs`` overrides a chain's configuration.

    ``close_range``: the days the calling close run covers (a failed chain makes them partial from where it stopped)."""
    with engine.connect() as conn:
        wallets = load_wallets(conn, entity.id, chain=chain)
    by_chain: dict[str, list[Wallet]] = {}
    for wallet in wallets:
        by_chain.setdefault(wallet.chain, []).append(wallet)
    outcomes = []
    for name, mine in sorted(by_chain.items()):
        outcome = ChainSyncOutcome(name, len(mine))
        try:
            if name == SOLANA:
                for wallet in mine:
                    result = sync_solana_wallet(engine, entity, wallet, urls=rpc_urls_for(wallet))
                    outcome.staged += result.inserted
                    outcome.snapshots += result.snapshots
                    outcome.affected_days |= result.affected_days
                    outcome.synced_through = result.synced_through
            elif source_of(name) == BITCOIN_SOURCE:
                settings = settings_from_env(name)
                finals: list[datetime] = []
                for wallet in mine:
                    btc = sync_bitcoin_wallet(engine, entity, wallet, urls=rpc_urls_for(wallet), settings=settings)
                    outcome.staged += btc.inserted
                    outcome.snapshots += btc.snapshots
                    outcome.affected_days |= btc.affected_days
                    if btc.synced_through is not None:
                        finals.append(btc.synced_through)
                outcome.synced_through = min(finals) if len(finals) == len(mine) else None
            else:
                config = (configs or {}).get(name) or evm_config_for(mine)
                evm = sync_evm_chain(engine, entity, config, mine)
                outcome.staged, outcome.snapshots, outcome.orphaned = evm.inserted, evm.snapshots, evm.orphaned
                outcome.affected_days, outcome.synced_through = evm.affected_days, evm.synced_through
                outcome.fork_block = evm.fork_block
                if evm.fork_block is not None:  # the touched days are re-closed automatically (ingestion.chain_reorgs)
                    with engine.begin() as conn:
                        write_chain_reorg(conn, entity.id, name, fork_block=evm.fork_block, orphaned=evm.orphaned,
                                          days=evm.reorg_days | evm.affected_days)
        except Exception as exc:  # noqa: BLE001 - one chain's failure must not stop the others or the close
            urls = [u for w in mine for u in rpc_urls_for(w)]
            try:
                explorer = None if source_of(name) != "evm" else explorer_from_env(name)
            except ChainConfigError:
                explorer = None
            text = f"{type(exc).__name__}: {exc}"
            if explorer is not None:
                urls.append(explorer.url)
                text = text.replace(explorer.api_key, "<redacted>") if explorer.api_key else text
            outcome.error = redact_in_text(text, urls)
            if not isinstance(exc, SYNC_ERRORS):
                log(f"{entity.name} · {name}: unexpected {type(exc).__name__} (recorded as a sync failure)")
            outcome.synced_through = _synced_through(engine, entity, name, mine[0].chain_id)
            days = outage_days(entity, outcome.synced_through, close_range)
            through = f"synced through {outcome.synced_through:%Y-%m-%d %H:%M:%S} UTC" if outcome.synced_through else "never synced"
            with engine.begin() as conn:
                write_sync_failure(conn, entity.id, name, outcome.error, outcome.synced_through)
                write_chain_outage(conn, entity.id, name, days, f"chain {name} could not be synced ({through}): {outcome.error}")
        else:
            if outcome.synced_through is not None:
                with engine.begin() as conn:
                    clear_chain_outages(conn, entity.id, name, last_final_day(outcome.synced_through, entity))
        log(f"{entity.name} · {name}: " + (f"FAILED ({outcome.error})" if outcome.error else
            f"{outcome.staged} new records, {outcome.snapshots} balance snapshots, {outcome.orphaned} orphaned"))
        outcomes.append(outcome)
    return outcomes
