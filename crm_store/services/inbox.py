"""The agent console's inbox and conversation view: a few index-friendly queries, LIMIT-ed, never one per row.

The inbox is sorted by the next SLA deadline (tickets without one last), then by id; its pages are cut by a
keyset cursor on (sla_due_at, id), or an offset. Its filters match the tickets' indexes (status, sla_due_at),
(assignee_id, status, sla_due_at) and (team_id, status, sla_due_at)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import (
    ConversationPage,
    ConversationView,
    CustomerSummary,
    InboxCounts,
    InboxFilter,
    InboxPage,
    InboxRow,
    MessageView,
    TicketSla,
    TicketView,
)
from crm_store.enums import Channel, TicketPriority, TicketStatus
from crm_store.errors import NotFound
from crm_store.services.base import Service

ACTIVE_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
SNIPPET_CHARS = 140
MAX_PAGE = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class InboxService(Service):
    async def tickets(
        self, *, viewer_id: int | None, view: InboxFilter = InboxFilter(), visible_to: int | None = None,
        limit: int = 50, cursor: str | None = None, offset: int = 0, now: datetime | None = None,
    ) -> InboxPage:
        """One page of an inbox view, the nearest SLA deadline first. `visible_to`: an agent's id, to show only
        their own tickets, their team's and the unassigned ones (the console passes it for the role agent)."""
        limit = max(1, min(limit, MAX_PAGE))
        now = now or utcnow()
        t = m.Ticket
        conditions = [*_view_conditions(view, viewer_id, now), *_visibility(visible_to)]
        if cursor:
            conditions.append(_after(cursor))
        page = (
            select(t.id.label("id"), t.sla_due_at.label("due"))
            .where(*conditions)
            .order_by(t.sla_due_at.asc().nulls_last(), t.id)
            .limit(limit + 1).offset(max(offset, 0))
            .subquery("page")
        )
        # The details are joined to the page only, so each costs at most `limit` index look-ups.
        msg = m.Message
        last_message = (
            select(msg.id).where(msg.conversation_id == t.conversation_id, msg.is_private.is_(False))
            .order_by(msg.created_at.desc(), msg.id.desc()).limit(1).correlate(t).scalar_subquery()
        )
        query = (
            select(
                t.id, t.conversation_id, t.subject, t.status, t.priority, t.customer_id, t.channel,
                t.assignee_id, t.team_id, t.sla_due_at, t.created_at,
                m.Customer.name.label("customer_name"), m.Agent.name.label("assignee_name"),
                m.Team.name.label("team_name"), m.Conversation.waiting_since, last_message.label("last_message_id"),
            )
            .select_from(page)
            .join(t, t.id == page.c.id)
            .join(m.Customer, m.Customer.id == t.customer_id)
            .join(m.Conversation, m.Conversation.id == t.conversation_id)
            .outerjoin(m.Agent, m.Agent.id == t.assignee_id)
            .outerjoin(m.Team, m.Team.id == t.team_id)
            .order_by(page.c.due.asc().nulls_last(), page.c.id)
        )
        async with self.uow() as uow:
            rows = (await uow.session.execute(query)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            snippets = await _snippets(uow.session, [r.last_message_id for r in rows if r.last_message_id])
        return InboxPage(
            rows=tuple(_row(r, snippets.get(r.last_message_id), now) for r in rows),
            next_cursor=_cursor(rows[-1].sla_due_at, rows[-1].id) if more and rows else None,
        )

    async def counts(
        self, *, viewer_id: int | None, visible_to: int | None = None,
        statuses: tuple[str, ...] = tuple(ACTIVE_STATUSES), now: datetime | None = None,
    ) -> InboxCounts:
        """How many tickets each standard view holds (mine, unassigned, all, overdue, by status), in one
        aggregate query over the tickets in `statuses`."""
        now = now or utcnow()
        t = m.Ticket
        wanted = [TicketStatus(s) for s in statuses]

        def count_where(condition: Any) -> Any:
            return func.count(case((condition, 1)))

        columns = [
            func.count().label("all_open"),
            count_where(t.assignee_id == viewer_id if viewer_id is not None else false()).label("mine"),
            count_where(t.assignee_id.is_(None)).label("unassigned"),
            count_where(t.sla_due_at < now).label("overdue"),
            *[count_where(t.status == s).label(f"status_{s}") for s in wanted],
        ]
        async with self.uow() as uow:
            row = (await uow.session.execute(
                select(*columns).where(t.status.in_(wanted), *_visibility(visible_to))
            )).one()
        return InboxCounts(
            mine=row.mine, unassigned=row.unassigned, all_open=row.all_open, overdue=row.overdue,
            by_status={str(s): row._mapping[f"status_{s}"] for s in wanted},
        )

    async def conversation_page(
        self, *, conversation_id: int, before_id: int | None = None, limit: int = 100, include_private: bool = True,
        now: datetime | None = None,
    ) -> ConversationPage:
        """What the conversation view shows: the newest `limit` messages (older ones with `before_id`), the
        conversation, its ticket with the SLA due times, and who the customer is."""
        limit = max(1, min(limit, MAX_PAGE))
        now = now or utcnow()
        async with self.uow() as uow:
            session = uow.session
            conversation = await session.get(m.Conversation, conversation_id)
            if conversation is None:
                raise NotFound(f"No conversation {conversation_id}.")
            ticket = (await session.execute(
                select(m.Ticket).where(m.Ticket.conversation_id == conversation_id)
                .order_by(m.Ticket.id.desc()).limit(1)
            )).scalar_one_or_none()
            customer = await _customer_summary(session, conversation)
            messages, agent_names, more = await _messages(
                session, conversation_id, before_id=before_id, limit=limit, include_private=include_private
            )
        return ConversationPage(
            conversation=ConversationView.of(conversation),
            ticket=TicketView.of(ticket) if ticket is not None else None,
            sla=_ticket_sla(ticket, now) if ticket is not None else None,
            customer=customer,
            messages=tuple(messages),
            agent_names=agent_names,
            next_before_id=messages[0].id if more and messages else None,
        )


# --- the inbox's conditions ---------------------------------------------------------------------------------------


def _view_conditions(view: InboxFilter, viewer_id: int | None, now: datetime) -> list[Any]:
    t = m.Ticket
    conditions: list[Any] = []
    if view.statuses:
        conditions.append(t.status.in_([TicketStatus(s) for s in view.statuses]))
    if view.priorities:
        conditions.append(t.priority.in_([TicketPriority(p) for p in view.priorities]))
    assignee = view.assignee
    if assignee == "me":
        conditions.append(t.assignee_id == viewer_id if viewer_id is not None else false())
    elif assignee == "unassigned":
        conditions.append(t.assignee_id.is_(None))
    elif assignee != "anyone":
        if isinstance(assignee, str) and not assignee.isdigit():
            raise ValueError(f"Unknown assignee filter {assignee!r}: me, unassigned, anyone or an agent id.")
        conditions.append(t.assignee_id == int(assignee))
    if view.team_id is not None:
        conditions.append(t.team_id == view.team_id)
    if view.channel:
        conditions.append(t.channel == Channel(view.channel))
    if view.overdue:
        conditions.append(t.sla_due_at < now)
    return conditions


def _visibility(agent_id: int | None) -> list[Any]:
    """An agent sees their own tickets, their team's and the unassigned ones."""
    if agent_id is None:
        return []
    t = m.Ticket
    team = select(m.Agent.team_id).where(m.Agent.id == agent_id).scalar_subquery()
    return [or_(t.assignee_id == agent_id, t.assignee_id.is_(None), t.team_id == team)]


def _cursor(due: datetime | None, ticket_id: int) -> str:
    """The last row's place, safe in a URL as it is: "<deadline in µs since 1970 | n>_<ticket id>"."""
    return f"{(due - EPOCH) // MICROSECOND if due else 'n'}_{ticket_id}"


def _after(cursor: str) -> Any:
    """The tickets after the cursor's in the inbox's order (deadline ascending, none last; then id)."""
    due_text, _, id_text = cursor.partition("_")
    try:
        ticket_id = int(id_text)
        due = None if due_text == "n" else EPOCH + int(due_text) * MICROSECOND
    except (ValueError, OverflowError):
        raise ValueError(f"Not an inbox cursor: {cursor!r}.") from None
    t = m.Ticket
    if due is None:
        return and_(t.sla_due_at.is_(None), t.id > ticket_id)
    return or_(t.sla_due_at > due, and_(t.sla_due_at == due, t.id > ticket_id), t.sla_due_at.is_(None))


async def _snippets(session: AsyncSession, message_ids: list[int]) -> dict[int, tuple[str, datetime]]:
    if not message_ids:
        return {}
    msg = m.Message
    rows = await session.execute(
        select(msg.id, func.substr(msg.text, 1, SNIPPET_CHARS), msg.created_at).where(msg.id.in_(message_ids))
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _row(r: Any, snippet: tuple[str, datetime] | None, now: datetime) -> InboxRow:
    return InboxRow(
        ticket_id=r.id, conversation_id=r.conversation_id, subject=r.subject, status=str(r.status),
        priority=str(r.priority), customer_id=r.customer_id, customer_name=r.customer_name,
        channel=str(r.channel) if r.channel else None, assignee_id=r.assignee_id, assignee_name=r.assignee_name,
        team_id=r.team_id, team_name=r.team_name, sla_due_at=r.sla_due_at,
        overdue=_overdue(r.status, r.sla_due_at, now),
        last_message=snippet[0] if snippet else None, last_message_at=snippet[1] if snippet else None,
        waiting_since=r.waiting_since, created_at=r.created_at,
    )


def _overdue(status: str, due: datetime | None, now: datetime) -> bool:
    return status in ACTIVE_STATUSES and due is not None and due < now


# --- the conversation view -----------------------------------------------------------------------------------------


async def _customer_summary(session: AsyncSession, conversation: m.Conversation) -> CustomerSummary:
    c = m.Customer
    row = (await session.execute(
        select(c, m.LoyaltyTier.name.label("tier_name"), m.LoyaltyAccount.balance,
               m.ChannelIdentity.channel, m.ChannelIdentity.display_name)
        .outerjoin(m.LoyaltyAccount, m.LoyaltyAccount.customer_id == c.id)
        .outerjoin(m.LoyaltyTier, m.LoyaltyTier.id == m.LoyaltyAccount.tier_id)
        .outerjoin(m.ChannelIdentity, m.ChannelIdentity.id == conversation.identity_id)
        .where(c.id == conversation.customer_id)
    )).one()
    customer = row[0]
    return CustomerSummary(
        id=customer.id, name=customer.name, email=customer.email, phone=customer.phone,
        language=customer.language, tags=tuple(customer.tags or ()), tier_name=row.tier_name,
        points_balance=row.balance or 0, channel=str(row.channel) if row.channel else None,
        display_name=row.display_name or "",
    )


async def _messages(
    session: AsyncSession, conversation_id: int, *, before_id: int | None, limit: int, include_private: bool
) -> tuple[list[MessageView], dict[int, str], bool]:
    """The newest `limit` messages before `before_id`, oldest first, with their agents' names; the order is
    (created_at, id), which the index (conversation_id, created_at) serves."""
    msg = m.Message
    conditions: list[Any] = [msg.conversation_id == conversation_id]
    if not include_private:
        conditions.append(msg.is_private.is_(False))
    if before_id is not None:
        anchor = (await session.execute(
            select(msg.created_at).where(msg.id == before_id, msg.conversation_id == conversation_id)
        )).scalar_one_or_none()
        if anchor is None:
            raise NotFound(f"No message {before_id} in conversation {conversation_id}.")
        conditions += [msg.created_at <= anchor, or_(msg.created_at < anchor, msg.id < before_id)]
    rows = (await session.execute(
        select(msg, m.Agent.name).outerjoin(m.Agent, m.Agent.id == msg.agent_id)
        .where(*conditions).order_by(msg.created_at.desc(), msg.id.desc()).limit(limit + 1)
    )).all()
    more = len(rows) > limit
    rows = rows[:limit][::-1]
    names = {message.agent_id: name for message, name in rows if message.agent_id is not None and name}
    return [MessageView.of(message) for message, _ in rows], names, more


def _ticket_sla(ticket: m.Ticket, now: datetime) -> TicketSla:
    return TicketSla(
        channel=str(ticket.channel) if ticket.channel else None,
        first_response_due_at=ticket.first_response_due_at, resolution_due_at=ticket.resolution_due_at,
        sla_due_at=ticket.sla_due_at, overdue=_overdue(ticket.status, ticket.sla_due_at, now),
    )
