"""Structured JSON logs: one JSON object per line, each carrying the request id of the request it belongs to.

``JsonFormatter`` reads the request id from ``api.envelope.current_request_id`` (set by the request
middleware for the whole request, including the threads that run sync routes and uvicorn's access
log), and masks anything shaped like an API key, so a key pasted in the wrong place never reaches a log.

``configure_logging()`` installs it on the root logger; ``UVICORN_LOG_CONFIG`` does the same for uvicorn
(``coinfrs serve`` uses it).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

from api.envelope import current_request_id

_KEY_LIKE = re.compile(r"cf_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def redact_secrets(text: str) -> str:
    """``text`` with every API-key-shaped token replaced by its prefix and ``[redacted]``."""
    return _KEY_LIKE.sub(lambda m: m.group(0)[:11] + "_[redacted]", text)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (None outside a request) on every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extra fields, "exc_info"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or current_request_id.get()
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_secrets(record.getMessage()),
            "request_id": rid,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in data and not name.startswith("_"):
                data[name] = value if isinstance(value, (int, float, bool, type(None))) else redact_secrets(str(value))
        if record.exc_info:
            data["exc_info"] = redact_secrets(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the root logger (and so for uvicorn's, which propagate to it)."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing.formatter, JsonFormatter):
            root.removeHandler(existing)
    root.addHandler(json_handler())
    root.setLevel(level)


UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "api.logs.RequestIdFilter"}},
    "formatters": {"json": {"()": "api.logs.JsonFormatter"}},
    "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"],
                          "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["json"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        "coinfrs": {"handlers": ["json"], "level": "INFO", "propagate": False},
    },
}
"""``uvicorn.run(..., log_config=UVICORN_LOG_CONFIG)``: uvicorn's and Coinfrs' logs as JSON lines."""
