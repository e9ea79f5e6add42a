"""Source connectors: raw -> staging writers (CSV files first; exchanges, chains and custodians later)."""
