"""Fireblocks end to end: our requests client signs each call with an RS256 JWT that the local Fireblocks server
verifies with the API user's public key; vault accounts, balances and transactions land in real PostgreSQL; the
`coinfrs source` CLI stores the private key encrypted; the daily close finds zero breaks in every vault."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from ingestion.fireblocks.client import FireblocksClient, FireblocksOptions, sign_jwt
from ingestion.retry import RetryPolicy, SourceAccessError
from orchestration.cli import app
from orchestration.close_runner import close_days
from tests.integration.manual_prices import price_known_assets
from tests.servers.fireblocks_history import generate_history
from tests.servers.fireblocks_server import FireblocksServer, FireblocksState
from transforms.mappers import StagedRecord, map_record
from warehouse.numbers import D
from warehouse.reports import list_breaks

FIRST, LAST = date(2026, 1, 1), date(2026, 3, 31)
API_KEY = "3f1c2a4e-1111-4a4a-9b9b-0123456789ab"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
FAST = ["--since", "2026-01-01", "--set", "timeout_ms=300", "--set", "retry_attempts=10",
        "--set", "retry_initial_seconds=0.01", "--set", "retry_max_seconds=0.05"]


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def keys():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def history():
    return generate_history(FIRST, LAST)


@pytest.fixture()
def server(history, keys):
    state = FireblocksState(history)
    state.users[API_KEY] = keys[0].public_key()
    srv = FireblocksServer(state).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def master_key(monkeypatch):
    monkeypatch.setenv("COINFRS_ENCRYPTION_KEY", MASTER_KEY)


def cli_add(server, tmp_path, private_key: rsa.RSAPrivateKey, entity: str = "acme"):
    path = tmp_path / "fireblocks.json"
    (tmp_path / "fireblocks_secret.key").write_text(_pem(private_key))
    path.write_text(json.dumps({"api_key": API_KEY, "private_key_file": "fireblocks_secret.key"}))
    return CliRunner().invoke(app, ["source", "add", "fireblocks", "--entity", entity, "--create", "--credentials-file", str(path),
                                    "--api-url", server.base_url, *FAST])


def test_transactions_map_to_vault_legs_from_decimal_strings(history):
    internal = next(t for t in history.transactions if t["destination"]["type"] == "VAULT_ACCOUNT"
                    and t["source"]["type"] == "VAULT_ACCOUNT" and t["assetId"] == "USDC" and t["status"] == "COMPLETED")
    legs = map_record(StagedRecord(1, "fireblocks", "transactions", "fb", f"fb|{internal['id']}", None, internal))
    net, fee = D(internal["amountInfo"]["netAmount"]), D(internal["feeInfo"]["networkFee"])
    assert [(l.sub_account, l.asset, l.quantity, l.kind) for l in legs] == [
        (internal["source"]["id"], "USDC", -net, "transfer_out"), (internal["source"]["id"], "ETH", -fee, "fee"),
        (internal["destination"]["id"], "USDC", net, "transfer_in")]
    assert {l.account_type for l in legs} == {"vault"} and legs[0].tx_hash == legs[2].tx_hash == internal["txHash"]
    rejected = next(t for t in history.transactions if t["status"] != "COMPLETED")
    assert map_record(StagedRecord(2, "fireblocks", "transactions", "fb", "fb|x", None, rejected)) == []
    broken = {**internal, "amountInfo": {**internal["amountInfo"], "netAmount": 12.5}}
    with pytest.raises(ValueError, match=r"fb\|y.*'amountInfo.netAmount' is 12.5"):
        map_record(StagedRecord(3, "fireblocks", "transactions", "fb", "fb|y", None, broken))


def test_a_bad_signature_is_refused_with_a_clear_message(server, keys):
    options = FireblocksOptions(api_url=server.base_url, retry=RetryPolicy(attempts=3, initial_seconds=0.01))
    impostor = FireblocksClient(API_KEY, _pem(keys[1]), options)  # right key id, wrong private key
    with pytest.raises(SourceAccessError) as caught:
        impostor.vault_accounts()
    assert "HTTP 401" in str(caught.value) and "signature does not verify" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value) and "PRIVATE KEY" not in repr(impostor)
    assert server.state.calls["/v1/vault/accounts_paged"] == 1  # refused once, not retried
    # a correctly signed token replayed, or made for another uri, is refused too
    client = FireblocksClient(API_KEY, _pem(keys[0]), options)
    assert len(client.vault_accounts()) == 3
    token = sign_jwt(API_KEY, keys[0], "/v1/transactions?limit=1")
    import requests

    for path in ("/v1/transactions?limit=1", "/v1/transactions?limit=1", "/v1/transactions?limit=2"):
        requests.get(server.base_url + path, headers={"X-API-Key": API_KEY, "Authorization": f"Bearer {token}"}, timeout=5)
    assert server.state.refusals[-2:] == ["Unauthorized: JWT nonce missing or already used",
                                          "Unauthorized: JWT uri '/v1/transactions?limit=1' is not the request's "
                                          "'/v1/transactions?limit=2'; nonce missing or already used"]


def test_the_workspace_closes_every_day_with_zero_breaks_with_20_percent_of_calls_failing(engine, server, keys, tmp_path,
                                                                                         history):
    added = cli_add(server, tmp_path, keys[0])
    assert added.exit_code == 0, added.output
    with engine.connect() as conn:
        ciphertext = bytes(conn.execute(sa.text("SELECT ciphertext FROM source_credentials")).scalar())
    assert b"PRIVATE KEY" not in ciphertext and API_KEY.encode() not in ciphertext
    tested = CliRunner().invoke(app, ["source", "test", "--entity", "acme"])
    shown = " ".join(tested.output.split())
    assert tested.exit_code == 0 and "fireblocks: OK — signed JWT accepted; 3 vault accounts" in shown, tested.output
    assert "vault 1 (Trading): BTC" in shown and "BEGIN" not in shown
    price_known_assets(engine, "acme", FIRST - timedelta(days=1))
    server.state.failure_rate = 0.2
    run = close_days(["acme"], FIRST, LAST, instance=dg.DagsterInstance.ephemeral())
    assert run.success, run.error
    with engine.connect() as conn:
        eid = conn.execute(sa.text("SELECT id FROM entities WHERE name = 'acme'")).scalar()
        breaks = list_breaks(conn, eid, FIRST, LAST)
        statuses = dict(conn.execute(sa.text(
            "SELECT status, count(*) FROM closes WHERE entity_id = :e GROUP BY 1"), dict(e=eid)).all())
        staged = conn.execute(sa.text("SELECT count(DISTINCT source_raw_id) FROM raw_records WHERE source = 'fireblocks'")).scalar()
        vaults = dict(conn.execute(sa.text(
            """SELECT a.sub_account, count(DISTINCT p.date) FROM positions p JOIN accounts a ON a.id = p.account_id
               WHERE a.account_type = 'vault' AND p.reported_quantity IS NOT NULL GROUP BY 1""")).all())
        final = dict(conn.execute(sa.text(
            """SELECT a.sub_account || ':' || s.symbol, p.computed_quantity FROM positions p
               JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.id = p.asset_id WHERE p.date = :d"""),
            dict(d=LAST)).all())
        matched = conn.execute(sa.text("SELECT count(*) FROM transfers WHERE status = 'matched'")).scalar()
        status = conn.execute(sa.text("SELECT last_sync_status FROM source_credentials")).scalar()
    assert status == "succeeded" and sum(server.state.faults.values()) >= 3
    assert staged == len(history.transactions)
    assert breaks == []
    assert statuses == {"closed": (LAST - FIRST).days + 1}
    assert vaults == {v: (LAST - FIRST).days + 1 for v in ("0", "1", "2")}
    expected = {f"{v}:{a}": q for v, held in history.balances.items() for a, q in held.items()}
    assert {k: final[k] for k in expected} == expected
    assert matched > 0  # vault-to-vault transfers matched by tx hash
    assert not server.state.refusals
    # a rerun stages nothing new but the run-time balances, and reads only the last days again
    server.state.failure_rate = 0.0
    calls = sum(server.state.calls.values())
    synced = CliRunner().invoke(app, ["source", "sync", "--entity", "acme"])
    assert synced.exit_code == 0 and "fireblocks: succeeded; 0 new records" in synced.output, synced.output
    assert sum(server.state.calls.values()) - calls <= 3


def test_a_late_transaction_recomputes_the_rolled_back_balances_of_the_days_before_it(engine, keys):
    """A deposit Fireblocks lists only after a first sync (already in the vault's balance then, as when a
    transaction's record shows up or completes late): the second sync stages it (inside the 3-day overlap) and
    writes the rolled-back balances of every earlier day again, lower by its amount, as new snapshot versions; its
    day and the later ones stay as they were."""
    from datetime import datetime, timezone

    from ingestion.fireblocks.sync import FireblocksSync
    from warehouse.entities import get_or_create_entity

    history = generate_history(FIRST, date(2026, 1, 10))
    created = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
    late = {**history.transactions[0], "id": "late-0001", "txHash": "0x" + "ef" * 32, "assetId": "BTC",
            "source": {"type": "EXTERNAL_WALLET", "id": "", "name": "External", "subType": ""},
            "destination": {"type": "VAULT_ACCOUNT", "id": "1", "name": "Trading", "subType": ""},
            "amountInfo": {"amount": "1.5", "requestedAmount": "1.5", "netAmount": "1.5", "amountUSD": None},
            "feeInfo": {"networkFee": "0", "serviceFee": "0", "gasPrice": None}, "feeCurrency": "BTC",
            "createdAt": int(created.timestamp() * 1000), "lastUpdated": int(created.timestamp() * 1000) + 95_000,
            "amount": 1.5, "netAmount": 1.5, "fee": 0.0, "networkFee": 0.0, "requestedAmount": 1.5}
    history.balances["1"]["BTC"] = history.balances["1"].get("BTC", Decimal(0)) + Decimal("1.5")
    state = FireblocksState(history)
    state.users[API_KEY] = keys[0].public_key()
    srv = FireblocksServer(state).start()
    options = FireblocksOptions(api_url=srv.base_url, since=datetime(2026, 1, 1, tzinfo=timezone.utc),
                                retry=RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.05))

    def vault_btc() -> dict[date, list[Decimal]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                """SELECT snapshot_time, (balances->>'BTC')::numeric AS btc FROM raw_balance_snapshots
                   WHERE entity_id = :e AND sub_account = '1' AND payload ? 'rolled_back_from'
                   ORDER BY snapshot_time, id"""), dict(e=entity.id)).all()
        versions: dict[date, list[Decimal]] = {}
        for row in rows:
            versions.setdefault((row.snapshot_time - timedelta(seconds=1)).date(), []).append(row.btc)
        return versions

    try:
        with engine.begin() as conn:
            entity = get_or_create_entity(conn, "late-vault")
        client = FireblocksClient(API_KEY, _pem(keys[0]), options)
        FireblocksSync(engine, entity.id, "fb", client, options).run()
        before = vault_btc()
        history.transactions.append(late)  # Fireblocks lists it now
        FireblocksSync(engine, entity.id, "fb", client, options).run()
        after = vault_btc()
    finally:
        srv.stop()
    assert before and set(after) == set(before)
    for day, versions in sorted(after.items()):
        if day < created.date():
            assert versions == [*before[day], before[day][-1] - Decimal("1.5")], day
        else:
            assert versions == before[day], day
