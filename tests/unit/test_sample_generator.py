"""Invariants of samples/generate.py (no database).

The checks re-derive every ledger leg from the CSV text with a small independent helper and
compare it with the balances CSV.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from collections import Counter, defaultdict
from datetime import datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "samples" / "generate.py"
BUNDLED = ROOT / "samples" / "fund"

LEDGER_HEADER = [
    "id", "timestamp", "action", "asset", "quantity", "unit_price_usd", "fee_asset", "fee_amount",
    "quote_asset", "quote_quantity", "account", "tx_hash", "external_id", "notes",
]
BALANCE_HEADER = ["timestamp", "account", "account_type", "sub_account", "asset", "quantity"]
DECIMALS = {"BTC": 8, "ETH": 18, "SOL": 9, "USDC": 6, "USD": 2}
GENERATED_MAX_DP = {"BTC": 8, "ETH": 8, "SOL": 9, "USDC": 6, "USD": 2}
NUMBER = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ACCOUNT_TYPES = {"spot", "margin", "futures", "funding", "wallet", "vault"}
PLUS = {"BUY", "TRANSFER_IN", "INCOME", "STAKING_REWARD", "AIRDROP"}
MINUS = {"SELL", "TRANSFER_OUT", "FEE"}
PRICED = {"BUY", "SELL", "INCOME", "STAKING_REWARD", "AIRDROP"}


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("coinfrs_sample_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample(gen, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    summary = gen.generate_sample(out)
    return out, summary


# --------------------------------------------------------------------------- helpers


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [dict(zip(header, line)) for line in reader]


def parse_ts(text: str) -> datetime:
    assert TS.match(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def dec(text: str) -> Decimal:
    assert NUMBER.match(text), f"not a plain decimal: {text!r}"
    return Decimal(text)


def legs(row: dict[str, str]) -> list[tuple[str, Decimal]]:
    """(asset, signed change) of row['account'] for one ledger row, from the CSV text."""
    action, asset, qty = row["action"], row["asset"], dec(row["quantity"])
    out = []
    if action in ("BUY", "SELL"):
        sign = Decimal(1) if action == "BUY" else Decimal(-1)
        out.append((asset, sign * qty))
        if row["quote_asset"] or row["quote_quantity"]:
            out.append((row["quote_asset"], -sign * dec(row["quote_quantity"])))
        else:
            out.append(("USD", -sign * qty * dec(row["unit_price_usd"])))
    elif action in PLUS:
        out.append((asset, qty))
    elif action in MINUS:
        out.append((asset, -qty))
    else:
        raise AssertionError(f"unknown action {action}")
    if row["fee_amount"]:
        out.append((row["fee_asset"], -dec(row["fee_amount"])))
    return out


def cutoff_of(ts: datetime) -> datetime:
    """The balance snapshot a leg belongs to: the next midnight (a leg at midnight is the day before)."""
    if ts.time() == time(0, 0):
        return ts
    return datetime.combine(ts.date() + timedelta(days=1), time(0, 0), tzinfo=timezone.utc)


def day_over_day_breaks(ledger, balances) -> dict[tuple[str, str, str], Decimal]:
    """{(date, account, asset): reported - expected} for every failing (account, asset, day).

    Also asserts that each (account, asset) has one balance row per day, without gaps, up to
    the last cutoff, and that every ledger leg falls in a reported (account, asset).
    """
    day_legs: defaultdict[tuple[str, str], defaultdict[datetime, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in ledger:
        cutoff = cutoff_of(parse_ts(row["timestamp"]))
        for asset, delta in legs(row):
            day_legs[(row["account"], asset)][cutoff] += delta
    reported: defaultdict[tuple[str, str], dict[datetime, Decimal]] = defaultdict(dict)
    for b in balances:
        key = (b["account"], b["asset"])
        ts = parse_ts(b["timestamp"])
        assert ts.time() == time(0, 0)
        assert ts not in reported[key], f"duplicate balance row {key} {ts}"
        reported[key][ts] = dec(b["quantity"])
    assert set(day_legs) <= set(reported), set(day_legs) - set(reported)
    last = max(ts for series in reported.values() for ts in series)
    breaks = {}
    for key, series in reported.items():
        cutoffs = sorted(series)
        assert cutoffs[-1] == last, key
        for a, b in zip(cutoffs, cutoffs[1:]):
            assert b - a == timedelta(days=1), (key, a, b)
        assert all(c <= last for c in day_legs[key]), f"legs after the last cutoff for {key}"
        prev = None
        for cutoff in cutoffs:
            if prev is None:
                expected = sum((v for c, v in day_legs[key].items() if c <= cutoff), Decimal(0))
            else:
                expected = series[prev] + day_legs[key].get(cutoff, Decimal(0))
            if series[cutoff] != expected:
                day = (cutoff - timedelta(days=1)).date().isoformat()
                breaks[(day, key[0], key[1])] = series[cutoff] - expected
            prev = cutoff
    return breaks


def running_minimum(ledger) -> dict[tuple[str, str], Decimal]:
    """Lowest running balance per (account, asset) replaying the ledger in id order."""
    bal: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    low: dict[tuple[str, str], Decimal] = {}
    for row in ledger:
        net: defaultdict[str, Decimal] = defaultdict(Decimal)
        for asset, delta in legs(row):
            net[asset] += delta
        for asset, delta in net.items():
            key = (row["account"], asset)
            bal[key] += delta
            low[key] = min(low.get(key, bal[key]), bal[key])
    return low


def check_rows(ledger, balances) -> None:
    """Format rules shared by the sample and the bench data."""
    ids = [r["id"] for r in ledger]
    assert len(ids) == len(set(ids)), "duplicate ids"
    stamps = [parse_ts(r["timestamp"]) for r in ledger]
    assert stamps == sorted(stamps), "ledger not in time order"
    for row, ts in zip(ledger, stamps):
        assert ts.time() != time(0, 0), f"leg at midnight: {row['id']}"
        action, asset = row["action"], row["asset"]
        assert asset in DECIMALS, row
        qty = dec(row["quantity"])
        assert qty > 0, row
        assert -qty.as_tuple().exponent <= GENERATED_MAX_DP[asset], row
        if action in PRICED:
            price = dec(row["unit_price_usd"])
            assert price > 0
            assert -price.as_tuple().exponent <= (4 if asset == "USDC" else 2), row
        else:
            assert row["unit_price_usd"] == "", row
        assert bool(row["fee_asset"]) == bool(row["fee_amount"]), row
        if row["fee_amount"]:
            fee = dec(row["fee_amount"])
            assert fee > 0 and -fee.as_tuple().exponent <= DECIMALS[row["fee_asset"]], row
        assert bool(row["quote_asset"]) == bool(row["quote_quantity"]), row
        if action in ("BUY", "SELL"):
            price = dec(row["unit_price_usd"])
            if row["quote_asset"]:
                check_quote(row, qty, price)
            else:  # implicit USD leg must be a whole number of cents
                assert -(qty * price).normalize().as_tuple().exponent <= 2, row
        else:
            assert not row["quote_asset"], row
        if action in ("TRANSFER_IN", "TRANSFER_OUT"):
            assert re.fullmatch(r"0x[0-9a-f]{64}", row["tx_hash"]), row
        if action == "TRANSFER_IN":
            assert not row["fee_amount"], row
    for b in balances:
        assert b["account_type"] in ACCOUNT_TYPES
        assert dec(b["quantity"]) >= 0, b
        assert -dec(b["quantity"]).as_tuple().exponent <= DECIMALS[b["asset"]], b


def check_quote(row, qty: Decimal, price: Decimal) -> None:
    quote = row["quote_asset"]
    qq = dec(row["quote_quantity"])
    assert quote in ("USD", "USDC"), row
    if quote == "USD":
        assert qq == (qty * price).quantize(Decimal(1).scaleb(-2), rounding=ROUND_HALF_EVEN), row
    else:
        m = re.search(r"USDC/USD (\d+(\.\d+)?)", row["notes"])
        assert m, row
        usdc = Decimal(m.group(1))
        assert Decimal("0.9998") <= usdc <= Decimal("1.0002")
        assert qq == (qty * price / usdc).quantize(Decimal(1).scaleb(-6), rounding=ROUND_HALF_EVEN), row


def check_transfers(ledger) -> int:
    by_hash = defaultdict(list)
    for row in ledger:
        if row["action"] in ("TRANSFER_IN", "TRANSFER_OUT"):
            by_hash[row["tx_hash"]].append(row)
    for txh, rows in by_hash.items():
        assert sorted(r["action"] for r in rows) == ["TRANSFER_IN", "TRANSFER_OUT"], txh
        out = next(r for r in rows if r["action"] == "TRANSFER_OUT")
        inn = next(r for r in rows if r["action"] == "TRANSFER_IN")
        assert out["account"] != inn["account"]
        assert out["asset"] == inn["asset"] and dec(out["quantity"]) == dec(inn["quantity"])
        assert parse_ts(out["timestamp"]) <= parse_ts(inn["timestamp"])
    return len(by_hash)


# --------------------------------------------------------------------------- the bundled sample


def test_sample_headers_and_formats(sample):
    out, _ = sample
    lh, ledger = read_csv(out / "ledger.csv")
    bh, balances = read_csv(out / "balances.csv")
    assert lh == LEDGER_HEADER
    assert bh == BALANCE_HEADER
    check_rows(ledger, balances)
    assert {b["account"]: b["account_type"] for b in balances} == {
        "Coinbase Prime": "spot", "Kraken": "spot", "Ledger Cold": "wallet", "Solana Staking": "wallet",
    }
    stamps = sorted({b["timestamp"] for b in balances})
    assert stamps[0] == "2026-01-02T00:00:00Z" and stamps[-1] == "2026-03-02T00:00:00Z"
    assert len(stamps) == 60
    assert {r["timestamp"][:10] for r in ledger} <= {
        (datetime(2026, 1, 1) + timedelta(days=i)).date().isoformat() for i in range(60)
    }


def test_sample_size_and_contents(sample):
    out, summary = sample
    _, ledger = read_csv(out / "ledger.csv")
    assert 1900 <= len(ledger) <= 2100
    assert summary["ledger_rows"] == len(ledger)
    actions = Counter(r["action"] for r in ledger)
    assert actions["BUY"] + actions["SELL"] > len(ledger) * 0.8
    assert actions["AIRDROP"] == 1
    assert actions["INCOME"] >= 2
    assert 3 <= actions["FEE"] <= 10
    assert actions["STAKING_REWARD"] >= 40
    assert 35 <= check_transfers(ledger) <= 45
    kraken_quotes = Counter(r["quote_asset"] for r in ledger if r["account"] == "Kraken" and r["action"] in ("BUY", "SELL"))
    assert kraken_quotes["USDC"] > 0 and kraken_quotes["USD"] > 0 and kraken_quotes[""] > 0
    prime = [r for r in ledger if r["account"] == "Coinbase Prime" and r["action"] in ("BUY", "SELL")]
    assert all(r["fee_asset"] in ("", "USD") for r in prime)
    # capital contributions fund the exchanges on day 1
    first = [r for r in ledger if r["action"] == "INCOME" and r["asset"] == "USD"]
    assert {r["account"] for r in first} == {"Coinbase Prime", "Kraken"}
    assert all(r["timestamp"].startswith("2026-01-01") and r["unit_price_usd"] == "1" for r in first)
    staking = {r["account"] for r in ledger if r["action"] == "STAKING_REWARD"}
    assert staking == {"Solana Staking"}


def test_sample_reconciles_except_the_two_breaks(sample):
    out, summary = sample
    _, ledger = read_csv(out / "ledger.csv")
    _, balances = read_csv(out / "balances.csv")
    breaks = day_over_day_breaks(ledger, balances)
    assert set(breaks) == {("2026-01-20", "Kraken", "USD"), ("2026-02-14", "Solana Staking", "SOL")}
    fee_break = breaks[("2026-01-20", "Kraken", "USD")]
    reward_break = breaks[("2026-02-14", "Solana Staking", "SOL")]
    assert fee_break < 0 and reward_break > 0
    b1, b2 = summary["breaks"]
    assert (b1["date"], b1["account"], b1["asset"], b1["difference"]) == ("2026-01-20", "Kraken", "USD", fee_break)
    assert (b2["date"], b2["account"], b2["asset"], b2["difference"]) == ("2026-02-14", "Solana Staking", "SOL", reward_break)
    # the fee break is the fee of one Kraken trade of that day that has no fee in the ledger
    victim = next(r for r in ledger if r["id"] == b1["ledger_row_id"])
    assert victim["account"] == "Kraken" and victim["action"] in ("BUY", "SELL")
    assert victim["timestamp"].startswith("2026-01-20") and victim["fee_amount"] == ""
    # no staking reward in the ledger that day: it is the missing one
    assert not [r for r in ledger if r["action"] == "STAKING_REWARD" and r["timestamp"].startswith("2026-02-14")]
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "northwind" in readme
    for text in ("2026-01-20", "2026-02-14", format(-fee_break, "f"), format(reward_break, "f"), b1["ledger_row_id"]):
        assert text in readme


def test_sample_cumulative_difference_persists(sample):
    """Against the cumulative ledger (not day over day), the breaks persist to the end."""
    out, summary = sample
    _, ledger = read_csv(out / "ledger.csv")
    _, balances = read_csv(out / "balances.csv")
    cum = defaultdict(Decimal)
    for row in ledger:
        for asset, delta in legs(row):
            cum[(row["account"], asset)] += delta
    final = {(b["account"], b["asset"]): dec(b["quantity"]) for b in balances if b["timestamp"] == "2026-03-02T00:00:00Z"}
    diffs = {k: final[k] - cum[k] for k in final if final[k] != cum[k]}
    b1, b2 = summary["breaks"]
    assert diffs == {("Kraken", "USD"): b1["difference"], ("Solana Staking", "SOL"): b2["difference"]}


def test_sample_never_negative(sample):
    out, _ = sample
    _, ledger = read_csv(out / "ledger.csv")
    _, balances = read_csv(out / "balances.csv")
    assert all(dec(b["quantity"]) >= 0 for b in balances)
    low = running_minimum(ledger)
    assert min(low.values()) >= 0, {k: v for k, v in low.items() if v < 0}


def test_sample_is_deterministic(gen, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    gen.generate_sample(a)
    gen.generate_sample(b)
    for name in ("ledger.csv", "balances.csv", "README.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_bundled_sample_is_up_to_date(sample):
    out, _ = sample
    if not (BUNDLED / "ledger.csv").exists():
        pytest.skip("samples/fund not generated")
    for name in ("ledger.csv", "balances.csv", "README.md"):
        assert (BUNDLED / name).read_bytes() == (out / name).read_bytes(), (
            f"samples/fund/{name} is stale: run python samples/generate.py sample --out samples/fund"
        )


# --------------------------------------------------------------------------- the bench generator


@pytest.fixture(scope="module")
def bench(gen, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    summary = gen.generate_bench(out, years=1, rows=500, accounts=3, start="2021-01-01", extra_day=True)
    return out, summary


def test_bench_small_is_consistent(bench):
    out, summary = bench
    lh, ledger = read_csv(out / "ledger.csv")
    bh, balances = read_csv(out / "balances.csv")
    assert lh == LEDGER_HEADER and bh == BALANCE_HEADER
    assert len(ledger) == 500
    assert len({r["account"] for r in ledger} | {b["account"] for b in balances}) == 3
    check_rows(ledger, balances)
    check_transfers(ledger)
    assert day_over_day_breaks(ledger, balances) == {}
    assert min(running_minimum(ledger).values()) >= 0
    stamps = sorted({b["timestamp"] for b in balances})
    assert len(stamps) == 365 == summary["days"]
    assert stamps[-1] == "2022-01-01T00:00:00Z"
    assert all(r["timestamp"] < "2022-01-01" for r in ledger)


def test_bench_extra_day_is_consistent(gen, bench, tmp_path):
    out, _ = bench
    _, ledger = read_csv(out / "ledger.csv")
    _, balances = read_csv(out / "balances.csv")
    eh, extra = read_csv(out / "ledger_extra_day.csv")
    bh, extra_bal = read_csv(out / "balances_extra_day.csv")
    assert eh == LEDGER_HEADER and bh == BALANCE_HEADER
    assert 1 <= len(extra) <= 20
    assert all(r["timestamp"].startswith("2022-01-01") for r in extra)
    assert {b["timestamp"] for b in extra_bal} == {"2022-01-02T00:00:00Z"}
    all_ledger, all_bal = ledger + extra, balances + extra_bal
    check_rows(all_ledger, all_bal)
    assert day_over_day_breaks(all_ledger, all_bal) == {}
    last = {(b["account"], b["asset"]) for b in balances if b["timestamp"] == "2022-01-01T00:00:00Z"}
    assert {(b["account"], b["asset"]) for b in extra_bal} >= last
    # asking for the extra day does not change the main files
    plain = tmp_path / "plain"
    gen.generate_bench(plain, years=1, rows=500, accounts=3, start="2021-01-01")
    for name in ("ledger.csv", "balances.csv"):
        assert (plain / name).read_bytes() == (out / name).read_bytes()
    assert not (plain / "ledger_extra_day.csv").exists()


def test_bench_is_deterministic_and_sized(gen, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    gen.generate_bench(a, years=1, rows=300, accounts=4, start="2024-02-29")
    gen.generate_bench(b, years=1, rows=300, accounts=4, start="2024-02-29")
    for name in ("ledger.csv", "balances.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    _, ledger = read_csv(a / "ledger.csv")
    _, balances = read_csv(a / "balances.csv")
    assert len(ledger) == 300
    assert len({b["account"] for b in balances}) == 4
    assert day_over_day_breaks(ledger, balances) == {}


def test_bench_default_day_count(gen):
    assert (gen._add_years(gen.date(2021, 1, 1), 5) - gen.date(2021, 1, 1)).days == 1826
