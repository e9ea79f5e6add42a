"""A generated Fireblocks workspace history: three vault accounts holding BTC, ETH and USDC (an ERC-20 whose network
fee is paid in ETH), deposits from outside, withdrawals with network fees, vault-to-vault transfers, and a few
transactions that never completed (rejected, failed) and so move nothing.

Transactions are shaped as Fireblocks' ``TransactionResponse`` (``amountInfo``/``feeInfo`` as decimal strings,
plus the deprecated numeric ``amount``/``fee``/``networkFee`` that Fireblocks still serves as floats);
``balances`` is each vault's final ``total`` per asset.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

VAULTS = {"0": "Treasury", "1": "Trading", "2": "Payments"}
FEES = {"BTC": ("BTC", Decimal("0.00002140")), "ETH": ("ETH", Decimal("0.000441")), "USDC": ("ETH", Decimal("0.000917"))}
DECIMALS = {"BTC": 8, "ETH": 8, "USDC": 6}


def text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass
class FireblocksHistory:
    start: date
    end: date
    transactions: list[dict] = field(default_factory=list)  # by createdAt
    balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # vault id -> asset -> total


def generate_history(start: date = date(2026, 1, 1), end: date = date(2026, 3, 31), *, seed: int = 5) -> FireblocksHistory:
    rng = random.Random(seed)
    history = FireblocksHistory(start, end)
    held: dict[str, dict[str, Decimal]] = {v: defaultdict(Decimal) for v in VAULTS}

    def peer(kind: str, vault: str | None = None) -> dict:
        if kind == "VAULT_ACCOUNT":
            return {"type": kind, "id": vault, "name": VAULTS[vault], "subType": ""}
        return {"type": kind, "id": "" if kind == "UNKNOWN" else str(uuid.UUID(int=rng.getrandbits(128))),
                "name": "External", "subType": ""}

    def transaction(when: datetime, asset: str, amount: Decimal, source: dict, destination: dict, *,
                    status: str = "COMPLETED", fee: Decimal = Decimal(0)) -> None:
        created = int(when.timestamp() * 1000)
        fee_currency = FEES[asset][0]
        history.transactions.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128))), "externalTxId": None, "status": status,
            "subStatus": "CONFIRMED" if status == "COMPLETED" else "REJECTED_BY_USER", "txHash": f"0x{rng.getrandbits(256):064x}",
            "operation": "TRANSFER", "note": "", "assetId": asset, "source": source, "sourceAddress": "",
            "destination": destination, "destinationAddress": f"0x{rng.getrandbits(160):040x}", "destinationTag": "",
            "amountInfo": {"amount": text(amount), "requestedAmount": text(amount), "netAmount": text(amount),
                           "amountUSD": None},
            "treatAsGrossAmount": False,
            "feeInfo": {"networkFee": text(fee), "serviceFee": "0", "gasPrice": "21.3" if fee_currency == "ETH" else None},
            "feeCurrency": fee_currency, "createdAt": created, "lastUpdated": created + 95_000, "createdBy": "api-user",
            "signedBy": [], "rejectedBy": "", "numOfConfirmations": 6 if status == "COMPLETED" else 0,
            # deprecated numeric fields, still served as JSON numbers (floats): never read
            "amount": float(amount), "netAmount": float(amount), "fee": float(fee), "networkFee": float(fee),
            "requestedAmount": float(amount)})

    day = start
    while day <= end:
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        slots = iter(sorted(rng.sample(range(60, 86_000), 12)))

        def at() -> datetime:
            return midnight + timedelta(seconds=next(slots), milliseconds=rng.randint(0, 999))

        if day == start:
            for asset, amount in (("BTC", Decimal("12.5")), ("ETH", Decimal("300")), ("USDC", Decimal("2500000"))):
                transaction(at(), asset, amount, peer("EXTERNAL_WALLET"), peer("VAULT_ACCOUNT", "0"))
                held["0"][asset] += amount
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(("deposit", "withdrawal", "internal", "internal"))
            asset = rng.choice(sorted(FEES))
            q = Decimal(1).scaleb(-DECIMALS[asset])
            fee_asset, fee = FEES[asset]
            if kind == "deposit":
                amount = (Decimal(rng.randint(1, 1000)) / 100 * (10_000 if asset == "USDC" else 1)).quantize(q)
                vault = rng.choice(sorted(VAULTS))
                transaction(at(), asset, amount, peer(rng.choice(("EXTERNAL_WALLET", "UNKNOWN"))), peer("VAULT_ACCOUNT", vault))
                held[vault][asset] += amount
                continue
            vault = rng.choice([v for v in VAULTS if held[v][asset] > 0 and held[v][fee_asset] > fee * 10] or ["0"])
            amount = (held[vault][asset] * Decimal(rng.randint(1, 20)) / 100).quantize(q)
            if amount <= 0 or held[vault][fee_asset] - (amount if fee_asset == asset else 0) < fee * 2:
                continue
            if rng.random() < 0.08:  # rejected or failed: nothing moves
                transaction(at(), asset, amount, peer("VAULT_ACCOUNT", vault), peer("ONE_TIME_ADDRESS"),
                            status=rng.choice(("REJECTED", "FAILED")), fee=Decimal(0))
                continue
            if kind == "withdrawal":
                destination = peer(rng.choice(("EXTERNAL_WALLET", "ONE_TIME_ADDRESS")))
            else:
                target = rng.choice([v for v in VAULTS if v != vault])
                destination = peer("VAULT_ACCOUNT", target)
                held[target][asset] += amount
            transaction(at(), asset, amount, peer("VAULT_ACCOUNT", vault), destination, fee=fee)
            held[vault][asset] -= amount
            held[vault][fee_asset] -= fee
            assert held[vault][asset] >= 0 and held[vault][fee_asset] >= 0
        day += timedelta(days=1)
    history.balances = {v: dict(assets) for v, assets in held.items()}
    return history
