"""A fake Telegram Bot API server on 127.0.0.1, for running aiogram 3's real polling loop and webhook handling.

Telegram's servers cannot be reached from the test machines, so the end-to-end tests point aiogram at this server::

    async with FakeTelegram() as tg:
        bot = tg.bot()                      # aiogram.Bot whose AiohttpSession talks to the fake
        task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
        tg.user_message(42, "hello")        # queue an update, as a user writing to the bot
        [reply] = await tg.wait_for_messages(42, 1)
        assert reply["text"] == "hello"
        await dp.stop_polling()

It speaks the Bot API as aiogram sends it: ``POST /bot{token}/{method}`` with multipart form data (objects such as
``reply_markup`` JSON-encoded, numbers and booleans as strings), or JSON, urlencoded and GET requests as other clients
send them; every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``
with the HTTP status equal to ``error_code`` (aiogram picks its exception class from the HTTP status).

Where the real Telegram refuses a request, so does the fake, with Telegram's wording, so the bugs it catches are
real ones: an empty text, HTML with an unknown or unclosed tag, MarkdownV2 with an unescaped ``.``, callback data over
64 bytes, editing a message into the same content, answering a callback query twice, ``getUpdates`` while a webhook is
set, a second concurrent ``getUpdates`` (the older one gets 409), a webhook URL that is not HTTPS on 443/80/88/8443.
Updates of a type outside the last ``allowed_updates`` are dropped (aiogram sends the types its handlers use), as
Telegram does; see ``FakeTelegram.filtered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import itertools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import ClientError, ClientSession, ClientTimeout, MultipartReader, web
from aiohttp.web_request import FileField

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.client.telegram import TelegramAPIServer

__all__ = ["DEFAULT_TOKEN", "Call", "FakeTelegram", "TelegramError"]

DEFAULT_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"

# Update types delivered when allowed_updates is empty or was never given (Telegram's default).
_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Parameters whose form value is JSON (objects and arrays), decoded on arrival.
_JSON_FIELDS = frozenset(
    "reply_markup entities caption_entities link_preview_options reply_parameters allowed_updates "
    "commands scope media results options menu_button rights permissions reaction "
    "suggested_post_parameters".split()
)
# Parameters that stay strings whatever they look like (a text "123" is not a number).
_STRING_FIELDS = frozenset(
    "text caption title description short_description name query data emoji phone_number first_name "
    "last_name address question explanation url secret_token ip_address action parse_mode language_code "
    "callback_query_id inline_message_id message_effect_id business_connection_id photo document voice "
    "audio video sticker animation thumbnail certificate file_id custom_emoji_id payload currency "
    "start_parameter next_offset".split()
)
_INT_RE = re.compile(r"-?\d+")
_TOKEN_RE = re.compile(r"^(\d+):[\w-]+$")
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_CHAT_ACTIONS = frozenset(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
    "choose_sticker find_location record_video_note upload_video_note".split()
)
_WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)
_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
# The HTTP request being answered (None for a webhook reply): a long poll whose client went away stops taking updates.
_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar("fake_telegram_request", default=None)


class TelegramError(Exception):
    """An error answer: raised inside a method handler, sent as ``{"ok": false, ...}`` with HTTP status = code."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {description}")


@dataclass
class Call:
    """One Bot API request the bot made: method (canonical camelCase), parsed params, and the answer."""

    method: str
    params: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None = None
    token: str = ""
    via_webhook_reply: bool = False
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Queued:
    update: dict[str, Any]
    forced: bool = False  # a redelivery: handed out once whatever the offset

    @property
    def update_id(self) -> int:
        return int(self.update["update_id"])


def _update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


def _webhook_lane(update: dict[str, Any]) -> str:
    """What a webhook keeps in order: the update's chat (a button press: its message's chat), else its user; an
    update with neither is alone."""
    body = update.get(_update_type(update))
    if isinstance(body, dict):
        message = body if "chat" in body else body.get("message")
        chat = message.get("chat") if isinstance(message, dict) else None
        if isinstance(chat, dict) and "id" in chat:
            return f"chat:{chat['id']}"
        sender = body.get("from") or body.get("user")
        if isinstance(sender, dict) and "id" in sender:
            return f"user:{sender['id']}"
    return f"update:{update.get('update_id')}"


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- parse_mode checks (the errors Telegram gives for malformed HTML / MarkdownV2) ---------------------------------

_HTML_TAGS = frozenset(
    "b strong i em u ins s strike del span tg-spoiler a tg-emoji code pre blockquote tg-time".split()
)
_HTML_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)?([^<>]*)>")
_HTML_ENTITY_RE = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9A-Fa-f]+);")


