"""One transfer matcher (issue 12 item 4, issue 15 item 5): the same ledger through the file engine
(``coinfrs pnl compute --ledger``) and the database close (closed one day at a time) gives the same transfer
matches and the same PnL, in both pools.

The hand-worked example (docs/cost-basis.md, "Transfers between owned accounts"): buy 1 ETH on the exchange for
2,000. The exchange withdraws 1 ETH to the entity's wallet (ETH at 2,500): it sends 0.995 and keeps 0.005 as its
fee (the ledger books the withdrawal 0.995 and the fee 0.005, as Binance and Kraken report them); the wallet receives 0.995 two hours later, no tx hash.
Matched by amount and time: the 0.995 ETH lot (basis 1,990) moves to the wallet with its date; the fee is an expense,
a disposal at fair value (proceeds 12.50, basis 10, gain 2.50). The wallet sells the 0.995 ETH for 2,985: gain 995.
Had the wallet's receipt come later than the window, the withdrawal would leave at basis and the receipt would enter
at fair value (2,487.50): gain 497.50."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from transforms.canonical import build_canonical
from transforms.cost_basis import compute_book
from transforms.ledger_books import map_ledger_files
from transforms.pnl import build_pnl
from warehouse.entities import get_or_create_entity

HEADER = "id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash\n"
HAND_WORKED = [
    "b1,2026-03-01T09:00:00Z,BUY,ETH,1,2000,,,USD,2000,Exchange,",
    "w1,2026-03-02T10:00:00Z,WITHDRAWAL,ETH,0.995,2500,ETH,0.005,,,Exchange,",   # 1 ETH out: 0.995 sent + 0.005 fee
    "d1,{received},TRANSFER_IN,ETH,0.995,2500,,,,,Wallet,",                      # no tx hash
    "s1,2026-03-04T09:00:00Z,SELL,ETH,0.995,3000,,,USD,2985,Wallet,",
]
OTHERS = [
    "f1,2026-03-01T08:00:00Z,DEPOSIT,USD,100000,1,,,,,Exchange,",                # external: flagged
    "b2,2026-03-01T09:30:00Z,BUY,BTC,1,40000,,,USD,40000,Exchange,",
    "b3,2026-03-01T09:40:00Z,BUY,SOL,30,100,,,USD,3000,Exchange,",
    # by tx hash, across midnight: the custodian reports it 40 minutes later
    "w2,2026-03-02T23:40:00Z,WITHDRAWAL,BTC,0.5,41000,,,,,Exchange,0xaaa",
    "d2,2026-03-03T00:20:00Z,DEPOSIT,BTC,0.5,41000,,,,,Custodian,0xaaa",
    # look-alikes: two 10 SOL out, one 9.99 in at 10:50: the closest (10:30) wins; the other waits for 11:05
    "o1,2026-03-02T10:00:00Z,TRANSFER_OUT,SOL,10,110,,,,,Exchange,",
    "o2,2026-03-02T10:30:00Z,TRANSFER_OUT,SOL,10,110,,,,,Exchange,",
    "i1,2026-03-02T10:50:00Z,TRANSFER_IN,SOL,9.99,110,,,,,Wallet,",
    "i2,2026-03-02T13:05:00Z,DEPOSIT,SOL,10,110,,,,,Custodian,",                # 3h05 after o1: outside the window
    # beyond the tolerance (2 % less arrives): external both ways
    "w3,2026-03-03T08:00:00Z,WITHDRAWAL,BTC,0.1,42000,,,,,Exchange,",
    "d3,2026-03-03T08:10:00Z,TRANSFER_IN,BTC,0.098,42000,,,,,Wallet,",
    "s2,2026-03-04T10:00:00Z,SELL,BTC,0.5,45000,,,USD,22500,Custodian,",
    "s3,2026-03-04T11:00:00Z,SELL,SOL,9.99,120,,,USD,1198.8,Wallet,",
    "s4,2026-03-04T12:00:00Z,SELL,BTC,0.098,45000,,,USD,4410,Wallet,",
]
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 4)


def _ledger(received: str = "2026-03-02T12:00:00Z", others: bool = True) -> str:
    return HEADER + "\n".join([r.format(received=received) for r in HAND_WORKED] + (OTHERS if others else [])) + "\n"


def _database_close(conn, name: str, ledger: str) -> tuple[set, dict]:
    entity = get_or_create_entity(conn, name)
    import_csv(conn, entity.id, "ledger", CsvFile(f"{name}.csv", ledger))
    day = FIRST
    while day <= LAST:  # as the schedule does: one day at a time
        build_canonical(conn, entity, day, day)
        day += timedelta(days=1)
    build_pnl(conn, entity, FIRST, LAST)
    legs = """SELECT l.id, l.ts, a.name AS account, s.symbol, l.kind, l.quantity FROM transactions l
              JOIN accounts a ON a.id = l.account_id JOIN assets s ON s.id = l.asset_id WHERE l.entity_id = :e"""
    rows = {r.id: r for r in conn.execute(sa.text(legs), dict(e=entity.id))}
    transfers = set()
    for x in conn.execute(sa.text("SELECT out_leg_id, in_leg_id, status, matched_by FROM transfers WHERE entity_id = :e"),
                          dict(e=entity.id)):
        out, in_ = rows.get(x.out_leg_id), rows.get(x.in_leg_id)
        transfers.add((_key(out), _key(in_), x.status, x.matched_by if x.status == "matched" else None))
    disposals = {}
    for pool in ("universal", "account"):
        disposals[pool] = [tuple(r) for r in conn.execute(sa.text(
            """SELECT d.ts, s.symbol, d.kind, d.quantity, d.proceeds, d.cost_basis, d.realized_gain FROM pnl_disposals d
               JOIN assets s ON s.id = d.asset_id WHERE d.entity_id = :e AND d.method = 'fifo' AND d.pool = :p
               ORDER BY d.ts, d.leg_id"""), dict(e=entity.id, p=pool))]
    return transfers, disposals


def _key(leg) -> tuple | None:
    return None if leg is None else (leg.ts, leg.account, leg.symbol, leg.kind, Decimal(leg.quantity).normalize())


def _file_engine(ledger: str) -> tuple[set, dict]:
    mapped = map_ledger_files([CsvFile("ledger.csv", ledger)])
    legs = {l.id: l for l in mapped.legs}

    def key(leg_id: int | None) -> tuple | None:
        if leg_id is None:
            return None
        l = legs[leg_id]
        return (l.ts, mapped.accounts[l.account_id], mapped.assets[l.asset_id], l.kind, l.quantity.normalize())

    found = mapped.transfers
    transfers = ({(key(m.out_id), key(m.in_id), "matched", m.matched_by) for m in found.matches}
                 | {(key(i), None, "unmatched_out", None) for i in found.unmatched_out}
                 | {(None, key(i), "unmatched_in", None) for i in found.unmatched_in})
    disposals = {}
    for pool in ("universal", "account"):
        book = compute_book(mapped.legs, pool=pool)
        disposals[pool] = [(d.ts, mapped.assets[d.asset_id], d.kind, d.quantity, d.proceeds, d.cost_basis,
                            d.realized_gain) for d in book.disposals]
    return transfers, disposals


def _legs_named(transfers: set) -> set:
    """(out, in, status, matched_by) with each leg as 'account kind quantity asset'."""
    name = lambda k: None if k is None else f"{k[1]} {k[3]} {k[4]:f} {k[2]}"  # noqa: E731
    return {(name(o), name(i), status, by) for o, i, status, by in transfers}


def test_the_file_engine_and_the_database_close_match_the_same_transfers_and_book_the_same_pnl(engine):
    ledger = _ledger()
    with engine.begin() as conn:
        db_transfers, db_disposals = _database_close(conn, "both-engines", ledger)
    file_transfers, file_disposals = _file_engine(ledger)
    assert db_transfers == file_transfers
    assert db_disposals == file_disposals
    assert _legs_named(file_transfers) == {
        ("Exchange withdrawal -0.995 ETH", "Wallet transfer_in 0.995 ETH", "matched", "amount_time"),
        ("Exchange withdrawal -0.5 BTC", "Custodian deposit 0.5 BTC", "matched", "tx_hash"),
        ("Exchange transfer_out -10 SOL", "Wallet transfer_in 9.99 SOL", "matched", "amount_time"),
        ("Exchange transfer_out -10 SOL", None, "unmatched_out", None),
        (None, "Custodian deposit 10 SOL", "unmatched_in", None),
        ("Exchange withdrawal -0.1 BTC", None, "unmatched_out", None),
        (None, "Wallet transfer_in 0.098 BTC", "unmatched_in", None),
        (None, "Exchange deposit 100000 USD", "unmatched_in", None),
    }
    matched_sol = [t for t in file_transfers if t[2] == "matched" and t[0][2] == "SOL"]
    assert matched_sol[0][0][0].hour == 10 and matched_sol[0][0][0].minute == 30  # the closest out won


def _gains(disposals: list[tuple]) -> list[tuple]:
    return [(symbol, kind, quantity, proceeds, basis, gain) for _, symbol, kind, quantity, proceeds, basis, gain
            in disposals if symbol == "ETH"]


@pytest.mark.parametrize("received, expected", [
    ("2026-03-02T12:00:00Z", [("ETH", "fee", Decimal("0.005"), Decimal("12.5"), Decimal("10"), Decimal("2.5")),
                              ("ETH", "sale", Decimal("0.995"), Decimal("2985"), Decimal("1990"), Decimal("995"))]),
    # one second past the two-hour window: external both ways, the receipt enters at fair value 2,487.50
    ("2026-03-02T12:00:01Z", [("ETH", "fee", Decimal("0.005"), Decimal("12.5"), Decimal("10"), Decimal("2.5")),
                              ("ETH", "sale", Decimal("0.995"), Decimal("2985"), Decimal("2487.5"), Decimal("497.5"))]),
])
def test_the_hand_worked_example(engine, received, expected):
    ledger = _ledger(received, others=False)
    with engine.begin() as conn:
        db_transfers, db_disposals = _database_close(conn, "hand-worked", ledger)
    file_transfers, file_disposals = _file_engine(ledger)
    assert db_transfers == file_transfers and db_disposals == file_disposals
    for pool in ("universal", "account"):
        assert _gains(file_disposals[pool]) == expected
    statuses = sorted(t[2] for t in file_transfers)
    assert statuses == (["matched"] if received.endswith("12:00:00Z") else ["unmatched_in", "unmatched_out"])
