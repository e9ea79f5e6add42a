"""Pure mappers of staged Binance records to canonical legs (registered for source ``binance``).

Every number is parsed from Binance's own strings (``D``), never from ccxt's floats. Account types:
``spot`` (Binance's MAIN wallet), ``margin`` (cross margin: the assets held, free + locked), ``margin_loan``
(the cross-margin debt: borrowed principal and unpaid interest, a negative balance), ``futures`` (USD-M),
``funding``; a sub-account's accounts carry its email as sub-account.

- trades (``/api/v3/myTrades``): base and quote legs (buy/sell) and the commission (fee) in its asset.
  The market (``BASE/QUOTE``) is the middle part of ``source_raw_id`` (``account|BASE/QUOTE|id``): Binance's
  trade record names only the symbol id.
- deposits: one ``deposit`` leg once credited: status 1 (success) or 6 (credited, cannot withdraw yet); 0 (pending),
  2 (rejected), 7 (wrong deposit) and 8 (waiting for the user's confirmation) carry no leg. Booked to the wallet
  ``walletType`` names (0 spot, 1 funding; a record without it: spot).
- withdrawals: ``withdrawal`` of ``amount`` plus a ``fee`` leg of ``transactionFee`` (both leave the wallet
  at apply time: 0 email sent, 2 awaiting approval, 4 processing, 6 completed), from the wallet ``walletType``
  names; cancelled (1), rejected (3) or failed (5) withdrawals carry no leg.
  Statuses and wallet types are Binance's documented codes, read whatever their JSON type (``1`` or ``"1"``); a
  code not documented is an error naming the field (the record is quarantined), never a guess.
- transfers (``/sapi/v1/asset/transfer``): ``transfer_out`` of the source type and ``transfer_in`` of the
  target type, matched by the tx hash ``binance-transfer:<tranId>``; only CONFIRMED transfers move.
- converts (``/sapi/v1/convert/tradeFlow``): ``sell`` of fromAmount, ``buy`` of toAmount (SUCCESS only).
- dust (one detail of ``/sapi/v1/asset/dribblet``): ``sell`` of the small balance, ``buy`` of the gross BNB
  (transferedAmount + serviceChargeAmount) and the service charge as a BNB ``fee``.
- margin_interest (``/sapi/v1/margin/interestHistory``): interest accrued: the margin debt grows (a ``liability`` leg;
  the expense is booked when it is paid, as part of a repayment).
- margin_trades (``/sapi/v1/margin/myTrades``): like trades, in the margin account; Binance's record has no
  quoteQty, so the quote amount is price × qty (exact).
- margin_loans / margin_repays (``/sapi/v1/margin/borrow-repay`` BORROW / REPAY; CONFIRMED only): a loan is
  ``borrow`` +principal in margin and ``liability`` -principal in margin_loan; a repayment is ``repay`` -principal
  and ``interest_expense`` -interest in margin, and ``liability`` +amount in margin_loan (amount = principal +
  interest paid). Neither is taxable; the interest paid is an expense (a disposal at fair value).
- sub_transfers (``/sapi/v1/sub-account/universalTransfer``; SUCCESS only): ``transfer_out``/``transfer_in``
  between the master's and sub-accounts' account types, matched by ``binance-subtransfer:<tranId>``. Which side
  is the master is in ``source_raw_id`` (``account|tranId|master>sub``); a sub-account is named by its email.
- sub_accounts (``/sapi/v1/sub-account/list``): no legs (the list of sub-accounts, kept as reported).
- futures_income (``/fapi/v1/income``): REALIZED_PNL, INSURANCE_CLEAR, DELIVERED_SETTELMENT -> realized_pnl,
  FUNDING_FEE -> funding, COMMISSION (and other fees) -> fee, rebates -> rebate, bonuses and rewards -> income; a
  type not listed (or an amount whose sign contradicts the kind) -> unclassified; TRANSFER carries no leg (the
  transfers stream books it).
"""

from __future__ import annotations

