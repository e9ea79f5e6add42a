"""The demo's on-chain wallets: an EVM wallet on a real Anvil node started here, and a Solana wallet on the local
Solana JSON-RPC server, each with a small scripted history inside the demo's period.

``add_demo_wallets`` starts both, registers the wallets on the entity (the close's ``source_sync`` then syncs them
like any wallet) and stops them when the process exits. Without node/npm (Anvil comes from npm) the EVM wallet is
skipped with one line and the demo goes on.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy.engine import Engine

from warehouse.entities import Entity

EVM_WALLET = "0x00000000000000000000000000000000000de301"
EVM_COUNTERPARTY = "0x00000000000000000000000000000000000de302"
ETH = 10 ** 18
SOL = 10 ** 9


def _at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour)).isoformat()


def start_demo_anvil(first: date, last: date) -> str:
    """An Anvil node with the wallet's history: funded, payments out, an unverified token in and out, ETH paid to it
    by a contract in an internal call. Returns its URL; the node stops when the process exits."""
    from samples.chains.anvil import DEV, AnvilNode, Chain

    node = AnvilNode(genesis=datetime.combine(first - timedelta(days=1), time(12), tzinfo=timezone.utc)).__enter__()
    atexit.register(node.__exit__, None, None, None)
    chain = Chain(node.url)
    day = first - timedelta(days=1)
    token = chain.deploy_token(_at(day, 13), "Demo Dollar", "DUSD", 6, 10 ** 15)
    forwarder = chain.deploy_forwarder(_at(day, 14))
    chain.fund(_at(first, 9), EVM_WALLET, 12 * ETH)
    chain.send_native(_at(first + timedelta(days=5), 14), EVM_WALLET, EVM_COUNTERPARTY, 3 * ETH // 2)
    chain.send_token(_at(first + timedelta(days=10), 11), token, DEV, EVM_WALLET, 25_000 * 10 ** 6)
    chain.send_native(_at(first + timedelta(days=20), 16), EVM_WALLET, EVM_COUNTERPARTY, ETH // 4)
    chain.send_token(_at(first + timedelta(days=30), 10), token, EVM_WALLET, EVM_COUNTERPARTY, 5_000 * 10 ** 6)
    from web3 import Web3

    chain.call_forwarder(_at(first + timedelta(days=40), 15), forwarder, DEV, "forward",
                         [Web3.to_checksum_address(EVM_WALLET)], [4 * ETH // 10], value=4 * ETH // 10)
    # the day after the last one, then past the finality depth of a custom chain (64 blocks)
    chain.mine_blocks(_at(last + timedelta(days=1), 1), 70)
    return node.url


def start_demo_solana(first: date) -> tuple[str, str]:
    """The local Solana JSON-RPC server with the wallet's history; returns (URL, wallet address)."""
    from samples.chains.solana_rpc import SolanaLedger, SolanaRpcServer, address

    wallet, exchange = address("northwind-treasury"), address("demo-exchange")
    ledger = SolanaLedger()
    ledger.fund(exchange, 1_000 * SOL)
    ledger.transfer_sol(_at(first + timedelta(days=2), 10), exchange, wallet, 25 * SOL)
    ledger.transfer_sol(_at(first + timedelta(days=15), 12), wallet, exchange, 3 * SOL)
    ledger.transfer_sol(_at(first + timedelta(days=25), 9), wallet, exchange, 100 * SOL, failed=True)  # fee only
    ledger.transfer_sol(_at(first + timedelta(days=45), 18), exchange, wallet, 6 * SOL // 5)
    server = SolanaRpcServer(ledger)
    url = server.__enter__()
    atexit.register(server.__exit__, None, None, None)
    return url, wallet


def add_demo_wallets(engine: Engine, entity: Entity, first: date, last: date, log: Callable[[str], None]) -> None:
    """Start the local chains and add the entity's demo wallets (synced by the close that follows)."""
    from ingestion.wallets import write_wallet
    from samples.chains.anvil import ANVIL_CHAIN_ID

    try:
        evm_url: str | None = start_demo_anvil(first, last)
    except Exception as exc:  # noqa: BLE001 - no node/npm, no network to npm: the demo goes on without it
        evm_url = None
        log(f"EVM wallet skipped: Anvil could not be started ({type(exc).__name__}: {str(exc)[:120]})")
    sol_url, sol_wallet = start_demo_solana(first)
    with engine.begin() as conn:
        if evm_url:
            write_wallet(conn, entity.id, chain="anvil", chain_id=ANVIL_CHAIN_ID, address=EVM_WALLET, rpc_urls=[evm_url],
                         label="Treasury (EVM, local Anvil)")
        write_wallet(conn, entity.id, chain="solana", chain_id=None, address=sol_wallet, rpc_urls=[sol_url],
                     label="Treasury (Solana, local RPC)")
    log("wallets: " + ", ".join(
        ([f"anvil:{EVM_WALLET} (Anvil at {evm_url})"] if evm_url else []) + [f"solana:{sol_wallet} (local RPC at {sol_url})"]))
