"""Close alerts (issue 18, item 7): the rule, the Slack-compatible webhook against a local receiver as strict as
Slack's, retries on the shared policy, a secret URL never logged, a failing webhook never failing the close, and a
wrong master key said in one line by `coinfrs close` and alerted."""

from __future__ import annotations

import base64
import logging
from datetime import date

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ingestion.credentials import EnvKeyProvider, store_source
from ingestion.retry import RetryPolicy
from reconciliation.alerts import (AlertDeliveryError, CloseOutcome, KeyProblem, alert_after_close, decide_alert,
                                   redact_url, send_alert)
from tests.servers.slack_webhook import SlackWebhookServer
from warehouse.entities import get_or_create_entity

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.02)
DAY = date(2026, 1, 2)
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()


@pytest.fixture()
def webhook():
    server = SlackWebhookServer().start()
    yield server
    server.stop()


def outcome(status: str, day: date = DAY, **kw) -> CloseOutcome:
    return CloseOutcome("acme", day, status, kw.get("breaks", 0), kw.get("missing_prices"), kw.get("message"))


# ------------------------------------------------------------------------------- the rule


def test_closed_and_blocked_days_alert_nothing():
    assert decide_alert(entities=["acme"], start=DAY, end=DAY, run_id="r", run_error=None,
                        outcomes=[outcome("closed"), outcome("blocked", date(2026, 1, 3))], key_problems=[]) is None


@pytest.mark.parametrize("status, expected", [
    ("failed", "1 day(s) failed (2026-01-02): canonical_ledger: boom"),
    ("partial", "1 day(s) partial (2026-01-02): source down: kraken"),
    ("breaks", "1 day(s) breaks (2026-01-02): 3 reconciliation break(s)"),
    ("unpriced", "1 day(s) unpriced (2026-01-02): 2 missing price(s)"),
    ("stale", "1 day(s) stale (2026-01-02): inputs changed after the close: close again"),
])
def test_each_status_that_needs_a_person_alerts(status, expected):
    message = {"failed": "canonical_ledger: boom\ntrace", "partial": "source down: kraken"}.get(status)
    alert = decide_alert(entities=["acme"], start=DAY, end=DAY, run_id="r1", run_error=None,
                         outcomes=[outcome("closed", date(2026, 1, 1)),
                                   outcome(status, breaks=3, missing_prices=2, message=message)], key_problems=[])
    assert alert is not None
    assert alert.lines == (f"acme: {expected}",)
    assert alert.title == "Coinfrs close acme 2026-01-02 (run r1) needs attention"
    assert alert.payload() == {"text": f"{alert.title}\n• acme: {expected}"}


def test_a_failed_run_a_long_range_and_a_key_problem_each_say_so():
    days = [date(2026, 1, d) for d in range(1, 9)]
    alert = decide_alert(entities=["acme"], start=days[0], end=days[-1], run_id=None, run_error="step x: y",
                         outcomes=[outcome("breaks", d, breaks=1) for d in days],
                         key_problems=[KeyProblem("acme", "kraken", "stored credentials do not decrypt")])
    assert alert is not None
    assert alert.lines[0] == "the close run failed: step x: y"
    assert alert.lines[1] == ("acme: 8 day(s) breaks (2026-01-01, 2026-01-02, 2026-01-03, 2026-01-04, 2026-01-05 "
                              "and 3 more): 8 reconciliation break(s)")
    assert alert.lines[2].startswith("master key: the credentials of source acme/kraken cannot be decrypted")


def test_redact_url_keeps_only_scheme_host_and_port():
    assert redact_url("https://hooks.slack.com/services/T0/B0/secret?token=x") == "https://hooks.slack.com/…"
    assert redact_url("http://127.0.0.1:8080/a/b") == "http://127.0.0.1:8080/…"


# ------------------------------------------------------------------------------- delivery


def test_the_alert_reaches_the_webhook_as_slack_json(webhook):
    alert = decide_alert(entities=["acme"], start=DAY, end=DAY, run_id="r", run_error=None,
                         outcomes=[outcome("partial", message="source down")], key_problems=[])
    send_alert(webhook.url, alert, policy=FAST)
    assert webhook.state.received == [{"text": alert.text}]


def test_transient_failures_are_retried_on_the_shared_policy(webhook):
    webhook.state.fail_next = 2
    alert = decide_alert(entities=["acme"], start=DAY, end=DAY, run_id="r", run_error="x", outcomes=[], key_problems=[])
    send_alert(webhook.url, alert, policy=FAST)
    assert webhook.state.attempts == 3 and len(webhook.state.received) == 1


