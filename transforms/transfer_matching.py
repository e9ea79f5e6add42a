"""The one transfer matcher (pure): which outgoing leg and which incoming leg of the entity's owned accounts are one
internal transfer. The database close (``transforms.canonical._build_transfers``) and the file engine
(``transforms.ledger_books``, ``coinfrs pnl compute --ledger``) both call ``match_transfers``, so they cannot
disagree on the same ledger.

The rule (docs/cost-basis.md, "Transfers between owned accounts"):

1. **By tx hash.** An outgoing leg (``transfer_out``, or an exchange's or custodian's ``withdrawal``) and an incoming
   leg (``transfer_in``, ``deposit``) of the same tx hash and asset, in two different accounts, are one transfer:
   within one (hash, asset), the n-th outgoing leg in time order with the n-th incoming one.
2. **By asset, amount and time**, for the legs left: the same asset, two different accounts, the incoming leg
   within the time window of the outgoing one (either side of it), the amount received at most the amount sent
   and at least the amount sent less the withdrawal fee (the sending event's ``fee`` legs in the same asset and
   account) less the tolerance (a fraction of the amount sent, for a fee the source deducts without reporting it);
   their tx hashes, when both are known, equal. The closest pair in time wins, then the lower out-leg id, then the
   lower in-leg id (greedy in that order: deterministic, whatever the input order).
3. Every other outgoing or incoming leg is **unmatched**: an external transfer flagged for review (the engine books
   it out at basis or in at fair value, no gain).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from warehouse.numbers import ZERO, D

OUT_KINDS: tuple[str, ...] = ("transfer_out", "withdrawal")
IN_KINDS: tuple[str, ...] = ("transfer_in", "deposit")
TRANSFER_KINDS: tuple[str, ...] = OUT_KINDS + IN_KINDS

DEFAULT_WINDOW_SECONDS = 7200
DEFAULT_FEE_TOLERANCE = D("0.01")  # the received amount may be up to 1 % of the amount sent less than sent - fee


@dataclass(frozen=True)
class TransferPolicy:
    """The entity's matching settings (``recon_policies``; ``coinfrs recon policy``)."""

    window_seconds: int = DEFAULT_WINDOW_SECONDS
    fee_tolerance: Decimal = DEFAULT_FEE_TOLERANCE

    def __post_init__(self) -> None:
        if self.window_seconds < 0:
            raise ValueError(f"transfer window {self.window_seconds}s: must be 0 or more")
        if not ZERO <= self.fee_tolerance < 1:
            raise ValueError(f"transfer fee tolerance {self.fee_tolerance}: must be at least 0 and below 1")


@dataclass(frozen=True)
class TransferLeg:
    """What the matcher needs of a leg."""

    id: int
    account_id: int
    asset_id: int
    kind: str
    ts: datetime
    quantity: Decimal  # signed, as booked
    tx_hash: str | None = None
    fee: Decimal = ZERO  # an outgoing leg's withdrawal fee: its event's fee legs in the same asset and account (> 0)


@dataclass(frozen=True)
class TransferMatch:
    out_id: int
    in_id: int
    matched_by: str  # tx_hash | amount_time


@dataclass(frozen=True)
class TransferMatching:
    matches: tuple[TransferMatch, ...]
    unmatched_out: tuple[int, ...]
    unmatched_in: tuple[int, ...]

    def status_of(self) -> dict[int, tuple[str, int | None]]:
        """Leg id -> (status, the other leg's id when matched)."""
        status: dict[int, tuple[str, int | None]] = {}
        for m in self.matches:
            status[m.out_id] = ("matched", m.in_id)
            status[m.in_id] = ("matched", m.out_id)
        status.update({i: ("unmatched_out", None) for i in self.unmatched_out})
        status.update({i: ("unmatched_in", None) for i in self.unmatched_in})
        return status


