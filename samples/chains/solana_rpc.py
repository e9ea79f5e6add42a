"""A local Solana JSON-RPC server for tests and the demo: answers in Solana's format from a generated ledger.

``SolanaLedger`` simulates SOL and SPL transfers between keypair-derived accounts, keeping balances and producing,
for each transaction, what ``getTransaction`` (jsonParsed, v0) returns: account keys with signer/writable/source,
``meta.fee``, pre/post balances, pre/post token balances by owner and mint, ``status``/``err``. ``SolanaRpcServer``
serves ``getBalance``, ``getTokenAccountsByOwner`` (jsonParsed), ``getSignaturesForAddress`` (newest first, with
``before``/``until``/``limit``), ``getTransaction`` (refusing a v0 transaction without
``maxSupportedTransactionVersion: 0``, error -32015, like a real node) and ``getSlot``, over HTTP on 127.0.0.1.
Every key and signature is real base58 (``Keypair.from_seed``); solders parses every answer strictly.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from solders.keypair import Keypair

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
FEE = 5000
TOKEN_ACCOUNT_RENT = 2039280
# the token programs a node knows: SPL Token and Token-2022 (spelt out here, not imported from the client under test)
KNOWN_TOKEN_PROGRAMS = (TOKEN_PROGRAM, "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")


def keypair(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(name.encode()).digest())


def address(name: str) -> str:
    return str(keypair(name).pubkey())


@dataclass
class SolanaLedger:
    slot: int = 1000
    lamports: dict[str, int] = field(default_factory=dict)
    # token account -> (owner, mint, amount)
    token_accounts: dict[str, list[Any]] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_address: dict[str, list[str]] = field(default_factory=dict)  # address -> signatures, oldest first
    _count: int = 0

    def fund(self, owner: str, lamports: int) -> None:
        self.lamports[owner] = self.lamports.get(owner, 0) + lamports

    def mint(self, mint: str, decimals: int) -> None:
        self.decimals[mint] = decimals

    def token_account(self, owner: str, mint: str) -> str:
        for account, (o, m, _) in self.token_accounts.items():
            if o == owner and m == mint:
                return account
        account = address(f"ata:{owner}:{mint}")
        self.token_accounts[account] = [owner, mint, 0]
        return account

    def give_tokens(self, owner: str, mint: str, amount: int) -> None:
        self.token_accounts[self.token_account(owner, mint)][2] += amount

    def _record(self, when: str, payer: str, keys: list[tuple[str, bool, bool]], instructions: list[dict[str, Any]],
                lamport_moves: dict[str, int], token_moves: dict[str, int], failed: bool) -> str:
        self._count += 1
        self.slot += 7
        signature = str(keypair(payer).sign_message(f"tx{self._count}".encode()))
        accounts = [k for k, _, _ in keys]
        pre = [self.lamports.get(k, 0) for k in accounts]
        token_keys = [i for i, k in enumerate(accounts) if k in self.token_accounts]
        pre_tokens = [self._token_balance(i, accounts[i]) for i in token_keys]
        self.lamports[payer] = self.lamports.get(payer, 0) - FEE
        if not failed:
            for k, delta in lamport_moves.items():
                self.lamports[k] = self.lamports.get(k, 0) + delta
            for k, delta in token_moves.items():
                self.token_accounts[k][2] += delta
        post = [self.lamports.get(k, 0) for k in accounts]
        post_tokens = [self._token_balance(i, accounts[i]) for i in token_keys]
        block_time = int(datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp())
        err = {"InstructionError": [0, {"Custom": 1}]} if failed else None
        self.transactions[signature] = {
            "slot": self.slot, "blockTime": block_time, "version": 0,
            "transaction": {"signatures": [signature], "message": {
                "accountKeys": [{"pubkey": k, "signer": s, "writable": w, "source": "transaction"} for k, s, w in keys],
                "recentBlockhash": address(f"blockhash{self.slot}"), "instructions": instructions,
                "addressTableLookups": []}},
            "meta": {"err": err, "status": {"Err": err} if failed else {"Ok": None}, "fee": FEE,
                     "preBalances": pre, "postBalances": post, "innerInstructions": [],
                     "logMessages": [], "preTokenBalances": pre_tokens, "postTokenBalances": post_tokens,
                     "rewards": [], "loadedAddresses": {"writable": [], "readonly": []}, "computeUnitsConsumed": 450},
        }
        for k in accounts:
            if k not in (SYSTEM_PROGRAM, TOKEN_PROGRAM):
                self.by_address.setdefault(k, []).append(signature)
        return signature

    def _token_balance(self, index: int, account: str) -> dict[str, Any]:
        owner, mint, amount = self.token_accounts[account]
        decimals = self.decimals[mint]
        ui = str(amount / 10 ** decimals) if amount else "0"
        return {"accountIndex": index, "mint": mint, "owner": owner, "programId": TOKEN_PROGRAM,
                "uiTokenAmount": {"amount": str(amount), "decimals": decimals, "uiAmount": float(ui) if amount else None,
                                  "uiAmountString": ui}}

    def transfer_sol(self, when: str, sender: str, receiver: str, lamports: int, *, failed: bool = False) -> str:
        keys = [(sender, True, True), (receiver, False, True), (SYSTEM_PROGRAM, False, False)]
        instruction = {"program": "system", "programId": SYSTEM_PROGRAM, "stackHeight": None,
                       "parsed": {"type": "transfer", "info": {"source": sender, "destination": receiver, "lamports": lamports}}}
        return self._record(when, sender, keys, [instruction], {sender: -lamports, receiver: lamports}, {}, failed)

    def transfer_tokens(self, when: str, mint: str, sender: str, receiver: str, amount: int, *, payer: str | None = None,
                        failed: bool = False) -> str:
        """An SPL transfer between the owners' token accounts; the receiver's owner is not an account key."""
        payer = payer or sender
        source, new = self.token_account(sender, mint), receiver not in {o for o, m, _ in self.token_accounts.values() if m == mint}
        destination = self.token_account(receiver, mint)
        keys = [(payer, True, True)] + ([(sender, True, False)] if sender != payer else []) + [
            (source, False, True), (destination, False, True), (TOKEN_PROGRAM, False, False)]
        lamport_moves = {payer: -TOKEN_ACCOUNT_RENT, destination: TOKEN_ACCOUNT_RENT} if new else {}
        instruction = {"program": "spl-token", "programId": TOKEN_PROGRAM, "stackHeight": None, "parsed": {
            "type": "transfer", "info": {"source": source, "destination": destination, "authority": sender,
                                         "amount": str(amount)}}}
        return self._record(when, payer, keys, [instruction], lamport_moves, {source: -amount, destination: amount}, failed)


class _Handler(BaseHTTPRequestHandler):
    ledger: SolanaLedger

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = [self._answer(b) for b in body] if isinstance(body, list) else self._answer(body)
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method, params, rid = request["method"], request.get("params") or [], request.get("id")
        ledger = self.server.ledger  # type: ignore[attr-defined]
        context = {"slot": ledger.slot, "apiVersion": "2.2.0"}
        if method == "getBalance":
            result: Any = {"context": context, "value": ledger.lamports.get(params[0], 0)}
        elif method == "getSlot":
            result = ledger.slot
        elif method == "getTokenAccountsByOwner":
            program = (params[1] or {}).get("programId")
            if program is not None and program not in KNOWN_TOKEN_PROGRAMS:  # as Agave answers (rpc.rs)
                return {"jsonrpc": "2.0", "id": rid, "error": {
                    "code": -32602, "message": "Invalid param: unrecognized Token program id"}}
            value = []
            for account, (owner, mint, amount) in sorted(ledger.token_accounts.items()):
                if owner != params[0] or program != TOKEN_PROGRAM:
                    continue
                value.append({"pubkey": account, "account": {
                    "lamports": TOKEN_ACCOUNT_RENT, "owner": TOKEN_PROGRAM, "executable": False, "rentEpoch": 0, "space": 165,
                    "data": {"program": "spl-token", "space": 165, "parsed": {"type": "account", "info": {
                        "isNative": False, "mint": mint, "owner": owner, "state": "initialized",
                        "tokenAmount": ledger._token_balance(0, account)["uiTokenAmount"]}}}}})
            result = {"context": context, "value": value}
        elif method == "getSignaturesForAddress":
            config = params[1] if len(params) > 1 and params[1] else {}
            signatures = list(reversed(ledger.by_address.get(params[0], [])))
            if config.get("before"):
                signatures = signatures[signatures.index(config["before"]) + 1:]
            if config.get("until") and config["until"] in signatures:
                signatures = signatures[:signatures.index(config["until"])]
            signatures = signatures[:config.get("limit") or 1000]
            result = [{"signature": s, "slot": ledger.transactions[s]["slot"], "err": ledger.transactions[s]["meta"]["err"],
                       "memo": None, "blockTime": ledger.transactions[s]["blockTime"], "confirmationStatus": "finalized"}
                      for s in signatures]
        elif method == "getTransaction":
            config = params[1] if len(params) > 1 and params[1] else {}
            tx = ledger.transactions.get(params[0])
            if tx is not None and config.get("maxSupportedTransactionVersion") is None:
                return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32015, "message":
                        "Transaction version (0) is not supported by the requesting client. Please try the request "
                        "again with the following configuration parameter: \"maxSupportedTransactionVersion\": 0"}}
            if config.get("encoding") != "jsonParsed":
                return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "this server speaks jsonParsed"}}
            result = tx
        else:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}


class SolanaRpcServer:
    """``with SolanaRpcServer(ledger) as url:`` serves the ledger on a free port of 127.0.0.1."""

    def __init__(self, ledger: SolanaLedger) -> None:
        self.ledger = ledger
        self.httpd: ThreadingHTTPServer | None = None

    def __enter__(self) -> str:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.ledger = self.ledger  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        assert self.httpd is not None
        self.httpd.shutdown()
        self.httpd.server_close()
