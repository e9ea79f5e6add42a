"""The daily close as Dagster software-defined assets (thin wrappers over the packages).

Every asset is partitioned by day x entity (assets/partitions.py) and backfills as a single run over a range of
days (set-based SQL over the whole range, not one run per day). The entities a run closes are those of its
partitions (in practice one per run).

Checks are evaluated per partition (entity and day), after the asset's materializations of the run are stored, so
the partitions view of each check shows which days of which entity passed and failed.

Chain: source_sync (exchanges and wallets into staging; CSV imports fill staging directly) -> canonical_ledger
-> close_prices -> reconciliation (+ completeness check) -> cost_basis_pnl -> daily_close.
"""


import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import dagster as dg

from assets.prices import close_prices
from assets.progress import report
from assets.partitions import close_partitions, partition_key, window_of
from assets.resources import WarehouseResource, entities_in_scope
from assets.sources import source_sync
from assets.staging import raw_balance_snapshots, raw_records
from reconciliation.close import close_summaries, mark_closing, write_closes
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
        name, asset="canonical_ledger", partitions_def=close_partitions, blocking=True,
        description=f"Great Expectations suite on the {suite} layer (reconciliation/suites.py). A failing 'error' "
                    "expectation (invalid data) fails at ERROR severity and stops PnL and the close; 'warn' ones warn.")
        for suite, name in SUITE_CHECKS.items()]


def _failing_table(rows: list[dict]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in rows[:_MAX_TABLE_ROWS]],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in
                                       ("entity", "date", "expectation", "severity", "failing row")]))


@dataclass(frozen=True)
class PartitionCheck:
    """One check's result for one partition (entity and day)."""

    passed: bool
    severity: dg.AssetCheckSeverity
    metadata: dict
    description: str | None = None


def _target_materializations(context: dg.AssetExecutionContext) -> dict[str, object]:
    """This run's materialization of each of its partitions (stored by now): what each check evaluation targets,
    so Dagster counts the evaluation as current for that partition (one query for the whole range)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData)
    from dagster._core.storage.event_log.base import AssetRecordsFilter

    keys = list(context.partition_keys)
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=keys), limit=len(keys)).records
    targets: dict[str, object] = {}
    for record in records:  # newest first: keep the latest of each partition
        if record.partition_key is not None and record.partition_key not in targets:
            targets[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
    return targets


def partition_check_events(context: dg.AssetExecutionContext, check_name: str, blocking: bool,
                           results: dict[str, PartitionCheck]) -> Iterator[object]:
    """Yield (after the asset's ``MaterializeResult``) the check's output and one evaluation per partition of the
    run; a partition without a result passed. Nothing when the check is not selected in this run."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    check_key = dg.AssetCheckKey(context.asset_key, check_name)
    if check_key not in context.selected_asset_check_keys:
        return
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))
    targets = _target_materializations(context)
    clean = PartitionCheck(True, dg.AssetCheckSeverity.WARN, {})
    for key in context.partition_keys:
        result = results.get(key, clean)
        yield AssetCheckEvaluation(
            asset_key=context.asset_key, check_name=check_name, passed=result.passed, partition=key,
            severity=result.severity, blocking=blocking, metadata=result.metadata, description=result.description,
            target_materialization_data=targets.get(key))


def _row_day(row: dict, start: date, end: date) -> date:
    """The close day a failing row belongs to; a row without a day of the run (a duplicate across days, say)
    counts on the run's last day."""
    try:
        day = date.fromisoformat(str(row["date"])[:10])
    except ValueError:
        return end
    return day if start <= day <= end else end


def _suite_check_results(failing: dict[str, list[dict]], start: date, end: date) -> dict[str, dict[str, PartitionCheck]]:
    """Per suite check, the failing partitions (entity and day) with a table of their failing rows."""
    by_check: dict[str, dict[str, PartitionCheck]] = {}
    for suite, name in SUITE_CHECKS.items():
        per_partition: dict[str, list[dict]] = {}
        for row in failing.get(suite, []):
            per_partition.setdefault(partition_key(row["entity"], _row_day(row, start, end)), []).append(row)
        by_check[name] = {
            key: PartitionCheck(
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR if any(r["severity"] == "error" for r in rows)
                else dg.AssetCheckSeverity.WARN,
                metadata={"failing rows": dg.MetadataValue.int(len(rows)), "failing": _failing_table(rows)},
                description=f"{len(rows)} failing row(s)")
            for key, rows in per_partition.items()}
    return by_check


