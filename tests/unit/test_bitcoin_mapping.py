"""The pure Bitcoin mapper: change recognised across the wallet's addresses, a payment to oneself is only a fee,
coinjoin fee shares, coinbase as mining, exact satoshis, errors naming the record and the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingestion.bitcoin.mapping import BitcoinRecordError, map_btc_transaction, sats
from transforms.mappers import StagedRecord

A, A_CHANGE, B, OTHER = "bc1qa", "bc1qachange", "bc1qb", "1Other"


def tx(inputs: list[tuple[str, int]], outputs: list[tuple[str, int]], fee: int, coinbase: bool = False) -> dict:
    vin = [{"txid": "11" * 32, "vout": i, "is_coinbase": False,
            "prevout": {"scriptpubkey_address": a, "value": v}} for i, (a, v) in enumerate(inputs)]
    if coinbase:
        vin = [{"txid": "0" * 64, "vout": 4294967295, "is_coinbase": True, "prevout": None}]
    return {"txid": "ab" * 32, "fee": fee, "vin": vin, "vout": [{"scriptpubkey_address": a, "value": v} for a, v in outputs],
            "status": {"confirmed": True, "block_height": 5, "block_time": 1_767_225_600, "block_hash": "cd" * 32}}


def legs(transaction: dict, own: tuple[str, ...] = (A, A_CHANGE)) -> list[tuple[int, str, Decimal]]:
    record = StagedRecord(7, "bitcoin", "btc_transactions", "bitcoin:zpub", "raw-7", None,
                          {"chain": "bitcoin", "wallet": "zpub", "native_symbol": "BTC", "own": {a: "" for a in own},
                           "transaction": transaction})
    drafts = map_btc_transaction(record)
    assert all(d.tx_hash == "ab" * 32 and d.asset == "BTC" for d in drafts)
    return [(d.leg_index, d.kind, d.quantity) for d in drafts]


def test_a_payment_out_with_change_books_what_left_and_the_fee() -> None:
    assert legs(tx([(A, 100_000)], [(OTHER, 60_000), (A_CHANGE, 39_000)], 1_000)) == [
        (0, "transfer_out", Decimal("-0.00060000")), (2, "fee", Decimal("-0.00001000"))]


def test_a_payment_to_oneself_is_only_its_fee() -> None:
    assert legs(tx([(A, 100_000), (A_CHANGE, 5_000)], [(A, 104_200)], 800)) == [(2, "fee", Decimal("-0.00000800"))]


def test_a_receipt_and_a_coinbase() -> None:
    assert legs(tx([(OTHER, 10 ** 8)], [(A, 2_500), (OTHER, 10 ** 8 - 2_700)], 200)) == [
        (1, "transfer_in", Decimal("0.00002500"))]
    assert legs(tx([], [(A, 312_500_000)], 0, coinbase=True)) == [(1, "mining", Decimal("3.12500000"))]


def test_a_coinjoin_shares_the_fee_by_input_value_rounded_down() -> None:
    # A brings 1/3 of the inputs: its share of the 1,000 sat fee is 333; it gets back 29,000 of its 30,000
    out = legs(tx([(A, 30_000), (OTHER, 60_000)], [(A_CHANGE, 29_000), (OTHER, 60_000), ("1Mix", 0)], 1_000))
    assert out == [(0, "transfer_out", Decimal("-0.00000667")), (2, "fee", Decimal("-0.00000333"))]
    assert sum(q for _, _, q in out) == Decimal("-0.00001000")  # the wallet's change: 29,000 - 30,000


def test_satoshis_are_exact_and_bad_records_name_the_field() -> None:
    assert sats(2_100_000_000_000_000) == Decimal("21000000.00000000")
    with pytest.raises(BitcoinRecordError, match="raw record 7 .*field 'transaction' is missing"):
        map_btc_transaction(StagedRecord(7, "bitcoin", "btc_transactions", "a", "raw-7", None,
                                         {"chain": "bitcoin", "wallet": "w", "native_symbol": "BTC", "own": {A: ""}}))
    broken = tx([(A, 1)], [(OTHER, 1)], 0)
    broken["vout"][0]["value"] = "lots"
    with pytest.raises(BitcoinRecordError, match="raw record 7 .*invalid"):
        legs(broken)
