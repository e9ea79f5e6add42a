"""Binance's other products through the real ccxt.binance against the local Binance server: Simple Earn (flexible and
locked subscriptions, redemptions, rewards), ETH staking, Launchpool and airdrop distributions, fiat deposits and
withdrawals, "Buy Crypto", COIN-M futures income and isolated margin; and the daily balances of the accounts Binance
has no daily snapshot of (funding, earn locked, isolated margin, COIN-M, non-managed sub-accounts), rolled back.

Where each response shape and field type comes from (the local server serves these shapes and refuses to serve a
record of another field type; the generated history, samples/servers/binance_history.py, writes them):
- Simple Earn history, developers.binance.com "Simple Earn / History": Get Flexible Subscription Record
  (``GET /sapi/v1/simple-earn/flexible/history/subscriptionRecord``: ``rows`` of amount, asset, time, purchaseId,
  productId, type, sourceAccount SPOT|FUNDING|SPOTANDFUNDING, amtFromSpot, amtFromFunding, status
  PURCHASING|SUCCESS|FAILED, and ``total``), Get Flexible Redemption Record (destAccount SPOT|FUNDING, status
  CREATED|PAID|FAILED), Get Flexible Rewards History (``type`` mandatory: BONUS, REALTIME, REWARDS, ALL; rows of
  asset, rewards, projectId, type, time), Get Locked Subscription Record, Get Locked Redemption Record (type MATURE,
  NEW_TRANSFERRED, AHEAD; originalAmount, lossAmount, deliverDate as a string, isComplete), Get Locked Rewards History
  (positionId as a string, as in the example of the On-chain Yields twin "Get On-chain Yields Locked Rewards
  History"); 3 months at most between startTime and endTime, ``current``/``size`` (max 100) pages.
- ETH staking, developers.binance.com "Staking / ETH Staking / History": Get ETH staking history (time, asset ETH,
  amount, distributeAsset WBETH, distributeAmount, conversionRatio, status PENDING|SUCCESS|FAILED) and the
  redemption history (WBETH back to ETH, with arrivalTime).
- Asset distributions, "Wallet / Asset / Asset Dividend Record" (``GET /sapi/v1/asset/assetDividend``: rows of id,
  amount, asset, divTime, enInfo, tranId, direction 1|-1; ``limit`` at most 500, 180 days at most; no pages).
- Fiat, docs.rs openxapi-binance ``GetFiatOrdersV1Resp`` / ``GetFiatPaymentsV1RespDataInner`` (generated from
  Binance's OpenAPI spec) and binanceRapi's models of the same: ``transactionType`` 0|1 mandatory, ``beginTime`` /
  ``endTime``, ``page``/``rows`` (max 500); ``{"code": "000000", "message": "success", "data": [...], "total",
  "success": true}``; orders: orderNo, fiatCurrency, indicatedAmount, amount, totalFee, method, status (Processing,
  Failed, Successful, Finished, Refunding, Refunded, Refund Failed, Order Partial credit Stopped), createTime,
  updateTime; payments: orderNo, sourceAmount, fiatCurrency, obtainAmount, cryptoCurrency, totalFee, price, status
  (Processing, Completed, Failed, Refunded), paymentMethod, createTime, updateTime.
- COIN-M futures income ``GET /dapi/v1/income``: the USD-M income record's fields (symbol, incomeType, income,
  asset, info, time, tranId, tradeId) in the margin coin.
- Isolated margin: ``GET /sapi/v1/margin/isolated/account`` (assets of baseAsset/quoteAsset with borrowed, free,
  interest, locked, netAsset strings), ``isolatedSymbol`` on borrow-repay and interest history rows, ``isIsolated``
  on margin trades, ``toSymbol``/``fromSymbol`` mandatory on MARGIN_ISOLATEDMARGIN / ISOLATEDMARGIN_MARGIN transfers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.binance.client import ApiCredentials, BinanceOptions, make_client
from ingestion.binance.sync import sync_binance
from ingestion.ccxt.client import RetryPolicy
from orchestration.cli import app
from orchestration.close_runner import close_days
from samples.demo_binance import write_demo_prices
from samples.servers.binance_history import generate_history
from samples.servers.binance_server import BinanceServer, ServerState
from reconciliation.completeness import compute_differences
from transforms.canonical import build_canonical
from warehouse.calendar import cutoff_of
from warehouse.entities import get_or_create_entity, resolve_entity
from warehouse.reports import list_breaks

FIRST, LAST = date(2026, 1, 1), date(2026, 1, 12)
KEY, SECRET = "products-key", "products-secret-0123456789"
MASTER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
FAST_RETRY = RetryPolicy(attempts=8, initial_seconds=0.01, max_seconds=0.05)
UNTIL = datetime(2026, 1, 13, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def history():
    return generate_history(FIRST, LAST, products=True)


@pytest.fixture()
def server(history):
    state = ServerState(history)
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    yield srv
    srv.stop()


def options(server: BinanceServer) -> BinanceOptions:
    return BinanceOptions(api_url=server.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc), until=UNTIL,
                          rate_limit_ms=0.05, timeout_ms=2000, retry=FAST_RETRY)


def legs_by_stream(conn: sa.Connection) -> dict[str, set[tuple[str, str, str]]]:
    rows = conn.execute(sa.text(
        """SELECT r.stream, a.account_type, l.kind, s.symbol FROM transactions l JOIN raw_records r ON r.id = l.raw_record_id
           JOIN accounts a ON a.id = l.account_id JOIN assets s ON s.id = l.asset_id""")).all()
    found: dict[str, set[tuple[str, str, str]]] = {}
    for r in rows:
        found.setdefault(r.stream, set()).add((r.account_type, r.kind, r.symbol))
    return found


def test_every_product_stream_is_staged_exactly_and_booked_with_its_kind(engine, server, history) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "products")
    sync_binance(engine, entity.id, "main", ApiCredentials(KEY, SECRET), options(server))
    with engine.begin() as conn:
        counts = dict(conn.execute(sa.text("SELECT stream, count(*) FROM raw_records GROUP BY 1")).all())
        build_canonical(conn, entity, FIRST, LAST)
        legs = legs_by_stream(conn)
        events = dict(conn.execute(sa.text(
            """SELECT r.stream || ':' || e.event_type, count(*) FROM transactions l
               JOIN raw_records r ON r.id = l.raw_record_id JOIN events e ON e.group_id = l.group_id
               WHERE r.stream LIKE 'earn%' GROUP BY 1""")).all())
        unbooked = dict(conn.execute(sa.text(
            """SELECT r.stream || ':' || coalesce(r.payload->>'status', r.payload->>'enInfo'), count(*) FROM raw_records r
               WHERE NOT EXISTS (SELECT 1 FROM transactions l WHERE l.raw_record_id = r.id)
                 AND r.stream IN ('earn_flexible_subscriptions', 'fiat_deposits', 'fiat_payments', 'dividends')
               GROUP BY 1""")).all())
        quarantined = conn.execute(sa.text("SELECT count(*) FROM quarantined_records")).scalar()
    for stream, rows in history.earn.items():
        assert counts[stream] == len(rows), stream
    assert counts["eth_staking"] == len(history.eth_staking["staking"])
    assert counts["eth_staking_redemptions"] == len(history.eth_staking["redemption"])
    assert counts["dividends"] == len(history.dividends)
    assert counts["fiat_deposits"] == len(history.fiat_orders["0"])
    assert counts["fiat_withdrawals"] == len(history.fiat_orders["1"])
    assert counts["fiat_payments"] == len(history.fiat_payments["0"])
    assert counts["coin_futures_income"] == len(history.coin_income)
    isolated_loans = [r for r in history.loans["BORROW"] if r.get("isolatedSymbol")]
    assert isolated_loans and counts["margin_loans"] == len(history.loans["BORROW"])
    assert quarantined == 0
    # subscriptions and redemptions move between account types; rewards are income; each leg its explicit kind
    assert legs["earn_flexible_subscriptions"] == {("spot", "transfer_out", "USDT"), ("funding", "transfer_out", "USDT"),
                                                   ("earn", "transfer_in", "USDT")}
    assert legs["earn_flexible_redemptions"] >= {("earn", "transfer_out", "USDT")}
    assert legs["earn_flexible_rewards"] == {("earn", "staking_reward", "USDT")}
    assert legs["earn_locked_subscriptions"] == {("spot", "transfer_out", "BNB"), ("earn_locked", "transfer_in", "BNB")}
    assert legs["earn_locked_rewards"] == {("spot", "staking_reward", "BNB")}
    assert {("earn_locked", "transfer_out", "BNB"), ("spot", "transfer_in", "BNB")} <= legs["earn_locked_redemptions"]
    assert legs["eth_staking"] == {("spot", "sell", "ETH"), ("spot", "buy", "WBETH")}
    assert legs["dividends"] == {("spot", "staking_reward", "FDUSD"), ("spot", "airdrop", "BHFT")}
    assert legs["fiat_deposits"] == {("spot", "deposit", "EUR"), ("spot", "fee", "EUR")}
    assert legs["fiat_withdrawals"] == {("spot", "withdrawal", "EUR"), ("spot", "fee", "EUR")}
    assert {("spot", "buy", "BTC"), ("spot", "sell", "EUR"), ("spot", "fee", "EUR"), ("spot", "deposit", "EUR")} \
        == legs["fiat_payments"]
    assert {kind for _, kind, _ in legs["coin_futures_income"]} <= {"funding", "fee", "realized_pnl"}
    assert {t for t, _, _ in legs["coin_futures_income"]} == {"coin_futures"}
    assert ("isolated_margin", "borrow", "USDT") in legs["margin_loans"]
    assert ("isolated_margin_loan", "liability", "USDT") in legs["margin_interest"]
    assert ("isolated_margin", "buy", "BTC") in legs["margin_trades"]
    assert ("isolated_margin", "transfer_in", "USDT") in legs["transfers"]
    assert ("coin_futures", "transfer_in", "BTC") in legs["transfers"]
    # what moves nothing: a subscription still purchasing, an expired fiat deposit, a failed card payment, and the
    # Simple Earn interest Binance also lists among distributions (the rewards stream books it, never twice)
    assert unbooked.get("earn_flexible_subscriptions:PURCHASING")
    assert unbooked.get("fiat_deposits:Expired") and unbooked.get("fiat_payments:Failed")
    assert unbooked.get("dividends:Simple Earn Flexible Interest")
    assert set(events) == {"earn_flexible_subscriptions:internal_move", "earn_flexible_rewards:income",
                           "earn_locked_subscriptions:internal_move", "earn_locked_rewards:income",
                           "earn_locked_redemptions:internal_move", "earn_flexible_redemptions:internal_move"}


def prices(engine) -> None:
    """Manual prices: the history's starting prices, and every day's EUR, FDUSD, BHFT and WBETH."""
    from ingestion.csv_files import CsvFile
    from ingestion.prices.manual import read_manual_prices, write_manual_prices

    text = "asset,timestamp,price_usd,source_note\n" + "".join(
        f"{asset},{FIRST + timedelta(days=n - 1)},{price},test\n"
        for n in range((LAST - FIRST).days + 2)
        for asset, price in (("EUR", "1.08"), ("FDUSD", "1"), ("BHFT", "0.05"), ("WBETH", "2500")))
    with engine.begin() as conn:
        entity = resolve_entity(conn, "acme")
        write_demo_prices(conn, entity, FIRST, ("BTC", "ETH", "BNB", "XRP", "DOGE"))
        write_manual_prices(conn, entity, "products.csv", read_manual_prices(CsvFile("products.csv", text)),
                            threshold=Decimal("0.5"))


def test_every_account_reconciles_every_day_including_those_rolled_back(engine, server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COINFRS_ENCRYPTION_KEY", MASTER_KEY)
    credentials = tmp_path / "binance.json"
    credentials.write_text(f'{{"api_key": "{KEY}", "api_secret": "{SECRET}"}}')
    added = CliRunner().invoke(app, [
        "source", "add", "binance", "--entity", "acme", "--create", "--credentials-file", str(credentials), "--api-url",
        server.base_url, "--since", "2026-01-01", "--set", "until=2026-01-12", "--set", "rate_limit_ms=0.05",
        "--set", "retry_initial_seconds=0.01", "--set", "retry_max_seconds=0.05"])
    assert added.exit_code == 0, added.output
    prices(engine)
    run = close_days(["acme"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        entity_id = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'acme'")).scalar()
        breaks = list_breaks(conn, entity_id, FIRST, LAST)
        statuses = dict(conn.execute(sa.text(
            "SELECT status, count(*) FROM closes WHERE entity_id = :e GROUP BY 1"), dict(e=entity_id)).all())
        reported = dict(conn.execute(sa.text(
            """SELECT a.account_type || coalesce(nullif(':' || a.sub_account, ':'), ''), count(DISTINCT p.date)
               FROM positions p JOIN accounts a ON a.id = p.account_id
               WHERE p.reported_quantity IS NOT NULL AND a.entity_id = :e GROUP BY 1"""), dict(e=entity_id)).all())
        final = dict(conn.execute(sa.text(
            """SELECT a.account_type || ':' || s.symbol, p.computed_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id
               WHERE p.date = :d AND a.entity_id = :e AND a.sub_account = ''"""), dict(d=LAST, e=entity_id)).all())
        derived = conn.execute(sa.text(
            "SELECT count(*) FROM raw_balance_snapshots WHERE payload ? 'derived' AND account_type = 'funding'")).scalar()
    assert breaks == [], breaks[:3]
    assert statuses == {"closed": (LAST - FIRST).days + 1}, statuses
    days = (LAST - FIRST).days + 1
    for account in ("spot", "earn", "funding", "earn_locked", "isolated_margin", "isolated_margin_loan", "coin_futures",
                    "spot:ops_virtual@northwind.example", "spot:desk_virtual@northwind.example"):
        assert reported.get(account, 0) >= days - 1, (account, reported)
    assert derived >= days  # the funding wallet's daily balances are rolled back, and say so
    history = server.state.history
    expected = {"earn_locked:BNB": sum(Decimal(p["amount"]) for p in history.locked_positions),
                "funding:USDT": history.balances["FUNDING"]["USDT"], "coin_futures:BTC": history.balances["CMFUTURES"]["BTC"],
                "isolated_margin:USDT": history.balances["ISOLATED"]["USDT"],
                "isolated_margin_loan:USDT": -sum(history.isolated_debt["USDT"]),
                "earn:USDT": history.balances["SPOT"]["LDUSDT"]}
    assert {k: final.get(k) for k in expected} == expected


def test_the_server_refuses_what_binance_refuses(server) -> None:
    exchange = make_client(ApiCredentials(KEY, SECRET), options(server))
    window = {"startTime": 1767225600000, "endTime": 1767312000000}
    with pytest.raises(Exception, match="-1102.*'type'"):
        exchange.sapiGetSimpleEarnFlexibleHistoryRewardsRecord(window)
    with pytest.raises(Exception, match="-1102.*'toSymbol'"):
        exchange.sapiGetAssetTransfer({"type": "MARGIN_ISOLATEDMARGIN", **window})
    with pytest.raises(Exception, match="-1102.*'transactionType'"):
        exchange.sapiGetFiatOrders({"beginTime": window["startTime"]})
    with pytest.raises(Exception, match="-1127"):
        exchange.sapiGetSimpleEarnLockedHistorySubscriptionRecord({"startTime": 0, "endTime": 1767312000000})
    server.state.history.earn["earn_flexible_redemptions"].append(
        {"amount": 10.5, "asset": "USDT", "time": window["startTime"] + 1, "projectId": "USDT001", "redeemId": 1,
         "destAccount": "SPOT", "status": "PAID"})
    with pytest.raises(Exception, match="field 'amount' is float 10.5; Binance sends str"):
        exchange.sapiGetSimpleEarnFlexibleHistoryRedemptionRecord(window)


def _funding_usdt(engine, entity_id: int) -> dict[date, list[Decimal]]:
    """Every staged version (oldest first) of the funding wallet's rolled-back USDT balance, by day."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT snapshot_time, (balances->>'USDT')::numeric AS usdt FROM raw_balance_snapshots
               WHERE entity_id = :e AND account_type = 'funding' AND sub_account = '' AND payload ? 'derived'
               ORDER BY snapshot_time, id"""), dict(e=entity_id)).all()
    versions: dict[date, list[Decimal]] = {}
    for row in rows:
        versions.setdefault((row.snapshot_time - timedelta(seconds=1)).date(), []).append(row.usdt)
    return versions


def test_a_late_movement_recomputes_the_rolled_back_balances_of_the_days_before_it(engine) -> None:
    """A funding-wallet deposit Binance lists only after a first sync, its amount already in the funding balance
    then (a deposit credited before the first sync, whose record shows up late). The first sync rolls the funding
    wallet back without it, so the days before it are too high by its amount, which confirms itself (no break) as
    long as the deposit is missing. The second sync stages it (inside the deposits' 3-day overlap): the days before
    it get new snapshot versions, lower by its amount; its day and the later ones are unchanged (it is in the
    run-time balance); and the completeness check shows no break on its day."""
    history = generate_history(FIRST, LAST, products=True)
    amount, credited = Decimal("777"), datetime(2026, 1, 11, 15, 30, tzinfo=timezone.utc)
    history.balances["FUNDING"]["USDT"] += amount
    late = {"id": "990001000000", "amount": "777", "coin": "USDT", "network": "ETH", "status": 1,
            "address": "0x" + "ab" * 20, "addressTag": "", "txId": "0x" + "cd" * 32,
            "insertTime": int(credited.timestamp() * 1000), "completeTime": int(credited.timestamp() * 1000) + 60_000,
            "transferType": 0, "confirmTimes": "12/12", "unlockConfirm": 0, "walletType": 1}
    state = ServerState(history)
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    try:
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "late-funding")
        sync_binance(engine, entity.id, "main", ApiCredentials(KEY, SECRET), options(srv))
        before = _funding_usdt(engine, entity.id)
        history.deposits.append(late)  # Binance lists it now
        sync_binance(engine, entity.id, "main", ApiCredentials(KEY, SECRET), options(srv))
        after = _funding_usdt(engine, entity.id)
    finally:
        srv.stop()
    assert before and set(after) == set(before) and max(before) == LAST
    for day, versions in sorted(after.items()):
        if day < credited.date():  # a new version, lower by the late deposit; the old one stays (staging is immutable)
            assert versions == [*before[day], before[day][-1] - amount], day
        else:
            assert versions == before[day], day
    with engine.begin() as conn:
        build_canonical(conn, entity, FIRST, LAST)
        compute_differences(conn, entity, FIRST, LAST)
        breaks = conn.execute(sa.text(
            """SELECT d.date, d.difference FROM completeness_differences d JOIN accounts a ON a.id = d.account_id
               WHERE d.entity_id = :e AND a.account_type = 'funding' AND abs(d.difference) > d.tolerance"""),
            dict(e=entity.id)).all()
        booked = conn.execute(sa.text(
            """SELECT l.quantity FROM transactions l JOIN raw_records r ON r.id = l.raw_record_id
               WHERE r.source_raw_id LIKE '%990001000000%'""")).scalars().all()
    assert booked == [amount]
    assert breaks == []
    assert cutoff_of(credited.date(), entity.tz) > credited  # the deposit is inside its own day


def test_an_isolated_pair_closed_after_a_sync_is_still_read_through_its_last_movements(engine) -> None:
    """Binance's isolated account (GET /sapi/v1/margin/isolated/account) lists the pairs held now; the local server,
    like it, stops listing a pair once it is repaid and emptied. Every per-pair endpoint needs the pair named, so the
    repayment and the transfer out that closed it would never be read: the sync keeps reading every pair it read
    before (and those of the ``isolated_pairs`` setting)."""
    end, until = date(2026, 1, 4), datetime(2026, 1, 5, tzinfo=timezone.utc)
    history = generate_history(FIRST, end, products=True)
    symbol = history.isolated_symbol
    state = ServerState(history)
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    settings = BinanceOptions(api_url=srv.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc), until=until,
                              rate_limit_ms=0.05, timeout_ms=2000, retry=FAST_RETRY)
    try:
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "isolated-closed")
        sync_binance(engine, entity.id, "main", ApiCredentials(KEY, SECRET), settings)
        with engine.connect() as conn:
            read = conn.execute(sa.text(
                "SELECT count(*) FROM raw_records WHERE entity_id = :e AND payload->>'isolatedSymbol' = :p"),
                dict(e=entity.id, p=symbol)).scalar()
        assert read > 0  # the pair's loans and interest, read while it was listed
        # late on the last day (inside the streams' overlap): the debt repaid, the rest moved back to cross margin
        closed = int(datetime(2026, 1, 4, 22, tzinfo=timezone.utc).timestamp() * 1000)
        borrowed, interest = history.isolated_debt["USDT"]
        history.loans["REPAY"].append({
            "isolatedSymbol": symbol, "type": "MANUAL", "amount": f"{borrowed + interest:.8f}", "asset": "USDT",
            "interest": f"{interest:.8f}", "principal": f"{borrowed:.8f}", "status": "CONFIRMED", "timestamp": closed,
            "txId": 990001})
        history.transfers.append({"asset": "USDT", "amount": "12.50000000", "type": "ISOLATEDMARGIN_MARGIN",
                                  "status": "CONFIRMED", "tranId": 990002, "timestamp": closed + 60_000,
                                  "fromSymbol": symbol})
        history.balances["ISOLATED"], history.isolated_debt = {}, {}
        assert make_client(ApiCredentials(KEY, SECRET), settings).sapiGetMarginIsolatedAccount()["assets"] == []
        sync_binance(engine, entity.id, "main", ApiCredentials(KEY, SECRET), settings)
    finally:
        srv.stop()
    with engine.connect() as conn:
        staged = dict(conn.execute(sa.text(
            """SELECT stream, count(*) FROM raw_records WHERE entity_id = :e
               AND coalesce(payload->>'txId', payload->>'tranId') IN ('990001', '990002') GROUP BY 1"""),
            dict(e=entity.id)).all())
    assert staged == {"margin_repays": 1, "transfers": 1}
