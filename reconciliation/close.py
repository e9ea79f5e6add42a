"""The daily close record per entity and day, and locking.

A close's status is ``closed`` (reconciliation passed, every figure priced), ``breaks`` (open breaks remain),
``unpriced`` (a figure of the configured book needs a fair value that is missing: ``pnl_missing_prices``), ``blocked``
(no PnL booked: an earlier day of the entity has a break at ERROR severity, ``reconciliation/blocking.py``),
``partial`` (a source was recorded as down for the day: ``reconciliation/outages.py``, or a staged record of the day
is quarantined because its mapper cannot read it: ``transforms/quarantine.py``; the message names the source or the
record, its field and the error), ``failed`` (a step of the close failed; its message says which), ``unpriced`` (a figure needs a price
that is missing) or ``stale`` (its inputs changed after it was closed: ``reconciliation/staleness.py``). Only a close
without open breaks that is neither partial, unpriced nor stale can be locked, and a locked day is never rewritten by
any step. Locks are per period, with who and why, and can be undone only by a recorded unlock:
``reconciliation/periods.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.blocking import block_reason, first_blocked_day
from warehouse.calendar import days_between, locked_dates
from warehouse.entities import Entity
from warehouse.schema import closes

_WRITE_CLOSES = """
INSERT INTO closes AS c (entity_id, date, status, legs, positions, breaks, unmatched_transfers, realized_gain_universal,
                         realized_gain_account, unrealized_gain_universal, book, realized_gain_book, shortfalls,
                         missing_prices, message, run_id, closed_at, locked)
SELECT :e, d.day,
       CASE WHEN coalesce(o.n, 0) + coalesce(q.n, 0) > 0 THEN 'partial' WHEN coalesce(b.n, 0) > 0 THEN 'breaks'
            WHEN d.day >= CAST(:blocked AS date) THEN 'blocked' WHEN coalesce(mp.n, 0) > 0 THEN 'unpriced'
            ELSE 'closed' END,
       coalesce(l.n, 0), coalesce(p.n, 0), coalesce(b.n, 0), coalesce(x.n, 0),
       CASE WHEN d.day >= CAST(:blocked AS date) THEN NULL ELSE coalesce(ru.g, 0) END,
       CASE WHEN d.day >= CAST(:blocked AS date) THEN NULL ELSE coalesce(ra.g, 0) END, u.g,
       coalesce((SELECT bk.method || ':' || bk.pool FROM pnl_books bk WHERE bk.entity_id = :e AND bk.effective_from <= d.day
                 ORDER BY bk.effective_from DESC LIMIT 1), 'fifo:universal'),
       CASE WHEN d.day >= CAST(:blocked AS date) THEN NULL ELSE coalesce(rb.g, 0) END,
       CASE WHEN d.day >= CAST(:blocked AS date) THEN NULL ELSE coalesce(sf.n, 0) END,
       CASE WHEN d.day >= CAST(:blocked AS date) THEN NULL ELSE coalesce(mp.n, 0) END,
       nullif(concat_ws('; ', o.what, q.what, CASE WHEN coalesce(b.n, 0) > 0 THEN coalesce(b.n, 0) || ' open break(s)' END,
                        CASE WHEN coalesce(mp.n, 0) > 0 AND NOT coalesce(d.day >= CAST(:blocked AS date), false)
                             THEN 'unpriced: ' || mp.n || ' missing price(s) (' || mp.what || '); see `coinfrs prices missing`'
                        END,
                        CASE WHEN d.day = CAST(:blocked AS date)
                             THEN 'blocked by ' || CAST(:reason AS text) || '; no PnL booked from this day on'
                             WHEN d.day > CAST(:blocked AS date)
                             THEN 'blocked since ' || CAST(:blocked AS date) || ': no PnL booked (cost basis depends on that day)'
                        END), ''),
       :run_id, now(), false
FROM (SELECT g::date AS day FROM generate_series(CAST(:s AS date), CAST(:t AS date), interval '1 day') g) d
LEFT JOIN (SELECT close_date AS day, count(*) AS n FROM transactions WHERE entity_id = :e AND close_date BETWEEN :s AND :t GROUP BY 1) l USING (day)
LEFT JOIN (SELECT date AS day, count(*) AS n FROM positions WHERE entity_id = :e AND date BETWEEN :s AND :t GROUP BY 1) p USING (day)
LEFT JOIN (SELECT date AS day, count(*) AS n FROM breaks WHERE entity_id = :e AND date BETWEEN :s AND :t AND status = 'open' GROUP BY 1) b USING (day)
LEFT JOIN (SELECT date AS day, count(*) AS n,
                  'source down: ' || string_agg(source || CASE WHEN stream = '*' THEN '' ELSE '/' || stream END || ' (' || reason || ')', ', '
                                                ORDER BY source, stream) AS what
           FROM source_outages WHERE entity_id = :e AND date BETWEEN :s AND :t GROUP BY 1) o USING (day)
