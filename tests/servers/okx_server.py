"""A local OKX v5 REST server (stdlib ``http.server`` on 127.0.0.1, in a thread) for tests and benchmarks.

It answers what ccxt's ``okx`` calls for the generic connector, in OKX's documented envelope
(``{"code": "0", "msg": "", "data": [...]}``, every number a decimal string), from a generated history
(tests/servers/okx_history.py):

  public   GET /api/v5/public/instruments (instType required)
  private  GET /api/v5/asset/currencies, /api/v5/account/config (``perm``: read_only / trade / withdraw),
               /api/v5/account/balance, /api/v5/account/bills-archive (instType, begin/end in ms inclusive,
               after/before bill ids, newest first, limit <= 100), /api/v5/trade/fills-history (instType required,
               begin/end, newest first, limit <= 100), /api/v5/asset/deposit-history and withdrawal-history
               (``after``/``before``: ms, exclusive; newest first; limit <= 100)

Private calls are verified as OKX does: ``OK-ACCESS-KEY`` must name a key (50111), ``OK-ACCESS-PASSPHRASE`` must
be its passphrase (50105), ``OK-ACCESS-TIMESTAMP`` an ISO time within 30 s of the server's clock (50112 / 50102),
and ``OK-ACCESS-SIGN`` = base64(HMAC-SHA256(secret, timestamp + method + requestPath with query + body)) (50113
"Invalid Sign"), HTTP 401 for each. An unknown parameter value is 51000 "Parameter {name} error".

Fault injection: ``failure_rate`` makes that share of requests fail with one of ``failure_kinds`` (``rate``: HTTP
429 code 50011, ``5xx``: HTTP 503 code 50001, ``timeout``: a response slower than the client's timeout), seeded;
``delay_seconds`` slows every response.
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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from samples.servers.local import LocalServer
from tests.servers.okx_history import CHAINS, INSTRUMENTS, OkxHistory, text

MAX_LIMIT = 100


class OkxError(Exception):
    def __init__(self, code: str, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class OkxState:
    history: OkxHistory
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # key -> (secret, passphrase, perm)
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = ("rate", "5xx", "timeout")
    timeout_seconds: float = 0.6
    delay_seconds: float = 0.0
    seed: int = 7
    calls: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    hidden_bills: set[str] = field(default_factory=set)  # bill ids the server leaves out (a planted gap)
    hidden_fills: set[str] = field(default_factory=set)  # fills (by bill id) the server leaves out
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add_key(self, api_key: str, secret: str, passphrase: str, perm: str = "read_only") -> None:
        self.keys[api_key] = (secret, passphrase, perm)

    def pick_fault(self) -> str | None:
        with self.lock:
            if self.failure_rate and self.rng.random() < self.failure_rate:
                return self.rng.choice(self.failure_kinds)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: "OkxServer"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
            self._send(429, {"msg": "Too Many Requests", "code": "50011"})
        elif fault == "5xx":
            self._send(503, {"msg": "Service temporarily unavailable. Please try again later.", "code": "50001"})
        else:
            time.sleep(state.timeout_seconds)
            self._send(504, {"msg": "Endpoint request timeout. ", "code": "50004"})
        return True

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        split = urlsplit(self.path)
        state.calls[split.path] += 1
        if self._fault():
            return
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            if split.path in PUBLIC:
                data = PUBLIC[split.path](state, params)
            elif split.path in PRIVATE:
                perm = self._verify("GET", self.path, "")
                data = PRIVATE[split.path](state, params, perm)
            else:
                raise OkxError("50030", "No permission to use this API", 404)
            self._send(200, {"code": "0", "msg": "", "data": data})
        except OkxError as error:
            self._send(error.status, {"code": error.code, "msg": error.message, "data": []})

    def _verify(self, method: str, request_path: str, body: str) -> str:
        state = self.server.state
        key = self.headers.get("OK-ACCESS-KEY")
        if not key:
            raise OkxError("50103", "Request header OK-ACCESS-KEY cannot be empty.", 401)
        if key not in state.keys:
            raise OkxError("50111", "Invalid OK-ACCESS-KEY.", 401)
        secret, passphrase, perm = state.keys[key]
        if not self.headers.get("OK-ACCESS-PASSPHRASE"):
            raise OkxError("50104", "Request header OK-ACCESS-PASSPHRASE cannot be empty.", 401)
        if not hmac.compare_digest(self.headers["OK-ACCESS-PASSPHRASE"], passphrase):
            raise OkxError("50105", "Request header OK-ACCESS-PASSPHRASE incorrect.", 401)
        stamp = self.headers.get("OK-ACCESS-TIMESTAMP") or ""
        if not stamp:
            raise OkxError("50107", "Request header OK-ACCESS-TIMESTAMP cannot be empty.", 401)
        try:
            sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise OkxError("50112", "Invalid OK-ACCESS-TIMESTAMP.", 401) from None
        if abs((datetime.now(timezone.utc) - sent).total_seconds()) > 30:
            raise OkxError("50102", "Timestamp request expired.", 401)
        expected = base64.b64encode(hmac.new(secret.encode(), (stamp + method + request_path + body).encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, self.headers.get("OK-ACCESS-SIGN") or ""):
            raise OkxError("50113", "Invalid Sign", 401)
        return perm


class OkxServer(LocalServer):
    thread_name = "okx-server"

    def __init__(self, state: OkxState) -> None:
        super().__init__(state, _Handler)


# ------------------------------------------------------------------------------ public


def _instruments(state: OkxState, params: dict) -> list[dict]:
    kind = params.get("instType")
    if not kind:
        raise OkxError("50014", "Parameter instType can not be empty.")
    if kind not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise OkxError("51000", "Parameter instType error")
    if kind != "SPOT":
        return []
    return [{"alias": "", "baseCcy": base, "category": "1", "ctMult": "", "ctType": "", "ctVal": "", "ctValCcy": "",
             "expTime": "", "instFamily": "", "instId": inst, "instType": "SPOT", "lever": "10",
             "listTime": "1606468572000", "lotSz": text(lot), "maxIcebergSz": "9999999999", "maxLmtAmt": "20000000",
             "maxLmtSz": "9999999999", "maxMktAmt": "1000000", "maxMktSz": "1000000", "maxStopSz": "1000000",
             "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999", "minSz": "0.00001", "optType": "",
             "quoteCcy": quote, "settleCcy": "", "state": "live", "stk": "", "tickSz": text(tick), "uly": ""}
            for inst, (base, quote, _, tick, lot) in INSTRUMENTS.items()]


PUBLIC = {"/api/v5/public/instruments": _instruments}


# ------------------------------------------------------------------------------ private


def _int(params: dict, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if not value.lstrip("-").isdigit():
        raise OkxError("51000", f"Parameter {name} error")
    return int(value)


def _limit(params: dict) -> int:
    limit = _int(params, "limit")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise OkxError("51000", "Parameter limit error")
    return limit or MAX_LIMIT


def _newest(records: list[dict], params: dict, *, inclusive: bool, id_field: str | None = None) -> list[dict]:
    """OKX's paging: newest first; ``begin``/``end`` (inclusive) or ``before``/``after`` (ms, exclusive)."""
    begin, end = _int(params, "begin"), _int(params, "end")
    if inclusive:
        after, before = _int(params, "after"), _int(params, "before")  # bill ids
        chosen = [r for r in records if (begin is None or int(r["ts"]) >= begin) and (end is None or int(r["ts"]) <= end)
                  and (after is None or int(r[id_field]) < after) and (before is None or int(r[id_field]) > before)]
    else:
        after, before = _int(params, "after"), _int(params, "before")  # timestamps
        chosen = [r for r in records if (after is None or int(r["ts"]) < after) and (before is None or int(r["ts"]) > before)]
    chosen.sort(key=lambda r: (int(r["ts"]), int(r[id_field] if id_field else r["ts"])), reverse=True)
    return chosen[:_limit(params)]


