"""Any ccxt exchange through ccxt's unified methods: stage each record's raw ``info`` and the reported balances.

Streams (raw_records; source = the ccxt exchange id, e.g. ``kraken``; account = the configured source name):
  trades       ``fetch_my_trades``      (``has['fetchMyTrades']``)
  deposits     ``fetch_deposits``       (``has['fetchDeposits']``)
  withdrawals  ``fetch_withdrawals``    (``has['fetchWithdrawals']``)
  ledger       ``fetch_ledger``         (``has['fetchLedger']``)
A stream the exchange does not have is skipped (and said so in the stats). The payload is the record's
``info``, the exchange's own JSON; its id is ``<account>|<ccxt's unified id>`` (``<account>|BASE/QUOTE|<id>`` for
a trade: the market, which the offline mapper cannot look up), deduplicated by the staging key. The client runs with ``number = str``: ccxt's unified numbers are then the exchange's exact
decimal text, never floats, and only such text is ever stored.

Pagination, per exchange and stream (``PAGING``; default ``since``): time windows from the stream's cursor
(minus an overlap) to now, each window read with
  ``offset``    the exchange's offset parameter (Kraken's ``ofs``, newest first, 50 per page), page after page
  ``since``     ``since``/``limit`` forward: the next page starts at the last record's time (read again,
                deduplicated); one call when the exchange returns the whole window
  ``newest``    newest first (OKX): the next page ends at the oldest record's time (read again, deduplicated)
(ccxt's own ``paginate`` option is not used: it stops silently after ``paginationCalls`` pages, and for methods
that do not support it the flag is sent to the exchange as a request parameter.)
Each window commits with its cursor in one transaction: a killed run resumes at the last window committed.

Reported balances (raw_balance_snapshots, account type ``spot``): the exchange's ledger carries the balance
after each entry (ccxt's unified ``after``): the last entry of each asset and day becomes a snapshot at that
entry's time, staged with the ledger window, so every day has the exchange's own end-of-day figure; and
``fetch_balance``'s ``total`` at run time.

Read-only keys: ccxt has no unified way to read a key's permissions. Kraken's are probed (``PROBES``): an
``AddOrder`` with ``validate=true`` (never placed) and a ``WithdrawInfo`` must both be refused with
``EGeneral:Permission denied``; otherwise the key is refused, naming the permission to remove.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import ccxt
from sqlalchemy.engine import Engine

from ingestion.ccxt.client import (DAY_MS, CcxtOptions, SourceError, call_exchange, ccxt_options, check_read_only,
                                   exchange_id_of, make_client)
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, start_run,
                               write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.ccxt.mapping import split_wrapped_balances
from ingestion.connectors import SyncStats

STREAMS = {"trades": ("fetchMyTrades", "fetch_my_trades"), "deposits": ("fetchDeposits", "fetch_deposits"),
           "withdrawals": ("fetchWithdrawals", "fetch_withdrawals"), "ledger": ("fetchLedger", "fetch_ledger")}


@dataclass(frozen=True)
class Paging:
    style: str = "since"  # offset | since | newest
    page_size: int | None = None  # None: the exchange returns the whole window
    offset_param: str = "ofs"
    since_param: str | None = None  # a method that does not send ``since`` itself: the exchange's name for it
    until_exclusive: bool = False  # ``newest``: the exchange returns records strictly before ``until``


PAGING: dict[str, dict[str, Paging]] = {
    "kraken": {"ledger": Paging("offset", 50), "trades": Paging("offset", 50),
               "deposits": Paging("since"), "withdrawals": Paging("since")},
    # OKX returns the newest 100 first; bills-archive takes begin/end (ms), deposit/withdrawal history before/after
    "okx": {"ledger": Paging("newest", 100, since_param="begin"), "trades": Paging("newest", 100),
            "deposits": Paging("newest", 100, until_exclusive=True),
            "withdrawals": Paging("newest", 100, until_exclusive=True)},
}


@dataclass
class CcxtSyncStats(SyncStats):
    skipped_streams: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ sync


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _windows(start: int, end: int, size: int):
    while start < end:
        stop = min(start + size, end)
        yield start, stop
        start = stop


class CcxtSync:
    """One sync of one configured ccxt source of one entity."""

    def __init__(self, engine: Engine, entity_id: int, account: str, exchange: ccxt.Exchange, options: CcxtOptions) -> None:
        self.engine, self.entity_id, self.account = engine, entity_id, account
        self.exchange, self.options = exchange, options
        self.source = exchange.id
        self.stats = CcxtSyncStats(account)
        self.now = int(datetime.now(timezone.utc).timestamp()) * 1000  # whole seconds: windows meet on second bounds

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.stats.calls += 1
        return call_exchange(self.exchange, what, fn, *args, policy=self.options.retry, **kwargs)

    def _commit(self, stream: str, records: list[RawRecordIn], cursor: Any, snapshots: list[BalanceSnapshotIn]) -> None:
        with self.engine.begin() as conn:
            run = start_run(conn, self.entity_id, self.source, stream, rows=len(records) + len(snapshots))
            inserted = write_raw_records(conn, self.entity_id, self.source, stream, records, run) if records else 0
            new_snapshots = write_balance_snapshots(conn, self.entity_id, self.source, snapshots, run) if snapshots else 0
            if cursor is not None:
                write_cursor(conn, self.entity_id, self.source, self.account, stream, cursor, run)
            finish_run(conn, run, seen=len(records) + len(snapshots), inserted=inserted + new_snapshots)
        self.stats.snapshots_inserted += new_snapshots
        self.stats.add(stream, len(records), inserted)

    def _start(self, stream: str) -> int:
        with self.engine.connect() as conn:
            cursor = load_cursor(conn, self.entity_id, self.source, self.account, stream)
        since = int(self.options.since.timestamp() * 1000)
        return since if cursor is None else max(since, int(cursor["until"]) - self.options.overlap_ms)

    def fetch_window(self, stream: str, lo: int, hi: int) -> list[dict]:
        """Every unified record of ``stream`` with lo <= timestamp <= hi, by the exchange's paging."""
        method = getattr(self.exchange, STREAMS[stream][1])
        paging = PAGING.get(self.source, {}).get(stream, Paging())
        what = f"{STREAMS[stream][1]} {_utc(lo):%Y-%m-%d}..{_utc(hi):%Y-%m-%d}"
        rows: list[dict] = []
        if paging.style == "offset":
            while True:
                page = self.call(what, method, None, lo, None, {"until": hi, paging.offset_param: len(rows)})
                rows.extend(page)
                if len(page) < (paging.page_size or 1):
                    return rows
        extra = {paging.since_param: lo} if paging.since_param else {}
        if paging.style == "newest":  # newest first: the next page ends at the oldest record read (read again)
            until = hi + 1 if paging.until_exclusive else hi
            while True:
                page = self.call(what, method, None, lo, paging.page_size, {"until": until, **extra})
                rows.extend(page)
                if len(page) < (paging.page_size or 1):
                    return rows
                oldest = min(int(r["timestamp"]) for r in page)
                following = oldest + 1 if paging.until_exclusive else oldest
                if following >= until:
                    raise SourceError(f"{self.source} {stream}: more than {paging.page_size} records at {oldest} ms")
                until = following
        since = lo
        while True:
            page = self.call(what, method, None, since, paging.page_size, {"until": hi, **extra})
            rows.extend(page)
            if paging.page_size is None or len(page) < paging.page_size:
                return rows
            last = max(int(r["timestamp"]) for r in page)
            if last == since:
                raise SourceError(f"{self.source} {stream}: more than {paging.page_size} records at {last} ms; "
                                  "raise the page size")
            since = last  # inclusive: the records at that time are read again and deduplicated

    def _record(self, stream: str, entry: dict) -> RawRecordIn:
        if not entry.get("id") or entry.get("timestamp") is None or not isinstance(entry.get("info"), dict):
            raise SourceError(f"{self.source} {stream}: a record without id, timestamp or info ({str(entry)[:200]})")
        market = f"{entry['symbol']}|" if stream == "trades" and entry.get("symbol") else ""  # the mapper's base/quote
        return RawRecordIn(self.account, f"{self.account}|{market}{entry['id']}", _utc(int(entry["timestamp"])),
                           entry["info"])

    def _ledger_snapshots(self, entries: list[dict]) -> list[BalanceSnapshotIn]:
        """The balance after the last entry of each asset and day: the exchange's own end-of-day figure."""
        last: dict[tuple[str, Any], dict] = {}
        for entry in sorted(entries, key=lambda e: (int(e["timestamp"]), str(e["id"]))):
            if entry.get("after") is not None and entry.get("currency"):
                last[(entry["currency"], _utc(int(entry["timestamp"])).date())] = entry
        return [BalanceSnapshotIn(self.account, account_type, "", _utc(int(e["timestamp"])), held, e["info"])
                for e in last.values()
                for account_type, held in split_wrapped_balances(self.source, {e["currency"]: str(e["after"])}).items()]

    def sync_stream(self, stream: str) -> None:
        has_key = STREAMS[stream][0]
        if not self.exchange.has.get(has_key):
            self.stats.skipped_streams.append(stream)
            return
        for lo, hi in _windows(self._start(stream), self.now, self.options.window_days * DAY_MS):
            entries = [e for e in self.fetch_window(stream, lo, hi) if lo <= int(e["timestamp"]) <= hi]
            records = [self._record(stream, e) for e in entries]
            snapshots = self._ledger_snapshots(entries) if stream == "ledger" else []
            self._commit(stream, records, {"until": hi}, snapshots)

    def sync_current_balances(self) -> None:
        taken = datetime.now(timezone.utc)
        balance = self.call("fetch_balance", self.exchange.fetch_balance)
        totals = {code: str(value) for code, value in (balance.get("total") or {}).items() if value is not None}
        payload = {"method": "fetch_balance", "info": balance.get("info")}
        self._commit("balances", [], None, [BalanceSnapshotIn(self.account, account_type, "", taken, held, payload)
                                            for account_type, held in split_wrapped_balances(self.source, totals).items()])

    def run(self) -> CcxtSyncStats:
        check_read_only(self.exchange, self.options.retry)
        self.call("load_markets", self.exchange.load_markets)
        for stream in ("ledger", "trades", "deposits", "withdrawals"):
            self.sync_stream(stream)
        self.sync_current_balances()
        return self.stats