@dg.asset(
    partitions_def=close_partitions,
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
def canonical_ledger(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[object]:
    start, end = window_of(context)
    totals = {"legs": 0, "adjustment legs": 0, "transfers matched": 0, "transfers unmatched": 0,
              "balance observations": 0, "positions": 0, "records quarantined": 0}
    unknown: set[str] = set()
    failing: dict[str, list[dict]] = {}
    for entity in entities_in_scope(context, warehouse):
        with warehouse.engine().begin() as conn:  # committed first: a run killed from here on leaves its days stale
            mark_closing(conn, entity, start, end, run_id=context.run_id)
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
    yield dg.MaterializeResult(metadata={
        **{k: dg.MetadataValue.int(v) for k, v in totals.items()},
        "days": dg.MetadataValue.text(_range_label(start, end)),
        "unknown assets (flagged)": dg.MetadataValue.text(", ".join(sorted(unknown)) or "none"),
        **{f"{suite} suite: failing rows": dg.MetadataValue.int(len(failing.get(suite, []))) for suite in SUITE_CHECKS},
    })
    for name, results in _suite_check_results(failing, start, end).items():
        yield from partition_check_events(context, name, True, results)


def _breaks_table(rows: list[dict]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in rows[:_MAX_TABLE_ROWS]],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in
                                       ("entity", "date", "account", "asset", "expected", "reported", "difference",
                                        "status")]),
    )


@dg.asset(
    partitions_def=close_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="reconciliation",
    deps=[canonical_ledger],
    kinds={"postgres"},
    check_specs=[dg.AssetCheckSpec(
        COMPLETENESS, asset="reconciliation", partitions_def=close_partitions, blocking=False,
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
def reconciliation(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[object]:
    start, end = window_of(context)
    all_breaks: list[dict] = []
    checked = errors_total = 0
    results: dict[str, PartitionCheck] = {}
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
        checked += sum(r["checked"] for r in stored.values())
        errors_total += errors
        by_day: dict[date, list[dict]] = {}
        for b in stored_breaks:
            row = {"entity": entity.name, "date": b["date"], "account": b["account"], "asset": b["asset"],
                   "expected": b["expected"], "reported": b["reported"], "difference": b["difference"],
                   "status": b["status"]}
            by_day.setdefault(date.fromisoformat(b["date"]), []).append(row)
            all_breaks.append(row)
        for day, counts in stored.items():
            results[partition_key(entity.name, day)] = completeness_result(counts, by_day.get(day, []))
    yield dg.MaterializeResult(
        metadata={"checked (account, asset, day)": dg.MetadataValue.int(checked),
                  "breaks": dg.MetadataValue.int(len(all_breaks)),
                  "breaks at ERROR severity": dg.MetadataValue.int(errors_total),
                  "breaks table": _breaks_table(all_breaks)})
    yield from partition_check_events(context, COMPLETENESS, False, results)


def completeness_result(counts: dict[str, int], breaks: list[dict]) -> PartitionCheck:
    """One entity's completeness on one day: passed without breaks; passed at WARN when every break of the day is
    acknowledged (a person accepted it: the close is ``closed``); else failed, at ERROR when an open break is at
    ERROR severity (the entity's recon policy), else at WARN."""
    standing = [b for b in breaks if b["status"] != "acknowledged"]
    acknowledged = len(breaks) - len(standing)
    metadata = {"checked": dg.MetadataValue.int(counts.get("checked", 0)), "breaks": dg.MetadataValue.int(len(breaks)),
                "acknowledged breaks": dg.MetadataValue.int(acknowledged),
                "breaks at ERROR severity": dg.MetadataValue.int(counts.get("errors", 0)),
                "breaks of the day": _breaks_table(breaks)}
    if not standing:
        return PartitionCheck(True, dg.AssetCheckSeverity.WARN if acknowledged else dg.AssetCheckSeverity.ERROR,
                              metadata, f"{EXPECTATION}: passed" + (
                                  f" with {acknowledged} acknowledged break(s)" if acknowledged else ""))
    return PartitionCheck(False, dg.AssetCheckSeverity.ERROR if counts.get("errors") else dg.AssetCheckSeverity.WARN,
                          metadata, f"{EXPECTATION}: {len(standing)} break(s) not acknowledged")


@dg.asset(
    partitions_def=close_partitions,
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
    partitions_def=close_partitions,
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