def fee_of(legs: Iterable[tuple[str, int, int, str, Decimal]]) -> dict[tuple[str, int, int], Decimal]:
    """Fees by (group, account, asset) from (group, account, asset, kind, quantity) tuples: the ``fee`` legs' amounts."""
    fees: dict[tuple[str, int, int], Decimal] = defaultdict(lambda: ZERO)
    for group, account_id, asset_id, kind, quantity in legs:
        if kind == "fee":
            fees[(group, account_id, asset_id)] += abs(quantity)
    return dict(fees)


def amount_fits(sent: Decimal, fee: Decimal, received: Decimal, tolerance: Decimal) -> bool:
    """Whether ``received`` can be what arrived of ``sent`` (absolute amounts): sent - fee - tolerance x sent <=
    received <= sent."""
    return sent - fee - sent * tolerance <= received <= sent


def match_transfers(legs: Iterable[TransferLeg], policy: TransferPolicy = TransferPolicy()) -> TransferMatching:
    """Match outgoing to incoming legs (the module's rule). Legs of other kinds are ignored."""
    outs = sorted((l for l in legs if l.kind in OUT_KINDS or l.kind in IN_KINDS), key=lambda l: (l.ts, l.id))
    ins = [l for l in outs if l.kind in IN_KINDS]
    outs = [l for l in outs if l.kind in OUT_KINDS]
    matches: list[TransferMatch] = []
    taken: set[int] = set()

    # 1. by tx hash: the n-th outgoing leg of a (hash, asset) with its n-th incoming one
    by_hash_in: dict[tuple[str, int], list[TransferLeg]] = defaultdict(list)
    for leg in ins:
        if leg.tx_hash:
            by_hash_in[(leg.tx_hash, leg.asset_id)].append(leg)
    by_hash_out: dict[tuple[str, int], list[TransferLeg]] = defaultdict(list)
    for leg in outs:
        if leg.tx_hash:
            by_hash_out[(leg.tx_hash, leg.asset_id)].append(leg)
    for key, sent in by_hash_out.items():
        for out, incoming in zip(sent, by_hash_in.get(key, ())):
            if incoming.account_id != out.account_id:
                matches.append(TransferMatch(out.id, incoming.id, "tx_hash"))
                taken.update((out.id, incoming.id))

    # 2. by asset, amount and time: every candidate pair, then greedy by (gap, out id, in id)
    window = timedelta(seconds=policy.window_seconds)
    open_ins: dict[int, list[TransferLeg]] = defaultdict(list)
    for leg in ins:
        if leg.id not in taken:
            open_ins[leg.asset_id].append(leg)  # in time order
    times = {asset: [l.ts for l in group] for asset, group in open_ins.items()}
    amounts = {asset: [l.quantity for l in group] for asset, group in open_ins.items()}
    tolerance = policy.fee_tolerance
    pairs: list[tuple[timedelta, int, int]] = []
    for out in outs:
        if out.id in taken or out.asset_id not in open_ins:
            continue
        group, stamps, received = open_ins[out.asset_id], times[out.asset_id], amounts[out.asset_id]
        sent = -out.quantity
        least = sent - out.fee - sent * tolerance  # amount_fits, inlined: this loop sees every in-leg of the window
        for j in range(bisect.bisect_left(stamps, out.ts - window), bisect.bisect_right(stamps, out.ts + window)):
            if least <= received[j] <= sent:
                incoming = group[j]
                if (incoming.account_id != out.account_id
                        and (not out.tx_hash or not incoming.tx_hash or out.tx_hash == incoming.tx_hash)):
                    pairs.append((abs(incoming.ts - out.ts), out.id, incoming.id))
    pairs.sort()
    for _, out_id, in_id in pairs:
        if out_id not in taken and in_id not in taken:
            matches.append(TransferMatch(out_id, in_id, "amount_time"))
            taken.update((out_id, in_id))

    return TransferMatching(tuple(sorted(matches, key=lambda m: m.out_id)),
                            tuple(sorted(l.id for l in outs if l.id not in taken)),
                            tuple(sorted(l.id for l in ins if l.id not in taken)))

