"""The period close: lock a period (a month, all days through a date, or one day) with who and why, unlock it
with who and why, a preparer's and a reviewer's sign-off per locked period, and the audit log of all of it.

Rules (``docs/close.md``, "Period close"):

- A period can be locked only if every day in it has a close that is lockable: status ``closed`` (or
  ``breaks`` once no break of the day is open: acknowledged or resolved), no open break; ``failed``,
  ``blocked``, ``partial``, ``unpriced`` and ``stale`` are refused by name, any other status too. Days already
  locked are refused (active periods never overlap): unlock the period that holds them first.
- ``--through D`` locks every not yet locked day from the entity's first unlocked close up to D.
- Locking and unlocking take the entity's period-close advisory lock, then row locks on the period's close
  records (in date order): two locks at once serialize, the second sees the first's result and refuses.
- An unlock goes through the database guard of the close records deliberately: the period is first recorded
  as unlocked (who, why, when), then its days are released under the transaction-local setting
  ``coinfrs.unlock_period`` naming that period, which the guard (migration 0021) allows; nothing else may
  change a locked day.
- A sign-off belongs to one period lock: the preparer signs first, the reviewer must be someone else. Unlocking
  the period voids its sign-offs (a void is recorded, never a delete); locking it again is a new period lock
  that needs new sign-offs.
- Every lock, unlock, sign-off and void is a row of ``close_audit_log``, which the database keeps append-only.

Everything runs in the caller's transaction: pass a connection from ``engine.begin()``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.close import CloseError
from warehouse.entities import Entity

ROLES = ("preparer", "reviewer")
ACTIONS = ("lock", "unlock", "signoff", "void")
LOCKABLE_STATUSES = ("closed", "breaks")
"""``breaks`` is lockable only once no break of the day is open (the count of open breaks is checked too)."""
REFUSED_STATUSES = {
    "failed": "failed ({message}): rerun the close before locking",
    "blocked": "is blocked ({message}): resolve or acknowledge that break and close again before locking",
    "partial": "is partial ({message}): re-read the source (or fix what the quarantined record names) and close it "
               "again before locking",
    "unpriced": "is unpriced ({message}): a value is missing; add the price and close it again before locking",
    "stale": "is stale ({message}): an input changed after it closed; close it again before locking",
}
MAX_NAME = 200
MAX_REASON = 2000
_ADVISORY_KEY = 0x636C6F73  # "clos": the period-close lock space; the second key is the entity id
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class PeriodError(CloseError):
    """A period-close action that is not allowed or not understood; the message says why (and what to do)."""


@dataclass(frozen=True)
class Period:
    """The days a lock, unlock or sign-off names: ``month`` (2026-01), ``through`` (every day up to a date) or
    ``day``. ``first`` is None for ``through`` until resolved against the entity's closes."""

    kind: str
    first: date | None
    last: date

    @property
    def label(self) -> str:
        if self.kind == "month":
            return self.last.strftime("%Y-%m")
        if self.kind == "through":
            return f"through {self.last.isoformat()}"
        return self.last.isoformat()


def parse_month(text: str) -> Period:
    match = _MONTH.match((text or "").strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise PeriodError(f"--month {text!r} is not a month (YYYY-MM)")
    year, month = int(match.group(1)), int(match.group(2))
    return Period("month", date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))


def period_of(*, month: str | None = None, through: date | None = None, day: date | None = None) -> Period:
    """The one period named by exactly one of ``month``, ``through`` and ``day``."""
    given = [name for name, value in (("--month", month), ("--through", through), ("--date", day)) if value]
    if len(given) != 1:
        raise PeriodError("name one period: --month YYYY-MM, --through YYYY-MM-DD or --date YYYY-MM-DD"
                          + (f" (got {' and '.join(given)})" if given else ""))
    if month:
        return parse_month(month)
    if through:
        return Period("through", None, through)
    assert day is not None
    return Period("day", day, day)


def _text(value: str | None, field: str, limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise PeriodError(f"{field} is required: say who (a name) and why (a reason)")
    if len(text) > limit:
        raise PeriodError(f"{field} is longer than {limit} characters")
    return text


@dataclass(frozen=True)
class SignOff:
    id: int
    role: str
    signed_by: str
    note: str | None
    signed_at: datetime
    voided_at: datetime | None
    void_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "signed_by": self.signed_by, "note": self.note, "signed_at": self.signed_at,
                "valid": self.voided_at is None, "voided_at": self.voided_at, "void_reason": self.void_reason}


