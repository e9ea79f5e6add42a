"""Staging -> canonical for a range of close days of one entity, in set-based SQL.

``build_canonical`` rebuilds, for the days [start, end] that are not locked: legs (from the
latest version of each staged ledger record), internal transfers, balance observations (from
staged snapshots), ledger prices and daily positions (computed vs reported). It deletes what it
rebuilds first, so running it twice gives the same rows; run inside one transaction.

A record that arrives late for a locked day is booked on the first open day after it, flagged
``is_adjustment`` (DESIGN.md: a locked period never changes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from ingestion.csv_files import DEFAULT_ACCOUNT_TYPE, SOURCE
from transforms.asset_registry import ensure_assets
from transforms.classifications import load_classifications
from transforms.events import direction_ok, event_type
from transforms.ledger_mapping import LegDraft, leg_id
from transforms.mappers import MappingFailure, StagedRecord, registered_streams, try_map_record
from transforms.quarantine import write_quarantine
from transforms.transfer_matching import TransferLeg, TransferPolicy, match_transfers
from warehouse.calendar import close_date_of, cutoff_of, first_open_day_after, locked_dates
from warehouse.entities import Entity
from warehouse.bulk import copy_rows
from warehouse.numbers import D
from warehouse.schema import accounts


@dataclass(frozen=True)
class CanonicalStats:
    legs: int
    adjustment_legs: int
    transfers_matched: int
    transfers_unmatched: int
    observations: int
    positions: int
    unknown_assets: list[str]
    legs_per_day: dict[date, int]
    positions_per_day: dict[date, int]
    quarantined: int = 0  # staged records of these days no mapper could read (transforms/quarantine.py)


def ensure_accounts(conn: Connection, entity_id: int, keys: set[tuple[str, str, str]], source: str = SOURCE) -> dict[tuple[str, str, str], int]:
    """Ids of accounts (name, account_type, sub_account), created on first sight."""
    if not keys:
        return {}
    conn.execute(insert(accounts).values([
        dict(entity_id=entity_id, source=source, name=n, account_type=t, sub_account=s, label=n) for n, t, s in sorted(keys)
    ]).on_conflict_do_nothing(constraint="uq_accounts_identity"))
    rows = conn.execute(sa.select(accounts.c.id, accounts.c.name, accounts.c.account_type, accounts.c.sub_account)
                        .where(accounts.c.entity_id == entity_id)).all()
    return {(r.name, r.account_type, r.sub_account): r.id for r in rows}




def _reported_account_types(conn: Connection, entity_id: int) -> dict[str, set[str]]:
    """Account types under which each account name (without sub-account) reports balances."""
    rows = conn.execute(sa.text(
        "SELECT DISTINCT account, account_type FROM raw_balance_snapshots WHERE entity_id = :e AND sub_account = ''"),
        dict(e=entity_id)).all()
    types: dict[str, set[str]] = {}
    for row in rows:
        types.setdefault(row.account, set()).add(row.account_type)
    return types


def _with_account_type(draft: LegDraft, reported_types: dict[str, set[str]]) -> LegDraft:
    """A ledger row without account_type books to the one type its account reports balances under, else wallet."""
    if draft.account_type is not None:
        return draft
    types = reported_types.get(draft.account, set()) if not draft.sub_account else set()
    return replace(draft, account_type=next(iter(types)) if len(types) == 1 else DEFAULT_ACCOUNT_TYPE)


def _build_legs(conn: Connection, entity: Entity, start: date, end: date, locked: set[date],
               run_id: str | None = None) -> tuple[int, int]:
    """Legs of every registered (source, stream), from the latest staged version of each record. A record its mapper
    cannot read is quarantined with its error (transforms/quarantine.py) and books nothing; the others are booked."""
    tz = entity.tz
    window_from, window_to = cutoff_of(start - timedelta(days=1), tz), cutoff_of(end, tz)
    streams = registered_streams()
    records = conn.execute(sa.text(
        """
        WITH latest AS (
            SELECT DISTINCT ON (source, stream, source_raw_id) id, source, stream, account, source_raw_id, payload,
                   occurred_at
            FROM raw_records
            WHERE entity_id = :e AND (source || '/' || stream) = ANY(:streams) AND processing_status <> 'orphaned'
            ORDER BY source, stream, source_raw_id, id DESC
        )
        SELECT l.*, EXISTS (SELECT 1 FROM transactions t JOIN raw_records r ON r.id = t.raw_record_id
                            WHERE t.entity_id = :e AND t.close_date = ANY(:locked) AND r.entity_id = :e
                              AND r.source = l.source AND r.stream = l.stream AND r.source_raw_id = l.source_raw_id
                           ) AS booked_on_locked
        FROM latest l
        WHERE ((l.occurred_at > :wf AND l.occurred_at <= :wt)
               -- an earlier record not booked yet, or booked on a day this run rebuilds (late data on an open day)
               OR (l.occurred_at <= :wf AND NOT EXISTS (
                   SELECT 1 FROM transactions t WHERE t.raw_record_id = l.id
                     AND (t.close_date < :s OR t.close_date > :t OR t.close_date = ANY(:locked)))))
          -- this very version's legs already on a locked day stay there: never booked twice
          AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.raw_record_id = l.id AND t.close_date = ANY(:locked))
        ORDER BY l.occurred_at, l.id
        """), dict(e=entity.id, streams=[f"{s}/{t}" for s, t in streams], wf=window_from, wt=window_to,
                   locked=sorted(locked), s=start, t=end)).all()

    drafts: list[tuple[int, str, object, date, bool, LegDraft]] = []
    classified = load_classifications(conn, entity.id)  # a person's kinds over the mappers' (transforms/classifications.py)
    versions: dict[int, tuple[tuple[str, str, str], object, date]] = {}  # new versions of records booked on locked days
    failures: list[tuple[MappingFailure, date]] = []  # records no mapper could read: quarantined (transforms/quarantine.py)
    mapped_keys: list[tuple[str, str, str]] = []
    for record in records:
        natural_day = close_date_of(record.occurred_at, tz)
        adjustment = natural_day in locked or record.booked_on_locked
        booking_day = first_open_day_after(natural_day, locked) if natural_day in locked else natural_day
        if not (start <= booking_day <= end) or booking_day in locked:
            continue  # an open day outside this run: built when that day is closed
        staged = StagedRecord(record.id, record.source, record.stream, record.account, record.source_raw_id,
                              record.occurred_at, record.payload)
        if record.booked_on_locked:
            versions[record.id] = ((record.source, record.stream, record.source_raw_id), record.occurred_at, booking_day)
        mapped = try_map_record(staged)
        if isinstance(mapped, MappingFailure):  # errors as values: this record is quarantined, the rest is booked
            failures.append((mapped, booking_day))
            versions.pop(record.id, None)
            continue
        mapped_keys.append((record.source, record.stream, record.source_raw_id))
        for draft in mapped:
            kind = classified.get((record.source, record.stream, record.source_raw_id, draft.leg_index))
            if kind is not None and direction_ok(kind, draft.quantity):
                draft = replace(draft, kind=kind)
            drafts.append((record.id, record.source, record.occurred_at, booking_day, adjustment, draft))

    write_quarantine(conn, entity.id, start, end, locked, failures, mapped_keys, run_id=run_id)
    reported_types = _reported_account_types(conn, entity.id)
    drafts = [(raw_id, src, ts, day, adj, _with_account_type(d, reported_types)) for raw_id, src, ts, day, adj, d in drafts]
    account_ids: dict[tuple[str, str, str], int] = {}
    asset_ids: dict[tuple[str, str], int] = {}
    for source in sorted({src for _, src, *_ in drafts}):
        mine = [d for _, src, *_, d in drafts if src == source]
        account_ids.update(ensure_accounts(conn, entity.id, {(d.account, d.account_type, d.sub_account) for d in mine},
                                           source=source))
        asset_ids.update({(source, symbol): asset_id for symbol, asset_id in
                          ensure_assets(conn, {d.asset for d in mine}, source=source).items()})

    conn.execute(sa.text(
        "DELETE FROM transactions WHERE entity_id = :e AND close_date BETWEEN :s AND :t AND NOT (close_date = ANY(:locked))"),
        dict(e=entity.id, s=start, t=end, locked=sorted(locked)))
    rows = [
        (leg_id(raw_id, d.leg_index), entity.id, account_ids[(d.account, d.account_type, d.sub_account)],
         asset_ids[(src, d.asset.strip().upper())], ts, day, d.quantity, d.kind, f"{src}:{d.group or raw_id}", d.leg_index,
         d.unit_price_usd, d.usd_value, d.tx_hash, raw_id, adj)
        for raw_id, src, ts, day, adj, d in drafts
    ]
    if versions:
        rows = [r for r in rows if r[13] not in versions] + _version_differences(
            conn, entity.id, locked, versions, [r for r in rows if r[13] in versions])
    copy_rows(conn, "transactions", ("id", "entity_id", "account_id", "asset_id", "ts", "close_date", "quantity", "kind",
                                 "group_id", "leg_index", "unit_price_usd", "usd_value", "tx_hash", "raw_record_id",
                                 "is_adjustment"), rows)
    _build_events(conn, entity.id, start, end, locked, rows, {v: k[0] for k, v in account_ids.items()})
    return len(rows), sum(1 for r in rows if r[-1])


def _build_events(conn: Connection, entity_id: int, start: date, end: date, locked: set[date], rows: list[tuple],
                  account_names: dict[int, str]) -> None:
    """One ``events`` row per group of the rebuilt legs: its type (from its leg kinds, transforms/events.py), time,
    legs and source records. The valuation columns are filled by the cost-basis step (transforms/pnl.py)."""
    conn.execute(sa.text(
        "DELETE FROM events WHERE entity_id = :e AND close_date BETWEEN :s AND :t AND NOT (close_date = ANY(:locked))"),
        dict(e=entity_id, s=start, t=end, locked=sorted(locked)))
    groups: dict[str, list[tuple]] = {}
    for row in rows:
        groups.setdefault(row[8], []).append(row)
    if not groups:
        return
    events = []
    for group, legs in groups.items():
        transfer_accounts = {account_names.get(r[2]) for r in legs if r[7] in ("transfer_in", "transfer_out")}
        kind = event_type((r[7] for r in legs), same_source_accounts=len(transfer_accounts) == 1
                          and sum(1 for r in legs if r[7] in ("transfer_in", "transfer_out")) > 1)
        first = min(legs, key=lambda r: (r[4], r[0]))
        events.append((entity_id, group, kind.value, first[4], first[5], len(legs), sorted({r[13] for r in legs})))
    conn.execute(sa.text("CREATE TEMP TABLE tmp_events (LIKE events) ON COMMIT DROP"))
    copy_rows(conn, "tmp_events", ("entity_id", "group_id", "event_type", "ts", "close_date", "legs", "raw_record_ids"),
              events)
    conn.execute(sa.text("INSERT INTO events SELECT * FROM tmp_events ON CONFLICT (entity_id, group_id) DO NOTHING"))
    conn.execute(sa.text("DROP TABLE tmp_events"))


_LOCKED_VERSION_LEGS = """
SELECT r.source, r.stream, r.source_raw_id, t.account_id, t.asset_id, t.kind, sum(t.quantity) AS quantity,
       sum(t.usd_value) AS usd_value, count(t.usd_value) = count(*) AS usd_known
