"""One module owns numbers: exact decimals for every quantity and amount.

Nobody builds a ``Decimal`` from a float. ``D()`` accepts strings, ints and Decimals only;
``exact_context()`` turns the float trap on for code that does money arithmetic.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)
ONE = Decimal(1)

# 60 significant digits: enough for 38 integer digits and 18+ fractional digits with room.
_EXACT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN, traps=[
    decimal.FloatOperation, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
])

# Any Decimal arithmetic in this process (reports, tests, the API) gets the same headroom: the
# default 28 significant digits would round a sum of 20-digit amounts with 18 fractional digits.
decimal.DefaultContext.prec = _EXACT.prec
decimal.getcontext().prec = _EXACT.prec

# Money and quantities derived by division (partial lots, average cost) keep 18 fractional digits.
SCALE = Decimal("1e-18")


class NotADecimal(ValueError):
    """A value that is not an exact decimal number."""


def D(value: str | int | Decimal) -> Decimal:
    """Parse an exact decimal. Floats are refused; so are NaN and infinities."""
    if isinstance(value, bool) or isinstance(value, float):
        raise NotADecimal(f"refusing binary float {value!r}: pass a string")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text:
            raise NotADecimal("empty number")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise NotADecimal(f"not a decimal number: {value!r}") from None
    else:
        raise NotADecimal(f"not a decimal number: {value!r}")
    if not result.is_finite():
        raise NotADecimal(f"not a finite number: {value!r}")
    return result


# What a person or a file may write as a number (docs/csv-formats.md): ASCII digits, an optional sign and point; no
# separators, exponent, NaN or other scripts' digits; at most 24 digits on each side of the point (the engine keeps
# 60 significant digits, so every product and sum of such figures stays exact).
INPUT_DIGITS = 24
_INPUT_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def parse_input_decimal(text: str) -> Decimal:
    """An exact decimal from input text in the documented syntax; ``NotADecimal`` says what is wrong with it."""
    value = text.strip()
    if not value:
        raise NotADecimal("empty number")
    if not _INPUT_NUMBER.fullmatch(value):
        raise NotADecimal(f"not a decimal number: {value!r} (digits 0-9 with an optional sign and '.'; no thousands "
                          "separators, underscores, exponent or spaces)")
    whole, _, fraction = value.lstrip("+-").partition(".")
    if len(whole.lstrip("0")) > INPUT_DIGITS or len(fraction) > INPUT_DIGITS:
        raise NotADecimal(f"out of range: {value[:40]!r}{'...' if len(value) > 40 else ''} (at most {INPUT_DIGITS} "
                          "digits before and after the point)")
    return Decimal(value)


def quantize(value: Decimal) -> Decimal:
    """Round a derived amount to 18 fractional digits (half-even)."""
    with exact_context():
        return value.quantize(SCALE)


def to_text(value: Decimal | None) -> str | None:
    """Plain decimal text without exponent and without trailing zeros ("1.5", "0", "-2")."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


@contextmanager
def exact_context() -> Iterator[decimal.Context]:
    """Decimal context with the float trap on: mixing a float into money raises."""
    with decimal.localcontext(_EXACT) as ctx:
        yield ctx


CENT = Decimal("0.01")


def money_text(value: Decimal | str | None) -> str | None:
    """Money for people: rounded to cents (half-even, as everywhere we round for display) with thousands
    separators: ``1,234,567.89``, ``-0.50``, never ``-0.00``. None stays None."""
    if value is None or value == "":
        return None
    with exact_context():
        cents = D(value).quantize(CENT, rounding=decimal.ROUND_HALF_EVEN)
    if cents == 0:
        cents = abs(cents)
    return f"{cents:,.2f}"


def quantity_text(value: Decimal | str | None) -> str | None:
    """A quantity (or price) for people: every digit kept (``to_text``), thousands separators in the whole part:
    ``867,410``, ``-1,234.000012``."""
    if value is None or value == "":
        return None
    text = to_text(D(value)) or "0"
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, fraction = text.partition(".")
    return f"{sign}{int(whole):,}" + (f".{fraction}" if fraction else "")
