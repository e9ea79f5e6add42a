"""The response envelope and the request id.

Success: ``{"success": true, "data": ..., "meta": {"timestamp", "request_id", ...}}``
Error:   ``{"success": false, "error": {"code", "message", "details"}, "meta": {"timestamp", "request_id"}}``

``RequestContextMiddleware`` gives every request an id (the caller's ``X-Request-ID`` when it is a
sane token, else a new one), returns it in the ``X-Request-ID`` header, logs one line per request
(never a key or secret), and turns any unhandled exception into a 500 INTERNAL_ERROR envelope.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("coinfrs.api")

REQUEST_ID_HEADER = "X-Request-ID"
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("coinfrs_request_id", default=None)
"""The id of the request being served (None outside a request): every log line of the request carries it."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
)
API_ONLY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # not on /docs and /redoc, whose pages load the Swagger/ReDoc scripts
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
)
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def now_utc_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


_REQUEST_ID_PREFIX = secrets.token_hex(6)
_REQUEST_NUMBERS = itertools.count(1)


def _new_request_id_prefix() -> None:
    """A forked worker draws its own prefix (a parent's prefix and counter would repeat its ids)."""
    global _REQUEST_ID_PREFIX, _REQUEST_NUMBERS
    _REQUEST_ID_PREFIX, _REQUEST_NUMBERS = secrets.token_hex(6), itertools.count(1)


os.register_at_fork(after_in_child=_new_request_id_prefix)


def new_request_id() -> str:
    """32 hex characters, unique across processes and restarts: a random per-process prefix and a counter (no
    ``os.urandom`` system call per request)."""
    return f"{_REQUEST_ID_PREFIX}{next(_REQUEST_NUMBERS):020x}"


def sane_request_id(value: str | None) -> str | None:
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return None


def request_id_of(request: Request) -> str:
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:  # outside the middleware (should not happen): make one so the envelope is complete
        rid = state["request_id"] = new_request_id()
    return rid


def meta(request: Request, **extra: Any) -> dict[str, Any]:
    return {"timestamp": now_utc_text(), "request_id": request_id_of(request), **extra}


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
"""Row keys may be SQLAlchemy's ``quoted_name`` (a ``str`` subclass orjson refuses as a key without
OPT_NON_STR_KEYS); a datetime is served as pydantic would: ISO 8601, UTC as ``Z``, a naive one taken as UTC."""


def render_json(content: Any) -> bytes:
    """``content`` as the API serves JSON (see ``_ORJSON_OPTIONS``)."""
    return orjson.dumps(content, option=_ORJSON_OPTIONS)


class EnvelopeResponse(Response):
    """A success envelope serialized by orjson, as it is: the route's ``response_model`` documents the shape (and
    OpenAPI), but the response is not validated again at run time. A page of 100 positions cost ~1.5 ms of
    pydantic validation and serialization per request, more than the query. The shapes are held by the tests
    instead: schemathesis checks every operation's bodies against the schema, and a strict check that each body
    is exactly what its ``response_model`` would serve (no extra field, no float, ``Z`` times). orjson refuses a
    ``Decimal`` (a ``TypeError``, so a 500) rather than serialize money as a float."""

    media_type = "application/json"

    def __init__(self, content: dict[str, Any], **kwargs: Any) -> None:
        self.envelope = content  # kept for the response cache (``api.cache``), with the data's JSON text
        self.data_json = content["data"] if isinstance(content["data"], orjson.Fragment) else \
            orjson.Fragment(render_json(content["data"]))
        super().__init__({**content, "data": self.data_json}, **kwargs)

    def render(self, content: Any) -> bytes:
        return render_json(content)


def success(request: Request, data: Any, **extra_meta: Any) -> EnvelopeResponse:
    """The success envelope ``{"success": true, "data", "meta"}``, ready to send (see ``EnvelopeResponse``)."""
    return EnvelopeResponse({"success": True, "data": data, "meta": meta(request, **extra_meta)})


def list_success(request: Request, items: list[Any], *, next_cursor: str | None = None,
                 limit: int | None = None, **extra_meta: Any) -> EnvelopeResponse:
    """The success envelope of a list: ``meta.next_cursor`` (null on the last page), ``meta.limit``, ``meta.count``."""
    return success(request, items, next_cursor=next_cursor, limit=limit, count=len(items), **extra_meta)


def error_body(request_id: str, code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "success": False,
        "error": {"code": code, "message": message, "details": details or []},
        "meta": {"timestamp": now_utc_text(), "request_id": request_id},
    }


def error_response(request: Request, status_code: int, code: str, message: str,
                   details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    rid = request_id_of(request)
    all_headers = {**(headers or {}), REQUEST_ID_HEADER: rid}
    return JSONResponse(error_body(rid, code, message, details), status_code=status_code, headers=all_headers)


class RequestContextMiddleware:
    """Pure ASGI middleware: request id in and out, size limits, security headers, one log line, last-resort 500.

    ``max_query_bytes``/``max_body_bytes``: a longer query string is refused with 414, a declared body
    larger than the limit with 413 (both VALIDATION_ERROR envelopes) before any route runs.
    """

    def __init__(self, app: ASGIApp, max_query_bytes: int = 4096, max_body_bytes: int = 65536) -> None:
        self.app = app
        self.max_query_bytes = max_query_bytes
        self.max_body_bytes = max_body_bytes

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        query = scope.get("query_string", b"")
        if len(query) > self.max_query_bytes:
            return 414, "query", f"the query string is longer than {self.max_query_bytes} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    return 400, "content-length", "invalid Content-Length"
                if size > self.max_body_bytes:
                    return 413, "body", f"the request body is larger than {self.max_body_bytes} bytes"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = sane_request_id(incoming) or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = current_request_id.set(rid)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        path = scope.get("path", "")
        extra = SECURITY_HEADERS if path in ("/docs", "/redoc") else SECURITY_HEADERS + API_ONLY_HEADERS
        extra_names = {k for k, _ in extra}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id" and k.lower() not in extra_names]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                headers.extend(extra)
                message = {**message, "headers": headers}
            await send(message)

        async def send_envelope(code: int, body_dict: dict[str, Any]) -> None:
            body = json.dumps(body_dict).encode()
            await send_with_id({"type": "http.response.start", "status": code, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body})

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                code, field, message = refusal
                await send_envelope(code, error_body(rid, "VALIDATION_ERROR", message,
                                                     [{"field": field, "location": "request", "message": message}]))
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error %s %s", scope.get("method"), path)
            if status["sent"]:
                raise
            await send_envelope(500, error_body(rid, "INTERNAL_ERROR",
                                                "internal error; quote the request id to support"))
        finally:
            log.info("%s %s -> %s in %.1f ms", scope.get("method"), path, status["code"],
                     (time.perf_counter() - started) * 1000,
                     extra={"method": scope.get("method"), "path": path, "status": status["code"],
                            "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
            current_request_id.reset(token)
