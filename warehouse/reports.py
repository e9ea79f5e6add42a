"""Read-side reports over the warehouse, shared by the CLI and the read API.

Plain typed functions: the database arrives as a SQLAlchemy ``Connection``; nothing here imports
FastAPI or Dagster, so the CLI and the API print the same figures from the same queries.

Every function is scoped to one entity (``entity_id``): a row of another entity is never returned.
Money and quantities come back as exact decimal text (``warehouse.numbers.to_text``), never floats;
dates as ``YYYY-MM-DD``; timestamps as ISO 8601 in UTC (``2024-01-31T23:59:59Z``).

Bad arguments raise ``ReportParameterError`` (a ``ValueError``) naming the offending field.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.calendar import cutoff_of
from warehouse.driver_rows import driver_rows
from warehouse.entities import EntityNotFound
from warehouse.numbers import to_text
from warehouse.schema import (
    BREAK_STATUSES,
    accounts,
    assets,
    break_events,
    breaks,
    closes,
    entities,
    positions,
    raw_records,
    source_outages,
)

PNL_METHODS: tuple[str, ...] = ("fifo", "configured")
"""Methods with disposals stored by the close: the FIFO reference books and the entity's configured book
(method and pool ``configured``). Other methods are computed on demand (``transforms.pnl_reports``)."""

PNL_POOLS: tuple[str, ...] = ("universal", "account", "configured")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ReportParameterError(ValueError):
    """A report argument that cannot be used; ``field`` names it (as the API's query parameter).

    ``reason`` says why, so the API can answer with the right status: ``invalid`` (the value itself is wrong:
    400), ``combination`` (each value is valid but not together, e.g. from after to: 422), ``not_found`` (it names
    something the entity does not have: 404), ``conflict`` (the stored data cannot answer it yet: 409)."""

    REASONS = ("invalid", "combination", "not_found", "conflict")

    def __init__(self, field: str, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        assert reason in self.REASONS, reason
        self.field = field
        self.message = message
        self.reason = reason


# ---------------------------------------------------------------- formatting helpers


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix; naive values are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def sql_decimal_text(expression: str) -> str:
    """SQL of ``expression`` (a NUMERIC) as ``to_text`` writes it: plain digits, no trailing zeros, ``0`` for
    zero, null for null. PostgreSQL formats it, so a page of rows costs no ``Decimal`` round trip in Python."""
    return f"trim_scale({expression})::text"


def sql_iso_utc(expression: str) -> str:
    """SQL of ``expression`` (a TIMESTAMPTZ) as ``iso_utc`` writes it: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC
    (microseconds only when there are some, as Python's ``isoformat``), null for null."""
    utc = f"({expression} AT TIME ZONE 'UTC')"
    return (f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN extract(microseconds FROM {utc})::bigint "
            f"% 1000000 = 0 THEN '' ELSE to_char({utc}, '.US') END || 'Z')")


def iso_date(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value: Decimal | None) -> str | None:
    return to_text(value)


def _check_range(date_from: date, date_to: date) -> None:
    if date_from > date_to:
        raise ReportParameterError("from", f"from ({date_from.isoformat()}) is after to ({date_to.isoformat()})",
                                  reason="combination")


# ---------------------------------------------------------------- realized PnL


def realized_pnl_summary(
    conn: Connection,
    entity_id: int,
    date_from: date,
    date_to: date,
    method: str = "fifo",
    pool: str = "universal",
) -> dict[str, Any]:
    """Realized PnL over ``[date_from, date_to]`` (inclusive) for one cost-basis method and pool.

    Totals are summed by PostgreSQL over ``NUMERIC`` (exact) across every disposal of the period,
    sales and fee disposals alike. ``disposals`` counts all of them, ``fee_disposals`` the fee ones,
    ``shortfall_quantity_disposals`` those that disposed more than the pool held (zero basis, flagged).
    """
    method = (method or "").strip().lower()
    pool = (pool or "").strip().lower()
    if method == "configured":  # the entity's configured book has its own pool name
        pool = "configured"
    if method not in PNL_METHODS:
        raise ReportParameterError("method", f"unknown cost-basis method {method!r}; allowed: {', '.join(PNL_METHODS)}")
    if pool not in PNL_POOLS:
        raise ReportParameterError("pool", f"unknown pool {pool!r}; allowed: {', '.join(PNL_POOLS)}")
    _check_range(date_from, date_to)
    row = conn.execute(_REALIZED_SUMMARY, dict(e=entity_id, m=method, p=pool, s=date_from, t=date_to)).one()
    if row.entity is None:
        raise EntityNotFound(entity_id)
    return {"entity": row.entity, "from": date_from.isoformat(), "to": date_to.isoformat(), "method": method,
            "pool": pool, **{key: row._mapping[key] for key in _REALIZED_FIGURES},
            "disposals": row.disposals, "fee_disposals": row.fee_disposals,
            "shortfall_quantity_disposals": row.shortfall_quantity_disposals}


_REALIZED_FIGURES = ("proceeds", "cost_basis", "realized_gain", "short_term_gain", "long_term_gain")
_REALIZED_SUMMARY = sa.text(f"""
    SELECT (SELECT name FROM entities WHERE id = :e) AS entity,
           {", ".join(f"{sql_decimal_text(f'coalesce(sum({name}), 0)')} AS {name}" for name in _REALIZED_FIGURES)},
           coalesce(sum(disposals), 0)::bigint AS disposals, coalesce(sum(fee_disposals), 0)::bigint AS fee_disposals,
           coalesce(sum(shortfall_quantity_disposals), 0)::bigint AS shortfall_quantity_disposals
    FROM pnl_disposal_days WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t""")
"""One statement: the entity's name and the period's exact sums, formatted by PostgreSQL, from the per-day sums of
the disposals (``pnl_disposal_days``, kept by triggers on ``pnl_disposals``: migration 0031): a month is 30 rows."""


# ---------------------------------------------------------------- reconciliation breaks


def list_breaks(conn: Connection, entity_id: int, date_from: date, date_to: date, *,
                status: str | None = None, include_resolved: bool = False) -> list[dict[str, Any]]:
    """Completeness breaks with ``date`` in ``[date_from, date_to]``, by date, account, asset, each with its
    ``history`` (``break_events``, oldest first). The breaks that still stand (open, acknowledged, adjusted) unless
    ``include_resolved`` (what `recon breaks` and the API list: a resolved break stays listed, with why), or only
    those of ``status`` (one of ``BREAK_STATUSES``)."""
    _check_range(date_from, date_to)
    b = breaks.c
    conditions = [b.entity_id == entity_id, b.date >= date_from, b.date <= date_to]
    if status is not None and status.strip():
        wanted = status.strip().lower()
        if wanted not in BREAK_STATUSES:
            raise ReportParameterError("status", f"unknown break status {status.strip()!r}; allowed: "
                                                 f"{', '.join(BREAK_STATUSES)}")
        conditions.append(b.status == wanted)
    elif not include_resolved:
        conditions.append(b.status != "resolved")
    rows = conn.execute(
        sa.select(
            b.id, b.date, accounts.c.name.label("account"), accounts.c.account_type, accounts.c.sub_account,
            assets.c.symbol.label("asset"), b.expected, b.reported, b.difference, b.previous_reported,
            b.previous_reported_at, b.legs_sum, b.tolerance, b.reported_at, b.status, b.severity, b.leg_ids,
            b.account_id, b.asset_id, b.causes, b.seen_at, b.resolved_at, b.resolution, b.resolution_detail,
        )
        .select_from(breaks.join(accounts, accounts.c.id == b.account_id).join(assets, assets.c.id == b.asset_id))
        .where(*conditions)
        .order_by(b.date, accounts.c.name, accounts.c.account_type, accounts.c.sub_account, assets.c.symbol, b.id)
    ).all()
    history = _break_history(conn, [r.id for r in rows])
    return [
        {
            "id": r.id,
            "date": iso_date(r.date),
            "account": r.account,
            "account_id": r.account_id,
            "account_type": r.account_type,
            "sub_account": r.sub_account,
            "asset": r.asset,
            "asset_id": r.asset_id,
            "expected": _money(r.expected),
            "reported": _money(r.reported),
            "difference": _money(r.difference),
            "previous_reported": _money(r.previous_reported),
            "previous_reported_at": iso_utc(r.previous_reported_at),
            "legs_sum": _money(r.legs_sum),
            "tolerance": _money(r.tolerance),
            "reported_at": iso_utc(r.reported_at),
            "status": r.status,
            "severity": r.severity,
            "leg_ids": [int(x) for x in (r.leg_ids or [])],
            "causes": list(r.causes or []),
            "seen_at": iso_utc(r.seen_at),
            "resolved_at": iso_utc(r.resolved_at),
            "resolution": r.resolution,
            "resolution_detail": r.resolution_detail,
            "history": history.get(r.id, []),
        }
        for r in rows
    ]


def _break_history(conn: Connection, break_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The events of each break (``break_events``), oldest first; decimals as exact text."""
    if not break_ids:
        return {}
    e = break_events.c
    history: dict[int, list[dict[str, Any]]] = {}
    for r in conn.execute(sa.select(break_events).where(e.break_id.in_(break_ids)).order_by(e.break_id, e.id)):
        history.setdefault(r.break_id, []).append({
            "event": r.event, "at": iso_utc(r.created_at), "by": r.actor, "reason": r.reason,
            "previous_status": r.previous_status, "status": r.status,
            "previous_difference": _money(r.previous_difference), "difference": _money(r.difference),
            "run_id": r.run_id})
    return history


# ---------------------------------------------------------------- positions


def latest_position_date(conn: Connection, entity_id: int, on_or_before: date | None = None) -> date | None:
    """The most recent date with positions (on or before ``on_or_before`` when given)."""
    query = sa.select(sa.func.max(positions.c.date)).where(positions.c.entity_id == entity_id)
    if on_or_before is not None:
        query = query.where(positions.c.date <= on_or_before)
    return conn.execute(query).scalar()


_POSITIONS = f"""
    WITH p AS MATERIALIZED (SELECT * FROM positions WHERE entity_id = :entity_id AND date = :as_of),
    pr AS (SELECT DISTINCT ON (x.asset_id, x.ts) x.asset_id, x.ts, x.source, x.resolution
           FROM prices x JOIN (SELECT DISTINCT asset_id, price_at FROM p WHERE price_at IS NOT NULL) k
             ON x.entity_id = :entity_id AND x.asset_id = k.asset_id AND x.ts = k.price_at
           ORDER BY x.asset_id, x.ts, x.id DESC)
    SELECT p.date::text, ac.name, p.account_id, ac.account_type, ac.sub_account, a.symbol, p.asset_id,
           {sql_decimal_text("p.computed_quantity")}, {sql_decimal_text("p.reported_quantity")},
           {sql_iso_utc("p.reported_at")}, {sql_decimal_text("p.reported_quantity - p.computed_quantity")},
           {sql_decimal_text("p.close_price_usd")}, {sql_iso_utc("p.price_at")},
           {sql_decimal_text("p.computed_quantity * p.close_price_usd")}, pr.source, pr.resolution
    FROM p
    JOIN accounts ac ON ac.id = p.account_id
    JOIN assets a ON a.id = p.asset_id
    LEFT JOIN pr ON pr.asset_id = p.asset_id AND pr.ts = p.price_at
    WHERE (CAST(:account AS text) IS NULL OR ac.name = :account OR ac.id::text = :account)
      AND (CAST(:asset AS text) IS NULL OR upper(a.symbol) = upper(:asset))
    ORDER BY ac.name, ac.account_type, ac.sub_account, a.symbol"""
"""The positions of a day with their figures formatted by PostgreSQL and the provenance of each close price: the
latest stored price of that asset at that time, looked up once per (asset, time) of the day (``pr``), not once per
position (a lateral lookup per row was ~0.2 of the query's ~0.7 ms of database CPU on 100 positions)."""
_POSITION_KEYS = ("date", "account", "account_id", "account_type", "sub_account", "asset", "asset_id", "computed",
                  "reported", "reported_at", "difference", "close_price_usd", "price_at", "value_usd", "price_source",
                  "price_resolution")


def list_positions(conn: Connection, entity_id: int, as_of: date, *, account: str | None = None,
                   asset: str | None = None) -> list[dict[str, Any]]:
    """Positions of ``as_of``: computed (from legs) and reported (from snapshots) per account and asset, with the
    provenance of the close price (``price_source``, ``price_resolution``: the stored price at ``price_at``).

    ``difference`` = reported − computed (null without a report); ``value_usd`` = computed × close
    price (null without a price). Both are computed by PostgreSQL in exact ``NUMERIC``, and every figure is
    formatted there (``sql_decimal_text``, ``sql_iso_utc``): one query, no per-value work in Python.
    ``account``: an account name or id; ``asset``: a symbol (any case).
    """
    account = account.strip() if account and account.strip() else None
    asset = asset.strip() if asset and asset.strip() else None
    rows = driver_rows(conn, _POSITIONS, {"entity_id": entity_id, "as_of": as_of, "account": account, "asset": asset})
    return [dict(zip(_POSITION_KEYS, row)) for row in rows]


# ---------------------------------------------------------------- transactions (legs)


@dataclass(frozen=True)
class TransactionPage:
    """One page of legs in (ts, id) order; ``next_cursor`` is None on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    limit: int
    filters: dict[str, Any] = field(default_factory=dict)


def encode_cursor(ts: datetime | str, leg_id: int) -> str:
    """An opaque, url-safe cursor pointing just after the leg (ts, id); ``ts`` a datetime or its ``iso_utc`` text."""
    raw = json.dumps({"ts": iso_utc(ts) if isinstance(ts, datetime) else ts, "id": int(leg_id)},
                     separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    bad = ReportParameterError("cursor", "invalid cursor: pass back meta.next_cursor exactly as returned",
                               reason="combination")
    text = (cursor or "").strip()
    if not text or len(text) > 512:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        ts = datetime.fromisoformat(data["ts"].replace("Z", "+00:00"))
        leg_id = data["id"]
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise bad from None
    if ts.tzinfo is None or not isinstance(leg_id, int) or isinstance(leg_id, bool):
        raise bad
    return ts, leg_id


def resolve_account_ids(conn: Connection, entity_id: int, ref: str) -> list[int]:
    """Accounts of the entity called ``ref`` (every type/sub-account of that name), else the one numbered ``ref``."""
    text = ref.strip()
    ids = list(conn.execute(
        sa.select(accounts.c.id).where(accounts.c.entity_id == entity_id, accounts.c.name == text)
    ).scalars())
    if not ids and text.isdigit():
        ids = list(conn.execute(
            sa.select(accounts.c.id).where(accounts.c.entity_id == entity_id, accounts.c.id == int(text))
        ).scalars())
    if not ids:
        raise ReportParameterError("account", f"no account named or numbered {text!r} for this entity",
                                   reason="not_found")
    return ids


def resolve_asset_id(conn: Connection, symbol: str) -> int:
    text = symbol.strip()
    found = conn.execute(sa.select(assets.c.id).where(assets.c.symbol == text)).scalar()
    if found is None:
        matches = list(conn.execute(
            sa.select(assets.c.id).where(sa.func.upper(assets.c.symbol) == text.upper())
        ).scalars())
        if len(matches) == 1:
            found = matches[0]
    if found is None:
        raise ReportParameterError("asset", f"unknown asset {text!r}", reason="not_found")
    return found


TRANSFER_STATUSES: tuple[str, ...] = ("matched", "unmatched_out", "unmatched_in", "none")
"""A leg's transfer status: its ``transfers`` row's status, or ``none`` when the leg is no transfer leg."""


_LEG_SELECT = f"""
    SELECT t.id, {sql_iso_utc("t.ts")} AS ts, t.close_date::text AS date, t.account_id, ac.name AS account,
           ac.account_type, ac.sub_account, t.asset_id, a.symbol AS asset, {sql_decimal_text("t.quantity")} AS quantity,
           t.kind, t.group_id, t.leg_index, {sql_decimal_text("t.unit_price_usd")} AS unit_price_usd,
           {sql_decimal_text("t.usd_value")} AS usd_value, t.tx_hash, t.counterparty_account_id,
           cp.name AS counterparty_account, t.raw_record_id, t.is_adjustment,
           coalesce(o.status, i.status, 'none') AS transfer_status, coalesce(o.id, i.id) AS transfer_id,
           CASE WHEN o.id IS NOT NULL THEN o.in_leg_id ELSE i.out_leg_id END AS counterpart_leg_id,
           ev.event_type, ev.valued_by, {sql_decimal_text("ev.value_usd")} AS event_value_usd
    FROM transactions t
    JOIN accounts ac ON ac.id = t.account_id
    JOIN assets a ON a.id = t.asset_id
    LEFT JOIN accounts cp ON cp.id = t.counterparty_account_id
    LEFT JOIN transfers o ON o.out_leg_id = t.id
    LEFT JOIN transfers i ON i.in_leg_id = t.id AND o.id IS NULL
    LEFT JOIN events ev ON ev.entity_id = t.entity_id AND ev.group_id = t.group_id
    WHERE t.entity_id = :entity_id"""
"""The legs with account, asset, counterparty and transfer, every figure formatted by PostgreSQL. SQL text, not a
Core ``Select``: building and cache-keying that seven-table statement cost more per page than running it."""
_LEG_KEYS = ("id", "ts", "date", "account_id", "account", "account_type", "sub_account", "asset_id", "asset",
             "quantity", "kind", "group_id", "leg_index", "unit_price_usd", "usd_value", "tx_hash",
             "counterparty_account_id", "counterparty_account", "raw_record_id", "is_adjustment", "transfer_status",
             "transfer_id", "counterpart_leg_id", "event_type", "valued_by", "event_value_usd")


@dataclass(frozen=True)
class LegQuery:
    """Legs of one entity matching some filters, in (ts, id) order: ``_LEG_SELECT`` and its conditions."""

    conditions: tuple[str, ...]
    params: dict[str, Any]

    def statement(self, limit: int | None = None) -> sa.TextClause:
        sql = " AND ".join((_LEG_SELECT, *self.conditions)) + " ORDER BY t.ts, t.id"
        return sa.text(sql + (f" LIMIT {int(limit)}" if limit is not None else ""))

    def rows(self, conn: Connection, limit: int | None = None) -> sa.CursorResult:
        return conn.execute(self.statement(limit), self.params)

    def page_rows(self, conn: Connection, limit: int) -> list[tuple[Any, ...]]:
        """The first ``limit`` legs as tuples in ``_LEG_KEYS`` order (``driver_rows``: a page, not a stream)."""
        return driver_rows(conn, self.statement(limit).text, self.params)

    def count(self, conn: Connection) -> int:
        sql = " AND ".join((_LEG_SELECT, *self.conditions))
        return conn.execute(sa.text(f"SELECT count(*) FROM ({sql}) legs"), self.params).scalar_one()


def leg_dict(r: sa.Row | tuple[Any, ...]) -> dict[str, Any]:
    """One leg as served: PostgreSQL already wrote its figures as exact decimal text and ISO times
    (``_LEG_SELECT``), so this only pairs the row's values with their names."""
    return dict(zip(_LEG_KEYS, r))


def list_transactions(
    conn: Connection,
    entity_id: int,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    account: str | int | None = None,
    asset: str | None = None,
    kind: str | None = None,
    transfer_status: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    tz: ZoneInfo | None = None,
) -> TransactionPage:
    """Legs of the entity in (ts, id) order, one page at a time (keyset pagination).

    ``date_from``/``date_to`` filter on the leg's close date (inclusive); ``account`` is an account
    name (all its types and sub-accounts) or id; ``asset`` a symbol; ``kind`` a leg kind;
    ``transfer_status`` one of ``TRANSFER_STATUSES``. Pass the returned ``next_cursor`` back with the same
    filters for the next page. Exports stream every matching leg through ``transactions_query``.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ReportParameterError("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    query, filters = transactions_query(conn, entity_id, date_from=date_from, date_to=date_to, account=account,
                                        asset=asset, kind=kind, transfer_status=transfer_status, cursor=cursor,
                                        tz=tz)
    rows = query.page_rows(conn, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1][1], rows[-1][0]) if more else None  # the last leg's ts and id
    return TransactionPage(items=[leg_dict(r) for r in rows], next_cursor=next_cursor, limit=limit, filters=filters)


def transactions_query(
    conn: Connection,
    entity_id: int,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    account: str | int | None = None,
    asset: str | None = None,
    kind: str | None = None,
    transfer_status: str | None = None,
    cursor: str | None = None,
    tz: ZoneInfo | None = None,
) -> tuple[LegQuery, dict[str, Any]]:
    """The ordered (ts, id) query of ``list_transactions`` without a limit, and the filters it applied.
    Rows turn into dicts with ``leg_dict``. ``tz``: the entity's timezone (read from the entity if omitted)."""
    if date_from is not None and date_to is not None:
        _check_range(date_from, date_to)
    conditions: list[str] = []
    params: dict[str, Any] = {"entity_id": entity_id}
    filters: dict[str, Any] = {}
    # legs are selected by close day; the same bounds on ts let PostgreSQL walk the (entity_id, ts, id) index in
    # page order. A leg of close day D has cutoff(D-1) < ts <= cutoff(D), except an adjustment leg (late data for a
    # locked day, booked on the first open day D): its ts is in the locked day, before D. So the lower ts bound is
    # the earlier of cutoff(from - 1) and the first adjustment leg of the range (an InitPlan, evaluated once).
    zone = tz if tz is not None else ZoneInfo(conn.execute(
        sa.select(entities.c.timezone).where(entities.c.id == entity_id)).scalar() or "UTC")
    if date_from is not None:
        adjustments_to = " AND x.close_date <= :date_to" if date_to is not None else ""
        conditions.append(
            "t.close_date >= :date_from AND t.ts >= least(:after_cutoff, (SELECT min(x.ts) FROM transactions x"
            f" WHERE x.entity_id = :entity_id AND x.is_adjustment AND x.close_date >= :date_from{adjustments_to}))")
        params.update(date_from=date_from, after_cutoff=cutoff_of(date_from - timedelta(days=1), zone))
        filters["from"] = date_from.isoformat()
    if date_to is not None:
        conditions.append("t.close_date <= :date_to AND t.ts <= :cutoff")
        params.update(date_to=date_to, cutoff=cutoff_of(date_to, zone))
        filters["to"] = date_to.isoformat()
    if account is not None and str(account).strip():
        conditions.append("t.account_id = ANY(:account_ids)")
        params["account_ids"] = resolve_account_ids(conn, entity_id, str(account))
        filters["account"] = str(account).strip()
    if asset is not None and asset.strip():
        conditions.append("t.asset_id = :asset_id")
        params["asset_id"] = resolve_asset_id(conn, asset)
        filters["asset"] = asset.strip()
    if kind is not None and kind.strip():
        conditions.append("t.kind = :kind")
        params["kind"] = kind.strip()
        filters["kind"] = kind.strip()
    if transfer_status is not None and transfer_status.strip():
        status = transfer_status.strip().lower()
        if status not in TRANSFER_STATUSES:
            raise ReportParameterError("transfer_status", f"unknown transfer status {status!r}; allowed: "
                                                          f"{', '.join(TRANSFER_STATUSES)}")
        if status == "none":
            conditions.append("o.id IS NULL AND i.id IS NULL")
        else:
            conditions.append("coalesce(o.status, i.status) = :transfer_status")
            params["transfer_status"] = status
        filters["transfer_status"] = status
    if cursor:
        conditions.append("(t.ts, t.id) > (:after_ts, :after_id)")
        params["after_ts"], params["after_id"] = decode_cursor(cursor)
    return LegQuery(tuple(conditions), params), filters


def _exact_payload(text: str | None) -> Any:
    """A JSONB payload parsed without binary floats: fractional numbers keep their exact digits as text."""
    if text is None:
        return None
    return json.loads(text, parse_float=str)


def get_transaction(conn: Connection, entity_id: int, tx_id: int) -> dict[str, Any] | None:
    """One leg of the entity, with the other legs of its group and the raw staging record it came from.

    None when no leg of that id belongs to the entity. In ``raw_record.payload`` (the source's record,
    unedited) numbers with a fraction or exponent are given as exact text rather than binary floats.
    """
    row = conn.execute(sa.text(_LEG_SELECT + " AND t.id = :tx_id"), {"entity_id": entity_id, "tx_id": tx_id}).first()
    if row is None:
        return None
    leg = leg_dict(row)
    others = conn.execute(sa.text(_LEG_SELECT + " AND t.group_id = :group_id AND t.id <> :tx_id "
                                  "ORDER BY t.ts, t.leg_index, t.id"),
                          {"entity_id": entity_id, "group_id": row.group_id, "tx_id": tx_id})
    leg["group_legs"] = [leg_dict(r) for r in others]
    r = raw_records.c
    raw = conn.execute(
        sa.select(
            r.id, r.source, r.account, r.stream, r.source_raw_id,
            sa.cast(r.payload, sa.Text).label("payload_text"), r.payload_hash, r.occurred_at,
            r.file_name, r.line_number, r.file_hash, r.ingestion_run_id, r.ingested_at, r.processing_status,
        ).where(r.id == row.raw_record_id, r.entity_id == entity_id)
    ).first()
    leg["raw_record"] = None if raw is None else {
        "id": raw.id,
        "source": raw.source,
        "account": raw.account,
        "stream": raw.stream,
        "source_raw_id": raw.source_raw_id,
        "payload": _exact_payload(raw.payload_text),
        "payload_hash": raw.payload_hash,
        "occurred_at": iso_utc(raw.occurred_at),
        "file_name": raw.file_name,
        "line_number": raw.line_number,
        "file_hash": raw.file_hash,
        "ingestion_run_id": str(raw.ingestion_run_id) if raw.ingestion_run_id is not None else None,
        "ingested_at": iso_utc(raw.ingested_at),
        "processing_status": raw.processing_status,
    }
    return leg


# ---------------------------------------------------------------- accounts and closes


def list_accounts(conn: Connection, entity_id: int) -> list[dict[str, Any]]:
    a = accounts.c
    rows = conn.execute(
        sa.select(accounts).where(a.entity_id == entity_id).order_by(a.name, a.account_type, a.sub_account, a.id)
    )
    return [
        {
            "id": r.id,
            "name": r.name,
            "source": r.source,
            "account_type": r.account_type,
            "sub_account": r.sub_account,
            "chain": r.chain,
            "address": r.address,
            "label": r.label,
            "created_at": iso_utc(r.created_at),
        }
        for r in rows
    ]


def list_closes(
    conn: Connection, entity_id: int, date_from: date | None = None, date_to: date | None = None
) -> list[dict[str, Any]]:
    """Daily close records in date order (all of them when no range is given), each with the entity's configured
    book of that day and its realized gain and shortfalls, and the sources recorded as down that day (what makes
    a close ``partial``)."""
    if date_from is not None and date_to is not None:
        _check_range(date_from, date_to)
    c, o = closes.c, source_outages.c
    query = sa.select(closes).where(c.entity_id == entity_id)
    down_query = sa.select(o.date, o.source, o.stream, o.reason).where(o.entity_id == entity_id)
    if date_from is not None:
        query = query.where(c.date >= date_from)
        down_query = down_query.where(o.date >= date_from)
    if date_to is not None:
        query = query.where(c.date <= date_to)
        down_query = down_query.where(o.date <= date_to)
    down: dict[date, list[dict[str, str]]] = {}
    for r in conn.execute(down_query.order_by(o.date, o.source, o.stream)):
        down.setdefault(r.date, []).append({"source": r.source, "stream": r.stream, "reason": r.reason})
    return [
        {
            "date": iso_date(r.date),
            "status": r.status,
            "locked": bool(r.locked),
            "locked_at": iso_utc(r.locked_at),
            "legs": r.legs,
            "positions": r.positions,
            "breaks": r.breaks,
            "unmatched_transfers": r.unmatched_transfers,
            "realized_gain_universal": _money(r.realized_gain_universal),
            "realized_gain_account": _money(r.realized_gain_account),
            "unrealized_gain_universal": _money(r.unrealized_gain_universal),
            "book": r.book,
            "realized_gain_book": _money(r.realized_gain_book),
            "shortfalls": r.shortfalls,
            "missing_prices": r.missing_prices,
            "sources_down": down.get(r.date, []),
            "message": r.message,
            "run_id": r.run_id,
            "closed_at": iso_utc(r.closed_at),
        }
        for r in conn.execute(query.order_by(c.date))
    ]
