"""Binance through the real ccxt client: fetch each stream's raw records (Binance's exact JSON) and stage them.

Streams (raw_records, source ``binance``, account = the configured source name):
  trades          /api/v3/myTrades, one call per symbol, ``fromId`` pagination; cursor per symbol
  deposits        /sapi/v1/capital/deposit/hisrec, 90-day windows, offset pagination
  withdrawals     /sapi/v1/capital/withdraw/history, 90-day windows, offset pagination (fees in the record)
  transfers       /sapi/v1/asset/transfer per transfer type, 30-day windows, page pagination
  futures_income  /fapi/v1/income (USD-M), 30-day windows, time pagination
  converts        /sapi/v1/convert/tradeFlow, 30-day windows (Binance Convert)
  dust            /sapi/v1/asset/dribblet, 90-day windows, one record per converted asset (small balances -> BNB)
  margin_interest /sapi/v1/margin/interestHistory, 30-day windows, page pagination (cross margin)
  margin_trades   /sapi/v1/margin/myTrades, one call per symbol, ``fromId`` pagination; cursor per symbol
  margin_loans    /sapi/v1/margin/borrow-repay type=BORROW, 7-day windows, page pagination
  margin_repays   /sapi/v1/margin/borrow-repay type=REPAY, 7-day windows, page pagination
  sub_accounts    /sapi/v1/sub-account/list (a master account's sub-accounts; no legs)
  sub_transfers   /sapi/v1/sub-account/universalTransfer from and to each sub-account, 7-day windows
Managed sub-accounts also have daily SPOT snapshots (/sapi/v1/managed-subaccount/accountSnapshot).
Balances (raw_balance_snapshots): /sapi/v1/accountSnapshot per account type (SPOT, MARGIN, FUTURES: the
daily snapshot at 23:59:59 UTC; MARGIN gives the ``margin`` assets and the ``margin_loan`` debt) and the
balances at run time (/api/v3/account, /sapi/v1/margin/account, /fapi/v2/balance, the funding wallet's
/sapi/v1/asset/get-funding-asset, each sub-account's /sapi/v4/sub-account/assets).

The implicit API methods of ccxt are used so the staged payload is Binance's own record with its exact
strings (ccxt's unified fields are floats). Every page or window is written in its own transaction together
with the stream's cursor, so a killed run resumes where the last commit left it; windows restart an overlap
before the cursor (late or updated records: a changed record is staged as a new version) and the natural
key makes the overlap harmless. Symbols to ask trades for are discovered from the assets seen in balances,
snapshots, deposits and withdrawals (Binance has no "all my trades" call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import ccxt
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ingestion.binance import client as binance_client
from ingestion.binance.client import DAY_MS, ApiCredentials, BinanceOptions, check_read_only, make_client
from ingestion.ccxt.client import SourceError, call_exchange
from ingestion.connectors import Connector
from ingestion.connectors import SyncStats as BaseSyncStats
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, load_late_movement,
                               rolled_back_days, start_run, write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.binance.mapping import (EARN_ACCOUNT_TYPE, EARN_LOCKED_ACCOUNT_TYPE, ISOLATED_MARGIN, ISOLATED_MARGIN_LOAN,
                                       SOURCE, STREAM_MAPPERS, split_earn_balances)
from transforms.mappers import StagedRecord, try_map_record
from warehouse.calendar import close_date_of, cutoff_of
from warehouse.entities import find_entity
from warehouse.numbers import D, ZERO, exact_context

TRANSFER_TYPES = ("MAIN_MARGIN", "MARGIN_MAIN", "MAIN_UMFUTURE", "UMFUTURE_MAIN", "MAIN_FUNDING", "FUNDING_MAIN",
                  "UMFUTURE_FUNDING", "FUNDING_UMFUTURE", "MAIN_CMFUTURE", "CMFUTURE_MAIN")
# isolated margin transfers, per pair: the side Binance requires the pair on
ISOLATED_TRANSFER_TYPES = {"MARGIN_ISOLATEDMARGIN": "toSymbol", "ISOLATEDMARGIN_MARGIN": "fromSymbol"}
# Simple Earn and ETH staking history: stream -> (endpoint, ccxt method name, the record's own id)
EARN_STREAMS = {
    "earn_flexible_subscriptions": ("/sapi/v1/simple-earn/flexible/history/subscriptionRecord",
                                    "sapiGetSimpleEarnFlexibleHistorySubscriptionRecord", ("purchaseId",)),
    "earn_flexible_redemptions": ("/sapi/v1/simple-earn/flexible/history/redemptionRecord",
                                  "sapiGetSimpleEarnFlexibleHistoryRedemptionRecord", ("redeemId",)),
    "earn_locked_subscriptions": ("/sapi/v1/simple-earn/locked/history/subscriptionRecord",
                                  "sapiGetSimpleEarnLockedHistorySubscriptionRecord", ("purchaseId",)),
    "earn_locked_redemptions": ("/sapi/v1/simple-earn/locked/history/redemptionRecord",
                                "sapiGetSimpleEarnLockedHistoryRedemptionRecord", ("redeemId",)),
    "earn_locked_rewards": ("/sapi/v1/simple-earn/locked/history/rewardsRecord",
                            "sapiGetSimpleEarnLockedHistoryRewardsRecord", ("positionId", "asset", "time")),
    "eth_staking": ("/sapi/v1/eth-staking/eth/history/stakingHistory", "sapiGetEthStakingEthHistoryStakingHistory",
                    ("time", "asset", "amount", "distributeAmount")),
    "eth_staking_redemptions": ("/sapi/v1/eth-staking/eth/history/redemptionHistory",
                                "sapiGetEthStakingEthHistoryRedemptionHistory",
                                ("time", "asset", "amount", "distributeAmount")),
}
FLEXIBLE_REWARD_TYPES = ("REALTIME", "BONUS")  # the rewards credited (REWARDS: the historical view; ALL: both again)
FIAT_STREAMS = {("orders", "0"): "fiat_deposits", ("orders", "1"): "fiat_withdrawals", ("payments", "0"): "fiat_payments",
                ("payments", "1"): "fiat_payments"}
# account types Binance gives no daily snapshot of: their daily balances are rolled back from the run-time balance
# through the staged movements (see docs/sources-exchanges.md)
ROLLED_BACK_TYPES = ("funding", EARN_LOCKED_ACCOUNT_TYPE, ISOLATED_MARGIN, ISOLATED_MARGIN_LOAN, "coin_futures")
LOAN_STREAMS = {"BORROW": "margin_loans", "REPAY": "margin_repays"}
SNAPSHOT_TYPES = {"SPOT": "spot", "MARGIN": "margin", "FUTURES": "futures"}


@dataclass
class SyncStats(BaseSyncStats):
    symbols: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ helpers


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _apply_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def _now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def _windows(start: int, end: int, size: int) -> Iterable[tuple[int, int]]:
    while start < end:
        stop = min(start + size - 1, end)
        yield start, stop
        start = stop + 1


def _text_sum(*values: str) -> str:
    with exact_context():
        total = sum((D(v) for v in values), ZERO)
    return format(total, "f")


def _margin_balances(user_assets: list[dict]) -> tuple[dict[str, str], dict[str, str]]:
    """Cross margin ``userAssets``: the assets held (free + locked) and the debt (-(borrowed + interest))."""
    held = {b["asset"]: _text_sum(b["free"], b["locked"]) for b in user_assets}
    with exact_context():
        debt = {b["asset"]: format(-(D(b["borrowed"]) + D(b["interest"])), "f") for b in user_assets}
    return held, debt


class BinanceSync:
    """One sync of one configured Binance source of one entity."""

    def __init__(self, engine: Engine, entity_id: int, account: str, exchange: ccxt.binance,
                 options: BinanceOptions) -> None:
        self.engine, self.entity_id, self.account = engine, entity_id, account
        self.exchange, self.options = exchange, options
        self.stats = SyncStats(account)
        self.now = int(options.until.timestamp() * 1000) if options.until else _now_ms()
        self.current: list[BalanceSnapshotIn] = []  # this run's run-time balances
        self.isolated_symbols: list[str] = []
        self._managed_subs: set[str] = set()

    def call(self, what: str, method: Callable[..., Any], params: dict[str, Any]) -> Any:
        self.stats.calls += 1
        return call_exchange(self.exchange, what, method, params, policy=self.options.retry)

    # -- writing
    def _commit(self, stream: str, records: list[RawRecordIn], cursor_stream: str, cursor: Any,
                snapshots: list[BalanceSnapshotIn] | None = None) -> None:
        with self.engine.begin() as conn:
            run = start_run(conn, self.entity_id, SOURCE, stream, rows=len(records) + len(snapshots or []))
            inserted = write_raw_records(conn, self.entity_id, SOURCE, stream, records, run) if records else 0
            if snapshots:
                inserted += write_balance_snapshots(conn, self.entity_id, SOURCE, snapshots, run)
                self.stats.snapshots_inserted += inserted
            if cursor is not None:
                write_cursor(conn, self.entity_id, SOURCE, self.account, cursor_stream, cursor, run)
            finish_run(conn, run, seen=len(records) + len(snapshots or []), inserted=inserted)
        self.stats.add(stream, len(records) + len(snapshots or []), inserted)

    def _cursor(self, stream: str) -> Any:
        with self.engine.connect() as conn:
            return load_cursor(conn, self.entity_id, SOURCE, self.account, stream)

    def _window_start(self, cursor_stream: str, overlap_key: str) -> int:
        cursor = self._cursor(cursor_stream)
        since = int(self.options.since.timestamp() * 1000)
        if cursor is None:
            return since
        return max(since, int(cursor["until"]) - self.options.overlap_ms[overlap_key])

    # -- streams
    def sync_deposits(self) -> None:
        start = self._window_start("deposits", "deposits")
        for lo, hi in _windows(start, self.now, 90 * DAY_MS):
            rows = self._offset_pages("GET /sapi/v1/capital/deposit/hisrec", self.exchange.sapiGetCapitalDepositHisrec,
                                      {"startTime": lo, "endTime": hi})
            records = [RawRecordIn(self.account, f"{self.account}|{r['id']}", _utc(int(r["insertTime"])), r) for r in rows]
            self._commit("deposits", records, "deposits", {"until": hi})

    def sync_withdrawals(self) -> None:
        start = self._window_start("withdrawals", "withdrawals")
        for lo, hi in _windows(start, self.now, 90 * DAY_MS):
            rows = self._offset_pages("GET /sapi/v1/capital/withdraw/history",
                                      self.exchange.sapiGetCapitalWithdrawHistory, {"startTime": lo, "endTime": hi})
            records = [RawRecordIn(self.account, f"{self.account}|{r['id']}", _apply_time(r["applyTime"]), r) for r in rows]
            self._commit("withdrawals", records, "withdrawals", {"until": hi})

    def _offset_pages(self, what: str, method: Callable[..., Any], params: dict[str, Any]) -> list[dict]:
        rows: list[dict] = []
        limit = min(self.options.page_size, 1000)
        while True:
            page = self.call(what, method, {**params, "offset": len(rows), "limit": limit})
            rows.extend(page)
            if len(page) < limit:
                return rows

    def sync_transfers(self, isolated_symbols: Iterable[str] = (), *, fixed_types: bool = True) -> None:
        """Universal transfers of each type; isolated margin ones per pair (Binance requires the pair)."""
        kinds = [(kind, {}, f"transfers/{kind}") for kind in (TRANSFER_TYPES if fixed_types else ())] + [
            (kind, {side: symbol}, f"transfers/{kind}/{symbol}")
            for symbol in isolated_symbols for kind, side in ISOLATED_TRANSFER_TYPES.items()]
        for kind, extra, cursor_stream in kinds:
            start = self._window_start(cursor_stream, "transfers")
            for lo, hi in _windows(start, self.now, 30 * DAY_MS):
                rows: list[dict] = []
                current = 1
                while True:
                    page = self.call("GET /sapi/v1/asset/transfer", self.exchange.sapiGetAssetTransfer,
                                     {"type": kind, **extra, "startTime": lo, "endTime": hi, "current": current,
                                      "size": 100})
                    batch = page.get("rows") or []
                    rows.extend(batch)
                    if len(batch) < 100 or len(rows) >= int(page.get("total", 0)):
                        break
                    current += 1
                records = [RawRecordIn(self.account, f"{self.account}|{r['tranId']}", _utc(int(r["timestamp"])), r)
                           for r in rows]
                self._commit("transfers", records, cursor_stream, {"until": hi})

    def sync_futures_income(self, *, coin_margined: bool = False) -> None:
        """USD-M (/fapi/v1/income, stream futures_income) or COIN-M (/dapi/v1/income, coin_futures_income) income."""
        stream = "coin_futures_income" if coin_margined else "futures_income"
        what, method = (("GET /dapi/v1/income", self.exchange.dapiPrivateGetIncome) if coin_margined
                        else ("GET /fapi/v1/income", self.exchange.fapiPrivateGetIncome))
        start = self._window_start(stream, stream)
        limit = min(self.options.page_size, 1000)
        for lo, hi in _windows(start, self.now, 30 * DAY_MS):
            rows: list[dict] = []
            page_start = lo
            while True:
                page = self.call(what, method, {"startTime": page_start, "endTime": hi, "limit": limit})
                rows.extend(page)
                if len(page) < limit:
                    break
                last = int(page[-1]["time"])
                if last == page_start:
                    raise RuntimeError(f"binance {stream}: more than {limit} records at {last} ms; "
                                       "raise the page size")
                page_start = last  # inclusive: records sharing the last time are fetched again and deduplicated
            records = [RawRecordIn(self.account, f"{self.account}|{r['incomeType']}|{r['tranId']}|{r.get('tradeId', '')}",
                                   _utc(int(r["time"])), r) for r in rows]
            self._commit(stream, records, stream, {"until": hi})

    def sync_converts(self) -> None:
        start = self._window_start("converts", "converts")
        for lo, hi in _windows(start, self.now, 30 * DAY_MS):
            rows: list[dict] = []
            page_start = lo
            while True:
                body = self.call("GET /sapi/v1/convert/tradeFlow", self.exchange.sapiGetConvertTradeFlow,
                                 {"startTime": page_start, "endTime": hi, "limit": 1000})
                page = body.get("list") or []
                rows.extend(page)
                if not body.get("moreData") or not page:
                    break
                page_start = int(page[-1]["createTime"])  # inclusive; duplicates are no-ops
            records = [RawRecordIn(self.account, f"{self.account}|{r['orderId']}", _utc(int(r["createTime"])), r)
                       for r in rows]
            self._commit("converts", records, "converts", {"until": hi})

    def sync_dust(self) -> None:
        start = self._window_start("dust", "dust")
        for lo, hi in _windows(start, self.now, 90 * DAY_MS):
            body = self.call("GET /sapi/v1/asset/dribblet", self.exchange.sapiGetAssetDribblet,
                             {"startTime": lo, "endTime": hi})
            if int(body.get("total") or 0) > 100:
                raise RuntimeError("binance dust: more than 100 conversions in one window; the API returns only 100")
            records = [RawRecordIn(self.account, f"{self.account}|{d['transId']}|{detail['transId']}",
                                   _utc(int(detail["operateTime"])), detail)
                       for d in body.get("userAssetDribblets") or [] for detail in d.get("userAssetDribbletDetails") or []]
            self._commit("dust", records, "dust", {"until": hi})

    def sync_margin_interest(self, isolated_symbol: str = "") -> None:
        """Cross margin interest, or one isolated pair's (``isolatedSymbol``; the rows name the pair)."""
        cursor_stream = f"margin_interest/isolated/{isolated_symbol}" if isolated_symbol else "margin_interest"
        extra = {"isolatedSymbol": isolated_symbol} if isolated_symbol else {}
        start = self._window_start(cursor_stream, "margin_interest")
        for lo, hi in _windows(start, self.now, 30 * DAY_MS):
            rows: list[dict] = []
            current = 1
            while True:
                body = self.call("GET /sapi/v1/margin/interestHistory", self.exchange.sapiGetMarginInterestHistory,
                                 {**extra, "startTime": lo, "endTime": hi, "current": current, "size": 100})
                batch = body.get("rows") or []
                rows.extend(batch)
                if len(batch) < 100 or len(rows) >= int(body.get("total", 0)):
                    break
                current += 1
            records = [RawRecordIn(self.account, f"{self.account}|{r['txId']}", _utc(int(r["interestAccuredTime"])), r)
                       for r in rows]
            self._commit("margin_interest", records, cursor_stream, {"until": hi})

    def sync_snapshots(self) -> None:
        for kind, account_type in SNAPSHOT_TYPES.items():
            cursor_stream = f"snapshots/{kind}"
            start = self._window_start(cursor_stream, "snapshots")
            for lo, hi in _windows(start, self.now, 30 * DAY_MS):
                body = self.call("GET /sapi/v1/accountSnapshot", self.exchange.sapiGetAccountSnapshot,
                                 {"type": kind, "startTime": lo, "endTime": hi, "limit": 30})
                snapshots = [s for vo in body.get("snapshotVos") or [] for s in self._snapshots_in(kind, account_type, vo)]
                self._commit("snapshots", [], cursor_stream, {"until": hi}, snapshots)

    def _snapshots_in(self, kind: str, account_type: str, vo: dict, sub_account: str = "") -> list[BalanceSnapshotIn]:
        data, taken = vo.get("data") or {}, _utc(int(vo["updateTime"]))
        if kind == "MARGIN":
            held, debt = _margin_balances(data.get("userAssets", []))
            return [BalanceSnapshotIn(self.account, "margin", "", taken, held, vo),
                    BalanceSnapshotIn(self.account, "margin_loan", "", taken, debt, vo)]
        if kind == "SPOT":  # Simple Earn positions (LDBTC, ...) are the underlying held in earn
            balances, earn = split_earn_balances(
                {b["asset"]: _text_sum(b["free"], b["locked"]) for b in data.get("balances", [])})
            return [BalanceSnapshotIn(self.account, account_type, sub_account, taken, balances, vo)] + (
                [BalanceSnapshotIn(self.account, EARN_ACCOUNT_TYPE, sub_account, taken, earn, vo)] if earn else [])
        else:
            balances = {b["asset"]: _text_sum(b["walletBalance"]) for b in data.get("assets", [])}
        return [BalanceSnapshotIn(self.account, account_type, sub_account, taken, balances, vo)]

    def sync_current_balances(self) -> set[str]:
        """Balances at run time, one snapshot per account type; returns the spot assets held."""
        taken = datetime.now(timezone.utc)
        spot = self.call("GET /api/v3/account", self.exchange.privateGetAccount, {"omitZeroBalances": "true"})
        margin = self.call("GET /sapi/v1/margin/account", self.exchange.sapiGetMarginAccount, {})
        futures = self.call("GET /fapi/v2/balance", self.exchange.fapiPrivateV2GetBalance, {})
        funding = self.call("POST /sapi/v1/asset/get-funding-asset", self.exchange.sapiPostAssetGetFundingAsset, {})
        held, debt = _margin_balances(margin.get("userAssets", []))
        margin_payload = {"endpoint": "/sapi/v1/margin/account", "response": margin}
        spot_held, earn_held = split_earn_balances(
            {b["asset"]: _text_sum(b["free"], b["locked"]) for b in spot.get("balances", [])})
        spot_payload = {"endpoint": "/api/v3/account", "response": spot}
        snapshots = [
            BalanceSnapshotIn(self.account, "spot", "", taken, spot_held, spot_payload),
            *([BalanceSnapshotIn(self.account, EARN_ACCOUNT_TYPE, "", taken, earn_held, spot_payload)] if earn_held else []),
            BalanceSnapshotIn(self.account, "margin", "", taken, held, margin_payload),
            BalanceSnapshotIn(self.account, "margin_loan", "", taken, debt, margin_payload),
            BalanceSnapshotIn(self.account, "futures", "", taken,
                              {b["asset"]: _text_sum(b["balance"]) for b in futures},
                              {"endpoint": "/fapi/v2/balance", "response": futures}),
            BalanceSnapshotIn(self.account, "funding", "", taken,
                              {b["asset"]: _text_sum(b["free"], b["locked"], b["freeze"]) for b in funding},
                              {"endpoint": "/sapi/v1/asset/get-funding-asset", "response": funding}),
        ]
        snapshots += self._product_balances(taken)
        self._commit("balances", [], "balances", None, snapshots)
        self.current = snapshots
        return set(snapshots[0].balances) | set(held)

    def _product_balances(self, taken: datetime) -> list[BalanceSnapshotIn]:
        """Run-time balances of the accounts Binance gives no daily snapshot of, besides funding: Simple Earn locked
        positions, isolated margin (assets and debt, every pair summed) and COIN-M futures wallets."""
        locked = self._page_rows("GET /sapi/v1/simple-earn/locked/position", self.exchange.sapiGetSimpleEarnLockedPosition,
                                 {}, rows_key="rows", total_key="total", page_key="current", size_key="size", size=100)
        earn_locked: dict[str, str] = {}
        for row in locked:
            earn_locked[row["asset"]] = _text_sum(earn_locked.get(row["asset"], "0"), row["amount"])
        isolated = self.isolated_margin_account()
        self.isolated_symbols = sorted({a["symbol"] for a in isolated.get("assets") or []}
                                       | self.isolated_pairs_read_before() | set(self.options.isolated_pairs))
        held: dict[str, str] = {}
        debt: dict[str, str] = {}
        for pair in isolated.get("assets") or []:
            for side in (pair["baseAsset"], pair["quoteAsset"]):
                held[side["asset"]] = _text_sum(held.get(side["asset"], "0"), side["free"], side["locked"])
                with exact_context():
                    owed = D(debt.get(side["asset"], "0")) - D(side["borrowed"]) - D(side["interest"])
                debt[side["asset"]] = format(owed, "f")
        coin = self.call("GET /dapi/v1/balance", self.exchange.dapiPrivateGetBalance, {})
        return [
            BalanceSnapshotIn(self.account, EARN_LOCKED_ACCOUNT_TYPE, "", taken, earn_locked,
                              {"endpoint": "/sapi/v1/simple-earn/locked/position", "response": {"rows": locked}}),
            BalanceSnapshotIn(self.account, ISOLATED_MARGIN, "", taken, held,
                              {"endpoint": "/sapi/v1/margin/isolated/account", "response": isolated}),
            BalanceSnapshotIn(self.account, ISOLATED_MARGIN_LOAN, "", taken, debt,
                              {"endpoint": "/sapi/v1/margin/isolated/account", "response": isolated}),
            BalanceSnapshotIn(self.account, "coin_futures", "", taken, {b["asset"]: _text_sum(b["balance"]) for b in coin},
                              {"endpoint": "/dapi/v1/balance", "response": coin}),
        ]

    def isolated_pairs_read_before(self) -> set[str]:
        """The isolated margin pairs an earlier sync read (each has an interest cursor). Binance's isolated account
        (GET /sapi/v1/margin/isolated/account) lists the pairs of the account now; a pair closed or disabled since
        (DELETE /sapi/v1/margin/isolated/account) may drop out of it, yet its last movements (the repayment, the
        transfer out, the last trades) are still to be read, and every per-pair endpoint needs the pair named."""
        with self.engine.connect() as conn:
            streams = conn.execute(sa.text(
                """SELECT stream FROM ingestion_cursors WHERE entity_id = :e AND source = :s AND account = :a
                   AND starts_with(stream, 'margin_interest/isolated/')"""),
                dict(e=self.entity_id, s=SOURCE, a=self.account)).scalars().all()
        return {stream.rsplit("/", 1)[1] for stream in streams if stream.rsplit("/", 1)[1]}

    def known_assets(self, conn: Connection) -> set[str]:
        """Every asset this account has shown in staged snapshots, deposits or withdrawals."""
        params = dict(e=self.entity_id, s=SOURCE, a=self.account)
        snap = conn.execute(sa.text(
            "SELECT DISTINCT jsonb_object_keys(balances) FROM raw_balance_snapshots"
            " WHERE entity_id = :e AND source = :s AND account = :a"), params).scalars().all()
        coins = conn.execute(sa.text(
            """SELECT DISTINCT a FROM raw_records r CROSS JOIN LATERAL (VALUES (r.payload->>'coin'),
                   (r.payload->>'fromAsset'), (r.payload->>'toAsset')) AS v(a)
               WHERE r.entity_id = :e AND r.source = :s AND r.account = :a
                 AND r.stream IN ('deposits', 'withdrawals', 'converts', 'dust')"""), params).scalars().all()
        return {a.upper() for a in [*snap, *coins] if a}

    def trade_symbols(self, assets: set[str], *, margin: bool = False) -> list[tuple[str, str]]:
        """(market id, BASE/QUOTE) of every spot (or margin-enabled) market whose two assets the account has held."""
        markets = call_exchange(self.exchange, "load_markets", self.exchange.load_markets, policy=self.options.retry)
        found = {(m["id"], f"{m['base']}/{m['quote']}") for m in markets.values()
                 if m.get("spot") and (m.get("margin") or not margin) and m["base"] in assets and m["quote"] in assets}
        return sorted(found)

    def sync_trades(self, assets: set[str], *, margin: bool = False, isolated_symbols: Iterable[str] = ()) -> None:
        """Spot trades (/api/v3/myTrades), cross-margin trades (/sapi/v1/margin/myTrades) or, with
        ``isolated_symbols``, those isolated pairs' trades (``isIsolated=TRUE``), per symbol by id."""
        limit = min(self.options.page_size, 1000)
        isolated = set(isolated_symbols)
        stream = "margin_trades" if margin or isolated else "trades"
        what, method = (("GET /sapi/v1/margin/myTrades", self.exchange.sapiGetMarginMyTrades) if stream == "margin_trades"
                        else ("GET /api/v3/myTrades", self.exchange.privateGetMyTrades))
        symbols = self._markets_named(isolated) if isolated else self.trade_symbols(assets, margin=margin)
        extra = {"isIsolated": "TRUE"} if isolated else {}
        for market_id, pair in symbols:
            if stream == "trades":
                self.stats.symbols.append(pair)
            cursor_stream = f"{stream}/isolated/{market_id}" if isolated else f"{stream}/{market_id}"
            cursor = self._cursor(cursor_stream)
            from_id = int(cursor["from_id"]) if cursor else 0
            while True:
                page = self.call(what, method, {"symbol": market_id, **extra, "fromId": from_id, "limit": limit})
                records = [RawRecordIn(self.account, f"{self.account}|{pair}|{t['id']}", _utc(int(t["time"])), t)
                           for t in page]
                next_from = max((int(t["id"]) for t in page), default=from_id)
                self._commit(stream, records, cursor_stream, {"from_id": next_from})
                if len(page) < limit or next_from == from_id:
                    break
                from_id = next_from  # the last id is read again: one record of overlap, deduplicated

    def _markets_named(self, ids: set[str]) -> list[tuple[str, str]]:
        markets = call_exchange(self.exchange, "load_markets", self.exchange.load_markets, policy=self.options.retry)
        return sorted({(m["id"], f"{m['base']}/{m['quote']}") for m in markets.values() if m.get("spot") and m["id"] in ids})

    # -- Simple Earn, ETH staking, distributions, fiat, isolated margin
    def sync_earn(self) -> None:
        """Simple Earn flexible and locked subscriptions, redemptions and rewards, and ETH staking (ETH for WBETH and
        back): 30-day windows (Binance allows 3 months), ``current``/``size`` pages of 100."""
        for stream, (endpoint, method_name, id_fields) in EARN_STREAMS.items():
            self._sync_paged_history(stream, stream, endpoint, getattr(self.exchange, method_name), {}, id_fields)
        for kind in FLEXIBLE_REWARD_TYPES:  # ``type`` is mandatory; each type its own cursor
            self._sync_paged_history("earn_flexible_rewards", f"earn_flexible_rewards/{kind}",
                                     "/sapi/v1/simple-earn/flexible/history/rewardsRecord",
                                     self.exchange.sapiGetSimpleEarnFlexibleHistoryRewardsRecord, {"type": kind},
                                     ("type", "projectId", "asset", "time"))

    def _sync_paged_history(self, stream: str, cursor_stream: str, endpoint: str, method: Callable[..., Any],
                            extra: dict[str, Any], id_fields: tuple[str, ...]) -> None:
        start = self._window_start(cursor_stream, "earn")
        for lo, hi in _windows(start, self.now, 30 * DAY_MS):
            rows = self._page_rows(f"GET {endpoint}", method, {**extra, "startTime": lo, "endTime": hi},
                                   rows_key="rows", total_key="total", page_key="current", size_key="size", size=100)
            records = [RawRecordIn(self.account, "|".join([self.account, *(str(r.get(f, "")) for f in id_fields)]),
                                   _utc(int(r["time"])), r) for r in rows]
            self._commit(stream, records, cursor_stream, {"until": hi})

    def sync_dividends(self) -> None:
        """Asset distributions (/sapi/v1/asset/assetDividend: Launchpool rewards, airdrops, ...). The endpoint has no
        pages, only ``limit`` (500) and a ``total``: a window holding more is split in two until each fits."""
        start = self._window_start("dividends", "dividends")
        for lo, hi in _windows(start, self.now, 30 * DAY_MS):
            rows = self._dividend_rows(lo, hi)
            records = [RawRecordIn(self.account, f"{self.account}|{r['id']}", _utc(int(r["divTime"])), r) for r in rows]
            self._commit("dividends", records, "dividends", {"until": hi})

    def _dividend_rows(self, lo: int, hi: int) -> list[dict]:
        body = self.call("GET /sapi/v1/asset/assetDividend", self.exchange.sapiGetAssetAssetDividend,
                         {"startTime": lo, "endTime": hi, "limit": 500})
        rows = body.get("rows") or []
        if int(body.get("total") or 0) <= len(rows):
            return rows
        if hi - lo < 1000:
            raise RuntimeError(f"binance dividends: more than 500 distributions within one second at {lo} ms")
        middle = (lo + hi) // 2
        return self._dividend_rows(lo, middle) + self._dividend_rows(middle + 1, hi)

    def sync_fiat(self) -> None:
        """Fiat deposits and withdrawals (/sapi/v1/fiat/orders) and Buy Crypto payments (/sapi/v1/fiat/payments),
        each ``transactionType``: ``beginTime``/``endTime`` windows of 30 days, ``page``/``rows`` pages of 500."""
        for (kind, transaction_type), stream in FIAT_STREAMS.items():
            cursor_stream = f"fiat_{kind}/{transaction_type}"
            method = self.exchange.sapiGetFiatOrders if kind == "orders" else self.exchange.sapiGetFiatPayments
            side = {"0": "buy", "1": "sell"}[transaction_type] if kind == "payments" else None
            start = self._window_start(cursor_stream, "fiat")
            for lo, hi in _windows(start, self.now, 30 * DAY_MS):
                rows = self._page_rows(f"GET /sapi/v1/fiat/{kind}", method,
                                       {"transactionType": transaction_type, "beginTime": lo, "endTime": hi},
                                       rows_key="data", total_key="total", page_key="page", size_key="rows", size=500)
                records = [RawRecordIn(self.account, "|".join([self.account, *([side] if side else []), r["orderNo"]]),
                                       _utc(int(r["createTime"])), r) for r in rows]
                self._commit(stream, records, cursor_stream, {"until": hi})

    def isolated_margin_account(self) -> dict:
        return self.call("GET /sapi/v1/margin/isolated/account", self.exchange.sapiGetMarginIsolatedAccount, {})

    def sync_isolated_margin(self, symbols: list[str]) -> None:
        """Each isolated pair's transfers in and out, loans, repayments, interest and trades."""
        self.sync_transfers(symbols, fixed_types=False)
        for symbol in symbols:
            self.sync_margin_loans(symbol)
            self.sync_margin_interest(symbol)

    def _page_rows(self, what: str, method: Callable[..., Any], params: dict[str, Any], *, rows_key: str,
                   total_key: str, page_key: str, size_key: str, size: int) -> list[dict]:
        """Every row of a window of an endpoint paged by page number (``current``/``page``) and a total count."""
        rows: list[dict] = []
        page_number = 1
        while True:
            body = self.call(what, method, {**params, page_key: page_number, size_key: size})
            batch = body.get(rows_key) or []
            rows.extend(batch)
            if len(batch) < size or len(rows) >= int(body.get(total_key) or 0):
                return rows
            page_number += 1

    def sync_margin_loans(self, isolated_symbol: str = "") -> None:
        """Cross-margin (or one isolated pair's) loans and repayments (/sapi/v1/margin/borrow-repay; 7 days at most
        per call without asset)."""
        extra = {"isolatedSymbol": isolated_symbol} if isolated_symbol else {}
        for kind, stream in LOAN_STREAMS.items():
            cursor_stream = f"{stream}/isolated/{isolated_symbol}" if isolated_symbol else stream
            start = self._window_start(cursor_stream, "margin_loans")
            for lo, hi in _windows(start, self.now, 7 * DAY_MS):
                rows = self._page_rows("GET /sapi/v1/margin/borrow-repay", self.exchange.sapiGetMarginBorrowRepay,
                                       {"type": kind, **extra, "startTime": lo, "endTime": hi}, rows_key="rows",
                                       total_key="total", page_key="current", size_key="size", size=100)
                records = [RawRecordIn(self.account, f"{self.account}|{r['txId']}", _utc(int(r["timestamp"])), r)
                           for r in rows]
                self._commit(stream, records, cursor_stream, {"until": hi})

    def sync_sub_accounts(self) -> list[str]:
        """A master account's sub-accounts (staged, no legs) and their universal transfers; returns their emails."""
        subs: list[dict] = []
        page = 1
        while True:
            try:
                body = self.call("GET /sapi/v1/sub-account/list", self.exchange.sapiGetSubAccountList,
                                 {"page": page, "limit": 200})
            except SourceError as error:
                if type(error) is not SourceError:  # down, banned or refused: not an answer about sub-accounts
                    raise
                self.stats.notes.append(f"no sub-accounts read (not a master account?): {error}")
                return []
            batch = body.get("subAccounts") or []
            subs.extend(batch)
            if len(batch) < 200:
                break
            page += 1
        emails = sorted({s["email"] for s in subs})
        self._commit("sub_accounts", [RawRecordIn(self.account, f"{self.account}|{s['email']}",
                                                   _utc(int(s["createTime"])), s) for s in subs], "sub_accounts", None)
        for email in emails:
            cursor_stream = f"sub_transfers/{email}"
            start = self._window_start(cursor_stream, "sub_transfers")
            for lo, hi in _windows(start, self.now, 7 * DAY_MS):
                rows: list[dict] = []
                for side in ("fromEmail", "toEmail"):  # one side per call, as Binance requires
                    rows += self._page_rows("GET /sapi/v1/sub-account/universalTransfer",
                                            self.exchange.sapiGetSubAccountUniversalTransfer,
                                            {side: email, "startTime": lo, "endTime": hi}, rows_key="result",
                                            total_key="totalCount", page_key="page", size_key="limit", size=500)
                records = {r["tranId"]: RawRecordIn(self.account, sub_transfer_id(self.account, r, emails),
                                                    _utc(int(r["createTimeStamp"])), r) for r in rows}
                self._commit("sub_transfers", list(records.values()), cursor_stream, {"until": hi})
        self._managed_subs = {s["email"] for s in subs if s.get("isManagedSubAccount") is True}
        for email in sorted(self._managed_subs):
            self.sync_managed_sub_snapshots(email)
        return emails

    def sync_managed_sub_snapshots(self, email: str) -> None:
        """A managed sub-account's daily SPOT snapshot (/sapi/v1/managed-subaccount/accountSnapshot), like the
        master's: the reported position of that sub-account's spot account each day."""
        cursor_stream = f"sub_snapshots/{email}"
        start = self._window_start(cursor_stream, "snapshots")
        for lo, hi in _windows(start, self.now, 30 * DAY_MS):
            body = self.call("GET /sapi/v1/managed-subaccount/accountSnapshot",
                             self.exchange.sapiGetManagedSubaccountAccountSnapshot,
                             {"email": email, "type": "SPOT", "startTime": lo, "endTime": hi, "limit": 30})
            snapshots = [s for vo in body.get("snapshotVos") or [] for s in self._snapshots_in("SPOT", "spot", vo, email)]
            self._commit("snapshots", [], cursor_stream, {"until": hi}, snapshots)

    def sync_sub_account_balances(self, emails: list[str]) -> None:
        """Each sub-account's balances at run time (/sapi/v4/sub-account/assets): spot of that sub-account."""
        taken = datetime.now(timezone.utc)
        snapshots = []
        for email in emails:
            body = self.call("GET /sapi/v4/sub-account/assets", self.exchange.sapiV4GetSubAccountAssets, {"email": email})
            snapshots.append(BalanceSnapshotIn(
                self.account, "spot", email, taken,
                {b["asset"]: _text_sum(b["free"], b["locked"]) for b in body.get("balances", [])},
                {"endpoint": "/sapi/v4/sub-account/assets", "email": email, "response": body}))
        if snapshots:
            self._commit("balances", [], "balances", None, snapshots)
        managed = self._managed_subs
        self.current += [snap for snap in snapshots if snap.sub_account not in managed]

    # -- daily balances where Binance has no daily snapshot
    def sync_rolled_back_balances(self) -> None:
        """The daily balances of the funding wallet, Simple Earn locked, isolated margin, COIN-M futures and each
        non-managed sub-account's spot: the run-time balance minus every staged movement after each day's cutoff
        (the legs the Binance mappers make of the staged records). Binance gives no daily snapshot of those
        (GET /sapi/v1/accountSnapshot covers SPOT, MARGIN and FUTURES only; managed sub-accounts have their own).
        A balance rolled back through the same legs the completeness check sums partly confirms itself: it proves
        the current balance and the legs agree in total, not that no movement is missing on a given day (the payload
        says so: ``"derived": "rolled back"``). Written from the day after the last one written (cursor
        ``rolled_back``: that day and the last staged record it saw) through the last complete day before the sync's
        end; and when a record staged since (a late movement, or a new version of one) falls on a day already
        written, every written day before it again, as a new snapshot version (the latest wins): a movement at time
        t changes the balance rolled back to every cutoff before t, and leaving those days as they were would show
        the movement as a break on its day."""
        rolled = [snap for snap in self.current if snap.account_type in ROLLED_BACK_TYPES or snap.sub_account]
        if not rolled:
            return
        with self.engine.connect() as conn:
            entity = find_entity(conn, self.entity_id)
            cursor = load_cursor(conn, self.entity_id, SOURCE, self.account, "rolled_back")
            staged = conn.execute(sa.text(
                """SELECT DISTINCT ON (stream, source_raw_id) id, stream, source_raw_id, occurred_at, payload
                   FROM raw_records WHERE entity_id = :e AND source = :s AND account = :a
                   ORDER BY stream, source_raw_id, id DESC"""), dict(e=self.entity_id, s=SOURCE, a=self.account)).all()
            tz = entity.tz if entity else timezone.utc
            late, seen = load_late_movement(conn, self.entity_id, SOURCE, self.account, list(STREAM_MAPPERS), cursor, tz)
        end = min(_utc(self.now), datetime.now(timezone.utc))
        last_day = close_date_of(end, tz)
        if cutoff_of(last_day, tz) > end:
            last_day -= timedelta(days=1)
        moves: dict[tuple[str, str], list[tuple[datetime, str, Any]]] = {}  # (type, sub-account) -> (time, asset, qty)
        for row in staged:
            legs = try_map_record(StagedRecord(row.id, SOURCE, row.stream, self.account, row.source_raw_id,
                                               row.occurred_at, row.payload))
            if isinstance(legs, list):  # a quarantined record moves nothing here either (its day is partial)
                for leg in legs:
                    moves.setdefault((leg.account_type or "", leg.sub_account), []).append(
                        (row.occurred_at, leg.asset, leg.quantity))
        history_start = min((close_date_of(when, tz) for group in moves.values() for when, _, _ in group),
                            default=last_day + timedelta(days=1))
        days, moved = rolled_back_days(cursor, history_start, last_day, late, seen, tz)
        snapshots = []
        for snap in rolled:
            group = sorted(moves.get((snap.account_type, snap.sub_account), []), key=lambda m: m[0])
            if not group and not any(D(v) for v in snap.balances.values()):
                continue  # nothing held and nothing ever moved: no account to report
            later: dict[str, Any] = {}
            for _, asset, quantity in group:  # every movement after the first cutoff, then less as the cutoff moves
                later[asset] = later.get(asset, ZERO) + quantity
            position = 0
            for day in days:
                cutoff = cutoff_of(day, tz)
                while position < len(group) and group[position][0] <= cutoff:
                    _, asset, quantity = group[position]
                    later[asset] -= quantity
                    position += 1
                with exact_context():
                    balances = {asset: format(D(snap.balances.get(asset, "0")) - later.get(asset, ZERO), "f")
                                for asset in sorted(set(snap.balances) | set(later))}
                snapshots.append(BalanceSnapshotIn(self.account, snap.account_type, snap.sub_account, cutoff, balances, {
                    "derived": "rolled back from the run-time balance through the staged movements after the cutoff",
                    "balances_then": snap.balances, "movements_after_cutoff": len(group) - position}))
        if snapshots or moved != cursor:
            self._commit("balances", [], "rolled_back", moved, snapshots)

    @staticmethod
    def window_streams() -> list[str]:
        """The cursors ``{"until": ms}`` of the fixed time-windowed streams (what a sync reads through)."""
        return ["deposits", "withdrawals", "futures_income", "coin_futures_income", "converts", "dust",
                "margin_interest", "dividends", *LOAN_STREAMS.values(), *(f"transfers/{k}" for k in TRANSFER_TYPES),
                *(f"snapshots/{k}" for k in SNAPSHOT_TYPES), *EARN_STREAMS,
                *(f"earn_flexible_rewards/{k}" for k in FLEXIBLE_REWARD_TYPES),
                *(f"fiat_{kind}/{t}" for kind, t in FIAT_STREAMS)]

    def run(self) -> SyncStats:
        check_read_only(self.exchange, self.options.retry)
        self.sync_snapshots()
        self.sync_deposits()
        self.sync_withdrawals()
        held = self.sync_current_balances()
        self.sync_transfers()
        self.sync_futures_income()
        self.sync_futures_income(coin_margined=True)
        self.sync_converts()
        self.sync_dust()
        self.sync_margin_interest()
        self.sync_margin_loans()
        self.sync_earn()
        self.sync_dividends()
        self.sync_fiat()
        self.sync_isolated_margin(self.isolated_symbols)
        emails = self.sync_sub_accounts()
        self.sync_sub_account_balances(emails)
        with self.engine.connect() as conn:
            assets = self.known_assets(conn) | held
        self.sync_trades(assets)
        self.sync_trades(assets, margin=True)
        if self.isolated_symbols:
            self.sync_trades(assets, isolated_symbols=self.isolated_symbols)
        self.sync_rolled_back_balances()
        return self.stats


