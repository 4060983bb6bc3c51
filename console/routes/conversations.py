"""The conversation view: the transcript, the ticket panel and every action an agent takes on a ticket (reply,
note, status, priority, assignee, resolve), agent assist from the knowledge base, "save this answer to the KB",
and the live stream that keeps an open page current. Every route checks the same visibility as the inbox."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.live import event_stream
from console.permissions import Permission, allows, require
from console.security import Forbidden, SignedIn
from console.tickets import Missing, ago, done, due_in, is_htmx, load_visible, may_see, problem, session_alive
from console.web import render, with_security_headers
from crm_store.dto import ConversationPage, MessageView, TicketView
from crm_store.enums import SenderType, TicketPriority, TicketStatus
from crm_store.errors import ConflictError, InvalidTransition, NotFound
from crm_store.services.conversations import SETTABLE
from crm_store.services.knowledge import guess_language

router = APIRouter()

Worker = Annotated[SignedIn, require(Permission.TICKETS_WORK)]
Text = Annotated[str, Form()]
TRANSCRIPT_PAGE = 60
MAX_REPLY = 4000
ASSIST_HITS = 3


def url_of(conversation_id: int) -> str:
    return f"/conversations/{conversation_id}"


def last_text(messages: tuple[MessageView, ...], *senders: str, public: bool = True) -> str:
    """The newest non-empty text from one of `senders` (agent notes left out when `public`)."""
    for message in reversed(messages):
        if message.sender in senders and message.text.strip() and not (public and message.is_private):
            return message.text
    return ""


def customer_question(page: ConversationPage) -> str:
    return last_text(page.messages, SenderType.CUSTOMER) or (page.ticket.context.get("last_customer_message") or ""
                                                             if page.ticket else "")


async def panel_context(console: Console, signed: SignedIn, page: ConversationPage) -> dict[str, Any]:
    """What the ticket panel shows: the ticket, its SLA, what the bot tried, its history, the choices allowed."""
    ticket = page.ticket
    agents = await console.crm.agents.list_agents()
    events = await console.crm.conversations.ticket_events(ticket_id=ticket.id) if ticket else []
    status = TicketStatus(ticket.status) if ticket else None
    return {
        "page": page, "ticket": ticket, "sla": page.sla, "events": events[::-1],
        "names": {a.id: a.name for a in agents}, "assignable": [a for a in agents if a.active],
        "statuses": sorted(SETTABLE[status] | {status}, key=list(TicketStatus).index) if status else [],
        "priorities": list(TicketPriority), "can_reassign": allows(signed.agent.role, Permission.TICKETS_REASSIGN),
        "active": bool(ticket and ticket.status in ("new", "open", "pending")), "due_in": due_in, "ago": ago,
    }


def panel(request: Request, context: dict[str, Any]) -> Response:
    return render(request, "conversations/_panel.html", **context)


async def fresh_panel(request: Request, console: Console, signed: SignedIn, conversation_id: int) -> Response:
    page = await console.crm.inbox.conversation_page(conversation_id=conversation_id, limit=1)
    return panel(request, await panel_context(console, signed, page))


def transcript(request: Request, page: ConversationPage, messages: tuple[MessageView, ...], *,
               earlier: int | None) -> Response:
    return render(request, "conversations/_messages.html", messages=messages, page=page, earlier=earlier)


def require_ticket(page: ConversationPage) -> TicketView:
    if page.ticket is None:
        raise Missing("This conversation has no ticket: the bot is handling it.")
    return page.ticket


# --- pages and fragments ------------------------------------------------------------------------------------------


@router.get("/conversations/{conversation_id}")
async def conversation(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker) -> Response:
    page = await load_visible(console, signed, conversation_id, limit=TRANSCRIPT_PAGE)
    canned = await console.crm.canned.list(team_id=signed.agent.team_id)
    rendered = [(c, console.crm.canned.render(body=c.body, customer=page.customer, agent=signed.agent,
                                              ticket=page.ticket)) for c in canned]
    return render(request, "conversations/page.html", canned=rendered, question=customer_question(page),
                  last_reply=last_text(page.messages, SenderType.AGENT), kb=console.kb is not None,
                  max_reply=MAX_REPLY, **await panel_context(console, signed, page))


@router.get("/conversations/{conversation_id}/messages")
async def messages(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                   before_id: int | None = None, after: int | None = None) -> Response:
    """Older messages (`before_id`: "load earlier") or the ones newer than `after` (a live update)."""
    try:
        page = await load_visible(console, signed, conversation_id, before_id=before_id,
                                  limit=TRANSCRIPT_PAGE if after is None else 200)
    except Missing:
        return problem(request, "That message is not in this conversation.", status_code=404)
    shown = page.messages if after is None else tuple(m for m in page.messages if m.id > after)
    return transcript(request, page, shown, earlier=page.next_before_id if after is None else None)


@router.get("/conversations/{conversation_id}/panel")
async def ticket_panel(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker) -> Response:
    page = await load_visible(console, signed, conversation_id)
    return panel(request, await panel_context(console, signed, page))


@router.get("/conversations/{conversation_id}/assist")
async def assist(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                 q: str = "") -> Response:
    """The knowledge base's best articles for the customer's last question (or for `q`)."""
    page = await load_visible(console, signed, conversation_id, limit=TRANSCRIPT_PAGE)
    query = q.strip()[:500] or customer_question(page)
    result = None
    if console.kb is not None and query:
        result = await asyncio.to_thread(console.kb.search, query, k=ASSIST_HITS)
    return render(request, "conversations/_assist.html", available=console.kb is not None, query=query,
                  result=result, hits=result.hits[:ASSIST_HITS] if result else (), page=page)


@router.get("/conversations/{conversation_id}/events")
async def conversation_events(request: Request, conversation_id: int, console: ConsoleDep,
                              signed: Worker) -> Response:
    """Server-Sent Events for this conversation: `message` (a new message) and `ticket` (its ticket changed)."""
    await load_visible(console, signed, conversation_id)

    async def still_allowed() -> bool:
        if not await session_alive(request, console, signed):
            return False
        try:
            page = await console.crm.inbox.conversation_page(conversation_id=conversation_id, limit=1)
        except NotFound:
            return False
        return may_see(signed.agent, page)

    return with_security_headers(event_stream(
        request, wanted=lambda notice: notice.conversation_id == conversation_id, still_allowed=still_allowed,
    ))


# --- actions ----------------------------------------------------------------------------------------------------


@router.post("/conversations/{conversation_id}/reply")
async def reply(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                text: Text = "", article_id: Text = "") -> Response:
    """Send a reply to the customer's chat (the bot process delivers it); an unassigned ticket becomes the
    replying agent's. `article_id`: the reply used that article (inserted from agent assist), so the customer's
    questions the bot missed are proposed as its phrasings."""
    page = await load_visible(console, signed, conversation_id)
    if not (text := text.strip()):
        return problem(request, "Write a reply first.", back=url_of(conversation_id))
    if len(text) > MAX_REPLY:
        return problem(request, f"A reply is at most {MAX_REPLY:,} characters.", back=url_of(conversation_id))
    if page.ticket is not None and page.ticket.assignee_id is None and page.ticket.status in ("new", "open",
                                                                                             "pending"):
        await console.crm.conversations.assign(ticket_id=page.ticket.id, agent_id=signed.agent.id,
                                               by_agent_id=signed.agent.id)
    used = int(article_id) if re.fullmatch(r"[0-9]{1,10}", article_id) and 0 < int(article_id) < 2**31 else None
    sent = await console.crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.AGENT,
                                                           agent_id=signed.agent.id, text=text, kb_article_id=used)
    if used is not None:
        await console.crm.phrasings.propose_from_reply(message_id=sent.message.id)
    return done(request, url_of(conversation_id),
                transcript(request, page, (sent.message,), earlier=None) if is_htmx(request) else None)


@router.post("/conversations/{conversation_id}/notes")
async def note(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
               text: Text = "") -> Response:
    """An internal note: agents see it, the customer never does."""
    page = await load_visible(console, signed, conversation_id)
    if not (text := text.strip()):
        return problem(request, "Write the note first.", back=url_of(conversation_id))
    if len(text) > MAX_REPLY:  # the composer's limit: never a note cut short without a word
        return problem(request, f"A note is at most {MAX_REPLY:,} characters.", back=url_of(conversation_id))
    added = await console.crm.conversations.add_note(conversation_id=conversation_id, agent_id=signed.agent.id,
                                                     text=text)
    return done(request, url_of(conversation_id),
                transcript(request, page, (added,), earlier=None) if is_htmx(request) else None)


@router.post("/conversations/{conversation_id}/status")
async def change_status(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                        status: Text = "") -> Response:
    return await change_ticket(request, console, signed, conversation_id, status, TicketStatus, lambda ticket_id: (
        console.crm.conversations.change_status(ticket_id=ticket_id, status=status, by_agent_id=signed.agent.id)))


@router.post("/conversations/{conversation_id}/priority")
async def change_priority(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                          priority: Text = "") -> Response:
    return await change_ticket(request, console, signed, conversation_id, priority, TicketPriority, lambda ticket_id: (
        console.crm.conversations.change_priority(ticket_id=ticket_id, priority=priority, by_agent_id=signed.agent.id)))


async def change_ticket(request: Request, console: Console, signed: SignedIn, conversation_id: int, value: str,
                        choices: type[StrEnum], change: Callable[[int], Awaitable[Any]]) -> Response:
    """Set the ticket's status or priority to `value`, one of `choices`; a transition the ticket refuses is a 409."""
    ticket = require_ticket(await load_visible(console, signed, conversation_id))
    if value not in set(choices):
        return problem(request, f"Choose a {choices.__name__.removeprefix('Ticket').lower()}.",
                       back=url_of(conversation_id))
    try:
        await change(ticket.id)
    except InvalidTransition as exc:
        return problem(request, str(exc), status_code=409, back=url_of(conversation_id))
    return await after_ticket_change(request, console, signed, conversation_id)


