"""The bot learns from a customer's 👍: they take an article from the bot's "did you mean" and say it helped, and the
question that produced the suggestion is proposed as a phrasing of that article. Only that: a 👍 on a direct
answer, a 👎, an article they were not offered, or a 👍 after they moved on to another question proposes nothing.

The knowledge base here is scripted (its decision for each question is set by the test): what is under test is the
engine's chat state and the proposal, on the real CRM store; the ranking has its own tests, and the real one is
used end to end in tests/console/test_phrasing_loop.py."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine import DialogueEngine
from bot.messages import Incoming, Outcome
from knowledge_base.records import Hit, SearchResult
from nlu.result import IntentScore, ParseResult

QUESTIONS = {
    "en": ("which cards do you take", "Which payment methods do you accept?", "How do I redeem my points?"),
    "zh": ("能刷什么卡", "支持哪些付款方式？", "积分怎么兑换？"),
}


class ScriptedKb:
    """A knowledge base whose decision for each question the test sets (unknown questions: no answer)."""

    def __init__(self) -> None:
        self.results: dict[str, SearchResult] = {}

    def encode_query(self, text: str, *, with_features: bool = False) -> None:
        return None

    def search(self, text: str, *, encoding: Any = None, k: int = 5) -> SearchResult:
        return self.results.get(text) or SearchResult(query=text, language="en", decision="no_answer", hits=())

    def suggest(self, text: str, *articles: Any) -> None:
        hits = tuple(Hit(a.id, None, a.question, a.answer, a.language, 0.5, 0.4) for a in articles)
        self.results[text] = SearchResult(query=text, language=articles[0].language, decision="suggest", hits=hits,
                                          suggestions=hits)

    def answer(self, text: str, article: Any) -> None:
        hit = Hit(article.id, None, article.question, article.answer, article.language, 0.9, 0.95)
        self.results[text] = SearchResult(query=text, language=article.language, decision="answer", hits=(hit,))


class QuestionNlu:
    """Every message is a question for the knowledge base."""

    async def parse(self, text: str, *, encoding: Any = None) -> ParseResult:
        return ParseResult(text=text, intent=IntentScore("ask_question", 0.9))


@pytest.fixture(params=["en", "zh"])
async def shop(request: pytest.FixtureRequest, crm) -> tuple[DialogueEngine, ScriptedKb, Any, Any, str]:  # type: ignore[no-untyped-def]
    """The engine on a scripted KB with two articles (payment, rewards) in the parametrized language, and the
    question whose "did you mean" offers both."""
    language = request.param
    question, payment_q, rewards_q = QUESTIONS[language]
    payment = await crm.knowledge.create_article(question=payment_q, answer="Visa, PayPal, 支付宝.",
                                                 language=language, status="published")
    rewards = await crm.knowledge.create_article(question=rewards_q, answer="Ask me: rewards.", language=language,
                                                 status="published")
    kb = ScriptedKb()
    kb.suggest(question, payment, rewards)
    return DialogueEngine(crm=crm, kb=kb, nlu=QuestionNlu()), kb, payment, rewards, question


async def chat(engine: DialogueEngine, text: str = "", *, payload: str | None = None, who: str = "c-1") -> Outcome:
    return await engine.handle(Incoming("webchat", who, text=text, payload=payload))


async def test_a_thumbs_up_on_a_suggested_article_proposes_the_question(crm, shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, payment, rewards, question = shop
    asked = await chat(engine, question)
    (suggestion,) = asked.replies
    assert suggestion.decision == "suggest"
    assert [b.payload for b in suggestion.buttons] == [f"kb:{payment.id}", f"kb:{rewards.id}", "kb:none"]
    question_message = (await crm.conversations.transcript(conversation_id=asked.conversation_id))[0]
    # The chat state keeps ids only (not the customer's words).
    assert (await engine.state.get("webchat:c-1"))["suggested"] == {
        "message_id": question_message.id, "articles": [payment.id, rewards.id]}

    shown = await chat(engine, payload=f"kb:{payment.id}")
    assert shown.replies[0].article_id == payment.id
    assert await crm.phrasings.pending() == []  # opening it is not yet saying it helped
    await chat(engine, payload=f"fb:up:{payment.id}")

    (proposal,) = await crm.phrasings.pending()
    assert (proposal.article_id, proposal.text, proposal.source, proposal.language) == (
        payment.id, question, "feedback", payment.language)
    assert (proposal.conversation_id, proposal.message_id) == (asked.conversation_id, question_message.id)
    assert proposal.proposed_by_agent_id is None
    await chat(engine, payload=f"fb:up:{payment.id}")  # pressed again: once is enough
    assert len(await crm.phrasings.pending()) == 1
    assert "suggested" not in await engine.state.get("webchat:c-1")


async def test_a_thumbs_up_on_a_direct_answer_proposes_nothing(crm, shop) -> None:  # type: ignore[no-untyped-def]
    engine, kb, payment, _, question = shop
    kb.answer(question, payment)
    assert (await chat(engine, question)).replies[0].decision == "answer"
    await chat(engine, payload=f"fb:up:{payment.id}")
    assert await crm.phrasings.pending() == []


@pytest.mark.parametrize("then", ["thumbs_down", "another_question"])
async def test_a_thumbs_up_after_a_thumbs_down_or_another_question_proposes_nothing(crm, shop, then: str) -> None:  # type: ignore[no-untyped-def]
    engine, _, payment, _, question = shop
    await chat(engine, question)
    await chat(engine, payload=f"kb:{payment.id}")
    if then == "thumbs_down":
        await chat(engine, payload=f"fb:down:{payment.id}")  # it did not help; a 👍 after that says nothing
    else:
        moved_on = await chat(engine, "do you sell gift cards")  # they moved on before saying it helped
        assert moved_on.replies[0].decision == "no_answer"  # (the bot still has the conversation)
    await chat(engine, payload=f"fb:up:{payment.id}")
    assert await crm.phrasings.pending() == []


async def test_the_thumbs_up_counts_for_the_suggested_article_taken_last(crm, shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, payment, rewards, question = shop
    await chat(engine, question)
    await chat(engine, payload=f"kb:{payment.id}")
    await chat(engine, payload=f"kb:{rewards.id}")
    await chat(engine, payload=f"fb:up:{payment.id}")  # the first one's buttons: not the article they settled on
    assert await crm.phrasings.pending() == []
    await chat(engine, question)
    await chat(engine, payload=f"kb:{payment.id}")
    await chat(engine, payload=f"kb:{rewards.id}")
    await chat(engine, payload=f"fb:up:{rewards.id}")
    assert [(p.article_id, p.text) for p in await crm.phrasings.pending()] == [(rewards.id, question)]


async def test_a_thumbs_up_never_repeats_a_phrasing_the_article_has(crm, shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, payment, _, question = shop
    await crm.knowledge.update_article(article_id=payment.id, alt_questions=[question])
    await chat(engine, question)
    await chat(engine, payload=f"kb:{payment.id}")
    thanks = await chat(engine, payload=f"fb:up:{payment.id}")
    assert thanks.replies and await crm.phrasings.pending() == []  # the customer is thanked all the same


async def test_forged_feedback_buttons_are_harmless(crm, shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, payment, _, question = shop
    await chat(engine, question)
    await chat(engine, payload=f"kb:{payment.id}")
    for forged in ("fb:up:²", "fb:up:99999999999999", "fb:up:", "fb:sideways:1"):
        assert (await chat(engine, payload=forged)).replies
    assert await crm.phrasings.pending() == []
