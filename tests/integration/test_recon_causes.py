"""Planted faults, one per cause code: each break is found, and its top-ranked cause names the fault
with evidence pointing at the right legs. Real import, canonical build and GX check on PostgreSQL."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from reconciliation.outages import record_source_outage
from tests.integration.recon_ledgers import Row, changed, funded, reconcile, stage, ts, without


def _only(breaks: list[dict], day: str) -> dict:
    found = [b for b in breaks if b["date"] == day]
    assert len(found) == 1, breaks
    return found[0]


def _codes(brk: dict) -> list[str]:
    return [c["code"] for c in brk["causes"]]


def test_clean_ledger_has_no_break(engine, database_url) -> None:
    truth = funded() + [
        Row("B1", ts(2), "BUY", "BTC", "2", "Kraken", unit_price_usd="90000", fee_asset="USD", fee_amount="90"),
        Row("T1", ts(3), "TRANSFER_OUT", "BTC", "1", "Kraken", tx_hash="0xa1"),
        Row("T2", ts(3, "12:30"), "TRANSFER_IN", "BTC", "1", "Cold", "wallet", tx_hash="0xa1"),
    ]
    stage(engine, "clean", truth, truth, 5)
    assert reconcile(engine, database_url, "clean", 5) == []


def test_unmatched_transfer(engine, database_url) -> None:
    truth = funded() + [
        Row("B1", ts(1), "BUY", "BTC", "3", "Kraken", unit_price_usd="90000"),
        Row("T1", ts(3, "10:00"), "TRANSFER_OUT", "BTC", "1.25", "Kraken", tx_hash="0xabc"),
        Row("T2", ts(3, "10:20"), "TRANSFER_IN", "BTC", "1.25", "Cold", "wallet", tx_hash="0xabc"),
    ]
    stage(engine, "e1", without(truth, "T2"), truth, 4)
    brk = _only(reconcile(engine, database_url, "e1", 4), "2026-01-03")
    assert (brk["account"], brk["asset"], brk["difference"]) == ("Cold", "BTC", "1.25")
    top = brk["causes"][0]
    assert top["code"] == "unmatched_transfer" and top["rank"] == 1
    assert "0xabc" in top["evidence"] and "Kraken" in top["evidence"]
    assert top["data"]["quantity"] == "-1.25"


def test_missing_leg_of_a_recurring_stream(engine, database_url) -> None:
    truth = [Row(f"S{d}", ts(d, "03:00"), "STAKING_REWARD", "SOL", f"1.{d}00000001", "Staking", "wallet",
                 unit_price_usd="150") for d in range(1, 9)]
    stage(engine, "e2", without(truth, "S6"), truth, 8)
    brk = _only(reconcile(engine, database_url, "e2", 8), "2026-01-06")
    assert brk["difference"] == "1.600000001"
    top = brk["causes"][0]
    assert top["code"] == "missing_leg"
    assert "staking_reward" in top["evidence"] and top["data"]["days_seen"] == 5


def test_duplicate_leg(engine, database_url) -> None:
    truth = funded() + [Row("B1", ts(2), "BUY", "ETH", "10", "Kraken", unit_price_usd="3000")]
    booked = truth + [Row("B1-dup", ts(2), "BUY", "ETH", "10", "Kraken", unit_price_usd="3000")]
    stage(engine, "e3", booked, truth, 3)
    breaks = reconcile(engine, database_url, "e3", 3)
    eth = next(b for b in breaks if b["asset"] == "ETH")
    usd = next(b for b in breaks if b["asset"] == "USD")
    assert eth["difference"] == "-10" and usd["difference"] == "30000"
    assert _codes(eth)[0] == _codes(usd)[0] == "duplicate_leg"
    assert len(eth["causes"][0]["data"]["leg_ids"]) == 2


def test_fee_missing_from_a_trade(engine, database_url) -> None:
    history = [Row(f"P{d}", ts(d), "BUY", "SOL", "100", "Kraken", unit_price_usd="150", fee_asset="USD",
                   fee_amount="37.5") for d in range(1, 4)]
    truth = funded() + history + [
        Row("S1", ts(4, "12:49"), "SELL", "SOL", "200", "Kraken", unit_price_usd="155", fee_asset="USD", fee_amount="77.5")]
    stage(engine, "e4", changed(truth, "S1", fee_asset="", fee_amount=""), truth, 5)
    brk = _only(reconcile(engine, database_url, "e4", 5), "2026-01-04")
    assert (brk["asset"], brk["difference"]) == ("USD", "-77.5")
    top = brk["causes"][0]
    assert top["code"] == "fee" and top["data"]["fee_rate"] == "0.0025"
    assert "no fee leg" in top["evidence"]


def test_missing_stream_when_the_source_was_down(engine, database_url) -> None:
    truth = funded("Binance", "futures") + [
        Row("FU1", ts(2, "08:00"), "INCOME", "USD", "412.17", "Binance", "futures", unit_price_usd="1", sub_account="perp-1"),
        Row("FU0", ts(1, "08:00"), "INCOME", "USD", "10", "Binance", "futures", unit_price_usd="1", sub_account="perp-1"),
    ]
    entity_id = stage(engine, "e5", without(truth, "FU1"), truth, 3)
    with engine.begin() as conn:
        record_source_outage(conn, entity_id, "csv", date(2026, 1, 2), "funding endpoint returned 503 all day",
                             stream="funding")
    brk = _only(reconcile(engine, database_url, "e5", 3), "2026-01-02")
    assert (brk["account_type"], brk["sub_account"], brk["difference"]) == ("futures", "perp-1", "412.17")
    top = brk["causes"][0]
    assert top["code"] == "missing_stream" and "503" in top["evidence"]
    assert "missing_stream" in _codes(brk)[1:]  # also: a futures account without funding legs


def test_unknown_asset(engine, database_url) -> None:
    truth = [Row("A1", ts(2), "AIRDROP", "ZZTOP", "100.123456789", "Cold", "wallet", unit_price_usd="0.1")]
    booked = changed(truth, "A1", quantity="100.123456789123456789")
    stage(engine, "e6", booked, truth, 3)
    brk = _only(reconcile(engine, database_url, "e6", 3), "2026-01-02")
    assert brk["asset"] == "ZZTOP" and brk["difference"] == "-0.000000000123456789"
    assert _codes(brk)[0] == "unknown_asset"


def test_timing_difference_reverses_the_next_day(engine, database_url) -> None:
    truth = funded() + [Row("D1", ts(3, "23:50"), "INCOME", "USD", "5000", "Kraken", unit_price_usd="1")]
    booked = changed(truth, "D1", timestamp=ts(4, "00:10"))
    stage(engine, "e7", booked, truth, 5)
    breaks = reconcile(engine, database_url, "e7", 5)
    assert [(b["date"], b["difference"]) for b in breaks] == [("2026-01-03", "5000"), ("2026-01-04", "-5000")]
    for brk in breaks:
        assert brk["causes"][0]["code"] == "timing"
    assert any("min after the cutoff" in c["evidence"] for c in breaks[0]["causes"])


def test_exchange_tolerance_is_per_source_and_wallets_are_exact(engine, database_url) -> None:
    truth = funded() + [Row("B1", ts(2), "BUY", "ETH", "1.000000001", "Kraken", unit_price_usd="3000"),
                        Row("W1", ts(2), "AIRDROP", "ETH", "1.000000001", "Cold", "wallet", unit_price_usd="3000")]
    stage(engine, "e8", truth, truth, 3, rounding={"ETH": "0.00000001"})
    breaks = reconcile(engine, database_url, "e8", 3)
    # the exchange's rounded balance is inside the default 1e-8; the wallet's is not (exact in base units)
    assert [(b["account"], b["asset"], b["tolerance"]) for b in breaks] == [("Cold", "ETH", "0")]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO source_tolerances (source, tolerance) VALUES ('csv', 0)"))
    breaks = reconcile(engine, database_url, "e8", 3)
    assert sorted((b["account"], b["tolerance"]) for b in breaks) == [("Cold", "0"), ("Kraken", "0")]


def test_a_clean_multi_month_ledger_has_zero_breaks(engine, database_url, tmp_path) -> None:
    """A generated ledger (4 accounts: exchanges and wallets, trades and internal transfers, daily balances for a
    year) closes January to April with every (account, asset, day) checked and not one break."""
    import importlib.util
    import sys
    from pathlib import Path

    from ingestion.csv_files import CsvFile, import_csv
    from reconciliation.completeness import check_completeness
    from transforms.canonical import build_canonical
    from warehouse.entities import get_or_create_entity

    path = Path(__file__).resolve().parents[2] / "samples" / "generate.py"
    spec = importlib.util.spec_from_file_location("coinfrs_sample_generator", path)
    generator = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, generator)  # its dataclasses look their module up
    spec.loader.exec_module(generator)
    summary = generator.generate_bench(tmp_path, years=1, rows=400, accounts=4, start="2025-01-01")
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "clean-year")
        import_csv(conn, entity.id, "ledger", CsvFile.from_path(tmp_path / "ledger.csv"))
        import_csv(conn, entity.id, "balances", CsvFile.from_path(tmp_path / "balances.csv"))
    first, last = date(2025, 1, 1), date(2025, 4, 30)
    with engine.begin() as conn:
        build_canonical(conn, entity, first, last)
    result = check_completeness(database_url, entity, first, last)
    assert summary["days"] == 365 and summary["transfers"] > 0
    assert len(result.checked_per_day) == 120 and sum(result.checked_per_day.values()) > 120 * 4
    assert result.breaks == [] and result.gx_success
