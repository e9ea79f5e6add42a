"""Circuit breakers per configured source, kept in ``source_breakers`` so every process sees the same state.

``admit_sync`` is called before a source's sync (in its own short transaction, the breaker's row locked): it says
whether to run, probe or skip, and marks a probe ``half_open`` so that a second process does not probe at the same
time. ``record_sync_result`` applies the outcome. The rules (thresholds, cool-down, transitions) are
``ingestion.retry.BreakerPolicy`` / ``breaker_admits`` / ``breaker_after``: one retry module for calls and syncs.
A skipped sync is reported by the caller like a failed one (its days are recorded as source outages: the close is
``partial`` and its message says the breaker is open and until when).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from ingestion.retry import BreakerPolicy, BreakerState, breaker_admits, breaker_after
from warehouse.schema import source_breakers, source_credentials


@dataclass(frozen=True)
class Admission:
    action: str  # run | probe | skip
    state: BreakerState
    message: str | None  # why a sync is skipped


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _load(conn: Connection, source_id: int, *, lock: bool) -> BreakerState:
    query = sa.select(source_breakers).where(source_breakers.c.source_id == source_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        return BreakerState()
    return BreakerState(row.state, row.consecutive_failures, row.opened_at, row.probe_started_at, row.last_error)


def _save(conn: Connection, source_id: int, state: BreakerState) -> None:
    values = dict(source_id=source_id, state=state.state, consecutive_failures=state.consecutive_failures,
                  opened_at=state.opened_at, probe_started_at=state.probe_started_at,
                  last_error=(state.last_error or None) and state.last_error[:2000])
    statement = insert(source_breakers).values(**values)
    conn.execute(statement.on_conflict_do_update(index_elements=["source_id"],
                                                 set_={**{k: v for k, v in values.items() if k != "source_id"},
                                                       "updated_at": sa.func.now()}))


def describe(state: BreakerState, policy: BreakerPolicy) -> str:
    """One line: the state, the failures and (open) until when syncs are skipped."""
    if state.state == "closed":
        return "closed" + (f" ({state.consecutive_failures} consecutive failure(s))" if state.consecutive_failures else "")
    if state.state == "half_open":
        return f"half-open: a probing sync started at {state.probe_started_at:%Y-%m-%d %H:%M:%S} UTC"
    until = (state.opened_at or _now()) + timedelta(seconds=policy.cool_down_seconds)
    return (f"open since {state.opened_at:%Y-%m-%d %H:%M:%S} UTC after {state.consecutive_failures} consecutive failed "
            f"sync(s); next probe after {until:%Y-%m-%d %H:%M:%S} UTC; last error: {(state.last_error or '')[:300]}")


def admit_sync(conn: Connection, source_id: int, policy: BreakerPolicy, *, now: datetime | None = None) -> Admission:
    """Whether the source's sync may run now (``conn`` in a transaction: the breaker's row is locked until it ends)."""
    now = now or _now()
    conn.execute(insert(source_breakers).values(source_id=source_id).on_conflict_do_nothing(index_elements=["source_id"]))
    state = _load(conn, source_id, lock=True)
    action = breaker_admits(state, now, policy)
    if action == "probe":
        state = BreakerState("half_open", state.consecutive_failures, state.opened_at, now, state.last_error)
        _save(conn, source_id, state)
    message = f"circuit breaker {describe(state, policy)}" if action == "skip" else None
    return Admission(action, state, message)


def record_sync_result(conn: Connection, source_id: int, succeeded: bool, policy: BreakerPolicy, *,
                       error: str | None = None, now: datetime | None = None) -> BreakerState:
    """Apply a sync's outcome to the source's breaker; returns the new state."""
    state = breaker_after(_load(conn, source_id, lock=True), succeeded, now or _now(), policy, error)
    _save(conn, source_id, state)
    return state


def breaker_states(conn: Connection, entity_id: int, policy: BreakerPolicy | None = None) -> dict[str, dict]:
    """Each configured source's breaker, by source name: ``state``, ``consecutive_failures``, ``opened_at``,
    ``last_error`` and a readable ``summary`` (a source never synced is ``closed``)."""
    policy = policy or BreakerPolicy.from_env()
    rows = conn.execute(sa.select(source_credentials.c.name, source_breakers).select_from(
        source_credentials.outerjoin(source_breakers, source_breakers.c.source_id == source_credentials.c.id))
        .where(source_credentials.c.entity_id == entity_id).order_by(source_credentials.c.name)).all()
    result = {}
    for r in rows:
        state = BreakerState(r.state or "closed", r.consecutive_failures or 0, r.opened_at, r.probe_started_at,
                             r.last_error)
        result[r.name] = {"state": state.state, "consecutive_failures": state.consecutive_failures,
                          "opened_at": state.opened_at.isoformat() if state.opened_at else None,
                          "last_error": state.last_error, "summary": describe(state, policy)}
    return result