LEFT JOIN (SELECT close_date AS day, count(*) AS n,
                  'quarantined: ' || string_agg(source || '/' || stream || ' record ' || source_raw_id || ' (raw record '
                                                || raw_record_id || coalesce(', field ' || field, '') || '): ' || left(error, 300),
                                                ', ' ORDER BY source, stream, source_raw_id) AS what
           FROM quarantined_records WHERE entity_id = :e AND close_date BETWEEN :s AND :t GROUP BY 1) q USING (day)
LEFT JOIN (SELECT close_date AS day, count(*) AS n FROM transfers WHERE entity_id = :e AND close_date BETWEEN :s AND :t AND status <> 'matched' GROUP BY 1) x USING (day)
LEFT JOIN (SELECT date AS day, sum(realized_gain) AS g FROM pnl_disposals WHERE entity_id = :e AND method = 'fifo' AND pool = 'universal' AND date BETWEEN :s AND :t GROUP BY 1) ru USING (day)
LEFT JOIN (SELECT date AS day, sum(realized_gain) AS g FROM pnl_disposals WHERE entity_id = :e AND method = 'fifo' AND pool = 'account' AND date BETWEEN :s AND :t GROUP BY 1) ra USING (day)
LEFT JOIN (SELECT date AS day, sum(realized_gain) AS g FROM pnl_disposals WHERE entity_id = :e AND method = 'configured' AND pool = 'configured' AND date BETWEEN :s AND :t GROUP BY 1) rb USING (day)
LEFT JOIN (SELECT date AS day, count(*) AS n FROM pnl_daily WHERE entity_id = :e AND method = 'configured' AND pool = 'configured' AND date BETWEEN :s AND :t AND shortfall_quantity > 0 GROUP BY 1) sf USING (day)
LEFT JOIN (SELECT date AS day, count(*) AS n,
                  string_agg(what || ' ' || symbol || ' x' || k, ', ' ORDER BY what, symbol) AS what
           FROM (SELECT m.date, m.what, s.symbol, count(*) AS k FROM pnl_missing_prices m JOIN assets s ON s.id = m.asset_id
                 WHERE m.entity_id = :e AND m.method = 'configured' AND m.pool = 'configured' AND m.date BETWEEN :s AND :t
                 GROUP BY 1, 2, 3) per GROUP BY 1) mp USING (day)
LEFT JOIN (SELECT date AS day, sum(unrealized_gain) AS g FROM pnl_daily WHERE entity_id = :e AND method = 'fifo' AND pool = 'universal' AND date BETWEEN :s AND :t GROUP BY 1) u USING (day)
WHERE NOT (d.day = ANY(:locked))
ON CONFLICT (entity_id, date) DO UPDATE SET
    status = EXCLUDED.status, legs = EXCLUDED.legs, positions = EXCLUDED.positions, breaks = EXCLUDED.breaks,
    unmatched_transfers = EXCLUDED.unmatched_transfers, realized_gain_universal = EXCLUDED.realized_gain_universal,
    realized_gain_account = EXCLUDED.realized_gain_account, unrealized_gain_universal = EXCLUDED.unrealized_gain_universal,
    book = EXCLUDED.book, realized_gain_book = EXCLUDED.realized_gain_book, shortfalls = EXCLUDED.shortfalls,
    missing_prices = EXCLUDED.missing_prices,
    message = EXCLUDED.message, run_id = EXCLUDED.run_id, closed_at = EXCLUDED.closed_at