FROM transactions t JOIN raw_records r ON r.id = t.raw_record_id
WHERE t.entity_id = :e AND t.close_date = ANY(:locked) AND r.entity_id = :e
  AND (r.source || '/' || r.stream || '/' || r.source_raw_id) = ANY(:keys)
GROUP BY 1, 2, 3, 4, 5, 6
"""


def _version_differences(conn: Connection, entity_id: int, locked: set[date],
                         versions: dict[int, tuple[tuple[str, str, str], object, date]], new_rows: list[tuple]) -> list[tuple]:
    """A changed version of a record already booked on locked days: only the difference (new - booked) per
    (account, asset, kind), as adjustment legs on the first open day. The booked legs are every version's legs on
    locked days (a difference booked earlier and locked since counts too), so versions never double count."""
    booked: dict[tuple[str, str, str], dict[tuple[int, int, str], tuple]] = {}
    keys = sorted({"/".join(key) for key, _, _ in versions.values()})
    for row in conn.execute(sa.text(_LOCKED_VERSION_LEGS), dict(e=entity_id, locked=sorted(locked), keys=keys)):
        booked.setdefault((row.source, row.stream, row.source_raw_id), {})[(row.account_id, row.asset_id, row.kind)] = (
            row.quantity, row.usd_value if row.usd_known else None)
    by_record: dict[int, list[tuple]] = {}
    for row in new_rows:
        by_record.setdefault(row[13], []).append(row)
    out: list[tuple] = []
    for raw_id, (key, occurred_at, booking_day) in versions.items():
        mine = by_record.get(raw_id, [])
        old = booked.get(key, {})
        new: dict[tuple[int, int, str], list[tuple]] = {}
        for row in mine:
            new.setdefault((row[2], row[3], row[7]), []).append(row)
        used = {row[9] for row in mine}
        free = (i for i in range(10) if i not in used)  # leg_id leaves 10 leg indexes per record
        for leg_key in sorted(set(new) | set(old)):
            rows = new.get(leg_key, [])
            old_quantity, old_usd = old.get(leg_key, (0, 0))
            quantity = sum((r[6] for r in rows), D(0)) - old_quantity
            if quantity == 0:
                continue
            new_usd = sum((r[11] for r in rows), D(0)) if all(r[11] is not None for r in rows) else None
            usd = new_usd - (old_usd or 0) if new_usd is not None and old_usd is not None else None
            if rows:
                first = rows[0]
                index, ts, day, group, price, tx_hash = first[9], first[4], first[5], first[8], first[10], first[12]
            else:  # this (account, asset, kind) left the record: reversed, on the record's booking day
                index, ts, day, group, price, tx_hash = next(free), occurred_at, booking_day, f"{key[0]}:{raw_id}", None, None
            out.append((leg_id(raw_id, index), entity_id, leg_key[0], leg_key[1], ts, day, quantity, leg_key[2], group,
                        index, price, usd, tx_hash, raw_id, True))
    return out


def _transfer_policy(conn: Connection, entity_id: int) -> TransferPolicy:
    """The entity's matching settings (``recon_policies``, ``coinfrs recon policy``), else the defaults."""
    row = conn.execute(sa.text(
        "SELECT transfer_window_seconds, transfer_fee_tolerance FROM recon_policies WHERE entity_id = :e"),
        dict(e=entity_id)).first()
    return TransferPolicy(row.transfer_window_seconds, row.transfer_fee_tolerance) if row else TransferPolicy()


