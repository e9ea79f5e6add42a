"""Pure mappers of exchange CSV exports to canonical legs: Binance "Transaction History" (one leg per row, plus
the other side of a move the export shows from one side only), Kraken's ledgers export (the amount and the fee
of each row), Coinbase Exchange (Pro) account statements, Coinbase retail transaction history and Nexo's
transaction export. Kinds are the vocabulary's (transforms/events.py); docs/sources-exchanges.md has the tables.

Binance: ``BINANCE_OPERATIONS`` gives every operation of the export its rule (a sign that contradicts a fixed kind
makes the row ``unclassified``). The rows of one trade (the trade family: Buy, Sell, Transaction
Related/Buy/Spend/Revenue/Sold/Fee, Fee, Buy Crypto, Binance Convert, Small assets exchange BNB, Large OTC trading,
...) at the same time are one event (group ``binance-export:<user>:<time>:trade``): what comes in is ``buy``, what
goes out ``sell``, the fees ``fee``, so the trade carries one value (a "Buy ETH for EUR" is valued from its EUR
side). Both rows of a transfer between account types (``Transfer Between ...``) carry the same synthetic tx hash
(user, time, coin, amount), so the canonical build matches them (an internal move). A Simple Earn / savings /
staking subscription or redemption is an internal move between the row's account and ``earn``: lots keep their
basis and dates. Earn and staking wrappers (``LDUSDT``, ``BETH``) are their underlying asset held in ``earn``. The
export's account labels (``USD-MFutures``, ``Coin-MFutures``, ``Cross Margin``, ...) become the account types the
API connector uses (ingestion/binance/mapping.py). A margin loan or repayment also moves the ``margin_loan``
account (a ``liability`` leg). An operation not listed is ``unclassified`` (never dropped, never booked as an
acquisition or disposal): its row still moves the balance, and its day's PnL is blocked until it is classified.
"""

from __future__ import annotations

import re
from decimal import Decimal

from transforms.asset_registry import KNOWN_ASSETS
from ingestion.binance.mapping import earn_underlying
from transforms.events import directed, trade_side
from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper
from warehouse.numbers import D, ZERO, parse_input_decimal

SOURCE, STREAM = "binance_export", "transaction_history"
EARN_ACCOUNT_TYPE = "earn"

# The export's Account column (lower case, letters and digits only) -> the account type the API connector uses
# (ingestion/binance/mapping.py: WALLET_TYPES, SUB_ACCOUNT_TYPES; earn positions: ``earn``).
ACCOUNT_LABELS = {
    "spot": "spot", "main": "spot", "funding": "funding",
    "usdtfutures": "futures", "usdmfutures": "futures", "umfutures": "futures", "usdsmfutures": "futures",
    "futures": "futures", "coinfutures": "coin_futures", "coinmfutures": "coin_futures", "cmfutures": "coin_futures",
    "crossmargin": "margin", "margin": "margin", "isolatedmargin": "isolated_margin", "options": "options",
    "earn": "earn", "savings": "earn", "simpleearn": "earn", "staking": "earn", "pool": "pool",
}
# 1:1 staking receipts Binance credits in spot for the underlying it holds (ETH 2.0 Staking: ETH -> BETH)
STAKING_WRAPPERS = {"BETH": "ETH"}


def binance_account_type(label: str) -> str:
    """The export's Account label to an account type (``USD-MFutures``, ``USDⓢ-M Futures``, ``USDT-Futures`` ->
    futures; ``Coin-MFutures``, ``COIN-Futures`` -> coin_futures); an unknown label keeps its own name."""
    key = re.sub(r"[^a-z0-9]", "", label.lower())
    return ACCOUNT_LABELS.get(key) or re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "spot"


def binance_export_asset(coin: str, account_type: str) -> tuple[str, str]:
    """(asset, account type) of a row: an earn or staking wrapper is its underlying asset held in ``earn``."""
    text = coin.strip().upper()
    underlying = STAKING_WRAPPERS.get(text) or earn_underlying(text)
    return (underlying, EARN_ACCOUNT_TYPE) if underlying else (text, account_type)