def sub_transfer_id(account: str, record: dict, sub_emails: list[str]) -> str:
    """``account|tranId|FROM>TO`` with each side ``master`` or ``sub``: the mapper needs to know which email is the
    master's (Binance's record does not say); the exchange's id (tranId) still identifies the record."""
    roles = ["sub" if record[k] in sub_emails else "master" for k in ("fromEmail", "toEmail")]
    return f"{account}|{record['tranId']}|{roles[0]}>{roles[1]}"


def sync_binance(engine: Engine, entity_id: int, account: str, credentials: ApiCredentials,
                 options: BinanceOptions = BinanceOptions()) -> SyncStats:
    """Stage everything new of one Binance account (see the module docstring); idempotent and resumable."""
    exchange = make_client(credentials, options)
    return BinanceSync(engine, entity_id, account, exchange, options).run()


def _make_sync(engine: Engine, entity_id: int, account: str, credentials: dict[str, str],
               config: dict[str, Any]) -> BinanceSync:
    exchange, options = binance_client.client_of(credentials, config)
    return BinanceSync(engine, entity_id, account, exchange, options)


CONNECTOR = Connector(SOURCE, binance_client.read_credentials, binance_client.check, binance_client.inspect, _make_sync,
                      window_streams=BinanceSync.window_streams, bounded=True)