_TRANSFER_CANDIDATES_SQL = """
-- in the field order of transforms.transfer_matching.TransferLeg
SELECT c.id, c.account_id, c.asset_id, c.kind, c.ts, c.quantity, c.tx_hash, coalesce(f.fee, 0) AS fee
FROM tmp_transfer_candidates c
LEFT JOIN (SELECT l.group_id, l.account_id, l.asset_id, sum(abs(l.quantity)) AS fee FROM transactions l
           WHERE l.entity_id = :e AND l.kind = 'fee'
             AND l.close_date BETWEEN (SELECT min(close_date) FROM tmp_transfer_candidates)
                                  AND (SELECT max(close_date) FROM tmp_transfer_candidates)
             AND l.group_id IN (SELECT group_id FROM tmp_transfer_candidates WHERE kind IN ('transfer_out', 'withdrawal'))
           GROUP BY 1, 2, 3) f
  ON c.kind IN ('transfer_out', 'withdrawal') AND f.group_id = c.group_id AND f.account_id = c.account_id
     AND f.asset_id = c.asset_id
"""


def _build_transfers(conn: Connection, entity: Entity, start: date, end: date, locked: set[date]) -> tuple[int, int]:
    """Match the outgoing and incoming legs between owned accounts (``transfer_out``/``transfer_in``, an exchange's or
    custodian's ``withdrawal``/``deposit``) by the one matcher (``transforms.transfer_matching``): by tx hash, then by
    asset, amount less the withdrawal fee and time window. Every leg left is an unmatched transfer row (an external
    transfer flagged for review)."""
    policy = _transfer_policy(conn, entity.id)
    tz = entity.tz
    params = dict(e=entity.id, s=start, t=end, locked=sorted(locked), window=timedelta(seconds=policy.window_seconds),
                  wf=cutoff_of(start - timedelta(days=1), tz), wt=cutoff_of(end, tz))
    conn.execute(sa.text(
        """
        CREATE TEMP TABLE tmp_transfer_hashes ON COMMIT DROP AS
        SELECT DISTINCT tx_hash FROM transactions
        WHERE entity_id = :e AND close_date BETWEEN :s AND :t
          AND kind IN ('transfer_in', 'transfer_out', 'deposit', 'withdrawal') AND tx_hash IS NOT NULL
        """), params)
    # Rebuilt: the transfers of the run's days, those sharing a hash with them, and the unmatched legs of open days
    # within the window around the run (their counterpart may be in the run).
    conn.execute(sa.text(
        """
        DELETE FROM transfers x WHERE x.entity_id = :e AND NOT (x.close_date = ANY(:locked))
          AND (x.close_date BETWEEN :s AND :t OR x.tx_hash IN (SELECT tx_hash FROM tmp_transfer_hashes)
               OR (x.status <> 'matched' AND EXISTS (
                   SELECT 1 FROM transactions l WHERE l.id = coalesce(x.out_leg_id, x.in_leg_id)
                     AND l.ts > CAST(:wf AS timestamptz) - :window AND l.ts <= CAST(:wt AS timestamptz) + :window)))
        """), params)
    conn.execute(sa.text(
        """
        CREATE TEMP TABLE tmp_transfer_candidates ON COMMIT DROP AS
        SELECT l.id, l.account_id, l.asset_id, l.tx_hash, l.kind, l.ts, l.close_date, l.quantity, l.group_id
        FROM transactions l
        WHERE l.entity_id = :e AND NOT (l.close_date = ANY(:locked))
          AND l.kind IN ('transfer_in', 'transfer_out', 'deposit', 'withdrawal')
          AND (l.close_date BETWEEN :s AND :t OR l.tx_hash IN (SELECT tx_hash FROM tmp_transfer_hashes)
               OR (l.ts > CAST(:wf AS timestamptz) - :window AND l.ts <= CAST(:wt AS timestamptz) + :window))
          AND NOT EXISTS (SELECT 1 FROM transfers x WHERE x.out_leg_id = l.id OR x.in_leg_id = l.id)
        """), params)
    conn.execute(sa.text("ALTER TABLE tmp_transfer_candidates ADD PRIMARY KEY (id)"))
    conn.execute(sa.text("ANALYZE tmp_transfer_candidates"))
    candidates = [TransferLeg(*row) for row in conn.execute(sa.text(_TRANSFER_CANDIDATES_SQL), params).all()]
    matching = match_transfers(candidates, policy)
    conn.execute(sa.text(
        "CREATE TEMP TABLE tmp_transfer_status (leg_id bigint PRIMARY KEY, status text, in_leg_id bigint, matched_by text)"
        " ON COMMIT DROP"))
    copy_rows(conn, "tmp_transfer_status", ("leg_id", "status", "in_leg_id", "matched_by"),
              [(m.out_id, "matched", m.in_id, m.matched_by) for m in matching.matches]
              + [(i, "unmatched_out", None, None) for i in matching.unmatched_out]
              + [(i, "unmatched_in", None, None) for i in matching.unmatched_in])
    conn.execute(sa.text("ANALYZE tmp_transfer_status"))
    conn.execute(sa.text(
        """
        INSERT INTO transfers (id, entity_id, out_leg_id, in_leg_id, asset_id, tx_hash, status, close_date, matched_by)
        SELECT c.id, :e, CASE WHEN s.status = 'unmatched_in' THEN NULL ELSE c.id END,
               CASE WHEN s.status = 'unmatched_in' THEN c.id ELSE s.in_leg_id END, c.asset_id,
               coalesce(c.tx_hash, i.tx_hash), s.status, c.close_date, s.matched_by
        FROM tmp_transfer_status s JOIN tmp_transfer_candidates c ON c.id = s.leg_id
        LEFT JOIN tmp_transfer_candidates i ON i.id = s.in_leg_id
        WHERE NOT (c.close_date = ANY(:locked))
        """), params)
    # each matched leg's counterparty: the other leg's account (straight from the matches, by primary key)
    conn.execute(sa.text(
        """
        UPDATE transactions l SET counterparty_account_id = peer.account_id
        FROM (SELECT o.id, i.account_id FROM tmp_transfer_status s JOIN tmp_transfer_candidates o ON o.id = s.leg_id
              JOIN tmp_transfer_candidates i ON i.id = s.in_leg_id WHERE s.status = 'matched'
              UNION ALL
              SELECT i.id, o.account_id FROM tmp_transfer_status s JOIN tmp_transfer_candidates o ON o.id = s.leg_id
              JOIN tmp_transfer_candidates i ON i.id = s.in_leg_id WHERE s.status = 'matched') peer
        WHERE l.id = peer.id
        """), params)
    counts = dict(conn.execute(sa.text(
        "SELECT status = 'matched', count(*) FROM transfers WHERE entity_id = :e AND close_date BETWEEN :s AND :t GROUP BY 1"),
        params).all())
    for table in ("tmp_transfer_status", "tmp_transfer_candidates", "tmp_transfer_hashes"):
        conn.execute(sa.text(f"DROP TABLE {table}"))
    return counts.get(True, 0), counts.get(False, 0)


