"""Cost-basis reports shared by the CLI and the read API: realized PnL of any book, what-if
comparison of books, open lots at a close, the roll-forward and shortfalls.

Stored books (``fifo``/``universal``, ``fifo``/``account``, ``configured``) are read from the
tables the close writes; any other method/pool, and any book in a reporting currency other than
USD, is computed in memory from the stored legs and prices by the same engine (read-only, nothing
is written). A report in EUR or GBP runs the engine on legs translated at the rate of their own
instant (transforms/fx.py) and says which rates it used. Legs of unverified assets are left out
of every book (``list_excluded_assets`` lists them). Money is exact decimal text (``to_text``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from transforms.cost_basis import METHODS, POOLS, BookResult, PnlLeg, TieOutError, compute_book
from transforms.fair_value import PriceLookup, load_fair_values
from transforms.fx import BASE_CURRENCY, FxRates, TranslatedFairValues, load_fx_rates, normalize_currency, translate_legs
from transforms.pnl import CONFIGURED, REFERENCE_BOOKS, book_schedule, holding_of, load_pnl_legs
from warehouse.calendar import cutoff_of
from warehouse.entities import Entity
from warehouse.numbers import ZERO, to_text
from warehouse.reports import ReportParameterError, iso_utc, realized_pnl_summary

STORED_BOOKS = (*REFERENCE_BOOKS, CONFIGURED)


def parse_book_ident(method: str, pool: str | None = None) -> tuple[str, str]:
    """``("hifo", "account")``, ``("hifo:account", None)`` or ``("configured", ...)`` -> a book identity."""
    method = (method or "").strip().lower()
    if ":" in method and pool is None:
        method, pool = method.split(":", 1)
    if method == "configured":
        return CONFIGURED
    pool = (pool or "universal").strip().lower()
    if method not in METHODS:
        raise ReportParameterError("method", f"unknown cost-basis method {method!r}; allowed: "
                                             f"{', '.join(METHODS)}, configured")
    if pool not in POOLS:
        raise ReportParameterError("pool", f"unknown pool {pool!r}; allowed: {', '.join(POOLS)}",
                                   reason="combination" if pool == "configured" else "invalid")
    return method, pool


def parse_books(text: str) -> list[tuple[str, str]]:
    """``"fifo:universal,hifo:account"`` -> book identities (at least one, no duplicates)."""
    books = [parse_book_ident(part) for part in text.split(",") if part.strip()]
    if not books:
        raise ReportParameterError("books", "give at least one book, e.g. fifo:universal,hifo:account")
    if len(set(books)) != len(books):
        raise ReportParameterError("books", f"a book is listed twice in {text!r}", reason="combination")
    return books


def summarize_realized(book: BookResult, entity_name: str, date_from: date, date_to: date, method: str,
                       pool: str) -> dict[str, Any]:
    """The keys of ``warehouse.reports.realized_pnl_summary``, from an in-memory book (in the book's currency)."""
    ds = [d for d in book.disposals if date_from <= d.date <= date_to]
    total = lambda attr: to_text(sum((getattr(d, attr) for d in ds), ZERO)) or "0"  # noqa: E731
    return {
        "entity": entity_name, "from": date_from.isoformat(), "to": date_to.isoformat(), "method": method, "pool": pool,
        "proceeds": total("proceeds"), "cost_basis": total("cost_basis"), "realized_gain": total("realized_gain"),
        "short_term_gain": total("short_term_gain"), "long_term_gain": total("long_term_gain"),
        "disposals": len(ds), "fee_disposals": sum(1 for d in ds if d.kind == "fee"),
        "shortfall_quantity_disposals": sum(1 for d in ds if d.shortfall_quantity > 0),
    }


def load_book_inputs(conn: Connection, entity: Entity, date_to: date,
                     currency: str = BASE_CURRENCY) -> tuple[list[PnlLeg], PriceLookup, FxRates | None]:
    """The entity's legs and prices up to ``date_to`` for the engine, translated into ``currency`` unless USD."""
    if date_to >= date.max:  # its cutoff is the next day's midnight
        raise ReportParameterError("to", f"{date_to} has no cutoff; give an earlier day")
    up_to = cutoff_of(date_to, entity.tz)
    legs = load_pnl_legs(conn, entity.id, date_to)
    prices = load_fair_values(conn, entity.id, up_to)
    if currency == BASE_CURRENCY:
        return legs, prices, None
    fx = load_fx_rates(conn, entity.id, currency, up_to)
    return translate_legs(legs, fx), TranslatedFairValues(prices, fx), fx


def compute_book_from_db(conn: Connection, entity: Entity, ident: tuple[str, str], date_to: date,
                         currency: str = BASE_CURRENCY, *, report_day: date | None = None
                         ) -> tuple[BookResult, FxRates | None]:
    """A book computed in memory from the entity's legs and prices up to ``date_to`` (nothing written), in
    ``currency``; ``report_day`` also keeps that day's pool figures (unrealized PnL)."""
    legs, prices, fx = load_book_inputs(conn, entity, date_to, currency)
    book = compute_book(legs, schedule=book_schedule(conn, entity.id, *ident), fair_values=prices,
                        cutoff=lambda day: cutoff_of(day, entity.tz), report_from=report_day, report_to=report_day,
                        holding=holding_of(entity))
    return book, fx


def reporting_currency(entity: Entity, currency: str | None) -> str:
    """``currency`` if given, else the entity's reporting currency (USD unless set)."""
    return normalize_currency(currency, entity.reporting_currency)


def currency_keys(currency: str, fx: FxRates | None) -> dict[str, Any]:
    """The keys every PnL report adds: its currency and the provenance of the FX rates it used (None for USD)."""
    return {"currency": currency, "fx": fx.provenance() if fx is not None else None}


def realized_summary(conn: Connection, entity: Entity, date_from: date, date_to: date, method: str = "fifo",
                     pool: str = "universal", currency: str | None = None) -> dict[str, Any]:
    """Realized PnL of any book over [date_from, date_to] in the reporting currency: stored books in USD from
    the close's tables, anything else computed on demand by the same engine."""
    ident = parse_book_ident(method, pool)
    code = reporting_currency(entity, currency)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    if ident in STORED_BOOKS and code == BASE_CURRENCY:
        summary = realized_pnl_summary(conn, entity.id, date_from, date_to, method=ident[0], pool=ident[1])
        return {**summary, **currency_keys(code, None)}
    book, fx = compute_book_from_db(conn, entity, ident, date_to, code)
    return {**summarize_realized(book, entity.name, date_from, date_to, *ident), **currency_keys(code, fx)}


def compare_results(results: Mapping[str, BookResult], date_from: date, date_to: date,
                    names: Mapping[str, Mapping[int, str]] | None = None) -> dict[str, Any]:
    """Realized PnL per book and, per disposal, each book's gain and its difference from the first book."""
    labels = list(results)
    per_leg: dict[int, dict[str, Any]] = {}
    gains: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for label, book in results.items():
        for d in book.disposals:
            if not date_from <= d.date <= date_to:
                continue
            gains[d.leg_id][label] = gains[d.leg_id].get(label, ZERO) + d.realized_gain
            per_leg.setdefault(d.leg_id, {"leg_id": d.leg_id, "date": d.date.isoformat(), "ts": iso_utc(d.ts),
                                          "account_id": d.account_id, "asset_id": d.asset_id, "kind": d.kind,
                                          "quantity": to_text(d.quantity), "proceeds": to_text(d.proceeds)})
    accounts = (names or {}).get("accounts", {})
    assets = (names or {}).get("assets", {})
    disposals = []
    for leg_id in sorted(per_leg, key=lambda i: (per_leg[i]["ts"], i)):
        row = per_leg[leg_id]
        row["account"] = accounts.get(row["account_id"])
        row["asset"] = assets.get(row["asset_id"])
        base = gains[leg_id].get(labels[0], ZERO)
        row["realized_gain"] = {label: to_text(gains[leg_id].get(label, ZERO)) for label in labels}
        row["difference"] = {label: to_text(gains[leg_id].get(label, ZERO) - base) for label in labels[1:]}
        disposals.append(row)
    totals = {label: sum((d.realized_gain for d in book.disposals if date_from <= d.date <= date_to), ZERO)
              for label, book in results.items()}
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(), "base": labels[0],
        "books": [{"book": label, "schedule": results[label].label, "realized_gain": to_text(totals[label]),
                   "difference": to_text(totals[label] - totals[labels[0]]),
                   "disposals": sum(1 for d in results[label].disposals if date_from <= d.date <= date_to),
                   "shortfalls": sum(1 for s in results[label].shortfalls if date_from <= s.date <= date_to)}
                  for label in labels],
        "disposals": disposals,
    }


