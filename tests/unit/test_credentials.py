"""AES-256-GCM credentials: the master key from the environment, associated data binding entity and source."""

from __future__ import annotations

import base64
import os

import pytest

from ingestion.credentials import CredentialError, EnvKeyProvider, _aad


def test_round_trip_and_the_ciphertext_is_bound_to_its_entity_and_source():
    provider = EnvKeyProvider(base64.b64encode(os.urandom(32)).decode())
    key_id, nonce, ciphertext = provider.encrypt(b'{"api_secret": "s3cret"}', _aad(1, "binance", "main"))
    assert b"s3cret" not in ciphertext and len(nonce) == 12
    assert provider.decrypt(key_id, nonce, ciphertext, _aad(1, "binance", "main")) == b'{"api_secret": "s3cret"}'
    with pytest.raises(CredentialError, match="copied from another entity/source"):
        provider.decrypt(key_id, nonce, ciphertext, _aad(2, "binance", "main"))
    with pytest.raises(CredentialError, match="copied from another entity/source"):
        provider.decrypt(key_id, nonce, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), _aad(1, "binance", "main"))


def test_another_master_key_is_named_not_tried():
    first, second = EnvKeyProvider("11" * 32), EnvKeyProvider(base64.urlsafe_b64encode(b"\x02" * 32).decode())
    key_id, nonce, ciphertext = first.encrypt(b"x", b"aad")
    with pytest.raises(CredentialError, match=f"encrypted with key {key_id}"):
        second.decrypt(key_id, nonce, ciphertext, b"aad")


@pytest.mark.parametrize("text", ["", "too-short", base64.b64encode(b"\x01" * 16).decode()])
def test_a_missing_or_short_master_key_is_refused(text, monkeypatch):
    monkeypatch.delenv("COINFRS_ENCRYPTION_KEY", raising=False)
    with pytest.raises(CredentialError, match="COINFRS_ENCRYPTION_KEY"):
        EnvKeyProvider(text or None)
