"""An Esplora-compatible REST client (Blockstream's esplora/electrs, mempool.space's API, ...) over requests.

The endpoints used, exactly as Esplora documents them (Blockstream/esplora ``API.md``):

- ``GET /blocks/tip/height`` (text: the height), ``GET /blocks/tip/hash`` (text), ``GET /block-height/:height`` (text:
  the hash; 404 ``Block not found`` above the tip), ``GET /block/:hash`` (JSON block: ``id``, ``height``,
  ``timestamp``, ``previousblockhash``, electrs adds ``mediantime``);
- ``GET /address/:address`` (``chain_stats`` / ``mempool_stats``: ``tx_count``, ``funded_txo_count``,
  ``funded_txo_sum``, ``spent_txo_count``, ``spent_txo_sum``, in satoshis);
- ``GET /address/:address/txs/chain[/:last_seen_txid]``: confirmed history, newest first, 25 per page;
- ``GET /tx/:txid`` (404 ``Transaction not found``).

Errors come as ``text/plain`` bodies: 400 for a request the server refuses (an invalid address is answered with the
address parser's message, ``Address on invalid network`` for another network's address, ``Invalid hash string``), 404
for what does not exist. Only transient failures are retried, through the shared retry policy
(``ingestion.retry``: exponential backoff with jitter, ``Retry-After`` honoured): connection errors, timeouts,
HTTP 429 and 5xx; each retry moves to the next base URL (failover). A 4xx fails at once with the server's text. Every
answer is checked for the documented field types (a satoshi amount is an integer, ``confirmed`` a boolean, ...):
a malformed answer fails naming the endpoint and the field. Errors name the host only, never a URL's path or query.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from ingestion.evm.chains import redact_url
from ingestion.retry import RetryPolicy, SourceError, TransientError, retry_call

PAGE_SIZE = 25  # Esplora's chain history page
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class EsploraError(SourceError):
    """The Esplora API refused a request, answered malformed data, or stayed unavailable (host only, no path)."""


@dataclass
class EsploraStats:
    requests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, *, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            self.retries += retry


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EsploraError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _hex64(value: Any, where: str) -> str:
    if not isinstance(value, str) or not HEX64.match(value):
        raise EsploraError(f"{where}: expected 64 lowercase hex digits, got {value!r}")
    return value


def check_stats(body: Any, address: str) -> dict[str, Any]:
    where = f"GET /address/{address}"
    if not isinstance(body, dict) or body.get("address") != address:
        raise EsploraError(f"{where}: not an address answer (field 'address')")
    for side in ("chain_stats", "mempool_stats"):
        stats = body.get(side)
        if not isinstance(stats, dict):
            raise EsploraError(f"{where}: field {side!r} is missing")
        for name in ("tx_count", "funded_txo_count", "funded_txo_sum", "spent_txo_count", "spent_txo_sum"):
            _int(stats.get(name), f"{where}: {side}.{name}")
    return body


def check_transaction(tx: Any, where: str) -> dict[str, Any]:
    """The documented transaction format, strictly: amounts in integer satoshis, a boolean status."""
    if not isinstance(tx, dict):
        raise EsploraError(f"{where}: a transaction is not an object")
    txid = _hex64(tx.get("txid"), f"{where}: txid")
    at = f"{where}: transaction {txid}"
    _int(tx.get("fee"), f"{at}: fee")
    vin, vout = tx.get("vin"), tx.get("vout")
    if not isinstance(vin, list) or not isinstance(vout, list):
        raise EsploraError(f"{at}: field 'vin' or 'vout' is not a list")
    for i, entry in enumerate(vin):
        if not isinstance(entry, dict) or not isinstance(entry.get("is_coinbase"), bool):
            raise EsploraError(f"{at}: vin[{i}].is_coinbase is missing")
        prevout = entry.get("prevout")
        if prevout is None and not entry["is_coinbase"]:
            raise EsploraError(f"{at}: vin[{i}].prevout is missing")
        if prevout is not None:
            _int(prevout.get("value") if isinstance(prevout, dict) else None, f"{at}: vin[{i}].prevout.value")
    for i, entry in enumerate(vout):
        _int(entry.get("value") if isinstance(entry, dict) else None, f"{at}: vout[{i}].value")
    status = tx.get("status")
    if not isinstance(status, dict) or not isinstance(status.get("confirmed"), bool):
        raise EsploraError(f"{at}: status.confirmed is missing")
    if status["confirmed"]:
        _int(status.get("block_height"), f"{at}: status.block_height")
        _int(status.get("block_time"), f"{at}: status.block_time")
        _hex64(status.get("block_hash"), f"{at}: status.block_hash")
    return tx


class EsploraClient:
    """One Esplora API, several base URLs in failover order (``https://blockstream.info/api``, a self-hosted electrs).

    Safe to call from several threads (the sync reads addresses concurrently): one requests session per thread."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 30.0, policy: RetryPolicy | None = None) -> None:
        if not urls:
            raise EsploraError("no Esplora URL (wallet --rpc-url or COINFRS_RPC_<CHAIN>)")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = timeout
        self.policy = policy or RetryPolicy(attempts=5, initial_seconds=0.5, max_seconds=8.0)
        self.stats = EsploraStats()
        self._preferred = 0
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _get(self, path: str, *, json: bool = True) -> Any:
        attempt = {"n": 0}

        def once() -> Any:
            index = (self._preferred + attempt["n"]) % len(self.urls)
            attempt["n"] += 1
            self.stats.count(retry=attempt["n"] > 1)
            base = self.urls[index]
            host = redact_url(base)
            try:
                response = self.session.get(base + path, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{host} GET {path}: {type(exc).__name__}") from None
            if response.status_code == 429 or response.status_code >= 500:
                hint = response.headers.get("Retry-After")
                raise TransientError(f"{host} GET {path}: HTTP {response.status_code}",
                                     retry_after=float(hint) if hint and hint.isdigit() else None)
            if response.status_code != 200:
                raise EsploraError(f"{host} GET {path}: HTTP {response.status_code} {response.text.strip()[:200]}")
            self._preferred = index
            if not json:
                return response.text.strip()
            try:
                return response.json()
            except ValueError:
                raise EsploraError(f"{host} GET {path}: not JSON") from None

        try:
            return retry_call(once, self.policy)
        except TransientError as exc:
            raise EsploraError(f"{exc} (unavailable after {self.policy.attempts} attempts)") from None

    # ------------------------------------------------------------------------------------------ endpoints

    def fetch_tip_height(self) -> int:
        text = self._get("/blocks/tip/height", json=False)
        if not text.isdigit():
            raise EsploraError(f"GET /blocks/tip/height: not a height: {text[:40]!r}")
        return int(text)

    def fetch_tip_hash(self) -> str:
        return _hex64(self._get("/blocks/tip/hash", json=False), "GET /blocks/tip/hash")

    def fetch_block_hash(self, height: int) -> str:
        return _hex64(self._get(f"/block-height/{height}", json=False), f"GET /block-height/{height}")

    def fetch_block(self, block_hash: str) -> dict[str, Any]:
        where = f"GET /block/{block_hash}"
        block = self._get(f"/block/{block_hash}")
        if not isinstance(block, dict) or block.get("id") != block_hash:
            raise EsploraError(f"{where}: not the block asked for (field 'id')")
        _int(block.get("height"), f"{where}: height")
        _int(block.get("timestamp"), f"{where}: timestamp")
        if block.get("mediantime") is not None:
            _int(block["mediantime"], f"{where}: mediantime")
        return block

    def fetch_address(self, address: str) -> dict[str, Any]:
        return check_stats(self._get(f"/address/{address}"), address)

    def fetch_transaction(self, txid: str) -> dict[str, Any]:
        return check_transaction(self._get(f"/tx/{txid}"), f"GET /tx/{txid}")

    def fetch_chain_page(self, address: str, last_seen: str | None = None) -> list[dict[str, Any]]:
        path = f"/address/{address}/txs/chain" + (f"/{last_seen}" if last_seen else "")
        page = self._get(path)
        if not isinstance(page, list):
            raise EsploraError(f"GET {path}: not a list of transactions")
        for tx in page:
            check_transaction(tx, f"GET {path}")
            if not tx["status"]["confirmed"]:
                raise EsploraError(f"GET {path}: transaction {tx['txid']} is not confirmed in the chain history")
        return page

    def fetch_history_since(self, address: str, known_txid: str | None) -> list[dict[str, Any]]:
        """The address's confirmed transactions newer than ``known_txid`` (all if None), newest first: pages of 25
        (``last_seen_txid`` pagination) until ``known_txid`` or a short page."""
        found: list[dict[str, Any]] = []
        last_seen: str | None = None
        while True:
            page = self.fetch_chain_page(address, last_seen)
            for tx in page:
                if tx["txid"] == known_txid:
                    return found
                found.append(tx)
            if len(page) < PAGE_SIZE:
                break
            last_seen = page[-1]["txid"]
        if known_txid is not None:
            raise EsploraError(f"{address}: the history no longer holds transaction {known_txid} (reorganised deeper "
                               f"than the confirmations required?)")
        return found
