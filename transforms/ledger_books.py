"""Ledger CSV files -> engine legs, in memory (no database): for what-if work on a file and the
``coinfrs pnl compute`` command.

The same parser and mapping as the import (``ingestion.csv_files.read_ledger_csv``,
``transforms.ledger_mapping.map_ledger_record``), and the same transfer matching as the canonical
build: a ``transfer_out`` and a ``transfer_in`` of the same tx hash and asset in different accounts
are matched in time order. Close days are UTC days (``--timezone`` only interprets naive timestamps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timezone

from ingestion.csv_files import DEFAULT_ACCOUNT_TYPE, CsvFile, read_ledger_csv
from transforms.asset_registry import KNOWN_ASSETS
from transforms.cost_basis import PnlLeg
from transforms.events import STABLECOINS
from transforms.ledger_mapping import USD, leg_id, map_ledger_record
from warehouse.calendar import close_date_of

UTC = timezone.utc


@dataclass(frozen=True)
class LedgerLegs:
    legs: list[PnlLeg]
    accounts: dict[int, str]
    assets: dict[int, str]


def map_ledger_files(files: Sequence[CsvFile], *, naive_timezone: str | None = None) -> LedgerLegs:
    """Parse and map ledger CSV files to legs. Raises ``CsvImportError`` naming every bad row and field."""
    account_ids: dict[tuple[str, str, str], int] = {}
    asset_ids: dict[str, int] = {}
    legs: list[PnlLeg] = []
    tx_hashes: dict[int, str] = {}
    record = 0
    for file in files:
        for row in read_ledger_csv(file, naive_timezone=naive_timezone):
            record += 1
            day = close_date_of(row.occurred_at, UTC)
            for draft in map_ledger_record(row.payload):
                account = (draft.account, draft.account_type or DEFAULT_ACCOUNT_TYPE, draft.sub_account)
                account_id = account_ids.setdefault(account, len(account_ids) + 1)
                asset_id = asset_ids.setdefault(draft.asset, len(asset_ids) + 1)
                is_fiat = KNOWN_ASSETS.get(draft.asset, (None, 0, False))[2]
                if draft.tx_hash:
                    tx_hashes[leg_id(record, draft.leg_index)] = draft.tx_hash
                usd_value = draft.usd_value
                if usd_value is None and draft.asset == USD:  # the unit of account is its own value
                    usd_value = abs(draft.quantity)
                legs.append(PnlLeg(leg_id(record, draft.leg_index), row.occurred_at, day, account_id, asset_id, is_fiat,
                                   draft.quantity, draft.kind, f"csv:{draft.group or record}", draft.leg_index,
                                   draft.unit_price_usd, usd_value, None, None,
                                   stablecoin=draft.asset in STABLECOINS))
    legs = match_transfers(legs, tx_hashes)
    names = {v: f"{n}" + (f" ({t})" if t != DEFAULT_ACCOUNT_TYPE else "") + (f"/{s}" if s else "")
             for (n, t, s), v in account_ids.items()}
    return LedgerLegs(legs, names, {v: k for k, v in asset_ids.items()})


def match_transfers(legs: list[PnlLeg], tx_hashes: dict[int, str]) -> list[PnlLeg]:
    """Set transfer status (and the receiving account of a matched out-leg), like the canonical build."""
    outs: dict[tuple[str, int], list[PnlLeg]] = defaultdict(list)
    ins: dict[tuple[str, int], list[PnlLeg]] = defaultdict(list)
    for leg in legs:
        tx = tx_hashes.get(leg.id)
        if leg.kind == "transfer_out" and tx:
            outs[(tx, leg.asset_id)].append(leg)
        elif leg.kind == "transfer_in" and tx:
            ins[(tx, leg.asset_id)].append(leg)
    status: dict[int, tuple[str, int | None]] = {}
    for key, out_legs in outs.items():
        in_legs = sorted(ins.get(key, []), key=lambda l: (l.ts, l.id))
        for n, out in enumerate(sorted(out_legs, key=lambda l: (l.ts, l.id))):
            if n < len(in_legs) and in_legs[n].account_id != out.account_id:
                status[out.id] = ("matched", in_legs[n].account_id)
                status[in_legs[n].id] = ("matched", None)
    result = []
    for leg in legs:
        if leg.kind in ("transfer_out", "transfer_in"):
            found = status.get(leg.id)
            if found:
                leg = replace(leg, transfer_status=found[0], transfer_peer_account_id=found[1])
            else:
                leg = replace(leg, transfer_status="unmatched_out" if leg.kind == "transfer_out" else "unmatched_in")
        result.append(leg)
    return result
