"""Telegram with aiogram 3: long polling or a webhook, both into the same dialogue engine.

Private chats only (groups are ignored); text, button presses (callback queries) and shared contacts go to the
engine; stickers, photos, voice and other non-text messages get a polite "text only" answer (stored like any
message); edited messages are ignored. A per-chat throttle keeps one flooding chat from eating the bot. An
agent's reply (AgentReplied on the event bus) and a message the bot starts (BotPushed: a survey) are sent to the
customer's chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from aiogram import Bot, Dispatcher, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.methods import GetUpdates
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.engine import DialogueEngine
from bot.markdown import to_telegram_html
from bot.messages import Incoming, Reply
from bot.texts import language_from_code, text
from crm_store.bus import unless_stopping
from crm_store.enums import DeliveryStatus
from crm_store.observability import (
    HANDLE_SECONDS,
    MESSAGES_IN,
    MESSAGES_OUT,
    STORE_UNAVAILABLE,
    UPDATES_STORED,
    log_context,
)
from crm_store.services.updates import StoredUpdate

log = logging.getLogger(__name__)

COMMANDS = {
    "en": [("start", "Start / welcome"), ("help", "What I can do"), ("courses", "Product courses"),
           ("human", "Talk to a person"), ("language", "English / 中文"), ("privacy", "What we store about you"),
           ("stop", "No more surveys or offers")],
    "zh": [("start", "开始"), ("help", "使用帮助"), ("courses", "产品课程"), ("human", "转人工客服"),
           ("language", "切换语言 English / 中文"), ("privacy", "我的数据"), ("stop", "不再接收问卷和推广")],
}
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CALLBACK_DATA_MAX = 64  # bytes, Telegram's limit
TEXT_LIMIT = 4096  # one message's text, in UTF-16 code units after entity parsing (Telegram's limit)
PART_LIMIT = 4000  # a longer text goes out in parts of at most this many
# Between attempts to store an update while the database is away (polling does not move its offset meanwhile).
STORE_RETRY_S = (0.2, 0.5, 1.0, 2.0)

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The update could not be stored: it must not be acknowledged (the webhook answers 503)."""


class ChatLanes:
    """One chat's updates are handled one after another, in the order they arrived; different chats at once."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        try:
            if previous is not None:
                await previous
            return await work()
        finally:
            done.set_result(None)
            if self._tails.get(key) is done:
                del self._tails[key]

    def __len__(self) -> int:
        return len(self._tails)


def chat_of(update: dict[str, Any]) -> str | None:
    """The chat an update belongs to (messages and button presses), or None."""
    for kind in ("message", "edited_message", "callback_query"):
        body = update.get(kind)
        if isinstance(body, dict):
            message = body.get("message") if kind == "callback_query" else body
            chat = (message or {}).get("chat") if isinstance(message, dict) else None
            if isinstance(chat, dict) and "id" in chat:
                return str(chat["id"])
            if kind == "callback_query" and isinstance(body.get("from"), dict):
                return str(body["from"].get("id"))
    return None


class ChatThrottle:
    """At most `limit` messages per `window_s` per chat; the rest are dropped, with one notice per window."""

    def __init__(self, limit: int = 8, window_s: float = 10.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: dict[int, deque[float]] = defaultdict(deque)
        self._warned: dict[int, float] = {}

    def allow(self, chat_id: int) -> tuple[bool, bool]:
        """(allowed, warn): warn is True the first time a chat is throttled in a window."""
        now = time.monotonic()
        seen = self._seen[chat_id]
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if len(seen) < self.limit:
            seen.append(now)
            return True, False
        warn = now - self._warned.get(chat_id, -self.window_s) > self.window_s
        if warn:
            self._warned[chat_id] = now
        return False, warn


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = PART_LIMIT) -> list[str]:
    """A text too long for one Telegram message as several, each within `limit` UTF-16 units: cut at the last
    paragraph break that fits, else a line break, else a space, else anywhere (never inside a character)."""
    parts, rest = [], text
    while utf16_len(rest) > limit:
        units, end = 0, len(rest)
        for index, char in enumerate(rest):  # the longest start of `rest` within the limit: rest[:end]
            units += 2 if ord(char) > 0xFFFF else 1
            if units > limit:
                end = index
                break
        window = rest[:end]
        cut = next((at for sep in ("\n\n", "\n", " ") if (at := window.rfind(sep)) > end // 4), end)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    parts.append(rest)
    return [part for part in parts if part.strip()] or [text]


def reply_parts(reply: Reply) -> list[Reply]:
    """The messages a reply goes out as: itself, or its text's parts (split_text) with its buttons or keyboard on
    the last. A KB answer may be 20,000 characters, an agent's 4,000 emoji are 8,000 UTF-16 units."""
    if utf16_len(reply.text) <= TEXT_LIMIT:
        return [reply]
    *first, last = split_text(reply.text)
    bare = replace(reply, buttons=(), request_contact=None, remove_keyboard=False)
    return [replace(bare, text=part) for part in first] + [replace(reply, text=last)]


