"""Pure mappers of records staged by the generic ccxt connector (ingestion/exchanges/generic_ccxt.py).

The staged payload is the exchange's own record (ccxt's ``info``). A mapper re-reads it with ccxt's own
parser for that exchange (``parse_ledger_entry``), offline and with ``number = str``, so every quantity is
the exchange's exact decimal text, never one of ccxt's floats. The same function therefore maps the ledger
of any exchange whose ccxt ``parse_ledger_entry`` reads its records; the exchange id is the record's source.

Ledger entries (stream ``ledger``; account type ``spot``):
  leg 0  the entry's amount, signed by ccxt's ``direction`` (in +, out -); kind from ccxt's unified type:
         trade -> buy/sell, transaction -> deposit/withdrawal, transfer -> transfer_in/out (tx hash
         ``<exchange>:<referenceId>``), fee -> fee, rebate/cashback -> rebate, referral/dividend/credit -> income,
         staking/earn/reward -> staking_reward, margin/settled -> realized_pnl, interest -> interest (received) or
         interest_expense (paid); anything else, or a sign that contradicts the kind -> unclassified
  leg 1  the entry's fee (``fee.cost`` in ``fee.currency``), a negative ``fee`` leg
Entries sharing the exchange's reference id (Kraken's ``refid``: both sides of a trade) are one event
(group ``<account>:<referenceId>``), so a trade carries one value and a fee on its fiat side reaches its cost.
An exchange whose ledger is its complete record (Kraken: every trade, deposit, withdrawal and reward is an
entry) takes its legs from the ledger only; its trades, deposits and withdrawals are staged for provenance
and carry no legs (they would count each movement twice).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from transforms.events import directed, trade_side
from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper
from warehouse.numbers import D, ZERO

# exchanges proven end to end through the generic connector, whose ledger is the complete record
LEDGER_COMPLETE = ("kraken",)
LEDGER_KINDS = {"fee": "fee", "rebate": "rebate", "cashback": "rebate", "referral": "income", "staking": "staking_reward",
                "earn": "staking_reward", "reward": "staking_reward", "margin": "realized_pnl", "settled": "realized_pnl",
                "dividend": "income", "credit": "income", "interest": "interest"}


# Exchanges whose asset codes carry a staking/earn wrapper suffix (Kraken: BTC.M, DOT.S, ETH2.S, BTC.F): the
# underlying asset held in another account type, so moving it there keeps its lots (docs/cost-basis.md, "Events")
WRAPPER_SUFFIXES = {"kraken": {".S": "staking", ".M": "staking", ".B": "staking", ".P": "staking", ".F": "earn"}}
UNDERLYING = {"ETH2": "ETH"}
STAKING_MOVES = ("spottostaking", "stakingfromspot", "stakingtospot", "spotfromstaking")


def resolve_wrapped(exchange_id: str, code: str, account_type: str = "spot") -> tuple[str, str]:
    """(underlying asset, account type) of an exchange's currency code: ``BTC.M`` on Kraken is BTC in staking."""
    text = str(code).upper()
    suffixes = WRAPPER_SUFFIXES.get(exchange_id, {})
    if len(text) > 2 and text[-2:] in suffixes:
        base = str(offline_parser(exchange_id).safe_currency_code(text[:-2])).upper()  # XBT -> BTC
        return UNDERLYING.get(base, base), suffixes[text[-2:]]
    return text, account_type


def split_wrapped_balances(exchange_id: str, balances: dict[str, str]) -> dict[str, dict[str, str]]:
    """Reported balances by account type, wrapped codes resolved (two codes of one asset and type add up)."""
    out: dict[str, dict[str, str]] = {}
    for code, value in balances.items():
        asset, account_type = resolve_wrapped(exchange_id, code)
        held = out.setdefault(account_type, {})
        held[asset] = format(D(held[asset]) + D(value), "f") if asset in held else value
    return out


class CcxtRecordError(RecordError):
    """A staged record that cannot be read; the message names the record and the field."""