def _fiat(asset: str) -> bool:
    return KNOWN_ASSETS.get(asset, ("", 0, False))[2]


TRADE = "trade"  # a row of a trade: grouped with the trade family rows of the same user and second
TRADE_FEE = "trade_fee"
EARN_ONE_SIDED = "earn_one_sided"  # the export shows the spot/funding side only: the earn side is booked with it
EARN_TWO_SIDED = "earn_two_sided"  # the export shows both sides (ETH -1, BETH +1): each row books its own
TRANSFER = "transfer"
LOAN = "loan"
# Every Binance "Transaction History" operation known, lower case -> a leg kind of transforms/events.py or a rule.
BINANCE_OPERATIONS: dict[str, str] = {
    # external movements
    "deposit": "deposit", "withdraw": "withdrawal", "fiat deposit": "deposit", "fiat withdraw": "withdrawal",
    "fiat withdrawal": "withdrawal", "send": "withdrawal", "crypto box": "income",
    # trades (one event per user and second)
    "buy": TRADE, "sell": TRADE, "transaction related": TRADE, "transaction buy": TRADE, "transaction spend": TRADE,
    "transaction revenue": TRADE, "transaction sold": TRADE, "buy crypto": TRADE, "buy crypto with card": TRADE,
    "binance convert": TRADE, "convert": TRADE, "small assets exchange bnb": TRADE, "large otc trading": TRADE,
    "asset conversion transfer": TRADE, "stablecoins auto-conversion": TRADE, "auto-invest transaction": TRADE,
    "leverage token redemption": TRADE, "fee": TRADE_FEE, "transaction fee": TRADE_FEE, "bnb fee deduction": "fee",
    "liquidation fee": "fee",
    # income
    "launchpool interest": "staking_reward", "launchpool airdrop": "airdrop", "cash voucher": "income",
    "cash voucher distribution": "income", "mission reward": "income", "mission reward distribution": "income",
    "campaign related reward": "income", "bnb vault rewards": "staking_reward",
    "simple earn flexible interest": "interest", "simple earn flexible airdrop": "airdrop",
    "simple earn locked rewards": "staking_reward", "simple earn locked interest": "interest",
    "savings interest": "interest", "savings distribution": "interest", "pos savings interest": "staking_reward",
    "staking rewards": "staking_reward", "eth 2.0 staking rewards": "staking_reward", "megadrop rewards": "airdrop",
    "hodler airdrops distribution": "airdrop", "airdrop assets": "airdrop", "distribution": "airdrop",
    "commission history": "income", "referral kickback": "income", "referral commission": "income",
    "commission fee shared with you": "income", "commission rebate": "rebate", "insurance fund compensation": "income",
    "binance card cashback": "rebate", "binance card spending": "spend",
    # derivatives
    "realize profit and loss": "realized_pnl", "realized profit and loss": "realized_pnl", "funding fee": "funding",
    # moves between account types
    "simple earn flexible subscription": EARN_ONE_SIDED, "simple earn flexible redemption": EARN_ONE_SIDED,
    "simple earn locked subscription": EARN_ONE_SIDED, "simple earn locked redemption": EARN_ONE_SIDED,
    "savings purchase": EARN_ONE_SIDED, "savings principal redemption": EARN_ONE_SIDED,
    "pos savings purchase": EARN_ONE_SIDED, "pos savings redemption": EARN_ONE_SIDED,
    "staking purchase": EARN_ONE_SIDED, "staking redemption": EARN_ONE_SIDED,
    "bnb vault subscription": EARN_ONE_SIDED, "bnb vault redemption": EARN_ONE_SIDED,
    "launchpool subscription/redemption": EARN_ONE_SIDED, "eth 2.0 staking": EARN_TWO_SIDED,
    "transfer between main and funding wallet": TRANSFER, "transfer between spot and futures": TRANSFER,
    "transfer between spot account and um futures account": TRANSFER,
    "transfer between spot account and cm futures account": TRANSFER,
    "transfer between main account/futures and margin account": TRANSFER, "transfer_in": TRANSFER,
    "transfer_out": TRANSFER, "isolated margin transfer": TRANSFER,
    # margin debt
    "margin loan": LOAN, "isolated margin loan": LOAN, "margin repayment": LOAN, "isolated margin repayment": LOAN,
}
LOAN_KINDS = {"margin loan": "borrow", "isolated margin loan": "borrow", "margin repayment": "repay",
              "isolated margin repayment": "repay"}
