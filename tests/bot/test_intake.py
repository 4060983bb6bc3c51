"""Telegram intake: every update is stored before it is acknowledged (the webhook answers 503, polling keeps its
offset, while the store is away), handled once, redriven when a process never finished it; a flooding chat's
messages are all stored though not all answered. On the real dialogue engine and the fake Telegram server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from bot.telegram import ChatLanes, ChatThrottle, TelegramChannel, chat_of, telegram_webhook_router
from crm_store.enums import SenderType
from tests import support
from tests.bot.conftest import Stack
from tests.fake_telegram import FakeTelegram

GREETING = "Hello! How can I help you today?"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


class StoreOutage:
    """Makes crm.updates.store raise OSError (the database cannot be reached) until `end()`; counts the tries."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tries = 0
        self._monkeypatch = monkeypatch
        self._updates = stack.crm.updates

        async def unavailable(**_: Any) -> Any:
            self.tries += 1
            raise OSError("connection refused (expected by the test)")

        monkeypatch.setattr(self._updates, "store", unavailable)

    def end(self) -> None:
        self._monkeypatch.undo()


async def customer_texts(stack: Stack, chat: int) -> list[str]:
    rows = await stack.crm.conversations.history(channel="telegram", external_id=str(chat))
    return [row.text for row in rows if row.sender == SenderType.CUSTOMER]


