"""Close provenance and the close report (HTML).

``write_close_provenance`` stores, for every unlocked day of a close run, what the close was
computed from and what it produced, so it can be reproduced and proven unchanged:

- ``input_counts``: staged records per source/stream whose event time falls in the day, staged
  balance snapshots in the day, legs and adjustment legs booked on the day, positions;
- ``code_version``: ``git describe --always --dirty`` of the checkout, else the package version;
- ``source_cursors``: per source/stream, the connector's cursors per account (``ingestion_cursors``)
  where the source keeps them, else the staging high-water mark; with the largest raw record id, the
  record count and the last ingestion run, at close time;
- ``outputs``: the close's figures, positions and breaks (with their cause codes), and
  ``output_hash``, the SHA-256 of their canonical JSON; ``verify_close`` recomputes it;
- ``digests``: a SHA-256 per part of what the day was computed from (its legs and the staged records they were
  mapped from) and of the derived rows it produced beyond the figures (events, transfers, disposals and
  the lots they consumed, the day's PnL rows), so a change made behind the close's back (a leg edited by someone
  who can bypass the database guards, a disposal's lots rewritten) shows as ``changed`` in ``verify_close`` even
  when the figures still agree;
- ``report_html``: the close report as it was when closed ("as closed").

``close_report_html`` serves that report; for a locked day that received late data (booked as
adjustment legs on the first open day) it adds, separately, what is known now.
"""

from __future__ import annotations

import hashlib
import html
import json
import subprocess
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.calendar import locked_dates
from warehouse.entities import Entity
from warehouse.names import load_names
from warehouse.numbers import ZERO, D, exact_context, money_text, quantity_text, to_text

ROOT = Path(__file__).resolve().parent.parent
_DAY = "((%s - interval '1 microsecond') AT TIME ZONE :tz)::date"


