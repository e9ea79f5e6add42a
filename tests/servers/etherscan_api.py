"""A local Etherscan-compatible account API answering from a real EVM node (Anvil): ``module=account`` with
``action=txlist|txlistinternal|tokentx``, ``address``, ``startblock``/``endblock``, ``page``/``offset``, ``sort``,
``apikey``, in Etherscan's envelope ``{"status", "message", "result"}`` with its field names (all values strings).

What it answers is read from the node over JSON-RPC (blocks, receipts and traces cached: serve a fixed history): normal transactions from the blocks, internal
ones from ``debug_traceTransaction`` (callTracer), token transfers from ``eth_getLogs``. Like Etherscan it refuses a
wrong key ("Invalid API Key"), a window larger than 10,000 entries, and answers every ``rate_limit_every``-th request
with its rate-limit result ("Max calls per sec rate limit reached (5/sec)").
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from web3 import Web3

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


class NodeIndex:
    """Etherscan's view of one address, computed from the node."""

    def __init__(self, rpc_url: str) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url))
        self._cache: dict[tuple[str, Any], Any] = {}  # (method, params) -> answer, for blocks, receipts and traces

    def _call(self, method: str, params: list[Any]) -> Any:
        key = (method, json.dumps(params))
        if method in ("eth_getBlockByNumber", "eth_getTransactionReceipt", "debug_traceTransaction") and key in self._cache:
            return self._cache[key]
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        if method != "eth_getBlockByNumber" or response["result"] is not None:
            self._cache[key] = response["result"]
        return response["result"]

    def _blocks(self, start: int, end: int) -> list[dict[str, Any]]:
        head = _int(self._call("eth_blockNumber", []))
        return [self._call("eth_getBlockByNumber", [hex(n), True]) for n in range(start, min(end, head) + 1)]

    def txlist(self, address: str, start: int, end: int) -> list[dict[str, str]]:
        rows = []
        for block in self._blocks(start, end):
            for tx in block["transactions"]:
                if address not in ((tx.get("from") or "").lower(), (tx.get("to") or "").lower()):
                    continue
                receipt = self._call("eth_getTransactionReceipt", [tx["hash"]])
                ok = _int(receipt["status"]) == 1
                rows.append({
                    "blockNumber": str(_int(block["number"])), "timeStamp": str(_int(block["timestamp"])),
                    "hash": tx["hash"], "nonce": str(_int(tx["nonce"])), "blockHash": block["hash"],
                    "transactionIndex": str(_int(tx["transactionIndex"])), "from": tx["from"].lower(),
                    "to": (tx.get("to") or "").lower(), "value": str(_int(tx["value"])), "gas": str(_int(tx["gas"])),
                    "gasPrice": str(_int(receipt["effectiveGasPrice"])), "isError": "0" if ok else "1",
                    "txreceipt_status": "1" if ok else "0", "input": tx["input"],
                    "contractAddress": (receipt.get("contractAddress") or "").lower(),
                    "cumulativeGasUsed": str(_int(receipt["cumulativeGasUsed"])), "gasUsed": str(_int(receipt["gasUsed"])),
                    "confirmations": "1", "methodId": tx["input"][:10], "functionName": ""})
        return rows

    def txlistinternal(self, address: str, start: int, end: int) -> list[dict[str, str]]:
        rows = []
        for block in self._blocks(start, end):
            for tx in block["transactions"]:
                trace = self._call("debug_traceTransaction", [tx["hash"], {"tracer": "callTracer"}])
                stack = [(call, f"{i}") for i, call in enumerate(trace.get("calls") or [])]
                while stack:
                    call, trace_id = stack.pop(0)
                    stack.extend((c, f"{trace_id}_{i}") for i, c in enumerate(call.get("calls") or []))
                    value = _int(call.get("value") or "0x0")
                    if not value or address not in (call["from"].lower(), (call.get("to") or "").lower()):
                        continue
                    rows.append({
                        "blockNumber": str(_int(block["number"])), "timeStamp": str(_int(block["timestamp"])),
                        "hash": tx["hash"], "from": call["from"].lower(), "to": (call.get("to") or "").lower(),
                        "value": str(value), "contractAddress": "", "input": "", "type": call["type"].lower(),
                        "gas": str(_int(call.get("gas") or "0x0")), "gasUsed": str(_int(call.get("gasUsed") or "0x0")),
                        "traceId": trace_id, "isError": "1" if call.get("error") else "0", "errCode": call.get("error", "")})
        return rows

    def tokentx(self, address: str, start: int, end: int) -> list[dict[str, str]]:
        padded = "0x" + "0" * 24 + address[2:]
        head = _int(self._call("eth_blockNumber", []))
        logs = []
        for topics in ([TRANSFER, padded], [TRANSFER, None, padded]):
            logs += self._call("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(min(end, head)), "topics": topics}])
        rows, seen = [], set()
        for log in sorted(logs, key=lambda g: (_int(g["blockNumber"]), _int(g["logIndex"]))):
            key = (log["transactionHash"], log["logIndex"])
            if key in seen or len(log["topics"]) != 3:
                continue
            seen.add(key)
            block = self._call("eth_getBlockByNumber", [log["blockNumber"], False])
            rows.append({
                "blockNumber": str(_int(log["blockNumber"])), "timeStamp": str(_int(block["timestamp"])),
                "hash": log["transactionHash"], "blockHash": log["blockHash"], "logIndex": str(_int(log["logIndex"])),
                "from": "0x" + log["topics"][1][-40:], "to": "0x" + log["topics"][2][-40:],
                "contractAddress": log["address"].lower(), "value": str(int(log["data"], 16)),
                "transactionIndex": str(_int(log["transactionIndex"])), "confirmations": "1"})
        return rows


class EtherscanServer:
    """``with EtherscanServer(rpc_url, api_key="k") as server: server.url`` (an ``/api`` endpoint)."""

    def __init__(self, rpc_url: str, *, api_key: str = "", rate_limit_every: int = 0) -> None:
        self.index = NodeIndex(rpc_url)
        self.api_key = api_key
        self.rate_limit_every = rate_limit_every
        self.requests: list[dict[str, str]] = []  # query parameters of each request (the key included: test only)
        self.rate_limited = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = server.answer(query)
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/api"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "EtherscanServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @staticmethod
    def _notok(result: str) -> dict[str, Any]:
        return {"status": "0", "message": "NOTOK", "result": result}

    def answer(self, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(query)
            count = len(self.requests)
        if self.api_key and query.get("apikey") != self.api_key:
            return self._notok("Invalid API Key")
        if self.rate_limit_every and count % self.rate_limit_every == 0:
            self.rate_limited += 1
            return self._notok("Max calls per sec rate limit reached (5/sec)")
        action = query.get("action")
        if query.get("module") != "account" or action not in ("txlist", "txlistinternal", "tokentx"):
            return self._notok("Error! Missing Or invalid Module name")
        address = (query.get("address") or "").lower()
        if not Web3.is_address(address):
            return self._notok("Error! Invalid address format")
        page, offset = int(query.get("page", "1")), int(query.get("offset", "10000"))
        if page * offset > 10_000:
            return self._notok("Result window is too large, PageNo x Offset size must be less than or equal to 10000")
        start, end = int(query.get("startblock", "0")), int(query.get("endblock", "99999999"))
        rows = getattr(self.index, action)(address, start, end)
        if query.get("sort") == "desc":
            rows.reverse()
        rows = rows[(page - 1) * offset:page * offset]
        if not rows:
            return {"status": "0", "message": "No transactions found", "result": []}
        return {"status": "1", "message": "OK", "result": rows}
