"""docs/sources.md lists every stream a mapper is registered for, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from ingestion.ccxt.mapping import DEDICATED, STREAMS, ccxt_exchange_ids
from transforms import mappers
from transforms.mappers import registered_streams

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"
ANY_CCXT = "<any ccxt id>"


def documented() -> set[tuple[str, str]]:
    rows = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            source = cells[0].strip("`")
            rows |= {(source, stream) for stream in re.findall(r"`([a-z_]+)`", cells[1])}
    return rows


def _project_streams() -> list[tuple[str, str]]:
    """The registered streams whose mapper is the project's (tests register mappers of their own in the same run)."""
    registered_streams()  # loads the project's mappers
    return [key for key, mapper in mappers._MAPPERS.items()
            if not getattr(mapper, "__module__", "").startswith("tests.")]


def test_every_registered_stream_is_documented_and_every_documented_one_is_registered():
    ids = set(ccxt_exchange_ids()) - set(DEDICATED)
    registered = {(ANY_CCXT if source in ids else source, stream) for source, stream in _project_streams()}
    assert documented() == registered


def test_every_ccxt_exchange_gets_the_generic_mappers_without_importing_ccxt():
    import ccxt

    assert set(ccxt_exchange_ids()) == set(ccxt.exchanges)
    streams = set(registered_streams())
    assert all((exchange, stream) in streams for exchange in ("okx", "bitstamp", "coinbaseexchange") for stream in STREAMS)