def keyboard(reply: Reply) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    if reply.request_contact:
        return ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text=reply.request_contact, request_contact=True)]],
                                   resize_keyboard=True, one_time_keyboard=True)
    if reply.remove_keyboard:
        return ReplyKeyboardRemove()
    if not reply.buttons:
        return None
    buttons = [InlineKeyboardButton(text=b.label[:64], callback_data=b.payload.encode()[:CALLBACK_DATA_MAX].decode(
        errors="ignore")) for b in reply.buttons]
    # Short labels (a 0–10 scale, star ratings) share rows; anything longer gets a row of its own.
    per_row = 6 if len(buttons) > 3 and all(len(b.text) <= 5 for b in buttons) else 1
    rows = [buttons[i:i + per_row] for i in range(0, len(buttons), per_row)]
    return InlineKeyboardMarkup(inline_keyboard=rows)


class TelegramSender:
    """Sends replies to Telegram chats (a picture first, Markdown as Telegram HTML) and records on each stored
    message whether Telegram accepted it. Used by the bot for its answers and by the delivery worker."""

    def __init__(self, bot: Bot, crm: Any) -> None:
        self.bot = bot
        self.crm = crm

    async def deliver(self, chat_id: int, reply: Reply, *, reraise: bool = False, sender: str = "bot",
                      accepted: Callable[[Message], Awaitable[None]] | None = None,
                      from_part: int = 0) -> Message | None:
        """Send one reply and record the outcome; with `reraise`, a refusal is raised again (the caller retries
        later) after being recorded. `accepted` is awaited the moment Telegram has the message (its last part),
        before anything else (the delivery worker's idempotency mark: the shorter that gap, the fewer sends are in
        doubt). `from_part`: the parts before it are in the chat already (reply_parts; an interrupted send)."""
        if reply.image_url and from_part == 0:
            try:
                await self.bot.send_photo(chat_id, reply.image_url)
            except TelegramAPIError:  # a broken picture must not cost the customer the text
                log.warning("telegram: could not send the picture %s to chat %s", reply.image_url, chat_id)
        try:
            sent = await self._send_formatted(chat_id, reply, from_part=from_part)
        except TelegramAPIError:
            log.exception("telegram: could not send to chat %s", chat_id)
            MESSAGES_OUT.labels("telegram", sender, "failed").inc()
            if reply.message_id is not None:
                await self.crm.conversations.mark_delivery(message_id=reply.message_id,
                                                           status=DeliveryStatus.FAILED)
            if reraise:
                raise
            return None
        if accepted is not None:
            await accepted(sent)
        MESSAGES_OUT.labels("telegram", sender, "sent").inc()
        if reply.message_id is not None:
            await self.crm.conversations.mark_delivery(
                message_id=reply.message_id, status=DeliveryStatus.SENT, channel_message_id=str(sent.message_id))
        return sent

    async def find_sent(self, chat_id: int, reply: Reply, *, after: int, skip: set[int],
                        tries: int = 8) -> list[int]:
        """The Telegram ids of this reply's parts (reply_parts) the chat already has, in order: all of them, the
        first few (a send cut short), or none. A send in doubt (its sender died with the request on the wire),
        looked for without sending anything. The Bot API cannot list a chat's messages, but a private chat numbers
        them in order (both ways) and an edit to the very same text and buttons is refused as "not modified": each
        id above `after` not in `skip` (the chat's messages on record) is edited to the part looked for until one
        says so, then the next part is looked for after it. Other answers mean another message (the customer's:
        "can't be edited"), none ("not found"), or a picture ("no text"). An edit that goes through was a message
        of the bot's that nothing has on record; that is logged."""
        found: list[int] = []
        for part in reply_parts(reply):
            at = await self._find_part(chat_id, part, after=found[-1] if found else after, skip=skip, tries=tries)
            if at is None:
                break
            found.append(at)
        return found

    async def _find_part(self, chat_id: int, reply: Reply, *, after: int, skip: set[int], tries: int) -> int | None:
        markup = keyboard(reply)
        inline = markup if isinstance(markup, InlineKeyboardMarkup) else None
        forms = [(to_telegram_html(reply.text), "HTML"), (reply.text, None)] if reply.markdown else [(reply.text, None)]
        candidates = [n for n in range(after + 1, after + 1 + tries + len(skip)) if n not in skip][:tries]
        for candidate in candidates:
            for body, parse_mode in forms:
                try:
                    await self.bot.edit_message_text(text=body, chat_id=chat_id, message_id=candidate,
                                                     parse_mode=parse_mode, reply_markup=inline)
                except TelegramBadRequest as exc:
                    if "not modified" in str(exc):
                        return candidate
                    if "entities" in str(exc):
                        continue  # the reply went out plain (bot.telegram._send_formatted)
                    break  # another message, none, or a picture
                log.warning("telegram: looking for an unconfirmed send in chat %s, message %s turned out to be one "
                            "of the bot's with no record; it now reads as the one looked for", chat_id, candidate)
                return candidate
        return None

    async def _send_formatted(self, chat_id: int, reply: Reply, *, from_part: int = 0) -> Message:
        """The reply's parts (reply_parts) from `from_part` on, in order: the last one's message."""
        sent: Message | None = None
        for part in reply_parts(reply)[from_part:]:
            sent = await self._send_part(chat_id, part)
        assert sent is not None  # a reply has at least one part
        return sent

    async def _send_part(self, chat_id: int, reply: Reply) -> Message:
        """A Markdown reply as Telegram HTML; should Telegram refuse the markup, the plain text still goes."""
        if reply.markdown:
            try:
                return await self.bot.send_message(chat_id, to_telegram_html(reply.text), parse_mode="HTML",
                                                   reply_markup=keyboard(reply))
            except TelegramBadRequest as exc:
                if "entities" not in str(exc):
                    raise
                log.warning("telegram: the formatted text was refused (%s); sending it plain", exc)
        return await self.bot.send_message(chat_id, reply.text, reply_markup=keyboard(reply))

    async def send_text(self, chat_id: int, body: str) -> None:
        try:
            await self.bot.send_message(chat_id, body)
        except TelegramAPIError:
            log.exception("telegram: could not send to chat %s", chat_id)


