"""An exchange withdrawal to the entity's own wallet (issue 12, item 4): the exchange reports a `withdrawal`, the
wallet a `deposit` (or a chain `transfer_in`) with the same tx hash. Matched, the pair moves the lot with its basis
and date and makes no PnL; the same withdrawal to an address the entity does not own stays external.

Worked by hand: buy 1 BTC on the exchange at 100 (Jan 1); withdraw it to the wallet (Jan 5, BTC then 150); sell it
from the wallet at 200 (Jan 6). Matched: one lot of basis 100 moves, the sale gains 100 in both books. Unmatched
(another tx hash on the wallet side), the withdrawal leaves at basis and the deposit enters at fair value 150: the sale
gains only 50, and 100 - 50 of gain is lost to the external flows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from transforms.canonical import build_canonical
from transforms.pnl import build_pnl
from warehouse.entities import get_or_create_entity

HEADER = ("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,"
          "tx_hash,external_id,notes\n")


def _ledger(wallet_hash: str) -> str:
    return HEADER + "".join([
        "f1,2026-01-01T09:00:00Z,DEPOSIT,USD,1000,1,,,,,Exchange,,,funding\n",
        "b1,2026-01-01T10:00:00Z,BUY,BTC,1,100,,,USD,100,Exchange,,,\n",
        "w1,2026-01-05T10:00:00Z,WITHDRAWAL,BTC,1,150,,,,,Exchange,0xabc,,to our cold wallet\n",
        f"d1,2026-01-05T10:20:00Z,DEPOSIT,BTC,1,150,,,,,Cold Wallet,{wallet_hash},,\n",
        "s1,2026-01-06T10:00:00Z,SELL,BTC,1,200,,,USD,200,Cold Wallet,,,\n",
    ])


def _close(engine: sa.Engine, name: str, ledger: str) -> dict[str, Decimal]:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, name)
        import_csv(conn, entity.id, "ledger", CsvFile(f"{name}.csv", ledger))
        build_canonical(conn, entity, date(2026, 1, 1), date(2026, 1, 6))
        build_pnl(conn, entity, date(2026, 1, 1), date(2026, 1, 6))
        gains = dict(conn.execute(sa.text(
            "SELECT pool, sum(realized_gain) FROM pnl_disposals WHERE entity_id = :e AND method = 'fifo' GROUP BY pool"),
            dict(e=entity.id)).all())
        transfers = conn.execute(sa.text(
            "SELECT status, matched_by FROM transfers WHERE entity_id = :e ORDER BY id"), dict(e=entity.id)).all()
    return {"universal": gains["universal"], "account": gains["account"], "transfers": transfers}


def test_a_withdrawal_to_an_owned_wallet_matched_by_tx_hash_moves_the_lot(engine) -> None:
    matched = _close(engine, "own-wallet", _ledger("0xabc"))
    # the USD funding deposit has no counterpart: an external transfer, flagged for review
    assert matched["transfers"] == [("unmatched_in", None), ("matched", "tx_hash")]
    assert matched["universal"] == Decimal("100") and matched["account"] == Decimal("100")


def test_a_withdrawal_to_someone_else_stays_external(engine) -> None:
    external = _close(engine, "other-wallet", _ledger("0xdef"))
    # unmatched (the hashes differ, so amount and time cannot pair them): external transfers, flagged for review
    assert external["transfers"] == [("unmatched_in", None), ("unmatched_out", None), ("unmatched_in", None)]
    assert external["universal"] == Decimal("50") and external["account"] == Decimal("50")