from transforms.events import directed
from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper
from warehouse.numbers import D, ZERO

SOURCE = "binance"
WALLET_TYPES = {"MAIN": "spot", "MARGIN": "margin", "UMFUTURE": "futures", "FUNDING": "funding",
                "CMFUTURE": "coin_futures", "OPTION": "options", "ISOLATEDMARGIN": "isolated_margin"}
INCOME_KINDS = {"REALIZED_PNL": "realized_pnl", "INSURANCE_CLEAR": "realized_pnl", "DELIVERED_SETTELMENT": "realized_pnl",
                "OPTIONS_SETTLE_PROFIT": "realized_pnl", "FUNDING_FEE": "funding", "COMMISSION": "fee",
                "OPTIONS_PREMIUM_FEE": "fee", "POSITION_LIMIT_INCREASE_FEE": "fee", "COMMISSION_REBATE": "rebate",
                "API_REBATE": "rebate", "REFERRAL_KICKBACK": "income", "WELCOME_BONUS": "income",
                "CONTEST_REWARD": "income"}
# Binance's codes (GET /sapi/v1/capital/deposit/hisrec and /sapi/v1/capital/withdraw/history)
DEPOSIT_STATUSES = {0: "pending", 1: "success", 2: "rejected", 6: "credited but cannot withdraw", 7: "wrong deposit",
                    8: "waiting user confirm"}
DEPOSIT_CREDITED = {1, 6}
WITHDRAWAL_STATUSES = {0: "email sent", 1: "cancelled", 2: "awaiting approval", 3: "rejected", 4: "processing",
                       5: "failure", 6: "completed"}
WITHDRAWAL_NOT_DEBITED = {1, 3, 5}
DEPOSIT_WALLET_TYPES = {0: "spot", 1: "funding"}  # walletType of deposits and withdrawals
SUB_ACCOUNT_TYPES = {"SPOT": "spot", "USDT_FUTURE": "futures", "COIN_FUTURE": "coin_futures", "MARGIN": "margin",
                     "ISOLATED_MARGIN": "isolated_margin"}


EARN_ACCOUNT_TYPE = "earn"
ISOLATED_MARGIN, ISOLATED_MARGIN_LOAN = "isolated_margin", "isolated_margin_loan"  # every isolated pair, summed


def earn_underlying(asset: str) -> str | None:
    """The asset a Binance Simple Earn flexible position (``LDBTC``, ``LDUSDT``) stands for, else None. Binance
    reports those positions in the spot balances as their own ``LD`` assets; they are the underlying held in earn.
    ``LD`` + at least three characters (so Lido's ``LDO`` stays itself)."""
    text = asset.upper()
    return text[2:] if text.startswith("LD") and len(text) >= 5 else None