@dataclass(frozen=True)
class PeriodLock:
    id: int
    entity: str
    period: str
    first_day: date
    last_day: date
    locked_by: str
    lock_reason: str
    locked_at: datetime
    unlocked_by: str | None
    unlock_reason: str | None
    unlocked_at: datetime | None
    signoffs: tuple[SignOff, ...] = ()

    @property
    def locked(self) -> bool:
        return self.unlocked_at is None

    def signoff(self, role: str) -> SignOff | None:
        """The valid sign-off of ``role``, if any."""
        return next((s for s in self.signoffs if s.role == role and s.voided_at is None), None)

    @property
    def state(self) -> str:
        """unlocked | locked | prepared (the preparer signed) | reviewed (preparer and reviewer signed)."""
        if not self.locked:
            return "unlocked"
        if self.signoff("reviewer"):
            return "reviewed"
        return "prepared" if self.signoff("preparer") else "locked"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "entity": self.entity, "period": self.period, "first_day": self.first_day,
                "last_day": self.last_day, "days": (self.last_day - self.first_day).days + 1, "state": self.state,
                "locked": self.locked, "locked_by": self.locked_by, "lock_reason": self.lock_reason,
                "locked_at": self.locked_at, "unlocked_by": self.unlocked_by, "unlock_reason": self.unlock_reason,
                "unlocked_at": self.unlocked_at, "signoffs": [s.as_dict() for s in self.signoffs]}


