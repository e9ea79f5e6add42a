"""Expectation suites on both layers, run by Great Expectations (imported lazily).

Every expectation is an ``UnexpectedRowsExpectation``: a query over the range that returns the
failing rows (each with its ``date``), so one GX validation covers all days of a run and the failing
rows come back for the results table and the Dagster UI.

Severity (what blocks):
- ``error``: the data is invalid or the check could not run — staging keys empty or ambiguous,
  unparseable payloads, impossible timestamps, legs of kinds outside the vocabulary (transforms/events.py),
  ``unclassified`` legs (an operation no mapper understands; the failing row carries the raw record), legs whose
  sign contradicts their kind, legs without their account,
  asset or raw record, matched transfers missing a side. An error fails the day's asset check at
  ERROR severity, which stops PnL and the close of the run (its closes are marked ``failed`` with
  the expectation's name).
  A negative computed balance of a crypto asset in an account that is not a liability (anything but
  ``margin_loan``, ``loan``) is an error too: legs are missing (an acquisition, a deposit) or booked twice, and no
  book built on it can be right; the failing row names the day's legs and the leg that took the balance below zero.
  (A negative fiat balance is a warning: fiat has no lots, and many ledgers leave out the cash that funded trades.)
- ``warn``: the data is valid but the books do not tie — completeness breaks (``completeness.py``),
  a negative reported balance in accounts that cannot go negative (spot, wallet), an expected stream that did
  not run for a day (recorded as a source outage: the close of that day is ``partial``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.completeness import gx_error
from reconciliation.outages import record_source_outage
from transforms.events import KIND_VALUES, KINDS
from warehouse.calendar import days_between, locked_dates
from warehouse.entities import Entity

# The closed vocabulary of leg kinds (transforms/events.py; the database's CHECK constraint enforces it too).
ACCEPTED_KINDS = KIND_VALUES
_DIRECTED = {d: [s.kind.value for s in KINDS.values() if s.direction == d] for d in ("in", "out")}
NON_NEGATIVE_ACCOUNT_TYPES = ("spot", "wallet")
LIABILITY_ACCOUNT_TYPES = ("margin_loan", "isolated_margin_loan", "loan")  # may hold a negative balance: the debt
MAX_FAILING_ROWS = 100
STAGING, CANONICAL = "staging", "canonical"


@dataclass(frozen=True)
class Expectation:
    suite: str
    name: str
    severity: str  # error | warn
    description: str
    # failing rows with a ``date`` column over ``{batch}`` (= ``table``); range and entity inlined. Every query
    # joins: GX then substitutes ``({batch})`` and the query's own alias applies.
    sql: str
    table: str = "raw_records"


# The day of an instant: the entity's close day it belongs to (a moment at a cutoff ends its day).
_DAY = "((%s - interval '1 microsecond') AT TIME ZONE '__TZ__')::date"

def _negative_balance_sql(*, fiat: bool) -> str:
    """Positions of non-liability accounts with a negative computed quantity, with the day's legs and the leg that
    took the balance below zero (the start of the current negative stretch)."""
    return f"""SELECT p.date::text AS date, p.account_id, a.name AS account, a.account_type, s.symbol AS asset,
                      p.computed_quantity::text AS computed,
                      (SELECT string_agg(l.id::text, ', ' ORDER BY l.ts, l.id) FROM transactions l
                       WHERE l.entity_id = p.entity_id AND l.account_id = p.account_id AND l.asset_id = p.asset_id
                         AND l.close_date = p.date) AS legs_of_the_day,
                      (SELECT r.id FROM (SELECT l.id, l.ts, sum(l.quantity) OVER w AS balance,
                                                sum(l.quantity) OVER w - l.quantity AS before
                                         FROM transactions l
                                         WHERE l.entity_id = p.entity_id AND l.account_id = p.account_id
                                           AND l.asset_id = p.asset_id AND l.close_date <= p.date
                                         WINDOW w AS (ORDER BY l.ts, l.id)) r
                       WHERE r.balance < 0 AND r.before >= 0 ORDER BY r.ts DESC, r.id DESC LIMIT 1) AS went_negative_at_leg
               FROM {{batch}} p JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id
               WHERE p.entity_id = __E__ AND p.date BETWEEN '__S__' AND '__T__' AND p.computed_quantity < 0
                 AND {'' if fiat else 'NOT '}s.is_fiat
                 AND NOT (a.account_type = ANY(ARRAY[{', '.join(repr(t) for t in LIABILITY_ACCOUNT_TYPES)}]))"""


EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation(STAGING, "raw_keys_not_empty", "error", "source, account, stream and the source's own id are present",
                f"""SELECT {_DAY % 'r.occurred_at'}::text AS date, r.id AS raw_record_id, r.source, r.stream, r.account,
                           r.source_raw_id FROM {{batch}} r JOIN entities en ON en.id = r.entity_id
                    WHERE r.entity_id = __E__ AND {_DAY % 'r.occurred_at'} BETWEEN '__S__' AND '__T__'
                      AND (btrim(r.source) = '' OR btrim(r.account) = '' OR btrim(r.stream) = ''
                           OR btrim(r.source_raw_id) = '')"""),
    Expectation(STAGING, "raw_keys_unique_per_source_stream", "error",
                "a source id names one record per source and stream (not two accounts' records)",
                f"""SELECT {_DAY % 'min(r.occurred_at)'}::text AS date, r.source, r.stream, r.source_raw_id,
                           string_agg(DISTINCT r.account, ', ') AS accounts FROM {{batch}} r JOIN entities en ON en.id = r.entity_id
                    WHERE r.entity_id = __E__ AND {_DAY % 'r.occurred_at'} BETWEEN '__S__' AND '__T__'
                    GROUP BY r.source, r.stream, r.source_raw_id HAVING count(DISTINCT r.account) > 1"""),
    Expectation(STAGING, "payload_parseable", "error",
                "the payload is a JSON object with the fields its stream needs",
                f"""SELECT {_DAY % 'r.occurred_at'}::text AS date, r.id AS raw_record_id, r.source, r.stream,
                           r.source_raw_id FROM {{batch}} r JOIN entities en ON en.id = r.entity_id
                    WHERE r.entity_id = __E__ AND {_DAY % 'r.occurred_at'} BETWEEN '__S__' AND '__T__'
                      AND (jsonb_typeof(r.payload) <> 'object' OR r.payload_hash = ''
                           OR (r.source = 'csv' AND r.stream = 'ledger' AND NOT r.payload ?& ARRAY['timestamp', 'action', 'asset', 'quantity', 'account'])
                           OR (r.stream = 'adjustments' AND NOT r.payload ?& ARRAY['quantity', 'asset', 'account', 'entered_by', 'reason']))"""),
    Expectation(STAGING, "staged_records_have_a_mapper", "error",
                "every staged record's stream has a mapper (transforms/mappers.py): a record staged that no mapper "
                "turns into legs would close to nothing without a word; the row names the source and stream",
                f"""SELECT {_DAY % 'r.occurred_at'}::text AS date, r.source, r.stream, count(*) AS records,
                           min(r.source_raw_id) AS example_source_raw_id, string_agg(DISTINCT r.account, ', ') AS accounts
                    FROM {{batch}} r JOIN entities en ON en.id = r.entity_id
                    WHERE r.entity_id = __E__ AND {_DAY % 'r.occurred_at'} BETWEEN '__S__' AND '__T__'
                      AND r.processing_status <> 'orphaned'
                      AND NOT ((r.source || '/' || r.stream) = ANY(ARRAY[__MAPPED__]::text[]))
                    GROUP BY 1, r.source, r.stream"""),
    Expectation(STAGING, "timestamps_inside_ingestion_window", "error",
                "every record has an event time, not after it was ingested and not before 2009-01-03",
                f"""SELECT coalesce({_DAY % 'r.occurred_at'}, {_DAY % 'r.ingested_at'})::text AS date, r.id AS raw_record_id,
                           r.source, r.stream, r.source_raw_id, r.occurred_at::text AS occurred_at,
                           r.ingested_at::text AS ingested_at FROM {{batch}} r JOIN entities en ON en.id = r.entity_id
                    WHERE r.entity_id = __E__
                      AND coalesce({_DAY % 'r.occurred_at'}, {_DAY % 'r.ingested_at'}) BETWEEN '__S__' AND '__T__'
                      AND (r.occurred_at IS NULL OR r.occurred_at > r.ingested_at + interval '5 minutes'
                           OR r.occurred_at < TIMESTAMPTZ '2009-01-03 00:00:00+00')"""),
    Expectation(STAGING, "expected_streams_ran", "warn",
                "every stream expected for the entity ran after the day ended (a missing stream is a failure, not silence)",
                """SELECT d.day::text AS date, x.source, x.stream FROM {batch} x
                   CROSS JOIN LATERAL (SELECT g::date AS day FROM generate_series(greatest(DATE '__S__', x.since),
                                                                                  DATE '__T__', interval '1 day') g) d
                   WHERE x.entity_id = __E__ AND NOT EXISTS (
                       SELECT 1 FROM ingestion_runs i WHERE i.entity_id = x.entity_id AND i.source = x.source
                         AND i.stream = x.stream AND i.status = 'succeeded'
                         AND coalesce(i.finished_at, i.started_at) >= ((d.day + 1)::timestamp AT TIME ZONE '__TZ__'))""",
                "expected_streams"),
    Expectation(CANONICAL, "accepted_kinds", "error", f"every leg's kind is one of: {', '.join(ACCEPTED_KINDS)}",
                f"""SELECT l.close_date::text AS date, l.id AS leg_id, l.kind FROM {{batch}} l JOIN entities en ON en.id = l.entity_id
                    WHERE l.entity_id = __E__ AND l.close_date BETWEEN '__S__' AND '__T__'
                      AND NOT (l.kind = ANY(ARRAY[{', '.join(repr(k) for k in ACCEPTED_KINDS)}]))""", "transactions"),
    Expectation(CANONICAL, "no_unclassified_legs", "error",
                "every leg's operation is understood (kind not 'unclassified'): an unclassified leg is never booked, and "
                "PnL is blocked from its day until a rule or a manual classification classifies it",
                f"""SELECT l.close_date::text AS date, l.id AS leg_id, l.raw_record_id, r.source, r.stream, r.source_raw_id,
                          r.payload::text AS raw_record FROM {{batch}} l JOIN entities en ON en.id = l.entity_id
                   JOIN raw_records r ON r.id = l.raw_record_id
                   WHERE l.entity_id = __E__ AND l.close_date BETWEEN '__S__' AND '__T__' AND l.kind = 'unclassified'""",
                "transactions"),
    Expectation(CANONICAL, "kind_agrees_with_direction", "error",
                "a leg whose kind has a direction moves that way (a buy or income adds, a sell or fee takes away)",
                f"""SELECT l.close_date::text AS date, l.id AS leg_id, l.raw_record_id, l.kind, l.quantity::text AS quantity
                   FROM {{batch}} l JOIN entities en ON en.id = l.entity_id
                   WHERE l.entity_id = __E__ AND l.close_date BETWEEN '__S__' AND '__T__'
                     AND ((l.kind = ANY(ARRAY[{', '.join(repr(k) for k in _DIRECTED['in'])}]) AND l.quantity < 0)
                          OR (l.kind = ANY(ARRAY[{', '.join(repr(k) for k in _DIRECTED['out'])}]) AND l.quantity > 0))""",
                "transactions"),
    Expectation(CANONICAL, "lineage", "error",
                "every leg references an existing account and asset of the entity and the raw record it came from",
                """SELECT l.close_date::text AS date, l.id AS leg_id, l.raw_record_id,
                          (r.id IS NULL) AS raw_missing, (a.id IS NULL) AS account_missing, (s.id IS NULL) AS asset_missing
                   FROM {batch} l
                   LEFT JOIN raw_records r ON r.id = l.raw_record_id AND r.entity_id = l.entity_id
                   LEFT JOIN accounts a ON a.id = l.account_id AND a.entity_id = l.entity_id
                   LEFT JOIN assets s ON s.id = l.asset_id
                   WHERE l.entity_id = __E__ AND l.close_date BETWEEN '__S__' AND '__T__'
                     AND (r.id IS NULL OR a.id IS NULL OR s.id IS NULL)""", "transactions"),
    Expectation(CANONICAL, "matched_transfers_have_both_sides", "error",
                "a matched transfer has its outgoing and incoming legs, same asset, opposite quantities",
                """SELECT x.close_date::text AS date, x.id AS transfer_id, x.tx_hash, x.out_leg_id, x.in_leg_id
                   FROM {batch} x
                   LEFT JOIN transactions o ON o.id = x.out_leg_id
                   LEFT JOIN transactions i ON i.id = x.in_leg_id
                   WHERE x.entity_id = __E__ AND x.close_date BETWEEN '__S__' AND '__T__' AND x.status = 'matched'
                     AND (o.id IS NULL OR i.id IS NULL OR o.asset_id <> i.asset_id OR o.quantity >= 0 OR i.quantity <= 0)""",
                "transfers"),
    Expectation(CANONICAL, "no_negative_computed_balance", "error",
                "an account that is not a liability never holds a negative computed quantity of a crypto asset (a "
                "missing acquisition or deposit, or a leg booked twice); the row names the day's legs and the leg "
                "that took it below zero", _negative_balance_sql(fiat=False), "positions"),
    Expectation(CANONICAL, "no_negative_computed_fiat_balance", "warn",
                "an account that is not a liability never holds a negative computed fiat balance (the cash side of "
                "trades without the funding that paid for them); the row names the legs",
                _negative_balance_sql(fiat=True), "positions"),
    Expectation(CANONICAL, "no_negative_reported_in_spot_or_wallet", "warn",
                "spot and wallet accounts never report a negative quantity",
                """SELECT p.date::text AS date, p.account_id, a.name AS account, a.account_type, s.symbol AS asset,
                          p.computed_quantity::text AS computed, p.reported_quantity::text AS reported
                   FROM {batch} p JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id
                   WHERE p.entity_id = __E__ AND p.date BETWEEN '__S__' AND '__T__'
                     AND a.account_type = ANY(ARRAY['spot', 'wallet']) AND p.reported_quantity < 0""", "positions"),
)


def _mapped_streams() -> str:
    """Every registered (source, stream) as SQL text literals ``'source/stream'`` (quotes doubled)."""
    from transforms.mappers import registered_streams

    return ", ".join("'" + f"{source}/{stream}".replace("'", "''") + "'" for source, stream in registered_streams())


def expectation_query(expectation: Expectation, entity: Entity, start: date, end: date) -> str:
    from reconciliation.completeness import validation_query

    validation_query(entity, start, end)  # validates the timezone name before it is inlined
    return (expectation.sql.replace("__MAPPED__", _mapped_streams()).replace("__E__", str(int(entity.id)))
            .replace("__S__", start.isoformat())
            .replace("__T__", end.isoformat()).replace("__TZ__", entity.timezone))


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: Expectation
    failing_rows: list[dict]

    def on(self, day: date) -> list[dict]:
        return [r for r in self.failing_rows if r.get("date") == day.isoformat()]


def run_suites(database_url: str, entity: Entity, start: date, end: date) -> list[ExpectationOutcome]:
    """Validate every expectation for [start, end] through Great Expectations; failing rows come back."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # imported lazily: 4-6 s

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_sql(name="coinfrs", connection_string=database_url)
    batches: dict[str, Any] = {}
    outcomes = []
    for expectation in EXPECTATIONS:
        if expectation.table not in batches:
            batches[expectation.table] = source.add_table_asset(
                name=expectation.table, table_name=expectation.table).add_batch_definition_whole_table("all").get_batch()
        result = batches[expectation.table].validate(gx.expectations.UnexpectedRowsExpectation(
            unexpected_rows_query=expectation_query(expectation, entity, start, end),
            description=f"{expectation.suite}.{expectation.name}: {expectation.description}"), result_format="COMPLETE")
        error = gx_error(result)
        if error:
            raise RuntimeError(f"expectation {expectation.suite}.{expectation.name} could not run: {error}")
        rows = ((result.result or {}).get("details") or {}).get("unexpected_rows") or []
        outcomes.append(ExpectationOutcome(expectation, [{k: _plain(v) for k, v in dict(r).items()} for r in rows]))
    return outcomes


