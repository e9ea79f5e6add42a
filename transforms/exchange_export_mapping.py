"""Pure mappers of exchange CSV exports to canonical legs: Binance "Transaction History" (one leg per row, plus
the other side of a move the export shows from one side only) and Kraken's ledgers export (the amount and the fee
of each row). Kinds are the vocabulary's (transforms/events.py).

Binance: an operation's meaning is fixed by ``FIXED_KINDS`` (a sign that contradicts it makes the row
``unclassified``). The rows of one trade (the trade family: Buy, Sell, Transaction Related/Buy/Spend/Revenue/Sold/Fee,
Fee, Buy Crypto, Binance Convert, Small assets exchange BNB, Large OTC trading) at the same time are one event
(group ``binance-export:<user>:<time>:trade``): what comes in is ``buy``, what goes out ``sell``, the fees ``fee``,
so the trade carries one value (a "Buy ETH for EUR" is valued from its EUR side). Both rows of a transfer between
account types (``Transfer Between ...``) carry the same synthetic tx hash (user, time, coin, amount), so the
canonical build matches them (an internal move). A Simple Earn / savings / staking subscription or redemption is an
internal move between the row's account and ``earn`` (two legs, matched by their synthetic tx hash): lots keep
their basis and dates. A margin loan or repayment also moves the ``margin_loan`` account (a ``liability`` leg).
An operation not listed here is ``unclassified`` (never dropped, never booked as an acquisition or disposal): its
row still moves the balance, and its day's PnL is blocked until it is classified.
"""

from __future__ import annotations

from transforms.events import directed, trade_side
from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper
from warehouse.numbers import D

SOURCE, STREAM = "binance_export", "transaction_history"

ACCOUNT_TYPES = {"spot": "spot", "funding": "funding", "usdt-futures": "futures", "usd-m futures": "futures",
                 "usdⓢ-m futures": "futures", "coin-futures": "coin_futures", "coin-m futures": "coin_futures",
                 "cross margin": "margin", "margin": "margin", "isolated margin": "isolated_margin", "earn": "earn",
                 "savings": "earn", "pool": "pool"}
FIXED_KINDS = {
    "deposit": "deposit", "withdraw": "withdrawal", "realize profit and loss": "realized_pnl",
    "realized profit and loss": "realized_pnl", "funding fee": "funding", "commission history": "income",
    "referral kickback": "income", "commission rebate": "rebate", "insurance fund compensation": "income",
    "savings interest": "interest", "simple earn flexible interest": "interest",
    "simple earn locked rewards": "staking_reward", "pos savings interest": "staking_reward",
    "staking rewards": "staking_reward", "eth 2.0 staking rewards": "staking_reward", "distribution": "airdrop",
    "airdrop assets": "airdrop", "bnb fee deduction": "fee", "cash voucher distribution": "income",
}
TRADE_FAMILY = ("buy", "sell", "fee", "transaction related", "transaction buy", "transaction revenue", "transaction spend",
                "transaction sold", "transaction fee", "buy crypto", "binance convert", "small assets exchange bnb",
                "large otc trading", "asset conversion transfer")
TRADE_FEES = ("fee", "transaction fee")
LOANS = {"margin loan": "borrow", "isolated margin loan": "borrow", "margin repayment": "repay",
         "isolated margin repayment": "repay"}
EARN_MOVES = ("simple earn flexible subscription", "simple earn flexible redemption", "simple earn locked subscription",
              "simple earn locked redemption", "savings purchase", "savings principal redemption", "pos savings purchase",
              "pos savings redemption", "staking purchase", "staking redemption", "eth 2.0 staking")
EARN_ACCOUNT_TYPE = "earn"


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


def map_binance_export_row(record: StagedRecord) -> list[LegDraft]:
    change = _change(record)
    operation = _cell(record, "operation").lower()
    account_text = _cell(record, "account").lower()
    account_type = ACCOUNT_TYPES.get(account_text, account_text.replace(" ", "_"))
    coin = _cell(record, "coin").upper()
    when = f"{_cell(record, 'user_id')}:{_cell(record, 'utc_time')}"

    def leg(index: int, kind: str, qty=change, on: str = account_type, tx: str | None = None,
            group: str | None = None) -> LegDraft:
        return LegDraft(index, record.account, on, "", coin, qty, kind, None, None, tx, group)

    if operation in TRADE_FAMILY:
        kind = directed("fee", change) if operation in TRADE_FEES else trade_side(change)
        return [leg(0, kind, group=f"binance-export:{when}:trade")]
    if operation in FIXED_KINDS:
        return [leg(0, directed(FIXED_KINDS[operation], change))]
    if operation in LOANS:
        kind = directed(LOANS[operation], change)
        legs = [leg(0, kind)]
        if kind != "unclassified":
            legs.append(leg(1, "liability", -change, f"{account_type}_loan" if account_type != "margin" else "margin_loan"))
        return legs
    if operation in EARN_MOVES:  # the export shows one side; the other is the earn account's
        tx = f"binance-export:{when}:{coin}:{abs(change)}:earn"
        return [leg(0, "transfer_in" if change > 0 else "transfer_out", tx=tx),
                leg(1, "transfer_out" if change > 0 else "transfer_in", -change, EARN_ACCOUNT_TYPE, tx=tx)]
    if "transfer" in operation:
        tx = f"binance-export:{when}:{coin}:{abs(change)}"
        return [leg(0, "transfer_in" if change > 0 else "transfer_out", tx=tx, group=tx)]
    return [leg(0, "unclassified")]


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
