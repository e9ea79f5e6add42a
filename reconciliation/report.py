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
from warehouse.numbers import ZERO, D, exact_context, to_text

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
    return outputs


def hash_outputs(outputs: dict) -> str:
    return hashlib.sha256(json.dumps(outputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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


def write_close_provenance(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None) -> int:
    """Store provenance and the as-closed report of every unlocked day of [start, end] that has a close."""
    locked = sorted(locked_dates(conn, entity.id, start, end))
    outputs = compute_close_outputs(conn, entity, start, end)
    counts = _input_counts(conn, entity, start, end)
    cursors = _source_cursors(conn, entity)
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
                         sc=json.dumps(cursors), out=json.dumps(out), h=digest,
                         html=render_close_report(entity, day, out, provenance), at=now))
    if rows:
        conn.execute(sa.text(
            """INSERT INTO close_provenance (entity_id, date, run_id, code_version, input_counts, source_cursors, outputs,
                                             output_hash, report_html, computed_at)
               VALUES (:e, :d, :run, :v, CAST(:ic AS jsonb), CAST(:sc AS jsonb), CAST(:out AS jsonb), :h, :html, :at)"""),
            rows)
    return len(rows)


def load_provenance(conn: Connection, entity_id: int, day: date) -> dict | None:
    row = conn.execute(sa.text("SELECT * FROM close_provenance WHERE entity_id = :e AND date = :d"),
                       dict(e=entity_id, d=day)).mappings().first()
    return dict(row) if row else None


def verify_close(conn: Connection, entity: Entity, day: date) -> dict:
    """Recompute the day's outputs from the warehouse now and compare with the hash stored when it closed."""
    stored = load_provenance(conn, entity.id, day)
    if stored is None:
        raise LookupError(f"{entity.name} has no close provenance for {day}")
    current = hash_outputs(compute_close_outputs(conn, entity, day, day).get(day, {}))
    return {"date": day.isoformat(), "stored_hash": stored["output_hash"], "current_hash": current,
            "unchanged": current == stored["output_hash"], "code_version": stored["code_version"]}


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


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
          "td:first-child,td:nth-child(2){text-align:left}.status{font-weight:bold}")


def render_close_report(entity: Entity, day: date, outputs: dict, provenance: dict) -> str:
    """The close report of one day as a standalone HTML page (pure)."""
    close = outputs.get("close", {})
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Close {e(entity.name)} {day}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Close report: {e(entity.name)}, {day} ({e(entity.timezone)})</h1>",
             f"<section id='as-closed'><h2>As closed</h2><p class='status'>Status: {e(str(close.get('status')))}"
             + (f" — {e(close['message'])}" if close.get("message") else "") + "</p>",
             "<h3>PnL summary (USD, FIFO)</h3>",
             _table(["figure", "value"], [["realized gain, universal pool",
                                          close.get("realized_gain_universal") or "not booked"],
                                         ["realized gain, per-account pools",
                                          close.get("realized_gain_account") or "not booked"],
                                         ["unrealized gain, universal pool", close.get("unrealized_gain_universal")],
                                         ["legs booked", close.get("legs")],
                                         ["unmatched transfers", close.get("unmatched_transfers")]]),
             f"<h3>Positions ({len(outputs.get('positions', []))})</h3>",
             _table(["account", "asset", "computed", "reported", "close price USD"], outputs.get("positions", [])),
             f"<h3>Breaks ({len(outputs.get('breaks', []))})</h3>"]
    if outputs.get("breaks"):
        parts.append(_table(["account", "asset", "expected", "reported", "difference", "status", "candidate causes"],
                            [[*b[:6], ", ".join(b[6]) or "none found"] for b in outputs["breaks"]]))
    else:
        parts.append("<p>No break: every reported balance ties to the ledger.</p>")
    parts.append("<h3>Provenance</h3>")
    parts.append(_table(["item", "value"], [
        ["code version", provenance.get("code_version")], ["run", provenance.get("run_id")],
        ["computed at", provenance.get("computed_at")], ["output hash (sha256)", provenance.get("output_hash")],
        *[[f"input: {k}", v] for k, v in sorted(provenance.get("input_counts", {}).items())],
        *[[f"cursor: {k}", json.dumps(v, sort_keys=True)] for k, v in sorted(provenance.get("source_cursors", {}).items())],
    ]))
    parts.append("</section></body></html>")
    return "\n".join(parts)


def _known_now(conn: Connection, entity: Entity, day: date, stored: dict) -> str:
    late = late_legs(conn, entity, day)
    if not late:
        return ""
    restated: dict[tuple[str, str], list] = {(p[0], p[1]): [p[0], p[1], p[2], p[2]] for p in stored["outputs"]["positions"]}
    with exact_context():
        for leg in late:
            row = restated.setdefault((leg["account"], leg["asset"]), [leg["account"], leg["asset"], "0", "0"])
            row[3] = to_text(D(row[3] or "0") + leg["quantity"])
    changed = [r for r in restated.values() if r[2] != r[3]]
    legs_rows = [[leg["account"], leg["asset"], to_text(leg["quantity"]), leg["kind"], leg["ts"], leg["booked_on"],
                  leg["raw_record_id"]] for leg in late]
    total = sum((leg["quantity"] for leg in late), ZERO)
    return ("<section id='known-now'><h2>Known now (after the lock)</h2>"
            f"<p>{len(late)} leg(s) of this day arrived after it was locked. The figures above stay as closed; the "
            "legs are booked as adjustments on the first open day:</p>"
            + _table(["account", "asset", "quantity", "kind", "time", "booked on", "raw record"], legs_rows)
            + "<h3>Positions restated with the late legs</h3>"
            + _table(["account", "asset", "as closed (computed)", "known now"], changed)
            + f"<p>Net quantity of late legs: {html.escape(to_text(total) or '0')}</p></section>")


def close_report_html(conn: Connection, entity: Entity, day: date) -> str | None:
    """The day's report as closed; for a day with late data, plus a separate "known now" section."""
    stored = load_provenance(conn, entity.id, day)
    if stored is None:
        return None
    known_now = _known_now(conn, entity, day, stored)
    if not known_now:
        return stored["report_html"]
    return stored["report_html"].replace("</body></html>", known_now + "</body></html>")


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
