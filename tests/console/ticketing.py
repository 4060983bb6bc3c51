"""Tickets for the inbox and conversation tests (plain factory functions)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from crm_store import models as m

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


async def open_ticket(crm, key: str, *, channel: str = "telegram", priority: str = "normal",  # type: ignore[no-untyped-def]
                      due: datetime | str | None = "default", team_id: int | None = None,
                      assignee: int | None = None, text: str | None = None, name: str | None = None):
    """A customer writes on `channel`, asks for a person; the ticket's deadline and team as the test needs them.
    Returns the ticket (TicketView, as handed off)."""
    chat = await crm.conversations.record_incoming(channel=channel, external_id=f"ext-{key}",
                                                   text=text or f"Hello from {key}",
                                                   display_name=name or f"Customer {key}")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked",
                                              subject=f"Subject {key}", priority=priority)
    if assignee is not None:
        await crm.conversations.assign(ticket_id=ticket.id, agent_id=assignee)
    values: dict[str, object] = {"team_id": team_id}
    if due != "default":
        values["sla_due_at"] = due
    async with crm.db.sessionmaker() as session:
        await session.execute(update(m.Ticket).where(m.Ticket.id == ticket.id).values(**values))
        await session.commit()
    return await crm.conversations.get_ticket(ticket_id=ticket.id)