# the trade family, for the docs (operations grouped into one trade event)
TRADE_FAMILY = tuple(op for op, rule in BINANCE_OPERATIONS.items() if rule in (TRADE, TRADE_FEE))


def _cell(record: StagedRecord, name: str) -> str:
    for key, value in record.payload.items():
        if key.lower() == name:
            return (value or "").strip()
    raise RecordError(f"binance export record {record.source_raw_id}: field {name!r} is missing", field=name)


def _change(record: StagedRecord) -> object:
    text = _cell(record, "change")
    try:
        return D(text)
    except ValueError as error:
        raise RecordError(f"binance export record {record.source_raw_id}: field 'change': {error}", field="change") from None


def binance_operation_rule(operation: str) -> str:
    """The rule of an operation (case and repeated spaces ignored); ``unclassified`` when unknown. An unlisted
    ``Transfer Between ...`` is a transfer between account types."""
    key = " ".join(operation.lower().split())
    if key in BINANCE_OPERATIONS:
        return BINANCE_OPERATIONS[key]
    return TRANSFER if key.startswith("transfer between") else "unclassified"


def map_binance_export_row(record: StagedRecord) -> list[LegDraft]:
    change = _change(record)
    operation = " ".join(_cell(record, "operation").lower().split())
    rule = binance_operation_rule(operation)
    row_type = binance_account_type(_cell(record, "account"))
    asset, account_type = binance_export_asset(_cell(record, "coin"), row_type)
    when = f"{_cell(record, 'user_id')}:{_cell(record, 'utc_time')}"

    def leg(index: int, kind: str, qty=change, on: str = account_type, tx: str | None = None,
            group: str | None = None) -> LegDraft:
        return LegDraft(index, record.account, on, "", asset, qty, kind, None, None, tx, group)

    if rule in (TRADE, TRADE_FEE):
        if operation.startswith("buy crypto") and change > 0 and _fiat(asset):
            return [leg(0, "deposit")]  # the card or bank payment arriving, then spent by the trade
        kind = directed("fee", change) if rule == TRADE_FEE else trade_side(change)
        return [leg(0, kind, group=f"binance-export:{when}:trade")]
    if rule == LOAN:
        kind = directed(LOAN_KINDS[operation], change)
        legs = [leg(0, kind)]
        if kind != "unclassified":
            legs.append(leg(1, "liability", -change, f"{account_type}_loan" if account_type != "margin" else "margin_loan"))
        return legs
    if rule in (EARN_ONE_SIDED, EARN_TWO_SIDED):
        tx = f"binance-export:{when}:{asset}:{abs(change)}:earn"
        direction = "transfer_in" if change > 0 else "transfer_out"
        if rule == EARN_TWO_SIDED:  # each row is one side
            return [leg(0, direction, tx=tx, group=tx)]
        if account_type == EARN_ACCOUNT_TYPE:  # the earn side of a one-sided move: booked with its spot row
            return []
        return [leg(0, direction, tx=tx, group=tx),
                leg(1, "transfer_out" if change > 0 else "transfer_in", -change, EARN_ACCOUNT_TYPE, tx=tx, group=tx)]
    if rule == TRANSFER:
        tx = f"binance-export:{when}:{asset}:{abs(change)}"
        return [leg(0, "transfer_in" if change > 0 else "transfer_out", tx=tx, group=tx)]
    if rule == "unclassified":
        return [leg(0, "unclassified")]
    return [leg(0, directed(rule, change))]


register_mapper(SOURCE, STREAM, map_binance_export_row)


