"""The general ledger of an entity: journal entries from its cost-basis book, trial balance and tie-out.

The entries are written from the book (``transforms/journal_book.py``): the stored book's own figures
(``pnl_daily`` movements and closing basis, ``pnl_disposals``) for a USD entity; for an entity reporting in
EUR or GBP, the same engine run on legs translated into that currency (transforms/fx.py), since the stored
books are in USD. The GL's digital-asset balance per asset (and account, for per-account books) equals the
open lots' basis to the cent at every close: ``enforce_tieout`` checks it when a day is closed and marks a
day that does not tie ``failed``. docs/journal.md has the treatment table, the rounding rule and a worked
example.

The general-ledger account of each role is configurable per entity, and per asset and account type within
it (``journal_accounts``; ``coinfrs journal set-account``); the defaults are ``DEFAULT_ACCOUNTS``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from transforms.cost_basis import Disposal, PoolDay, compute_book
from transforms.fair_value import load_fair_values
from transforms.journal_book import (
    FAIR_VALUE_POLICIES,
    INVENTORY,
    BookView,
    FairValueInputs,
    Entry,
    Journal,
    TieoutRow,
    build_journal,
    cents,
    fair_value_required,
    gl_balance_at,
    pool_in_force,
    tieout,
    view_of_book,
)
from transforms.pnl import CONFIGURED, book_schedule, load_pnl_legs
from warehouse.calendar import cutoff_of
from warehouse.entities import Entity
from warehouse.numbers import ZERO, exact_context
from warehouse.reports import ReportParameterError
from warehouse.schema import journal_accounts, journal_settings

DEFAULT_ACCOUNTS: dict[str, tuple[str, str]] = {
    "inventory": ("1400", "Digital assets"),
    "cash": ("1010", "Cash"),
    "clearing": ("1190", "Digital asset clearing"),
    "external_transfers": ("1195", "Digital asset transfers (external)"),
    "suspense": ("1999", "Suspense"),
    "loan_liability": ("2100", "Digital asset loans payable"),
    "opening_equity": ("3900", "Opening balance equity"),
    "income": ("4100", "Digital asset income"),
    "staking_income": ("4110", "Staking income"),
    "airdrop_income": ("4120", "Airdrop income"),
    "interest_income": ("4130", "Interest income"),
    "realized_gain": ("4900", "Realized gain/loss on digital assets"),
    "derivatives_pnl": ("4950", "Derivatives gain/loss"),
    "fee_expense": ("6150", "Transaction fee expense"),
    "spend_expense": ("6200", "Expenses paid in digital assets"),
    "rounding": ("6990", "Rounding differences"),
    "interest_expense": ("7100", "Interest expense"),
    "fair_value_adjustment": ("1401", "Digital assets fair value adjustment"),
    "accumulated_impairment": ("1402", "Digital assets accumulated impairment"),
    "unrealized_gain": ("4910", "Unrealized gain/loss on digital assets"),
    "impairment_loss": ("6500", "Impairment of digital assets"),
}
ROLES: tuple[str, ...] = tuple(DEFAULT_ACCOUNTS)
BOOKS: dict[str, tuple[str, str]] = {"configured": CONFIGURED, "fifo:universal": ("fifo", "universal"),
                                     "fifo:account": ("fifo", "account")}


@dataclass(frozen=True)
class GlAccount:
    role: str
    code: str
    name: str
    asset: str = ""
    account_type: str = ""


class AccountMap:
    """The entity's GL account per role, asset and account type: the most specific mapping wins
    (asset and type, then asset, then type, then the role alone, then the default)."""

    def __init__(self, rows: list[GlAccount]) -> None:
        self.rows = {(r.role, r.asset, r.account_type): r for r in rows}

    def get(self, role: str, asset: str | None = None, account_type: str | None = None) -> GlAccount:
        for key in ((role, asset or "", account_type or ""), (role, asset or "", ""), (role, "", account_type or ""),
                    (role, "", "")):
            if key in self.rows:
                return self.rows[key]
        code, name = DEFAULT_ACCOUNTS[role]
        return GlAccount(role, code, name)

    def roles(self) -> dict[str, GlAccount]:
        return {role: self.get(role) for role in ROLES}


def load_account_map(conn: Connection, entity_id: int) -> AccountMap:
    rows = conn.execute(sa.select(journal_accounts).where(journal_accounts.c.entity_id == entity_id)).all()
    return AccountMap([GlAccount(r.role, r.code, r.name, r.asset, r.account_type) for r in rows])


def write_account_mapping(conn: Connection, entity_id: int, role: str, code: str, name: str, *,
                          asset: str | None = None, account_type: str | None = None) -> GlAccount:
    """Map ``role`` (for one asset and/or account type, else for all) to the GL account ``code`` / ``name``."""
    role = role.strip().lower()
    if role not in ROLES:
        raise ValueError(f"unknown journal role {role!r}; allowed: {', '.join(ROLES)}")
    code, name = code.strip(), name.strip()
    if not code or not name:
        raise ValueError("a general-ledger account needs a code and a name")
    asset_text = (asset or "").strip().upper()
    type_text = (account_type or "").strip().lower()
    if asset_text and not conn.execute(sa.text("SELECT 1 FROM assets WHERE symbol = :s"), dict(s=asset_text)).first():
        raise ValueError(f"unknown asset {asset_text!r}")
    if type_text and not conn.execute(sa.text("SELECT 1 FROM accounts WHERE entity_id = :e AND account_type = :t"),
                                      dict(e=entity_id, t=type_text)).first():
        raise ValueError(f"the entity has no account of type {type_text!r}")
    conn.execute(insert(journal_accounts).values(entity_id=entity_id, role=role, code=code, name=name,
                                                 asset=asset_text, account_type=type_text)
                 .on_conflict_do_update(index_elements=["entity_id", "role", "asset", "account_type"],
                                        set_={"code": code, "name": name}))
    return GlAccount(role, code, name, asset_text, type_text)


def fair_value_policy(conn: Connection, entity_id: int) -> str:
    """The entity's fair-value policy: none (default), asu_2023_08 or ifrs_cost_impairment."""
    value = conn.execute(sa.select(journal_settings.c.fair_value_policy)
                         .where(journal_settings.c.entity_id == entity_id)).scalar()
    return value or "none"


