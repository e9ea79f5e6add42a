"""Bitcoin networks, addresses and extended public keys (embit): which addresses a wallet owns.

A wallet is one address, or an extended public key (account level, as a wallet exports it): ``xpub`` (legacy P2PKH,
BIP44), ``ypub`` (P2SH-wrapped P2WPKH, BIP49), ``zpub`` (native P2WPKH, BIP84); on test networks ``tpub``/``upub``/
``vpub``. Its addresses are ``<key>/0/i`` (receive chain) and ``<key>/1/i`` (change chain); discovery stops after
``gap_limit`` unused addresses in a row on each chain (BIP44's gap limit, default 20). Pure: no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from embit import bip32, script
from embit.base import EmbitError
from embit.networks import NETWORKS

DEFAULT_GAP_LIMIT = 20
DEFAULT_CONFIRMATIONS = 6
RECEIVE, CHANGE = 0, 1
SATS_DECIMALS = 8


class BitcoinKeyError(ValueError):
    """Not an address or extended public key of the wallet's network; the message names what was given."""


@dataclass(frozen=True)
class BitcoinNetwork:
    chain: str  # the wallet's chain name: bitcoin, bitcoin-testnet, bitcoin-signet, bitcoin-regtest
    embit: str  # embit's network key
    native_symbol: str

    @property
    def params(self) -> dict:
        return NETWORKS[self.embit]


NETWORKS_BY_CHAIN: dict[str, BitcoinNetwork] = {n.chain: n for n in (
    BitcoinNetwork("bitcoin", "main", "BTC"),
    BitcoinNetwork("bitcoin-testnet", "test", "BTC-TEST"),
    BitcoinNetwork("bitcoin-signet", "signet", "BTC-TEST"),
    BitcoinNetwork("bitcoin-regtest", "regtest", "BTC-TEST"),
)}


def is_bitcoin_chain(chain: str) -> bool:
    return chain in NETWORKS_BY_CHAIN


def network_of(chain: str) -> BitcoinNetwork:
    try:
        return NETWORKS_BY_CHAIN[chain]
    except KeyError:
        raise BitcoinKeyError(f"unknown Bitcoin chain {chain!r} (expected one of {', '.join(NETWORKS_BY_CHAIN)})") from None


def address_script(address: str, network: BitcoinNetwork) -> bytes:
    """The scriptPubKey of ``address``, refused unless it is a valid address of ``network``."""
    params = network.params
    lowered = address.lower()
    try:
        if lowered.startswith(params["bech32"] + "1"):
            spk = script.address_to_scriptpubkey(address)
        else:
            if lowered.startswith(tuple(n["bech32"] + "1" for n in NETWORKS.values())):
                raise BitcoinKeyError(f"{address!r} is an address of another network than {network.chain}")
            from embit import base58

            raw = base58.decode_check(address)
            if raw[:1] not in (params["p2pkh"], params["p2sh"]) or len(raw) != 21:
                raise BitcoinKeyError(f"{address!r} is not a {network.chain} address (version byte {raw[:1].hex()})")
            spk = script.address_to_scriptpubkey(address)
    except BitcoinKeyError:
        raise
    except (EmbitError, ValueError, KeyError, IndexError) as exc:
        raise BitcoinKeyError(f"not a {network.chain} address: {address!r} ({exc})") from None
    return spk.data


# version name -> (script kind, BIP purpose)
_KINDS = {"xpub": "p2pkh", "ypub": "p2sh-p2wpkh", "zpub": "p2wpkh"}


@dataclass(frozen=True)
class WalletKeys:
    """What a wallet owns: one address, or the addresses of an extended public key."""

    network: BitcoinNetwork
    spec: str  # the address or the extended key, as given
    kind: str  # address | p2pkh | p2sh-p2wpkh | p2wpkh
    key: bip32.HDKey | None = None

    @property
    def is_extended(self) -> bool:
        return self.key is not None

    def address(self, chain: int, index: int) -> str:
        """The address ``<key>/chain/index``."""
        if self.key is None:
            raise BitcoinKeyError("a single-address wallet derives no addresses")
        pub = self.key.derive([chain, index]).key
        if self.kind == "p2wpkh":
            spk = script.p2wpkh(pub)
        elif self.kind == "p2sh-p2wpkh":
            spk = script.p2sh(script.p2wpkh(pub))
        else:
            spk = script.p2pkh(pub)
        return spk.address(self.network.params)


def parse_wallet(spec: str, chain: str) -> WalletKeys:
    """An address or an extended public key of ``chain``'s network (refused with a one-line reason otherwise)."""
    network = network_of(chain)
    text = spec.strip()
    if not text:
        raise BitcoinKeyError("an address or an extended public key is required")
    if text[1:4] in ("pub", "prv") and len(text) > 100:
        if text[1:4] == "prv":
            raise BitcoinKeyError("that is an extended PRIVATE key: give the extended public key (xpub/ypub/zpub)")
        try:
            key = bip32.HDKey.from_base58(text)
        except (EmbitError, ValueError, KeyError, IndexError) as exc:
            raise BitcoinKeyError(f"not an extended public key: {text[:12]}... ({exc})") from None
        params = network.params
        for name, kind in _KINDS.items():
            if key.version == params[name]:
                return WalletKeys(network, text, kind, key)
        raise BitcoinKeyError(f"{text[:4]}... is not a single-signature extended public key of {chain} "
                              f"(expected {'/'.join(_ext_names(network))})")
    address_script(text, network)
    return WalletKeys(network, text, "address")


def _ext_names(network: BitcoinNetwork) -> list[str]:
    return ["xpub", "ypub", "zpub"] if network.embit == "main" else ["tpub", "upub", "vpub"]