def _currencies(state: OkxState, params: dict, perm: str) -> list[dict]:
    return [{"canDep": True, "canInternal": True, "canWd": True, "ccy": ccy, "chain": chain, "depQuotaFixed": "",
             "depQuoteDailyLayer2": "", "logoLink": "", "mainNet": True, "maxFee": "0.01", "maxFeeForCtAddr": "",
             "maxWd": "500", "minDep": "0.00005", "minDepArrivalConfirm": "2", "minFee": "0.0002",
             "minFeeForCtAddr": "", "minWd": "0.0005", "minWdUnlockConfirm": "2", "name": ccy, "needTag": False,
             "usedDepQuotaFixed": "", "usedWdQuota": "0", "wdQuota": "10000000", "wdTickSz": "8"}
            for ccy, chain in CHAINS.items()]


def _config(state: OkxState, params: dict, perm: str) -> list[dict]:
    return [{"acctLv": "2", "autoLoan": False, "ctIsoMode": "automatic", "greeksType": "PA", "level": "Lv1",
             "levelTmp": "", "mgnIsoMode": "automatic", "posMode": "net_mode", "uid": "44705892343619584",
             "label": "coinfrs", "roleType": "0", "traderInsts": [], "spotRoleType": "0", "spotTraderInsts": [],
             "opAuth": "0", "kycLv": "3", "ip": "", "perm": perm, "mainUid": "44705892343619584"}]