def write_fair_value_policy(conn: Connection, entity_id: int, policy: str) -> str:
    text = (policy or "").strip().lower().replace("-", "_")
    if text not in ("none", *FAIR_VALUE_POLICIES):
        raise ValueError(f"unknown fair-value policy {policy!r}; allowed: none, {', '.join(FAIR_VALUE_POLICIES)}")
    conn.execute(insert(journal_settings).values(entity_id=entity_id, fair_value_policy=text)
                 .on_conflict_do_update(index_elements=["entity_id"],
                                        set_={"fair_value_policy": text, "updated_at": sa.func.now()}))
    return text


def period_ends(first: date, last: date) -> list[date]:
    """Month ends in [first, last]."""
    ends, day = [], first
    while day <= last:
        if (day + timedelta(days=1)).month != day.month:
            ends.append(day)
        day += timedelta(days=1)
    return ends


def parse_book(method: str | None, pool: str | None) -> tuple[str, str]:
    """The book the journal is written from: the entity's configured book unless a stored reference book is named."""
    method = (method or "configured").strip().lower()
    pool = (pool or "").strip().lower()
    if method == "configured":
        if pool not in ("", "configured"):
            raise ReportParameterError("pool", f"the configured book has its own pool; got {pool!r}",
                                         reason="combination")
        return CONFIGURED
    if method != "fifo":
        raise ReportParameterError("method", f"unknown book {method!r}; allowed: configured, fifo")
    if pool not in ("universal", "account"):
        raise ReportParameterError("pool", f"unknown pool {pool!r}; allowed: universal, account",
                                   reason="combination" if pool in ("", "configured") else "invalid")
    return ("fifo", pool)


# ---------------------------------------------------------------- the book as the journal reads it

