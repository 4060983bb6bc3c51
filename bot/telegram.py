"""Telegram with aiogram 3: long polling or a webhook, both into the same dialogue engine.

Private chats only (groups are ignored); text, button presses (callback queries) and shared contacts go to the
engine; stickers, photos, voice and other non-text messages get a polite "text only" answer (stored like any
message); edited messages are ignored. A per-chat throttle keeps one flooding chat from eating the bot. An
agent's reply (AgentReplied on the event bus) and a message the bot starts (BotPushed: a survey) are sent to the
customer's chat.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections import defaultdict, deque
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from bot.engine import DialogueEngine
from bot.markdown import to_telegram_html
from bot.messages import Incoming, Reply
from bot.texts import language_from_code, text
from crm_store.enums import DeliveryStatus
from crm_store.events import AgentReplied, BotPushed, DomainEvent

log = logging.getLogger(__name__)

COMMANDS = {
    "en": [("start", "Start / welcome"), ("help", "What I can do"), ("courses", "Product courses"),
           ("human", "Talk to a person"), ("language", "English / 中文"), ("stop", "No more surveys or offers")],
    "zh": [("start", "开始"), ("help", "使用帮助"), ("courses", "产品课程"), ("human", "转人工客服"),
           ("language", "切换语言 English / 中文"), ("stop", "不再接收问卷和推广")],
}
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CALLBACK_DATA_MAX = 64  # bytes, Telegram's limit


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


class TelegramChannel:
    def __init__(self, bot: Bot, engine: DialogueEngine, *, storage: Any = None,
                 throttle: ChatThrottle | None = None, webhook_secret: str | None = None) -> None:
        self.bot = bot
        self.engine = engine
        self.throttle = throttle or ChatThrottle()
        self.webhook_secret = webhook_secret
        self.dispatcher = Dispatcher(storage=storage) if storage is not None else Dispatcher()
        self.dispatcher.include_router(self._router())

    # --- set-up --------------------------------------------------------------------------------------------

    async def set_commands(self) -> None:
        """The command menu in English (default) and Chinese."""
        for language, commands in COMMANDS.items():
            await self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in commands],
                                           language_code=None if language == "en" else language)

    def attach(self, bus: Any) -> None:
        """Deliver agents' replies and pushed bot messages to Telegram chats (one consumer group for all bot
        processes)."""
        bus.subscribe("telegram-delivery", self.on_event)

    async def start_polling(self, **kwargs: Any) -> None:
        await self.dispatcher.start_polling(self.bot, handle_signals=False, **kwargs)

    async def stop_polling(self) -> None:
        await self.dispatcher.stop_polling()

    # --- webhook -------------------------------------------------------------------------------------------

    def secret_ok(self, header: str | None) -> bool:
        if not self.webhook_secret:
            return True
        return header is not None and hmac.compare_digest(header.encode(), self.webhook_secret.encode())

    async def feed_webhook(self, update: dict[str, Any]) -> None:
        """Handle one update received on the webhook (the caller checked the secret token)."""
        await self.dispatcher.feed_raw_update(self.bot, update)

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
        if not allowed:
            if warn:
                await self._send_text(chat_id, text("slow_down", language_from_code(language_code) or "en"))
            return
        if message.text is not None:
            body, payload = message.text, None
        elif message.contact is not None:
            # Shared with the "share my phone" button: only the user's own contact counts (linking comes later).
            own = user is not None and message.contact.user_id == user.id
            body, payload = "", f"contact:{message.contact.phone_number}" if own else "contact:other"
        else:
            body, payload = "", None  # sticker, photo, voice...: the engine answers "text only"
        incoming = Incoming(
            "telegram", str(chat_id), text=body, payload=payload, message_id=str(message.message_id),
            display_name=(user.full_name if user else "") or "", language_code=language_code,
        )
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
        try:
            outcome = await self.engine.handle(incoming)
        except Exception:
            log.exception("telegram: the engine failed on chat %s", chat_id)
            language = "zh" if (incoming.language_code or "").startswith("zh") else "en"
            await self._send_text(chat_id, text("unavailable", language))
            return
        for reply in outcome.replies:
            await self._deliver(chat_id, reply)

    async def _deliver(self, chat_id: int, reply: Reply, *, reraise: bool = False) -> None:
        """Send one reply (its picture first, if any) and record whether Telegram accepted it; with `reraise`,
        a refusal is raised again (the event bus then delivers the event again later)."""
        if reply.image_url:
            try:
                await self.bot.send_photo(chat_id, reply.image_url)
            except TelegramAPIError:  # a broken picture must not cost the customer the text
                log.warning("telegram: could not send the picture %s to chat %s", reply.image_url, chat_id)
        try:
            sent = await self._send_formatted(chat_id, reply)
        except TelegramAPIError:
            log.exception("telegram: could not send to chat %s", chat_id)
            if reply.message_id is not None:
                await self.engine.crm.conversations.mark_delivery(message_id=reply.message_id,
                                                                  status=DeliveryStatus.FAILED)
            if reraise:
                raise
            return
        if reply.message_id is not None:
            await self.engine.crm.conversations.mark_delivery(
                message_id=reply.message_id, status=DeliveryStatus.SENT, channel_message_id=str(sent.message_id))

    async def _send_formatted(self, chat_id: int, reply: Reply) -> Message:
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

    async def _send_text(self, chat_id: int, body: str) -> None:
        try:
            await self.bot.send_message(chat_id, body)
        except TelegramAPIError:
            log.exception("telegram: could not send to chat %s", chat_id)

    # --- agents' replies and pushed messages ----------------------------------------------------------------

    async def on_event(self, event: DomainEvent) -> None:
        if not isinstance(event, AgentReplied | BotPushed) or event.channel != "telegram" or not event.external_id:
            return
        if isinstance(event, BotPushed):
            reply = Reply.from_payload(event.text, event.payload, message_id=event.message_id)
        else:
            reply = Reply(event.text, message_id=event.message_id)
        await self._deliver(int(event.external_id), reply, reraise=True)


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
        if not isinstance(update, dict) or "update_id" not in update:
            return JSONResponse({"error": "not a Telegram update"}, status_code=400)
        try:
            await channel.feed_webhook(update)
        except ValidationError as exc:
            return JSONResponse({"error": f"not a valid Telegram update: {exc.error_count()} error(s)"},
                                status_code=400)
        return JSONResponse({"ok": True})

    return router


def webhook_path(secret: str | None = None) -> str:
    """The webhook's URL path: unguessable when a secret is set (besides the secret-token header)."""
    return f"/telegram/webhook/{uuid.uuid5(uuid.NAMESPACE_URL, secret).hex}" if secret else "/telegram/webhook"