# ------------------------------------------------------------------------------ the source kind


def ccxt_connector(kind: str):
    """The ``Connector`` of ``kraken`` / ``ccxt.<id>`` (see ingestion/connectors.py)."""
    from ingestion.connectors import Connector, read_json_credentials

    exchange_id = exchange_id_of(kind)

    def client(credentials: dict[str, str], config: dict[str, Any]) -> tuple[ccxt.Exchange, CcxtOptions]:
        options = ccxt_options(config)
        return make_client(exchange_id, credentials["api_key"], credentials["api_secret"], options,
                           credentials.get("password")), options

    def check(credentials: dict[str, str], config: dict[str, Any]) -> dict[str, Any]:
        exchange, options = client(credentials, config)
        return check_read_only(exchange, options.retry)

    def inspect(credentials: dict[str, str], config: dict[str, Any]):
        exchange, options = client(credentials, config)
        permissions = check_read_only(exchange, options.retry)
        markets = call_exchange(exchange, "load_markets", exchange.load_markets, policy=options.retry)
        balance = call_exchange(exchange, "fetch_balance", exchange.fetch_balance, policy=options.retry)
        held = {code: str(value) for code, value in (balance.get("total") or {}).items() if value is not None}
        checked = ("read-only key (probed: cannot trade, cannot withdraw)" if permissions.get("permissions_checked")
                   else f"key reads; its permissions cannot be read through {exchange_id}'s API: make sure it is read-only")
        return permissions, len(markets), {"spot": held}, f"{checked}; {len(markets)} markets"

    def make_sync(engine: Engine, entity_id: int, account: str, credentials: dict[str, str], config: dict[str, Any]):
        exchange, options = client(credentials, config)
        return CcxtSync(engine, entity_id, account, exchange, options)

    def read_credentials(path):
        fields = {"api_key": ("api_key", "apiKey"), "api_secret": ("api_secret", "secret")}
        if getattr(ccxt, exchange_id)().requiredCredentials.get("password"):  # OKX, KuCoin, ...: the key's passphrase
            fields["password"] = ("password", "passphrase")
        return read_json_credentials(kind, path, fields)

    return Connector(exchange_id, read_credentials, check, inspect, make_sync)
