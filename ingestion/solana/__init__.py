"""Solana wallets through solana-py (AsyncClient, commitment finalized): SOL and SPL changes, balances at cutoffs.

``mapping`` (pure: staged transactions -> legs) and ``sync`` (signatures, transactions, balances; network + staging).
"""
