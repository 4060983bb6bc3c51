"""What the inbox and the conversation view share: who may see a ticket, SLA times in words, the answers an
HTMX request gets."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request
from fastapi.responses import Response

from console.context import Console
from console.permissions import Permission, allows
from console.security import Forbidden, LoginRequired, SignedIn, current_agent
from console.web import redirect, render, with_security_headers
from crm_store.coltypes import utcnow
from crm_store.dto import AgentView, ConversationPage
from crm_store.errors import NotFound


class Missing(Exception):
    """A ticket or conversation that does not exist: a 404 page (or a short text for HTMX)."""

    def __init__(self, message: str = "There is no such conversation.") -> None:
        super().__init__(message)
        self.message = message


def sees_everything(agent: AgentView) -> bool:
    return allows(agent.role, Permission.TICKETS_VIEW_ALL)


def visible_to(agent: AgentView) -> int | None:
    """The inbox's `visible_to` for this agent: their id when they see only their own, their team's and the
    unassigned tickets; None when they see all."""
    return None if sees_everything(agent) else agent.id


def may_see(agent: AgentView, page: ConversationPage) -> bool:
    """The inbox's rule, for one conversation: its ticket (or, without one, the conversation) is the agent's,
    their team's, or nobody's."""
    if sees_everything(agent):
        return True
    holder = page.ticket or page.conversation
    return holder.assignee_id in (None, agent.id) or (agent.team_id is not None and holder.team_id == agent.team_id)


async def load_visible(console: Console, signed: SignedIn, conversation_id: int, *, limit: int = 1,
                       before_id: int | None = None) -> ConversationPage:
    """The conversation page, if it exists (else Missing) and the agent may see it (else Forbidden)."""
    try:
        page = await console.crm.inbox.conversation_page(conversation_id=conversation_id, limit=limit,
                                                         before_id=before_id)
    except NotFound:
        raise Missing() from None
    if not may_see(signed.agent, page):
        raise Forbidden("This conversation belongs to another agent's team.")
    return page


async def session_alive(request: Request, console: Console, signed: SignedIn) -> bool:
    """Whether the session that opened a live stream is still the request's, and live (not signed out)."""
    try:
        return (await current_agent(request, console)).session_id == signed.session_id
    except LoginRequired:
        return False


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def problem(request: Request, message: str, *, status_code: int = 400, back: str = "/inbox") -> Response:
    """A refused action: a short text for HTMX (the page shows it in its alert line), else an error page."""
    if is_htmx(request):
        return with_security_headers(Response(message, status_code=status_code, media_type="text/plain"))
    return render(request, "error.html", status_code=status_code, title="That did not work", message=message,
                  back=back)


def done(request: Request, url: str, fragment: Response | None = None) -> Response:
    """After an action: the fragment for HTMX, else see the page again."""
    return fragment if is_htmx(request) and fragment is not None else redirect(url)


async def missing_page(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, Missing) else "Not found."
    return problem(request, message, status_code=404)


# --- times, as an agent reads them ---------------------------------------------------------------------------------


def span(seconds: float) -> str:
    """A duration in the largest unit that reads well: "45 s" never, "1 min", "12 min", "2 h 10 min", "3 d"."""
    minutes = max(1, int(seconds // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 10:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} d"


def due_in(due: datetime | None, now: datetime | None = None) -> tuple[str, str]:
    """("in 2 h" | "12 min overdue" | "no SLA", state): state is overdue, soon (within the hour), ok or none."""
    if due is None:
        return "no SLA", "none"
    seconds = (due - (now or utcnow())).total_seconds()
    if seconds < 0:
        return f"{span(-seconds)} overdue", "overdue"
    return f"in {span(seconds)}", "soon" if seconds < 3600 else "ok"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return ""
    seconds = ((now or utcnow()) - moment).total_seconds()
    return "just now" if seconds < 60 else f"{span(seconds)} ago"
