"""Progress of a CSV import: the reader reports the bytes it has read after each chunk, and ``coinfrs import-csv``
shows one bar per file on a terminal only (nothing in a pipe, a log or for a ``--json`` reader)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from ingestion.csv_files import CHUNK_BYTES, CsvFile
from orchestration.cli_output import file_progress


def _ledger(path: Path, rows: int) -> Path:
    lines = ["id,timestamp,action,asset,quantity,unit_price_usd,account\n"]
    lines += [f"r{i},2026-01-02T10:00:00Z,BUY,BTC,0.5,40000,Kraken\n" for i in range(rows)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_the_reader_reports_the_bytes_read_after_each_chunk(tmp_path: Path) -> None:
    path = _ledger(tmp_path / "big.csv", 60_000)  # ~3 MB: several chunks
    size = path.stat().st_size
    seen: list[int] = []
    lines = sum(1 for _ in CsvFile.from_path(path, on_progress=seen.append).lines())
    assert lines == 60_001
    assert seen == [min(size, CHUNK_BYTES * k) for k in range(1, len(seen) + 1)] and seen[-1] == size
    assert len(seen) == -(-size // CHUNK_BYTES)


def test_bars_on_a_terminal_and_nothing_elsewhere(tmp_path: Path) -> None:
    path = _ledger(tmp_path / "ledger.csv", 100)
    piped = Console(file=io.StringIO(), force_terminal=False)
    with file_progress([path], piped) as progress_for:
        assert progress_for(path) is None
    assert piped.file.getvalue() == ""

    shown = Console(file=io.StringIO(), force_terminal=True, width=100)
    with file_progress([path], shown) as progress_for:
        report = progress_for(path)
        assert report is not None
        for _ in CsvFile.from_path(path, on_progress=report).lines():
            pass
    assert "ledger.csv" in shown.file.getvalue()
