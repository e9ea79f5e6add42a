"""EVM chains through web3: wallets' native and ERC-20 transfers, gas fees, balances at each cutoff.

``chains`` (configuration and presets), ``client`` (web3 HTTP client with failover; network), ``explorer`` (Etherscan-compatible account API),
``mapping`` (pure: staged records -> legs), ``sync`` (scan, reorg check, staging writes).
"""
