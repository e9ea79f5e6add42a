"""A node without old history, for tests: a JSON-RPC proxy in front of a real Anvil node that answers for blocks
below its history cutoff the way real nodes do.

Anvil keeps every block (``--prune-history`` drops old *state*, and then refuses ``eth_getBalance``/``eth_call``
at an old block with ``BlockOutOfRangeError``, which the tests use as they are). No Anvil option drops old
*blocks*, as a node with history expiry (EIP-4444) or one started from a snapshot does, so this proxy does:

- ``mode="eip4444"``: like geth (``eth/filters``, ``internal/ethapi``; reth and Nethermind follow it): a block,
  receipt or log range below the cutoff is refused with error ``4444`` "pruned history unavailable";
- ``mode="null"``: like nodes and providers that answer ``null`` for a block they do not have (what the sync used to
  report as "block 0 not available yet").

Everything else (the head, blocks above the cutoff, calls) is forwarded to Anvil unchanged, batches included.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

PRUNED = {"code": 4444, "message": "pruned history unavailable"}


class PrunedHistoryProxy:
    def __init__(self, upstream: str, *, cutoff: int, mode: str = "eip4444") -> None:
        if mode not in ("eip4444", "null"):
            raise ValueError(f"mode {mode!r}: eip4444 or null")
        self.upstream, self.cutoff, self.mode = upstream, cutoff, mode
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                answer = [proxy.answer(c) for c in body] if isinstance(body, list) else proxy.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _pruned_block(self, value: Any) -> bool:
        if value == "earliest":
            return True
        return isinstance(value, str) and value.startswith("0x") and int(value, 16) < self.cutoff

    def _is_pruned(self, method: str, params: list[Any]) -> bool:
        if method == "eth_getBlockByNumber":
            return self._pruned_block(params[0])
        if method == "eth_getLogs":
            query = params[0] if params else {}
            return self._pruned_block(query.get("fromBlock", "latest"))
        if method in ("eth_getBlockByHash", "eth_getTransactionReceipt", "eth_getTransactionByHash"):
            found = requests.post(self.upstream, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                                  timeout=10).json().get("result")
            number = (found or {}).get("number") or (found or {}).get("blockNumber")
            return number is not None and int(number, 16) < self.cutoff
        return False

    def answer(self, call: dict[str, Any]) -> dict[str, Any]:
        method, params = call.get("method", ""), call.get("params") or []
        self.seen.append(method)
        if self._is_pruned(method, params):
            if self.mode == "null" and method != "eth_getLogs":
                return {"jsonrpc": "2.0", "id": call.get("id"), "result": None}
            return {"jsonrpc": "2.0", "id": call.get("id"), "error": PRUNED}
        return requests.post(self.upstream, json=call, timeout=30).json()

    def __enter__(self) -> "PrunedHistoryProxy":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