def _build_observations(conn: Connection, entity: Entity, start: date, end: date, locked: set[date]) -> int:
    tz = entity.tz
    params = dict(e=entity.id, wf=cutoff_of(start - timedelta(days=1), tz), wt=cutoff_of(end, tz),
                  tz=entity.timezone, locked=sorted(locked))
    keys = conn.execute(sa.text(
        """
        SELECT DISTINCT s.source, s.account, s.account_type, s.sub_account, kv.key AS asset
        FROM raw_balance_snapshots s CROSS JOIN LATERAL jsonb_object_keys(s.balances) AS kv(key)
        WHERE s.entity_id = :e AND s.snapshot_time > :wf AND s.snapshot_time <= :wt
        """), params).all()
    for source in sorted({k.source for k in keys}):
        mine = [k for k in keys if k.source == source]
        ensure_accounts(conn, entity.id, {(k.account, k.account_type, k.sub_account) for k in mine}, source=source)
        ensure_assets(conn, {k.asset for k in mine}, source=source)
    day_of = "((%s - interval '1 microsecond') AT TIME ZONE :tz)::date"
    conn.execute(sa.text(
        f"DELETE FROM balance_observations WHERE entity_id = :e AND observed_at > :wf AND observed_at <= :wt"
        f" AND NOT ({day_of % 'observed_at'} = ANY(:locked))"), params)
    return conn.execute(sa.text(
        f"""
        INSERT INTO balance_observations (entity_id, account_id, asset_id, observed_at, quantity, raw_snapshot_id)
        SELECT DISTINCT ON (a.id, al.asset_id, s.snapshot_time)
               :e, a.id, al.asset_id, s.snapshot_time, kv.value::numeric, s.id
        FROM raw_balance_snapshots s
        CROSS JOIN LATERAL jsonb_each_text(s.balances) AS kv(key, value)
        JOIN accounts a ON a.entity_id = s.entity_id AND a.name = s.account AND a.account_type = s.account_type
                       AND a.sub_account = s.sub_account
        JOIN asset_aliases al ON al.source = s.source AND al.alias = upper(kv.key)
        WHERE s.entity_id = :e AND s.snapshot_time > :wf AND s.snapshot_time <= :wt
          AND NOT ({day_of % 's.snapshot_time'} = ANY(:locked))
        ORDER BY a.id, al.asset_id, s.snapshot_time, s.id DESC
        """), params).rowcount


