"""Breaks that explain themselves: ranked candidate causes, each with its evidence.

``load_break_contexts`` (database) gathers, for each break, what can explain it: the legs of its
window, the trades among them without a fee, the account's recent fees and recurring legs, legs of
the same asset in the entity's other accounts (unmatched transfers), legs just outside the window,
the next and previous day's difference, recorded source outages and whether the asset is known.
``compute_causes`` (pure) turns one context into a ranked list of causes with stable codes:

- ``unmatched_transfer``: an unmatched transfer leg in another owned account, same asset, same
  quantity (within a fee), inside a time window around the break's window;
- ``missing_leg``: a leg that recurs in this account (staking rewards, interest, ...) is absent on
  the day and the difference is its size; or the difference equals a leg of the same asset booked
  to another account that day; or it equals minus one leg of the window (the source does not have it);
- ``duplicate_leg``: two identical legs in the window and the difference is minus one of them;
- ``fee``: the difference is negative and matches a fee: a trade of the window has no fee leg and
  the difference is a plausible fee rate of it, or it is in the range of this account's fees;
- ``missing_stream``: the account's source (or one of its streams) was recorded as down that day,
  or the account type moves by the exchange's own events (loans and their interest, derivatives settlements,
  income: event types of transforms/events.py) and none is booked;
- ``quarantined_record``: a staged record of the account's source and account was quarantined on that day (its
  mapper could not read it: it books no leg, transforms/quarantine.py), naming the record, the field and the error;
- ``missing_trade``: the same account breaks on the same day in another asset, in the opposite direction, and at the
  day's prices the two differences are worth the same (within ``TRADE_VALUE_GAP``): the source made a trade (a fill)
  that the imported trade history lacks, or a trade is booked that the source never made;
- ``unknown_asset``: the asset is not in the registry (decimals assumed);
- ``timing``: the difference reverses the next (or reversed the previous) day, or a leg just outside
  the window has exactly that quantity (a cutoff difference).

A cause is ``{"code", "score", "evidence", "data"}``: ``evidence`` one readable sentence, ``data``
the figures and leg ids behind it (decimals as text). Ranked by score, best first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import median

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from transforms.events import KINDS, EventType
from transforms.transfer_matching import OUT_KINDS, TRANSFER_KINDS
from warehouse.numbers import ZERO, exact_context, to_text

CAUSE_CODES = ("unmatched_transfer", "missing_leg", "duplicate_leg", "fee", "missing_stream", "quarantined_record",
               "missing_trade", "unknown_asset", "timing")
# Account types whose balances move by events the exchange books itself (loan draws, repayments and accrued interest,
# derivatives settlements, income), by the vocabulary's event types (transforms/events.py): a leg counts when its
# kind's event is one of them (Binance margin interest accrues as a ``liability`` leg of the loan account).
_LOAN = (EventType.LOAN_DRAW, EventType.LOAN_REPAYMENT, EventType.INTEREST_EXPENSE)
STREAM_ACCOUNT_TYPES: dict[str, tuple[EventType, ...]] = {
    "margin": _LOAN, "margin_loan": _LOAN, "loan": _LOAN, "isolated_margin": _LOAN,
    "futures": (EventType.DERIVATIVES_SETTLEMENT,), "coin_futures": (EventType.DERIVATIVES_SETTLEMENT,),
    "funding": (EventType.INCOME,), "vault": (EventType.INCOME,), "earn": (EventType.INCOME,),
    "earn_locked": (EventType.INCOME,),
}


def stream_kinds(account_type: str) -> tuple[str, ...]:
    """The vocabulary's kinds whose legs move an account of ``account_type`` by the exchange's own streams."""
    wanted = STREAM_ACCOUNT_TYPES.get(account_type, ())
    return tuple(k.value for k, s in KINDS.items() if s.event in wanted)


TRANSFER_WINDOW = timedelta(days=3)
TIMING_WINDOW = timedelta(hours=6)
MAX_FEE_RATE = Decimal("0.01")  # a fee above 1% of a trade's value is not a plausible trading fee
RECURRING_DAYS = 7
TRADE_VALUE_GAP = Decimal("0.03")  # a missing trade's rate may lie this far outside the week's rates (fee, price move)
TRADE_RATE_DAYS = 7


@dataclass(frozen=True)
class LegInfo:
    id: int
    ts: datetime
    account_id: int
    account: str
    quantity: Decimal
    kind: str
    group_id: str
    tx_hash: str | None
    transfer_status: str | None = None  # matched | unmatched_out | unmatched_in | None


@dataclass(frozen=True)
class TradeInfo:
    group_id: str
    leg_ids: list[int]
    usd_value: Decimal | None
    has_fee: bool


@dataclass(frozen=True)
class SiblingBreak:
    """Another unresolved break of the same account and day (the other side of a missing trade?)."""
    asset: str
    difference: Decimal
    price_usd: Decimal | None = None  # its latest stored USD price at the window's end
    # (min, max) of this account's trades between the two assets within TRADE_RATE_DAYS, in the sibling's units per
    # unit of the break's asset
    pair_rates: tuple[Decimal, Decimal] | None = None


@dataclass
class BreakContext:
    date: date
    account_id: int
    account: str
    account_type: str
    source: str
    asset: str
    asset_unverified: bool
    difference: Decimal
    tolerance: Decimal
    window_from: datetime | None
    window_to: datetime
    window_legs: list[LegInfo] = field(default_factory=list)
    trades: list[TradeInfo] = field(default_factory=list)
    recent_fees: list[Decimal] = field(default_factory=list)  # positive amounts, this account and asset, 30 days
    recent_fee_rates: list[Decimal] = field(default_factory=list)
    recent_legs: list[tuple[date, str, Decimal]] = field(default_factory=list)  # (day, kind, qty), previous days
    other_legs: list[LegInfo] = field(default_factory=list)  # same asset, other accounts, around the window
    outside_legs: list[LegInfo] = field(default_factory=list)  # this account and asset, just outside the window
    next_difference: Decimal | None = None
    previous_difference: Decimal | None = None
    outages: list[tuple[str, str, str]] = field(default_factory=list)  # (source, stream, reason)
    # records of this account quarantined that day: (stream, source_raw_id, field, error)
    quarantined: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    price_usd: Decimal | None = None  # the asset's latest stored USD price at the window's end
    sibling_breaks: list[SiblingBreak] = field(default_factory=list)  # the account's other breaks of the day


def _t(value: Decimal | None) -> str | None:
    return to_text(value)


def _close(a: Decimal, b: Decimal, tolerance: Decimal) -> bool:
    return abs(a - b) <= tolerance


def _cause(code: str, score: float, evidence: str, **data: object) -> dict:
    return {"code": code, "score": round(score, 2), "evidence": evidence, "data": data}


def _unmatched_transfer(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    fee_room = max(ctx.recent_fees, default=ZERO)
    for leg in ctx.other_legs:
        if leg.kind not in TRANSFER_KINDS or leg.transfer_status == "matched":
            continue
        # this account got more than booked (diff > 0): a transfer_out elsewhere lacks its transfer_in here
        if (ctx.difference > 0) != (leg.quantity < 0):
            continue
        gap = abs(leg.quantity) - abs(ctx.difference)
        exact = abs(gap) <= tol
        if not exact and not (ZERO <= gap <= max(fee_room, abs(leg.quantity) * Decimal("0.005"))):
            continue
        missing = "incoming leg" if leg.kind in OUT_KINDS else "outgoing leg"
        found.append(_cause(
            "unmatched_transfer", 0.9 if exact else 0.7,
            f"{leg.kind} of {_t(abs(leg.quantity))} {ctx.asset} in {leg.account} at {leg.ts.isoformat()}"
            f"{' (tx ' + leg.tx_hash + ')' if leg.tx_hash else ''} has no matching {missing} in {ctx.account}; "
            f"the difference is {_t(ctx.difference)}" + ("" if exact else f" (the transfer less a fee of {_t(gap)})"),
            leg_id=leg.id, account=leg.account, quantity=_t(leg.quantity), tx_hash=leg.tx_hash,
            ts=leg.ts.isoformat(), gap=_t(gap)))
    return found


def _duplicate_leg(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    seen: dict[tuple, list[LegInfo]] = {}
    for leg in ctx.window_legs:
        key = (leg.kind, leg.quantity, leg.tx_hash or "", leg.ts.replace(second=0, microsecond=0))
        seen.setdefault(key, []).append(leg)
    for (kind, qty, _, _), legs in seen.items():
        if len(legs) < 2:
            continue
        exact = _close(ctx.difference, -qty * (len(legs) - 1), tol)
        found.append(_cause(
            "duplicate_leg", 0.95 if exact else 0.3,
            f"{len(legs)} identical {kind} legs of {_t(qty)} {ctx.asset} at {legs[0].ts.isoformat()} "
            f"(legs {', '.join(str(x.id) for x in legs)}); "
            + (f"the difference {_t(ctx.difference)} is exactly the extra one(s)" if exact
               else f"the difference {_t(ctx.difference)} is not their size"),
            leg_ids=[x.id for x in legs], quantity=_t(qty), kind=kind))
    return found


def _missing_leg(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    window_kinds = {leg.kind for leg in ctx.window_legs}
    by_kind: dict[str, dict[date, Decimal]] = {}
    for day, kind, qty in ctx.recent_legs:
        by_kind.setdefault(kind, {})
        by_kind[kind][day] = by_kind[kind].get(day, ZERO) + qty
    for kind, per_day in by_kind.items():
        if kind in window_kinds or len(per_day) < 3:
            continue
        typical = median(per_day.values())
        if typical == 0 or (typical > 0) != (ctx.difference > 0):
            continue
        ratio = ctx.difference / typical
        if not (Decimal("0.25") <= ratio <= Decimal(4)):
            continue
        found.append(_cause(
            "missing_leg", 0.8,
            f"{ctx.account} booked a {kind} leg in {ctx.asset} on {len(per_day)} of the previous {RECURRING_DAYS} days "
            f"(typically {_t(typical)}) but none on {ctx.date}; the difference is {_t(ctx.difference)}",
            kind=kind, days_seen=len(per_day), typical=_t(typical), difference=_t(ctx.difference)))
    for leg in ctx.other_legs:
        if leg.kind in TRANSFER_KINDS or not _close(leg.quantity, ctx.difference, tol):
            continue
        if ctx.window_from is not None and not (ctx.window_from < leg.ts <= ctx.window_to):
            continue
        found.append(_cause(
            "missing_leg", 0.55,
            f"a {leg.kind} leg of {_t(leg.quantity)} {ctx.asset} is booked in {leg.account} at {leg.ts.isoformat()}: "
            f"exactly the difference of {ctx.account} (booked to the wrong account?)",
            leg_id=leg.id, account=leg.account, quantity=_t(leg.quantity)))
    singles = [leg for leg in ctx.window_legs if _close(-leg.quantity, ctx.difference, tol)]
    if len(singles) == 1:
        leg = singles[0]
        found.append(_cause(
            "missing_leg", 0.45,
            f"the difference {_t(ctx.difference)} is minus the {leg.kind} leg {leg.id} of {_t(leg.quantity)} at "
            f"{leg.ts.isoformat()}: the source's balance does not include it (its counterpart is missing, or it "
            f"belongs to another account)", leg_id=leg.id, quantity=_t(leg.quantity), kind=leg.kind))
    return found


def _fee(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    if ctx.difference < 0:
        amount = -ctx.difference
        lo, hi = min(ctx.recent_fee_rates, default=None), max(ctx.recent_fee_rates, default=None)
        for trade in ctx.trades:
            if trade.has_fee or not trade.usd_value:
                continue
            with exact_context():
                rate = (amount / abs(trade.usd_value)) if ctx.asset == "USD" else None
            if rate is not None and rate > MAX_FEE_RATE:
                continue
            in_range = rate is not None and lo is not None and hi is not None and lo / 2 <= rate <= hi * 2
            found.append(_cause(
                "fee", 0.85 if in_range else 0.7,
                f"the trade {trade.group_id} (legs {', '.join(map(str, trade.leg_ids))}, USD {_t(trade.usd_value)}) has "
                f"no fee leg; the difference {_t(ctx.difference)} {ctx.asset}"
                + (f" is a fee of {_t(rate * 100)[:8]}% of it" if rate is not None else " looks like its fee")
                + (f", like this account's fees ({_t(lo * 100)[:8]}%..{_t(hi * 100)[:8]}%)" if in_range else ""),
                group_id=trade.group_id, leg_ids=trade.leg_ids, trade_usd_value=_t(trade.usd_value),
                fee_rate=_t(rate) if rate is not None else None))
        if not found and ctx.recent_fees and min(ctx.recent_fees) / 2 <= amount <= max(ctx.recent_fees) * 2:
            found.append(_cause(
                "fee", 0.5,
                f"the difference {_t(ctx.difference)} {ctx.asset} is in the range of this account's recent fees "
                f"({_t(min(ctx.recent_fees))}..{_t(max(ctx.recent_fees))}, {len(ctx.recent_fees)} fees in 30 days)",
                fee_min=_t(min(ctx.recent_fees)), fee_max=_t(max(ctx.recent_fees)), fees=len(ctx.recent_fees)))
    else:
        for leg in ctx.window_legs:
            if leg.kind == "fee" and _close(-leg.quantity, ctx.difference, tol):
                found.append(_cause(
                    "fee", 0.6, f"the fee leg {leg.id} of {_t(-leg.quantity)} {ctx.asset} is booked but the source's "
                                f"balance does not show it charged", leg_id=leg.id, quantity=_t(leg.quantity)))
    return found


def _missing_stream(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    for source, stream, reason in ctx.outages:
        what = f"source {source}" if stream == "*" else f"the {stream} stream of {source}"
        found.append(_cause("missing_stream", 0.9, f"{what} was recorded as down on {ctx.date}: {reason}",
                            source=source, stream=stream, reason=reason))
    kinds = stream_kinds(ctx.account_type)
    if kinds and not any(leg.kind in kinds for leg in ctx.window_legs):
        found.append(_cause(
            "missing_stream", 0.45,
            f"{ctx.account} is a {ctx.account_type} account, whose balance moves by {'/'.join(kinds)}, and no such "
            f"leg is booked for {ctx.date}: that stream may not be imported", account_type=ctx.account_type,
            kinds=list(kinds)))
    return found


def _quarantined_record(ctx: BreakContext, tol: Decimal) -> list[dict]:
    return [_cause("quarantined_record", 0.88,
                   f"the {ctx.source} {stream} record {raw_id!r} of {ctx.date} is quarantined"
                   f"{f' (field {name!r})' if name else ''}: it books no leg until its mapper reads it: {error}",
                   stream=stream, source_raw_id=raw_id, field=name, error=error)
            for stream, raw_id, name, error in ctx.quarantined]


def _missing_trade(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    for sibling in ctx.sibling_breaks:
        if sibling.difference == 0 or ctx.difference == 0 or (sibling.difference > 0) == (ctx.difference > 0):
            continue
        gave, got = (ctx, sibling) if ctx.difference < 0 else (sibling, ctx)
        with exact_context():
            implied = abs(got.difference) / abs(gave.difference)  # units of `got` per unit of `gave`
            rate = abs(sibling.difference) / abs(ctx.difference)  # the sibling's units per unit of this asset
            if sibling.pair_rates is not None:  # the account's own trades of the pair that week
                lo, hi = sibling.pair_rates
                if not lo * (1 - TRADE_VALUE_GAP) <= rate <= hi * (1 + TRADE_VALUE_GAP):
                    continue
                score = 0.9 if lo <= rate <= hi else 0.75
                measure = (f"this account's {ctx.asset}/{sibling.asset} trades of the week went at "
                           f"{_t(_round(lo))}..{_t(_round(hi))} {sibling.asset} per {ctx.asset}")
                data = dict(pair_rate_min=_t(lo), pair_rate_max=_t(hi))
            elif ctx.price_usd and sibling.price_usd and ctx.price_usd > 0 and sibling.price_usd > 0:
                value, other = abs(ctx.difference) * ctx.price_usd, abs(sibling.difference) * sibling.price_usd
                gap = abs(value - other) / max(value, other)
                if gap > TRADE_VALUE_GAP:
                    continue
                score = 0.9 if gap <= Decimal("0.005") else 0.75
                measure = f"at the latest prices the two sides are worth USD {_t(_round(value, 2))} and {_t(_round(other, 2))}"
                data = dict(usd_value=_t(value), other_usd_value=_t(other), value_gap=_t(_round(gap)))
            else:
                continue
        found.append(_cause(
            "missing_trade", score,
            f"{ctx.account} also breaks in {sibling.asset} on {ctx.date} by {_t(sibling.difference)}: the source's "
            f"balances moved as a trade giving {_t(abs(gave.difference))} {gave.asset} for {_t(abs(got.difference))} "
            f"{got.asset} would ({_t(_round(implied))} {got.asset} per {gave.asset}; {measure}): a trade missing from "
            f"the imported trade history (or booked but never made)",
            asset=sibling.asset, difference=_t(sibling.difference), side="sale" if ctx.difference < 0 else "purchase",
            gave=gave.asset, got=got.asset, implied_price=_t(implied), **data))
    return found


def _round(value: Decimal, places: int = 8) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places)).normalize() if value.adjusted() < 20 else value


def _unknown_asset(ctx: BreakContext, tol: Decimal) -> list[dict]:
    if not ctx.asset_unverified:
        return []
    return [_cause("unknown_asset", 0.85,
                   f"{ctx.asset} is not in the asset registry (kept and flagged, decimals assumed): its symbol may "
                   f"alias another asset, or its precision differ from the source's", asset=ctx.asset)]


def _timing(ctx: BreakContext, tol: Decimal) -> list[dict]:
    found = []
    if ctx.next_difference is not None and _close(ctx.next_difference, -ctx.difference, tol):
        found.append(_cause("timing", 0.95,
                            f"the difference {_t(ctx.difference)} reverses the next day ({_t(ctx.next_difference)}): "
                            "a cutoff difference", next_difference=_t(ctx.next_difference)))
    if ctx.previous_difference is not None and _close(ctx.previous_difference, -ctx.difference, tol):
        found.append(_cause("timing", 0.9,
                            f"the difference {_t(ctx.difference)} reverses the previous day's "
                            f"({_t(ctx.previous_difference)}): a cutoff difference", previous_difference=_t(ctx.previous_difference)))
    for leg in ctx.outside_legs:
        after = leg.ts > ctx.window_to
        if _close(leg.quantity, ctx.difference if after else -ctx.difference, tol):
            edge = ctx.window_to if after else ctx.window_from
            assert edge is not None
            minutes = int(abs((leg.ts - edge).total_seconds()) // 60)
            found.append(_cause(
                "timing", 0.8,
                f"the {leg.kind} leg {leg.id} of {_t(leg.quantity)} at {leg.ts.isoformat()} is {minutes} min "
                f"{'after' if after else 'before'} the cutoff: the source counted it on the other side",
                leg_id=leg.id, quantity=_t(leg.quantity), minutes_from_cutoff=minutes))
    return found


RULES = (_unmatched_transfer, _missing_leg, _duplicate_leg, _fee, _missing_stream, _quarantined_record, _missing_trade,
         _unknown_asset, _timing)


def compute_causes(ctx: BreakContext) -> list[dict]:
    """Ranked candidate causes of one break (best first); empty when nothing explains it."""
    tol = max(ctx.tolerance, ZERO)
    causes = [c for rule in RULES for c in rule(ctx, tol)]
    best: dict[tuple, dict] = {}
    for cause in causes:  # one entry per code and evidence
        best.setdefault((cause["code"], cause["evidence"]), cause)
    ordered = sorted(best.values(), key=lambda c: (-c["score"], CAUSE_CODES.index(c["code"]), c["evidence"]))
    return [dict(c, rank=i + 1) for i, c in enumerate(ordered)]


# ---------------------------------------------------------------- loading the evidence

_LEG_COLUMNS = """l.id, l.ts, l.account_id, a.name || CASE WHEN a.account_type = 'wallet' THEN '' ELSE ' (' || a.account_type || ')' END
                  || CASE WHEN a.sub_account = '' THEN '' ELSE ' / ' || a.sub_account END AS account,
                  l.quantity, l.kind, l.group_id, l.tx_hash,
                  (SELECT x.status FROM transfers x WHERE x.out_leg_id = l.id OR x.in_leg_id = l.id LIMIT 1) AS transfer_status"""


def _legs(conn: Connection, where: str, params: dict) -> list[LegInfo]:
    rows = conn.execute(sa.text(
        f"SELECT {_LEG_COLUMNS} FROM transactions l JOIN accounts a ON a.id = l.account_id WHERE {where} ORDER BY l.ts, l.id"),
        params).all()
    return [LegInfo(r.id, r.ts, r.account_id, r.account, r.quantity, r.kind, r.group_id, r.tx_hash, r.transfer_status)
            for r in rows]


def load_break_context(conn: Connection, entity_id: int, brk: dict) -> BreakContext:
    """Everything ``compute_causes`` weighs for one stored break (a row of ``breaks`` as a mapping)."""
    info = conn.execute(sa.text(
        """SELECT a.name || CASE WHEN a.account_type = 'wallet' THEN '' ELSE ' (' || a.account_type || ')' END
                  || CASE WHEN a.sub_account = '' THEN '' ELSE ' / ' || a.sub_account END AS account,
                  a.name, a.account_type, a.source, s.symbol, s.unverified
           FROM accounts a, assets s WHERE a.id = :acc AND s.id = :asset"""),
        dict(acc=brk["account_id"], asset=brk["asset_id"])).one()
    wf: datetime | None = brk["previous_reported_at"]
    wt: datetime = brk["reported_at"]
    leg_ids = [int(x) for x in (brk["leg_ids"] or [])]
    ctx = BreakContext(
        date=brk["date"], account_id=brk["account_id"], account=info.account, account_type=info.account_type,
        source=info.source, asset=info.symbol, asset_unverified=info.unverified, difference=brk["difference"],
        tolerance=brk["tolerance"], window_from=wf, window_to=wt)
    p = dict(e=entity_id, acc=brk["account_id"], asset=brk["asset_id"], ids=leg_ids, d=brk["date"], wt=wt,
             wf=wf or (wt - timedelta(days=1)), tw=TRANSFER_WINDOW, tm=TIMING_WINDOW, rd=RECURRING_DAYS)
    ctx.window_legs = _legs(conn, "l.id = ANY(:ids)", p)
    groups = sorted({leg.group_id for leg in ctx.window_legs})
    trade_rows = conn.execute(sa.text(
        """SELECT group_id, array_agg(id ORDER BY leg_index) AS ids, max(usd_value) FILTER (WHERE leg_index = 0) AS usd,
                  bool_or(leg_index = 2) AS has_fee, bool_or(leg_index = 1) AS is_trade
           FROM transactions WHERE entity_id = :e AND group_id = ANY(:g) GROUP BY group_id ORDER BY group_id"""),
        dict(e=entity_id, g=groups)).all()
    ctx.trades = [TradeInfo(r.group_id, list(r.ids), r.usd, r.has_fee) for r in trade_rows if r.is_trade]
    fees = conn.execute(sa.text(
        """SELECT -f.quantity AS amount, abs(f.usd_value) / nullif(abs(m.usd_value), 0) AS rate
           FROM transactions f LEFT JOIN transactions m ON m.group_id = f.group_id AND m.leg_index = 0 AND m.id <> f.id
           WHERE f.account_id = :acc AND f.asset_id = :asset AND f.kind = 'fee'
             AND f.ts > :wt - interval '30 days' AND f.ts <= :wt"""), p).all()
    ctx.recent_fees = [r.amount for r in fees if r.amount > 0]
    ctx.recent_fee_rates = [r.rate for r in fees if r.rate is not None and r.rate > 0]
    ctx.recent_legs = [(r.close_date, r.kind, r.q) for r in conn.execute(sa.text(
        """SELECT close_date, kind, sum(quantity) AS q FROM transactions
           WHERE account_id = :acc AND asset_id = :asset AND close_date >= CAST(:d AS date) - :rd AND close_date < :d
           GROUP BY 1, 2"""), p).all()]
    ctx.other_legs = _legs(conn, "l.entity_id = :e AND l.asset_id = :asset AND l.account_id <> :acc"
                                 " AND l.ts > :wf - :tw AND l.ts <= :wt + :tw", p)
    ctx.outside_legs = _legs(conn, "l.account_id = :acc AND l.asset_id = :asset AND NOT (l.id = ANY(:ids))"
                                   " AND ((l.ts > :wt AND l.ts <= :wt + :tm) OR (l.ts <= :wf AND l.ts > :wf - :tm))", p)
    neighbours = dict(conn.execute(sa.text(
        """SELECT date, difference FROM breaks WHERE entity_id = :e AND account_id = :acc AND asset_id = :asset
           AND date IN (CAST(:d AS date) - 1, CAST(:d AS date) + 1) AND status <> 'resolved'"""), p).all())
    ctx.next_difference = neighbours.get(brk["date"] + timedelta(days=1))
    ctx.previous_difference = neighbours.get(brk["date"] - timedelta(days=1))
    ctx.outages = [tuple(r) for r in conn.execute(sa.text(
        "SELECT source, stream, reason FROM source_outages WHERE entity_id = :e AND date = :d AND source = :src"
        " ORDER BY stream"), dict(p, src=info.source)).all()]
    ctx.quarantined = [tuple(r) for r in conn.execute(sa.text(
        """SELECT stream, source_raw_id, field, error FROM quarantined_records
           WHERE entity_id = :e AND close_date = :d AND source = :src AND account = :name ORDER BY stream, source_raw_id"""),
        dict(p, src=info.source, name=info.name)).all()]
    ctx.price_usd = _latest_price(conn, entity_id, brk["asset_id"], info.symbol, wt)
    siblings = conn.execute(sa.text(
        """SELECT b.asset_id, s.symbol, b.difference FROM breaks b JOIN assets s ON s.id = b.asset_id
           WHERE b.entity_id = :e AND b.account_id = :acc AND b.date = :d AND b.asset_id <> :asset
             AND b.status <> 'resolved' ORDER BY s.symbol"""), p).all()
    ctx.sibling_breaks = [SiblingBreak(r.symbol, r.difference, _latest_price(conn, entity_id, r.asset_id, r.symbol, wt),
                                       _pair_rates(conn, brk["account_id"], brk["asset_id"], r.asset_id, wt))
                          for r in siblings]
    return ctx


def _pair_rates(conn: Connection, account_id: int, asset_id: int, other_id: int, at: datetime) -> tuple[Decimal, Decimal] | None:
    """The lowest and highest rate (units of ``other_id`` per unit of ``asset_id``) of the account's trades between the
    two assets in the TRADE_RATE_DAYS before ``at`` (a trade: legs 0 and 1 of one group)."""
    row = conn.execute(sa.text(
        """SELECT min(abs(o.quantity) / abs(t.quantity)) AS lo, max(abs(o.quantity) / abs(t.quantity)) AS hi
           FROM transactions t JOIN transactions o ON o.group_id = t.group_id AND o.entity_id = t.entity_id
             AND o.account_id = t.account_id AND o.leg_index IN (0, 1) AND o.leg_index <> t.leg_index
           WHERE t.account_id = :acc AND t.asset_id = :a AND o.asset_id = :o AND t.leg_index IN (0, 1)
             AND t.quantity <> 0 AND t.ts > :at - make_interval(days => :days) AND t.ts <= :at"""),
        dict(acc=account_id, a=asset_id, o=other_id, at=at, days=TRADE_RATE_DAYS)).one()
    return (row.lo, row.hi) if row.lo is not None else None


def _latest_price(conn: Connection, entity_id: int, asset_id: int, symbol: str, at: datetime) -> Decimal | None:
    """The asset's latest stored USD price at ``at`` (any source: this is evidence, not a valuation); USD is 1."""
    if symbol == "USD":
        return Decimal(1)
    return conn.execute(sa.text(
        "SELECT price_usd FROM prices WHERE entity_id = :e AND asset_id = :a AND ts <= :t ORDER BY ts DESC LIMIT 1"),
        dict(e=entity_id, a=asset_id, t=at)).scalar()


def explain_breaks(conn: Connection, entity_id: int, start: date, end: date) -> int:
    """Compute and store the ranked causes of every break of [start, end] that is not resolved (a resolved break keeps
    the causes it had); returns how many."""
    rows = conn.execute(sa.text(
        """SELECT id, date, account_id, asset_id, difference, tolerance, previous_reported_at, reported_at, leg_ids
           FROM breaks b WHERE entity_id = :e AND date BETWEEN :s AND :t AND status <> 'resolved'
             AND NOT EXISTS (SELECT 1 FROM closes c WHERE c.entity_id = b.entity_id AND c.date = b.date AND c.locked)
           ORDER BY date, id"""), dict(e=entity_id, s=start, t=end)).mappings().all()
    updates = [dict(id=r["id"], causes=json.dumps(compute_causes(load_break_context(conn, entity_id, dict(r)))))
               for r in rows]
    if updates:
        conn.execute(sa.text("UPDATE breaks SET causes = CAST(:causes AS jsonb) WHERE id = :id"), updates)
    return len(updates)
