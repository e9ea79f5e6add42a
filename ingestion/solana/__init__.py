"""Solana wallets through solana-py (AsyncClient, commitment finalized): SOL and SPL changes, balances at cutoffs.

``client`` (solana-py: balances, token accounts, signatures, transactions; network), ``mapping`` (pure: staged
transactions -> legs) and ``sync`` (cursors, balances at cutoffs; staging writes).
"""
