"""Tickets over the REST API: the inbox's list, one ticket with its history, its messages, replies and notes,
assignment, status, priority and resolution. Changes are recorded as made by the agent who issued the token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from console.api import schemas as s
from console.api.auth import CONFLICT, NOT_FOUND, acting_agent, area_router, entity_id, require_scope
from console.context import ConsoleDep
from console.permissions import ApiScope
from crm_store.dto import ApiTokenView, InboxFilter
from crm_store.enums import Channel, SenderType, TicketPriority, TicketStatus
from crm_store.errors import InvalidTransition
from crm_store.services.conversations import ACTIVE_TICKET

router = area_router("/tickets")

Reader = Annotated[ApiTokenView, require_scope(ApiScope.TICKETS_READ)]
Writer = Annotated[ApiTokenView, require_scope(ApiScope.TICKETS_WRITE)]
TicketId = Annotated[int, entity_id("The ticket's id.")]
# The inbox's keyset cursor: "<deadline in µs since 1970, or n>_<ticket id>", as `next_cursor` gave it.
Cursor = Annotated[str | None, Query(max_length=40, pattern=r"^(n|-?[0-9]{1,18})_[0-9]{1,9}$",
                                     description="`next_cursor` of the previous page.")]


@router.get("", response_model=s.TicketPage, summary="List tickets, the nearest SLA deadline first")
async def list_tickets(
    console: ConsoleDep, _: Reader,
    status: Annotated[list[TicketStatus] | None, Query(max_length=5, description="Default: new, open, pending.")]
    = None,
    priority: Annotated[list[TicketPriority] | None, Query(max_length=4)] = None,
    assignee: Annotated[str, Query(pattern=r"^(anyone|unassigned|[1-9][0-9]{0,8})$",
                                   description="anyone, unassigned, or an agent's id.")] = "anyone",
    team_id: Annotated[int | None, Query(ge=1, le=s.MAX_ID)] = None,
    channel: Channel | None = None,
    overdue: Annotated[bool, Query(description="Only tickets whose next SLA deadline has passed.")] = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Cursor = None,
) -> s.TicketPage:
    view = InboxFilter(
        statuses=tuple(status) if status else InboxFilter.statuses, priorities=tuple(priority or ()),
        assignee=assignee, team_id=team_id, channel=channel, overdue=overdue,
    )
    page = await console.crm.inbox.tickets(viewer_id=None, view=view, limit=limit, cursor=cursor)
    return s.TicketPage(items=[s.TicketSummary.model_validate(row) for row in page.rows],
                        next_cursor=page.next_cursor)


@router.get("/{ticket_id}", response_model=s.TicketDetail, responses=NOT_FOUND, summary="A ticket and its history")
async def get_ticket(console: ConsoleDep, _: Reader, ticket_id: TicketId) -> s.TicketDetail:
    ticket = await console.crm.conversations.get_ticket(ticket_id=ticket_id)
    events = await console.crm.conversations.ticket_events(ticket_id=ticket_id)
    return s.TicketDetail(**s.Ticket.model_validate(ticket).model_dump(),
                          events=[s.TicketEvent.model_validate(e) for e in events])


@router.get("/{ticket_id}/messages", response_model=s.MessagePage, responses=NOT_FOUND,
            summary="The messages of the ticket's conversation, newest page first")
async def list_messages(
    console: ConsoleDep, _: Reader, ticket_id: TicketId,
    before_id: Annotated[int | None, Query(ge=1, le=s.MAX_ID, description="`next_before_id` of the previous page.")]
    = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    include_notes: Annotated[bool, Query(description="Include agents' internal notes.")] = True,
) -> s.MessagePage:
    ticket = await console.crm.conversations.get_ticket(ticket_id=ticket_id)
    page = await console.crm.inbox.conversation_page(conversation_id=ticket.conversation_id, before_id=before_id,
                                                     limit=limit, include_private=include_notes)
    return s.MessagePage(items=[s.Message.model_validate(m) for m in page.messages],
                         next_before_id=page.next_before_id)


@router.post("/{ticket_id}/messages", response_model=s.Message, status_code=201, responses={**NOT_FOUND, **CONFLICT},
             summary="Reply to the customer")
async def reply(console: ConsoleDep, token: Writer, ticket_id: TicketId, body: s.Reply) -> s.Message:
    """Sent to the customer's chat as an agent's reply from the agent who issued the token (`agent_id`; null when
    that agent was deleted). A resolved or closed ticket must be reopened first (409)."""
    ticket = await console.crm.conversations.get_ticket(ticket_id=ticket_id)
    if ticket.status not in ACTIVE_TICKET:
        raise InvalidTransition(f"Ticket {ticket_id} is {ticket.status}: reopen it before replying.")
    recorded = await console.crm.conversations.record_outgoing(
        conversation_id=ticket.conversation_id, sender=SenderType.AGENT, text=body.text, agent_id=acting_agent(token)
    )
    return s.Message.model_validate(recorded.message)


@router.post("/{ticket_id}/notes", response_model=s.Message, status_code=201, responses=NOT_FOUND,
             summary="Add an internal note (never shown to the customer)")
async def add_note(console: ConsoleDep, token: Writer, ticket_id: TicketId, body: s.Reply) -> s.Message:
    ticket = await console.crm.conversations.get_ticket(ticket_id=ticket_id)
    note = await console.crm.conversations.add_note(conversation_id=ticket.conversation_id,
                                                    agent_id=acting_agent(token), text=body.text)
    return s.Message.model_validate(note)


@router.patch("/{ticket_id}", response_model=s.Ticket, responses={**NOT_FOUND, **CONFLICT},
              summary="Assign a ticket, change its status or priority")
async def change_ticket(console: ConsoleDep, token: Writer, ticket_id: TicketId, body: s.TicketChange) -> s.Ticket:
    """`status: resolved` resolves as `POST /tickets/{id}/resolve` does; an agent id that is not an active agent
    is a 404."""
    conversations, by = console.crm.conversations, acting_agent(token)
    ticket = await conversations.get_ticket(ticket_id=ticket_id)
    if "assignee_id" in body.model_fields_set:
        ticket = await conversations.assign(ticket_id=ticket_id, agent_id=body.assignee_id, by_agent_id=by)
    if "status" in body.model_fields_set:
        ticket = await conversations.change_status(ticket_id=ticket_id, status=body.status, by_agent_id=by)
    if "priority" in body.model_fields_set:
        ticket = await conversations.change_priority(ticket_id=ticket_id, priority=body.priority, by_agent_id=by)
    return s.Ticket.model_validate(ticket)


@router.post("/{ticket_id}/resolve", response_model=s.Ticket, responses=NOT_FOUND,
             summary="Resolve a ticket (the bot takes the chat back; the CSAT survey is sent)")
async def resolve(console: ConsoleDep, token: Writer, ticket_id: TicketId) -> s.Ticket:
    ticket = await console.crm.conversations.resolve(ticket_id=ticket_id, by_agent_id=acting_agent(token))
    return s.Ticket.model_validate(ticket)
