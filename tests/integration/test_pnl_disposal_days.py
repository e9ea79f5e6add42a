"""``pnl_disposal_days`` (migration 0031): the per-day sums the realized PnL summary reads stay exactly the sums of
``pnl_disposals`` through every way of writing them (insert, update, delete, truncate; several books and days in
one statement), and the summary answers as the sum over every disposal did."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import sqlalchemy as sa

from warehouse.db import get_owner_engine
from warehouse.reports import realized_pnl_summary
from warehouse.schema import accounts, assets, entities, pnl_disposals

FIGURES = ("proceeds", "cost_basis", "realized_gain", "short_term_gain", "long_term_gain")
DIRECT = sa.text(f"""
    SELECT entity_id, method, pool, date, count(*), count(*) FILTER (WHERE kind = 'fee'),
           count(*) FILTER (WHERE shortfall_quantity > 0), {", ".join(f"sum({f})" for f in FIGURES)}
    FROM pnl_disposals GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""")
STORED = sa.text(f"""
    SELECT entity_id, method, pool, date, disposals, fee_disposals, shortfall_quantity_disposals, {", ".join(FIGURES)}
    FROM pnl_disposal_days ORDER BY 1, 2, 3, 4""")


def _agree(conn: sa.Connection) -> list:
    direct = conn.execute(DIRECT).all()
    assert conn.execute(STORED).all() == direct
    return direct


def test_the_per_day_sums_follow_every_write(engine: sa.Engine, database_url: str) -> None:
    with engine.begin() as conn:
        entity = conn.execute(sa.insert(entities).values(name="acme").returning(entities.c.id)).scalar_one()
        account = conn.execute(sa.insert(accounts).values(entity_id=entity, source="csv", name="a",
                                                          account_type="spot").returning(accounts.c.id)).scalar_one()
        asset = conn.execute(sa.insert(assets).values(symbol="BTC", decimals=8).returning(assets.c.id)).scalar_one()
        rows = []
        for i in range(40):
            day = date(2026, 1, 1 + i % 4)
            rows.append(dict(entity_id=entity, method="fifo" if i % 3 else "hifo", pool="universal", date=day,
                             ts=datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc), leg_id=1000 + i,
                             account_id=account, asset_id=asset, kind="fee" if i % 5 == 0 else "sale",
                             quantity=Decimal("0.1"), proceeds=Decimal(f"{i}.000000000000000001"),
                             cost_basis=Decimal(f"{i % 7}.5"), realized_gain=Decimal(f"{i}.000000000000000001")
                             - Decimal(f"{i % 7}.5"), short_term_gain=Decimal(f"{i}.000000000000000001")
                             - Decimal(f"{i % 7}.5"), long_term_gain=Decimal(0),
                             shortfall_quantity=Decimal("0.1") if i % 9 == 0 else Decimal(0)))
        conn.execute(sa.insert(pnl_disposals), rows)  # one statement: several books and days
        assert len(_agree(conn)) == 8
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE pnl_disposals SET proceeds = proceeds + 0.25, date = date + 1 "
                             "WHERE leg_id % 4 = 0"))
        _agree(conn)
        conn.execute(sa.text("DELETE FROM pnl_disposals WHERE date = '2026-01-02'"))  # a whole day goes
        stored = _agree(conn)
        assert date(2026, 1, 2) not in {r.date for r in stored}
    with engine.begin() as conn:
        summary = realized_pnl_summary(conn, entity, date(2026, 1, 1), date(2026, 1, 31), method="fifo")
        direct = conn.execute(sa.text(
            "SELECT trim_scale(sum(proceeds))::text, trim_scale(sum(realized_gain))::text, count(*) "
            "FROM pnl_disposals WHERE method = 'fifo'")).one()
        assert (summary["proceeds"], summary["realized_gain"], summary["disposals"]) == tuple(direct)
    with engine.connect() as conn:  # a rolled-back write leaves the sums as they were
        with conn.begin() as tx:
            conn.execute(sa.text("DELETE FROM pnl_disposals"))
            tx.rollback()
        assert len(_agree(conn)) > 0
    with get_owner_engine(database_url).begin() as conn:  # only the owner may TRUNCATE
        conn.execute(sa.text("TRUNCATE pnl_disposals CASCADE"))
        assert _agree(conn) == []
