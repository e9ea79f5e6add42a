"""Fireblocks (custodian): ``client`` (signed-JWT requests, credentials), ``sync`` (vault transactions and balances
staged) and ``mapping`` (pure: a completed transaction -> legs)."""
