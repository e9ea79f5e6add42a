"""Cause finding reads the event vocabulary (transforms/events.py): a Binance margin loan account moves by its
``liability`` legs (interest accrued), a margin account by loans and interest paid; an unmatched exchange
withdrawal elsewhere explains a break like an unmatched transfer leg."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from reconciliation.causes import BreakContext, LegInfo, compute_causes, stream_kinds

AT = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)


def _context(account_type: str, legs: list[LegInfo], other: list[LegInfo] | None = None,
             difference: str = "-0.5") -> BreakContext:
    return BreakContext(date(2026, 3, 2), 1, "Binance", account_type, "binance", "BTC", False, Decimal(difference),
                        Decimal("0.00000001"), None, AT, window_legs=legs, other_legs=other or [])


def _leg(kind: str, quantity: str, account_id: int = 1, status: str | None = None) -> LegInfo:
    return LegInfo(7, AT, account_id, "Binance" if account_id == 1 else "Cold", Decimal(quantity), kind, "g", None, status)


def test_the_stream_kinds_come_from_the_vocabulary():
    assert "liability" in stream_kinds("margin_loan") and "interest" not in stream_kinds("margin_loan")
    assert {"borrow", "repay", "interest_expense"} <= set(stream_kinds("margin"))
    assert set(stream_kinds("futures")) == {"funding", "realized_pnl"}
    assert {"interest", "staking_reward", "income"} <= set(stream_kinds("funding"))
    assert stream_kinds("spot") == ()


def test_a_margin_loan_account_with_its_interest_accrual_booked_is_no_missing_stream():
    codes = lambda ctx: [c["code"] for c in compute_causes(ctx)]  # noqa: E731
    assert "missing_stream" not in codes(_context("margin_loan", [_leg("liability", "-0.0001")]))
    assert "missing_stream" in codes(_context("margin_loan", [_leg("buy", "0.1")]))


def test_an_unmatched_exchange_withdrawal_elsewhere_is_an_unmatched_transfer_cause():
    other = [LegInfo(8, AT, 2, "Exchange", Decimal("-0.5"), "withdrawal", "w", None, "unmatched_out")]
    causes = compute_causes(_context("wallet", [], other, difference="0.5"))
    assert causes[0]["code"] == "unmatched_transfer" and "no matching incoming leg in Binance" in causes[0]["evidence"]
    matched = [LegInfo(8, AT, 2, "Exchange", Decimal("-0.5"), "withdrawal", "w", None, "matched")]
    assert "unmatched_transfer" not in [c["code"] for c in compute_causes(_context("wallet", [], matched, "0.5"))]