async def test_the_webhook_answers_503_while_the_store_is_away_then_handles_the_update_once(
    stack: Stack, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = TelegramChannel(tg.bot(), stack.engine)
    app = FastAPI()
    app.include_router(telegram_webhook_router(channel))
    async with support.serving(app) as base:
        url = f"{base}/telegram/webhook"
        update = tg.user_message(400, "hello")

        outage = StoreOutage(stack, monkeypatch)
        assert await tg.post_webhook(url, update) == 503
        assert outage.tries == 1
        assert tg.messages_to(400) == []
        outage.end()
        assert await stack.crm.updates.counts() == {"stored": 0, "unhandled": 0}
        assert await customer_texts(stack, 400) == []

        assert await tg.post_webhook(url, update) == 200  # Telegram delivers it again
        assert tg.texts_to(400) == [GREETING]  # handled before the answer
        assert await tg.post_webhook(url, update) == 200  # and again: a duplicate, acknowledged
        await asyncio.sleep(0.3)
        assert tg.texts_to(400) == [GREETING]
        assert await stack.crm.updates.counts() == {"stored": 1, "unhandled": 0}
        assert await customer_texts(stack, 400) == ["hello"]


async def test_polling_keeps_its_offset_while_the_store_is_away(
    stack: Stack, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = TelegramChannel(tg.bot(), stack.engine)
    outage = StoreOutage(stack, monkeypatch)
    polling = asyncio.create_task(channel.start_polling(polling_timeout=1))
    try:
        update = tg.user_message(401, "hello")
        await tg.wait_until(lambda: outage.tries >= 2, timeout=5, what="two tries to store the update")
        assert tg.confirmed_offset <= update["update_id"]
        assert tg.messages_to(401) == []
        outage.end()

        assert [m["text"] for m in await tg.wait_for_messages(401, 1)] == [GREETING]
        await tg.wait_until(lambda: tg.confirmed_offset > update["update_id"], timeout=5, what="the offset confirmed")
        await asyncio.sleep(0.3)
        assert tg.texts_to(401) == [GREETING]
        counts = await stack.crm.updates.counts()
        assert counts == {"stored": 1, "unhandled": 0}
    finally:
        await channel.stop_polling()
        await asyncio.wait_for(polling, timeout=10)


async def test_polling_stopped_during_an_outage_leaves_the_update_to_the_next_run(
    stack: Stack, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = TelegramChannel(tg.bot(), stack.engine)
    outage = StoreOutage(stack, monkeypatch)
    polling = asyncio.create_task(first.start_polling(polling_timeout=1))
    update = tg.user_message(402, "hello")
    await tg.wait_until(lambda: outage.tries >= 1, timeout=5, what="a try to store the update")
    await first.stop_polling()
    await asyncio.wait_for(polling, timeout=10)
    outage.end()
    assert tg.confirmed_offset <= update["update_id"]

    second = TelegramChannel(tg.bot(), stack.engine)  # the process started again
    polling = asyncio.create_task(second.start_polling(polling_timeout=1))
    try:
        assert [m["text"] for m in await tg.wait_for_messages(402, 1)] == [GREETING]
    finally:
        await second.stop_polling()
        await asyncio.wait_for(polling, timeout=10)
    assert await stack.crm.updates.counts() == {"stored": 1, "unhandled": 0}


async def test_the_redrive_handles_an_update_stored_but_never_handled(stack: Stack, tg: FakeTelegram) -> None:
    channel = TelegramChannel(tg.bot(), stack.engine)
    update = tg.user_message(403, "hello")  # not polled: the process that stored it died before handling it
    await stack.crm.updates.store(channel="telegram", bot_id=channel.bot_id, update_id=update["update_id"],
                                  payload=update, chat_id="403")
    assert await stack.crm.updates.counts() == {"stored": 1, "unhandled": 1}

    redrive = asyncio.create_task(channel.redrive(lease=timedelta(0), every_s=0.1))
    try:
        assert [m["text"] for m in await tg.wait_for_messages(403, 1)] == [GREETING]
        for _ in range(50):
            if (await stack.crm.updates.counts())["unhandled"] == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.4)  # several more rounds of the redrive: it is not handled again
    finally:
        await channel.stop()
        await asyncio.wait_for(redrive, timeout=10)
    assert await stack.crm.updates.counts() == {"stored": 1, "unhandled": 0}
    assert tg.texts_to(403) == [GREETING]
    assert await customer_texts(stack, 403) == ["hello"]


async def test_the_redrive_leaves_another_processes_fresh_claim_alone(stack: Stack, tg: FakeTelegram) -> None:
    """An update just stored (claimed by the process handling it) is not redriven before its lease ends."""
    channel = TelegramChannel(tg.bot(), stack.engine)
    update = tg.user_message(404, "hello")
    await stack.crm.updates.store(channel="telegram", bot_id=channel.bot_id, update_id=update["update_id"],
                                  payload=update, chat_id="404")
    redrive = asyncio.create_task(channel.redrive(lease=timedelta(minutes=5), every_s=0.1))
    await asyncio.sleep(0.5)
    await channel.stop()
    await asyncio.wait_for(redrive, timeout=10)
    assert tg.messages_to(404) == []
    assert await stack.crm.updates.counts() == {"stored": 1, "unhandled": 1}


async def test_a_flooding_chats_messages_are_all_stored_though_only_some_are_answered(
    stack: Stack, tg: FakeTelegram
) -> None:
    channel = TelegramChannel(tg.bot(), stack.engine, throttle=ChatThrottle(limit=2, window_s=60))
    app = FastAPI()
    app.include_router(telegram_webhook_router(channel))
    async with support.serving(app) as base:
        for n in range(5):
            assert await tg.post_webhook(f"{base}/telegram/webhook", tg.user_message(405, f"hello {n}")) == 200
    texts = tg.texts_to(405)
    assert texts.count(GREETING) == 2
    assert len(texts) == 3 and "sending messages very fast" in texts[2]  # one notice for the rest
    assert await customer_texts(stack, 405) == [f"hello {n}" for n in range(5)]
    assert await stack.crm.updates.counts() == {"stored": 5, "unhandled": 0}


# --- chat_of and ChatLanes -----------------------------------------------------------------------------------


def test_chat_of_finds_the_chat_of_messages_and_button_presses(tg: FakeTelegram) -> None:
    assert chat_of(tg.user_message(406, "hi")) == "406"
    assert chat_of(tg.edited_message(406, "hi!")) == "406"
    assert chat_of(tg.callback(406, "fb:up:1", message_id=1)) == "406"
    assert chat_of({"update_id": 1, "callback_query": {"id": "q", "from": {"id": 407}}}) == "407"  # no message
    assert chat_of({"update_id": 2, "poll": {"id": "p"}}) is None


async def test_chat_lanes_keep_one_chats_order_and_let_other_chats_through() -> None:
    lanes = ChatLanes()
    done: list[str] = []
    release = asyncio.Event()

    async def work(name: str, *, wait: bool = False) -> str:
        if wait:
            await release.wait()
        done.append(name)
        return name

    slow = asyncio.create_task(lanes.run("a", lambda: work("a1", wait=True)))
    behind = asyncio.create_task(lanes.run("a", lambda: work("a2")))
    other = asyncio.create_task(lanes.run("b", lambda: work("b1")))
    assert await asyncio.wait_for(other, timeout=1) == "b1"  # chat b is not held up by chat a
    await asyncio.sleep(0.05)
    assert done == ["b1"]  # a2 waits for a1
    release.set()
    assert await asyncio.gather(slow, behind) == ["a1", "a2"]
    assert done == ["b1", "a1", "a2"]
    assert len(lanes) == 0