class TelegramChannel:
    def __init__(self, bot: Bot, engine: DialogueEngine, *, storage: Any = None,
                 throttle: ChatThrottle | None = None, webhook_secret: str | None = None) -> None:
        self.bot = bot
        self.engine = engine
        self.sender = TelegramSender(bot, engine.crm)
        self.throttle = throttle or ChatThrottle()
        self.webhook_secret = webhook_secret
        self.dispatcher = Dispatcher(storage=storage) if storage is not None else Dispatcher()
        self.dispatcher.include_router(self._router())
        self.lanes = ChatLanes()
        self._stopping = asyncio.Event()
        self._working: set[asyncio.Task[None]] = set()

    @property
    def bot_id(self) -> str:
        return str(self.bot.id)

    # --- set-up --------------------------------------------------------------------------------------------

    async def set_commands(self) -> None:
        """The command menu in English (default) and Chinese."""
        for language, commands in COMMANDS.items():
            await self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in commands],
                                           language_code=None if language == "en" else language)

    def attach(self, bus: Any) -> None:
        """Deliver agents' replies and pushed bot messages to Telegram chats from this process (the embedded
        demo; in production `kefu worker` does it, see bot.delivery)."""
        from bot.delivery import Deliverer, LocalDelivery, MemoryMarks

        LocalDelivery(Deliverer(self.sender, MemoryMarks())).attach(bus)

    # --- incoming updates: stored first, then handled ------------------------------------------------------

    async def accept(self, update: dict[str, Any]) -> StoredUpdate:
        """Store the update (raises StoreUnavailable when the database cannot be reached: the update must not be
        acknowledged), then handle it unless it had been stored before (a redelivery)."""
        stored = await self._store(update)
        if stored.new:
            await self._handle_stored(stored)
        return stored

    async def _store(self, update: dict[str, Any]) -> StoredUpdate:
        try:
            stored = await self.engine.crm.updates.store(
                channel="telegram", bot_id=self.bot_id, update_id=int(update["update_id"]), payload=update,
                chat_id=chat_of(update))
        except (OSError, SQLAlchemyError) as exc:
            STORE_UNAVAILABLE.labels("telegram-intake").inc()
            raise StoreUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        UPDATES_STORED.labels("telegram", "new" if stored.new else "duplicate").inc()
        return stored

    async def _handle_stored(self, stored: StoredUpdate) -> None:
        """Handle a stored update in its chat's lane; marked handled when done, or left for the redrive."""
        crm = self.engine.crm
        lane = chat_of(stored.payload) or f"update:{stored.update_id}"
        try:
            await self.lanes.run(lane, lambda: self.dispatcher.feed_raw_update(self.bot, stored.payload))
        except Exception as exc:
            log.warning("telegram: update %s not handled (%s); it will be handled again", stored.update_id, exc)
            with contextlib.suppress(Exception):
                await crm.updates.failed(stored_id=stored.id, error=repr(exc))
            return
        try:
            await crm.updates.handled(stored_id=stored.id)
        except Exception:  # handled, but not marked: the redrive finds it a duplicate and does nothing
            log.warning("telegram: update %s handled but not marked", stored.update_id, exc_info=True)

    async def redrive(self, *, lease: timedelta, every_s: float = 10.0) -> None:
        """Until stopped: handle stored updates a process claimed but never finished (it died, or the database
        went away mid-way)."""
        while not self._stopping.is_set():
            try:
                due = await self.engine.crm.updates.claim_due(channel="telegram", bot_id=self.bot_id, lease=lease)
            except Exception:
                log.warning("telegram: cannot look for unhandled updates", exc_info=True)
                due = []
            for stored in due:
                # The id only: the payload is the customer's message, which stays out of the log.
                log.info("telegram: handling update %s again", stored.update_id)
                await self._handle_stored(stored)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=every_s)

    # --- long polling ----------------------------------------------------------------------------------------

    async def start_polling(self, *, polling_timeout: int = 25, **_: Any) -> None:
        """Long polling until stop_polling(): each update is stored before the offset moves past it (while the
        database is away the same updates are fetched again), then handled in its chat's lane."""
        self._stopping.clear()
        allowed = self.dispatcher.resolve_used_update_types()
        offset: int | None = None
        backoff = 0.5
        while not self._stopping.is_set():
            request = GetUpdates(offset=offset, timeout=polling_timeout, allowed_updates=allowed)
            try:
                updates = await self._unless_stopping(self.bot(request))
            except TelegramAPIError as exc:  # network trouble or a Telegram error: wait a little
                log.warning("telegram: getUpdates failed (%s); retrying in %.1fs", exc, backoff)
                await self._unless_stopping(asyncio.sleep(backoff))
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            for parsed in updates or []:
                raw = parsed.model_dump(mode="json", exclude_none=True, by_alias=True)
                stored = await self._store_patiently(raw)
                if stored is None:
                    break  # stopping: the offset stays, the next poll gets it again
                offset = parsed.update_id + 1
                if stored.new:
                    self._spawn(self._handle_stored(stored))
        await self._finish_work()

    async def stop_polling(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Stop polling / the redrive and wait for the updates being handled (graceful shutdown)."""
        self._stopping.set()
        await self._finish_work()

    async def _store_patiently(self, update: dict[str, Any]) -> StoredUpdate | None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                return await self._store(update)
            except StoreUnavailable as exc:
                delay = STORE_RETRY_S[min(attempt, len(STORE_RETRY_S) - 1)]
                log.warning("telegram: cannot store update %s (%s); the offset waits, retrying in %.1fs",
                            update.get("update_id"), exc, delay)
                attempt += 1
                await self._unless_stopping(asyncio.sleep(delay))
        return None

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._working.add(task)
        task.add_done_callback(self._working.discard)

    async def _finish_work(self, timeout_s: float = 20.0) -> None:
        if self._working:
            _, late = await asyncio.wait(set(self._working), timeout=timeout_s)
            for task in late:
                task.cancel()

    async def _unless_stopping(self, work: Any) -> Any:
        return await unless_stopping(work, self._stopping)

    # --- webhook -------------------------------------------------------------------------------------------

    def secret_ok(self, header: str | None) -> bool:
        if not self.webhook_secret:
            return True
        return header is not None and hmac.compare_digest(header.encode(), self.webhook_secret.encode())

    def validate(self, update: dict[str, Any]) -> None:
        """Raise pydantic's ValidationError when the body is not a Telegram Update."""
        Update.model_validate(update, context={"bot": self.bot})

    # --- handlers ------------------------------------------------------------------------------------------

    def _router(self) -> Router:
        router = Router(name="kefu")
        private = F.chat.type == ChatType.PRIVATE
        router.message.register(self.on_message, private)
        router.callback_query.register(self.on_callback)
        # Groups, channels and edited messages: not for the bot (registered so they are not "unhandled").
        router.message.register(self.ignore)
        router.edited_message.register(self.ignore)
        return router

    async def ignore(self, event: Any) -> None:
        return None

    async def on_message(self, message: Message) -> None:
        chat_id = message.chat.id
        allowed, warn = self.throttle.allow(chat_id)
        user = message.from_user
        language_code = user.language_code if user else None
        body, contact = message.text or "", None  # sticker, photo, voice...: the engine answers "text only"
        if message.text is None and message.contact is not None:
            # Shared with the "share my phone" button: only the user's own contact counts (linking comes later).
            own = user is not None and message.contact.user_id == user.id
            contact = message.contact.phone_number if own else "other"
        incoming = Incoming(
            "telegram", str(chat_id), text=body, message_id=str(message.message_id),
            display_name=(user.full_name if user else "") or "", language_code=language_code, shared_contact=contact,
        )
        if not allowed:  # stored, not answered
            MESSAGES_IN.labels("telegram").inc()
            await self.engine.record_only(incoming)
            if warn:
                await self._send_text(chat_id, text("slow_down", language_from_code(language_code) or "en"))
            return
        await self._handle(chat_id, incoming)

    async def on_callback(self, query: CallbackQuery) -> None:
        await query.answer()  # stop the button's spinner at once
        message = query.message
        if message is None or query.data is None or message.chat.type != ChatType.PRIVATE:
            return
        chat_id = message.chat.id
        incoming = Incoming("telegram", str(chat_id), payload=query.data, message_id=f"cb:{query.id}",
                            display_name=query.from_user.full_name or "",
                            language_code=query.from_user.language_code)
        await self._handle(chat_id, incoming)

    async def _handle(self, chat_id: int, incoming: Incoming) -> None:
        MESSAGES_IN.labels("telegram").inc()
        started = time.perf_counter()
        try:
            outcome = await self.engine.handle(incoming)
        except Exception:
            log.exception("telegram: the engine failed on chat %s", chat_id)
            language = "zh" if (incoming.language_code or "").startswith("zh") else "en"
            await self._send_text(chat_id, text("unavailable", language))
            raise  # the stored update stays unhandled: the redrive takes it up again
        with log_context(conversation_id=outcome.conversation_id):
            for reply in outcome.replies:
                await self._deliver(chat_id, reply)
        HANDLE_SECONDS.labels("telegram").observe(time.perf_counter() - started)

    async def _deliver(self, chat_id: int, reply: Reply, *, reraise: bool = False) -> None:
        await self.sender.deliver(chat_id, reply, reraise=reraise)

    async def _send_text(self, chat_id: int, body: str) -> None:
        await self.sender.send_text(chat_id, body)


def telegram_webhook_router(channel: TelegramChannel, path: str = "/telegram/webhook") -> APIRouter:
    """FastAPI route for Telegram's webhook: Telegram's secret-token header checked, the update handled before
    the answer (a non-2xx answer makes Telegram deliver it again)."""
    router = APIRouter()

    @router.post(path)
    async def webhook(request: Request) -> JSONResponse:
        if not channel.secret_ok(request.headers.get(SECRET_HEADER)):
            return JSONResponse({"error": "bad secret token"}, status_code=401)
        try:
            update = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return JSONResponse({"error": "not a Telegram update"}, status_code=400)
        try:
            channel.validate(update)
        except ValidationError as exc:
            return JSONResponse({"error": f"not a valid Telegram update: {exc.error_count()} error(s)"},
                                status_code=400)
        try:
            await channel.accept(update)
        except StoreUnavailable:
            # Not stored, so not acknowledged: Telegram delivers it again.
            return JSONResponse({"error": "temporarily unavailable; deliver again"}, status_code=503)
        return JSONResponse({"ok": True})

    return router


def webhook_path(secret: str | None = None) -> str:
    """The webhook's URL path: unguessable when a secret is set (besides the secret-token header)."""
    return f"/telegram/webhook/{uuid.uuid5(uuid.NAMESPACE_URL, secret).hex}" if secret else "/telegram/webhook"
