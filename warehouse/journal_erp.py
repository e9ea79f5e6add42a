"""Journal-entry import files for ERPs, from the entries of ``warehouse.journal.journal_entries``.

Each format follows the ERP's documented journal import columns (sources in docs/journal.md):

- QuickBooks Online (Import data > Journal entries): Journal No., Journal Date, Account Name, Debits, Credits,
  Description, Name. Lines of one entry share the Journal No.; dates MM/DD/YYYY; the account by its name
  (QuickBooks asks to turn account numbers off for the import); a credit line leaves Debits blank and vice versa.
- Xero (Manual journals > Import): Narration, Date, Description, AccountCode, TaxRate, Amount. Lines of one
  journal share Narration and Date; dates dd/mm/yyyy; the account by its code; Amount positive for a debit,
  negative for a credit; TaxRate is mandatory (a tax-exempt rate name of the organisation, ``--tax-rate``).
- NetSuite (CSV import of journal entries, one file): External ID, Date, Subsidiary, Currency, Memo, and the
  line fields ``Journal Entry - Line: Account``, ``... Debit``, ``... Credit``, ``... Memo``; the External ID
  repeats on every line of an entry (the import's unique identifier); Subsidiary only for OneWorld accounts.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

ERP_FORMATS: dict[str, list[str]] = {
    "quickbooks": ["Journal No.", "Journal Date", "Account Name", "Debits", "Credits", "Description", "Name"],
    "xero": ["Narration", "Date", "Description", "AccountCode", "TaxRate", "Amount"],
    "netsuite": ["External ID", "Date", "Subsidiary", "Currency", "Memo", "Journal Entry - Line: Account",
                 "Journal Entry - Line: Debit", "Journal Entry - Line: Credit", "Journal Entry - Line: Memo"],
}
DEFAULT_XERO_TAX_RATE = "Tax Exempt"


def _describe(line: dict[str, Any]) -> str:
    parts = [line["account_name"]]
    if line.get("asset"):
        parts.append(line["asset"])
    if line.get("ledger_account"):
        parts.append(line["ledger_account"])
    return " · ".join(parts)


def _blank_zero(amount: str) -> str:
    return "" if amount in ("0.00", "0") else amount


def erp_rows(fmt: str, entries: list[dict[str, Any]], *, entity: str, tax_rate: str = DEFAULT_XERO_TAX_RATE,
             subsidiary: str = "") -> list[dict[str, str]]:
    """One row per journal line in the columns of ``fmt`` (quickbooks, xero, netsuite)."""
    if fmt not in ERP_FORMATS:
        raise ValueError(f"unknown ERP format {fmt!r}; allowed: {', '.join(ERP_FORMATS)}")
    rows = []
    for n, entry in enumerate(entries, start=1):
        day = date.fromisoformat(entry["date"])
        memo = f"Coinfrs {entity} {entry['event']} {entry['date']} ({entry['book']} book, {entry['currency']})"
        number = f"CF-{day:%Y%m%d}-{n:04d}"
        for line in entry["lines"]:
            debit, credit = line["debit"], line["credit"]
            if fmt == "quickbooks":
                rows.append({"Journal No.": number, "Journal Date": f"{day:%m/%d/%Y}", "Account Name": line["account_name"],
                             "Debits": _blank_zero(debit), "Credits": _blank_zero(credit),
                             "Description": _describe(line), "Name": ""})
            elif fmt == "xero":
                amount = debit if debit not in ("0.00", "0") else f"-{credit}"
                rows.append({"Narration": f"{memo} {number}", "Date": f"{day:%d/%m/%Y}", "Description": _describe(line),
                             "AccountCode": line["account"], "TaxRate": tax_rate, "Amount": amount})
            else:
                rows.append({"External ID": number, "Date": f"{day:%m/%d/%Y}", "Subsidiary": subsidiary,
                             "Currency": entry["currency"], "Memo": memo, "Journal Entry - Line: Account": line["account"],
                             "Journal Entry - Line: Debit": _blank_zero(debit),
                             "Journal Entry - Line: Credit": _blank_zero(credit),
                             "Journal Entry - Line: Memo": _describe(line)})
    return rows


def erp_csv(fmt: str, entries: list[dict[str, Any]], **kw: Any) -> str:
    """The import file of ``fmt`` as CSV text (header row first, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ERP_FORMATS[fmt] if fmt in ERP_FORMATS else [], lineterminator="\r\n")
    rows = erp_rows(fmt, entries, **kw)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
