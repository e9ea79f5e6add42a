"""What every price connector returns: exact prices at instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True)
class PricePoint:
    ts: datetime  # UTC, the instant the price holds at
    price: Decimal  # quote currency per unit, exact


def resolution_of(points: list[PricePoint]) -> str:
    """'day', 'hour' or 'minute' from the typical spacing of a series (one point counts as 'day')."""
    gaps = sorted(b.ts - a.ts for a, b in zip(points, points[1:]) if b.ts > a.ts)
    if not gaps:
        return "day"
    typical = gaps[len(gaps) // 2]
    if typical >= timedelta(hours=23):
        return "day"
    if typical >= timedelta(minutes=59):
        return "hour"
    return "minute"
