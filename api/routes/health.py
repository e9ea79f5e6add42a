"""``GET /health``: no authentication; answers only if the database does."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request

from api.deps import get_app_engine
from api.envelope import success
from api.errors import ServiceUnavailable
from api.routes import error_responses
from api.schemas import Envelope, Health

log = logging.getLogger("coinfrs.api")

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Envelope[Health], summary="Liveness and database check",
            responses=error_responses(503))
def health(request: Request) -> dict:
    """`ok` when the API runs and the database answers a query; 503 INTERNAL_ERROR otherwise. No API key needed."""
    try:
        with get_app_engine(request).connect() as conn:  # the API's sessions carry the statement timeout
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database is "not healthy"
        log.warning("health check failed: %s", type(exc).__name__)
        raise ServiceUnavailable("the database does not answer") from None
    return success(request, {"status": "ok", "database": "ok"})
