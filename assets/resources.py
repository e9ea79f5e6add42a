"""Resources: the warehouse connection; which entities a run closes; one writer per entity."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from assets.partitions import run_scope
from warehouse.db import database_url, get_engine, normalize_url
from warehouse.entities import Entity, list_entities, resolve_active_entity
from warehouse.locks import entity_close_lock

ENTITIES_TAG = "coinfrs/entities"  # entity ids, comma-separated (the per-entity run concurrency limit's key)
ENTITY_NAMES_TAG = "coinfrs/entity_names"  # the same entities by name, for people (Dagster UI run list and filters)


class WarehouseResource(dg.ConfigurableResource):
    """The Coinfrs warehouse (PostgreSQL). Empty ``database_url``: DATABASE_URL, else the embedded server.

    In a run, the resource holds the close lock of every entity the run closes from its set-up to its tear-down
    (``warehouse/locks.py``): a second close of the same entity, from any launcher, waits for it. With the
    in-process executor (the CLI, tests) that is the whole run; with a multiprocess executor, each step."""

    database_url: str | None = None
    _close_lock: ExitStack | None = PrivateAttr(default=None)

    def url(self) -> str:
        return normalize_url(self.database_url) if self.database_url else database_url()

    def engine(self) -> Engine:
        return get_engine(self.url())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        if run is None:  # a sensor or a schedule evaluation: reads only
            return
        entities = entities_for_tags(run.tags, self, context.instance)
        log = context.log
        stack = ExitStack()
        stack.enter_context(entity_close_lock(
            self.engine(), [(e.id, e.name) for e in entities], label=f"Dagster run {run.run_id[:8]}", wait=True,
            on_wait=(lambda message: log.info(message)) if log is not None else None))
        self._close_lock = stack

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._close_lock is not None:
            self._close_lock.close()
            self._close_lock = None


def entities_for_tags(tags: Mapping[str, str], warehouse: WarehouseResource,
                      instance: dg.DagsterInstance | None = None) -> list[Entity]:
    """The entities of a run: those of its partitions (the ``entity`` dimension), else those named by its
    ``coinfrs/entities`` tag, else every entity (an unpartitioned run, such as source_sync alone)."""
    scope = run_scope(tags, instance)
    refs = list(scope.entities) if scope else [r for r in (tags.get(ENTITIES_TAG) or "").split(",") if r.strip()]
    with warehouse.engine().connect() as conn:
        if not refs:
            return list_entities(conn)
        return [resolve_active_entity(conn, ref) for ref in refs]  # an archived entity is refused (EntityArchived)


def entities_in_scope(context: dg.AssetExecutionContext | dg.OpExecutionContext,
                      warehouse: WarehouseResource) -> list[Entity]:
    """The entities the run closes (``entities_for_tags``)."""
    return entities_for_tags(context.run.tags, warehouse, context.instance)
