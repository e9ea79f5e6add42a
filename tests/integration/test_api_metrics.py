"""``GET /metrics`` scraped from a real ``coinfrs serve``-style server with 2 workers: request counts aggregated
across the workers (whichever answers the scrape), latency histograms by route template, ledger gauges read from
the database at scrape time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from ingestion.wallets import write_wallet
from reconciliation.outages import record_source_outage
from tests.integration.live_api import live_api
from tests.integration.test_api import DAY, Seed, seed  # noqa: F401 (fixture)
from tests.integration.test_api_closes_exports import _close
from warehouse.schema import closes, ingestion_cursors, source_breakers, source_credentials


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_aggregate_both_workers_and_read_the_ledger(seed: Seed, database_url: str) -> None:
    with seed.engine.begin() as conn:
        conn.execute(sa.insert(closes), [_close(seed.a, DAY, "unpriced", missing_prices=3),
                                         _close(seed.a, DAY + timedelta(days=1), "failed", missing_prices=0),
                                         _close(seed.a, DAY + timedelta(days=2), "failed", missing_prices=0)])
        conn.execute(sa.insert(source_credentials).values(
            entity_id=seed.a, name="binance-main", kind="binance", key_id="k1", nonce=b"n", ciphertext=b"c",
            last_sync_at=datetime.now(timezone.utc) - timedelta(hours=2), last_sync_status="unavailable"))
        binance_main = conn.execute(sa.select(source_credentials.c.id).where(
            source_credentials.c.name == "binance-main")).scalar_one()
        conn.execute(sa.insert(source_breakers).values(  # three failed syncs in a row opened its breaker
            source_id=binance_main, state="open", consecutive_failures=3, opened_at=datetime.now(timezone.utc),
            last_error="HTTP 503"))
        write_wallet(conn, seed.a, chain="base", address="0x" + "ab" * 20, chain_id=8453)
        write_wallet(conn, seed.a, chain="solana", address="So1ana1111111111111111111111111111111111111", chain_id=None)
        # the base wallet's blocks moved 10 minutes ago and its balances yesterday; the Solana wallet never synced
        conn.execute(sa.insert(ingestion_cursors), [
            dict(entity_id=seed.a, source="evm", account="base:0x" + "ab" * 20, stream="blocks", cursor={"block": 7},
                 updated_at=datetime.now(timezone.utc) - timedelta(minutes=10)),
            dict(entity_id=seed.a, source="evm", account="base:0x" + "ab" * 20, stream="balances",
                 cursor={"day": "2026-01-01"}, updated_at=datetime.now(timezone.utc) - timedelta(days=1))])
        for day in (DAY, DAY + timedelta(days=1)):  # a chain down two days (its closes partial)
            record_source_outage(conn, seed.a, "evm", day, "RPC unreachable", stream="evm/base")
        conn.execute(sa.insert(source_credentials).values(  # never failed: no breaker row, so closed
            entity_id=seed.a, name="kraken-main", kind="kraken", key_id="k1", nonce=b"n", ciphertext=b"c",
            last_sync_at=datetime.now(timezone.utc), last_sync_status="succeeded"))
    with live_api(database_url, workers=2, env={"COINFRS_API_RATE_LIMIT_PER_MINUTE": "0"}) as base:
        h = {"X-API-Key": seed.key_a}
        with httpx.Client(base_url=base) as one, httpx.Client(base_url=base) as two:
            workers = set()
            for _ in range(40):  # a new connection each: the kernel spreads them over both workers (SO_REUSEPORT)
                resp = httpx.get(f"{base}/api/v1/transactions", headers=h)
                assert resp.status_code == 200
                workers.add(resp.headers["X-Request-ID"][:12])  # a random prefix per worker process
            assert len(workers) == 2, "both workers answered"
            for client in (one, two) * 5:
                assert client.get("/api/v1/transactions", params={"kind": "withdrawl"}, headers=h).status_code == 400
                assert client.get(f"/api/v1/transactions/{10**9}", headers=h).status_code == 404
        for _ in range(6):  # every scrape, whichever worker answers, counts both workers' requests
            resp = httpx.get(f"{base}/metrics")
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
            samples = _samples(resp.text)
            route = "/api/v1/transactions"
            assert samples[("coinfrs_api_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] \
                == 40
            assert samples[("coinfrs_api_requests_total", (("method", "GET"), ("route", route), ("status", "400")))] \
                == 10
            assert samples[("coinfrs_api_requests_total", (("method", "GET"), ("route", route + "/{tx_id}"),
                                                            ("status", "404")))] == 10
            assert samples[("coinfrs_api_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == 50
            assert samples[("coinfrs_api_request_duration_seconds_bucket",
                            (("le", "+Inf"), ("method", "GET"), ("route", route)))] == 50
        assert samples[("coinfrs_closes", (("entity", "acme-fund"), ("status", "failed")))] == 2
        assert samples[("coinfrs_closes", (("entity", "acme-fund"), ("status", "unpriced")))] == 1
        assert samples[("coinfrs_unpriced_items", (("entity", "acme-fund"),))] == 3
        source = (("entity", "acme-fund"), ("kind", "binance"), ("source", "binance-main"))
        assert samples[("coinfrs_source_up", tuple(sorted(source + (("status", "unavailable"),))))] == 0
        assert 7100 < samples[("coinfrs_source_sync_lag_seconds", source)] < 7400
        breaker = {(labels["source"], labels["state"]): value for (name, label_items), value in samples.items()
                   if name == "coinfrs_source_circuit_breaker" for labels in [dict(label_items)]}
        assert breaker == {("binance-main", "open"): 1, ("binance-main", "closed"): 0, ("binance-main", "half_open"): 0,
                           ("kraken-main", "open"): 0, ("kraken-main", "closed"): 1, ("kraken-main", "half_open"): 0}
        assert samples[("coinfrs_source_consecutive_failures", source)] == 3
        kraken = (("entity", "acme-fund"), ("kind", "kraken"), ("source", "kraken-main"))
        assert samples[("coinfrs_source_up", tuple(sorted(kraken + (("status", "succeeded"),))))] == 1
        assert samples[("coinfrs_source_consecutive_failures", kraken)] == 0
        lags = {dict(labels)["chain"]: value for (name, labels), value in samples.items()
                if name == "coinfrs_wallet_sync_lag_seconds"}
        assert list(lags) == ["base"] and 540 < lags["base"] < 900  # its latest progress; none for Solana
        assert samples[("coinfrs_source_outage_days", (("entity", "acme-fund"), ("source", "evm"),
                                                       ("stream", "evm/base")))] == 2
        with seed.engine.begin() as conn:  # read at scrape time: a new close shows on the next scrape
            conn.execute(sa.insert(closes), [_close(seed.a, DAY + timedelta(days=3), "failed")])
        again = _samples(httpx.get(f"{base}/metrics").text)
        assert again[("coinfrs_closes", (("entity", "acme-fund"), ("status", "failed")))] == 3
