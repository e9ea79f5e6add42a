"""Response models of the cost-basis routes (``/api/v1/pnl/...``). Money and quantities are exact text."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from api.schemas import Model, Money, Quantity, RealizedPnlOut

CURRENCY_DESCRIPTION = "reporting currency of every amount: USD, EUR or GBP"


class FxRateOut(Model):
    ts: dt.datetime = Field(description="the instant the rate holds at")
    rate_usd: Money = Field(description="USD per one unit of the reporting currency")
    source: str = Field(description="manual | coingecko | exchange:<id> | ledger")
    pair: str | None
    resolution: str | None
    fetched_at: dt.datetime | None
    note: str | None = Field(description="how the rate was derived, or a manual row's note")


class FxProvenanceOut(Model):
    currency: str
    pair: str = Field(description="e.g. EUR/USD")
    meaning: str
    rates_used: int
    sources: list[str]
    rates: list[FxRateOut] = Field(description="every rate the figures were translated at, in time order")


class BookTotalOut(Model):
    book: str = Field(description="method:pool, or `configured` (the entity's book)")
    schedule: str = Field(description="the periods of the book, e.g. `fifo:universal -> hifo:account from 2025-01-01`")
    realized_gain: Money
    difference: Money = Field(description="realized_gain − the base (first) book's")
    disposals: int
    shortfalls: int = Field(description="quantities that left a pool without an acquisition (zero basis, flagged)")


class DisposalCompareOut(Model):
    leg_id: int = Field(description="the disposing leg (transactions.id)")
    date: dt.date
    ts: dt.datetime
    account: str | None
    account_id: int
    asset: str | None
    asset_id: int
    kind: str = Field(description="sale | fee")
    quantity: Quantity
    proceeds: Money
    realized_gain: dict[str, Money] = Field(description="per book")
    difference: dict[str, Money] = Field(description="per book other than the base: gain − the base book's gain")


class CompareOut(Model):
    entity: str
    from_: dt.date = Field(alias="from")
    to: dt.date
    base: str
    books: list[BookTotalOut]
    disposals: list[DisposalCompareOut]
    currency: str = Field(description=CURRENCY_DESCRIPTION)
    fx: FxProvenanceOut | None = Field(description="the FX rates used (null for USD)")


class MatchedLotOut(Model):
    lot_leg_id: int = Field(description="the acquisition leg of the lot")
    acquired_at: dt.datetime
    quantity: Quantity = Field(description="taken from the lot by this disposal")
    cost_basis: Money = Field(description="the basis of the quantity taken")
    term: str = Field(description="short | long (held more than 365 days)")


class DisposalOut(Model):
    leg_id: int = Field(description="the disposing leg (transactions.id)")
    date: dt.date
    ts: dt.datetime
    account_id: int
    account: str | None
    asset_id: int
    asset: str | None
    kind: str = Field(description="sale | fee")
    quantity: Quantity
    proceeds: Money
    cost_basis: Money
    realized_gain: Money
    short_term_gain: Money
    long_term_gain: Money
    shortfall_quantity: Quantity = Field(description="disposed beyond the pool's lots: zero basis, flagged")
    lots: list[MatchedLotOut] = Field(description="the lots consumed, oldest acquisition first")
    currency: str = Field(description=CURRENCY_DESCRIPTION)


class RealizedPnlCurrencyOut(RealizedPnlOut):
    currency: str = Field(description=CURRENCY_DESCRIPTION)
    fx: FxProvenanceOut | None = Field(description="the FX rates used (null for USD)")


class OpenLotOut(Model):
    date: dt.date = Field(description="the close the lot is open at")
    pool_account_id: int = Field(description="0 for the universal pool")
    account: str | None = Field(description="the account holding (per-account pools) or that acquired the lot")
    account_id: int
    asset: str
    asset_id: int
    lot_leg_id: int = Field(description="the acquisition leg")
    acquired_at: dt.datetime
    quantity: Quantity
    cost_basis: Money
    flagged: bool = Field(description="zero basis: no price or no acquisition behind it")


class RollForwardOut(Model):
    pool_account_id: int = Field(description="0 for the universal pool")
    account: str | None
    asset: str
    asset_id: int
    opening_quantity: Quantity
    opening_basis: Money
    acquired_quantity: Quantity
    acquired_basis: Money
    disposed_quantity: Quantity
    disposed_basis: Money
    transferred_in_quantity: Quantity
    transferred_in_basis: Money
    transferred_out_quantity: Quantity
    transferred_out_basis: Money
    closing_quantity: Quantity
    closing_basis: Money
    shortfall_quantity: Quantity = Field(description="disposed or moved beyond the pool's lots (not in the identity)")


class ShortfallOut(Model):
    date: dt.date
    leg_id: int
    account: str
    asset: str
    kind: str
    quantity: Quantity
    shortfall_quantity: Quantity
    proceeds: Money


class MissingPriceOut(Model):
    date: dt.date = Field(description="the close day of the figure")
    what: str = Field(description="acquisition | disposal | fee | position")
    asset: str
    asset_id: int
    account: str | None = Field(description="the leg's account; null for a position of the universal pool")
    account_id: int | None
    pool_account_id: int = Field(description="the pool (0: the universal pool)")
    leg_id: int | None = Field(description="the leg that needs the price; null for an open position")
    at: str = Field(description="the instant the price is needed at (ISO 8601, UTC); a position: the day's cutoff")
    quantity: Quantity
    effect: str = Field(description="the figure valued without it")


class RealizedBreakdownOut(Model):
    asset: str | None = None
    account: str | None = None
    year: str | None = Field(None, description="YYYY")
    quarter: str | None = Field(None, description="YYYY-Qn")
    month: str | None = Field(None, description="YYYY-MM")
    day: dt.date | None = None
    term: str | None = Field(None, description="short | long (the entity's holding rule: by default disposed after "
                                                "the anniversary of the acquisition day)")
    realized_gain: Money
    proceeds: Money | None = Field(None, description="not split by term")
    cost_basis: Money | None = None
    disposals: int | None = None
    currency: str = Field(description=CURRENCY_DESCRIPTION)


class UnrealizedOut(Model):
    pool_account_id: int = Field(description="0 for the universal pool")
    account: str | None = Field(description="the pool's account (per-account pools)")
    asset: str
    asset_id: int
    quantity: Quantity
    cost_basis: Money
    close_price: Money | None = Field(description="at the day's cutoff; null when no price is known")
    market_value: Money | None
    unrealized_gain: Money | None = Field(description="market value − cost basis")
    currency: str = Field(description=CURRENCY_DESCRIPTION)
    priced: bool = Field(description="false: no price at the close, so no market value or unrealized gain (a "
                                     "missing price, listed by /prices/missing)")


class ExcludedAssetOut(Model):
    asset_id: int
    asset: str
    name: str | None
    aliases: str | None = Field(description="source:alias, e.g. the chain and contract address")
    legs: int
    accounts: int
    first_date: dt.date
    last_date: dt.date
    net_quantity: Quantity = Field(description="sum of the entity's legs of the asset")
    reason: str
