"""Moved to ``ingestion/sources.py``; kept for ``assets/sources.py`` only (see ``ingestion/exchanges/__init__``)."""

from ingestion.sources import sync_entity_sources

__all__ = ["sync_entity_sources"]
