"""The pure Binance mappers, on records shaped as Binance documents them."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ingestion.binance.mapping import (BinanceRecordError, map_convert, map_deposit, map_dust, map_futures_income,
                                       map_margin_interest, map_margin_loan, map_margin_repay, map_margin_trade,
                                       map_sub_transfer, map_trade, map_transfer, map_withdrawal)
from transforms.mappers import StagedRecord, map_record

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def staged(stream: str, raw_id: str, payload: dict) -> StagedRecord:
    return StagedRecord(1, "binance", stream, "main", raw_id, WHEN, payload)


def legs(result):
    return [(l.leg_index, l.account_type, l.asset, l.quantity, l.kind, l.tx_hash) for l in result]


TRADE = {"symbol": "ETHBTC", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "0.05700100",
         "qty": "12.00000000", "quoteQty": "0.68401200", "commission": "0.01200000", "commissionAsset": "ETH",
         "time": 1767323045000, "isBuyer": True, "isMaker": False, "isBestMatch": True}


def test_a_buy_is_base_in_quote_out_and_the_commission_a_fee_leg():
    assert legs(map_trade(staged("trades", "main|ETH/BTC|28457", TRADE))) == [
        (0, "spot", "ETH", Decimal("12.00000000"), "buy", None),
        (1, "spot", "BTC", Decimal("-0.68401200"), "sell", None),
        (2, "spot", "ETH", Decimal("-0.01200000"), "fee", None)]


def test_a_sell_with_zero_commission_has_two_legs_and_exact_strings():
    sell = {**TRADE, "isBuyer": False, "commission": "0.00000000", "qty": "0.00000001", "quoteQty": "0.00000000057001"}
    assert legs(map_trade(staged("trades", "main|ETH/BTC|1", sell))) == [
        (0, "spot", "ETH", Decimal("-0.00000001"), "sell", None),
        (1, "spot", "BTC", Decimal("0.00000000057001"), "buy", None)]


def test_a_number_that_is_not_binances_string_is_refused_naming_record_and_field():
    with pytest.raises(BinanceRecordError, match=r"trades record 'main\|ETH/BTC\|9': field 'qty' is 12.0"):
        map_trade(staged("trades", "main|ETH/BTC|9", {**TRADE, "qty": 12.0}))
    with pytest.raises(BinanceRecordError, match="field 'commission' is missing"):
        map_trade(staged("trades", "main|ETH/BTC|9", {k: v for k, v in TRADE.items() if k != "commission"}))


def test_deposits_book_once_credited_and_withdrawals_carry_their_fee():
    deposit = {"id": "7698", "amount": "0.001", "coin": "BNB", "status": 1, "txId": "0xabc", "insertTime": 1}
    assert legs(map_deposit(staged("deposits", "main|7698", deposit))) == [(0, "spot", "BNB", Decimal("0.001"), "deposit", "0xabc")]
    assert map_deposit(staged("deposits", "main|7698", {**deposit, "status": 0})) == []
    withdrawal = {"id": "b6ae", "amount": "28.75", "transactionFee": "0.25", "coin": "XRP", "status": 6, "txId": "19A5",
                  "applyTime": "2021-04-15 12:09:16"}
    assert legs(map_withdrawal(staged("withdrawals", "main|b6ae", withdrawal))) == [
        (0, "spot", "XRP", Decimal("-28.75"), "withdrawal", "19A5"), (1, "spot", "XRP", Decimal("-0.25"), "fee", None)]
    assert map_withdrawal(staged("withdrawals", "main|b6ae", {**withdrawal, "status": 1})) == []  # cancelled


def test_a_universal_transfer_moves_between_account_types_with_one_tx_hash():
    transfer = {"asset": "USDT", "amount": "1500.5", "type": "MAIN_UMFUTURE", "status": "CONFIRMED", "tranId": 11415955596,
                "timestamp": 1544433328000}
    assert legs(map_transfer(staged("transfers", "main|11415955596", transfer))) == [
        (0, "spot", "USDT", Decimal("-1500.5"), "transfer_out", "binance-transfer:11415955596"),
        (1, "futures", "USDT", Decimal("1500.5"), "transfer_in", "binance-transfer:11415955596")]
    with pytest.raises(BinanceRecordError, match="field 'type' is 'MAIN_MOON'"):
        map_transfer(staged("transfers", "main|1", {**transfer, "type": "MAIN_MOON"}))


def test_futures_income_kinds_and_transfers_left_to_the_transfer_stream():
    income = {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.37500000", "asset": "USDT", "time": 1,
              "tranId": 9689322392, "tradeId": ""}
    assert legs(map_futures_income(staged("futures_income", "x", income))) == [
        (0, "futures", "USDT", Decimal("-0.37500000"), "funding", None)]
    assert map_futures_income(staged("futures_income", "x", {**income, "incomeType": "TRANSFER"})) == []
    assert legs(map_futures_income(staged("futures_income", "x", {**income, "incomeType": "REALIZED_PNL", "income": "12.5"})))[0][4] == "realized_pnl"
    assert legs(map_futures_income(staged("futures_income", "x", {**income, "incomeType": "INSURANCE_CLEAR"})))[0][4] == "realized_pnl"
    # a type no rule knows, or a sign that contradicts the kind, is unclassified (never booked, blocks PnL)
    assert legs(map_futures_income(staged("futures_income", "x", {**income, "incomeType": "NEW_TYPE"})))[0][4] == "unclassified"
    assert legs(map_futures_income(staged("futures_income", "x", {**income, "incomeType": "WELCOME_BONUS"})))[0][4] == "unclassified"
    assert legs(map_futures_income(staged("futures_income", "x", {**income, "incomeType": "COMMISSION_REBATE",
                                                                    "income": "0.1"})))[0][4] == "rebate"


def test_convert_dust_and_margin_interest():
    convert = {"quoteId": "f3b9", "orderId": 940708407462087195, "orderStatus": "SUCCESS", "fromAsset": "USDT",
               "fromAmount": "20", "toAsset": "BNB", "toAmount": "0.06154036", "ratio": "0.00307702",
               "inverseRatio": "324.99", "createTime": 1624248872184}
    assert legs(map_convert(staged("converts", "main|9407", convert))) == [
        (0, "spot", "USDT", Decimal("-20"), "sell", None), (1, "spot", "BNB", Decimal("0.06154036"), "buy", None)]
    assert map_convert(staged("converts", "main|9407", {**convert, "orderStatus": "PROCESS"})) == []
    dust = {"transId": 4359321, "serviceChargeAmount": "0.000009", "amount": "0.0009", "operateTime": 1615985535000,
            "transferedAmount": "0.000441", "fromAsset": "USDT"}
    assert legs(map_dust(staged("dust", "main|45178372831|4359321", dust))) == [
        (0, "spot", "USDT", Decimal("-0.0009"), "sell", None), (1, "spot", "BNB", Decimal("0.000450"), "buy", None),
        (2, "spot", "BNB", Decimal("-0.000009"), "fee", None)]
    interest = {"txId": 1352286576452864727, "interestAccuredTime": 1672160400000, "asset": "USDT", "rawAsset": "USDT",
                "principal": "45.3313", "interest": "0.00024996", "interestRate": "0.00013233", "type": "ON_BORROW"}
    assert legs(map_margin_interest(staged("margin_interest", "main|1", interest))) == [
        (0, "margin_loan", "USDT", Decimal("-0.00024996"), "liability", None)]  # the debt grows; expensed when paid


MARGIN_TRADE = {"commission": "0.00006000", "commissionAsset": "BTC", "id": 34, "isBestMatch": True, "isBuyer": True,
                "isMaker": False, "orderId": 39324, "price": "41250.37", "qty": "0.0120", "symbol": "BTCUSDT",
                "isIsolated": False, "time": 1561973357171}


def test_a_margin_trade_books_in_margin_with_price_times_qty_as_the_quote():
    assert legs(map_margin_trade(staged("margin_trades", "main|BTC/USDT|34", MARGIN_TRADE))) == [
        (0, "margin", "BTC", Decimal("0.0120"), "buy", None), (1, "margin", "USDT", Decimal("-495.004440"), "sell", None),
        (2, "margin", "BTC", Decimal("-0.00006000"), "fee", None)]


def test_loans_and_repayments_move_the_margin_assets_and_the_debt_together():
    borrow = {"type": "MANUAL", "amount": "14.00000000", "asset": "BNB", "interest": "0.00000000",
              "principal": "14.00000000", "status": "CONFIRMED", "timestamp": 1563438204000, "txId": 2970933056}
    assert legs(map_margin_loan(staged("margin_loans", "main|2970933056", borrow))) == [
        (0, "margin", "BNB", Decimal("14.00000000"), "borrow", None),
        (1, "margin_loan", "BNB", Decimal("-14.00000000"), "liability", None)]
    repay = {**borrow, "type": "AUTO", "amount": "14.00000000", "interest": "0.01866667", "principal": "13.98133333"}
    assert legs(map_margin_repay(staged("margin_repays", "main|2970933057", repay))) == [
        (0, "margin", "BNB", Decimal("-13.98133333"), "repay", None),  # the principal: leaves at basis
        (1, "margin_loan", "BNB", Decimal("14.00000000"), "liability", None),  # the debt paid: principal + interest
        (2, "margin", "BNB", Decimal("-0.01866667"), "interest_expense", None)]  # the interest: an expense
    assert map_margin_repay(staged("margin_repays", "main|1", {**repay, "status": "PENDING"})) == []


def test_a_sub_account_transfer_names_the_sub_account_by_email_and_matches_by_tran_id():
    record = {"tranId": 92275823339, "fromEmail": "master@x.com", "toEmail": "ops_virtual@x.com", "asset": "BNB",
              "amount": "0.01", "createTimeStamp": 1640317374000, "fromAccountType": "USDT_FUTURE",
              "toAccountType": "SPOT", "status": "SUCCESS", "clientTranId": "test"}
    result = map_sub_transfer(staged("sub_transfers", "main|92275823339|master>sub", record))
    assert [(l.account_type, l.sub_account, l.quantity, l.kind, l.tx_hash) for l in result] == [
        ("futures", "", Decimal("-0.01"), "transfer_out", "binance-subtransfer:92275823339"),
        ("spot", "ops_virtual@x.com", Decimal("0.01"), "transfer_in", "binance-subtransfer:92275823339")]
    with pytest.raises(BinanceRecordError, match="fromAccountType"):
        map_sub_transfer(staged("sub_transfers", "main|1|master>sub", {**record, "fromAccountType": "EARN"}))
    with pytest.raises(BinanceRecordError, match="source_raw_id"):
        map_sub_transfer(staged("sub_transfers", "main|1", record))


def test_the_registry_maps_binance_streams():
    assert len(map_record(staged("trades", "main|ETH/BTC|28457", TRADE))) == 3


def test_simple_earn_positions_are_the_underlying_held_in_earn():
    from ingestion.binance.mapping import split_earn_balances

    assert split_earn_balances({"BTC": "1", "LDBTC": "0.5", "LDUSDT": "20", "LDO": "3"}) == (
        {"BTC": "1", "LDO": "3"}, {"BTC": "0.5", "USDT": "20"})


DEPOSIT = {"id": "769800519366885376", "amount": "0.001", "coin": "BNB", "network": "BNB", "status": 1,
           "address": "bnb136ns6lfw4zs5hg4n85vdthaad7hq5m4gtkgf23", "addressTag": "101764890",
           "txId": "98A3EA560C6B3336D348B6C83F0F95ECE4F1F5919E94BD006E5BF3BF264FACFC", "insertTime": 1661493146000,
           "completeTime": 1661493146000, "transferType": 0, "confirmTimes": "1/1", "unlockConfirm": 0, "walletType": 0}
WITHDRAWAL = {"id": "b6ae22b3aa844210a7041aee7589627c", "amount": "8.91000000", "transactionFee": "0.004", "coin": "USDT",
              "status": 6, "address": "0x94df8b352de7f46f64b01d3666bf6e936e44ce60", "txId": "0xb5ef8c13b968a406",
              "applyTime": "2019-10-12 11:12:02", "network": "ETH", "transferType": 0, "info": "", "confirmNo": 3,
              "walletType": 1, "txKey": "", "completeTime": "2023-03-23 16:52:41"}


@pytest.mark.parametrize("status, booked", [(1, True), ("1", True), (6, True), ("6", True), (0, False), ("0", False),
                                            (2, False), (7, False), ("8", False)])
def test_deposit_status_is_binance_code_whatever_its_json_type(status, booked):
    result = map_deposit(staged("deposits", "main|1", {**DEPOSIT, "status": status}))
    assert bool(result) is booked


@pytest.mark.parametrize("status, booked", [(6, True), ("6", True), (0, True), (2, True), ("4", True), (1, False),
                                            ("1", False), (3, False), ("5", False)])
def test_cancelled_rejected_or_failed_withdrawals_are_never_booked_whatever_the_json_type(status, booked):
    result = map_withdrawal(staged("withdrawals", "main|1", {**WITHDRAWAL, "status": status}))
    assert bool(result) is booked


@pytest.mark.parametrize("wallet, account_type", [(0, "spot"), (1, "funding"), ("1", "funding"), (None, "spot")])
def test_deposits_and_withdrawals_book_to_the_wallet_type(wallet, account_type):
    payload = {**DEPOSIT, "walletType": wallet} if wallet is not None else {k: v for k, v in DEPOSIT.items() if k != "walletType"}
    assert [l.account_type for l in map_deposit(staged("deposits", "main|1", payload))] == [account_type]
    withdrawal = {**WITHDRAWAL, "walletType": wallet} if wallet is not None else {
        k: v for k, v in WITHDRAWAL.items() if k != "walletType"}
    assert {l.account_type for l in map_withdrawal(staged("withdrawals", "main|1", withdrawal))} == {account_type}


@pytest.mark.parametrize("field, value", [("status", 9), ("status", "done"), ("status", True), ("status", 1.0),
                                          ("walletType", 2)])
def test_an_undocumented_code_is_an_error_naming_the_field(field, value):
    with pytest.raises(BinanceRecordError, match=f"field '{field}' is") as caught:
        map_deposit(staged("deposits", "main|1", {**DEPOSIT, field: value}))
    assert caught.value.field == field


# ---------------------------------------------------------------- Simple Earn, staking, distributions, fiat, isolated
# Records as in Binance's documentation examples (developers.binance.com: Simple Earn "History", Staking "ETH Staking",
# Wallet "Asset Dividend Record"; the fiat models of Binance's OpenAPI spec, docs.rs openxapi-binance).
FLEX_SUB = {"amount": "100.00000000", "asset": "USDT", "time": 1575018510000, "purchaseId": 26055, "productId": "USDT001",
            "type": "AUTO", "sourceAccount": "SPOTANDFUNDING", "amtFromSpot": "30", "amtFromFunding": "70",
            "status": "SUCCESS"}
LOCKED_REDEEM = {"positionId": 123123, "redeemId": 40607, "time": 1575018510000, "asset": "BNB", "lockPeriod": "30",
                 "amount": "21312.23223", "originalAmount": "21312.23223", "type": "MATURE",
                 "deliverDate": "1575018510000", "lossAmount": "0.00001232", "isComplete": True, "rewardAsset": "AXS",
                 "rewardAmt": "5.17181528", "extraRewardAsset": "BNB", "estExtraRewardAmt": "5.17181528",
                 "status": "PAID"}
FIAT_ORDER = {"orderNo": "7d76d611-0568-4f43-afb6-24cac7767365", "fiatCurrency": "EUR", "indicatedAmount": "2.00",
              "amount": "0.91", "totalFee": "1.09", "method": "card", "status": "Successful",
              "createTime": 1627501026000, "updateTime": 1627501027000}
PAYMENT = {"orderNo": "353fca443f06466db0c4dc89f94f027a", "sourceAmount": "20.0", "fiatCurrency": "EUR",
           "obtainAmount": "4.462", "cryptoCurrency": "LUNA", "totalFee": "0.2", "price": "4.437472",
           "status": "Completed", "paymentMethod": "Credit Card", "createTime": 1624529919000, "updateTime": 1624529919000}


def test_a_subscription_from_spot_and_funding_is_an_internal_move_into_earn():
    assert legs(map_record(staged("earn_flexible_subscriptions", "main|26055", FLEX_SUB))) == [
        (0, "spot", "USDT", Decimal("-30"), "transfer_out", "binance-earn_flexible_subscriptions:26055"),
        (1, "funding", "USDT", Decimal("-70"), "transfer_out", "binance-earn_flexible_subscriptions:26055"),
        (2, "earn", "USDT", Decimal("100.00000000"), "transfer_in", "binance-earn_flexible_subscriptions:26055")]
    with pytest.raises(BinanceRecordError, match="'amount' 100.00000000 is not amtFromSpot \\+ amtFromFunding"):
        map_record(staged("earn_flexible_subscriptions", "main|26055", {**FLEX_SUB, "amtFromFunding": "69"}))
    assert map_record(staged("earn_flexible_subscriptions", "main|1", {**FLEX_SUB, "status": "PURCHASING"})) == []
    with pytest.raises(BinanceRecordError, match="field 'status' is 'DONE', not one of FAILED, PURCHASING, SUCCESS"):
        map_record(staged("earn_flexible_subscriptions", "main|1", {**FLEX_SUB, "status": "DONE"}))


def test_a_locked_redemption_leaves_earn_locked_and_an_early_one_books_its_shortfall_as_a_fee():
    assert legs(map_record(staged("earn_locked_redemptions", "main|40607", LOCKED_REDEEM))) == [
        (0, "earn_locked", "BNB", Decimal("-21312.23223"), "transfer_out", "binance-earn_locked_redemptions:40607"),
        (1, "spot", "BNB", Decimal("21312.23223"), "transfer_in", "binance-earn_locked_redemptions:40607")]
    early = {**LOCKED_REDEEM, "type": "AHEAD", "amount": "21312.00000"}
    assert legs(map_record(staged("earn_locked_redemptions", "main|40607", early)))[2] == (
        2, "spot", "BNB", Decimal("-0.23223"), "fee", None)
    converted = {**LOCKED_REDEEM, "type": "NEW_TRANSFERRED"}
    assert legs(map_record(staged("earn_locked_redemptions", "main|1", converted)))[1][1] == "earn"


def test_rewards_are_income_and_distributions_are_read_by_their_description():
    reward = {"asset": "USDT", "rewards": "0.00687654", "projectId": "USDT001", "type": "REALTIME", "time": 1577233562000}
    assert legs(map_record(staged("earn_flexible_rewards", "main|x", reward))) == [
        (0, "earn", "USDT", Decimal("0.00687654"), "staking_reward", None)]
    dividend = {"id": 1637366104, "amount": "10.00000000", "asset": "BHFT", "divTime": 1563189166000,
                "enInfo": "BHFT distribution", "tranId": 2968885920, "direction": 1}
    assert legs(map_record(staged("dividends", "main|1", dividend)))[0][4] == "airdrop"
    assert legs(map_record(staged("dividends", "main|1", {**dividend, "enInfo": "Launchpool"})))[0][4] == "staking_reward"
    assert map_record(staged("dividends", "main|1", {**dividend, "enInfo": "Simple Earn Flexible Interest"})) == []
    assert legs(map_record(staged("dividends", "main|1", {**dividend, "enInfo": "Something new"})))[0][4] == "unclassified"


def test_fiat_orders_and_buy_crypto_book_the_fee_and_where_the_fiat_came_from():
    assert legs(map_record(staged("fiat_deposits", "main|o", FIAT_ORDER))) == [
        (0, "spot", "EUR", Decimal("2.00"), "deposit", None), (1, "spot", "EUR", Decimal("-1.09"), "fee", None)]
    assert map_record(staged("fiat_deposits", "main|o", {**FIAT_ORDER, "status": "Expired"})) == []
    with pytest.raises(BinanceRecordError, match="'indicatedAmount' 2.00 is not amount \\+ totalFee"):
        map_record(staged("fiat_deposits", "main|o", {**FIAT_ORDER, "amount": "0.90"}))
    card = legs(map_record(staged("fiat_payments", "main|buy|353f", PAYMENT)))
    assert card == [(0, "spot", "LUNA", Decimal("4.462"), "buy", None), (1, "spot", "EUR", Decimal("-19.8"), "sell", None),
                    (2, "spot", "EUR", Decimal("-0.2"), "fee", None), (3, "spot", "EUR", Decimal("20.0"), "deposit", None)]
    balance = legs(map_record(staged("fiat_payments", "main|buy|353f", {**PAYMENT, "paymentMethod": "Cash Balance"})))
    assert [leg[4] for leg in balance] == ["buy", "sell", "fee"]
    assert map_record(staged("fiat_payments", "main|buy|353f", {**PAYMENT, "status": "Failed"})) == []


def test_eth_staking_is_an_exchange_and_isolated_margin_records_book_to_isolated_accounts():
    staking = {"time": 1575018510000, "asset": "ETH", "amount": "21312.23223", "distributeAsset": "WBETH",
               "distributeAmount": "21286.42584", "conversionRatio": "1.00121234", "status": "SUCCESS"}
    assert [(l[2], l[3], l[4]) for l in legs(map_record(staged("eth_staking", "main|x", staking)))] == [
        ("ETH", Decimal("-21312.23223"), "sell"), ("WBETH", Decimal("21286.42584"), "buy")]
    loan = {"isolatedSymbol": "BNBUSDT", "amount": "14.00000000", "asset": "BNB", "interest": "0.01866667",
            "principal": "13.98133333", "status": "CONFIRMED", "timestamp": 1563438204000, "txId": 2970933056}
    assert [(l[1], l[4]) for l in legs(map_record(staged("margin_repays", "main|1", loan)))] == [
        ("isolated_margin", "repay"), ("isolated_margin_loan", "liability"), ("isolated_margin", "interest_expense")]
    income = {"symbol": "BTCUSD_200925", "incomeType": "FUNDING_FEE", "income": "-0.00000060", "asset": "BTC",
              "info": "", "time": 1570608000000, "tranId": 9689322392, "tradeId": ""}
    assert legs(map_record(staged("coin_futures_income", "main|x", income))) == [
        (0, "coin_futures", "BTC", Decimal("-0.00000060"), "funding", None)]
