"""Talking to a Solana node through solana-py (AsyncClient, commitment ``finalized``): a wallet's balance, its token
accounts (SPL Token and Token-2022), the signatures of each address after its cursor, and each transaction as the
node's own JSON. Each URL is tried in turn; a round where none answers is retried under the shared policy
(ingestion/retry.py). ``ingestion/solana/sync.py`` stages what it reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Finalized
from solana.rpc.models import TokenAccountOpts
from solders.commitment_config import CommitmentLevel
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionConfig
from solders.rpc.requests import GetTransaction
from solders.rpc.responses import GetTransactionResp
from solders.signature import Signature
from solders.transaction_status import UiTransactionEncoding

from ingestion.evm.chains import redact_url
from ingestion.retry import RetryPolicy, SourceError, TransientError, retry_call
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

# the SPL Token and Token-2022 program ids as solana-py itself defines them (a misspelt id is refused by every node)
TOKEN_PROGRAMS = (str(TOKEN_PROGRAM_ID), str(TOKEN_2022_PROGRAM_ID))
PAGE = 1000


class SolanaSyncError(SourceError):
    """The Solana RPC failed for good; the message names the method and host, never the URL's path or query."""


@dataclass
class FetchedWallet:
    slot: int
    lamports: int
    balance_raw: Any
    token_accounts_raw: list[Any]
    holdings: dict[str, tuple[int, int]]  # mint -> (amount, decimals) now
    new: dict[str, list[dict[str, Any]]]  # address -> signature infos, newest first
    transactions: dict[str, dict[str, Any]]  # signature -> getTransaction result (raw)


async def _fetch(url: str, wallet: str, cursors: dict[str, str | None], *, timeout: float, page: int) -> FetchedWallet:
    async with AsyncClient(url, commitment=Finalized, timeout=timeout) as client:
        owner = Pubkey.from_string(wallet)
        balance = await client.get_balance(owner, commitment=Finalized)
        raw_accounts: list[Any] = []
        holdings: dict[str, list[int]] = {}
        token_addresses: list[str] = []
        for program in TOKEN_PROGRAMS:
            response = await client.get_token_accounts_by_owner_json_parsed(
                owner, TokenAccountOpts(program_id=Pubkey.from_string(program)), commitment=Finalized)
            for account in response.value:
                raw = json.loads(account.to_json())
                raw_accounts.append(raw)
                info = raw["account"]["data"]["parsed"]["info"]
                amount = info["tokenAmount"]
                slot = holdings.setdefault(info["mint"], [0, int(amount["decimals"])])
                slot[0] += int(amount["amount"])
                token_addresses.append(raw["pubkey"])
        new: dict[str, list[dict[str, Any]]] = {}
        for address in [wallet, *token_addresses]:
            until = cursors.get(address)
            before: Signature | None = None
            found: list[dict[str, Any]] = []
            while True:
                listed = await client.get_signatures_for_address(
                    Pubkey.from_string(address), before=before, limit=page, commitment=Finalized,
                    until=Signature.from_string(until) if until else None)
                infos = [json.loads(s.to_json()) for s in listed.value]
                found.extend(infos)
                if len(infos) < page:
                    break
                before = Signature.from_string(infos[-1]["signature"])
            new[address] = found
        transactions: dict[str, dict[str, Any]] = {}
        config = RpcTransactionConfig(encoding=UiTransactionEncoding.JsonParsed, commitment=CommitmentLevel.Finalized,
                                      max_supported_transaction_version=0)
        for signature in sorted({s["signature"] for infos in new.values() for s in infos}):
            body = GetTransaction(Signature.from_string(signature), config)
            raw = await client._provider.make_request_unparsed(body)  # the node's own text, kept unchanged
            parsed = GetTransactionResp.from_json(raw)  # strict check by solders: raises on a malformed answer
            if not isinstance(parsed, GetTransactionResp) or parsed.value is None:
                raise SolanaSyncError(f"getTransaction {signature}: no finalized transaction ({json.loads(raw).get('error')})")
            transactions[signature] = json.loads(raw)["result"]
    return FetchedWallet(balance.context.slot, balance.value, json.loads(balance.to_json())["result"], raw_accounts,
                    {m: (v[0], v[1]) for m, v in holdings.items()}, new, transactions)


def fetch_wallet(urls: Sequence[str], wallet: str, cursors: dict[str, str | None], *, timeout: float = 30.0,
                 retries: int = 2, backoff: float = 0.25, page: int = PAGE) -> FetchedWallet:
    """Everything needed from the RPC, trying each URL in turn on transport errors (network only)."""
    if not urls:
        raise SolanaSyncError("solana: no RPC URL (wallet --rpc-url or COINFRS_RPC_SOLANA)")
    def once() -> FetchedWallet:  # every URL in turn; a round where none answers is a transient failure
        last: Exception | None = None
        for url in urls:
            try:
                return asyncio.run(_fetch(url, wallet, cursors, timeout=timeout, page=page))
            except SolanaRpcException as exc:  # transport: connection refused, timeout, HTTP error
                last = exc
        raise TransientError(type(last).__name__)

    try:  # the shared retry policy (ingestion/retry.py)
        return retry_call(once, RetryPolicy(attempts=retries + 1, initial_seconds=backoff, max_seconds=8.0))
    except TransientError as last:
        hosts = ", ".join(redact_url(u) for u in urls)
        raise SolanaSyncError(f"solana: no RPC URL answered ({hosts}): {last}") from None
