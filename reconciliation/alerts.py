"""Alerts after a close: a Slack-compatible webhook (``{"text": ...}``) when closes need a person.

What alerts is one plain typed rule, ``decide_alert``: a close run that failed, closes left ``failed``,
``partial``, ``breaks``, ``unpriced`` or ``stale``, and a master key (``COINFRS_ENCRYPTION_KEY``) that cannot
decrypt a stored source's credentials. The facts come from the closes table (``read_close_outcomes``) and from
trying the configured key on each enabled source (``find_key_problems``). ``alert_after_close`` runs once per
close run: in the close runner for `coinfrs close`, in the ``close_alert_sensor`` / ``close_failure_sensor`` for
runs of the schedule, the sensors and the UI (orchestration/definitions.py).

The webhook URL (``COINFRS_ALERT_WEBHOOK_URL``) is a secret: its path and query are never logged or shown
(``redact_url``; httpx's own request log line is redacted too). Delivery is retried on the shared policy
(ingestion/retry.py) for connection errors, timeouts, 429 and 5xx; a webhook that still fails is logged in one
line and never fails the close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ingestion.retry import RetryPolicy, TransientError, retry_call
from warehouse.entities import Entity
from warehouse.schema import closes

# Child of the close's progress logger: the `coinfrs close` CLI prints these lines with its progress.
log = logging.getLogger("coinfrs.close.alerts")

ALERT_STATUSES = ("failed", "partial", "breaks", "unpriced", "stale")
DELIVERY_POLICY = RetryPolicy(attempts=3, initial_seconds=0.5, max_seconds=4.0, max_retry_after_seconds=10.0)
MAX_DAYS_SHOWN = 5


@dataclass(frozen=True)
class CloseOutcome:
    """One close record as the alert rule sees it."""

    entity: str
    day: date
    status: str
    breaks: int
    missing_prices: int | None
    message: str | None


@dataclass(frozen=True)
class KeyProblem:
    """A stored source whose credentials the configured master key cannot decrypt (or no key is configured)."""

    entity: str
    source: str
    message: str

    def line(self) -> str:
        return (f"master key: the credentials of source {self.entity}/{self.source} cannot be decrypted "
                f"({self.message}); it was not synced and its days are partial")


@dataclass(frozen=True)
class Alert:
    title: str
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join((self.title, *(f"• {line}" for line in self.lines)))

    def payload(self) -> dict[str, str]:
        return {"text": self.text}


class AlertDeliveryError(RuntimeError):
    """The webhook did not take the alert; the message never contains the URL's path or query."""


# ------------------------------------------------------------------------------- the rule


def _days(days: Sequence[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:MAX_DAYS_SHOWN])
    return shown + (f" and {len(days) - MAX_DAYS_SHOWN} more" if len(days) > MAX_DAYS_SHOWN else "")


def decide_alert(*, entities: Sequence[str], start: date, end: date, run_id: str | None, run_error: str | None,
                 outcomes: Sequence[CloseOutcome], key_problems: Sequence[KeyProblem]) -> Alert | None:
    """The alert a close run deserves, or None when every close is ``closed`` (or ``blocked``: waiting for a
    classification is a workflow state, shown by the close itself) and the key reads every source."""
    lines: list[str] = []
    if run_error:
        lines.append(f"the close run failed: {run_error}")
    for entity in entities:
        mine = [o for o in outcomes if o.entity == entity]
        for status in ALERT_STATUSES:
            hits = sorted((o for o in mine if o.status == status), key=lambda o: o.day)
            if not hits:
                continue
            days = [o.day for o in hits]
            if status == "breaks":
                detail = f"{sum(o.breaks for o in hits)} reconciliation break(s)"
            elif status == "unpriced":
                detail = f"{sum(o.missing_prices or 0 for o in hits)} missing price(s)"
            elif status == "stale":
                detail = "inputs changed after the close: close again"
            else:
                first = next((o.message for o in hits if o.message), None)
                detail = (first or status).splitlines()[0][:300]
            lines.append(f"{entity}: {len(hits)} day(s) {status} ({_days(days)}): {detail}")
    lines.extend(p.line() for p in key_problems)
    if not lines:
        return None
    span = start.isoformat() if start == end else f"{start}..{end}"
    run = f" (run {run_id})" if run_id else ""
    return Alert(f"Coinfrs close {', '.join(entities)} {span}{run} needs attention", tuple(lines))


# ------------------------------------------------------------------------------- the facts


def read_close_outcomes(conn: Connection, entities: Sequence[Entity], start: date, end: date) -> list[CloseOutcome]:
    """The closes of [start, end], plus every stale close of the entities (a later day the run's data made stale)."""
    names = {e.id: e.name for e in entities}
    if not names:
        return []
    in_range = closes.c.date.between(start, end)
    rows = conn.execute(sa.select(closes.c.entity_id, closes.c.date, closes.c.status, closes.c.breaks,
                                  closes.c.missing_prices, closes.c.message)
                        .where(closes.c.entity_id.in_(names), sa.or_(in_range, closes.c.status == "stale"))
                        .order_by(closes.c.entity_id, closes.c.date)).all()
    return [CloseOutcome(names[r.entity_id], r.date, r.status, r.breaks, r.missing_prices, r.message) for r in rows]


