"""Conversations, messages and tickets: record what was said, hand off to a human, work the ticket."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import ConversationView, MessageView, RecordedMessage, TicketEventView, TicketView
from crm_store.enums import (
    Channel,
    ConversationStatus,
    DeliveryStatus,
    HandoffReason,
    MessageDirection,
    SenderType,
    TicketEventKind,
    TicketPriority,
    TicketStatus,
)
from crm_store.errors import InvalidTransition, NotFound
from crm_store.events import (
    AgentReplied,
    BotPushed,
    BotReplied,
    CustomerCreated,
    HandoffRequested,
    MessageReceived,
    NoteAdded,
    TicketResolved,
    TicketUpdated,
)
from crm_store.observability import HANDOFFS
from crm_store.services import sla
from crm_store.services.base import Service
from crm_store.services.customers import identify_in
from crm_store.services.loyalty import customer_tier
from crm_store.services.surveys import CHAT_CHANNELS, OptedOut, csat_survey, invite_in
from crm_store.uow import UnitOfWork

ACTIVE_TICKET = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
# Ticket statuses an agent may set directly; resolving goes through resolve() (it triggers CSAT).
SETTABLE = {
    TicketStatus.NEW: {TicketStatus.OPEN, TicketStatus.PENDING},
    TicketStatus.OPEN: {TicketStatus.PENDING},
    TicketStatus.PENDING: {TicketStatus.OPEN},
    TicketStatus.RESOLVED: {TicketStatus.OPEN, TicketStatus.CLOSED},
    TicketStatus.CLOSED: {TicketStatus.OPEN},
}


def incoming_key(channel: str, external_id: str, channel_message_id: str) -> str:
    """The idempotency key of an incoming update: the same chat's same message is stored once."""
    return f"in:{channel}:{external_id}:{channel_message_id}"

# The idempotency keys of the messages the bot pushes on its own (a campaign's, a survey's questions): announced
# again, like an agent's reply, when still unsent long after they were written.
PUSHED_KEYS = ("campaign-", "survey:")