_DAILY_SQL = """
SELECT date, pool_account_id, asset_id, quantity, cost_basis,
       coalesce(acquired_quantity, 0) AS aq, coalesce(acquired_basis, 0) AS ab,
       coalesce(disposed_quantity, 0) AS dq, coalesce(disposed_basis, 0) AS db,
       coalesce(transferred_in_quantity, 0) AS iq, coalesce(transferred_in_basis, 0) AS ib,
       coalesce(transferred_out_quantity, 0) AS oq, coalesce(transferred_out_basis, 0) AS ob
FROM (SELECT *, lag(cost_basis) OVER (PARTITION BY pool_account_id, asset_id ORDER BY date) AS previous
      FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t) d
WHERE previous IS NULL OR previous <> cost_basis OR coalesce(acquired_basis, 0) <> 0 OR coalesce(disposed_basis, 0) <> 0
   OR coalesce(transferred_in_basis, 0) <> 0 OR coalesce(transferred_out_basis, 0) <> 0
"""
_OPENING_SQL = """
SELECT DISTINCT ON (pool_account_id, asset_id) pool_account_id, asset_id, cost_basis
FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date < :s
ORDER BY pool_account_id, asset_id, date DESC
"""


class _LazyPrices:
    """The entity's fair values, loaded on first use (only a day with mixed acquisitions or foreign cash needs them)."""

    def __init__(self, conn: Connection, entity: Entity, last: date) -> None:
        self.conn, self.entity, self.last, self.values = conn, entity, last, None

    def price_at(self, asset_id: int, ts: Any) -> Decimal | None:
        if self.values is None:
            self.values = load_fair_values(self.conn, self.entity.id, cutoff_of(self.last, self.entity.tz))
        return self.values.price_at(asset_id, ts)


def _fiat(conn: Connection) -> dict[int, str]:
    return dict(conn.execute(sa.text("SELECT id, symbol FROM assets WHERE is_fiat")).all())


def first_book_day(conn: Connection, entity: Entity, ident: tuple[str, str]) -> date | None:
    return conn.execute(sa.text("SELECT min(date) FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p"),
                        dict(e=entity.id, m=ident[0], p=ident[1])).scalar()


def load_book_view(conn: Connection, entity: Entity, ident: tuple[str, str], first: date, last: date) -> BookView:
    """The stored (USD) book's figures for [first, last] as the journal reads them."""
    periods = book_schedule(conn, entity.id, *ident)
    pool_of = lambda day: pool_in_force(periods, day)  # noqa: E731
    params = dict(e=entity.id, m=ident[0], p=ident[1], s=first, t=last)
    days = [PoolDay(r.date, r.pool_account_id, r.asset_id, r.quantity, r.cost_basis, None, None, None, ZERO,
                    (r.aq, r.ab, r.dq, r.db, r.iq, r.ib, r.oq, r.ob))
            for r in conn.execute(sa.text(_DAILY_SQL), params)]
    opening = {(r.pool_account_id, r.asset_id): r.cost_basis for r in conn.execute(sa.text(_OPENING_SQL), params)}
    disposals = []
    for r in conn.execute(sa.text(
            "SELECT date, ts, leg_id, account_id, asset_id, kind, quantity, proceeds, cost_basis, realized_gain,"
            " short_term_gain, long_term_gain, shortfall_quantity FROM pnl_disposals"
            " WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t ORDER BY id"), params):
        pool_account = r.account_id if pool_of(r.date) == "account" else 0
        disposals.append(Disposal(r.leg_id, r.ts, r.date, r.account_id, r.asset_id, r.kind, r.quantity, r.proceeds,
                                  r.cost_basis, r.realized_gain, r.short_term_gain, r.long_term_gain,
                                  r.shortfall_quantity, (), ident[0], pool_account))
    legs = load_pnl_legs(conn, entity.id, last, after=first - timedelta(days=1))
    return BookView(first, last, days, disposals, opening, legs, _LazyPrices(conn, entity, last), pool_of, _fiat(conn),
                    "USD", {k: True for k in opening}, _stored_fair_value(conn, entity, ident, first, last))


