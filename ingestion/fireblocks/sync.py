"""Fireblocks (custodian) through ``requests``: vault accounts, their asset balances and transactions.

Authentication is Fireblocks' signed JWT: every request carries ``X-API-Key`` and ``Authorization: Bearer <JWT>``,
the JWT signed RS256 with the API user's RSA private key (``cryptography``; no JWT library needed) over the
claims ``uri`` (path and query), ``nonce`` (random, once), ``iat``, ``exp`` (iat + 55 s), ``sub`` (the API key)
and ``bodyHash`` (SHA-256 hex of the body; empty for a GET). The private key is stored encrypted with the other
source credentials (ingestion/credentials.py) and never logged or put in a message.

Staged:
  raw_records ``transactions`` (source ``fireblocks``): ``GET /v1/transactions`` sorted by ``createdAt``
      ascending, in time windows (``after``/``before``) from the cursor minus an overlap (3 days: a transaction
      whose status changes is staged again as a new version, the latest wins), following the ``next-page``
      header. Each window commits with its cursor.
  raw_balance_snapshots (account type ``vault``, sub-account = the vault account's id):
      ``GET /v1/vault/accounts_paged`` (cursor paging) at run time: each vault's ``total`` per asset; and, as
      Fireblocks has no historical balances, the run-time balances rolled back to each day's cutoff with the
      staged completed transactions after it (ingestion/fireblocks/mapping.py says what each one moved).

Retries (tenacity, exponential backoff with jitter) for connection errors, timeouts, 429 (``Retry-After``)
and 5xx only; 401/403 stop at once with Fireblocks' message (a bad signature, an unknown key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy.engine import Engine

from ingestion.credentials import CredentialError
from ingestion.retry import RetryPolicy, SourceAccessError, SourceError, SourceUnavailable, TransientError, retry_call
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, load_cursor, start_run,
                               write_balance_snapshots, write_cursor, write_raw_records)
from ingestion.fireblocks.mapping import ACCOUNT_TYPE, SOURCE, STREAM, vault_changes
from transforms.mappers import StagedRecord
from warehouse.calendar import close_date_of, cutoff_of, days_between
from warehouse.numbers import D, ZERO

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


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass
class FireblocksSyncStats:
    source: str
    records_seen: dict[str, int] = field(default_factory=dict)
    records_inserted: dict[str, int] = field(default_factory=dict)
    snapshots_inserted: int = 0
    vault_accounts: int = 0
    calls: int = 0


class FireblocksSync:
    """One sync of one configured Fireblocks workspace of one entity."""

    def __init__(self, engine: Engine, entity_id: int, account: str, client: FireblocksClient,
                 options: FireblocksOptions, tz=timezone.utc) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.entity_id, self.account, self.client, self.options = engine, entity_id, account, client, options
        self.tz = tz
        self.stats = FireblocksSyncStats(account)
        self.now = int(time.time() * 1000)

    def sync_transactions(self) -> None:
        with self.engine.connect() as conn:
            cursor = load_cursor(conn, self.entity_id, SOURCE, self.account, STREAM)
        since = int(self.options.since.timestamp() * 1000)
        start = since if cursor is None else max(since, int(cursor["until"]) - self.options.overlap_ms)
        size = self.options.window_days * DAY_MS
        while start < self.now:
            end = min(start + size, self.now)
            rows = self.client.transactions(start - 1, end + 1)  # (start - 1, end + 1): createdAt in [start, end]
            self.stats.calls = self.client.calls
            records = [RawRecordIn(self.account, f"{self.account}|{r['id']}", _utc(int(r["createdAt"])), r) for r in rows]
            with self.engine.begin() as conn:
                run = start_run(conn, self.entity_id, SOURCE, STREAM, rows=len(records))
                inserted = write_raw_records(conn, self.entity_id, SOURCE, STREAM, records, run)
                write_cursor(conn, self.entity_id, SOURCE, self.account, STREAM, {"until": end}, run)
                finish_run(conn, run, seen=len(records), inserted=inserted)
            self.stats.records_seen[STREAM] = self.stats.records_seen.get(STREAM, 0) + len(records)
            self.stats.records_inserted[STREAM] = self.stats.records_inserted.get(STREAM, 0) + inserted
            start = end

    def sync_balances(self) -> None:
        """Vault balances now, and rolled back to each day's cutoff since the last day snapshotted."""
        taken = datetime.now(timezone.utc)
        accounts = self.client.vault_accounts()
        self.stats.vault_accounts, self.stats.calls = len(accounts), self.client.calls
        now_held = {str(a["id"]): {str(x["id"]).upper(): x["total"] for x in a.get("assets") or []} for a in accounts}
        snapshots = [BalanceSnapshotIn(self.account, ACCOUNT_TYPE, str(a["id"]), taken, now_held[str(a["id"])],
                                       {"endpoint": "/v1/vault/accounts_paged", "account": a}) for a in accounts]
        with self.engine.connect() as conn:
            cursor = load_cursor(conn, self.entity_id, SOURCE, self.account, "balances")
            staged = conn.execute(sa.text(
                """SELECT DISTINCT ON (source_raw_id) id, source_raw_id, occurred_at, payload FROM raw_records
                   WHERE entity_id = :e AND source = :s AND stream = :st AND account = :a
                   ORDER BY source_raw_id, id DESC"""),
                dict(e=self.entity_id, s=SOURCE, st=STREAM, a=self.account)).all()
        changes = [(r.occurred_at, leg) for r in staged
                   for leg in vault_changes(StagedRecord(r.id, SOURCE, STREAM, self.account, r.source_raw_id,
                                                         r.occurred_at, r.payload))]
        last_day = close_date_of(taken, self.tz) - timedelta(days=1)
        first_day = (date.fromisoformat(cursor["day"]) + timedelta(days=1) if cursor
                     else min((close_date_of(t, self.tz) for t, _ in changes), default=last_day + timedelta(days=1)))
        for day in days_between(first_day, last_day):
            cutoff = cutoff_of(day, self.tz)
            later: dict[tuple[str, str], Any] = defaultdict(lambda: ZERO)
            for when, leg in changes:
                if when > cutoff:
                    later[(leg.sub_account, leg.asset)] += leg.quantity
            for vault, held in now_held.items():
                assets = set(held) | {asset for (v, asset) in later if v == vault}
                balances = {asset: format(D(held.get(asset, "0")) - later[(vault, asset)], "f") for asset in sorted(assets)}
                snapshots.append(BalanceSnapshotIn(self.account, ACCOUNT_TYPE, vault, cutoff, balances, {
                    "rolled_back_from": taken.isoformat(), "vault_account": vault, "balances_then": held,
                    "transactions_after_cutoff": sorted({leg.tx_hash or "" for w, leg in changes
                                                         if w > cutoff and leg.sub_account == vault} - {""})}))
        with self.engine.begin() as conn:
            run = start_run(conn, self.entity_id, SOURCE, "balances", rows=len(snapshots))
            inserted = write_balance_snapshots(conn, self.entity_id, SOURCE, snapshots, run)
            if last_day >= first_day:
                write_cursor(conn, self.entity_id, SOURCE, self.account, "balances", {"day": last_day.isoformat()}, run)
            finish_run(conn, run, seen=len(snapshots), inserted=inserted)
        self.stats.snapshots_inserted += inserted

    def run(self) -> FireblocksSyncStats:
        self.sync_transactions()
        self.sync_balances()
        return self.stats


