"""Pure mappers of on-chain records: exact base units, fees (L1 data fee, blob gas), failed transactions, errors
naming the record and the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingestion.evm.mapping import EvmRecordError, base_units, map_evm_log, map_evm_transaction
from ingestion.solana.mapping import SolanaRecordError, map_sol_transaction
from transforms.mappers import StagedRecord

W = "0x1000000000000000000000000000000000000001"
X = "0x3000000000000000000000000000000000000003"
TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def staged(stream: str, payload: dict, source: str = "evm") -> StagedRecord:
    return StagedRecord(7, source, stream, "acct", "raw-7", None, payload)


def tx_payload(sender: str, to: str | None, value: int, receipt: dict) -> dict:
    return {"chain": "base", "chain_id": 8453, "wallet": W, "native_symbol": "ETH", "block": {"number": 1},
            "transaction": {"hash": "0xabc", "from": sender, "to": to, "value": hex(value)}, "receipt": receipt}


def test_base_units_are_exact_whatever_the_size() -> None:
    huge = 2 ** 256 - 1
    assert str(base_units(huge, 18)).replace(".", "").lstrip("0") == str(huge)  # 78 digits: no context rounding
    assert str(base_units(huge, 18)).index(".") == len(str(huge)) - 18
    assert base_units(1, 18) == Decimal("1e-18") and base_units(-1500000, 6) == Decimal("-1.5")


def test_a_rollup_send_pays_execution_gas_plus_the_l1_data_fee_and_blob_gas() -> None:
    receipt = {"status": "0x1", "gasUsed": hex(21000), "effectiveGasPrice": hex(1_000_000_007), "l1Fee": hex(123_456_789),
               "blobGasUsed": hex(131072), "blobGasPrice": hex(3)}
    legs = map_evm_transaction(staged("evm_transactions", tx_payload(W, X, 10 ** 18, receipt)))
    assert [(l.leg_index, l.kind, l.quantity, l.asset) for l in legs] == [
        (0, "transfer_out", Decimal(-1), "ETH"),
        (2, "fee", -base_units(21000 * 1_000_000_007 + 123_456_789 + 131072 * 3, 18), "ETH"),
    ]
    assert all(l.account == f"base:{W}" and l.tx_hash == "0xabc" for l in legs)


def test_a_failed_send_moves_nothing_but_its_fee_and_a_receiver_pays_no_fee() -> None:
    failed = {"status": "0x0", "gasUsed": hex(50000), "effectiveGasPrice": hex(2)}
    assert [(l.kind, l.quantity) for l in map_evm_transaction(staged("evm_transactions", tx_payload(W, X, 5, failed)))] \
        == [("fee", -base_units(100000, 18))]
    received = map_evm_transaction(staged("evm_transactions", tx_payload(X, W, 5, {**failed, "status": "0x1"})))
    assert [(l.kind, l.quantity) for l in received] == [("transfer_in", base_units(5, 18))]


def test_a_token_transfer_log_maps_with_the_contract_decimals_and_bad_input_names_the_field() -> None:
    log = {"address": "0xToken", "topics": [TOPIC, "0x" + "0" * 24 + W[2:], "0x" + "0" * 24 + X[2:]],
           "data": hex(1_500_001), "transactionHash": "0xdef", "logIndex": "0x3"}
    payload = {"chain": "base", "chain_id": 8453, "wallet": W, "log": log,
               "token": {"address": "0xtoken", "alias": "BASE:0XTOKEN", "decimals": 6}}
    [leg] = map_evm_log(staged("evm_logs", payload))
    assert (leg.kind, leg.quantity, leg.asset, leg.tx_hash) == ("transfer_out", Decimal("-1.500001"), "BASE:0XTOKEN", "0xdef")
    with pytest.raises(EvmRecordError, match=r"raw record 7 \(raw-7\): field 'topics' is not an ERC-20 Transfer"):
        map_evm_log(staged("evm_logs", {**payload, "log": {**log, "topics": log["topics"][:2]}}))
    with pytest.raises(EvmRecordError, match=r"raw record 7 \(raw-7\): field 'gasUsed' is missing"):
        map_evm_transaction(staged("evm_transactions", tx_payload(W, X, 1, {"status": "0x1"})))


def sol_tx(keys: list[str], pre: list[int], post: list[int], fee: int, pre_tokens=(), post_tokens=(), err=None) -> dict:
    return {"slot": 5, "blockTime": 1767225600, "transaction": {"signatures": ["sig"], "message": {
        "accountKeys": [{"pubkey": k, "signer": i == 0, "writable": True} for i, k in enumerate(keys)]}},
        "meta": {"err": err, "fee": fee, "preBalances": pre, "postBalances": post,
                 "preTokenBalances": list(pre_tokens), "postTokenBalances": list(post_tokens)}}


def token_balance(index: int, owner: str, mint: str, amount: int, decimals: int = 6) -> dict:
    return {"accountIndex": index, "mint": mint, "owner": owner, "uiTokenAmount": {"amount": str(amount), "decimals": decimals}}


def test_solana_fee_payer_pays_the_fee_and_spl_changes_count_by_owner() -> None:
    tx = sol_tx(["Wal", "Ata1", "Other", "Ata2"], [10_000_000, 0, 5, 0], [7_995_000, 0, 2_000_005, 0], 5000,
                pre_tokens=[token_balance(1, "Wal", "MintA", 900), token_balance(3, "Other", "MintA", 0)],
                post_tokens=[token_balance(1, "Wal", "MintA", 400), token_balance(3, "Other", "MintA", 500)])
    legs = map_sol_transaction(staged("sol_transactions", {"wallet": "Wal", "signature": "sig", "transaction": tx}, "solana"))
    assert [(l.leg_index, l.kind, l.asset, l.quantity) for l in legs] == [
        (0, "transfer_out", "SOL", Decimal("-0.002")), (1, "fee", "SOL", Decimal("-0.000005")),
        (2, "transfer_out", "SOLANA:MINTA", Decimal("-0.0005"))]
    other = map_sol_transaction(staged("sol_transactions", {"wallet": "Other", "signature": "sig", "transaction": tx}, "solana"))
    assert [(l.kind, l.asset, l.quantity) for l in other] == [("transfer_in", "SOL", Decimal("0.002")),
                                                              ("transfer_in", "SOLANA:MINTA", Decimal("0.0005"))]


def test_a_failed_solana_transaction_costs_its_fee_only_and_bad_input_names_the_record() -> None:
    tx = sol_tx(["Wal", "Other"], [1_000_000, 0], [995_000, 0], 5000, err={"InstructionError": [0, "Custom"]})
    legs = map_sol_transaction(staged("sol_transactions", {"wallet": "Wal", "signature": "s", "transaction": tx}, "solana"))
    assert [(l.kind, l.quantity) for l in legs] == [("fee", Decimal("-0.000005"))]
    del tx["meta"]["fee"]
    with pytest.raises(SolanaRecordError, match="raw record 7 \\(raw-7\\): transaction field 'fee' is missing"):
        map_sol_transaction(staged("sol_transactions", {"wallet": "Wal", "signature": "s", "transaction": tx}, "solana"))


def _trace(path: list[int], kind: str = "call", error: str | None = None, **action) -> dict:
    trace = {"traceAddress": path, "type": kind, "action": action, "blockNumber": 7, "transactionHash": "0xt"}
    if error:
        trace["error"] = error
    return trace


def test_internal_moves_count_value_calls_and_skip_failed_subtrees_and_delegatecalls() -> None:
    from ingestion.evm.mapping import internal_moves

    w, c = "0x" + "a" * 40, "0x" + "c" * 40
    traces = [
        _trace([], **{"from": "0x" + "d" * 40, "to": c, "value": "0x10", "callType": "call"}),  # the transaction itself
        _trace([0], **{"from": c, "to": w, "value": "0x5", "callType": "call"}),
        _trace([1], error="Reverted", **{"from": c, "to": w, "value": "0x7", "callType": "call"}),
        _trace([1, 0], **{"from": c, "to": w, "value": "0x9", "callType": "call"}),  # under a failed call
        _trace([2], **{"from": c, "to": w, "value": "0x3", "callType": "delegatecall"}),
        _trace([3], kind="suicide", address=c, refundAddress=w.upper().replace("0X", "0x"), balance="0x2"),
        _trace([4], **{"from": w, "to": c, "value": "0x1", "callType": "call"}),
    ]
    assert internal_moves(traces, w) == (1, 5 + 2)
    failed_tx = [_trace([], error="Reverted", **{"from": w, "to": c, "value": "0x0", "callType": "call"}), traces[1]]
    assert internal_moves(failed_tx, w) == (0, 0)


def test_a_reorg_reversal_negates_the_legs_as_booked() -> None:
    from ingestion.evm.mapping import map_evm_reversal

    record = staged("evm_reorg_reversals", {"chain": "base", "chain_id": 8453, "fork_block": 9, "reverses": {},
                                            "legs": [{"leg_index": 0, "account": "base:0xw", "asset": "ETH",
                                                      "quantity": "-1.5", "kind": "transfer_out"},
                                                     {"leg_index": 2, "account": "base:0xw", "asset": "ETH",
                                                      "quantity": "-0.000021", "kind": "fee"}]})
    legs = map_evm_reversal(record)
    assert [(leg.leg_index, leg.quantity, leg.kind) for leg in legs] == [
        (0, Decimal("1.5"), "adjustment"), (2, Decimal("0.000021"), "adjustment")]
    with pytest.raises(EvmRecordError, match="raw record"):
        map_evm_reversal(staged("evm_reorg_reversals", {"legs": [{"leg_index": 0}]}))


def test_kraken_wrapped_codes_are_the_underlying_in_another_account_type():
    from ingestion.ccxt.mapping import resolve_wrapped, split_wrapped_balances

    assert resolve_wrapped("kraken", "BTC.M") == ("BTC", "staking")
    assert resolve_wrapped("kraken", "ETH2.S") == ("ETH", "staking")
    assert resolve_wrapped("kraken", "BTC.F") == ("BTC", "earn")
    assert resolve_wrapped("kraken", "BTC") == ("BTC", "spot")
    assert resolve_wrapped("binance", "BTC.M") == ("BTC.M", "spot")  # only exchanges known to use the suffixes
    assert split_wrapped_balances("kraken", {"BTC": "1", "BTC.M": "0.5", "BTC.B": "0.25"}) == {
        "spot": {"BTC": "1"}, "staking": {"BTC": "0.75"}}


def test_kraken_ledger_entries_group_by_refid_and_staking_moves_match_by_amount_and_time():
    from datetime import datetime, timezone

    from ingestion.ccxt.mapping import map_ledger_entry
    from transforms.mappers import StagedRecord

    def entry(ident, refid, kind, subtype, asset, amount, fee="0.0000000000"):
        payload = {"id": ident, "refid": refid, "time": 1767441600.0, "type": kind, "subtype": subtype,
                   "aclass": "currency", "asset": asset, "amount": amount, "fee": fee, "balance": "1.0"}
        return map_ledger_entry(StagedRecord(1, "kraken", "ledger", "kraken", f"kraken|{ident}",
                                             datetime(2026, 1, 3, 12, tzinfo=timezone.utc), payload))

    usd, btc = entry("L1", "T1", "trade", "", "ZUSD", "-4206.7200", "10.9400"), entry("L2", "T1", "trade", "", "XXBT", "0.1")
    assert {leg.group for leg in usd + btc} == {"kraken:T1"}  # one trade event: one value, the USD fee reaches the cost
    assert [(leg.asset, leg.kind) for leg in usd + btc] == [("USD", "sell"), ("USD", "fee"), ("BTC", "buy")]
    [out] = entry("L3", "S1", "transfer", "spottostaking", "XXBT", "-0.05")
    [into] = entry("L4", "S2", "transfer", "stakingfromspot", "XBT.M", "0.05")
    assert (out.account_type, out.asset, out.kind, out.tx_hash) == ("spot", "BTC", "transfer_out", None)
    assert (into.account_type, into.asset, into.kind, into.tx_hash) == ("staking", "BTC", "transfer_in", None)
    [odd] = entry("L5", "X1", "someday", "", "XXBT", "0.01")
    assert odd.kind == "unclassified"
