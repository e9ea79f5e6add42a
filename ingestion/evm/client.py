"""JSON-RPC to an EVM node through web3's HTTPProvider: several URLs with failover, retries on transient errors only.

Responses are returned as the node sent them (hex strings), so staging keeps them unchanged. Batches go out as one
JSON-RPC batch request per call. Transient = the connection failed or timed out, HTTP 429 or 5xx, or a JSON-RPC
error the node marks as temporary (rate limit, header not found yet); anything else (a bad request, a reverted
call) raises at once. History the node no longer keeps (EIP-4444's 4444 "pruned history unavailable", geth's
"missing trie node", a null block far below the head) raises ``HistoryUnavailable`` naming what to do instead. Error messages name the method and the host, never the full URL (it may carry a key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import requests
from web3 import HTTPProvider

from ingestion.evm.chains import ChainConfig, redact_in_text, redact_url
from ingestion.retry import RateLimiter, RetryPolicy, SourceError, SourceUnavailable, TransientError, retry_call

TRANSIENT_RPC_CODES = {-32005, -32603, 429}  # limit exceeded / internal error / rate limited
TRANSIENT_MESSAGES = ("rate limit", "too many requests", "header not found", "timeout", "temporarily")


class RpcError(SourceError):
    """A JSON-RPC call failed for good (not transient, or every URL and retry exhausted)."""


class RpcUnavailable(RpcError, SourceUnavailable):
    """No RPC URL answered after every retry (the shared taxonomy's ``SourceUnavailable``)."""


class TransientRpcError(RpcError, TransientError):
    """Worth retrying: on the next URL, after a backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        TransientError.__init__(self, message, retry_after)


HISTORY_HINT = ("the node does not keep that history (pruned, not an archive node): use an archive node, a later "
                "--start-block or an explorer API (COINFRS_EXPLORER_URL_<CHAIN>)")
PRUNED_HISTORY_CODE = 4444  # EIP-4444: geth, reth and Nethermind answer "pruned history unavailable"
OLD_BLOCK_MARGIN = 1024  # a block this far below the head that the node answers null for is not "not yet": it is gone
_STATE_GONE = ("missing trie node", "historical state", "pruned history", "state histories", "state is not available",
               "blockoutofrangeerror")


class HistoryUnavailable(RpcError):
    """The node does not serve the blocks, receipts, logs or state asked for (expired or pruned): no retry helps."""


@dataclass
class RpcStats:
    requests: int = 0
    retries: int = 0
    failovers: int = 0


def _is_transient_error(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    return error.get("code") in TRANSIENT_RPC_CODES or any(m in message for m in TRANSIENT_MESSAGES)


class EvmRpc:
    """One chain's RPC endpoints, tried in order; the first that answers stays preferred until it fails."""

    def __init__(self, chain: ChainConfig, *, timeout: float = 30.0, retries: int = 4, backoff: float = 0.25,
                 max_batch: int = 200) -> None:
        if not chain.rpc_urls:
            raise RpcError(f"chain {chain.name!r} has no RPC URL (wallet --rpc-url or COINFRS_RPC_{chain.name.upper()})")
        self.chain = chain
        self.retries = retries
        self.backoff = backoff
        self.policy = RetryPolicy(attempts=retries + 1, initial_seconds=backoff, max_seconds=8.0)
        self.max_batch = max_batch
        self.stats = RpcStats()
        # web3's own retry is off: failover and backoff are decided here, for transient errors only
        self._providers = [HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
                           for url in chain.rpc_urls]
        self._current = 0
        self.head: int | None = None  # the last head the node reported (fetch_block_number)
        self._limiter = RateLimiter(1.0 / chain.max_requests_per_second if chain.max_requests_per_second > 0 else 0.0)

    # ------------------------------------------------------------------ transport

    def _attempt(self, send):  # type: ignore[no-untyped-def]
        """``send(provider)`` under the shared retry policy (ingestion/retry.py): transient failures are retried after
        a backoff, on the next URL when there are several."""
        def once() -> Any:
            provider = self._providers[self._current]
            self._limiter.wait()  # client-side rate limit: space requests evenly
            self.stats.requests += 1
            try:
                return send(provider)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status is None or not (status == 429 or status >= 500):
                    raise RpcError(f"{self.chain.name}: HTTP {status} from {redact_url(str(provider.endpoint_uri))}") from None
                retry_after = exc.response.headers.get("Retry-After") if exc.response is not None else None
                raise TransientRpcError(f"HTTP {status}", float(retry_after) if retry_after and
                                        retry_after.replace(".", "", 1).isdigit() else None) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientRpcError(f"{type(exc).__name__}: {exc}") from None

        def fail_over(error: BaseException, attempt: int) -> None:
            self.stats.retries += 1
            if len(self._providers) > 1:
                self._current = (self._current + 1) % len(self._providers)
                self.stats.failovers += 1

        attempts = max(self.retries, len(self._providers)) + 1
        try:
            return retry_call(once, replace(self.policy, attempts=attempts), before_sleep=fail_over)
        except TransientRpcError as last:
            hosts = ", ".join(redact_url(str(p.endpoint_uri)) for p in self._providers)
            raise RpcUnavailable(f"{self.chain.name}: no RPC URL answered ({hosts}): {type(last).__name__}: "
                                 f"{redact_in_text(str(last), self.chain.rpc_urls)}") from None

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; returns its ``result`` unchanged."""
        def send(provider: HTTPProvider) -> Any:
            response = provider.make_request(method, list(params))  # type: ignore[arg-type]
            return _result(method, response)
        return self._attempt(send)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, tolerant: bool = False) -> list[Any]:
        """Several calls as JSON-RPC batches of at most ``max_batch``; results in the calls' order.

        ``tolerant``: a call the node refuses for good (e.g. a reverted ``eth_call``) gives None instead of raising.
        """
        results: list[Any] = []
        for i in range(0, len(calls), self.max_batch):
            chunk = [(m, list(p)) for m, p in calls[i:i + self.max_batch]]

            def send(provider: HTTPProvider, chunk=chunk) -> list[Any]:
                responses = provider.make_batch_request(chunk)  # type: ignore[arg-type]
                if not isinstance(responses, list):  # the whole batch was refused
                    _result("batch", responses)
                    raise RpcError(f"{self.chain.name}: batch refused")
                if len(responses) != len(chunk):
                    raise TransientRpcError(f"batch of {len(chunk)} answered with {len(responses)} responses")
                return [_tolerant_result(m, r) if tolerant else _result(m, r) for (m, _), r in zip(chunk, responses)]
            results.extend(self._attempt(send))
        return results

    # ------------------------------------------------------------------ typed helpers (fetch_*)

    def fetch_chain_id(self) -> int:
        return int(self.call("eth_chainId", []), 16)

    def fetch_block_number(self) -> int:
        self.head = int(self.call("eth_blockNumber", []), 16)
        return self.head

    def fetch_safe_block_number(self) -> int:
        """The newest final block: the node's "finalized" block where configured and offered, else head - K."""
        head = self.fetch_block_number()
        by_depth = max(head - self.chain.confirmations, -1)
        if self.chain.use_finalized_tag:
            try:
                block = self.call("eth_getBlockByNumber", ["finalized", False])
                if block is not None:
                    return int(block["number"], 16)
            except RpcError:
                pass
        return by_depth

    def fetch_blocks(self, numbers: Sequence[int], *, full: bool) -> list[dict[str, Any]]:
        blocks = self.batch([("eth_getBlockByNumber", [hex(n), full]) for n in numbers])
        for n, block in zip(numbers, blocks):
            if block is None:
                head = self.head if self.head is not None else self.fetch_block_number()
                if n < head - OLD_BLOCK_MARGIN:  # far below the head: the node dropped it, it will not come
                    raise HistoryUnavailable(f"{self.chain.name}: the node answers no block {n} (its head is {head}); "
                                             f"{HISTORY_HINT}")
                raise TransientRpcError(f"{self.chain.name}: block {n} not available yet")
        return blocks

    def fetch_receipts(self, tx_hashes: Sequence[str]) -> list[dict[str, Any]]:
        receipts = self.batch([("eth_getTransactionReceipt", [h]) for h in tx_hashes])
        for h, receipt in zip(tx_hashes, receipts):
            if receipt is None:
                raise TransientRpcError(f"{self.chain.name}: receipt of {h} not available yet")
        return receipts

    def fetch_logs(self, *, from_block: int, to_block: int, topics: list[Any]) -> list[dict[str, Any]]:
        return self.call("eth_getLogs", [{"fromBlock": hex(from_block), "toBlock": hex(to_block), "topics": topics}])


def _tolerant_result(method: str, response: Any) -> Any:
    try:
        return _result(method, response)
    except TransientRpcError:
        raise
    except RpcError:
        return None


def _history_gone(error: dict[str, Any]) -> bool:
    """The answer of a node that no longer has what was asked: EIP-4444's code, geth's ``missing trie node`` /
    ``historical state ... is not available``, Anvil's ``BlockOutOfRangeError`` for a block below its kept states."""
    message = str(error.get("message", "")).lower()
    if error.get("code") == PRUNED_HISTORY_CODE or not any(m in message for m in _STATE_GONE):
        return error.get("code") == PRUNED_HISTORY_CODE
    if "blockoutofrangeerror" in message:  # "block height is H but requested was N": gone only when N < H
        numbers = [int(n) for n in message.replace(",", " ").split() if n.isdigit()]
        return len(numbers) >= 2 and numbers[-1] < numbers[-2]
    return True


def _result(method: str, response: Any) -> Any:
    if not isinstance(response, dict):
        raise TransientRpcError(f"{method}: not a JSON-RPC response")
    error = response.get("error")
    if isinstance(error, dict) and _history_gone(error):
        raise HistoryUnavailable(f"{method}: JSON-RPC error {error.get('code')}: {error.get('message')}; {HISTORY_HINT}")
    if error:
        if isinstance(error, dict) and _is_transient_error(error):
            raise TransientRpcError(f"{method}: {error.get('code')} {error.get('message')}")
        message = error.get("message") if isinstance(error, dict) else error
        code = error.get("code") if isinstance(error, dict) else None
        raise RpcError(f"{method}: JSON-RPC error {code}: {message}")
    return response.get("result")
