"""A generated Binance account history: spot trades, deposits, withdrawals (with fees), universal transfers
between SPOT / MARGIN / USD-M FUTURES / FUNDING, futures income (realized PnL, funding, commission), converts,
dust, cross-margin trades, loans, repayments and interest, sub-accounts of the master account with universal
transfers between master and sub-accounts, and the daily account snapshot of each account type taken from the
same running balances, so the snapshots agree with the history by construction.

Records are shaped as Binance documents them (amounts as exact decimal strings, times in ms). Every event
happens before 23:59:59.000 UTC, the ``updateTime`` of Binance's daily snapshot.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal

Q8 = Decimal("0.00000001")
SYMBOLS = {  # symbol: (base, quote, starting price, price step, quantity step)
    "BTCUSDT": ("BTC", "USDT", Decimal("42000.00"), Decimal("0.01"), Decimal("0.00001")),
    "ETHUSDT": ("ETH", "USDT", Decimal("2400.00"), Decimal("0.01"), Decimal("0.0001")),
    "ETHBTC": ("ETH", "BTC", Decimal("0.057000"), Decimal("0.000001"), Decimal("0.01")),
    "BNBUSDT": ("BNB", "USDT", Decimal("310.0"), Decimal("0.1"), Decimal("0.001")),
}
DUST_RATES = {"XRP": Decimal("0.0019"), "DOGE": Decimal("0.00027")}  # BNB per unit, when small balances become BNB
NETWORK = {"BTC": "BTC", "ETH": "ETH", "USDT": "ETH", "BNB": "BSC", "XRP": "XRP", "DOGE": "DOGE"}


def s8(value: Decimal) -> str:
    return f"{value.quantize(Q8):f}"


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class BinanceHistory:
    start: date
    end: date
    trades: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    deposits: list[dict] = field(default_factory=list)
    withdrawals: list[dict] = field(default_factory=list)
    transfers: list[dict] = field(default_factory=list)
    income: list[dict] = field(default_factory=list)
    converts: list[dict] = field(default_factory=list)
    dust: list[dict] = field(default_factory=list)  # userAssetDribblets
    interest: list[dict] = field(default_factory=list)  # margin interest history
    snapshots: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # SPOT|MARGIN|FUTURES
    balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # final, per account type (MARGIN: free)
    margin_trades: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # /sapi/v1/margin/myTrades
    loans: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # BORROW | REPAY rows
    margin_debt: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # final (borrowed, interest)
    master_email: str = "treasury@northwind.example"
    sub_accounts: list[dict] = field(default_factory=list)  # /sapi/v1/sub-account/list
    sub_transfers: list[dict] = field(default_factory=list)  # /sapi/v1/sub-account/universalTransfer
    sub_balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # final, per sub-account email
    # daily SPOT snapshots of the managed sub-accounts (/sapi/v1/managed-subaccount/accountSnapshot), per email
    sub_snapshots: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    # products (generate_history(products=True)): Simple Earn, ETH staking, asset distributions, fiat, COIN-M, isolated
    earn: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # stream name -> rows
    eth_staking: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # staking | redemption
    dividends: list[dict] = field(default_factory=list)  # /sapi/v1/asset/assetDividend rows
    fiat_orders: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # transactionType "0" | "1"
    fiat_payments: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # transactionType "0" | "1"
    coin_income: list[dict] = field(default_factory=list)  # /dapi/v1/income
    locked_positions: list[dict] = field(default_factory=list)  # /sapi/v1/simple-earn/locked/position, at the end
    isolated_symbol: str = "BTCUSDT"
    isolated_debt: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # final (borrowed, interest)

    @property
    def record_count(self) -> int:
        return (sum(len(t) for t in self.trades.values()) + len(self.deposits) + len(self.withdrawals)
                + len(self.transfers) + len(self.income) + len(self.converts) + len(self.interest)
                + sum(len(d["userAssetDribbletDetails"]) for d in self.dust)
                + sum(len(t) for t in self.margin_trades.values()) + sum(len(r) for r in self.loans.values())
                + len(self.sub_transfers) + sum(len(r) for r in self.earn.values())
                + sum(len(r) for r in self.eth_staking.values()) + len(self.dividends)
                + sum(len(r) for r in self.fiat_orders.values()) + sum(len(r) for r in self.fiat_payments.values())
                + len(self.coin_income))


def generate_history(start: date = date(2026, 1, 1), end: date = date(2026, 3, 31), *, seed: int = 7,
                     trades_per_day: tuple[int, int] = (2, 5), products: bool = False) -> BinanceHistory:
    """A deterministic account history over [start, end] (UTC days). ``products``: also Simple Earn (flexible and
    locked), ETH staking, Launchpool and airdrop distributions, fiat deposits/withdrawals, Buy Crypto, COIN-M
    futures income and isolated margin (drawn from a generator of their own, so the rest is the same either way)."""
    rng = random.Random(seed)
    history = BinanceHistory(start, end)
    wallets: dict[str, dict[str, Decimal]] = {k: defaultdict(Decimal) for k in (
        "SPOT", "MARGIN", "FUTURES", "FUNDING", "EARN", "EARN_LOCKED", "ISOLATED", "CMFUTURES")}
    held: dict[str, set[str]] = {k: set() for k in wallets}
    prng = random.Random(seed + 1_000)  # the products' own draws
    iso_debt: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])  # asset -> [borrowed, interest]
    locked: dict[int, dict] = {}  # open locked positions by positionId
    borrowed: dict[str, Decimal] = defaultdict(Decimal)  # cross-margin liabilities: principal and unpaid interest
    owed_interest: dict[str, Decimal] = defaultdict(Decimal)
    subs = {"ops_virtual@northwind.example": defaultdict(Decimal), "desk_virtual@northwind.example": defaultdict(Decimal)}
    for n, email in enumerate(subs):
        history.sub_accounts.append({"email": email, "isFreeze": False, "createTime": ms(datetime(2025, 6, 1 + n, tzinfo=timezone.utc)),
                                     "isManagedSubAccount": email.startswith("desk"), "isAssetManagementSubAccount": False})
    prices = {s: v[2] for s, v in SYMBOLS.items()}
    ids = {"trade": 10_000, "order": 500_000, "tran": 90_000_000, "dep": 7_000_000}

    def next_id(kind: str) -> int:
        ids[kind] += rng.randint(1, 9)
        return ids[kind]

    def move(account: str, asset: str, amount: Decimal) -> None:
        wallets[account][asset] += amount
        held[account].add(asset)
        assert wallets[account][asset] >= 0, (account, asset, wallets[account][asset])

    day = start
    while day <= end:
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        seconds = sorted(rng.sample(range(60, 86_000), 48))
        slot = iter(seconds)

        def at() -> datetime:
            return midnight + timedelta(seconds=next(slot), milliseconds=rng.randint(0, 998))

        def deposit(coin: str, amount: Decimal) -> None:
            when = at()
            history.deposits.append({
                "id": str(next_id("dep")) + "0" * 6, "amount": s8(amount).rstrip("0").rstrip("."), "coin": coin,
                "network": NETWORK[coin], "status": 1, "address": "0x" + f"{rng.getrandbits(160):040x}",
                "addressTag": "", "txId": "0x" + f"{rng.getrandbits(256):064x}", "insertTime": ms(when),
                "completeTime": ms(when) + 60_000, "transferType": 0, "confirmTimes": "12/12", "unlockConfirm": 0,
                "walletType": 0})
            move("SPOT", coin, amount)

        if day == start:
            deposit("USDT", Decimal("250000"))
            deposit("BTC", Decimal("3.5"))
            deposit("ETH", Decimal("40"))
            deposit("BNB", Decimal("50"))
            deposit("XRP", Decimal("3.5"))
            deposit("DOGE", Decimal("12"))
        # spot trades
        for _ in range(rng.randint(*trades_per_day)):
            symbol = rng.choice(sorted(SYMBOLS))
            base, quote, _, price_step, qty_step = SYMBOLS[symbol]
            drift = Decimal(rng.randint(-150, 150)) / Decimal(10_000)
            price = (prices[symbol] * (1 + drift)).quantize(price_step)
            prices[symbol] = price
            is_buyer = rng.random() < 0.5
            qty = (Decimal(rng.randint(1, 400)) * qty_step * 10).quantize(qty_step)
            quote_qty = price * qty
            paying, paid = (quote, quote_qty) if is_buyer else (base, qty)
            if wallets["SPOT"][paying] < paid * 2:
                is_buyer = not is_buyer
                paying, paid = (quote, quote_qty) if is_buyer else (base, qty)
                if wallets["SPOT"][paying] < paid * 2:
                    continue
            received_asset, received = (base, qty) if is_buyer else (quote, quote_qty)
            if wallets["SPOT"]["BNB"] > Decimal("1") and rng.random() < 0.5:
                commission_asset = "BNB"
                commission = (quote_qty * Decimal("0.00075") / (prices["BNBUSDT"] if quote == "USDT" else Decimal("0.0074")))
            else:
                commission_asset, commission = received_asset, received * Decimal("0.001")
            commission = commission.quantize(Q8, rounding=ROUND_DOWN)
            when = at()
            history.trades[symbol].append({
                "symbol": symbol, "id": next_id("trade"), "orderId": next_id("order"), "orderListId": -1,
                "price": s8(price), "qty": s8(qty), "quoteQty": s8(quote_qty), "commission": s8(commission),
                "commissionAsset": commission_asset, "time": ms(when), "isBuyer": is_buyer,
                "isMaker": rng.random() < 0.4, "isBestMatch": True})
            move("SPOT", paying, -paid)
            move("SPOT", received_asset, received)
            move("SPOT", commission_asset, -commission)
        # occasional deposits and withdrawals
        if day != start and rng.random() < 0.12:
            coin = rng.choice(["USDT", "BTC", "ETH"])
            deposit(coin, {"USDT": Decimal(rng.randint(1000, 20000)), "BTC": Decimal(rng.randint(1, 50)) / 100,
                           "ETH": Decimal(rng.randint(1, 80)) / 10}[coin])
        if rng.random() < 0.1:
            coin = rng.choice(["USDT", "BTC", "ETH"])
            amount = (wallets["SPOT"][coin] * Decimal("0.05")).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
            fee = {"USDT": Decimal("1"), "BTC": Decimal("0.0002"), "ETH": Decimal("0.0012")}[coin]
            if amount > fee:
                when = at()
                history.withdrawals.append({
                    "id": f"{rng.getrandbits(128):032x}", "amount": s8(amount), "transactionFee": s8(fee), "coin": coin,
                    "status": 6, "address": "0x" + f"{rng.getrandbits(160):040x}",
                    "txId": "0x" + f"{rng.getrandbits(256):064x}", "applyTime": when.strftime("%Y-%m-%d %H:%M:%S"),
                    "network": NETWORK[coin], "transferType": 0, "info": "", "confirmNo": 12, "walletType": 0,
                    "txKey": "", "completeTime": (when + timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S")})
                # applyTime has whole seconds: the balance moves at that second
                move("SPOT", coin, -(amount + fee))
        # convert (Binance Convert) and dust to BNB
        if rng.random() < 0.1:
            from_asset, to_asset, ratio = rng.choice([("USDT", "BNB", Decimal("0.00322")), ("ETH", "USDT", Decimal("2391.5")),
                                                      ("BTC", "ETH", Decimal("17.41"))])
            from_amount = (wallets["SPOT"][from_asset] * Decimal("0.02")).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
            if from_amount > 0:
                to_amount = (from_amount * ratio).quantize(Q8, rounding=ROUND_DOWN)
                when = at()
                history.converts.append({
                    "quoteId": f"{rng.getrandbits(128):032x}", "orderId": next_id("order"), "orderStatus": "SUCCESS",
                    "fromAsset": from_asset, "fromAmount": s8(from_amount), "toAsset": to_asset, "toAmount": s8(to_amount),
                    "ratio": f"{ratio:f}", "inverseRatio": f"{(1 / ratio).quantize(Q8)}", "createTime": ms(when)})
                move("SPOT", from_asset, -from_amount)
                move("SPOT", to_asset, to_amount)
        if (day - start).days in (20, 50):
            when = at()
            details, total, charge = [], Decimal(0), Decimal(0)
            for asset, rate in DUST_RATES.items():
                amount = wallets["SPOT"][asset]
                if amount <= 0:
                    continue
                gross = (amount * rate).quantize(Q8, rounding=ROUND_DOWN)
                fee = (gross * Decimal("0.02")).quantize(Q8, rounding=ROUND_DOWN)
                details.append({"transId": next_id("tran"), "serviceChargeAmount": s8(fee), "amount": s8(amount),
                                "operateTime": ms(when), "transferedAmount": s8(gross - fee), "fromAsset": asset})
                total, charge = total + gross - fee, charge + fee
                move("SPOT", asset, -amount)
                move("SPOT", "BNB", gross - fee)
            if details:
                history.dust.append({"operateTime": ms(when), "totalTransferedAmount": s8(total),
                                     "totalServiceChargeAmount": s8(charge), "transId": next_id("tran"),
                                     "userAssetDribbletDetails": details})
            if (day - start).days == 20:
                deposit("XRP", Decimal("2.25"))
        # universal transfers between account types
        def transfer(kind: str, asset: str, amount: Decimal, source: str, target: str) -> None:
            when = at()
            history.transfers.append({"asset": asset, "amount": s8(amount), "type": kind, "status": "CONFIRMED",
                                      "tranId": next_id("tran"), "timestamp": ms(when)})
            move(source, asset, -amount)
            move(target, asset, amount)

        if day == start or rng.random() < 0.15:
            transfer("MAIN_UMFUTURE", "USDT", Decimal(rng.randint(2000, 8000)), "SPOT", "FUTURES")
        if rng.random() < 0.08 and wallets["FUTURES"]["USDT"] > 3000:
            transfer("UMFUTURE_MAIN", "USDT", Decimal(rng.randint(500, 2000)), "FUTURES", "SPOT")
        if day == start or rng.random() < 0.1:
            asset = rng.choice(["USDT", "BTC"])
            amount = Decimal(rng.randint(500, 3000)) if asset == "USDT" else Decimal(rng.randint(1, 20)) / 100
            if wallets["SPOT"][asset] > amount * 3:
                transfer("MAIN_MARGIN", asset, amount, "SPOT", "MARGIN")
        if rng.random() < 0.08:
            asset = rng.choice(["USDT", "BTC"])
            amount = (wallets["MARGIN"][asset] / 3).quantize(Q8, rounding=ROUND_DOWN)
            if amount > 0:
                transfer("MARGIN_MAIN", asset, amount, "MARGIN", "SPOT")
        # cross margin: loans (the borrowed asset lands in the margin wallet, the debt grows), interest accrued on
        # the principal (the debt grows), repayments of the interest and part of the principal, margin trades
        def loan(kind: str, asset: str, principal: Decimal, interest: Decimal) -> None:
            when = at()
            amount = principal + interest
            history.loans[kind].append({"type": "MANUAL", "amount": s8(amount), "asset": asset, "interest": s8(interest),
                                        "principal": s8(principal), "status": "CONFIRMED", "timestamp": ms(when),
                                        "txId": next_id("tran")})
            sign = 1 if kind == "BORROW" else -1
            move("MARGIN", asset, sign * amount)
            borrowed[asset] += sign * principal
            owed_interest[asset] -= interest
            assert borrowed[asset] >= 0 and owed_interest[asset] >= 0

        if wallets["MARGIN"]["USDT"] > 500 and rng.random() < 0.12:
            loan("BORROW", "USDT", Decimal(rng.randint(200, 2000)), Decimal(0))
        if wallets["MARGIN"]["BTC"] > Decimal("0.02") and rng.random() < 0.06:
            loan("BORROW", "BTC", Decimal(rng.randint(1, 5)) / 100, Decimal(0))
        for asset in ("USDT", "BTC"):
            if borrowed[asset] > 0:
                when = at()
                charged = (borrowed[asset] * Decimal("0.00012")).quantize(Q8, rounding=ROUND_DOWN)
                history.interest.append({"txId": next_id("tran"), "interestAccuredTime": ms(when), "asset": asset,
                                         "rawAsset": asset, "principal": s8(borrowed[asset]), "interest": s8(charged),
                                         "interestRate": "0.00012000", "type": "PERIODIC", "isolatedSymbol": ""})
                owed_interest[asset] += charged
            if borrowed[asset] > 0 and rng.random() < 0.1:
                principal = (borrowed[asset] / 2).quantize(Q8, rounding=ROUND_DOWN)
                if wallets["MARGIN"][asset] >= principal + owed_interest[asset]:
                    loan("REPAY", asset, principal, owed_interest[asset])
        if rng.random() < 0.35 and wallets["MARGIN"]["USDT"] > 0:
            price = prices["BTCUSDT"]
            is_buyer = rng.random() < 0.5
            qty = Decimal(rng.randint(1, 40)) * Decimal("0.0001")
            paying, paid = ("USDT", price * qty) if is_buyer else ("BTC", qty)
            if wallets["MARGIN"][paying] >= paid:
                received_asset, received = ("BTC", qty) if is_buyer else ("USDT", price * qty)
                commission = (received * Decimal("0.001")).quantize(Q8, rounding=ROUND_DOWN)
                when = at()
                history.margin_trades["BTCUSDT"].append({
                    "commission": s8(commission), "commissionAsset": received_asset, "id": next_id("trade"),
                    "isBestMatch": True, "isBuyer": is_buyer, "isMaker": rng.random() < 0.4, "orderId": next_id("order"),
                    "price": s8(price), "qty": s8(qty), "symbol": "BTCUSDT", "isIsolated": False, "time": ms(when)})
                move("MARGIN", paying, -paid)
                move("MARGIN", received_asset, received - commission)
        # the funding wallet (Binance's "Funding" account)
        if rng.random() < 0.08 and wallets["SPOT"]["USDT"] > 5000:
            transfer("MAIN_FUNDING", "USDT", Decimal(rng.randint(100, 1500)), "SPOT", "FUNDING")
        if rng.random() < 0.05 and wallets["FUNDING"]["USDT"] > 10:
            transfer("FUNDING_MAIN", "USDT", (wallets["FUNDING"]["USDT"] / 2).quantize(Q8, rounding=ROUND_DOWN),
                     "FUNDING", "SPOT")

        # sub-accounts of the master account: universal transfers between master and sub-accounts
        def sub_transfer(asset: str, amount: Decimal, source: tuple[str, str], target: tuple[str, str]) -> None:
            when = at()
            history.sub_transfers.append({
                "tranId": next_id("tran"), "fromEmail": source[0], "toEmail": target[0], "asset": asset,
                "amount": s8(amount).rstrip("0").rstrip("."), "createTimeStamp": ms(when), "fromAccountType": source[1],
                "toAccountType": target[1], "status": "SUCCESS", "clientTranId": ""})
            for (email, kind), sign in ((source, -1), (target, 1)):
                if email == history.master_email:
                    move({"SPOT": "SPOT", "USDT_FUTURE": "FUTURES"}[kind], asset, sign * amount)
                else:
                    subs[email][asset] += sign * amount
                    assert subs[email][asset] >= 0

        ops, desk = list(subs)
        master = history.master_email
        if day == start:
            sub_transfer("USDT", Decimal("5000"), (master, "SPOT"), (ops, "SPOT"))
            sub_transfer("BTC", Decimal("0.25"), (master, "SPOT"), (desk, "SPOT"))
        if rng.random() < 0.08:
            sub_transfer("USDT", Decimal(rng.randint(100, 900)), (master, "SPOT"), (ops, "SPOT"))
        if rng.random() < 0.05 and wallets["FUTURES"]["USDT"] > 3000:
            sub_transfer("USDT", Decimal(rng.randint(100, 500)), (master, "USDT_FUTURE"), (desk, "SPOT"))
        if rng.random() < 0.06 and subs[ops]["USDT"] > 200:
            sub_transfer("USDT", (subs[ops]["USDT"] / 4).quantize(Decimal("0.01"), rounding=ROUND_DOWN), (ops, "SPOT"),
                         (master, "SPOT"))
        if rng.random() < 0.05 and subs[desk]["BTC"] > Decimal("0.01"):
            sub_transfer("BTC", Decimal("0.005"), (desk, "SPOT"), (ops, "SPOT"))
        # futures income: funding every day with a position, realized PnL and commission on some days
        if wallets["FUTURES"]["USDT"] > 0:
            def income(kind: str, amount: Decimal, trade_id: str = "") -> None:
                when = at()
                history.income.append({"symbol": "BTCUSDT", "incomeType": kind, "income": s8(amount), "asset": "USDT",
                                       "info": kind, "time": ms(when), "tranId": next_id("tran"), "tradeId": trade_id})
                move("FUTURES", "USDT", amount)

            income("FUNDING_FEE", Decimal(rng.randint(-4000, 2500)) / 1000)
            if rng.random() < 0.4:
                trade_id = str(next_id("trade"))
                pnl = Decimal(rng.randint(-150_000, 200_000)) / 1000
                if wallets["FUTURES"]["USDT"] + pnl > 100:
                    income("REALIZED_PNL", pnl, trade_id)
                income("COMMISSION", -Decimal(rng.randint(100, 9000)) / 10_000, trade_id)
        if products:
            _products_day(history, day, midnight, prng, wallets, move, next_id, iso_debt, locked, prices)
        # the day's snapshots, at 23:59:59.000
        update = ms(midnight + timedelta(days=1)) - 1000
        for sub in history.sub_accounts:
            if sub["isManagedSubAccount"]:
                history.sub_snapshots[sub["email"]].append({"type": "spot", "updateTime": update, "data": {
                    "totalAssetOfBtc": "0", "balances": [{"asset": a, "free": s8(v), "locked": "0.00000000"}
                                                         for a, v in sorted(subs[sub["email"]].items())]}})
        history.snapshots["SPOT"].append({"type": "spot", "updateTime": update, "data": {
            "totalAssetOfBtc": "0", "balances": [
                {"asset": a, "free": s8(wallets["SPOT"][a]), "locked": "0.00000000"} for a in sorted(held["SPOT"])] + [
                {"asset": "LD" + a, "free": s8(wallets["EARN"][a]), "locked": "0.00000000"} for a in sorted(held["EARN"])]}})
        history.snapshots["MARGIN"].append({"type": "margin", "updateTime": update, "data": {
            "marginLevel": "999.00000000", "totalAssetOfBtc": "0", "totalLiabilityOfBtc": "0", "totalNetAssetOfBtc": "0",
            "userAssets": margin_assets(wallets["MARGIN"], borrowed, owed_interest, held["MARGIN"])}})
        history.snapshots["FUTURES"].append({"type": "futures", "updateTime": update, "data": {
            "assets": [{"asset": a, "marginBalance": s8(wallets["FUTURES"][a]), "walletBalance": s8(wallets["FUTURES"][a])}
                       for a in sorted(held["FUTURES"])], "position": []}})
        day += timedelta(days=1)
    history.balances = {k: {a: v[a] for a in sorted(held[k])} for k, v in wallets.items()}
    history.margin_debt = {a: (borrowed[a], owed_interest[a]) for a in sorted(set(borrowed) | set(owed_interest))}
    history.balances["SPOT"].update({"LD" + a: v for a, v in history.balances.pop("EARN").items()})  # as /api/v3/account
    history.isolated_debt = {a: (b, i) for a, (b, i) in sorted(iso_debt.items())}
    history.locked_positions = [p for _, p in sorted(locked.items())]
    history.sub_balances = {email: {a: v for a, v in sorted(held_.items())} for email, held_ in subs.items()}
    for records in history.trades.values():
        records.sort(key=lambda t: t["id"])
    for stream in (history.deposits, history.transfers, history.income):
        stream.sort(key=lambda r: r.get("insertTime") or r.get("timestamp") or r.get("time"))
    return history


def margin_assets(free: dict[str, Decimal], borrowed: dict[str, Decimal], interest: dict[str, Decimal],
                  held: set[str]) -> list[dict]:
    """Binance's ``userAssets`` of a cross-margin account: netAsset = free + locked - borrowed - interest."""
    return [{"asset": a, "borrowed": s8(borrowed.get(a, Decimal(0))), "free": s8(free.get(a, Decimal(0))),
             "interest": s8(interest.get(a, Decimal(0))), "locked": "0.00000000",
             "netAsset": s8(free.get(a, Decimal(0)) - borrowed.get(a, Decimal(0)) - interest.get(a, Decimal(0)))}
            for a in sorted(held | {a for a, v in borrowed.items() if v} | {a for a, v in interest.items() if v})]


