"""Query parameter types shared by the routes, each stating in OpenAPI exactly what the route accepts (enums,
patterns, lengths), so a value the schema allows is one the route answers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from transforms.cost_basis import METHODS, POOLS
from transforms.events import KIND_VALUES
from transforms.fx import REPORTING_CURRENCIES
from transforms.pnl_reports import BREAKDOWNS

LegKindValue = Literal[KIND_VALUES]  # type: ignore[valid-type]
"""A leg kind of the vocabulary (``transforms.events.LegKind``)."""
MethodValue = Literal[(*METHODS, "configured")]  # type: ignore[valid-type]
PoolValue = Literal[POOLS]  # type: ignore[valid-type]
StoredMethodValue = Literal["configured", "fifo"]
StoredPoolValue = Literal["configured", "universal", "account"]
BreakdownValue = Literal[BREAKDOWNS]  # type: ignore[valid-type]
CurrencyValue = Literal[REPORTING_CURRENCIES]  # type: ignore[valid-type]

CURSOR_PATTERN = "^[A-Za-z0-9_-]{1,512}$"
"""A cursor as the API issues it (url-safe base64 without padding). A string of that shape that is not one of ours
is a 422."""
_METHODS = "|".join(METHODS)
_BOOK = f"(configured|({_METHODS})(:({'|'.join(POOLS)}))?)"
BOOKS_PATTERN = f"^{_BOOK}(,{_BOOK})*$"
"""``method[:pool]`` or ``configured``, comma-separated (a book listed twice is a 422)."""
CURRENCY_CODE_PATTERN = "^[A-Za-z0-9]{1,12}$"

Cursor = Annotated[str | None, Query(max_length=512, pattern=CURSOR_PATTERN,
                                     description="`meta.next_cursor` of the previous page, exactly as returned")]
KindQuery = Annotated[LegKindValue | None, Query(description="Leg kind (`transforms/events.py`): "
                                                             + ", ".join(KIND_VALUES))]
AnyMethod = Annotated[MethodValue, Query(description="fifo, lifo, hifo, lofo, average or configured (the entity's "
                                                     "book); books the close does not store are computed on demand")]
StoredMethod = Annotated[StoredMethodValue, Query(description="A book stored by the close: `configured` (the "
                                                              "entity's book) or `fifo`")]
StoredPool = Annotated[StoredPoolValue, Query(description="`configured` (with method configured), or for fifo: "
                                                          "universal | account (fifo with configured: 422)")]
CurrencyQuery = Annotated[CurrencyValue | None, Query(
    description="Reporting currency USD, EUR or GBP (default: the entity's). Amounts are translated at the FX rate "
                "of their own instant; `fx` lists the rates used. A missing rate is a 409 naming the day and the "
                "pair")]
