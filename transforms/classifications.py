"""Manual classification (issue 12): a person says what a leg is when no mapper understood it (``unclassified``) or
when a mapper's rule is wrong for this record, with who, when and why.

A classification is keyed by the staged record's natural identity (source, stream, the source's own id) and the leg's
index, so it applies to every version of the record and survives a rebuild of the canonical layer: the canonical
build (transforms/canonical.py) replaces the mapper's kind by it. The new kind must be of the vocabulary
(transforms/events.py), never ``unclassified``, and agree with the leg's sign. Classifying marks the closes from the
leg's day ``stale`` (reconciliation/staleness.py): the next close books the leg by its new kind, and an unclassified
leg no longer blocks PnL from its day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from reconciliation.staleness import mark_stale
from transforms.events import LegKind, direction_ok
from warehouse.entities import Entity
from warehouse.numbers import to_text
from warehouse.reports import iso_utc
from warehouse.schema import leg_classifications

RecordLeg = tuple[str, str, str, int]  # (source, stream, source_raw_id, leg_index)


class ClassificationError(ValueError):
    """A classification that cannot be recorded; the message says why."""


@dataclass(frozen=True)
class Classification:
    leg_id: int
    day: date
    source: str
    stream: str
    source_raw_id: str
    leg_index: int
    mapped_kind: str
    kind: str
    classified_by: str
    reason: str
    classified_at: datetime


def classify_leg(conn: Connection, entity: Entity, leg_id: int, kind: str, *, by: str, reason: str) -> Classification:
    """Record that leg ``leg_id`` of ``entity`` is of ``kind`` (replacing an earlier classification of it)."""
    kind, by, reason = kind.strip().lower(), by.strip(), reason.strip()
    if not by or not reason:
        raise ClassificationError("a classification needs who (--by) and why (--reason)")
    kinds = [k.value for k in LegKind if k is not LegKind.UNCLASSIFIED]
    if kind not in kinds:
        raise ClassificationError(f"unknown kind {kind!r}; one of: {', '.join(kinds)}")
    leg = conn.execute(sa.text(
        """SELECT t.id, t.close_date, t.quantity, t.kind, t.leg_index, r.source, r.stream, r.source_raw_id
           FROM transactions t JOIN raw_records r ON r.id = t.raw_record_id
           WHERE t.id = :id AND t.entity_id = :e"""), dict(id=leg_id, e=entity.id)).mappings().first()
    if leg is None:
        raise ClassificationError(f"{entity.name} has no leg {leg_id} (see `coinfrs recon breaks` or the API's "
                                  "/transactions?kind=unclassified for the legs to classify)")
    if not direction_ok(kind, leg["quantity"]):
        raise ClassificationError(f"leg {leg_id} moves {leg['quantity']}: a {kind} leg must go the other way")
    existing = conn.execute(sa.select(leg_classifications.c.mapped_kind).where(
        leg_classifications.c.entity_id == entity.id, leg_classifications.c.source == leg["source"],
        leg_classifications.c.stream == leg["stream"], leg_classifications.c.source_raw_id == leg["source_raw_id"],
        leg_classifications.c.leg_index == leg["leg_index"])).scalar()
    mapped = existing or leg["kind"]
    values = dict(entity_id=entity.id, source=leg["source"], stream=leg["stream"], source_raw_id=leg["source_raw_id"],
                  leg_index=leg["leg_index"], kind=kind, mapped_kind=mapped, classified_by=by, reason=reason)
    at = conn.execute(insert(leg_classifications).values(**values).on_conflict_do_update(
        index_elements=["entity_id", "source", "stream", "source_raw_id", "leg_index"],
        set_=dict(kind=kind, classified_by=by, reason=reason, classified_at=sa.func.now()))
        .returning(leg_classifications.c.classified_at)).scalar_one()
    mark_stale(conn, entity.id, leg["close_date"], f"leg {leg_id} classified as {kind} by {by}")
    return Classification(leg_id, leg["close_date"], leg["source"], leg["stream"], leg["source_raw_id"],
                          leg["leg_index"], mapped, kind, by, reason, at)


def load_classifications(conn: Connection, entity_id: int) -> dict[RecordLeg, str]:
    """The entity's classifications: (source, stream, source_raw_id, leg_index) -> kind."""
    rows = conn.execute(sa.select(leg_classifications.c.source, leg_classifications.c.stream,
                                  leg_classifications.c.source_raw_id, leg_classifications.c.leg_index,
                                  leg_classifications.c.kind).where(leg_classifications.c.entity_id == entity_id))
    return {(r.source, r.stream, r.source_raw_id, r.leg_index): r.kind for r in rows}