# ------------------------------------------------------------------------------ the source kind


def _options(config: dict[str, Any]) -> FireblocksOptions:
    from ingestion.connectors import retry_policy, since_of

    return FireblocksOptions(api_url=config.get("api_url") or DEFAULT_URL, since=since_of(config),
                             timeout_ms=int(config.get("timeout_ms", 10_000)), retry=retry_policy(config))


def read_credentials(path: Path | None) -> dict[str, str]:
    """``{"api_key": ..., "private_key": "-----BEGIN PRIVATE KEY-----..."}`` (or ``"private_key_file"``: a path),
    else ``COINFRS_FIREBLOCKS_API_KEY`` / ``COINFRS_FIREBLOCKS_PRIVATE_KEY``; the key must load as RSA."""
    from ingestion.connectors import read_json_credentials

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


def _client(credentials: dict[str, str], config: dict[str, Any]) -> tuple[FireblocksClient, FireblocksOptions]:
    options = _options(config)
    return FireblocksClient(credentials["api_key"], credentials["private_key"], options), options


def _check(credentials: dict[str, str], config: dict[str, Any]) -> dict[str, Any]:
    client, _ = _client(credentials, config)
    accounts = client.vault_accounts()
    return {"enableReading": True, "vault_accounts": len(accounts)}


def _inspect(credentials: dict[str, str], config: dict[str, Any]):
    client, _ = _client(credentials, config)
    accounts = client.vault_accounts()
    held = {f"vault {a['id']} ({a.get('name', '')})": {str(x["id"]): str(x["total"]) for x in a.get("assets") or []}
            for a in accounts}
    return {"enableReading": True}, len(accounts), held, (
        f"signed JWT accepted; {len(accounts)} vault accounts (Fireblocks does not show an API user's role to itself: "
        "give it the Viewer role)")


def _make_sync(engine: Engine, entity_id: int, account: str, credentials: dict[str, str], config: dict[str, Any]):
    from warehouse.entities import resolve_entity

    client, options = _client(credentials, config)
    with engine.connect() as conn:
        tz = resolve_entity(conn, entity_id).tz
    return FireblocksSync(engine, entity_id, account, client, options, tz)


def _connector():
    from ingestion.connectors import Connector

    return Connector(SOURCE, read_credentials, _check, _inspect, _make_sync)


CONNECTOR = _connector()
