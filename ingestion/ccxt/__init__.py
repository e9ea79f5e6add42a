"""Any other exchange through ccxt's unified methods (Kraken, OKX, ...): ``client`` (the ccxt client, the shared
ccxt error classification and retries, read-only key probes), ``sync`` (paging per exchange, staging) and
``mapping`` (pure: ccxt's unified records -> legs, registered for every ccxt id)."""
