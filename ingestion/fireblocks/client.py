"""Talking to Fireblocks: the signed-JWT ``requests`` client (vault accounts, transactions), the settings and
credentials of a configured Fireblocks source, and the check that its key reads.

Authentication is Fireblocks' signed JWT: every request carries ``X-API-Key`` and ``Authorization: Bearer <JWT>``,
the JWT signed RS256 with the API user's RSA private key (``cryptography``; no JWT library needed) over the
claims ``uri`` (path and query), ``nonce`` (random, once), ``iat``, ``exp`` (iat + 55 s), ``sub`` (the API key)
and ``bodyHash`` (SHA-256 hex of the body; empty for a GET). The private key is stored encrypted with the other
source credentials (ingestion/credentials.py) and never logged or put in a message.

Retries (the shared policy, ingestion/retry.py) for connection errors, timeouts, 429 (``Retry-After``) and 5xx
only; 401/403 stop at once with Fireblocks' message (a bad signature, an unknown key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ingestion.connectors import read_json_credentials, retry_policy, since_of
from ingestion.credentials import CredentialError
from ingestion.retry import RetryPolicy, SourceAccessError, SourceError, SourceUnavailable, TransientError, retry_call

DEFAULT_URL = "https://api.fireblocks.io"
DAY_MS = 86_400_000
JWT_LIFETIME_SECONDS = 55


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The API user's RSA private key from PEM text; the error never contains the key."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise CredentialError("the Fireblocks private key is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError("the Fireblocks private key is not an RSA key (Fireblocks signs RS256)")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(api_key: str, private_key: rsa.RSAPrivateKey, uri: str, body: bytes = b"", *, now: float | None = None) -> str:
    """Fireblocks' request JWT (RS256) for ``uri`` (path + query) and ``body``."""
    issued = int(now if now is not None else time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"uri": uri, "nonce": uuid.uuid4().hex, "iat": issued, "exp": issued + JWT_LIFETIME_SECONDS,
              "sub": api_key, "bodyHash": hashlib.sha256(body).hexdigest()}
    signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}." \
                    f"{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


@dataclass(frozen=True)
class FireblocksOptions:
    api_url: str = DEFAULT_URL
    since: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc)
    timeout_ms: int = 10_000
    retry: RetryPolicy = RetryPolicy()
    page_size: int = 500
    window_days: int = 30
    overlap_ms: int = 3 * DAY_MS