@lru_cache(maxsize=1)
def code_version() -> str:
    """The code that computed a close: ``git describe`` of the checkout, else the installed package version."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=ROOT, capture_output=True,
                              text=True, timeout=5, check=True)
        if done.stdout.strip():
            return f"git:{done.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"coinfrs=={version('coinfrs')}"
    except PackageNotFoundError:
        return "unknown"


def _t(value) -> str | None:
    return to_text(value)


def compute_close_outputs(conn: Connection, entity: Entity, start: date, end: date) -> dict[date, dict]:
    """The figures a close of each day in [start, end] stands for, as JSON-ready values (decimals as text)."""
    names = load_names(conn, entity.id)
    p = dict(e=entity.id, s=start, t=end)
    outputs: dict[date, dict] = {}
    for r in conn.execute(sa.text(
            """SELECT date, status, legs, positions, breaks, unmatched_transfers, realized_gain_universal,
                      realized_gain_account, unrealized_gain_universal, message
               FROM closes WHERE entity_id = :e AND date BETWEEN :s AND :t ORDER BY date"""), p).mappings():
        outputs[r["date"]] = {
            "close": {"status": r["status"], "legs": r["legs"], "positions": r["positions"], "breaks": r["breaks"],
                      "unmatched_transfers": r["unmatched_transfers"],
                      "realized_gain_universal": _t(r["realized_gain_universal"]),
                      "realized_gain_account": _t(r["realized_gain_account"]),
                      "unrealized_gain_universal": _t(r["unrealized_gain_universal"]), "message": r["message"]},
            "positions": [], "breaks": []}
    for r in conn.execute(sa.text(
            """SELECT date, account_id, asset_id, computed_quantity, reported_quantity, close_price_usd FROM positions
               WHERE entity_id = :e AND date BETWEEN :s AND :t ORDER BY date, account_id, asset_id"""), p).mappings():
        if r["date"] in outputs:
            outputs[r["date"]]["positions"].append(
                [names.account(r["account_id"]), names.asset(r["asset_id"]), _t(r["computed_quantity"]),
                 _t(r["reported_quantity"]), _t(r["close_price_usd"])])
    for r in conn.execute(sa.text(
            """SELECT date, account_id, asset_id, expected, reported, difference, status, causes FROM breaks
               WHERE entity_id = :e AND date BETWEEN :s AND :t AND status <> 'resolved'
               ORDER BY date, account_id, asset_id"""), p).mappings():
        if r["date"] in outputs:
            outputs[r["date"]]["breaks"].append(
                [names.account(r["account_id"]), names.asset(r["asset_id"]), _t(r["expected"]), _t(r["reported"]),
                 _t(r["difference"]), r["status"], [c["code"] for c in (r["causes"] or [])]])
    for r in conn.execute(sa.text(  # the configured book's unpriced figures (the key only where there are some)
            """SELECT date, what, asset_id, account_id, leg_id, quantity FROM pnl_missing_prices
               WHERE entity_id = :e AND method = 'configured' AND pool = 'configured' AND date BETWEEN :s AND :t
               ORDER BY date, what, asset_id, leg_id NULLS LAST, pool_account_id"""), p).mappings():
        if r["date"] in outputs:
            outputs[r["date"]].setdefault("missing_prices", []).append(
                [r["what"], names.asset(r["asset_id"]), names.account(r["account_id"]) if r["account_id"] else "(universal pool)",
                 r["leg_id"], _t(r["quantity"])])
    return outputs


def hash_outputs(outputs: dict) -> str:
    return hashlib.sha256(json.dumps(outputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# part -> (table and day expression, one row as deterministic text (no session-dependent formats: times as epochs),
#          the order of the rows); every query is per entity and day in [:s, :t]
_DIGESTED: dict[str, tuple[str, str, str]] = {
    "inputs.legs": (
        "transactions x", "x.close_date",
        "jsonb_build_array(x.id, x.account_id, x.asset_id, extract(epoch FROM x.ts), x.quantity, x.kind, x.group_id, "
        "x.leg_index, x.unit_price_usd, x.usd_value, x.tx_hash, x.counterparty_account_id, x.raw_record_id, "
        "x.is_adjustment)"),
    "inputs.raw_records": (  # the staged records the day's legs were mapped from (late arrivals book elsewhere)
        "raw_records x JOIN (SELECT DISTINCT raw_record_id, close_date FROM transactions WHERE entity_id = :e) t "
        "ON t.raw_record_id = x.id", "t.close_date",
        "jsonb_build_array(x.id, x.source, x.account, x.stream, x.source_raw_id, x.payload, x.payload_hash, "
        "x.processing_status)"),
    "outputs.events": (
        "events x", "x.close_date",
        "jsonb_build_array(x.group_id, x.event_type, extract(epoch FROM x.ts), x.legs, x.raw_record_ids, x.valued_by, "
        "x.value_usd, x.price_asset_id, x.unit_price_usd)"),
    "outputs.transfers": (
        "transfers x", "x.close_date",
        "jsonb_build_array(x.id, x.out_leg_id, x.in_leg_id, x.asset_id, x.tx_hash, x.status, x.matched_by)"),
    "outputs.pnl_disposals": (
        "pnl_disposals x", "x.date",
        "jsonb_build_array(x.method, x.pool, x.leg_id, x.account_id, x.asset_id, x.kind, x.quantity, x.proceeds, "
        "x.cost_basis, x.realized_gain, x.short_term_gain, x.long_term_gain, x.shortfall_quantity, "
        "(SELECT jsonb_agg(jsonb_build_array(l.lot_leg_id, extract(epoch FROM l.acquired_at), l.quantity, l.cost_basis, "
        "l.term) ORDER BY l.lot_leg_id, l.quantity, l.cost_basis) FROM pnl_disposal_lots l WHERE l.disposal_id = x.id))"),
    "outputs.pnl_daily": (
        "pnl_daily x", "x.date",
        "jsonb_build_array(x.method, x.pool, x.pool_account_id, x.asset_id, x.quantity, x.cost_basis, x.close_price_usd, "
        "x.market_value, x.unrealized_gain, x.realized_gain, x.acquired_quantity, x.acquired_basis, x.disposed_quantity, "
        "x.disposed_basis, x.transferred_in_quantity, x.transferred_in_basis, x.transferred_out_quantity, "
        "x.transferred_out_basis, x.shortfall_quantity)"),
}


def compute_close_digests(conn: Connection, entity: Entity, start: date, end: date) -> dict[date, dict[str, str]]:
    """Per day of [start, end]: the SHA-256 of each part of ``_DIGESTED`` (a part with no rows: no entry)."""
    p = dict(e=entity.id, s=start, t=end, tz=entity.timezone)
    digests: dict[date, dict[str, str]] = {}
    for part, (table, day, row) in _DIGESTED.items():
        for r in conn.execute(sa.text(
                f"""SELECT day, encode(sha256(convert_to(string_agg(line, E'\\n' ORDER BY line), 'UTF8')), 'hex') AS digest
                    FROM (SELECT {day} AS day, ({row})::text AS line FROM {table}
                          WHERE x.entity_id = :e AND {day} BETWEEN :s AND :t) rows
                    GROUP BY day"""), p):
            digests.setdefault(r.day, {})[part] = r.digest
    return digests


def _input_counts(conn: Connection, entity: Entity, start: date, end: date) -> dict[date, dict]:
    p = dict(e=entity.id, s=start, t=end, tz=entity.timezone)
    counts: dict[date, dict] = {}

    def put(day: date, key: str, value: int) -> None:
        counts.setdefault(day, {})[key] = value

    for r in conn.execute(sa.text(
            f"""SELECT {_DAY % 'occurred_at'} AS day, source || '/' || stream AS k, count(*) AS n FROM raw_records
                WHERE entity_id = :e AND {_DAY % 'occurred_at'} BETWEEN :s AND :t GROUP BY 1, 2"""), p):
        put(r.day, f"raw_records:{r.k}", r.n)
    for r in conn.execute(sa.text(
            f"""SELECT {_DAY % 'snapshot_time'} AS day, count(*) AS n FROM raw_balance_snapshots
                WHERE entity_id = :e AND {_DAY % 'snapshot_time'} BETWEEN :s AND :t GROUP BY 1"""), p):
        put(r.day, "raw_balance_snapshots", r.n)
    for r in conn.execute(sa.text(
            """SELECT close_date AS day, count(*) AS n, count(*) FILTER (WHERE is_adjustment) AS adj FROM transactions
               WHERE entity_id = :e AND close_date BETWEEN :s AND :t GROUP BY 1"""), p):
        put(r.day, "legs", r.n)
        put(r.day, "adjustment_legs", r.adj)
    for r in conn.execute(sa.text(
            "SELECT date AS day, count(*) AS n FROM positions WHERE entity_id = :e AND date BETWEEN :s AND :t GROUP BY 1"), p):
        put(r.day, "positions", r.n)
    return counts


def _source_cursors(conn: Connection, entity: Entity) -> dict[str, dict]:
    """Per source/stream, where ingestion stood at close time: the connector's own cursors per account
    (``ingestion_cursors``) where the source keeps them, else the staging high-water mark; both with the
    staged record count, the largest raw record id and the last ingestion run."""
    staged = conn.execute(sa.text(
        """SELECT r.source || '/' || r.stream AS k, max(r.id) AS max_id, count(*) AS n,
                  (SELECT max(coalesce(i.finished_at, i.started_at)) FROM ingestion_runs i
                   WHERE i.entity_id = :e AND i.source = r.source AND i.stream = r.stream) AS last_run
           FROM raw_records r WHERE r.entity_id = :e GROUP BY r.source, r.stream ORDER BY 1"""), dict(e=entity.id)).all()
    out: dict[str, dict] = {
        r.k: {"from": "staging_high_water_mark", "max_raw_record_id": r.max_id, "records": r.n,
              "last_ingestion_run_at": r.last_run.isoformat() if r.last_run else None} for r in staged}
    for r in conn.execute(sa.text(
            """SELECT source || '/' || stream AS k, account, cursor, updated_at FROM ingestion_cursors
               WHERE entity_id = :e ORDER BY 1, account"""), dict(e=entity.id)):
        entry = out.setdefault(r.k, {"max_raw_record_id": None, "records": 0, "last_ingestion_run_at": None})
        entry["from"] = "ingestion_cursors"
        entry.setdefault("cursors", {})[r.account] = {"cursor": r.cursor, "updated_at": r.updated_at.isoformat()}
    return dict(sorted(out.items()))


def report_figures(conn: Connection, entity: Entity, start: date, end: date) -> dict[date, dict]:
    """What the close report shows beyond the hashed outputs, per day: cost basis, unrealized gain and the day's
    realized gain per account (FIFO, per-account pools), the configured book and its realized gain. Decimals as
    exact text."""
    names = load_names(conn, entity.id)
    p = dict(e=entity.id, s=start, t=end)
    figures: dict[date, dict] = {}
    for r in conn.execute(sa.text(
            """SELECT date, pool_account_id, sum(cost_basis) AS cost_basis, sum(unrealized_gain) AS unrealized,
                      sum(realized_gain) AS realized
               FROM pnl_daily WHERE entity_id = :e AND method = 'fifo' AND pool = 'account' AND date BETWEEN :s AND :t
               GROUP BY 1, 2"""), p):
        figures.setdefault(r.date, {}).setdefault("accounts", {})[names.account(r.pool_account_id)] = {
            "cost_basis": _t(r.cost_basis), "unrealized": _t(r.unrealized), "realized": _t(r.realized)}
    for r in conn.execute(sa.text("SELECT date, book, realized_gain_book FROM closes WHERE entity_id = :e "
                                  "AND date BETWEEN :s AND :t"), p):
        figures.setdefault(r.date, {}).update(book=r.book, realized_gain_book=_t(r.realized_gain_book))
    return figures


def report_banner(conn: Connection, entity: Entity, day: date) -> str:
    """The banner the served report opens with: Locked (the period, who locked it, when, why, its sign-offs),
    Stale (an input changed after the close), else Open (the figures can still change)."""
    from reconciliation.periods import lock_of_day

    row = conn.execute(sa.text("SELECT status, locked, locked_at FROM closes WHERE entity_id = :e AND date = :d"),
                       dict(e=entity.id, d=day)).first()
    if row is None:
        return ""
    e = html.escape
    banners = []
    if row.status == "stale":
        banners.append("<div class='banner stale' id='banner'>Stale: an input changed after this day closed; the "
                       "figures below may be out of date. Close the day again.</div>")
    if row.locked:
        lock = lock_of_day(conn, entity, day)
        if lock is None:
            text = f"Locked since {_when(row.locked_at.isoformat()) if row.locked_at else 'unknown'} (who and why not recorded)."
        else:
            signed = "; ".join(f"{s.role} {s.signed_by} ({_when(s.signed_at.isoformat())})"
                               for s in lock.signoffs if s.voided_at is None)
            text = (f"Locked: period {lock.period} ({lock.first_day} to {lock.last_day}), locked by {lock.locked_by} "
                    f"on {_when(lock.locked_at.isoformat())}. Reason: {lock.lock_reason}. "
                    + (f"Signed off: {signed}." if signed else "Not signed off yet."))
        banners.append(f"<div class='banner locked' id='banner'>{e(text)} These figures never change.</div>")
    if not banners:
        banners.append("<div class='banner open' id='banner'>Open: this day is not locked; its figures can still "
                       "change.</div>")
    return "".join(banners)


def write_close_provenance(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None) -> int:
    """Store provenance and the as-closed report of every unlocked day of [start, end] that has a close."""
    locked = sorted(locked_dates(conn, entity.id, start, end))
    outputs = compute_close_outputs(conn, entity, start, end)
    counts = _input_counts(conn, entity, start, end)
    cursors = _source_cursors(conn, entity)
    figures = report_figures(conn, entity, start, end)
    digests = compute_close_digests(conn, entity, start, end)
    version = code_version()
    conn.execute(sa.text("DELETE FROM close_provenance WHERE entity_id = :e AND date BETWEEN :s AND :t"
                         " AND NOT (date = ANY(:locked))"), dict(e=entity.id, s=start, t=end, locked=locked))
    rows = []
    now = datetime.now(timezone.utc)
    for day, out in sorted(outputs.items()):
        if day in locked:
            continue
        digest = hash_outputs(out)
        provenance = {"code_version": version, "input_counts": counts.get(day, {}), "source_cursors": cursors,
                      "output_hash": digest, "computed_at": now.isoformat(), "run_id": run_id}
        rows.append(dict(e=entity.id, d=day, run=run_id, v=version, ic=json.dumps(counts.get(day, {})),
                         sc=json.dumps(cursors), out=json.dumps(out), h=digest, dg=json.dumps(digests.get(day, {})),
                         html=render_close_report(entity, day, out, provenance, figures.get(day)), at=now))
    if rows:
        conn.execute(sa.text(
            """INSERT INTO close_provenance (entity_id, date, run_id, code_version, input_counts, source_cursors, outputs,
                                             output_hash, digests, report_html, computed_at)
               VALUES (:e, :d, :run, :v, CAST(:ic AS jsonb), CAST(:sc AS jsonb), CAST(:out AS jsonb), :h,
                       CAST(:dg AS jsonb), :html, :at)"""),
            rows)
    return len(rows)


def load_provenance(conn: Connection, entity_id: int, day: date) -> dict | None:
    row = conn.execute(sa.text("SELECT * FROM close_provenance WHERE entity_id = :e AND date = :d"),
                       dict(e=entity_id, d=day)).mappings().first()
    return dict(row) if row else None


def verify_close(conn: Connection, entity: Entity, day: date) -> dict:
    """Recompute the day's outputs and digests from the warehouse now and compare with those stored when it closed.

    ``changed`` names each part that differs (``outputs`` for the hashed figures, else a part of ``_DIGESTED``);
    ``unchanged`` is true only when none does. A close stored before digests existed compares its figures only."""
    stored = load_provenance(conn, entity.id, day)
    if stored is None:
        raise LookupError(f"{entity.name} has no close provenance for {day}")
    current = hash_outputs(compute_close_outputs(conn, entity, day, day).get(day, {}))
    changed = [] if current == stored["output_hash"] else ["outputs"]
    if stored.get("digests") is not None:
        now = compute_close_digests(conn, entity, day, day).get(day, {})
        changed += sorted(part for part in set(now) | set(stored["digests"]) if now.get(part) != stored["digests"].get(part))
    return {"date": day.isoformat(), "stored_hash": stored["output_hash"], "current_hash": current,
            "unchanged": not changed, "changed": changed, "code_version": stored["code_version"]}


def late_legs(conn: Connection, entity: Entity, day: date) -> list[dict]:
    """Legs that belong to ``day`` but arrived after it was locked: booked as adjustments on a later open day."""
    names = load_names(conn, entity.id)
    rows = conn.execute(sa.text(
        f"""SELECT id, ts, close_date, account_id, asset_id, quantity, kind, raw_record_id FROM transactions
            WHERE entity_id = :e AND is_adjustment AND {_DAY % 'ts'} = :d ORDER BY ts, id"""),
        dict(e=entity.id, d=day, tz=entity.timezone)).mappings().all()
    return [{"id": r["id"], "ts": r["ts"].isoformat(), "booked_on": r["close_date"].isoformat(),
             "account": names.account(r["account_id"]), "asset": names.asset(r["asset_id"]),
             "quantity": r["quantity"], "kind": r["kind"], "raw_record_id": r["raw_record_id"]} for r in rows]


def _table(headers: list[str], rows: list[list], *, numeric: tuple[int, ...] = (), totals: list[list] | None = None,
           css: str = "", subtotals: frozenset[int] = frozenset()) -> str:
    """An HTML table; ``numeric`` columns are right-aligned figures; ``totals`` rows go in the footer; the rows
    numbered in ``subtotals`` are set apart as subtotals."""
    def cells(row: list, tag: str) -> str:
        return "".join(f"<{tag}{' class=num' if i in numeric else ''}>{html.escape('' if v is None else str(v))}</{tag}>"
                       for i, v in enumerate(row))

    head = "".join(f"<th{' class=num' if i in numeric else ''}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join(f"<tr{' class=subtotal' if i in subtotals else ''}>{cells(row, 'td')}</tr>" for i, row in enumerate(rows))
    foot = "".join(f"<tr class=total>{cells(row, 'td')}</tr>" for row in totals or [])
    return (f"<table{f' class={css}' if css else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            + (f"<tfoot>{foot}</tfoot>" if foot else "") + "</table>")


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#1d1d1d}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1em}
table{border-collapse:collapse;margin:.4em 0 1.2em;width:100%}
td,th{border:1px solid #d0d0d0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f1f1}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:bold;background:#fafafa}tr.subtotal td{font-style:italic;background:#fcfcfc;border-bottom:2px solid #bbb}
.status{font-weight:bold}.muted{color:#666}.note{font-size:.9em;color:#555}
.banner{padding:.6em 1em;margin:1em 0;border:2px solid;font-weight:bold}
.banner.locked{border-color:#1d5d2b;background:#e8f4ea;color:#1d5d2b}
.banner.stale{border-color:#8a5a00;background:#fff4dc;color:#6b4600}
.banner.open{border-color:#777;background:#f5f5f5;color:#333;font-weight:normal}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dl.kv dt{font-weight:bold}dl.kv dd{margin:0}
code{font-size:.9em;word-break:break-all}
@page{size:A4;margin:14mm 12mm}
@media print{
  body{margin:0;max-width:none;padding:0;font-size:9pt}
  .screen-only{display:none}
  .banner{background:none !important}
  h2{break-after:avoid}table{page-break-inside:auto}tr{break-inside:avoid}
  thead{display:table-header-group}tfoot{display:table-footer-group}
  #appendix{break-before:page}
  a{color:inherit;text-decoration:none}
}
"""
BANNER_SLOT = "<!--coinfrs:banner-->"
"""Where the served report shows whether the day is locked (who, when) or stale: known when served, not when closed."""

