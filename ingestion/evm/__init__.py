"""EVM chains through web3: wallets' native and ERC-20 transfers, gas fees, balances at each cutoff.

``chains`` (configuration and presets), ``rpc`` (web3 HTTP client with failover; network),
``mapping`` (pure: staged records -> legs), ``sync`` (scan, reorg check, staging writes).
"""
