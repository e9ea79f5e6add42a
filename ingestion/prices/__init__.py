"""Price sources: CoinGecko (REST over requests), exchange candles (ccxt ``fetch_ohlcv``) and manual CSV files.

Connectors only fetch and parse (exact decimals, never floats); ``ingestion.prices.service`` caches what
they return in the ``prices`` table with its provenance, and ``transforms.prices`` chooses among sources.
"""

from ingestion.prices.retry import PriceSourceError, TransientSourceError

SOURCE_MANUAL = "manual"
SOURCE_COINGECKO = "coingecko"
SOURCE_LEDGER = "ledger"
EXCHANGE_PREFIX = "exchange:"


def exchange_source(exchange_id: str) -> str:
    return f"{EXCHANGE_PREFIX}{exchange_id}"


__all__ = ["PriceSourceError", "TransientSourceError", "SOURCE_MANUAL", "SOURCE_COINGECKO", "SOURCE_LEDGER",
           "EXCHANGE_PREFIX", "exchange_source"]
