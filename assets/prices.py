"""Day-close prices as a Dagster asset: after the canonical ledger (which knows what is held), before cost basis.

Thin wrapper over ``ingestion.prices.service``. With no price source configured (the default) it makes no
network call: it only applies prices already stored (manual imports) to the days' positions, and says so.
"""

import warnings

import dagster as dg

from assets.partitions import close_partitions, window_of
from assets.progress import report
from assets.resources import WarehouseResource, entities_in_scope
from assets.retries import EXTERNAL_STEP_RETRY
from ingestion.prices.settings import get_price_settings
from transforms.prices import apply_prices_to_positions

warnings.filterwarnings("ignore", category=dg.BetaWarning)  # backfill_policy is beta in 1.13
_MAX_TABLE_ROWS = 100


@dg.asset(
    partitions_def=close_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=EXTERNAL_STEP_RETRY,
    group_name="prices",
    deps=[dg.AssetKey("canonical_ledger")],
    kinds={"postgres"},
    description=(
        "Close prices of the assets each entity holds on the day(s), and EUR/GBP rates, from the configured sources "
        "(CoinGecko, exchange candles via ccxt), fetched once and cached in the prices table with provenance; sources "
        "that disagree beyond the threshold are flagged. Positions get the best price of the day "
        "(manual > coingecko > exchange > ledger). No source configured: nothing is fetched."
    ),
)
def close_prices(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    start, end = window_of(context)
    label = start.isoformat() if start == end else f"{start.isoformat()}..{end.isoformat()}"
    settings = get_price_settings()
    entities = entities_in_scope(context, warehouse)
    if not settings.any_source:
        repriced = 0
        for entity in entities:
            with warehouse.engine().begin() as conn:
                repriced += apply_prices_to_positions(conn, entity, start, end)
        report(context, f"prices · {label}: no price source configured (COINFRS_COINGECKO_URL, COINFRS_PRICE_EXCHANGE); "
                        "nothing fetched")
        return dg.MaterializeResult(metadata={
            "status": dg.MetadataValue.text("no price source configured: nothing fetched (stored prices applied)"),
            "positions repriced": dg.MetadataValue.int(repriced),
        })
    from ingestion.prices.service import build_sources, fetch_prices  # ccxt loads only when a source is configured

    sources = build_sources(settings)
    written = flagged = repriced = 0
    errors: list[dict] = []
    for entity in entities:
        result = fetch_prices(warehouse.engine(), entity, start, end, settings=settings, sources=sources)
        written += result.rows_written
        flagged += result.flagged
        repriced += result.positions_repriced
        for o in result.errors:
            context.log.warning(f"{entity.name} {o.source} {o.asset}: {o.error}")
            errors.append({"entity": entity.name, "asset": o.asset, "source": o.source, "error": o.error or ""})
        report(context, f"prices · {entity.name} · {label}: {result.rows_written} written, {result.flagged} flagged, "
                        f"{len(result.errors)} source error(s)")
    return dg.MaterializeResult(metadata={
        "status": dg.MetadataValue.text("partial: some sources failed" if errors else "complete"),
        "sources": dg.MetadataValue.text(", ".join(sources.names)),
        "prices written": dg.MetadataValue.int(written),
        "prices flagged (sources disagree)": dg.MetadataValue.int(flagged),
        "positions repriced": dg.MetadataValue.int(repriced),
        "source errors": dg.MetadataValue.int(len(errors)),
        "errors": dg.MetadataValue.table(
            records=[dg.TableRecord(r) for r in errors[:_MAX_TABLE_ROWS]],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in ("entity", "asset", "source", "error")])),
    })
