"""The audit log: who signed in, looked at a customer, exported or erased one, adjusted points, changed a role or
a setting. Rows are only ever added (triggers refuse UPDATE and DELETE); a customer is named by id, never by their
personal data, so an erasure leaves the log whole."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import AuditEntryView, AuditPage
from crm_store.enums import Actor, AuditAction
from crm_store.services.base import Service

MAX_PAGE = 200


def audit_in(
    session: AsyncSession,
    *,
    action: AuditAction | str,
    actor: Actor | str = Actor.AGENT,
    agent_id: int | None = None,
    actor_label: str = "",
    subject_type: str | None = None,
    subject_id: int | str | None = None,
    details: Mapping[str, Any] | None = None,
    ip: str = "",
) -> m.AuditEntry:
    """Add an entry to the session's transaction: it is written with the change it records, or not at all."""
    entry = m.AuditEntry(
        actor=Actor(actor), agent_id=agent_id, actor_label=actor_label[:254], action=str(action)[:50],
        subject_type=subject_type, subject_id=None if subject_id is None else str(subject_id)[:100],
        details=dict(details or {}), ip=(ip or "")[:64],
    )
    session.add(entry)
    return entry


class AuditService(Service):
    async def record(self, *, action: AuditAction | str, **entry: Any) -> AuditEntryView:
        """Write one entry (the fields of `audit_in`) in its own transaction: for what is not itself a change of
        data, such as a sign-in or a customer viewed."""
        async with self.uow() as uow:
            row = audit_in(uow.session, action=action, **entry)
            await uow.session.flush()
            view = AuditEntryView.of(row)
            await uow.commit()
        return view

    async def search(
        self,
        *,
        action: str | None = None,
        agent_id: int | None = None,
        subject_type: str | None = None,
        subject_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> AuditPage:
        """Newest first, filtered; `action` matches a whole action or a family ("customer" finds customer.*)."""
        limit = max(1, min(limit, MAX_PAGE))
        e = m.AuditEntry
        query = select(e).order_by(e.id.desc()).limit(limit + 1)
        if action:
            query = query.where((e.action == action) | e.action.startswith(f"{action}.", autoescape=True))
        if agent_id is not None:
            query = query.where(e.agent_id == agent_id)
        if subject_type:
            query = query.where(e.subject_type == subject_type)
        if subject_id:
            query = query.where(e.subject_id == subject_id)
        if since is not None:
            query = query.where(e.at >= since)
        if until is not None:
            query = query.where(e.at < until)
        if before is not None:
            query = query.where(e.id < before)
        async with self.uow() as uow:
            rows = list((await uow.session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(tuple(AuditEntryView.of(r) for r in rows), rows[-1].id if more and rows else None)
