"""Source credentials at rest: AES-256-GCM (``cryptography``), the master key behind a small interface.

``KeyProvider`` is what a KMS implements (encrypt/decrypt a small blob with associated data, name the key
used). The default, ``EnvKeyProvider``, reads a 256-bit key from ``COINFRS_ENCRYPTION_KEY`` (base64 or 64 hex
characters). The associated data binds a ciphertext to its entity, connector kind and source name, so a
ciphertext copied to another row does not decrypt. Credentials are never logged, printed or returned by
the API; ``SourceInfo`` (what lists and the CLI show) carries no secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from warehouse.schema import source_credentials

KEY_ENV = "COINFRS_ENCRYPTION_KEY"


class CredentialError(RuntimeError):
    """Credentials cannot be stored or read; the message never contains a secret."""


class KeyProvider(Protocol):
    """Encrypts small secrets under a master key (environment, or a KMS)."""

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> tuple[str, bytes, bytes]:
        """(key id, nonce, ciphertext)."""
        ...

    def decrypt(self, key_id: str, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
        ...


class EnvKeyProvider:
    """AES-256-GCM with the key in ``COINFRS_ENCRYPTION_KEY`` (32 bytes, base64 or hex)."""

    def __init__(self, key_text: str | None = None) -> None:
        text = (key_text if key_text is not None else os.environ.get(KEY_ENV, "")).strip()
        if not text:
            raise CredentialError(f"{KEY_ENV} is not set: set it to 32 random bytes in base64 "
                                  "(python -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())')")
        self._key = self._parse(text)
        self.key_id = "env:" + hashlib.sha256(b"coinfrs-key-id" + self._key).hexdigest()[:16]

    @staticmethod
    def _parse(text: str) -> bytes:
        candidates: list[bytes] = []
        if len(text) == 64:
            try:
                candidates.append(bytes.fromhex(text))
            except ValueError:
                pass
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                candidates.append(decode(text + "=" * (-len(text) % 4)))
            except (binascii.Error, ValueError):
                pass
        for key in candidates:
            if len(key) == 32:
                return key
        raise CredentialError(f"{KEY_ENV} must be 32 bytes (AES-256) in base64 or 64 hex characters")

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> tuple[str, bytes, bytes]:
        nonce = os.urandom(12)
        return self.key_id, nonce, AESGCM(self._key).encrypt(nonce, plaintext, associated_data)

    def decrypt(self, key_id: str, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
        if key_id != self.key_id:
            raise CredentialError(f"these credentials were encrypted with key {key_id}, not the configured "
                                  f"{self.key_id}: set {KEY_ENV} to that key")
        try:
            return AESGCM(self._key).decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise CredentialError("stored credentials do not decrypt: wrong key, or the row was altered or "
                                  "copied from another entity/source") from None


@dataclass(frozen=True)
class SourceInfo:
    """A configured source, without its credentials."""

    id: int
    entity_id: int
    name: str
    kind: str
    config: dict[str, Any]
    enabled: bool
    key_id: str
    last_sync_at: datetime | None
    last_sync_status: str | None
    last_sync_message: str | None


def _aad(entity_id: int, kind: str, name: str) -> bytes:
    return json.dumps(["coinfrs-source-credentials", entity_id, kind, name]).encode()


def _info(row: sa.Row) -> SourceInfo:
    return SourceInfo(row.id, row.entity_id, row.name, row.kind, dict(row.config or {}), row.enabled, row.key_id,
                      row.last_sync_at, row.last_sync_status, row.last_sync_message)


_INFO_COLUMNS = [c for c in source_credentials.c if c.name not in ("nonce", "ciphertext")]


def store_source(conn: Connection, entity_id: int, kind: str, name: str, credentials: dict[str, str],
                 config: dict[str, Any], provider: KeyProvider, *, replace: bool = False) -> SourceInfo:
    """Encrypt and store a source's credentials (a new source, or ``replace`` an existing one's)."""
    key_id, nonce, ciphertext = provider.encrypt(json.dumps(credentials).encode(), _aad(entity_id, kind, name))
    values = dict(entity_id=entity_id, name=name, kind=kind, config=config, key_id=key_id, nonce=nonce,
                  ciphertext=ciphertext)
    statement = insert(source_credentials).values(**values)
    if replace:
        statement = statement.on_conflict_do_update(
            constraint="uq_source_credentials_entity_name",
            set_=dict(kind=kind, config=config, key_id=key_id, nonce=nonce, ciphertext=ciphertext, enabled=True,
                      updated_at=sa.func.now()))
    else:
        statement = statement.on_conflict_do_nothing(constraint="uq_source_credentials_entity_name")
    row = conn.execute(statement.returning(*_INFO_COLUMNS)).first()
    if row is None:
        raise CredentialError(f"entity {entity_id} already has a source named {name!r} (use --replace to change its credentials)")
    return _info(row)


def list_sources(conn: Connection, entity_id: int, *, kind: str | None = None, name: str | None = None,
                 enabled_only: bool = True) -> list[SourceInfo]:
    query = sa.select(*_INFO_COLUMNS).where(source_credentials.c.entity_id == entity_id)
    if kind:
        query = query.where(source_credentials.c.kind == kind)
    if name:
        query = query.where(source_credentials.c.name == name)
    if enabled_only:
        query = query.where(source_credentials.c.enabled)
    return [_info(r) for r in conn.execute(query.order_by(source_credentials.c.name)).all()]


def load_credentials(conn: Connection, source: SourceInfo, provider: KeyProvider) -> dict[str, str]:
    row = conn.execute(sa.select(source_credentials.c.key_id, source_credentials.c.nonce, source_credentials.c.ciphertext)
                       .where(source_credentials.c.id == source.id)).one()
    plaintext = provider.decrypt(row.key_id, bytes(row.nonce), bytes(row.ciphertext),
                                 _aad(source.entity_id, source.kind, source.name))
    return json.loads(plaintext)


def set_source_enabled(conn: Connection, source_id: int, enabled: bool) -> None:
    """A disabled source is kept (its staged data and settings) but no sync reads it."""
    conn.execute(source_credentials.update().where(source_credentials.c.id == source_id).values(
        enabled=enabled, updated_at=sa.func.now()))


def record_sync_outcome(conn: Connection, source_id: int, status: str, message: str | None) -> None:
    conn.execute(source_credentials.update().where(source_credentials.c.id == source_id).values(
        last_sync_at=sa.func.now(), last_sync_status=status, last_sync_message=message))
