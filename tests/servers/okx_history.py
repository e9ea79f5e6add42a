"""A generated OKX account history, shaped exactly as OKX's v5 REST API documents its records (every number a
decimal string, times as Unix milliseconds in strings).

Two accounts, as OKX keeps them: deposits arrive in the **funding** account (asset deposit history) and
withdrawals leave it (asset withdrawal history, with their fee); trades happen in the **trading** account (fills
history, one fill per order; the fee is charged in what is received: the base on a buy, the quote on a sell, as a
negative ``fee``). The trading account's bills (account bills archive) carry every change of its balance with the
balance after it (``bal``): a trade makes one bill per currency (type 2, ``balChg`` after the fee), a transfer
between the two accounts one bill of type 1 naming both (``from``/``to``: 6 funding, 18 trading). A cancelled
withdrawal (state -2) and a deposit still pending (state 0) move nothing.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

INSTRUMENTS = {  # instId: (base, quote, start price, tick size, lot size)
    "BTC-USDT": ("BTC", "USDT", Decimal("42000.0"), Decimal("0.1"), Decimal("0.00000001")),
    "ETH-USDT": ("ETH", "USDT", Decimal("2400.00"), Decimal("0.01"), Decimal("0.000001")),
    "ETH-BTC": ("ETH", "BTC", Decimal("0.05700"), Decimal("0.00001"), Decimal("0.000001")),
}
CHAINS = {"BTC": "BTC-Bitcoin", "ETH": "ETH-ERC20", "USDT": "USDT-TRC20"}
WITHDRAWAL_FEES = {"BTC": Decimal("0.0002"), "ETH": Decimal("0.0016"), "USDT": Decimal("1")}
FUNDING, TRADING = "6", "18"


def text(value: Decimal) -> str:
    out = f"{value.normalize():f}"
    return "0" if out in ("-0", "0.0") else out


@dataclass
class OkxHistory:
    start: date
    end: date
    bills: list[dict] = field(default_factory=list)  # the trading account's bills, oldest first
    fills: list[dict] = field(default_factory=list)
    deposits: list[dict] = field(default_factory=list)
    withdrawals: list[dict] = field(default_factory=list)
    trading: dict[str, Decimal] = field(default_factory=dict)  # final balances
    funding: dict[str, Decimal] = field(default_factory=dict)

    @property
    def record_count(self) -> int:
        return len(self.bills) + len(self.fills) + len(self.deposits) + len(self.withdrawals)


def generate_history(start: date = date(2026, 1, 1), end: date = date(2026, 3, 31), *, seed: int = 5,
                     trades_per_day: tuple[int, int] = (3, 8)) -> OkxHistory:
    rng = random.Random(seed)
    history = OkxHistory(start, end)
    trading: dict[str, Decimal] = defaultdict(Decimal)
    funding: dict[str, Decimal] = defaultdict(Decimal)
    prices = {i: v[2] for i, v in INSTRUMENTS.items()}
    ids = [590_000_000_000_000_000]

    def next_id() -> str:
        ids[0] += rng.randint(1, 9_999)
        return str(ids[0])

    def bill(ts: int, kind: str, sub: str, ccy: str, change: Decimal, *, fee: Decimal = Decimal(0), inst: str = "",
             ord_id: str = "", trade_id: str = "", size: Decimal | None = None, px: str = "", source: str = "",
             target: str = "", exec_type: str = "") -> None:
        trading[ccy] += change
        assert trading[ccy] >= 0, (ccy, trading[ccy])
        history.bills.append({
            "bal": text(trading[ccy]), "balChg": text(change), "billId": next_id(), "ccy": ccy, "clOrdId": "",
            "execType": exec_type, "fee": text(fee), "fillFwdPx": "", "fillIdxPx": "", "fillMarkPx": "",
            "fillMarkVol": "", "fillPxUsd": "", "fillPxVol": "", "fillTime": str(ts) if inst else "", "from": source,
            "instId": inst, "instType": "SPOT" if inst else "", "interest": "0", "mgnMode": "isolated" if inst else "",
            "notes": "", "ordId": ord_id, "pnl": "0", "posBal": "0", "posBalChg": "0", "px": px, "subType": sub,
            "sz": text(abs(change - fee) if size is None else size), "tag": "", "to": target, "tradeId": trade_id,
            "ts": str(ts), "type": kind})

    def transfer(ts: int, ccy: str, amount: Decimal, to_trading: bool) -> None:
        if to_trading:
            funding[ccy] -= amount
            bill(ts, "1", "11", ccy, amount, source=FUNDING, target=TRADING)
        else:
            bill(ts, "1", "12", ccy, -amount, source=TRADING, target=FUNDING)
            funding[ccy] += amount
        assert funding[ccy] >= 0

    day = start
    while day <= end:
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
        slots = iter(sorted(rng.sample(range(60_000, 86_000_000, 997), trades_per_day[1] + 10)))

        def at() -> int:
            return midnight + next(slots) + rng.randint(0, 996)

        def deposit(ccy: str, amount: Decimal, state: str = "2") -> None:
            ts = at()
            history.deposits.append({
                "actualDepBlkConfirm": "2" if state == "2" else "0", "amt": text(amount), "areaCodeFrom": "",
                "ccy": ccy, "chain": CHAINS[ccy], "depId": next_id(), "from": "", "fromWdId": "", "state": state,
                "to": f"0x{rng.getrandbits(160):040x}", "ts": str(ts), "txId": f"0x{rng.getrandbits(256):064x}"})
            if state == "2":
                funding[ccy] += amount
                transfer(ts + 1500, ccy, amount, True)

        if day == start:
            deposit("USDT", Decimal("500000"))
            deposit("BTC", Decimal("5"))
            deposit("ETH", Decimal("50"))
        for _ in range(rng.randint(*trades_per_day)):
            inst = rng.choice(sorted(INSTRUMENTS))
            base, quote, _, tick, lot = INSTRUMENTS[inst]
            price = (prices[inst] * (1 + Decimal(rng.randint(-150, 150)) / 10_000)).quantize(tick)
            prices[inst] = price
            size = (Decimal(rng.randint(1, 500)) / Decimal(1000)).quantize(lot)
            cost = price * size
            side = rng.choice(("buy", "sell"))
            if side == "buy" and trading[quote] < cost * 2 or side == "sell" and trading[base] < size * 2:
                side = "sell" if side == "buy" else "buy"
                if side == "buy" and trading[quote] < cost * 2 or side == "sell" and trading[base] < size * 2:
                    continue
            ts, ord_id, trade_id, bill_id = at(), next_id(), str(rng.randint(10**8, 10**9)), ""
            exec_type = rng.choice(("T", "M"))
            rate = Decimal("0.0008") if exec_type == "M" else Decimal("0.001")
            if side == "buy":
                fee_ccy, fee = base, -(size * rate)
                bill(ts, "2", "1", base, size + fee, fee=fee, inst=inst, ord_id=ord_id, trade_id=trade_id, size=size,
                     px=text(price), exec_type=exec_type)
                bill_id = history.bills[-1]["billId"]
                bill(ts, "2", "1", quote, -cost, inst=inst, ord_id=ord_id, trade_id=trade_id, size=cost,
                     px=text(price), exec_type=exec_type)
            else:
                fee_ccy, fee = quote, -(cost * rate)
                bill(ts, "2", "2", base, -size, inst=inst, ord_id=ord_id, trade_id=trade_id, size=size, px=text(price),
                     exec_type=exec_type)
                bill_id = history.bills[-1]["billId"]
                bill(ts, "2", "2", quote, cost + fee, fee=fee, inst=inst, ord_id=ord_id, trade_id=trade_id,
                     size=cost, px=text(price), exec_type=exec_type)
            history.fills.append({
                "instType": "SPOT", "instId": inst, "tradeId": trade_id, "ordId": ord_id, "clOrdId": "",
                "billId": bill_id, "subType": "1" if side == "buy" else "2", "tag": "", "fillPx": text(price),
                "fillSz": text(size), "fillIdxPx": "", "fillPnl": "0", "fillPxVol": "", "fillPxUsd": "",
                "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "", "side": side, "posSide": "net",
                "execType": exec_type, "feeCcy": fee_ccy, "fee": text(fee), "feeRate": text(-rate),
                "ts": str(ts), "fillTime": str(ts)})
        if rng.random() < 0.2:  # a withdrawal: moved to funding, then out, with its fee
            ccy = rng.choice(("BTC", "ETH", "USDT"))
            amount = (trading[ccy] * Decimal(rng.randint(1, 8)) / 100).quantize(Decimal("0.0001"))
            fee = WITHDRAWAL_FEES[ccy]
            if amount > fee * 10:
                ts = at()
                transfer(ts, ccy, amount + fee, False)
                state = "-2" if rng.random() < 0.15 else "2"  # a cancelled one moves nothing and stays in funding
                history.withdrawals.append({
                    "chain": CHAINS[ccy], "fee": text(fee), "feeCcy": ccy, "ccy": ccy, "clientId": "",
                    "amt": text(amount), "txId": f"0x{rng.getrandbits(256):064x}" if state == "2" else "",
                    "from": "", "areaCodeFrom": "", "to": f"0x{rng.getrandbits(160):040x}", "areaCodeTo": "",
                    "state": state, "ts": str(ts + 2000), "nonTradableAsset": False, "wdId": next_id(),
                    "tag": "", "pmtId": "", "memo": "", "addrEx": None, "note": ""})
                if state == "2":
                    funding[ccy] -= amount + fee
        if day.day == 15:
            deposit("USDT", Decimal("10000"), state="0")  # seen pending: nothing has moved yet
        day += timedelta(days=1)
    history.trading = {c: v for c, v in trading.items()}
    history.funding = {c: v for c, v in funding.items() if v}
    return history
