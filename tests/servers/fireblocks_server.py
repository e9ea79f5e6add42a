"""A local Fireblocks API server (stdlib ``http.server`` on 127.0.0.1, in a thread) for tests.

Endpoints, shaped as Fireblocks documents them:
  GET /v1/vault/accounts_paged   ``limit`` (<= 500), cursor paging: ``paging.after`` -> ``?after=<cursor>``
  GET /v1/transactions           ``after`` / ``before`` (createdAt, ms, exclusive), ``orderBy=createdAt``,
                                 ``sort`` ASC|DESC, ``limit`` (<= 500); a JSON array; the next page's full URL in
                                 the ``next-page`` response header (absent on the last page)

Authentication is verified as Fireblocks does: ``X-API-Key`` names an API user; ``Authorization: Bearer <JWT>``
signed RS256 with that user's private key, verified with its registered public key; claims ``uri`` (the path
and query of this request), ``nonce`` (never reused), ``iat``/``exp`` (now within them, at most 60 s apart),
``sub`` (the API key) and ``bodyHash`` (SHA-256 hex of the request body). Anything else is a 401 whose message
says what was wrong.

Faults: ``failure_rate`` of requests fail with one of ``failure_kinds`` (``429`` with Retry-After, ``5xx``,
``timeout``), seeded; ``delay_seconds`` slows every response.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from samples.servers.local import LocalServer
from tests.servers.fireblocks_history import VAULTS, FireblocksHistory


class Refused(Exception):
    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class FireblocksState:
    history: FireblocksHistory
    users: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)  # API key -> public key
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = ("429", "5xx", "timeout")
    timeout_seconds: float = 0.6
    delay_seconds: float = 0.0
    seed: int = 9
    calls: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick_fault(self) -> str | None:
        with self.lock:
            if self.failure_rate and self.rng.random() < self.failure_rate:
                return self.rng.choice(self.failure_kinds)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: "FireblocksServer"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        split = urlsplit(self.path)
        state.calls[split.path] += 1
        if state.delay_seconds:
            time.sleep(state.delay_seconds)
        fault = state.pick_fault()
        if fault:
            state.faults[fault] += 1
            if fault == "429":
                return self._send(429, {"message": "Too many requests", "code": 429}, {"Retry-After": "0"})
            if fault == "5xx":
                return self._send(503, {"message": "Service unavailable", "code": 503})
            time.sleep(state.timeout_seconds)
            return self._send(504, {"message": "Gateway timeout", "code": 504})
        try:
            self._verify(self.path, b"")
            handler = ROUTES.get(split.path)
            if handler is None:
                raise Refused(404, f"Unknown path {split.path}", 404)
            body, headers = handler(self.server, dict(parse_qsl(split.query)))
            self._send(200, body, headers)
        except Refused as error:
            if error.status == 401:
                state.refusals.append(error.message)
            self._send(error.status, {"message": error.message, "code": error.code})

    def _verify(self, uri: str, body: bytes) -> None:
        state = self.server.state
        api_key = self.headers.get("X-API-Key") or ""
        public_key = state.users.get(api_key)
        if public_key is None:
            raise Refused(401, "Unauthorized: unknown API key (X-API-Key)", -7)
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth.count(".") != 2:
            raise Refused(401, "Unauthorized: missing Bearer JWT in Authorization", -7)
        header_b64, claims_b64, signature_b64 = auth[len("Bearer "):].split(".")
        try:
            header, claims = json.loads(_b64url(header_b64)), json.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
        except (ValueError, json.JSONDecodeError):
            raise Refused(401, "Unauthorized: malformed JWT", -7) from None
        if header.get("alg") != "RS256":
            raise Refused(401, f"Unauthorized: JWT algorithm {header.get('alg')!r}, expected RS256", -7)
        try:
            public_key.verify(signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise Refused(401, "Unauthorized: JWT signature does not verify with this API user's public key", -7) from None
        now = time.time()
        problems = []
        if claims.get("sub") != api_key:
            problems.append("sub is not the API key")
        if claims.get("uri") != uri:
            problems.append(f"uri {claims.get('uri')!r} is not the request's {uri!r}")
        if claims.get("bodyHash") != hashlib.sha256(body).hexdigest():
            problems.append("bodyHash does not match the body")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or not (iat - 5 <= now < exp) or exp - iat > 60:
            problems.append("iat/exp do not cover now (or span more than 60 s)")
        nonce = claims.get("nonce")
        with state.lock:
            if not nonce or nonce in state.nonces:
                problems.append("nonce missing or already used")
            else:
                state.nonces.add(nonce)
        if problems:
            raise Refused(401, "Unauthorized: JWT " + "; ".join(problems), -7)


class FireblocksServer(LocalServer):
    thread_name = "fireblocks-server"

    def __init__(self, state: FireblocksState) -> None:
        super().__init__(state, _Handler)


def _limit(params: dict, default: int) -> int:
    try:
        limit = int(params.get("limit") or default)
    except ValueError:
        raise Refused(400, "limit must be an integer", 400) from None
    if not 1 <= limit <= 500:
        raise Refused(400, "limit must be between 1 and 500", 400)
    return limit


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _accounts_paged(server: FireblocksServer, params: dict) -> tuple[dict, dict]:
    limit = _limit(params, 200)
    start = int(base64.urlsafe_b64decode(params["after"]).decode()) if params.get("after") else 0
    ids = sorted(VAULTS, key=int)
    page = ids[start:start + limit]
    balances = server.state.history.balances
    accounts = [{"id": v, "name": VAULTS[v], "hiddenOnUI": False, "autoFuel": False, "customerRefId": "",
                 "assets": [{"id": a, "total": _text(q), "balance": _text(q), "available": _text(q), "pending": "0",
                             "frozen": "0", "lockedAmount": "0", "staked": "0", "blockHeight": "19000000",
                             "blockHash": "0x" + "ab" * 32} for a, q in sorted(balances.get(v, {}).items())]}
                for v in page]
    body: dict = {"accounts": accounts, "paging": {}}
    if start + limit < len(ids):
        cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        body["paging"] = {"after": cursor}
        body["nextUrl"] = f"{server.base_url}/v1/vault/accounts_paged?{urlencode({'limit': limit, 'after': cursor})}"
    return body, {}


def _transactions(server: FireblocksServer, params: dict) -> tuple[list, dict]:
    limit = _limit(params, 200)
    after, before = int(params.get("after") or 0), int(params.get("before") or 2**62)
    rows = [t for t in server.state.history.transactions if after < t["createdAt"] < before]
    rows.sort(key=lambda t: (t["createdAt"], t["id"]), reverse=params.get("sort", "DESC").upper() == "DESC")
    offset = int(params.get("pageCursor") or 0)
    page = rows[offset:offset + limit]
    headers = {}
    if offset + limit < len(rows):
        headers["next-page"] = f"{server.base_url}/v1/transactions?{urlencode({**params, 'pageCursor': offset + limit})}"
    return page, headers


ROUTES = {"/v1/vault/accounts_paged": _accounts_paged, "/v1/transactions": _transactions}
