"""The asset registry: one canonical id per economic asset, with per-source aliases.

Unknown symbols are kept and flagged ``unverified`` (never dropped), with 18 decimals until
someone sets the right number. The cost-basis engine leaves unverified assets out of every PnL
book (they stay in positions) until someone approves them (``approve_asset``,
``coinfrs asset approve``), which rebooks from the asset's first leg.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from reconciliation.staleness import mark_stale

from warehouse.schema import asset_aliases, assets

# symbol: (name, decimals, is_fiat)
KNOWN_ASSETS: dict[str, tuple[str, int, bool]] = {
    "USD": ("US Dollar", 2, True),
    "EUR": ("Euro", 2, True),
    "GBP": ("Pound Sterling", 2, True),
    "CHF": ("Swiss Franc", 2, True),
    "BTC": ("Bitcoin", 8, False),
    "ETH": ("Ether", 18, False),
    "SOL": ("Solana", 9, False),
    "USDC": ("USD Coin", 6, False),
    "USDT": ("Tether USD", 6, False),
    "BNB": ("BNB", 18, False),
    "MATIC": ("Polygon", 18, False),
    "POL": ("Polygon Ecosystem Token", 18, False),
    "ARB": ("Arbitrum", 18, False),
    "DAI": ("Dai", 18, False),
    "XRP": ("XRP", 6, False),
    "ADA": ("Cardano", 6, False),
    "DOT": ("Polkadot", 10, False),
    "AVAX": ("Avalanche", 18, False),
    "LINK": ("Chainlink", 18, False),
}
UNKNOWN_DECIMALS = 18


def ensure_assets(conn: Connection, symbols: Iterable[str], *, source: str = "csv") -> dict[str, int]:
    """Ids of the given symbols (as aliases of ``source``), registering any not seen before."""
    wanted = sorted({s.strip().upper() for s in symbols if s and s.strip()})
    if not wanted:
        return {}
    # aliases a connector registered with register_token (chain:contract) already name their asset
    known = dict(conn.execute(sa.select(asset_aliases.c.alias, asset_aliases.c.asset_id).where(
        asset_aliases.c.source == source, asset_aliases.c.alias.in_(wanted))).all())
    if len(known) == len(wanted):
        return known
    missing = [w for w in wanted if w not in known]
    rows = []
    for symbol in missing:
        name, decimals, is_fiat = KNOWN_ASSETS.get(symbol, (None, UNKNOWN_DECIMALS, False))
        rows.append(dict(symbol=symbol, name=name, decimals=decimals, is_fiat=is_fiat,
                         unverified=symbol not in KNOWN_ASSETS))
    conn.execute(insert(assets).values(rows).on_conflict_do_nothing(index_elements=["symbol"]))
    ids = dict(conn.execute(sa.select(assets.c.symbol, assets.c.id).where(assets.c.symbol.in_(missing))).all())
    conn.execute(insert(asset_aliases).values([
        dict(asset_id=ids[s], source=source, alias=s) for s in missing
    ]).on_conflict_do_nothing(index_elements=["source", "alias"]))
    return dict(conn.execute(
        sa.select(asset_aliases.c.alias, asset_aliases.c.asset_id)
        .where(asset_aliases.c.source == source, asset_aliases.c.alias.in_(wanted))
    ).all())


def register_token(conn: Connection, *, source: str, alias: str, symbol: str, name: str | None, decimals: int | None,
                   verified: bool) -> int | None:
    """Register a token known by a non-symbol alias (e.g. ``ETHEREUM:0XA0B8...``) with metadata read from its contract.

    A verified token (listed in its chain's configuration) becomes an alias of the asset ``symbol`` (created with
    the contract's decimals if new). Any other token gets an asset of its own, ``SYMBOL (alias)``, flagged
    ``unverified`` so the cost-basis engine leaves it out until someone approves it (sets ``unverified`` false).
    An alias registered before keeps its asset. Returns the asset id.

    ``decimals`` None (the contract did not answer ``decimals()``): a verified token of a known asset takes the known
    asset's decimals; any other is not registered (None is returned): a number of decimals is never guessed.
    """
    alias = alias.strip().upper()
    existing = conn.execute(sa.select(asset_aliases.c.asset_id).where(
        asset_aliases.c.source == source, asset_aliases.c.alias == alias)).scalar_one_or_none()
    if existing is not None:
        return existing
    clean = "".join(ch for ch in symbol if ch.isprintable()).strip()[:32] or "?"
    asset_symbol = clean.upper() if verified else f"{clean} ({alias})"
    known = KNOWN_ASSETS.get(asset_symbol)
    if decimals is None:
        if known is None:
            return None
        decimals = known[1]
    conn.execute(insert(assets).values(
        symbol=asset_symbol, name=known[0] if known else name, decimals=decimals, is_fiat=False,
        unverified=not verified).on_conflict_do_nothing(index_elements=["symbol"]))
    asset_id = conn.execute(sa.select(assets.c.id).where(assets.c.symbol == asset_symbol)).scalar_one()
    conn.execute(insert(asset_aliases).values(asset_id=asset_id, source=source, alias=alias)
                 .on_conflict_do_nothing(index_elements=["source", "alias"]))
    return asset_id


class AssetNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ApprovedAsset:
    asset_id: int
    symbol: str
    was_unverified: bool
    first_leg_day: dict[int, date]  # entity id -> the close day of its first leg of the asset


def find_asset_id(conn: Connection, ref: str) -> int:
    """An asset by id, symbol or alias (``ethereum:0xa0b8...`` or a source's own alias, any case)."""
    text = ref.strip()
    if text.isdigit():
        found = conn.execute(sa.select(assets.c.id).where(assets.c.id == int(text))).scalar()
        if found is not None:
            return found
    found = conn.execute(sa.select(assets.c.id).where(sa.func.upper(assets.c.symbol) == text.upper())).scalar()
    if found is not None:
        return found
    source, _, alias = text.partition(":")
    matches = conn.execute(sa.select(asset_aliases.c.asset_id).distinct().where(sa.or_(
        asset_aliases.c.alias == text.upper(),
        sa.and_(sa.func.lower(asset_aliases.c.source) == source.lower(), asset_aliases.c.alias == alias.upper())))
    ).scalars().all()
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise AssetNotFound(f"{ref!r} names {len(matches)} assets (ids {', '.join(map(str, matches))}): give the id")
    raise AssetNotFound(f"no asset with id, symbol or alias {ref!r} (see `coinfrs pnl excluded --entity E`)")


def approve_asset(conn: Connection, ref: str) -> ApprovedAsset:
    """Mark an asset verified: from now on the cost-basis engine books its legs. Returns, per entity that has
    legs of it, the first day the books must be recomputed from."""
    asset_id = find_asset_id(conn, ref)
    row = conn.execute(sa.select(assets.c.symbol, assets.c.unverified).where(assets.c.id == asset_id)
                       .with_for_update()).one()
    conn.execute(sa.update(assets).where(assets.c.id == asset_id).values(unverified=False))
    first = dict(conn.execute(sa.text(
        "SELECT entity_id, min(close_date) FROM transactions WHERE asset_id = :a GROUP BY entity_id"),
        dict(a=asset_id)).all())
    if row.unverified:
        for entity_id, day in first.items():
            mark_stale(conn, entity_id, day, f"asset {row.symbol} approved: its legs enter the books")
    return ApprovedAsset(asset_id, row.symbol, bool(row.unverified), first)
