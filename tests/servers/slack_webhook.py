"""A local Slack incoming webhook: as strict as hooks.slack.com about what it takes.

Slack's documented answers (api.slack.com/messaging/webhooks, "Handling errors"): 200 ``ok`` for a JSON object
with a non-empty ``text``; 400 ``invalid_payload`` for a body that is not a JSON object (or a wrong content type);
400 ``no_text`` without text; 404 ``no_service`` for an unknown or revoked webhook path; 405 for another method.
``fail_next`` answers 500 ``rollup_error`` that many times first (Slack's transient failure), to test retries.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class WebhookState:
    path: str = field(default_factory=lambda: f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{secrets.token_hex(12)}")
    received: list[dict] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SlackWebhookServer:
    def __init__(self, state: WebhookState | None = None) -> None:
        self.state = state or WebhookState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(405, "invalid_method")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with state.lock:
                    state.attempts += 1
                    if self.path != state.path:
                        return self._answer(404, "no_service")
                    if state.fail_next > 0:
                        state.fail_next -= 1
                        return self._answer(500, "rollup_error")
                if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    return self._answer(400, "invalid_payload")
                try:
                    payload = json.loads(raw)
                except ValueError:
                    return self._answer(400, "invalid_payload")
                if not isinstance(payload, dict):
                    return self._answer(400, "invalid_payload")
                if not isinstance(payload.get("text"), str) or not payload["text"].strip():
                    return self._answer(400, "no_text")
                with state.lock:
                    state.received.append(payload)
                self._answer(200, "ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.state.path}"

    def start(self) -> "SlackWebhookServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