class ConversationService(Service):
    # --- messages ---------------------------------------------------------------------------------------

    async def record_incoming(
        self, *, channel: Channel | str, external_id: str, text: str, channel_message_id: str | None = None,
        payload: dict[str, Any] | None = None, display_name: str = "", language: str | None = None,
        idempotency_key: str | None = None,
    ) -> RecordedMessage:
        """Store a customer's message in their current conversation (opening one if needed); idempotent."""
        key = idempotency_key or (
            incoming_key(str(channel), str(external_id), channel_message_id) if channel_message_id else None
        )
        if key and (found := await self._find_by_key(key)):
            return found
        try:
            async with self.uow() as uow:
                customer, identity, created = await identify_in(
                    uow.session, channel=channel, external_id=external_id, display_name=display_name,
                    language=language,
                )
                if created:
                    uow.emit(CustomerCreated(customer_id=customer.id))
                conversation = await _current_conversation(uow.session, customer.id, identity.id)
                if conversation.status == ConversationStatus.SNOOZED:
                    conversation.status = ConversationStatus.OPEN
                message = m.Message(
                    conversation_id=conversation.id, direction=MessageDirection.INCOMING,
                    sender=SenderType.CUSTOMER, text=text, payload=payload or {},
                    delivery_status=DeliveryStatus.RECEIVED, channel_message_id=channel_message_id,
                    idempotency_key=key,
                )
                uow.session.add(message)
                conversation.last_message_at = utcnow()
                if conversation.status in (ConversationStatus.PENDING, ConversationStatus.OPEN) and (
                    conversation.waiting_since is None
                ):
                    conversation.waiting_since = utcnow()
                await uow.session.flush()
                uow.emit(MessageReceived(
                    conversation_id=conversation.id, message_id=message.id, customer_id=customer.id,
                    channel=str(channel), conversation_status=str(conversation.status),
                ))
                await uow.commit()
                return RecordedMessage(MessageView.of(message), ConversationView.of(conversation), customer.id, False)
        except IntegrityError:
            if key and (found := await self._find_by_key(key)):  # a concurrent redelivery won the race
                return found
            raise

    async def record_outgoing(
        self, *, conversation_id: int, sender: SenderType | str, text: str, payload: dict[str, Any] | None = None,
        agent_id: int | None = None, intent: str | None = None, confidence: float | None = None,
        kb_article_id: int | None = None, idempotency_key: str | None = None,
        delivery_status: DeliveryStatus = DeliveryStatus.QUEUED, push: bool = False,
    ) -> RecordedMessage:
        """Store what the bot or an agent says; an agent's reply, or a message the bot starts (`push`: a survey,
        a campaign), is announced for delivery to the customer's chat."""
        sender = SenderType(sender)
        if idempotency_key and (found := await self._find_by_key(idempotency_key)):
            return found
        async with self.uow() as uow:
            conversation = await _get_conversation(uow.session, conversation_id)
            message = m.Message(
                conversation_id=conversation.id, direction=MessageDirection.OUTGOING, sender=sender,
                agent_id=agent_id, text=text, payload=payload or {}, intent=intent, confidence=confidence,
                kb_article_id=kb_article_id, delivery_status=delivery_status, idempotency_key=idempotency_key,
            )
            uow.session.add(message)
            now = utcnow()
            conversation.last_message_at = now
            if sender == SenderType.AGENT:
                conversation.waiting_since = None
                if conversation.first_response_at is None:
                    conversation.first_response_at = now
                ticket = await _active_ticket(uow.session, conversation.id)
                if ticket is not None and ticket.first_response_at is None:
                    ticket.first_response_at = now
                    sla.answered(ticket)  # the resolution target is next
            await uow.session.flush()
            identity = (
                await uow.session.get(m.ChannelIdentity, conversation.identity_id)
                if conversation.identity_id and (push or sender == SenderType.AGENT) else None
            )
            if sender == SenderType.AGENT:
                uow.emit(AgentReplied(
                    conversation_id=conversation.id, message_id=message.id, customer_id=conversation.customer_id,
                    agent_id=agent_id, channel=str(identity.channel) if identity else None,
                    external_id=identity.external_id if identity else None, text=text,
                ))
            elif push:
                uow.emit(BotPushed(
                    conversation_id=conversation.id, message_id=message.id, customer_id=conversation.customer_id,
                    channel=str(identity.channel) if identity else None,
                    external_id=identity.external_id if identity else None, text=text, payload=payload or {},
                ))
            elif sender == SenderType.BOT:
                uow.emit(BotReplied(
                    conversation_id=conversation.id, message_id=message.id, customer_id=conversation.customer_id
                ))
            await uow.commit()
            return RecordedMessage(
                MessageView.of(message), ConversationView.of(conversation), conversation.customer_id, False
            )

    async def mark_delivery(
        self, *, message_id: int, status: DeliveryStatus, channel_message_id: str | None = None
    ) -> MessageView:
        async with self.uow() as uow:
            message = await uow.session.get(m.Message, message_id)
            if message is None:
                raise NotFound(f"No message {message_id}.")
            message.delivery_status = status
            if channel_message_id:
                message.channel_message_id = channel_message_id
            await uow.commit()
            return MessageView.of(message)

    async def announce_stranded(self, *, older_than: timedelta, within: timedelta, limit: int = 200) -> int:
        """Announce again the Telegram messages still waiting to be sent `older_than` after they were written: agents'
        replies, and messages the bot pushed for a campaign or a survey (their announcement may have been lost: Redis
        was away just after the commit, or lost its stream). The delivery worker's marks keep one that was only slow
        from going out twice. How many were announced. (The web chat has no delivery to wait for: its messages are
        in the chat's history when the visitor comes back.)"""
        now = utcnow()
        pushed = or_(*(m.Message.idempotency_key.like(f"{prefix}%") for prefix in PUSHED_KEYS))
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(m.Message, m.Conversation.customer_id, m.ChannelIdentity.external_id)
                .join(m.Conversation, m.Conversation.id == m.Message.conversation_id)
                .join(m.ChannelIdentity, m.ChannelIdentity.id == m.Conversation.identity_id)
                .where(or_(m.Message.sender == SenderType.AGENT, and_(m.Message.sender == SenderType.BOT, pushed)),
                       m.Message.is_private.is_(False), m.Message.delivery_status == DeliveryStatus.QUEUED,
                       m.ChannelIdentity.channel == Channel.TELEGRAM,
                       m.Message.created_at < now - older_than, m.Message.created_at >= now - within)
                .order_by(m.Message.id).limit(limit)
            )).all()
            for message, customer_id, external_id in rows:
                common = {"conversation_id": message.conversation_id, "message_id": message.id,
                          "customer_id": customer_id, "channel": Channel.TELEGRAM.value, "external_id": external_id,
                          "text": message.text}
                uow.emit(AgentReplied(agent_id=message.agent_id, **common) if message.sender == SenderType.AGENT
                         else BotPushed(payload=message.payload, **common))
        return len(rows)

    async def waiting_before(self, *, conversation_id: int, message_id: int, since: datetime) -> bool:
        """Is an earlier agent's reply in this conversation (stored after `since`) still waiting to be sent? The
        delivery worker holds a later message back meanwhile, so a chat's messages arrive in order."""
        async with self.uow() as uow:
            found = await uow.session.execute(
                select(m.Message.id).where(
                    m.Message.conversation_id == conversation_id, m.Message.id < message_id,
                    m.Message.sender == SenderType.AGENT, m.Message.is_private.is_(False),
                    m.Message.delivery_status == DeliveryStatus.QUEUED, m.Message.created_at >= since,
                ).limit(1)
            )
            return found.first() is not None

    async def channel_ids_around(self, *, message_id: int) -> tuple[int, set[int]]:
        """Where a message of this conversation may sit in its chat's numbering (Telegram numbers a private chat's
        messages, both ways, 1, 2, 3, ...): (the highest channel id among the conversation's earlier messages, the
        channel ids recorded for its later ones). The delivery worker looks for a send in doubt just above the first
        and skips the second."""
        async with self.uow() as uow:
            conversation_id = (await uow.session.execute(
                select(m.Message.conversation_id).where(m.Message.id == message_id))).scalar_one_or_none()
            if conversation_id is None:
                raise NotFound(f"No message {message_id}.")
            in_conversation = (m.Message.conversation_id == conversation_id, m.Message.channel_message_id.is_not(None))
            earlier = (await uow.session.execute(
                select(m.Message.channel_message_id).where(*in_conversation, m.Message.id < message_id)
                .order_by(m.Message.id.desc()).limit(50))).scalars()
            later = (await uow.session.execute(
                select(m.Message.channel_message_id).where(*in_conversation, m.Message.id > message_id)
                .order_by(m.Message.id).limit(500))).scalars()
            return max(_numbers(earlier), default=0), set(_numbers(later))

    async def transcript(self, *, conversation_id: int, include_private: bool = True) -> list[MessageView]:
        async with self.uow() as uow:
            query = select(m.Message).where(m.Message.conversation_id == conversation_id)
            if not include_private:
                query = query.where(m.Message.is_private.is_(False))
            rows = await uow.session.execute(query.order_by(m.Message.created_at, m.Message.id))
            return [MessageView.of(x) for x in rows.scalars()]

    async def history(self, *, channel: Channel | str, external_id: str, limit: int = 50) -> list[MessageView]:
        """What a chat saw: the last `limit` messages of all its conversations, oldest first (no agent notes)."""
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.Message)
                .join(m.Conversation, m.Conversation.id == m.Message.conversation_id)
                .join(m.ChannelIdentity, m.ChannelIdentity.id == m.Conversation.identity_id)
                .where(m.ChannelIdentity.channel == Channel(channel), m.ChannelIdentity.external_id == external_id,
                       m.Message.is_private.is_(False))
                .order_by(m.Message.created_at.desc(), m.Message.id.desc()).limit(limit)
            )
            return [MessageView.of(x) for x in reversed(rows.scalars().all())]

    async def get(self, *, conversation_id: int) -> ConversationView:
        async with self.uow() as uow:
            return ConversationView.of(await _get_conversation(uow.session, conversation_id))

    async def _find_by_key(self, key: str) -> RecordedMessage | None:
        async with self.uow() as uow:
            message = (
                await uow.session.execute(select(m.Message).where(m.Message.idempotency_key == key))
            ).scalar_one_or_none()
            if message is None:
                return None
            conversation = await _get_conversation(uow.session, message.conversation_id)
            return RecordedMessage(
                MessageView.of(message), ConversationView.of(conversation), conversation.customer_id, True
            )

    # --- tickets ----------------------------------------------------------------------------------------

    async def hand_off(
        self, *, conversation_id: int, reason: HandoffReason | str, subject: str = "", category: str | None = None,
        priority: TicketPriority | str = TicketPriority.NORMAL, agent_id: int | None = None,
        intent: str | None = None,
    ) -> TicketView:
        """Ask for a human: the conversation waits for an agent and a ticket tracks it (one active at a time).
        The priority is at least what the customer's tier gives (VIP first); the ticket's context keeps what the
        bot tried (`intent`: the one behind this handoff, whose reply is not stored yet)."""
        async with self.uow() as uow:
            conversation = await _get_conversation(uow.session, conversation_id, for_update=True)
            if (ticket := await _active_ticket(uow.session, conversation.id)) is not None:
                return TicketView.of(ticket)
            now = utcnow()
            tier = await customer_tier(uow.session, conversation.customer_id)
            priority = _higher_priority(TicketPriority(priority), tier.handoff_priority if tier else None)
            context = await _handoff_context(uow.session, conversation.id, reason=HandoffReason(reason),
                                             tier=tier, intent=intent)
            ticket = m.Ticket(
                conversation_id=conversation.id, customer_id=conversation.customer_id, subject=subject[:300],
                category=category, priority=priority, status=TicketStatus.NEW, team_id=conversation.team_id,
                created_at=now, context=context, channel=await uow.session.scalar(
                    select(m.ChannelIdentity.channel).where(m.ChannelIdentity.id == conversation.identity_id)
                ),
            )
            await sla.start(uow.session, self.settings, ticket, tier_id=tier.id if tier else None)
            uow.session.add(ticket)
            conversation.status = ConversationStatus.PENDING
            conversation.priority = priority
            conversation.waiting_since = now
            conversation.resolved_at = None
            await uow.session.flush()
            _log(uow, ticket, TicketEventKind.CREATED, agent_id, to_value=str(HandoffReason(reason)))
            uow.emit(HandoffRequested(
                conversation_id=conversation.id, ticket_id=ticket.id, customer_id=conversation.customer_id,
                reason=str(HandoffReason(reason)),
            ))
            await uow.commit()
            HANDOFFS.labels(str(HandoffReason(reason))).inc()
            return TicketView.of(ticket)

    async def assign(self, *, ticket_id: int, agent_id: int | None, by_agent_id: int | None = None) -> TicketView:
        """Give the ticket (and its conversation) to an agent, or unassign it with None."""
        async with self.uow() as uow:
            ticket = await _get_ticket(uow.session, ticket_id, for_update=True)
            agent = await uow.session.get(m.Agent, agent_id) if agent_id is not None else None
            if agent_id is not None and (agent is None or not agent.active):
                raise NotFound(f"No active agent {agent_id}.")
            await assign_in(uow, ticket, agent, by_agent_id=by_agent_id)
            await uow.commit()
            return TicketView.of(ticket)

    async def change_status(
        self, *, ticket_id: int, status: TicketStatus | str, by_agent_id: int | None = None
    ) -> TicketView:
        status = TicketStatus(status)
        if status == TicketStatus.RESOLVED:
            return await self.resolve(ticket_id=ticket_id, by_agent_id=by_agent_id)
        async with self.uow() as uow:
            ticket = await _get_ticket(uow.session, ticket_id, for_update=True)
            before = TicketStatus(ticket.status)
            if status == before:
                return TicketView.of(ticket)
            if status not in SETTABLE[before]:
                raise InvalidTransition(f"A {before} ticket cannot become {status}.")
            ticket.status = status
            conversation = await _get_conversation(uow.session, ticket.conversation_id)
            if before in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
                ticket.resolved_at = None
                conversation.status = ConversationStatus.OPEN if ticket.assignee_id else ConversationStatus.PENDING
                conversation.resolved_at = None
                await sla.reopen(uow.session, self.settings, ticket)
                kind = TicketEventKind.REOPENED
            else:
                kind = TicketEventKind.STATUS_CHANGED
            _log(uow, ticket, kind, by_agent_id, str(before), str(status))
            await uow.commit()
            return TicketView.of(ticket)

    async def change_priority(
        self, *, ticket_id: int, priority: TicketPriority | str, by_agent_id: int | None = None
    ) -> TicketView:
        """Change the priority; the SLA due times follow from the ticket's creation (resolution: its reopening)."""
        priority = TicketPriority(priority)
        async with self.uow() as uow:
            ticket = await _get_ticket(uow.session, ticket_id, for_update=True)
            before = TicketPriority(ticket.priority)
            if before == priority:
                return TicketView.of(ticket)
            ticket.priority = priority
            await sla.retarget(uow.session, self.settings, ticket)
            conversation = await _get_conversation(uow.session, ticket.conversation_id)
            conversation.priority = priority
            _log(uow, ticket, TicketEventKind.PRIORITY_CHANGED, by_agent_id, str(before), str(priority))
            await uow.commit()
            return TicketView.of(ticket)

    async def add_note(self, *, conversation_id: int, agent_id: int | None, text: str) -> MessageView:
        """An internal note: visible to agents only, never sent to the customer."""
        if not text.strip():
            raise ValueError("A note cannot be empty.")
        async with self.uow() as uow:
            conversation = await _get_conversation(uow.session, conversation_id)
            note = m.Message(
                conversation_id=conversation.id, direction=MessageDirection.OUTGOING, sender=SenderType.AGENT,
                agent_id=agent_id, text=text, is_private=True, delivery_status=DeliveryStatus.DELIVERED,
            )
            uow.session.add(note)
            await uow.session.flush()
            if (ticket := await _active_ticket(uow.session, conversation.id)) is not None:
                _log(uow, ticket, TicketEventKind.NOTE_ADDED, agent_id, note=text[:500])
            uow.emit(NoteAdded(conversation_id=conversation.id, message_id=note.id, agent_id=agent_id))
            await uow.commit()
            return MessageView.of(note)

    async def resolve(self, *, ticket_id: int, by_agent_id: int | None = None, send_csat: bool = True) -> TicketView:
        """Resolve the ticket and its conversation; the bot takes the conversation back and, in the same
        transaction, the CSAT survey is sent to the customer's chat (unless they opted out of surveys)."""
        async with self.uow() as uow:
            ticket = await _get_ticket(uow.session, ticket_id, for_update=True)
            before = TicketStatus(ticket.status)
            if before in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
                return TicketView.of(ticket)
            now = utcnow()
            ticket.status = TicketStatus.RESOLVED
            ticket.resolved_at = now
            sla.stop(ticket)
            conversation = await _get_conversation(uow.session, ticket.conversation_id)
            conversation.status = ConversationStatus.RESOLVED
            conversation.resolved_at = now
            conversation.waiting_since = None
            _log(uow, ticket, TicketEventKind.RESOLVED, by_agent_id, str(before), str(TicketStatus.RESOLVED))
            if send_csat:
                await _send_csat(uow, ticket, conversation)
            uow.emit(TicketResolved(
                ticket_id=ticket.id, conversation_id=conversation.id, customer_id=ticket.customer_id,
                agent_id=by_agent_id,
            ))
            await uow.commit()
            return TicketView.of(ticket)

    async def active_ticket(self, *, conversation_id: int) -> TicketView | None:
        """The conversation's ticket that is not resolved or closed yet, if any (there is at most one)."""
        async with self.uow() as uow:
            ticket = await _active_ticket(uow.session, conversation_id)
            return TicketView.of(ticket) if ticket is not None else None

    async def get_ticket(self, *, ticket_id: int) -> TicketView:
        async with self.uow() as uow:
            return TicketView.of(await _get_ticket(uow.session, ticket_id))

    async def ticket_events(self, *, ticket_id: int) -> list[TicketEventView]:
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.TicketEvent).where(m.TicketEvent.ticket_id == ticket_id)
                .order_by(m.TicketEvent.created_at, m.TicketEvent.id)
            )
            return [TicketEventView.of(e) for e in rows.scalars()]