def _stored_fair_value(conn: Connection, entity: Entity, ident: tuple[str, str], first: date,
                       last: date) -> FairValueInputs | None:
    policy = fair_value_policy(conn, entity.id)
    if policy == "none":
        return None
    booked = set(_booked_days(conn, entity, ident, first - timedelta(days=730), last))
    ends = [d for d in period_ends(first, last) if d in booked]
    before = [d for d in period_ends(first - timedelta(days=730), first - timedelta(days=1)) if d in booked]

    def required(day: date) -> dict[tuple[int, int], Decimal | None]:
        params = dict(e=entity.id, m=ident[0], p=ident[1], d=day)
        rows = [PoolDay(r.date, r.pool_account_id, r.asset_id, r.quantity, r.cost_basis, r.close_price_usd,
                        r.market_value, None, ZERO) for r in conn.execute(sa.text(
                            "SELECT date, pool_account_id, asset_id, quantity, cost_basis, close_price_usd, market_value"
                            " FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date = :d"), params)]
        lots = conn.execute(sa.text(
            "SELECT pool_account_id, asset_id, quantity, cost_basis FROM pnl_open_lots"
            " WHERE entity_id = :e AND method = :m AND pool = :p AND date = :d"), params).all() \
            if policy == "ifrs_cost_impairment" else []
        return fair_value_required(policy, rows, lots)

    opening: dict[tuple[int, int], Decimal] = {}
    unknown: set[tuple[int, int]] | None = None
    for day in reversed(before):  # the latest period end with a price, per pool (an unpriced one kept the balance)
        values = required(day)
        for key, value in values.items():
            if key not in opening and value is not None:
                opening[key] = value
        unknown = {k for k, v in values.items() if v is None and k not in opening} if unknown is None else \
            {k for k in unknown if k not in opening}
        if not unknown:
            break
    return FairValueInputs(policy, opening, {day: required(day) for day in ends})


def _translated_view(conn: Connection, entity: Entity, ident: tuple[str, str], first: date, last: date,
                     currency: str) -> tuple[BookView, Any]:
    """A non-USD book: the engine run in memory on legs translated into ``currency`` (nothing stored)."""
    from transforms.pnl_reports import load_book_inputs

    legs, prices, fx = load_book_inputs(conn, entity, last, currency)
    periods = book_schedule(conn, entity.id, *ident)
    start = min((l.close_date for l in legs), default=first)
    book = compute_book(legs, schedule=periods, fair_values=prices, cutoff=lambda d: cutoff_of(d, entity.tz),
                        report_from=min(start, first), report_to=last, keep_open_lots=True)
    view = view_of_book(book, legs, prices, first, last, fiat=_fiat(conn), currency=currency)
    policy = fair_value_policy(conn, entity.id)
    if policy != "none":
        booked = {r.date for r in book.days}
        ends = [d for d in period_ends(min(booked, default=first), last) if d in booked]

        def required(day: date) -> dict[tuple[int, int], Decimal | None]:
            return fair_value_required(policy, [r for r in book.days if r.date == day],
                                       [l for l in book.open_lots if l.date == day])

        before = [d for d in ends if d < first]
        opening = {k: v for k, v in required(before[-1]).items() if v is not None} if before else {}
        view.fair_value = FairValueInputs(policy, opening, {d: required(d) for d in ends if d >= first})
    return view, book


@dataclass
class Ledger:
    """An entity's journal over [first, last] and what it was written from."""

    entity: Entity
    ident: tuple[str, str]
    currency: str
    journal: Journal
    in_memory: Any = None  # the BookResult of a translated (non-USD) book


def build_ledger(conn: Connection, entity: Entity, first: date, last: date, ident: tuple[str, str] = CONFIGURED) -> Ledger:
    if first > last:
        raise ReportParameterError("from", f"from ({first}) is after to ({last})", reason="combination")
    currency = (entity.reporting_currency or "USD").upper()
    if currency == "USD":
        return Ledger(entity, ident, currency, build_journal(load_book_view(conn, entity, ident, first, last)))
    view, book = _translated_view(conn, entity, ident, first, last, currency)
    return Ledger(entity, ident, currency, build_journal(view), book)


# ---------------------------------------------------------------- presentation


class _Names:
    def __init__(self, conn: Connection, entity_id: int) -> None:
        self.assets = dict(conn.execute(sa.text("SELECT id, symbol FROM assets")).all())
        self.accounts = {r.id: r for r in conn.execute(sa.text(
            "SELECT id, name, account_type, sub_account FROM accounts WHERE entity_id = :e"), dict(e=entity_id))}

    def account_label(self, account_id: int | None) -> str | None:
        if not account_id or account_id not in self.accounts:
            return None
        a = self.accounts[account_id]
        return a.name + (f" ({a.account_type})" if a.account_type not in ("wallet", "") else "") + (
            f" / {a.sub_account}" if a.sub_account else "")


def _money(value: Decimal) -> str:
    return f"{cents(value):.2f}"


