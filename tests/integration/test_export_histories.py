"""Each exchange export closes against the balances its exchange reported: a generated history whose balances agree
closes every day with zero breaks, and one record left out of the export is a break on its day with its cause.

The Coinbase Exchange statement proves itself (its running ``balance`` column is the reported position); Binance,
Coinbase and Nexo exports carry no balances, so the exchange's end-of-day balances come in a balances CSV. Formats
and their sources: tests/unit/test_export_mappings.py."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from orchestration.close_runner import close_days
from tests.integration.export_histories import (COINBASE_PREAMBLE, History, binance_history, coinbase_exchange_statement,
                                                coinbase_transactions, nexo_transactions)
from tests.integration.manual_prices import price_known_assets
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks


def _close(engine, history: History, kind: str, export: str, balances: bool):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        import_csv(conn, entity.id, kind, CsvFile(f"{kind}.csv", export))
        if balances:
            import_csv(conn, entity.id, "balances", CsvFile("balances.csv", history.balances_csv()))
    price_known_assets(engine, "acme", history.first - timedelta(days=1), extra=("EUR",))
    run = close_days(["acme"], history.first, history.last_day(), instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        breaks = list_breaks(conn, entity.id, history.first, history.last_day())
        kinds = dict(conn.execute(sa.text("SELECT kind, count(*) FROM transactions GROUP BY 1")).all())
        # moves between the file's own accounts all match; external deposits and withdrawals (fiat in, a send to
        # someone else) are flagged for review as unmatched_in / unmatched_out by design (transforms/transfer_matching.py)
        unmatched = conn.execute(sa.text(
            "SELECT count(*) FROM transfers tr JOIN transactions t ON t.id = coalesce(tr.out_leg_id, tr.in_leg_id)"
            " WHERE tr.status <> 'matched' AND t.kind IN ('transfer_out', 'transfer_in')")).scalar()
    return breaks, kinds, unmatched


CASES = {
    "binance": (binance_history, "binance-export", True, "interest-3", ("earn", "USDT", Decimal("0.27"))),
    "coinbase-exchange": (coinbase_exchange_statement, "coinbase-exchange", False, "fee-3-buy", None),
    "coinbase": (coinbase_transactions, "coinbase", True, "staking-3", ("spot", "ETH", Decimal("0.00021"))),
    "nexo": (nexo_transactions, "nexo", True, "interest-3", ("wallet", "USDC", Decimal("1.35"))),
}


def _export(name: str, history: History, drop: str = "") -> str:
    text = history.csv(drop)
    return COINBASE_PREAMBLE + text if name == "coinbase" else text


@pytest.mark.parametrize("name", CASES)
def test_a_generated_history_closes_every_day_with_zero_breaks(engine, name):
    make, kind, balances, _, _ = CASES[name]
    history = make()
    breaks, kinds, unmatched = _close(engine, history, kind, _export(name, history), balances)
    assert breaks == []
    assert "unclassified" not in kinds and unmatched == 0


@pytest.mark.parametrize("name", CASES)
def test_a_record_left_out_is_a_break_on_its_day_with_its_cause(engine, name):
    make, kind, balances, drop, expected = CASES[name]
    history = make()
    dropped = next(r for r in history.rows if r.tag == drop)
    breaks, _, _ = _close(engine, history, kind, _export(name, history, drop), balances)
    first = [b for b in breaks if b["date"] == dropped.when.date().isoformat()]
    assert breaks and min(b["date"] for b in breaks) == dropped.when.date().isoformat()
    if expected is None:  # the Coinbase Exchange fee: the statement's own balance is lower by exactly the fee
        (account_type, asset, quantity), = dropped.effects
        expected = (account_type, asset, quantity)
    (found,) = [b for b in first if (b["account_type"], b["asset"]) == expected[:2]]
    assert Decimal(found["difference"]) == expected[2]
    codes = [c["code"] for c in found["causes"]]
    assert ("fee" if name == "coinbase-exchange" else "missing_leg") in codes, found["causes"]


def test_a_corrupt_nexo_export_through_the_cli_names_line_and_field_and_loads_nothing(engine, tmp_path):
    from typer.testing import CliRunner

    from orchestration.cli import app

    text = nexo_transactions().csv().replace("NXT000003,Exchange,USDC,-2000", "NXT000003,Exchange,USDC,-2,000")
    path = tmp_path / "nexo.csv"
    path.write_text(text + "NXT999999,Deposit,BTC,1,BTC,1,$1,approved / x,2026-02-30 10:00:00\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import-csv", str(path), "--entity", "acme", "--create", "--kind", "nexo"])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if t.startswith("NXT000003,"))
    assert f"line {line}, field 'Date / Time (UTC)': expected 9 values, found 10" in output  # unquoted thousands separator
    assert "field 'date / time (utc)'" in output and "nothing was imported" in output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw_records")).scalar() == 0
