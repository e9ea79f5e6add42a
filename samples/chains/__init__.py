"""Local counterparts of the on-chain sources (a real Anvil node, a Solana JSON-RPC server, the test contracts),
shared by the demo and the tests."""
