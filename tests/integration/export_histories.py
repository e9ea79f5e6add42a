"""Generated exchange-export histories with the balances they lead to (the truth each test closes against).

Each generator writes a few days of one account the way the exchange exports it, and keeps its own book of what
the exchange holds per account type and asset (written from the exchange's semantics, not from our mappers), so a
close of the export against those balances proves the mapping, and dropping one record shows up as a break.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

D = Decimal


@dataclass
class Row:
    when: datetime
    cells: tuple[str, ...]
    effects: list[tuple[str, str, Decimal]]  # (account type, asset, quantity) the row moves at the exchange
    tag: str = ""


@dataclass
class History:
    account: str
    header: str
    rows: list[Row] = field(default_factory=list)
    first: date = date(2026, 1, 5)
    days: int = 6

    def csv(self, drop: str = "") -> str:
        return self.header + "\n" + "".join(",".join(r.cells) + "\n" for r in self.rows if r.tag != drop or not drop)

    def balances_csv(self) -> str:
        """The exchange's balances at the end of each day (every account type and asset ever held)."""
        book: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        lines = ["timestamp,account,account_type,asset,quantity"]
        for offset in range(self.days):
            day = self.first + timedelta(days=offset)
            for row in self.rows:
                if row.when.date() == day:
                    for account_type, asset, qty in row.effects:
                        book[account_type, asset] += qty
            lines += [f"{day}T23:59:59Z,{self.account},{t},{a},{q}" for (t, a), q in sorted(book.items())]
        return "\n".join(lines) + "\n"

    def last_day(self) -> date:
        return self.first + timedelta(days=self.days - 1)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ Binance "Transaction History"

BINANCE_USER = "37138112"
BINANCE_LABELS = {"Spot": "spot", "Funding": "funding", "USD-MFutures": "futures", "Coin-MFutures": "coin_futures",
                  "Earn": "earn"}


