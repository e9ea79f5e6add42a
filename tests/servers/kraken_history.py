"""A generated Kraken account history: deposits, trades on several pairs (fee in the quote currency),
withdrawals with fees and staking rewards, each one written to Kraken's ledger with the running ``balance``
after it, exactly as Kraken keeps it (amounts as decimal strings, ``time`` as fractional Unix seconds).

The ledger is the complete record: trades, deposits and withdrawals are also served by their own endpoints
(TradesHistory, DepositStatus, WithdrawStatus) and refer to the ledger entries by ``refid``.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

PAIRS = {  # Kraken pair id: (altname, wsname, base id, quote id, price, price decimals, lot decimals)
    "XXBTZUSD": ("XBTUSD", "XBT/USD", "XXBT", "ZUSD", Decimal("42000.0"), 1, 8),
    "XETHZUSD": ("ETHUSD", "ETH/USD", "XETH", "ZUSD", Decimal("2400.00"), 2, 8),
    "XETHXXBT": ("ETHXBT", "ETH/XBT", "XETH", "XXBT", Decimal("0.05700"), 5, 8),
    "DOTUSD": ("DOTUSD", "DOT/USD", "DOT", "ZUSD", Decimal("7.0000"), 4, 8),
}
ASSETS = {  # Kraken asset id: (altname, decimals, display decimals)
    "XXBT": ("XBT", 10, 5), "XETH": ("ETH", 10, 5), "ZUSD": ("ZUSD", 4, 2), "DOT": ("DOT", 10, 8),
}
Q10 = Decimal("0.0000000001")


def s10(value: Decimal) -> str:
    return f"{value.quantize(Q10):f}"


@dataclass
class KrakenHistory:
    start: date
    end: date
    ledger: dict[str, dict] = field(default_factory=dict)  # ledger id -> entry (oldest first)
    trades: dict[str, dict] = field(default_factory=dict)  # trade txid -> trade
    deposits: list[dict] = field(default_factory=list)
    withdrawals: list[dict] = field(default_factory=list)
    balances: dict[str, Decimal] = field(default_factory=dict)  # final, per Kraken asset id

    @property
    def record_count(self) -> int:
        return len(self.ledger) + len(self.trades) + len(self.deposits) + len(self.withdrawals)


def generate_history(start: date = date(2026, 1, 1), end: date = date(2026, 3, 31), *, seed: int = 11,
                     trades_per_day: tuple[int, int] = (3, 8)) -> KrakenHistory:
    """A deterministic account history over [start, end] (UTC days)."""
    rng = random.Random(seed)
    history = KrakenHistory(start, end)
    wallet: dict[str, Decimal] = defaultdict(Decimal)
    prices = {p: v[4] for p, v in PAIRS.items()}
    trade_number = [68_230_000]

    def kid(prefix: str) -> str:
        alphabet = string.ascii_uppercase + string.digits
        parts = ["".join(rng.choice(alphabet) for _ in range(n)) for n in (5, 5, 6)]
        return prefix + parts[0][1:] + "-" + parts[1] + "-" + parts[2]

    def book(when: float, refid: str, kind: str, asset: str, amount: Decimal, fee: Decimal = Decimal(0),
             subtype: str = "") -> None:
        wallet[asset] += amount - fee
        assert wallet[asset] >= 0, (asset, wallet[asset])
        history.ledger[kid("L")] = {"refid": refid, "time": when, "type": kind, "subtype": subtype,
                                    "aclass": "currency", "asset": asset, "amount": s10(amount), "fee": s10(fee),
                                    "balance": s10(wallet[asset])}

    day = start
    while day <= end:
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
        slots = iter(sorted(rng.sample(range(30, 86_300), trades_per_day[1] + 8)))

        def at() -> float:
            return round(midnight + next(slots) + rng.randint(0, 9999) / 10_000, 4)

        def deposit(asset: str, amount: Decimal) -> None:
            when, refid = at(), kid("Q")
            history.deposits.append({"method": "Bitcoin" if asset == "XXBT" else "Bank", "aclass": "currency",
                                     "asset": asset, "refid": refid, "txid": f"{rng.getrandbits(256):064x}",
                                     "info": f"bc1q{rng.getrandbits(120):030x}", "amount": s10(amount),
                                     "fee": "0.0000000000", "time": int(when), "status": "Success"})
            book(when, refid, "deposit", asset, amount)

        if day == start:
            deposit("ZUSD", Decimal("500000"))
            deposit("XXBT", Decimal("4.5"))
            deposit("XETH", Decimal("60"))
            deposit("DOT", Decimal("2000"))
        for _ in range(rng.randint(*trades_per_day)):
            pair = rng.choice(sorted(PAIRS))
            _, _, base, quote, _, price_decimals, _ = PAIRS[pair]
            price = (prices[pair] * (1 + Decimal(rng.randint(-150, 150)) / 10_000)).quantize(Decimal(1).scaleb(-price_decimals))
            prices[pair] = price
            vol = (Decimal(rng.randint(1, 500)) / Decimal(1000) * (Decimal(100) if base == "DOT" else Decimal(1)))
            cost = (price * vol).quantize(Decimal("0.00001"))
            fee = (cost * Decimal("0.0026")).quantize(Decimal("0.00001"))
            side = rng.choice(("buy", "sell"))
            if side == "buy" and wallet[quote] < (cost + fee) * 2 or side == "sell" and wallet[base] < vol * 2:
                side = "sell" if side == "buy" else "buy"
                if side == "buy" and wallet[quote] < (cost + fee) * 2 or side == "sell" and wallet[base] < vol * 2:
                    continue
            when, txid = at(), kid("T")
            trade_number[0] += rng.randint(1, 50)
            history.trades[txid] = {"ordertxid": kid("O"), "postxid": kid("T"), "pair": pair, "time": when,
                                    "type": side, "ordertype": rng.choice(("limit", "market")), "price": f"{price:f}",
                                    "cost": f"{cost:f}", "fee": f"{fee:f}", "vol": s10(vol), "margin": "0.00000",
                                    "leverage": "0", "misc": "", "trade_id": trade_number[0],
                                    "maker": rng.random() < 0.5}
            sign = 1 if side == "buy" else -1
            book(when, txid, "trade", base, sign * vol)
            book(when, txid, "trade", quote, -sign * cost, fee)
        if rng.random() < 0.15:  # a withdrawal with its fee
            asset = rng.choice(("XXBT", "XETH", "ZUSD"))
            amount = (wallet[asset] * Decimal(rng.randint(1, 10)) / 100).quantize(Decimal("0.0001"))
            fee = {"XXBT": Decimal("0.00015"), "XETH": Decimal("0.0035"), "ZUSD": Decimal("5")}[asset]
            if amount > fee:
                when, refid = at(), kid("A")
                history.withdrawals.append({"method": asset, "aclass": "currency", "asset": asset, "refid": refid,
                                            "txid": f"{rng.getrandbits(256):064x}", "info": f"0x{rng.getrandbits(160):040x}",
                                            "amount": s10(amount), "fee": s10(fee), "time": int(when),
                                            "status": "Success"})
                book(when, refid, "withdrawal", asset, -amount, fee)
        if wallet["DOT"] > 0:  # a daily staking reward, credited to the ledger like any other entry
            reward = (wallet["DOT"] * Decimal("0.0001")).quantize(Q10)
            book(at(), kid("S"), "staking", "DOT", reward)
        day += timedelta(days=1)
    history.balances = {a: v for a, v in wallet.items()}
    return history