def _products_day(history: BinanceHistory, day: date, midnight: datetime, rng: random.Random, wallets, move, next_id,
                  iso_debt, locked: dict[int, dict], prices: dict[str, Decimal]) -> None:
    """One day of Simple Earn, ETH staking, distributions, fiat, Buy Crypto, COIN-M futures and isolated margin.
    Records are shaped as Binance documents them (developers.binance.com: Simple Earn "History", Staking "ETH Staking",
    Wallet "Asset Dividend Record", Fiat "Get Fiat Deposit/Withdraw History" and "Get Fiat Payments History",
    COIN-M Futures "Get Income History", Margin "Query borrow/repay records", "Get Interest History", "Query Margin
    Account's Trade List", "Query Isolated Margin Account Info"); amounts are strings, times integers in ms."""
    n = (day - history.start).days
    times = iter(sorted(rng.sample(range(60, 86_000), 24)))

    def when() -> int:
        return ms(midnight + timedelta(seconds=next(times), milliseconds=rng.randint(0, 998)))

    def transfer(kind: str, asset: str, amount: Decimal, source: str, target: str, **symbols: str) -> None:
        history.transfers.append({"asset": asset, "amount": s8(amount), "type": kind, "status": "CONFIRMED",
                                  "tranId": next_id("tran"), "timestamp": when(), **symbols})
        move(source, asset, -amount)
        move(target, asset, amount)

    earn = history.earn
    # Simple Earn flexible: subscriptions from spot (and funding), rewards compounded daily, redemptions to spot
    if n == 0 or rng.random() < 0.1:
        amount = Decimal(rng.randint(500, 3000))
        from_funding = min(wallets["FUNDING"]["USDT"], Decimal(rng.randint(0, 200)))
        source = "SPOTANDFUNDING" if from_funding > 0 else "SPOT"
        row = {"amount": s8(amount), "asset": "USDT", "time": when(), "purchaseId": next_id("tran"),
               "productId": "USDT001", "type": rng.choice(["NORMAL", "AUTO"]), "sourceAccount": source,
               "status": "SUCCESS"}
        if source == "SPOTANDFUNDING":
            row |= {"amtFromSpot": s8(amount - from_funding), "amtFromFunding": s8(from_funding)}
            move("FUNDING", "USDT", -from_funding)
        move("SPOT", "USDT", -(amount - from_funding))
        move("EARN", "USDT", amount)
        earn["earn_flexible_subscriptions"].append(row)
    if n % 5 == 3:  # a subscription still purchasing moves nothing
        earn["earn_flexible_subscriptions"].append({
            "amount": "100.00000000", "asset": "USDT", "time": when(), "purchaseId": next_id("tran"),
            "productId": "USDT001", "type": "NORMAL", "sourceAccount": "SPOT", "status": "PURCHASING"})
    if wallets["EARN"]["USDT"] > 0:
        for kind, rate in (("REALTIME", Decimal("0.00011")), ("BONUS", Decimal("0.00003"))):
            reward = (wallets["EARN"]["USDT"] * rate).quantize(Q8, rounding=ROUND_DOWN)
            if reward > 0:
                earn["earn_flexible_rewards"].append({"asset": "USDT", "rewards": s8(reward), "projectId": "USDT001",
                                                      "type": kind, "time": when()})
                move("EARN", "USDT", reward)
    if wallets["EARN"]["USDT"] > 100 and (n % 5 == 4 or rng.random() < 0.1):
        amount = (wallets["EARN"]["USDT"] / 4).quantize(Q8, rounding=ROUND_DOWN)
        dest = "FUNDING" if n % 2 else "SPOT"
        earn["earn_flexible_redemptions"].append({"amount": s8(amount), "asset": "USDT", "time": when(),
                                                  "projectId": "USDT001", "redeemId": next_id("tran"),
                                                  "destAccount": dest, "status": "PAID"})
        move("EARN", "USDT", -amount)
        move(dest, "USDT", amount)
    # Simple Earn locked: BNB for 7 days, rewards to spot daily, redeemed at maturity (or early, with a loss)
    if n % 4 == 1 and wallets["SPOT"]["BNB"] > 5:
        position = next_id("tran")
        amount = Decimal(rng.randint(1, 3))
        earn["earn_locked_subscriptions"].append({
            "positionId": position, "purchaseId": str(next_id("tran")), "projectId": "BNB*7", "time": when(),
            "asset": "BNB", "amount": s8(amount), "lockPeriod": "7", "type": "NORMAL", "sourceAccount": "SPOT",
            "status": "SUCCESS"})
        move("SPOT", "BNB", -amount)
        move("EARN_LOCKED", "BNB", amount)
        locked[position] = {"positionId": position, "projectId": "BNB*7", "asset": "BNB", "amount": s8(amount),
                            "purchaseTime": str(ms(midnight)), "duration": "7", "status": "HOLDING", "day": n}
    for position, row in list(locked.items()):
        amount = Decimal(row["amount"])
        reward = (amount * Decimal("0.0004")).quantize(Q8, rounding=ROUND_DOWN)
        earn["earn_locked_rewards"].append({"positionId": str(position), "time": when(), "asset": "BNB",
                                            "lockPeriod": "7", "amount": s8(reward)})
        move("SPOT", "BNB", reward)
        early = n - row["day"] == 3 and position % 3 == 0
        if n - row["day"] >= 7 or early:
            loss = (amount * Decimal("0.001")).quantize(Q8) if early else Decimal(0)
            earn["earn_locked_redemptions"].append({
                "positionId": position, "redeemId": next_id("tran"), "time": when(), "asset": "BNB", "lockPeriod": "7",
                "amount": s8(amount - loss), "originalAmount": s8(amount), "type": "AHEAD" if early else "MATURE",
                "deliverDate": str(ms(midnight)), "lossAmount": s8(loss), "isComplete": True, "rewardAsset": "BNB",
                "rewardAmt": s8(reward), "status": "PAID"})
            move("EARN_LOCKED", "BNB", -amount)
            move("SPOT", "BNB", amount - loss)
            del locked[position]
    # ETH staking: ETH for WBETH and back, at the day's conversion ratio
    ratio = (Decimal("1.0400") + Decimal(n) / Decimal(10_000)).quantize(Decimal("0.00000001"))
    if n % 6 == 2 and wallets["SPOT"]["ETH"] > 2:
        amount = Decimal(rng.randint(1, 10)) / 10
        wbeth = (amount / ratio).quantize(Q8, rounding=ROUND_DOWN)
        history.eth_staking["staking"].append({"time": when(), "asset": "ETH", "amount": s8(amount),
                                               "distributeAsset": "WBETH", "distributeAmount": s8(wbeth),
                                               "conversionRatio": f"{ratio:f}", "status": "SUCCESS"})
        move("SPOT", "ETH", -amount)
        move("SPOT", "WBETH", wbeth)
    if n % 6 == 5 and wallets["SPOT"]["WBETH"] > Decimal("0.05"):
        amount = (wallets["SPOT"]["WBETH"] / 2).quantize(Q8, rounding=ROUND_DOWN)
        eth = (amount * ratio).quantize(Q8, rounding=ROUND_DOWN)
        at = when()
        history.eth_staking["redemption"].append({"time": at, "arrivalTime": at, "asset": "WBETH", "amount": s8(amount),
                                                  "distributeAsset": "ETH", "distributeAmount": s8(eth),
                                                  "conversionRatio": f"{ratio:f}", "status": "SUCCESS"})
        move("SPOT", "WBETH", -amount)
        move("SPOT", "ETH", eth)
    # asset distributions: Launchpool rewards, an airdrop, and Simple Earn interest Binance lists there too
    if n % 3 == 0:
        for asset, amount, info in (("FDUSD", Decimal(rng.randint(1, 90)) / 10, "Launchpool"),
                                    ("BHFT", Decimal("10"), "BHFT distribution")):
            if info != "Launchpool" and n % 9:
                continue
            history.dividends.append({"id": next_id("tran"), "amount": s8(amount), "asset": asset, "divTime": when(),
                                      "enInfo": info, "tranId": next_id("tran"), "direction": 1})
            move("SPOT", asset, amount)
        if earn["earn_flexible_rewards"]:
            last = earn["earn_flexible_rewards"][-1]  # the same reward the earn stream books: listed, not moved again
            history.dividends.append({"id": next_id("tran"), "amount": last["rewards"], "asset": "USDT",
                                      "divTime": last["time"], "enInfo": "Simple Earn Flexible Interest",
                                      "tranId": next_id("tran"), "direction": 1})
    # fiat: EUR deposits and withdrawals by bank transfer, Buy Crypto by card and from the EUR balance
    if n % 5 == 0:
        indicated = Decimal(rng.randint(200, 2000))
        fee = (indicated * Decimal("0.001")).quantize(Decimal("0.01"))
        at = when()
        history.fiat_orders["0"].append({"orderNo": f"7{next_id('order')}", "fiatCurrency": "EUR",
                                         "indicatedAmount": f"{indicated:.2f}", "amount": f"{indicated - fee:.2f}",
                                         "totalFee": f"{fee:.2f}", "method": "BankAccount", "status": "Successful",
                                         "createTime": at, "updateTime": at + 5_000})
        move("SPOT", "EUR", indicated - fee)
    if n % 5 == 4:  # a deposit that expired moves nothing
        at = when()
        history.fiat_orders["0"].append({"orderNo": f"7{next_id('order')}", "fiatCurrency": "EUR",
                                         "indicatedAmount": "2.00", "amount": "0.91", "totalFee": "1.09",
                                         "method": "card", "status": "Expired", "createTime": at, "updateTime": at + 1})
    if n % 7 == 6 and wallets["SPOT"]["EUR"] > 100:
        amount, fee = Decimal("50.00"), Decimal("0.50")
        at = when()
        history.fiat_orders["1"].append({"orderNo": f"8{next_id('order')}", "fiatCurrency": "EUR",
                                         "indicatedAmount": f"{amount + fee:.2f}", "amount": f"{amount:.2f}",
                                         "totalFee": f"{fee:.2f}", "method": "BankAccount", "status": "Finished",
                                         "createTime": at, "updateTime": at + 60_000})
        move("SPOT", "EUR", -(amount + fee))
    if n % 4 == 2:
        balance = wallets["SPOT"]["EUR"] > 150 and rng.random() < 0.5
        paid = Decimal(rng.randint(50, 150))
        fee = (paid * Decimal("0.02")).quantize(Decimal("0.01"))
        price = (prices["BTCUSDT"] * Decimal("0.92")).quantize(Decimal("0.01"))
        obtained = ((paid - fee) / price).quantize(Q8, rounding=ROUND_DOWN)
        at = when()
        history.fiat_payments["0"].append({
            "orderNo": f"{rng.getrandbits(64):x}", "sourceAmount": f"{paid:.2f}", "fiatCurrency": "EUR",
            "obtainAmount": s8(obtained), "cryptoCurrency": "BTC", "totalFee": f"{fee:.2f}", "price": f"{price:f}",
            "status": "Completed", "paymentMethod": "Cash Balance" if balance else "Credit Card", "createTime": at,
            "updateTime": at + 30_000})
        if balance:
            move("SPOT", "EUR", -paid)
        move("SPOT", "BTC", obtained)
        history.fiat_payments["0"].append({  # a card payment that failed: nothing moves
            "orderNo": f"{rng.getrandbits(64):x}", "sourceAmount": "20.00", "fiatCurrency": "EUR",
            "obtainAmount": "0.00040000", "cryptoCurrency": "BTC", "totalFee": "0.40", "price": f"{price:f}",
            "status": "Failed", "paymentMethod": "Credit Card", "createTime": at + 1, "updateTime": at + 2})
    # COIN-M futures: BTC margin moved in, funding and commission paid, PnL realized
    if n == 0:
        transfer("MAIN_CMFUTURE", "BTC", Decimal("0.2"), "SPOT", "CMFUTURES")
    if wallets["CMFUTURES"]["BTC"] > 0:
        for kind, amount in (("FUNDING_FEE", Decimal(rng.randint(-300, 200)) / 10**6),
                             ("COMMISSION", -Decimal(rng.randint(1, 40)) / 10**6),
                             ("REALIZED_PNL", Decimal(rng.randint(-500, 900)) / 10**6)):
            if kind == "REALIZED_PNL" and rng.random() < 0.5:
                continue
            history.coin_income.append({"symbol": "BTCUSD_PERP", "incomeType": kind, "income": s8(amount),
                                        "asset": "BTC", "info": kind, "time": when(), "tranId": next_id("tran"),
                                        "tradeId": str(next_id("trade")) if kind != "FUNDING_FEE" else ""})
            move("CMFUTURES", "BTC", amount)
    # isolated margin (BTCUSDT): USDT in from cross margin, a USDT loan, interest, a trade, a repayment
    symbol = history.isolated_symbol
    if n == 1 and wallets["MARGIN"]["USDT"] > 600:
        transfer("MARGIN_ISOLATEDMARGIN", "USDT", Decimal("500"), "MARGIN", "ISOLATED", toSymbol=symbol)
    if wallets["ISOLATED"]["USDT"] > 0 and n % 5 == 2:
        principal = Decimal(rng.randint(100, 400))
        history.loans["BORROW"].append({"isolatedSymbol": symbol, "type": "MANUAL", "amount": s8(principal),
                                        "asset": "USDT", "interest": s8(Decimal(0)), "principal": s8(principal),
                                        "status": "CONFIRMED", "timestamp": when(), "txId": next_id("tran")})
        move("ISOLATED", "USDT", principal)
        iso_debt["USDT"][0] += principal
    if iso_debt["USDT"][0] > 0:
        charged = (iso_debt["USDT"][0] * Decimal("0.0002")).quantize(Q8, rounding=ROUND_DOWN)
        history.interest.append({"txId": next_id("tran"), "interestAccuredTime": when(), "asset": "USDT",
                                 "rawAsset": "USDT", "principal": s8(iso_debt["USDT"][0]), "interest": s8(charged),
                                 "interestRate": "0.00020000", "type": "PERIODIC", "isolatedSymbol": symbol})
        iso_debt["USDT"][1] += charged
        if n % 5 == 4 and wallets["ISOLATED"]["USDT"] > iso_debt["USDT"][0] / 2 + iso_debt["USDT"][1]:
            principal, interest = (iso_debt["USDT"][0] / 2).quantize(Q8, rounding=ROUND_DOWN), iso_debt["USDT"][1]
            history.loans["REPAY"].append({"isolatedSymbol": symbol, "type": "MANUAL", "amount": s8(principal + interest),
                                           "asset": "USDT", "interest": s8(interest), "principal": s8(principal),
                                           "status": "CONFIRMED", "timestamp": when(), "txId": next_id("tran")})
            move("ISOLATED", "USDT", -(principal + interest))
            iso_debt["USDT"][0] -= principal
            iso_debt["USDT"][1] = Decimal(0)
    if wallets["ISOLATED"]["USDT"] > 200 and n % 3 == 0:
        price, qty = prices["BTCUSDT"], Decimal(rng.randint(1, 20)) * Decimal("0.0001")
        commission = (qty * Decimal("0.001")).quantize(Q8, rounding=ROUND_DOWN)
        history.margin_trades[symbol].append({
            "commission": s8(commission), "commissionAsset": "BTC", "id": next_id("trade"), "isBestMatch": True,
            "isBuyer": True, "isMaker": False, "orderId": next_id("order"), "price": s8(price), "qty": s8(qty),
            "symbol": symbol, "isIsolated": True, "time": when()})
        move("ISOLATED", "USDT", -(price * qty))
        move("ISOLATED", "BTC", qty - commission)