def split_earn_balances(balances: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(spot balances, earn balances by underlying asset) of a spot balance report."""
    spot: dict[str, str] = {}
    earn: dict[str, str] = {}
    for asset, value in balances.items():
        underlying = earn_underlying(asset)
        (earn if underlying else spot)[underlying or asset] = value
    return spot, earn


class BinanceRecordError(RecordError):
    """A staged Binance record that cannot be read; the message names the record and the field."""


def _field(record: StagedRecord, name: str) -> object:
    payload = record.payload
    if not isinstance(payload, dict) or name not in payload or payload[name] in (None, ""):
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field {name!r} is missing")
    return payload[name]


def _number(record: StagedRecord, name: str):
    value = _field(record, name)
    if not isinstance(value, str):
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field {name!r} is "
                                 f"{value!r}, expected Binance's decimal string")
    try:
        return D(value)
    except ValueError as error:
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field {name!r}: {error}") from None


def _leg(index: int, record: StagedRecord, account_type: str, asset: object, quantity, kind: str,
         tx_hash: str | None = None, sub_account: str = "") -> LegDraft:
    return LegDraft(index, record.account, account_type, sub_account, str(asset).upper(), quantity, kind, None, None,
                    tx_hash)


def _trade_legs(record: StagedRecord, account_type: str, quote_qty) -> list[LegDraft]:
    parts = record.source_raw_id.split("|")
    if len(parts) != 3 or "/" not in parts[1]:
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: source_raw_id is not "
                                 "account|BASE/QUOTE|id")
    base, quote = parts[1].split("/", 1)
    qty, commission = _number(record, "qty"), _number(record, "commission")
    buyer = _field(record, "isBuyer")
    if not isinstance(buyer, bool):
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field 'isBuyer' is {buyer!r}")
    sign = 1 if buyer else -1
    legs = [_leg(0, record, account_type, base, sign * qty, "buy" if buyer else "sell"),
            _leg(1, record, account_type, quote, -sign * quote_qty, "sell" if buyer else "buy")]
    if commission != ZERO:
        legs.append(_leg(2, record, account_type, _field(record, "commissionAsset"), -commission, "fee"))
    return legs


def map_trade(record: StagedRecord) -> list[LegDraft]:
    return _trade_legs(record, "spot", _number(record, "quoteQty"))


def _margin_accounts(record: StagedRecord) -> tuple[str, str]:
    """(assets, debt) account types of a margin record: isolated margin when the record names an isolated pair
    (``isolatedSymbol`` of loans, repayments and interest; ``isIsolated`` of trades), else cross margin."""
    payload = record.payload if isinstance(record.payload, dict) else {}
    isolated = payload.get("isIsolated")
    if isolated is not None and not isinstance(isolated, bool):
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field 'isIsolated' is "
                                 f"{isolated!r}", field="isIsolated")
    if isolated or payload.get("isolatedSymbol"):
        return ISOLATED_MARGIN, ISOLATED_MARGIN_LOAN
    return "margin", "margin_loan"


def map_margin_trade(record: StagedRecord) -> list[LegDraft]:
    return _trade_legs(record, _margin_accounts(record)[0], _number(record, "price") * _number(record, "qty"))


def map_margin_loan(record: StagedRecord) -> list[LegDraft]:
    if _field(record, "status") != "CONFIRMED":
        return []
    asset, principal = _field(record, "asset"), _number(record, "principal")
    held, debt = _margin_accounts(record)
    return [_leg(0, record, held, asset, principal, "borrow"),
            _leg(1, record, debt, asset, -principal, "liability")]


def map_margin_repay(record: StagedRecord) -> list[LegDraft]:
    if _field(record, "status") != "CONFIRMED":
        return []
    asset, amount = _field(record, "asset"), _number(record, "amount")
    interest = _number(record, "interest") if record.payload.get("interest") not in (None, "") else ZERO
    held, debt = _margin_accounts(record)
    legs = [_leg(0, record, held, asset, -(amount - interest), "repay"),
            _leg(1, record, debt, asset, amount, "liability")]
    if interest != ZERO:
        legs.append(_leg(2, record, held, asset, -interest, "interest_expense"))
    return legs


def map_sub_transfer(record: StagedRecord) -> list[LegDraft]:
    parts = record.source_raw_id.split("|")
    roles = parts[-1].split(">") if len(parts) == 3 else []
    if len(roles) != 2 or not set(roles) <= {"master", "sub"}:
        raise BinanceRecordError(f"binance sub_transfers record {record.source_raw_id!r}: source_raw_id is not "
                                 "account|tranId|master|sub>master|sub")
    if _field(record, "status") != "SUCCESS":
        return []
    amount, asset = _number(record, "amount"), _field(record, "asset")
    tx = f"binance-subtransfer:{_field(record, 'tranId')}"
    legs = []
    for index, (side, role, sign, kind) in enumerate((("from", roles[0], -1, "transfer_out"),
                                                       ("to", roles[1], 1, "transfer_in"))):
        account_kind = str(_field(record, f"{side}AccountType"))
        if account_kind not in SUB_ACCOUNT_TYPES:
            raise BinanceRecordError(f"binance sub_transfers record {record.source_raw_id!r}: field '{side}AccountType' "
                                     f"is {account_kind!r}, not one of {', '.join(sorted(SUB_ACCOUNT_TYPES))}")
        sub_account = str(_field(record, f"{side}Email")) if role == "sub" else ""
        legs.append(_leg(index, record, SUB_ACCOUNT_TYPES[account_kind], asset, sign * amount, kind, tx, sub_account))
    return legs


def map_sub_account(record: StagedRecord) -> list[LegDraft]:
    return []


def _code(record: StagedRecord, name: str, codes: dict[int, str], *, default: int | None = None) -> int:
    """One of Binance's documented integer codes, sent as a JSON number or a numeric string; anything else (a bool, a
    float, a code not documented) is an error naming the field."""
    payload = record.payload if isinstance(record.payload, dict) else {}
    value = payload.get(name)
    if value in (None, "") and default is not None:
        return default
    code = value if isinstance(value, int) and not isinstance(value, bool) else (
        int(value.strip()) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else None)
    if code not in codes:
        raise BinanceRecordError(
            f"binance {record.stream} record {record.source_raw_id!r}: field {name!r} is {value!r}, not one of "
            f"Binance's codes ({', '.join(f'{k} {v}' for k, v in sorted(codes.items()))})", field=name)
    return code


def _wallet(record: StagedRecord) -> str:
    return DEPOSIT_WALLET_TYPES[_code(record, "walletType", DEPOSIT_WALLET_TYPES, default=0)]


def map_deposit(record: StagedRecord) -> list[LegDraft]:
    if _code(record, "status", DEPOSIT_STATUSES) not in DEPOSIT_CREDITED:
        return []
    tx = record.payload.get("txId") or None
    return [_leg(0, record, _wallet(record), _field(record, "coin"), _number(record, "amount"), "deposit", tx)]


def map_withdrawal(record: StagedRecord) -> list[LegDraft]:
    if _code(record, "status", WITHDRAWAL_STATUSES) in WITHDRAWAL_NOT_DEBITED:
        return []
    coin, wallet = _field(record, "coin"), _wallet(record)
    tx = record.payload.get("txId") or None
    legs = [_leg(0, record, wallet, coin, -_number(record, "amount"), "withdrawal", tx)]
    fee = _number(record, "transactionFee") if record.payload.get("transactionFee") not in (None, "") else ZERO
    if fee != ZERO:
        legs.append(_leg(1, record, wallet, coin, -fee, "fee"))
    return legs


def map_transfer(record: StagedRecord) -> list[LegDraft]:
    if _field(record, "status") != "CONFIRMED":
        return []
    kind = str(_field(record, "type"))
    source, _, target = kind.partition("_")
    if source not in WALLET_TYPES or target not in WALLET_TYPES:
        raise BinanceRecordError(f"binance transfers record {record.source_raw_id!r}: field 'type' is {kind!r}, "
                                 f"not a transfer between {', '.join(sorted(WALLET_TYPES))}")
    amount, asset = _number(record, "amount"), _field(record, "asset")
    tx = f"binance-transfer:{_field(record, 'tranId')}"
    return [_leg(0, record, WALLET_TYPES[source], asset, -amount, "transfer_out", tx),
            _leg(1, record, WALLET_TYPES[target], asset, amount, "transfer_in", tx)]


def map_futures_income(record: StagedRecord) -> list[LegDraft]:
    return _income_legs(record, "futures")


def _income_legs(record: StagedRecord, account_type: str) -> list[LegDraft]:
    income_type = str(_field(record, "incomeType"))
    if income_type == "TRANSFER":
        return []
    amount = _number(record, "income")
    if amount == ZERO:
        return []
    return [_leg(0, record, account_type, _field(record, "asset"), amount,
                 directed(INCOME_KINDS.get(income_type, "unclassified"), amount))]


def map_convert(record: StagedRecord) -> list[LegDraft]:
    if _field(record, "orderStatus") != "SUCCESS":
        return []
    return [_leg(0, record, "spot", _field(record, "fromAsset"), -_number(record, "fromAmount"), "sell"),
            _leg(1, record, "spot", _field(record, "toAsset"), _number(record, "toAmount"), "buy")]


def map_dust(record: StagedRecord) -> list[LegDraft]:
    net, charge = _number(record, "transferedAmount"), _number(record, "serviceChargeAmount")
    legs = [_leg(0, record, "spot", _field(record, "fromAsset"), -_number(record, "amount"), "sell"),
            _leg(1, record, "spot", "BNB", net + charge, "buy")]
    if charge != ZERO:
        legs.append(_leg(2, record, "spot", "BNB", -charge, "fee"))
    return legs


def map_margin_interest(record: StagedRecord) -> list[LegDraft]:
    return [_leg(0, record, _margin_accounts(record)[1], _field(record, "asset"), -_number(record, "interest"),
                 "liability")]


# ------------------------------------------------------------------------------ Simple Earn, staking, dividends, fiat

EARN_LOCKED_ACCOUNT_TYPE = "earn_locked"
EARN_SOURCE_ACCOUNTS = {"SPOT": "spot", "FUNDING": "funding"}  # sourceAccount / destAccount of Simple Earn records
EARN_SUBSCRIPTION_STATUSES = {"SUCCESS": True, "PURCHASING": False, "FAILED": False}
EARN_REDEMPTION_STATUSES = {"PAID": True, "CREATED": False, "FAILED": False}
LOCKED_REDEMPTION_TARGETS = {"MATURE": "spot", "AHEAD": "spot", "NEW_TRANSFERRED": EARN_ACCOUNT_TYPE}
STAKING_STATUSES = {"SUCCESS": True, "PENDING": False, "FAILED": False}
# GET /sapi/v1/fiat/orders and /sapi/v1/fiat/payments: the statuses Binance documents; only a final success moves money
FIAT_ORDER_STATUSES = {"Successful": True, "Finished": True, "Processing": False, "Failed": False, "Refunding": False,
                       "Refunded": False, "Refund Failed": False, "Order Partial credit Stopped": False, "Expired": False}
FIAT_PAYMENT_STATUSES = {"Completed": True, "Processing": False, "Failed": False, "Refunded": False}
FIAT_BALANCE_METHODS = {"Cash Balance", "Fiat Balance"}  # a payment taken from the account's own fiat balance


def _choice(record: StagedRecord, name: str, choices: dict[str, object]) -> str:
    """One of Binance's documented values of a text field; anything else is an error naming the field."""
    value = _field(record, name)
    if not isinstance(value, str) or value not in choices:
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field {name!r} is {value!r}, "
                                 f"not one of {', '.join(sorted(choices))}", field=name)
    return value


