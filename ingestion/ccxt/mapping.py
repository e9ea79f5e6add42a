"""Pure mappers of records staged by the generic ccxt connector (ingestion/ccxt/sync.py), for any
exchange ccxt supports: no exchange needs a mapper of its own.

The staged payload is the exchange's own record (ccxt's ``info``). A mapper re-reads it with ccxt's own parser for
that exchange (``parse_ledger_entry``, ``parse_trade``, ``parse_transaction``), offline and with ``number = str``,
so every quantity is the exchange's exact decimal text, never one of ccxt's floats. The exchange id is the record's
source; every id of ``ccxt.exchanges`` (but ``binance``, which has its own connector) is registered for the four
streams ``ledger``, ``trades``, ``deposits`` and ``withdrawals``.

Which stream books a movement is chosen by ``exchange.has[...]`` (``ledger_covers``): a trade is booked from
``trades`` when the exchange has ``fetchMyTrades``, else from its ``ledger`` entries of type ``trade``; deposits and
withdrawals from their streams when it has ``fetchDeposits``/``fetchWithdrawals``, else from ``transaction`` entries;
everything else (fee, rebate, transfer, interest, staking, margin, ...) from the ledger. ``LEDGER_COMPLETE`` overrides
this for exchanges whose ledger is the complete record (Kraken: its trades, deposits and withdrawals are staged for
provenance only; they would count each movement twice).

Ledger entries (account type ``spot`` unless ``EXCHANGES`` says otherwise):
  leg 0  the entry's amount, signed by ccxt's ``direction`` (in +, out -; else the amount's own sign); kind from
         ccxt's unified type: trade -> buy/sell, transaction -> deposit/withdrawal, transfer -> transfer_in/out (tx
         hash ``<exchange>:<referenceId or id>``), fee -> fee, rebate/cashback -> rebate, referral/dividend/credit ->
         income, staking/earn/reward -> staking_reward, margin/settled -> realized_pnl, interest -> interest (received)
         or interest_expense (paid); anything else, or a sign that contradicts the kind -> unclassified
  leg 1  the entry's fee (``fee.cost`` in ``fee.currency``), a negative ``fee`` leg (a negative cost: a ``rebate``);
         on an exchange whose ledger amount already includes the fee (``fee_in_amount``: OKX's ``balChg``) leg 0
         is the amount before the fee, so the two legs add up to the exchange's balance change
  leg 2  the other side of a transfer between two account types of the same exchange account, when the exchange
         names them (``transfer_accounts``: OKX's ``from``/``to``): the same tx hash, so the two sides match
Entries sharing the exchange's reference id (Kraken's ``refid``: both sides of a trade) are one event
(group ``<account>:<referenceId>``), so a trade carries one value and a fee on its fiat side reaches its cost.

Trades (``parse_trade``): the market is the symbol the sync wrote into the record's id (``<account>|BASE/QUOTE|id``)
or the one ccxt's parser reads from the record; a buy is ``buy`` +amount of the base and ``sell`` -cost of the quote,
a sell the reverse, and the fee a ``fee`` leg in its currency; one event per trade. A contract market
(``BASE/QUOTE:SETTLE``) moves no base asset: its legs are ``unclassified`` until a rule exists.
Deposits and withdrawals (``parse_transaction``): only status ``ok`` moves (a pending one is staged again when it
completes, as a new version); a deposit is ``deposit`` +amount, a withdrawal ``withdrawal`` -amount and ``fee``
-fee, tx hash = the chain's transaction id, so a withdrawal to an owned wallet is matched like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from transforms.events import directed, trade_side
from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper
from warehouse.numbers import D, ZERO

# exchanges whose ledger is the complete record: every movement is booked from it (the other streams: provenance)
LEDGER_COMPLETE = ("kraken",)
DEDICATED = ("binance",)  # exchanges with their own connector and mappers (ingestion/binance/mapping.py)
STREAMS = ("ledger", "trades", "deposits", "withdrawals")
LEDGER_KINDS = {"fee": "fee", "rebate": "rebate", "cashback": "rebate", "referral": "income", "staking": "staking_reward",
                "earn": "staking_reward", "reward": "staking_reward", "margin": "realized_pnl", "settled": "realized_pnl",
                "dividend": "income", "credit": "income", "interest": "interest"}


@dataclass(frozen=True)
class ExchangeFacts:
    """What ccxt's unified structures leave open about an exchange, stated once (defaults fit most exchanges)."""

    fee_in_amount: bool = False  # the ledger's amount is the balance change after the fee (OKX balChg)
    account_types: dict[str, str] = field(default_factory=dict)  # stream -> account type (default spot)
    # a transfer ledger entry's two account fields and the account type each of their codes names
    transfer_accounts: tuple[str, str, dict[str, str]] | None = None


EXCHANGES: dict[str, ExchangeFacts] = {
    # OKX: the ledger (account bills) is the trading account's; deposits and withdrawals are the funding account's;
    # a transfer bill names both accounts (6 funding, 18 trading) in ``from``/``to``
    "okx": ExchangeFacts(fee_in_amount=True, account_types={"deposits": "funding", "withdrawals": "funding"},
                         transfer_accounts=("from", "to", {"6": "funding", "18": "spot", "1": "spot"})),
}


