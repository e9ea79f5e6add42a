"""One contract per source (issue 15): every source package ``ingestion/<name>/`` has the same parts, a ``client``
(talks to the service), a ``sync`` (writes staging) and a ``mapping`` (pure: staged record -> legs), and every mapper
is reached through the one registry (transforms/mappers.py) that the canonical build dispatches through."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from transforms import mappers
from transforms.mappers import (CONNECTOR_MAPPING_MODULES, SOURCE_PACKAGES, MappingFailure, StagedRecord,
                                registered_streams, try_map_record)

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("client", "sync", "mapping")
NETWORK_LIBRARIES = {"ccxt", "requests", "web3", "solana", "solders", "httpx", "aiohttp"}


def _imports(path: Path, *, top_level: bool = False) -> set[str]:
    """The modules a file imports (``from a.b import c`` -> ``a.b``; ``import a.b`` -> ``a.b``); ``top_level``: only
    those imported when the module is (not inside a function)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_every_package_with_a_sync_or_a_mapping_is_a_registered_source():
    packages = {path.parent.name for part in ("sync.py", "mapping.py") for path in (ROOT / "ingestion").glob(f"*/{part}")}
    assert packages == set(SOURCE_PACKAGES)
    assert [f"ingestion.{name}.mapping" for name in SOURCE_PACKAGES] == list(CONNECTOR_MAPPING_MODULES[:len(SOURCE_PACKAGES)])


@pytest.mark.parametrize("name", SOURCE_PACKAGES)
def test_every_source_package_has_a_client_a_sync_and_a_mapping(name):
    for part in PARTS:
        importlib.import_module(f"ingestion.{name}.{part}")
    client, sync = (_imports(ROOT / "ingestion" / name / f"{part}.py") for part in PARTS[:2])
    mapping = _imports(ROOT / "ingestion" / name / "mapping.py", top_level=True)
    own = {f"ingestion.{name}.{part}" for part in PARTS}
    # the sync reads through its own client and writes staging; the client never writes staging
    assert f"ingestion.{name}.client" in sync and "ingestion.staging" in sync
    assert "ingestion.staging" not in client and f"ingestion.{name}.sync" not in client
    # the mapping is pure: importing it loads no network library (ccxt's mapper borrows ccxt's offline parsers, lazily),
    # nor the client or sync of its own package, nor a staging writer
    assert not {module.split(".")[0] for module in mapping} & NETWORK_LIBRARIES, mapping
    assert not mapping & (own - {f"ingestion.{name}.mapping"}) and "ingestion.staging" not in mapping
    assert "transforms.mappers" in mapping  # it registers its mappers with the one registry


def _project_mappers() -> dict[tuple[str, str], object]:
    registered_streams()  # loads every mapping module the registry lists
    return {key: mapper for key, mapper in mappers._MAPPERS.items()
            if not getattr(mapper, "__module__", "").startswith("tests.")}


def test_every_mapper_comes_from_a_module_the_registry_loads():
    modules = {getattr(mapper, "__module__", "") for mapper in _project_mappers().values()}
    assert modules <= set(CONNECTOR_MAPPING_MODULES) | {"transforms.mappers"}
    for name in SOURCE_PACKAGES:  # every source package registers at least one stream
        assert f"ingestion.{name}.mapping" in modules, name


def test_every_registered_stream_is_reached_through_the_registry():
    """A record of every registered (source, stream) is dispatched to its mapper: an unreadable payload comes back
    as that mapper's own failure (quarantined), never as "no mapper"."""
    for source, stream in sorted(_project_mappers()):
        record = StagedRecord(1, source, stream, "contract", "contract-1", None, {})
        result = try_map_record(record)
        if isinstance(result, MappingFailure):
            assert "no mapper for" not in result.error, (source, stream)
        else:
            assert isinstance(result, list), (source, stream)


def test_loading_every_mapper_imports_no_network_client():
    code = ("import sys; from transforms.mappers import registered_streams; registered_streams(); "
            f"print(sorted(m for m in {sorted(NETWORK_LIBRARIES)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
