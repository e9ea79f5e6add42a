"""The order in which price sources value an asset at an instant: one configurable setting, read by every place
that chooses among prices (the engine's fair values, the positions' close prices, ``coinfrs prices show``, FX).

Sources: ``manual`` (a person's prices), ``trade`` (implied by the entity's own trades against fiat or a
stablecoin), ``peg`` (a stablecoin at 1 USD), ``coingecko``, ``exchange`` (candles, stored as ``exchange:<id>``).
The order is ``COINFRS_PRICE_SOURCE_ORDER`` (ingestion/prices/settings.py; default
``manual,trade,peg,coingecko,exchange``); sources left out of it follow in the default order. The ledger's own trade
prices (``ledger``) always come after them, then any other source.
"""

from __future__ import annotations

from collections.abc import Sequence

SOURCES: tuple[str, ...] = ("manual", "trade", "peg", "coingecko", "exchange")
DEFAULT_ORDER: tuple[str, ...] = SOURCES
LAST: tuple[str, ...] = ("ledger",)  # always after the configured sources


def parse_order(text: str | Sequence[str]) -> tuple[str, ...]:
    """A source order from ``'coingecko,manual'`` (or a sequence): each known source at most once; those left out
    follow in the default order. Raises ValueError naming the bad entry."""
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    seen: list[str] = []
    for item in items:
        if item not in SOURCES:
            raise ValueError(f"price source order: unknown source {item!r} (known: {', '.join(SOURCES)})")
        if item in seen:
            raise ValueError(f"price source order: {item!r} is listed twice")
        seen.append(item)
    return (*seen, *(s for s in DEFAULT_ORDER if s not in seen))


def configured_order() -> tuple[str, ...]:
    """The deployment's order (``COINFRS_PRICE_SOURCE_ORDER``), validated at start-up by the price settings."""
    from ingestion.prices.settings import get_price_settings  # settings import this module: import late

    return get_price_settings().source_order()


def precedence(order: Sequence[str] | None = None) -> tuple[str, ...]:
    """Every ranked source, best first: the order (configured when None), then ``ledger``."""
    return (*(order if order is not None else configured_order()), *LAST)


def category(source: str) -> str:
    """The ranked name of a stored source (``exchange:kraken`` -> ``exchange``)."""
    return "exchange" if source.startswith("exchange:") else source


def source_rank(source: str, order: Sequence[str] | None = None) -> int:
    """0 for the best source; unknown sources rank last."""
    ranked = precedence(order)
    name = category(source)
    return ranked.index(name) if name in ranked else len(ranked)


def rank_sql(order: Sequence[str] | None = None, column: str = "p.source") -> str:
    """The same rank as a SQL expression over ``column`` (the names come from the closed list above, never from a
    user's text)."""
    ranked = precedence(order)
    cases = " ".join(
        f"WHEN {column} LIKE 'exchange:%' THEN {i}" if name == "exchange" else f"WHEN {column} = '{name}' THEN {i}"
        for i, name in enumerate(ranked) if name in SOURCES or name in LAST)
    return f"CASE {cases} ELSE {len(ranked)} END"