def facts(exchange_id: str) -> ExchangeFacts:
    return EXCHANGES.get(exchange_id, ExchangeFacts())


def ccxt_exchange_ids() -> tuple[str, ...]:
    """``ccxt.exchanges`` without importing ccxt (2 s): each exchange is one top-level module of the package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folder = Path(list(spec.submodule_search_locations)[0])
    return tuple(sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")))


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


def ledger_covers(exchange_id: str) -> frozenset[str]:
    """The streams whose movements the ledger books (``trades``, ``deposits``, ``withdrawals``), by ``has[...]``."""
    if exchange_id in LEDGER_COMPLETE:
        return frozenset({"trades", "deposits", "withdrawals"})
    has = offline_parser(exchange_id).has
    return frozenset(stream for stream, method in (("trades", "fetchMyTrades"), ("deposits", "fetchDeposits"),
                                                   ("withdrawals", "fetchWithdrawals")) if not has.get(method))


def parse_ledger_entry(exchange_id: str, info: dict) -> dict:
    """ccxt's unified ledger entry of ``info``, numbers as the exchange's own decimal text."""
    return offline_parser(exchange_id).parse_ledger_entry(dict(info))


def _quantity(record: StagedRecord, name: str, value: object):
    if value in (None, "") or value == 0:
        return ZERO
    if not isinstance(value, str):
        raise CcxtRecordError(f"{record.source} {record.stream} record {record.source_raw_id!r}: field {name!r} is "
                              f"{value!r}, expected the exchange's decimal text")
    try:
        return D(value)
    except ValueError as error:
        raise CcxtRecordError(f"{record.source} {record.stream} record {record.source_raw_id!r}: field {name!r}: "
                              f"{error}") from None


def _parsed(record: StagedRecord, what: str, parse: Any) -> dict:
    if not isinstance(record.payload, dict):
        raise CcxtRecordError(f"{record.source} {record.stream} record {record.source_raw_id!r}: payload is not an object")
    try:
        return parse(dict(record.payload))
    except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError) as error:
        raise CcxtRecordError(f"{record.source} {record.stream} record {record.source_raw_id!r} cannot be read by "
                              f"ccxt's {record.source} {what} ({type(error).__name__}: {error}); fields: "
                              f"{', '.join(f'{k}={v!r}' for k, v in sorted(record.payload.items()))[:400]}") from None


def _fee_leg(record: StagedRecord, index: int, fee: dict | None, default_currency: str, account_type: str,
             group: str | None) -> list[LegDraft]:
    fee = fee or {}
    cost = _quantity(record, "fee", fee.get("cost"))
    if cost == ZERO:
        return []
    asset, fee_type = resolve_wrapped(record.source, fee.get("currency") or default_currency, account_type)
    kind = "fee" if cost > 0 else "rebate"
    return [LegDraft(index, record.account, fee_type, "", asset, -cost, directed(kind, -cost), None, None, None, group)]


def map_ledger_entry(record: StagedRecord) -> list[LegDraft]:
    entry = _parsed(record, "ledger parser", lambda info: parse_ledger_entry(record.source, info))
    currency = entry.get("currency")
    if not currency:
        raise CcxtRecordError(f"{record.source} ledger record {record.source_raw_id!r}: field 'asset' names no currency")
    amount = abs(_quantity(record, "amount", entry.get("amount")))
    direction = entry.get("direction")
    if direction not in ("in", "out"):
        direction = "out" if _quantity(record, "amount", entry.get("amount")) < 0 else "in"
    signed = -amount if direction == "out" else amount
    kind_text = str(entry.get("type") or "").lower()
    covered = ledger_covers(record.source)
    if kind_text == "trade" and "trades" not in covered or kind_text == "transaction" and not (
            {"deposits", "withdrawals"} & covered):
        return []  # booked from its own stream (``trades`` / ``deposits`` / ``withdrawals``)
    about = facts(record.source)
    reference = entry.get("referenceId") or None
    tx_hash = None
    if kind_text == "trade":
        kind = trade_side(signed)
    elif kind_text == "transaction":
        kind = "deposit" if signed > 0 else "withdrawal"
    elif kind_text == "transfer":
        kind = "transfer_in" if signed > 0 else "transfer_out"
        tx_hash = f"{record.source}:{reference or entry.get('id')}"
    elif kind_text == "interest" and signed < 0:
        kind = "interest_expense"
    else:
        kind = directed(LEDGER_KINDS.get(kind_text, "unclassified"), signed)
    group = f"{record.account}:{reference}" if reference else None
    asset, account_type = resolve_wrapped(record.source, currency, about.account_types.get("ledger", "spot"))
    if kind_text == "transfer" and str(record.payload.get("subtype", "")).lower() in STAKING_MOVES:
        tx_hash = None  # spot <-> staking: each side has its own reference id; matched by asset, amount and time
    fee_legs = _fee_leg(record, 1, entry.get("fee"), currency, account_type, group)
    if about.fee_in_amount and fee_legs and fee_legs[0].asset == asset:
        signed -= fee_legs[0].quantity  # the exchange's amount is after the fee: leg 0 is before it
        if kind_text in ("trade", "transaction", "transfer"):
            kind = {"trade": trade_side(signed), "transaction": "deposit" if signed > 0 else "withdrawal",
                    "transfer": "transfer_in" if signed > 0 else "transfer_out"}[kind_text]
        else:
            kind = directed(kind, signed)
    legs = []
    if signed != ZERO:
        legs.append(LegDraft(0, record.account, account_type, "", asset, signed, kind, None, None, tx_hash, group))
    legs += fee_legs
    other = _transfer_counterpart(record, about, account_type)
    if kind_text == "transfer" and signed != ZERO and other is not None:
        legs.append(LegDraft(2, record.account, other, "", asset, -signed,
                             "transfer_out" if signed > 0 else "transfer_in", None, None, tx_hash, None))
    return legs


def _transfer_counterpart(record: StagedRecord, about: ExchangeFacts, account_type: str) -> str | None:
    """The other account type of a transfer between two accounts of this exchange account, when the record names it."""
    if about.transfer_accounts is None or not isinstance(record.payload, dict):
        return None
    source_field, target_field, names = about.transfer_accounts
    ends = {names.get(str(record.payload.get(source_field) or "")), names.get(str(record.payload.get(target_field) or ""))}
    ends.discard(None)
    others = ends - {account_type}
    return next(iter(others)) if len(ends) == 2 and len(others) == 1 else None


def _symbol_of(record: StagedRecord, parsed: dict) -> str | None:
    parts = record.source_raw_id.split("|")
    if len(parts) >= 3 and "/" in parts[1]:
        return parts[1]  # written by the sync, which knows the exchange's markets
    symbol = parsed.get("symbol")
    return symbol if isinstance(symbol, str) and "/" in symbol else None


def map_trade(record: StagedRecord) -> list[LegDraft]:
    if "trades" in ledger_covers(record.source):
        return []  # booked from the ledger
    trade = _parsed(record, "trade parser", lambda info: offline_parser(record.source).parse_trade(info))
    symbol = _symbol_of(record, trade)
    if symbol is None:
        raise CcxtRecordError(f"{record.source} trades record {record.source_raw_id!r}: no market (field 'symbol'): "
                              "ccxt cannot tell base and quote without the exchange's markets")
    account_type = facts(record.source).account_types.get("trades", "spot")
    group = f"{record.account}:trade:{trade.get('id') or record.source_raw_id}"
    amount = _quantity(record, "amount", trade.get("amount"))
    cost = _quantity(record, "cost", trade.get("cost"))
    side = str(trade.get("side") or "").lower()
    base, quote = symbol.split(":")[0].split("/")
    if ":" in symbol or side not in ("buy", "sell"):  # a contract, or a side ccxt could not read: not understood
        return [LegDraft(0, record.account, account_type, "", quote, -cost if side == "buy" else cost, "unclassified",
                         None, None, None, group)]
    sign = 1 if side == "buy" else -1
    legs = [LegDraft(0, record.account, account_type, "", base, sign * amount, trade_side(sign * amount), None, None,
                     None, group),
            LegDraft(1, record.account, account_type, "", quote, -sign * cost, trade_side(-sign * cost), None, None,
                     None, group)]
    return [leg for leg in legs if leg.quantity != ZERO] + _fee_leg(record, 2, trade.get("fee"), quote, account_type, group)


def map_transaction(record: StagedRecord) -> list[LegDraft]:
    stream = record.stream
    if stream in ledger_covers(record.source):
        return []  # booked from the ledger
    tx = _parsed(record, "transaction parser", lambda info: offline_parser(record.source).parse_transaction(info))
    if str(tx.get("status") or "").lower() != "ok":
        return []  # pending, failed or canceled: nothing moved (a completed version is staged when it completes)
    currency = tx.get("currency")
    if not currency:
        raise CcxtRecordError(f"{record.source} {stream} record {record.source_raw_id!r}: field 'currency' is missing")
    asset, account_type = resolve_wrapped(record.source, currency, facts(record.source).account_types.get(stream, "spot"))
    amount = abs(_quantity(record, "amount", tx.get("amount")))
    tx_hash = tx.get("txid") or None
    if stream == "deposits":
        legs = [LegDraft(0, record.account, account_type, "", asset, amount, "deposit", None, None, tx_hash, None)]
    else:
        legs = [LegDraft(0, record.account, account_type, "", asset, -amount, "withdrawal", None, None, tx_hash, None)]
    return [leg for leg in legs if leg.quantity != ZERO] + _fee_leg(record, 1, tx.get("fee"), currency, account_type, None)


STREAM_MAPPERS = {"ledger": map_ledger_entry, "trades": map_trade, "deposits": map_transaction,
                  "withdrawals": map_transaction}

for _exchange in ccxt_exchange_ids():
    if _exchange not in DEDICATED:
        for _stream, _mapper in STREAM_MAPPERS.items():
            register_mapper(_exchange, _stream, _mapper)
