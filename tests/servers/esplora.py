"""A local Esplora-compatible HTTP API answering from a generated Bitcoin chain (a small UTXO ledger).

It speaks Esplora's REST format as Blockstream/esplora ``API.md`` documents it and as Blockstream/electrs
(``src/rest.rs``) serves it: paths, JSON field names and types (satoshi amounts as integers, ``status.confirmed`` a
boolean, ``block_height``/``block_hash``/``block_time`` only for confirmed transactions), ``text/plain`` bodies for
the tip, a block height's hash and for every error. As strict as electrs:

- an address that does not parse is 400 with the parser's message (``base58 error``, ``bech32 segwit decoding
  error``); another network's address is 400 ``Address on invalid network``; an unused valid address has zero
  stats and an empty history (electrs has no "unknown address");
- ``/address/:a/txs/chain[/:last_seen_txid]``: confirmed history newest first, 25 per page; a last-seen txid that is
  not a hash is ignored (first page), one not in the history gives an empty page;
- ``/tx/:txid``: 400 ``Invalid hash string`` for a malformed txid, 404 ``Transaction not found``;
- ``/block-height/:h``: 400 ``Invalid number``, 404 ``Block not found`` above the tip;
- any other path: 404 ``endpoint does not exist "/path"``; any method but GET: the same.

``fail_every``: every N-th request is answered 503 (a transient outage, to test retries); ``down``: every request;
``latency``: seconds added to every answer; ``hide``: txids left out of the address histories but still counted in the address stats (an indexer that lost one).
The chain: ``fund`` (a coinbase paying an address), ``send`` (spends UTXOs of the given addresses, oldest first, pays
the outputs and the fee, returns the rest as change), ``mine`` (empty blocks, for confirmations). Each call that
creates a transaction mines it in a new block stamped at the time given (strictly increasing).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from embit import script
from embit.base import EmbitError
from embit.networks import NETWORKS

PAGE = 25
MEMPOOL_PAGE = 50
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ESPLORA_TYPES = {"p2wpkh": "v0_p2wpkh", "p2pkh": "p2pkh", "p2sh": "p2sh", "p2wsh": "v0_p2wsh", "p2tr": "v1_p2tr"}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _epoch(when: str | datetime) -> int:
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


@dataclass
class Output:
    address: str
    value: int
    spent_by: str | None = None


@dataclass
class Tx:
    txid: str
    inputs: list[tuple[str, int]]  # (txid, vout); empty for a coinbase
    outputs: list[Output]
    fee: int
    height: int | None = None
    index: int = 0  # position in its block


@dataclass
class Block:
    height: int
    hash: str
    prev: str | None
    timestamp: int
    mediantime: int
    txids: list[str] = field(default_factory=list)


class BitcoinChain:
    """A UTXO ledger with blocks, for one network (``main`` or ``regtest``, embit's names)."""

    def __init__(self, genesis: str | datetime = "2026-01-01T00:00:00", network: str = "main") -> None:
        self.network = NETWORKS[network]
        self.txs: dict[str, Tx] = {}
        self.blocks: list[Block] = []
        self.mempool: list[str] = []
        self._by_address: dict[str, list[str]] = {}
        self._unspent: dict[str, dict[tuple[str, int], int]] = {}  # address -> {(txid, vout): value}
        self._n = 0
        self._new_block(_epoch(genesis), [])

    # ------------------------------------------------------------------------------ building the chain

    def _new_block(self, timestamp: int, txids: list[str]) -> Block:
        if self.blocks and timestamp <= self.blocks[-1].timestamp:
            timestamp = self.blocks[-1].timestamp + 1
        prev = self.blocks[-1].hash if self.blocks else None
        height = len(self.blocks)
        last = [b.timestamp for b in self.blocks[-10:]] + [timestamp]
        block = Block(height, _sha(f"block:{height}:{prev}:{timestamp}:{','.join(txids)}"), prev, timestamp,
                      int(statistics.median_low(last)), list(txids))
        self.blocks.append(block)
        for index, txid in enumerate(txids):
            self.txs[txid].height, self.txs[txid].index = height, index
        return block

    def _add(self, inputs: list[tuple[str, int]], outputs: list[Output], fee: int) -> Tx:
        self._n += 1
        txid = _sha(f"tx:{self._n}:{inputs}:{[(o.address, o.value) for o in outputs]}")
        tx = Tx(txid, inputs, outputs, fee)
        self.txs[txid] = tx
        touched = {self.txs[t].outputs[n].address for t, n in inputs} | {o.address for o in outputs}
        for address in touched:
            self._by_address.setdefault(address, []).append(txid)
        for t, n in inputs:
            self.txs[t].outputs[n].spent_by = txid
            self._unspent[self.txs[t].outputs[n].address].pop((t, n))
        for n, out in enumerate(outputs):
            self._unspent.setdefault(out.address, {})[(txid, n)] = out.value
        return tx

    def fund(self, when: str | datetime, address: str, value: int) -> str:
        """A coinbase paying ``value`` to ``address``, mined at ``when``."""
        tx = self._add([], [Output(address, value)], 0)
        self._new_block(_epoch(when), [tx.txid])
        return tx.txid

    def utxos(self, addresses: list[str] | set[str]) -> list[tuple[str, int, int]]:
        """(txid, vout, value) of the unspent outputs of ``addresses``, oldest first."""
        found = [(t, n, v) for address in set(addresses) for (t, n), v in self._unspent.get(address, {}).items()]
        unmined = 1 << 40
        return sorted(found, key=lambda u: (self.txs[u[0]].height if self.txs[u[0]].height is not None else unmined,
                                            u[0], u[1]))

    def send(self, when: str | datetime | None, spend_from: list[str] | set[str], outputs: list[tuple[str, int]], fee: int,
             change: str | None = None) -> str:
        """Spend the oldest UTXOs of ``spend_from`` for ``outputs`` + ``fee``; the rest goes to ``change`` (else the first
        spending address). Mined at ``when`` in a block of its own; ``when`` None leaves it in the mempool."""
        need = sum(v for _, v in outputs) + fee
        chosen, total = [], 0
        for txid, n, value in self.utxos(spend_from):
            chosen.append((txid, n))
            total += value
            if total >= need:
                break
        if total < need:
            raise ValueError(f"insufficient funds: {total} < {need}")
        outs = [Output(a, v) for a, v in outputs]
        if total > need:
            outs.append(Output(change or self.txs[chosen[0][0]].outputs[chosen[0][1]].address, total - need))
        tx = self._add(chosen, outs, fee)
        if when is None:
            self.mempool.append(tx.txid)
        else:
            self._new_block(_epoch(when), [tx.txid])
        return tx.txid

    def mine(self, when: str | datetime, count: int = 1, *, step: int = 600) -> None:
        """``count`` blocks from ``when`` (``step`` seconds apart), the mempool in the first."""
        start = _epoch(when)
        for i in range(count):
            txids, self.mempool = (self.mempool, []) if i == 0 else ([], self.mempool)
            self._new_block(start + i * step, txids)

    @property
    def tip(self) -> Block:
        return self.blocks[-1]

    def balance(self, addresses: list[str] | set[str], at: str | datetime | None = None) -> int:
        """Confirmed balance of ``addresses`` in blocks stamped at or before ``at`` (all blocks if None)."""
        limit = _epoch(at) if at is not None else None
        total = 0
        for txid, tx in self.txs.items():
            if tx.height is None or (limit is not None and self.blocks[tx.height].timestamp > limit):
                continue
            total += sum(o.value for o in tx.outputs if o.address in addresses)
            total -= sum(self.txs[t].outputs[n].value for t, n in tx.inputs if self.txs[t].outputs[n].address in addresses)
        return total

    # ------------------------------------------------------------------------------ Esplora's JSON

    def _script(self, address: str) -> dict[str, Any]:
        spk = script.address_to_scriptpubkey(address)
        data = spk.data
        kind = spk.script_type()
        if kind == "p2wpkh":
            asm = f"OP_0 OP_PUSHBYTES_20 {data[2:].hex()}"
        elif kind == "p2pkh":
            asm = f"OP_DUP OP_HASH160 OP_PUSHBYTES_20 {data[3:23].hex()} OP_EQUALVERIFY OP_CHECKSIG"
        elif kind == "p2sh":
            asm = f"OP_HASH160 OP_PUSHBYTES_20 {data[2:22].hex()} OP_EQUAL"
        elif kind == "p2tr":
            asm = f"OP_PUSHNUM_1 OP_PUSHBYTES_32 {data[2:].hex()}"
        else:
            asm = f"OP_0 OP_PUSHBYTES_32 {data[2:].hex()}"
        return {"scriptpubkey": data.hex(), "scriptpubkey_asm": asm, "scriptpubkey_type": ESPLORA_TYPES.get(kind, "unknown"),
                "scriptpubkey_address": address}

    def _output(self, out: Output) -> dict[str, Any]:
        return {**self._script(out.address), "value": out.value}

    def status(self, tx: Tx) -> dict[str, Any]:
        if tx.height is None:
            return {"confirmed": False}
        block = self.blocks[tx.height]
        return {"confirmed": True, "block_height": block.height, "block_hash": block.hash, "block_time": block.timestamp}

    def tx_json(self, tx: Tx) -> dict[str, Any]:
        if tx.inputs:
            vin = [{"txid": t, "vout": n, "prevout": self._output(self.txs[t].outputs[n]), "scriptsig": "",
                    "scriptsig_asm": "", "witness": ["30" * 36, "02" + "11" * 32], "is_coinbase": False,
                    "sequence": 4294967293} for t, n in tx.inputs]
        else:
            vin = [{"txid": "0" * 64, "vout": 4294967295, "prevout": None, "scriptsig": "03" + tx.txid[:6],
                    "scriptsig_asm": f"OP_PUSHBYTES_3 {tx.txid[:6]}", "witness": ["00" * 32], "is_coinbase": True,
                    "sequence": 4294967295}]
        size = 10 + 68 * len(vin) + 31 * len(tx.outputs)
        return {"txid": tx.txid, "version": 2, "locktime": 0, "vin": vin, "vout": [self._output(o) for o in tx.outputs],
                "size": size, "weight": size * 3 + 40, "fee": tx.fee, "status": self.status(tx)}

    def block_json(self, block: Block) -> dict[str, Any]:
        return {"id": block.hash, "height": block.height, "version": 536870912,
                "timestamp": block.timestamp, "tx_count": len(block.txids), "size": 285 + 250 * len(block.txids),
                "weight": 1140 + 1000 * len(block.txids), "merkle_root": _sha(f"merkle:{block.hash}"),
                "previousblockhash": block.prev, "mediantime": block.mediantime, "nonce": block.height * 7 + 1,
                "bits": 386089497, "difficulty": 1.0}

    def history(self, address: str, confirmed: bool) -> list[Tx]:
        txs = [self.txs[t] for t in self._by_address.get(address, [])]
        if confirmed:
            return sorted((t for t in txs if t.height is not None), key=lambda t: (t.height, t.index), reverse=True)
        return [t for t in reversed(txs) if t.height is None]

    def stats(self, address: str, confirmed: bool) -> dict[str, int]:
        txs = self.history(address, confirmed)
        funded = [o for t in txs for o in t.outputs if o.address == address]
        spent = [self.txs[s].outputs[n] for t in txs for s, n in t.inputs if self.txs[s].outputs[n].address == address]
        return {"funded_txo_count": len(funded), "funded_txo_sum": sum(o.value for o in funded),
                "spent_txo_count": len(spent), "spent_txo_sum": sum(o.value for o in spent), "tx_count": len(txs)}


class HttpAnswer(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class EsploraServer:
    """``with EsploraServer(chain) as url:`` serves ``chain`` at ``url`` (an Esplora API base URL)."""

    def __init__(self, chain: BitcoinChain, *, fail_every: int = 0, prefix: str = "/api", latency: float = 0.0) -> None:
        self.chain = chain
        self.latency = latency  # seconds added to every answer (a remote API's round trip)
        self.fail_every = fail_every
        self.down = False
        self.hide: set[str] = set()  # txids left out of address histories (a lossy indexer), still in the stats
        self.prefix = prefix
        self.requests: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: str, content_type: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                # headers and body in one write: two small writes on a kept-alive connection meet the client's
                # delayed ACK (40 ms per request), which would measure the test server, not the sync
                self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]
                self.wfile.write(b"".join(self._headers_buffer))  # type: ignore[attr-defined]
                self._headers_buffer = []  # type: ignore[attr-defined]

            def do_GET(self) -> None:  # noqa: N802
                try:
                    value = server.answer(self.path)
                except HttpAnswer as answer:
                    self._send(answer.status, answer.text, "text/plain")
                    return
                if isinstance(value, str):
                    self._send(200, value, "text/plain")
                else:
                    self._send(200, json.dumps(value), "application/json")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._send(404, f'endpoint does not exist "{self.path}"', "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{prefix}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------------------ routes

    def _address(self, text: str) -> str:
        network = self.chain.network
        try:
            script.address_to_scriptpubkey(text)
        except (EmbitError, ValueError, KeyError, IndexError):
            bech = text.lower()[:4] in ("bc1q", "bc1p", "tb1q", "tb1p") or text.lower().startswith("bcrt1")
            raise HttpAnswer(400, "bech32 segwit decoding error" if bech else "base58 error") from None
        lowered = text.lower()
        if "1" in lowered[:5] and lowered.split("1", 1)[0] in {n["bech32"] for n in NETWORKS.values()}:
            ok = lowered.split("1", 1)[0] == network["bech32"]
        else:
            from embit import base58

            ok = base58.decode_check(text)[:1] in (network["p2pkh"], network["p2sh"])
        if not ok:
            raise HttpAnswer(400, "Address on invalid network")
        return text

    def _tx(self, text: str) -> Tx:
        if not HEX64.match(text):
            raise HttpAnswer(400, "Invalid hash string")
        tx = self.chain.txs.get(text)
        if tx is None:
            raise HttpAnswer(404, "Transaction not found")
        return tx

    def answer(self, raw_path: str) -> Any:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.requests.append(raw_path)
            count = len(self.requests)
            if self.down or (self.fail_every and count % self.fail_every == 0):
                raise HttpAnswer(503, "Service Unavailable")
            path = raw_path.split("?", 1)[0]
            if not path.startswith(self.prefix + "/"):
                raise HttpAnswer(404, f'endpoint does not exist "{path}"')
            parts = path[len(self.prefix) + 1:].split("/")
            chain = self.chain
            match parts:
                case ["blocks", "tip", "height"]:
                    return str(chain.tip.height)
                case ["blocks", "tip", "hash"]:
                    return chain.tip.hash
                case ["block-height", height]:
                    if not height.isdigit():
                        raise HttpAnswer(400, "Invalid number")
                    if int(height) > chain.tip.height:
                        raise HttpAnswer(404, "Block not found")
                    return chain.blocks[int(height)].hash
                case ["block", block_hash]:
                    if not HEX64.match(block_hash):
                        raise HttpAnswer(400, "Invalid hash string")
                    for block in chain.blocks:
                        if block.hash == block_hash:
                            return chain.block_json(block)
                    raise HttpAnswer(404, "Block not found")
                case ["tx", txid]:
                    return chain.tx_json(self._tx(txid))
                case ["tx", txid, "status"]:
                    return chain.status(self._tx(txid))
                case ["address", address]:
                    self._address(address)
                    return {"address": address, "chain_stats": chain.stats(address, True),
                            "mempool_stats": chain.stats(address, False)}
                case ["address", address, "txs"]:
                    self._address(address)
                    return [chain.tx_json(t) for t in chain.history(address, False)[:MEMPOOL_PAGE]] + \
                           [chain.tx_json(t) for t in chain.history(address, True)[:PAGE]]
                case ["address", address, "txs", "mempool"]:
                    self._address(address)
                    return [chain.tx_json(t) for t in chain.history(address, False)[:MEMPOOL_PAGE]]
                case ["address", address, "txs", "chain"] | ["address", address, "txs", "chain", _]:
                    self._address(address)
                    history = [t for t in chain.history(address, True) if t.txid not in self.hide]
                    last_seen = parts[4] if len(parts) == 5 and HEX64.match(parts[4]) else None
                    if last_seen is not None:
                        ids = [t.txid for t in history]
                        history = history[ids.index(last_seen) + 1:] if last_seen in ids else []
                    return [chain.tx_json(t) for t in history[:PAGE]]
                case ["address", address, "utxo"]:
                    self._address(address)
                    return [{"txid": t, "vout": n, "value": v, "status": chain.status(chain.txs[t])}
                            for t, n, v in chain.utxos([address])]
            raise HttpAnswer(404, f'endpoint does not exist "{path}"')
