"""Bootstrap of the CRM store for the entry points: settings → database + event bus → CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from crm_store.bus import build_event_bus
from crm_store.crm import CRM
from crm_store.db import Database
from crm_store.settings import StoreSettings

if TYPE_CHECKING:
    from knowledge_base.service import Encoders, KnowledgeBase
    from knowledge_base.settings import KbSettings


async def open_crm(settings: StoreSettings | None = None) -> CRM:
    """A CRM on the configured database with its event bus started (settings from the environment when None)."""
    settings = settings if settings is not None else StoreSettings()
    db = Database(settings.database_url, echo=settings.echo_sql)
    events = build_event_bus(settings.redis_url, stream=settings.event_stream)
    try:
        await events.start()
    except BaseException:
        await events.close()
        await db.dispose()
        raise
    return CRM(db=db, events=events, settings=settings)


@asynccontextmanager
async def crm_session(settings: StoreSettings | None = None) -> AsyncIterator[CRM]:
    """`open_crm` for the length of a block; the bus and the database are closed when it ends."""
    crm = await open_crm(settings)
    try:
        yield crm
    finally:
        await crm.close()


async def upgrade_database(url: str, revision: str = "head") -> str | None:
    """Run the Alembic chain on `url` up to `revision` (idempotent); the revision the database is at."""
    from crm_store.migrations import current_revision, upgrade

    await upgrade(url, revision)
    return await current_revision(url)


async def open_knowledge_base(
    crm: CRM, settings: KbSettings | None = None, *, follow_changes: bool = True, encoders: Encoders | None = None
) -> KnowledgeBase:
    """The CRM's published articles, searchable; with follow_changes, kept fresh by kb.changed events."""
    from knowledge_base.service import KnowledgeBase
    from knowledge_base.settings import KbSettings

    kb = KnowledgeBase(crm.knowledge, settings or KbSettings(), encoders)
    await kb.refresh()
    if follow_changes:
        # Every process must hear every change (its own index is what goes stale): a broadcast.
        crm.events.broadcast("kb-refresh", kb.on_event)
    return kb