@lru_cache(maxsize=None)
def offline_parser(exchange_id: str) -> Any:
    """ccxt's exchange class, never connected, numbers as exact strings: only its pure ``parse_*`` are used."""
    import ccxt

    exchange_class = getattr(ccxt, exchange_id, None)
    if exchange_class is None:
        raise CcxtRecordError(f"ccxt has no exchange {exchange_id!r}")
    parser = exchange_class({"enableRateLimit": False})
    parser.number = str
    return parser


def parse_ledger_entry(exchange_id: str, info: dict) -> dict:
    """ccxt's unified ledger entry of ``info``, numbers as the exchange's own decimal text."""
    return offline_parser(exchange_id).parse_ledger_entry(dict(info))


def _quantity(record: StagedRecord, name: str, value: object):
    if value in (None, ""):
        return ZERO
    if not isinstance(value, str):
        raise CcxtRecordError(f"{record.source} {record.stream} record {record.source_raw_id!r}: field {name!r} is "
                              f"{value!r}, expected the exchange's decimal text")
    try:
        return D(value)
    except ValueError as error:
        raise CcxtRecordError(f"{record.source} {record.stream} record {record.source_raw_id!r}: field {name!r}: "
                              f"{error}") from None


def map_ledger_entry(record: StagedRecord) -> list[LegDraft]:
    if not isinstance(record.payload, dict):
        raise CcxtRecordError(f"{record.source} ledger record {record.source_raw_id!r}: payload is not an object")
    try:
        entry = parse_ledger_entry(record.source, record.payload)
    except (ValueError, TypeError, KeyError, ArithmeticError) as error:
        raise CcxtRecordError(f"{record.source} ledger record {record.source_raw_id!r} cannot be read by ccxt's "
                              f"{record.source} parser ({type(error).__name__}: {error}); fields: "
                              f"{', '.join(f'{k}={v!r}' for k, v in sorted(record.payload.items()))[:400]}") from None
    currency = entry.get("currency")
    if not currency:
        raise CcxtRecordError(f"{record.source} ledger record {record.source_raw_id!r}: field 'asset' names no currency")
    amount = _quantity(record, "amount", entry.get("amount"))
    direction = entry.get("direction")
    signed = -amount if direction == "out" else amount
    kind_text = str(entry.get("type") or "").lower()
    tx_hash = None
    if kind_text == "trade":
        kind = trade_side(signed)
    elif kind_text == "transaction":
        kind = "deposit" if signed > 0 else "withdrawal"
    elif kind_text == "transfer":
        kind = "transfer_in" if signed > 0 else "transfer_out"
        tx_hash = f"{record.source}:{entry['referenceId']}" if entry.get("referenceId") else None
    elif kind_text == "interest" and signed < 0:
        kind = "interest_expense"
    else:
        kind = directed(LEDGER_KINDS.get(kind_text, "unclassified"), signed)
    group = f"{record.account}:{entry['referenceId']}" if entry.get("referenceId") else None
    asset, account_type = resolve_wrapped(record.source, currency)
    if kind_text == "transfer" and str(record.payload.get("subtype", "")).lower() in STAKING_MOVES:
        tx_hash = None  # spot <-> staking: each side has its own reference id; matched by asset, amount and time
    legs = []
    if signed != ZERO:
        legs.append(LegDraft(0, record.account, account_type, "", asset, signed, kind, None, None, tx_hash, group))
    fee = entry.get("fee") or {}
    fee_cost = _quantity(record, "fee", fee.get("cost"))
    if fee_cost != ZERO:
        fee_asset, fee_type = resolve_wrapped(record.source, fee.get("currency") or currency)
        legs.append(LegDraft(1, record.account, fee_type, "", fee_asset, -fee_cost, directed("fee", -fee_cost), None,
                             None, None, group))
    return legs


def no_legs_ledger_is_complete(record: StagedRecord) -> list[LegDraft]:
    """Staged for provenance: the exchange's ledger already books this movement."""
    return []


for _exchange in LEDGER_COMPLETE:
    register_mapper(_exchange, "ledger", map_ledger_entry)
    for _stream in ("trades", "deposits", "withdrawals"):
        register_mapper(_exchange, _stream, no_legs_ledger_is_complete)
