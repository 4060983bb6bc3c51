"""Channels' raw updates (Telegram Updates), stored before they are acknowledged and marked once handled.

The order of things that makes an update neither lost nor doubled: `store` (the channel may now be told "got
it"), `handled` after the dialogue engine is done; an update a process claimed but never marked (it died, or the
store went away mid-way) is claimed again by `claim_due` after a lease and handled again, which the message
idempotency key (one message per chat and channel message id) makes harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.services.base import Service

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class StoredUpdate:
    id: int
    update_id: int
    payload: dict[str, Any]
    # True: stored by this call (and claimed by the caller); False: it was there already (a redelivery).
    new: bool
    handled: bool


class InboundUpdateService(Service):
    async def store(
        self, *, channel: str, bot_id: str, update_id: int, payload: dict[str, Any], chat_id: str | None = None
    ) -> StoredUpdate:
        """Store an update once (claimed by the caller when new); a redelivered one is returned as it stands."""
        now = utcnow()
        values = {
            "channel": channel, "bot_id": bot_id, "update_id": update_id, "chat_id": chat_id, "payload": payload,
            "received_at": now, "claimed_at": now, "attempts": 1,
        }
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        statement = (
            insert(m.InboundUpdate).values(**values)
            .on_conflict_do_nothing(index_elements=["channel", "bot_id", "update_id"])
            .returning(m.InboundUpdate.id)
        )
        async with self.uow() as uow:
            new_id = (await uow.session.execute(statement)).scalar_one_or_none()
            if new_id is not None:
                await uow.commit()
                return StoredUpdate(new_id, update_id, payload, new=True, handled=False)
            row = (await uow.session.execute(select(m.InboundUpdate).where(
                m.InboundUpdate.channel == channel, m.InboundUpdate.bot_id == bot_id,
                m.InboundUpdate.update_id == update_id,
            ))).scalar_one()
            return StoredUpdate(row.id, row.update_id, row.payload, new=False, handled=row.handled_at is not None)

    async def handled(self, *, stored_id: int) -> None:
        """The update was handled to the end: never again."""
        async with self.uow() as uow:
            await uow.session.execute(
                update(m.InboundUpdate).where(m.InboundUpdate.id == stored_id)
                .values(handled_at=utcnow(), claimed_at=None, last_error=None)
            )
            await uow.commit()

    async def failed(self, *, stored_id: int, error: str) -> None:
        """Handling failed: the claim stays until its lease ends, then `claim_due` hands it out again."""
        async with self.uow() as uow:
            await uow.session.execute(
                update(m.InboundUpdate).where(m.InboundUpdate.id == stored_id)
                .values(last_error=error[:MAX_ERROR_CHARS])
            )
            await uow.commit()

    async def claim_due(
        self, *, channel: str, bot_id: str, lease: timedelta, limit: int = 50
    ) -> list[StoredUpdate]:
        """Unhandled updates whose claim is older than `lease` (or never claimed), oldest first, now claimed by
        the caller; a conditional UPDATE makes two processes never take the same one."""
        now = utcnow()
        stale = or_(m.InboundUpdate.claimed_at.is_(None), m.InboundUpdate.claimed_at < now - lease)
        due = and_(m.InboundUpdate.channel == channel, m.InboundUpdate.bot_id == bot_id,
                   m.InboundUpdate.handled_at.is_(None), stale)
        claimed: list[StoredUpdate] = []
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(m.InboundUpdate.id, m.InboundUpdate.update_id, m.InboundUpdate.payload)
                .where(due).order_by(m.InboundUpdate.received_at, m.InboundUpdate.id).limit(limit)
            )).all()
            for row_id, update_id, payload in rows:
                result = await uow.session.execute(
                    update(m.InboundUpdate).where(m.InboundUpdate.id == row_id, due)
                    .values(claimed_at=now, attempts=m.InboundUpdate.attempts + 1)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    claimed.append(StoredUpdate(row_id, update_id, payload, new=False, handled=False))
            await uow.commit()
        return claimed

    async def counts(self, *, channel: str | None = None) -> dict[str, int]:
        """How many updates are stored, and how many of them are not handled yet."""
        async with self.uow() as uow:
            query = select(func.count(), func.count().filter(m.InboundUpdate.handled_at.is_(None)))
            if channel is not None:
                query = query.where(m.InboundUpdate.channel == channel)
            total, unhandled = (await uow.session.execute(query)).one()
            return {"stored": int(total), "unhandled": int(unhandled)}
