"""Journal entries per day: the double-entry lines an accountant posts to the general ledger.

One balanced entry per close day and account, in USD, from the stored disposals (``pnl_disposals`` of one
cost-basis method and pool) and the day's legs:

| event | debit | credit |
| --- | --- | --- |
| sale (disposal of kind ``sale``) | clearing: proceeds | inventory: cost basis; realized gain/loss: proceeds − cost |
| fee paid in an asset (disposal of kind ``fee``) | fee expense: its value | inventory: cost basis; realized gain/loss: value − cost |
| acquisition (``buy`` leg, not fiat) | inventory: its USD value | clearing: the same |
| income (``income``, ``staking_reward``, ``airdrop``, ``interest``) | inventory: its USD value | income: the same |

A loss puts the realized gain/loss line on the debit side. Lines of the same general-ledger account are
netted, so each entry has at most one line per account; every entry balances exactly (debits = credits).
Transfers, deposits and withdrawals carry basis and make no PnL: they are not journaled. Acquisition and
income legs without a USD value cannot be booked and are counted in ``unvalued_legs``.

The general-ledger accounts of each role are configurable per entity (``journal_accounts``); the defaults
are ``DEFAULT_ACCOUNTS``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from warehouse.numbers import ZERO, exact_context, to_text
from warehouse.reports import PNL_METHODS, PNL_POOLS, ReportParameterError
from warehouse.schema import accounts, assets, journal_accounts, pnl_disposals, transactions

ROLES: tuple[str, ...] = ("inventory", "clearing", "realized_gain", "fee_expense", "income")
DEFAULT_ACCOUNTS: dict[str, tuple[str, str]] = {
    "inventory": ("1400", "Digital assets inventory"),
    "clearing": ("1190", "Digital asset clearing"),
    "realized_gain": ("4900", "Realized gain/loss on digital assets"),
    "fee_expense": ("6150", "Transaction fee expense"),
    "income": ("4100", "Digital asset income"),
}
INCOME_KINDS: tuple[str, ...] = ("income", "staking_reward", "airdrop", "interest")
ACQUISITION_KINDS: tuple[str, ...] = ("buy",)


@dataclass(frozen=True)
class GlAccount:
    role: str
    code: str
    name: str


def load_account_map(conn: Connection, entity_id: int) -> dict[str, GlAccount]:
    """The entity's general-ledger account per role: its own mapping over the defaults."""
    mapping = {role: GlAccount(role, code, name) for role, (code, name) in DEFAULT_ACCOUNTS.items()}
    for r in conn.execute(sa.select(journal_accounts).where(journal_accounts.c.entity_id == entity_id)):
        mapping[r.role] = GlAccount(r.role, r.code, r.name)
    return mapping


def write_account_mapping(conn: Connection, entity_id: int, role: str, code: str, name: str) -> GlAccount:
    """Map ``role`` to the general-ledger account ``code`` / ``name`` for the entity (replaces the previous)."""
    role = role.strip().lower()
    if role not in ROLES:
        raise ValueError(f"unknown journal role {role!r}; allowed: {', '.join(ROLES)}")
    code, name = code.strip(), name.strip()
    if not code or not name:
        raise ValueError("a general-ledger account needs a code and a name")
    conn.execute(insert(journal_accounts).values(entity_id=entity_id, role=role, code=code, name=name)
                 .on_conflict_do_update(index_elements=["entity_id", "role"], set_={"code": code, "name": name}))
    return GlAccount(role, code, name)


def _validate(method: str, pool: str, date_from: date, date_to: date) -> tuple[str, str]:
    method, pool = (method or "").strip().lower(), (pool or "").strip().lower()
    if method not in PNL_METHODS:
        raise ReportParameterError("method", f"unknown cost-basis method {method!r}; allowed: {', '.join(PNL_METHODS)}")
    if pool not in PNL_POOLS:
        raise ReportParameterError("pool", f"unknown pool {pool!r}; allowed: {', '.join(PNL_POOLS)}")
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})")
    return method, pool


