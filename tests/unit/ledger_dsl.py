"""A tiny ledger language for cost-basis tests an accountant can read.

    L = Ledger()
    L.buy("2024-01-01", "A", "BTC", "1", price="100", fee_usd="1")
    L.sell("2024-02-01", "A", "BTC", "0.5", price="300")
    book = L.book("fifo", "universal")

Assets: BTC=1, ETH=2, BNB=3, USD=9 (fiat). Accounts are named by one letter; ids A=1, B=2, C=3.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from transforms.cost_basis import BookPeriod, BookResult, PnlLeg, compute_book
from transforms.fair_value import FairValues, PriceRow, map_ledger_prices
from warehouse.numbers import to_text

ASSETS = {"BTC": 1, "ETH": 2, "BNB": 3, "USD": 9}
ACCOUNTS = {"A": 1, "B": 2, "C": 3}


def D(text: str | int) -> Decimal:
    return Decimal(str(text))


def ts(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)


class Ledger:
    def __init__(self) -> None:
        self.legs: list[PnlLeg] = []
        self.prices: list[PriceRow] = []
        self._event = 0

    def _group(self, day: str, hour: int) -> tuple[int, datetime, str]:
        self._event += 1
        return self._event, ts(day, hour), f"g{self._event:06d}"

    def _leg(self, event: int, at: datetime, group: str, index: int, account: str, asset: str, qty: Decimal, kind: str,
             unit: Decimal | None, value: Decimal | None, status: str | None = None, peer: str | None = None) -> None:
        self.legs.append(PnlLeg(
            id=event * 10 + index, ts=at, close_date=at.date(), account_id=ACCOUNTS[account], asset_id=ASSETS[asset],
            is_fiat=asset == "USD", quantity=qty, kind=kind, group_id=group, leg_index=index, unit_price_usd=unit,
            usd_value=value, transfer_status=status, transfer_peer_account_id=ACCOUNTS[peer] if peer else None))

    def trade(self, side: str, day: str, account: str, asset: str, qty: str, *, price: str, quote: str = "USD",
              quote_qty: str | None = None, fee: tuple[str, str] | None = None, hour: int = 12) -> int:
        event, at, group = self._group(day, hour)
        q, p = D(qty), D(price)
        value = q * p
        sign = 1 if side == "buy" else -1
        self._leg(event, at, group, 0, account, asset, sign * q, side, p, value)
        qq = D(quote_qty) if quote_qty else value
        self._leg(event, at, group, 1, account, quote, -sign * qq, "sell" if side == "buy" else "buy",
                  D(1) if quote == "USD" else value / qq, value)
        if fee:
            fee_asset, amount = fee[0], D(fee[1])
            unit = D(1) if fee_asset == "USD" else (p if fee_asset == asset else None)
            self._leg(event, at, group, 2, account, fee_asset, -amount, "fee", unit,
                      amount * unit if unit is not None else None)
        return event * 10

    def buy(self, day: str, account: str, asset: str, qty: str, **kw: object) -> int:
        return self.trade("buy", day, account, asset, qty, **kw)  # type: ignore[arg-type]

    def sell(self, day: str, account: str, asset: str, qty: str, **kw: object) -> int:
        return self.trade("sell", day, account, asset, qty, **kw)  # type: ignore[arg-type]

    def income(self, day: str, account: str, asset: str, qty: str, *, price: str | None, kind: str = "income",
               hour: int = 12) -> int:
        event, at, group = self._group(day, hour)
        p = D(price) if price is not None else None
        self._leg(event, at, group, 0, account, asset, D(qty), kind, p, D(qty) * p if p is not None else None)
        return event * 10

    def transfer(self, day: str, source: str, target: str, asset: str, qty: str, *, fee: str | None = None,
                 matched: bool = True, hour: int = 12) -> int:
        event, at, group = self._group(day, hour)
        self._leg(event, at, group, 0, source, asset, -D(qty), "transfer_out", None, None,
                  "matched" if matched else "unmatched_out", target if matched else None)
        if fee:
            self._leg(event, at, group, 2, source, asset, -D(fee), "fee", None, None)
        if matched:
            event2, _, group2 = self._group(day, hour)
            self._leg(event2, at, group2, 0, target, asset, D(qty), "transfer_in", None, None, "matched")
        return event * 10

    def price(self, day: str, asset: str, price: str, source: str = "coingecko", hour: int = 0) -> None:
        self.prices.append(PriceRow(ASSETS[asset], ts(day, hour), D(price), source, "day"))

    def fair_values(self) -> FairValues:
        return FairValues([*map_ledger_prices(self.legs), *self.prices])

    def book(self, method: str = "fifo", pool: str = "universal", *, schedule: list[BookPeriod] | None = None,
             report_from: str | None = None, report_to: str | None = None, **kw: object) -> BookResult:
        return compute_book(self.legs, method=method, pool=pool, schedule=schedule, fair_values=self.fair_values(),
                            report_from=date.fromisoformat(report_from) if report_from else None,
                            report_to=date.fromisoformat(report_to) if report_to else None, **kw)  # type: ignore[arg-type]


def lots(book: BookResult, day: str | None = None) -> list[tuple[int, str, str | None, str | None]]:
    """Open lots of the last reported day (or ``day``), sorted: (pool account, acquired date, quantity, basis)."""
    days = sorted({l.date for l in book.open_lots})
    target = date.fromisoformat(day) if day else (days[-1] if days else None)
    return sorted((l.pool_account_id, l.acquired_at.date().isoformat(), to_text(l.quantity),
             to_text(l.cost_basis)) for l in book.open_lots if l.date == target)
