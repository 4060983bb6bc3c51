"""The dialogue engine on the real CRM store, the demo shop's knowledge base and Kefu's trained NLU: what a
customer sees, and what the CRM records, for questions, buttons, commands and handoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine import DialogueEngine
from bot.messages import Incoming, Outcome
from crm_store.enums import ConversationStatus, SenderType
from kefu.runtime import open_knowledge_base
from kefu.sample_kb import load_sample_kb
from knowledge_base.service import Encoders
from nlu.pipeline import NluModel
from nlu.service import LocalNlu


@pytest.fixture(scope="module")
def nlu_model(nlu_model_dir: Path, encoders: Encoders) -> NluModel:
    return NluModel.load(nlu_model_dir, encoders=encoders)  # tests/conftest.py: trained once per session


@pytest.fixture
async def engine(crm, encoders: Encoders, nlu_model: NluModel) -> DialogueEngine:  # type: ignore[no-untyped-def]
    await load_sample_kb(crm)
    kb = await open_knowledge_base(crm, follow_changes=False, encoders=encoders)
    return DialogueEngine(crm=crm, kb=kb, nlu=LocalNlu(nlu_model))


def say(text: str = "", *, chat: str = "42", payload: str | None = None, message_id: str | None = None,
        language_code: str | None = None) -> Incoming:
    return Incoming("webchat", chat, text=text, payload=payload, message_id=message_id, display_name="Anna",
                    language_code=language_code)


async def transcript(crm, outcome: Outcome) -> list[tuple[str, str, str | None, int | None]]:  # type: ignore[no-untyped-def]
    rows = await crm.conversations.transcript(conversation_id=outcome.conversation_id)
    return [(r.sender, r.text, r.intent, r.kb_article_id) for r in rows]


async def test_a_question_gets_the_kb_answer_with_its_source_and_is_recorded(crm, engine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say("how long does shipping take?"))
    (reply,) = outcome.replies
    assert (reply.decision, reply.article_external_id, reply.intent) == ("answer", "shop-en-shipping", "ask_question")
    assert "Source: " in reply.text and "Was this helpful?" in reply.text
    assert [b.payload for b in reply.buttons] == [f"fb:up:{reply.article_id}", f"fb:down:{reply.article_id}"]
    rows = await transcript(crm, outcome)
    assert rows[0][:2] == ("customer", "how long does shipping take?")
    assert rows[1][0] == "bot" and rows[1][2] == "ask_question" and rows[1][3] == reply.article_id

    helpful = await engine.handle(say(payload=f"fb:up:{reply.article_id}"))
    assert helpful.replies[0].text == "Thanks for telling me!"
    stored = await crm.conversations.transcript(conversation_id=outcome.conversation_id)
    assert stored[2].payload == {"button": f"fb:up:{reply.article_id}"}  # the press is on record


async def test_chinese_is_answered_in_chinese(engine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say("我的积分怎么兑换礼品？", chat="zh-1"))
    assert outcome.language == "zh"
    (reply,) = outcome.replies
    assert reply.decision in ("answer", "suggest")
    assert "这个回答有帮助吗" in reply.text or "您是想问" in reply.text
    if reply.decision == "answer":
        assert reply.article_external_id == "shop-zh-rewards"
    else:
        assert any("积分" in b.label for b in reply.buttons)


async def test_a_redelivered_message_is_stored_and_answered_once(crm, engine) -> None:  # type: ignore[no-untyped-def]
    first = await engine.handle(say("how long does shipping take?", message_id="update-7"))
    again = await engine.handle(say("how long does shipping take?", message_id="update-7"))
    assert first.replies and not first.duplicate
    assert again.duplicate and again.replies == ()
    assert [r[0] for r in await transcript(crm, first)] == ["customer", "bot"]


async def test_asking_for_a_human_opens_a_ticket_and_the_bot_then_stays_silent(crm, engine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say("I want to talk to a real person please"))
    (reply,) = outcome.replies
    assert reply.decision == "handoff" and "ticket #" in reply.text
    conversation = await crm.conversations.get(conversation_id=outcome.conversation_id)
    assert conversation.status == ConversationStatus.PENDING

    relayed = await engine.handle(say("hello? are you there?"))
    assert relayed.relayed and relayed.replies == ()
    rows = await transcript(crm, relayed)
    assert rows[-1][:2] == (SenderType.CUSTOMER, "hello? are you there?")  # stored for the agent


@pytest.mark.parametrize(("text", "subject"), [
    ("/human", "Asked for a person"), ("人工", "Asked for a person"), ("/human my tea is stale", "my tea is stale"),
])
async def test_handoff_commands(crm, engine, text: str, subject: str) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say(text, chat=f"cmd-{text}"))
    assert outcome.replies[0].decision == "handoff"
    ticket = await crm.conversations.active_ticket(conversation_id=outcome.conversation_id)
    assert ticket.subject == subject  # what the agent reads in the inbox


async def test_a_complaint_goes_to_a_person_with_high_priority(crm, engine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say("my parcel KT-1028 arrived broken and nobody answers my emails"))
    (reply,) = outcome.replies
    assert reply.decision == "handoff" and reply.text.startswith("I'm sorry to hear that.")
    conversation = await crm.conversations.get(conversation_id=outcome.conversation_id)
    assert (conversation.status, conversation.priority) == (ConversationStatus.PENDING, "high")


async def test_two_fallbacks_in_a_row_hand_off(crm, engine) -> None:  # type: ignore[no-untyped-def]
    first = await engine.handle(say(payload="kb:none"))  # "None of these" after suggestions
    assert first.replies[0].decision == "no_answer"
    assert [b.payload for b in first.replies[0].buttons] == ["human:yes", "human:no"]
    second = await engine.handle(say(payload="kb:none"))
    assert second.replies[0].decision == "handoff"


async def test_a_fallback_streak_is_broken_by_an_answer(engine) -> None:  # type: ignore[no-untyped-def]
    await engine.handle(say(payload="kb:none"))
    assert (await engine.handle(say("how long does shipping take?"))).replies[0].decision == "answer"
    assert (await engine.handle(say(payload="kb:none"))).replies[0].decision == "no_answer"


async def test_a_suggestion_button_shows_that_article(crm, engine) -> None:  # type: ignore[no-untyped-def]
    article = (await crm.knowledge.list_articles())[0]
    outcome = await engine.handle(say(payload=f"kb:{article.id}"))
    assert outcome.replies[0].article_id == article.id and article.answer in outcome.replies[0].text
    stale = await engine.handle(say(payload="kb:999999", chat="stale"))
    assert stale.replies[0].decision == "no_answer"


async def test_start_welcomes_in_the_telegram_language_and_stop_withdraws_consent(crm, engine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say("/start", chat="zh-user", language_code="zh-hans"))
    assert outcome.language == "zh" and outcome.replies[0].text.startswith("您好, Anna")
    assert [b.payload for b in outcome.replies[0].buttons] == ["lang:en:welcome", "lang:zh:welcome"]
    english = await engine.handle(say(payload="lang:en:welcome", chat="zh-user"))
    assert english.replies[0].text.startswith("English it is.")

    await crm.customers.set_consent(customer_id=outcome.customer_id, consent=True)
    stopped = await engine.handle(say("/stop", chat="zh-user"))
    assert "won't receive surveys" in stopped.replies[0].text
    customer = await crm.customers.get(customer_id=outcome.customer_id)
    assert customer.marketing_consent is False and customer.marketing_consent_at is not None


async def test_after_resolution_the_bot_answers_again(crm, engine) -> None:  # type: ignore[no-untyped-def]
    handed = await engine.handle(say("/human", chat="r"))
    conversation = await crm.conversations.get(conversation_id=handed.conversation_id)
    assert conversation.status == ConversationStatus.PENDING
    ticket = await crm.conversations.active_ticket(conversation_id=handed.conversation_id)
    assert ticket is not None and f"#{ticket.id}" in handed.replies[0].text
    await crm.conversations.resolve(ticket_id=ticket.id)
    assert await crm.conversations.active_ticket(conversation_id=handed.conversation_id) is None
    back = await engine.handle(say("how long does shipping take?", chat="r"))
    assert not back.relayed and back.replies[0].decision == "answer"
    assert back.conversation_id != handed.conversation_id  # a new conversation, the bot's
