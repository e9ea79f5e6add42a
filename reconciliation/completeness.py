"""The completeness rule, as a Great Expectations expectation over the positions table.

For every account, asset and day with a fresh reported balance (a snapshot inside that day):

    reported(previous) + sum of legs in (previous snapshot time, this snapshot time] = reported(today)

where ``previous`` is the latest snapshot at or before the previous day's cutoff (zero at the
beginning of time). With snapshots stamped at the cutoffs this is DESIGN.md's
``Position(T-2) + Σ legs in (T-2 cutoff, T-1 cutoff] = Position(T-1)``; with snapshots taken
earlier in the day it still compares like with like. Adjustment legs (late data for a locked
day) count on the day they are booked. The tolerance: zero for on-chain accounts (wallet, vault, or
an account with a chain: exact in base units), per source for exchanges (``source_tolerances``,
default 1e-8); a larger difference is a break.

GX runs the rule (``UnexpectedRowsExpectation``, one query for every account and day of the
run) and returns the failing rows with numbers as text, so nothing passes through a float.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.causes import explain_breaks
from reconciliation.workflow import apply_break_actions
from warehouse.calendar import days_between, locked_dates
from warehouse.entities import Entity
from warehouse.numbers import D

SUITE = "canonical.completeness"
# Exchanges report balances that may be rounded: a difference up to this much (per source, table
# ``source_tolerances``) is not a break. On-chain accounts (wallet, vault, or with a chain) are exact:
# one base unit of difference is a break.
DEFAULT_EXCHANGE_TOLERANCE = "0.00000001"
EXPECTATION = "position_roll_forward"

# {batch} is the positions table; parameters are inlined by completeness_query() from typed values.
# Set-based: one pass over the positions of the range (and the day before) with window functions.
# Where both snapshots sit at the cutoffs (the usual case) the legs of the window are exactly
# computed(T-1) - computed(T-2) (the positions carry the cumulative sum of legs by close day,
# adjustments included); other rows (intraday snapshots, a missing day, a pair's first day) sum
# their legs by time. Leg ids are gathered for the failing rows only.
_RULE = """
WITH pos AS (
    SELECT p.account_id, p.asset_id, p.date, p.computed_quantity, p.reported_quantity, p.reported_at,
           lag(p.date) OVER w AS prev_date, lag(p.reported_quantity) OVER w AS prev_q,
           lag(p.reported_at) OVER w AS prev_at, lag(p.computed_quantity) OVER w AS prev_computed
    FROM {batch} p
    WHERE p.entity_id = __ENTITY__ AND p.date BETWEEN DATE '__FROM__' - 1 AND DATE '__TO__'
    WINDOW w AS (PARTITION BY p.account_id, p.asset_id ORDER BY p.date)
),
checked AS (
    SELECT pos.*, (pos.date::timestamp AT TIME ZONE '__TZ__') AS day_start,
           coalesce(pos.prev_date = pos.date - 1, false)
             AND pos.reported_at = ((pos.date + 1)::timestamp AT TIME ZONE '__TZ__')
             AND (pos.prev_at IS NULL OR pos.prev_at = (pos.date::timestamp AT TIME ZONE '__TZ__')) AS at_cutoffs
    FROM pos
    WHERE pos.date BETWEEN DATE '__FROM__' AND DATE '__TO__'
      AND pos.reported_at > (pos.date::timestamp AT TIME ZONE '__TZ__')
),
tolerances AS (
    SELECT acc.id AS account_id,
           CASE WHEN acc.chain IS NOT NULL OR acc.account_type IN ('wallet', 'vault') THEN 0::numeric
                ELSE coalesce(st.tolerance, __DEFAULT_TOLERANCE__::numeric) END AS tolerance
    FROM accounts acc LEFT JOIN source_tolerances st ON st.source = acc.source
    WHERE acc.entity_id = __ENTITY__
),
rolled AS (
    SELECT c.account_id, c.asset_id, c.date, c.reported_quantity, c.reported_at,
           CASE WHEN c.at_cutoffs THEN c.prev_q ELSE prev.quantity END AS prev_quantity,
           CASE WHEN c.at_cutoffs THEN c.prev_at ELSE prev.observed_at END AS prev_at,
           CASE WHEN c.at_cutoffs THEN c.computed_quantity - CASE WHEN c.prev_at IS NULL THEN 0 ELSE c.prev_computed END
                ELSE w.legs_sum END AS legs_sum
    FROM checked c
    -- off the cutoffs only (a one-time filter: rows at the cutoffs never run these lookups)
    LEFT JOIN LATERAL (
        SELECT b.quantity, b.observed_at FROM balance_observations b
        WHERE NOT c.at_cutoffs AND b.account_id = c.account_id AND b.asset_id = c.asset_id
          AND b.observed_at <= c.day_start
        ORDER BY b.observed_at DESC LIMIT 1
    ) prev ON true
    LEFT JOIN LATERAL (
        SELECT coalesce(sum(l.quantity), 0) AS legs_sum FROM transactions l
        WHERE NOT c.at_cutoffs AND l.account_id = c.account_id AND l.asset_id = c.asset_id
          AND ((NOT l.is_adjustment AND l.ts > coalesce(prev.observed_at, '-infinity') AND l.ts <= c.reported_at)
               OR (l.is_adjustment AND l.close_date = c.date))
    ) w ON true
),
failing AS (
    SELECT r.*, t.tolerance FROM rolled r JOIN tolerances t ON t.account_id = r.account_id
    WHERE abs(r.reported_quantity - coalesce(r.prev_quantity, 0) - r.legs_sum) > t.tolerance
)
SELECT f.date::text AS date, f.account_id, f.asset_id,
       coalesce(f.prev_quantity, 0)::text AS previous_reported, f.prev_at::text AS previous_reported_at,
       f.legs_sum::text AS legs_sum, (coalesce(f.prev_quantity, 0) + f.legs_sum)::text AS expected,
       f.reported_quantity::text AS reported, f.reported_at::text AS reported_at,
       (f.reported_quantity - coalesce(f.prev_quantity, 0) - f.legs_sum)::text AS difference,
       f.tolerance::text AS tolerance, ids.leg_ids