# ------------------------------------------------------------------------------ Kraken ledgers export

KRAKEN_SOURCE, KRAKEN_STREAM = "kraken_export", "ledgers"
KRAKEN_ASSETS = {"XXBT": "BTC", "XBT": "BTC", "XETH": "ETH", "XXRP": "XRP", "XLTC": "LTC", "XXDG": "DOGE", "XDG": "DOGE",
                 "XXLM": "XLM", "XZEC": "ZEC", "XXMR": "XMR", "XETC": "ETC", "XREP": "REP", "XMLN": "MLN",
                 "ZUSD": "USD", "ZEUR": "EUR", "ZGBP": "GBP", "ZCAD": "CAD", "ZJPY": "JPY", "ZAUD": "AUD", "ZCHF": "CHF"}
KRAKEN_KINDS = {"deposit": "deposit", "withdrawal": "withdrawal", "staking": "staking_reward", "earn": "staking_reward",
                "dividend": "income", "credit": "income", "reward": "income", "rollover": "fee", "margin": "realized_pnl",
                "settled": "realized_pnl", "airdrop": "airdrop"}
KRAKEN_STAKING_MOVES = ("spottostaking", "stakingfromspot", "stakingtospot", "spotfromstaking")
KRAKEN_EARN_MOVES = ("allocation", "deallocation", "autoallocation", "migration")
KRAKEN_SIGNED = ("trade", "spend", "receive", "sale", "conversion")


# Kraken's staking and earn wrappers: the same economic asset held in another place (lots keep basis and dates)
KRAKEN_WRAPPERS = {".S": "staking", ".M": "staking", ".B": "staking", ".P": "staking", ".F": "earn"}
KRAKEN_UNDERLYING = {"ETH2": "ETH"}


def _kraken_wrapper(code: str) -> tuple[str, str | None]:
    """(code without a staking/earn suffix, the account type the suffix implies or None)."""
    text = code.strip().upper()
    suffix = text[-2:] if len(text) > 2 and text[-2] == "." else ""
    return (text[:-2], KRAKEN_WRAPPERS[suffix]) if suffix in KRAKEN_WRAPPERS else (text, None)


def kraken_asset(code: str) -> str:
    """Kraken's asset code to its symbol (XXBT -> BTC, ZUSD -> USD); staking and earn wrappers resolve to the
    underlying asset (XBT.M -> BTC, DOT.S -> DOT, ETH2.S -> ETH): where they are held is the account type."""
    base, _ = _kraken_wrapper(code)
    symbol = KRAKEN_ASSETS.get(base, base)
    return KRAKEN_UNDERLYING.get(symbol, symbol)


def kraken_account_type(wallet: str, code: str = "") -> str:
    """Kraken's wallet column ("spot / main", "earn / flexible") to an account type; without a wallet, the asset's
    wrapper suffix (``.S``/``.M``/``.B``/``.P`` staking, ``.F`` earn), else spot."""
    text = wallet.strip().lower()
    if not text:
        return _kraken_wrapper(code)[1] or "spot"
    if text.startswith("spot"):
        return "spot"
    return text.split("/")[0].strip().replace(" ", "_")