class FireblocksClient:
    """Signed GETs against the Fireblocks API, with retries for transient failures only."""

    def __init__(self, api_key: str, private_key_pem: str, options: FireblocksOptions) -> None:
        self.api_key, self._key = api_key, load_private_key(private_key_pem)
        self.options = options
        self.base = options.api_url.rstrip("/")
        self.session = requests.Session()
        self.calls = 0

    def __repr__(self) -> str:  # never print the key
        return f"FireblocksClient({self.base}, api_key={self.api_key[:4]}…)"

    def get(self, path_and_query: str) -> tuple[Any, requests.structures.CaseInsensitiveDict]:
        """GET ``path_and_query`` (``/v1/...``); returns (JSON body, headers)."""
        policy = self.options.retry

        def once() -> tuple[Any, Any]:
            self.calls += 1
            token = sign_jwt(self.api_key, self._key, path_and_query)
            try:
                response = self.session.get(self.base + path_and_query, timeout=self.options.timeout_ms / 1000,
                                            headers={"X-API-Key": self.api_key, "Authorization": f"Bearer {token}"})
            except (requests.ConnectionError, requests.Timeout) as error:
                raise TransientError(f"{type(error).__name__}") from None
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = response.headers.get("Retry-After")
                raise TransientError(f"HTTP {response.status_code}", float(retry_after) if retry_after else None)
            if response.status_code in (401, 403):
                raise SourceAccessError(f"Fireblocks refused the request GET {urlsplit(path_and_query).path} "
                                        f"(HTTP {response.status_code}: {_message(response)}): check the API key, "
                                        "its private key and the API user's role")
            if response.status_code >= 400:
                raise SourceError(f"Fireblocks rejected GET {urlsplit(path_and_query).path} "
                                  f"(HTTP {response.status_code}: {_message(response)})")
            return response.json(), response.headers

        try:
            return retry_call(once, policy)
        except TransientError as error:
            raise SourceUnavailable(f"Fireblocks did not answer GET {urlsplit(path_and_query).path} after "
                                    f"{policy.attempts} attempts ({error})") from None

    def vault_accounts(self) -> list[dict]:
        """Every vault account with its assets (``/v1/vault/accounts_paged``, cursor paging)."""
        accounts: list[dict] = []
        after: str | None = None
        while True:
            query = {"limit": 200, **({"after": after} if after else {})}
            body, _ = self.get("/v1/vault/accounts_paged?" + urlencode(query))
            accounts.extend(body.get("accounts") or [])
            after = (body.get("paging") or {}).get("after")
            if not after:
                return accounts

    def transactions(self, after_ms: int, before_ms: int) -> list[dict]:
        """Transactions created in (after_ms, before_ms), oldest first, following the ``next-page`` header."""
        query = urlencode({"after": after_ms, "before": before_ms, "orderBy": "createdAt", "sort": "ASC",
                           "limit": self.options.page_size})
        path = f"/v1/transactions?{query}"
        rows: list[dict] = []
        while True:
            body, headers = self.get(path)
            rows.extend(body)
            next_page = headers.get("next-page")
            if not next_page:
                return rows
            split = urlsplit(next_page)
            path = split.path + (f"?{split.query}" if split.query else "")


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message"))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def fireblocks_options(config: dict[str, Any]) -> FireblocksOptions:
    return FireblocksOptions(api_url=config.get("api_url") or DEFAULT_URL, since=since_of(config),
                             timeout_ms=int(config.get("timeout_ms", 10_000)), retry=retry_policy(config))


def read_credentials(path: Path | None) -> dict[str, str]:
    """``{"api_key": ..., "private_key": "-----BEGIN PRIVATE KEY-----..."}`` (or ``"private_key_file"``: a path),
    else ``COINFRS_FIREBLOCKS_API_KEY`` / ``COINFRS_FIREBLOCKS_PRIVATE_KEY``; the key must load as RSA."""
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CredentialError(f"cannot read credentials file {path}: {type(error).__name__}") from None
        if isinstance(data, dict) and data.get("private_key_file") and not data.get("private_key"):
            key_path = (path.parent / str(data["private_key_file"])).expanduser()
            try:
                pem = key_path.read_text(encoding="utf-8")
            except OSError as error:
                raise CredentialError(f"cannot read the private key file {key_path}: {type(error).__name__}") from None
            credentials = {"api_key": str(data.get("api_key") or "").strip(), "private_key": pem}
            if not credentials["api_key"]:
                raise CredentialError(f"credentials file {path}: missing api_key")
        else:
            credentials = read_json_credentials("fireblocks", path, {"api_key": ("api_key",), "private_key": ("private_key",)})
    else:
        credentials = read_json_credentials("fireblocks", None, {"api_key": ("api_key",), "private_key": ("private_key",)})
    load_private_key(credentials["private_key"])
    return credentials


def client_of(credentials: dict[str, str], config: dict[str, Any]) -> tuple[FireblocksClient, FireblocksOptions]:
    options = fireblocks_options(config)
    return FireblocksClient(credentials["api_key"], credentials["private_key"], options), options


def check(credentials: dict[str, str], config: dict[str, Any]) -> dict[str, Any]:
    client, _ = client_of(credentials, config)
    accounts = client.vault_accounts()
    return {"enableReading": True, "vault_accounts": len(accounts)}


def inspect(credentials: dict[str, str], config: dict[str, Any]):
    client, _ = client_of(credentials, config)
    accounts = client.vault_accounts()
    held = {f"vault {a['id']} ({a.get('name', '')})": {str(x["id"]): str(x["total"]) for x in a.get("assets") or []}
            for a in accounts}
    return {"enableReading": True}, len(accounts), held, (
        f"signed JWT accepted; {len(accounts)} vault accounts (Fireblocks does not show an API user's role to itself: "
        "give it the Viewer role)")
