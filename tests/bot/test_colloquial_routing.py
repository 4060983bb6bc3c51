"""Short colloquial messages reach the right place through the engine (the trained NLU decides, not a word list): a
returns or an opening-hours question gets the knowledge base's answer, not a ticket; asking to delete one's data
shows what is stored, with the erasure button (the /privacy flow), and withdraws no consent; opting out of marketing
is another thing."""

from __future__ import annotations

from bot.engine import DialogueEngine
from bot.messages import Outcome, Reply
from bot.texts import text
from crm_store.enums import ConversationStatus
from tests.bot import test_engine
from tests.bot.test_engine import say
from tests.nlu.kefu_phrases import ZH_DELETE_ACCOUNT, ZH_HOURS, ZH_RETURNS

engine = test_engine.engine
nlu_model = test_engine.nlu_model


async def article_id(crm, external_id: str) -> int:  # type: ignore[no-untyped-def]
    return next(a.id for a in await crm.knowledge.list_articles() if a.external_id == external_id)


def offers(reply: Reply, article: int) -> bool:
    """The reply is that article's answer, or suggests it among others."""
    return reply.article_id == article or f"kb:{article}" in [b.payload for b in reply.buttons]


async def still_the_bots(crm, outcome: Outcome) -> bool:  # type: ignore[no-untyped-def]
    conversation = await crm.conversations.get(conversation_id=outcome.conversation_id)
    return conversation.status == ConversationStatus.BOT


async def test_a_short_returns_question_gets_the_returns_article(crm, engine: DialogueEngine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say(ZH_RETURNS, chat="c-returns"))
    (reply,) = outcome.replies
    assert (outcome.language, reply.intent) == ("zh", "ask_question")
    assert reply.decision in ("answer", "suggest") and offers(reply, await article_id(crm, "shop-zh-returns"))
    assert await still_the_bots(crm, outcome)  # no complaint ticket


async def test_a_short_opening_hours_question_gets_the_hours_article(crm, engine: DialogueEngine) -> None:  # type: ignore[no-untyped-def]
    outcome = await engine.handle(say(ZH_HOURS, chat="c-hours"))
    (reply,) = outcome.replies
    assert reply.intent == "ask_question"
    assert reply.decision in ("answer", "suggest") and offers(reply, await article_id(crm, "shop-zh-hours"))
    assert await still_the_bots(crm, outcome)  # no handoff


async def test_deleting_ones_account_shows_the_privacy_flow(crm, engine: DialogueEngine) -> None:  # type: ignore[no-untyped-def]
    hello = await engine.handle(say("你好", chat="c-delete"))
    await crm.customers.set_consent(customer_id=hello.customer_id, consent=True)
    outcome = await engine.handle(say(ZH_DELETE_ACCOUNT, chat="c-delete"))
    (reply,) = outcome.replies
    assert reply.intent == "privacy_request"
    assert reply.text.startswith(text("privacy_intro", "zh")) and "webchat" in reply.text
    assert [b.payload for b in reply.buttons] == ["pv:erase"]
    assert await crm.privacy.requests() == []  # nothing is erased before the customer confirms
    customer = await crm.customers.get(customer_id=outcome.customer_id)
    assert customer.marketing_consent is True  # not taken for an unsubscribe


async def test_delete_my_data_in_english_reaches_the_privacy_flow_and_opting_out_stays_apart(
        crm, engine: DialogueEngine) -> None:  # type: ignore[no-untyped-def]
    erase = await engine.handle(say("delete my data", chat="c-erase-en"))
    assert erase.replies[0].intent == "privacy_request"
    assert erase.replies[0].text.startswith(text("privacy_intro", "en"))

    await crm.customers.set_consent(customer_id=erase.customer_id, consent=True)
    opt_out = await engine.handle(say("I don't want your promotional stuff anymore", chat="c-erase-en"))
    assert (opt_out.replies[0].intent, opt_out.replies[0].text) == ("unsubscribe", text("stopped", "en"))
    assert (await crm.customers.get(customer_id=erase.customer_id)).marketing_consent is False
    assert await crm.privacy.requests() == []