def binance_history() -> History:
    """Six days of one Binance account across spot, funding, USD-M and COIN-M futures and earn, with every
    operation family of the export. Binance holds staked ETH (BETH) and Simple Earn positions as the underlying
    asset in earn."""
    h = History(f"Binance {BINANCE_USER}", "User_ID,UTC_Time,Account,Operation,Coin,Change,Remark")

    def row(when: datetime, label: str, op: str, coin: str, change: str, effects=None, tag: str = ""):
        qty = D(change)
        h.rows.append(Row(when, (BINANCE_USER, when.strftime("%Y-%m-%d %H:%M:%S"), label, op, coin, change, ""),
                          [(BINANCE_LABELS[label], coin, qty)] if effects is None else effects, tag))

    d = [h.first + timedelta(days=i) for i in range(h.days)]
    t = _at(d[0], 8)
    row(t, "Spot", "Deposit", "USDT", "10000")
    row(t, "Spot", "Deposit", "DOT", "100")
    row(t, "Spot", "Deposit", "ADA", "1000")
    row(_at(d[0], 8, 30), "Spot", "Fiat Deposit", "EUR", "1000")
    buy = _at(d[0], 9)
    row(buy, "Spot", "Buy Crypto", "EUR", "-500")
    row(buy, "Spot", "Buy Crypto", "BTC", "0.01")
    trade = _at(d[0], 10)
    row(trade, "Spot", "Transaction Spend", "USDT", "-3000")
    row(trade, "Spot", "Transaction Buy", "ETH", "1")
    row(trade, "Spot", "Transaction Fee", "ETH", "-0.001")
    move = _at(d[0], 11)
    row(move, "Spot", "Transfer Between Main and Funding Wallet", "USDT", "-500")
    row(move, "Funding", "Transfer Between Main and Funding Wallet", "USDT", "500")
    move = _at(d[0], 12)
    row(move, "Spot", "Transfer Between Spot and Futures", "USDT", "-2000")
    row(move, "USD-MFutures", "Transfer Between Spot and Futures", "USDT", "2000")
    move = _at(d[0], 13)
    row(move, "Spot", "Transfer Between Spot Account and CM Futures Account", "ETH", "-0.2")
    row(move, "Coin-MFutures", "Transfer Between Spot Account and CM Futures Account", "ETH", "0.2")
    row(_at(d[0], 14), "Spot", "Simple Earn Flexible Subscription", "USDT", "-1000",
        [("spot", "USDT", D(-1000)), ("earn", "USDT", D(1000))])
    stake = _at(d[0], 15)
    row(stake, "Spot", "ETH 2.0 Staking", "ETH", "-0.5")
    row(stake, "Spot", "ETH 2.0 Staking", "BETH", "0.5", [("earn", "ETH", D("0.5"))])
    row(_at(d[0], 16), "Spot", "Staking Purchase", "DOT", "-50", [("spot", "DOT", D(-50)), ("earn", "DOT", D(50))])
    row(_at(d[0], 17), "Spot", "POS savings purchase", "ADA", "-500", [("spot", "ADA", D(-500)), ("earn", "ADA", D(500))])
    for i, day in enumerate(d):  # what recurs every day
        row(_at(day, 1), "Earn", "Simple Earn Flexible Interest", "USDT", "0.27", tag=f"interest-{i}")
        row(_at(day, 2), "USD-MFutures", "Funding Fee", "USDT", "-0.41")
        row(_at(day, 3), "Spot", "ETH 2.0 Staking Rewards", "BETH", "0.0001", [("earn", "ETH", D("0.0001"))])
        row(_at(day, 4), "Spot", "POS savings interest", "ADA", "0.1")
        row(_at(day, 5), "Spot", "Staking Rewards", "DOT", "0.01")
    row(_at(d[1], 6), "Spot", "Launchpool Interest", "ARB", "4")
    row(_at(d[1], 7), "Spot", "Cash Voucher", "USDT", "5")
    row(_at(d[2], 6), "Spot", "Mission Reward Distribution", "USDT", "1")
    row(_at(d[2], 7), "Spot", "BNB Vault Rewards", "BNB", "0.001")
    row(_at(d[2], 8), "USD-MFutures", "Realized Profit and Loss", "USDT", "12.5")
    row(_at(d[2], 9), "Spot", "Simple Earn Locked Subscription", "USDT", "-100",
        [("spot", "USDT", D(-100)), ("earn", "USDT", D(100))])
    row(_at(d[3], 6), "Spot", "Commission History", "USDT", "0.3")
    row(_at(d[3], 7), "Spot", "Referral Kickback", "USDT", "0.2")
    row(_at(d[3], 8), "Spot", "Airdrop Assets", "ARB", "2")
    row(_at(d[3], 9), "Spot", "Distribution", "LINK", "1")
    row(_at(d[3], 10), "Spot", "Savings Distribution", "USDT", "0.05")
    row(_at(d[3], 11), "Spot", "Simple Earn Locked Rewards", "USDT", "0.01")
    dust = _at(d[4], 6)
    row(dust, "Spot", "Small assets exchange BNB", "ARB", "-3")
    row(dust, "Spot", "Small assets exchange BNB", "BNB", "0.0031")
    otc = _at(d[4], 7)
    row(otc, "Spot", "Large OTC trading", "USDT", "-1000")
    row(otc, "Spot", "Large OTC trading", "BTC", "0.011")
    convert = _at(d[4], 8)
    row(convert, "Spot", "Binance Convert", "BTC", "-0.001")
    row(convert, "Spot", "Binance Convert", "USDT", "60")
    spot_trade = _at(d[4], 9)
    row(spot_trade, "Spot", "Buy", "BTC", "0.001")
    row(spot_trade, "Spot", "Buy", "USDT", "-60")
    row(spot_trade, "Spot", "Fee", "BNB", "-0.00001")
    row(_at(d[4], 10), "Spot", "Simple Earn Locked Redemption", "USDT", "100",
        [("spot", "USDT", D(100)), ("earn", "USDT", D(-100))])
    row(_at(d[5], 6), "Spot", "Simple Earn Flexible Redemption", "USDT", "500",
        [("spot", "USDT", D(500)), ("earn", "USDT", D(-500))])
    row(_at(d[5], 7), "Spot", "Staking Redemption", "DOT", "50", [("spot", "DOT", D(50)), ("earn", "DOT", D(-50))])
    row(_at(d[5], 8), "Spot", "POS savings redemption", "ADA", "500", [("spot", "ADA", D(500)), ("earn", "ADA", D(-500))])
    row(_at(d[5], 9), "Spot", "Withdraw", "BTC", "-0.005")
    row(_at(d[5], 10), "Spot", "Fiat Withdraw", "EUR", "-400")
    h.rows.sort(key=lambda r: r.when)
    return h


