"""The 1,000-file mutation test (issue 18, "Tests and done"): seeded mutations of good ledger and balances CSV
files (other encodings, NUL bytes, fields over 128 KiB, numbers outside the documented syntax, times in year 1 or
9999, 1e400, truncated files and lines, wrong headers, flipped bytes, ...) imported through the real importer into
real PostgreSQL: no exception but a ``CsvImportError``, no partial load (staging, runs and closes unchanged on a
refusal; exactly the rows reported on an acceptance), and every refusal naming file, line and field (the header's
errors, on line 1, name their columns in the message). A sample goes through `coinfrs import-csv` too."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.csv_files import CsvFile, CsvImportError, import_csv
from warehouse.entities import get_or_create_entity

ROOT = Path(__file__).resolve().parents[2]
FILES = 1000
SEED = 20261204

LEDGER_HEADER = ["id", "timestamp", "action", "asset", "quantity", "unit_price_usd", "fee_asset", "fee_amount",
                 "quote_asset", "quote_quantity", "account", "tx_hash", "external_id", "notes"]
LEDGER_ROWS = [
    ["m1", "2026-01-02T10:00:00Z", "BUY", "BTC", "0.5", "40000", "USD", "20", "USD", "20000", "Kraken", "", "", "first buy"],
    ["m2", "2026-01-03T11:00:00+01:00", "SELL", "BTC", "0.25", "42000", "USD", "5", "USD", "10500", "Kraken", "", "",
     "Zürich desk"],
    ["m3", "2026-01-04T12:00:00Z", "INCOME", "ETH", "1.25", "3000", "ETH", "0.001", "", "", "Ledger Cold", "", "", "staking"],
    ["m4", "2026-01-05T09:30:00Z", "TRANSFER_OUT", "ETH", "0.5", "", "ETH", "0.002", "", "", "Ledger Cold", "0xabc", "",
     "to café wallet"],
    ["m5", "2026-01-06T18:45:00-05:00", "BUY", "SOL", "12", "95.5", "USD", "1.25", "USD", "1146", "Kraken", "", "e-5", ""],
    ["m6", "2026-01-07T00:00:00Z", "STAKING_REWARD", "SOL", "0.125", "101", "SOL", "0.0001", "", "", "Kraken", "", "", "epoch 612"],
]
LEDGER_NUMBERS = ("quantity", "unit_price_usd", "fee_amount", "quote_quantity")
BALANCE_HEADER = ["timestamp", "account", "asset", "quantity", "account_type", "sub_account"]
BALANCE_ROWS = [
    ["2026-01-02T23:59:59Z", "Kraken", "BTC", "0.5", "spot", ""],
    ["2026-01-02T23:59:59Z", "Kraken", "USD", "-19980.25", "spot", ""],
    ["2026-01-03T23:59:59Z", "Ledger Cold", "ETH", "1.25", "wallet", "Zürich"],
    ["2026-01-04T23:59:59Z", "Kraken", "SOL", "12.125", "futures", "sub-1"],
]
BAD_NUMBERS = ["1_5", "1E5", "1e400", "-1e-400", "١٢", "٣.٥", "１２", "1,5", "1 000", "NaN", "Infinity", "-inf", "0x10",
               "--1", "1" * 30, "9" * 25 + ".5", "0." + "1" * 30, "abc", "1.2.3", "+-1", "½", "1e", "."]
BAD_TIMES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2008-12-31T23:59:59Z", "2999-01-01T00:00:00Z",
             "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z", "2026-01-01T00:00:00",
             "yesterday", "1735689600", "2026-01-01 00:00:00+99:00"]
ANYTHING = ["", '"', "x" * 140_000, "=cmd|' /C calc'!A0", "\u202e", "BTC,ETH", "SELL", "TRANSFER_IN", "spot", "-0",
            "0", "-5", "\t", "'", '"quoted, comma"', "\u0000", "ünïcödé", "\r"]


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # ledger | balances
    data: bytes
    how: str
    must_refuse_at: tuple[int, str | None] | None = None  # (line, field) the refusal must name, when known


def _text(header: list[str], rows: list[list[str]]) -> str:
    return "".join(",".join(r) + "\n" for r in [header, *rows])


def _mutant(rng: random.Random, index: int) -> Mutant:
    kind = rng.choice(["ledger", "ledger", "balances"])
    header, rows = (LEDGER_HEADER, LEDGER_ROWS) if kind == "ledger" else (BALANCE_HEADER, BALANCE_ROWS)
    header, rows = list(header), [list(r) for r in rows]
    good = _text(header, rows)
    name = f"mutant-{index:04d}-{kind}.csv"
    numbers = LEDGER_NUMBERS if kind == "ledger" else ("quantity",)
    choice = rng.randrange(15)
    line = rng.randrange(len(rows))  # a data row: file line line + 2
    if choice == 0:  # a number outside the documented syntax or range
        column = rng.choice(numbers)
        value = rng.choice(BAD_NUMBERS)
        rows[line][header.index(column)] = value
        return Mutant(name, kind, _text(header, rows).encode(), f"{column}={value!r}",
                      None if "," in value else (line + 2, column))
    if choice == 1:  # a time outside the window or not a time
        value = rng.choice(BAD_TIMES)
        rows[line][header.index("timestamp")] = value
        return Mutant(name, kind, _text(header, rows).encode(), f"timestamp={value!r}", (line + 2, "timestamp"))
    if choice == 2:  # another encoding
        encoding = rng.choice(["cp1252", "latin-1", "utf-16-le", "utf-16-be", "utf-16", "utf-8-sig", "mac-roman"])
        data = good.encode(encoding)
        if encoding in ("cp1252", "latin-1", "mac-roman"):  # the first non-ASCII character: where it is refused
            bad_line = next(i for i, text in enumerate(good.splitlines(), 1) if not text.isascii())
            column = next(header[i] for i, v in enumerate(good.splitlines()[bad_line - 1].split(",")) if not v.isascii())
            return Mutant(name, kind, data, f"encoded {encoding}", (bad_line, column))
        return Mutant(name, kind, data, f"encoded {encoding}")  # UTF-16 without a BOM: refused, somewhere
    if choice == 3:  # a NUL byte in a field
        column = rng.randrange(len(header))
        rows[line][column] = rows[line][column][:1] + "\x00" + rows[line][column][1:]
        return Mutant(name, kind, _text(header, rows).encode(), f"NUL in {header[column]}", (line + 2, header[column]))
    if choice == 4:  # a field over 128 KiB
        column = rng.randrange(len(header))
        rows[line][column] = rng.choice(["n", "1", "é"]) * rng.choice([131_073, 200_000, 1_100_000])
        return Mutant(name, kind, _text(header, rows).encode(), f"huge {header[column]}", (line + 2, header[column]))
    if choice == 5:  # the file cut anywhere (mid-line, mid-character)
        data = good.encode()
        return Mutant(name, kind, data[:rng.randrange(len(data))], "truncated file")
    if choice == 6:  # a line cut short or run long
        if rng.random() < 0.5:
            del rows[line][rng.randrange(1, len(header)):]
        else:
            rows[line].extend(["extra"] * rng.randrange(1, 3))
        return Mutant(name, kind, _text(header, rows).encode(), "wrong number of values", (line + 2, None))
    if choice == 7:  # a wrong header
        how = rng.choice(["rename", "drop", "duplicate", "empty", "only", "blank-name", "garbage"])
        if how == "rename":
            header[rng.randrange(len(header))] = rng.choice(["qty", "price", "time", "Memo", "asset "])
        elif how == "drop":
            column = rng.choice([c for c in ("timestamp", "asset", "quantity", "account") if c in header])
            i = header.index(column)
            header.pop(i)
            for r in rows:
                r.pop(i)
        elif how == "duplicate":
            header.append(rng.choice(header).upper())
            for r in rows:
                r.append("")
        elif how == "empty":
            return Mutant(name, kind, b"", "empty file", (1, None))
        elif how == "only":
            rows = []
        elif how == "blank-name":
            header.append("")
            for r in rows:
                r.append("")
        else:
            header = ["ÿþ" + header[0]] + header[1:]
        return Mutant(name, kind, _text(header, rows).encode(), f"header {how}",
                      None if how in ("rename", "only") else (1, None))
    if choice == 8:  # flipped bytes
        data = bytearray(good.encode())
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return Mutant(name, kind, bytes(data), "flipped bytes")
    if choice == 9:  # anything in any field
        column = rng.randrange(len(header))
        value = rng.choice(ANYTHING + BAD_NUMBERS + BAD_TIMES)
        rows[line][column] = value
        return Mutant(name, kind, _text(header, rows).encode(), f"{header[column]}={value[:20]!r}")
    if choice == 10:  # line endings: CRLF (fine), CR only, mixed
        ending = rng.choice(["\r\n", "\r", "\n\r"])
        return Mutant(name, kind, good.replace("\n", ending).encode(), f"line endings {ending!r}")
    if choice == 11:  # an unbalanced quote swallowing the rest of the file
        column = rng.randrange(len(header))
        rows[line][column] = '"' + rows[line][column]
        return Mutant(name, kind, _text(header, rows).encode(), f"open quote in {header[column]}")
    if choice == 12:  # the same id (or instant) twice with different content
        twin = list(rows[line])
        twin[header.index("quantity")] = "7"
        rows.append(twin)
        return Mutant(name, kind, _text(header, rows).encode(), "conflicting twin",
                      (len(rows) + 1, "id" if kind == "ledger" else "quantity"))
    if choice == 13:  # an identifying field too long for an index entry (under the csv module's field limit)
        column = rng.choice([c for c in ("id", "external_id", "account", "asset", "sub_account", "tx_hash") if c in header])
        rows[line][column := header.index(column)] = rng.choice(["k", "é", "語"]) * rng.choice([300, 3_000, 100_000])
        return Mutant(name, kind, _text(header, rows).encode(), f"long {header[column]}", (line + 2, header[column]))
    # a good file (some must land), with blank lines or in another order
    if rng.random() < 0.5:
        rng.shuffle(rows)
    text = _text(header, rows)
    if rng.random() < 0.3:
        text = text.replace("\n", "\n\n", 2)
    return Mutant(name, kind, text.encode(), "good")


def mutants() -> list[Mutant]:
    rng = random.Random(SEED)
    return [_mutant(rng, i) for i in range(FILES)]


def counts(engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM raw_records), (SELECT count(*) FROM raw_balance_snapshots), "
            "(SELECT count(*) FROM ingestion_runs), (SELECT count(*) FROM closes)")).one()


def check_refusal(mutant: Mutant, error: CsvImportError) -> list[str]:
    """What is wrong with a refusal (nothing: an empty list)."""
    problems = []
    text = str(error)
    if not text.startswith(f"{mutant.name}: ") or not error.errors:
        problems.append(f"the refusal does not start with the file's name or lists no error: {text[:200]!r}")
    for e in error.errors:
        if e.line < 1 or not e.message:
            problems.append(f"an error without a line or a message: {e!r}")
        elif e.field is None and e.line != 1:  # the header's errors name their columns in the message
            problems.append(f"line {e.line} names no field: {e.message!r}")
        elif "\n" in str(e) or len(str(e)) > 600:
            problems.append(f"not one short line: {str(e)[:200]!r}")
    if mutant.must_refuse_at is not None:
        line, field = mutant.must_refuse_at
        if not any(e.line == line and (field is None or e.field == field) for e in error.errors):
            problems.append(f"expected an error at line {line}, field {field}; got "
                            f"{[(e.line, e.field) for e in error.errors][:5]}")
    return problems


def test_a_thousand_mutated_files_end_in_whole_loads_or_named_refusals(engine, tmp_path):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "mutants")
    outcomes: dict[str, int] = {"accepted": 0, "refused": 0}
    problems: list[str] = []
    for mutant in mutants():
        path = tmp_path / mutant.name
        path.write_bytes(mutant.data)
        before = counts(engine)
        try:
            with engine.begin() as conn:
                result = import_csv(conn, entity.id, mutant.kind, CsvFile.from_path(path))
        except CsvImportError as error:
            outcomes["refused"] += 1
            problems += [f"{mutant.name} ({mutant.how}): {p}" for p in check_refusal(mutant, error)]
            if counts(engine) != before:
                problems.append(f"{mutant.name} ({mutant.how}): refused, yet staging changed (a partial load)")
            continue
        except Exception:  # noqa: BLE001 - what this test is for: any other exception is a traceback for a user
            problems.append(f"{mutant.name} ({mutant.how}): traceback\n{traceback.format_exc(limit=3)}")
            continue
        outcomes["accepted"] += 1
        if mutant.must_refuse_at is not None:
            problems.append(f"{mutant.name} ({mutant.how}): accepted; expected a refusal at {mutant.must_refuse_at}")
        after = counts(engine)
        added = (after[0] - before[0]) if mutant.kind == "ledger" else (after[1] - before[1])
        if added != result.inserted or after[2] != before[2] + 1 or result.inserted > result.rows:
            problems.append(f"{mutant.name} ({mutant.how}): accepted {result.rows} rows, {result.inserted} new, "
                            f"but staging grew by {added} and runs by {after[2] - before[2]}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:40])
    # the mutations bite, and the importer still takes what is fine
    assert outcomes["refused"] >= 600 and outcomes["accepted"] >= 60, outcomes


def test_the_command_line_refuses_a_sample_in_one_line_each_and_imports_nothing(engine, database_url, tmp_path):
    from orchestration.cli import app

    sample = [m for m in mutants() if m.must_refuse_at is not None][:12]
    paths = []
    for mutant in sample:
        paths.append(tmp_path / mutant.name)
        paths[-1].write_bytes(mutant.data)
    good = tmp_path / "good.csv"
    good.write_text(_text(LEDGER_HEADER, LEDGER_ROWS), encoding="utf-8")
    before = counts(engine)
    ledgers = [str(p) for p, m in zip(paths, sample) if m.kind == "ledger"]
    result = CliRunner().invoke(app, ["import-csv", str(good), *ledgers, "--entity", "cli-mutants", "--create"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for path in ledgers:
        assert f"{Path(path).name}: " in result.output
    assert result.output.rstrip().endswith("error: nothing was imported")
    assert counts(engine) == before  # the good file was not staged either: one transaction
    # and as a user runs it: a real process, the exit code, stderr
    balances = [str(p) for p, m in zip(paths, sample) if m.kind == "balances"][:3] or ledgers[:3]
    done = subprocess.run([sys.executable, "-c", "from orchestration.cli import main; main()", "import-csv", *balances,
                           "--entity", "cli-mutants", "--create", "--kind", "balances" if balances != ledgers[:3] else "ledger"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "COLUMNS": "200"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.rstrip().splitlines()[-1] == "error: nothing was imported"
    assert counts(engine) == before
    ok = CliRunner().invoke(app, ["import-csv", str(good), "--entity", "cli-mutants", "--create"])
    assert ok.exit_code == 0, ok.output
    assert "good.csv: 6 rows, 6 new, 0 already staged" in " ".join(ok.output.split())


@pytest.mark.parametrize("seed", [1, 2])
def test_the_mutations_are_seeded(seed):
    rng_a, rng_b = random.Random(seed), random.Random(seed)
    assert [_mutant(rng_a, i).data for i in range(20)] == [_mutant(rng_b, i).data for i in range(20)]


def test_each_refusal_is_one_line_on_a_narrow_terminal_or_a_pipe(engine, database_url, tmp_path):
    """A pipe (or a terminal 80 columns wide): every error stays on its own line, whole, so ``grep 'line 2,'`` or a
    script reading stderr sees the record, the field and the reason together."""
    bad = tmp_path / "bad.csv"
    row = list(LEDGER_ROWS[0])
    row[LEDGER_HEADER.index("unit_price_usd")] = "1e400"
    bad.write_text(_text(LEDGER_HEADER, [row]), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", "from orchestration.cli import main; main()", "import-csv", str(bad),
                           "--entity", "narrow", "--create"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "COLUMNS": "80"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "bad.csv: 1 error(s), nothing imported",
        "  line 2, field 'unit_price_usd': not a decimal number: '1e400' (digits 0-9 with an optional sign and '.'; "
        "no thousands separators, underscores, exponent or spaces)",
        "error: nothing was imported"]
