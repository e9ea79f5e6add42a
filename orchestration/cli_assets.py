"""`coinfrs asset ...`: the asset registry. `approve` marks an unverified asset (a token not in the registry,
possibly spam) verified, so the cost-basis books include it, and rebooks every entity that holds it from the
asset's first leg to its last close. Thin: the work is in transforms/ and reconciliation/."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

asset_app = typer.Typer(help="The asset registry: approve unverified assets for PnL.", no_args_is_help=True)
console = Console(stderr=True)


@asset_app.command("approve")
def approve(
    asset: Annotated[str, typer.Argument(help="Asset id, symbol or alias (e.g. ETHEREUM:0XA0B8...), as `coinfrs pnl "
                                              "excluded` lists them.")],
) -> None:
    """Approve an unverified asset: its legs enter the PnL books, recomputed forward from its first leg."""
    import sqlalchemy as sa

    from reconciliation.close import write_closes
    from transforms.asset_registry import AssetNotFound, approve_asset
    from transforms.pnl import build_pnl
    from warehouse.calendar import locked_dates
    from warehouse.db import get_engine
    from warehouse.entities import resolve_entity

    with get_engine().begin() as conn:  # one transaction: the approval and every rebooked day, or nothing
        try:
            approved = approve_asset(conn, asset)
        except AssetNotFound as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        state = "approved" if approved.was_unverified else "was already verified"
        console.print(f"asset {approved.asset_id} {approved.symbol}: {state}", highlight=False)
        for entity_id, first in sorted(approved.first_leg_day.items()):
            entity = resolve_entity(conn, entity_id)
            last = conn.execute(sa.text("SELECT max(date) FROM closes WHERE entity_id = :e"), dict(e=entity.id)).scalar()
            if last is None or last < first:
                console.print(f"{entity.name}: no close since {first} yet; the next close books it", highlight=False)
                continue
            stats = build_pnl(conn, entity, first, last)
            write_closes(conn, entity, first, last, run_id=None)
            locked = sorted(locked_dates(conn, entity.id, first, last))
            console.print(f"{entity.name}: rebooked {first} .. {last} ({stats.disposals_written} disposals written)",
                          highlight=False)
            if locked:
                console.print(f"{entity.name}: {len(locked)} locked days ({locked[0]} .. {locked[-1]}) keep their "
                              "figures; the asset's lots from them carry into the open days", highlight=False)