_INPUTS = {"legs": "legs booked on the day", "adjustment_legs": "of which adjustments (late data of a locked day)",
           "positions": "positions", "raw_balance_snapshots": "balance snapshots staged in the day"}


def _m(value) -> str:
    """Money in cents with thousands separators; "not booked" for None."""
    return money_text(value) if value not in (None, "") else "not booked"


def _q(value) -> str:
    return quantity_text(value) if value not in (None, "") else ""


def _when(text: str | None) -> str:
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _cursor_text(value, limit: int = 48) -> str:
    """A connector's cursor as ``key = value`` pairs (one level), long values shortened."""
    def short(v) -> str:
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        return text if len(text) <= limit else text[:limit - 1] + "…"

    if isinstance(value, dict):
        return ", ".join(f"{k} = {short(v)}" for k, v in sorted(value.items())) or "(empty)"
    return short(value)


def _positions_view(outputs: dict) -> tuple[list[dict], dict[str, dict], list[dict]]:
    """Positions with their market value (ledger quantity x close price, USD), per-account totals, unpriced items."""
    rows, accounts, unpriced = [], {}, []
    with exact_context():
        for account, asset, computed, reported, price in outputs.get("positions", []):
            quantity = D(computed) if computed not in (None, "") else ZERO
            value = quantity * D(price) if price not in (None, "") else None
            total = accounts.setdefault(account, {"market_value": ZERO, "unpriced": 0, "positions": 0})
            total["positions"] += 1
            if value is None and quantity != 0:
                total["unpriced"] += 1
                unpriced.append({"account": account, "asset": asset, "quantity": computed,
                                 "why": "no close price for the day"})
            total["market_value"] += value or ZERO
            rows.append({"account": account, "asset": asset, "computed": computed, "reported": reported,
                         "price": price, "market_value": value})
    return rows, accounts, unpriced


