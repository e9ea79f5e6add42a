"""A local Binance REST server (stdlib ``http.server`` on 127.0.0.1, in a thread) for tests, benchmarks and the demo.

It speaks the parts of Binance's REST API the connector calls (GET, and signed POST with the parameters in the
body), with the response shapes Binance documents, and serves a generated account history
(samples/servers/binance_history.py). Signed endpoints are verified as
Binance does: the ``X-MBX-APIKEY`` header names a key, ``signature`` is the HMAC-SHA256 (hex) of the query
string before it with the key's secret, ``timestamp`` must be within ``recvWindow`` (default 5000 ms, at
most 60000) of the server's clock and not more than 1000 ms ahead of it.

Fault injection: ``failure_rate`` makes that share of requests fail with one of ``failure_kinds``
(``429`` with Retry-After, ``5xx``, ``timeout`` = a response slower than the client's timeout), chosen by a
seeded generator; ``next_faults`` forces faults on the next requests; ``banned`` answers 418 to everything;
``clock_offset_ms`` moves the server's clock (a client that does not resync gets -1021).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from samples.servers.local import LocalServer
from samples.servers.binance_history import SYMBOLS, BinanceHistory, margin_assets

READ_ONLY = {"ipRestrict": False, "createTime": 1698645219000, "enableReading": True, "enableWithdrawals": False,
             "enableInternalTransfer": False, "enableMargin": False, "enableFutures": False,
             "permitsUniversalTransfer": False, "enableVanillaOptions": False, "enableFixApiTrade": False,
             "enableFixReadOnly": True, "enableSpotAndMarginTrading": False, "enablePortfolioMarginTrading": False}
DAY_MS = 86_400_000


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


@dataclass
class ServerState:
    history: BinanceHistory
    keys: dict[str, tuple[str, dict]] = field(default_factory=dict)  # api key -> (secret, apiRestrictions)
    clock_offset_ms: int = 0
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = ("429", "5xx", "timeout")
    retry_after: str = "0"
    timeout_seconds: float = 0.6
    next_faults: list[str] = field(default_factory=list)
    banned: bool = False
    delay_seconds: float = 0.0  # added to every response (a slow exchange)
    is_master: bool = True  # False: the account has no sub-accounts to manage (sub-account endpoints refuse)
    seed: int = 1
    calls: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    rng: random.Random = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add_key(self, api_key: str, secret: str, **restrictions: bool) -> None:
        self.keys[api_key] = (secret, {**READ_ONLY, **restrictions})

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def pick_fault(self) -> str | None:
        with self.lock:
            if self.banned:
                return "418"
            if self.next_faults:
                return self.next_faults.pop(0)
            if self.failure_rate and self.rng.random() < self.failure_rate:
                return self.rng.choice(self.failure_kinds)
        return None


def _int(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")


def _window(params: dict[str, str], now: int, max_days: int, default_days: int) -> tuple[int, int]:
    end = _int(params, "endTime")
    start = _int(params, "startTime")
    if start is None and end is None:
        end, start = now, now - default_days * DAY_MS
    elif start is None:
        start = end - default_days * DAY_MS
    elif end is None:
        end = min(now, start + default_days * DAY_MS)
    if end - start > max_days * DAY_MS:
        raise ApiError(400, -1127, f"More than {max_days} days between startTime and endTime.")
    return start, end


class _Handler(BaseHTTPRequestHandler):
    server: "BinanceServer"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and went away
            pass

    def do_POST(self) -> None:  # noqa: N802
        """Binance's signed POST endpoints take their parameters (and signature) in the url-encoded body."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        split = urlsplit(self.path)
        self._answer(split.path, "&".join(p for p in (split.query, body) if p), POST_ROUTES)

    def do_GET(self) -> None:  # noqa: N802
        split = urlsplit(self.path)
        self._answer(split.path, split.query, ROUTES)

    def _answer(self, path: str, query: str, routes: dict) -> None:
        state = self.server.state
        state.calls[path] += 1
        if state.delay_seconds:
            time.sleep(state.delay_seconds)
        fault = state.pick_fault()
        if fault:
            state.faults[fault] += 1
            if fault == "418":  # Binance's documented -1003 texts (developers.binance.com, Error codes / LIMITS)
                return self._send(418, {"code": -1003, "msg": "Way too much request weight used; IP banned until "
                                        "1767225600000. Please use WebSocket Streams for live updates to avoid bans."},
                                  {"Retry-After": "3600"})
            if fault == "429":
                return self._send(429, {"code": -1003, "msg": "Too much request weight used; current limit is 6000 "
                                        "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to "
                                        "avoid polling the API."},
                                  {"Retry-After": state.retry_after})
            if fault == "5xx":
                return self._send(503, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})
            if fault == "timeout":
                time.sleep(state.timeout_seconds)
                return self._send(504, {"code": -1007, "msg": "Timeout waiting for response from backend server."})
            if fault == "-1021":
                return self._send(400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
        try:
            handler = routes.get(path)
            if handler is None:
                raise ApiError(404, -1000, f"Unknown path {path}")
            fn, signed = handler
            params = dict(parse_qsl(query, keep_blank_values=True))
            restrictions = self._verify(query, params) if signed else None
            body = fn(state, params, restrictions) if signed else fn(state, params)
            self._send(200, body)
        except ApiError as error:
            self._send(error.status, {"code": error.code, "msg": error.msg})

    def _verify(self, query: str, params: dict[str, str]) -> dict:
        state = self.server.state
        api_key = self.headers.get("X-MBX-APIKEY")
        if not api_key or api_key not in state.keys:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        secret, restrictions = state.keys[api_key]
        marker = "&signature="
        if marker not in query:
            raise ApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        total, signature = query.rsplit(marker, 1)
        expected = hmac.new(secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        timestamp = _int(params, "timestamp")
        if timestamp is None:
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        recv_window = _int(params, "recvWindow", 5000)
        if recv_window > 60_000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = state.now_ms()
        if not (timestamp < now + 1000 and now - timestamp <= recv_window):
            state.faults["-1021 (clock)"] += 1
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return restrictions


class BinanceServer(LocalServer):
    thread_name = "binance-server"

    def __init__(self, state: ServerState) -> None:
        super().__init__(state, _Handler)


# ------------------------------------------------------------------------------ endpoints


def _time(state: ServerState, params: dict) -> dict:
    return {"serverTime": state.now_ms()}


def _spot_exchange_info(state: ServerState, params: dict) -> dict:
    symbols = []
    for symbol, (base, quote, _, price_step, qty_step) in sorted(SYMBOLS.items()):
        symbols.append({
            "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": quote,
            "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": True,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": f"{price_step:f}", "maxPrice": "1000000.00000000",
                 "tickSize": f"{price_step:f}"},
                {"filterType": "LOT_SIZE", "minQty": f"{qty_step:f}", "maxQty": "9000.00000000", "stepSize": f"{qty_step:f}"},
            ],
            "permissions": [], "permissionSets": [["SPOT", "MARGIN"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]})
    return {"timezone": "UTC", "serverTime": state.now_ms(), "rateLimits": [], "exchangeFilters": [], "symbols": symbols}


def _futures_exchange_info(state: ServerState, params: dict) -> dict:
    return {"timezone": "UTC", "serverTime": state.now_ms(), "futuresType": "U_MARGINED", "rateLimits": [],
            "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [{
                "symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
                "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
                "underlyingType": "COIN", "underlyingSubType": ["PoW"], "triggerProtect": "0.0500",
                "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "filters": [{"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
                            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"}],
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"]}]}


def _api_restrictions(state: ServerState, params: dict, restrictions: dict) -> dict:
    return restrictions


def _my_trades(state: ServerState, params: dict, restrictions: dict) -> list:
    symbol = params.get("symbol")
    if not symbol:
        raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    if symbol not in SYMBOLS:
        raise ApiError(400, -1121, "Invalid symbol.")
    limit = _int(params, "limit", 500)
    if not 1 <= limit <= 1000:
        raise ApiError(400, -1100, "Illegal characters found in parameter 'limit'.")
    trades = state.history.trades.get(symbol, [])
    from_id = _int(params, "fromId")
    if from_id is not None:
        selected = [t for t in trades if t["id"] >= from_id]
    else:
        start, end = _int(params, "startTime", 0), _int(params, "endTime", state.now_ms())
        selected = [t for t in trades if start <= t["time"] <= end]
        if _int(params, "startTime") is None:  # most recent trades
            return selected[-limit:]
    return selected[:limit]


def _in_window(records: list[dict], key: str, start: int, end: int) -> list[dict]:
    return [r for r in records if start <= r[key] <= end]


# The JSON types Binance documents for each field of a deposit and a withdrawal record (Binance's own connector's
# models, generated from its OpenAPI spec: binance-sdk wallet/rest_api/models/deposit_history_response_inner.rs and
# withdraw_history_response_inner.rs). The server refuses to serve a record of another type: a test cannot hand the
# connector a shape Binance never sends.
DEPOSIT_TYPES = {"id": str, "amount": str, "coin": str, "network": str, "status": int, "address": str,
                 "addressTag": str, "txId": str, "insertTime": int, "completeTime": int, "transferType": int,
                 "confirmTimes": str, "unlockConfirm": int, "walletType": int, "travelRuleStatus": int}
WITHDRAWAL_TYPES = {"id": str, "amount": str, "transactionFee": str, "coin": str, "status": int, "address": str,
                    "txId": str, "applyTime": str, "network": str, "transferType": int, "withdrawOrderId": str,
                    "info": str, "confirmNo": int, "walletType": int, "txKey": str, "completeTime": str}


def checked(rows: list[dict], types: dict[str, type], endpoint: str) -> list[dict]:
    for row in rows:
        for name, value in row.items():
            expected = types.get(name)
            if expected is not None and (type(value) is not expected):
                raise ApiError(500, -1000, f"test history error: {endpoint} field {name!r} is {type(value).__name__} "
                                           f"{value!r}; Binance sends {expected.__name__}")
    return rows


def _deposits(state: ServerState, params: dict, restrictions: dict) -> list:
    start, end = _window(params, state.now_ms(), 90, 90)
    offset, limit = _int(params, "offset", 0), _int(params, "limit", 1000)
    rows = checked(_in_window(state.history.deposits, "insertTime", start, end), DEPOSIT_TYPES,
                   "/sapi/v1/capital/deposit/hisrec")
    rows.sort(key=lambda r: r["insertTime"], reverse=True)  # Binance: newest first
    return rows[offset:offset + limit]


def _apply_ms(record: dict) -> int:
    from datetime import datetime, timezone

    return int(datetime.strptime(record["applyTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() * 1000)


def _withdrawals(state: ServerState, params: dict, restrictions: dict) -> list:
    start, end = _window(params, state.now_ms(), 90, 90)
    offset, limit = _int(params, "offset", 0), _int(params, "limit", 1000)
    rows = checked([r for r in state.history.withdrawals if start <= _apply_ms(r) <= end], WITHDRAWAL_TYPES,
                   "/sapi/v1/capital/withdraw/history")
    rows.sort(key=_apply_ms, reverse=True)
    return rows[offset:offset + limit]


def _transfers(state: ServerState, params: dict, restrictions: dict) -> dict:
    kind = params.get("type")
    if not kind:
        raise ApiError(400, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
    start, end = _window(params, state.now_ms(), 180, 7)
    current, size = _int(params, "current", 1), _int(params, "size", 10)
    if size > 100:
        raise ApiError(400, -1100, "size must be <= 100")
    rows = [r for r in _in_window(state.history.transfers, "timestamp", start, end) if r["type"] == kind]
    for side, types in (("fromSymbol", ("ISOLATEDMARGIN_MARGIN", "ISOLATEDMARGIN_ISOLATEDMARGIN")),
                        ("toSymbol", ("MARGIN_ISOLATEDMARGIN", "ISOLATEDMARGIN_ISOLATEDMARGIN"))):
        if kind in types:  # Binance: fromSymbol/toSymbol must be sent with the isolated margin types
            if not params.get(side):
                raise ApiError(400, -1102, f"Mandatory parameter '{side}' was not sent, was empty/null, or malformed.")
            rows = [r for r in rows if r.get(side) == params[side]]
    rows.sort(key=lambda r: r["timestamp"], reverse=True)
    page = rows[(current - 1) * size:current * size]
    return {"total": len(rows), "rows": page} if rows else {"total": 0}


def _income(state: ServerState, params: dict, restrictions: dict) -> list:
    start, end = _window(params, state.now_ms(), 200, 7)
    limit = _int(params, "limit", 100)
    if limit > 1000:
        raise ApiError(400, -1100, "limit must be <= 1000")
    rows = _in_window(state.history.income, "time", start, end)
    if params.get("incomeType"):
        rows = [r for r in rows if r["incomeType"] == params["incomeType"]]
    return rows[:limit]


def _snapshot(state: ServerState, params: dict, restrictions: dict) -> dict:
    kind = params.get("type")
    if kind not in ("SPOT", "MARGIN", "FUTURES"):
        raise ApiError(400, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
    limit = _int(params, "limit", 7)
    if not 7 <= limit <= 30:
        raise ApiError(400, -1100, "limit must be between 7 and 30")
    start, end = _window(params, state.now_ms(), 30, 30)
    rows = _in_window(state.history.snapshots[kind], "updateTime", start, end)[:limit]
    return {"code": 200, "msg": "", "snapshotVos": rows}


def _converts(state: ServerState, params: dict, restrictions: dict) -> dict:
    if _int(params, "startTime") is None or _int(params, "endTime") is None:
        raise ApiError(400, -1102, "Mandatory parameter 'startTime' was not sent, was empty/null, or malformed.")
    start, end = _window(params, state.now_ms(), 30, 30)
    limit = _int(params, "limit", 100)
    if limit > 1000:
        raise ApiError(400, -1100, "limit must be <= 1000")
    rows = _in_window(state.history.converts, "createTime", start, end)
    return {"list": rows[:limit], "startTime": start, "endTime": end, "limit": limit, "moreData": len(rows) > limit}


def _dribblet(state: ServerState, params: dict, restrictions: dict) -> dict:
    start, end = _window(params, state.now_ms(), 90, 90)
    rows = sorted(_in_window(state.history.dust, "operateTime", start, end), key=lambda r: r["operateTime"], reverse=True)
    return {"total": len(rows), "userAssetDribblets": rows[:100]}


def _interest(state: ServerState, params: dict, restrictions: dict) -> dict:
    start, end = _window(params, state.now_ms(), 30, 7)
    current, size = _int(params, "current", 1), _int(params, "size", 10)
    if size > 100:
        raise ApiError(400, -1100, "size must be <= 100")
    rows = sorted([r for r in _in_window(state.history.interest, "interestAccuredTime", start, end)
                   if r.get("isolatedSymbol", "") == params.get("isolatedSymbol", "")],
                  key=lambda r: r["interestAccuredTime"], reverse=True)
    return {"rows": rows[(current - 1) * size:current * size], "total": len(rows)}


def _margin_trades(state: ServerState, params: dict, restrictions: dict) -> list:
    symbol = params.get("symbol")
    if not symbol:
        raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    if symbol not in SYMBOLS:
        raise ApiError(400, -1121, "Invalid symbol.")
    limit = _int(params, "limit", 500)
    if not 1 <= limit <= 1000:
        raise ApiError(400, -1100, "Illegal characters found in parameter 'limit'.")
    isolated = params.get("isIsolated", "FALSE")
    if isolated not in ("TRUE", "FALSE"):
        raise ApiError(400, -1100, "Illegal characters found in parameter 'isIsolated'; legal range is 'TRUE, FALSE'.")
    trades = [t for t in state.history.margin_trades.get(symbol, []) if t["isIsolated"] is (isolated == "TRUE")]
    from_id = _int(params, "fromId")
    if from_id is not None:
        return [t for t in trades if t["id"] >= from_id][:limit]
    start, end = _window(params, state.now_ms(), 1, 1)
    return [t for t in trades if start <= t["time"] <= end][:limit]


def _borrow_repay(state: ServerState, params: dict, restrictions: dict) -> dict:
    kind = params.get("type")
    if kind not in ("BORROW", "REPAY"):
        raise ApiError(400, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
    if _int(params, "txId") is None and _int(params, "startTime") is None:
        raise ApiError(400, -1102, "Mandatory parameter 'startTime' was not sent, was empty/null, or malformed.")
    start, end = _window(params, state.now_ms(), 30 if params.get("asset") or params.get("isolatedSymbol") else 7, 7)
    current, size = _int(params, "current", 1), _int(params, "size", 10)
    if size > 100:
        raise ApiError(400, -1100, "size must be <= 100")
    rows = [r for r in _in_window(state.history.loans[kind], "timestamp", start, end)
            if (not params.get("asset") or r["asset"] == params["asset"])
            and r.get("isolatedSymbol", "") == params.get("isolatedSymbol", "")]
    rows.sort(key=lambda r: r["timestamp"], reverse=True)  # descending, as documented
    return {"rows": rows[(current - 1) * size:current * size], "total": len(rows)}


def _sub_account_list(state: ServerState, params: dict, restrictions: dict) -> dict:
    if not state.is_master:
        raise ApiError(400, -12022, "This account is not a master account.")
    page, limit = _int(params, "page", 1), _int(params, "limit", 10)
    if limit > 200:
        raise ApiError(400, -1100, "limit must be <= 200")
    subs = [s for s in state.history.sub_accounts if not params.get("email") or s["email"] == params["email"]]
    return {"subAccounts": subs[(page - 1) * limit:page * limit]}


def _sub_universal_transfers(state: ServerState, params: dict, restrictions: dict) -> dict:
    from_email, to_email = params.get("fromEmail"), params.get("toEmail")
    if from_email and to_email:
        raise ApiError(400, -1128, "fromEmail and toEmail cannot be sent at the same time.")
    start, end = _window(params, state.now_ms(), 7, 7)
    page, limit = _int(params, "page", 1), _int(params, "limit", 500)
    if limit > 500:
        raise ApiError(400, -1100, "limit must be <= 500")
    if to_email:
        rows = [r for r in state.history.sub_transfers if r["toEmail"] == to_email]
    else:
        rows = [r for r in state.history.sub_transfers if r["fromEmail"] == (from_email or state.history.master_email)]
    rows = sorted(_in_window(rows, "createTimeStamp", start, end), key=lambda r: r["createTimeStamp"], reverse=True)
    return {"result": rows[(page - 1) * limit:page * limit], "totalCount": len(rows)}


def _sub_account_assets(state: ServerState, params: dict, restrictions: dict) -> dict:
    email = params.get("email")
    if email not in state.history.sub_balances:
        raise ApiError(400, -12022, f"The sub-account {email} does not exist.")
    return {"balances": [{"freeze": "0", "withdrawing": "0", "asset": a, "free": f"{v:.8f}", "locked": "0"}
                         for a, v in state.history.sub_balances[email].items()]}


def _managed_sub_snapshot(state: ServerState, params: dict, restrictions: dict) -> dict:
    email, kind = params.get("email"), params.get("type")
    managed = {s["email"] for s in state.history.sub_accounts if s["isManagedSubAccount"]}
    if email not in managed:
        raise ApiError(400, -12022, f"The managed sub-account {email} does not exist.")
    if kind not in ("SPOT", "MARGIN", "FUTURES"):
        raise ApiError(400, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
    limit = _int(params, "limit", 7)
    if not 7 <= limit <= 30:
        raise ApiError(400, -1100, "limit must be between 7 and 30")
    start, end = _window(params, state.now_ms(), 30, 30)
    rows = _in_window(state.history.sub_snapshots[email], "updateTime", start, end)[:limit] if kind == "SPOT" else []
    return {"code": 200, "msg": "", "snapshotVos": rows}


def _funding_asset(state: ServerState, params: dict, restrictions: dict) -> list:
    return [{"asset": a, "free": v, "locked": "0", "freeze": "0", "withdrawing": "0", "btcValuation": "0"}
            for a, v in _final(state, "FUNDING").items() if not params.get("asset") or a == params["asset"]]


def _final(state: ServerState, account: str) -> dict:
    return {a: f"{v:.8f}" for a, v in state.history.balances.get(account, {}).items()}


def _spot_account(state: ServerState, params: dict, restrictions: dict) -> dict:
    return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "canTrade": restrictions["enableSpotAndMarginTrading"], "canWithdraw": restrictions["enableWithdrawals"],
            "canDeposit": True, "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": state.now_ms(), "accountType": "SPOT",
            "balances": [{"asset": a, "free": v, "locked": "0.00000000"} for a, v in _final(state, "SPOT").items()],
            "permissions": ["SPOT"], "uid": 354937868}


def _margin_account(state: ServerState, params: dict, restrictions: dict) -> dict:
    return {"borrowEnabled": False, "marginLevel": "999.00000000", "totalAssetOfBtc": "0", "totalLiabilityOfBtc": "0",
            "totalNetAssetOfBtc": "0", "tradeEnabled": False, "transferInEnabled": True, "transferOutEnabled": True,
            "accountType": "MARGIN_1",
            "userAssets": margin_assets(state.history.balances.get("MARGIN", {}),
                                        {a: b for a, (b, _) in state.history.margin_debt.items()},
                                        {a: i for a, (_, i) in state.history.margin_debt.items()},
                                        set(state.history.balances.get("MARGIN", {})))}


def _futures_balance(state: ServerState, params: dict, restrictions: dict) -> list:
    return [{"accountAlias": "SgsR", "asset": a, "balance": v, "crossWalletBalance": v, "crossUnPnl": "0.00000000",
             "availableBalance": v, "maxWithdrawAmount": v, "marginAvailable": True, "updateTime": state.now_ms()}
            for a, v in _final(state, "FUTURES").items()]


# ------------------------------------------------------------------------------ products
# Field types as Binance documents them (developers.binance.com response examples; docs.rs openxapi-binance /
# binance-sdk models generated from Binance's OpenAPI spec): amounts strings, times and ids integers (Simple Earn
# locked ``purchaseId`` and on-chain/locked rewards ``positionId`` are strings, as in the examples).
EARN_TYPES = {
    "earn_flexible_subscriptions": {"amount": str, "asset": str, "time": int, "purchaseId": int, "productId": str,
                                    "type": str, "sourceAccount": str, "amtFromSpot": str, "amtFromFunding": str,
                                    "status": str},
    "earn_flexible_redemptions": {"amount": str, "asset": str, "time": int, "projectId": str, "redeemId": int,
                                  "destAccount": str, "status": str},
    "earn_flexible_rewards": {"asset": str, "rewards": str, "projectId": str, "type": str, "time": int},
    "earn_locked_subscriptions": {"positionId": int, "purchaseId": str, "projectId": str, "time": int, "asset": str,
                                  "amount": str, "lockPeriod": str, "type": str, "sourceAccount": str,
                                  "amtFromSpot": str, "amtFromFunding": str, "status": str},
    "earn_locked_redemptions": {"positionId": int, "redeemId": int, "time": int, "asset": str, "lockPeriod": str,
                                "amount": str, "originalAmount": str, "type": str, "deliverDate": str,
                                "lossAmount": str, "isComplete": bool, "rewardAsset": str, "rewardAmt": str,
                                "status": str},
    "earn_locked_rewards": {"positionId": str, "time": int, "asset": str, "lockPeriod": str, "amount": str},
}
EARN_PATHS = {
    "/sapi/v1/simple-earn/flexible/history/subscriptionRecord": "earn_flexible_subscriptions",
    "/sapi/v1/simple-earn/flexible/history/redemptionRecord": "earn_flexible_redemptions",
    "/sapi/v1/simple-earn/flexible/history/rewardsRecord": "earn_flexible_rewards",
    "/sapi/v1/simple-earn/locked/history/subscriptionRecord": "earn_locked_subscriptions",
    "/sapi/v1/simple-earn/locked/history/redemptionRecord": "earn_locked_redemptions",
    "/sapi/v1/simple-earn/locked/history/rewardsRecord": "earn_locked_rewards",
}
STAKING_TYPES = {"time": int, "arrivalTime": int, "asset": str, "amount": str, "distributeAsset": str,
                 "distributeAmount": str, "conversionRatio": str, "status": str}
DIVIDEND_TYPES = {"id": int, "amount": str, "asset": str, "divTime": int, "enInfo": str, "tranId": int, "direction": int}
FIAT_ORDER_TYPES = {"orderNo": str, "fiatCurrency": str, "indicatedAmount": str, "amount": str, "totalFee": str,
                    "method": str, "status": str, "createTime": int, "updateTime": int}
FIAT_PAYMENT_TYPES = {"orderNo": str, "sourceAmount": str, "fiatCurrency": str, "obtainAmount": str,
                      "cryptoCurrency": str, "totalFee": str, "price": str, "status": str, "paymentMethod": str,
                      "createTime": int, "updateTime": int}
INCOME_TYPES = {"symbol": str, "incomeType": str, "income": str, "asset": str, "info": str, "time": int, "tranId": int,
                "tradeId": str}


def _paged(params: dict, rows: list[dict]) -> dict:
    """Binance's ``current``/``size`` pages (size at most 100) of ``{"rows": [...], "total": n}``."""
    current, size = _int(params, "current", 1), _int(params, "size", 10)
    if current < 1 or not 1 <= size <= 100:
        raise ApiError(400, -1100, "Illegal characters found in parameter 'size'; legal range is '1-100'.")
    return {"rows": rows[(current - 1) * size:current * size], "total": len(rows)}


def _earn_history(path: str):
    stream = EARN_PATHS[path]

    def answer(state: ServerState, params: dict, restrictions: dict) -> dict:
        if stream == "earn_flexible_rewards":
            kind = params.get("type")
            if kind not in ("BONUS", "REALTIME", "REWARDS", "ALL"):
                raise ApiError(400, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
        start, end = _window(params, state.now_ms(), 90, 30)  # at most 3 months; 30 days by default
        rows = [r for r in _in_window(state.history.earn[stream], "time", start, end)
                if stream != "earn_flexible_rewards" or params["type"] in ("ALL", r["type"])]
        rows = checked(sorted(rows, key=lambda r: r["time"], reverse=True), EARN_TYPES[stream], path)
        return _paged(params, rows)
    return answer


def _locked_position(state: ServerState, params: dict, restrictions: dict) -> dict:
    rows = [{k: v for k, v in p.items() if k != "day"} for p in state.history.locked_positions]
    return _paged(params, [r for r in rows if not params.get("asset") or r["asset"] == params["asset"]])


def _eth_history(kind: str):
    def answer(state: ServerState, params: dict, restrictions: dict) -> dict:
        start, end = _window(params, state.now_ms(), 90, 30)
        rows = sorted(_in_window(state.history.eth_staking[kind], "time", start, end), key=lambda r: r["time"],
                      reverse=True)
        return _paged(params, checked(rows, STAKING_TYPES, f"eth-staking {kind}"))
    return answer


def _dividends(state: ServerState, params: dict, restrictions: dict) -> dict:
    start, end = _window(params, state.now_ms(), 180, 180)
    limit = _int(params, "limit", 20)
    if not 1 <= limit <= 500:
        raise ApiError(400, -1100, "Illegal characters found in parameter 'limit'; legal range is '1-500'.")
    rows = sorted(_in_window(state.history.dividends, "divTime", start, end), key=lambda r: r["divTime"], reverse=True)
    return {"rows": checked(rows[:limit], DIVIDEND_TYPES, "/sapi/v1/asset/assetDividend"), "total": len(rows)}


def _fiat(kind: str):
    def answer(state: ServerState, params: dict, restrictions: dict) -> dict:
        transaction_type = params.get("transactionType")
        if transaction_type not in ("0", "1"):
            raise ApiError(400, -1102, "Mandatory parameter 'transactionType' was not sent, was empty/null, or malformed.")
        end = _int(params, "endTime", state.now_ms())
        begin = _int(params, "beginTime", end - 30 * DAY_MS)
        page, size = _int(params, "page", 1), _int(params, "rows", 100)
        if page < 1 or not 1 <= size <= 500:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'rows'; legal range is '1-500'.")
        source = state.history.fiat_orders if kind == "orders" else state.history.fiat_payments
        rows = sorted((r for r in source[transaction_type] if begin <= r["createTime"] <= end),
                      key=lambda r: r["createTime"], reverse=True)
        checked(rows, FIAT_ORDER_TYPES if kind == "orders" else FIAT_PAYMENT_TYPES, f"/sapi/v1/fiat/{kind}")
        return {"code": "000000", "message": "success", "data": rows[(page - 1) * size:page * size],
                "total": len(rows), "success": True}
    return answer


def _coin_income(state: ServerState, params: dict, restrictions: dict) -> list:
    start, end = _window(params, state.now_ms(), 200, 7)
    limit = _int(params, "limit", 100)
    if not 1 <= limit <= 1000:
        raise ApiError(400, -1100, "limit must be <= 1000")
    rows = [r for r in _in_window(state.history.coin_income, "time", start, end)
            if not params.get("incomeType") or r["incomeType"] == params["incomeType"]]
    return checked(rows[:limit], INCOME_TYPES, "/dapi/v1/income")


def _coin_balance(state: ServerState, params: dict, restrictions: dict) -> list:
    return [{"accountAlias": "SgsR", "asset": a, "balance": v, "withdrawAvailable": v, "crossWalletBalance": v,
             "crossUnPnl": "0.00000000", "availableBalance": v, "updateTime": state.now_ms()}
            for a, v in _final(state, "CMFUTURES").items()]


def _isolated_account(state: ServerState, params: dict, restrictions: dict) -> dict:
    symbol = state.history.isolated_symbol
    base, quote = SYMBOLS[symbol][0], SYMBOLS[symbol][1]
    held = state.history.balances.get("ISOLATED", {})

    def side(asset: str) -> dict:
        borrowed, interest = state.history.isolated_debt.get(asset, (0, 0))
        free = held.get(asset, 0)
        return {"asset": asset, "borrowEnabled": True, "borrowed": f"{borrowed:.8f}", "free": f"{free:.8f}",
                "interest": f"{interest:.8f}", "locked": "0.00000000", "netAsset": f"{free - borrowed - interest:.8f}",
                "netAssetOfBtc": "0", "repayEnabled": True, "totalAsset": f"{free:.8f}"}
    assets = [{"baseAsset": side(base), "quoteAsset": side(quote), "symbol": symbol, "isolatedCreated": True,
               "enabled": True, "marginLevel": "999.00000000", "marginLevelStatus": "EXCESSIVE",
               "marginRatio": "10.00000000", "indexPrice": "42000.00000000", "liquidatePrice": "0",
               "liquidateRate": "0", "tradeEnabled": True}] if held or state.history.isolated_debt else []
    if params.get("symbols"):
        assets = [a for a in assets if a["symbol"] in params["symbols"].split(",")]
    return {"assets": assets, "totalAssetOfBtc": "0", "totalLiabilityOfBtc": "0", "totalNetAssetOfBtc": "0"}


ROUTES = {
    "/api/v3/time": (_time, False),
    "/api/v3/exchangeInfo": (_spot_exchange_info, False),
    "/fapi/v1/exchangeInfo": (_futures_exchange_info, False),
    "/sapi/v1/account/apiRestrictions": (_api_restrictions, True),
    "/api/v3/myTrades": (_my_trades, True),
    "/sapi/v1/capital/deposit/hisrec": (_deposits, True),
    "/sapi/v1/capital/withdraw/history": (_withdrawals, True),
    "/sapi/v1/asset/transfer": (_transfers, True),
    "/fapi/v1/income": (_income, True),
    "/sapi/v1/accountSnapshot": (_snapshot, True),
    "/sapi/v1/convert/tradeFlow": (_converts, True),
    "/sapi/v1/asset/dribblet": (_dribblet, True),
    "/sapi/v1/margin/interestHistory": (_interest, True),
    "/api/v3/account": (_spot_account, True),
    "/sapi/v1/margin/account": (_margin_account, True),
    "/fapi/v2/balance": (_futures_balance, True),
    "/sapi/v1/margin/myTrades": (_margin_trades, True),
    "/sapi/v1/margin/borrow-repay": (_borrow_repay, True),
    "/sapi/v1/sub-account/list": (_sub_account_list, True),
    "/sapi/v1/sub-account/universalTransfer": (_sub_universal_transfers, True),
    "/sapi/v4/sub-account/assets": (_sub_account_assets, True),
    "/sapi/v1/managed-subaccount/accountSnapshot": (_managed_sub_snapshot, True),
    **{path: (_earn_history(path), True) for path in EARN_PATHS},
    "/sapi/v1/simple-earn/locked/position": (_locked_position, True),
    "/sapi/v1/eth-staking/eth/history/stakingHistory": (_eth_history("staking"), True),
    "/sapi/v1/eth-staking/eth/history/redemptionHistory": (_eth_history("redemption"), True),
    "/sapi/v1/asset/assetDividend": (_dividends, True),
    "/sapi/v1/fiat/orders": (_fiat("orders"), True),
    "/sapi/v1/fiat/payments": (_fiat("payments"), True),
    "/dapi/v1/income": (_coin_income, True),
    "/dapi/v1/balance": (_coin_balance, True),
    "/sapi/v1/margin/isolated/account": (_isolated_account, True),
}
POST_ROUTES = {
    "/sapi/v1/asset/get-funding-asset": (_funding_asset, True),
}