FROM failing f
CROSS JOIN LATERAL (
    SELECT coalesce(string_agg(l.id::text, ',' ORDER BY l.ts, l.id), '') AS leg_ids FROM transactions l
    WHERE l.account_id = f.account_id AND l.asset_id = f.asset_id
      AND ((NOT l.is_adjustment AND l.ts > coalesce(f.prev_at, '-infinity') AND l.ts <= f.reported_at)
           OR (l.is_adjustment AND l.close_date = f.date))
) ids
ORDER BY f.date, f.account_id, f.asset_id
"""

_CHECKED = """
SELECT p.date, count(*) FROM positions p
WHERE p.entity_id = :e AND p.date BETWEEN :s AND :t AND p.reported_at > (p.date::timestamp AT TIME ZONE :tz)
GROUP BY 1
"""


def completeness_query(entity: Entity, start: date, end: date, batch: str = "{batch}") -> str:
    """The rule's SQL for one entity and range, with typed values inlined (GX takes a plain query)."""
    ZoneInfo(entity.timezone)  # a valid IANA name: letters, digits, '/', '_', '-', '+'
    if not all(ch.isalnum() or ch in "/_-+" for ch in entity.timezone):
        raise ValueError(f"unexpected timezone name {entity.timezone!r}")
    return (_RULE.replace("__ENTITY__", str(int(entity.id))).replace("__FROM__", start.isoformat())
            .replace("__TO__", end.isoformat()).replace("__TZ__", entity.timezone)
            .replace("__DEFAULT_TOLERANCE__", f"'{DEFAULT_EXCHANGE_TOLERANCE}'").replace("{batch}", batch))


@dataclass(frozen=True)
class BreakRow:
    date: date
    account_id: int
    asset_id: int
    previous_reported: str
    previous_reported_at: str | None
    legs_sum: str
    expected: str
    reported: str
    reported_at: str
    difference: str
    tolerance: str
    leg_ids: list[int]


@dataclass
class CompletenessResult:
    start: date
    end: date
    gx_success: bool
    checked_per_day: dict[date, int]
    breaks: list[BreakRow]
    gx_statistics: dict = field(default_factory=dict)

    def breaks_on(self, day: date) -> list[BreakRow]:
        return [b for b in self.breaks if b.date == day]


def _break_from_row(row: dict) -> BreakRow:
    leg_ids = [int(x) for x in str(row.get("leg_ids") or "").split(",") if x]
    return BreakRow(
        date=date.fromisoformat(str(row["date"])), account_id=int(row["account_id"]), asset_id=int(row["asset_id"]),
        previous_reported=str(row["previous_reported"]), previous_reported_at=row.get("previous_reported_at"),
        legs_sum=str(row["legs_sum"]), expected=str(row["expected"]), reported=str(row["reported"]),
        reported_at=str(row["reported_at"]), difference=str(row["difference"]), tolerance=str(row["tolerance"]),
        leg_ids=leg_ids,
    )