def _earn_sources(record: StagedRecord):
    """(account type, amount) taken from the spot and funding wallets by a subscription (``sourceAccount`` SPOT,
    FUNDING or SPOTANDFUNDING; with both, ``amtFromSpot`` and ``amtFromFunding`` must add up to ``amount``)."""
    amount = _number(record, "amount")
    source = _choice(record, "sourceAccount", {"SPOT": 1, "FUNDING": 1, "SPOTANDFUNDING": 1})
    if source != "SPOTANDFUNDING":
        return [(EARN_SOURCE_ACCOUNTS[source], amount)]
    parts = [("spot", _number(record, "amtFromSpot")), ("funding", _number(record, "amtFromFunding"))]
    if sum(q for _, q in parts) != amount:
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field 'amount' {amount} is "
                                 "not amtFromSpot + amtFromFunding", field="amount")
    return [(kind, q) for kind, q in parts if q != ZERO]


def _subscription(record: StagedRecord, target: str, id_field: str) -> list[LegDraft]:
    if not EARN_SUBSCRIPTION_STATUSES[_choice(record, "status", EARN_SUBSCRIPTION_STATUSES)]:
        return []
    asset, amount = _field(record, "asset"), _number(record, "amount")
    tx = f"binance-{record.stream}:{_field(record, id_field)}"
    legs = [_leg(i, record, kind, asset, -q, "transfer_out", tx) for i, (kind, q) in enumerate(_earn_sources(record))]
    return legs + [_leg(len(legs), record, target, asset, amount, "transfer_in", tx)]


