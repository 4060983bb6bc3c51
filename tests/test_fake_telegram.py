"""The fake Bot API server against REAL aiogram 3: its polling loop, its client session and its webhook handler."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import CommandStart
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@contextlib.asynccontextmanager
async def polling(tg: FakeTelegram, dp: Dispatcher, bot: Bot) -> AsyncIterator[asyncio.Task[None]]:
    """Run aiogram's real polling loop until the block ends; stopping must be quick."""
    calls_before = tg.get_updates_calls
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        # polling is live once its first getUpdates arrived
        await tg.wait_until(lambda: tg.get_updates_calls > calls_before or task.done(), what="polling started")
        assert not task.done(), task.exception()
        yield task
    finally:
        if not task.done():
            await dp.stop_polling()
        await task


def echo_dispatcher() -> Dispatcher:
    dp = Dispatcher()

    @dp.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    return dp


async def test_echo_through_real_polling(tg: FakeTelegram) -> None:
    async with polling(tg, echo_dispatcher(), tg.bot()):
        update = tg.user_message(42, "hello, 你好")
        [reply] = await tg.wait_for_messages(42, 1)

    assert reply["text"] == "hello, 你好"
    assert reply["chat"] == {"id": 42, "type": "private", "first_name": "Anna"}
    assert reply["from"]["is_bot"] is True and reply["from"]["id"] == 123456
    assert reply["message_id"] == update["message"]["message_id"] + 1  # one counter per chat, users' and bot's
    call = tg.calls("sendMessage")[0]
    assert call.ok and call.params == {"chat_id": 42, "text": "hello, 你好"}  # form strings decoded to int
    assert [c.method for c in tg.sent][:1] == ["getMe"]
    assert tg.allowed_updates == ["message"]  # aiogram sends the update types its handlers use


async def test_inline_keyboard_arrives_parsed(tg: FakeTelegram) -> None:
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text="是", callback_data="yes"),
                    InlineKeyboardButton(text="No", callback_data="no"),
                ],
                [InlineKeyboardButton(text="Site", url="https://example.com")],
            ]
        )
        await message.answer("Agree?", reply_markup=keyboard)

    async with polling(tg, dp, tg.bot()):
        update = tg.user_message(7, "/start")
        [reply] = await tg.wait_for_messages(7, 1)

    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert reply["text"] == "Agree?"
    assert reply["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "是", "callback_data": "yes"}, {"text": "No", "callback_data": "no"}],
            [{"text": "Site", "url": "https://example.com"}],
        ]
    }
    assert tg.calls("sendMessage")[0].params["reply_markup"] == reply["reply_markup"]


async def test_contact_request_keyboard_and_shared_contact(tg: FakeTelegram) -> None:
    dp = Dispatcher()
    shared: list[tuple[str, int | None, int]] = []

    @dp.message(F.text)
    async def ask_phone(message: Message) -> None:
        button = KeyboardButton(text="Share my phone", request_contact=True)
        await message.answer("Your phone?", reply_markup=ReplyKeyboardMarkup(keyboard=[[button]], resize_keyboard=True))

    @dp.message(F.contact)
    async def got_contact(message: Message) -> None:
        assert message.contact and message.from_user
        shared.append((message.contact.phone_number, message.contact.user_id, message.from_user.id))

    async with polling(tg, dp, tg.bot()):
        tg.user_message(15, "hi")
        [question] = await tg.wait_for_messages(15, 1)
        tg.contact(15, "+8613800138000")
        await tg.wait_until(lambda: len(shared) == 1, what="contact handled")

    assert question["reply_markup"] == {
        "keyboard": [[{"text": "Share my phone", "request_contact": True}]],
        "resize_keyboard": True,
    }
    assert "reply_markup" not in tg.calls("sendMessage")[0].result  # Telegram's Message carries inline ones only
    assert shared == [("+8613800138000", 15, 15)]