WHERE NOT c.locked
"""


class CloseError(Exception):
    """A close operation that is not allowed; the message says why."""


@dataclass(frozen=True)
class CloseRecord:
    date: date
    status: str
    legs: int
    positions: int
    breaks: int
    locked: bool
    locked_at: datetime | None


def write_closes(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None) -> int:
    """Write (or rewrite) the close record of each unlocked day in [start, end] from the stored figures.

    From the entity's first blocked day on (``reconciliation/blocking.py``) no PnL is booked: that day is
    ``breaks`` (or ``blocked`` when only unclassified legs block it) and the days after it ``blocked``, each saying
    why."""
    locked = sorted(locked_dates(conn, entity.id, start, end))
    blocked = first_blocked_day(conn, entity.id, end)
    reason = block_reason(conn, entity.id, blocked) if blocked is not None else None
    return conn.execute(sa.text(_WRITE_CLOSES), dict(e=entity.id, s=start, t=end, locked=locked, run_id=run_id,
                                                     blocked=blocked, reason=reason)).rowcount


def write_failed_closes(conn: Connection, entity: Entity, start: date, end: date, *, message: str, run_id: str | None) -> int:
    """Mark the unlocked days of a run that failed, keeping the previous figures."""
    locked = locked_dates(conn, entity.id, start, end)
    rows = [dict(e=entity.id, d=day, m=message[:2000], run=run_id) for day in days_between(start, end) if day not in locked]
    if not rows:
        return 0
    conn.execute(sa.text(
        """INSERT INTO closes AS c (entity_id, date, status, legs, positions, breaks, unmatched_transfers,
                                    realized_gain_universal, realized_gain_account, message, run_id)
           VALUES (:e, :d, 'failed', 0, 0, 0, 0, NULL, NULL, :m, :run)
           ON CONFLICT (entity_id, date) DO UPDATE SET status = 'failed', message = EXCLUDED.message,
               run_id = EXCLUDED.run_id, closed_at = now()
           WHERE NOT c.locked"""), rows)
    return len(rows)


_MARK_CLOSING = """
INSERT INTO closes AS c (entity_id, date, status, legs, positions, breaks, unmatched_transfers, message, run_id)
SELECT :e, CAST(d AS date), 'stale', 0, 0, 0, 0, :m, :run
FROM generate_series(CAST(:s AS date), CAST(:t AS date), interval '1 day') AS d
ON CONFLICT (entity_id, date) DO UPDATE SET status = 'stale', message = EXCLUDED.message, run_id = EXCLUDED.run_id
WHERE NOT c.locked AND c.status <> 'failed'
"""


def mark_closing(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None) -> int:
    """Before a close run rebuilds [start, end]: every unlocked day's close becomes ``stale`` (a day never closed
    gets a ``stale`` record) until the run writes it. A run killed halfway (kill -9, a lost machine) therefore
    leaves its days stale, never old figures beside new legs, and the next close recomputes from the earliest
    stale day (``reconciliation.staleness.close_window``). Commit it before the rebuild."""
    message = (f"stale: close run {run_id or '(in-process)'} is rebuilding this day; "
               "if that run did not finish, close again")
    return conn.execute(sa.text(_MARK_CLOSING), dict(e=entity.id, s=start, t=end, m=message, run=run_id)).rowcount


def get_close(conn: Connection, entity_id: int, day: date) -> CloseRecord | None:
    row = conn.execute(sa.select(closes).where(closes.c.entity_id == entity_id, closes.c.date == day)).first()
    if row is None:
        return None
    return CloseRecord(row.date, row.status, row.legs, row.positions, row.breaks, row.locked, row.locked_at)


def lock_close(conn: Connection, entity: Entity, day: date, *, by: str = "unknown",
               reason: str = "single-day lock (no reason given)") -> CloseRecord:
    """Lock ``day``: a one-day period (``reconciliation/periods.py``), allowed only for a close that ran and has no
    open break; recorded with who and why in the audit log."""
    from reconciliation.periods import Period, lock_period

    lock_period(conn, entity, Period("day", day, day), by=by, reason=reason)
    result = get_close(conn, entity.id, day)
    assert result is not None
    return result


def close_summaries(conn: Connection, entity: Entity, start: date, end: date) -> list[dict[str, str]]:
    """The close records of [start, end] as display rows (decimals as exact text; an empty realized gain: not
    booked, on a blocked or failed day)."""
    from warehouse.numbers import to_text

    rows = conn.execute(sa.select(closes).where(closes.c.entity_id == entity.id, closes.c.date.between(start, end))
                        .order_by(closes.c.date)).all()
    return [{"entity": entity.name, "date": r.date.isoformat(), "status": r.status, "legs": str(r.legs),
             "positions": str(r.positions), "breaks": str(r.breaks),
             "realized_gain": to_text(r.realized_gain_universal) or "", "locked": "yes" if r.locked else "no"}
            for r in rows]


def latest_close_date(conn: Connection, entity_id: int) -> date | None:
    return conn.execute(sa.select(sa.func.max(closes.c.date)).where(closes.c.entity_id == entity_id)).scalar()


def days_to_reclose(first_touched: date, last_touched: date, latest_close: date | None,
                    first_allowed: date, last_allowed: date) -> tuple[date, date] | None:
    """Days to close after new data for [first_touched, last_touched]: through the latest close too,
    because positions and cost basis roll forward from the earliest changed day."""
    start = max(first_touched, first_allowed)
    end = min(max(last_touched, latest_close or last_touched), last_allowed)
    return (start, end) if start <= end else None
