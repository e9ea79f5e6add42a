"""Binance deposits and withdrawals by wallet and status, and Binance's refusals, through the real ccxt.binance against
the local Binance server (samples/servers/binance_server.py), staged in real PostgreSQL and booked by the canonical
build.

Where the shapes, codes and errors come from (the server and these records are written from them):
- Deposit history ``GET /sapi/v1/capital/deposit/hisrec`` and withdraw history ``GET /sapi/v1/capital/withdraw/history``:
  field types from Binance's own connector, generated from its OpenAPI spec — docs.rs ``binance-sdk`` 77.x,
  ``wallet/rest_api/models/deposit_history_response_inner.rs`` (``id``/``amount``/``txId`` strings, ``status`` an
  integer) and ``withdraw_history_response_inner.rs`` (``amount``/``transactionFee``/``applyTime`` strings, ``status``
  an integer); ``walletType`` 0 spot / 1 funding (Binance's wallet docs; ``wallet_type`` in the generated clients).
- Status codes: deposit 0 pending, 6 credited but cannot withdraw, 7 wrong deposit, 8 waiting user confirm, 1 success
  (2 rejected); withdrawal 0 email sent, 1 cancelled, 2 awaiting approval, 3 rejected, 4 processing, 5 failure,
  6 completed — docs.rs ``patisson-binance-sdk`` ``wallet/enums.rs`` and ``binance-rs-async``
  ``WithdrawalHistoryQuery`` (quoting Binance's withdraw history documentation).
- Errors: developers.binance.com "Error codes for Binance" (-1003 TOO_MANY_REQUESTS with its texts, -1021
  INVALID_TIMESTAMP "Timestamp for this request is outside of the recvWindow.", -1022 INVALID_SIGNATURE "Signature
  for this request is not valid.") and "LIMITS" (HTTP 429 when a rate limit is broken, HTTP 418 when the IP is
  auto-banned after 429s, a ``Retry-After`` header with both).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ingestion.binance.client import ApiCredentials, BinanceOptions, make_client
from ingestion.binance.sync import sync_binance
from ingestion.ccxt.client import RetryPolicy, SourceAccessError, SourceUnavailable, call_exchange
from samples.servers.binance_history import generate_history
from samples.servers.binance_server import BinanceServer, ServerState
from transforms.canonical import build_canonical
from warehouse.entities import get_or_create_entity

FIRST, LAST = date(2026, 1, 1), date(2026, 1, 10)
DAY = date(2026, 1, 5)
KEY, SECRET = "wallets-key", "wallets-secret-0123456789"
FAST_RETRY = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.05)


def ms(hour: int) -> int:
    return int(datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=timezone.utc).timestamp() * 1000)


def deposit(n: int, amount: str, status: int, wallet: int, hour: int) -> dict:
    return {"id": f"77{n:04d}000000", "amount": amount, "coin": "USDT", "network": "ETH", "status": status,
            "address": "0x" + f"{n:040x}", "addressTag": "", "txId": "0x" + f"{n:064x}", "insertTime": ms(hour),
            "completeTime": ms(hour) + 60_000, "transferType": 0, "confirmTimes": "12/12", "unlockConfirm": 0,
            "walletType": wallet}


def withdrawal(n: int, amount: str, status: int, wallet: int, hour: int) -> dict:
    when = datetime.fromtimestamp(ms(hour) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return {"id": f"{n:032x}", "amount": amount, "transactionFee": "1", "coin": "USDT", "status": status,
            "address": "0x" + f"{n + 500:040x}", "txId": "0x" + f"{n + 500:064x}", "applyTime": when, "network": "ETH",
            "transferType": 0, "info": "", "confirmNo": 12, "walletType": wallet, "txKey": "", "completeTime": when}


DEPOSITS = {  # id -> (status, walletType, booked to)
    1: (1, 1, "funding"), 2: (1, 0, "spot"), 3: (6, 1, "funding"), 4: (0, 0, None), 5: (7, 1, None), 6: (8, 0, None),
    7: (2, 0, None)}
WITHDRAWALS = {1: (1, 0, None), 2: (3, 1, None), 3: (5, 1, None), 4: (6, 1, "funding"), 5: (4, 0, "spot"),
               6: (0, 1, "funding"), 7: (2, 0, "spot")}


@pytest.fixture()
def server():
    history = generate_history(FIRST, LAST)
    history.deposits += [deposit(n, f"{n}00", status, wallet, 6 + n) for n, (status, wallet, _) in DEPOSITS.items()]
    history.withdrawals += [withdrawal(n, f"{n}0", status, wallet, 6 + n) for n, (status, wallet, _) in WITHDRAWALS.items()]
    state = ServerState(history)
    state.add_key(KEY, SECRET)
    srv = BinanceServer(state).start()
    yield srv
    srv.stop()


def options(server: BinanceServer, **extra) -> BinanceOptions:
    return BinanceOptions(api_url=server.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc),
                          until=datetime(2026, 1, 11, tzinfo=timezone.utc), rate_limit_ms=0.05, timeout_ms=2000,
                          retry=FAST_RETRY, **extra)


def test_deposits_and_withdrawals_book_to_their_wallet_by_binance_status_codes(engine, server) -> None:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "binance-wallets")
    sync_binance(engine, entity.id, "main", ApiCredentials(KEY, SECRET), options(server))
    with engine.begin() as conn:
        build_canonical(conn, entity, DAY, DAY)
        rows = conn.execute(sa.text(
            """SELECT r.stream, r.payload->>'id' AS id, a.account_type, l.kind, l.quantity FROM transactions l
               JOIN raw_records r ON r.id = l.raw_record_id JOIN accounts a ON a.id = l.account_id
               WHERE r.stream IN ('deposits', 'withdrawals') AND l.close_date = :d"""), dict(d=DAY)).all()
        staged_status = conn.execute(sa.text(
            "SELECT jsonb_typeof(payload->'status'), jsonb_typeof(payload->'walletType') FROM raw_records"
            " WHERE stream IN ('deposits', 'withdrawals') LIMIT 1")).one()
    assert staged_status == ("number", "number")  # staged exactly as Binance sends them
    booked = {(r.stream, r.id, r.kind): (r.account_type, r.quantity) for r in rows}
    for n, (_, _, wallet) in DEPOSITS.items():
        key = ("deposits", f"77{n:04d}000000", "deposit")
        assert booked.get(key) == ((wallet, Decimal(f"{n}00")) if wallet else None), (n, booked.get(key))
    for n, (_, _, wallet) in WITHDRAWALS.items():
        out, fee = booked.get(("withdrawals", f"{n:032x}", "withdrawal")), booked.get(("withdrawals", f"{n:032x}", "fee"))
        if wallet is None:  # cancelled, rejected or failed: never booked
            assert out is None and fee is None, n
        else:
            assert out == (wallet, -Decimal(f"{n}0")) and fee == (wallet, Decimal(-1)), n


def test_the_server_refuses_a_record_binance_would_not_send(server) -> None:
    """A status as a string is not what Binance sends: the local server will not hand it to the connector."""
    server.state.history.deposits.append({**deposit(99, "5", 1, 0, 20), "status": "1"})
    exchange = make_client(ApiCredentials(KEY, SECRET), options(server))
    with pytest.raises(Exception, match="field 'status' is str '1'; Binance sends int"):
        exchange.sapiGetCapitalDepositHisrec({"startTime": ms(0), "endTime": ms(23)})


def test_a_wrong_secret_is_refused_with_minus_1022_and_not_retried(server) -> None:
    exchange = make_client(ApiCredentials(KEY, "not-the-secret"), options(server))
    with pytest.raises(SourceAccessError, match="-1022") as caught:
        call_exchange(exchange, "GET /sapi/v1/capital/deposit/hisrec", exchange.sapiGetCapitalDepositHisrec,
                      {"startTime": ms(0), "endTime": ms(23)}, policy=FAST_RETRY)
    assert "Signature for this request is not valid." in str(caught.value)
    assert server.state.calls["/sapi/v1/capital/deposit/hisrec"] == 1  # a bad signature is not retried


def test_a_clock_outside_recv_window_gets_minus_1021(server) -> None:
    server.state.clock_offset_ms = 120_000  # the exchange's clock is two minutes ahead: our timestamp is too old
    exchange = make_client(ApiCredentials(KEY, SECRET), options(server))
    with pytest.raises(Exception, match="-1021") as caught:  # one signed call without the retry layer
        exchange.sapiGetCapitalDepositHisrec({"startTime": ms(0), "endTime": ms(23)})
    assert "Timestamp for this request is outside of the recvWindow." in str(caught.value)


def test_429_and_418_carry_minus_1003_and_retry_after(server) -> None:
    exchange = make_client(ApiCredentials(KEY, SECRET), options(server))
    server.state.next_faults = ["429", "429", "429"]
    with pytest.raises(SourceUnavailable, match="after 3 attempts"):
        call_exchange(exchange, "deposits", exchange.sapiGetCapitalDepositHisrec, {"startTime": ms(0), "endTime": ms(23)},
                      policy=FAST_RETRY)
    assert exchange.last_http_response and '"code": -1003' in exchange.last_http_response
    assert "Too much request weight used" in exchange.last_http_response
    assert exchange.last_response_headers.get("Retry-After") == "0"
    server.state.banned = True
    with pytest.raises(SourceUnavailable, match="HTTP 418"):
        call_exchange(exchange, "deposits", exchange.sapiGetCapitalDepositHisrec, {"startTime": ms(0), "endTime": ms(23)},
                      policy=FAST_RETRY)
    assert "IP banned until" in exchange.last_http_response
    assert exchange.last_response_headers.get("Retry-After") == "3600"
