"""``GET /api/v1/classifications/...``: the legs no rule understood and the manual classifications (who, when, why).
Thin: the rows come from ``transforms.classifications``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.cache import cached_by_snapshot
from api.deps import ConnDep, CurrentEntity, check_date_range
from api.exports import EXPORT_RESPONSES, FormatQuery, list_or_export
from api.routes import COMMON_ERRORS
from api.errors import Unprocessable
from api.schemas import IsoDate, ListEnvelope
from api.schemas_classifications import ClassificationOut, UnclassifiedLegOut
from transforms.classifications import list_classifications, list_unclassified_legs

router = APIRouter(tags=["classifications"], responses=COMMON_ERRORS)

FromQ = Annotated[IsoDate | None, Query(alias="from", description="First close date, inclusive")]
ToQ = Annotated[IsoDate | None, Query(alias="to", description="Last close date, inclusive")]


@router.get("/classifications", response_model=ListEnvelope[ClassificationOut], summary="Manual classifications",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def classifications(request: Request, entity: CurrentEntity, conn: ConnDep, fmt: FormatQuery = None):
    """Every classification a person recorded for the entity (`coinfrs classify`), oldest first: the record's leg,
    what the mapper had said, the kind given, who, when and why, and the current legs it applies to."""
    items = list_classifications(conn, entity.id)
    return list_or_export(request, fmt, f"classifications-{entity.name}", ClassificationOut, items, entity=entity.name)


@router.get("/classifications/unclassified", response_model=ListEnvelope[UnclassifiedLegOut], summary="Legs to classify",
            responses=EXPORT_RESPONSES)
@cached_by_snapshot
def unclassified(request: Request, entity: CurrentEntity, conn: ConnDep, date_from: FromQ = None,
                 date_to: ToQ = None, fmt: FormatQuery = None):
    """The legs of close days `from`..`to` whose operation no rule understood (kind `unclassified`), each with its raw
    record. Each blocks PnL from its day until it is classified (`coinfrs classify --leg ID --kind K --by WHO
    --reason WHY`)."""
    if date_from is None or date_to is None:
        raise Unprocessable.for_field("from" if date_from is None else "to", "give both from and to")
    check_date_range(request, date_from, date_to)
    items = list_unclassified_legs(conn, entity.id, date_from, date_to)
    return list_or_export(request, fmt, f"unclassified-{entity.name}-{date_from}-{date_to}", UnclassifiedLegOut, items,
                          entity=entity.name, **{"from": date_from.isoformat(), "to": date_to.isoformat()})
