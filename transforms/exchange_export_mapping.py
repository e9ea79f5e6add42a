"""Pure mappers of exchange CSV exports to canonical legs: Binance "Transaction History" (one leg per row) and
Kraken's ledgers export (the amount and the fee of each row).

Operation -> kind; where Binance's operation does not say the direction (Transaction Related, Binance Convert,
Small assets exchange BNB, transfers) the sign of ``Change`` does. Both rows of a transfer between account
types (``Transfer Between ...``, ``transfer_in``/``transfer_out``) carry the same synthetic tx hash
(user, time, coin, amount), so the canonical build matches them. An operation not listed here is kept as
kind ``other`` (never dropped); its row still moves the balance.
"""

from __future__ import annotations

from transforms.ledger_mapping import LegDraft
from transforms.mappers import StagedRecord, register_mapper
from warehouse.numbers import D

SOURCE, STREAM = "binance_export", "transaction_history"

ACCOUNT_TYPES = {"spot": "spot", "funding": "funding", "usdt-futures": "futures", "usd-m futures": "futures",
                 "usdⓢ-m futures": "futures", "coin-futures": "coin_futures", "coin-m futures": "coin_futures",
                 "cross margin": "margin", "margin": "margin", "isolated margin": "isolated_margin", "earn": "earn",
                 "savings": "earn", "pool": "pool"}
FIXED_KINDS = {
    "deposit": "deposit", "withdraw": "withdrawal", "buy": "buy", "sell": "sell", "fee": "fee",
    "transaction buy": "buy", "transaction revenue": "buy", "transaction spend": "sell", "transaction sold": "sell",
    "transaction fee": "fee", "realize profit and loss": "realized_pnl", "realized profit and loss": "realized_pnl",
    "funding fee": "funding", "commission history": "income", "referral kickback": "income",
    "commission rebate": "income", "insurance fund compensation": "income", "savings interest": "interest",
    "simple earn flexible interest": "interest", "simple earn locked rewards": "staking_reward",
    "pos savings interest": "staking_reward", "staking rewards": "staking_reward", "eth 2.0 staking rewards": "staking_reward",
    "distribution": "airdrop", "airdrop assets": "airdrop", "margin loan": "borrow", "isolated margin loan": "borrow",
    "margin repayment": "repay", "isolated margin repayment": "repay", "bnb fee deduction": "fee",
}
SIGNED_KINDS = ("transaction related", "binance convert", "small assets exchange bnb", "large otc trading",
                "asset conversion transfer")


def _cell(record: StagedRecord, name: str) -> str:
    for key, value in record.payload.items():
        if key.lower() == name:
            return (value or "").strip()
    raise ValueError(f"binance export record {record.source_raw_id}: field {name!r} is missing")


def map_binance_export_row(record: StagedRecord) -> list[LegDraft]:
    change = D(_cell(record, "change"))
    operation = _cell(record, "operation").lower()
    account_text = _cell(record, "account").lower()
    account_type = ACCOUNT_TYPES.get(account_text, account_text.replace(" ", "_"))
    coin = _cell(record, "coin").upper()
    tx_hash = None
    if operation in FIXED_KINDS:
        kind = FIXED_KINDS[operation]
    elif operation in SIGNED_KINDS:
        kind = "buy" if change > 0 else "sell"
    elif "transfer" in operation:
        kind = "transfer_in" if change > 0 else "transfer_out"
        tx_hash = f"binance-export:{_cell(record, 'user_id')}:{_cell(record, 'utc_time')}:{coin}:{abs(change)}"
    else:
        kind = "other"
    return [LegDraft(0, record.account, account_type, "", coin, change, kind, None, None, tx_hash)]


register_mapper(SOURCE, STREAM, map_binance_export_row)


# ------------------------------------------------------------------------------ Kraken ledgers export

KRAKEN_SOURCE, KRAKEN_STREAM = "kraken_export", "ledgers"
KRAKEN_ASSETS = {"XXBT": "BTC", "XBT": "BTC", "XETH": "ETH", "XXRP": "XRP", "XLTC": "LTC", "XXDG": "DOGE", "XDG": "DOGE",
                 "XXLM": "XLM", "XZEC": "ZEC", "XXMR": "XMR", "XETC": "ETC", "XREP": "REP", "XMLN": "MLN",
                 "ZUSD": "USD", "ZEUR": "EUR", "ZGBP": "GBP", "ZCAD": "CAD", "ZJPY": "JPY", "ZAUD": "AUD", "ZCHF": "CHF"}
KRAKEN_KINDS = {"deposit": "deposit", "withdrawal": "withdrawal", "staking": "staking_reward", "earn": "staking_reward",
                "dividend": "income", "credit": "income", "reward": "income", "rollover": "fee", "margin": "realized_pnl",
                "settled": "realized_pnl"}
KRAKEN_SIGNED = ("trade", "spend", "receive", "sale", "conversion")


def kraken_asset(code: str) -> str:
    """Kraken's asset code to its symbol (XXBT -> BTC, ZUSD -> USD); staked variants (DOT.S) are kept."""
    text = code.strip().upper()
    return KRAKEN_ASSETS.get(text, text)


def kraken_account_type(wallet: str) -> str:
    """Kraken's wallet column ("spot / main", "earn / flexible") to an account type; none: spot."""
    text = wallet.strip().lower()
    if not text or text.startswith("spot"):
        return "spot"
    return text.split("/")[0].strip().replace(" ", "_")


def map_kraken_ledger_row(record: StagedRecord) -> list[LegDraft]:
    """Leg 0: the row's amount; leg 1: its fee (Kraken's balance moves by amount - fee)."""
    values = {k.lower(): (v or "").strip() for k, v in record.payload.items()}
    amount = D(values["amount"])
    fee = D(values["fee"]) if values.get("fee") else D(0)
    kind_text = values["type"].lower()
    account_type = kraken_account_type(values.get("wallet", ""))
    asset = kraken_asset(values["asset"])
    tx_hash = None
    if kind_text in KRAKEN_KINDS:
        kind = KRAKEN_KINDS[kind_text]
    elif kind_text in KRAKEN_SIGNED:
        kind = "buy" if amount > 0 else "sell"
    elif kind_text == "transfer":
        kind = "transfer_in" if amount > 0 else "transfer_out"
        tx_hash = f"kraken:{values['refid']}" if values.get("refid") else None
    else:
        kind = "other"
    legs = [LegDraft(0, record.account, account_type, "", asset, amount, kind, None, None, tx_hash)] if amount else []
    if fee:
        legs.append(LegDraft(1, record.account, account_type, "", asset, -fee, "fee", None, None, None))
    return legs


register_mapper(KRAKEN_SOURCE, KRAKEN_STREAM, map_kraken_ledger_row)
