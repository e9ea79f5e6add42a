"""Internal transfers matched without a common tx hash: same entity and asset, the incoming quantity equal to the
outgoing one less at most the fee tolerance, inside the time window; the closest in time wins. Real import and
canonical build on PostgreSQL."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from reconciliation.blocking import ReconPolicy, write_policy
from tests.integration.recon_ledgers import Row, funded, stage, ts
from transforms.canonical import build_canonical
from warehouse.entities import resolve_entity
from warehouse.numbers import D

D1, D4 = date(2026, 1, 1), date(2026, 1, 4)


def _build(engine, name: str, start: date = D1, end: date = D4) -> None:
    with engine.begin() as conn:
        build_canonical(conn, resolve_entity(conn, name), start, end)


def _transfers(engine, entity_id: int) -> list[tuple]:
    """(status, matched_by, outgoing leg's account and quantity, incoming leg's account and quantity)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            """SELECT x.status, x.matched_by, oa.name, o.quantity::text, ia.name, i.quantity::text
               FROM transfers x
               LEFT JOIN transactions o ON o.id = x.out_leg_id LEFT JOIN accounts oa ON oa.id = o.account_id
               LEFT JOIN transactions i ON i.id = x.in_leg_id LEFT JOIN accounts ia ON ia.id = i.account_id
               WHERE x.entity_id = :e ORDER BY x.status, oa.name NULLS LAST, ia.name NULLS LAST"""), dict(e=entity_id))]


def test_a_withdrawal_and_its_deposit_match_by_amount_less_fee_and_time(engine) -> None:
    rows = funded() + [
        Row("B1", ts(1), "BUY", "BTC", "3", "Kraken", unit_price_usd="90000"),
        Row("W1", ts(2, "10:00"), "TRANSFER_OUT", "BTC", "1", "Kraken"),  # the exchange gives no hash
        Row("D1", ts(2, "10:40"), "TRANSFER_IN", "BTC", "0.9995", "Cold", "wallet", tx_hash="0xfeed"),
        # not matched: 2 % short of the outgoing quantity (over the 1 % tolerance) ...
        Row("W2", ts(3, "08:00"), "TRANSFER_OUT", "BTC", "0.5", "Kraken"),
        Row("D2", ts(3, "08:05"), "TRANSFER_IN", "BTC", "0.49", "Cold", "wallet"),
        # ... 3 hours apart (over the 2 h window) ...
        Row("W3", ts(4, "01:00"), "TRANSFER_OUT", "BTC", "0.25", "Kraken"),
        Row("D3", ts(4, "04:00"), "TRANSFER_IN", "BTC", "0.25", "Cold", "wallet"),
        # ... two different hashes: two different transactions
        Row("W4", ts(4, "12:00"), "TRANSFER_OUT", "BTC", "0.125", "Kraken", tx_hash="0x01"),
        Row("D4", ts(4, "12:01"), "TRANSFER_IN", "BTC", "0.125", "Cold", "wallet", tx_hash="0x02"),
    ]
    entity_id = stage(engine, "fallback", rows, rows, 4)
    _build(engine, "fallback")
    found = _transfers(engine, entity_id)
    assert found[0] == ("matched", "amount_time", "Kraken", "-1", "Cold", "0.9995")
    assert sorted(r[3] or r[5] for r in found[1:]) == ["-0.125", "-0.25", "-0.5", "0.125", "0.25", "0.49"]
    assert {r[0] for r in found[1:]} == {"unmatched_out", "unmatched_in"}
    with engine.connect() as conn:  # both legs name their counterpart account
        counterparts = conn.execute(sa.text(
            """SELECT a.name, c.name FROM transactions l JOIN accounts a ON a.id = l.account_id
               JOIN accounts c ON c.id = l.counterparty_account_id ORDER BY l.quantity""")).all()
    assert [tuple(r) for r in counterparts] == [("Kraken", "Cold"), ("Cold", "Kraken")]

    # the entity widens its window and fee tolerance: the 3-hour and 2 % pairs match too; a rebuild is idempotent
    with engine.begin() as conn:
        write_policy(conn, entity_id, ReconPolicy(transfer_window_seconds=4 * 3600, transfer_fee_tolerance=D("0.025")))
    for _ in range(2):
        _build(engine, "fallback")
        assert [r[:2] for r in _transfers(engine, entity_id)] == [("matched", "amount_time")] * 3 + [
            ("unmatched_in", None), ("unmatched_out", None)]


def test_the_closest_in_time_wins_an_ambiguous_match(engine) -> None:
    rows = funded() + [
        Row("B1", ts(1), "BUY", "ETH", "20", "Kraken", unit_price_usd="3000"),
        Row("B2", ts(1), "BUY", "ETH", "20", "Binance", unit_price_usd="3000"),
        # two withdrawals of 5 ETH, one deposit of 4.99: the one 10 minutes before it wins, not the one 60 minutes before
        Row("W1", ts(2, "09:00"), "TRANSFER_OUT", "ETH", "5", "Kraken"),
        Row("W2", ts(2, "09:50"), "TRANSFER_OUT", "ETH", "5", "Binance"),
        Row("D1", ts(2, "10:00"), "TRANSFER_IN", "ETH", "4.99", "Cold", "wallet"),
        # one withdrawal, two deposits exactly as close: the tie goes to the first leg booked (lowest id), every time
        Row("W3", ts(3, "12:00"), "TRANSFER_OUT", "ETH", "2", "Kraken"),
        Row("D2", ts(3, "11:30"), "TRANSFER_IN", "ETH", "2", "Cold", "wallet"),
        Row("D3", ts(3, "12:30"), "TRANSFER_IN", "ETH", "2", "Vault", "vault"),
    ]
    entity_id = stage(engine, "ambiguous", rows, rows, 4)
    for _ in range(2):
        _build(engine, "ambiguous")
        assert _transfers(engine, entity_id) == [
            ("matched", "amount_time", "Binance", "-5", "Cold", "4.99"),
            ("matched", "amount_time", "Kraken", "-2", "Cold", "2"),
            ("unmatched_in", None, None, None, "Vault", "2"),
            ("unmatched_out", None, "Kraken", "-5", None, None),
        ]


def test_a_transfer_across_midnight_matches_when_the_days_close_one_by_one(engine) -> None:
    rows = funded() + [
        Row("B1", ts(1), "BUY", "SOL", "100", "Kraken", unit_price_usd="150"),
        Row("W1", ts(2, "23:30"), "TRANSFER_OUT", "SOL", "40", "Kraken"),
        Row("D1", ts(3, "00:30"), "TRANSFER_IN", "SOL", "39.99", "Phantom", "wallet"),
    ]
    entity_id = stage(engine, "midnight", rows, rows, 4)
    for day in (D1, date(2026, 1, 2), date(2026, 1, 3), D4):
        _build(engine, "midnight", day, day)
    assert _transfers(engine, entity_id) == [("matched", "amount_time", "Kraken", "-40", "Phantom", "39.99")]
