"""Dagster software-defined assets and asset checks: thin wrappers over ingestion/, transforms/, reconciliation/."""
