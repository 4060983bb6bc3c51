"""Telegram end to end: aiogram's real polling loop (and the webhook route) against the fake Telegram Bot API
server on 127.0.0.1, on the real dialogue engine, CRM store and event bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from bot.telegram import ChatThrottle, TelegramChannel, telegram_webhook_router
from crm_store.enums import ConversationStatus, DeliveryStatus, SenderType
from tests import support
from tests.bot.conftest import Stack, TelegramRun
from tests.fake_telegram import FakeTelegram


class Running:
    def __init__(self, tg: FakeTelegram, channel: TelegramChannel, stack: Stack) -> None:
        self.tg = tg
        self.channel = channel
        self.stack = stack


@pytest.fixture
def running(telegram: TelegramRun) -> Running:
    """The bot on the fake Telegram server: every test here runs on aiogram's polling loop and on the webhook."""
    return Running(telegram.tg, telegram.channel, telegram.stack)


def buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def test_a_question_is_answered_with_helpful_buttons_and_a_press_is_acknowledged(running: Running) -> None:
    tg = running.tg
    tg.user_message(100, "how long does shipping take?")
    (answer,) = await tg.wait_for_messages(100, 1)
    assert "Source: " in answer["text"] and "Was this helpful?" in answer["text"]
    up, down = buttons(answer)
    assert up.startswith("fb:up:") and down.startswith("fb:down:")

    tg.callback(100, up, message_id=answer["message_id"])
    messages = await tg.wait_for_messages(100, 2)
    assert messages[1]["text"] == "Thanks for telling me!"
    assert len(tg.calls("answerCallbackQuery")) == 1  # the button's spinner stopped

    # What the CRM recorded: the question, the answer with its article and intent, the press; delivery marked.
    recorded = await running.stack.crm.conversations.record_incoming(channel="telegram", external_id="100",
                                                                     text="(probe)")
    rows = await running.stack.crm.conversations.transcript(conversation_id=recorded.conversation.id)
    bot_rows = [r for r in rows if r.sender == SenderType.BOT]
    assert bot_rows[0].kb_article_id is not None and bot_rows[0].intent == "ask_question"
    assert bot_rows[0].delivery_status == DeliveryStatus.SENT and bot_rows[0].channel_message_id
    assert any(r.payload == {"button": up} for r in rows)


async def test_a_redelivered_update_is_stored_and_answered_once(running: Running) -> None:
    tg = running.tg
    update = tg.user_message(101, "are you open on sunday?")
    await tg.wait_for_messages(101, 1)
    tg.redeliver(update)
    tg.user_message(101, "thanks!")  # a later message proves the redelivery was processed before it
    messages = await tg.wait_for_messages(101, 2)
    await asyncio.sleep(0.5)
    assert len(tg.messages_to(101)) == 2, tg.texts_to(101)
    assert messages[1]["text"].startswith("You're welcome")
    recorded = await running.stack.crm.conversations.record_incoming(channel="telegram", external_id="101",
                                                                     text="(probe)")
    rows = await running.stack.crm.conversations.transcript(conversation_id=recorded.conversation.id)
    assert [r.text for r in rows if r.sender == SenderType.CUSTOMER] == [
        "are you open on sunday?", "thanks!", "(probe)"]


async def test_non_text_gets_a_polite_answer_and_groups_and_edits_are_ignored(running: Running) -> None:
    tg = running.tg
    tg.sticker(102)
    tg.photo(102)
    tg.voice(102)
    messages = await tg.wait_for_messages(102, 3)
    assert all(m["text"] == "I can only read text messages. Please type your question." for m in messages)
    tg.edited_message(102, "edited text")
    tg.group_message(-500, "hello bot")
    tg.user_message(102, "hello")
    messages = await tg.wait_for_messages(102, 4)
    assert messages[3]["text"] == "Hello! How can I help you today?"
    assert tg.messages_to(-500) == []


