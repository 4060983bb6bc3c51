"""The customer's timeline (everything that happened, in time order) and the customer 360 view."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import (
    ConversationView,
    Customer360,
    CustomerView,
    IdentityView,
    OrdersSummary,
    OrderView,
    TicketView,
    TimelineEntry,
)
from crm_store.errors import NotFound
from crm_store.services.base import Service
from crm_store.services.loyalty import LoyaltyService

# Each source lists one kind of entry for a customer, newest first, at most `limit`. Later features (survey
# responses, lessons) register theirs with `timeline_source`, and the timeline shows them in place.
TimelineSource = Callable[[AsyncSession, int, int], Awaitable[list[TimelineEntry]]]
TIMELINE_SOURCES: list[TimelineSource] = []


def timeline_source(fn: TimelineSource) -> TimelineSource:
    TIMELINE_SOURCES.append(fn)
    return fn


@timeline_source
async def _messages(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        select(m.Message).join(m.Conversation, m.Conversation.id == m.Message.conversation_id)
        .where(m.Conversation.customer_id == customer_id)
        .order_by(m.Message.created_at.desc(), m.Message.id.desc()).limit(limit)
    )
    entries = []
    for x in rows.scalars():
        kind = "note" if x.is_private else f"message.{x.sender}"
        entries.append(TimelineEntry(x.created_at, kind, x.text[:200], x.id, {
            "conversation_id": x.conversation_id, "direction": str(x.direction), "intent": x.intent,
            "confidence": x.confidence, "kb_article_id": x.kb_article_id,
        }))
    return entries


@timeline_source
async def _ticket_events(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        select(m.TicketEvent).join(m.Ticket, m.Ticket.id == m.TicketEvent.ticket_id)
        .where(m.Ticket.customer_id == customer_id)
        .order_by(m.TicketEvent.created_at.desc(), m.TicketEvent.id.desc()).limit(limit)
    )
    return [
        TimelineEntry(e.created_at, f"ticket.{e.kind}",
                      f"Ticket #{e.ticket_id} {e.kind}" + (f": {e.from_value} → {e.to_value}"
                                                            if e.from_value or e.to_value else ""),
                      e.id, {"ticket_id": e.ticket_id, "agent_id": e.agent_id})
        for e in rows.scalars()
    ]


@timeline_source
async def _points(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        select(m.LoyaltyTransaction).join(m.LoyaltyAccount, m.LoyaltyAccount.id == m.LoyaltyTransaction.account_id)
        .where(m.LoyaltyAccount.customer_id == customer_id)
        .order_by(m.LoyaltyTransaction.created_at.desc(), m.LoyaltyTransaction.id.desc()).limit(limit)
    )
    return [
        TimelineEntry(t.created_at, f"points.{t.kind}", f"{t.points:+d} points: {t.reason}", t.id,
                      {"points": t.points, "order_ref": t.order_ref})
        for t in rows.scalars()
    ]


@timeline_source
async def _orders(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        select(m.Order).where(m.Order.customer_id == customer_id)
        .order_by(m.Order.placed_at.desc(), m.Order.id.desc()).limit(limit)
    )
    return [
        TimelineEntry(o.placed_at, "order", f"Order {o.external_ref}: {o.amount} {o.currency} ({o.status})", o.id,
                      {"external_ref": o.external_ref, "amount": str(o.amount), "currency": o.currency})
        for o in rows.scalars()
    ]


@timeline_source
async def _identities(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        select(m.ChannelIdentity).where(m.ChannelIdentity.customer_id == customer_id).limit(limit)
    )
    entries = []
    for i in rows.scalars():
        entries.append(TimelineEntry(i.created_at, "identity.first_contact", f"First contact on {i.channel}", i.id,
                                     {"channel": str(i.channel)}))
        if i.linked_at:
            entries.append(TimelineEntry(i.linked_at, "identity.linked", f"{i.channel} chat linked", i.id,
                                         {"channel": str(i.channel)}))
    return entries


# What a merge records it moved (CustomerMerge.moved), as the timeline says it.
MERGE_MOVED = {"channel_identities": ("chat", "chats"), "conversations": ("conversation", "conversations"),
               "tickets": ("ticket", "tickets"), "orders": ("order", "orders"), "points": ("point", "points"),
               "survey_invitations": ("survey", "surveys"), "enrollments": ("course", "courses")}


@timeline_source
async def _merges(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    """Merges into this customer (on the survivor's timeline) and of it (on the merged record's)."""
    merge, source = m.CustomerMerge, m.Customer
    rows = await session.execute(
        select(merge, source.name, m.Agent.name).join(source, source.id == merge.source_id)
        .outerjoin(m.Agent, m.Agent.id == merge.agent_id)
        .where(or_(merge.target_id == customer_id, merge.source_id == customer_id))
        .order_by(merge.merged_at.desc(), merge.id.desc()).limit(limit)
    )
    entries = []
    for x, source_name, agent_name in rows:
        by = f"by {agent_name}" if agent_name else "by the system (a linked chat or an import)"
        if x.target_id == customer_id:
            summary = f"Customer #{x.source_id} ({source_name or 'no name'}) merged into this one {by}"
        else:
            summary = f"Merged into customer #{x.target_id} {by}"
        if moved := [f"{n:,} {MERGE_MOVED[key][n != 1]}" for key, n in x.moved.items() if key in MERGE_MOVED]:
            summary += f"; moved: {', '.join(moved)}"
        entries.append(TimelineEntry(x.merged_at, "customer.merged", summary, x.id, {
            "source_id": x.source_id, "target_id": x.target_id, "agent_id": x.agent_id, "moved": dict(x.moved),
        }))
    return entries


class TimelineService(Service):
    async def timeline(self, *, customer_id: int, limit: int = 200) -> list[TimelineEntry]:
        """Every message, answer, ticket event, order and points change of the customer, oldest first."""
        async with self.uow() as uow:
            await _customer(uow.session, customer_id)
            return await _timeline(uow.session, customer_id, limit)

    async def customer_360(self, *, customer_id: int, timeline_limit: int = 50) -> Customer360:
        """The whole customer on one page: profile, identities, loyalty, orders, tickets, timeline."""
        loyalty = await LoyaltyService(db=self.db, events=self.events, settings=self.settings).summary(
            customer_id=customer_id
        )
        async with self.uow() as uow:
            session = uow.session
            customer = await _customer(session, customer_id)
            identities = (await session.execute(
                select(m.ChannelIdentity).where(m.ChannelIdentity.customer_id == customer_id)
                .order_by(m.ChannelIdentity.id)
            )).scalars()
            totals: dict[str, Decimal] = defaultdict(Decimal)
            count, last = 0, None
            for currency, total, n, latest in (await session.execute(
                select(m.Order.currency, func.sum(m.Order.amount), func.count(), func.max(m.Order.placed_at))
                .where(m.Order.customer_id == customer_id).group_by(m.Order.currency)
            )).all():
                totals[currency] = Decimal(total)
                count += n
                last = latest if last is None or (latest and latest > last) else last
            recent = (await session.execute(
                select(m.Order).where(m.Order.customer_id == customer_id)
                .order_by(m.Order.placed_at.desc(), m.Order.id.desc()).limit(5)
            )).scalars()
            tickets = (await session.execute(
                select(m.Ticket).where(m.Ticket.customer_id == customer_id).order_by(m.Ticket.id.desc())
            )).scalars()
            conversations = (await session.execute(
                select(m.Conversation).where(m.Conversation.customer_id == customer_id)
                .order_by(m.Conversation.id.desc())
            )).scalars()
            timeline = await _timeline(session, customer_id, timeline_limit)
            return Customer360(
                customer=CustomerView.of(customer),
                identities=tuple(IdentityView.of(i) for i in identities),
                loyalty=loyalty,
                orders=OrdersSummary(count, dict(totals), _aware(last), tuple(OrderView.of(o) for o in recent)),
                tickets=tuple(TicketView.of(t) for t in tickets),
                conversations=tuple(ConversationView.of(c) for c in conversations),
                timeline=tuple(timeline),
            )


def _aware(value):  # type: ignore[no-untyped-def]
    """func.max() bypasses the column type, so SQLite hands back a naive (UTC) datetime or a string."""
    from datetime import UTC, datetime

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _customer(session: AsyncSession, customer_id: int) -> m.Customer:
    customer = await session.get(m.Customer, customer_id)
    if customer is None:
        raise NotFound(f"No customer {customer_id}.")
    return customer


async def _timeline(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    for source in TIMELINE_SOURCES:
        entries.extend(await source(session, customer_id, limit))
    entries.sort(key=lambda e: (e.at, e.kind, e.ref_id))
    return entries[-limit:]
