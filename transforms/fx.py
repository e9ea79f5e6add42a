"""Reporting currencies for cost basis and PnL: a book kept in EUR or GBP instead of USD.

The price service stores a fiat FX rate as the USD price of the fiat asset (``prices`` rows of
asset ``EUR``: 1 EUR = ``price_usd`` USD, ``pair`` 'EUR/USD'), with its provenance
(docs/prices.md). To report in a currency other than USD, every USD amount of the ledger is
translated at the rate of its own instant, and the same engine runs on the translated legs:

- an acquisition's basis (its value plus a buy's fee) at the rate of the acquisition;
- a disposal's proceeds at the rate of the disposal;
- fair values the ledger lacks (income, third-asset fees) at the rate of the leg;
- close prices (unrealized PnL) at the rate of the day's cutoff.

So gains include the currency effect between acquisition and disposal, as a EUR or GBP reporter
books them, and HIFO/LOFO rank lots by their cost in the reporting currency.

The rate for an instant T: among the rates with ``T - FX_MAX_AGE < ts <= T``, the highest
precedence source wins (manual > trade > peg > coingecko > exchange > ledger), then the latest. No rate in that
window is an error naming the day and the pair (``FxRateMissing``), never a silent 1.0. Translated
amounts keep 18 fractional digits (half-even). Every rate used is recorded (``FxRates.used``)
and reported with its provenance.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from transforms.cost_basis import PnlLeg
from transforms.fair_value import FairValues, ts_key
from transforms.price_order import rank_sql, source_rank
from warehouse.numbers import SCALE, exact_context, to_text
from warehouse.reports import ReportParameterError

BASE_CURRENCY = "USD"
REPORTING_CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP")
# A rate may be up to four days old: published reference rates (ECB, Bank of England) skip weekends and holidays.
FX_MAX_AGE = timedelta(days=4)
_US = timedelta(microseconds=1)


class FxRateMissing(ReportParameterError):
    """No rate of the reporting currency around an instant the report needs."""

    def __init__(self, currency: str, at: datetime, what: str) -> None:
        pair = f"{currency}/{BASE_CURRENCY}"
        super().__init__("currency", f"no {pair} rate for {at.date().isoformat()} (needed at {at.isoformat()} for {what}; "
                                     f"a rate counts up to {FX_MAX_AGE.days} days back): fetch it with `coinfrs prices "
                                     f"fetch` or import it with `coinfrs prices import` (asset {currency})",
                         reason="conflict")
        self.currency, self.pair, self.at = currency, pair, at


@dataclass(frozen=True)
class FxRate:
    """One stored rate: 1 unit of the currency = ``rate_usd`` USD at ``ts``, with its provenance."""

    ts: datetime
    rate_usd: Decimal
    source: str
    pair: str | None
    resolution: str | None
    fetched_at: datetime | None
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"ts": self.ts.isoformat(), "rate_usd": to_text(self.rate_usd), "source": self.source,
                "pair": self.pair, "resolution": self.resolution,
                "fetched_at": self.fetched_at.isoformat() if self.fetched_at else None, "note": self.note}


def normalize_currency(code: str | None, default: str = BASE_CURRENCY) -> str:
    """An upper-case currency code from REPORTING_CURRENCIES (``default`` when empty)."""
    text = (code or default or BASE_CURRENCY).strip().upper()
    if text not in REPORTING_CURRENCIES:
        raise ReportParameterError("currency", f"unknown reporting currency {text!r}; allowed: "
                                               f"{', '.join(REPORTING_CURRENCIES)}")
    return text


class FxRates:
    """The rates of one currency in time order; ``rate_at`` picks one per instant and remembers it."""

    def __init__(self, currency: str, rates: Iterable[FxRate]) -> None:
        self.currency = currency
        best: dict[int, FxRate] = {}
        for rate in rates:  # one rate per instant: the best source
            if rate.rate_usd is None or rate.rate_usd <= 0:
                continue
            key = ts_key(rate.ts)
            if key not in best or source_rank(rate.source) < source_rank(best[key].source):
                best[key] = rate
        self._keys = sorted(best)
        self._rates = [best[k] for k in self._keys]
        self._max_age = FX_MAX_AGE // _US
        self.used: dict[int, FxRate] = {}

    def rate_at(self, at: datetime, what: str) -> FxRate:
        """The rate at instant ``at``: the best source among the rates of the window, then the latest."""
        key = ts_key(at)
        i = bisect_right(self._keys, key) - 1
        chosen: FxRate | None = None
        while i >= 0 and self._keys[i] > key - self._max_age:
            rate = self._rates[i]
            if chosen is None or source_rank(rate.source) < source_rank(chosen.source):
                chosen = rate
            i -= 1
        if chosen is None:
            raise FxRateMissing(self.currency, at, what)
        self.used[ts_key(chosen.ts)] = chosen
        return chosen

    def to_currency(self, amount_usd: Decimal, at: datetime, what: str) -> Decimal:
        rate = self.rate_at(at, what).rate_usd
        with exact_context():
            return (amount_usd / rate).quantize(SCALE)

    def provenance(self) -> dict[str, Any]:
        """What a report says about the rates it used: the pair, how many, and each with its source."""
        used = [self.used[k] for k in sorted(self.used)]
        return {"currency": self.currency, "pair": f"{self.currency}/{BASE_CURRENCY}",
                "meaning": f"1 {self.currency} = rate_usd USD; USD amounts are divided by the rate of their instant",
                "rates_used": len(used), "sources": sorted({r.source for r in used}),
                "rates": [r.as_dict() for r in used]}


def load_fx_rates(conn: Connection, entity_id: int, currency: str, up_to: datetime) -> FxRates:
    """Every stored rate of ``currency`` for the entity up to ``up_to`` (any source), best source first."""
    rows = conn.execute(sa.text(
        f"""
        SELECT p.ts, p.price_usd, p.source, p.pair, p.resolution, p.fetched_at, p.note
        FROM prices p JOIN assets a ON a.id = p.asset_id
        WHERE p.entity_id = :e AND a.symbol = :c AND a.is_fiat AND p.ts <= :t
        ORDER BY {rank_sql()}, p.ts, p.id
        """), dict(e=entity_id, c=currency, t=up_to)).all()
    return FxRates(currency, (FxRate(r.ts, r.price_usd, r.source, r.pair, r.resolution, r.fetched_at, r.note)
                              for r in rows))


def translate_legs(legs: Iterable[PnlLeg], fx: FxRates) -> list[PnlLeg]:
    """The legs with their USD value and unit price in the reporting currency, at the rate of each leg's instant."""
    result = []
    for leg in legs:
        if leg.unverified or (leg.usd_value is None and leg.unit_price_usd is None):
            result.append(leg)  # left out of the book / valued through the fair values, translated there
            continue
        what = f"leg {leg.id}"
        result.append(replace(
            leg, usd_value=fx.to_currency(leg.usd_value, leg.ts, what) if leg.usd_value is not None else None,
            unit_price_usd=fx.to_currency(leg.unit_price_usd, leg.ts, what) if leg.unit_price_usd is not None else None))
    return result


class TranslatedFairValues:
    """``FairValues`` in the reporting currency: the USD price at T divided by the rate at T."""

    def __init__(self, usd: FairValues, fx: FxRates) -> None:
        self.usd, self.fx = usd, fx

    def price_at(self, asset_id: int, ts: datetime) -> Decimal | None:
        price = self.usd.price_at(asset_id, ts)
        if price is None:
            return None
        return self.fx.to_currency(price, ts, f"the price of asset {asset_id}")
