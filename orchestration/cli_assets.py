"""`coinfrs asset ...`: the asset registry. `approve` marks an unverified asset (a token not in the registry,
possibly spam) verified, so the cost-basis books include it, and rebooks every entity that holds it from the
asset's first leg to its last close. Thin: the work is in transforms/ and reconciliation/."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from orchestration.cli_output import say_error

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
            say_error(f"{exc}")
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


classify_app = typer.Typer(help="Classify a leg no mapper understood (unclassified), with who and why.")


@classify_app.callback(invoke_without_command=True)
def classify(
    ctx: typer.Context,
    entity: Annotated[str | None, typer.Option("--entity", "-e", help="Entity name or id.")] = None,
    leg: Annotated[int | None, typer.Option("--leg", help="The leg id (API /transactions?kind=unclassified).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="A kind of the vocabulary (docs/cost-basis.md).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who classifies it.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify leg --leg as --kind: the next close books it so (from its day on, which becomes stale)."""
    import json

    from transforms.classifications import ClassificationError, classify_leg
    from warehouse.db import get_engine
    from warehouse.entities import resolve_entity

    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--entity", entity), ("--leg", leg), ("--kind", kind), ("--by", by),
                                        ("--reason", reason)) if value in (None, "")]
    if missing:
        say_error(f"{', '.join(missing)} required")
        raise typer.Exit(1)
    with get_engine().begin() as conn:
        record = resolve_entity(conn, entity)
        try:
            done = classify_leg(conn, record, leg, kind, by=by, reason=reason)
        except ClassificationError as exc:
            say_error(f"{exc}")
            raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"leg_id": done.leg_id, "date": done.day.isoformat(), "source": done.source,
                          "stream": done.stream, "source_raw_id": done.source_raw_id, "leg_index": done.leg_index,
                          "mapped_kind": done.mapped_kind, "kind": done.kind, "classified_by": done.classified_by,
                          "reason": done.reason, "classified_at": done.classified_at.isoformat()}))
        return
    console.print(f"{record.name}: leg {done.leg_id} ({done.source}/{done.stream} {done.source_raw_id}) is {done.kind} "
                  f"(was {done.mapped_kind}), by {done.classified_by}; the closes "
                  f"from {done.day} are stale: `coinfrs close --entity {record.name} --date {done.day}` books it",
                  highlight=False)


@classify_app.command("list")
def classify_list(entity: Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")],
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every manual classification of the entity, with who, when and why."""
    import json

    from transforms.classifications import list_classifications
    from warehouse.db import get_engine
    from warehouse.entities import resolve_entity

    with get_engine().connect() as conn:
        rows = list_classifications(conn, resolve_entity(conn, entity).id)
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        console.print(f"{r['classified_at']}  {r['source']}/{r['stream']} {r['source_raw_id']} leg {r['leg_index']}: "
                      f"{r['mapped_kind']} -> {r['kind']} by {r['classified_by']} ({r['reason']})", highlight=False)
    if not rows:
        console.print("no manual classifications", highlight=False)