async def test_callback_query_reaches_handler_and_is_answered(tg: FakeTelegram) -> None:
    dp = Dispatcher()
    seen: list[tuple[str | None, int]] = []

    @dp.message(F.text)
    async def ask(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="yes")]])
        await message.answer("Agree?", reply_markup=keyboard)

    @dp.callback_query(F.data == "yes")
    async def on_yes(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        seen.append((query.data, query.message.message_id))
        await query.answer("Thanks!")
        await query.message.edit_text("Agreed ✅")

    async with polling(tg, dp, tg.bot()):
        tg.user_message(5, "hi")
        [question] = await tg.wait_for_messages(5, 1)
        update = tg.callback(5, "yes", message_id=question["message_id"])
        await tg.wait_for_call("editMessageText")

    assert seen == [("yes", question["message_id"])]
    [answer] = tg.calls("answerCallbackQuery")
    assert answer.ok and answer.params == {"callback_query_id": update["callback_query"]["id"], "text": "Thanks!"}
    assert update["callback_query"]["message"]["text"] == "Agree?"
    [edited] = tg.messages_to(5)
    assert edited["text"] == "Agreed ✅" and "reply_markup" not in edited and edited["edit_date"]


async def test_handled_updates_are_confirmed_and_not_redelivered(tg: FakeTelegram) -> None:
    dp = Dispatcher()
    handled: list[int] = []

    @dp.message()
    async def record(message: Message, event_update: Update) -> None:
        handled.append(event_update.update_id)

    async with polling(tg, dp, tg.bot()):
        first = tg.user_message(1, "one")
        second = tg.user_message(1, "two")
        # the next getUpdates confirms what polling got
        await tg.wait_until(lambda: tg.confirmed_offset > second["update_id"], what="confirmation")
        polls = tg.get_updates_calls
        await tg.wait_until(lambda: tg.get_updates_calls >= polls + 2, what="two more polls")  # nothing comes back
        assert handled == [first["update_id"], second["update_id"]]
        assert tg.confirmed_offset == second["update_id"] + 1
        assert tg.pending_updates == []

        tg.redeliver(first)  # Telegram resends an update the bot never confirmed: same update_id
        await tg.wait_until(lambda: len(handled) == 3, what="redelivery handled")
    assert handled == [first["update_id"], second["update_id"], first["update_id"]]


async def test_get_updates_offset_limit_and_short_long_poll(tg: FakeTelegram) -> None:
    bot = tg.bot()
    ids = [tg.user_message(3, f"m{i}")["update_id"] for i in range(3)]
    assert [u.update_id for u in await bot.get_updates(limit=2)] == ids[:2]
    assert [u.update_id for u in await bot.get_updates()] == ids  # nothing confirmed yet
    assert [u.update_id for u in await bot.get_updates(offset=ids[1])] == ids[1:]
    assert tg.confirmed_offset == ids[1]
    assert [u.update_id for u in await bot.get_updates(offset=-1)] == ids[2:]

    started = time.monotonic()
    assert await bot.get_updates(offset=ids[2] + 1, timeout=30) == []  # the long poll is capped at 1 s
    assert 0.8 < time.monotonic() - started < 2.5

    waiter = asyncio.create_task(bot.get_updates(offset=ids[2] + 1, timeout=30))
    await asyncio.sleep(0.1)
    late = tg.user_message(3, "late")
    assert [u.update_id for u in await waiter] == [late["update_id"]]  # a new update ends the long poll at once


async def test_retry_after_and_other_failures(tg: FakeTelegram) -> None:
    bot = tg.bot()
    tg.fail_next("sendMessage", 429, retry_after=1)
    with pytest.raises(TelegramRetryAfter) as exc_info:
        await bot.send_message(9, "hi")
    assert exc_info.value.retry_after == 1
    assert "Too Many Requests: retry after 1" in str(exc_info.value)
    assert tg.sent[-1].error == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert (await bot.send_message(9, "hi")).text == "hi"  # only the next call fails

    tg.fail_next("sendmessage", 500)
    with pytest.raises(TelegramServerError):
        await bot.send_message(9, "hi")
    tg.fail_next("SendMessage", 400, description="Bad Request: chat not found")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(9, "hi")

    tg.block(9)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(9, "hi")
    assert tg.texts_to(9) == ["hi"]


async def test_commands_are_stored_per_language_and_scope(tg: FakeTelegram) -> None:
    bot = tg.bot()
    zh = [BotCommand(command="start", description="开始"), BotCommand(command="help", description="帮助")]
    await bot.set_my_commands(zh, language_code="zh")
    await bot.set_my_commands([BotCommand(command="start", description="Start")])
    await bot.set_my_commands([BotCommand(command="agent", description="Agent")], scope=BotCommandScopeChat(chat_id=5))

    assert tg.commands == {
        "zh": [{"command": "start", "description": "开始"}, {"command": "help", "description": "帮助"}],
        "": [{"command": "start", "description": "Start"}],
    }
    assert [c.command for c in await bot.get_my_commands(language_code="zh")] == ["start", "help"]
    assert [c.command for c in await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=5))] == ["agent"]
    assert tg.commands_for(scope={"type": "chat", "chat_id": 5}) == [{"command": "agent", "description": "Agent"}]
    assert await bot.delete_my_commands(language_code="zh") is True
    assert "zh" not in tg.commands
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Command", description="x")])