def map_kraken_ledger_row(record: StagedRecord) -> list[LegDraft]:
    """Leg 0: the row's amount; leg 1: its fee (Kraken's balance moves by amount - fee). Rows sharing a ``refid``
    (both sides of a trade) are one event (group ``<account>:<refid>``)."""
    values = {k.lower(): (v or "").strip() for k, v in record.payload.items()}
    amount = D(values["amount"])
    fee = D(values["fee"]) if values.get("fee") else D(0)
    kind_text = values["type"].lower()
    account_type = kraken_account_type(values.get("wallet", ""), values["asset"])
    asset = kraken_asset(values["asset"])
    tx_hash = None
    group = f"{record.account}:{values['refid']}" if values.get("refid") else None
    if kind_text == "earn" and values.get("subtype", "").lower() in KRAKEN_EARN_MOVES:
        kind = "transfer_in" if amount > 0 else "transfer_out"  # spot <-> earn wallet, both rows share the refid
        tx_hash = f"kraken:{values['refid']}" if values.get("refid") else None
    elif kind_text in KRAKEN_KINDS:
        kind = directed(KRAKEN_KINDS[kind_text], amount)
    elif kind_text in KRAKEN_SIGNED:
        kind = trade_side(amount)
    elif kind_text == "transfer":
        kind = "transfer_in" if amount > 0 else "transfer_out"
        # spot <-> staking: Kraken books each side under its own refid; matched by asset, amount and time instead
        staking_move = values.get("subtype", "").lower() in KRAKEN_STAKING_MOVES
        tx_hash = f"kraken:{values['refid']}" if values.get("refid") and not staking_move else None
    else:
        kind = "unclassified"
    legs = [LegDraft(0, record.account, account_type, "", asset, amount, kind, None, None, tx_hash, group)] if amount else []
    if fee:
        legs.append(LegDraft(1, record.account, account_type, "", asset, -fee, directed("fee", -fee), None, None, None,
                             group))
    return legs


register_mapper(KRAKEN_SOURCE, KRAKEN_STREAM, map_kraken_ledger_row)


# ------------------------------------------------------------------------------ Coinbase Exchange (Pro) statement

COINBASE_EXCHANGE_SOURCE, COINBASE_EXCHANGE_STREAM = "coinbase_exchange_export", "account_statement"
COINBASE_EXCHANGE_KINDS = {"match": TRADE, "conversion": TRADE, "fee": TRADE_FEE, "deposit": "deposit",
                           "withdrawal": "withdrawal", "rebate": "rebate", "transfer": TRANSFER}


def _values(record: StagedRecord) -> dict[str, str]:
    return {k.lower().strip(): (v or "").strip() for k, v in record.payload.items()}


def map_coinbase_exchange_row(record: StagedRecord) -> list[LegDraft]:
    """One leg per statement row, in ``spot``. ``match`` and ``fee`` rows of one ``trade id`` are one trade event
    (group ``<account>:trade:<trade id>``); a ``conversion`` (USD <-> USDC) is a trade grouped by its order (else
    transfer) id; a ``transfer`` between portfolios is an internal transfer matched by ``transfer id``."""
    values = _values(record)
    amount = D(values["amount"])
    asset = values["amount/balance unit"].upper()
    rule = COINBASE_EXCHANGE_KINDS.get(values["type"].lower(), "unclassified")
    group = tx = None
    if values.get("trade id"):
        group = f"{record.account}:trade:{values['trade id']}"
    elif rule == TRADE and (values.get("order id") or values.get("transfer id")):
        group = f"{record.account}:conversion:{values.get('order id') or values.get('transfer id')}"
    if rule == TRADE:
        kind = trade_side(amount)
    elif rule == TRADE_FEE:
        kind = directed("fee", amount)
    elif rule == TRANSFER:
        kind = "transfer_in" if amount > 0 else "transfer_out"
        tx = f"coinbase-exchange:{values['transfer id']}" if values.get("transfer id") else None
    elif rule == "unclassified":
        kind = rule
    else:
        kind = directed(rule, amount)
    return [LegDraft(0, record.account, "spot", "", asset, amount, kind, None, None, tx, group)] if amount else []


register_mapper(COINBASE_EXCHANGE_SOURCE, COINBASE_EXCHANGE_STREAM, map_coinbase_exchange_row)


# ------------------------------------------------------------------------------ Coinbase retail transaction history

