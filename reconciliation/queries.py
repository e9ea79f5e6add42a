"""Reads for the API and the CLI: reconciliation results, a close with its provenance."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.completeness import SUITE as COMPLETENESS_SUITE
from warehouse.entities import Entity


def load_results(conn: Connection, entity_id: int, start: date, end: date, suite: str | None = None) -> list[dict[str, Any]]:
    """Stored expectation results of [start, end]: the completeness rule's per-day results and the suites'."""
    rows = conn.execute(sa.text(
        """SELECT date, suite, expectation, success, 'warn' AS severity, checked_count, failed_count,
                  observed AS observed_value, '[]'::jsonb AS failing_rows, checked_at
           FROM recon_results WHERE entity_id = :e AND date BETWEEN :s AND :t
           UNION ALL
           SELECT date, suite, expectation, success, severity, NULL, jsonb_array_length(failing_rows), observed_value,
                  failing_rows, checked_at
           FROM expectation_results WHERE entity_id = :e AND date BETWEEN :s AND :t
           ORDER BY date, suite, expectation"""), dict(e=entity_id, s=start, t=end)).mappings().all()
    return [dict(r) for r in rows if suite is None or r["suite"] == suite]


def load_close_detail(conn: Connection, entity: Entity, day: date) -> dict[str, Any] | None:
    """One close with its provenance, the output hash recomputed now, and whether it is unchanged."""
    from reconciliation.report import load_provenance, verify_close
    from warehouse.reports import list_closes

    found = list_closes(conn, entity.id, day, day)
    if not found:
        return None
    detail = dict(found[0])
    stored = load_provenance(conn, entity.id, day)
    detail["provenance"] = None
    if stored is not None:
        proof = verify_close(conn, entity, day)
        detail["provenance"] = {
            "code_version": stored["code_version"], "input_counts": stored["input_counts"],
            "source_cursors": stored["source_cursors"], "output_hash": stored["output_hash"],
            "current_hash": proof["current_hash"], "unchanged": proof["unchanged"], "changed": proof["changed"],
            "computed_at": stored["computed_at"], "run_id": stored["run_id"]}
    return detail


__all__ = ["COMPLETENESS_SUITE", "load_close_detail", "load_results"]
