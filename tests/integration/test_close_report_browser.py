"""The close report as an accountant sees it: written by `coinfrs recon report`, opened in a real headless Chromium
(``tests/support/browser.py``), its text checked on screen and as printed, and printed to PDF.

The figures are worked by hand (docs/close.md, "The close report"):
- Kraken: funded 1,000,000 USD; buys 2 BTC at 90,000 + 90 fee (basis 180,090); sells 0.5 BTC at 95,000 whose
  20 USD fee the ledger misses: 867,410 USD by the ledger, 867,390 reported, a break of -20 (cause: fee).
  Realized: 47,500 - 0.5/2 x 180,090 = 2,477.50. Open: 1.5 BTC, basis 135,067.50, worth 142,500.00 at 95,000,
  unrealized 7,432.50. Kraken's market value: 867,410 + 142,500 = 1,009,910.00.
- Binance: buys 3 ETH at 3,000 (9,000 USD, so USD -9,000): market value 9,000 - 9,000 = 0.00; a deposit of
  1,000 FOO that has no price: unpriced, left out of NAV and listed.
- Entity NAV on 2026-01-02: 1,009,910.00.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.close_runner import close_days
from reconciliation.periods import Period, lock_period, sign_off
from tests.integration.recon_ledgers import Row, changed, funded, stage, ts
from tests.support.browser import find_chromium, render
from warehouse.entities import resolve_entity

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed: `apt-get install -y chromium` (Debian's package; .ci/run installs it)")


def _truth() -> list[Row]:
    return funded() + [
        Row("B1", ts(1, "10:00"), "BUY", "BTC", "2", "Kraken", unit_price_usd="90000", fee_asset="USD", fee_amount="90"),
        Row("S1", ts(2, "11:00"), "SELL", "BTC", "0.5", "Kraken", unit_price_usd="95000", fee_asset="USD", fee_amount="20"),
        Row("B2", ts(2, "12:00"), "BUY", "ETH", "3", "Binance", unit_price_usd="3000"),
        Row("D1", ts(2, "13:00"), "TRANSFER_IN", "FOO", "1000", "Binance"),
    ]


def _report(entity: str, day: str, out: Path):
    result = CliRunner().invoke(app, ["recon", "report", "--entity", entity, "--date", day, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return render(out)


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_the_close_report_in_a_browser_shows_nav_gains_breaks_unpriced_banner_and_prints(engine, tmp_path) -> None:
    truth = _truth()
    stage(engine, "fund-r", changed(truth, "S1", fee_asset="", fee_amount=""), truth, 2)
    assert close_days(["fund-r"], date(2026, 1, 1), date(2026, 1, 2), instance=dg.DagsterInstance.ephemeral()).success
    with engine.begin() as conn:
        entity = resolve_entity(conn, "fund-r")
        day1 = Period("through", None, date(2026, 1, 1))
        lock_period(conn, entity, day1, by="alice", reason="day one reconciled")
        sign_off(conn, entity, day1, role="preparer", by="alice")
        sign_off(conn, entity, day1, role="reviewer", by="bob")

    shown = _report("fund-r", "2026-01-02", tmp_path / "close.html")
    lines = _lines(shown.screen_text)
    assert shown.title == "Close fund-r 2026-01-02"
    assert lines[0] == "Open: this day is not locked; its figures can still change."
    assert "Status: breaks — 1 open break(s)" in lines
    assert "Net asset value (market value of every position) (excludes 1 unpriced item(s)) 1,009,910.00" in lines
    assert "Realized gain, FIFO, universal pool 2,477.50" in lines
    assert "Unrealized gain, FIFO, universal pool 7,432.50" in lines
    # per account and the entity total
    assert "Kraken (spot) 1,009,910.00 135,067.50 7,432.50 2,477.50" in lines
    assert "Binance (spot) 0.00 * 9,000.00 0.00 0.00" in lines
    assert "Entity total (NAV) — fund-r 1,009,910.00 * 144,067.50 7,432.50 2,477.50" in lines
    assert "Kraken (spot) BTC 1.5 1.5 95,000 142,500.00" in lines
    assert "Binance (spot) FOO 1,000 1,000 unpriced unpriced" in lines
    assert "Entity total (NAV) 1,009,910.00" in lines
    # the break in quantity and in USD, with its cause; the unpriced item
    assert "Kraken (spot) USD 867,410 867,390 -20 -20.00 open fee" in lines
    assert "Unpriced items (1)" in lines and "Binance (spot) FOO 1,000 no close price for the day" in lines
    # provenance, readable: no raw JSON, no 18-decimal figures anywhere
    assert "Appendix A. Provenance" in lines and "legs booked on the day 5" in lines  # S1 and B2: two legs each; D1: one
    assert any(line.startswith("csv/ledger staging high-water mark") for line in lines)
    assert "{" not in shown.screen_text and not re.search(r"\d\.\d{3,}", shown.screen_text)

    # printed: the screen-only hint is gone, the appendix starts on its own page, the PDF is real
    assert "Print this page for the file copy" in shown.screen_text
    assert "Print this page" not in shown.print_text and "1,009,910.00" in shown.print_text
    assert shown.pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", shown.pdf))
    assert pages >= 2, pages

    # the locked day: who locked it, when, why, and the sign-offs
    locked = _lines(_report("fund-r", "2026-01-01", tmp_path / "day1.html").screen_text)
    assert re.fullmatch(
        r"Locked: period through 2026-01-01 \(2026-01-01 to 2026-01-01\), locked by alice on \d{4}-\d\d-\d\d "
        r"\d\d:\d\d:\d\d UTC\. Reason: day one reconciled\. Signed off: preparer alice \(.+ UTC\); reviewer bob "
        r"\(.+ UTC\)\. These figures never change\.", locked[0]), locked[0]
    assert "Status: closed" in locked

    # a stale day says so (the status the fresh-forward rule sets on a day whose inputs changed)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE closes SET status = 'stale' WHERE date = '2026-01-02'"))
    stale = _lines(_report("fund-r", "2026-01-02", tmp_path / "stale.html").screen_text)
    assert stale[0].startswith("Stale: an input changed after this day closed")
