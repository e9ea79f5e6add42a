"""Pure mapping of staged Bitcoin transactions to legs (no network, no database; imported by the canonical build).

Stream ``btc_transactions`` (source ``bitcoin``): one record per (wallet, transaction), id
``<chain>:<wallet>:<txid>``, payload ``{"chain", "wallet", "native_symbol", "own": {address: derivation path ("" for a
single-address wallet)}, "transaction": <GET /tx answer, unchanged>}``. ``own`` lists the wallet's addresses that the
transaction touches (inputs' previous outputs and outputs), so change is recognised across all the wallet's addresses.

In satoshis (exact; 8 decimals): ``spent`` = the wallet's inputs, ``kept`` = outputs to the wallet's own addresses
(change, or a payment to itself), ``fee`` = the transaction's fee.

- The wallet funded every input: leg 2 ``fee`` = the fee; leg 0 ``transfer_out`` = spent - kept - fee (what left the
  wallet), none when everything came back: a payment to oneself is not a disposal, only its fee is.
- The wallet funded no input: leg 1 ``transfer_in`` = kept (``mining`` when the transaction is a coinbase).
- The wallet funded some inputs (a coinjoin, a payjoin): its share of the fee is fee x spent / all inputs
  (rounded down to the satoshi); the rest of its net change is one ``transfer_out`` or ``transfer_in``.

Every leg carries the txid as tx hash, so an exchange's withdrawal to the wallet (or deposit from it) with the same
hash is matched as an internal transfer (``transforms.canonical``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from transforms.ledger_mapping import LegDraft
from transforms.mappers import StagedRecord, register_mapper
from transforms.record_errors import RecordError

SOURCE = "bitcoin"
STREAM = "btc_transactions"
ACCOUNT_TYPE = "wallet"
BTC_DECIMALS = 8


class BitcoinRecordError(RecordError):
    """A staged Bitcoin record that cannot be mapped; the message names the record and the field."""


def account_name(chain: str, wallet: str) -> str:
    return f"{chain}:{wallet}"


def sats(value: int) -> Decimal:
    """``value`` satoshis as an exact decimal of BTC."""
    sign = 1 if value < 0 else 0
    return Decimal((sign, tuple(int(ch) for ch in str(abs(value))), -BTC_DECIMALS))


def compute_moves(record_id: Any, tx: dict[str, Any], own: set[str] | dict[str, Any]) -> tuple[int, int, int, int]:
    """(spent by the wallet, kept by the wallet, the wallet's fee share, all inputs) in satoshis."""
    try:
        spent = total_in = 0
        for entry in tx["vin"]:
            prevout = entry.get("prevout")
            if prevout is None:
                continue  # a coinbase input: new coins, no previous output
            value = int(prevout["value"])
            total_in += value
            if prevout.get("scriptpubkey_address") in own:
                spent += value
        values = [(out.get("scriptpubkey_address"), int(out["value"])) for out in tx["vout"]]  # every value must parse
        kept = sum(value for address, value in values if address in own)
        fee = int(tx["fee"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BitcoinRecordError(f"raw record {record_id}: transaction field {exc} is missing or invalid") from None
    if not spent:
        share = 0
    elif spent == total_in:
        share = fee
    else:
        share = fee * spent // total_in
    return spent, kept, share, total_in


def net_change(record_id: Any, tx: dict[str, Any], own: set[str] | dict[str, Any]) -> int:
    """The wallet's balance change in satoshis (fee included)."""
    spent, kept, _, _ = compute_moves(record_id, tx, own)
    return kept - spent


def map_btc_transaction(record: StagedRecord) -> list[LegDraft]:
    payload = record.payload
    where = f"{record.id} ({record.source_raw_id})"
    try:
        chain, wallet, symbol, own, tx = (payload["chain"], payload["wallet"], payload["native_symbol"], payload["own"],
                                          payload["transaction"])
        txid = tx["txid"]
    except (KeyError, TypeError) as exc:
        raise BitcoinRecordError(f"raw record {where}: field {exc} is missing") from None
    if not isinstance(own, dict) or not own:
        raise BitcoinRecordError(f"raw record {where}: field 'own' names none of the wallet's addresses")
    spent, kept, fee, _ = compute_moves(where, tx, own)
    account = account_name(chain, wallet)

    def leg(index: int, quantity: int, kind: str) -> LegDraft:
        return LegDraft(index, account, ACCOUNT_TYPE, "", symbol, sats(quantity), kind, None, None, txid)

    legs = []
    moved = kept - spent + fee  # the change other than the fee
    if moved < 0:
        legs.append(leg(0, moved, "transfer_out"))
    elif moved > 0:
        coinbase = any(entry.get("is_coinbase") for entry in tx.get("vin") or ())
        legs.append(leg(1, moved, "mining" if coinbase else "transfer_in"))
    if fee:
        legs.append(leg(2, -fee, "fee"))
    return legs


register_mapper(SOURCE, STREAM, map_btc_transaction)
