"""Exchange export mappers (pure): every Binance "Transaction History" operation, the export's account labels,
Coinbase Exchange statements, Coinbase transaction history and Nexo's type table.

Formats, from the providers and from maintained parsers that read them:
- Binance "Transaction History" (Wallet > Transaction History > Generate all statements):
  ``User_ID, UTC_Time, Account, Operation, Coin, Change, Remark``; operation names as exported, as listed by
  BittyTax's parser (BittyTax/BittyTax: src/bittytax/conv/parsers/binance/parse_binance_statements.py).
- Coinbase Exchange (Pro) account statement: ``portfolio, type, time, amount, balance, amount/balance unit,
  transfer id, trade id, order id`` (BittyTax/BittyTax: src/bittytax/conv/parsers/coinbasepro.py, "Coinbase Pro
  Account"; types match, fee, deposit, withdrawal, conversion).
- Coinbase transaction history (coinbase.com > Statements > Transaction history CSV): ``Timestamp, Transaction
  Type, Asset, Quantity Transacted, Spot Price Currency, Spot Price at Transaction, Subtotal, Total (inclusive of
  fees and/or spread), Fees and/or Spread, Notes`` after a few lines of preamble; the newer file adds ``ID`` and
  writes money as "$1,234.50" (BittyTax/BittyTax: src/bittytax/conv/parsers/coinbase.py, v3 and v4;
  jimkberry/fifo-tool README for the record types).
- Nexo transactions export: ``Transaction, Type, Input Currency, Input Amount, Output Currency, Output Amount,
  USD Equivalent, Details, [Outstanding Loan], Date / Time`` (older: Nexo's local time) or ``Date / Time (UTC)``
  (BittyTax/BittyTax: src/bittytax/conv/parsers/nexo.py; VibeNL/GhostfolioSidekick's NexoRecord).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingestion.csv_files import CsvFile, CsvImportError
from ingestion.exchange_exports import read_coinbase_transactions, read_nexo_export
from transforms.events import LegKind
from transforms.exchange_export_mapping import (BINANCE_OPERATIONS, binance_account_type, map_binance_export_row,
                                                map_coinbase_exchange_row, map_coinbase_row, map_nexo_row)
from transforms.mappers import StagedRecord

D = Decimal
# every operation the issue names, with the sign a real row has
BRIEF_OPERATIONS = [
    ("Deposit", "1"), ("Withdraw", "-1"), ("Fiat Deposit", "1"), ("Fiat Withdraw", "-1"), ("Buy Crypto", "1"),
    ("Buy", "1"), ("Sell", "-1"), ("Transaction Related", "-1"), ("Fee", "-1"), ("Transaction Buy", "1"),
    ("Transaction Spend", "-1"), ("Transaction Revenue", "1"), ("Transaction Sold", "-1"),
    ("Small assets exchange BNB", "1"), ("Launchpool Interest", "1"), ("Cash Voucher", "1"),
    ("Cash Voucher distribution", "1"), ("Mission Reward Distribution", "1"), ("BNB Vault Rewards", "1"),
    ("Simple Earn Flexible Subscription", "-1"), ("Simple Earn Flexible Redemption", "1"),
    ("Simple Earn Locked Subscription", "-1"), ("Simple Earn Locked Redemption", "1"),
    ("Simple Earn Flexible Interest", "1"), ("Simple Earn Locked Rewards", "1"), ("POS savings purchase", "-1"),
    ("POS savings redemption", "1"), ("POS savings interest", "1"), ("Staking Purchase", "-1"),
    ("Staking Redemption", "1"), ("Staking Rewards", "1"), ("ETH 2.0 Staking", "-1"), ("ETH 2.0 Staking Rewards", "1"),
    ("Transfer Between Main and Funding Wallet", "-1"), ("Transfer Between Spot and Futures", "1"),
    ("Realized Profit and Loss", "-1"), ("Funding Fee", "-1"), ("Commission History", "1"), ("Referral Kickback", "1"),
    ("Airdrop Assets", "1"), ("Distribution", "1"), ("Savings Distribution", "1"), ("Large OTC trading", "-1"),
    ("Binance Convert", "1"),
]


def binance(operation: str, change: str, account: str = "Spot", coin: str = "USDT", time: str = "2026-01-03 10:00:00"):
    payload = {"User_ID": "1", "UTC_Time": time, "Account": account, "Operation": operation, "Coin": coin,
               "Change": change, "Remark": ""}
    return map_binance_export_row(StagedRecord(1, "binance_export", "transaction_history", "Binance 1", "x", None,
                                               payload))


@pytest.mark.parametrize("operation,change", BRIEF_OPERATIONS)
def test_every_binance_operation_of_the_issue_has_a_kind_and_keeps_the_balance(operation, change):
    legs = binance(operation, change)
    assert legs and all(leg.kind != "unclassified" for leg in legs)
    assert all(leg.kind in {k.value for k in LegKind} for leg in legs)
    spot = sum((leg.quantity for leg in legs if leg.account_type == "spot"), D(0))
    assert spot == D(change)  # the row's own account moves by exactly its Change


def test_an_unknown_operation_or_a_contradicting_sign_is_unclassified():
    assert [leg.kind for leg in binance("Some New Binance Operation", "0.01")] == ["unclassified"]
    assert [leg.kind for leg in binance("Funding Fee", "-1")] == ["funding"]  # either direction
    assert [leg.kind for leg in binance("Staking Rewards", "-1")] == ["unclassified"]  # a reward never takes away
    assert set(BINANCE_OPERATIONS.values()) - {k.value for k in LegKind} <= {
        "trade", "trade_fee", "earn_one_sided", "earn_two_sided", "transfer", "loan"}


@pytest.mark.parametrize("label,account_type", [
    ("Spot", "spot"), ("Funding", "funding"), ("USD-MFutures", "futures"), ("USDⓢ-M Futures", "futures"),
    ("USDT-Futures", "futures"), ("Coin-MFutures", "coin_futures"), ("COIN-Futures", "coin_futures"),
    ("Cross Margin", "margin"), ("CrossMargin", "margin"), ("Isolated Margin", "isolated_margin"), ("Earn", "earn"),
    ("Savings", "earn"), ("Options", "options"), ("Pool", "pool")])
def test_account_labels_become_the_api_connectors_account_types(label, account_type):
    assert binance_account_type(label) == account_type


def test_earn_moves_and_wrappers_book_the_underlying_in_earn():
    sub = binance("Simple Earn Flexible Subscription", "-100")
    assert [(l.account_type, l.asset, l.quantity, l.kind) for l in sub] == [
        ("spot", "USDT", D("-100"), "transfer_out"), ("earn", "USDT", D("100"), "transfer_in")]
    assert len({l.tx_hash for l in sub}) == 1
    assert binance("Simple Earn Flexible Subscription", "100", account="Earn") == []  # booked with its spot row
    eth = binance("ETH 2.0 Staking", "-0.5", coin="ETH") + binance("ETH 2.0 Staking", "0.5", coin="BETH")
    assert [(l.account_type, l.asset, l.quantity, l.kind) for l in eth] == [
        ("spot", "ETH", D("-0.5"), "transfer_out"), ("earn", "ETH", D("0.5"), "transfer_in")]
    assert eth[0].tx_hash == eth[1].tx_hash
    reward = binance("ETH 2.0 Staking Rewards", "0.0001", coin="BETH")
    assert [(l.account_type, l.asset, l.kind) for l in reward] == [("earn", "ETH", "staking_reward")]
    assert [(l.asset, l.account_type) for l in binance("Simple Earn Flexible Interest", "1", coin="LDUSDT")] == [
        ("USDT", "earn")]


def test_rows_of_one_trade_are_one_event_and_a_card_payment_is_a_deposit():
    rows = [binance("Transaction Spend", "-3000"), binance("Transaction Buy", "1", coin="ETH"),
            binance("Transaction Fee", "-0.001", coin="ETH")]
    assert [l.kind for r in rows for l in r] == ["sell", "buy", "fee"]
    assert len({l.group for r in rows for l in r}) == 1
    card = binance("Buy Crypto", "500", coin="EUR")
    assert [(l.kind, l.group) for l in card] == [("deposit", None)]


def cbx(type_: str, amount: str, unit: str, trade: str = "", transfer: str = "", order: str = ""):
    payload = {"portfolio": "default", "type": type_, "time": "2026-01-03T10:00:00.000Z", "amount": amount,
               "balance": "0", "amount/balance unit": unit, "transfer id": transfer, "trade id": trade,
               "order id": order}
    return map_coinbase_exchange_row(StagedRecord(1, "coinbase_exchange_export", "account_statement",
                                                  "Coinbase Exchange default", "x", None, payload))


def test_coinbase_exchange_match_and_fee_rows_of_a_trade_id_are_one_trade():
    legs = cbx("match", "0.01", "BTC", "77") + cbx("match", "-420.5", "USD", "77") + cbx("fee", "-2.1", "USD", "77")
    assert [(l.asset, l.quantity, l.kind) for l in legs] == [
        ("BTC", D("0.01"), "buy"), ("USD", D("-420.5"), "sell"), ("USD", D("-2.1"), "fee")]
    assert {l.group for l in legs} == {"Coinbase Exchange default:trade:77"}
    conversion = cbx("conversion", "-100", "USD", order="o1") + cbx("conversion", "100", "USDC", order="o1")
    assert [l.kind for l in conversion] == ["sell", "buy"] and len({l.group for l in conversion}) == 1
    assert [l.kind for l in cbx("deposit", "5", "USD") + cbx("withdrawal", "-1", "BTC") + cbx("margin", "1", "USD")] \
        == ["deposit", "withdrawal", "unclassified"]


COINBASE = """You can use this transaction report to inform your likely tax obligations.