def find_key_problems(conn: Connection, entities: Sequence[Entity],
                      provider_factory: Callable[[], object] | None = None) -> list[KeyProblem]:
    """Try the configured master key on every enabled stored source of the entities (nothing is kept)."""
    from ingestion.credentials import CredentialError, EnvKeyProvider, list_sources, load_credentials

    problems: list[KeyProblem] = []
    provider = None
    provider_error: str | None = None
    for entity in entities:
        for source in list_sources(conn, entity.id):
            if provider is None and provider_error is None:
                try:
                    provider = (provider_factory or EnvKeyProvider)()
                except CredentialError as exc:
                    provider_error = str(exc)
            if provider_error is not None:
                problems.append(KeyProblem(entity.name, source.name, provider_error))
                continue
            try:
                load_credentials(conn, source, provider)  # type: ignore[arg-type]
            except CredentialError as exc:
                problems.append(KeyProblem(entity.name, source.name, str(exc)))
    return problems


# ------------------------------------------------------------------------------- delivery


def redact_url(url: str) -> str:
    """``scheme://host[:port]``: what may be logged of a webhook URL (its path and query are the secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable webhook URL>"
    return f"{parts.scheme or '?'}://{host}{port}/…"


class _RedactWebhookUrls(logging.Filter):
    """httpx logs each request with its full URL at INFO: show the secret webhook URLs redacted."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets and isinstance(record.args, tuple):
            record.args = tuple(redact_url(str(a)) if str(a) in self.secrets else a for a in record.args)
        return True


_REDACT = _RedactWebhookUrls()
logging.getLogger("httpx").addFilter(_REDACT)


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, (TransientError, httpx.TransportError))


def send_alert(url: str, alert: Alert, *, timeout: float = 5.0, policy: RetryPolicy = DELIVERY_POLICY,
               sleep: Callable[[float], None] | None = None) -> None:
    """POST the alert as ``{"text": ...}``; retried for connection errors, timeouts, 429 and 5xx. Raises
    ``AlertDeliveryError`` (without the URL's secret parts) when the webhook does not take it."""
    _REDACT.secrets.update({url, str(httpx.URL(url))})
    where = redact_url(url)

    def post(client: httpx.Client) -> None:
        response = client.post(url, json=alert.payload())
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After")
            raise TransientError(f"HTTP {response.status_code}",
                                 float(retry_after) if retry_after and retry_after.isdigit() else None)
        if response.status_code >= 300:
            raise AlertDeliveryError(f"alert webhook {where} refused the alert: HTTP {response.status_code}")

    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            retry_call(lambda: post(client), policy, is_transient=_is_transient,
                       **({"sleep": sleep} if sleep is not None else {}))
    except AlertDeliveryError:
        raise
    except TransientError as exc:
        raise AlertDeliveryError(f"alert webhook {where} failed after {policy.attempts} attempt(s): {exc}") from None
    except httpx.HTTPError as exc:  # str(exc) may carry the URL: name the kind only
        raise AlertDeliveryError(f"alert webhook {where} failed after {policy.attempts} attempt(s): "
                                 f"{type(exc).__name__}") from None


def webhook_url() -> str | None:
    from warehouse.settings import get_settings

    secret = get_settings().alert_webhook_url
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


def alert_after_close(engine: Engine, entities: Sequence[Entity], start: date, end: date, *, run_id: str | None,
                      run_error: str | None, url: str | None = None, timeout: float | None = None,
                      policy: RetryPolicy = DELIVERY_POLICY) -> tuple[Alert | None, list[KeyProblem]]:
    """After a close run: say each key problem in one line, decide the alert and send it when a webhook is set.
    Never raises: a failing webhook (or the check itself) is logged in one line. Returns what it decided."""
    try:
        with engine.connect() as conn:
            outcomes = read_close_outcomes(conn, entities, start, end)
            key_problems = find_key_problems(conn, entities)
    except Exception as exc:  # noqa: BLE001 - alerting must never fail the close it reports on
        log.warning("alerts: could not read the closes to alert on: %s", type(exc).__name__)
        return None, []
    for problem in key_problems:
        log.warning(problem.line())
    alert = decide_alert(entities=[e.name for e in entities], start=start, end=end, run_id=run_id,
                         run_error=run_error, outcomes=outcomes, key_problems=key_problems)
    target = url if url is not None else webhook_url()
    if alert is None or not target:
        return alert, key_problems
    if timeout is None:
        from warehouse.settings import get_settings

        timeout = get_settings().alert_timeout_seconds
    try:
        send_alert(target, alert, timeout=timeout, policy=policy)
        log.info("alert sent to %s: %d line(s)", redact_url(target), len(alert.lines))
    except AlertDeliveryError as exc:
        log.warning("%s (the close is not affected)", exc)
    except Exception as exc:  # noqa: BLE001 - a webhook never fails the close
        log.warning("alert webhook %s failed: %s (the close is not affected)", redact_url(target), type(exc).__name__)
    return alert, key_problems
