"""Disposals with their matched lots: the realized-gains detail an auditor ties a book's gain to.

Every disposal of a book in a period (a sale or a fee paid in the asset) with its proceeds, cost basis and
realized gain (short and long term) and the lots it consumed: each lot's acquisition leg, acquisition time,
quantity taken, its cost basis and term. Stored USD books are read from the close's tables (``pnl_disposals``,
``pnl_disposal_lots``) one keyset page at a time; any other book or reporting currency is computed on demand by
the same engine (``transforms.pnl_reports.compute_book_from_db``).

Pages run in (ts, leg_id) order; ``next_cursor`` points after the last disposal of a page.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from transforms.cost_basis import Disposal
from transforms.fx import BASE_CURRENCY
from transforms.pnl_reports import STORED_BOOKS, compute_book_from_db, currency_keys, parse_book_ident, \
    reporting_currency
from warehouse.entities import Entity
from warehouse.numbers import to_text
from warehouse.reports import ReportParameterError, decode_cursor, encode_cursor, iso_utc, resolve_account_ids, \
    resolve_asset_id, sql_decimal_text, sql_iso_utc

FIGURES = ("quantity", "proceeds", "cost_basis", "realized_gain", "short_term_gain", "long_term_gain",
           "shortfall_quantity")
LOT_COLUMNS = ("lot_leg_id", "lot_acquired_at", "lot_quantity", "lot_cost_basis", "lot_term")
EXPORT_COLUMNS = ["leg_id", "date", "ts", "account_id", "account", "asset_id", "asset", "kind", *FIGURES,
                  *LOT_COLUMNS, "currency"]
"""An export has one row per matched lot (a disposal without lots: one row, lot columns empty)."""

_STORED = f"""
    SELECT d.leg_id, d.date::text AS date, {sql_iso_utc("d.ts")} AS ts, d.account_id, ac.name AS account, d.asset_id,
           a.symbol AS asset, d.kind, {", ".join(f"{sql_decimal_text('d.' + f)} AS {f}" for f in FIGURES)},
           coalesce((SELECT json_agg(json_build_object(
                         'lot_leg_id', l.lot_leg_id, 'acquired_at', {sql_iso_utc("l.acquired_at")},
                         'quantity', {sql_decimal_text("l.quantity")}, 'cost_basis', {sql_decimal_text("l.cost_basis")},
                         'term', l.term) ORDER BY l.acquired_at, l.lot_leg_id)
                     FROM pnl_disposal_lots l WHERE l.disposal_id = d.id), '[]'::json) AS lots
    FROM pnl_disposals d JOIN accounts ac ON ac.id = d.account_id JOIN assets a ON a.id = d.asset_id
    WHERE d.entity_id = :e AND d.method = :m AND d.pool = :p AND d.date BETWEEN :s AND :t"""
_KEYS = ("leg_id", "date", "ts", "account_id", "account", "asset_id", "asset", "kind", *FIGURES, "lots")


def list_disposals(conn: Connection, entity: Entity, date_from: date, date_to: date, method: str = "configured",
                   pool: str = "configured", currency: str | None = None, *, account: str | None = None,
                   asset: str | None = None, cursor: str | None = None, limit: int | None = 100,
                   ) -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
    """One page of the book's disposals in [date_from, date_to] (``limit`` None: all of them), the cursor of the
    next page (None on the last), and the report's keys (book, currency, FX provenance). ``account``: a name (all
    its types and sub-accounts) or id; ``asset``: a symbol."""
    ident = parse_book_ident(method, pool)
    code = reporting_currency(entity, currency)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    account_ids = resolve_account_ids(conn, entity.id, account) if account and account.strip() else None
    asset_id = resolve_asset_id(conn, asset) if asset and asset.strip() else None
    after = decode_cursor(cursor) if cursor else None
    take = None if limit is None else limit + 1
    fx = None
    if ident in STORED_BOOKS and code == BASE_CURRENCY:
        sql, params = _STORED, dict(e=entity.id, m=ident[0], p=ident[1], s=date_from, t=date_to)
        if account_ids is not None:
            sql, params["accounts"] = sql + " AND d.account_id = ANY(:accounts)", account_ids
        if asset_id is not None:
            sql, params["asset"] = sql + " AND d.asset_id = :asset", asset_id
        if after is not None:
            sql, params["after_ts"], params["after_leg"] = sql + " AND (d.ts, d.leg_id) > (:after_ts, :after_leg)", *after
        sql += " ORDER BY d.ts, d.leg_id" + (f" LIMIT {take}" if take is not None else "")
        rows = [dict(zip(_KEYS, r)) for r in conn.execute(sa.text(sql), params)]
    else:
        book, fx = compute_book_from_db(conn, entity, ident, date_to, code)
        chosen = sorted((d for d in book.disposals if date_from <= d.date <= date_to
                         and (account_ids is None or d.account_id in account_ids)
                         and (asset_id is None or d.asset_id == asset_id)
                         and (after is None or (d.ts, d.leg_id) > after)), key=lambda d: (d.ts, d.leg_id))
        names = _names(conn, entity.id)
        rows = [_computed_row(d, names) for d in chosen[:take]]
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    for row in rows:
        row["currency"] = code
    next_cursor = encode_cursor(rows[-1]["ts"], rows[-1]["leg_id"]) if more else None
    return rows, next_cursor, {"method": ident[0], "pool": ident[1], **currency_keys(code, fx)}


def export_rows(disposals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Disposals flattened for CSV/XLSX: one row per matched lot, the disposal's columns repeated."""
    rows = []
    for d in disposals:
        base = {k: v for k, v in d.items() if k != "lots"}
        lots = d["lots"] or [None]
        for lot in lots:
            rows.append({**base, **({"lot_leg_id": lot["lot_leg_id"], "lot_acquired_at": lot["acquired_at"],
                                     "lot_quantity": lot["quantity"], "lot_cost_basis": lot["cost_basis"],
                                     "lot_term": lot["term"]} if lot is not None else {})})
    return rows


def _names(conn: Connection, entity_id: int) -> dict[str, dict[int, str]]:
    accounts = dict(conn.execute(sa.text("SELECT id, name FROM accounts WHERE entity_id = :e"), dict(e=entity_id)).all())
    assets = dict(conn.execute(sa.text("SELECT id, symbol FROM assets")).all())
    return {"accounts": accounts, "assets": assets}


def _computed_row(d: Disposal, names: dict[str, dict[int, str]]) -> dict[str, Any]:
    return {
        "leg_id": d.leg_id, "date": d.date.isoformat(), "ts": iso_utc(d.ts), "account_id": d.account_id,
        "account": names["accounts"].get(d.account_id), "asset_id": d.asset_id, "asset": names["assets"].get(d.asset_id),
        "kind": d.kind, **{f: to_text(getattr(d, f)) for f in FIGURES},
        "lots": [{"lot_leg_id": lot.lot_leg_id, "acquired_at": iso_utc(lot.acquired_at), "quantity": to_text(lot.quantity),
                  "cost_basis": to_text(lot.cost_basis), "term": lot.term}
                 for lot in sorted(d.lots, key=lambda lot: (lot.acquired_at, lot.lot_leg_id))],
    }