# ------------------------------------------------------------------------------ Coinbase Exchange (Pro) statement

def coinbase_exchange_statement() -> History:
    """Six days of a Coinbase Exchange portfolio: a USD deposit, two BTC-USD fills a day with their fees, a USD ->
    USDC conversion, a BTC withdrawal; the statement's running balance per unit is the exchange's truth."""
    h = History("Coinbase Exchange default",
                "portfolio,type,time,amount,balance,amount/balance unit,transfer id,trade id,order id")

    def row(when: datetime, type_: str, amount: str, unit: str, trade: str = "", transfer: str = "", order: str = "",
            tag: str = ""):
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        h.rows.append(Row(when, ("default", type_, stamp, amount, "", unit, transfer, trade, order),
                          [("spot", unit, D(amount))], tag))

    d = [h.first + timedelta(days=i) for i in range(h.days)]
    row(_at(d[0], 8), "deposit", "50000.00", "USD", transfer="t-1")
    trade = 100
    for i, day in enumerate(d):
        for hour, side in ((10, "buy"), (15, "sell")):
            trade += 1
            size, price = (D("0.05") + D(i) / 100) / (1 if side == "buy" else 2), D(42000) + D(i * 150)
            usd = (size * price).quantize(D("0.01"))
            fee = (usd * D("0.004")).quantize(D("0.01"))
            when = _at(day, hour, 30)
            sign = 1 if side == "buy" else -1
            row(when, "match", str(sign * size), "BTC", trade=str(trade), order=f"o-{trade}")
            row(when, "match", str(-sign * usd), "USD", trade=str(trade), order=f"o-{trade}")
            row(when, "fee", str(-fee), "USD", trade=str(trade), order=f"o-{trade}", tag=f"fee-{i}-{side}")
    conversion = _at(d[2], 12)
    row(conversion, "conversion", "-1000.00", "USD", transfer="c-1", order="conv-1")
    row(conversion, "conversion", "1000.000000", "USDC", transfer="c-1", order="conv-1")
    row(_at(d[4], 18), "withdrawal", "-0.02", "BTC", transfer="t-2")
    h.rows.sort(key=lambda r: r.when)
    balance: dict[str, Decimal] = defaultdict(Decimal)
    for r in h.rows:  # the running balance after each row, per unit, in time order
        balance[r.cells[5]] += D(r.cells[3])
        r.cells = (*r.cells[:4], str(balance[r.cells[5]]), *r.cells[5:])
    return h


# ------------------------------------------------------------------------------ Coinbase transaction history

COINBASE_PREAMBLE = ("You can use this transaction report to inform your likely tax obligations.\n\nTransactions\n"
                     "User,someone@example.com,5a7ba1a9e1f8a5016a3b6ce4\n")


