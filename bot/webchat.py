"""The web chat: a JSON API on the dialogue engine, a Server-Sent Events stream that pushes later messages (an
agent's reply) to the open page, and a small embeddable widget page.

    POST /webchat/api/messages   {"visitor_id": "...", "text": "..."}  or  {"visitor_id": "...", "payload": "..."}
    GET  /webchat/api/messages?visitor_id=...  the chat so far (a reopened page shows it, a survey sent meanwhile)
    GET  /webchat/api/events?visitor_id=...   text/event-stream: `event: message` with a reply's JSON
    GET  /webchat                 the widget page

Agent replies (AgentReplied) and messages the bot starts (BotPushed: a survey) travel on the CRM's event bus;
every web process listens with its own consumer group (each must see every event, since any of them may hold the
visitor's open page).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from bot.engine import DialogueEngine
from bot.messages import Incoming, Reply
from bot.texts import text
from crm_store.events import AgentReplied, BotPushed, DomainEvent
from crm_store.observability import HANDLE_SECONDS, MESSAGES_IN

log = logging.getLogger(__name__)

VISITOR_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
KEEPALIVE_S = 15.0
PAGE = Path(__file__).with_name("static") / "webchat.html"


class WebchatMessage(BaseModel):
    visitor_id: str = Field(pattern=VISITOR_ID, description="The browser's own id for this visitor.")
    text: str = Field(default="", max_length=4000)
    payload: str | None = Field(default=None, max_length=200, description="A pressed button's payload.")
    message_id: str | None = Field(default=None, max_length=128, description="Makes a retried POST idempotent.")
    language: str | None = Field(default=None, max_length=16, description="The browser's language, e.g. zh-CN.")

    @model_validator(mode="after")
    def _something_to_say(self) -> WebchatMessage:
        if not self.text.strip() and not self.payload:
            raise ValueError("send a text or a button payload")
        return self


class WebchatHub:
    """Open pages by visitor id; pushes the agent replies meant for them."""

    def __init__(self) -> None:
        self._pages: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)

    def attach(self, bus: Any) -> None:
        bus.broadcast("webchat-push", self.on_event)

    async def on_event(self, event: DomainEvent) -> None:
        if not isinstance(event, AgentReplied | BotPushed) or event.channel != "webchat" or not event.external_id:
            return
        if isinstance(event, BotPushed):
            message = Reply.from_payload(event.text, event.payload, message_id=event.message_id).to_json()
        else:
            message = {"text": event.text, "buttons": [], "decision": "agent", "message_id": event.message_id}
        message["conversation_id"] = event.conversation_id
        for queue in list(self._pages.get(event.external_id, ())):
            queue.put_nowait(message)

    @asynccontextmanager
    async def listen(self, visitor_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pages[visitor_id].add(queue)
        try:
            yield queue
        finally:
            self._pages[visitor_id].discard(queue)
            if not self._pages[visitor_id]:
                del self._pages[visitor_id]

    def close(self) -> None:
        """End every open page's stream (the server is stopping); browsers reconnect to another process."""
        for queues in list(self._pages.values()):
            for queue in list(queues):
                queue.put_nowait(None)

    def listeners(self, visitor_id: str) -> int:
        return len(self._pages.get(visitor_id, ()))


@functools.cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def webchat_router(engine: DialogueEngine, hub: WebchatHub) -> APIRouter:
    router = APIRouter()

    @router.post("/webchat/api/messages")
    async def post_message(message: WebchatMessage) -> JSONResponse:
        incoming = Incoming("webchat", message.visitor_id, text=message.text, payload=message.payload,
                            message_id=message.message_id, language_code=message.language)
        MESSAGES_IN.labels("webchat").inc()
        started = time.perf_counter()
        try:
            outcome = await engine.handle(incoming)
        except Exception:
            log.exception("web chat: the engine failed on a message from %s", message.visitor_id)
            return JSONResponse({"error": f"{text('unavailable', 'en')} / {text('unavailable', 'zh')}"},
                                status_code=503)
        HANDLE_SECONDS.labels("webchat").observe(time.perf_counter() - started)
        return JSONResponse({
            "conversation_id": outcome.conversation_id, "language": outcome.language,
            "duplicate": outcome.duplicate, "relayed": outcome.relayed,
            "replies": [r.to_json() for r in outcome.replies],
        })

    @router.get("/webchat/api/messages")
    async def history(visitor_id: str = Query(pattern=VISITOR_ID),
                      limit: int = Query(default=50, ge=1, le=200)) -> JSONResponse:
        messages = await engine.crm.conversations.history(channel="webchat", external_id=visitor_id, limit=limit)
        return JSONResponse({"messages": [_shown(x) for x in messages]})

    @router.get("/webchat/api/events")
    async def events(visitor_id: str = Query(pattern=VISITOR_ID)) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            async with hub.listen(visitor_id) as queue:
                yield ": connected\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if message is None:  # the server is stopping
                        return
                    yield f"event: message\ndata: {json.dumps(message, ensure_ascii=False)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/webchat", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    return router


def _shown(message: Any) -> dict[str, Any]:
    """A stored message as the widget shows it: who said it, the text, and a bot message's buttons."""
    sender = "me" if message.sender == "customer" else str(message.sender)
    shown = Reply.from_payload(message.text, message.payload or {}, message_id=message.id).to_json()
    if sender != "bot":
        shown["buttons"] = []
    return {**shown, "sender": sender, "created_at": message.created_at.isoformat()}


def create_webchat_app(engine: DialogueEngine, hub: WebchatHub) -> FastAPI:
    """The web chat on its own (the demo mounts the same router beside the console)."""
    app = FastAPI(title="Kefu web chat", docs_url=None, redoc_url=None)
    app.include_router(webchat_router(engine, hub))
    return app