def render_close_report(entity: Entity, day: date, outputs: dict, provenance: dict, figures: dict | None = None) -> str:
    """The close report of one day as a standalone, printable HTML page (pure).

    ``outputs``: the close's figures (``compute_close_outputs``); ``provenance``: what it was computed from;
    ``figures`` (optional, from ``report_figures``): per-account cost basis, unrealized and realized gains, the
    configured book. Unpriced items: positions without a close price and the close's missing prices. Money in cents
    with thousands separators (USD); quantities exact."""
    figures = figures or {}
    close = outputs.get("close", {})
    e = html.escape
    positions, accounts, unpriced = _positions_view(outputs)
    # and the figures the close itself valued without a price (pnl_missing_prices, in the hashed outputs); open
    # positions without a price are listed above already, from the day's close prices
    unpriced = unpriced + [{"account": account, "asset": asset, "quantity": quantity,
                            "why": f"{what} without a price" + (f" (leg {leg})" if leg else "")}
                           for what, asset, account, leg, quantity in outputs.get("missing_prices", [])
                           if what != "position"]
    per_account = figures.get("accounts", {})
    with exact_context():
        nav = sum((a["market_value"] for a in accounts.values()), ZERO)
    status = str(close.get("status"))
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Close {e(entity.name)} {day}</title>"
             f"<style>{_STYLE}</style></head><body>",
             BANNER_SLOT,
             f"<h1>Close report: {e(entity.name)}, {day}</h1>",
             f"<p class='muted'>Close day {day} in {e(entity.timezone)}; amounts in USD, rounded to cents; quantities "
             "exact. <span class='screen-only'>Print this page for the file copy (print layout: A4).</span></p>",
             f"<section id='as-closed'><h2>As closed</h2><p class='status'>Status: {e(status)}"
             + (f" — {e(close['message'])}" if close.get("message") else "") + "</p>"]

    # summary: NAV, realized, unrealized
    unpriced_note = f" (excludes {len(unpriced)} unpriced item(s))" if unpriced else ""
    summary = [["Net asset value (market value of every position)" + unpriced_note, _m(nav)],
               ["Realized gain, FIFO, universal pool", _m(close.get("realized_gain_universal"))],
               ["Realized gain, FIFO, per-account pools", _m(close.get("realized_gain_account"))]]
    if figures.get("book"):
        summary.append([f"Realized gain, configured book ({figures['book']})", _m(figures.get("realized_gain_book"))])
    summary += [["Unrealized gain, FIFO, universal pool", _m(close.get("unrealized_gain_universal"))
                 if close.get("unrealized_gain_universal") is not None else "no prices"],
                ["Legs booked", str(close.get("legs", ""))],
                ["Open breaks", str(close.get("breaks", ""))],
                ["Unmatched transfers", str(close.get("unmatched_transfers", ""))],
                ["Unpriced items", str(len(unpriced))]]
    parts += ["<h3 id='summary'>Summary (USD)</h3>", _table(["figure", "value"], summary, numeric=(1,), css="summary")]

    # per account
    account_rows = []
    for name, total in sorted(accounts.items()):
        extra = per_account.get(name, {})
        account_rows.append([name, _m(total["market_value"]) + (" *" if total["unpriced"] else ""),
                             _m(extra.get("cost_basis")) if extra else "", _m(extra.get("unrealized")) if extra else "",
                             _m(extra.get("realized")) if extra else ""])
    cost_total = _sum_text(per_account, "cost_basis")
    parts += ["<h2 id='accounts'>Net asset value per account</h2>",
              _table(["account", "market value", "cost basis of open lots", "unrealized gain", "realized gain (day)"],
                     account_rows, numeric=(1, 2, 3, 4), css="accounts",
                     totals=[[f"Entity total (NAV) — {entity.name}", _m(nav) + (" *" if unpriced else ""),
                              _m(cost_total) if per_account else "", _m(_sum_text(per_account, "unrealized"))
                              if per_account else "", _m(_sum_text(per_account, "realized")) if per_account else ""]]),
              "<p class='note'>Market value: the ledger quantity at the close times the day's close price. Cost basis, "
              "unrealized and realized per account: FIFO, per-account pools. * excludes unpriced items.</p>"]

    # positions grouped by account, with subtotals
    position_rows: list[list] = []
    subtotal_rows: set[int] = set()
    for name in sorted(accounts):
        for p in (p for p in positions if p["account"] == name):
            position_rows.append([p["account"], p["asset"], _q(p["computed"]), _q(p["reported"]),
                                  _q(p["price"]) if p["price"] is not None else "unpriced",
                                  _m(p["market_value"]) if p["market_value"] is not None else "unpriced"])
        subtotal_rows.add(len(position_rows))
        position_rows.append([f"{name} total", "", "", "", "", _m(accounts[name]["market_value"])])
    parts += [f"<h2 id='positions'>Positions ({len(positions)})</h2>",
              _table(["account", "asset", "quantity (ledger)", "quantity (reported)", "close price (USD)",
                      "market value (USD)"], position_rows, numeric=(2, 3, 4, 5), css="positions",
                     subtotals=frozenset(subtotal_rows),
                     totals=[["Entity total (NAV)", "", "", "", "", _m(nav)]])]

    # breaks
    breaks = outputs.get("breaks", [])
    parts.append(f"<h2 id='breaks'>Breaks ({len(breaks)})</h2>")
    if breaks:
        prices = {(p["account"], p["asset"]): p["price"] for p in positions}
        rows = []
        with exact_context():
            for account, asset, expected, reported, difference, state, causes in breaks:
                price = prices.get((account, asset))
                value = (D(difference) * D(price)) if price is not None and difference not in (None, "") else None
                rows.append([account, asset, _q(expected), _q(reported), _q(difference),
                             _m(value) if value is not None else "unpriced", state, ", ".join(causes) or "none found"])
        parts.append(_table(["account", "asset", "expected", "reported", "difference", "difference (USD)", "status",
                             "candidate causes"], rows, numeric=(2, 3, 4, 5), css="breaks"))
    else:
        parts.append("<p>No break: every reported balance ties to the ledger.</p>")

    # unpriced items
    parts.append(f"<h2 id='unpriced'>Unpriced items ({len(unpriced)})</h2>")
    if unpriced:
        parts.append(_table(["account", "asset", "quantity", "why"],
                            [[u["account"], u["asset"], _q(u["quantity"]), u["why"]] for u in unpriced],
                            numeric=(2,), css="unpriced"))
    else:
        parts.append("<p>None: every position has a close price.</p>")
    parts.append("</section>")
    parts.append(_appendix(provenance))
    parts.append("</body></html>")
    return "\n".join(parts)


