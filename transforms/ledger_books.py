"""Ledger CSV files -> engine legs, in memory (no database): for what-if work on a file and the
``coinfrs pnl compute`` command.

The same parser and mapping as the import (``ingestion.csv_files.read_ledger_csv``,
``transforms.ledger_mapping.map_ledger_record``), and the same transfer matcher as the canonical
build (``transforms.transfer_matching``: by tx hash, then asset, amount less the fee and time window).
Close days are UTC days (``--timezone`` only interprets naive timestamps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timezone

from ingestion.csv_files import DEFAULT_ACCOUNT_TYPE, CsvFile, read_ledger_csv
from transforms.asset_registry import KNOWN_ASSETS
from transforms.cost_basis import PnlLeg
from transforms.events import STABLECOINS
from transforms.ledger_mapping import USD, leg_id, map_ledger_record
from transforms.transfer_matching import (OUT_KINDS, TRANSFER_KINDS, TransferLeg, TransferMatching, TransferPolicy,
                                         fee_of, match_transfers)
from warehouse.calendar import close_date_of
from warehouse.numbers import ZERO

UTC = timezone.utc


@dataclass(frozen=True)
class LedgerLegs:
    legs: list[PnlLeg]
    accounts: dict[int, str]
    assets: dict[int, str]
    transfers: TransferMatching  # the matcher's pairs and unmatched legs, by leg id


def map_ledger_files(files: Sequence[CsvFile], *, naive_timezone: str | None = None,
                     transfer_policy: TransferPolicy = TransferPolicy()) -> LedgerLegs:
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
    legs, transfers = match_ledger_transfers(legs, tx_hashes, transfer_policy)
    names = {v: f"{n}" + (f" ({t})" if t != DEFAULT_ACCOUNT_TYPE else "") + (f"/{s}" if s else "")
             for (n, t, s), v in account_ids.items()}
    return LedgerLegs(legs, names, {v: k for k, v in asset_ids.items()}, transfers)


def match_ledger_transfers(legs: list[PnlLeg], tx_hashes: dict[int, str],
                           policy: TransferPolicy = TransferPolicy()) -> tuple[list[PnlLeg], TransferMatching]:
    """Set each transfer leg's status (and the receiving account of a matched out-leg) by the one matcher
    (``transforms.transfer_matching``), as the canonical build does."""
    fees = fee_of((l.group_id, l.account_id, l.asset_id, l.kind, l.quantity) for l in legs)
    candidates = [TransferLeg(l.id, l.account_id, l.asset_id, l.kind, l.ts, l.quantity, tx_hashes.get(l.id),
                              fees.get((l.group_id, l.account_id, l.asset_id), ZERO) if l.kind in OUT_KINDS else ZERO)
                  for l in legs if l.kind in TRANSFER_KINDS]
    matching = match_transfers(candidates, policy)
    status = matching.status_of()
    account_of = {l.id: l.account_id for l in candidates}
    result = []
    for leg in legs:
        found = status.get(leg.id)
        if found is not None:
            peer = account_of[found[1]] if found[0] == "matched" and leg.kind in OUT_KINDS else None
            leg = replace(leg, transfer_status=found[0], transfer_peer_account_id=peer)
        result.append(leg)
    return result, matching