def _html_plain_text(text: str) -> str:
    """Check Telegram-HTML markup; return the visible text. Raises TelegramError as Telegram would."""

    def offset(pos: int) -> int:
        return len(text[:pos].encode("utf-8"))

    stack: list[str] = []
    plain: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "<":
            match = _HTML_TAG_RE.match(text, pos)
            if match is None:
                raise _bad(f"can't parse entities: Can't find end of the tag starting at byte offset {offset(pos)}")
            closing, name = match.group(1), (match.group(2) or "").lower()
            if not closing:
                if name not in _HTML_TAGS:
                    raise _bad(f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {offset(pos)}')
                if not match.group(3).rstrip().endswith("/"):
                    stack.append(name)
            else:
                if not stack:
                    raise _bad(f"can't parse entities: Unexpected end tag at byte offset {offset(pos)}")
                expected = stack.pop()
                if name != expected:
                    raise _bad(
                        f"can't parse entities: Unmatched end tag at byte offset {offset(pos)}, "
                        f'expected "</{expected}>", found "</{name}>"'
                    )
            pos = match.end()
        elif char == "&":
            match = _HTML_ENTITY_RE.match(text, pos)
            plain.append("x" if match else "&")
            pos = match.end() if match else pos + 1
        else:
            plain.append(char)
            pos += 1
    if stack:
        raise _bad(f'can\'t parse entities: Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(plain)


_MDV2_CODE_RE = re.compile(r"```.*?```|`(?:[^`\\]|\\.)*`", re.DOTALL)
_MDV2_LINK_TARGET_RE = re.compile(r"\]\((?:[^)\\]|\\.)*\)")
_MDV2_ALWAYS_RESERVED = frozenset(".!-+={}#()")


def _markdown_v2_plain_text(text: str) -> str:
    """A partial MarkdownV2 check: the characters that must always be escaped outside code and link targets."""
    stripped = _MDV2_LINK_TARGET_RE.sub("]", _MDV2_CODE_RE.sub("", text))
    escaped = False
    for char in stripped:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _MDV2_ALWAYS_RESERVED:
            raise _bad(
                f"can't parse entities: Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
    return re.sub(r"\\(.)", r"\1", re.sub(r"[*_~|`]", "", stripped))


def _check_formatted(text: str, parse_mode: str | None, *, limit: int, too_long: str) -> None:
    mode = (parse_mode or "").lower()
    if mode == "html":
        plain = _html_plain_text(text)
    elif mode == "markdownv2":
        plain = _markdown_v2_plain_text(text)
    else:
        plain = text
    if _utf16_len(plain) > limit:
        raise _bad(too_long)


def _check_reply_markup(markup: Any) -> None:
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad("can't parse inline keyboard button: Field \"text\" must be of type String")
                if len(button) == 1:
                    raise _bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode("utf-8")) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")
    elif "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad("field \"keyboard\" of the ReplyKeyboardMarkup should be an Array of Arrays")


# --- the server ----------------------------------------------------------------------------------------------------

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class FakeTelegram:
    """A Bot API server on 127.0.0.1 (free port), started and stopped in the caller's event loop.

    Test-side: inject updates (``user_message``, ``callback``, ``contact``, ``sticker``, ``photo``, ``voice``,
    ``edited_message``, ``group_message``, ``push``, ``redeliver``), make calls fail (``fail_next``, ``block``),
    drive webhooks (``post_webhook``), and inspect what the bot did (``sent``, ``calls``, ``messages_to``,
    ``texts_to``, ``wait_for_messages``, ``wait_for_call``, ``wait_until``, ``commands``, ``webhook``,
    ``confirmed_offset``).
    """

    def __init__(
        self,
        *,
        bot_username: str = "kefu_test_bot",
        bot_first_name: str = "Kefu Test Bot",
        max_long_poll: float = 1.0,
        strict_chats: bool = False,
        first_update_id: int = 10_001,
    ) -> None:
        """``max_long_poll`` caps getUpdates' wait (seconds) so stopping polling is quick; ``strict_chats`` makes
        sending to a chat that no injected update came from fail with "chat not found", as for a real bot."""
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.max_long_poll = max_long_poll
        self.strict_chats = strict_chats

        self.sent: list[Call] = []  # every request except getUpdates, in order (failed ones too: see Call.ok)
        self.filtered: list[dict[str, Any]] = []  # updates dropped for a type outside allowed_updates
        self.webhook: dict[str, Any] | None = None  # the last setWebhook params while one is set
        self.allowed_updates: list[str] | None = None  # as last given by getUpdates/setWebhook
        self.get_updates_calls = 0

        self._queue: list[_Queued] = []
        self._confirmed = 0
        self._update_ids = itertools.count(first_update_id)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat_id, message_id) -> Message
        self._deleted: set[tuple[int, int]] = set()
        self._keyboards: dict[tuple[int, int], dict[str, Any]] = {}  # reply keyboards / removal / force_reply sent
        self._chats: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._callback_ids: set[str] = set()
        # Webhook delivery (``deliver_to``): updates are POSTed to the bot (or bots, in turn), each chat's in
        # order, retried on non-2xx.
        self._webhook_target: tuple[tuple[str, ...], str | None] | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._webhook_pending: list[dict[str, Any]] = []
        self._sender: asyncio.Task[None] | None = None
        self.webhook_statuses: list[int] = []  # one per POST attempt; 0: no HTTP answer (see webhook_failures)
        self.webhook_failures: list[str] = []  # the connection errors and timeouts behind the 0 statuses
        self._answered_callbacks: set[str] = set()
        self._blocked: set[int] = set()
        self._failures: dict[str, list[TelegramError]] = {}
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (scope json, language) -> commands
        self._poll_generation: dict[str, int] = {}
        self._bots: list[Bot] = []
        self._last_token = DEFAULT_TOKEN
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self.port = 0

        handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
        }
        self._handlers = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # --- lifecycle -------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Wake pending long polls, close the sessions of bots made by ``bot()``, stop the server."""
        self._closing = True
        self._bump()
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        for bot in self._bots:
            await bot.session.close()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_server(self) -> TelegramAPIServer:
        from aiogram.client.telegram import TelegramAPIServer

        return TelegramAPIServer.from_base(self.base_url)

    def bot(self, token: str = DEFAULT_TOKEN, **kwargs: Any) -> Bot:
        """An ``aiogram.Bot`` whose session talks to this server (kwargs go to Bot, e.g. ``default=``).
        Its session is closed when the server closes, if nothing closed it before."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession

        bot = Bot(token, session=AiohttpSession(api=self.api_server), **kwargs)
        self._bots.append(bot)
        self._last_token = token
        return bot

    # --- failure injection -----------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` (any case) answer an error instead of running.

        429 answers "Too Many Requests: retry after N" with ``parameters.retry_after`` (default 2), which aiogram
        raises as TelegramRetryAfter; other codes answer ``description`` (a Telegram-like default per code)."""
        if error_code == 429:
            retry_after = 2 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        else:
            defaults = {
                400: "Bad Request: simulated failure",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                404: "Not Found",
                409: _CONFLICT,
                500: "Internal Server Error",
                502: "Bad Gateway",
            }
            description = description or defaults.get(error_code, f"Error {error_code}")
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        error = TelegramError(error_code, description, parameters)
        self._failures.setdefault(method.lower(), []).extend(error for _ in range(times))

    def block(self, chat_id: int) -> None:
        """The user of this private chat blocked the bot: sending to it answers 403."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    # --- update injection ------------------------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue any update (``update_id`` is assigned when missing); returns it."""
        if "update_id" not in update:
            update = {"update_id": next(self._update_ids), **update}
        self._learn(update)
        self._queue.append(_Queued(update))
        self._bump()
        if self._outbox is not None:
            self._outbox.put_nowait(update)
        return update

    def redeliver(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue the same update (same ``update_id``) again, handed out once whatever the offset: as Telegram
        resends an update the bot did not confirm (a crash, or a webhook answering non-2xx)."""
        for queued in self._queue:
            if queued.update_id == update["update_id"]:
                queued.forced = True
                break
        else:
            self._queue.append(_Queued(copy.deepcopy(update), forced=True))
        self._bump()
        if self._outbox is not None:
            self._outbox.put_nowait(copy.deepcopy(update))
        return update

    def user_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str = "Anna",
        language_code: str | None = "en",
        chat_type: str = "private",
        username: str | None = None,
    ) -> dict[str, Any]:
        """A user writes ``text`` (a leading /command gets its bot_command entity, as Telegram adds it)."""
        user = self._user(chat_id, user_id, chat_type, first_name=first_name, language_code=language_code,
                          username=username)
        message = self._new_message(chat_id, user, chat_type=chat_type, text=text)
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
        return self.push({"message": message})

    def group_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int = 777_000_001,
        first_name: str = "Anna",
        language_code: str | None = "en",
        chat_type: str = "group",
    ) -> dict[str, Any]:
        """A message in a group (use a negative ``chat_id``; ``chat_type`` "supergroup" for -100… ids)."""
        return self.user_message(
            chat_id, text, user_id=user_id, first_name=first_name, language_code=language_code, chat_type=chat_type
        )

    def callback(
        self, chat_id: int, data: str, *, message_id: int, user_id: int | None = None
    ) -> dict[str, Any]:
        """The user presses an inline button with ``callback_data=data`` under message ``message_id``."""
        chat_type = self._chat_type(chat_id)
        user = self._user(chat_id, user_id, chat_type)
        message = self._messages.get((chat_id, message_id))
        if message is None:  # a message the fake never saw: make it a bot message so edits of it work
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": self._chat(chat_id),
                "from": self._bot_user(self._last_token),
                "text": "…",
            }
            self._messages[(chat_id, message_id)] = message
        query_id = str(secrets.randbits(63))
        return self.push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "message": copy.deepcopy(message),
                    "chat_instance": str(abs(chat_id) * 7919 % 10**12),
                    "data": data,
                }
            }
        )

    def contact(self, chat_id: int, phone_number: str, *, user_id: int | None = None) -> dict[str, Any]:
        """The user shares a contact: by default their own (``contact.user_id`` = the sender), or, with
        ``user_id``, someone else's (the sender stays the chat's user)."""
        chat_type = self._chat_type(chat_id)
        sender = self._user(chat_id, None, chat_type)
        contact = {
            "phone_number": phone_number,
            "first_name": sender["first_name"],
            "user_id": sender["id"] if user_id is None else user_id,
        }
        return self.push({"message": self._new_message(chat_id, sender, chat_type=chat_type, contact=contact)})

    def sticker(self, chat_id: int) -> dict[str, Any]:
        sticker = {
            "file_id": self._file_id("CAACAgIAAxkBAAI"),
            "file_unique_id": self._file_id("AgAD"),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
        }
        return self._media_message(chat_id, sticker=sticker)

    def photo(self, chat_id: int, *, caption: str | None = None) -> dict[str, Any]:
        sizes = [
            {"file_id": self._file_id("AgACAgIAAxkBAAI"), "file_unique_id": self._file_id("AQAD"), "width": w,
             "height": h, "file_size": size}
            for w, h, size in ((90, 67, 1200), (320, 240, 15000), (1280, 960, 98000))
        ]
        extra = {"caption": caption} if caption is not None else {}
        return self._media_message(chat_id, photo=sizes, **extra)

    def voice(self, chat_id: int, *, duration: int = 3) -> dict[str, Any]:
        voice = {
            "file_id": self._file_id("AwACAgIAAxkBAAI"),
            "file_unique_id": self._file_id("AgAD"),
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": 4200,
        }
        return self._media_message(chat_id, voice=voice)

    def edited_message(self, chat_id: int, text: str, *, message_id: int | None = None) -> dict[str, Any]:
        """The user edits a text message of theirs (by default their last one in the chat) to ``text``."""
        chat_type = self._chat_type(chat_id)
        user = self._user(chat_id, None, chat_type)
        if message_id is None:
            mine = [
                m
                for (c, _), m in self._messages.items()
                if c == chat_id and m["from"]["id"] == user["id"] and "text" in m
            ]
            message_id = mine[-1]["message_id"] if mine else self._next_message_id(chat_id)
        original = self._messages.get((chat_id, message_id))
        message = copy.deepcopy(original) if original else {
            "message_id": message_id,
            "date": int(time.time()) - 60,
            "chat": self._chat(chat_id, chat_type),
            "from": user,
        }
        message.pop("entities", None)
        message["text"] = text
        message["edit_date"] = int(time.time())
        self._messages[(chat_id, message_id)] = message
        return self.push({"edited_message": copy.deepcopy(message)})

    # --- webhook mode ----------------------------------------------------------------------------------------------

    def deliver_to(self, url: str | Sequence[str], secret_token: str | None = None, *, retry_delay: float = 0.2,
                   attempts: int = 20, max_connections: int = 1) -> None:
        """From now on, POST every injected update to the webhook ``url`` as Telegram does, again after a non-2xx
        answer or a connection error (up to ``attempts`` times); the HTTP statuses are kept in
        ``webhook_statuses``.

        ``url`` may be a list: several bot processes behind a load balancer, each request (retries too) going
        to the next one in turn. Up to ``max_connections`` POSTs are in flight at once (setWebhook's
        ``max_connections``; 1: one at a time, in order), but never two of one chat: a chat's next update is
        posted only after its previous one got a 2xx answer or ran out of attempts. Updates without a chat
        (inline queries, polls...) have no such order."""
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("deliver_to needs at least one URL")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self._sender is not None:  # a new target replaces the old one (what is still queued goes to it)
            self._sender.cancel()
        self._webhook_target = (tuple(urls), secret_token)
        self._outbox = outbox = asyncio.Queue()
        for queued in self._queue:  # anything already waiting goes first
            outbox.put_nowait(queued.update)
        turns = itertools.cycle(urls)
        in_flight: set[str] = set()  # chats with a POST in flight
        pending: list[dict[str, Any]] = []  # arrived, not posted yet, in arrival order
        self._webhook_pending = pending

        async def post_until_accepted(update: dict[str, Any]) -> None:
            for _ in range(attempts):
                target = next(turns)
                try:
                    status = await self.post_webhook(target, update, secret_token)
                except (OSError, TimeoutError, ClientError) as exc:
                    status = 0
                    self.webhook_failures.append(f"update {update.get('update_id')} to {target}: {exc!r}")
                self.webhook_statuses.append(status)
                if 200 <= status < 300:
                    return
                await asyncio.sleep(retry_delay)

        async def send_forever() -> None:
            running: dict[asyncio.Task[None], str] = {}
            arrival: asyncio.Future[dict[str, Any]] | None = None
            try:
                while True:
                    while not outbox.empty():
                        pending.append(outbox.get_nowait())
                    # The oldest update of a chat with nothing in flight goes next (with one connection: the
                    # oldest update, so the order is the arrival order).
                    index = 0
                    while len(running) < max_connections and index < len(pending):
                        lane = _webhook_lane(pending[index])
                        if lane in in_flight:
                            index += 1
                            continue
                        update = pending.pop(index)
                        in_flight.add(lane)
                        running[asyncio.create_task(post_until_accepted(update))] = lane
                    if arrival is None:
                        arrival = asyncio.ensure_future(outbox.get())
                    done, _ = await asyncio.wait({arrival, *running}, return_when=asyncio.FIRST_COMPLETED)
                    if arrival in done:
                        pending.append(arrival.result())
                        arrival = None
                    for task in [task for task in done if task in running]:
                        in_flight.discard(running.pop(task))
                        task.result()  # a failure other than the bot's answer or the network: not hidden
            finally:
                for task in [*running, *([arrival] if arrival is not None else [])]:
                    task.cancel()
                await asyncio.gather(*running, *([arrival] if arrival is not None else []), return_exceptions=True)

        self._sender = asyncio.create_task(send_forever(), name="fake-telegram-webhook")

    @property
    def webhook_backlog(self) -> int:
        """Updates waiting to be POSTed to the webhook (not counting those in flight)."""
        waiting = self._outbox.qsize() if self._outbox is not None else 0
        return waiting + len(self._webhook_pending)

    async def post_webhook(self, url: str, update: dict[str, Any], secret_token: str | None = None) -> int:
        """POST ``update`` to the bot's webhook ``url`` as Telegram does (JSON body, the secret in
        ``X-Telegram-Bot-Api-Secret-Token`` when given); returns the HTTP status.

        A 2xx answer confirms the update (it leaves the getUpdates queue); a method in the answer (aiogram's
        "webhook reply") is executed as Telegram executes it, and recorded with ``via_webhook_reply``."""
        if self._client is None:
            self._client = ClientSession(timeout=ClientTimeout(total=60))
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret_token} if secret_token is not None else {}
        async with self._client.post(url, json=update, headers=headers) as resp:
            status = resp.status
            reply: dict[str, Any] = {}
            if 200 <= status < 300:
                content_type = resp.headers.get("Content-Type", "")
                if content_type.startswith("multipart/"):
                    reader = MultipartReader.from_response(resp)
                    while (part := await reader.next()) is not None:
                        reply[part.name or ""] = await part.text()  # type: ignore[union-attr]
                elif "json" in content_type:
                    body = await resp.json()
                    reply = body if isinstance(body, dict) else {}
        if 200 <= status < 300:
            self._queue = [q for q in self._queue if q.update.get("update_id") != update.get("update_id")]
            if method := reply.pop("method", None):
                token = self.webhook["token"] if self.webhook else self._last_token
                params = {key: self._decode_field(key, value) for key, value in reply.items()}
                await self._dispatch(token, str(method), params, via_webhook_reply=True)
        return status

    # --- inspection ------------------------------------------------------------------------------------------------

    @property
    def confirmed_offset(self) -> int:
        """The highest ``offset`` getUpdates was called with (updates below it are confirmed); 0 before any."""
        return self._confirmed

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return [q.update for q in self._queue]

    def calls(self, method: str) -> list[Call]:
        """Recorded calls of ``method`` (any case), failed ones included."""
        return [call for call in self.sent if call.method.lower() == method.lower()]

    def messages_to(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's messages in the chat, oldest first, as they are now (edits applied, deleted ones left out):
        Message dicts with ``text`` (or ``caption``), ``reply_markup`` (parsed), ``message_id``...

        ``reply_markup`` is also set for a reply keyboard (``{"keyboard": ...}``, e.g. a request_contact button),
        ``remove_keyboard`` or ``force_reply``, which Telegram leaves out of the Message it returns."""
        messages = []
        for key, message in self._messages.items():
            if key[0] == chat_id and message["from"].get("is_bot") and key not in self._deleted:
                message = copy.deepcopy(message)
                if key in self._keyboards:
                    message["reply_markup"] = copy.deepcopy(self._keyboards[key])
                messages.append(message)
        return messages

    def texts_to(self, chat_id: int) -> list[str]:
        return [m.get("text", m.get("caption", "")) for m in self.messages_to(chat_id)]

    @property
    def commands(self) -> dict[str, list[dict[str, Any]]]:
        """setMyCommands for the default scope, by language_code ("" for all languages)."""
        default = json.dumps({"type": "default"}, sort_keys=True)
        return {lang: copy.deepcopy(cmds) for (scope, lang), cmds in self._commands.items() if scope == default}

    def commands_for(self, language_code: str = "", scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy(self._commands.get((self._scope_key(scope), language_code), []))

    async def wait_for_messages(
        self,
        chat_id: int,
        count: int,
        timeout: float = 10,  # noqa: ASYNC109 - a deadline for the bot under test, not a cancellation scope
    ) -> list[dict[str, Any]]:
        """Wait until the bot has sent at least ``count`` messages to the chat; return them all. On timeout raise
        AssertionError listing what it did send, and its failed calls."""
        await self._wait_until(lambda: len(self.messages_to(chat_id)) >= count, timeout)
        messages = self.messages_to(chat_id)
        if len(messages) < count:
            failed = [f"{c.method}: {c.error['description']}" for c in self.sent if c.error]  # type: ignore[index]
            raise AssertionError(
                f"the bot sent {len(messages)} message(s) to chat {chat_id} within {timeout}s, expected {count}: "
                f"{self.texts_to(chat_id)!r}; failed calls: {failed!r}"
            )
        return messages

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:  # noqa: ASYNC109
        """Wait until ``method`` was called at least ``count`` times; return those calls."""
        await self._wait_until(lambda: len(self.calls(method)) >= count, timeout)
        calls = self.calls(method)
        if len(calls) < count:
            seen = [c.method for c in self.sent]
            raise AssertionError(f"{method} called {len(calls)} time(s) within {timeout}s, expected {count}: {seen}")
        return calls

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 10,  # noqa: ASYNC109 - a deadline for the bot under test, not a cancellation scope
        what: str = "condition",
    ) -> None:
        """Wait until ``condition()`` holds (checked on every request to the fake, and every 50 ms for state kept
        elsewhere, such as a handler's list); raise AssertionError naming ``what`` on timeout."""
        if not await self._wait_until(condition, timeout):
            raise AssertionError(f"{what} not reached within {timeout}s")

    async def _wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
        return True

    # --- HTTP ------------------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not _TOKEN_RE.match(token):
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        try:
            params = await self._read_params(request)
        except ValueError as exc:
            return web.json_response(_bad(f"can't parse request: {exc}").payload(), status=400)
        _REQUEST.set(request)
        try:
            result = await self._dispatch(token, request.match_info["method"], params)
        except TelegramError as exc:
            return web.json_response(exc.payload(), status=exc.error_code)
        return web.json_response({"ok": True, "result": result})

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        files: dict[str, dict[str, Any]] = {}
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("JSON object expected")
            for key, value in body.items():
                params[key] = self._decode_field(key, value) if isinstance(value, str) else value
            return params
        for key, value in request.query.items():
            params[key] = self._decode_field(key, value)
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, FileField):
                    content = value.file.read()
                    files[key] = {"filename": value.filename, "content_type": value.content_type, "size": len(content)}
                else:
                    params[key] = self._decode_field(key, str(value))
        for key, value in list(params.items()):  # attach://<name> points to an uploaded part (aiogram's way)
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                params[key] = files.pop(value[9:])
        for key, upload in files.items():  # a part named after the parameter itself (other clients' way)
            params.setdefault(key, upload)
        return params

    @staticmethod
    def _decode_field(key: str, value: str) -> Any:
        if key in _JSON_FIELDS:
            try:
                return json.loads(value)
            except ValueError:
                return value
        if key in _STRING_FIELDS:
            return value
        if value in ("true", "false"):
            return value == "true"
        if _INT_RE.fullmatch(value):
            return int(value)
        if value[:1] in "{[":
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    async def _dispatch(
        self, token: str, method: str, params: dict[str, Any], *, via_webhook_reply: bool = False
    ) -> Any:
        name, handler = self._handlers.get(method.lower(), (method, None))
        record = name != "getUpdates"
        if record:
            call = Call(name, params, token=token, via_webhook_reply=via_webhook_reply)
            self.sent.append(call)
        try:
            if queued := self._failures.get(name.lower()):
                raise queued.pop(0)
            if handler is None:
                raise TelegramError(404, "Not Found: method not found")
            result = await handler(token, params)
        except TelegramError as exc:
            if record:
                call.error = exc.payload()
                self._bump()
            raise
        if record:
            call.result = result
            self._bump()
        return result

    def _bump(self) -> None:
        """Wake everything waiting for a change (long polls, wait_for_*)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # --- identities ------------------------------------------------------------------------------------------------

    def _bot_user(self, token: str) -> dict[str, Any]:
        match = _TOKEN_RE.match(token)
        return {
            "id": int(match.group(1)) if match else 0,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _chat_type(self, chat_id: int) -> str:
        if chat_id in self._chats:
            return str(self._chats[chat_id]["type"])
        if chat_id > 0:
            return "private"
        return "supergroup" if str(chat_id).startswith("-100") else "group"

    def _chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        if chat_id in self._chats:
            return copy.deepcopy(self._chats[chat_id])
        chat_type = chat_type or self._chat_type(chat_id)
        if chat_type == "private":
            user = self._users.get(chat_id)
            return {"id": chat_id, "type": "private", "first_name": user["first_name"] if user else "Anna"}
        return {"id": chat_id, "type": chat_type, "title": "Kefu test group"}

    def _user(
        self,
        chat_id: int,
        user_id: int | None,
        chat_type: str,
        *,
        first_name: str | None = None,
        language_code: str | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        if user_id is None:
            user_id = chat_id if chat_type == "private" else 777_000_001
        user = dict(self._users.get(user_id, {"id": user_id, "is_bot": False, "first_name": "Anna",
                                              "language_code": "en"}))
        if first_name is not None:
            user["first_name"] = first_name
        if language_code is not None:
            user["language_code"] = language_code
        if username is not None:
            user["username"] = username
        self._users[user_id] = user
        return copy.deepcopy(user)

    def _learn(self, update: dict[str, Any]) -> None:
        """Remember the chats, users, messages and callback ids an injected update shows."""
        body = update.get(_update_type(update))
        if not isinstance(body, dict):
            return
        if (sender := body.get("from")) and isinstance(sender, dict) and "id" in sender:
            self._users.setdefault(sender["id"], copy.deepcopy(sender))
        if _update_type(update) == "callback_query":
            self._callback_ids.add(str(body.get("id")))
            body = body.get("message") or {}
        chat = body.get("chat")
        if isinstance(chat, dict) and "id" in chat:
            self._chats.setdefault(chat["id"], copy.deepcopy(chat))
            if "message_id" in body and (chat["id"], body["message_id"]) not in self._messages:
                self._messages[(chat["id"], body["message_id"])] = copy.deepcopy(body)
                counter = self._message_ids.setdefault(chat["id"], itertools.count(1))
                self._message_ids[chat["id"]] = itertools.count(max(next(counter), body["message_id"] + 1))

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _new_message(self, chat_id: int, sender: dict[str, Any], *, chat_type: str, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chat(chat_id, chat_type),
            "from": sender,
            **content,
        }
        self._messages[(chat_id, message["message_id"])] = copy.deepcopy(message)
        return message

    def _media_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        chat_type = self._chat_type(chat_id)
        user = self._user(chat_id, None, chat_type)
        return self.push({"message": self._new_message(chat_id, user, chat_type=chat_type, **content)})

    @staticmethod
    def _file_id(prefix: str) -> str:
        return prefix + secrets.token_urlsafe(24)

    @staticmethod
    def _scope_key(scope: Any) -> str:
        return json.dumps(scope if isinstance(scope, dict) else {"type": "default"}, sort_keys=True)

    # --- methods ---------------------------------------------------------------------------------------------------

    async def _get_me(self, token: str, params: dict[str, Any]) -> Any:
        return {
            **self._bot_user(token),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, token: str, params: dict[str, Any]) -> Any:
        self.get_updates_calls += 1
        if self.webhook is not None:
            raise TelegramError(
                409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first"
            )
        if "allowed_updates" in params:
            self.allowed_updates = params["allowed_updates"] if isinstance(params["allowed_updates"], list) else None
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        self._confirm(offset)

        generation = self._poll_generation.get(token, 0) + 1  # a newer getUpdates ends an older one (409)
        self._poll_generation[token] = generation
        self._bump()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, self.max_long_poll)
        while True:
            if self._poll_generation.get(token) != generation:
                raise TelegramError(409, _CONFLICT)
            request = _REQUEST.get()
            if request is not None and (request.transport is None or request.transport.is_closing()):
                return []  # the client went away (polling stopped): hand nothing to a dead connection
            batch = self._take(limit)
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                return batch
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._confirmed = max(self._confirmed, offset)
            self._queue = [q for q in self._queue if q.forced or q.update_id >= self._confirmed]
        elif offset < 0:  # the last -offset updates; all before them are forgotten
            self._queue = [q for q in self._queue if not q.forced][offset:]
            if self._queue:
                self._confirmed = max(self._confirmed, self._queue[0].update_id)

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = _update_type(update)
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in _DEFAULT_EXCLUDED_UPDATES

    def _take(self, limit: int) -> list[dict[str, Any]]:
        kept: list[_Queued] = []
        for queued in self._queue:
            if self._allowed(queued.update):
                kept.append(queued)
            else:
                self.filtered.append(queued.update)
        self._queue = kept
        ready = sorted(
            (q for q in kept if q.forced or q.update_id >= self._confirmed), key=lambda q: q.update_id
        )[:limit]
        for queued in ready:
            queued.forced = False
        return [copy.deepcopy(q.update) for q in ready]

    async def _set_webhook(self, token: str, params: dict[str, Any]) -> Any:
        url = params.get("url") or ""
        if not url:
            return await self._delete_webhook(token, params)
        match = re.match(r"^https://[^/:]+(?::(\d+))?(/|$)", url)
        if not match:
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if match.group(1) and int(match.group(1)) not in _WEBHOOK_PORTS:
            raise _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_RE.match(str(secret)):
            raise _bad("secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._queue.clear()
        if "allowed_updates" in params:
            self.allowed_updates = params["allowed_updates"] if isinstance(params["allowed_updates"], list) else None
        self.webhook = {**params, "token": token}
        self._bump()
        return True

    async def _delete_webhook(self, token: str, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self._queue.clear()
        self.webhook = None
        self._bump()
        return True

    async def _get_webhook_info(self, token: str, params: dict[str, Any]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self.webhook:
            info["max_connections"] = int(self.webhook.get("max_connections") or 40)
            info["ip_address"] = "149.154.167.220"
            if self.allowed_updates:
                info["allowed_updates"] = self.allowed_updates
        return info

    async def _set_my_commands(self, token: str, params: dict[str, Any]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("parameter \"commands\" is required")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not isinstance(command, dict) or not _COMMAND_RE.match(str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        language = str(params.get("language_code") or "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad("invalid language code specified")
        self._commands[(self._scope_key(params.get("scope")), language)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _get_my_commands(self, token: str, params: dict[str, Any]) -> Any:
        return self.commands_for(str(params.get("language_code") or ""), params.get("scope"))

    async def _delete_my_commands(self, token: str, params: dict[str, Any]) -> Any:
        self._commands.pop((self._scope_key(params.get("scope")), str(params.get("language_code") or "")), None)
        return True

    def _target_chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, str):  # @channelusername: no such chats here
            raise _bad("chat not found")
        if self.strict_chats and chat_id not in self._chats:
            raise _bad("chat not found")
        if chat_id in self._blocked:
            raise TelegramError(403, "Forbidden: bot was blocked by the user")
        return int(chat_id)

    def _store_bot_message(self, token: str, chat_id: int, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        _check_reply_markup(params.get("reply_markup"))
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self._bot_user(token),
            **content,
        }
        markup = params.get("reply_markup")
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup  # only inline keyboards are part of a Message
        elif markup is not None:
            self._keyboards[(chat_id, message["message_id"])] = markup
        self._messages[(chat_id, message["message_id"])] = message
        return copy.deepcopy(message)

    async def _send_message(self, token: str, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        _check_formatted(text, params.get("parse_mode"), limit=4096, too_long="message is too long")
        return self._store_bot_message(token, chat_id, params, text=text)

    def _caption(self, params: dict[str, Any]) -> dict[str, Any]:
        caption = params.get("caption")
        if not isinstance(caption, str) or not caption:
            return {}
        _check_formatted(caption, params.get("parse_mode"), limit=1024, too_long="message caption is too long")
        return {"caption": caption}

    async def _send_photo(self, token: str, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        if not params.get("photo"):
            raise _bad("there is no photo in the request")
        sizes = [
            {"file_id": self._file_id("AgACAgIAAxkDAAI"), "file_unique_id": self._file_id("AQAD"), "width": w,
             "height": h}
            for w, h in ((90, 90), (800, 800))
        ]
        return self._store_bot_message(token, chat_id, params, photo=sizes, **self._caption(params))

    async def _send_document(self, token: str, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        source = params.get("document")
        if not source:
            raise _bad("there is no document in the request")
        document: dict[str, Any] = {
            "file_id": self._file_id("BQACAgIAAxkDAAI"),
            "file_unique_id": self._file_id("AgAD"),
        }
        if isinstance(source, dict):
            document |= {"file_name": source["filename"], "mime_type": source["content_type"],
                         "file_size": source["size"]}
        return self._store_bot_message(token, chat_id, params, document=document, **self._caption(params))

    def _editable(self, params: dict[str, Any], *, missing: str = "message to edit not found") -> dict[str, Any]:
        chat_id = self._target_chat(params)
        key = (chat_id, int(params.get("message_id") or 0))
        message = self._messages.get(key)
        if message is None or key in self._deleted:
            raise _bad(missing)
        if not message["from"].get("is_bot"):
            raise _bad("message can't be edited")
        return message

    async def _edit_message_text(self, token: str, params: dict[str, Any]) -> Any:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        _check_formatted(text, params.get("parse_mode"), limit=4096, too_long="MESSAGE_TOO_LONG")
        _check_reply_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        message = self._editable(params)
        markup = params.get("reply_markup")
        if message.get("text") == text and message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED)
        message["text"] = text
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _edit_message_reply_markup(self, token: str, params: dict[str, Any]) -> Any:
        _check_reply_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        message = self._editable(params)
        markup = params.get("reply_markup") or None
        if message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED)
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _delete_message(self, token: str, params: dict[str, Any]) -> Any:
        chat_id = self._target_chat(params)
        key = (chat_id, int(params.get("message_id") or 0))
        if key not in self._messages or key in self._deleted:
            raise _bad("message to delete not found")
        self._deleted.add(key)
        return True

    async def _answer_callback_query(self, token: str, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callback_ids or query_id in self._answered_callbacks:
            raise _bad(_QUERY_INVALID)
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self._answered_callbacks.add(query_id)
        return True

    async def _send_chat_action(self, token: str, params: dict[str, Any]) -> Any:
        self._target_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True
