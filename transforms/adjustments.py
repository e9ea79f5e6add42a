"""Manual adjustment legs (entered by a person to resolve a break), staged like any source record.

A person's adjustment is staged in ``raw_records`` (source ``manual``, stream ``adjustments``) with
who, when and why in its payload, so the canonical leg it becomes traces back to it like every
other leg, and rebuilding the canonical layer from staging keeps it.
"""

from __future__ import annotations

from transforms.ledger_mapping import LegDraft
from transforms.mappers import StagedRecord, register_mapper
from warehouse.numbers import D

MANUAL_SOURCE = "manual"
ADJUSTMENTS_STREAM = "adjustments"
ADJUSTMENT_KIND = "adjustment"


def map_adjustment_record(payload: dict[str, str]) -> list[LegDraft]:
    """The one leg of a staged manual adjustment (pure)."""
    price = payload.get("unit_price_usd") or None
    quantity = D(payload["quantity"])
    unit = D(price) if price else None
    return [LegDraft(0, payload["account"], payload["account_type"], payload.get("sub_account", ""),
                     payload["asset"].upper(), quantity, ADJUSTMENT_KIND, unit,
                     quantity * unit if unit is not None else None, None)]


def _map_staged_adjustment(record: StagedRecord) -> list[LegDraft]:
    return map_adjustment_record(record.payload)


register_mapper(MANUAL_SOURCE, ADJUSTMENTS_STREAM, _map_staged_adjustment)
