"""The inbox: the tickets an agent may work, nearest SLA deadline first, in views with counts, filtered by a GET
form (every view is a bookmarkable URL), refreshed live."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from console.context import ConsoleDep
from console.live import event_stream
from console.permissions import Permission, require
from console.security import SignedIn
from console.tickets import ago, due_in, is_htmx, sees_everything, session_alive, visible_to
from console.web import render, with_security_headers
from crm_store.dto import InboxFilter
from crm_store.enums import Channel, TicketPriority, TicketStatus

router = APIRouter()

PAGE_SIZE = 50
ACTIVE = ("new", "open", "pending")
CHANNELS = tuple(c.value for c in Channel)
Worker = Annotated[SignedIn, require(Permission.TICKETS_WORK)]


@dataclass(frozen=True)
class InboxQuery:
    """The inbox's URL parameters, read leniently: an unknown value (an old bookmark) means "any"."""

    status: str = ""  # "" = the active ones (new, open, pending), or one status
    priority: str = ""
    assignee: str = "anyone"  # me | unassigned | anyone | an agent's id
    team: int | None = None
    channel: str = ""
    overdue: bool = False
    cursor: str | None = None

    @classmethod
    def parse(cls, params: QueryParams) -> InboxQuery:
        status = params.get("status", "")
        priority = params.get("priority", "")
        assignee = params.get("assignee", "anyone")
        team = params.get("team", "")
        channel = params.get("channel", "")
        return cls(
            status=status if status in set(TicketStatus) else "",
            priority=priority if priority in set(TicketPriority) else "",
            assignee=assignee if assignee in ("me", "unassigned", "anyone") or assignee.isdigit() else "anyone",
            team=int(team) if team.isdigit() else None,
            channel=channel if channel in CHANNELS else "",
            overdue=params.get("overdue") in ("1", "true", "on"),
            cursor=params.get("cursor") or None,
        )

    def view(self) -> InboxFilter:
        return InboxFilter(
            statuses=(self.status,) if self.status else ACTIVE, priorities=(self.priority,) if self.priority else (),
            assignee=self.assignee, team_id=self.team, channel=self.channel or None, overdue=self.overdue,
        )

    def params(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "status": self.status, "priority": self.priority,
            "assignee": "" if self.assignee == "anyone" else self.assignee, "team": self.team or "",
            "channel": self.channel, "overdue": "1" if self.overdue else "", "cursor": self.cursor or "",
        }
        return {key: value for key, value in values.items() if value}

    def url(self, **changes: Any) -> str:
        query = urlencode(replace(self, **changes).params())
        return f"/inbox?{query}" if query else "/inbox"

    @property
    def filtered(self) -> bool:
        """Whether a filter beyond the view tabs' own is set (the tabs then show none as current)."""
        return bool(self.priority or self.team or self.channel)


TABS = (  # (label, the view's parameters, the count's key)
    ("Mine", {"assignee": "me"}, "mine"),
    ("Unassigned", {"assignee": "unassigned"}, "unassigned"),
    ("All open", {}, "all_open"),
    ("Overdue", {"overdue": True}, "overdue"),
    ("New", {"status": "new"}, "status_new"),
    ("Open", {"status": "open"}, "status_open"),
    ("Pending", {"status": "pending"}, "status_pending"),
)


def tabs(query: InboxQuery, counts: Any) -> list[dict[str, Any]]:
    numbers = {"mine": counts.mine, "unassigned": counts.unassigned, "all_open": counts.all_open,
               "overdue": counts.overdue, **{f"status_{k}": v for k, v in counts.by_status.items()}}
    shown = []
    for label, params, key in TABS:
        tab = InboxQuery(**params)
        shown.append({"label": label, "url": tab.url(), "count": numbers.get(key, 0), "alert": key == "overdue",
                      "current": not query.filtered and replace(query, cursor=None) == tab})
    return shown


@router.get("/inbox")
async def inbox(request: Request, console: ConsoleDep, signed: Worker) -> Response:
    query = InboxQuery.parse(request.query_params)
    agent = signed.agent
    try:
        page = await console.crm.inbox.tickets(viewer_id=agent.id, view=query.view(), visible_to=visible_to(agent),
                                               limit=PAGE_SIZE, cursor=query.cursor)
    except ValueError:  # a cursor or agent id that does not parse: the first page of the same view
        query = replace(query, cursor=None, assignee="anyone" if not query.assignee.isdigit() else query.assignee)
        page = await console.crm.inbox.tickets(viewer_id=agent.id, view=query.view(), visible_to=visible_to(agent),
                                               limit=PAGE_SIZE)
    counts = await console.crm.inbox.counts(viewer_id=agent.id, visible_to=visible_to(agent))
    context = {"query": query, "page": page, "tabs": tabs(query, counts), "due_in": due_in, "ago": ago}
    if is_htmx(request) and request.headers.get("hx-target") == "inbox-live":
        return render(request, "inbox/_results.html", **context)
    agents = [a for a in await console.crm.agents.list_agents() if a.active]
    teams = await console.crm.agents.list_teams()
    return render(request, "inbox/index.html", agents=agents, teams=teams, statuses=list(TicketStatus),
                  priorities=list(TicketPriority), channels=CHANNELS, sees_all=sees_everything(agent), **context)


@router.get("/inbox/events")
async def inbox_events(request: Request, console: ConsoleDep, signed: Worker) -> Response:
    """Server-Sent Events: `ticket` when a ticket changes, `message` when a conversation gets a message."""
    return with_security_headers(event_stream(request, wanted=lambda notice: True,
                                              still_allowed=lambda: session_alive(request, console, signed)))