async def test_stopping_polling_is_quick(tg: FakeTelegram) -> None:
    dp = echo_dispatcher()
    async with polling(tg, dp, tg.bot()) as task:
        await asyncio.sleep(0.2)  # inside a long poll
        started = time.monotonic()
        await dp.stop_polling()
        await task
        assert time.monotonic() - started < 2.0
    # a new polling loop right after gets the updates the old one left (the abandoned long poll took none)
    async with polling(tg, dp, tg.bot()):
        tg.user_message(11, "again")
        await tg.wait_for_messages(11, 1)


async def test_second_poller_ends_the_first_with_conflict(tg: FakeTelegram) -> None:
    first, second = tg.bot(), tg.bot()
    waiting = asyncio.create_task(first.get_updates(timeout=1))
    await asyncio.sleep(0.1)
    assert await second.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await waiting


async def test_webhook_secret_token(tg: FakeTelegram) -> None:
    bot = tg.bot()
    dp = echo_dispatcher()
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token="s3cret-Token_1").register(app, path="/tg/webhook")
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg/webhook"
    try:
        good = tg.user_message(21, "via webhook")
        assert await tg.post_webhook(url, good, secret_token="s3cret-Token_1") == 200
        [reply] = await tg.wait_for_messages(21, 1)
        assert reply["text"] == "via webhook"
        assert good["update_id"] not in [u["update_id"] for u in tg.pending_updates]  # a 2xx answer confirms

        bad = tg.user_message(22, "forged")
        assert await tg.post_webhook(url, bad, secret_token="wrong") in (401, 403)
        assert await tg.post_webhook(url, bad) in (401, 403)
        await asyncio.sleep(0.3)
        assert tg.messages_to(22) == []
    finally:
        await runner.cleanup()  # closes the bot's session too (setup_application's shutdown hook)


async def test_webhook_reply_is_executed(tg: FakeTelegram) -> None:
    bot = tg.bot()
    dp = Dispatcher()

    @dp.message()
    async def reply_in_webhook_answer(message: Message) -> SendMessage:
        return SendMessage(chat_id=message.chat.id, text=f"echo: {message.text}")

    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, handle_in_background=False).register(app, path="/hook")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        status = await tg.post_webhook(f"http://127.0.0.1:{runner.addresses[0][1]}/hook", tg.user_message(31, "x"))
    finally:
        await runner.cleanup()
    assert status == 200
    [call] = tg.calls("sendMessage")
    assert call.via_webhook_reply and call.params == {"chat_id": 31, "text": "echo: x"}
    assert tg.texts_to(31) == ["echo: x"]


