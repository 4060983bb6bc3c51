"""What every service holds: the database, the event bus and the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crm_store.bus import EventBus
from crm_store.db import Database
from crm_store.settings import StoreSettings
from crm_store.uow import UnitOfWork, unit_of_work


class Service:
    def __init__(self, *, db: Database, events: EventBus, settings: StoreSettings) -> None:
        self.db = db
        self.events = events
        self.settings = settings

    @asynccontextmanager
    async def uow(self) -> AsyncIterator[UnitOfWork]:
        async with unit_of_work(self.db, self.events) as uow:
            yield uow
