"""An Etherscan-compatible account API (Etherscan, its V2 multichain API, Blockscout's ``/api``, ...) over requests:
which transactions of a wallet to fetch, instead of reading every block.

``module=account&action=txlist|txlistinternal|tokentx&address=..&startblock=..&endblock=..&page=..&offset=..
&sort=asc&apikey=..``; answers come in the envelope ``{"status": "1"|"0", "message": ..., "result": [...]}``.
``status 0`` with "No transactions found" is an empty page; "rate limit" in the message or result is retried after
a backoff (as are HTTP 429/5xx and connection errors); anything else ("Invalid API Key", a bad address) fails at
once. Pages are read until one comes back short; the API refuses page x offset > 10,000, so past that the next
request starts again from the last block seen (its entries are deduplicated).

The explorer only says *which* transactions and blocks matter: the transactions, receipts and logs staged are
always the RPC node's own answers (so both discovery paths give the same raw records and the same legs). The API
key never appears in a log or an error (only the scheme and host of the URL do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from ingestion.evm.chains import ExplorerConfig, redact_url
from ingestion.retry import RateLimiter, RetryPolicy, SourceError, TransientError, retry_call

ACTIONS = ("txlist", "txlistinternal", "tokentx")
MAX_WINDOW = 10_000  # page x offset may not exceed this
EMPTY_MESSAGES = ("no transactions found", "no records found", "no internal transactions found", "no token transfers found")


class ExplorerError(SourceError):
    """The account API refused a request for good, or stayed unavailable after the retries (no key in the message)."""


@dataclass
class ExplorerStats:
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0


def _entry_key(action: str, entry: dict[str, Any]) -> tuple[str, ...]:
    return (entry.get("hash", ""), str(entry.get("traceId", "")), str(entry.get("logIndex", "")),
            str(entry.get("contractAddress", "")) if action == "tokentx" else "", entry.get("from", ""), entry.get("to", ""),
            str(entry.get("value", "")))


class ExplorerClient:
    def __init__(self, config: ExplorerConfig, *, timeout: float = 30.0, retries: int = 5, backoff: float = 0.5,
                 session: requests.Session | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.policy = RetryPolicy(attempts=retries + 1, initial_seconds=backoff, max_seconds=8.0)
        self.session = session or requests.Session()
        self.stats = ExplorerStats()
        self._limiter = RateLimiter(1.0 / config.max_requests_per_second if config.max_requests_per_second > 0 else 0.0)
        self.host = redact_url(config.url)

    def _get(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One request with retries on transient answers; returns the ``result`` list."""
        query = {**params, "apikey": self.config.api_key} if self.config.api_key else dict(params)
        what = f"{self.host} {params.get('action')}"

        def once() -> list[dict[str, Any]]:
            self._limiter.wait()  # client-side rate limit: space requests evenly
            self.stats.requests += 1
            try:
                response = self.session.get(self.config.url, params=query, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(type(exc).__name__) from None  # its text holds the URL with the key: never shown
            if response.status_code == 429 or response.status_code >= 500:
                self.stats.rate_limited += response.status_code == 429
                raise TransientError(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise ExplorerError(f"{what}: HTTP {response.status_code}")
            try:
                body = response.json()
                status, message, result = str(body["status"]), str(body.get("message", "")), body["result"]
            except (ValueError, KeyError, TypeError):
                raise ExplorerError(f"{what}: not an account API answer (no status/message/result envelope)") from None
            if status == "1" and isinstance(result, list):
                return result
            text = f"{message} {result if isinstance(result, str) else ''}".strip()
            if "rate limit" in text.lower():
                self.stats.rate_limited += 1
                raise TransientError("rate limited")
            if status == "0" and (isinstance(result, list) and not result or message.lower() in EMPTY_MESSAGES):
                return []
            raise ExplorerError(f"{what}: {text[:200]}")

        def count(error: BaseException, attempt: int) -> None:
            self.stats.retries += 1

        try:
            return retry_call(once, self.policy, before_sleep=count)
        except TransientError as last:
            raise ExplorerError(f"{what}: unavailable after {self.retries} retries ({last})") from None

    def fetch_account(self, action: str, address: str, start_block: int, end_block: int) -> list[dict[str, Any]]:
        """Every entry of ``action`` for ``address`` in blocks [start_block, end_block], oldest first."""
        if action not in ACTIONS:
            raise ValueError(f"unknown account action {action!r}")
        size = max(1, min(self.config.page_size, MAX_WINDOW))
        entries: dict[tuple[str, ...], dict[str, Any]] = {}
        start, page = start_block, 1
        while True:
            rows = self._get({"module": "account", "action": action, "address": address, "startblock": start,
                              "endblock": end_block, "page": page, "offset": size, "sort": "asc"})
            for row in rows:
                entries.setdefault(_entry_key(action, row), row)
            if len(rows) < size:
                break
            if (page + 1) * size > MAX_WINDOW:  # the API's window is full: go on from the last block seen
                last = int(rows[-1]["blockNumber"])
                if last == start:
                    raise ExplorerError(f"{self.host} {action}: more than {MAX_WINDOW} entries in block {last}")
                start, page = last, 1
            else:
                page += 1
        return sorted(entries.values(), key=lambda r: (int(r["blockNumber"]), int(r.get("transactionIndex") or 0)))
