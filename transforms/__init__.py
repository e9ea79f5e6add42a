"""Staging -> canonical: asset registry, mappers per source, transfers, positions, prices, cost basis and PnL."""
