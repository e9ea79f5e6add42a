"""Daily partitions of the close (one partition = one close day; dates are the entity's close days)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from warehouse.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().partitions_start, timezone="UTC")


def window_of(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """First and last close day of the run (one day, or a single-run backfill's range)."""
    keys = context.partition_keys
    return date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])
