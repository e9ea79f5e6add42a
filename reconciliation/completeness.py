"""The completeness rule: computed in one set-based statement, validated by Great Expectations.

For every account, asset and day with a fresh reported balance (a snapshot inside that day):

    reported(previous) + sum of legs in (previous snapshot time, this snapshot time] = reported(today)

where ``previous`` is the latest snapshot at or before the previous day's cutoff (zero at the
beginning of time; a first close, or one after a gap, loads it first: ``load_openings``). With snapshots stamped at the cutoffs this is DESIGN.md's
``Position(T-2) + Σ legs in (T-2 cutoff, T-1 cutoff] = Position(T-1)``; with snapshots taken
earlier in the day it still compares like with like. Adjustment legs (late data for a locked
day) count on the day they are booked. The tolerance: zero for on-chain accounts (wallet, vault, or
an account with a chain: exact in base units), per source for exchanges (``source_tolerances``,
default 1e-8); a larger difference is a break.

Two steps, each doing its work once:

1. ``compute_differences``: ONE statement over all accounts, assets and days of the run stores every
   non-zero difference in ``completeness_differences`` and returns how many positions it checked per
   day. Where a pair's snapshots all sit at the cutoffs the day's legs are
   ``computed(T-1) - computed(T-2)``, so the rule reads ``gap(T-1) = gap(T-2)`` with
   ``gap = reported - computed``: one aggregate per (account, asset) (one pass over ``positions``, no
   sort) proves a pair clean when its gap is constant over the range. Only the other pairs (a break,
   an intraday snapshot, a missing day, a pair's first day after earlier history) go through the
   window functions over their positions and, off the cutoffs, the lookups of snapshots and legs by time.
2. ``validate_completeness``: Great Expectations runs the rule's expectation, an
   ``UnexpectedRowsExpectation`` "no difference beyond its tolerance", over the stored differences
   (not the 3.65 M positions again), and returns the failing rows with numbers as text (never floats).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.blocking import classify_breaks
from reconciliation.causes import explain_breaks
from reconciliation.break_history import write_breaks
from warehouse.calendar import cutoff_of, days_between, locked_dates
from warehouse.entities import Entity

SUITE = "canonical.completeness"
# Exchanges report balances that may be rounded: a difference up to this much (per source, table
# ``source_tolerances``) is not a break. On-chain accounts (wallet, vault, or with a chain) are exact:
# one base unit of difference is a break.
DEFAULT_EXCHANGE_TOLERANCE = "0.00000001"
EXPECTATION = "position_roll_forward"

_GAP = "(p.reported_quantity - p.computed_quantity)"
_DIFFERENCES = f"""
WITH days AS (
    SELECT g::date AS day, (g::date::timestamp AT TIME ZONE :tz) AS day_start,
           ((g::date + 1)::timestamp AT TIME ZONE :tz) AS cutoff
    FROM generate_series(CAST(:s AS date) - 1, CAST(:t AS date), interval '1 day') g
),
-- one aggregate per (account, asset) over the range and the day before: no sort, no window
pairs AS MATERIALIZED (
    SELECT p.account_id, p.asset_id, count(*) AS n, min(p.date) AS first_day, max(p.date) AS last_day,
           min({_GAP}) AS min_gap, max({_GAP}) AS max_gap,
           bool_and(coalesce(p.reported_at = ((p.date + 1)::timestamp AT TIME ZONE :tz), false)) AS at_cutoffs
    FROM positions p
    WHERE p.entity_id = :e AND p.date BETWEEN CAST(:s AS date) - 1 AND :t
    GROUP BY p.account_id, p.asset_id
),
-- clean: every snapshot at its cutoff, no missing day, a constant gap (every day's difference is zero); a pair
-- starting inside the range starts from zero (no earlier snapshot or leg), so its gap must be zero
classified AS MATERIALIZED (
    SELECT pr.*, pr.at_cutoffs AND pr.n = pr.last_day - pr.first_day + 1 AND pr.min_gap = pr.max_gap
                 AND (pr.first_day < :s OR (pr.max_gap = 0
                      AND NOT EXISTS (SELECT 1 FROM balance_observations b WHERE b.account_id = pr.account_id
                                        AND b.asset_id = pr.asset_id
                                        AND b.observed_at <= (pr.first_day::timestamp AT TIME ZONE :tz))
                      AND NOT EXISTS (SELECT 1 FROM transactions l WHERE l.account_id = pr.account_id
                                        AND l.asset_id = pr.asset_id
                                        AND l.ts <= (pr.first_day::timestamp AT TIME ZONE :tz)))) AS clean
    FROM pairs pr
),
-- the other pairs, row by row: window functions over their positions
pos AS (
    SELECT p.account_id, p.asset_id, p.date, p.computed_quantity, p.reported_quantity, p.reported_at,
           lag(p.date) OVER w AS prev_date, lag(p.reported_quantity) OVER w AS prev_q,
           lag(p.reported_at) OVER w AS prev_at, lag(p.computed_quantity) OVER w AS prev_computed
    FROM classified c JOIN positions p ON p.account_id = c.account_id AND p.asset_id = c.asset_id
    WHERE NOT c.clean AND p.entity_id = :e AND p.date BETWEEN CAST(:s AS date) - 1 AND :t
    WINDOW w AS (PARTITION BY p.account_id, p.asset_id ORDER BY p.date)
),
checked AS MATERIALIZED (
    SELECT pos.*, d.day_start,
           coalesce(pos.prev_date = pos.date - 1, false) AND pos.reported_at = d.cutoff
             AND (coalesce(pos.prev_at = d.day_start, false)
                  -- no reported balance the day before: from zero, unless an opening (load_openings) was loaded since
                  OR (pos.prev_at IS NULL AND NOT EXISTS (
                      SELECT 1 FROM balance_observations b WHERE b.account_id = pos.account_id
                        AND b.asset_id = pos.asset_id AND b.observed_at <= d.day_start))) AS at_cutoffs
    FROM pos JOIN days d ON d.day = pos.date
    WHERE pos.date >= :s AND pos.reported_at > d.day_start
),
tolerances AS (
    SELECT acc.id AS account_id,
           CASE WHEN acc.chain IS NOT NULL OR acc.account_type IN ('wallet', 'vault') THEN 0::numeric
                ELSE coalesce(st.tolerance, CAST(:default_tolerance AS numeric)) END AS tolerance
    FROM accounts acc LEFT JOIN source_tolerances st ON st.source = acc.source
    WHERE acc.entity_id = :e
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
stored AS (
    INSERT INTO completeness_differences (entity_id, date, account_id, asset_id, previous_reported, previous_reported_at,
                                          legs_sum, reported, reported_at, difference, tolerance, run_id)
    SELECT :e, r.date, r.account_id, r.asset_id, coalesce(r.prev_quantity, 0), r.prev_at, r.legs_sum, r.reported_quantity,
           r.reported_at, r.reported_quantity - coalesce(r.prev_quantity, 0) - r.legs_sum, t.tolerance, :run_id
    FROM rolled r JOIN tolerances t ON t.account_id = r.account_id
    WHERE r.reported_quantity - coalesce(r.prev_quantity, 0) - r.legs_sum <> 0 AND NOT (r.date = ANY(:locked))
    RETURNING 1
),
-- positions checked per day: the clean pairs' days as +1/-1 events summed over the days, plus the others'
events AS (
    SELECT day, sum(delta) AS delta FROM (
        SELECT greatest(first_day, CAST(:s AS date)) AS day, 1 AS delta FROM classified WHERE clean AND last_day >= :s
        UNION ALL
        SELECT last_day + 1, -1 FROM classified WHERE clean AND last_day >= :s
    ) e GROUP BY day
),
slow AS (SELECT date AS day, count(*) AS n FROM checked GROUP BY date)
SELECT d.day, (sum(coalesce(ev.delta, 0)) OVER (ORDER BY d.day) + coalesce(sl.n, 0))::int AS checked,
       (SELECT count(*) FROM stored) AS differences
FROM days d LEFT JOIN events ev USING (day) LEFT JOIN slow sl USING (day)
WHERE d.day >= :s
ORDER BY d.day
"""

# The rule as Great Expectations evaluates it, over {batch} = completeness_differences (the typed values are
# inlined by validation_query(): GX takes a plain query). Leg ids are gathered for the failing rows only.
_EXPECTATION_SQL = """
SELECT c.date::text AS date, c.account_id, c.asset_id, c.previous_reported::text AS previous_reported,
       c.previous_reported_at::text AS previous_reported_at, c.legs_sum::text AS legs_sum,
       (c.previous_reported + c.legs_sum)::text AS expected, c.reported::text AS reported,
       c.reported_at::text AS reported_at, c.difference::text AS difference, c.tolerance::text AS tolerance, ids.leg_ids
FROM {batch} c
CROSS JOIN LATERAL (
    SELECT coalesce(string_agg(l.id::text, ',' ORDER BY l.ts, l.id), '') AS leg_ids FROM transactions l
    WHERE l.account_id = c.account_id AND l.asset_id = c.asset_id
      AND ((NOT l.is_adjustment AND l.ts > coalesce(c.previous_reported_at, '-infinity') AND l.ts <= c.reported_at)
           OR (l.is_adjustment AND l.close_date = c.date))
) ids
WHERE c.entity_id = __ENTITY__ AND c.date BETWEEN DATE '__FROM__' AND DATE '__TO__' AND abs(c.difference) > c.tolerance
ORDER BY c.date, c.account_id, c.asset_id
"""


def _checked_timezone(entity: Entity) -> str:
    ZoneInfo(entity.timezone)  # a valid IANA name: letters, digits, '/', '_', '-', '+'
    if not all(ch.isalnum() or ch in "/_-+" for ch in entity.timezone):
        raise ValueError(f"unexpected timezone name {entity.timezone!r}")
    return entity.timezone


def validation_query(entity: Entity, start: date, end: date, batch: str = "{batch}") -> str:
    """The expectation's SQL for one entity and range, with typed values inlined (GX takes a plain query)."""
    _checked_timezone(entity)
    return (_EXPECTATION_SQL.replace("__ENTITY__", str(int(entity.id))).replace("__FROM__", start.isoformat())
            .replace("__TO__", end.isoformat()).replace("{batch}", batch))


_OPENINGS = """
INSERT INTO balance_observations (entity_id, account_id, asset_id, observed_at, quantity, raw_snapshot_id)
SELECT DISTINCT ON (a.id, al.asset_id) :e, a.id, al.asset_id, s.snapshot_time, kv.value::numeric, s.id
FROM raw_balance_snapshots s
CROSS JOIN LATERAL jsonb_each_text(s.balances) AS kv(key, value)
JOIN accounts a ON a.entity_id = s.entity_id AND a.name = s.account AND a.account_type = s.account_type
               AND a.sub_account = s.sub_account
JOIN asset_aliases al ON al.source = s.source AND al.alias = upper(kv.key)
WHERE s.entity_id = :e AND s.snapshot_time <= :upper AND s.snapshot_time > coalesce(CAST(:lower AS timestamptz), '-infinity')
ORDER BY a.id, al.asset_id, s.snapshot_time DESC, s.id DESC
ON CONFLICT (account_id, asset_id, observed_at) DO NOTHING
"""


def load_openings(conn: Connection, entity: Entity, start: date) -> int:
    """The opening of a close that starts at ``start`` with the day before never closed (the entity's first close,
    or after a gap): per (account, asset), the latest reported snapshot at or before the previous cutoff
    (``cutoff(start - 1)``), loaded as a balance observation, so the completeness rule rolls forward from it
    instead of from zero. Snapshots at or before the last closed day's cutoff were loaded by that close.
    Idempotent; returns how many observations it added."""
    previous = conn.execute(sa.text("SELECT max(date) FROM closes WHERE entity_id = :e AND date < :s"),
                            dict(e=entity.id, s=start)).scalar()
    if previous == start - timedelta(days=1):
        return 0
    lower = cutoff_of(previous, entity.tz) if previous is not None else None
    return conn.execute(sa.text(_OPENINGS), dict(e=entity.id, lower=lower,
                                                 upper=cutoff_of(start - timedelta(days=1), entity.tz))).rowcount


def compute_differences(conn: Connection, entity: Entity, start: date, end: date, *,
                        run_id: str | None = None) -> dict[date, int]:
    """Store every non-zero difference of [start, end] (unlocked days); returns the positions checked per day.
    A first close, or one after a gap, opens from the latest snapshot before it (``load_openings``)."""
    tz = _checked_timezone(entity)
    load_openings(conn, entity, start)
    locked = sorted(locked_dates(conn, entity.id, start, end))
    params = dict(e=entity.id, s=start, t=end, tz=tz, locked=locked, run_id=run_id,
                  default_tolerance=DEFAULT_EXCHANGE_TOLERANCE)
    conn.execute(sa.text("SET LOCAL jit = off"))  # compiling this plan costs more than running it
    conn.execute(sa.text("DELETE FROM completeness_differences WHERE entity_id = :e AND date BETWEEN :s AND :t"
                         " AND NOT (date = ANY(:locked))"), params)
    return {row.day: row.checked for row in conn.execute(sa.text(_DIFFERENCES), params)}


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
    """Great Expectations over the stored differences of [start, end]: (success, failing rows, statistics)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # imported lazily: 4-6 s

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_sql(name="coinfrs", connection_string=database_url)
    asset = source.add_table_asset(name="completeness_differences", table_name="completeness_differences")
    batch = asset.add_batch_definition_whole_table("all").get_batch()
    expectation = gx.expectations.UnexpectedRowsExpectation(
        unexpected_rows_query=validation_query(entity, start, end),
        description="Position(T-2) + legs of the day = Position(T-1), per account, asset and day: "
                    "no difference beyond its tolerance",
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


def check_completeness(database_url: str, entity: Entity, start: date, end: date, *,
                       run_id: str | None = None) -> CompletenessResult:
    """Compute and store the differences of [start, end] (committed: GX reads them through its own connection),
    then validate them with Great Expectations."""
    from warehouse.db import get_engine

    with get_engine(database_url).begin() as conn:
        checked = compute_differences(conn, entity, start, end, run_id=run_id)
    success, breaks, stats = validate_completeness(database_url, entity, start, end)
    return CompletenessResult(start, end, success, checked, breaks, stats)


def write_completeness(conn: Connection, entity: Entity, result: CompletenessResult, *, run_id: str | None) -> int:
    """Store the day results and the breaks of the unlocked days of the range (``reconciliation/break_history.py``):
    a break found again keeps its id, a new one is opened, a stored one no longer found is resolved with the reason.
    Returns how many breaks the check found."""
    locked = sorted(locked_dates(conn, entity.id, result.start, result.end))
    params = dict(e=entity.id, s=result.start, t=result.end, locked=locked)
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
    found = [
        dict(date=b.date.isoformat(), account_id=b.account_id, asset_id=b.asset_id,
             previous_reported=b.previous_reported, previous_reported_at=b.previous_reported_at,
             legs_sum=b.legs_sum, expected=b.expected, reported=b.reported, reported_at=b.reported_at,
             difference=b.difference, tolerance=b.tolerance, leg_ids=b.leg_ids)
        for b in result.breaks if b.date not in locked_set
    ]
    write_breaks(conn, entity.id, result.start, result.end, locked, found, run_id=run_id)
    if found:
        explain_breaks(conn, entity.id, result.start, result.end)
        classify_breaks(conn, entity.id, result.start, result.end)
    return len(found)


def load_day_results(conn: Connection, entity_id: int, start: date, end: date) -> dict[date, dict[str, int]]:
    """The stored completeness result of each day of [start, end]: positions checked, breaks, breaks at ERROR."""
    rows = conn.execute(sa.text(
        """SELECT r.date, r.checked_count AS checked, r.failed_count AS breaks,
                  (SELECT count(*) FROM breaks b WHERE b.entity_id = r.entity_id AND b.date = r.date
                     AND b.status = 'open' AND b.severity = 'error') AS errors
           FROM recon_results r WHERE r.entity_id = :e AND r.date BETWEEN :s AND :t AND r.suite = :suite"""),
        dict(e=entity_id, s=start, t=end, suite=SUITE)).mappings().all()
    return {r["date"]: {"checked": r["checked"], "breaks": r["breaks"], "errors": r["errors"]} for r in rows}