async def test_webhook_registration(tg: FakeTelegram) -> None:
    bot = tg.bot()
    with pytest.raises(TelegramBadRequest, match="HTTPS URL must be provided"):
        await bot.set_webhook("http://kefu.example/tg")
    assert await bot.set_webhook("https://kefu.example/tg", secret_token="abc", drop_pending_updates=True)
    assert tg.webhook is not None and tg.webhook["url"] == "https://kefu.example/tg"
    assert tg.webhook["secret_token"] == "abc" and tg.webhook["drop_pending_updates"] is True
    assert (await bot.get_webhook_info()).url == "https://kefu.example/tg"
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert tg.webhook is None and (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates() == []


async def test_injected_updates_are_valid_for_aiogram(tg: FakeTelegram) -> None:
    bot = tg.bot()
    text = tg.user_message(100, "hi", first_name="Li", language_code="zh", user_id=100)
    contact = tg.contact(100, "+8613800000000")
    someone_else = tg.contact(100, "+8613900000000", user_id=555)
    media = [tg.sticker(100), tg.photo(100), tg.voice(100)]
    group = tg.group_message(-1001, "hello group")
    edited = tg.edited_message(100, "hi (edited)")
    updates = [text, contact, someone_else, *media, group, edited]
    parsed = [Update.model_validate(u, context={"bot": bot}) for u in updates]

    assert parsed[0].message and parsed[0].message.from_user and parsed[0].message.from_user.language_code == "zh"
    assert parsed[1].message and parsed[1].message.contact and parsed[1].message.contact.user_id == 100
    assert parsed[2].message and parsed[2].message.contact and parsed[2].message.contact.user_id == 555
    assert parsed[2].message.from_user and parsed[2].message.from_user.id == 100
    assert parsed[3].message and parsed[3].message.sticker
    assert parsed[4].message and parsed[4].message.photo
    assert parsed[5].message and parsed[5].message.voice
    assert parsed[6].message and parsed[6].message.chat.type == "group" and parsed[6].message.chat.id == -1001
    assert parsed[7].edited_message and parsed[7].edited_message.text == "hi (edited)"
    assert parsed[7].edited_message.message_id == text["message"]["message_id"]
    ids = [u["update_id"] for u in updates]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    message_ids = [u["message"]["message_id"] for u in updates[:6]]
    assert message_ids == list(range(message_ids[0], message_ids[0] + 6))
    callback = tg.callback(100, "menu:1", message_id=99)
    assert Update.model_validate(callback, context={"bot": bot}).callback_query


async def test_updates_outside_allowed_updates_are_dropped(tg: FakeTelegram) -> None:
    async with polling(tg, echo_dispatcher(), tg.bot()):  # only a message handler: allowed_updates ["message"]
        edit = tg.edited_message(8, "edited")
        tg.user_message(8, "plain")
        await tg.wait_for_messages(8, 1)
    assert tg.texts_to(8) == ["plain"]
    assert [u["update_id"] for u in tg.filtered] == [edit["update_id"]]


async def test_media_actions_and_edits(tg: FakeTelegram) -> None:
    bot = tg.bot()
    await bot.send_chat_action(4, "typing")
    photo = await bot.send_photo(4, BufferedInputFile(b"\x89PNG....", filename="card.png"), caption="Your card")
    document = await bot.send_document(4, BufferedInputFile(b"%PDF-1.4", filename="terms.pdf"))
    assert photo.photo and photo.caption == "Your card"
    assert document.document and document.document.file_name == "terms.pdf" and document.document.file_size == 8
    assert tg.calls("sendPhoto")[0].params["photo"] == {
        "filename": "card.png",
        "content_type": "application/octet-stream",
        "size": 8,
    }
    assert tg.calls("sendChatAction")[0].params == {"chat_id": 4, "action": "typing"}
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(4, "dancing")

    sent = await bot.send_message(4, "Pick one")
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="A", callback_data="a")]])
    edited = await bot.edit_message_reply_markup(chat_id=4, message_id=sent.message_id, reply_markup=keyboard)
    assert isinstance(edited, Message) and edited.reply_markup
    assert edited.reply_markup.inline_keyboard[0][0].callback_data == "a"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Pick one", chat_id=4, message_id=sent.message_id, reply_markup=keyboard)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=4, message_id=999)
    assert await bot.delete_message(4, sent.message_id)
    assert tg.texts_to(4) == ["Your card", ""]


async def test_telegram_refusals(tg: FakeTelegram) -> None:
    bot = tg.bot()
    await bot.send_message(2, "<b>Hi</b> &lt;Anna&gt; &amp; <a href='https://x.io'>link</a>", parse_mode="HTML")
    await bot.send_message(2, "*Hi* Anna\\. [site](https://x.io/a-b.c) `a.b`", parse_mode="MarkdownV2")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(2, "")  # aiogram leaves empty strings out of the form altogether
    with pytest.raises(TelegramBadRequest, match="Can't find end tag corresponding to start tag"):
        await bot.send_message(2, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "div"'):
        await bot.send_message(2, "<div>x</div>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="Can't find end of the tag"):
        await bot.send_message(2, "1 < 2 for <Anna", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match=r"Character '\.' is reserved"):
        await bot.send_message(2, "Order 12.5 ready", parse_mode="MarkdownV2")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(2, "x" * 4097)
    too_long = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="A", callback_data="x" * 65)]])
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(2, "hi", reply_markup=too_long)

    query = tg.callback(2, "a", message_id=1)["callback_query"]["id"]
    assert await bot.answer_callback_query(query)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query)  # a query is answered once
    assert len(tg.texts_to(2)) == 2


