"""A manual price for every crypto asset of the registry's known list, for tests whose ledgers carry no prices: the
close values what it books (an unpriced figure makes a close `unpriced`, docs/cost-basis.md "No silent zero")."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from ingestion.csv_files import CsvFile
from ingestion.prices.manual import read_manual_prices, write_manual_prices
from transforms.asset_registry import KNOWN_ASSETS
from warehouse.entities import get_or_create_entity


def price_known_assets(engine, entity_name: str, day: date, extra: tuple[str, ...] = (),
                       price: Decimal = Decimal("100")) -> int:
    """One manual price (``price`` USD) per known crypto asset and ``extra`` symbol, at the close of ``day``."""
    symbols = [s for s, (_, _, fiat) in KNOWN_ASSETS.items() if not fiat] + list(extra)
    text = "asset,timestamp,price_usd,source_note\n" + "".join(f"{s},{day},{price},test price\n" for s in symbols)
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, entity_name)
        rows = read_manual_prices(CsvFile("test-prices.csv", text), timezone_name=entity.timezone)
        return write_manual_prices(conn, entity, "test-prices.csv", rows, threshold=Decimal("0.02")).rows