def _sum_text(per_account: dict, key: str):
    with exact_context():
        return sum((D(v[key]) for v in per_account.values() if v.get(key) not in (None, "")), ZERO)


def _appendix(provenance: dict) -> str:
    """Appendix A: what the close was computed from, readable (no raw JSON)."""
    e = html.escape
    counts = provenance.get("input_counts", {})
    inputs = [[_INPUTS.get(k, k.replace("raw_records:", "records staged from ")), _q(str(v))]
              for k, v in sorted(counts.items(), key=lambda kv: (list(_INPUTS).index(kv[0]) if kv[0] in _INPUTS
                                                                  else len(_INPUTS), kv[0]))]
    sources = []
    for key, entry in sorted(provenance.get("source_cursors", {}).items()):
        how = ("the connector's own cursors" if entry.get("from") == "ingestion_cursors"
               else "staging high-water mark")
        cursors = "; ".join(f"{account}: {_cursor_text(c.get('cursor'))} (updated {_when(c.get('updated_at'))})"
                            for account, c in sorted(entry.get("cursors", {}).items())) or "—"
        sources.append([key, how, _q(str(entry.get("records", 0))), str(entry.get("max_raw_record_id") or "—"),
                        _when(entry.get("last_ingestion_run_at")) or "—", cursors])
    return ("<section id='appendix'><h2>Appendix A. Provenance</h2>"
            "<p class='note'>What this close was computed from and how to prove it unchanged: "
            "<code>GET /api/v1/closes/YYYY-MM-DD</code> recomputes the output hash now and says whether it is unchanged.</p>"
            "<dl class='kv'>"
            f"<dt>Code version</dt><dd>{e(str(provenance.get('code_version') or 'unknown'))}</dd>"
            f"<dt>Close run</dt><dd>{e(str(provenance.get('run_id') or '—'))}</dd>"
            f"<dt>Computed at</dt><dd>{e(_when(provenance.get('computed_at')))}</dd>"
            f"<dt>Output hash (SHA-256)</dt><dd><code>{e(str(provenance.get('output_hash') or ''))}</code></dd></dl>"
            "<h3>Inputs of the day</h3>" + _table(["input", "count"], inputs, numeric=(1,), css="inputs")
            + "<h3>Where each source stood at close time</h3>"
            + _table(["source / stream", "position read from", "records staged", "last raw record id",
                      "last ingestion run", "cursors per account"], sources, numeric=(2, 3), css="sources")
            + "</section>")