COINBASE_SOURCE, COINBASE_STREAM = "coinbase_export", "transaction_history"
# Transaction Type (lower case) -> the leg kind of the asset's movement, or a rule for trades
COINBASE_TYPES = {
    "buy": "buy", "advanced trade buy": "buy", "advance trade buy": "buy", "sell": "sell",
    "advanced trade sell": "sell", "advance trade sell": "sell", "convert": "convert",
    "send": "withdrawal", "receive": "deposit", "deposit": "deposit", "withdrawal": "withdrawal",
    "rewards income": "staking_reward", "reward income": "staking_reward", "staking income": "staking_reward",
    "inflation reward": "staking_reward", "coinbase earn": "income", "learning reward": "income",
    "interest payout": "interest", "subscription rebate": "rebate", "subscription rebates (24 hours)": "rebate",
    "pro deposit": "transfer_out", "exchange deposit": "transfer_out", "pro withdrawal": "transfer_in",
    "exchange withdrawal": "transfer_in",
}
_MONEY = re.compile(r"^[^\d+\-.]*")  # a currency sign before the number ("$1,234.50", "-$12.00")
_TRADE_NOTE = re.compile(r"^(Bought|Sold) ([\d,]*\.?\d+) (\w+) for [^\d]*([\d,]*\.?\d+) (\w+)"
                         r"(?: on (\w+)-(\w+))?(?: at [^\d]*([\d,]*\.?\d+) ?([\w/]+)?)?")
_CONVERT_NOTE = re.compile(r"^Converted ([\d,]*\.?\d+) (\w+) to ([\d,]*\.?\d+) (\w+)")


def coinbase_money(text: str) -> Decimal | None:
    """A Coinbase or Nexo money cell ("$1,234.50", "-$12", "1234.5", "") to a Decimal (the currency sign and
    thousands separators are their display format); None when empty. Raises ``NotADecimal`` on anything else."""
    value = text.strip()
    if not value:
        return None
    negative = value.startswith("-")
    number = parse_input_decimal(_MONEY.sub("", value.lstrip("-")).replace(",", ""))
    return -number if negative else number


def coinbase_trade_note(notes: str) -> tuple[str, Decimal, str, Decimal | None] | None:
    """(quote asset, quote quantity incl. fees, base asset, rate or None) of a trade note such as
    "Bought 0.001 BTC for 30.05 USDC on BTC-USDC at 30,000.00 USDC/BTC"; None when it is not one."""
    match = _TRADE_NOTE.match(notes.strip())
    if not match:
        return None
    rate = D(match.group(8).replace(",", "")) if match.group(8) else None
    return match.group(5).upper(), D(match.group(4).replace(",", "")), match.group(3).upper(), rate


def coinbase_convert_note(notes: str) -> tuple[str, Decimal] | None:
    """(received asset, received quantity) of "Converted 0.1 ETH to 300.12 USDC"; None when it is not one."""
    match = _CONVERT_NOTE.match(notes.strip())
    return (match.group(4).upper(), D(match.group(3).replace(",", ""))) if match else None


