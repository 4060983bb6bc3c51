"""The chat answers in the language the customer writes: the channel's hint (Telegram's language_code, the
browser's language) is only the first guess, a message clearly written in one language moves the chat to it, a
button press or a message too short to tell moves nothing, and an explicit choice (/language, "reply in English")
sticks. Every flow then speaks the turn's language: handoff, courses, loyalty, privacy, surveys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.engine import DialogueEngine
from bot.messages import Incoming, Outcome
from bot.texts import text, written_language
from crm_store.enums import SenderType
from kefu.sample_courses import load_sample_courses
from kefu.sample_data import load_sample_shop
from tests.bot import test_engine
from tests.bot.conftest import Stack

engine = test_engine.engine
nlu_model = test_engine.nlu_model

EMILY_PHONE = "+1 415 555 0132"  # Emily Carter in the sample shop, an English-speaking Gold member


def web(visitor: str, words: str = "", *, payload: str | None = None, browser: str = "en-US") -> Incoming:
    """What the web chat posts: the text or the pressed button, with the browser's language."""
    return Incoming("webchat", visitor, text=words, payload=payload, language_code=browser)


def telegram(chat: str, words: str = "", *, payload: str | None = None, code: str | None = "en",
             contact: str | None = None) -> Incoming:
    """What the Telegram intake builds from an update: the user's language_code comes with every one."""
    return Incoming("telegram", chat, text=words, payload=payload, display_name="Anna", language_code=code,
                    shared_contact=contact)


def only(outcome: Outcome) -> str:
    (reply,) = outcome.replies
    return reply.text


@pytest.mark.parametrize(("message", "language"), [
    ("我要投诉", "zh"), ("好", "zh"), ("hello 有客服吗", "zh"), ("我的points还有多少", "zh"), ("/human 茶叶坏了", "zh"),
    ("hi there", "en"), ("where is KT-1028?", "en"), ("I love 龙井 tea so much", "en"),
    ("ok", None), ("thx", None), ("1", None), ("👍", None), ("KT-1028", None), ("anna@example.com", None),
    ("ok thx", None), ("/start", None), ("/start link_3f9a", None), ("Привет, как дела", None), ("  ", None),
])
def test_which_messages_tell_a_language(message: str, language: str | None) -> None:
    assert written_language(message) == language


async def test_a_web_chat_begun_with_a_button_takes_a_chinese_complaint_in_chinese(engine: DialogueEngine) -> None:
    first = await engine.handle(web("v-lang-1", payload="human:no"))
    assert (first.language, only(first)) == ("en", text("rephrase", "en"))

    complaint = await engine.handle(web("v-lang-1", "我要投诉"))
    (reply,) = complaint.replies
    assert complaint.language == "zh" and reply.decision == "handoff"
    assert reply.text.startswith(text("complaint", "zh")) and "已为您转接人工客服（工单 #" in reply.text


async def test_a_web_chat_begun_with_a_button_gets_the_chinese_course_catalogue(crm, engine) -> None:  # type: ignore[no-untyped-def]
    await load_sample_courses(crm)
    await engine.handle(web("v-lang-2", payload="human:no"))
    outcome = await engine.handle(web("v-lang-2", "我想上课"))
    (reply,) = outcome.replies
    assert outcome.language == "zh"
    assert reply.text.startswith(text("course_catalogue", "zh")) and "泡茶入门" in reply.text
    assert "Tea brewing basics" not in reply.text
    assert [b.label for b in reply.buttons] == ["▶ 开始：泡茶入门"]


async def test_a_telegram_user_with_an_english_app_writing_chinese_gets_chinese(engine: DialogueEngine) -> None:
    welcome = await engine.handle(telegram("501", "/start"))
    assert welcome.language == "en" and only(welcome).startswith("Hello, Anna!")
    hello = await engine.handle(telegram("501", "你好"))
    assert (hello.language, only(hello)) == ("zh", text("greet", "zh"))
    back = await engine.handle(telegram("501", "hello there, how are you?"))  # they write English again: English
    assert (back.language, only(back)) == ("en", text("greet", "en"))


async def test_chinese_chosen_with_language_sticks_when_english_is_written(engine: DialogueEngine) -> None:
    await engine.handle(telegram("502", "/language"))
    chosen = await engine.handle(telegram("502", payload="lang:zh"))
    assert (chosen.language, only(chosen)) == ("zh", text("language_set", "zh"))
    hello = await engine.handle(telegram("502", "hello there, how are you?"))
    assert (hello.language, only(hello)) == ("zh", text("greet", "zh"))
    complaint = await engine.handle(telegram("502", "my parcel arrived damaged"))
    assert complaint.language == "zh" and only(complaint).startswith(text("complaint", "zh"))