def _known_now(conn: Connection, entity: Entity, day: date, stored: dict) -> str:
    late = late_legs(conn, entity, day)
    if not late:
        return ""
    restated: dict[tuple[str, str], list] = {(p[0], p[1]): [p[0], p[1], p[2], p[2]] for p in stored["outputs"]["positions"]}
    with exact_context():
        for leg in late:
            row = restated.setdefault((leg["account"], leg["asset"]), [leg["account"], leg["asset"], "0", "0"])
            row[3] = to_text(D(row[3] or "0") + leg["quantity"])
    changed = [[r[0], r[1], _q(r[2]), _q(r[3])] for r in restated.values() if r[2] != r[3]]
    legs_rows = [[leg["account"], leg["asset"], _q(leg["quantity"]), leg["kind"], leg["ts"], leg["booked_on"],
                  leg["raw_record_id"]] for leg in late]
    total = sum((leg["quantity"] for leg in late), ZERO)
    return ("<section id='known-now'><h2>Known now (after the lock)</h2>"
            f"<p>{len(late)} leg(s) of this day arrived after it was locked. The figures above stay as closed; the "
            "legs are booked as adjustments on the first open day:</p>"
            + _table(["account", "asset", "quantity", "kind", "time", "booked on", "raw record"], legs_rows)
            + "<h3>Positions restated with the late legs</h3>"
            + _table(["account", "asset", "as closed (computed)", "known now"], changed)
            + f"<p>Net quantity of late legs: {html.escape(_q(total) or '0')}</p></section>")


