"""The daily close as Dagster software-defined assets (thin wrappers over the packages).

Every asset is partitioned by day and backfills as a single run over a range of days
(set-based SQL over the whole range, not one run per day). Which entities a run closes comes
from the run tag ``coinfrs/entities`` (comma-separated names or ids); without it, all of them.

Chain: source_sync (exchanges and wallets into staging; CSV imports fill staging directly) -> canonical_ledger
-> close_prices -> reconciliation (+ completeness check) -> cost_basis_pnl -> daily_close.
"""


import json
import warnings
from datetime import date

import dagster as dg

from assets.prices import close_prices
from assets.progress import report
from assets.partitions import daily_partitions, window_of
from assets.resources import WarehouseResource, entities_in_scope
from assets.sources import source_sync
from assets.staging import raw_balance_snapshots, raw_records
from reconciliation.close import close_summaries, write_closes
from reconciliation.staleness import restale_after
from reconciliation.blocking import build_pnl_until_blocked
from reconciliation.completeness import EXPECTATION, check_completeness, load_day_results, write_completeness
from reconciliation.suites import run_suites, write_suite_results
from reconciliation.report import close_report_markdown, write_close_provenance, write_report_files
from transforms.canonical import build_canonical
from transforms.pnl import CONFIGURED
from warehouse.journal import enforce_tieout
from warehouse.reports import list_breaks
from warehouse.numbers import ZERO, to_text
from warehouse.settings import get_settings

warnings.filterwarnings("ignore", category=dg.BetaWarning)  # backfill_policy is beta in 1.13
warnings.filterwarnings("ignore", category=dg.PreviewWarning)  # partitioned asset check specs are preview in 1.13
SINGLE_RUN = dg.BackfillPolicy.single_run()
COMPLETENESS = "completeness"
_MAX_TABLE_ROWS = 100


def _range_label(start: date, end: date) -> str:
    return start.isoformat() if start == end else f"{start.isoformat()}..{end.isoformat()}"


SUITE_CHECKS = {"staging": "staging_expectations", "canonical": "canonical_expectations"}


def _suite_check_specs() -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(
        name, asset="canonical_ledger", partitions_def=daily_partitions, blocking=True,
        description=f"Great Expectations suite on the {suite} layer (reconciliation/suites.py). A failing 'error' "
                    "expectation (invalid data) fails at ERROR severity and stops PnL and the close; 'warn' ones warn.")
        for suite, name in SUITE_CHECKS.items()]


def _failing_table(rows: list[dict]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in rows[:_MAX_TABLE_ROWS]],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in
                                       ("entity", "date", "expectation", "severity", "failing row")]))