def _serialize(conn: Connection, entity: Entity) -> None:
    """One period-close action of an entity at a time (until the transaction ends)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k, CAST(:e AS integer))"), dict(k=_ADVISORY_KEY, e=entity.id))


def _audit(conn: Connection, entity: Entity, action: str, actor: str, reason: str | None, lock_id: int | None,
           period: str, first: date, last: date, details: dict[str, Any]) -> None:
    conn.execute(sa.text(
        """INSERT INTO close_audit_log (entity_id, action, actor, reason, period_lock_id, period, first_day, last_day,
                                        details)
           VALUES (:e, :a, :actor, :r, :p, :label, :f, :l, CAST(:d AS jsonb))"""),
        dict(e=entity.id, a=action, actor=actor, r=reason, p=lock_id, label=period, f=first, l=last,
             d=json.dumps(details, sort_keys=True, default=str)))


def _day_ranges(days: list[date]) -> str:
    """2026-01-03..2026-01-05, 2026-01-09"""
    parts: list[str] = []
    start = prev = None
    for day in sorted(days):
        if prev is not None and day == prev + timedelta(days=1):
            prev = day
            continue
        if start is not None:
            parts.append(start.isoformat() if start == prev else f"{start}..{prev}")
        start = prev = day
    if start is not None:
        parts.append(start.isoformat() if start == prev else f"{start}..{prev}")
    return ", ".join(parts)


def _resolve_through(conn: Connection, entity: Entity, last: date) -> date:
    first = conn.execute(sa.text("SELECT min(date) FROM closes WHERE entity_id = :e AND date <= :t AND NOT locked"),
                         dict(e=entity.id, t=last)).scalar()
    if first is None:
        any_close = conn.execute(sa.text("SELECT 1 FROM closes WHERE entity_id = :e AND date <= :t LIMIT 1"),
                                 dict(e=entity.id, t=last)).first()
        if any_close is None:
            raise PeriodError(f"{entity.name} has no close through {last}: run `coinfrs close --entity {entity.name} "
                              f"--from ... --to {last}` first")
        raise PeriodError(f"every close of {entity.name} through {last} is already locked")
    return first


def _holder(conn: Connection, entity: Entity, day: date) -> str:
    row = conn.execute(sa.text(
        """SELECT period, locked_by, locked_at FROM period_locks
           WHERE entity_id = :e AND unlocked_at IS NULL AND :d BETWEEN first_day AND last_day"""),
        dict(e=entity.id, d=day)).first()
    if row is None:
        return "(who and why not recorded)"
    return f"(period {row.period}, by {row.locked_by} at {row.locked_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC)"


def lock_period(conn: Connection, entity: Entity, period: Period, *, by: str, reason: str) -> PeriodLock:
    """Lock every day of ``period``; refused, naming each day and why, unless all of them can be locked."""
    by, reason = _text(by, "--by", MAX_NAME), _text(reason, "--reason", MAX_REASON)
    _serialize(conn, entity)
    first = period.first if period.first is not None else _resolve_through(conn, entity, period.last)
    last = period.last
    rows = conn.execute(sa.text(
        """SELECT c.date, c.status, c.message, c.locked, c.locked_at,
                  (SELECT count(*) FROM breaks b WHERE b.entity_id = c.entity_id AND b.date = c.date
                                                   AND b.status = 'open') AS open_breaks
           FROM closes c WHERE c.entity_id = :e AND c.date BETWEEN :f AND :l ORDER BY c.date FOR UPDATE OF c"""),
        dict(e=entity.id, f=first, l=last)).all()
    problems: list[str] = []
    single = first == last
    name = entity.name
    missing = sorted(set(_days(first, last)) - {r.date for r in rows})
    if missing:
        problems.append(f"{name} has no close for {_day_ranges(missing)}: run `coinfrs close --entity {name} "
                        f"--from {missing[0]} --to {missing[-1]}` first")
    for r in rows:
        if r.locked:
            holder = _holder(conn, entity, r.date) if len(problems) < 8 else ""  # only those the message shows
            since = f"(since {r.locked_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC) " if single and r.locked_at else ""
            problems.append(f"{name} {r.date} is already locked {since}{holder}")
        elif r.status in REFUSED_STATUSES:
            problems.append(f"{name} {r.date} " + REFUSED_STATUSES[r.status].format(message=r.message or "no message"))
        elif r.status not in LOCKABLE_STATUSES:
            problems.append(f"{name} {r.date} has status {r.status!r}, which cannot be locked ({r.message or 'no message'})")
        elif r.open_breaks:
            problems.append(f"{name} {r.date} has {r.open_breaks} open break(s): see `coinfrs recon breaks --entity "
                            f"{name} --from {r.date} --to {r.date}`; a day with open breaks cannot be locked")
    if problems:
        shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        if single:
            raise PeriodError("; ".join(shown))
        raise PeriodError(f"cannot lock {name} {period.label} ({first}..{last}): " + "; ".join(shown))
    lock_id, locked_at = conn.execute(sa.text(
        """INSERT INTO period_locks (entity_id, period, first_day, last_day, locked_by, lock_reason)
           VALUES (:e, :p, :f, :l, :by, :why) RETURNING id, locked_at"""),
        dict(e=entity.id, p=period.label, f=first, l=last, by=by, why=reason)).one()
    conn.execute(sa.text("UPDATE closes SET locked = true, locked_at = :at WHERE entity_id = :e AND date BETWEEN :f AND :l"),
                 dict(e=entity.id, f=first, l=last, at=locked_at))
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    _audit(conn, entity, "lock", by, reason, lock_id, period.label, first, last, {"days": len(rows), "statuses": statuses})
    result = get_period_lock(conn, entity, lock_id)
    assert result is not None
    return result


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _adopt_unrecorded_locks(conn: Connection, entity: Entity, first: date, last: date) -> None:
    """Locked days of [first, last] that belong to no period (locked by a direct write): one period each, who and
    why not recorded, so they can be unlocked the same way (migration 0021 did the same for older locks)."""
    adopted = conn.execute(sa.text(
        """INSERT INTO period_locks (entity_id, period, first_day, last_day, locked_by, lock_reason, locked_at)
           SELECT c.entity_id, to_char(c.date, 'YYYY-MM-DD'), c.date, c.date, 'unknown',
                  'locked without a recorded period (who and why not recorded)', coalesce(c.locked_at, c.closed_at)
           FROM closes c
           WHERE c.entity_id = :e AND c.date BETWEEN :f AND :l AND c.locked
             AND NOT EXISTS (SELECT 1 FROM period_locks p WHERE p.entity_id = c.entity_id AND p.unlocked_at IS NULL
                                                            AND c.date BETWEEN p.first_day AND p.last_day)
           ORDER BY c.date
           RETURNING id, period, first_day, last_day, locked_by, lock_reason"""), dict(e=entity.id, f=first, l=last)).all()
    for r in adopted:
        _audit(conn, entity, "lock", r.locked_by, r.lock_reason, r.id, r.period, r.first_day, r.last_day,
               {"days": 1, "adopted": True})


def find_active_period(conn: Connection, entity: Entity, period: Period, *, for_update: bool = False) -> PeriodLock:
    """The locked period that ``period`` names: a month's lock (exactly that month), the lock that ends on a
    ``through`` date, or the lock holding a ``day``."""
    if period.kind == "day":
        _adopt_unrecorded_locks(conn, entity, period.last, period.last)
        where = ":l BETWEEN first_day AND last_day"
    elif period.kind == "month":
        where = "first_day = :f AND last_day = :l"
    else:
        where = "last_day = :l"
    row = conn.execute(sa.text(
        f"""SELECT id FROM period_locks WHERE entity_id = :e AND unlocked_at IS NULL AND {where}
            ORDER BY id DESC LIMIT 1{' FOR UPDATE' if for_update else ''}"""),
        dict(e=entity.id, f=period.first, l=period.last)).first()
    if row is None:
        near = conn.execute(sa.text(
            """SELECT period, first_day, last_day FROM period_locks
               WHERE entity_id = :e AND unlocked_at IS NULL AND first_day <= :l AND last_day >= coalesce(:f, :l)
               ORDER BY first_day"""), dict(e=entity.id, f=period.first, l=period.last)).all()
        hint = ("; locked periods there: " + ", ".join(f"{r.period} ({r.first_day}..{r.last_day})" for r in near)
                + " (name one of them: --month, --through its last day, or --date one of its days)") if near else ""
        raise PeriodError(f"{entity.name} has no locked period {period.label}{hint}")
    found = get_period_lock(conn, entity, row.id)
    assert found is not None
    return found


def unlock_period(conn: Connection, entity: Entity, period: Period, *, by: str, reason: str) -> PeriodLock:
    """Unlock the locked period ``period`` names (all its days), recording who and why; its sign-offs are voided."""
    by, reason = _text(by, "--by", MAX_NAME), _text(reason, "--reason", MAX_REASON)
    _serialize(conn, entity)
    lock = find_active_period(conn, entity, period, for_update=True)
    conn.execute(sa.text(
        """UPDATE period_locks SET unlocked_by = :by, unlock_reason = :why, unlocked_at = now() WHERE id = :id"""),
        dict(id=lock.id, by=by, why=reason))
    # through the guard, deliberately: it lets this period's recorded unlock release its days, and nothing else
    conn.execute(sa.text("SELECT set_config('coinfrs.unlock_period', :id, true)"), dict(id=str(lock.id)))
    released = conn.execute(sa.text(
        """UPDATE closes SET locked = false, locked_at = NULL
           WHERE entity_id = :e AND date BETWEEN :f AND :l AND locked"""),
        dict(e=entity.id, f=lock.first_day, l=lock.last_day)).rowcount
    conn.execute(sa.text("SELECT set_config('coinfrs.unlock_period', '', true)"))
    void_reason = f"period unlocked by {by}: {reason}"
    voided = conn.execute(sa.text(
        """UPDATE period_signoffs SET voided_at = now(), void_reason = :why
           WHERE period_lock_id = :id AND voided_at IS NULL RETURNING role, signed_by, signed_at"""),
        dict(id=lock.id, why=void_reason)).all()
    _audit(conn, entity, "unlock", by, reason, lock.id, lock.period, lock.first_day, lock.last_day,
           {"days": released, "voided_signoffs": [f"{v.role} {v.signed_by}" for v in voided]})
    for v in sorted(voided, key=lambda v: v.role):
        _audit(conn, entity, "void", by, void_reason, lock.id, lock.period, lock.first_day, lock.last_day,
               {"role": v.role, "signed_by": v.signed_by, "signed_at": v.signed_at.isoformat()})
    result = get_period_lock(conn, entity, lock.id)
    assert result is not None
    return result


def sign_off(conn: Connection, entity: Entity, period: Period, *, role: str, by: str, note: str | None = None) -> PeriodLock:
    """The preparer's or the reviewer's sign-off of a locked period. The preparer signs first; the reviewer must
    be someone else; one valid sign-off per role."""
    if role not in ROLES:
        raise PeriodError(f"--role must be preparer or reviewer, not {role!r}")
    by = _text(by, "--by", MAX_NAME)
    note = (note or "").strip() or None
    if note and len(note) > MAX_REASON:
        raise PeriodError(f"--note is longer than {MAX_REASON} characters")
    _serialize(conn, entity)
    lock = find_active_period(conn, entity, period, for_update=True)
    where = f"{entity.name} {lock.period}"
    current = lock.signoff(role)
    if current is not None:
        raise PeriodError(f"{where} is already signed off as {role} by {current.signed_by} "
                          f"({current.signed_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC)")
    preparer = lock.signoff("preparer")
    if role == "reviewer":
        if preparer is None:
            raise PeriodError(f"{where} has no preparer sign-off yet: the preparer signs first")
        if preparer.signed_by.casefold() == by.casefold():
            raise PeriodError(f"{where}: the reviewer must be someone other than the preparer ({preparer.signed_by})")
    conn.execute(sa.text(
        "INSERT INTO period_signoffs (period_lock_id, role, signed_by, note) VALUES (:id, :role, :by, :note)"),
        dict(id=lock.id, role=role, by=by, note=note))
    _audit(conn, entity, "signoff", by, note, lock.id, lock.period, lock.first_day, lock.last_day, {"role": role})
    result = get_period_lock(conn, entity, lock.id)
    assert result is not None
    return result


def _locks(conn: Connection, entity: Entity, where: str, params: dict[str, Any]) -> list[PeriodLock]:
    rows = conn.execute(sa.text(f"SELECT * FROM period_locks WHERE entity_id = :e AND {where} ORDER BY first_day, id"),
                        dict(e=entity.id, **params)).mappings().all()
    if not rows:
        return []
    signed: dict[int, list[SignOff]] = {}
    for s in conn.execute(sa.text("SELECT * FROM period_signoffs WHERE period_lock_id = ANY(:ids) ORDER BY id"),
                          dict(ids=[r["id"] for r in rows])).mappings():
        signed.setdefault(s["period_lock_id"], []).append(
            SignOff(s["id"], s["role"], s["signed_by"], s["note"], s["signed_at"], s["voided_at"], s["void_reason"]))
    return [PeriodLock(r["id"], entity.name, r["period"], r["first_day"], r["last_day"], r["locked_by"], r["lock_reason"],
                       r["locked_at"], r["unlocked_by"], r["unlock_reason"], r["unlocked_at"],
                       tuple(signed.get(r["id"], ()))) for r in rows]


def get_period_lock(conn: Connection, entity: Entity, lock_id: int) -> PeriodLock | None:
    found = _locks(conn, entity, "id = :id", dict(id=lock_id))
    return found[0] if found else None


def list_periods(conn: Connection, entity: Entity, date_from: date | None = None, date_to: date | None = None, *,
                 include_unlocked: bool = True) -> list[PeriodLock]:
    """Period locks overlapping [date_from, date_to] (either bound open), in day order; unlocked ones too unless
    ``include_unlocked`` is false."""
    where = "(CAST(:f AS date) IS NULL OR last_day >= :f) AND (CAST(:t AS date) IS NULL OR first_day <= :t)"
    if not include_unlocked:
        where += " AND unlocked_at IS NULL"
    return _locks(conn, entity, where, dict(f=date_from, t=date_to))


def lock_of_day(conn: Connection, entity: Entity, day: date) -> PeriodLock | None:
    """The locked period holding ``day``, if any."""
    found = _locks(conn, entity, "unlocked_at IS NULL AND :d BETWEEN first_day AND last_day", dict(d=day))
    return found[-1] if found else None


def jsonable(value: Any) -> Any:
    """``value`` (from ``as_dict``, ``audit_log``) with dates as YYYY-MM-DD and times as ISO 8601 UTC (``Z``)."""
    from warehouse.reports import iso_utc

    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


# ----------------------------------------------------------------------------- the audit log


@dataclass(frozen=True)
class AuditPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    limit: int


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{entry_id}".encode()).decode().rstrip("=")


def decode_audit_cursor(cursor: str) -> int:
    """The entry id a cursor points after; PeriodError for anything that is not one of ours."""
    text = (cursor or "").strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith("audit:") or not raw[6:].isdigit() or len(raw) > 30:
        raise PeriodError("invalid cursor: pass back meta.next_cursor exactly as returned")
    return int(raw[6:])


def audit_log(conn: Connection, entity: Entity, *, date_from: date | None = None, date_to: date | None = None,
              action: str | None = None, cursor: str | None = None, limit: int = 100) -> AuditPage:
    """The entity's audit entries in the order they happened (oldest first), those whose period overlaps
    [date_from, date_to] (either bound open), of ``action`` if given; keyset-paginated by ``cursor``."""
    if action is not None and action not in ACTIONS:
        raise PeriodError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    after = decode_audit_cursor(cursor) if cursor else 0
    rows = conn.execute(sa.text(
        """SELECT id, at, action, actor, reason, period_lock_id, period, first_day, last_day, details
           FROM close_audit_log
           WHERE entity_id = :e AND id > :after AND (CAST(:a AS text) IS NULL OR action = :a)
             AND (CAST(:f AS date) IS NULL OR last_day >= :f) AND (CAST(:t AS date) IS NULL OR first_day <= :t)
           ORDER BY id LIMIT :n"""),
        dict(e=entity.id, after=after, a=action, f=date_from, t=date_to, n=limit + 1)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{"id": r["id"], "at": r["at"], "entity": entity.name, "action": r["action"], "actor": r["actor"],
              "reason": r["reason"], "period_lock_id": r["period_lock_id"], "period": r["period"],
              "first_day": r["first_day"], "last_day": r["last_day"], "details": r["details"]} for r in rows]
    return AuditPage(items, _encode_cursor(rows[-1]["id"]) if more else None, limit)