async def assign_in(uow: UnitOfWork, ticket: m.Ticket, agent: m.Agent | None, *, by_agent_id: int | None) -> None:
    """Inside a use case's transaction, the ticket locked: give it (and its conversation) to `agent`, or to nobody
    with None; the agent's round-robin turn moves to the back."""
    agent_id = agent.id if agent is not None else None
    if ticket.assignee_id == agent_id:
        return
    before = ticket.assignee_id
    ticket.assignee_id = agent_id
    conversation = await _get_conversation(uow.session, ticket.conversation_id)
    conversation.assignee_id = agent_id
    if agent is not None:
        agent.last_assigned_at = utcnow()
        if ticket.status == TicketStatus.NEW:
            ticket.status = TicketStatus.OPEN
        if conversation.status == ConversationStatus.PENDING:
            conversation.status = ConversationStatus.OPEN
    _log(uow, ticket, TicketEventKind.ASSIGNED, by_agent_id, _s(before), _s(agent_id))


async def _send_csat(uow: UnitOfWork, ticket: m.Ticket, conversation: m.Conversation) -> None:
    """Invite the customer to the CSAT survey for this ticket (once, even if it is reopened and resolved again),
    in the chat the conversation happened in."""
    identity = await uow.session.get(m.ChannelIdentity, conversation.identity_id) if conversation.identity_id else None
    survey = await csat_survey(uow.session)
    if identity is None or identity.channel not in CHAT_CHANNELS or not survey.active:
        return
    customer = await uow.session.get_one(m.Customer, ticket.customer_id)
    try:
        await invite_in(uow, survey=survey, customer=customer, identity=identity, conversation_id=conversation.id,
                        dedupe_key=f"csat:ticket:{ticket.id}", ticket=ticket)
    except OptedOut:
        return


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def _log(
    uow: UnitOfWork, ticket: m.Ticket, kind: TicketEventKind, agent_id: int | None,
    from_value: str | None = None, to_value: str | None = None, note: str = "",
) -> None:
    uow.session.add(m.TicketEvent(
        ticket_id=ticket.id, kind=kind, agent_id=agent_id, actor="agent" if agent_id else "system",
        from_value=from_value, to_value=to_value, note=note,
    ))
    uow.emit(TicketUpdated(
        ticket_id=ticket.id, conversation_id=ticket.conversation_id, kind=str(kind), from_value=from_value,
        to_value=to_value, agent_id=agent_id,
    ))


