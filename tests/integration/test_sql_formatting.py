"""PostgreSQL formats figures exactly as Python does: ``sql_decimal_text`` = ``to_text``, ``sql_iso_utc`` =
``iso_utc`` (the API serves pages formatted by the database and single records formatted in Python)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from warehouse.numbers import to_text
from warehouse.reports import iso_utc, sql_decimal_text, sql_iso_utc

DECIMALS = ["0", "-0.000", "1.500", "-2.5", "1E+3", "0.000000000000000001", "-0.000000000000000001",
            "123456789012345678.000000000000000001", "100", "-100.0", "3.14159265358979323846264338327950288"]
TIMES = [datetime(2024, 1, 31, 23, 59, 59, tzinfo=timezone.utc),
         datetime(2024, 1, 31, 23, 59, 59, 1, tzinfo=timezone.utc),
         datetime(2024, 2, 29, 0, 0, 0, 120000, tzinfo=timezone.utc),
         datetime(2024, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
         datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)]


@pytest.mark.parametrize("text", DECIMALS)
def test_decimal_text_matches_to_text(engine: sa.Engine, text: str) -> None:
    with engine.connect() as conn:
        served = conn.execute(sa.text(f"SELECT {sql_decimal_text('CAST(:v AS numeric)')}"), {"v": text}).scalar()
    assert served == to_text(Decimal(text))


@pytest.mark.parametrize("moment", TIMES, ids=str)
def test_iso_utc_matches_python(engine: sa.Engine, moment: datetime) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'America/New_York'"))  # the session's zone must not matter
        served = conn.execute(sa.text(f"SELECT {sql_iso_utc('CAST(:v AS timestamptz)')}"), {"v": moment}).scalar()
    assert served == iso_utc(moment)


def test_nulls_stay_null(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {sql_decimal_text('NULL::numeric')}, {sql_iso_utc('NULL::timestamptz')}")).one()
    assert tuple(row) == (None, None)