def _build_prices(conn: Connection, entity: Entity, start: date, end: date, locked: set[date]) -> None:
    """Trade prices from the ledger itself (until the price service arrives)."""
    conn.execute(sa.text(
        """
        DELETE FROM prices WHERE entity_id = :e AND source = 'ledger'
          AND leg_id IN (SELECT id FROM transactions WHERE entity_id = :e AND close_date BETWEEN :s AND :t)
        """), dict(e=entity.id, s=start, t=end))
    conn.execute(sa.text(
        """
        INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution, leg_id)
        SELECT l.entity_id, l.asset_id, l.ts, l.unit_price_usd, 'ledger', 'trade', l.id
        FROM transactions l JOIN assets a ON a.id = l.asset_id
        WHERE l.entity_id = :e AND l.close_date BETWEEN :s AND :t AND NOT (l.close_date = ANY(:locked))
          AND l.unit_price_usd IS NOT NULL AND l.unit_price_usd > 0 AND NOT a.is_fiat
        """), dict(e=entity.id, s=start, t=end, locked=sorted(locked)))


POSITIONS_SQL = """
WITH days AS (
    SELECT d::date AS day, ((d::date + 1)::timestamp AT TIME ZONE :tz) AS cutoff
    FROM generate_series(CAST(:s AS date), CAST(:t AS date), interval '1 day') AS d
),
pairs AS (
    SELECT account_id, asset_id, min(first_day) AS first_day FROM (
        SELECT account_id, asset_id, min(close_date) AS first_day FROM transactions
        WHERE entity_id = :e AND close_date <= :t GROUP BY 1, 2
        UNION ALL
        SELECT account_id, asset_id, min(((observed_at - interval '1 microsecond') AT TIME ZONE :tz)::date)
        FROM balance_observations WHERE entity_id = :e AND observed_at <= (SELECT max(cutoff) FROM days) GROUP BY 1, 2
    ) x GROUP BY 1, 2
),
daily AS (
    SELECT account_id, asset_id, close_date, sum(quantity) AS q FROM transactions
    WHERE entity_id = :e AND close_date <= :t GROUP BY 1, 2, 3
),
opening AS (
    SELECT account_id, asset_id, sum(q) AS q FROM daily WHERE close_date < :s GROUP BY 1, 2
),
grid AS (
    SELECT p.account_id, p.asset_id, d.day, d.cutoff FROM pairs p JOIN days d ON d.day >= p.first_day
),
computed AS (
    SELECT g.account_id, g.asset_id, g.day, g.cutoff,
           coalesce(o.q, 0) + sum(coalesce(dl.q, 0)) OVER (PARTITION BY g.account_id, g.asset_id ORDER BY g.day) AS qty
    FROM grid g
    LEFT JOIN opening o ON o.account_id = g.account_id AND o.asset_id = g.asset_id
    LEFT JOIN daily dl ON dl.account_id = g.account_id AND dl.asset_id = g.asset_id AND dl.close_date = g.day
)
INSERT INTO positions (entity_id, account_id, asset_id, date, computed_quantity, reported_quantity, reported_at,
                       close_price_usd, price_at, run_id)
SELECT :e, c.account_id, c.asset_id, c.day, c.qty, rep.quantity, rep.observed_at,
       CASE WHEN a.symbol = 'USD' THEN 1 ELSE pr.price_usd END,
       CASE WHEN a.symbol = 'USD' THEN NULL ELSE pr.ts END,
       :run_id
FROM computed c
JOIN assets a ON a.id = c.asset_id
LEFT JOIN LATERAL (
    SELECT b.quantity, b.observed_at FROM balance_observations b
    WHERE b.account_id = c.account_id AND b.asset_id = c.asset_id AND b.observed_at <= c.cutoff
    ORDER BY b.observed_at DESC LIMIT 1
) rep ON true
LEFT JOIN LATERAL (
    SELECT p.price_usd, p.ts FROM prices p
    WHERE p.entity_id = :e AND p.asset_id = c.asset_id AND p.ts <= c.cutoff
    ORDER BY p.ts DESC, p.id DESC LIMIT 1
) pr ON true
WHERE NOT (c.day = ANY(:locked))  -- locked days stay as closed, but their legs still roll into the days after
"""