def map_coinbase_row(record: StagedRecord) -> list[LegDraft]:
    """The legs of one Coinbase transaction (one event per row, account type ``spot``).

    Buy/Sell (and Advanced Trade Buy/Sell quoted in the spot price currency): the asset, the quote currency's
    ``Subtotal`` and the ``Fees and/or Spread`` in the quote currency. An Advanced Trade quoted in another asset
    ("for 30.05 USDC on BTC-USDC at 30000 USDC/BTC"): the quote is the note's amount, the fee the difference from
    quantity x rate. Convert: the asset given and the note's received asset. Deposit/Withdrawal (fiat) carry their
    fee. Income rows are valued at ``Spot Price at Transaction`` when the spot currency is USD."""
    values = _values(record)
    asset = values["asset"].upper()
    quantity = abs(D(values["quantity transacted"]))
    currency = values.get("spot price currency", "").upper() or values.get("price currency", "").upper()
    spot_price = coinbase_money(values.get("spot price at transaction") or values.get("price at transaction") or "")
    subtotal = coinbase_money(values.get("subtotal", ""))
    fees = coinbase_money(values.get("fees and/or spread", "")) or ZERO
    rule = COINBASE_TYPES.get(" ".join(values["transaction type"].lower().split()), "unclassified")
    usd_price = spot_price if currency == "USD" else None

    def leg(index: int, leg_asset: str, qty: Decimal, kind: str, unit: Decimal | None = None) -> LegDraft:
        value = (qty if qty > 0 else -qty) * unit if unit is not None else None
        return LegDraft(index, record.account, "spot", "", leg_asset, qty, kind, unit, value, None, None)

    if rule in ("buy", "sell"):
        sign = 1 if rule == "buy" else -1
        note = coinbase_trade_note(values.get("notes", ""))
        if note is not None and note[0] != currency and note[3] is not None:  # quoted in another asset
            quote, amount, rate = note[0], note[1], note[3]
            gross = quantity * rate
            fee = abs(gross - amount)
            legs = [leg(0, asset, sign * quantity, rule), leg(1, quote, -sign * gross, "sell" if rule == "buy" else "buy")]
            return legs + ([leg(2, quote, -fee, "fee")] if fee else [])
        if subtotal is None or not currency:
            return [leg(0, asset, sign * quantity, "unclassified")]
        legs = [leg(0, asset, sign * quantity, rule),
                leg(1, currency, -sign * abs(subtotal), "sell" if rule == "buy" else "buy")]
        return legs + ([leg(2, currency, -abs(fees), "fee")] if fees else [])
    if rule == "convert":
        received = coinbase_convert_note(values.get("notes", ""))
        if received is None:
            return [leg(0, asset, -quantity, "unclassified")]
        return [leg(0, asset, -quantity, "sell"), leg(1, received[0], received[1], "buy")]
    if rule in ("deposit", "withdrawal") and _fiat(asset) and fees:
        if rule == "deposit":  # the quantity credited is net of the fee
            return [leg(0, asset, quantity + abs(fees), "deposit"), leg(1, asset, -abs(fees), "fee")]
        return [leg(0, asset, -(quantity - abs(fees)), "withdrawal"), leg(1, asset, -abs(fees), "fee")]
    if rule == "unclassified":
        return [leg(0, asset, quantity, "unclassified")]
    sign = 1 if rule in ("deposit", "transfer_in", "staking_reward", "income", "interest", "rebate") else -1
    priced = rule in ("staking_reward", "income", "interest", "rebate")
    return [leg(0, asset, sign * quantity, rule, usd_price if priced else None)]


register_mapper(COINBASE_SOURCE, COINBASE_STREAM, map_coinbase_row)


# ------------------------------------------------------------------------------ Nexo transactions export

NEXO_SOURCE, NEXO_STREAM = "nexo_export", "transactions"
NEXO_WALLET, NEXO_TERM, NEXO_COLLATERAL, NEXO_LOAN = "wallet", "earn", "collateral", "loan"
# Nexo's Type (lower case, spaces removed) -> a leg kind or a rule. Incoming kinds book the Output side, outgoing
# kinds the Input side; the amounts' own signs are never used to choose a kind.
NEXO_TYPES: dict[str, str] = {
    "deposit": "deposit", "topupcrypto": "deposit", "exchangedepositedon": "deposit",
    "withdrawal": "withdrawal", "withdrawexchanged": "withdrawal",
    "interest": "nexo_interest", "fixedterminterest": "interest", "interestadditional": "interest",
    "dividend": "income", "referralbonus": "income", "bonus": "airdrop", "cashback": "rebate",
    "exchangecashback": "rebate", "exchange": "exchange", "exchangecollateral": "exchange",
    "manualsellorder": "sale_to_repay",
    "deposittoexchange": "none", "exchangetowithdraw": "none",  # the fiat side of a deposit/withdrawal: no movement
    "lockingtermdeposit": "lock", "unlockingtermdeposit": "unlock", "transferout": "to_collateral",
    "transferin": "from_collateral", "loanwithdrawal": "borrow", "withdrawalcredit": "borrow",
    "creditlinedraw": "borrow", "repayment": "repay", "manualrepayment": "repay", "liquidation": "liquidation",
}
NEXO_IN = ("deposit", "interest", "income", "airdrop", "rebate", "borrow")
NEXO_SKIPPED_DETAILS = ("rejected", "pending", "cancelled", "canceled")
NEXO_ASSETS = {"BNBN": "BNB", "NEXONEXO": "NEXO", "NEXOBNB": "NEXO", "NEXOBEP2": "NEXO", "USDTERC": "USDT"}


