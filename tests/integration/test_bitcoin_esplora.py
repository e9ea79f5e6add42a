"""Bitcoin wallets (an xpub-family key and a single address) synced with requests against a local Esplora API that
answers from a generated chain in Esplora's documented format, on real PostgreSQL, closed by Dagster in-process.

The history (2026-01-01 .. 01-07): the exchange withdraws 1.5 BTC to the zpub wallet A (tx H1, the exchange's own
ledger says so with the same hash), A receives from outside, pays outside with change to its change chain,
consolidates its coins to itself (only a fee), deposits 0.5 BTC to the exchange (H2), moves 0.25 BTC to the cold
wallet B (H3, both owned), receives 30 small payments on one address (two pages of 25), receives on an address 18
past the last used one (inside the gap limit of 20); B spends with change to itself; a payment in the mempool; and
one with too few confirmations at the first sync.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.bitcoin.client import EsploraClient, EsploraError
from ingestion.bitcoin.keys import BitcoinKeyError, parse_wallet
from ingestion.bitcoin.sync import BitcoinSettings, BitcoinSyncError, discover_addresses, sync_bitcoin_wallet
from ingestion.csv_files import CsvFile, import_csv
from ingestion.retry import RetryPolicy
from ingestion.wallets import write_wallet
from orchestration.close_runner import close_days
from samples.chains.anvil import free_port
from tests.servers.esplora import BitcoinChain, EsploraServer
from warehouse.db import get_owner_engine
from warehouse.entities import get_or_create_entity
from warehouse.reports import list_breaks

# BIP84's test vector (mnemonic "abandon ... about"), account m/84'/0'/0'
ZPUB = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
COLD = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # wallet B (BIP173's example address)
OUTSIDE = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
EXCHANGE = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"  # the exchange's hot wallet (not ours: the exchange account is)
BTC = 100_000_000


def history() -> tuple[BitcoinChain, dict[str, str]]:
    keys = parse_wallet(ZPUB, "bitcoin")
    r = [keys.address(0, i) for i in range(50)]
    c = [keys.address(1, i) for i in range(5)]
    a = set(r) | set(c)
    chain = BitcoinChain("2026-01-01T00:00:00")
    chain.fund("2026-01-01T01:00:00", EXCHANGE, 50 * BTC)
    chain.fund("2026-01-01T01:10:00", OUTSIDE, 10 * BTC)
    h = {"H1": chain.send("2026-01-01T09:00:00", [EXCHANGE], [(r[0], 150_000_000)], 2_000)}
    chain.send("2026-01-01T12:00:00", [OUTSIDE], [(r[1], 20_000_000)], 1_000)
    h["pay"] = chain.send("2026-01-02T08:00:00", a, [(OUTSIDE, 30_000_000)], 1_500, change=c[0])
    total = sum(v for _, _, v in chain.utxos(a))
    h["self"] = chain.send("2026-01-02T15:00:00", a, [(r[2], total - 800)], 800)
    h["H2"] = chain.send("2026-01-03T10:00:00", a, [(EXCHANGE, 50_000_000)], 1_200, change=c[1])
    h["H3"] = chain.send("2026-01-03T11:00:00", a, [(COLD, 25_000_000)], 900, change=c[2])
    for i in range(30):
        chain.send(f"2026-01-04T{i // 6:02d}:{(i % 6) * 10:02d}:00", [OUTSIDE], [(r[3], 1_000 + i)], 200)
    chain.send("2026-01-05T06:00:00", [OUTSIDE], [(r[22], 5_000_000)], 300)
    chain.send("2026-01-05T07:00:00", [OUTSIDE], [(r[45], 7_000_000)], 300)  # 22 unused before it: past the gap
    h["cold"] = chain.send("2026-01-06T10:00:00", [COLD], [(OUTSIDE, 10_000_000)], 500)
    chain.mine("2026-01-07T00:10:00", 20)
    h["late"] = chain.send("2026-01-07T04:00:00", [OUTSIDE], [(c[3], 3_000_000)], 250)  # 3 confirmations below
    chain.mine("2026-01-07T04:10:00", 2)
    h["mempool"] = chain.send(None, [OUTSIDE], [(r[0], 1_000_000)], 400)  # in the mempool: not confirmed
    return chain, h


def exchange_files(h: dict[str, str]) -> tuple[CsvFile, CsvFile]:
    ledger = ("id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,"
              "tx_hash,external_id,notes\n"
              "x0,2026-01-01T00:30:00Z,DEPOSIT,BTC,10,40000,,,,,Exchange,,,\n"
              f"w1,2026-01-01T09:00:00Z,WITHDRAWAL,BTC,1.5,40000,BTC,0.0005,,,Exchange,{h['H1']},,to wallet A\n"
              f"d2,2026-01-03T10:30:00Z,DEPOSIT,BTC,0.5,41000,,,,,Exchange,{h['H2']},,from wallet A\n")
    balances = "timestamp,account,asset,quantity\n" + "".join(
        f"2026-01-{d + 1:02d}T00:00:00Z,Exchange,BTC,{q}\n"
        for d, q in ((1, "8.4995"), (2, "8.4995"), (3, "8.9995"), (4, "8.9995"), (5, "8.9995"), (6, "8.9995")))
    return CsvFile("exchange.csv", ledger), CsvFile("exchange-balances.csv", balances)


def wallets(engine, url: str, name: str = "btc-co"):
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, name)
        a = write_wallet(conn, entity.id, chain="bitcoin", chain_id=None, address=ZPUB, rpc_urls=[url])
        b = write_wallet(conn, entity.id, chain="bitcoin", chain_id=None, address=COLD, rpc_urls=[url])
    return entity, a, b


def test_bitcoin_wallets_close_every_day_with_zero_breaks_and_match_the_exchange_by_tx_hash(engine) -> None:
    chain, h = history()
    keys = parse_wallet(ZPUB, "bitcoin")
    own = {keys.address(0, i) for i in range(45)} | {keys.address(1, i) for i in range(5)}  # not r45: past the gap
    with EsploraServer(chain) as url:
        entity, a, b = wallets(engine, url)
        first = sync_bitcoin_wallet(engine, entity, a, urls=[url])
        # r0..r3, r22 and c0..c3 used; r45 is 22 past r22: outside the gap limit, never asked for
        assert (first.used_addresses, first.addresses) == (9, 43 + 24)
        assert (first.transactions, first.pending) == (37, 1)  # 'late' has 3 confirmations of the 6 required
        assert first.inserted == 37 and first.snapshots == 6  # 01-01 .. 01-06
        cold = sync_bitcoin_wallet(engine, entity, b, urls=[url])
        assert (cold.transactions, cold.inserted, cold.snapshots) == (2, 2, 4)  # 01-03 .. 01-06
        again = sync_bitcoin_wallet(engine, entity, a, urls=[url])
        assert (again.inserted, again.snapshots) == (0, 0)
        chain.mine("2026-01-07T06:00:00", 10)  # 'late' becomes final, the mempool payment is mined (10 confirmations)
        later = sync_bitcoin_wallet(engine, entity, a, urls=[url])
        assert (later.transactions, later.inserted, later.pending) == (2, 2, 0)
        ledger, balances = exchange_files(h)
        with engine.begin() as conn:
            import_csv(conn, entity.id, "ledger", ledger)
            import_csv(conn, entity.id, "balances", balances)
        run = close_days(["btc-co"], date(2026, 1, 1), date(2026, 1, 6), instance=dg.DagsterInstance.ephemeral())
        assert run.success, run.error
    with engine.connect() as conn:
        assert list_breaks(conn, entity.id, date(2026, 1, 1), date(2026, 1, 6)) == []
        positions = {(r.name, r.date): (r.computed_quantity, r.reported_quantity) for r in conn.execute(sa.text(
            """SELECT a.name, p.date, p.computed_quantity, p.reported_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id WHERE s.symbol = 'BTC'"""))}
        legs = {(r.tx_hash, r.kind): r.quantity for r in conn.execute(sa.text(
            "SELECT tx_hash, kind, quantity FROM transactions t JOIN accounts a ON a.id = t.account_id"
            " WHERE a.name = :n"), dict(n=f"bitcoin:{ZPUB}"))}
        transfers = {(r.tx_hash, r.status, r.matched_by) for r in conn.execute(sa.text(
            "SELECT tx_hash, status, matched_by FROM transfers WHERE entity_id = :e"), dict(e=entity.id))}
    day6 = Decimal(chain.balance(own, "2026-01-07T00:00:00")) / BTC
    assert positions[(f"bitcoin:{ZPUB}", date(2026, 1, 6))] == (day6, day6)
    assert positions[(f"bitcoin:{COLD}", date(2026, 1, 6))] == (Decimal("0.1499950"), Decimal("0.1499950"))
    # a payment to oneself is no disposal: only its fee; change stays in the wallet
    assert (h["self"], "transfer_out") not in legs and legs[(h["self"], "fee")] == Decimal("-0.00000800")
    assert legs[(h["pay"], "transfer_out")] == Decimal("-0.30000000") and legs[(h["pay"], "fee")] == Decimal("-0.00001500")
    assert legs[(h["H1"], "transfer_in")] == Decimal("1.50000000")
    # the exchange's withdrawal and deposit, and the move to the cold wallet, are internal transfers by tx hash
    assert {(h["H1"], "matched", "tx_hash"), (h["H2"], "matched", "tx_hash"), (h["H3"], "matched", "tx_hash")} <= transfers


def test_a_planted_missing_record_is_a_break_with_its_cause(engine) -> None:
    """The cold wallet's record of H3 is lost from staging: its balance (the indexer's) is 0.25 BTC more than its legs
    on 01-03, and the break names the unmatched transfer_out of the zpub wallet with its tx hash. (Closed through
    01-05: on 01-06 the cold wallet spends, and without H3 its computed balance would go negative, which the
    canonical suite refuses at error severity before any break is listed.)"""
    chain, h = history()
    with EsploraServer(chain) as url:
        entity, a, b = wallets(engine, url, "btc-planted")
        sync_bitcoin_wallet(engine, entity, a, urls=[url])
        sync_bitcoin_wallet(engine, entity, b, urls=[url])
        # staging is append-only (migration 0026): the loss is planted by the server's superuser, triggers off
        with get_owner_engine(engine.url.render_as_string(hide_password=False)).begin() as conn:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            lost = conn.execute(sa.text("DELETE FROM raw_records WHERE entity_id = :e AND source_raw_id = :r"),
                                dict(e=entity.id, r=f"bitcoin:{COLD}:{h['H3']}")).rowcount
        assert lost == 1
        # the close syncs again first: nothing new (the cursors are past it), so the record stays missing
        run = close_days(["btc-planted"], date(2026, 1, 1), date(2026, 1, 5), instance=dg.DagsterInstance.ephemeral())
        assert run.success, run.error
    with engine.connect() as conn:
        found = list_breaks(conn, entity.id, date(2026, 1, 1), date(2026, 1, 5))
    cold = [x for x in found if x["account"] == f"bitcoin:{COLD}"]
    assert [(x["date"], Decimal(x["difference"])) for x in cold] == [("2026-01-03", Decimal("0.25"))]
    causes = cold[0]["causes"]
    assert causes[0]["code"] == "unmatched_transfer" and h["H3"] in causes[0]["evidence"]


def test_an_api_that_loses_a_page_or_stays_down_fails_the_sync_and_names_the_host_only(engine) -> None:
    chain, _ = history()
    with EsploraServer(chain, fail_every=4) as url:  # every 4th request 503: retried, nothing lost
        entity, a, _ = wallets(engine, url, "btc-flaky")
        client = EsploraClient([url], policy=RetryPolicy(attempts=5, initial_seconds=0.01, max_seconds=0.05))
        flaky = sync_bitcoin_wallet(engine, entity, a, urls=[url], client=client)
        assert flaky.transactions == 37 and client.stats.retries >= 20
    dead = f"http://127.0.0.1:{free_port()}/api/secret-key"
    with pytest.raises(EsploraError) as down:
        EsploraClient([dead], policy=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.05)).fetch_tip_height()
    assert "secret-key" not in str(down.value) and "127.0.0.1" in str(down.value)
    # failover: a dead URL first, the live one second
    with EsploraServer(chain) as url:
        fast = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.05)
        assert EsploraClient([dead, url], policy=fast).fetch_tip_height() == chain.tip.height


def test_history_that_disagrees_with_the_address_stats_is_refused(engine) -> None:
    """A server whose history misses a transaction its stats count (a lost page) is never taken as complete."""
    chain, h = history()
    server = EsploraServer(chain)
    server.hide = {h["pay"]}  # left out of the address histories, still counted in the address stats
    with server as url:
        entity, a, _ = wallets(engine, url, "btc-lossy")
        with pytest.raises(BitcoinSyncError, match="history disagrees with its address stats"):
            sync_bitcoin_wallet(engine, entity, a, urls=[url])
        with engine.connect() as conn:
            staged = conn.execute(sa.text("SELECT count(*) FROM raw_records WHERE entity_id = :e"), dict(e=entity.id)).scalar()
    assert staged == 0


def test_the_local_api_answers_like_esplora() -> None:
    chain, h = history()
    with EsploraServer(chain) as url:
        def get(path: str) -> requests.Response:
            return requests.get(url + path, timeout=5)

        bad = get("/address/bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5")
        assert (bad.status_code, bad.text, bad.headers["Content-Type"]) == (400, "bech32 segwit decoding error", "text/plain")
        assert (get("/address/1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3").text, get("/address/hello").status_code) == \
            ("base58 error", 400)
        wrong = get("/address/tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")
        assert (wrong.status_code, wrong.text) == (400, "Address on invalid network")
        unused = get("/address/bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq").json()
        assert unused["chain_stats"] == {"funded_txo_count": 0, "funded_txo_sum": 0, "spent_txo_count": 0,
                                         "spent_txo_sum": 0, "tx_count": 0}
        assert (get("/tx/" + "ab" * 32).status_code, get("/tx/" + "ab" * 32).text) == (404, "Transaction not found")
        assert (get("/tx/xyz").status_code, get("/tx/xyz").text) == (400, "Invalid hash string")
        assert (get("/block-height/99999").status_code, get("/block-height/99999").text) == (404, "Block not found")
        assert get("/nope").text == 'endpoint does not exist "/api/nope"'
        r3 = parse_wallet(ZPUB, "bitcoin").address(0, 3)
        page1 = get(f"/address/{r3}/txs/chain").json()
        page2 = get(f"/address/{r3}/txs/chain/{page1[-1]['txid']}").json()
        assert (len(page1), len(page2)) == (25, 5)
        heights = [t["status"]["block_height"] for t in page1 + page2]
        assert heights == sorted(heights, reverse=True)
        tx = get("/tx/" + h["pay"]).json()
        assert isinstance(tx["fee"], int) and isinstance(tx["vout"][0]["value"], int)
        assert tx["status"]["confirmed"] is True and isinstance(tx["status"]["block_time"], int)
        tip = get("/blocks/tip/height")
        assert tip.headers["Content-Type"] == "text/plain" and int(tip.text) == chain.tip.height


def test_gap_limit_and_derivation() -> None:
    keys = parse_wallet(ZPUB, "bitcoin")
    # BIP84's published first receive and change addresses of this key
    assert keys.address(0, 0) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    assert keys.address(1, 0) == "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
    chain, _ = history()
    with EsploraServer(chain) as url:
        client = EsploraClient([url])
        assert keys.address(0, 45) not in discover_addresses(client, keys, 20)
        assert keys.address(0, 45) in discover_addresses(client, keys, 25)
    for spec, chain_name, message in (
            ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bitcoin", "not a bitcoin address"),
            ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "bitcoin", "another network"),
            ("xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
             "bitcoin", "PRIVATE"),
            (ZPUB, "bitcoin-testnet", "not a single-signature extended public key of bitcoin-testnet")):
        with pytest.raises(BitcoinKeyError, match=message):
            parse_wallet(spec, chain_name)


def test_wallet_add_and_sync_through_the_cli(engine) -> None:
    from orchestration.cli import app

    runner = CliRunner()
    chain, _ = history()
    with EsploraServer(chain) as url:
        bad = runner.invoke(app, ["wallet", "add", "--entity", "cli-btc", "--chain", "bitcoin", "--address", "bc1qnope"])
        assert bad.exit_code == 1 and "--address: not a bitcoin address: 'bc1qnope'" in bad.output
        added = runner.invoke(app, ["wallet", "add", "--entity", "cli-btc", "--create", "--chain", "bitcoin", "--address", ZPUB,
                                    "--rpc-url", url])
        assert added.exit_code == 0, added.output
        synced = runner.invoke(app, ["wallet", "sync", "--entity", "cli-btc"])
        assert synced.exit_code == 0, synced.output
        assert "bitcoin: 37 new records, 6 balance snapshots" in synced.output


def test_an_esplora_api_that_is_down_makes_the_close_partial_naming_the_chain(engine) -> None:
    chain, _ = history()
    dead = f"http://127.0.0.1:{free_port()}/api/secret-key"
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "btc-down")
        write_wallet(conn, entity.id, chain="bitcoin", chain_id=None, address=COLD, rpc_urls=[dead])
    assert close_days(["btc-down"], date(2026, 1, 3), date(2026, 1, 4), instance=dg.DagsterInstance.ephemeral()).success
    with engine.connect() as conn:
        down = conn.execute(sa.text("SELECT date, status, message FROM closes WHERE entity_id = :e ORDER BY date"),
                            dict(e=entity.id)).all()
    assert [r.status for r in down] == ["partial", "partial"]
    assert all("source down: bitcoin/bitcoin (chain bitcoin could not be synced (never synced)" in r.message
               and "127.0.0.1" in r.message and "secret-key" not in r.message for r in down)
    with EsploraServer(chain) as url:  # back: the next close syncs it, clears its outages and reconciles the days
        with engine.begin() as conn:
            write_wallet(conn, entity.id, chain="bitcoin", chain_id=None, address=COLD, rpc_urls=[url])
        assert close_days(["btc-down"], date(2026, 1, 3), date(2026, 1, 4), instance=dg.DagsterInstance.ephemeral()).success
    with engine.connect() as conn:
        back = conn.execute(sa.text("SELECT status FROM closes WHERE entity_id = :e ORDER BY date"), dict(e=entity.id)).scalars().all()
        assert list_breaks(conn, entity.id, date(2026, 1, 3), date(2026, 1, 4)) == []
    assert "partial" not in back