def coinbase_transactions() -> History:
    """Six days of a Coinbase account: a bank deposit, buys and sells in USD, an Advanced Trade in BTC, a convert,
    daily ETH staking income, rewards, a send and a receive, a fiat withdrawal with its fee."""
    h = History("Coinbase", "ID,Timestamp,Transaction Type,Asset,Quantity Transacted,Price Currency,Price at Transaction,"
                            "Subtotal,Total (inclusive of fees and/or spread),Fees and/or Spread,Notes")
    count = [0]

    def row(when: datetime, type_: str, asset: str, qty: str, price: str, subtotal: str, total: str, fees: str,
            notes: str, effects, tag: str = ""):
        count[0] += 1
        cells = (f"6571{count[0]:04d}", when.strftime("%Y-%m-%d %H:%M:%S UTC"), type_, asset, qty, "USD",
                 *(f'"${v}"' for v in (price, subtotal, total, fees)), f'"{notes}"')
        h.rows.append(Row(when, cells, [("spot", a, D(q)) for a, q in effects], tag))

    d = [h.first + timedelta(days=i) for i in range(h.days)]
    row(_at(d[0], 8), "Deposit", "USD", "20000", "1.00", "20000.00", "20000.00", "0.00", "Deposit from bank",
        [("USD", "20000")])
    row(_at(d[0], 9), "Buy", "BTC", "0.1", "42,000.00", "4200.00", "4262.10", "62.10", "Bought 0.1 BTC for 4262.10 USD",
        [("BTC", "0.1"), ("USD", "-4262.10")])
    row(_at(d[0], 10), "Buy", "ETH", "2", "2,500.00", "5000.00", "5074.50", "74.50", "Bought 2 ETH for 5074.50 USD",
        [("ETH", "2"), ("USD", "-5074.50")])
    row(_at(d[1], 10), "Advanced Trade Buy", "SOL", "10", "100.00", "1000.00", "1000.00", "2.40",
        "Bought 10 SOL for 0.02385 BTC on SOL-BTC at 0.00238 BTC/SOL", [("SOL", "10"), ("BTC", "-0.02385")])
    row(_at(d[2], 10), "Convert", "ETH", "0.5", "2,500.00", "1250.00", "1250.00", "10.00",
        "Converted 0.5 ETH to 1,240.5 USDC", [("ETH", "-0.5"), ("USDC", "1240.5")])
    row(_at(d[2], 11), "Sell", "BTC", "0.01", "43,000.00", "430.00", "423.59", "6.41", "Sold 0.01 BTC for 423.59 USD",
        [("BTC", "-0.01"), ("USD", "423.59")])
    row(_at(d[3], 10), "Send", "BTC", "-0.02", "43,000.00", "860.00", "860.00", "0.00", "To Bitcoin address bc1qxyz",
        [("BTC", "-0.02")])
    row(_at(d[3], 11), "Receive", "ETH", "0.3", "2,500.00", "750.00", "750.00", "0.00", "From Ethereum address 0xabc",
        [("ETH", "0.3")])
    row(_at(d[3], 12), "Learning Reward", "LINK", "1.5", "15.00", "22.50", "22.50", "0.00", "Coinbase Earn",
        [("LINK", "1.5")])
    row(_at(d[4], 12), "Rewards Income", "USDC", "0.8", "1.00", "0.80", "0.80", "0.00", "USDC rewards",
        [("USDC", "0.8")])
    row(_at(d[5], 9), "Withdrawal", "USD", "-1000", "1.00", "1000.00", "1000.00", "1.50", "Withdrawal to bank",
        [("USD", "-1000")])
    for i, day in enumerate(d):
        row(_at(day, 3), "Staking Income", "ETH", "0.00021", "2,500.00", "0.53", "0.53", "0.00", "",
            [("ETH", "0.00021")], tag=f"staking-{i}")
    h.rows.sort(key=lambda r: r.when)
    return h


# ------------------------------------------------------------------------------ Nexo transactions export

