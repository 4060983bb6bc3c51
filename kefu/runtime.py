"""Bootstrap of the CRM store for the entry points: settings → database + event bus → CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crm_store.bus import build_event_bus
from crm_store.crm import CRM
from crm_store.db import Database
from crm_store.settings import StoreSettings


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
