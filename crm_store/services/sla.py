"""SLA policy: first-response and resolution targets by ticket priority and loyalty tier, and the ticket's clock.

A ticket's `sla_due_at` is its next deadline: the first-response due time until an agent replied, then the
resolution due time; none once it is resolved or closed. Reopening starts a new resolution target from that moment.
Without a matching policy, both targets are StoreSettings' single `sla_minutes_<priority>`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import SlaPolicyView, SlaTargets
from crm_store.enums import TicketEventKind, TicketPriority, TicketStatus
from crm_store.errors import NotFound
from crm_store.services.base import Service
from crm_store.services.loyalty import customer_tier
from crm_store.settings import StoreSettings

# Statuses whose tickets run against a deadline.
CLOCK_RUNNING = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)


class SlaService(Service):
    async def set_policy(
        self, *, priority: TicketPriority | str, tier_id: int | None = None, first_response_minutes: int,
        resolution_minutes: int,
    ) -> SlaPolicyView:
        """Create or replace the policy of a priority (for one tier, or for every tier without its own)."""
        priority = TicketPriority(priority)
        if first_response_minutes <= 0 or resolution_minutes <= 0:
            raise ValueError("SLA targets are whole minutes above zero.")
        if first_response_minutes > resolution_minutes:
            raise ValueError("The first response cannot be due after the resolution.")
        async with self.uow() as uow:
            if tier_id is not None and await uow.session.get(m.LoyaltyTier, tier_id) is None:
                raise NotFound(f"No loyalty tier {tier_id}.")
            policy = (await uow.session.execute(
                select(m.SlaPolicy).where(m.SlaPolicy.priority == priority, _same_tier(tier_id))
                .order_by(m.SlaPolicy.id).limit(1)
            )).scalar_one_or_none()
            if policy is None:
                policy = m.SlaPolicy(priority=priority, tier_id=tier_id)
                uow.session.add(policy)
            policy.first_response_minutes = first_response_minutes
            policy.resolution_minutes = resolution_minutes
            await uow.commit()
            return SlaPolicyView.of(policy)

    async def policies(self) -> list[SlaPolicyView]:
        """Every policy: by priority (lowest first), the tier-less row before the tiers' rows."""
        async with self.uow() as uow:
            rows = (await uow.session.execute(select(m.SlaPolicy))).scalars().all()
            order = list(TicketPriority)
            rows = sorted(rows, key=lambda p: (order.index(p.priority), p.tier_id is not None, p.tier_id or 0))
            return [SlaPolicyView.of(p) for p in rows]

    async def delete_policy(self, *, policy_id: int) -> None:
        async with self.uow() as uow:
            policy = await uow.session.get(m.SlaPolicy, policy_id)
            if policy is None:
                raise NotFound(f"No SLA policy {policy_id}.")
            await uow.session.delete(policy)
            await uow.commit()

    async def targets(self, *, priority: TicketPriority | str, tier_id: int | None = None) -> SlaTargets:
        """What a ticket of this priority (and tier) gets: for the console's policy page and previews."""
        async with self.uow() as uow:
            first_response, resolution = await targets(uow.session, self.settings, priority, tier_id)
            return SlaTargets(first_response_minutes=first_response // timedelta(minutes=1),
                              resolution_minutes=resolution // timedelta(minutes=1))


def _same_tier(tier_id: int | None):  # type: ignore[no-untyped-def]
    return m.SlaPolicy.tier_id.is_(None) if tier_id is None else m.SlaPolicy.tier_id == tier_id


async def targets(
    session: AsyncSession, settings: StoreSettings, priority: TicketPriority | str, tier_id: int | None
) -> tuple[timedelta, timedelta]:
    """(first response, resolution) for a priority and tier: the tier's policy, else the tier-less one, else the
    store's single default target for both."""
    priority = TicketPriority(priority)
    tiers = m.SlaPolicy.tier_id.is_(None) if tier_id is None else (
        (m.SlaPolicy.tier_id == tier_id) | m.SlaPolicy.tier_id.is_(None)
    )
    row = (await session.execute(
        select(m.SlaPolicy.first_response_minutes, m.SlaPolicy.resolution_minutes)
        .where(m.SlaPolicy.priority == priority, tiers)
        .order_by(m.SlaPolicy.tier_id.is_(None), m.SlaPolicy.id).limit(1)
    )).first()
    if row is None:
        default = settings.sla_target(priority)
        return default, default
    return timedelta(minutes=row.first_response_minutes), timedelta(minutes=row.resolution_minutes)


# --- the ticket's clock (called by ConversationService inside its transactions) ------------------------------------


def next_due(ticket: m.Ticket) -> datetime | None:
    """The ticket's next deadline: first response until an agent replied, then resolution; none when done."""
    if ticket.status not in CLOCK_RUNNING:
        return None
    return ticket.first_response_due_at if ticket.first_response_at is None else ticket.resolution_due_at


async def start(session: AsyncSession, settings: StoreSettings, ticket: m.Ticket, *, tier_id: int | None) -> None:
    """A new ticket: both targets count from its creation."""
    first_response, resolution = await targets(session, settings, ticket.priority, tier_id)
    ticket.first_response_due_at = ticket.created_at + first_response
    ticket.resolution_due_at = ticket.created_at + resolution
    ticket.sla_due_at = next_due(ticket)


def answered(ticket: m.Ticket) -> None:
    """An agent replied: the resolution target is next."""
    ticket.sla_due_at = next_due(ticket)


async def retarget(session: AsyncSession, settings: StoreSettings, ticket: m.Ticket) -> None:
    """The priority changed: the targets of the new priority, from the ticket's creation (the resolution target
    from its last reopening, if any)."""
    tier = await customer_tier(session, ticket.customer_id)
    first_response, resolution = await targets(session, settings, ticket.priority, tier.id if tier else None)
    reopened_at = await session.scalar(
        select(func.max(m.TicketEvent.created_at))
        .where(m.TicketEvent.ticket_id == ticket.id, m.TicketEvent.kind == TicketEventKind.REOPENED)
    )
    ticket.first_response_due_at = ticket.created_at + first_response
    ticket.resolution_due_at = (reopened_at or ticket.created_at) + resolution
    ticket.sla_due_at = next_due(ticket)


async def reopen(session: AsyncSession, settings: StoreSettings, ticket: m.Ticket) -> None:
    """A resolved or closed ticket is open again: a new resolution target from now (a ticket no agent ever
    answered stays due at its first-response time)."""
    tier = await customer_tier(session, ticket.customer_id)
    _, resolution = await targets(session, settings, ticket.priority, tier.id if tier else None)
    ticket.resolution_due_at = utcnow() + resolution
    ticket.sla_due_at = next_due(ticket)


def stop(ticket: m.Ticket) -> None:
    """Resolved or closed: nothing is due."""
    ticket.sla_due_at = None
