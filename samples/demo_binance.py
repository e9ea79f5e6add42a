"""The demo's Binance account: a generated account history served by the local Binance server, in-process on a
free port, read through the normal path (``add_source``: read-only key checked, credentials stored encrypted;
``sync_source``: the real ccxt client, every stream, staging).

The API key is generated per run; the master key that encrypts it is generated once and kept in
``.coinfrs/demo-encryption.key`` (mode 0600, never printed). The server stops when the sync is done, so the
source is then disabled: its staged records stay and every later close uses them, but no later sync tries to
reach a server that is gone (``coinfrs source list`` shows it).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from ingestion.credentials import EnvKeyProvider, set_source_enabled
from ingestion.sources import add_source, sync_source
from samples.servers.binance_history import DUST_RATES, SYMBOLS, generate_history
from samples.servers.binance_server import BinanceServer, ServerState
from warehouse.entities import Entity
from warehouse.settings import get_settings

SOURCE_NAME = "Binance"
DAYS = 30
FAST = {"rate_limit_ms": 0.05, "timeout_ms": 5000, "retry_attempts": 4, "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.5}


def demo_key_provider(data_dir: Path) -> EnvKeyProvider:
    """The demo's master key: 32 random bytes made on the first demo and kept (0600) in the data folder."""
    path = data_dir / "demo-encryption.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(32)).decode())
    return EnvKeyProvider(path.read_text().strip())


def add_demo_binance_account(engine: Engine, entity: Entity, first: date, last: date,
                             log: Callable[[str], None] = print) -> None:
    """Serve a generated Binance account over the last month of ``first``..``last`` (fewer positions to close: the
    demo stays fast), add it to ``entity`` and sync it into staging."""
    first = max(first, last - timedelta(days=DAYS - 1))
    history = generate_history(first, last, seed=11, trades_per_day=(1, 3))
    state = ServerState(history)
    api_key, secret = secrets.token_hex(16), secrets.token_hex(32)
    state.add_key(api_key, secret)
    provider = demo_key_provider(get_settings().data_dir)
    server = BinanceServer(state).start()
    try:
        config = {**FAST, "api_url": server.base_url, "since": first.isoformat(), "until": last.isoformat()}
        info, _ = add_source(engine, entity, "binance", SOURCE_NAME, {"api_key": api_key, "api_secret": secret},
                             config, provider, replace=True)
        try:
            result = sync_source(engine, entity, info, provider)
        finally:
            with engine.begin() as conn:
                set_source_enabled(conn, info.id, False)
    finally:
        server.stop()
    if result.status != "succeeded":
        raise RuntimeError(f"the demo's Binance account could not be synced: {result.message}")
    with engine.begin() as conn:
        prices = write_demo_prices(conn, entity, first)
    stats = result.stats
    log(f"Binance demo account (local Binance server, real ccxt client): {sum(stats.records_seen.values())} records "
        f"in {len(stats.records_seen)} streams, {stats.snapshots_inserted} new balance snapshots, {stats.calls} calls")
    log(f"Binance demo prices: {prices} manual price(s) (BNB and XRP on {first - timedelta(days=1)}: the account's "
        "deposits come before its first BNB/USDT trade); USDT is priced by its peg, BNB then by the account's own "
        "BNB/USDT trades")


DEMO_PRICED = ("BNB", "XRP")  # what nothing else prices on arrival in the demo (BTC, ETH: the fund's own trades)


def demo_price_csv(first: date, symbols: tuple[str, ...] = DEMO_PRICED) -> str:
    """The local price source of the generated Binance account: the close of the day before it starts, at the history's
    starting prices (BTC, ETH, BNB against USDT; XRP and DOGE at their dust rate in BNB). USDT needs none (its peg);
    later days are priced by the account's own trades against USDT."""
    starting = {base: price for base, quote, price, _, _ in SYMBOLS.values() if quote == "USDT"}
    starting.update({asset: starting["BNB"] * rate for asset, rate in DUST_RATES.items()})
    day = first - timedelta(days=1)
    return "asset,timestamp,price_usd,source_note\n" + "".join(
        f"{symbol},{day},{starting[symbol]},demo: starting price of the local Binance server's history\n"
        for symbol in symbols)


def write_demo_prices(conn, entity: Entity, first: date, symbols: tuple[str, ...] = DEMO_PRICED) -> int:
    """Import ``demo_price_csv`` as manual prices of ``entity``; returns the rows."""
    from ingestion.csv_files import CsvFile
    from ingestion.prices.manual import read_manual_prices, write_manual_prices
    from ingestion.prices.settings import get_price_settings

    text = demo_price_csv(first, symbols)
    rows = read_manual_prices(CsvFile("demo-binance-prices.csv", text), timezone_name=entity.timezone)
    return write_manual_prices(conn, entity, "demo-binance-prices.csv", rows,
                               threshold=get_price_settings().price_disagreement_threshold).rows
