"""The staging layer as external assets: filled by imports (CLI, inbox sensor), never edited."""

from __future__ import annotations

import dagster as dg

raw_records = dg.AssetSpec(
    "raw_records",
    group_name="staging",
    kinds={"postgres"},
    description="Layer 1, immutable: an exact copy of every record a source returned (payload as JSONB, payload hash, "
                "file, line, ingestion run). Unique on (entity, source, account, stream, source id, payload hash).",
)
raw_balance_snapshots = dg.AssetSpec(
    "raw_balance_snapshots",
    group_name="staging",
    kinds={"postgres"},
    description="Layer 1, immutable: balances each source reported (account, account type, sub-account, time).",
)