def list_classifications(conn: Connection, entity_id: int) -> list[dict[str, object]]:
    """The entity's manual classifications (who, when, why), oldest first, each with the current legs it applies to
    (``leg_ids``, ``date``: the booking day of the latest version's leg; empty before the next canonical build)."""
    rows = conn.execute(sa.text(
        """SELECT c.source, c.stream, c.source_raw_id, c.leg_index, c.mapped_kind, c.kind, c.classified_by, c.reason,
                  c.classified_at,
                  coalesce(array_agg(t.id ORDER BY t.id) FILTER (WHERE t.id IS NOT NULL), '{}') AS leg_ids,
                  max(t.close_date) AS day
           FROM leg_classifications c
           LEFT JOIN raw_records r ON r.entity_id = c.entity_id AND r.source = c.source AND r.stream = c.stream
                                  AND r.source_raw_id = c.source_raw_id
           LEFT JOIN transactions t ON t.raw_record_id = r.id AND t.leg_index = c.leg_index AND t.entity_id = c.entity_id
           WHERE c.entity_id = :e
           GROUP BY c.source, c.stream, c.source_raw_id, c.leg_index, c.mapped_kind, c.kind, c.classified_by, c.reason,
                    c.classified_at
           ORDER BY c.classified_at, c.source, c.stream, c.source_raw_id, c.leg_index"""), dict(e=entity_id)).mappings()
    return [{"source": r["source"], "stream": r["stream"], "source_raw_id": r["source_raw_id"],
             "leg_index": r["leg_index"], "mapped_kind": r["mapped_kind"], "kind": r["kind"],
             "classified_by": r["classified_by"], "reason": r["reason"],
             "classified_at": iso_utc(r["classified_at"]), "leg_ids": list(r["leg_ids"]),
             "date": r["day"].isoformat() if r["day"] else None} for r in rows]


def list_unclassified_legs(conn: Connection, entity_id: int, start: date, end: date) -> list[dict[str, object]]:
    """The legs of close days [start, end] no rule understood (kind ``unclassified``), each with its raw record: what
    blocks PnL from its day until a person classifies it (``coinfrs classify``)."""
    rows = conn.execute(sa.text(
        """SELECT t.id, t.close_date, t.ts, a.name AS account, a.account_type, s.symbol AS asset, t.quantity,
                  t.leg_index, r.id AS raw_record_id, r.source, r.stream, r.source_raw_id, r.payload
           FROM transactions t JOIN accounts a ON a.id = t.account_id JOIN assets s ON s.id = t.asset_id
           JOIN raw_records r ON r.id = t.raw_record_id
           WHERE t.entity_id = :e AND t.close_date BETWEEN :s AND :t AND t.kind = 'unclassified'
           ORDER BY t.close_date, t.ts, t.id"""), dict(e=entity_id, s=start, t=end)).mappings()
    return [{"leg_id": r["id"], "date": r["close_date"].isoformat(), "ts": iso_utc(r["ts"]),
             "account": r["account"], "account_type": r["account_type"], "asset": r["asset"],
             "quantity": to_text(r["quantity"]), "leg_index": r["leg_index"], "raw_record_id": r["raw_record_id"],
             "source": r["source"], "stream": r["stream"], "source_raw_id": r["source_raw_id"],
             "raw_record": r["payload"]} for r in rows]