def nexo_type(text: str) -> str:
    return NEXO_TYPES.get(re.sub(r"[^a-z]", "", text.lower()), "unclassified")


def nexo_asset(code: str) -> str:
    text = code.strip().upper()
    return NEXO_ASSETS.get(text, text)


def map_nexo_row(record: StagedRecord) -> list[LegDraft]:
    """The legs of one Nexo transaction (docs/sources-exchanges.md, "Nexo"): savings in ``wallet``, fixed-term
    deposits in ``earn``, credit-line collateral in ``collateral``, the credit line's debt in ``loan``."""
    values = _values(record)
    if values.get("details", "").lower().startswith(NEXO_SKIPPED_DETAILS):
        return []  # Nexo never moved it
    rule = nexo_type(values["type"])
    given, given_qty = nexo_asset(values["input currency"]), abs(D(values["input amount"]))
    got, got_qty = nexo_asset(values["output currency"]), abs(D(values["output amount"]))
    usd = coinbase_money(values.get("usd equivalent", ""))
    usd = abs(usd) if usd is not None else None
    tx = f"nexo:{values['transaction']}"

    def leg(index: int, on: str, asset: str, qty: Decimal, kind: str, value: Decimal | None = None,
            tx_hash: str | None = None, group: str | None = None) -> LegDraft:
        return LegDraft(index, record.account, on, "", asset, qty, kind, None, value, tx_hash, group)

    if rule == "none":
        return []
    if rule == "exchange":
        return [leg(0, NEXO_WALLET, given, -given_qty, "sell"), leg(1, NEXO_WALLET, got, got_qty, "buy")]
    if rule == "nexo_interest":  # Nexo's "Interest" is both earned (Output > 0) and charged on a credit line
        earned = D(values["output amount"]) >= 0
        return [leg(0, NEXO_WALLET, got, got_qty if earned else -got_qty,
                    "interest" if earned else "interest_expense", usd)]
    if rule in ("lock", "unlock", "to_collateral", "from_collateral"):
        there = NEXO_TERM if rule in ("lock", "unlock") else NEXO_COLLATERAL
        out = rule in ("lock", "to_collateral")  # out of the savings wallet
        return [leg(0, NEXO_WALLET, given, -given_qty if out else given_qty, "transfer_out" if out else "transfer_in",
                    tx_hash=tx),
                leg(1, there, given, given_qty if out else -given_qty, "transfer_in" if out else "transfer_out",
                    tx_hash=tx)]
    if rule == "borrow":
        return [leg(0, NEXO_WALLET, got, got_qty, "borrow"), leg(1, NEXO_LOAN, got, -got_qty, "liability")]
    if rule == "repay":
        return [leg(0, NEXO_WALLET, given, -given_qty, "repay"), leg(1, NEXO_LOAN, given, given_qty, "liability")]
    if rule in ("liquidation", "sale_to_repay"):  # collateral sold for USD, the USD repays the credit line
        if usd is None:
            return [leg(0, NEXO_WALLET, given, -given_qty, "unclassified")]
        sale, repay = f"{record.account}:{values['transaction']}:sale", f"{record.account}:{values['transaction']}:repay"
        there = NEXO_COLLATERAL if rule == "liquidation" else NEXO_WALLET
        return [leg(0, there, given, -given_qty, "sell", group=sale), leg(1, there, "USD", usd, "buy", usd, group=sale),
                leg(2, there, "USD", -usd, "repay", group=repay), leg(3, NEXO_LOAN, "USD", usd, "liability", group=repay)]
    if rule == "unclassified":
        return [leg(0, NEXO_WALLET, got, D(values["output amount"]), "unclassified")]
    if rule in NEXO_IN:
        return [leg(0, NEXO_WALLET, got, got_qty, rule, usd if rule not in ("deposit", "borrow") else None)]
    return [leg(0, NEXO_WALLET, given, -given_qty, rule)]


register_mapper(NEXO_SOURCE, NEXO_STREAM, map_nexo_row)