async def test_raw_protocol(tg: FakeTelegram) -> None:
    base = f"{tg.base_url}/bot{DEFAULT_TOKEN}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        async with http.post(f"{base}/SENDMESSAGE", json={"chat_id": 6, "text": "json body"}) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["ok"] and body["result"]["text"] == "json body"
        async with http.post(f"{base}/sendMessage", data={"chat_id": "6", "text": "123"}) as resp:
            assert (await resp.json())["result"]["text"] == "123"  # a numeric text stays a string
        async with http.post(f"{base}/sendMessage", json={"text": "no chat"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["description"] == "Bad Request: chat_id is empty"
        async with http.get(f"{base}/getMe") as resp:
            me = (await resp.json())["result"]
            assert me["is_bot"] is True and me["username"] == "kefu_test_bot" and me["id"] == 123456
        async with http.post(f"{tg.base_url}/botnot-a-token/getMe") as resp:
            assert resp.status == 401
    assert [c.method for c in tg.sent] == ["noSuchMethod", "sendMessage", "sendMessage", "sendMessage", "getMe"]
    assert tg.texts_to(6) == ["json body", "123"]


async def test_wait_for_messages_reports_what_was_sent(tg: FakeTelegram) -> None:
    bot = tg.bot()
    await bot.send_message(12, "only one")
    with pytest.raises(AssertionError, match=r"sent 1 message\(s\) to chat 12 .* \['only one'\]"):
        await tg.wait_for_messages(12, 2, timeout=0.2)


# --- webhook delivery: several bot processes, several connections ------------------------------------------------


class HeldWebhook:
    """A webhook endpoint that records every POST and holds its answer until released (per update, or all);
    `status` picks the answer per (update text, attempt number)."""

    def __init__(self, name: str = "bot", status: dict[tuple[str, int], int] | None = None) -> None:
        self.name = name
        self.status = status or {}
        self.arrived: list[tuple[str, int, str]] = []  # (who, chat id, text), in arrival order
        self.answered: list[tuple[int, str, int]] = []  # (chat id, text, status)
        self.in_flight: dict[int, int] = {}  # chat id -> POSTs in flight now
        self.most_in_flight = 0
        self.most_in_one_chat = 0
        self.hold = False
        self._released: dict[str, asyncio.Event] = {}
        self._attempts: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> HeldWebhook:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release_all()
        assert self._runner is not None
        await self._runner.cleanup()

    def release(self, text: str) -> None:
        self._released.setdefault(text, asyncio.Event()).set()

    def release_all(self) -> None:
        self.hold = False
        for event in self._released.values():
            event.set()

    async def _post(self, request: web.Request) -> web.Response:
        message = (await request.json())["message"]
        chat, text = message["chat"]["id"], message["text"]
        self.arrived.append((self.name, chat, text))
        self.in_flight[chat] = self.in_flight.get(chat, 0) + 1
        self.most_in_one_chat = max(self.most_in_one_chat, self.in_flight[chat])
        self.most_in_flight = max(self.most_in_flight, sum(self.in_flight.values()))
        try:
            if self.hold:
                await self._released.setdefault(text, asyncio.Event()).wait()
            else:
                await asyncio.sleep(0.01)  # long enough for another POST to overlap, if one were sent
            attempt = self._attempts[text] = self._attempts.get(text, 0) + 1
            status = self.status.get((text, attempt), 200)
            self.answered.append((chat, text, status))
            return web.json_response({}, status=status)
        finally:
            self.in_flight[chat] -= 1


async def test_webhook_two_chats_in_flight_at_once(tg: FakeTelegram) -> None:
    async with HeldWebhook() as hook:
        hook.hold = True
        tg.deliver_to(hook.url, max_connections=2)
        tg.user_message(1, "a1")
        tg.user_message(1, "a2")
        tg.user_message(2, "b1")
        tg.user_message(3, "c1")
        await tg.wait_until(lambda: len(hook.arrived) == 2, what="two POSTs in flight")
        await asyncio.sleep(0.2)
        # Two connections: chat 1's first and chat 2's first (a2 waits for a1; c1 for a free connection).
        assert [text for _, _, text in hook.arrived] == ["a1", "b1"]
        assert hook.most_in_flight == 2
        assert tg.webhook_backlog == 2

        hook.release("b1")  # chat 2 answered: the oldest update that may go is c1 (a1 still holds chat 1)
        await tg.wait_until(lambda: len(hook.arrived) == 3, what="c1 posted")
        assert hook.arrived[-1][2] == "c1"
        hook.release("a1")
        await tg.wait_until(lambda: len(hook.arrived) == 4, what="a2 posted")
        assert hook.arrived[-1][2] == "a2"
        hook.release_all()
        await tg.wait_until(lambda: len(hook.answered) == 4, what="all answered")
    assert hook.most_in_flight == 2 and hook.most_in_one_chat == 1
    assert tg.webhook_statuses == [200] * 4 and tg.webhook_backlog == 0 and tg.pending_updates == []


async def test_webhook_keeps_one_chat_in_order_through_retries(tg: FakeTelegram) -> None:
    # m2 fails twice before it is taken; m4 fails every time and is given up after 3 attempts.
    failures = {("m2", 1): 500, ("m2", 2): 503, **{("m4", n): 502 for n in (1, 2, 3)}}
    async with HeldWebhook(status=failures) as hook:
        tg.deliver_to(hook.url, max_connections=8, retry_delay=0.05, attempts=3)
        for n in range(1, 7):
            tg.user_message(5, f"m{n}")
        tg.user_message(6, "other")  # another chat is not held up by chat 5's retries
        await tg.wait_until(lambda: len(hook.answered) == 11, what="every attempt answered")
        await asyncio.sleep(0.1)
    chat5 = [(text, status) for chat, text, status in hook.answered if chat == 5]
    assert chat5 == [("m1", 200), ("m2", 500), ("m2", 503), ("m2", 200), ("m3", 200),
                     ("m4", 502), ("m4", 502), ("m4", 502), ("m5", 200), ("m6", 200)]
    assert hook.most_in_one_chat == 1  # never two of chat 5's updates at once, though 8 connections were free
    assert [text for _, chat, text in hook.arrived if chat == 6] == ["other"]
    assert next(i for i, (_, _, text) in enumerate(hook.arrived) if text == "other") < 3
    assert sorted(tg.webhook_statuses) == sorted(status for _, _, status in hook.answered)
    # the update given up on stays pending (unconfirmed), as Telegram keeps it
    assert [u["message"]["text"] for u in tg.pending_updates] == ["m4"]


async def test_webhook_one_connection_keeps_the_arrival_order(tg: FakeTelegram) -> None:
    async with HeldWebhook() as hook:
        tg.deliver_to(hook.url)  # the default: one connection
        for n in range(6):
            tg.user_message(10 + n % 3, f"u{n}")
        await tg.wait_until(lambda: len(hook.answered) == 6, what="all answered")
    assert [text for _, _, text in hook.arrived] == [f"u{n}" for n in range(6)]
    assert hook.most_in_flight == 1


async def test_webhook_round_robin_across_bot_processes(tg: FakeTelegram) -> None:
    # The first attempt of u3 fails on bot A: its retry goes to the next process in turn, B.
    async with HeldWebhook("A", status={("u3", 1): 503}) as a, HeldWebhook("B") as b:
        tg.deliver_to([a.url, b.url], "s3cret", retry_delay=0.01)
        for n in range(1, 6):
            tg.user_message(7, f"u{n}")
        await tg.wait_until(lambda: len(a.answered) + len(b.answered) == 6, what="all answered")
    assert [(who, text) for who, _, text in a.arrived] == [("A", "u1"), ("A", "u3"), ("A", "u4")]
    assert [(who, text) for who, _, text in b.arrived] == [("B", "u2"), ("B", "u3"), ("B", "u5")]
    assert tg.webhook_statuses == [200, 200, 503, 200, 200, 200]


async def test_webhook_delivery_arguments(tg: FakeTelegram) -> None:
    with pytest.raises(ValueError, match="at least one URL"):
        tg.deliver_to([])
    with pytest.raises(ValueError, match="max_connections"):
        tg.deliver_to("http://127.0.0.1:9/hook", max_connections=0)


async def test_webhook_process_down_is_skipped_by_the_retry(tg: FakeTelegram) -> None:
    with socket.socket() as sock:  # a port nobody listens on: a bot process that is down
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    async with HeldWebhook("B") as b:
        tg.deliver_to([down, b.url], retry_delay=0.01)
        tg.user_message(8, "first")
        tg.user_message(8, "second")
        await tg.wait_until(lambda: len(b.answered) == 2, what="both answered by the live process")
    assert [text for _, _, text in b.arrived] == ["first", "second"]
    assert tg.webhook_statuses == [0, 200, 0, 200]
    assert len(tg.webhook_failures) == 2 and all(down in failure for failure in tg.webhook_failures)
