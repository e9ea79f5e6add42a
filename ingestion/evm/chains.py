"""EVM chains as configuration: presets for Ethereum, Polygon, BSC, Arbitrum and Base; any other chain by id + URLs.

A chain is a name, a chain id, the native asset's symbol, a finality rule and RPC URLs in failover order. RPC URLs
come from the wallet, else from ``COINFRS_RPC_<CHAIN>`` (comma separated), else from the preset (none ship: public
endpoints are rate limited and often carry keys). ``COINFRS_CONFIRMATIONS_<CHAIN>`` sets the finality depth K (and
then head - K is used instead of the node's ``finalized`` tag); ``COINFRS_TOKENS_<CHAIN>`` adds verified tokens;
``COINFRS_RPS_<CHAIN>`` caps the requests per second sent to the chain's RPC (a JSON-RPC batch counts as one).
``COINFRS_EXPLORER_URL_<CHAIN>`` (an Etherscan-compatible account API) with ``COINFRS_EXPLORER_KEY_<CHAIN>`` makes
the sync ask the explorer which blocks hold the wallets' transactions instead of reading every block; without one, a
wallet's first scan over more than ``COINFRS_MAX_SCAN_BLOCKS_<CHAIN>`` blocks (default 1,000,000) is refused with its
estimated cost (give the wallet a start block, or an explorer). Known tokens (contract -> symbol) are verified; any other token a
wallet receives is registered unverified (spam until approved).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ExplorerConfig:
    """An Etherscan-compatible account API (ingestion/evm/explorer.py); the key is never shown (repr, logs, errors)."""

    url: str  # e.g. https://api.etherscan.io/v2/api?chainid=1 (its query parameters are kept)
    api_key: str = field(default="", repr=False)
    page_size: int = 1000
    max_requests_per_second: float = 0.0
    blocks_per_request: int = 100_000  # discovery chunk (blocks between two cursor commits)


@dataclass(frozen=True)
class ChainConfig:
    name: str  # lowercase, used in account names and asset aliases
    chain_id: int
    native_symbol: str
    confirmations: int  # blocks below the head that are final (used when use_finalized_tag is false or unsupported)
    use_finalized_tag: bool = False  # ask the node for its "finalized" block instead of head - confirmations
    rpc_urls: tuple[str, ...] = ()
    tokens: dict[str, str] = field(default_factory=dict)  # lowercase contract address -> verified symbol
    blocks_per_request: int = 500  # block-range scan chunk (eth_getLogs range, one batch of blocks)
    reorg_check_depth: int = 256  # recorded blocks re-checked for a changed hash at every sync
    max_requests_per_second: float = 0.0  # client-side rate limit per chain (0 = none); COINFRS_RPS_<CHAIN>
    explorer: ExplorerConfig | None = None  # discovery through an account API instead of the block scan
    traces: bool = True  # internal native transfers from trace_filter / trace_transaction (COINFRS_TRACES_<CHAIN>=0: off)
    trace_blocks_per_request: int = 250  # trace_filter range per request (nodes cap it: Anvil at 300 blocks)
    max_scan_blocks: int = 1_000_000  # a first plain-RPC scan longer than this is refused (COINFRS_MAX_SCAN_BLOCKS_<CHAIN>)


PRESETS: dict[str, ChainConfig] = {c.name: c for c in (
    ChainConfig("ethereum", 1, "ETH", confirmations=64, use_finalized_tag=True, tokens={
        "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48": "USDC",
        "0xdac17f958d2ee523a2206206994597c13d831ec7": "USDT",
        "0x6b175474e89094c44da98b954eedeac495271d0f": "DAI",
        "0x514910771af9ca656af840dff83e8264ecf986ca": "LINK",
    }),
    ChainConfig("polygon", 137, "POL", confirmations=256, tokens={
        "0x3c499c542cef5e3811e1192ce70d8cc03d5c3359": "USDC",
        "0xc2132d05d31c914a87c6611c10748aeb04b58e8f": "USDT",
    }),
    ChainConfig("bsc", 56, "BNB", confirmations=15, tokens={
        "0x55d398326f99059ff775485246999027b3197955": "USDT",
        "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d": "USDC",
    }),
    ChainConfig("arbitrum", 42161, "ETH", confirmations=64, use_finalized_tag=True, tokens={
        "0xaf88d065e77c8cc2239327c5edb3a432268e5831": "USDC",
        "0xfd086bc7cd5c481dcc9c85ebe478a1c0b69fcbb9": "USDT",
        "0x912ce59144191c1204e64559fe8253a0e49e6548": "ARB",
    }),
    ChainConfig("base", 8453, "ETH", confirmations=64, use_finalized_tag=True, tokens={
        "0x833589fcd6edb6e08f4c7c32d04c713ba5a1d5f0": "USDC",
    }),
)}

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class ChainConfigError(ValueError):
    """A chain or wallet setting that cannot work; the message names it."""


def normalize_address(address: str) -> str:
    """A 0x address in lowercase; anything else is refused with the value in the message."""
    text = (address or "").strip()
    if not _ADDRESS.match(text):
        raise ChainConfigError(f"not an EVM address: {address!r} (expected 0x and 40 hex digits)")
    return text.lower()


def redact_url(url: str) -> str:
    """scheme://host[:port] only: RPC URLs often carry an API key in the path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}"


