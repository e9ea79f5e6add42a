"""A local HTTP server on 127.0.0.1 that answers like CoinGecko (/api/v3/coins/{id}/market_chart/range) and
Binance spot (/api/v3/exchangeInfo, /api/v3/klines), for the real connector code (requests, ccxt).

Numbers are written into the JSON text exactly as given (CoinGecko sends JSON numbers, Binance strings).
Failures can be queued per path prefix (status and headers) to exercise retries.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAY_MS = 86_400_000


def ms(moment: datetime) -> int:
    return int((moment - EPOCH) // timedelta(milliseconds=1))


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class PriceServerState:
    charts: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)  # (coin, vs) -> [(ms, price)]
    klines: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # BTCUSDT -> [(open ms, close)]
    markets: dict[str, tuple[str, str]] = field(default_factory=dict)  # BTCUSDT -> (BTC, USDT)
    failures: deque = field(default_factory=deque)  # (path prefix, status, headers)
    api_key: str | None = None  # required in x-cg-demo-api-key when set
    requests: list[Recorded] = field(default_factory=list)

    def add_chart(self, coin: str, vs: str, points: list[tuple[datetime, str]]) -> None:
        self.charts[(coin, vs)] = [(ms(t), p) for t, p in points]

    def add_daily_klines(self, base: str, quote: str, closes: list[tuple[datetime, str]]) -> None:
        """``closes``: (candle open day at 00:00 UTC, close price text)."""
        self.markets[f"{base}{quote}"] = (base, quote)
        self.klines[f"{base}{quote}"] = [(ms(t), c) for t, c in closes]

    def fail(self, prefix: str, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self.failures.append((prefix, status, headers or {}))

    def paths(self, prefix: str = "") -> list[str]:
        return [r.path for r in self.requests if r.path.startswith(prefix)]


def _symbol_info(symbol: str, base: str, quote: str) -> dict:
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": quote,
        "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False, "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        ],
    }


def _handler(state: PriceServerState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            state.requests.append(Recorded(parts.path, query, {k.lower(): v for k, v in self.headers.items()}))
            for i, (prefix, status, headers) in enumerate(state.failures):
                if parts.path.startswith(prefix):
                    del state.failures[i]
                    return self._send(status, json.dumps({"status": {"error_code": status, "error_message": "injected"}}),
                                      headers)
            if parts.path.startswith("/api/v3/coins/"):
                return self._coingecko(parts.path, query)
            if parts.path == "/api/v3/exchangeInfo":
                symbols = [_symbol_info(s, b, q) for s, (b, q) in sorted(state.markets.items())]
                return self._send(200, json.dumps({"timezone": "UTC", "serverTime": 0, "rateLimits": [],
                                                   "exchangeFilters": [], "symbols": symbols}))
            if parts.path == "/api/v3/klines":
                return self._klines(query)
            return self._send(404, json.dumps({"error": "not found"}))

        def _coingecko(self, path: str, query: dict[str, str]) -> None:
            if state.api_key is not None and self.headers.get("x-cg-demo-api-key") != state.api_key:
                return self._send(401, json.dumps({"status": {"error_code": 10002, "error_message": "API Key Missing"}}))
            segments = path.split("/")  # ['', 'api', 'v3', 'coins', id, 'market_chart', 'range']
            if len(segments) != 7 or segments[5:] != ["market_chart", "range"]:
                return self._send(404, json.dumps({"error": "not found"}))
            points = state.charts.get((segments[4], query.get("vs_currency", "")))
            if points is None:
                return self._send(404, json.dumps({"error": "coin not found"}))
            lo, hi = int(query["from"]) * 1000, int(query["to"]) * 1000
            chosen = [f"[{t},{p}]" for t, p in points if lo <= t <= hi]
            body = "{\"prices\":[" + ",".join(chosen) + "],\"market_caps\":[],\"total_volumes\":[]}"
            return self._send(200, body)

        def _klines(self, query: dict[str, str]) -> None:
            rows = state.klines.get(query.get("symbol", ""))
            if rows is None:
                return self._send(400, json.dumps({"code": -1121, "msg": "Invalid symbol."}))
            start = int(query.get("startTime", "0"))
            limit = int(query.get("limit", "500"))
            chosen = [r for r in rows if r[0] >= start][:limit]
            body = [[t, c, c, c, c, "1.00000000", t + DAY_MS - 1, c, 1, "0.5", c, "0"] for t, c in chosen]
            return self._send(200, json.dumps(body))

    return Handler


class PriceServer:
    def __init__(self) -> None:
        self.state = PriceServerState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "PriceServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
