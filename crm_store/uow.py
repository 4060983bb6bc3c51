"""Unit of work: one use case, one transaction; events are published only after it commits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from crm_store.bus import EventBus
from crm_store.db import Database
from crm_store.events import DomainEvent
from crm_store.observability import STORE_UNAVAILABLE

logger = logging.getLogger(__name__)


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.events: list[DomainEvent] = []
        self.committed = False

    def emit(self, event: DomainEvent) -> None:
        """Queue an event; it is published once the transaction has committed."""
        self.events.append(event)

    async def commit(self) -> None:
        await self.session.commit()
        self.committed = True


@asynccontextmanager
async def unit_of_work(db: Database, events: EventBus) -> AsyncIterator[UnitOfWork]:
    async with db.sessionmaker() as session:
        uow = UnitOfWork(session)
        try:
            yield uow
            if not uow.committed:
                await uow.commit()
        except BaseException:
            await session.rollback()
            raise
    for event in uow.events:
        try:
            await events.publish(event)
        except Exception:
            # The use case is done (committed): failing it now would tell the caller a lie. What the event carried
            # is in the database; agents' replies are announced again by the worker's timer (announce_stranded).
            STORE_UNAVAILABLE.labels("event-publish").inc()
            logger.warning("event %s %s not published (the bus is unavailable)", event.name, event.event_id,
                           exc_info=True)