Transactions
User,someone@example.com,5a7ba1a9e1f8a5016a3b6ce4
Timestamp,Transaction Type,Asset,Quantity Transacted,Spot Price Currency,Spot Price at Transaction,Subtotal,Total (inclusive of fees and/or spread),Fees and/or Spread,Notes
2026-01-03T10:00:00Z,Deposit,USD,1000,USD,1,1000,1000,0,Deposit from bank
2026-01-03T11:00:00Z,Buy,BTC,0.01,USD,42000,420.00,426.30,6.30,Bought 0.01 BTC for 426.30 USD
2026-01-03T12:00:00Z,Advanced Trade Buy,ETH,0.1,USD,2500,250.00,250.00,0.50,Bought 0.1 ETH for 0.00605 BTC on ETH-BTC at 0.06 BTC/ETH
2026-01-04T09:00:00Z,Convert,ETH,0.05,USD,2500,125,125,1.2,"Converted 0.05 ETH to 123.8 USDC"
2026-01-04T10:00:00Z,Staking Income,ETH,0.0001,USD,2500,0.25,0.25,0,
2026-01-04T11:00:00Z,Send,BTC,0.002,USD,42000,84,84,0,To Bitcoin address bc1q...
"""


def test_coinbase_rows_become_legs_with_quotes_fees_and_usd_values():
    rows = read_coinbase_transactions(CsvFile("coinbase.csv", COINBASE))
    assert [r.line for r in rows] == [6, 7, 8, 9, 10, 11]  # lines of the file, preamble counted
    legs = [map_coinbase_row(StagedRecord(i, "coinbase_export", "transaction_history", r.account, r.source_raw_id,
                                          r.occurred_at, r.payload)) for i, r in enumerate(rows)]
    assert [[(l.asset, l.quantity, l.kind) for l in row] for row in legs] == [
        [("USD", D("1000"), "deposit")],
        [("BTC", D("0.01"), "buy"), ("USD", D("-420.00"), "sell"), ("USD", D("-6.30"), "fee")],
        [("ETH", D("0.1"), "buy"), ("BTC", D("-0.006"), "sell"), ("BTC", D("-0.00005"), "fee")],
        [("ETH", D("-0.05"), "sell"), ("USDC", D("123.8"), "buy")],
        [("ETH", D("0.0001"), "staking_reward")],
        [("BTC", D("-0.002"), "withdrawal")],
    ]
    assert legs[4][0].usd_value == D("0.25")


def test_a_bad_coinbase_row_is_named_by_line_and_field():
    bad = COINBASE + '2026-01-05T09:00:00Z,Convert,ETH,0.05,USD,2500,125,125,1.2,"swapped"\n' \
                     "2026-01-05T10:00:00Z,Buy,BTC,1.2.3,USD,42000,$4x,,,\n"
    with pytest.raises(CsvImportError) as caught:
        read_coinbase_transactions(CsvFile("coinbase.csv", bad))
    text = str(caught.value)
    assert "line 12, field 'notes'" in text and "line 13, field 'quantity transacted'" in text
    assert "line 13, field 'subtotal'" in text


NEXO = """Transaction,Type,Input Currency,Input Amount,Output Currency,Output Amount,USD Equivalent,Details,Date / Time (UTC)
NXT1,Deposit,BTC,0.5,BTC,0.5,"$21,000.00",approved / BTC deposit,2026-01-03 10:00:00
NXT2,Exchange,BTC,-0.1,USDC,4190.5,$4200.00,approved / Exchange BTC to USDC,2026-01-03 11:00:00
NXT3,Interest,USDC,0.52,USDC,0.52,$0.52,approved / 0.52 USDC,2026-01-04 06:00:00
NXT4,Locking Term Deposit,USDC,-1000,USDC,-1000,$1000.00,approved / Transfer from Savings Wallet to Term Wallet,2026-01-04 07:00:00
NXT5,Transfer Out,BTC,-0.2,BTC,-0.2,$8400.00,approved / Transfer from Savings Wallet to Credit Line,2026-01-04 08:00:00
NXT6,Loan Withdrawal,USD,1000,USD,1000,$1000.00,approved / Credit line draw,2026-01-04 09:00:00
NXT7,Manual Repayment,USD,-400,USD,-400,$400.00,approved / Repayment,2026-01-05 09:00:00
NXT8,Withdrawal,BTC,-0.05,BTC,-0.05,$2100.00,rejected / BTC withdrawal,2026-01-05 10:00:00
NXT9,Something Nexo Added,NEXO,3,NEXO,3,$3.00,approved / ?,2026-01-05 11:00:00
"""


def nexo_legs(text: str):
    return [[(l.account_type, l.asset, l.quantity, l.kind) for l in map_nexo_row(StagedRecord(
        i, "nexo_export", "transactions", r.account, r.source_raw_id, r.occurred_at, r.payload))]
        for i, r in enumerate(read_nexo_export(CsvFile("nexo.csv", text)))]


def test_nexo_types_become_legs_by_the_type_table():
    assert nexo_legs(NEXO) == [
        [("wallet", "BTC", D("0.5"), "deposit")],
        [("wallet", "BTC", D("-0.1"), "sell"), ("wallet", "USDC", D("4190.5"), "buy")],
        [("wallet", "USDC", D("0.52"), "interest")],
        [("wallet", "USDC", D("-1000"), "transfer_out"), ("earn", "USDC", D("1000"), "transfer_in")],
        [("wallet", "BTC", D("-0.2"), "transfer_out"), ("collateral", "BTC", D("0.2"), "transfer_in")],
        [("wallet", "USD", D("1000"), "borrow"), ("loan", "USD", D("-1000"), "liability")],
        [("wallet", "USD", D("-400"), "repay"), ("loan", "USD", D("400"), "liability")],
        [],  # rejected: Nexo never moved it
        [("wallet", "NEXO", D("3"), "unclassified")],
    ]


def test_corrupt_nexo_rows_are_rejected_with_line_and_field():
    bad = NEXO + "NXT10,Deposit,BTC,abc,BTC,0.1,$1,approved,2026-01-06 10:00:00\n" \
                 "NXT11,Deposit,,0.1,BTC,0.1,$1,approved,2026-13-06 10:00:00\n" \
                 "NXT2,Deposit,BTC,0.1,BTC,0.1,$1,approved,2026-01-06 10:00:00\n"
    with pytest.raises(CsvImportError) as caught:
        read_nexo_export(CsvFile("nexo.csv", bad))
    text = str(caught.value)
    assert "line 11, field 'input amount'" in text
    assert "line 12, field 'input currency': is required" in text and "line 12, field 'date / time (utc)'" in text
    assert "line 13, field 'transaction'" in text and "nothing imported" in text
    old = NEXO.replace("Date / Time (UTC)", "Date / Time")  # the older export: Nexo's local time (CET)
    rows = read_nexo_export(CsvFile("nexo.csv", old))
    assert rows[0].occurred_at.isoformat() == "2026-01-03T09:00:00+00:00"


def test_coinbase_exchange_balances_are_the_last_of_each_close_day_in_the_entitys_timezone():
    from zoneinfo import ZoneInfo

    from ingestion.exchange_exports import read_coinbase_exchange_statement

    text = ("portfolio,type,time,amount,balance,amount/balance unit,transfer id,trade id,order id\n"
            "default,deposit,2026-01-03T20:00:00.000Z,100,100,USD,t1,,\n"
            "default,deposit,2026-01-04T03:00:00.000Z,50,150,USD,t2,,\n"  # still Jan 3 in New York
            "default,withdrawal,2026-01-04T15:00:00.000Z,-20,130,USD,t3,,\n")
    _, utc = read_coinbase_exchange_statement(CsvFile("a.csv", text))
    _, ny = read_coinbase_exchange_statement(CsvFile("a.csv", text), ZoneInfo("America/New_York"))
    assert sorted((b.occurred_at.isoformat(), b.balances["USD"]) for b in utc) == [
        ("2026-01-03T20:00:00+00:00", "100"), ("2026-01-04T15:00:00+00:00", "130")]
    assert sorted((b.occurred_at.isoformat(), b.balances["USD"]) for b in ny) == [
        ("2026-01-04T03:00:00+00:00", "150"), ("2026-01-04T15:00:00+00:00", "130")]
    with pytest.raises(CsvImportError) as caught:
        read_coinbase_exchange_statement(CsvFile("a.csv", text + "default,match,2026-01-05T10:00:00Z,1E5,x,BTC,,9,\n"
                                                          "default,fee,9999-01-05T10:00:00Z,-1,1,USD,,9,\n"))
    assert "line 5, field 'amount'" in str(caught.value) and "line 5, field 'balance'" in str(caught.value)
    assert "line 6, field 'time'" in str(caught.value)
