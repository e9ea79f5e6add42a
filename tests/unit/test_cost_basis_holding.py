"""Holding period by calendar date: every row of the worked-example table in docs/cost-basis.md ("Holding period"),
through the helper and through a one-lot ledger in the engine."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from transforms.cost_basis import HoldingPeriod, PnlLeg, anniversary, compute_book
from warehouse.calendar import close_date_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "cost-basis.md"


def _doc_rows() -> list[tuple[str, str, str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("**Holding period**"):text.index("**Shortfall**")]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in ("us", "elapsed"):
            rows.append(tuple(cells[:5]))
    return rows


ROWS = _doc_rows()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_docs_table_is_read() -> None:
    assert len(ROWS) >= 10 and {r[4] for r in ROWS} == {"short", "long"}


@pytest.mark.parametrize("rule, tz, acquired, disposed, term", ROWS)
def test_holding_period_examples(rule: str, tz: str, acquired: str, disposed: str, term: str) -> None:
    holding = HoldingPeriod(rule, ZoneInfo(tz))
    assert holding.term(_ts(acquired), _ts(disposed)) == term
    # the same through the engine: buy 1 BTC at 100, sell it at 150 (legs on the entity's close days)
    zone = ZoneInfo(tz)
    legs = []
    for n, (at, qty, usd) in enumerate(((_ts(acquired), "1", "100"), (_ts(disposed), "-1", "150"))):
        legs.append(PnlLeg(id=n + 1, ts=at, close_date=close_date_of(at, zone), account_id=1, asset_id=1, is_fiat=False,
                           quantity=Decimal(qty), kind="buy" if n == 0 else "sell", group_id=f"g{n}", leg_index=0,
                           usd_value=Decimal(usd)))
    (sale,) = compute_book(legs, holding=holding).disposals
    assert [m.term for m in sale.lots] == [term]
    gain = Decimal(50)
    assert (sale.long_term_gain, sale.short_term_gain) == ((gain, 0) if term == "long" else (0, gain))


def test_default_is_the_us_rule_in_utc() -> None:
    assert HoldingPeriod() == HoldingPeriod("us", timezone.utc)


def test_anniversary_of_feb_29_is_feb_28() -> None:
    assert anniversary(date(2024, 2, 29)) == date(2025, 2, 28)
    assert anniversary(date(2023, 3, 1)) == date(2024, 3, 1)


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown holding-period rule 'uk'"):
        HoldingPeriod("uk")
