"""The response envelope and the request id.

Success: ``{"success": true, "data": ..., "meta": {"timestamp", "request_id", ...}}``
Error:   ``{"success": false, "error": {"code", "message", "details"}, "meta": {"timestamp", "request_id"}}``

``RequestContextMiddleware`` gives every request an id (the caller's ``X-Request-ID`` when it is a
sane token, else a new one), returns it in the ``X-Request-ID`` header, logs one line per request
(never a key or secret), and turns any unhandled exception into a 500 INTERNAL_ERROR envelope.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("coinfrs.api")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def now_utc_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_request_id() -> str:
    return uuid.uuid4().hex


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


def success(request: Request, data: Any, **extra_meta: Any) -> dict[str, Any]:
    """The success envelope; routes return it and their ``response_model`` validates it."""
    return {"success": True, "data": data, "meta": meta(request, **extra_meta)}


def list_success(request: Request, items: list[Any], *, next_cursor: str | None = None,
                 limit: int | None = None, **extra_meta: Any) -> dict[str, Any]:
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
    """Pure ASGI middleware: request id in, request id out, one log line, last-resort 500 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error request_id=%s %s %s", rid, scope.get("method"), scope.get("path"))
            if status["sent"]:
                raise
            body = json.dumps(error_body(rid, "INTERNAL_ERROR", "internal error; quote the request id to support")).encode()
            await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            log.info("request_id=%s %s %s -> %s in %.1f ms", rid, scope.get("method"), scope.get("path"),
                     status["code"], (time.perf_counter() - started) * 1000)