def _balance(state: OkxState, params: dict, perm: str) -> list[dict]:
    now = str(int(time.time() * 1000))
    return [{"adjEq": "", "borrowFroz": "", "imr": "", "isoEq": "0", "mgnRatio": "", "mmr": "", "notionalUsd": "",
             "ordFroz": "", "totalEq": "0", "uTime": now, "upl": "",
             "details": [{"availBal": text(v), "availEq": text(v), "borrowFroz": "", "cashBal": text(v), "ccy": ccy,
                          "crossLiab": "", "disEq": "0", "eq": text(v), "eqUsd": "0", "fixedBal": "0",
                          "frozenBal": "0", "imr": "", "interest": "", "isoEq": "0", "isoLiab": "", "isoUpl": "0",
                          "liab": "", "maxLoan": "", "mgnRatio": "", "mmr": "", "notionalLever": "", "ordFrozen": "0",
                          "spotInUseAmt": "", "stgyEq": "0", "twap": "0", "uTime": now, "upl": "0", "uplLiab": ""}
                         for ccy, v in state.history.trading.items()]}]


def _bills(state: OkxState, params: dict, perm: str) -> list[dict]:
    kind = params.get("instType")
    if kind and kind not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise OkxError("51000", "Parameter instType error")
    # an instrument filter keeps the bills of that instrument type and the account's own (transfers: no instrument)
    bills = [b for b in state.history.bills if b["billId"] not in state.hidden_bills
             and (not kind or b["instType"] in (kind, ""))]
    return _newest(bills, params, inclusive=True, id_field="billId")


def _fills(state: OkxState, params: dict, perm: str) -> list[dict]:
    kind = params.get("instType")
    if not kind:
        raise OkxError("50014", "Parameter instType can not be empty.")
    fills = [f for f in state.history.fills if f["instType"] == kind and f["billId"] not in state.hidden_fills
             and (not params.get("instId") or f["instId"] == params["instId"])]
    return _newest(fills, params, inclusive=True, id_field="billId")


def _deposits(state: OkxState, params: dict, perm: str) -> list[dict]:
    return _newest([d for d in state.history.deposits if not params.get("ccy") or d["ccy"] == params["ccy"]], params,
                   inclusive=False, id_field="depId")


def _withdrawals(state: OkxState, params: dict, perm: str) -> list[dict]:
    return _newest([w for w in state.history.withdrawals if not params.get("ccy") or w["ccy"] == params["ccy"]], params,
                   inclusive=False, id_field="wdId")


PRIVATE = {"/api/v5/asset/currencies": _currencies, "/api/v5/account/config": _config,
           "/api/v5/account/balance": _balance, "/api/v5/account/bills-archive": _bills,
           "/api/v5/trade/fills-history": _fills,
           "/api/v5/asset/deposit-history": _deposits, "/api/v5/asset/withdrawal-history": _withdrawals}