def redact_in_text(text: str, urls: Sequence[str]) -> str:
    """``text`` without any of ``urls``' paths or queries (where API keys live), at most 300 characters."""
    for url in urls:
        parts = urlsplit(url)
        text = text.replace(url, redact_url(url))
        for secret in (parts.path + ("?" + parts.query if parts.query else ""), parts.path, parts.query):
            if secret and secret != "/":
                text = text.replace(secret, "/<redacted>")
    return text[:300]


def rpc_urls_from_env(name: str) -> tuple[str, ...]:
    value = os.environ.get(f"COINFRS_RPC_{re.sub(r'[^A-Z0-9]', '_', name.upper())}", "")
    return tuple(u.strip() for u in value.split(",") if u.strip())


def tokens_from_env(name: str) -> dict[str, str]:
    """``COINFRS_TOKENS_<CHAIN>=0xcontract=SYMBOL,...``: more verified tokens for a chain."""
    value = os.environ.get(f"COINFRS_TOKENS_{re.sub(r'[^A-Z0-9]', '_', name.upper())}", "")
    pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ChainConfigError(f"COINFRS_TOKENS_{name.upper()}: expected 0xcontract=SYMBOL pairs separated by commas")
    return {normalize_address(a): s.strip().upper() for a, s in pairs}


def _env(prefix: str, name: str) -> str:
    return os.environ.get(f"{prefix}_{re.sub(r'[^A-Z0-9]', '_', name.upper())}", "").strip()


def explorer_from_env(name: str) -> ExplorerConfig | None:
    """``COINFRS_EXPLORER_URL_<CHAIN>`` and ``COINFRS_EXPLORER_KEY_<CHAIN>`` (optional for explorers without keys)."""
    url = _env("COINFRS_EXPLORER_URL", name)
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        raise ChainConfigError(f"COINFRS_EXPLORER_URL_{name.upper()}: {redact_url(url)} is not http(s)")
    rps = _env("COINFRS_EXPLORER_RPS", name)
    try:
        limit = float(rps) if rps else 0.0
    except ValueError:
        raise ChainConfigError(f"COINFRS_EXPLORER_RPS_{name.upper()}={rps!r} is not a number of requests per second") from None
    return ExplorerConfig(url, _env("COINFRS_EXPLORER_KEY", name), max_requests_per_second=limit)


def configured_depth(name: str) -> bool:
    return bool(os.environ.get(f"COINFRS_CONFIRMATIONS_{re.sub(r'[^A-Z0-9]', '_', name.upper())}", "").strip())


def resolve_chain(name: str, *, chain_id: int | None = None, rpc_urls: list[str] | tuple[str, ...] = (),
                  native_symbol: str | None = None, confirmations: int | None = None,
                  tokens: dict[str, str] | None = None) -> ChainConfig:
    """The configuration of chain ``name``: a preset with overrides, or a custom chain (which needs ``chain_id``)."""
    key = (name or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", key) or key == "solana":
        raise ChainConfigError(f"not an EVM chain name: {name!r}")
    preset = PRESETS.get(key)
    if preset is None:
        if chain_id is None:
            raise ChainConfigError(f"chain {key!r} is not a preset ({', '.join(sorted(PRESETS))}): give its chain id")
        preset = ChainConfig(key, int(chain_id), (native_symbol or "ETH").upper(), confirmations=64)
    elif chain_id is not None and int(chain_id) != preset.chain_id:
        raise ChainConfigError(f"chain {key!r} has chain id {preset.chain_id}, not {chain_id}")
    urls = tuple(rpc_urls) or rpc_urls_from_env(key) or preset.rpc_urls
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ChainConfigError(f"chain {key!r}: RPC URL {redact_url(url)} is not http(s)")
    merged = dict(preset.tokens)
    merged.update(tokens_from_env(key))
    merged.update({normalize_address(a): s.upper() for a, s in (tokens or {}).items()})
    if confirmations is None:
        configured = os.environ.get(f"COINFRS_CONFIRMATIONS_{re.sub(r'[^A-Z0-9]', '_', key.upper())}", "").strip()
        if configured and not configured.isdigit():
            raise ChainConfigError(f"COINFRS_CONFIRMATIONS_{key.upper()}={configured!r} is not a block count")
        confirmations = int(configured) if configured else preset.confirmations
    rps = os.environ.get(f"COINFRS_RPS_{re.sub(r'[^A-Z0-9]', '_', key.upper())}", "").strip()
    try:
        max_rps = float(rps) if rps else preset.max_requests_per_second
    except ValueError:
        raise ChainConfigError(f"COINFRS_RPS_{key.upper()}={rps!r} is not a number of requests per second") from None
    traces = _env("COINFRS_TRACES", key).lower() not in ("0", "false", "no", "off")
    scan = _env("COINFRS_MAX_SCAN_BLOCKS", key)
    if scan and not scan.isdigit():
        raise ChainConfigError(f"COINFRS_MAX_SCAN_BLOCKS_{key.upper()}={scan!r} is not a block count")
    return replace(preset, max_scan_blocks=int(scan) if scan else preset.max_scan_blocks, rpc_urls=urls, tokens=merged, explorer=explorer_from_env(key) or preset.explorer, traces=traces, confirmations=int(confirmations), max_requests_per_second=max_rps,
                   native_symbol=(native_symbol or preset.native_symbol).upper(),
                   use_finalized_tag=preset.use_finalized_tag and not configured_depth(key))
