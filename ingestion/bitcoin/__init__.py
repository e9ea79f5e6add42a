"""Bitcoin wallets (by address or by extended public key) through an Esplora-compatible REST API (requests)."""
