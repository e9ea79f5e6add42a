"""Configured on-chain wallets (EVM, Solana and Bitcoin) and the record of chains that could not be synced.

A wallet is (entity, chain, address) with optional RPC URLs; adding one also registers its canonical account
(source ``evm``, ``solana`` or ``bitcoin``, account type ``wallet``, name ``<chain>:<address>``, chain and address set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from reconciliation.outages import ALL_STREAMS, clear_outage_days, record_outage_days
from warehouse.schema import accounts, chain_sync_failures, chain_wallets

SOLANA = "solana"
BITCOIN_SOURCE = "bitcoin"


def source_of(chain: str) -> str:
    """The staging source of a chain's wallets: ``solana``, ``bitcoin`` (bitcoin, bitcoin-testnet, ...) or ``evm``."""
    if chain == SOLANA:
        return SOLANA
    return BITCOIN_SOURCE if chain == "bitcoin" or chain.startswith("bitcoin-") else "evm"


@dataclass(frozen=True)
class Wallet:
    id: int
    entity_id: int
    chain: str
    chain_id: int | None
    address: str
    rpc_urls: tuple[str, ...]
    start_block: int
    label: str | None

    @property
    def source(self) -> str:
        return source_of(self.chain)

    @property
    def account(self) -> str:
        """The canonical account name (and staging ``account``): ``<chain>:<address>``."""
        return f"{self.chain}:{self.address}"


def _to_wallet(row: sa.Row) -> Wallet:
    return Wallet(row.id, row.entity_id, row.chain, row.chain_id, row.address, tuple(row.rpc_urls or ()),
                  row.start_block, row.label)


def write_wallet(conn: Connection, entity_id: int, *, chain: str, address: str, chain_id: int | None,
                 rpc_urls: tuple[str, ...] | list[str] = (), start_block: int = 0, label: str | None = None) -> Wallet:
    """Add a wallet (or, when it exists, replace its RPC URLs if some are given, and its label) and its account."""
    values = dict(entity_id=entity_id, chain=chain, chain_id=chain_id, address=address, rpc_urls=list(rpc_urls),
                  start_block=start_block, label=label)
    statement = insert(chain_wallets).values(**values)
    row = conn.execute(statement.on_conflict_do_update(
        constraint="uq_chain_wallets_identity",
        set_=dict(rpc_urls=sa.case((sa.func.jsonb_array_length(statement.excluded.rpc_urls) > 0, statement.excluded.rpc_urls),
                                   else_=chain_wallets.c.rpc_urls),
                  label=sa.func.coalesce(statement.excluded.label, chain_wallets.c.label)),
    ).returning(*chain_wallets.c)).one()
    wallet = _to_wallet(row)
    conn.execute(insert(accounts).values(
        entity_id=entity_id, source=wallet.source, name=wallet.account, account_type="wallet", sub_account="",
        chain=chain, address=address, label=label or wallet.account,
    ).on_conflict_do_nothing(constraint="uq_accounts_identity"))
    return wallet


def load_wallets(conn: Connection, entity_id: int, *, chain: str | None = None) -> list[Wallet]:
    query = sa.select(chain_wallets).where(chain_wallets.c.entity_id == entity_id)
    if chain is not None:
        query = query.where(chain_wallets.c.chain == chain)
    return [_to_wallet(r) for r in conn.execute(query.order_by(chain_wallets.c.chain, chain_wallets.c.id))]


def rpc_urls_for(wallet: Wallet) -> tuple[str, ...]:
    """The wallet's own RPC URLs, else the environment's (``COINFRS_RPC_<CHAIN>``, comma separated)."""
    from ingestion.evm.chains import rpc_urls_from_env

    return wallet.rpc_urls or rpc_urls_from_env(wallet.chain)


def write_sync_failure(conn: Connection, entity_id: int, chain: str, error: str, synced_through: datetime | None) -> None:
    """Record that ``chain`` could not be synced (the error must already be free of secrets)."""
    conn.execute(chain_sync_failures.insert().values(entity_id=entity_id, chain=chain, error=error[:2000],
                                                     synced_through=synced_through))


def outage_stream(chain: str) -> str:
    """How a chain is named in ``source_outages``: EVM chains as a stream of source ``evm`` (``evm/base``), Bitcoin
    networks as a stream of source ``bitcoin`` (``bitcoin/bitcoin``), Solana as the whole source ``solana``."""
    return ALL_STREAMS if chain == SOLANA else chain


def write_chain_outage(conn: Connection, entity_id: int, chain: str, days: list[date], reason: str) -> None:
    """The close of each of ``days`` is partial and names ``chain`` (``reconciliation.outages``)."""
    record_outage_days(conn, entity_id, source_of(chain), days, reason, stream=outage_stream(chain))


def clear_chain_outages(conn: Connection, entity_id: int, chain: str, through: date) -> int:
    """``chain`` is synced again through ``through``: the outages recorded for it up to that day no longer apply."""
    return clear_outage_days(conn, entity_id, source_of(chain), stream=outage_stream(chain), through=through)


def load_chain_outages(conn: Connection, entity_id: int, day_cutoff: datetime, since: datetime) -> list[dict]:
    """Chains whose last sync failure (after ``since``) left them synced only to before ``day_cutoff``:
    a close of that day is partial for these chains."""
    rows = conn.execute(sa.text(
        """
        SELECT DISTINCT ON (chain) chain, failed_at, synced_through, error FROM chain_sync_failures
        WHERE entity_id = :e AND failed_at >= :since ORDER BY chain, failed_at DESC
        """), dict(e=entity_id, since=since)).all()
    return [dict(chain=r.chain, failed_at=r.failed_at, synced_through=r.synced_through, error=r.error) for r in rows
            if r.synced_through is None or r.synced_through < day_cutoff]


def days_of(times: list[datetime], tz) -> set[date]:  # type: ignore[no-untyped-def]
    from warehouse.calendar import close_date_of

    return {close_date_of(t, tz) for t in times}
