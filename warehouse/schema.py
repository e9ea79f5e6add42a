"""The warehouse schema (SQLAlchemy Core). Migrations in ``warehouse/migrations`` create it.

Two layers (DESIGN.md):
- staging (immutable, append-only): ``ingestion_runs``, ``raw_records``, ``raw_balance_snapshots``;
- canonical (derived from staging, rebuildable): ``accounts``, ``assets``, ``asset_aliases``,
  ``transactions`` (legs), ``transfers``, ``balance_observations``, ``prices``, ``positions``.
Then reconciliation (``recon_results``, ``breaks``), cost basis (``pnl_disposals``,
``pnl_disposal_lots``, ``pnl_daily``), the close (``closes``) and API credentials (``api_keys``).

Quantities and money are ``NUMERIC`` without a fixed scale: exact, never floats.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Exact = sa.Numeric(asdecimal=True)
# The closed vocabulary (transforms/events.py is its source: LegKind, EventType; a test checks they agree)
LEG_KINDS: tuple[str, ...] = (
    "buy", "sell", "fee", "income", "staking_reward", "airdrop", "interest", "rebate", "mining", "spend", "deposit",
    "withdrawal", "transfer_in", "transfer_out", "borrow", "repay", "liability", "interest_expense", "realized_pnl",
    "funding", "opening_balance", "adjustment", "spam", "unclassified")
EVENT_TYPES: tuple[str, ...] = (
    "trade", "fee", "income", "spend", "external_deposit", "external_withdrawal", "internal_transfer", "internal_move",
    "loan_draw", "loan_repayment", "interest_expense", "derivatives_settlement", "opening_balance", "adjustment", "spam",
    "unclassified")
TS = sa.DateTime(timezone=True)


def _now() -> sa.TextClause:
    return sa.text("now()")


entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("reporting_currency", sa.Text, nullable=False, server_default="USD",
              comment="currency the API values positions in (USD, or a fiat asset with USD prices)"),
    sa.Column("holding_rule", sa.Text, nullable=False, server_default="us",
              comment="holding period: us (long-term when disposed after the anniversary of the acquisition day, in the "
                      "entity's timezone) | elapsed (more than 365 x 24 hours)"),
    sa.Column("archived_at", TS, nullable=True,
              comment="when the entity was archived (NULL: active); an archived entity is not closed or imported into"),
    sa.CheckConstraint("holding_rule IN ('us', 'elapsed')", name="holding_rule"),
)
sa.Index("uq_entities_name_lower", sa.func.lower(entities.c.name), unique=True)  # names are one case-insensitively

# ---------------------------------------------------------------- staging (layer 1)

ingestion_runs = sa.Table(
    "ingestion_runs",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text),
    sa.Column("file_hash", sa.Text),
    sa.Column("started_at", TS, nullable=False, server_default=_now()),
    sa.Column("finished_at", TS),
    sa.Column("rows_seen", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.Text, nullable=False),
)

raw_records = sa.Table(
    "raw_records",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    # entity_id and ingestion_run_id reference entities and ingestion_runs through a statement-level trigger, not
    # a per-row foreign key (migration 0032: one check per COPY, same error and locks)
    sa.Column("entity_id", sa.BigInteger, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("source_raw_id", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("payload_hash", sa.Text, nullable=False),
    sa.Column("occurred_at", TS, comment="the record's own event time, parsed at ingestion"),
    sa.Column("file_name", sa.Text),
    sa.Column("line_number", sa.Integer),
    sa.Column("file_hash", sa.Text),
    sa.Column("ingestion_run_id", UUID(as_uuid=True), nullable=False),
    sa.Column("ingested_at", TS, nullable=False, server_default=_now()),
    sa.Column("processing_status", sa.Text, nullable=False, server_default="new"),
    # (entity_id, stream, source_raw_id) first: the lookups by a record's own id use it (migration 0033)
    sa.UniqueConstraint("entity_id", "stream", "source_raw_id", "source", "account", "payload_hash",
                        name="uq_raw_records_natural_key"),
)

raw_balance_snapshots = sa.Table(
    "raw_balance_snapshots",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("account_type", sa.Text, nullable=False),
    sa.Column("sub_account", sa.Text, nullable=False, server_default="",
              comment="'' when the source has no sub-accounts"),
    sa.Column("snapshot_time", TS, nullable=False),
    sa.Column("balances", JSONB, nullable=False, comment="{asset symbol: exact decimal text}"),
    sa.Column("payload", JSONB, nullable=False, comment="the source's own record, unedited"),
    sa.Column("payload_hash", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text),
    sa.Column("line_number", sa.Integer),
    sa.Column("file_hash", sa.Text),
    sa.Column("ingestion_run_id", UUID(as_uuid=True), sa.ForeignKey("ingestion_runs.id"), nullable=False),
    sa.Column("ingested_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("entity_id", "source", "account", "account_type", "sub_account", "snapshot_time",
                        "payload_hash", name="uq_raw_balance_snapshots_natural_key"),
)

# ---------------------------------------------------------------- canonical (layer 2)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("account_type", sa.Text, nullable=False),
    sa.Column("sub_account", sa.Text, nullable=False, server_default=""),
    sa.Column("chain", sa.Text),
    sa.Column("address", sa.Text),
    sa.Column("label", sa.Text),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("entity_id", "name", "account_type", "sub_account", name="uq_accounts_identity"),
)

assets = sa.Table(
    "assets",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("symbol", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text),
    sa.Column("decimals", sa.Integer, nullable=False),
    sa.Column("is_fiat", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("unverified", sa.Boolean, nullable=False, server_default=sa.false(),
              comment="seen in a source but not in the registry: kept and flagged"),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
)

asset_aliases = sa.Table(
    "asset_aliases",
    metadata,
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("alias", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("source", "alias"),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False,
              comment="raw_record_id * 10 + leg_index: stable across rebuilds"),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("ts", TS, nullable=False),
    sa.Column("close_date", sa.Date, nullable=False, comment="the entity's close day the leg belongs to"),
    sa.Column("quantity", Exact, nullable=False, comment="signed: + into the account, - out"),
    sa.Column("kind", sa.Text, nullable=False, comment="a leg kind of the vocabulary (transforms/events.py)"),
    sa.Column("group_id", sa.Text, nullable=False, comment="ties the legs of one event"),
    sa.Column("leg_index", sa.SmallInteger, nullable=False),
    sa.Column("unit_price_usd", Exact),
    sa.Column("usd_value", Exact),
    sa.Column("tx_hash", sa.Text),
    sa.Column("counterparty_account_id", sa.BigInteger, sa.ForeignKey("accounts.id")),
    sa.Column("raw_record_id", sa.BigInteger, sa.ForeignKey("raw_records.id"), nullable=False),
    sa.Column("is_adjustment", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("raw_record_id", "leg_index", name="uq_transactions_raw_leg"),
    sa.CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in LEG_KINDS) + ")", name="kind"),
)
sa.Index("ix_transactions_entity_date", transactions.c.entity_id, transactions.c.close_date)
sa.Index("ix_transactions_adjustments", transactions.c.entity_id, transactions.c.close_date, transactions.c.ts,
         postgresql_where=transactions.c.is_adjustment)  # migration 0031
sa.Index("ix_transactions_account_asset_ts", transactions.c.account_id, transactions.c.asset_id, transactions.c.ts)

# One row per event (the legs sharing a group_id): its type and, for a trade, the one value it was booked at.
events = sa.Table(
    "events",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("group_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("ts", TS, nullable=False),
    sa.Column("close_date", sa.Date, nullable=False),
    sa.Column("legs", sa.Integer, nullable=False),
    sa.Column("raw_record_ids", sa.ARRAY(sa.BigInteger), nullable=False),
    sa.Column("valued_by", sa.Text, comment="a trade's valuation rule and price: fiat | stablecoin | received_price | "
                                            "given_price | none, with asset id @ unit price"),
    sa.Column("value_usd", Exact, comment="a trade's one value (given side's proceeds = received side's cost)"),
    sa.Column("price_asset_id", sa.BigInteger, sa.ForeignKey("assets.id")),
    sa.Column("unit_price_usd", Exact),
    sa.PrimaryKeyConstraint("entity_id", "group_id"),
    sa.CheckConstraint("event_type IN (" + ", ".join(f"'{e}'" for e in EVENT_TYPES) + ")", name="event_type"),
)
sa.Index("ix_events_entity_date", events.c.entity_id, events.c.close_date)

transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False, comment="= the outgoing (or lone) leg id"),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("out_leg_id", sa.BigInteger, sa.ForeignKey("transactions.id", ondelete="CASCADE")),
    sa.Column("in_leg_id", sa.BigInteger, sa.ForeignKey("transactions.id", ondelete="CASCADE")),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("tx_hash", sa.Text),
    sa.Column("status", sa.Text, nullable=False, comment="matched | unmatched_out | unmatched_in"),
    sa.Column("close_date", sa.Date, nullable=False),
)
sa.Index("ix_transfers_entity_date", transfers.c.entity_id, transfers.c.close_date)

balance_observations = sa.Table(
    "balance_observations",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("observed_at", TS, nullable=False),
    sa.Column("quantity", Exact, nullable=False),
    sa.Column("raw_snapshot_id", sa.BigInteger, sa.ForeignKey("raw_balance_snapshots.id"), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "asset_id", "observed_at"),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("ts", TS, nullable=False),
    sa.Column("price_usd", Exact, nullable=False),
    sa.Column("source", sa.Text, nullable=False, comment="ledger = a trade price in the entity's own ledger"),
    sa.Column("resolution", sa.Text, nullable=False, comment="trade | minute | hour | day"),
    sa.Column("leg_id", sa.BigInteger, sa.ForeignKey("transactions.id", ondelete="CASCADE")),
    sa.Column("fetched_at", TS, nullable=False, server_default=_now()),
)
sa.Index("ix_prices_entity_asset_ts", prices.c.entity_id, prices.c.asset_id, prices.c.ts)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("computed_quantity", Exact, nullable=False, comment="sum of legs up to the day's cutoff"),
    sa.Column("reported_quantity", Exact, comment="latest snapshot at or before the cutoff"),
    sa.Column("reported_at", TS),
    sa.Column("close_price_usd", Exact),
    sa.Column("price_at", TS),
    sa.Column("run_id", sa.Text),
    sa.PrimaryKeyConstraint("account_id", "asset_id", "date"),
)
sa.Index("ix_positions_entity_date", positions.c.entity_id, positions.c.date)

# ---------------------------------------------------------------- reconciliation

recon_results = sa.Table(
    "recon_results",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("suite", sa.Text, nullable=False),
    sa.Column("expectation", sa.Text, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("checked_count", sa.Integer, nullable=False),
    sa.Column("failed_count", sa.Integer, nullable=False),
    sa.Column("observed", JSONB),
    sa.Column("run_id", sa.Text),
    sa.Column("checked_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("entity_id", "date", "suite", "expectation", name="uq_recon_results_day"),
)

breaks = sa.Table(
    "breaks",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("previous_reported", Exact, nullable=False),
    sa.Column("previous_reported_at", TS),
    sa.Column("legs_sum", Exact, nullable=False),
    sa.Column("expected", Exact, nullable=False),
    sa.Column("reported", Exact, nullable=False),
    sa.Column("reported_at", TS, nullable=False),
    sa.Column("difference", Exact, nullable=False, comment="reported - expected"),
    sa.Column("tolerance", Exact, nullable=False),
    sa.Column("leg_ids", JSONB, nullable=False, comment="the legs of the window"),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("run_id", sa.Text),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("causes", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb"),
              comment="ranked candidate causes: [{code, evidence, score, data}] (reconciliation/causes.py)"),
    sa.UniqueConstraint("entity_id", "date", "account_id", "asset_id", name="uq_breaks_day"),
)

# ---------------------------------------------------------------- cost basis and PnL

pnl_disposals = sa.Table(
    "pnl_disposals",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("pool", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("ts", TS, nullable=False),
    sa.Column("leg_id", sa.BigInteger, nullable=False, comment="the disposing leg (transactions.id)"),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False, comment="sale | fee"),
    sa.Column("quantity", Exact, nullable=False),
    sa.Column("proceeds", Exact, nullable=False),
    sa.Column("cost_basis", Exact, nullable=False),
    sa.Column("realized_gain", Exact, nullable=False),
    sa.Column("short_term_gain", Exact, nullable=False),
    sa.Column("long_term_gain", Exact, nullable=False),
    sa.Column("shortfall_quantity", Exact, nullable=False, comment="disposed beyond the pool's lots: zero basis, flagged"),
    sa.Column("run_id", sa.Text),
    sa.UniqueConstraint("entity_id", "method", "pool", "leg_id", name="uq_pnl_disposals_book_leg"),
)
sa.Index("ix_pnl_disposals_book_date", pnl_disposals.c.entity_id, pnl_disposals.c.method, pnl_disposals.c.pool,
         pnl_disposals.c.date)

pnl_disposal_days = sa.Table(
    "pnl_disposal_days",
    metadata,
    sa.Column("entity_id", sa.BigInteger, nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("pool", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("disposals", sa.BigInteger, nullable=False),
    sa.Column("fee_disposals", sa.BigInteger, nullable=False),
    sa.Column("shortfall_quantity_disposals", sa.BigInteger, nullable=False),
    *[sa.Column(name, Exact, nullable=False) for name in ("proceeds", "cost_basis", "realized_gain", "short_term_gain",
                                                          "long_term_gain")],
    sa.PrimaryKeyConstraint("entity_id", "method", "pool", "date", name="pk_pnl_disposal_days"),
    comment="Derived from pnl_disposals by its triggers (migration 0031): never written directly",
)
"""Per entity, book and day: the sums and counts of ``pnl_disposals`` (the realized PnL summary reads these)."""

pnl_disposal_lots = sa.Table(
    "pnl_disposal_lots",
    metadata,
    sa.Column("disposal_id", sa.BigInteger, sa.ForeignKey("pnl_disposals.id", ondelete="CASCADE"), nullable=False),
    sa.Column("lot_leg_id", sa.BigInteger, nullable=False, comment="the acquisition leg (transactions.id) of the lot"),
    sa.Column("acquired_at", TS, nullable=False),
    sa.Column("quantity", Exact, nullable=False),
    sa.Column("cost_basis", Exact, nullable=False),
    sa.Column("term", sa.Text, nullable=False, comment="short | long (held more than 365 days)"),
)
sa.Index("ix_pnl_disposal_lots_disposal", pnl_disposal_lots.c.disposal_id)

pnl_daily = sa.Table(
    "pnl_daily",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("pool", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("pool_account_id", sa.BigInteger, nullable=False, comment="0 for the universal pool"),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("quantity", Exact, nullable=False, comment="open lots at the close"),
    sa.Column("cost_basis", Exact, nullable=False),
    sa.Column("close_price_usd", Exact),
    sa.Column("market_value", Exact),
    sa.Column("unrealized_gain", Exact),
    sa.Column("realized_gain", Exact, nullable=False, comment="realized during the day"),
    sa.Column("run_id", sa.Text),
    # the day's roll-forward movements (issue 3): closing = previous closing + acquired - disposed + in - out
    *[sa.Column(f"{movement}_{part}", Exact) for movement in ("acquired", "disposed", "transferred_in", "transferred_out")
      for part in ("quantity", "basis")],
    sa.Column("shortfall_quantity", Exact, comment="left the pool without an acquisition behind it (zero basis)"),
    sa.PrimaryKeyConstraint("entity_id", "method", "pool", "date", "pool_account_id", "asset_id"),
)

# ---------------------------------------------------------------- close

closes = sa.Table(
    "closes",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False, comment="closed | breaks | unpriced | blocked | partial | stale | failed"),
    sa.Column("legs", sa.Integer, nullable=False),
    sa.Column("positions", sa.Integer, nullable=False),
    sa.Column("breaks", sa.Integer, nullable=False),
    sa.Column("unmatched_transfers", sa.Integer, nullable=False),
    sa.Column("realized_gain_universal", Exact, comment="FIFO, universal pool, USD; null: not booked (blocked, failed)"),
    sa.Column("realized_gain_account", Exact, comment="FIFO, per-account pools, USD; null: not booked"),
    sa.Column("unrealized_gain_universal", Exact),
    sa.Column("book", sa.Text, comment="the entity's configured book in force that day, e.g. hifo:account"),
    sa.Column("realized_gain_book", Exact, comment="realized by the configured book, USD"),
    sa.Column("shortfalls", sa.Integer, comment="shortfall items of the configured book that day"),
    sa.Column("missing_prices", sa.Integer, comment="missing-price items of the configured book that day (status unpriced)"),
    sa.Column("message", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("closed_at", TS, nullable=False, server_default=_now()),
    sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("locked_at", TS),
    sa.PrimaryKeyConstraint("entity_id", "date"),
)

# ---------------------------------------------------------------- API credentials

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("prefix", sa.Text, nullable=False, unique=True, comment="shown to identify a key; not secret"),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True, comment="sha256 of the whole key"),
    sa.Column("label", sa.Text),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("revoked_at", TS),
    sa.Column("scope", sa.Text, nullable=False, server_default="read", comment="read | admin"),
    sa.CheckConstraint("scope IN ('read', 'admin')", name="scope"),
)

# ---------------------------------------------------------------- ingestion cursors (incremental sources)

ingestion_cursors = sa.Table(
    "ingestion_cursors",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("cursor", JSONB, nullable=False, comment="the source's own position: an id, a time, a block, a signature"),
    sa.Column("run_id", UUID(as_uuid=True), sa.ForeignKey("ingestion_runs.id")),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("entity_id", "source", "account", "stream"),
)

# ---------------------------------------------------------------- read API: key entities, journal mapping, indexes

api_key_entities = sa.Table(
    "api_key_entities",
    metadata,
    sa.Column("api_key_id", sa.BigInteger, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", ondelete="CASCADE"), nullable=False),
    sa.PrimaryKeyConstraint("api_key_id", "entity_id"),
    comment="the entities an API key may read (one or more)",
)

journal_accounts = sa.Table(
    "journal_accounts",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.Text, nullable=False,
              comment="inventory | clearing | realized_gain | fee_expense | income"),
    sa.Column("code", sa.Text, nullable=False, comment="the general-ledger account number"),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("asset", sa.Text, nullable=False, server_default="",
              comment="asset symbol the mapping applies to; '' for every asset"),
    sa.Column("account_type", sa.Text, nullable=False, server_default="",
              comment="ledger account type (spot, wallet, ...); '' for every type"),
    sa.PrimaryKeyConstraint("entity_id", "role", "asset", "account_type"),
    comment="per-entity general-ledger accounts of the journal entries (defaults in warehouse/journal.py)",
)

journal_settings = sa.Table(
    "journal_settings",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("fair_value_policy", sa.Text, nullable=False, server_default="none",
              comment="none | asu_2023_08 (remeasure to fair value) | ifrs_cost_impairment (cost less impairment)"),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.CheckConstraint("fair_value_policy IN ('none', 'asu_2023_08', 'ifrs_cost_impairment')", name="policy"),
    comment="per-entity general-ledger settings (warehouse/journal.py)",
)

sa.Index("ix_transactions_entity_ts_id", transactions.c.entity_id, transactions.c.ts, transactions.c.id)
sa.Index("ix_transfers_out_leg", transfers.c.out_leg_id)
sa.Index("ix_transfers_in_leg", transfers.c.in_leg_id)
sa.Index("ix_raw_records_entity_account_ingested", raw_records.c.entity_id, raw_records.c.account,
         raw_records.c.ingested_at)

# ---------------------------------------------------------------- on-chain wallets (EVM, Solana)

chain_wallets = sa.Table(
    "chain_wallets",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("chain", sa.Text, nullable=False, comment="a chain preset name (ethereum, base, solana, ...) or a custom name"),
    sa.Column("chain_id", sa.BigInteger, comment="EVM chain id; NULL for Solana"),
    sa.Column("address", sa.Text, nullable=False, comment="EVM: lowercase 0x address; Solana: base58"),
    sa.Column("rpc_urls", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb"),
              comment="RPC URLs in failover order; empty = the chain's configured URLs (COINFRS_RPC_<CHAIN>)"),
    sa.Column("start_block", sa.BigInteger, nullable=False, server_default="0", comment="EVM: first block scanned"),
    sa.Column("label", sa.Text),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("entity_id", "chain", "address", name="uq_chain_wallets_identity"),
)

chain_blocks = sa.Table(
    "chain_blocks",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("parent_hash", sa.Text, nullable=False),
    sa.Column("timestamp", TS, nullable=False),
    sa.PrimaryKeyConstraint("entity_id", "chain_id", "number"),
    comment="EVM blocks seen by the ingestion (hash per number): reorg detection and block-by-timestamp lookups",
)
sa.Index("ix_chain_blocks_entity_id_timestamp", chain_blocks.c.entity_id, chain_blocks.c.chain_id,
         chain_blocks.c.timestamp)

chain_sync_failures = sa.Table(
    "chain_sync_failures",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("chain", sa.Text, nullable=False),
    sa.Column("failed_at", TS, nullable=False, server_default=_now()),
    sa.Column("synced_through", TS, comment="data of this chain is complete up to here (the last final block's time)"),
    sa.Column("error", sa.Text, nullable=False, comment="what failed; RPC URLs reduced to their host"),
    comment="a chain that could not be synced: closes of days after synced_through are partial for this chain",
)

# ---------------------------------------------------------------- exchange and custodian sources (credentials)

source_credentials = sa.Table(
    "source_credentials",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False, comment="the source's name in its entity; also its account name"),
    sa.Column("kind", sa.Text, nullable=False, comment="connector: binance"),
    sa.Column("config", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb"),
              comment="non-secret settings: api_url, since"),
    sa.Column("key_id", sa.Text, nullable=False, comment="the master key that encrypted the credentials"),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False,
              comment="AES-256-GCM of the credentials JSON; associated data binds entity id, kind and name"),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.Column("last_sync_at", TS),
    sa.Column("last_sync_status", sa.Text, comment="succeeded | unavailable | refused | failed"),
    sa.Column("last_sync_message", sa.Text),
    sa.UniqueConstraint("entity_id", "name", name="uq_source_credentials_entity_name"),
)

# ---------------------------------------------------------------- price service (provenance of every price)
# Extra columns of ``prices`` for the price service (ingestion/prices, transforms/prices.py). ``source`` is
# 'manual' | 'coingecko' | 'exchange:<ccxt id>' | 'ledger' (precedence in that order); ``resolution`` gains
# 'point' (a manual price at an exact instant). Fiat FX rates are prices of the fiat asset (EUR, GBP) in USD.

prices.append_column(sa.Column("pair", sa.Text, comment="what the source quoted: bitcoin/usd, BTC/USDT, EUR/USD (via bitcoin)"))
prices.append_column(sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.false(),
                               comment="sources disagree on this asset and day by more than the threshold"))
prices.append_column(sa.Column("disagreement", Exact, comment="(max - min) / min over the sources of the asset and day"))
prices.append_column(sa.Column("note", sa.Text, comment="a manual price's source_note, or how a rate was derived"))
sa.Index("uq_prices_service_point", prices.c.entity_id, prices.c.asset_id, prices.c.source, prices.c.ts,
         unique=True, postgresql_where=prices.c.leg_id.is_(None))

# ---------------------------------------------------------------- cost basis books (issue 3)
# Books: ``method`` + ``pool`` name a stored book. The reference books ``fifo``/``universal`` and
# ``fifo``/``account`` are stored at every close; the entity's configured book (``pnl_books``, a
# method and pool per effective date) is stored as method ``configured``, pool ``configured``.

pnl_books = sa.Table(
    "pnl_books",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("effective_from", sa.Date, nullable=False, comment="first close day the method and pool apply to"),
    sa.Column("method", sa.Text, nullable=False, comment="fifo | lifo | hifo | lofo | average"),
    sa.Column("pool", sa.Text, nullable=False, comment="universal | account"),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("entity_id", "effective_from"),
)

pnl_open_lots = sa.Table(
    "pnl_open_lots",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("pool", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False, comment="the close the lot is open at"),
    sa.Column("seq", sa.BigInteger, nullable=False, comment="the lot's position in the book (unique per book and day)"),
    sa.Column("pool_account_id", sa.BigInteger, nullable=False, comment="0 for the universal pool"),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("lot_leg_id", sa.BigInteger, nullable=False, comment="the acquisition leg (transactions.id)"),
    sa.Column("account_id", sa.BigInteger, nullable=False, comment="the account holding (or that acquired) the lot"),
    sa.Column("acquired_at", TS, nullable=False),
    sa.Column("quantity", Exact, nullable=False),
    sa.Column("cost_basis", Exact, nullable=False),
    sa.Column("flagged", sa.Boolean, nullable=False, comment="zero basis: no price or no acquisition behind it"),
    sa.Column("run_id", sa.Text),
    sa.PrimaryKeyConstraint("entity_id", "method", "pool", "date", "seq"),
)

pnl_missing_prices = sa.Table(
    "pnl_missing_prices",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("pool", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("what", sa.Text, nullable=False, comment="acquisition | disposal | fee | position"),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False,
              comment="the leg's account; a position: the pool's account (0: universal pool)"),
    sa.Column("pool_account_id", sa.BigInteger, nullable=False),
    sa.Column("leg_id", sa.BigInteger, comment="the leg (transactions.id); null for a position"),
    sa.Column("at", TS, nullable=False, comment="the instant the price is needed at (a position: the day's cutoff)"),
    sa.Column("quantity", Exact, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.CheckConstraint("what IN ('acquisition', 'disposal', 'fee', 'position')", name="what"),
)
sa.Index("uq_pnl_missing_prices_item", pnl_missing_prices.c.entity_id, pnl_missing_prices.c.method, pnl_missing_prices.c.pool,
         pnl_missing_prices.c.date, pnl_missing_prices.c.what, pnl_missing_prices.c.asset_id,
         pnl_missing_prices.c.pool_account_id, sa.func.coalesce(pnl_missing_prices.c.leg_id, 0), unique=True)

pnl_book_states = sa.Table(
    "pnl_book_states",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("pool", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("state_method", sa.Text, nullable=False, comment="the method in force at the end of the day"),
    sa.Column("state_pool", sa.Text, nullable=False),
    sa.Column("schedule", sa.Text, nullable=False, comment="the book's periods in force up to the day"),
    sa.Column("inputs_digest", sa.Text, nullable=False, comment="legs and prices up to the day: a change invalidates the state"),
    sa.Column("pool_basis", JSONB, nullable=False, comment="average pools: {'account:asset': basis}"),
    sa.Column("holdings", JSONB, nullable=False, comment="{'account:asset': quantity} from the legs"),
    sa.Column("next_seq", sa.BigInteger, nullable=False, server_default="0",
              comment="the book's lot counter at the end of the day (a restart numbers lots as the full run does)"),
    sa.Column("run_id", sa.Text),
    sa.PrimaryKeyConstraint("entity_id", "method", "pool", "date"),
)

# ---------------------------------------------------------------- reconciliation and the close

break_actions = sa.Table(
    "break_actions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("action", sa.Text, nullable=False, comment="acknowledge | adjust"),
    sa.Column("actor", sa.Text, nullable=False, comment="who"),
    sa.Column("reason", sa.Text, nullable=False, comment="why"),
    sa.Column("quantity", Exact, comment="the adjustment leg's signed quantity (adjust)"),
    sa.Column("difference", Exact, nullable=False, comment="the break's difference when the action was taken"),
    sa.Column("raw_record_id", sa.BigInteger, sa.ForeignKey("raw_records.id"),
              comment="the staged manual record of the adjustment leg (adjust)"),
    sa.Column("created_at", TS, nullable=False, server_default=_now(), comment="when"),
)
sa.Index("ix_break_actions_key", break_actions.c.entity_id, break_actions.c.date, break_actions.c.account_id,
         break_actions.c.asset_id)

source_outages = sa.Table(
    "source_outages",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False, comment="'*' when the whole source was down"),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("entity_id", "source", "stream", "date"),
)

source_tolerances = sa.Table(
    "source_tolerances",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("tolerance", Exact, nullable=False, comment="absolute, in asset units; exchanges only (default 1e-8)"),
)

expected_streams = sa.Table(
    "expected_streams",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("since", sa.Date, nullable=False, comment="first day the stream must have run"),
    sa.PrimaryKeyConstraint("entity_id", "source", "stream"),
)

expectation_results = sa.Table(
    "expectation_results",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("suite", sa.Text, nullable=False),
    sa.Column("expectation", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False, comment="error | warn"),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("observed_value", JSONB),
    sa.Column("failing_rows", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("run_id", sa.Text),
    sa.Column("checked_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("entity_id", "date", "suite", "expectation", name="uq_expectation_results_day"),
)

close_provenance = sa.Table(
    "close_provenance",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("code_version", sa.Text, nullable=False),
    sa.Column("input_counts", JSONB, nullable=False),
    sa.Column("source_cursors", JSONB, nullable=False),
    sa.Column("outputs", JSONB, nullable=False, comment="the close's figures that the hash covers"),
    sa.Column("output_hash", sa.Text, nullable=False, comment="sha256 of the canonical JSON of outputs"),
    sa.Column("digests", JSONB, comment="sha256 per part of the day's inputs and derived rows (migration 0026); "
                                        "null: closed before digests existed"),
    sa.Column("report_html", sa.Text, nullable=False, comment="the close report as it was when closed"),
    sa.Column("computed_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("entity_id", "date"),
)

# ---------------------------------------------------------------- reconciliation at scale, per-day blocking (0010)

completeness_differences = sa.Table(
    "completeness_differences",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("previous_reported", Exact, nullable=False),
    sa.Column("previous_reported_at", TS),
    sa.Column("legs_sum", Exact, nullable=False),
    sa.Column("reported", Exact, nullable=False),
    sa.Column("reported_at", TS, nullable=False),
    sa.Column("difference", Exact, nullable=False, comment="reported - (previous_reported + legs_sum), never 0"),
    sa.Column("tolerance", Exact, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.PrimaryKeyConstraint("entity_id", "date", "account_id", "asset_id"),
    comment="every non-zero difference of the completeness rule (within tolerance or not); GX validates these",
)
transfers.append_column(sa.Column("matched_by", sa.Text,
                                  comment="tx_hash | amount_time (same asset, amount less the fee, time window)"))
breaks.append_column(sa.Column("severity", sa.Text, nullable=False, server_default="warn",
                               comment="error (blocks PnL and the close from this day on) | warn"))

recon_policies = sa.Table(
    "recon_policies",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), primary_key=True),
    sa.Column("block_above_usd", Exact, comment="an open break worth more than this is at ERROR severity; NULL: warn only"),
    sa.Column("transfer_window_seconds", sa.Integer, nullable=False, server_default="7200"),
    sa.Column("transfer_fee_tolerance", Exact, nullable=False, server_default="0.01"),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
)
sa.Index("ix_transactions_entity_kind_asset_ts", transactions.c.entity_id, transactions.c.kind, transactions.c.asset_id,
         transactions.c.ts, postgresql_where=sa.text("kind IN ('transfer_in', 'transfer_out')"))

# ---------------------------------------------------------------- chain reorgs (migration 0014)

chain_reorgs = sa.Table(
    "chain_reorgs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("chain", sa.Text, nullable=False),
    sa.Column("fork_block", sa.BigInteger, nullable=False, comment="the lowest block whose hash changed"),
    sa.Column("orphaned", sa.Integer, nullable=False, comment="raw records marked orphaned"),
    sa.Column("first_day", sa.Date, nullable=False, comment="the first close day the reorg touched"),
    sa.Column("last_day", sa.Date, nullable=False, comment="the last close day the re-ingested branch touched"),
    sa.Column("detected_at", TS, nullable=False, server_default=_now()),
    sa.Column("reclosed_at", TS, comment="when the touched days were re-closed (or a run requested)"),
    sa.Column("reclose_run", sa.Text, comment="the Dagster run (or run key) that re-closed them"),
    comment="reorgs found by the wallet sync; the days they touched are re-closed automatically",
)
sa.Index("ix_chain_reorgs_pending", chain_reorgs.c.entity_id, postgresql_where=chain_reorgs.c.reclosed_at.is_(None))

# ---------------------------------------------------------------- stable breaks with a history (migration 0020)

BREAK_STATUSES = ("open", "acknowledged", "adjusted", "resolved")
BREAK_RESOLUTIONS = ("adjustment", "corrected_record", "late_data", "recomputed")
BREAK_EVENTS = ("opened", "changed", "reopened", "acknowledged", "adjusted", "resolved")

breaks.append_column(sa.Column("seen_at", TS, nullable=False, server_default=_now(),
                               comment="when a close last found this break"))
breaks.append_column(sa.Column("resolved_at", TS))
breaks.append_column(sa.Column("resolution", sa.Text,
                               comment="why it went away: adjustment | corrected_record | late_data | recomputed"))
breaks.append_column(sa.Column("resolution_detail", sa.Text, comment="the record, action or figure behind the resolution"))
breaks.append_constraint(sa.CheckConstraint("status IN ('open', 'acknowledged', 'adjusted', 'resolved')", name="status"))
breaks.append_constraint(sa.CheckConstraint(
    "resolution IS NULL OR resolution IN ('adjustment', 'corrected_record', 'late_data', 'recomputed')",
    name="resolution"))

break_events = sa.Table(
    "break_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("break_id", sa.BigInteger, sa.ForeignKey("breaks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("date", sa.Date, nullable=False, comment="the break's day"),
    sa.Column("event", sa.Text, nullable=False, comment="opened | changed | reopened | acknowledged | adjusted | resolved"),
    sa.Column("previous_status", sa.Text),
    sa.Column("status", sa.Text, nullable=False, comment="the break's status after the event"),
    sa.Column("previous_difference", Exact),
    sa.Column("difference", Exact, comment="null once resolved: no difference left"),
    sa.Column("actor", sa.Text, nullable=False, comment="who: a person, or 'close' for a close run"),
    sa.Column("reason", sa.Text, nullable=False, comment="what and why"),
    sa.Column("run_id", sa.Text),
    sa.Column("created_at", TS, nullable=False, server_default=_now(), comment="when"),
    sa.CheckConstraint("event IN ('opened', 'changed', 'reopened', 'acknowledged', 'adjusted', 'resolved')", name="event"),
    comment="the history of every break: who, what, when, the difference before and after",
)
sa.Index("ix_break_events_break_id", break_events.c.break_id, break_events.c.id)
sa.Index("ix_break_events_entity_date", break_events.c.entity_id, break_events.c.date)

# ---------------------------------------------------------------- period close (migration 0021)

period_locks = sa.Table(
    "period_locks",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("period", sa.Text, nullable=False, comment="2026-01 | through 2026-01-31 | 2026-01-05 (one day)"),
    sa.Column("first_day", sa.Date, nullable=False),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("locked_by", sa.Text, nullable=False),
    sa.Column("lock_reason", sa.Text, nullable=False),
    sa.Column("locked_at", TS, nullable=False, server_default=_now()),
    sa.Column("unlocked_by", sa.Text),
    sa.Column("unlock_reason", sa.Text),
    sa.Column("unlocked_at", TS, comment="null: the period is locked"),
    sa.CheckConstraint("first_day <= last_day", name="days"),
    sa.CheckConstraint("(unlocked_at IS NULL) = (unlocked_by IS NULL) AND (unlocked_at IS NULL) = (unlock_reason IS NULL)",
                       name="unlock"),
    comment="one row per lock of a period; active (not unlocked) periods of an entity never overlap",
)
sa.Index("ix_period_locks_entity_id", period_locks.c.entity_id, period_locks.c.first_day)

period_signoffs = sa.Table(
    "period_signoffs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("period_lock_id", sa.BigInteger, sa.ForeignKey("period_locks.id"), nullable=False),
    sa.Column("role", sa.Text, sa.CheckConstraint("role IN ('preparer', 'reviewer')", name="role"), nullable=False),
    sa.Column("signed_by", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("signed_at", TS, nullable=False, server_default=_now()),
    sa.Column("voided_at", TS, comment="set when the period is unlocked"),
    sa.Column("void_reason", sa.Text),
    sa.CheckConstraint("(voided_at IS NULL) = (void_reason IS NULL)", name="void"),
)
sa.Index("uq_period_signoffs_valid", period_signoffs.c.period_lock_id, period_signoffs.c.role, unique=True,
         postgresql_where=period_signoffs.c.voided_at.is_(None))

close_audit_log = sa.Table(
    "close_audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("at", TS, nullable=False, server_default=sa.text("clock_timestamp()")),
    sa.Column("action", sa.Text, sa.CheckConstraint("action IN ('lock', 'unlock', 'signoff', 'void')", name="action"),
              nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("period_lock_id", sa.BigInteger, sa.ForeignKey("period_locks.id")),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("first_day", sa.Date, nullable=False),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    comment="every lock, unlock, sign-off and void of the period close; append-only (the database refuses changes)",
)
sa.Index("ix_close_audit_log_entity_id", close_audit_log.c.entity_id, close_audit_log.c.id)

# ---------------------------------------------------------------- manual classifications (migration 0022)

leg_classifications = sa.Table(
    "leg_classifications",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("source_raw_id", sa.Text, nullable=False),
    sa.Column("leg_index", sa.SmallInteger, nullable=False),
    sa.Column("kind", sa.Text, nullable=False, comment="a kind of the vocabulary (transforms/events.py)"),
    sa.Column("mapped_kind", sa.Text, nullable=False, comment="what the mapper had said"),
    sa.Column("classified_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("classified_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("entity_id", "source", "stream", "source_raw_id", "leg_index"),
    sa.CheckConstraint("kind <> 'unclassified'", name="kind"),
    comment="a person's classification of a staged record's leg, applied by the canonical build",
)

# ---------------------------------------------------------------- quarantined records (migration 0024)
quarantined_records = sa.Table(
    "quarantined_records",
    metadata,
    sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("source_raw_id", sa.Text, nullable=False),
    sa.Column("raw_record_id", sa.BigInteger, sa.ForeignKey("raw_records.id"), nullable=False,
              comment="the staged version the mapper could not read"),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("close_date", sa.Date, nullable=False, comment="the day the record would be booked on"),
    sa.Column("field", sa.Text, comment="the field the error names, when it names one"),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("quarantined_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("entity_id", "source", "stream", "source_raw_id"),
    comment="staged records a mapper could not read: their day's close is partial until a fix or a new version",
)
sa.Index("ix_quarantined_records_entity_id_close_date", quarantined_records.c.entity_id, quarantined_records.c.close_date)

# ---------------------------------------------------------------- circuit breakers per source (issue 15, item 5)
# Open after N consecutive failed syncs (their days become outages: the close is partial), half-open probe after a
# cool-down, closed on success: ingestion/breakers.py, the policy in ingestion/retry.py.
source_breakers = sa.Table(
    "source_breakers",
    metadata,
    sa.Column("source_id", sa.BigInteger, sa.ForeignKey("source_credentials.id", ondelete="CASCADE"), nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default="closed", comment="closed | open | half_open"),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("opened_at", TS, comment="when it last opened"),
    sa.Column("probe_started_at", TS, comment="half_open: when the probing sync started"),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("source_id"),
    sa.CheckConstraint("state IN ('closed', 'open', 'half_open')", name="state"),
    sa.CheckConstraint("consecutive_failures >= 0", name="failures"),
    comment="circuit breaker per configured source: open after repeated failed syncs, half-open probe after a cool-down",
)