def gx_error(result: object) -> str | None:
    """The error of a GX validation that could not run (GX reports it per metric, not by raising)."""
    info = getattr(result, "exception_info", None) or {}
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for item in candidates:
        if item.get("raised_exception"):
            return str(item.get("exception_message") or "unknown error")
    return None


def validate_completeness(database_url: str, entity: Entity, start: date, end: date) -> tuple[bool, list[BreakRow], dict]:
    """Run the rule through Great Expectations; returns (success, failing rows, statistics)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # imported lazily: 4-6 s

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_sql(name="coinfrs", connection_string=database_url)
    asset = source.add_table_asset(name="positions", table_name="positions")
    batch = asset.add_batch_definition_whole_table("all").get_batch()
    expectation = gx.expectations.UnexpectedRowsExpectation(
        unexpected_rows_query=completeness_query(entity, start, end),
        description="Position(T-2) + legs of the day = Position(T-1), per account, asset and day",
    )
    result = batch.validate(expectation, result_format="COMPLETE")
    error = gx_error(result)
    if error:
        raise RuntimeError(f"completeness expectation could not run: {error}")
    details = (result.result or {}).get("details") or {}
    rows = details.get("unexpected_rows") or []
    breaks = [_break_from_row(dict(r)) for r in rows]
    stats = {"observed_value": (result.result or {}).get("observed_value"), "success": bool(result.success)}
    return bool(result.success), breaks, stats


def check_completeness(conn: Connection, database_url: str, entity: Entity, start: date, end: date) -> CompletenessResult:
    """Evaluate the rule for [start, end] and count what was checked each day."""
    success, breaks, stats = validate_completeness(database_url, entity, start, end)
    checked = dict(conn.execute(sa.text(_CHECKED), dict(e=entity.id, s=start, t=end, tz=entity.timezone)).all())
    return CompletenessResult(start, end, success, checked, breaks, stats)


def write_completeness(conn: Connection, entity: Entity, result: CompletenessResult, *, run_id: str | None) -> int:
    """Store the day results and the breaks (open) for the unlocked days of the range."""
    locked = sorted(locked_dates(conn, entity.id, result.start, result.end))
    params = dict(e=entity.id, s=result.start, t=result.end, locked=locked)
    conn.execute(sa.text("DELETE FROM breaks WHERE entity_id = :e AND date BETWEEN :s AND :t AND NOT (date = ANY(:locked))"), params)
    conn.execute(sa.text(
        "DELETE FROM recon_results WHERE entity_id = :e AND date BETWEEN :s AND :t AND NOT (date = ANY(:locked))"
        " AND suite = :suite"), dict(params, suite=SUITE))
    locked_set = set(locked)
    result_rows = []
    for day in days_between(result.start, result.end):
        if day in locked_set:
            continue
        day_breaks = result.breaks_on(day)
        result_rows.append(dict(
            e=entity.id, d=day, suite=SUITE, exp=EXPECTATION, ok=not day_breaks, n=result.checked_per_day.get(day, 0),
            f=len(day_breaks), obs=json.dumps({"breaks": len(day_breaks), "checked": result.checked_per_day.get(day, 0)}),
            run=run_id))
    if result_rows:
        conn.execute(sa.text(
            """INSERT INTO recon_results (entity_id, date, suite, expectation, success, checked_count, failed_count, observed, run_id)
               VALUES (:e, :d, :suite, :exp, :ok, :n, :f, CAST(:obs AS jsonb), :run)"""), result_rows)
    break_rows = [
        dict(e=entity.id, d=b.date, acc=b.account_id, asset=b.asset_id, prev=D(b.previous_reported),
             prev_at=b.previous_reported_at, legs=D(b.legs_sum), exp=D(b.expected), rep=D(b.reported),
             rep_at=b.reported_at, diff=D(b.difference), tol=D(b.tolerance), ids=json.dumps(b.leg_ids), run=run_id)
        for b in result.breaks if b.date not in locked_set
    ]
    if break_rows:
        conn.execute(sa.text(
            """INSERT INTO breaks (entity_id, date, account_id, asset_id, previous_reported, previous_reported_at, legs_sum,
                                   expected, reported, reported_at, difference, tolerance, leg_ids, run_id)
               VALUES (:e, :d, :acc, :asset, :prev, CAST(:prev_at AS timestamptz), :legs, :exp, :rep,
                       CAST(:rep_at AS timestamptz), :diff, :tol, CAST(:ids AS jsonb), :run)"""), break_rows)
        apply_break_actions(conn, entity.id, result.start, result.end)
        explain_breaks(conn, entity.id, result.start, result.end)
    return len(break_rows)
