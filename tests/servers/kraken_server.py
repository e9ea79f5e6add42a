"""A local Kraken REST server (stdlib ``http.server`` on 127.0.0.1, in a thread) for tests and benchmarks.

It speaks the parts of Kraken's REST API that ccxt's ``kraken`` calls for the generic connector, with the
response shapes Kraken documents (``{"error": [...], "result": ...}``), and serves a generated account history
(tests/servers/kraken_history.py):

  public   GET  /0/public/Time, /0/public/Assets, /0/public/AssetPairs      (ccxt's load_markets)
  private  POST /0/private/Ledgers, TradesHistory (``start`` exclusive, ``end`` inclusive, newest first,
                50 per page, ``ofs`` offset, ``count`` = total), DepositStatus, WithdrawStatus (``start``/``end``),
                Balance, BalanceEx, and AddOrder / WithdrawInfo (answered "EGeneral:Permission denied" for a
                read-only key: what the connector probes to prove a key cannot trade or withdraw)

Private calls are verified as Kraken does: ``API-Key`` names a key; ``API-Sign`` must be
base64(HMAC-SHA512(base64-decoded secret, URI path + SHA256(nonce + POST data))); the nonce must grow per key.

Fault injection: ``failure_rate`` makes that share of requests fail with one of ``failure_kinds`` (``rate``:
EAPI:Rate limit exceeded, ``5xx``: HTTP 503, ``timeout``: a response slower than the client's timeout),
seeded; ``next_faults`` forces faults on the next requests; ``delay_seconds`` slows every response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from samples.servers.local import LocalServer
from tests.servers.kraken_history import ASSETS, PAIRS, KrakenHistory

PAGE = 50


class KrakenError(Exception):
    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class KrakenState:
    history: KrakenHistory
    keys: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # key -> (base64 secret, permissions)
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = ("rate", "5xx", "timeout")
    timeout_seconds: float = 0.6
    next_faults: list[str] = field(default_factory=list)
    delay_seconds: float = 0.0
    seed: int = 3
    calls: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    last_nonce: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add_key(self, api_key: str, secret_b64: str, *permissions: str) -> None:
        """``permissions`` beyond querying: "trade", "withdraw"."""
        self.keys[api_key] = (secret_b64, set(permissions))

    def pick_fault(self) -> str | None:
        with self.lock:
            if self.next_faults:
                return self.next_faults.pop(0)
            if self.failure_rate and self.rng.random() < self.failure_rate:
                return self.rng.choice(self.failure_kinds)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: "KrakenServer"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fault(self) -> bool:
        state = self.server.state
        if state.delay_seconds:
            time.sleep(state.delay_seconds)
        fault = state.pick_fault()
        if not fault:
            return False
        state.faults[fault] += 1
        if fault == "rate":
            self._send(200, {"error": ["EAPI:Rate limit exceeded"]})
        elif fault == "5xx":
            self._send(503, {"error": ["EService:Unavailable"]})
        else:
            time.sleep(state.timeout_seconds)
            self._send(504, {"error": ["EService:Busy"]})
        return True

    def do_GET(self) -> None:  # noqa: N802
        split = urlsplit(self.path)
        self.server.state.calls[split.path] += 1
        if self._fault():
            return
        handler = PUBLIC.get(split.path)
        if handler is None:
            return self._send(404, {"error": ["EGeneral:Unknown method"]})
        self._send(200, {"error": [], "result": handler(self.server.state, dict(parse_qsl(split.query)))})

    def do_POST(self) -> None:  # noqa: N802
        state = self.server.state
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        state.calls[path] += 1
        if self._fault():
            return
        try:
            handler = PRIVATE.get(path)
            if handler is None:
                raise KrakenError("EGeneral:Unknown method", 404)
            params = dict(parse_qsl(body, keep_blank_values=True))
            permissions = self._verify(path, body, params)
            self._send(200, {"error": [], "result": handler(state, params, permissions)})
        except KrakenError as error:
            self._send(error.status, {"error": [error.message]})

    def _verify(self, path: str, body: str, params: dict[str, str]) -> set[str]:
        state = self.server.state
        api_key = self.headers.get("API-Key")
        if not api_key or api_key not in state.keys:
            raise KrakenError("EAPI:Invalid key")
        secret, permissions = state.keys[api_key]
        nonce = params.get("nonce", "")
        if not nonce.isdigit():
            raise KrakenError("EAPI:Invalid nonce")
        digest = hashlib.sha256((nonce + body).encode()).digest()
        expected = base64.b64encode(hmac.new(base64.b64decode(secret), path.encode() + digest, hashlib.sha512).digest())
        if not hmac.compare_digest(expected, (self.headers.get("API-Sign") or "").encode()):
            raise KrakenError("EAPI:Invalid signature")
        with state.lock:
            if int(nonce) <= state.last_nonce.get(api_key, 0):
                raise KrakenError("EAPI:Invalid nonce")
            state.last_nonce[api_key] = int(nonce)
        return permissions


class KrakenServer(LocalServer):
    thread_name = "kraken-server"

    def __init__(self, state: KrakenState) -> None:
        super().__init__(state, _Handler)


# ------------------------------------------------------------------------------ public


def _time(state: KrakenState, params: dict) -> dict:
    now = int(time.time())
    return {"unixtime": now, "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000", time.gmtime(now))}


def _assets(state: KrakenState, params: dict) -> dict:
    return {asset: {"aclass": "currency", "altname": alt, "decimals": decimals, "display_decimals": display,
                    "collateral_value": 1.0, "status": "enabled"} for asset, (alt, decimals, display) in ASSETS.items()}


def _asset_pairs(state: KrakenState, params: dict) -> dict:
    return {pair: {"altname": alt, "wsname": ws, "aclass_base": "currency", "base": base, "aclass_quote": "currency",
                   "quote": quote, "lot": "unit", "cost_decimals": 5, "pair_decimals": price_decimals,
                   "lot_decimals": lot_decimals, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
                   "fees": [[0, 0.26], [50000, 0.24]], "fees_maker": [[0, 0.16], [50000, 0.14]],
                   "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001",
                   "costmin": "0.5", "tick_size": str(Decimal(1).scaleb(-price_decimals)), "status": "online"}
            for pair, (alt, ws, base, quote, _, price_decimals, lot_decimals) in PAIRS.items()}


PUBLIC = {"/0/public/Time": _time, "/0/public/Assets": _assets, "/0/public/AssetPairs": _asset_pairs}


# ------------------------------------------------------------------------------ private


def _bound(params: dict, name: str) -> float | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise KrakenError(f"EGeneral:Invalid arguments:{name}") from None


def _paged(records: dict[str, dict], params: dict) -> tuple[dict[str, dict], int]:
    """Kraken's paging: ``start`` exclusive, ``end`` inclusive (Unix seconds), newest first, 50 from ``ofs``."""
    start, end = _bound(params, "start"), _bound(params, "end")
    selected = [(k, v) for k, v in records.items()
                if (start is None or v["time"] > start) and (end is None or v["time"] <= end)]
    selected.sort(key=lambda kv: (kv[1]["time"], kv[0]), reverse=True)
    offset = int(params.get("ofs") or 0)
    return dict(selected[offset:offset + PAGE]), len(selected)


