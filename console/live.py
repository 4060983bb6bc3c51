"""Live updates of the console: a per-process hub fed by the event bus, and the Server-Sent Events streams the
inbox and the conversation view listen to.

Every console process hears every event (the bus's broadcast: on Redis a plain XREAD, no consumer group left
behind), since each process has its own open pages to tell. A notice carries ids and
the event's name, never a message's text: the page fetches what changed through its own, permission-checked,
fragment routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from crm_store.events import (
    AgentReplied,
    BotPushed,
    BotReplied,
    DomainEvent,
    HandoffRequested,
    MessageReceived,
    NoteAdded,
    TicketResolved,
    TicketUpdated,
)

# Events the console's pages show: a new message in a transcript, or a ticket that changed (the inbox, the panel).
MESSAGE_EVENTS = (MessageReceived, BotReplied, BotPushed, AgentReplied, NoteAdded)
TICKET_EVENTS = (HandoffRequested, TicketUpdated, TicketResolved)
KEEPALIVE_S = 15.0
MAX_STREAM_S = 600.0  # a stream ends after this; the browser's EventSource reconnects (and the server can stop)
QUEUE_SIZE = 200
ASSIGNMENT_GROUP = "console-assignment"  # shared by every console process: each handoff is assigned once


@dataclass(frozen=True)
class Notice:
    """What a page learns of an event: its kind and the ids to fetch fresh fragments for."""

    kind: str  # "message" or "ticket"
    event: str
    conversation_id: int
    ticket_id: int | None = None

    def to_sse(self) -> str:
        data = {"event": self.event, "conversation_id": self.conversation_id, "ticket_id": self.ticket_id}
        return f"event: {self.kind}\ndata: {json.dumps(data)}\n\n"


def notice_of(event: DomainEvent) -> Notice | None:
    if isinstance(event, MESSAGE_EVENTS):
        return Notice("message", event.name, event.conversation_id)
    if isinstance(event, TICKET_EVENTS):
        return Notice("ticket", event.name, event.conversation_id, event.ticket_id)
    return None


class LiveHub:
    """The open console pages of this process, each with a queue of notices."""

    def __init__(self) -> None:
        self._listeners: set[asyncio.Queue[Notice | None]] = set()
        self.group = "console-live"

    def attach(self, bus: Any) -> None:
        bus.broadcast(self.group, self.on_event)

    async def on_event(self, event: DomainEvent) -> None:
        notice = notice_of(event)
        if notice is None:
            return
        for queue in list(self._listeners):
            if queue.full():  # a page that stopped reading: it refreshes everything on the next notice anyway
                continue
            queue.put_nowait(notice)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[Notice | None]]:
        queue: asyncio.Queue[Notice | None] = asyncio.Queue(QUEUE_SIZE)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def close(self) -> None:
        """End every open stream (the server is stopping)."""
        for queue in list(self._listeners):
            if not queue.full():
                queue.put_nowait(None)

    @property
    def listeners(self) -> int:
        return len(self._listeners)


def get_live(request: Request) -> LiveHub:
    return request.app.state.console_live  # type: ignore[no-any-return]


def wants_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def event_stream(
    request: Request, *, wanted: Callable[[Notice], bool], still_allowed: Callable[[], Awaitable[bool]],
    keepalive_s: float = KEEPALIVE_S, max_s: float = MAX_STREAM_S,
) -> Response:
    """text/event-stream of the notices `wanted` picks, with keepalive comments; it ends when the client goes away,
    when `still_allowed` says no (checked at each keepalive: a session signed out, a ticket moved away), when the
    hub closes, or after `max_s`. A request that does not accept an event stream gets 406 (no endless body)."""
    if not wants_event_stream(request):
        return Response("This is an event stream (Accept: text/event-stream).", status_code=406,
                        media_type="text/plain")
    hub = get_live(request)

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + max_s
        async with hub.listen() as queue:
            yield "retry: 3000\n: connected\n\n"
            while (left := ends - loop.time()) > 0:
                try:
                    notice = await asyncio.wait_for(queue.get(), timeout=min(keepalive_s, left))
                except TimeoutError:
                    if await request.is_disconnected() or not await still_allowed():
                        return
                    yield ": keepalive\n\n"
                    continue
                if notice is None:
                    return
                if wanted(notice):
                    yield notice.to_sse()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
