"""Read models the API serves beside ``warehouse.reports``: the asset registry of an entity, accounts with
their last sync and freshness, and positions valued in the entity's reporting currency with the price's
provenance.

Plain typed functions over a ``Connection``; every one is scoped to one entity. Money as exact text.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.calendar import cutoff_of
from warehouse.entities import Entity
from warehouse.numbers import exact_context, quantize, to_text
from warehouse.reports import ReportParameterError, iso_utc, list_positions
from warehouse.schema import (
    accounts,
    asset_aliases,
    assets,
    balance_observations,
    entities,
    positions,
    prices,
    raw_balance_snapshots,
    raw_records,
    transactions,
)

# ---------------------------------------------------------------- assets


def _entity_asset_ids(entity_id: int) -> sa.Select:
    """Assets the entity holds or moved: in its legs (through its accounts) or its positions."""
    t, p = transactions.c, positions.c
    used_in_legs = sa.select(t.asset_id).select_from(transactions.join(accounts, accounts.c.id == t.account_id)) \
        .where(accounts.c.entity_id == entity_id, t.asset_id == assets.c.id).exists()
    used_in_positions = sa.select(p.asset_id).where(p.entity_id == entity_id, p.asset_id == assets.c.id).exists()
    return sa.select(assets.c.id).where(sa.or_(used_in_legs, used_in_positions))


def _asset_dicts(conn: Connection, query: sa.Select) -> list[dict[str, Any]]:
    rows = conn.execute(query.order_by(assets.c.symbol, assets.c.id)).all()
    ids = [r.id for r in rows]
    aliases: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    if ids:
        for a in conn.execute(sa.select(asset_aliases).where(asset_aliases.c.asset_id.in_(ids))
                              .order_by(asset_aliases.c.source, asset_aliases.c.alias)):
            aliases[a.asset_id].append({"source": a.source, "alias": a.alias})
    return [
        {"id": r.id, "symbol": r.symbol, "name": r.name, "decimals": r.decimals, "is_fiat": bool(r.is_fiat),
         "unverified": bool(r.unverified), "aliases": aliases[r.id], "created_at": iso_utc(r.created_at)}
        for r in rows
    ]


def list_assets(conn: Connection, entity_id: int, *, unverified: bool | None = None) -> list[dict[str, Any]]:
    """The registry entries the entity uses (legs or positions), with their per-source aliases.

    ``unverified=True``: only assets seen in a source but missing from the registry (kept and flagged).
    """
    query = sa.select(assets).where(assets.c.id.in_(_entity_asset_ids(entity_id)))
    if unverified is not None:
        query = query.where(assets.c.unverified.is_(unverified))
    return _asset_dicts(conn, query)


def get_asset(conn: Connection, entity_id: int, asset_id: int) -> dict[str, Any] | None:
    """One asset, if the entity uses it (else None: another entity's asset is not found)."""
    found = _asset_dicts(conn, sa.select(assets).where(assets.c.id == asset_id,
                                                       assets.c.id.in_(_entity_asset_ids(entity_id))))
    return found[0] if found else None


# ---------------------------------------------------------------- accounts with freshness


def _freshness(last_sync: datetime | None, now: datetime, stale_after: timedelta) -> tuple[str, int | None]:
    if last_sync is None:
        return "never", None
    age = now - last_sync
    return ("fresh" if age <= stale_after else "stale"), max(0, int(age.total_seconds()))


def list_accounts(conn: Connection, entity_id: int, *, now: datetime | None = None, stale_after_hours: int = 36,
                  account_id: int | None = None) -> list[dict[str, Any]]:
    """Accounts with ``last_sync_at`` (the latest staging of a record or balance snapshot of that account),
    ``last_balance_at`` (its latest balance observation), ``freshness`` (fresh | stale | never, stale past
    ``stale_after_hours``) and ``sync_age_seconds``."""
    now = now or datetime.now(timezone.utc)
    a, r, s = accounts.c, raw_records.c, raw_balance_snapshots.c
    last_record = (sa.select(sa.func.max(r.ingested_at))
                   .where(r.entity_id == entity_id, r.account == a.name).scalar_subquery())
    last_snapshot = (sa.select(sa.func.max(s.ingested_at))
                     .where(s.entity_id == entity_id, s.account == a.name, s.account_type == a.account_type,
                            s.sub_account == a.sub_account).scalar_subquery())
    last_balance = (sa.select(sa.func.max(balance_observations.c.observed_at))
                    .where(balance_observations.c.account_id == a.id).scalar_subquery())
    query = sa.select(accounts, last_record.label("last_record"), last_snapshot.label("last_snapshot"),
                      last_balance.label("last_balance")).where(a.entity_id == entity_id)
    if account_id is not None:
        query = query.where(a.id == account_id)
    items = []
    for row in conn.execute(query.order_by(a.name, a.account_type, a.sub_account, a.id)):
        synced = [v for v in (row.last_record, row.last_snapshot) if v is not None]
        last_sync = max(synced) if synced else None
        freshness, age = _freshness(last_sync, now, timedelta(hours=stale_after_hours))
        items.append({
            "id": row.id, "name": row.name, "source": row.source, "account_type": row.account_type,
            "sub_account": row.sub_account, "chain": row.chain, "address": row.address, "label": row.label,
            "created_at": iso_utc(row.created_at), "last_sync_at": iso_utc(last_sync),
            "last_balance_at": iso_utc(row.last_balance), "freshness": freshness, "sync_age_seconds": age,
        })
    return items


# ---------------------------------------------------------------- positions in the reporting currency


REPORTING_CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP")
"""Currencies an entity may report in: USD, and the fiat currencies whose USD rates the price service fetches
(``COINFRS_PRICE_CURRENCIES``)."""


def write_reporting_currency(conn: Connection, entity_id: int, currency: str) -> str:
    """Set the entity's reporting currency (what the API's positions are valued in by default); returns it.
    Raises ``ReportParameterError`` (field ``currency``) for a currency outside ``REPORTING_CURRENCIES``."""
    code = (currency or "").strip().upper()
    if code not in REPORTING_CURRENCIES:
        raise ReportParameterError("currency", f"unsupported reporting currency {currency!r}; allowed: "
                                               f"{', '.join(REPORTING_CURRENCIES)}")
    conn.execute(sa.update(entities).where(entities.c.id == entity_id).values(reporting_currency=code))
    return code


def fx_rate_days(conn: Connection, entity_id: int, currency: str) -> int:
    """Days with a stored USD rate of ``currency`` for the entity (USD: none are needed, 0)."""
    if currency == "USD":
        return 0
    return conn.execute(
        sa.select(sa.func.count(sa.distinct(sa.func.date(prices.c.ts))))
        .select_from(prices.join(assets, assets.c.id == prices.c.asset_id))
        .where(prices.c.entity_id == entity_id, assets.c.symbol == currency)
    ).scalar_one()



def _fx_rate(conn: Connection, entity: Entity, currency: str, day: date) -> tuple[Decimal, datetime | None, str] | None:
    """USD per one unit of ``currency`` at the day's cutoff: (rate, its time, its source); None if unknown."""
    if currency == "USD":
        return Decimal(1), None, "identity"
    cutoff = cutoff_of(day, entity.tz)
    row = conn.execute(
        sa.select(prices.c.price_usd, prices.c.ts, prices.c.source)
        .select_from(prices.join(assets, assets.c.id == prices.c.asset_id))
        .where(prices.c.entity_id == entity.id, assets.c.symbol == currency, prices.c.ts <= cutoff)
        .order_by(prices.c.ts.desc()).limit(1)
    ).first()
    if row is None or row.price_usd == 0:
        return None
    return row.price_usd, row.ts, row.source


def list_positions_valued(conn: Connection, entity: Entity, as_of: date, *, currency: str | None = None,
                          account: str | None = None, asset: str | None = None) -> list[dict[str, Any]]:
    """``reports.list_positions`` plus, per row, the value in ``currency`` (default: the entity's reporting
    currency) and the provenance of the price: the USD close price's source and resolution, and the FX rate
    (USD per unit of currency) with its time and source. ``value`` = computed × USD price ÷ FX rate, exact
    to 18 fractional digits; null without a price or without an FX rate (``valuation`` says which)."""
    currency = (currency or entity.reporting_currency or "USD").strip().upper()
    if not currency.isalnum() or len(currency) > 12:
        raise ReportParameterError("currency", f"invalid currency {currency!r}")
    fx = _fx_rate(conn, entity, currency, as_of)
    # a supported reporting currency without a stored rate yet values nothing (no_fx_rate); another code is
    # valid only when it is a known asset
    if currency not in REPORTING_CURRENCIES and fx is None and conn.execute(
            sa.select(assets.c.id).where(assets.c.symbol == currency)).first() is None:
        raise ReportParameterError("currency", f"unknown reporting currency {currency!r}", reason="not_found")
    rows = list_positions(conn, entity.id, as_of, account=account, asset=asset)
    fx_rate, fx_at, fx_source = (to_text(fx[0]), iso_utc(fx[1]), fx[2]) if fx is not None else (None, None, None)
    for r in rows:
        price_usd = r["close_price_usd"]
        value = price = None
        if price_usd is None:
            valuation = "no_price"
        elif fx is None:
            valuation = "no_fx_rate"
        elif currency == "USD":  # PostgreSQL already multiplied exactly (value_usd)
            price, value, valuation = price_usd, r["value_usd"], "valued"
        else:
            with exact_context():
                usd = Decimal(price_usd)
                price_d = quantize(usd / fx[0])
                value_d = quantize(Decimal(r["computed"]) * usd / fx[0])
            price, value, valuation = to_text(price_d), to_text(value_d), "valued"
        source, resolution = r.pop("price_source"), r.pop("price_resolution")
        r.update({
            "reporting_currency": currency,
            "price": price,
            "value": value,
            "valuation": valuation,
            "price_source": source if price_usd is not None else None,
            "price_resolution": resolution if price_usd is not None else None,
            "fx_rate_usd": fx_rate,
            "fx_at": fx_at,
            "fx_source": fx_source,
        })
    return rows