def map_earn_flexible_subscription(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/simple-earn/flexible/history/subscriptionRecord: spot/funding -> earn (an internal move)."""
    return _subscription(record, EARN_ACCOUNT_TYPE, "purchaseId")


def map_earn_locked_subscription(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/simple-earn/locked/history/subscriptionRecord: spot/funding -> earn_locked."""
    return _subscription(record, EARN_LOCKED_ACCOUNT_TYPE, "purchaseId")


def map_earn_flexible_redemption(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/simple-earn/flexible/history/redemptionRecord: earn -> ``destAccount`` (SPOT or FUNDING), once PAID."""
    if not EARN_REDEMPTION_STATUSES[_choice(record, "status", EARN_REDEMPTION_STATUSES)]:
        return []
    target = EARN_SOURCE_ACCOUNTS[_choice(record, "destAccount", EARN_SOURCE_ACCOUNTS)]
    asset, amount = _field(record, "asset"), _number(record, "amount")
    tx = f"binance-{record.stream}:{_field(record, 'redeemId')}"
    return [_leg(0, record, EARN_ACCOUNT_TYPE, asset, -amount, "transfer_out", tx),
            _leg(1, record, target, asset, amount, "transfer_in", tx)]


def map_earn_locked_redemption(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/simple-earn/locked/history/redemptionRecord, once PAID: the position (``originalAmount``) leaves
    earn_locked for the spot wallet (MATURE, AHEAD) or flexible earn (NEW_TRANSFERRED); an early redemption's
    ``amount`` is less than the position by the rewards taken back (``lossAmount``): a ``fee`` leg of the difference.
    ``rewardAmt`` is not booked here: the rewards stream books every reward."""
    if not EARN_REDEMPTION_STATUSES[_choice(record, "status", EARN_REDEMPTION_STATUSES)]:
        return []
    target = LOCKED_REDEMPTION_TARGETS[_choice(record, "type", LOCKED_REDEMPTION_TARGETS)]
    asset, amount, original = _field(record, "asset"), _number(record, "amount"), _number(record, "originalAmount")
    if amount > original:
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field 'amount' {amount} is "
                                 f"more than originalAmount {original}", field="amount")
    tx = f"binance-{record.stream}:{_field(record, 'redeemId')}"
    legs = [_leg(0, record, EARN_LOCKED_ACCOUNT_TYPE, asset, -original, "transfer_out", tx),
            _leg(1, record, target, asset, original, "transfer_in", tx)]
    if amount != original:
        legs.append(_leg(2, record, target, asset, amount - original, "fee"))
    return legs


def map_earn_flexible_reward(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/simple-earn/flexible/history/rewardsRecord (BONUS, REALTIME): income added to the flexible
    position (Simple Earn Flexible compounds its rewards)."""
    amount = _number(record, "rewards")
    return [] if amount == ZERO else [_leg(0, record, EARN_ACCOUNT_TYPE, _field(record, "asset"), amount,
                                           directed("staking_reward", amount))]


def map_earn_locked_reward(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/simple-earn/locked/history/rewardsRecord: income paid to the spot wallet."""
    amount = _number(record, "amount")
    return [] if amount == ZERO else [_leg(0, record, "spot", _field(record, "asset"), amount,
                                           directed("staking_reward", amount))]


def map_eth_staking(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/eth-staking/eth/history/stakingHistory: ETH given for WBETH (``distributeAmount`` at
    ``conversionRatio``), both in the spot wallet: an exchange of one asset for another (a trade), once SUCCESS.
    WBETH's rewards accrue in its conversion ratio, not in units: no reward legs."""
    return _staking_swap(record)


def map_eth_staking_redemption(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/eth-staking/eth/history/redemptionHistory: WBETH given back for ETH, once SUCCESS."""
    return _staking_swap(record)


def _staking_swap(record: StagedRecord) -> list[LegDraft]:
    if not STAKING_STATUSES[_choice(record, "status", STAKING_STATUSES)]:
        return []
    return [_leg(0, record, "spot", _field(record, "asset"), -_number(record, "amount"), "sell"),
            _leg(1, record, "spot", _field(record, "distributeAsset"), _number(record, "distributeAmount"), "buy")]


# GET /sapi/v1/asset/assetDividend: what each distribution is, from its ``enInfo``. Simple Earn and ETH staking
# rewards appear there too: their own streams book them, so they carry no leg here (never twice).
BOOKED_ELSEWHERE = ("simple earn", "flexible", "locked", "eth 2.0", "wbeth", "bnsol")


def dividend_kind(en_info: str) -> str | None:
    """The leg kind of an asset distribution: Launchpool (and Megadrop, HODLer airdrops) rewards are staking rewards,
    airdrops and token distributions are airdrops, earn/staking rewards are booked by their streams (None)."""
    text = en_info.lower()
    if any(word in text for word in BOOKED_ELSEWHERE):
        return None
    if "launchpool" in text or "megadrop" in text:
        return "staking_reward"
    if "airdrop" in text or "distribution" in text:
        return "airdrop"
    return "unclassified"


def map_dividend(record: StagedRecord) -> list[LegDraft]:
    kind = dividend_kind(str(_field(record, "enInfo")))
    amount = _number(record, "amount")
    direction = record.payload.get("direction", 1)
    if direction not in (1, -1):
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field 'direction' is "
                                 f"{direction!r}, not 1 or -1", field="direction")
    quantity = amount * direction
    if kind is None or quantity == ZERO:
        return []
    return [_leg(0, record, "spot", _field(record, "asset"), quantity, directed(kind, quantity))]


def _fiat_amounts(record: StagedRecord):
    """(indicatedAmount, amount, totalFee) of a fiat order, checked: indicated = amount + fee."""
    indicated, amount, fee = _number(record, "indicatedAmount"), _number(record, "amount"), _number(record, "totalFee")
    if indicated != amount + fee:
        raise BinanceRecordError(f"binance {record.stream} record {record.source_raw_id!r}: field 'indicatedAmount' "
                                 f"{indicated} is not amount + totalFee ({amount} + {fee})", field="indicatedAmount")
    return indicated, amount, fee


def map_fiat_deposit(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/fiat/orders transactionType=0, once Successful/Finished: ``indicatedAmount`` comes in from the
    bank, ``totalFee`` is taken; the spot wallet (Binance's fiat and spot wallet) is credited ``amount``."""
    if not FIAT_ORDER_STATUSES[_choice(record, "status", FIAT_ORDER_STATUSES)]:
        return []
    indicated, _, fee = _fiat_amounts(record)
    currency = _field(record, "fiatCurrency")
    legs = [_leg(0, record, "spot", currency, indicated, "deposit")]
    return legs + ([_leg(1, record, "spot", currency, -fee, "fee")] if fee != ZERO else [])


def map_fiat_withdrawal(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/fiat/orders transactionType=1, once Successful/Finished: ``amount`` leaves for the bank and
    ``totalFee`` is taken (``indicatedAmount`` in all)."""
    if not FIAT_ORDER_STATUSES[_choice(record, "status", FIAT_ORDER_STATUSES)]:
        return []
    _, amount, fee = _fiat_amounts(record)
    currency = _field(record, "fiatCurrency")
    legs = [_leg(0, record, "spot", currency, -amount, "withdrawal")]
    return legs + ([_leg(1, record, "spot", currency, -fee, "fee")] if fee != ZERO else [])


def map_fiat_payment(record: StagedRecord) -> list[LegDraft]:
    """GET /sapi/v1/fiat/payments ("Buy Crypto"), once Completed. A buy (``source_raw_id`` ``account|buy|orderNo``):
    ``sourceAmount`` of fiat pays ``totalFee`` and buys ``obtainAmount`` of crypto into the spot wallet; paid by card or
    bank, the fiat comes from outside first (a ``deposit`` leg); paid from the account's own fiat balance, it does not.
    A sell (``account|sell|orderNo``): ``obtainAmount`` of crypto is sold for ``sourceAmount`` of fiat, of which
    ``totalFee`` is taken and the rest paid out (a ``withdrawal``)."""
    if not FIAT_PAYMENT_STATUSES[_choice(record, "status", FIAT_PAYMENT_STATUSES)]:
        return []
    parts = record.source_raw_id.split("|")
    side = parts[1] if len(parts) == 3 else ""
    if side not in ("buy", "sell"):
        raise BinanceRecordError(f"binance fiat_payments record {record.source_raw_id!r}: source_raw_id is not "
                                 "account|buy|orderNo or account|sell|orderNo")
    fiat, crypto = _field(record, "fiatCurrency"), _field(record, "cryptoCurrency")
    paid, obtained, fee = _number(record, "sourceAmount"), _number(record, "obtainAmount"), _number(record, "totalFee")
    if fee > paid:
        raise BinanceRecordError(f"binance fiat_payments record {record.source_raw_id!r}: field 'totalFee' {fee} is "
                                 f"more than sourceAmount {paid}", field="totalFee")
    if side == "buy":
        legs = [_leg(0, record, "spot", crypto, obtained, "buy"), _leg(1, record, "spot", fiat, -(paid - fee), "sell")]
        if fee != ZERO:
            legs.append(_leg(2, record, "spot", fiat, -fee, "fee"))
        if str(record.payload.get("paymentMethod") or "") not in FIAT_BALANCE_METHODS:
            legs.append(_leg(3, record, "spot", fiat, paid, "deposit"))
        return legs
    legs = [_leg(0, record, "spot", crypto, -obtained, "sell"), _leg(1, record, "spot", fiat, paid, "buy")]
    if fee != ZERO:
        legs.append(_leg(2, record, "spot", fiat, -fee, "fee"))
    return legs + [_leg(3, record, "spot", fiat, -(paid - fee), "withdrawal")]


def map_coin_futures_income(record: StagedRecord) -> list[LegDraft]:
    """GET /dapi/v1/income (COIN-M futures): like USD-M income, in the ``coin_futures`` account, in the margin coin."""
    return _income_legs(record, "coin_futures")


STREAM_MAPPERS = {"trades": map_trade, "deposits": map_deposit, "withdrawals": map_withdrawal,
                  "transfers": map_transfer, "futures_income": map_futures_income, "converts": map_convert,
                  "dust": map_dust, "margin_interest": map_margin_interest, "margin_trades": map_margin_trade,
                  "margin_loans": map_margin_loan, "margin_repays": map_margin_repay, "sub_transfers": map_sub_transfer,
                  "sub_accounts": map_sub_account, "earn_flexible_subscriptions": map_earn_flexible_subscription,
                  "earn_flexible_redemptions": map_earn_flexible_redemption, "earn_flexible_rewards": map_earn_flexible_reward,
                  "earn_locked_subscriptions": map_earn_locked_subscription,
                  "earn_locked_redemptions": map_earn_locked_redemption, "earn_locked_rewards": map_earn_locked_reward,
                  "eth_staking": map_eth_staking, "eth_staking_redemptions": map_eth_staking_redemption,
                  "dividends": map_dividend, "fiat_deposits": map_fiat_deposit, "fiat_withdrawals": map_fiat_withdrawal,
                  "fiat_payments": map_fiat_payment, "coin_futures_income": map_coin_futures_income}
for _stream, _mapper in STREAM_MAPPERS.items():
    register_mapper(SOURCE, _stream, _mapper)