def _ledgers(state: KrakenState, params: dict, permissions: set[str]) -> dict:
    ledger, count = _paged(state.history.ledger, params)
    return {"ledger": ledger, "count": count}


def _trades(state: KrakenState, params: dict, permissions: set[str]) -> dict:
    trades, count = _paged(state.history.trades, params)
    return {"trades": trades, "count": count}


def _in_window(records: list[dict], params: dict) -> list[dict]:
    start, end = _bound(params, "start"), _bound(params, "end")
    return [r for r in records if (start is None or r["time"] > start) and (end is None or r["time"] <= end)
            and (not params.get("asset") or r["asset"] == params["asset"])]


def _deposits(state: KrakenState, params: dict, permissions: set[str]) -> list:
    return _in_window(state.history.deposits, params)


def _withdrawals(state: KrakenState, params: dict, permissions: set[str]) -> list:
    return _in_window(state.history.withdrawals, params)


def _text(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.0000000001')):f}"


def _balance(state: KrakenState, params: dict, permissions: set[str]) -> dict:
    return {asset: _text(value) for asset, value in state.history.balances.items()}


def _balance_ex(state: KrakenState, params: dict, permissions: set[str]) -> dict:
    return {asset: {"balance": _text(value), "hold_trade": "0.0000000000"}
            for asset, value in state.history.balances.items()}


def _add_order(state: KrakenState, params: dict, permissions: set[str]) -> dict:
    if "trade" not in permissions:
        raise KrakenError("EGeneral:Permission denied")
    if params.get("validate") not in ("true", "1"):
        raise KrakenError("EGeneral:Invalid arguments")  # this server never places orders
    return {"descr": {"order": f"{params.get('type')} {params.get('volume')} {params.get('pair')} @ limit "
                               f"{params.get('price')}"}}


def _withdraw_info(state: KrakenState, params: dict, permissions: set[str]) -> dict:
    if "withdraw" not in permissions:
        raise KrakenError("EGeneral:Permission denied")
    raise KrakenError("EFunding:Unknown withdraw key")


PRIVATE = {"/0/private/Ledgers": _ledgers, "/0/private/TradesHistory": _trades,
           "/0/private/DepositStatus": _deposits, "/0/private/WithdrawStatus": _withdrawals,
           "/0/private/Balance": _balance, "/0/private/BalanceEx": _balance_ex,
           "/0/private/AddOrder": _add_order, "/0/private/WithdrawInfo": _withdraw_info}