def _entry_dict(entry: Entry, ledger: Ledger, mapping: AccountMap, names: _Names) -> dict[str, Any]:
    book = "configured" if ledger.ident == CONFIGURED else f"{ledger.ident[0]}:{ledger.ident[1]}"
    lines = []
    for n, line in enumerate(entry.lines, start=1):
        asset = names.assets.get(line.asset_id) if line.asset_id else None
        acct = names.accounts.get(line.account_id) if line.account_id else None
        gl = mapping.get(line.role, asset, acct.account_type if acct else None)
        lines.append({"line": n, "account": gl.code, "account_name": gl.name, "role": line.role, "asset": asset,
                      "ledger_account": names.account_label(line.account_id),
                      "debit": _money(line.debit), "credit": _money(line.credit)})
    return {"entry_id": f"{entry.date.isoformat()}:{entry.event}:{book}", "date": entry.date.isoformat(),
            "event": entry.event, "book": book, "currency": ledger.currency, "lines": lines,
            "total_debit": _money(entry.total_debit), "total_credit": _money(entry.total_credit),
            "unvalued_cash_legs": entry.unvalued_cash_legs}


def journal_entries(conn: Connection, entity: Entity, date_from: date, date_to: date, *, method: str | None = None,
                    pool: str | None = None, account_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Balanced entries (cents) per close day and event of [date_from, date_to]; ``account_ids`` keeps the
    entries with a line of one of those ledger accounts."""
    ident = parse_book(method, pool)
    ledger = build_ledger(conn, entity, date_from, date_to, ident)
    mapping, names = load_account_map(conn, entity.id), _Names(conn, entity.id)
    entries = ledger.journal.entries
    if account_ids is not None:
        wanted = set(account_ids)
        entries = [e for e in entries if any(l.account_id in wanted for l in e.lines)]
    return [_entry_dict(e, ledger, mapping, names) for e in entries]


def flatten_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per journal line (for CSV/XLSX): the entry's columns and the line's."""
    return [{**{k: v for k, v in e.items() if k != "lines"}, **line} for e in entries for line in e["lines"]]


def trial_balance(conn: Connection, entity: Entity, date_from: date, date_to: date, *, method: str | None = None,
                  pool: str | None = None) -> list[dict[str, Any]]:
    """Per GL account: opening (all entries before ``date_from``), debits and credits of the period, closing.
    Balances are signed, debit positive; the closings sum to zero."""
    ident = parse_book(method, pool)
    first = min(first_book_day(conn, entity, ident) or date_from, date_from)
    if (entity.reporting_currency or "USD").upper() != "USD":
        first = date(1970, 1, 2)
    ledger = build_ledger(conn, entity, first, date_to, ident)
    mapping, names = load_account_map(conn, entity.id), _Names(conn, entity.id)
    totals: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    with exact_context():
        for entry in ledger.journal.entries:
            for line in entry.lines:
                asset = names.assets.get(line.asset_id) if line.asset_id else None
                acct = names.accounts.get(line.account_id) if line.account_id else None
                gl = mapping.get(line.role, asset, acct.account_type if acct else None)
                row = totals[(gl.code, gl.name)]
                if entry.date < date_from:
                    row[0] += line.amount
                else:
                    row[1] += line.debit
                    row[2] += line.credit
        rows = []
        for (code, name), (opening, debits, credits) in sorted(totals.items()):
            rows.append({"account": code, "account_name": name, "currency": ledger.currency,
                         "opening": _money(opening), "debits": _money(debits), "credits": _money(credits),
                         "closing": _money(opening + debits - credits)})
    return rows


# ---------------------------------------------------------------- tie-out


def _open_lots_basis(conn: Connection, entity: Entity, ident: tuple[str, str], start: date,
                     end: date) -> dict[date, dict[tuple[int, int], Decimal]]:
    result: dict[date, dict[tuple[int, int], Decimal]] = defaultdict(dict)
    for r in conn.execute(sa.text(
            "SELECT date, pool_account_id, asset_id, sum(cost_basis) AS basis FROM pnl_open_lots"
            " WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t GROUP BY 1, 2, 3"),
            dict(e=entity.id, m=ident[0], p=ident[1], s=start, t=end)):
        result[r.date][(r.pool_account_id, r.asset_id)] = r.basis
    return result


def _booked_days(conn: Connection, entity: Entity, ident: tuple[str, str], start: date, end: date) -> list[date]:
    """Days of [start, end] the book was stored for (a blocked or failed day has none: nothing to tie)."""
    return list(conn.execute(sa.text(
        "SELECT date FROM pnl_book_states WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t"
        " ORDER BY date"), dict(e=entity.id, m=ident[0], p=ident[1], s=start, t=end)).scalars())


def tieout_rows(conn: Connection, entity: Entity, day: date, *, method: str | None = None, pool: str | None = None,
                explain: bool = True) -> list[dict[str, Any]]:
    """GL digital assets against the open lots' basis at the close of ``day``, per asset (and account in a
    per-account book). A row that does not tie carries the day's entries that touch it and its open lots."""
    ident = parse_book(method, pool)
    if (entity.reporting_currency or "USD").upper() == "USD" and not _booked_days(conn, entity, ident, day, day):
        raise ReportParameterError("date", f"{entity.name} has no stored book for {day} (not closed yet, or blocked "
                                           "or failed): nothing to tie out", reason="conflict")
    ledger = build_ledger(conn, entity, day, day, ident)
    if ledger.in_memory is not None:
        subledger: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        for lot in ledger.in_memory.open_lots:
            if lot.date == day:
                subledger[(lot.pool_account_id, lot.asset_id)] += lot.cost_basis
    else:
        subledger = _open_lots_basis(conn, entity, ident, day, day).get(day, {})
    rows = tieout(gl_balance_at(ledger.journal, day), subledger)
    return _tieout_dicts(conn, entity, ident, ledger, day, rows, explain)


def _tieout_dicts(conn: Connection, entity: Entity, ident: tuple[str, str], ledger: Ledger, day: date,
                  rows: list[TieoutRow], explain: bool) -> list[dict[str, Any]]:
    names = _Names(conn, entity.id)
    mapping = load_account_map(conn, entity.id)
    out = []
    for row in rows:
        item: dict[str, Any] = {
            "asset": names.assets.get(row.asset_id), "account": names.account_label(row.pool_account_id),
            "currency": ledger.currency, "gl": _money(row.gl), "subledger": _money(row.subledger),
            "difference": _money(row.difference), "ties": row.ties, "entries": None, "lots": None}
        if explain and not row.ties:
            item["entries"] = [_entry_dict(e, ledger, mapping, names) for e in ledger.journal.entries
                               if e.date == day and any(l.role == INVENTORY and l.asset_id == row.asset_id
                                                        and (l.account_id or 0) == row.pool_account_id
                                                        for l in e.lines)]
            item["lots"] = [dict(r._mapping) | {"quantity": str(r.quantity), "cost_basis": str(r.cost_basis),
                                                "acquired_at": r.acquired_at.isoformat()}
                            for r in conn.execute(sa.text(
                                "SELECT lot_leg_id, account_id, acquired_at, quantity, cost_basis, flagged"
                                " FROM pnl_open_lots WHERE entity_id = :e AND method = :m AND pool = :p AND date = :d"
                                " AND pool_account_id = :pa AND asset_id = :a ORDER BY seq"),
                                dict(e=entity.id, m=ident[0], p=ident[1], d=day, pa=row.pool_account_id,
                                     a=row.asset_id))]
        out.append(item)
    return out


@dataclass(frozen=True)
class TieoutFailure:
    date: date
    rows: list[TieoutRow]
    message: str


def check_tieout(conn: Connection, entity: Entity, start: date, end: date,
                 ident: tuple[str, str] = CONFIGURED) -> list[TieoutFailure]:
    """The tie-out at every booked close of [start, end] (the journal of the range against the open lots)."""
    days = _booked_days(conn, entity, ident, start, end)
    if not days:
        return []
    try:
        ledger = build_ledger(conn, entity, days[0], days[-1], ident)
    except Exception as exc:  # a book the journal cannot explain does not tie: an error on each day, never a pass
        from transforms.journal_book import JournalError
        from transforms.fx import FxRateMissing

        if not isinstance(exc, (JournalError, FxRateMissing)):
            raise
        text = exc.message if isinstance(exc, FxRateMissing) else str(exc)
        return [TieoutFailure(d, [], f"GL tie-out failed: {text}") for d in days]
    if ledger.in_memory is not None:
        lots: dict[date, dict[tuple[int, int], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for lot in ledger.in_memory.open_lots:
            if days[0] <= lot.date <= days[-1]:
                lots[lot.date][(lot.pool_account_id, lot.asset_id)] += lot.cost_basis
    else:
        lots = _open_lots_basis(conn, entity, ident, days[0], days[-1])
    names = _Names(conn, entity.id)
    failures = []
    for day in days:
        bad = [r for r in tieout(gl_balance_at(ledger.journal, day), lots.get(day, {})) if not r.ties]
        if bad:
            what = ", ".join(f"{names.assets.get(r.asset_id)}"
                             + (f" {names.account_label(r.pool_account_id)}" if r.pool_account_id else "")
                             + f" GL {_money(r.gl)} vs lots {_money(r.subledger)}" for r in bad[:5])
            failures.append(TieoutFailure(day, bad, f"GL tie-out: {len(bad)} difference(s): {what}; see `coinfrs "
                                                    f"journal tieout --entity {entity.name} --date {day}`"))
    return failures


def enforce_tieout(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None) -> list[TieoutFailure]:
    """Run the tie-out for the closes of [start, end]; a day that does not tie is marked ``failed`` (never a warning)."""
    from reconciliation.close import write_failed_closes

    failures = check_tieout(conn, entity, start, end)
    for failure in failures:
        write_failed_closes(conn, entity, failure.date, failure.date, message=failure.message, run_id=run_id)
    return failures


# ---------------------------------------------------------------- asset roll-forward

_SNAPSHOT_SQL = """
SELECT DISTINCT ON (pool_account_id, asset_id) pool_account_id, asset_id, quantity, cost_basis, market_value
FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date <= :d
ORDER BY pool_account_id, asset_id, date DESC
"""


def _snapshots(rows: Any) -> dict[tuple[int, int], tuple[Decimal, Decimal, Decimal | None]]:
    return {(r.pool_account_id, r.asset_id): (r.quantity, r.cost_basis,
                                               r.market_value if r.quantity else ZERO) for r in rows}


def asset_rollforward_rows(conn: Connection, entity: Entity, date_from: date, date_to: date, *,
                           method: str | None = None, pool: str | None = None) -> list[dict[str, Any]]:
    """Per asset (and ledger account in a per-account book) over the period: opening + in - out - fees = closing in
    quantity, cost and fair value (``transforms.journal_book.asset_rollforward``), in the reporting currency."""
    from transforms.journal_book import asset_rollforward
    from warehouse.numbers import to_text

    ident = parse_book(method, pool)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    currency = (entity.reporting_currency or "USD").upper()
    if currency == "USD":
        view = load_book_view(conn, entity, ident, date_from, date_to)
        params = dict(e=entity.id, m=ident[0], p=ident[1])
        opening = _snapshots(conn.execute(sa.text(_SNAPSHOT_SQL), {**params, "d": date_from - timedelta(days=1)}))
        closing = _snapshots(conn.execute(sa.text(_SNAPSHOT_SQL), {**params, "d": date_to}))
    else:
        view, book = _translated_view(conn, entity, ident, date_from, date_to, currency)
        opening, closing = {}, {}
        for row in book.days:
            snap = (row.quantity, row.cost_basis, row.market_value if row.quantity else ZERO)
            if row.date < date_from:
                opening[(row.pool_account_id, row.asset_id)] = snap
            if row.date <= date_to:
                closing[(row.pool_account_id, row.asset_id)] = snap
    rows = asset_rollforward(view.days, view.disposals, opening, closing)
    names = _Names(conn, entity.id)
    text = lambda v: to_text(v) if v is not None else None  # noqa: E731
    return [{"asset": names.assets.get(r.asset_id), "account": names.account_label(r.pool_account_id),
             "currency": currency, "from": date_from.isoformat(), "to": date_to.isoformat(),
             **{f: text(getattr(r, f)) for f in (
                 "opening_quantity", "opening_cost", "opening_fair_value", "in_quantity", "in_cost", "out_quantity",
                 "out_cost", "out_proceeds", "fees_quantity", "fees_cost", "fees_value", "closing_quantity",
                 "closing_cost", "closing_fair_value", "fair_value_change")}}
            for r in rows]
