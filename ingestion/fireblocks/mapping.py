"""Pure mapper of staged Fireblocks transactions (``GET /v1/transactions``) to canonical legs.

Each vault account of the workspace is an account of type ``vault`` whose sub-account is the vault account's
id (the account name is the configured source name). Quantities come from Fireblocks' decimal strings
(``amountInfo.netAmount``, ``feeInfo.networkFee``), never from the deprecated numeric ``amount`` / ``fee``
fields, which Fireblocks serves as JSON floats.

Only ``COMPLETED`` transactions move balances. For a completed transaction:
  leg 0  source is a vault:        -netAmount of ``assetId`` (``transfer_out`` to another vault, else ``withdrawal``)
  leg 1  source is a vault:        -networkFee of ``feeCurrency`` (``fee``), when not zero
  leg 2  destination is a vault:   +netAmount (``transfer_in`` from another vault, else ``deposit``)
Without ``treatAsGrossAmount`` the source pays netAmount (= amount) plus the fee; with it, netAmount = amount
minus the fee: both are netAmount + fee leaving the source. Legs of a vault-to-vault transfer share the tx hash
(``txHash``, else ``fireblocks:<id>``), so the internal transfer is matched.
"""

from __future__ import annotations

from transforms.ledger_mapping import LegDraft
from transforms.mappers import RecordError, StagedRecord, register_mapper
from warehouse.numbers import D, ZERO

SOURCE, STREAM, ACCOUNT_TYPE = "fireblocks", "transactions", "vault"
VAULT = "VAULT_ACCOUNT"


class FireblocksRecordError(RecordError):
    """A staged Fireblocks record that cannot be read; the message names the record and the field."""


def _get(record: StagedRecord, path: str, *, required: bool = True) -> object:
    value: object = record.payload
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if required and value in (None, ""):
        raise FireblocksRecordError(f"fireblocks transaction {record.source_raw_id!r}: field {path!r} is missing")
    return value


def _amount(record: StagedRecord, path: str, *, required: bool = True):
    value = _get(record, path, required=required)
    if value in (None, ""):
        return ZERO
    if not isinstance(value, str):
        raise FireblocksRecordError(f"fireblocks transaction {record.source_raw_id!r}: field {path!r} is {value!r}, "
                                    "expected Fireblocks' decimal string")
    try:
        return D(value)
    except ValueError as error:
        raise FireblocksRecordError(f"fireblocks transaction {record.source_raw_id!r}: field {path!r}: {error}") from None


def vault_changes(record: StagedRecord) -> list[LegDraft]:
    """The legs of one transaction (see the module docstring): what it did to each vault."""
    if not isinstance(record.payload, dict):
        raise FireblocksRecordError(f"fireblocks transaction {record.source_raw_id!r}: payload is not an object")
    if _get(record, "status") != "COMPLETED":
        return []
    asset = str(_get(record, "assetId")).upper()
    net = _amount(record, "amountInfo.netAmount")
    fee = _amount(record, "feeInfo.networkFee", required=False)
    fee_asset = str(_get(record, "feeCurrency", required=False) or asset).upper()
    source_type, target_type = _get(record, "source.type"), _get(record, "destination.type")
    tx_hash = str(_get(record, "txHash", required=False) or f"fireblocks:{_get(record, 'id')}")
    legs = []
    if source_type == VAULT:
        vault = str(_get(record, "source.id"))
        legs.append(LegDraft(0, record.account, ACCOUNT_TYPE, vault, asset, -net,
                             "transfer_out" if target_type == VAULT else "withdrawal", None, None, tx_hash))
        if fee != ZERO:
            legs.append(LegDraft(1, record.account, ACCOUNT_TYPE, vault, fee_asset, -fee, "fee", None, None, None))
    if target_type == VAULT:
        vault = str(_get(record, "destination.id"))
        legs.append(LegDraft(2, record.account, ACCOUNT_TYPE, vault, asset, net,
                             "transfer_in" if source_type == VAULT else "deposit", None, None, tx_hash))
    return legs


register_mapper(SOURCE, STREAM, vault_changes)