def _plain(value: object) -> object:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # decimals, timestamps: exact text


def write_suite_results(conn: Connection, entity: Entity, start: date, end: date, outcomes: list[ExpectationOutcome],
                        *, run_id: str | None) -> dict[str, int]:
    """Store one result per expectation and unlocked day; record an outage for each expected stream that did not run."""
    locked = locked_dates(conn, entity.id, start, end)
    conn.execute(sa.text("DELETE FROM expectation_results WHERE entity_id = :e AND date BETWEEN :s AND :t"
                         " AND NOT (date = ANY(:locked))"), dict(e=entity.id, s=start, t=end, locked=sorted(locked)))
    rows, failed = [], {"error": 0, "warn": 0}
    for outcome in outcomes:
        for day in days_between(start, end):
            if day in locked:
                continue
            failing = outcome.on(day)
            if failing:
                failed[outcome.expectation.severity] += 1
            rows.append(dict(e=entity.id, d=day, suite=outcome.expectation.suite, exp=outcome.expectation.name,
                             sev=outcome.expectation.severity, ok=not failing,
                             obs=json.dumps({"failing_rows": len(failing)}), rows=json.dumps(failing[:MAX_FAILING_ROWS]),
                             run=run_id))
            if outcome.expectation.name == "expected_streams_ran":
                for row in failing:
                    record_source_outage(conn, entity.id, str(row["source"]), day,
                                         "expected stream did not run for the day (no successful ingestion run after "
                                         "its cutoff)", stream=str(row["stream"]))
    if rows:
        conn.execute(sa.text(
            """INSERT INTO expectation_results (entity_id, date, suite, expectation, severity, success, observed_value,
                                                failing_rows, run_id)
               VALUES (:e, :d, :suite, :exp, :sev, :ok, CAST(:obs AS jsonb), CAST(:rows AS jsonb), :run)"""), rows)
    return failed


def expect_stream(conn: Connection, entity_id: int, source: str, stream: str, since: date) -> None:
    """Declare that ``source``/``stream`` must run for every day from ``since`` on."""
    conn.execute(sa.text(
        """INSERT INTO expected_streams (entity_id, source, stream, since) VALUES (:e, :src, :st, :since)
           ON CONFLICT (entity_id, source, stream) DO UPDATE SET since = EXCLUDED.since"""),
        dict(e=entity_id, src=source, st=stream, since=since))


