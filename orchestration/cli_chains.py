"""`coinfrs wallet ...`: add on-chain wallets (EVM chains, Solana, Bitcoin), list them, sync them now."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console

from orchestration.cli_output import fail

wallet_app = typer.Typer(help="On-chain wallets: EVM chains through web3, Solana through solana-py, Bitcoin through an "
                         "Esplora API.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()


_fail = fail  # orchestration/cli_output.py


@wallet_app.command("add")
def wallet_add(
    entity: Annotated[str, typer.Option("--entity", "-e", help="Entity name or id (an existing, active one; a new "
                                                               "one with --create).")],
    chain: Annotated[str, typer.Option(help="ethereum, polygon, bsc, arbitrum, base, solana, bitcoin (bitcoin-testnet, "
                                            "bitcoin-signet, bitcoin-regtest), or a custom EVM chain name.")],
    address: Annotated[str, typer.Option(help="0x address (EVM), base58 address (Solana), Bitcoin address or "
                                              "account-level xpub/ypub/zpub.")],
    rpc_url: Annotated[Optional[list[str]], typer.Option("--rpc-url", help="RPC URL (Bitcoin: Esplora API base URL); "
                                                                           "repeat for failover order.")] = None,
    chain_id: Annotated[Optional[int], typer.Option(help="Chain id (required for a custom EVM chain).")] = None,
    start_block: Annotated[int, typer.Option(help="EVM: first block to scan.")] = 0,
    label: Annotated[Optional[str], typer.Option(help="A name for the wallet.")] = None,
    create: Annotated[bool, typer.Option("--create", help="Create the entity if no entity has this name.")] = False,
) -> None:
    """Add a wallet to an entity (or update its RPC URLs). Nothing is fetched until `coinfrs wallet sync`."""
    from solders.pubkey import Pubkey

    from ingestion.bitcoin.keys import BitcoinKeyError, is_bitcoin_chain, parse_wallet
    from ingestion.evm.chains import ChainConfigError, redact_url, resolve_chain
    from ingestion.wallets import SOLANA, write_wallet
    from warehouse.db import get_engine
    from orchestration.cli import _entity_to_write

    urls = list(rpc_url or [])
    key = chain.strip().lower()
    try:
        if key == SOLANA:
            try:
                normalized, resolved_id = str(Pubkey.from_string(address.strip())), None
            except ValueError:
                raise _fail(f"not a Solana address: {address!r}") from None
        elif is_bitcoin_chain(key):
            try:
                normalized, resolved_id = parse_wallet(address, key).spec, None
            except BitcoinKeyError as exc:
                raise _fail(f"--address: {exc}") from None
        else:
            from ingestion.evm.chains import normalize_address

            config = resolve_chain(key, chain_id=chain_id, rpc_urls=urls or ("http://placeholder",))
            normalized, resolved_id = normalize_address(address), config.chain_id
    except ChainConfigError as exc:
        raise _fail(str(exc)) from None
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise _fail(f"--rpc-url {redact_url(url)} is not http(s)")
    with get_engine().begin() as conn:
        target = _entity_to_write(conn, entity, create=create)
        wallet = write_wallet(conn, target.id, chain=key, address=normalized, chain_id=resolved_id, rpc_urls=urls,
                              start_block=start_block, label=label)
    hosts = ", ".join(redact_url(u) for u in urls) or f"COINFRS_RPC_{key.upper()}"
    console.print(f"wallet {wallet.account} added to {target.name} (RPC: {hosts})", highlight=False)


@wallet_app.command("list")
def wallet_list(entity: Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")],
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """The entity's wallets (RPC URLs shown by host only)."""
    from ingestion.evm.chains import redact_url
    from ingestion.wallets import load_wallets
    from warehouse.db import get_engine
    from warehouse.entities import EntityNotFound, resolve_entity

    with get_engine().connect() as conn:
        try:
            target = resolve_entity(conn, entity)
        except EntityNotFound as exc:
            raise _fail(str(exc)) from None
        wallets = load_wallets(conn, target.id)
    if as_json:
        print(json.dumps([{"chain": w.chain, "chain_id": w.chain_id, "address": w.address,
                           "rpc_hosts": [redact_url(u) for u in w.rpc_urls], "start_block": w.start_block,
                           "label": w.label} for w in wallets]))
        return
    out.print("\t".join(("chain", "chain_id", "address", "rpc_hosts", "start_block", "label")), highlight=False)
    for w in wallets:
        out.print("\t".join((w.chain, str(w.chain_id or ""), w.address, ",".join(redact_url(u) for u in w.rpc_urls),
                             str(w.start_block), w.label or "")), highlight=False, markup=False, soft_wrap=True)


@wallet_app.command("sync")
def wallet_sync(
    entity: Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")],
    chain: Annotated[Optional[str], typer.Option(help="Only this chain.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts: per chain, wallets, records "
                                                         "staged, snapshots, reorgs, the days touched, errors.")] = False,
) -> None:
    """Fetch every wallet's new final transactions and its balance at each day's cutoff into staging.

    Then `coinfrs close run` builds and reconciles the days (the close also syncs wallets first)."""
    from ingestion.chain_sync import sync_entity_wallets
    from warehouse.db import get_engine
    from warehouse.entities import EntityArchived, EntityNotFound, resolve_active_entity

    engine = get_engine()
    with engine.connect() as conn:
        try:
            target = resolve_active_entity(conn, entity)  # an archived entity is not imported into
        except (EntityNotFound, EntityArchived) as exc:
            raise _fail(str(exc)) from None
    outcomes = sync_entity_wallets(engine, target, chain=chain.strip().lower() if chain else None,
                                   log=lambda message: console.print(message, highlight=False, markup=False))
    if not outcomes and not as_json:
        console.print(f"{target.name} has no wallets{' on ' + chain if chain else ''} (coinfrs wallet add)")
        return
    days = sorted({d for o in outcomes for d in o.affected_days})
    if days and not as_json:
        console.print(f"days touched: {days[0]} .. {days[-1]} (the next close builds them)", highlight=False)
    reclosed = []
    if any(o.fork_block is not None for o in outcomes):
        from orchestration.chain_reclose import reclose_reorged_days

        for name, start, end in reclose_reorged_days([target], None, run_id=None):
            reclosed.append({"entity": name, "from": start.isoformat(), "to": end.isoformat()})
            if not as_json:
                console.print(f"reorg: {name} closed again from {start} to {end}", highlight=False)
    if as_json:
        print(json.dumps({"entity": target.name, "reclosed": reclosed, "chains": [
            {"chain": o.chain, "wallets": o.wallets, "staged": o.staged, "snapshots": o.snapshots,
             "orphaned": o.orphaned, "fork_block": o.fork_block, "days": sorted(d.isoformat() for d in o.affected_days),
             "synced_through": o.synced_through.isoformat() if o.synced_through else None, "error": o.error}
            for o in outcomes]}))
    if any(o.error for o in outcomes):
        raise typer.Exit(2)