def _build_positions(conn: Connection, entity: Entity, start: date, end: date, locked: set[date], run_id: str | None) -> int:
    params = dict(e=entity.id, s=start, t=end, locked=sorted(locked), tz=entity.timezone, run_id=run_id)
    conn.execute(sa.text(
        "DELETE FROM positions WHERE entity_id = :e AND date BETWEEN :s AND :t AND NOT (date = ANY(:locked))"), params)
    return conn.execute(sa.text(POSITIONS_SQL), params).rowcount


def build_canonical(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None = None) -> CanonicalStats:
    """Rebuild the canonical layer of ``entity`` for close days [start, end] (locked days untouched)."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    locked = locked_dates(conn, entity.id)
    legs, adjustments = _build_legs(conn, entity, start, end, locked, run_id)
    matched, unmatched = _build_transfers(conn, entity, start, end, locked)
    observations = _build_observations(conn, entity, start, end, locked)
    _build_prices(conn, entity, start, end, locked)
    positions = _build_positions(conn, entity, start, end, locked, run_id)
    params = dict(e=entity.id, s=start, t=end)
    legs_per_day = dict(conn.execute(sa.text(
        "SELECT close_date, count(*) FROM transactions WHERE entity_id = :e AND close_date BETWEEN :s AND :t GROUP BY 1"), params).all())
    positions_per_day = dict(conn.execute(sa.text(
        "SELECT date, count(*) FROM positions WHERE entity_id = :e AND date BETWEEN :s AND :t GROUP BY 1"), params).all())
    unknown = list(conn.execute(sa.text(
        """SELECT DISTINCT a.symbol FROM assets a JOIN transactions l ON l.asset_id = a.id
           WHERE l.entity_id = :e AND l.close_date BETWEEN :s AND :t AND a.unverified ORDER BY 1"""), params).scalars())
    quarantined = conn.execute(sa.text(
        "SELECT count(*) FROM quarantined_records WHERE entity_id = :e AND close_date BETWEEN :s AND :t"), params).scalar_one()
    return CanonicalStats(legs, adjustments, matched, unmatched, observations, positions, unknown, legs_per_day,
                          positions_per_day, quarantined)