@router.post("/conversations/{conversation_id}/assign")
async def assign(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                 agent_id: Text = "") -> Response:
    """Take an unassigned ticket ("me"); supervisors and admins give it to anyone, or to nobody ("none")."""
    ticket = require_ticket(await load_visible(console, signed, conversation_id))
    me = signed.agent.id
    target = me if agent_id == "me" else None if agent_id == "none" else int(agent_id) if agent_id.isdigit() else -1
    if target == -1:
        return problem(request, "Choose who takes the ticket.", back=url_of(conversation_id))
    taking_free_ticket = target == me and ticket.assignee_id is None
    if not taking_free_ticket and not allows(signed.agent.role, Permission.TICKETS_REASSIGN):
        raise Forbidden("Only supervisors and admins reassign tickets; you can take an unassigned one.")
    try:
        await console.crm.conversations.assign(ticket_id=ticket.id, agent_id=target, by_agent_id=me)
    except NotFound:
        return problem(request, "That agent is not active.", status_code=409, back=url_of(conversation_id))
    return await after_ticket_change(request, console, signed, conversation_id)


@router.post("/conversations/{conversation_id}/resolve")
async def resolve(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker) -> Response:
    """Resolve the ticket: the bot takes the conversation back and asks the customer for a CSAT rating."""
    ticket = require_ticket(await load_visible(console, signed, conversation_id))
    await console.crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=signed.agent.id)
    return await after_ticket_change(request, console, signed, conversation_id)


@router.post("/conversations/{conversation_id}/kb-draft")
async def save_to_kb(request: Request, conversation_id: int, console: ConsoleDep, signed: Worker,
                     question: Text = "", answer: Text = "") -> Response:
    """A draft article from the customer's question and the agent's answer, for a KB editor to review."""
    await load_visible(console, signed, conversation_id)
    try:
        article = await console.crm.knowledge.create_article(
            question=question.strip(), answer=answer.strip(), language=guess_language(question + answer),
            status="draft", agent_id=signed.agent.id, tags=("from-conversation",),
        )
    except (ValueError, ConflictError) as exc:
        return problem(request, str(exc), back=url_of(conversation_id))
    fragment = render(request, "conversations/_kb_saved.html", article=article)
    return done(request, url_of(conversation_id), fragment)


async def after_ticket_change(request: Request, console: Console, signed: SignedIn, conversation_id: int) -> Response:
    """The ticket panel again (HTMX), or the page."""
    if not is_htmx(request):
        return done(request, url_of(conversation_id))
    return await fresh_panel(request, console, signed, conversation_id)
