"""Former home of the exchange connectors, now ``ingestion/<source>/`` (binance, ccxt) and ``ingestion/sources.py``.

Only ``ingestion.exchanges.sources`` is left, re-exporting ``sync_entity_sources`` for ``assets/sources.py`` until
that module imports ``ingestion.sources`` itself; nothing else may import from here.
"""
