"""Map one staged ledger-CSV record to its canonical legs (pure).

Leg 0 is the action's own movement, leg 1 the quote of a BUY/SELL (or the loan account's side of a BORROW/REPAY:
account type ``loan``), leg 2 the fee. Kinds are the vocabulary's (transforms/events.py). A BUY/SELL with a quote
and no ``unit_price_usd`` carries no USD value: the engine values the trade by the event rule.
Every leg keeps the raw record it came from; its id is ``raw_record_id * 10 + leg_index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from transforms.record_errors import RecordError
from warehouse.numbers import D, exact_context, quantize

USD = "USD"

# action -> (kind of leg 0, sign of leg 0)
_MAIN_LEG = {
    "BUY": ("buy", 1),
    "SELL": ("sell", -1),
    "TRANSFER_IN": ("transfer_in", 1),
    "TRANSFER_OUT": ("transfer_out", -1),
    "FEE": ("fee", -1),
    "INCOME": ("income", 1),
    "STAKING_REWARD": ("staking_reward", 1),
    "AIRDROP": ("airdrop", 1),
    "BORROW": ("borrow", 1),
    "REPAY": ("repay", -1),
    "INTEREST_EXPENSE": ("interest_expense", -1),
    "SPEND": ("spend", -1),
    "DEPOSIT": ("deposit", 1),
    "WITHDRAWAL": ("withdrawal", -1),
    "INTEREST": ("interest", 1),
    "REBATE": ("rebate", 1),
    "MINING": ("mining", 1),
}
LOAN_ACCOUNT_TYPE = "loan"


@dataclass(frozen=True)
class LegDraft:
    leg_index: int
    account: str
    account_type: str | None  # None: not given; the canonical build resolves it
    sub_account: str
    asset: str
    quantity: Decimal
    kind: str
    unit_price_usd: Decimal | None
    usd_value: Decimal | None
    tx_hash: str | None
    group: str | None = None  # the source's own id of the event when it spans records (Kraken refid, ...); None: the record


def leg_id(raw_record_id: int, leg_index: int) -> int:
    return raw_record_id * 10 + leg_index


# Ledger/balances CSV v1.1 names of v1 columns (docs/csv-formats.md): ``asset_id`` is ``asset``, ``wallet`` is
# ``account`` (``venue``, where the wallet is held, names the account when ``wallet`` is absent).
V11_ALIASES: dict[str, tuple[str, ...]] = {"asset": ("asset_id",), "account": ("wallet", "venue")}


def _get(payload: dict[str, str], name: str) -> str:
    for candidate in (name, *V11_ALIASES.get(name, ())):
        for key, value in payload.items():
            if key.lower() == candidate and (value or "").strip():
                return (value or "").strip()
    return ""


def _decimal(payload: dict[str, str], name: str) -> Decimal:
    try:
        return D(_get(payload, name))
    except ValueError as error:
        raise RecordError(f"field {name!r}: {error}", field=name) from None


def _opt_decimal(payload: dict[str, str], name: str) -> Decimal | None:
    return _decimal(payload, name) if _get(payload, name) else None


def map_ledger_record(payload: dict[str, str]) -> list[LegDraft]:
    """The legs of one ledger row. The payload was validated when it was staged."""
    action = _get(payload, "action").upper()
    asset = _get(payload, "asset").upper()
    account = _get(payload, "account")
    account_type = _get(payload, "account_type").lower() or None
    sub_account = _get(payload, "sub_account")
    tx_hash = _get(payload, "tx_hash") or None
    quantity = _decimal(payload, "quantity")
    price = _opt_decimal(payload, "unit_price_usd")
    if action not in _MAIN_LEG:
        raise RecordError(f"field 'action' is {action!r}, not one of {', '.join(sorted(_MAIN_LEG))}", field="action")
    kind, sign = _MAIN_LEG[action]

    def leg(index: int, leg_asset: str, qty: Decimal, leg_kind: str, unit: Decimal | None, value: Decimal | None) -> LegDraft:
        return LegDraft(index, account, account_type, sub_account, leg_asset, qty, leg_kind, unit, value,
                        tx_hash if index == 0 else None)

    with exact_context():
        value = quantity * price if price is not None else None
        legs = [leg(0, asset, sign * quantity, kind, price, value)]
        quote_unit: Decimal | None = None
        quote_asset = ""
        if action in ("BUY", "SELL"):
            quote_asset = _get(payload, "quote_asset").upper() or USD
            quote_qty = _opt_decimal(payload, "quote_quantity")
            if quote_qty is None:  # quoted in USD at quantity x price
                assert value is not None
                quote_qty = value
            quote_value = quote_qty if quote_asset == USD else value
            quote_unit = Decimal(1) if quote_asset == USD else (
                quantize(value / quote_qty) if value is not None else None)
            quote_kind = "sell" if action == "BUY" else "buy"
            legs.append(leg(1, quote_asset, -sign * quote_qty, quote_kind, quote_unit, quote_value))
        elif action in ("BORROW", "REPAY"):  # the debt: the loan account of the same name moves the other way
            legs.append(LegDraft(1, account, LOAN_ACCOUNT_TYPE, sub_account, asset, -sign * quantity, "liability", None,
                                 None, None))
        fee_asset = _get(payload, "fee_asset").upper()
        fee_amount = _opt_decimal(payload, "fee_amount")
        if fee_asset and fee_amount:
            if fee_asset == USD:
                fee_unit: Decimal | None = Decimal(1)
            elif fee_asset == asset:
                fee_unit = price
            elif fee_asset == quote_asset:
                fee_unit = quote_unit
            else:  # a third asset: its fair value comes from the price history at cost-basis time
                fee_unit = None
            fee_value = quantize(fee_amount * fee_unit) if fee_unit is not None else None
            legs.append(leg(2, fee_asset, -fee_amount, "fee", fee_unit, fee_value))
    return legs
