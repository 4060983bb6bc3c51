"""The web chat: a JSON API on the dialogue engine, a Server-Sent Events stream that pushes later messages (an
agent's reply) to the open page, and a small embeddable widget page.

    POST /webchat/api/messages   {"visitor_id": "...", "text": "..."}  or  {"visitor_id": "...", "payload": "..."}
    GET  /webchat/api/messages?visitor_id=...  the chat so far (a reopened page shows it, a survey sent meanwhile)
    GET  /webchat/api/events?visitor_id=...   text/event-stream: `event: message` with a reply's JSON
    GET  /webchat                 the widget page

Refusals are JSON the widget shows as they are, `{"error": "<English> / <中文>"}`: 422 for invalid input (with the
field errors in `detail`), 400 for a body that is not text, 413 for a body over KEFU_BOT_WEBCHAT_MAX_BODY_BYTES, 429
(with Retry-After) for a visitor or an address posting faster than its rate (bot/webchat_limit.py); 503 when the
engine fails.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, field_validator, model_validator
from starlette.exceptions import HTTPException
from starlette.types import Scope

from bot.engine import DialogueEngine
from bot.messages import Incoming, Reply
from bot.texts import text
from bot.webchat_limit import MAX_BODY_BYTES, WebchatLimiter
from crm_store.body_limit import limit_request_bodies
from crm_store.coltypes import storable_text
from crm_store.events import AgentReplied, BotPushed, DomainEvent
from crm_store.observability import HANDLE_SECONDS, MESSAGES_IN

log = logging.getLogger(__name__)

VISITOR_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
MAX_TEXT = 4000  # characters; an agent's reply has the same limit, within Telegram's 4096
KEEPALIVE_S = 15.0
PAGE = Path(__file__).with_name("static") / "webchat.html"


class WebchatMessage(BaseModel):
    visitor_id: str = Field(pattern=VISITOR_ID, description="The browser's own id for this visitor.")
    text: str = Field(default="", max_length=MAX_TEXT)
    payload: str | None = Field(default=None, max_length=200, description="A pressed button's payload.")
    message_id: str | None = Field(default=None, max_length=128, description="Makes a retried POST idempotent.")
    language: str | None = Field(default=None, max_length=16, description="The browser's language, e.g. zh-CN.")

    @field_validator("text", "payload", "message_id", "language")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        """Text the database can store: no NUL, no lone surrogate (JSON can carry both)."""
        if value is not None and not storable_text(value):
            raise ValueError("must be text without NUL characters or unpaired surrogates")
        return value

    @field_validator("payload")
    @classmethod
    def _not_a_contact(cls, value: str | None) -> str | None:
        """A shared contact links the chat to the customer with that phone: only Telegram vouches for one (the
        user's own card); from a browser it would be anyone's number."""
        if value is not None and value.startswith("contact:"):
            raise ValueError("the web chat shares no contacts: link a membership with /link CODE")
        return value

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


def in_both(key: str, **values: object) -> str:
    """The text in English and Chinese, as the widget shows a refusal."""
    return f"{text(key, 'en', **values)} / {text(key, 'zh', **values)}"


def refusal(key: str, status_code: int, **values: object) -> JSONResponse:
    return JSONResponse({"error": in_both(key, **values)}, status_code=status_code)


def invalid_input(errors: Sequence[Any]) -> Response:
    """A 422 the widget can show: the first problem in plain words, the field errors (never the input) in detail."""
    detail = [{"field": ".".join(str(part) for part in error["loc"][1:]) or "body",
               "message": str(error["msg"]).removeprefix("Value error, ")} for error in errors]
    first = detail[0] if detail else {"field": "body", "message": "invalid"}
    if first["field"] == "text" and errors[0]["type"] == "string_too_long":
        error = in_both("webchat_too_long", limit=MAX_TEXT)
    elif "send a text or a button payload" in first["message"]:
        error = in_both("webchat_empty")
    else:
        error = in_both("webchat_invalid", problem=f"{first['field']}: {first['message']}")
    # ASCII-escaped: a message about odd input must itself always encode
    return Response(json.dumps({"error": error, "detail": detail}, ensure_ascii=True), status_code=422,
                    media_type="application/json")


class WebchatRoute(APIRoute):
    """A web chat route: invalid input is `invalid_input`'s 422, not FastAPI's raw validation dump, and a body that
    cannot be read at all a 400 the widget can show."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return invalid_input(exc.errors())
            except HTTPException as exc:
                if exc.status_code != 400:
                    raise
                return refusal("webchat_invalid", 400, problem="the body is not JSON text")  # e.g. not UTF-8

        return answer


def webchat_router(engine: DialogueEngine, hub: WebchatHub, *, limiter: WebchatLimiter | None = None) -> APIRouter:
    """The web chat's routes; `limiter`: the flood control of posted messages (None: none, as in benchmarks)."""
    router = APIRouter(route_class=WebchatRoute)

    @router.post("/webchat/api/messages")
    async def post_message(message: WebchatMessage, request: Request) -> JSONResponse:
        wait = await _admit(limiter, message.visitor_id, request)
        if wait:
            too_fast = refusal("webchat_too_fast", 429, seconds=wait)
            too_fast.headers["Retry-After"] = str(wait)
            return too_fast
        incoming = Incoming("webchat", message.visitor_id, text=message.text, payload=message.payload,
                            message_id=message.message_id, language_code=message.language)
        MESSAGES_IN.labels("webchat").inc()
        started = time.perf_counter()
        try:
            outcome = await engine.handle(incoming)
        except Exception:
            log.exception("web chat: the engine failed on a message from %s", message.visitor_id)
            return refusal("unavailable", 503)
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


async def _admit(limiter: WebchatLimiter | None, visitor_id: str, request: Request) -> int:
    """Seconds the sender must wait (0: handle the message). Flood control is no reason to refuse everyone: if its
    store (Redis) fails, the message is let through."""
    if limiter is None:
        return 0
    try:
        return await limiter.admit(visitor_id=visitor_id, address=request.client.host if request.client else None)
    except Exception:
        log.warning("web chat: the rate limiter failed; letting the message through", exc_info=True)
        return 0


def _too_large(scope: Scope, max_bytes: int) -> Response:
    return refusal("webchat_too_large", 413, kb=max_bytes // 1024)


def _shown(message: Any) -> dict[str, Any]:
    """A stored message as the widget shows it: who said it, the text, and a bot message's buttons."""
    sender = "me" if message.sender == "customer" else str(message.sender)
    shown = Reply.from_payload(message.text, message.payload or {}, message_id=message.id).to_json()
    if sender != "bot":
        shown["buttons"] = []
    return {**shown, "sender": sender, "created_at": message.created_at.isoformat()}


def install_webchat(app: FastAPI, engine: DialogueEngine, hub: WebchatHub, *, limiter: WebchatLimiter | None = None,
                    max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Add the web chat's routes to `app`, with its cap on request bodies (413 past `max_body_bytes`)."""
    app.include_router(webchat_router(engine, hub, limiter=limiter))
    limit_request_bodies(app, prefix="/webchat", max_bytes=max_body_bytes, refusal=_too_large)


def create_webchat_app(engine: DialogueEngine, hub: WebchatHub, *, limiter: WebchatLimiter | None = None,
                       max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The web chat on its own (the demo installs the same routes beside the console)."""
    app = FastAPI(title="Kefu web chat", docs_url=None, redoc_url=None)
    install_webchat(app, engine, hub, limiter=limiter, max_body_bytes=max_body_bytes)
    return app