def close_report_html(conn: Connection, entity: Entity, day: date) -> str | None:
    """The day's report as closed, opening with the banner of now (locked, stale or open); for a day with late
    data, plus a separate "known now" section."""
    stored = load_provenance(conn, entity.id, day)
    if stored is None:
        return None
    page = stored["report_html"]
    banner = report_banner(conn, entity, day)
    page = page.replace(BANNER_SLOT, banner, 1) if BANNER_SLOT in page else page.replace("<body>", "<body>" + banner, 1)
    known_now = _known_now(conn, entity, day, stored)
    if not known_now:
        return page
    return page.replace("</body></html>", known_now + "</body></html>")


def write_report_files(conn: Connection, entity: Entity, start: date, end: date, directory: Path) -> dict[str, str]:
    """Write the stored report of the last closed day of [start, end] to ``directory/<entity>/<date>.html``.

    Returns ``{"<entity> <date>": path}`` (what the Dagster run attaches); every day's report stays
    in the warehouse and is served by ``GET /closes/{date}/report``.
    """
    day = conn.execute(sa.text("SELECT max(date) FROM close_provenance WHERE entity_id = :e AND date BETWEEN :s AND :t"),
                       dict(e=entity.id, s=start, t=end)).scalar()
    if day is None:
        return {}
    report = close_report_html(conn, entity, day)
    assert report is not None
    target = directory / entity.name.replace("/", "_") / f"{day.isoformat()}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report, encoding="utf-8")
    return {f"{entity.name} {day.isoformat()}": str(target)}


def close_report_markdown(rows: list[dict[str, str]], limit: int = 31) -> str:
    """A markdown summary of close rows (the Dagster run's readable report)."""
    lines = ["| entity | date | status | positions | breaks | realized PnL (USD) |", "|---|---|---|---|---|---|"]
    for r in rows[-limit:]:
        lines.append(f"| {r['entity']} | {r['date']} | {r['status']} | {r['positions']} | {r['breaks']} | {r['realized_gain']} |")
    if len(rows) > limit:
        lines.append(f"\n_last {limit} of {len(rows)} days; every day's HTML report: `coinfrs recon report` or "
                     "`GET /api/v1/closes/{{date}}/report`_")
    return "\n".join(lines)
