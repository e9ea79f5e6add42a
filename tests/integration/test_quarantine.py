"""Errors as values (issue 15): a staged record its mapper cannot read is quarantined with the error, the record and
the field; its day's close is ``partial`` naming it; the rest of the entity closes; a corrected version clears it.

One case per connector, each with its own mapper and a payload shaped as that connector stages it (EVM transaction,
Binance deposit, ledger CSV row, Binance export row, Solana transaction, Fireblocks transaction): one malformed
record among good ones on the second day. The close runs through Dagster in-process against real PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ingestion.staging import RawRecordIn, start_run, write_raw_records
from orchestration.close_runner import close_days
from reconciliation.periods import Period, PeriodError, lock_period
from tests.integration.manual_prices import price_known_assets
from transforms.quarantine import list_quarantined
from warehouse.entities import get_or_create_entity

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)
W = "0x1000000000000000000000000000000000000001"
X = "0x3000000000000000000000000000000000000003"
SOL_WALLET = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
SOL_OTHER = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def evm_tx(n: int, sender: str, receiver: str, wei: int, gas_used: str = "0x5208") -> dict[str, Any]:
    return {"chain": "ethereum", "chain_id": 1, "wallet": W, "native_symbol": "ETH",
            "block": {"number": hex(100 + n), "hash": "0x" + f"{n:064x}", "timestamp": hex(1772366400 + n)},
            "transaction": {"hash": "0x" + f"{n + 1000:064x}", "from": sender, "to": receiver, "value": hex(wei)},
            "receipt": {"status": "0x1", "gasUsed": gas_used, "effectiveGasPrice": "0x3b9aca00"}}


def binance_deposit(n: int, amount: Any, when: datetime) -> dict[str, Any]:
    # GET /sapi/v1/capital/deposit/hisrec, as Binance documents it (amount a decimal string, status an int)
    return {"id": str(n), "amount": amount, "coin": "BTC", "network": "BTC", "status": 1, "address": "bc1qexample",
            "addressTag": "", "txId": f"tx{n}", "insertTime": int(when.timestamp() * 1000), "transferType": 0,
            "confirmTimes": "2/2", "unlockConfirm": 2, "walletType": 0}


def ledger_row(n: int, quantity: str, when: datetime) -> dict[str, str]:
    return {"timestamp": when.isoformat(), "account": "cold", "action": "DEPOSIT", "asset": "BTC", "quantity": quantity,
            "unit_price_usd": "100", "tx_hash": f"csv{n}"}


def export_row(quantity: str, when: datetime) -> dict[str, str]:
    return {"User_ID": "42", "UTC_Time": when.strftime("%Y-%m-%d %H:%M:%S"), "Account": "Spot", "Operation": "Deposit",
            "Coin": "BTC", "Change": quantity, "Remark": ""}


def sol_tx(n: int, lamports: int, *, fee: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"err": None, "status": {"Ok": None}, "preBalances": [10_000_000_000, 0],
                            "postBalances": [10_000_000_000 - lamports - 5000, lamports], "preTokenBalances": [],
                            "postTokenBalances": []}
    if fee:
        meta["fee"] = 5000
    return {"wallet": SOL_WALLET, "signature": f"sig{n}",
            "transaction": {"slot": 1000 + n, "blockTime": 1772366400 + n, "meta": meta, "transaction": {
                "signatures": [f"sig{n}"], "message": {"accountKeys": [
                    {"pubkey": SOL_OTHER, "signer": True, "writable": True},
                    {"pubkey": SOL_WALLET, "signer": False, "writable": True}]}}}}


def fireblocks_tx(n: int, net: Any, when: datetime) -> dict[str, Any]:
    # GET /v1/transactions: amounts as decimal strings in amountInfo (the numeric ``amount`` is a float, unused)
    return {"id": f"fb{n}", "status": "COMPLETED", "assetId": "BTC", "amountInfo": {"netAmount": net},
            "source": {"type": "EXTERNAL_WALLET", "id": ""}, "destination": {"type": "VAULT_ACCOUNT", "id": "0"},
            "txHash": f"fbtx{n}", "createdAt": int(when.timestamp() * 1000)}


@dataclass(frozen=True)
class Case:
    source: str
    stream: str
    account: str
    good: list[tuple[str, datetime, Any]]  # (source_raw_id, when, payload)
    bad: tuple[str, datetime, Any]
    fixed: Any  # a new version of the bad record
    field: str


CASES = {
    "evm": Case("evm", "evm_transactions", f"ethereum:{W}",
                [("t1", at(D1, 9), evm_tx(1, X, W, 2 * 10 ** 18)), ("t2", at(D2, 9), evm_tx(2, X, W, 10 ** 18))],
                ("t3", at(D2, 10), evm_tx(3, W, X, 10 ** 17, gas_used="0xZZ")), evm_tx(3, W, X, 10 ** 17), "gasUsed"),
    "binance": Case("binance", "deposits", "main",
                    [("main|1", at(D1, 9), binance_deposit(1, "0.5", at(D1, 9))),
                     ("main|2", at(D2, 9), binance_deposit(2, "0.25", at(D2, 9)))],
                    ("main|3", at(D2, 10), binance_deposit(3, 0.125, at(D2, 10))),  # a float: not Binance's string
                    binance_deposit(3, "0.125", at(D2, 10)), "amount"),
    "ledger_csv": Case("csv", "ledger", "cold",
                       [("r1", at(D1, 9), ledger_row(1, "1", at(D1, 9))), ("r2", at(D2, 9), ledger_row(2, "2", at(D2, 9)))],
                       ("r3", at(D2, 10), ledger_row(3, "1,5", at(D2, 10))), ledger_row(3, "1.5", at(D2, 10)), "quantity"),
    "exchange_export": Case("binance_export", "transaction_history", "export",
                            [("e1", at(D1, 9), export_row("0.1", at(D1, 9))), ("e2", at(D2, 9), export_row("0.2", at(D2, 9)))],
                            ("e3", at(D2, 10), export_row("0,3", at(D2, 10))), export_row("0.3", at(D2, 10)), "change"),
    "solana": Case("solana", "sol_transactions", f"solana:{SOL_WALLET}",
                   [("s1", at(D1, 9), sol_tx(1, 2_000_000_000)), ("s2", at(D2, 9), sol_tx(2, 1_000_000_000))],
                   ("s3", at(D2, 10), sol_tx(3, 500_000_000, fee=False)), sol_tx(3, 500_000_000), "fee"),
    "fireblocks": Case("fireblocks", "transactions", "custody",
                       [("fb1", at(D1, 9), fireblocks_tx(1, "0.1", at(D1, 9))),
                        ("fb2", at(D2, 9), fireblocks_tx(2, "0.2", at(D2, 9)))],
                       ("fb3", at(D2, 10), fireblocks_tx(3, 0.3, at(D2, 10))), fireblocks_tx(3, "0.3", at(D2, 10)),
                       "amountInfo.netAmount"),
}


def stage(engine, entity_id: int, case: Case, records: list[tuple[str, datetime, Any]]) -> None:
    with engine.begin() as conn:
        run = start_run(conn, entity_id, case.source, case.stream)
        write_raw_records(conn, entity_id, case.source, case.stream,
                          [RawRecordIn(case.account, raw_id, when, payload) for raw_id, when, payload in records], run)


def closes(engine, entity_id: int) -> dict[date, sa.Row]:
    with engine.connect() as conn:
        return {r.date: r for r in conn.execute(sa.text(
            "SELECT date, status, message, legs FROM closes WHERE entity_id = :e ORDER BY date"), dict(e=entity_id))}


def booked(engine, entity_id: int) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            """SELECT DISTINCT r.source_raw_id FROM transactions t JOIN raw_records r ON r.id = t.raw_record_id
               WHERE t.entity_id = :e"""), dict(e=entity_id)).scalars())


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_malformed_record_is_quarantined_and_a_corrected_version_clears_it(engine, name: str) -> None:
    case = CASES[name]
    entity_name = f"quarantine-{name}"
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, entity_name)
    price_known_assets(engine, entity_name, D1 - timedelta(days=1))
    stage(engine, entity.id, case, [*case.good, case.bad])

    assert close_days([entity_name], D1, D2, instance=dg.DagsterInstance.ephemeral()).success
    days = closes(engine, entity.id)
    assert days[D1].status == "closed", days[D1].message
    assert days[D2].status == "partial"
    bad_id = case.bad[0]
    assert f"quarantined: {case.source}/{case.stream} record {bad_id}" in days[D2].message
    assert f"field {case.field}" in days[D2].message
    assert booked(engine, entity.id) == {raw_id for raw_id, _, _ in case.good}  # the rest of the entity is booked
    with engine.connect() as conn:
        [item] = list_quarantined(conn, entity.id)
        assert (item.source, item.stream, item.source_raw_id, item.close_date, item.field) == (
            case.source, case.stream, bad_id, D2, case.field)
        assert conn.execute(sa.text("SELECT payload FROM raw_records WHERE id = :i"),
                            dict(i=item.raw_record_id)).scalar_one() == case.bad[2]  # the record itself, kept
        with pytest.raises(PeriodError, match="is partial"):
            lock_period(conn, entity, Period("day", D2, D2), by="tester", reason="must refuse")

    stage(engine, entity.id, case, [(bad_id, case.bad[1], case.fixed)])  # the source sends a corrected version
    assert close_days([entity_name], D1, D2, instance=dg.DagsterInstance.ephemeral()).success
    days = closes(engine, entity.id)
    assert days[D2].status == "closed", days[D2].message
    assert booked(engine, entity.id) == {raw_id for raw_id, _, _ in [*case.good, case.bad]}
    with engine.connect() as conn:
        assert list_quarantined(conn, entity.id) == []


def test_a_mapper_fix_clears_the_quarantine_without_a_new_version(engine) -> None:
    """The record stays the same; the mapper learns to read it (here: a test mapper switched by a flag)."""
    from decimal import Decimal

    from transforms.ledger_mapping import LegDraft
    from transforms.mappers import RecordError, StagedRecord, register_mapper

    fixed = {"on": False}

    def mapper(record: StagedRecord) -> list[LegDraft]:
        amount = record.payload["amount"]
        if not fixed["on"] and "," in amount:
            raise RecordError(f"toy record {record.source_raw_id}: field 'amount' is {amount!r}", field="amount")
        return [LegDraft(0, record.account, "spot", "", "BTC", Decimal(amount.replace(",", ".")), "deposit", None,
                         None, None)]

    register_mapper("toyfix", "moves", mapper)
    case = Case("toyfix", "moves", "toy", [("a", at(D2, 9), {"amount": "1"})], ("b", at(D2, 10), {"amount": "0,5"}),
                None, "amount")
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "quarantine-fix")
    price_known_assets(engine, "quarantine-fix", D1 - timedelta(days=1))
    stage(engine, entity.id, case, [*case.good, case.bad])
    assert close_days(["quarantine-fix"], D2, D2, instance=dg.DagsterInstance.ephemeral()).success
    assert closes(engine, entity.id)[D2].status == "partial"
    fixed["on"] = True
    assert close_days(["quarantine-fix"], D2, D2, instance=dg.DagsterInstance.ephemeral()).success
    assert closes(engine, entity.id)[D2].status == "closed"
    assert booked(engine, entity.id) == {"a", "b"}
