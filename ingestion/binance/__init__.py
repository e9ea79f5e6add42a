"""Binance through the real ccxt client: ``client`` (ccxt.binance, read-only key check, a source's settings),
``sync`` (every stream staged with its cursor; balances, daily and rolled back) and ``mapping`` (pure: staged
record -> legs)."""
