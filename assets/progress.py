"""Progress of a close, to the Dagster run log and to the ``coinfrs.close`` Python logger (the CLI shows it)."""

from __future__ import annotations

import logging

import dagster as dg

progress_log = logging.getLogger("coinfrs.close")


def report(context: dg.AssetExecutionContext, message: str) -> None:
    context.log.info(message)
    progress_log.info(message, extra={"asset": context.asset_key.to_user_string()})
