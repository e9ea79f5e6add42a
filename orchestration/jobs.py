"""The daily close job (all close assets and the completeness check)."""

from __future__ import annotations

import dagster as dg

from assets.close_assets import CLOSE_ASSETS
from assets.partitions import daily_partitions

daily_close_job = dg.define_asset_job(
    "daily_close_job",
    selection=dg.AssetSelection.assets(*CLOSE_ASSETS),
    partitions_def=daily_partitions,
    description="The daily close: canonical ledger -> reconciliation -> cost basis -> close record. "
                "Tag coinfrs/entities=NAME[,NAME] to close only some entities.",
)