async def test_start_speaks_the_users_language_and_the_menu_exists_in_both(running: Running) -> None:
    tg = running.tg
    tg.user_message(103, "/start", language_code="zh-hans", first_name="李娜")
    (welcome,) = await tg.wait_for_messages(103, 1)
    assert welcome["text"].startswith("您好, 李娜") and buttons(welcome) == ["lang:en:welcome", "lang:zh:welcome"]
    commands = tg.commands
    assert {c["command"] for c in commands[""]} == {"start", "help", "courses", "human", "language", "privacy", "stop"}
    assert next(c for c in commands["zh"] if c["command"] == "human")["description"] == "转人工客服"


async def test_a_flooding_chat_is_throttled(running: Running) -> None:
    tg = running.tg
    running.channel.throttle = ChatThrottle(limit=6, window_s=60)
    for i in range(10):
        tg.user_message(104, f"hello {i}")
    await tg.wait_for_messages(104, 7)
    await asyncio.sleep(1.0)
    texts = tg.texts_to(104)
    # Six answered, one notice (with polling, sent at once, before the answers, as updates are handled
    # concurrently; with the webhook, after them), the rest dropped.
    notice = "⏳ You're sending messages very fast; I'll answer again in a few seconds."
    assert sorted(texts) == sorted([notice] + ["Hello! How can I help you today?"] * 6), texts


async def test_handoff_relays_both_ways(running: Running) -> None:
    tg, crm = running.tg, running.stack.crm
    tg.user_message(105, "/human")
    (handoff,) = await tg.wait_for_messages(105, 1)
    assert "ticket #" in handoff["text"]
    tg.user_message(105, "it's about order KT-1028")
    recorded = None
    for _ in range(100):  # the bot stays silent; the message is stored for the agent
        recorded = await crm.conversations.record_incoming(channel="telegram", external_id="105", text="(probe)")
        rows = await crm.conversations.transcript(conversation_id=recorded.conversation.id)
        if any(r.text == "it's about order KT-1028" for r in rows):
            break
        await asyncio.sleep(0.1)
    assert recorded is not None and recorded.conversation.status == ConversationStatus.PENDING
    assert len(tg.messages_to(105)) == 1

    agent = await support.make_agent(crm)
    sent = await crm.conversations.record_outgoing(conversation_id=recorded.conversation.id,
                                                   sender=SenderType.AGENT, agent_id=agent.id,
                                                   text="Hi, this is Sam from Kefu Tea. Checking KT-1028 now.")
    messages = await tg.wait_for_messages(105, 2)
    assert messages[1]["text"] == "Hi, this is Sam from Kefu Tea. Checking KT-1028 now."
    for _ in range(100):
        rows = await crm.conversations.transcript(conversation_id=recorded.conversation.id)
        if next(r for r in rows if r.id == sent.message.id).delivery_status == DeliveryStatus.SENT:
            break
        await asyncio.sleep(0.05)
    assert next(r for r in rows if r.id == sent.message.id).delivery_status == DeliveryStatus.SENT


async def test_webhook_with_the_secret_token(stack: Stack) -> None:
    async with FakeTelegram() as tg:
        channel = TelegramChannel(tg.bot(), stack.engine, webhook_secret="s3cret-token")
        app = FastAPI()
        app.include_router(telegram_webhook_router(channel))
        async with support.serving(app) as base:
            url = f"{base}/telegram/webhook"
            update = tg.user_message(106, "how long does shipping take?")
            assert await tg.post_webhook(url, update, secret_token="wrong") == 401
            assert tg.messages_to(106) == []
            assert await tg.post_webhook(url, update, secret_token="s3cret-token") == 200
            (answer,) = await tg.wait_for_messages(106, 1)
            assert "Source: " in answer["text"]
            # The same update again (Telegram retries when unsure): stored and answered once.
            assert await tg.post_webhook(url, update, secret_token="s3cret-token") == 200
            await asyncio.sleep(0.5)
            assert len(tg.messages_to(106)) == 1
