"""Pure mapping of staged Solana transactions to legs (no network, no database; imported by the canonical build).

Stream ``sol_transactions`` (source ``solana``): one record per (wallet, signature), payload
``{"wallet", "signature", "transaction": <getTransaction result, jsonParsed, as the node returned it>}``.

- SOL: the wallet's change is postBalances - preBalances at its account index. The fee payer (first account key)
  pays ``meta.fee``: leg 1 is the fee, leg 0 the rest of the change (``transfer_in`` / ``transfer_out``). A failed
  transaction still pays its fee and moves nothing else.
- SPL: per mint, the sum over token accounts *owned by the wallet* of post - pre token amounts (base units, with
  the mint's decimals from ``uiTokenAmount.decimals``): legs 2..9, one per mint, sorted by mint.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper

SOURCE = "solana"
STREAM = "sol_transactions"
ACCOUNT_TYPE = "wallet"
SOL_DECIMALS = 9
NATIVE_SYMBOL = "SOL"
MAX_MINTS = 8


class SolanaRecordError(RecordError):
    """A staged Solana record that cannot be mapped; the message names the record and the field."""


def account_name(address: str) -> str:
    return f"solana:{address}"


def mint_alias(mint: str) -> str:
    return f"solana:{mint}".upper()


def base_units(value: int, decimals: int) -> Decimal:
    sign = 1 if value < 0 else 0
    return Decimal((sign, tuple(int(ch) for ch in str(abs(value))), -decimals))


def _pubkey(key: Any) -> str:
    return key["pubkey"] if isinstance(key, dict) else key


def compute_changes(record_id: Any, wallet: str, tx: dict[str, Any]) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """(SOL change without the fee, fee paid by the wallet, {mint: (change, decimals)}) in base units."""
    try:
        meta = tx["meta"]
        keys = [_pubkey(k) for k in tx["transaction"]["message"]["accountKeys"]]
        pre, post, fee = meta["preBalances"], meta["postBalances"], int(meta["fee"])
        loaded = meta.get("loadedAddresses") or {}
        if len(pre) > len(keys):  # json (not jsonParsed) encoding lists lookup-table addresses in meta
            keys += list(loaded.get("writable") or []) + list(loaded.get("readonly") or [])
        change = sum(int(post[i]) - int(pre[i]) for i, k in enumerate(keys) if k == wallet)
        paid = fee if keys and keys[0] == wallet else 0
        tokens: dict[str, list[int]] = {}
        for sign, balances in ((-1, meta.get("preTokenBalances") or []), (1, meta.get("postTokenBalances") or [])):
            for entry in balances:
                if entry.get("owner") != wallet:
                    continue
                amount = entry["uiTokenAmount"]
                slot = tokens.setdefault(entry["mint"], [0, int(amount["decimals"])])
                slot[0] += sign * int(amount["amount"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SolanaRecordError(f"raw record {record_id}: transaction field {exc} is missing or invalid") from None
    return change + paid, paid, {m: (v[0], v[1]) for m, v in tokens.items() if v[0]}


def map_sol_transaction(record: StagedRecord) -> list[LegDraft]:
    payload = record.payload
    try:
        wallet, signature, tx = payload["wallet"], payload["signature"], payload["transaction"]
    except (KeyError, TypeError) as exc:
        raise SolanaRecordError(f"raw record {record.id} ({record.source_raw_id}): field {exc} is missing") from None
    sol, fee, tokens = compute_changes(f"{record.id} ({record.source_raw_id})", wallet, tx)
    if len(tokens) > MAX_MINTS:
        raise SolanaRecordError(f"raw record {record.id} ({record.source_raw_id}): {len(tokens)} mints changed, "
                                f"at most {MAX_MINTS} per transaction are supported")
    account = account_name(wallet)

    def leg(index: int, asset: str, qty: Decimal, kind: str) -> LegDraft:
        return LegDraft(index, account, ACCOUNT_TYPE, "", asset, qty, kind, None, None, signature)

    legs = []
    if sol:
        legs.append(leg(0, NATIVE_SYMBOL, base_units(sol, SOL_DECIMALS), "transfer_in" if sol > 0 else "transfer_out"))
    if fee:
        legs.append(leg(1, NATIVE_SYMBOL, -base_units(fee, SOL_DECIMALS), "fee"))
    for i, mint in enumerate(sorted(tokens)):
        change, decimals = tokens[mint]
        legs.append(leg(2 + i, mint_alias(mint), base_units(change, decimals), "transfer_in" if change > 0 else "transfer_out"))
    return legs


register_mapper(SOURCE, STREAM, map_sol_transaction)
