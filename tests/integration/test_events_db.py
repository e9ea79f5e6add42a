"""The event layer through the database close: the same small ledgers as tests/unit/test_events.py, imported,
built into canonical legs and booked by build_pnl, give the same figures as the file engine; events carry their
type and valuation; the CHECK constraint refuses a kind outside the vocabulary; an unclassified leg blocks PnL
from its day and fails its day's expectation naming the raw record."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from ingestion.exchange_exports import import_binance_export
from reconciliation.blocking import first_blocked_day
from reconciliation.close import write_closes
from reconciliation.suites import EXPECTATIONS, expectation_query
from transforms.canonical import build_canonical
from transforms.cost_basis import compute_book
from transforms.fair_value import FairValues, PriceRow
from transforms.ledger_books import map_ledger_files
from transforms.pnl import build_pnl
from warehouse.entities import get_or_create_entity
from warehouse.reports import get_transaction

UTC = timezone.utc
HEADER = "timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account\n"
LEDGER = HEADER + (
    "2024-03-01T09:00:00Z,BUY,BTC,1,1000,,,,,A\n"
    "2024-03-02T10:00:00Z,BUY,ETH,10,,,,BTC,0.5,A\n"            # crypto-to-crypto, no price: one value (ETH 200)
    "2024-03-02T11:00:00Z,BUY,USDT,100,1,,,,,A\n"
    "2024-03-02T12:00:00Z,BORROW,USDT,1000,1,,,,,A\n"           # a loan: not income
    "2024-03-03T09:00:00Z,REPAY,USDT,1000,1.02,,,,,A\n"         # leaves at basis
    "2024-03-03T09:00:00Z,INTEREST_EXPENSE,USDT,5,1.02,,,,,A\n"  # an expense: disposal at fair value
    "2024-03-03T10:00:00Z,WITHDRAWAL,BTC,0.5,6000,,,,,A\n"      # external: out at basis, not a sale
    "2024-03-03T11:00:00Z,SPEND,ETH,1,250,,,,,A\n"
    "2024-03-04T09:00:00Z,BUY,BTC,0.1,,USD,10.94,USD,420.67,A\n"  # a fee on the fiat side reaches the cost
    "2024-03-04T10:00:00Z,SELL,BTC,0.1,5000,,,,,A\n"
)
PRICES = [("ETH", datetime(2024, 3, 2, 9, tzinfo=UTC), "200"), ("BTC", datetime(2024, 3, 2, 9, tzinfo=UTC), "5000")]
FIRST, LAST = date(2024, 3, 1), date(2024, 3, 4)


def _close(conn, entity, start=FIRST, end=LAST):
    build_canonical(conn, entity, start, end)
    return build_pnl(conn, entity, start, end)


def test_each_event_type_books_the_same_through_the_database_and_the_file_engine(engine) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        import_csv(conn, entity.id, "ledger", CsvFile("ledger.csv", LEDGER))
        build_canonical(conn, entity, FIRST, LAST)
        assets = dict(conn.execute(sa.text("SELECT symbol, id FROM assets")).all())
        for symbol, at, price in PRICES:
            conn.execute(sa.text("INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution)"
                                 " VALUES (:e, :a, :t, :p, 'manual', 'day')"),
                         dict(e=entity.id, a=assets[symbol], t=at, p=Decimal(price)))
        build_pnl(conn, entity, FIRST, LAST)
        stored = conn.execute(sa.text(
            """SELECT s.symbol, d.kind, d.quantity, d.proceeds, d.cost_basis, d.realized_gain FROM pnl_disposals d
               JOIN assets s ON s.id = d.asset_id WHERE d.method = 'fifo' AND d.pool = 'universal'
               ORDER BY d.ts, d.leg_id""")).all()
        events = conn.execute(sa.text(
            """SELECT e.event_type, e.valued_by, e.value_usd, s.symbol AS priced, e.unit_price_usd FROM events e
               LEFT JOIN assets s ON s.id = e.price_asset_id ORDER BY e.ts, e.group_id""")).all()
        eth_leg = conn.execute(sa.text("SELECT t.id FROM transactions t JOIN assets s ON s.id = t.asset_id"
                                       " WHERE s.symbol = 'ETH' AND t.kind = 'buy'")).scalar_one()
        served = get_transaction(conn, entity.id, eth_leg)  # what GET /api/v1/transactions/{id} serves
        loan = conn.execute(sa.text(
            """SELECT count(*) FROM pnl_open_lots l JOIN accounts a ON a.id = l.account_id
               WHERE a.account_type = 'loan'""")).scalar()
    assert [tuple(r) for r in stored] == [
        ("BTC", "sale", Decimal("0.5"), 2000, 500, 1500),       # proceeds = the ETH received (10 x 200)
        ("USDT", "fee", 5, Decimal("5.10"), 5, Decimal("0.10")),  # interest: expense at fair value; no repay disposal
        ("ETH", "sale", 1, 250, 200, 50),                        # spend at fair value; no withdrawal disposal
        ("BTC", "sale", Decimal("0.1"), 500, Decimal("431.61"), Decimal("68.39")),  # basis 420.67 + 10.94 fee
    ]
    assert [(e.event_type, e.valued_by, e.value_usd, e.priced) for e in events] == [
        ("trade", "fiat", 1000, "USD"),
        ("trade", "received_price", 2000, "ETH"),
        ("trade", "fiat", 100, "USD"),
        ("loan_draw", None, None, None),
        ("loan_repayment", None, None, None),
        ("interest_expense", None, None, None),
        ("external_withdrawal", None, None, None),
        ("spend", None, None, None),
        ("trade", "fiat", Decimal("420.67"), "USD"),
        ("trade", "fiat", 500, "USD"),
    ]
    assert loan == 0  # the loan account never holds lots
    assert (served["event_type"], served["valued_by"], served["event_value_usd"]) == ("trade", "received_price", "2000")

    # the file engine: the same mapping and engine, the same prices
    mapped = map_ledger_files([CsvFile("ledger.csv", LEDGER)])
    ids = {symbol: i for i, symbol in mapped.assets.items()}
    prices = FairValues([PriceRow(ids[s], at, Decimal(p), "manual", "day") for s, at, p in PRICES])
    book = compute_book(mapped.legs, fair_values=prices)
    assert [(mapped.assets[d.asset_id], d.kind, d.quantity, d.proceeds, d.cost_basis, d.realized_gain)
            for d in book.disposals] == [tuple(r) for r in stored]


def test_the_database_refuses_a_kind_outside_the_vocabulary(engine) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        import_csv(conn, entity.id, "ledger", CsvFile("ledger.csv", HEADER + "2024-03-01T09:00:00Z,BUY,BTC,1,1000,,,,,A\n"))
        build_canonical(conn, entity, FIRST, FIRST)
    with pytest.raises(sa.exc.IntegrityError, match="ck_transactions_kind"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE transactions SET kind = 'other'"))


EXPORT = """User_ID,UTC_Time,Account,Operation,Coin,Change,Remark
1,2024-03-01 08:00:00,Spot,Buy,BTC,0.1,
1,2024-03-01 08:00:00,Spot,Buy,EUR,-4000,
1,2024-03-01 08:00:00,Spot,Fee,BTC,-0.0001,
1,2024-03-02 08:00:00,Spot,Simple Earn Flexible Subscription,BTC,-0.05,
1,2024-03-03 08:00:00,Spot,Some New Binance Operation,BTC,0.01,promo
1,2024-03-04 08:00:00,Spot,Sell,BTC,-0.01,
1,2024-03-04 08:00:00,Spot,Sell,USDT,700,
"""


def test_binance_export_trade_rows_are_one_event_earn_is_an_internal_move_and_unclassified_blocks(engine) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        import_binance_export(conn, entity.id, CsvFile("export.csv", EXPORT))
        build_canonical(conn, entity, FIRST, LAST)
        assets = dict(conn.execute(sa.text("SELECT symbol, id FROM assets")).all())
        conn.execute(sa.text("INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution)"
                             " VALUES (:e, :a, '2024-03-01T07:00:00Z', 1.1, 'manual', 'day')"),
                     dict(e=entity.id, a=assets["EUR"]))
        kinds = conn.execute(sa.text(
            """SELECT a.account_type, s.symbol, l.quantity, l.kind FROM transactions l JOIN accounts a ON a.id = l.account_id
               JOIN assets s ON s.id = l.asset_id ORDER BY l.ts, l.id""")).all()
        events = [tuple(r) for r in conn.execute(sa.text("SELECT close_date, event_type, legs FROM events ORDER BY ts"))]
        blocked = first_blocked_day(conn, entity.id, LAST)
        build_pnl(conn, entity, FIRST, date(2024, 3, 2))
        lots = conn.execute(sa.text(
            """SELECT a.account_type, l.quantity, l.cost_basis, l.acquired_at FROM pnl_open_lots l
               JOIN accounts a ON a.id = l.account_id WHERE l.method = 'fifo' AND l.pool = 'account'
               AND l.date = '2024-03-02' ORDER BY a.account_type""")).all()
        write_closes(conn, entity, FIRST, LAST, run_id=None)
        closes = {r.date: (r.status, r.message) for r in conn.execute(sa.text("SELECT date, status, message FROM closes"))}
        [unclassified] = [e for e in EXPECTATIONS if e.name == "no_unclassified_legs"]
        failing = conn.execute(sa.text(expectation_query(unclassified, entity, FIRST, LAST).replace(
            "{batch}", "transactions"))).mappings().all()
    assert [tuple(k) for k in kinds] == [
        ("spot", "BTC", Decimal("0.1"), "buy"), ("spot", "EUR", -4000, "sell"), ("spot", "BTC", Decimal("-0.0001"), "fee"),
        ("spot", "BTC", Decimal("-0.05"), "transfer_out"), ("earn", "BTC", Decimal("0.05"), "transfer_in"),
        ("spot", "BTC", Decimal("0.01"), "unclassified"),
        ("spot", "BTC", Decimal("-0.01"), "sell"), ("spot", "USDT", 700, "buy"),
    ]
    assert events == [(date(2024, 3, 1), "trade", 3), (date(2024, 3, 2), "internal_move", 2),
                      (date(2024, 3, 3), "unclassified", 1), (date(2024, 3, 4), "trade", 2)]
    assert blocked == date(2024, 3, 3)
    # the day is blocked by its unclassified leg, and says so (it has no break)
    status, message = closes[date(2024, 3, 3)]
    assert status == "blocked" and "blocked by unclassified: 1 leg(s)" in message and "break" not in message
    assert closes[date(2024, 3, 4)][0] == "blocked" and "since 2024-03-03" in closes[date(2024, 3, 4)][1]
    # the Buy is valued from its EUR side (4,000 x 1.1 = 4,400: a lot of 0.1 BTC, basis 4,400; the BTC fee has no
    # price here, so it is a zero-proceeds fee disposal of 0.0001 BTC, basis 4.4); the subscription moves 0.05 BTC
    # to earn with its basis (2,200) and acquisition time
    opened = datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert [tuple(l) for l in lots] == [("earn", Decimal("0.05"), 2200, opened), ("spot", Decimal("0.0499"),
                                                                                  Decimal("2195.6"), opened)]
    assert [(r["date"], r["source"], r["source_raw_id"] is not None) for r in failing] == [("2024-03-03", "binance_export", True)]
    assert '"Some New Binance Operation"' in failing[0]["raw_record"]