def nexo_transactions() -> History:
    """Six days of a Nexo account: deposits, daily interest, an exchange, a fixed-term deposit with its interest, a
    credit line (collateral, draw, repayment, a small liquidation) and a withdrawal."""
    h = History("Nexo", "Transaction,Type,Input Currency,Input Amount,Output Currency,Output Amount,USD Equivalent,"
                        "Details,Date / Time (UTC)")
    count = [0]

    def row(when: datetime, type_: str, cin: str, ain: str, cout: str, aout: str, usd: str, details: str, effects,
            tag: str = ""):
        count[0] += 1
        cells = (f"NXT{count[0]:06d}", type_, cin, ain, cout, aout, f'"${usd}"', f"approved / {details}",
                 when.strftime("%Y-%m-%d %H:%M:%S"))
        h.rows.append(Row(when, cells, [(t, a, D(q)) for t, a, q in effects], tag))

    d = [h.first + timedelta(days=i) for i in range(h.days)]
    row(_at(d[0], 8), "Deposit", "BTC", "1", "BTC", "1", "42,000.00", "BTC deposit", [("wallet", "BTC", "1")])
    row(_at(d[0], 9), "Deposit", "USDC", "10000", "USDC", "10000", "10,000.00", "USDC deposit",
        [("wallet", "USDC", "10000")])
    row(_at(d[0], 10), "Exchange", "USDC", "-2000", "ETH", "0.79", "2,000.00", "Exchange USDC to ETH",
        [("wallet", "USDC", "-2000"), ("wallet", "ETH", "0.79")])
    row(_at(d[1], 10), "Locking Term Deposit", "USDC", "-5000", "USDC", "-5000", "5,000.00",
        "Transfer from Savings Wallet to Term Wallet", [("wallet", "USDC", "-5000"), ("earn", "USDC", "5000")])
    row(_at(d[1], 11), "Transfer Out", "BTC", "-0.5", "BTC", "-0.5", "21,000.00",
        "Transfer from Savings Wallet to Credit Line", [("wallet", "BTC", "-0.5"), ("collateral", "BTC", "0.5")])
    row(_at(d[1], 12), "Loan Withdrawal", "USD", "3000", "USD", "3000", "3,000.00", "Credit line draw",
        [("wallet", "USD", "3000"), ("loan", "USD", "-3000")])
    row(_at(d[2], 12), "Withdrawal", "USD", "-3000", "USD", "-3000", "3,000.00", "USD withdrawal to bank",
        [("wallet", "USD", "-3000")])
    row(_at(d[3], 12), "Manual Repayment", "USDC", "-1000", "USDC", "-1000", "1,000.00", "Repayment",
        [("wallet", "USDC", "-1000"), ("loan", "USDC", "1000")])
    row(_at(d[3], 13), "Liquidation", "BTC", "-0.01", "USD", "420", "420.00", "Liquidation of collateral",
        [("collateral", "BTC", "-0.01"), ("loan", "USD", "420")])
    row(_at(d[4], 6), "Fixed Term Interest", "USDC", "4.1", "USDC", "4.1", "4.10", "Term interest",
        [("wallet", "USDC", "4.1")])
    row(_at(d[4], 7), "Unlocking Term Deposit", "USDC", "5000", "USDC", "5000", "5,000.00",
        "Transfer from Term Wallet to Savings Wallet", [("wallet", "USDC", "5000"), ("earn", "USDC", "-5000")])
    row(_at(d[4], 8), "Exchange Cashback", "BTC", "0.00001", "BTC", "0.00001", "0.42", "0.5% on top of your Exchange",
        [("wallet", "BTC", "0.00001")])
    row(_at(d[5], 6), "Referral Bonus", "BTC", "0.0005", "BTC", "0.0005", "21.00", "Referral bonus",
        [("wallet", "BTC", "0.0005")])
    row(_at(d[5], 7), "Transfer In", "BTC", "0.2", "BTC", "0.2", "8,400.00", "Transfer from Credit Line to Savings",
        [("wallet", "BTC", "0.2"), ("collateral", "BTC", "-0.2")])
    row(_at(d[5], 8), "Withdrawal", "BTC", "-0.1", "BTC", "-0.1", "4,200.00", "BTC withdrawal",
        [("wallet", "BTC", "-0.1")])
    for i, day in enumerate(d):
        row(_at(day, 2), "Interest", "USDC", "1.35", "USDC", "1.35", "1.35", "1.35 USDC interest",
            [("wallet", "USDC", "1.35")], tag=f"interest-{i}")
        row(_at(day, 3), "Interest", "BTC", "0.0000341", "BTC", "0.0000341", "1.43", "BTC interest",
            [("wallet", "BTC", "0.0000341")])
    h.rows.sort(key=lambda r: r.when)
    return h