async def test_asking_for_a_language_in_words_sticks_too(engine: DialogueEngine) -> None:
    asked = await engine.handle(web("v-lang-3", "回复改用英语吧", browser="zh-CN"))
    assert (asked.language, only(asked)) == ("en", text("language_set", "en"))
    assert asked.replies[0].intent == "change_language"
    complaint = await engine.handle(web("v-lang-3", "我要投诉", browser="zh-CN"))
    assert complaint.language == "en" and only(complaint).startswith(text("complaint", "en"))


async def test_the_welcome_buttons_are_a_guess_the_customers_writing_overrides(engine: DialogueEngine) -> None:
    welcome = await engine.handle(telegram("503", "/start", code="zh-hans"))
    assert [b.payload for b in welcome.replies[0].buttons] == ["lang:en:welcome", "lang:zh:welcome"]
    guessed = await engine.handle(telegram("503", payload="lang:en:welcome", code="zh-hans"))
    assert (guessed.language, only(guessed)) == ("en", text("language_guess", "en"))
    hello = await engine.handle(telegram("503", "你好", code="zh-hans"))
    assert (hello.language, only(hello)) == ("zh", text("greet", "zh"))


@pytest.mark.parametrize("message", ["ok", "1", "👍", "KT-1028", "thx"])
async def test_a_message_too_short_to_tell_keeps_the_chats_language(engine: DialogueEngine, message: str) -> None:
    chat = f"v-short-{message}"
    assert (await engine.handle(web(chat, "你好"))).language == "zh"
    assert (await engine.handle(web(chat, message))).language == "zh"
    assert (await engine.handle(web(chat, payload="human:no"))).language == "zh"  # a button says nothing either


@pytest.mark.parametrize(("message", "expected"), [
    ("我要投诉", text("complaint", "zh")),
    ("转人工", "已为您转接人工客服"),
    ("我想上课", text("course_catalogue", "zh")),
    ("删除我的数据", text("privacy_intro", "zh")),
    ("我有多少积分", text("link_ask_webchat", "zh")),
])
async def test_every_flow_answers_a_chinese_message_in_chinese_in_a_chat_begun_in_english(
        crm, engine, message: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    await load_sample_courses(crm)
    chat = f"v-flow-{message}"
    assert (await engine.handle(web(chat, "hello there, good morning"))).language == "en"
    outcome = await engine.handle(web(chat, message))
    assert outcome.language == "zh" and expected in outcome.replies[0].text


async def test_loyalty_answers_in_the_language_written(crm, engine) -> None:  # type: ignore[no-untyped-def]
    await load_sample_shop(crm)
    linked = await engine.handle(telegram("504", contact=EMILY_PHONE))
    assert linked.language == "en" and "Emily Carter" in linked.replies[0].text
    points = await engine.handle(telegram("504", "我有多少积分"))
    summary = await crm.loyalty.summary(customer_id=points.customer_id)
    assert points.language == "zh"
    assert only(points).startswith(text("balance", "zh", points=summary.balance))
    assert text("tier_line", "zh", tier=summary.tier.names["zh"]) in only(points)


async def test_a_survey_asked_in_english_goes_on_in_chinese_when_answered_in_chinese(stack: Stack) -> None:
    crm, engine = stack.crm, stack.engine
    await stack.bus.start()  # the bot asks the surveys the CRM sends
    hello = await engine.handle(web("v-survey", "hello there, good morning"))
    assert hello.language == "en"
    invitation = await crm.surveys.invite(customer_id=hello.customer_id, key="nps", campaign="lang-test")
    score = await pushed(crm, hello.conversation_id)
    assert score.text.startswith(text("survey_intro_nps", "en"))
    why = await engine.handle(web("v-survey", payload=f"sv:{invitation.id}:score:9"))
    assert why.language == "en" and "main reason" in only(why)
    answered = await engine.handle(web("v-survey", "茶很好喝，客服也很耐心"))
    assert (answered.language, only(answered)) == ("zh", text("survey_thanks", "zh"))
    assert await crm.surveys.answers(invitation_id=invitation.id) == {"score": 9, "why": "茶很好喝，客服也很耐心"}


async def pushed(crm: Any, conversation_id: int) -> Any:
    """The message the bot pushed on its own (a survey's question), once the event bus has carried it."""
    for _ in range(200):
        rows = await crm.conversations.transcript(conversation_id=conversation_id)
        if found := [r for r in rows if r.sender == SenderType.BOT and "sv:" in str(r.payload)]:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError("the bot asked no survey")
