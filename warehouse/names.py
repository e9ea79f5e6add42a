"""Display names of accounts and assets, for messages, metadata tables and reports."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.schema import accounts, assets


@dataclass(frozen=True)
class Names:
    accounts: dict[int, str]
    assets: dict[int, str]

    def account(self, account_id: int) -> str:
        return self.accounts.get(account_id, f"account {account_id}")

    def asset(self, asset_id: int) -> str:
        return self.assets.get(asset_id, f"asset {asset_id}")


def load_names(conn: Connection, entity_id: int) -> Names:
    account_rows = conn.execute(sa.select(accounts.c.id, accounts.c.name, accounts.c.account_type, accounts.c.sub_account)
                                .where(accounts.c.entity_id == entity_id)).all()
    labels = {}
    for r in account_rows:
        label = r.name if r.account_type == "wallet" else f"{r.name} ({r.account_type})"
        labels[r.id] = f"{label} / {r.sub_account}" if r.sub_account else label
    return Names(labels, dict(conn.execute(sa.select(assets.c.id, assets.c.symbol)).all()))
