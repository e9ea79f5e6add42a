"""Pure mapping of staged EVM records to legs (no network, no database; imported by the canonical build).

Streams (source ``evm``):
- ``evm_transactions``: one record per (wallet, transaction) the wallet sent or received, payload
  ``{"chain", "chain_id", "wallet", "native_symbol", "block": {number, hash, timestamp}, "transaction": <as the
  node returned it>, "receipt": <as the node returned it>}``. Legs: 0 = value out (``transfer_out``), 1 = value in
  (``transfer_in``), 2 = the fee the sender paid: gas used x effective gas price + the rollup's L1 data fee where
  the receipt reports one (``l1Fee``) + blob gas. A failed transaction moves no value but still pays its fee.
- ``evm_logs``: one record per (wallet, ERC-20 Transfer log) with the wallet as ``from`` or ``to``, payload
  ``{"chain", "chain_id", "wallet", "token": {address, alias, symbol, name, decimals}, "block": {...}, "log": <as
  the node returned it>}``. Legs: 0 = out, 1 = in (a transfer to oneself gives both).

- ``evm_opening_balances``: for a wallet scanned from ``start_block`` > 0, its balances just before that block (native
  and the chain's verified tokens), payload ``{"chain", "chain_id", "wallet", "native_symbol", "block": <the start
  block>, "eth_getBalance": <hex at start_block - 1>, "tokens": [{address, alias, symbol, name, decimals,
  "balanceOf": <hex>}]}``. Legs (kind ``opening_balance``): 0 = native, 1..9 = tokens with a balance.

- ``evm_internal``: one record per (wallet, transaction) in which a contract moved native value to or from the
  wallet in an internal call, payload ``{"chain", "chain_id", "wallet", "native_symbol", "block", "transaction_hash",
  "traces": <trace_transaction answer, unchanged>}``. Legs: 0 = value sent out in internal calls, 1 = value received
  (``internal_moves``: calls with callType ``call``, creations with value, self-destruct refunds; a failed call and
  everything under it move nothing; the top-level call is the transaction itself, booked from ``evm_transactions``).
- ``evm_reorg_reversals``: written when a reorg orphans a record whose legs are already booked on a locked day (a
  locked day never changes): payload ``{"chain", "chain_id", "fork_block", "reverses": {raw_record_id, stream,
  source_raw_id}, "legs": [{leg_index, account, asset, quantity, kind}]}`` (the legs as booked). Legs (kind
  ``adjustment``, same index): the negated quantities. Stamped at the orphaned record's time, so the canonical build
  books them, like any late record of a locked day, as adjustments on the first open day.

Quantities stay integers in base units until divided, exactly, by the token's decimals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper

SOURCE = "evm"
TX_STREAM = "evm_transactions"
LOG_STREAM = "evm_logs"
OPENING_STREAM = "evm_opening_balances"
REVERSAL_STREAM = "evm_reorg_reversals"
INTERNAL_STREAM = "evm_internal"
ACCOUNT_TYPE = "wallet"
NATIVE_DECIMALS = 18
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


class EvmRecordError(RecordError):
    """A staged EVM record that cannot be mapped; the message names the record and the field."""


def account_name(chain: str, address: str) -> str:
    return f"{chain}:{address.lower()}"


def token_alias(chain: str, contract: str) -> str:
    """How a token is known in the asset registry (source ``evm``): ``CHAIN:0XCONTRACT``."""
    return f"{chain}:{contract}".upper()


def base_units(value: int, decimals: int) -> Decimal:
    """``value`` base units as an exact decimal of whole units (never rounded, whatever the size)."""
    if decimals < 0 or decimals > 255:
        raise ValueError(f"decimals {decimals} out of range")
    sign = 1 if value < 0 else 0
    digits = tuple(int(ch) for ch in str(abs(value)))
    return Decimal((sign, digits, -decimals))


def hex_int(record: StagedRecord, obj: dict[str, Any], name: str, *, default: int | None = None) -> int:
    value = obj.get(name)
    if value is None:
        if default is not None:
            return default
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {name!r} is missing")
    try:
        return int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {name!r} is not a "
                             f"hex quantity: {value!r}") from None


def token_decimals(record: StagedRecord, token: Any) -> int:
    """The token's decimals as staged; unknown (None: its ``decimals()`` call failed) or not a number is an error
    naming the field, never 0."""
    value = token.get("decimals") if isinstance(token, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field 'decimals' is {value!r} "
                             "(the token's decimals() call did not answer)", field="decimals")
    return value


def balance_of(record: StagedRecord, token: dict[str, Any]) -> int:
    """A staged ``balanceOf`` answer in base units. ``0x`` (an ``eth_call`` to an address without code: the contract
    was not deployed yet at that block) is 0, as the node says there is nothing there."""
    if token.get("balanceOf") == "0x":
        return 0
    return hex_int(record, token, "balanceOf", default=0)


def fee_of(record: StagedRecord, receipt: dict[str, Any]) -> int:
    """What the sender paid, in wei: execution gas, the L1 data fee of rollups that report it, blob gas."""
    fee = hex_int(record, receipt, "gasUsed") * hex_int(record, receipt, "effectiveGasPrice")
    fee += hex_int(record, receipt, "l1Fee", default=0)
    if receipt.get("blobGasUsed") is not None:
        fee += hex_int(record, receipt, "blobGasUsed") * hex_int(record, receipt, "blobGasPrice", default=0)
    return fee


def _address(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


def map_evm_transaction(record: StagedRecord) -> list[LegDraft]:
    payload = record.payload
    try:
        chain, wallet, symbol = payload["chain"], payload["wallet"].lower(), payload["native_symbol"]
        tx, receipt = payload["transaction"], payload["receipt"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {exc} is missing") from None
    account = account_name(chain, wallet)
    tx_hash = tx.get("hash")
    value = base_units(hex_int(record, tx, "value"), NATIVE_DECIMALS)
    succeeded = hex_int(record, receipt, "status", default=1) == 1
    sender, receiver = _address(tx.get("from")), _address(tx.get("to"))

    def leg(index: int, qty: Decimal, kind: str) -> LegDraft:
        return LegDraft(index, account, ACCOUNT_TYPE, "", symbol, qty, kind, None, None, tx_hash)

    legs = []
    if succeeded and value:
        if sender == wallet:
            legs.append(leg(0, -value, "transfer_out"))
        if receiver == wallet:
            legs.append(leg(1, value, "transfer_in"))
    if sender == wallet:
        fee = fee_of(record, receipt)
        if fee:
            legs.append(leg(2, -base_units(fee, NATIVE_DECIMALS), "fee"))
    return legs


def internal_moves(traces: list[dict[str, Any]], wallet: str) -> tuple[int, int]:
    """(wei sent, wei received) by ``wallet`` in the internal calls of one transaction (``trace_transaction``)."""
    wallet = wallet.lower()
    failed: list[tuple[int, ...]] = []
    sent = received = 0
    for trace in traces:
        address = tuple(trace.get("traceAddress") or ())
        if any(address[:len(f)] == f for f in failed):
            continue  # under a failed call: reverted with it
        if trace.get("error"):
            failed.append(address)
            continue
        if not address:
            continue  # the top-level call is the transaction itself
        action, kind = trace.get("action") or {}, trace.get("type")
        if kind == "call" and action.get("callType", "call") == "call":
            sender, receiver, value = action.get("from"), action.get("to"), action.get("value")
        elif kind == "create":
            sender, receiver, value = action.get("from"), (trace.get("result") or {}).get("address"), action.get("value")
        elif kind == "suicide":
            sender, receiver, value = action.get("address"), action.get("refundAddress"), action.get("balance")
        else:
            continue  # delegatecall / staticcall / callcode move no value of their own
        amount = int(value, 16) if isinstance(value, str) else int(value or 0)
        if _address(sender) == wallet:
            sent += amount
        if _address(receiver) == wallet:
            received += amount
    return sent, received


def map_evm_internal(record: StagedRecord) -> list[LegDraft]:
    payload = record.payload
    try:
        chain, wallet, symbol = payload["chain"], payload["wallet"].lower(), payload["native_symbol"]
        traces, tx_hash = payload["traces"], payload["transaction_hash"]
        sent, received = internal_moves(traces, wallet)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {exc} is missing or invalid") from None
    account = account_name(chain, wallet)
    legs = []
    if sent:
        legs.append(LegDraft(0, account, ACCOUNT_TYPE, "", symbol, -base_units(sent, NATIVE_DECIMALS), "transfer_out",
                             None, None, tx_hash))
    if received:
        legs.append(LegDraft(1, account, ACCOUNT_TYPE, "", symbol, base_units(received, NATIVE_DECIMALS), "transfer_in",
                             None, None, tx_hash))
    return legs


def map_evm_log(record: StagedRecord) -> list[LegDraft]:
    payload = record.payload
    try:
        chain, wallet, token, log = payload["chain"], payload["wallet"].lower(), payload["token"], payload["log"]
        topics = log["topics"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {exc} is missing or invalid") from None
    decimals = token_decimals(record, token)
    if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field 'topics' is not an ERC-20 Transfer")
    sender, receiver = "0x" + topics[1][-40:].lower(), "0x" + topics[2][-40:].lower()
    data = log.get("data") or "0x"
    try:
        amount = base_units(int(data, 16) if data != "0x" else 0, decimals)
    except ValueError:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field 'data' is not an amount") from None
    account = account_name(chain, wallet)
    asset = token.get("alias") or token_alias(chain, log["address"])
    tx_hash = log.get("transactionHash")
    legs = []
    if amount:
        if sender == wallet:
            legs.append(LegDraft(0, account, ACCOUNT_TYPE, "", asset, -amount, "transfer_out", None, None, tx_hash))
        if receiver == wallet:
            legs.append(LegDraft(1, account, ACCOUNT_TYPE, "", asset, amount, "transfer_in", None, None, tx_hash))
    return legs


def map_evm_opening(record: StagedRecord) -> list[LegDraft]:
    payload = record.payload
    try:
        chain, wallet, symbol = payload["chain"], payload["wallet"].lower(), payload["native_symbol"]
        tokens = payload["tokens"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {exc} is missing") from None
    account = account_name(chain, wallet)
    legs = []
    native = hex_int(record, payload, "eth_getBalance")
    if native:
        legs.append(LegDraft(0, account, ACCOUNT_TYPE, "", symbol, base_units(native, NATIVE_DECIMALS), "opening_balance",
                             None, None, None))
    held = [t for t in tokens if balance_of(record, t)]
    if len(held) > 9:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field 'tokens' has {len(held)} balances, "
                             f"at most 9 per opening record")
    for i, token in enumerate(held, start=1):
        amount = base_units(balance_of(record, token), token_decimals(record, token))
        legs.append(LegDraft(i, account, ACCOUNT_TYPE, "", token["alias"], amount, "opening_balance", None, None, None))
    return legs


def reversal_payload(chain: str, chain_id: int, fork_block: int, orphaned: StagedRecord,
                     legs: list[LegDraft]) -> dict[str, Any]:
    """The staged payload that takes back ``legs`` (those of ``orphaned`` booked on a locked day)."""
    return {"chain": chain, "chain_id": chain_id, "fork_block": fork_block,
            "reverses": {"raw_record_id": orphaned.id, "stream": orphaned.stream, "source_raw_id": orphaned.source_raw_id},
            "legs": [{"leg_index": d.leg_index, "account": d.account, "asset": d.asset, "quantity": format(d.quantity, "f"),
                      "kind": d.kind} for d in legs]}


def map_evm_reversal(record: StagedRecord) -> list[LegDraft]:
    try:
        legs = [(int(leg["leg_index"]), leg["account"], leg["asset"], Decimal(leg["quantity"]))
                for leg in record.payload["legs"]]
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise EvmRecordError(f"raw record {record.id} ({record.source_raw_id}): field {exc} is missing or invalid") from None
    return [LegDraft(index, account, ACCOUNT_TYPE, "", asset, -quantity, "adjustment", None, None, None)
            for index, account, asset, quantity in legs]


register_mapper(SOURCE, TX_STREAM, map_evm_transaction)
register_mapper(SOURCE, REVERSAL_STREAM, map_evm_reversal)
register_mapper(SOURCE, INTERNAL_STREAM, map_evm_internal)
register_mapper(SOURCE, OPENING_STREAM, map_evm_opening)
register_mapper(SOURCE, LOG_STREAM, map_evm_log)