async def _current_conversation(session: AsyncSession, customer_id: int, identity_id: int) -> m.Conversation:
    """The identity's latest conversation unless it was resolved; then a new one, owned by the bot."""
    latest = (
        await session.execute(
            select(m.Conversation).where(m.Conversation.identity_id == identity_id)
            .order_by(m.Conversation.id.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if latest is not None and latest.status != ConversationStatus.RESOLVED:
        return latest
    conversation = m.Conversation(customer_id=customer_id, identity_id=identity_id, status=ConversationStatus.BOT)
    session.add(conversation)
    await session.flush()
    return conversation


async def _get_conversation(session: AsyncSession, conversation_id: int, *, for_update: bool = False) -> m.Conversation:
    query = select(m.Conversation).where(m.Conversation.id == conversation_id)
    if for_update:
        query = query.with_for_update()
    conversation = (await session.execute(query)).scalar_one_or_none()
    if conversation is None:
        raise NotFound(f"No conversation {conversation_id}.")
    return conversation


async def _get_ticket(session: AsyncSession, ticket_id: int, *, for_update: bool = False) -> m.Ticket:
    query = select(m.Ticket).where(m.Ticket.id == ticket_id)
    if for_update:
        query = query.with_for_update()
    ticket = (await session.execute(query)).scalar_one_or_none()
    if ticket is None:
        raise NotFound(f"No ticket {ticket_id}.")
    return ticket


async def _active_ticket(session: AsyncSession, conversation_id: int) -> m.Ticket | None:
    return (
        await session.execute(
            select(m.Ticket).where(m.Ticket.conversation_id == conversation_id, m.Ticket.status.in_(ACTIVE_TICKET))
            .order_by(m.Ticket.id.desc()).limit(1)
        )
    ).scalar_one_or_none()


# --- handoff: priority by tier, what the bot tried ---------------------------------------------------------

PRIORITY_ORDER = (TicketPriority.LOW, TicketPriority.NORMAL, TicketPriority.HIGH, TicketPriority.URGENT)


def _higher_priority(requested: TicketPriority, floor: TicketPriority | str | None) -> TicketPriority:
    """The requested priority, raised to the tier's `floor` when that is higher."""
    return requested if floor is None else max(requested, TicketPriority(floor), key=PRIORITY_ORDER.index)


async def _handoff_context(
    session: AsyncSession, conversation_id: int, *, reason: HandoffReason, tier: m.LoyaltyTier | None,
    intent: str | None,
) -> dict[str, Any]:
    """What an agent should see first: why, the intents recognized and the articles offered (each once, in the
    order they came), the customer's tier and their last message."""
    msg = m.Message
    in_chat = (msg.conversation_id == conversation_id, msg.is_private.is_(False))
    intents = list((await session.execute(
        select(msg.intent)
        .where(*in_chat, msg.sender.in_((SenderType.BOT, SenderType.CUSTOMER)), msg.intent.is_not(None))
        .group_by(msg.intent).order_by(func.min(msg.id))
    )).scalars())
    if intent and intent not in intents:
        intents.append(intent)
    article = m.KbArticle
    articles = (await session.execute(
        select(msg.kb_article_id, article.external_id, article.question)
        .outerjoin(article, article.id == msg.kb_article_id)
        .where(*in_chat, msg.sender == SenderType.BOT, msg.kb_article_id.is_not(None))
        .group_by(msg.kb_article_id, article.external_id, article.question).order_by(func.min(msg.id))
    )).all()
    last = await session.scalar(  # a button press has no text: the last thing the customer wrote
        select(msg.text).where(*in_chat, msg.sender == SenderType.CUSTOMER, msg.text != "")
        .order_by(msg.id.desc()).limit(1)
    )
    return {
        "reason": str(reason),
        "intents": intents,
        "articles": [{"id": a.kb_article_id, "external_id": a.external_id, "question": a.question} for a in articles],
        "tier": tier.name if tier else None,
        "last_customer_message": last,
    }


def _numbers(channel_ids: Any) -> list[int]:
    """The numeric ones of a list of channel message ids (Telegram's; the web chat's are the client's own)."""
    return [int(x) for x in channel_ids if x and x.isdigit()]
