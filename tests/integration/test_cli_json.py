"""`--json` on the commands a script drives: import-csv says what each file staged, close gives the closes it wrote
(progress stays on stderr, so stdout is exactly one JSON document)."""

from __future__ import annotations

import json
import textwrap

import dagster as dg
import pytest
from typer.testing import CliRunner

from orchestration.cli import app

LEDGER = textwrap.dedent("""\
    id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes
    t1,2026-01-03T10:00:00Z,BUY,BTC,0.5,40000,,,,,Kraken,,,
    t2,2026-01-04T10:00:00Z,SELL,BTC,0.2,42000,,,,,Kraken,,,
    """)


def test_import_and_close_print_json_for_scripts(engine, tmp_path, monkeypatch) -> None:
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(LEDGER, encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(app, ["import-csv", "--entity", "scripted", "--create", "--json", str(ledger)])
    assert first.exit_code == 0, first.output
    [staged] = json.loads(first.stdout)
    assert (staged["file"], staged["kind"], staged["entity"], staged["rows"], staged["inserted"], staged["skipped"]) == (
        "ledger.csv", "ledger", "scripted", 2, 2, 0)
    again = json.loads(runner.invoke(app, ["import-csv", "--entity", "SCRIPTED", "--json", str(ledger)]).stdout)
    assert (again[0]["inserted"], again[0]["skipped"], again[0]["entity"]) == (0, 2, "scripted")

    instance = dg.DagsterInstance.ephemeral()
    monkeypatch.setattr("orchestration.close_runner.cli_instance", lambda: instance)
    closed = runner.invoke(app, ["close", "--entity", "scripted", "--from", "2026-01-03", "--to", "2026-01-04", "--json"])
    assert closed.exit_code == 0, closed.output
    body = json.loads(closed.stdout)
    assert (body["entity"], body["from"], body["to"]) == ("scripted", "2026-01-03", "2026-01-04")
    assert [(c["date"], c["status"]) for c in body["closes"]] == [("2026-01-03", "closed"), ("2026-01-04", "closed")]
    assert body["closes"][1]["realized_gain"] == "400" and body["run_id"]


@pytest.mark.parametrize("args", [["close", "--entity", "nobody", "--date", "2026-01-03", "--json"],
                                  ["import-csv", "--entity", "nobody", "--json", "README.md"]])
def test_a_refusal_with_json_is_one_line_on_stderr_and_nothing_on_stdout(engine, args) -> None:
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1 and "nobody" in refused.stderr