def compare_rows(report: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """A comparison as flat rows for an export: one per disposal, ``gain <book>`` and ``difference <book>`` columns."""
    labels = [b["book"] for b in report["books"]]
    columns = ["leg_id", "date", "ts", "account", "asset", "kind", "quantity", "proceeds",
               *[f"gain {label}" for label in labels], *[f"difference {label}" for label in labels[1:]], "currency"]
    rows = [{**{k: d[k] for k in columns[:8]}, **{f"gain {label}": d["realized_gain"][label] for label in labels},
             **{f"difference {label}": d["difference"][label] for label in labels[1:]}, "currency": report["currency"]}
            for d in report["disposals"]]
    return columns, rows


def _names(conn: Connection, entity_id: int) -> dict[str, dict[int, str]]:
    accounts = dict(conn.execute(sa.text("SELECT id, name || CASE WHEN account_type <> 'wallet' THEN ' (' || account_type"
                                         " || ')' ELSE '' END FROM accounts WHERE entity_id = :e"), dict(e=entity_id)).all())
    assets = dict(conn.execute(sa.text("SELECT id, symbol FROM assets")).all())
    return {"accounts": accounts, "assets": assets}


def compare_books(conn: Connection, entity: Entity, books: list[tuple[str, str]], date_from: date,
                  date_to: date, currency: str | None = None) -> dict[str, Any]:
    """What-if: the same legs under several books, computed in memory, in the reporting currency."""
    code = reporting_currency(entity, currency)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    legs, prices, fx = load_book_inputs(conn, entity, date_to, code)
    results = {}
    for ident in books:
        label = "configured" if ident == CONFIGURED else f"{ident[0]}:{ident[1]}"
        results[label] = compute_book(legs, schedule=book_schedule(conn, entity.id, *ident), fair_values=prices,
                                      cutoff=lambda day: cutoff_of(day, entity.tz), holding=holding_of(entity))
    report = compare_results(results, date_from, date_to, _names(conn, entity.id))
    return {"entity": entity.name, **report, **currency_keys(code, fx)}


# ---------------------------------------------------------------- stored books: lots, roll-forward, shortfalls


def _stored(method: str, pool: str) -> tuple[str, str]:
    ident = parse_book_ident(method, pool)
    if ident not in STORED_BOOKS:
        raise ReportParameterError("method", f"book {ident[0]}:{ident[1]} is not stored by the close; stored books: "
                                             + ", ".join("configured" if b == CONFIGURED else f"{b[0]}:{b[1]}"
                                                         for b in STORED_BOOKS), reason="combination")
    return ident


def list_open_lots(conn: Connection, entity_id: int, day: date, method: str = "configured",
                   pool: str = "configured") -> list[dict[str, Any]]:
    """The open lots of a stored book at the close of ``day``."""
    ident = _stored(method, pool)
    rows = conn.execute(sa.text(
        """
        SELECT l.*, a.symbol AS asset, ac.name AS account FROM pnl_open_lots l
        JOIN assets a ON a.id = l.asset_id LEFT JOIN accounts ac ON ac.id = l.account_id
        WHERE l.entity_id = :e AND l.method = :m AND l.pool = :p AND l.date = :d
        ORDER BY l.pool_account_id, a.symbol, l.seq
        """), dict(e=entity_id, m=ident[0], p=ident[1], d=day)).mappings()
    return [{"date": r["date"].isoformat(), "pool_account_id": r["pool_account_id"], "asset": r["asset"],
             "asset_id": r["asset_id"], "account": r["account"], "account_id": r["account_id"],
             "lot_leg_id": r["lot_leg_id"], "acquired_at": iso_utc(r["acquired_at"]),
             "quantity": to_text(r["quantity"]), "cost_basis": to_text(r["cost_basis"]), "flagged": r["flagged"]}
            for r in rows]


_MOVES = ("acquired", "disposed", "transferred_in", "transferred_out")


def rollforward(conn: Connection, entity_id: int, date_from: date, date_to: date, method: str = "configured",
                pool: str = "configured") -> list[dict[str, Any]]:
    """Per pool (account or universal) and asset: opening + acquired - disposed + in - out = closing,
    in quantity and basis, from the stored daily figures. A pool that does not tie out raises ``TieOutError``."""
    ident = _stored(method, pool)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    params = dict(e=entity_id, m=ident[0], p=ident[1], s=date_from, t=date_to)
    sums = ", ".join(f"coalesce(sum({m}_{part}) FILTER (WHERE date BETWEEN :s AND :t), 0) AS {m}_{part}"
                     for m in _MOVES for part in ("quantity", "basis"))
    rows = conn.execute(sa.text(
        f"""
        WITH book AS (SELECT * FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date <= :t),
        opening AS (SELECT DISTINCT ON (pool_account_id, asset_id) pool_account_id, asset_id, quantity, cost_basis
                    FROM book WHERE date < :s ORDER BY pool_account_id, asset_id, date DESC),
        closing AS (SELECT DISTINCT ON (pool_account_id, asset_id) pool_account_id, asset_id, quantity, cost_basis, date
                    FROM book ORDER BY pool_account_id, asset_id, date DESC),
        moves AS (SELECT pool_account_id, asset_id, {sums},
                         coalesce(sum(shortfall_quantity) FILTER (WHERE date BETWEEN :s AND :t), 0) AS shortfall_quantity,
                         bool_or(date BETWEEN :s AND :t) AS in_range
                  FROM book GROUP BY 1, 2)
        SELECT m.*, coalesce(o.quantity, 0) AS opening_quantity, coalesce(o.cost_basis, 0) AS opening_basis,
               CASE WHEN c.date >= :s THEN c.quantity ELSE coalesce(o.quantity, 0) END AS closing_quantity,
               CASE WHEN c.date >= :s THEN c.cost_basis ELSE coalesce(o.cost_basis, 0) END AS closing_basis,
               a.symbol AS asset, ac.name AS account
        FROM moves m
        LEFT JOIN opening o USING (pool_account_id, asset_id) LEFT JOIN closing c USING (pool_account_id, asset_id)
        JOIN assets a ON a.id = m.asset_id LEFT JOIN accounts ac ON ac.id = m.pool_account_id
        ORDER BY m.pool_account_id, a.symbol
        """), params).mappings().all()
    result = []
    for r in rows:
        if not r["in_range"] and not r["opening_quantity"]:
            continue
        q = r["opening_quantity"] + r["acquired_quantity"] - r["disposed_quantity"] + r["transferred_in_quantity"] \
            - r["transferred_out_quantity"]
        b = r["opening_basis"] + r["acquired_basis"] - r["disposed_basis"] + r["transferred_in_basis"] \
            - r["transferred_out_basis"]
        if q != r["closing_quantity"] or b != r["closing_basis"]:
            raise TieOutError(f"roll-forward of {ident[0]}:{ident[1]}, pool {r['pool_account_id']}, {r['asset']} "
                              f"{date_from}..{date_to} does not tie out: computed closing {q} / {b}, stored "
                              f"{r['closing_quantity']} / {r['closing_basis']} (quantity / basis)")
        row = {"pool_account_id": r["pool_account_id"], "account": r["account"] if r["pool_account_id"] else None,
               "asset": r["asset"], "asset_id": r["asset_id"]}
        for name in ("opening", *_MOVES, "closing"):
            row[f"{name}_quantity"] = to_text(r[f"{name}_quantity"])
            row[f"{name}_basis"] = to_text(r[f"{name}_basis"])
        row["shortfall_quantity"] = to_text(r["shortfall_quantity"])
        result.append(row)
    return result


def list_shortfalls(conn: Connection, entity_id: int, date_from: date, date_to: date, method: str = "configured",
                    pool: str = "configured") -> list[dict[str, Any]]:
    """Disposals of a stored book that took more than the pool held (the excess has zero basis, flagged)."""
    ident = _stored(method, pool)
    rows = conn.execute(sa.text(
        """
        SELECT d.date, d.leg_id, d.kind, d.quantity, d.shortfall_quantity, d.proceeds, a.symbol AS asset, ac.name AS account
        FROM pnl_disposals d JOIN assets a ON a.id = d.asset_id JOIN accounts ac ON ac.id = d.account_id
        WHERE d.entity_id = :e AND d.method = :m AND d.pool = :p AND d.date BETWEEN :s AND :t AND d.shortfall_quantity > 0
        ORDER BY d.date, d.leg_id
        """), dict(e=entity_id, m=ident[0], p=ident[1], s=date_from, t=date_to)).mappings()
    return [{"date": r["date"].isoformat(), "leg_id": r["leg_id"], "account": r["account"], "asset": r["asset"],
             "kind": r["kind"], "quantity": to_text(r["quantity"]), "shortfall_quantity": to_text(r["shortfall_quantity"]),
             "proceeds": to_text(r["proceeds"])} for r in rows]


MISSING_PRICE_EFFECTS = {
    "acquisition": "lot basis zero (flagged): later gains overstated",
    "disposal": "proceeds zero: realized gain understated",
    "fee": "fee in a third asset valued at zero: the trade's basis or proceeds miss it",
    "position": "no market value, no unrealized PnL",
}


def list_missing_prices(conn: Connection, entity_id: int, date_from: date, date_to: date, method: str = "configured",
                        pool: str = "configured") -> list[dict[str, Any]]:
    """The missing-price items a close stored for a book (``pnl_missing_prices``): every acquisition, disposal, fee or
    open position of [date_from, date_to] that needed a fair value and had none, with the figure it leaves out."""
    ident = _stored(method, pool)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    rows = conn.execute(sa.text(
        """
        SELECT m.date, m.what, m.leg_id, m.at, m.quantity, m.asset_id, a.symbol AS asset, m.account_id, ac.name AS account,
               m.pool_account_id
        FROM pnl_missing_prices m JOIN assets a ON a.id = m.asset_id LEFT JOIN accounts ac ON ac.id = m.account_id
        WHERE m.entity_id = :e AND m.method = :m AND m.pool = :p AND m.date BETWEEN :s AND :t
        ORDER BY m.date, a.symbol, m.what, m.leg_id NULLS LAST, m.pool_account_id
        """), dict(e=entity_id, m=ident[0], p=ident[1], s=date_from, t=date_to)).mappings()
    return [{"date": r["date"].isoformat(), "what": r["what"], "asset": r["asset"], "asset_id": r["asset_id"],
             "account": r["account"], "account_id": r["account_id"] or None, "pool_account_id": r["pool_account_id"],
             "leg_id": r["leg_id"], "at": iso_utc(r["at"]), "quantity": to_text(r["quantity"]),
             "effect": MISSING_PRICE_EFFECTS[r["what"]]} for r in rows]


BREAKDOWNS = ("asset", "account", "term", "year", "quarter", "month", "day")


def realized_breakdown(conn: Connection, entity: Entity, date_from: date, date_to: date, by: str,
                       method: str = "fifo", pool: str = "universal",
                       currency: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Realized PnL of a book over [date_from, date_to] by asset, account, term (short/long) or period (year,
    quarter, month, day), in the reporting currency: (rows, currency keys)."""
    if by not in BREAKDOWNS:
        raise ReportParameterError("by", f"unknown breakdown {by!r}; allowed: {', '.join(BREAKDOWNS)}")
    ident = parse_book_ident(method, pool)
    code = reporting_currency(entity, currency)
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from}) is after to ({date_to})", reason="combination")
    fx = None
    if ident in STORED_BOOKS and code == BASE_CURRENCY:
        rows = conn.execute(sa.text(
            "SELECT date, account_id, asset_id, proceeds, cost_basis, realized_gain, short_term_gain, long_term_gain"
            " FROM pnl_disposals WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t"),
            dict(e=entity.id, m=ident[0], p=ident[1], s=date_from, t=date_to)).all()
    else:
        book, fx = compute_book_from_db(conn, entity, ident, date_to, code)
        rows = [d for d in book.disposals if date_from <= d.date <= date_to]
    extra = currency_keys(code, fx)
    # every row has every dimension's key, null but the one broken down by
    blank = {**dict.fromkeys(BREAKDOWNS), "proceeds": None, "cost_basis": None, "disposals": None}
    if by == "term":  # a disposal's gain splits into its short- and long-term parts
        return [{**blank, "term": "short", "realized_gain": to_text(sum((d.short_term_gain for d in rows), ZERO)),
                 "currency": code},
                {**blank, "term": "long", "realized_gain": to_text(sum((d.long_term_gain for d in rows), ZERO)),
                 "currency": code}], extra
    names = _names(conn, entity.id)
    groups: dict[str, list[Decimal]] = {}
    for d in rows:
        key = {"asset": lambda: names["assets"].get(d.asset_id, str(d.asset_id)),
               "account": lambda: names["accounts"].get(d.account_id, str(d.account_id)),
               "year": lambda: d.date.strftime("%Y"), "quarter": lambda: f"{d.date.year}-Q{(d.date.month - 1) // 3 + 1}",
               "month": lambda: d.date.strftime("%Y-%m"), "day": lambda: d.date.isoformat()}[by]()
        g = groups.setdefault(key, [ZERO] * 4)
        g[0] += d.realized_gain
        g[1] += d.proceeds
        g[2] += d.cost_basis
        g[3] += 1
    return [{**blank, by: k, "realized_gain": to_text(v[0]), "proceeds": to_text(v[1]), "cost_basis": to_text(v[2]),
             "disposals": int(v[3]), "currency": code} for k, v in sorted(groups.items())], extra


# ---------------------------------------------------------------- unrealized PnL


def unrealized(conn: Connection, entity: Entity, day: date, method: str = "configured", pool: str = "configured",
               currency: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per pool and asset at the close of ``day``: quantity, cost basis, close price, market value and unrealized
    gain of a book, in the reporting currency: (rows, currency keys). Stored books in USD come from the close's
    ``pnl_daily``; anything else is computed on demand (prices at the day's cutoff, rates at that instant)."""
    ident = parse_book_ident(method, pool)
    code = reporting_currency(entity, currency)
    names = _names(conn, entity.id)
    stored = ident in STORED_BOOKS and code == BASE_CURRENCY and conn.execute(sa.text(
        "SELECT 1 FROM closes WHERE entity_id = :e AND date = :d"), dict(e=entity.id, d=day)).first() is not None
    if stored:
        fx = None
        pools = conn.execute(sa.text(
            "SELECT pool_account_id, asset_id, quantity, cost_basis, close_price_usd, market_value,"
            " unrealized_gain FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date = :d"
            " AND quantity <> 0"), dict(e=entity.id, m=ident[0], p=ident[1], d=day)).all()
    else:
        book, fx = compute_book_from_db(conn, entity, ident, day, code, report_day=day)
        pools = [p for p in book.days if p.date == day and p.quantity != 0]
    rows = [{"pool_account_id": p.pool_account_id,
             "account": names["accounts"].get(p.pool_account_id) if p.pool_account_id else None,
             "asset": names["assets"].get(p.asset_id, str(p.asset_id)), "asset_id": p.asset_id,
             "quantity": to_text(p.quantity), "cost_basis": to_text(p.cost_basis),
             "close_price": to_text(p.close_price_usd),
             "market_value": to_text(p.market_value), "unrealized_gain": to_text(p.unrealized_gain), "currency": code,
             "priced": p.close_price_usd is not None}
            for p in pools]
    rows.sort(key=lambda r: (r["pool_account_id"], r["asset"]))
    return rows, {"date": day.isoformat(), **currency_keys(code, fx)}


# ---------------------------------------------------------------- unverified assets


def list_excluded_assets(conn: Connection, entity: Entity) -> list[dict[str, Any]]:
    """The unverified assets the entity holds or moved: left out of every PnL book until approved
    (``coinfrs asset approve``). They still appear in positions."""
    rows = conn.execute(sa.text(
        """
        SELECT a.id AS asset_id, a.symbol AS asset, a.name, count(*) AS legs, count(DISTINCT l.account_id) AS accounts,
               min(l.close_date) AS first_date, max(l.close_date) AS last_date, sum(l.quantity) AS net_quantity,
               (SELECT string_agg(al.source || ':' || al.alias, ', ' ORDER BY al.source, al.alias)
                FROM asset_aliases al WHERE al.asset_id = a.id) AS aliases
        FROM transactions l JOIN assets a ON a.id = l.asset_id
        WHERE l.entity_id = :e AND a.unverified
        GROUP BY a.id, a.symbol, a.name ORDER BY a.symbol
        """), dict(e=entity.id)).mappings()
    return [{"asset_id": r["asset_id"], "asset": r["asset"], "name": r["name"], "aliases": r["aliases"],
             "legs": r["legs"], "accounts": r["accounts"], "first_date": r["first_date"].isoformat(),
             "last_date": r["last_date"].isoformat(), "net_quantity": to_text(r["net_quantity"]),
             "reason": "unverified: not in the asset registry (possible spam); approve it to include it in PnL"}
            for r in rows]