def test_a_webhook_that_stays_down_or_refuses_raises_without_the_secret(webhook, caplog):
    caplog.set_level(logging.DEBUG)
    alert = decide_alert(entities=["acme"], start=DAY, end=DAY, run_id="r", run_error="x", outcomes=[], key_problems=[])
    webhook.state.fail_next = 10
    with pytest.raises(AlertDeliveryError) as down:
        send_alert(webhook.url, alert, policy=FAST)
    assert webhook.state.attempts == 3
    assert "after 3 attempt(s): HTTP 500" in str(down.value)
    with pytest.raises(AlertDeliveryError) as refused:  # a revoked webhook (404 no_service) is not retried
        send_alert(webhook.url + "x", alert, policy=FAST)
    assert webhook.state.attempts == 4 and "HTTP 404" in str(refused.value)
    with pytest.raises(AlertDeliveryError) as unreachable:
        send_alert("http://127.0.0.1:9/services/T1/B1/secret-path?token=abc", alert, policy=FAST)
    assert "ConnectError" in str(unreachable.value)
    secret = webhook.state.path.rsplit("/", 1)[1]
    shown = " ".join([str(down.value), str(refused.value), str(unreachable.value), caplog.text])
    assert "HTTP Request: POST http://127.0.0.1" in caplog.text  # httpx did log each request ...
    assert secret not in shown and "secret-path" not in shown and "token=abc" not in shown  # ... redacted


# ------------------------------------------------------------------------------- after a close


def test_alert_after_close_reads_the_closes_table_and_never_raises(engine, webhook, caplog):
    caplog.set_level(logging.INFO, logger="coinfrs.close")
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        conn.execute(sa.text(
            "INSERT INTO closes (entity_id, date, status, legs, positions, breaks, unmatched_transfers, missing_prices, "
            "message) VALUES (:e, '2026-01-01', 'closed', 1, 1, 0, 0, 0, NULL), (:e, '2026-01-02', 'unpriced', 1, 1, 0, "
            "0, 4, NULL), (:e, '2026-03-01', 'stale', 1, 1, 0, 0, 0, NULL), (:e, '2026-04-01', 'breaks', 1, 1, 2, 0, "
            "0, NULL)"), dict(e=entity.id))
    alert, problems = alert_after_close(engine, [entity], date(2026, 1, 1), date(2026, 1, 2), run_id="r",
                                        run_error=None, url=webhook.url, policy=FAST)
    assert problems == []
    assert alert is not None and alert.lines == (  # a later stale day is named; a breaks day outside the run is not
        "acme: 1 day(s) unpriced (2026-01-02): 4 missing price(s)",
        "acme: 1 day(s) stale (2026-03-01): inputs changed after the close: close again")
    assert webhook.state.received == [alert.payload()]
    webhook.state.fail_next = 10
    alert_after_close(engine, [entity], date(2026, 1, 1), date(2026, 1, 2), run_id="r", run_error=None,
                      url=webhook.url, policy=FAST)
    failures = [r.getMessage() for r in caplog.records if "failed after" in r.getMessage()]
    assert failures == [f"alert webhook {redact_url(webhook.url)} failed after 3 attempt(s): HTTP 500 "
                        "(the close is not affected)"]


def test_a_wrong_master_key_is_said_by_the_close_in_one_line_and_alerted(engine, webhook, monkeypatch, tmp_path):
    from orchestration.cli import app
    from warehouse.settings import get_settings

    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "acme")
        store_source(conn, entity.id, "kraken", "kraken-main", {"api_key": "k", "api_secret": "c2VjcmV0"},
                     {"since": "2026-01-01", "api_url": "http://127.0.0.1:9"}, EnvKeyProvider(KEY_A))
    monkeypatch.setenv("COINFRS_ENCRYPTION_KEY", KEY_B)  # not the key the credentials were stored with
    monkeypatch.setenv("COINFRS_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["close", "--entity", "acme", "--date", DAY.isoformat()])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps at its width
    assert said.count("master key:") == 1, result.output
    line = said[said.index("master key:"):]
    assert line.startswith("master key: the credentials of source acme/kraken-main cannot be decrypted (these "
                           "credentials were encrypted with key env:")
    assert "its days are partial" in line
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM closes")).scalars().all() == ["partial"]
    [payload] = webhook.state.received
    assert "acme: 1 day(s) partial (2026-01-02)" in payload["text"]
    assert "master key: the credentials of source acme/kraken-main cannot be decrypted" in payload["text"]
    assert webhook.state.path not in result.output
