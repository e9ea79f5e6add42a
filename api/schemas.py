"""Response models. Money and quantities are ``str`` (exact decimal text), never numbers.

Every route's ``response_model`` is ``Envelope[...]`` of one of these, so the OpenAPI document
shows the real shape, and a float slipping into a money field fails validation instead of being served.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

T = TypeVar("T")

class Numeric:
    """Marks a text field that holds a number: an XLSX export writes it as a number cell (api/exports.py)."""

    def __init__(self, number_format: str) -> None:
        self.number_format = number_format


MONEY_FORMAT = "#,##0.00##################"
Money = Annotated[str, Field(description="exact decimal as text, e.g. \"1234.5\"", examples=["0.3"]), Numeric(MONEY_FORMAT)]
Quantity = Annotated[str, Field(description="exact signed decimal as text", examples=["-0.25"]), Numeric("General")]
Cents = Annotated[str, Field(description="an amount in cents as decimal text with two decimals, e.g. \"1234.50\"",
                             examples=["1234.50"]), Numeric("#,##0.00")]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATE_MIN, DATE_MAX = dt.date(2000, 1, 1), dt.date(2099, 12, 31)
"""The dates a query may name: a window wide enough for any book (Bitcoin began in 2009) and far enough from
``date.min``/``date.max`` that no day before or after it, and no time zone, can overflow."""
DATE_PATTERN = "^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
"""The window as the OpenAPI document states it (with ``format: date``): YYYY-MM-DD in 2000-2099."""


def _iso_date_only(value: Any) -> Any:
    if isinstance(value, str) and not _ISO_DATE.match(value.strip()):
        raise ValueError("use a calendar date YYYY-MM-DD")
    return value.strip() if isinstance(value, str) else value


def _in_window(value: dt.date) -> dt.date:
    if not DATE_MIN <= value <= DATE_MAX:
        raise ValueError(f"use a date from {DATE_MIN} to {DATE_MAX}")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_only), AfterValidator(_in_window),
                    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN})]
"""A query date: exactly YYYY-MM-DD, from ``DATE_MIN`` to ``DATE_MAX``."""


class Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# ---------------------------------------------------------------- envelope


class Meta(Model):
    model_config = ConfigDict(extra="allow")

    timestamp: dt.datetime = Field(description="when the response was made, ISO 8601 UTC")
    request_id: str = Field(description="also in the X-Request-ID response header; quote it to support")


class ListMeta(Meta):
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page "
                                                      "and on lists that are not paginated")
    limit: int | None = Field(None, description="page size used; null on lists that are not paginated")
    count: int = Field(description="items in this response")


class Envelope(Model, Generic[T]):
    success: Literal[True] = True
    data: T
    meta: Meta


class ListEnvelope(Model, Generic[T]):
    success: Literal[True] = True
    data: list[T]
    meta: ListMeta


class ErrorDetail(Model):
    field: str | None = Field(None, description="the offending parameter, e.g. `limit` or `from`")
    location: str | None = Field(None, description="query | path | header | method")
    message: str
    type: str | None = None


class ErrorBody(Model):
    code: Literal["VALIDATION_ERROR", "AUTHENTICATION_ERROR", "AUTHORIZATION_ERROR", "NOT_FOUND", "CONFLICT",
                  "RATE_LIMIT_ERROR", "INTERNAL_ERROR"]
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorMeta(Model):
    timestamp: dt.datetime
    request_id: str


class ErrorEnvelope(Model):
    success: Literal[False] = False
    error: ErrorBody
    meta: ErrorMeta


# ---------------------------------------------------------------- resources


class Health(Model):
    status: Literal["ok"]
    database: Literal["ok"]


class EntityOut(Model):
    id: int
    name: str
    timezone: str = Field(description="IANA timezone of the entity's close days")
    reporting_currency: str = Field(description="currency positions are valued in (USD unless set)")
    holding_rule: str = Field(description="holding period of its books: us (long-term when disposed after the "
                                          "anniversary of the acquisition day, the default) | elapsed (> 365 days)")


class ApiKeyOut(Model):
    prefix: str = Field(description="identifies the key (`cf_<prefix>_...`); not secret")
    scope: Literal["read", "admin"]
    label: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    entities: list[str] = Field(description="the entities it reads, among those the caller may see")
    entity_ids: list[int]


class AccountOut(Model):
    id: int
    name: str
    source: str
    account_type: str = Field(description="spot, margin, futures, funding, wallet, vault, ...")
    sub_account: str = Field(description="'' when the source has no sub-accounts")
    chain: str | None
    address: str | None
    label: str | None
    created_at: dt.datetime
    last_sync_at: dt.datetime | None = Field(description="latest staging of a record or balance snapshot of "
                                                         "this account; null if never synced")
    last_balance_at: dt.datetime | None = Field(description="time of its latest balance observation")
    freshness: Literal["fresh", "stale", "never"] = Field(
        description="stale when last_sync_at is older than COINFRS_API_FRESHNESS_HOURS (default 36 h)")
    sync_age_seconds: int | None


class AssetAliasOut(Model):
    source: str = Field(description="exchange, chain or price provider the alias belongs to")
    alias: str = Field(description="the source's own name: symbol, contract address, provider id")


class AssetOut(Model):
    id: int
    symbol: str
    name: str | None
    decimals: int
    is_fiat: bool
    unverified: bool = Field(description="seen in a source but missing from the registry: kept and flagged")
    aliases: list[AssetAliasOut]
    created_at: dt.datetime


class PositionOut(Model):
    date: dt.date
    account: str
    account_id: int
    account_type: str
    sub_account: str
    asset: str
    asset_id: int
    computed: Quantity = Field(description="balance computed from the legs up to the day's cutoff")
    reported: Quantity | None = Field(description="balance reported by the source (latest snapshot at or before "
                                                  "the cutoff); null if none")
    reported_at: dt.datetime | None
    difference: Quantity | None = Field(description="reported − computed; null without a report")
    close_price_usd: Money | None
    price_at: dt.datetime | None
    value_usd: Money | None = Field(description="computed × close_price_usd; null without a price")
    reporting_currency: str = Field(description="currency of `price` and `value`")
    price: Money | None = Field(description="close price in the reporting currency")
    value: Money | None = Field(description="computed × price in the reporting currency (18 fractional digits "
                                            "at most when converted); null without price or FX rate")
    valuation: Literal["valued", "no_price", "no_fx_rate"]
    price_source: str | None = Field(description="provenance of the USD close price, e.g. `ledger` (a trade "
                                                 "price in the entity's own ledger) or a price provider")
    price_resolution: str | None = Field(description="trade | minute | hour | day")
    fx_rate_usd: Money | None = Field(description="USD per one unit of the reporting currency (1 for USD)")
    fx_at: dt.datetime | None
    fx_source: str | None


class LegOut(Model):
    id: int
    ts: dt.datetime
    date: dt.date = Field(description="the entity's close day the leg belongs to")
    account: str
    account_id: int
    account_type: str
    sub_account: str
    asset: str
    asset_id: int
    quantity: Quantity = Field(description="signed: + into the account, − out")
    kind: str
    group_id: str = Field(description="ties the legs of one event (trade = 2 legs + fee)")
    leg_index: int
    unit_price_usd: Money | None
    usd_value: Money | None
    tx_hash: str | None
    counterparty_account: str | None
    counterparty_account_id: int | None
    raw_record_id: int
    is_adjustment: bool
    transfer_status: Literal["matched", "unmatched_out", "unmatched_in", "none"] = Field(
        description="for transfer legs, whether the other side was found in an owned account")
    transfer_id: int | None
    counterpart_leg_id: int | None = Field(description="the other leg of a matched transfer")
    event_type: str | None = Field(None, description="the event the leg belongs to (docs/cost-basis.md, 'Events'): "
                                   "trade, income, internal_move, loan_draw, unclassified, ...", examples=["trade"])
    valued_by: str | None = Field(None, description="a trade's valuation rule (fiat | stablecoin | received_price | "
                                  "given_price | none), set by the cost-basis step", examples=["fiat"])
    event_value_usd: Money | None = Field(None, description="a trade's one value: the given side's proceeds = the "
                                          "received side's cost")


class RawRecordOut(Model):
    id: int
    source: str
    account: str
    stream: str
    source_raw_id: str
    payload: Any = Field(description="the source's record as stored (fractional numbers as exact text)")
    payload_hash: str
    occurred_at: dt.datetime | None
    file_name: str | None
    line_number: int | None
    file_hash: str | None
    ingestion_run_id: str | None
    ingested_at: dt.datetime
    processing_status: str


class TransactionDetailOut(LegOut):
    group_legs: list[LegOut] = Field(description="the other legs of the same event")
    raw_record: RawRecordOut | None = Field(description="the staging record the leg came from")


BreakStatus = Literal["open", "acknowledged", "adjusted", "resolved"]
BreakResolution = Literal["adjustment", "corrected_record", "late_data", "recomputed"]


class BreakEventOut(Model):
    event: Literal["opened", "changed", "reopened", "acknowledged", "adjusted", "resolved"]
    at: dt.datetime = Field(description="when")
    by: str = Field(description="who: a person, or close (a close run)")
    reason: str = Field(description="what and why")
    previous_status: BreakStatus | None
    status: BreakStatus
    previous_difference: Quantity | None
    difference: Quantity | None = Field(description="null once resolved")
    run_id: str | None


class BreakOut(Model):
    id: int
    date: dt.date
    account: str
    account_id: int
    account_type: str
    sub_account: str
    asset: str
    asset_id: int
    expected: Quantity = Field(description="previous_reported + legs_sum")
    reported: Quantity
    difference: Quantity = Field(description="reported − expected")
    previous_reported: Quantity
    previous_reported_at: dt.datetime | None
    legs_sum: Quantity
    tolerance: Quantity
    reported_at: dt.datetime
    status: BreakStatus = Field(description="open (counted by the close, blocks the lock) | acknowledged (accepted "
                                            "with a reason) | adjusted (an adjustment leg staged, booked by the next "
                                            "close of the day) | resolved (a re-close no longer finds it)")
    severity: str = Field(description="error: blocks PnL and the close from this day on (coinfrs recon policy "
                                      "--block-above-usd); warn: reported only", examples=["warn"])
    leg_ids: list[int] = Field(description="the legs of the window (see GET /transactions/{id})")
    seen_at: dt.datetime = Field(description="when a close last found this break")
    resolved_at: dt.datetime | None = Field(description="when a re-close no longer found it (resolved)")
    resolution: BreakResolution | None = Field(
        description="why it went away: adjustment (an adjustment leg entered for it) | corrected_record (a source "
                    "restated a record or balance of the window) | late_data (a record of the window arrived since) "
                    "| recomputed (none of those: the day computed again ties)")
    resolution_detail: str | None = Field(description="the record, action or figure behind the resolution")
    history: list[BreakEventOut] = Field(description="every change of the break, oldest first")


class RealizedPnlOut(Model):
    entity: str
    date_from: dt.date = Field(alias="from")
    date_to: dt.date = Field(alias="to")
    method: str
    pool: str
    proceeds: Money
    cost_basis: Money
    realized_gain: Money
    short_term_gain: Money
    long_term_gain: Money
    disposals: int = Field(description="disposals in the period, sales and fee disposals")
    fee_disposals: int
    shortfall_quantity_disposals: int = Field(description="disposals beyond the pool's lots (zero basis, flagged)")


class SourceDownOut(Model):
    source: str = Field(examples=["binance"])
    stream: str = Field(description="'*' when the whole source was down", examples=["trades"])
    reason: str = Field(examples=["HTTP 503 after 5 retries"])


class CloseOut(Model):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "date": "2024-03-01", "status": "partial", "locked": False, "locked_at": None, "legs": 412,
        "positions": 37, "breaks": 0, "unmatched_transfers": 1, "realized_gain_universal": "1520.25",
        "realized_gain_account": "1498.1", "unrealized_gain_universal": "-310.5", "book": "hifo:account",
        "realized_gain_book": "1610.75", "shortfalls": 0, "missing_prices": 0,
        "sources_down": [{"source": "binance", "stream": "trades", "reason": "HTTP 503 after 5 retries"}],
        "message": "source down: binance/trades (HTTP 503 after 5 retries)", "run_id": "8f0c2d1e",
        "closed_at": "2024-03-02T01:00:12Z"}]})

    date: dt.date
    status: Literal["closed", "breaks", "unpriced", "blocked", "partial", "failed"] = Field(
        description="closed: reconciled and every figure priced; breaks: open breaks remain; unpriced: a figure "
                    "needs a price that is missing (`missing_prices`, listed by /prices/missing); blocked: no PnL "
                    "booked (an earlier break at ERROR severity); partial: a source was down that day "
                    "(`sources_down`); failed: a step failed (`message`)")
    locked: bool = Field(description="a locked day is never rewritten (only a closed day can be locked)")
    locked_at: dt.datetime | None
    legs: int
    positions: int
    breaks: int = Field(description="open breaks")
    unmatched_transfers: int
    realized_gain_universal: Money | None = Field(description="FIFO, universal pool, USD; null: not booked (a blocked "
                                                          "or failed day)")
    realized_gain_account: Money | None = Field(description="FIFO, per-account pools, USD; null: not booked")
    unrealized_gain_universal: Money | None = Field(description="FIFO, universal pool, USD; null without prices")
    book: str | None = Field(description="the entity's configured book in force that day, `method:pool`")
    realized_gain_book: Money | None = Field(description="realized by the configured book, USD")
    shortfalls: int | None = Field(description="disposals of the configured book beyond its lots that day "
                                               "(zero basis, flagged)")
    missing_prices: int | None = Field(None, description="missing-price items of the configured book that day (why "
                                                         "it is unpriced); null: not booked")
    sources_down: list[SourceDownOut] = Field(description="sources recorded as down that day (why it is partial)")
    message: str | None
    run_id: str | None
    closed_at: dt.datetime


class JournalLineOut(Model):
    line: int = Field(description="line number within the entry")
    account: str = Field(description="the general-ledger account number (the entity's mapping of the role)")
    account_name: str
    role: str = Field(description="the journal role: inventory (digital assets), cash, clearing, realized_gain, "
                                  "fee_expense, income, staking_income, ..., rounding")
    asset: str | None = Field(description="the asset of a digital-asset or cash line")
    ledger_account: str | None = Field(description="the ledger account of a per-account or cash line")
    debit: Cents
    credit: Cents


class JournalEntryOut(Model):
    entry_id: str = Field(description="stable: date:event:book")
    date: dt.date
    event: str = Field(description="the event type: trade, fee, income, staking, airdrop, interest, derivatives, "
                                   "loan, transfer, external, adjustment, unclassified, opening_balance, restatement")
    book: str = Field(description="the cost-basis book the entry is written from (configured, fifo:universal, "
                                  "fifo:account)")
    currency: str = Field(description="the entity's reporting currency")
    lines: list[JournalLineOut] = Field(description="debits equal credits, in cents; a `rounding` line takes what "
                                                    "rounding each line to cents left over")
    total_debit: Cents
    total_credit: Cents = Field(description="always equal to total_debit")
    unvalued_cash_legs: int = Field(description="fiat legs without a value in the reporting currency, not booked")


class JournalLineRow(Model):
    """One exported journal line (CSV/XLSX)."""

    entry_id: str
    date: dt.date
    event: str
    book: str
    currency: str
    line: int
    account: str
    account_name: str
    role: str
    asset: str | None
    ledger_account: str | None
    debit: Cents
    credit: Cents


class TrialBalanceRowOut(Model):
    account: str = Field(description="general-ledger account number")
    account_name: str
    currency: str
    opening: Cents = Field(description="balance before the period, debit positive")
    debits: Cents
    credits: Cents
    closing: Cents = Field(description="opening + debits - credits")


class AssetRollforwardRowOut(Model):
    """One asset (and ledger account in a per-account book) over a period: opening + in - out - fees = closing."""

    asset: str | None
    account: str | None = Field(description="the ledger account (per-account books); null for a universal pool")
    currency: str
    date_from: dt.date = Field(alias="from")
    to: dt.date
    opening_quantity: Quantity
    opening_cost: Money
    opening_fair_value: Money | None = Field(description="at the close price of the day before `from`; null: unpriced")
    in_quantity: Quantity = Field(description="acquired, and moved or transferred in")
    in_cost: Money
    out_quantity: Quantity = Field(description="sold or otherwise disposed of, and moved or transferred out")
    out_cost: Money
    out_proceeds: Money = Field(description="what the disposals (not fees) realized")
    fees_quantity: Quantity = Field(description="paid as fees")
    fees_cost: Money
    fees_value: Money
    closing_quantity: Quantity
    closing_cost: Money
    closing_fair_value: Money | None = Field(description="at the close price of `to`; null: unpriced")
    fair_value_change: Money | None = Field(description="closing - opening fair value - in + out proceeds + fees "
                                                        "value: the period's holding gains")


class TieoutRowOut(Model):
    asset: str | None
    account: str | None = Field(description="the ledger account (per-account books); null for a universal pool")
    currency: str
    gl: Cents = Field(description="GL digital-asset balance at the close")
    subledger: Cents = Field(description="cost basis of the open lots, half-even to the cent")
    difference: Cents = Field(description="gl - subledger; anything but 0.00 fails the close")
    ties: bool
    entries: list[JournalEntryOut] | None = Field(None, description="a row that does not tie: the day's entries "
                                                                    "that touch it")
    lots: list[dict[str, Any]] | None = Field(None, description="a row that does not tie: its open lots")
