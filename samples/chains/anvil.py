"""A real Anvil node (npm ``@foundry-rs/anvil``) for the EVM tests, the benchmark and the demo, and a scripted-history
helper.

``anvil_binary()`` installs the npm package into ``<repo>/.coinfrs/node`` on first use (node and npm are needed;
the binary ships inside ``@foundry-rs/anvil-linux-amd64``, nothing else is downloaded). ``AnvilNode`` starts one
node on a free port of 127.0.0.1 with ``--timestamp`` and ``--auto-impersonate`` (any address can send), and stops
it (its own process only) on exit. ``Chain`` wraps web3 for the tests: deploy the committed ERC-20, send native
and token transfers placed at chosen times with ``evm_setNextBlockTimestamp``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from web3 import Web3

ROOT = Path(__file__).resolve().parents[2]
NODE_PREFIX = ROOT / ".coinfrs" / "node"
ANVIL_PACKAGE = "@foundry-rs/anvil@1.7.1"
ANVIL_BIN = NODE_PREFIX / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
CONTRACTS = Path(__file__).resolve().parent / "contracts"
TOKEN_FIXTURE = CONTRACTS / "TestToken.json"
FORWARDER_FIXTURE = CONTRACTS / "Forwarder.json"
ANVIL_CHAIN_ID = 31337
DEV = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"  # Anvil's first prefunded account


def anvil_binary() -> Path:
    """The Anvil binary, installed from npm into .coinfrs/node if missing."""
    if not ANVIL_BIN.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install Anvil (@foundry-rs/anvil) for the EVM tests")
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund", ANVIL_PACKAGE],
                       check=True, capture_output=True, timeout=300)
    if not ANVIL_BIN.exists():
        raise RuntimeError(f"{ANVIL_PACKAGE} installed but {ANVIL_BIN} is missing (not linux-amd64?)")
    return ANVIL_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AnvilNode:
    def __init__(self, *, genesis: datetime, extra: list[str] | None = None, chain_id: int = ANVIL_CHAIN_ID) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.genesis = genesis
        self.extra = extra or []
        self.chain_id = chain_id
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "AnvilNode":
        self.process = subprocess.Popen(
            [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--silent", "--auto-impersonate",
             "--timestamp", str(int(self.genesis.timestamp())), "--chain-id", str(self.chain_id), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        w3 = Web3(Web3.HTTPProvider(self.url))
        for _ in range(200):
            try:
                w3.eth.block_number
                return self
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError(f"anvil exited: {self.process.stderr.read().decode()[:500]}")
                time.sleep(0.05)
        raise RuntimeError("anvil did not answer within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


class Chain:
    """Scripted history on an Anvil node: each call mines one block at the given UTC time."""

    def __init__(self, url: str) -> None:
        self.w3 = Web3(Web3.HTTPProvider(url))
        fixture = json.loads(TOKEN_FIXTURE.read_text())
        self.abi, self.bytecode = fixture["abi"], fixture["bytecode"]

    def _at(self, when: str) -> None:
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [at(when)])

    def _send(self, when: str, tx: dict[str, Any]) -> dict[str, Any]:
        self._at(when)
        tx_hash = self.w3.eth.send_transaction(tx)
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    def deploy_token(self, when: str, name: str, symbol: str, decimals: int, supply: int) -> str:
        contract = self.w3.eth.contract(abi=self.abi, bytecode=self.bytecode)
        self._at(when)
        tx_hash = contract.constructor(name, symbol, decimals, supply).transact({"from": Web3.to_checksum_address(DEV)})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"].lower()

    def send_native(self, when: str, sender: str, to: str, wei: int, **extra: Any) -> dict[str, Any]:
        return self._send(when, {"from": Web3.to_checksum_address(sender), "to": Web3.to_checksum_address(to),
                                 "value": wei, **extra})

    def fund(self, when: str, to: str, wei: int) -> dict[str, Any]:
        return self.send_native(when, DEV, to, wei)

    def token(self, address: str):  # type: ignore[no-untyped-def]
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=self.abi)

    def send_token(self, when: str, token: str, sender: str, to: str, amount: int, **extra: Any) -> dict[str, Any]:
        call = self.token(token).functions.transfer(Web3.to_checksum_address(to), amount)
        self._at(when)
        tx_hash = call.transact({"from": Web3.to_checksum_address(sender), **extra})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    def multi_transfer(self, when: str, token: str, sender: str, payments: list[tuple[str, int]]) -> dict[str, Any]:
        call = self.token(token).functions.multiTransfer([Web3.to_checksum_address(a) for a, _ in payments],
                                                         [v for _, v in payments])
        self._at(when)
        tx_hash = call.transact({"from": Web3.to_checksum_address(sender)})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    def failing_transfer_from(self, when: str, token: str, sender: str, owner: str, amount: int) -> dict[str, Any]:
        """A transaction that reverts (no allowance) but is mined and pays its gas."""
        data = self.token(token).encode_abi("transferFrom", [Web3.to_checksum_address(owner),
                                                              Web3.to_checksum_address(sender), amount])
        return self._send(when, {"from": Web3.to_checksum_address(sender), "to": Web3.to_checksum_address(token),
                                 "data": data, "gas": 100_000})

    def deploy_forwarder(self, when: str) -> str:
        """The committed Forwarder contract: sends the ETH it gets on to recipients in internal calls."""
        fixture = json.loads(FORWARDER_FIXTURE.read_text())
        contract = self.w3.eth.contract(abi=fixture["abi"], bytecode=fixture["bytecode"])
        self._at(when)
        tx_hash = contract.constructor().transact({"from": Web3.to_checksum_address(DEV)})
        self.forwarder_abi = fixture["abi"]
        return self.w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"].lower()

    def call_forwarder(self, when: str, forwarder: str, sender: str, function: str, *args: Any, value: int = 0,
                       **extra: Any) -> dict[str, Any]:
        contract = self.w3.eth.contract(address=Web3.to_checksum_address(forwarder), abi=self.forwarder_abi)
        call = getattr(contract.functions, function)(*args)
        self._at(when)
        tx_hash = call.transact({"from": Web3.to_checksum_address(sender), "value": value, **extra})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    def mine(self, when: str) -> None:
        self._at(when)
        self.w3.provider.make_request("evm_mine", [])

    def mine_blocks(self, when: str, count: int) -> None:
        """``count`` empty blocks from ``when`` on, one second apart (e.g. to pass a finality depth)."""
        self._at(when)
        self.w3.provider.make_request("anvil_mine", [hex(count), hex(1)])

    def balance(self, address: str, block: int | str = "latest") -> int:
        return self.w3.eth.get_balance(Web3.to_checksum_address(address), block_identifier=block)

    def token_balance(self, token: str, address: str, block: int | str = "latest") -> int:
        return self.token(token).functions.balanceOf(Web3.to_checksum_address(address)).call(block_identifier=block)