def _suite_check_results(context: dg.AssetExecutionContext, failing: dict[str, list[dict]]) -> list[dg.AssetCheckResult]:
    """One check result per suite (and, over a range, one evaluation per day) with a table of the failing rows."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    results = []
    for suite, name in SUITE_CHECKS.items():
        rows = failing.get(suite, [])
        errors = [r for r in rows if r["severity"] == "error"]
        severity = dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN
        if len(context.partition_keys) > 1:
            for day in context.partition_keys:
                day_rows = [r for r in rows if r["date"] == day]
                context.log_event(AssetCheckEvaluation(
                    asset_key=context.asset_key, check_name=name, passed=not day_rows, partition=day, blocking=True,
                    severity=dg.AssetCheckSeverity.ERROR if any(r["severity"] == "error" for r in day_rows)
                    else dg.AssetCheckSeverity.WARN,
                    metadata={"failing rows": dg.MetadataValue.int(len(day_rows)), "failing": _failing_table(day_rows)}))
        results.append(dg.AssetCheckResult(
            check_name=name, passed=not rows, severity=severity,
            metadata={"failing rows": dg.MetadataValue.int(len(rows)), "errors": dg.MetadataValue.int(len(errors)),
                      "failing": _failing_table(rows)},
            description=f"{len(rows)} failing row(s), {len(errors)} at error severity"))
    return results


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="canonical",
    deps=[raw_records, raw_balance_snapshots, source_sync],
    kinds={"postgres"},
    check_specs=_suite_check_specs(),
    description=(
        "Canonical layer for the day(s): legs from the latest version of each staged ledger record, "
        "internal transfers matched by tx hash (else amount and time window), balance observations from staged "
        "snapshots, ledger prices, and daily positions (computed from legs vs reported). Rebuilt from staging; locked days untouched."
    ),
)
def canonical_ledger(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    start, end = window_of(context)
    totals = {"legs": 0, "adjustment legs": 0, "transfers matched": 0, "transfers unmatched": 0,
              "balance observations": 0, "positions": 0, "records quarantined": 0}
    unknown: set[str] = set()
    failing: dict[str, list[dict]] = {}
    for entity in entities_in_scope(context, warehouse):
        with warehouse.engine().begin() as conn:
            stats = build_canonical(conn, entity, start, end, run_id=context.run_id)
        report(context, f"canonical ledger · {entity.name} · {_range_label(start, end)}: {stats.legs} legs, "
               f"{stats.transfers_matched} transfers matched, {stats.positions} positions"
               + (f", {stats.quarantined} record(s) quarantined (their days are partial)" if stats.quarantined else ""))
        for key, value in (("legs", stats.legs), ("adjustment legs", stats.adjustment_legs),
                           ("transfers matched", stats.transfers_matched), ("transfers unmatched", stats.transfers_unmatched),
                           ("balance observations", stats.observations), ("positions", stats.positions),
                           ("records quarantined", stats.quarantined)):
            totals[key] += value
        unknown.update(stats.unknown_assets)
        outcomes = run_suites(warehouse.url(), entity, start, end)
        with warehouse.engine().begin() as conn:
            write_suite_results(conn, entity, start, end, outcomes, run_id=context.run_id)
        for outcome in outcomes:
            for row in outcome.failing_rows:
                failing.setdefault(outcome.expectation.suite, []).append({
                    "entity": entity.name, "date": str(row.get("date")), "expectation": outcome.expectation.name,
                    "severity": outcome.expectation.severity, "failing row": json.dumps(row, sort_keys=True)})
    return dg.MaterializeResult(check_results=_suite_check_results(context, failing), metadata={
        **{k: dg.MetadataValue.int(v) for k, v in totals.items()},
        "days": dg.MetadataValue.text(_range_label(start, end)),
        "unknown assets (flagged)": dg.MetadataValue.text(", ".join(sorted(unknown)) or "none"),
    })


def _breaks_table(rows: list[dict]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in rows[:_MAX_TABLE_ROWS]],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in
                                       ("entity", "date", "account", "asset", "expected", "reported", "difference")]),
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="reconciliation",
    deps=[canonical_ledger],
    kinds={"postgres"},
    check_specs=[dg.AssetCheckSpec(
        COMPLETENESS, asset="reconciliation", partitions_def=daily_partitions, blocking=False,
        description="Position(T-2) + legs of the day = Position(T-1) for every account, asset and day with a "
                    "reported balance (one set-based query, then a Great Expectations UnexpectedRowsExpectation over "
                    "the stored differences). Breaks warn; a break at ERROR severity (the entity's recon policy) fails "
                    "the day at ERROR and stops PnL and the close of that entity from that day on (per entity and "
                    "day, by the cost_basis_pnl and daily_close steps: a Dagster blocking check would stop every "
                    "entity of the run).")],
    description=(
        "Completeness of every account, asset and day with a reported position: one set-based statement for the "
        "whole range stores every non-zero difference, Great Expectations validates them. Stores one result per day "
        "and one break per failing account/asset/day with the difference, the legs of the window, ranked causes and "
        "its severity."
    ),
)
def reconciliation(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    start, end = window_of(context)
    per_day: dict[str, list[dict]] = {}
    day_totals: dict[str, dict[str, int]] = {}
    for entity in entities_in_scope(context, warehouse):
        result = check_completeness(warehouse.url(), entity, start, end, run_id=context.run_id)
        with warehouse.engine().begin() as conn:
            write_completeness(conn, entity, result, run_id=context.run_id)
        with warehouse.engine().connect() as conn:  # the checks show what is stored
            stored = load_day_results(conn, entity.id, start, end)
            stored_breaks = list_breaks(conn, entity.id, start, end)
        errors = sum(r["errors"] for r in stored.values())
        report(context, f"reconciliation · {entity.name} · {_range_label(start, end)}: "
                        f"{sum(r['checked'] for r in stored.values())} checked, {len(stored_breaks)} break(s)"
                        + (f", {errors} at ERROR severity (blocks PnL and the close from that day)" if errors else ""))
        for day, counts in stored.items():
            totals = day_totals.setdefault(day.isoformat(), {"checked": 0, "breaks": 0, "errors": 0})
            for key in totals:
                totals[key] += counts[key]
        for b in stored_breaks:
            per_day.setdefault(b["date"], []).append({
                "entity": entity.name, "date": b["date"], "account": b["account"], "asset": b["asset"],
                "expected": b["expected"], "reported": b["reported"], "difference": b["difference"]})
    all_breaks = [row for day in sorted(per_day) for row in per_day[day]]

    def day_metadata(day: str) -> dict:
        rows = per_day.get(day, [])
        totals = day_totals.get(day, {})
        return {"checked": dg.MetadataValue.int(totals.get("checked", 0)), "breaks": dg.MetadataValue.int(len(rows)),
                "breaks at ERROR severity": dg.MetadataValue.int(totals.get("errors", 0)),
                "breaks of the day": _breaks_table(rows)}

    def severity(day: str | None = None) -> dg.AssetCheckSeverity:
        days = [day] if day else list(day_totals)
        return (dg.AssetCheckSeverity.ERROR if any(day_totals.get(d, {}).get("errors") for d in days)
                else dg.AssetCheckSeverity.WARN)

    keys = context.partition_keys
    if len(keys) > 1:  # a range: one evaluation per day, so the UI shows each day's result
        for day in keys:
            context.log_event(AssetCheckEvaluation(
                asset_key=context.asset_key, check_name=COMPLETENESS, passed=not per_day.get(day),
                metadata=day_metadata(day), partition=day, severity=severity(day), blocking=False,
                description=f"{EXPECTATION}: {len(per_day.get(day, []))} break(s)"))
    summary = dg.AssetCheckResult(
        check_name=COMPLETENESS, passed=not all_breaks, severity=severity(keys[0] if len(keys) == 1 else None),
        metadata=day_metadata(keys[0]) if len(keys) == 1 else {
            "days": dg.MetadataValue.text(_range_label(start, end)),
            "days with breaks": dg.MetadataValue.int(len(per_day)), "breaks": dg.MetadataValue.int(len(all_breaks)),
            "breaks at ERROR severity": dg.MetadataValue.int(sum(t["errors"] for t in day_totals.values()))},
        description=f"{len(all_breaks)} break(s) over {_range_label(start, end)}")
    return dg.MaterializeResult(
        metadata={"checked (account, asset, day)": dg.MetadataValue.int(sum(t["checked"] for t in day_totals.values())),
                  "breaks": dg.MetadataValue.int(len(all_breaks)), "breaks table": _breaks_table(all_breaks)},
        check_results=[summary])


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="pnl",
    deps=[reconciliation, close_prices],
    kinds={"postgres"},
    description=(
        "Cost basis: the reference FIFO books (universal pool and per-account pools) and the entity's configured "
        "book (method and pool per effective date, `coinfrs pnl book set`): disposals matched to lots (realized PnL, "
        "holding period), open lots, roll-forward movements and unrealized PnL at the day's close price. Restarts "
        "from the stored open-lot state of the day before the run when its inputs are unchanged, else from the first leg. "
        "An entity with a break at ERROR severity gets PnL only up to the day before it (reconciliation/blocking.py)."
    ),
)
def cost_basis_pnl(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    start, end = window_of(context)
    realized: dict[tuple[str, str], object] = {}
    disposals = 0
    issues = 0
    blocked: dict[str, str] = {}
    for entity in entities_in_scope(context, warehouse):
        with warehouse.engine().begin() as conn:
            run = build_pnl_until_blocked(conn, entity, start, end, run_id=context.run_id)
        if run.blocked_from is not None:
            blocked[entity.name] = run.blocked_from.isoformat()
            report(context, f"cost basis · {entity.name}: blocked from {run.blocked_from} by {run.blocked_by}; "
                            "no PnL booked from that day on")
        stats = run.stats
        if stats is None:
            continue
        disposals += stats.disposals_written
        restarts = ", ".join(f"{m}:{p} from {d or 'the first leg'}" for (m, p), d in stats.restarted_from.items())
        report(context, f"cost basis · {entity.name} · {_range_label(start, run.booked_through)}: "
                        f"{stats.disposals_written} disposals (fifo universal + per account, configured book; "
                        f"restarted {restarts})")
        for ident, book in stats.books.items():
            realized[ident] = realized.get(ident, ZERO) + sum((d.realized_gain for d in book.disposals
                                                                if start <= d.date <= end), ZERO)
            issues += len(book.issues)
            for issue in book.issues[:20]:
                context.log.warning(f"{entity.name} {book.label}: {issue}")
    return dg.MaterializeResult(metadata={
        "disposals": dg.MetadataValue.int(disposals),
        "realized gain USD (fifo, universal)": dg.MetadataValue.text(to_text(realized.get(("fifo", "universal"), ZERO)) or "0"),
        "realized gain USD (fifo, per account)": dg.MetadataValue.text(to_text(realized.get(("fifo", "account"), ZERO)) or "0"),
        "realized gain USD (configured book)": dg.MetadataValue.text(to_text(realized.get(CONFIGURED, ZERO)) or "0"),
        "issues (shortfalls, missing prices)": dg.MetadataValue.int(issues),
        "blocked (entity: first blocked day)": dg.MetadataValue.json(blocked),
    })


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="close",
    deps=[cost_basis_pnl],
    kinds={"postgres"},
    description="One close record per entity and day: status (closed / breaks / partial / failed), counts, realized PnL, "
                "lock flag, provenance (inputs, code version, cursors, output hash) and the HTML close report.",
)
def daily_close(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    start, end = window_of(context)
    rows = []
    reports: dict[str, str] = {}
    for entity in entities_in_scope(context, warehouse):
        with warehouse.engine().begin() as conn:
            write_closes(conn, entity, start, end, run_id=context.run_id)
            for failure in enforce_tieout(conn, entity, start, end, run_id=context.run_id):  # GL = subledger, or failed
                context.log.error(f"{entity.name} {failure.date}: {failure.message}")
            restale_after(conn, entity.id, start, end)
            write_close_provenance(conn, entity, start, end, run_id=context.run_id)
            entity_rows = close_summaries(conn, entity, start, end)
            reports.update(write_report_files(conn, entity, start, end, get_settings().data_dir / "reports"))
        rows.extend(entity_rows)
        report(context, f"close · {entity.name} · {_range_label(start, end)}: {len(entity_rows)} day(s) closed")
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    latest = {name: path for name, path in sorted(reports.items())}
    return dg.MaterializeResult(metadata={
        **{f"days {status}": dg.MetadataValue.int(n) for status, n in sorted(statuses.items())},
        **{f"close report {name}": dg.MetadataValue.path(path) for name, path in latest.items()},
        "close report": dg.MetadataValue.md(close_report_markdown(rows)),
        "closes": dg.MetadataValue.table(
            records=[dg.TableRecord(r) for r in rows[-_MAX_TABLE_ROWS:]],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in
                                           ("entity", "date", "status", "legs", "positions", "breaks", "realized_gain")])),
    })


CLOSE_ASSETS = [source_sync, canonical_ledger, close_prices, reconciliation, cost_basis_pnl,
                daily_close]