def compute_journal_entries(
    conn: Connection, entity_id: int, date_from: date, date_to: date, *, method: str = "fifo",
    pool: str = "universal", account_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Balanced journal entries, one per (close day, account) with activity in ``[date_from, date_to]``."""
    method, pool = _validate(method, pool, date_from, date_to)
    gl = load_account_map(conn, entity_id)
    # (day, account_id) -> role -> signed amount (debit +, credit -)
    amounts: dict[tuple[date, int], dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    unvalued: dict[tuple[date, int], int] = defaultdict(int)
    d = pnl_disposals.c
    disposals = (
        sa.select(d.date, d.account_id, d.kind, sa.func.sum(d.proceeds).label("proceeds"),
                  sa.func.sum(d.cost_basis).label("cost"))
        .where(d.entity_id == entity_id, d.method == method, d.pool == pool, d.date >= date_from, d.date <= date_to)
        .group_by(d.date, d.account_id, d.kind)
    )
    t = transactions.c
    legs = (
        sa.select(t.close_date, t.account_id, t.kind, sa.func.sum(t.usd_value).label("value"),
                  sa.func.count().filter(t.usd_value.is_(None)).label("unvalued"))
        .select_from(transactions.join(assets, assets.c.id == t.asset_id))
        .where(t.entity_id == entity_id, t.close_date >= date_from, t.close_date <= date_to, t.quantity > 0,
               t.kind.in_(INCOME_KINDS + ACQUISITION_KINDS), assets.c.is_fiat.is_(False))
        .group_by(t.close_date, t.account_id, t.kind)
    )
    if account_ids is not None:
        disposals = disposals.where(d.account_id.in_(account_ids))
        legs = legs.where(t.account_id.in_(account_ids))
    with exact_context():
        for r in conn.execute(disposals):
            lines = amounts[(r.date, r.account_id)]
            lines["fee_expense" if r.kind == "fee" else "clearing"] += r.proceeds
            lines["inventory"] -= r.cost
            lines["realized_gain"] -= r.proceeds - r.cost
        for r in conn.execute(legs):
            key = (r.close_date, r.account_id)
            unvalued[key] += int(r.unvalued)
            if r.value is None:
                amounts.setdefault(key, defaultdict(lambda: ZERO))
                continue
            amounts[key]["inventory"] += r.value
            amounts[key]["income" if r.kind in INCOME_KINDS else "clearing"] -= r.value
    names = {r.id: r for r in conn.execute(
        sa.select(accounts.c.id, accounts.c.name, accounts.c.account_type, accounts.c.sub_account)
        .where(accounts.c.entity_id == entity_id))}
    entries = []
    for (day, account_id), by_role in sorted(amounts.items(), key=lambda kv: (kv[0][0], names[kv[0][1]].name,
                                                                             names[kv[0][1]].account_type, kv[0][1])):
        lines = []
        total_debit = total_credit = ZERO
        for role in ROLES:
            amount = by_role.get(role, ZERO)
            if amount == 0:
                continue
            debit, credit = (amount, ZERO) if amount > 0 else (ZERO, -amount)
            total_debit += debit
            total_credit += credit
            lines.append({"role": role, "gl_account": gl[role].code, "gl_name": gl[role].name,
                          "debit": to_text(debit), "credit": to_text(credit)})
        if total_debit != total_credit:  # pragma: no cover - every event above books both sides
            raise AssertionError(f"unbalanced journal entry {day} account {account_id}")
        acc = names[account_id]
        entries.append({
            "entry_id": f"{day.isoformat()}:{account_id}:{method}:{pool}",
            "date": day.isoformat(), "account": acc.name, "account_id": account_id,
            "account_type": acc.account_type, "sub_account": acc.sub_account, "method": method, "pool": pool,
            "currency": "USD", "lines": lines, "total_debit": to_text(total_debit),
            "total_credit": to_text(total_credit), "unvalued_legs": unvalued.get((day, account_id), 0),
        })
    return entries


def flatten_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per journal line (for CSV/XLSX): the entry's columns and the line's."""
    return [{**{k: v for k, v in e.items() if k != "lines"}, **line} for e in entries for line in e["lines"]]
