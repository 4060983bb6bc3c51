"""Phrasings learned from conversations: proposals (from a text, a customer's message, an agent's reply that used an
article), the rules that keep them from repeating, and a supervisor's accept (the article's new version, the KB's
revision, kb.changed, the audit log) or reject."""

from __future__ import annotations

import asyncio
import typing

import pytest

from crm_store.enums import AuditAction, ProposalSource, SenderType
from crm_store.errors import InvalidTransition, NotFound
from crm_store.events import KnowledgeBaseChanged
from crm_store.services.knowledge import MAX_QUESTION
from crm_store.services.phrasings import NotProposed, phrasing_key
from tests.support import make_agent, make_chat

INVOICE = "Can I get an invoice for my order?"


async def make_article(crm, *, question: str = "Which payment methods do you accept?", language: str = "en",  # type: ignore[no-untyped-def]
                       alt_questions: tuple[str, ...] = ("Can I pay with PayPal?",), status: str = "published"):
    """A published article (factory)."""
    return await crm.knowledge.create_article(question=question, answer="Visa, PayPal and Alipay.",
                                              language=language, alt_questions=alt_questions, status=status)


def changes(bus) -> list[KnowledgeBaseChanged]:  # type: ignore[no-untyped-def]
    return typing.cast(list[KnowledgeBaseChanged], bus.of(KnowledgeBaseChanged))


# --- proposing -------------------------------------------------------------------------------------------------


async def test_a_question_is_proposed_for_the_article_that_answered_it(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    agent = await make_agent(crm)
    proposal = await crm.phrasings.propose(article_id=article.id, text=f"  {INVOICE}\n", source="link",
                                           agent_id=agent.id)
    assert (proposal.text, proposal.language, proposal.source, proposal.status) == (INVOICE, "en", "link", "pending")
    assert (proposal.article_id, proposal.article_question) == (article.id, article.question)
    assert proposal.proposed_by_agent_id == agent.id and proposal.decided_at is None
    assert [p.id for p in await crm.phrasings.pending()] == [proposal.id]
    assert await crm.phrasings.counts() == {"en": 1}


@pytest.mark.parametrize("text", [
    "Which payment methods do you accept?",  # the article's question
    "which payment methods do you accept",  # case and punctuation aside
    "  WHICH   payment methods, do you accept?!  ",
    "can i pay with paypal",  # one of its phrasings
    "Can I pay with PayPal ？",  # full-width punctuation
])
async def test_a_text_the_article_already_has_is_not_proposed(crm, text: str) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    with pytest.raises(NotProposed, match="already has this question"):
        await crm.phrasings.propose(article_id=article.id, text=text, source="link")
    assert await crm.phrasings.pending() == []


async def test_a_pending_text_is_not_proposed_again_and_a_rejected_one_never_again(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    other = await make_article(crm, question="How do I track my order?", alt_questions=())
    first = await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="assist")
    with pytest.raises(NotProposed, match="already waiting for review"):
        await crm.phrasings.propose(article_id=article.id, text="can i get an INVOICE for my order", source="link")
    await crm.phrasings.reject(proposal_id=first.id)
    with pytest.raises(NotProposed, match="rejected for this article before"):
        await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="feedback")
    # Another article may still get it: rejected for one article is not rejected for all.
    elsewhere = await crm.phrasings.propose(article_id=other.id, text=INVOICE, source="link")
    assert [p.id for p in await crm.phrasings.pending()] == [elsewhere.id]


async def test_the_same_question_proposed_twice_at_once_is_proposed_once(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    outcomes = await asyncio.gather(
        *(crm.phrasings.propose(article_id=article.id, text=text, source="link")
          for text in (INVOICE, INVOICE.upper(), INVOICE + "!")), return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, NotProposed) for o in outcomes if isinstance(o, BaseException)), outcomes
    assert len(await crm.phrasings.pending()) == 1


async def test_texts_are_trimmed_onto_one_line_and_capped_at_the_alt_question_limit(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    spaced = await crm.phrasings.propose(article_id=article.id, text="\n do you\n\n take   bank transfers?\t",
                                         source="link")
    assert spaced.text == "do you take bank transfers?"
    long = await crm.phrasings.propose(article_id=article.id, text="can I pay " + "x" * 2 * MAX_QUESTION,
                                       source="link")
    assert len(long.text) == MAX_QUESTION and long.text.startswith("can I pay x")
    # ... and the accepted phrasing fits the article (the store's own limit would refuse a longer one).
    accepted = await crm.phrasings.accept(proposal_id=long.id)
    assert long.text in (await crm.knowledge.get(article_id=accepted.article_id)).alt_questions


@pytest.mark.parametrize(("language", "text", "refused"), [
    ("en", "可以开发票吗？", "in Chinese and the article in English"),
    ("zh", "Can I get an invoice?", "in English and the article in Chinese"),
    ("en", "?!  …", "no words"),
])
async def test_a_text_that_could_never_match_its_article_is_not_proposed(crm, language: str, text: str,  # type: ignore[no-untyped-def]
                                                                         refused: str) -> None:
    article = await make_article(crm, question="支持哪些付款方式？" if language == "zh" else "Which cards?",
                                 language=language, alt_questions=())
    with pytest.raises(NotProposed, match=refused):
        await crm.phrasings.propose(article_id=article.id, text=text, source="link")


async def test_a_customer_message_is_proposed_from_its_conversation_only(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    chat = await make_chat(crm, text=INVOICE)
    other = await make_chat(crm, external_id="2002", text="hello")
    bot = await crm.conversations.record_outgoing(conversation_id=chat.conversation.id, sender=SenderType.BOT,
                                                  text="Sorry, I don't know.")
    with pytest.raises(NotFound):  # not a message of that conversation
        await crm.phrasings.propose(article_id=article.id, source="link", conversation_id=other.conversation.id,
                                    message_id=chat.message.id)
    with pytest.raises(NotFound):  # the bot's words are no customer question
        await crm.phrasings.propose(article_id=article.id, source="link", message_id=bot.message.id)
    with pytest.raises(NotFound):
        await crm.phrasings.propose(article_id=article.id + 99, source="link", message_id=chat.message.id)
    proposal = await crm.phrasings.propose(article_id=article.id, source="link",
                                           conversation_id=chat.conversation.id, message_id=chat.message.id)
    assert (proposal.text, proposal.conversation_id, proposal.message_id) == (
        INVOICE, chat.conversation.id, chat.message.id)


# --- from an agent's reply that used an article (agent assist) ------------------------------------------------------


async def say(crm, text: str = "", *, button: str | None = None, chat: str = "77"):  # type: ignore[no-untyped-def]
    return await crm.conversations.record_incoming(channel="webchat", external_id=chat, text=text,
                                                   payload={"button": button} if button else None)


async def bot_says(crm, conversation_id: int, decision: str, *, intent: str | None = None,  # type: ignore[no-untyped-def]
                   buttons: tuple[str, ...] = ()) -> None:
    await crm.conversations.record_outgoing(
        conversation_id=conversation_id, sender=SenderType.BOT, text=f"({decision})", intent=intent,
        payload={"decision": decision, "buttons": [{"label": b, "payload": b} for b in buttons]},
    )


async def test_an_agent_reply_with_an_article_proposes_the_questions_the_bot_missed(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    agent = await make_agent(crm)
    answered = await say(crm, "how long does shipping take?")
    conversation = answered.conversation.id
    await bot_says(crm, conversation, "answer")
    no_answer = await say(crm, INVOICE)
    await bot_says(crm, conversation, "no_answer", buttons=("human:no",))
    await say(crm, button="human:no")
    await bot_says(crm, conversation, "flow")
    ignored = await say(crm, "do you take bank transfers")  # a "did you mean" they did not take
    await bot_says(crm, conversation, "suggest", buttons=("kb:1", "kb:none"))
    taken = await say(crm, "paying with paypal?")  # a "did you mean" they took: the bot answered it
    await bot_says(crm, conversation, "suggest", buttons=("kb:1", "kb:none"))
    await say(crm, button=f"kb:{article.id}")
    await bot_says(crm, conversation, "answer")
    liked_then_not = await say(crm, "what about apple pay")  # answered, 👎, then a person: it ended in a handoff
    await bot_says(crm, conversation, "answer")
    await say(crm, button=f"fb:down:{article.id}")
    await bot_says(crm, conversation, "flow")
    await say(crm, button="human:yes")
    await bot_says(crm, conversation, "handoff", intent="human_handoff")
    await say(crm, "/human")  # a command
    await say(crm, "human")  # asked for a person: no question
    await bot_says(crm, conversation, "handoff", intent="human_handoff")
    await say(crm, "hello? anyone there?")  # while agents own it the bot is silent: not a miss
    private = await crm.conversations.add_note(conversation_id=conversation, agent_id=agent.id, text="invoice?")

    sent = await crm.conversations.record_outgoing(conversation_id=conversation, sender=SenderType.AGENT,
                                                   agent_id=agent.id, text="We accept ...", kb_article_id=article.id)
    proposals = await crm.phrasings.propose_from_reply(message_id=sent.message.id)
    assert [p.message_id for p in proposals] == [no_answer.message.id, ignored.message.id,
                                                 liked_then_not.message.id]
    assert {p.source for p in proposals} == {"assist"} and {p.proposed_by_agent_id for p in proposals} == {agent.id}
    assert taken.message.id not in {p.message_id for p in proposals}
    # Sent again (another reply with the same article): nothing new, nothing twice.
    again = await crm.conversations.record_outgoing(conversation_id=conversation, sender=SenderType.AGENT,
                                                    agent_id=agent.id, text="...", kb_article_id=article.id)
    assert await crm.phrasings.propose_from_reply(message_id=again.message.id) == []
    # A note, a reply without an article, or one with an unknown article proposes nothing.
    plain = await crm.conversations.record_outgoing(conversation_id=conversation, sender=SenderType.AGENT,
                                                    agent_id=agent.id, text="Anything else?")
    gone = await crm.conversations.record_outgoing(conversation_id=conversation, sender=SenderType.AGENT,
                                                   agent_id=agent.id, text="...", kb_article_id=article.id + 99)
    for message_id in (private.id, plain.message.id, gone.message.id, 999_999):
        assert await crm.phrasings.propose_from_reply(message_id=message_id) == []
    assert len(await crm.phrasings.pending()) == 3


async def test_a_reply_proposes_at_most_the_latest_three_misses(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    asked = []
    for text in ("invoice please", "a receipt?", "VAT invoice", "company invoice"):
        asked.append(await say(crm, text, chat="88"))
        await bot_says(crm, asked[0].conversation.id, "no_answer")
    sent = await crm.conversations.record_outgoing(conversation_id=asked[0].conversation.id,
                                                   sender=SenderType.AGENT, text="...", kb_article_id=article.id)
    proposals = await crm.phrasings.propose_from_reply(message_id=sent.message.id)
    assert [p.text for p in proposals] == ["a receipt?", "VAT invoice", "company invoice"]


# --- deciding --------------------------------------------------------------------------------------------------


async def test_accepting_adds_the_phrasing_bumps_version_and_revision_and_publishes_kb_changed(crm, bus) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    supervisor = await make_agent(crm, email="sup@example.com", role="supervisor")
    proposal = await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="link")
    revision, published = await crm.knowledge.revision(), len(changes(bus))

    accepted = await crm.phrasings.accept(proposal_id=proposal.id, agent_id=supervisor.id)

    assert (accepted.status, accepted.decided_by_agent_id) == ("accepted", supervisor.id)
    assert accepted.decided_at is not None
    after = await crm.knowledge.get(article_id=article.id)
    assert after.alt_questions == (*article.alt_questions, INVOICE)
    assert after.version == article.version + 1
    assert await crm.knowledge.revision() == revision + 1
    (event,) = changes(bus)[published:]
    assert (event.revision, event.article_ids) == (revision + 1, [article.id])
    assert await crm.phrasings.pending() == [] and await crm.phrasings.counts() == {}
    # Now a phrasing of the article: never proposed again.
    with pytest.raises(NotProposed, match="already has this question"):
        await crm.phrasings.propose(article_id=article.id, text=INVOICE.lower(), source="feedback")
    (entry,) = (await crm.audit.search(action=AuditAction.PHRASING_ACCEPTED)).entries
    assert (entry.agent_id, entry.subject_type, entry.subject_id) == (supervisor.id, "kb_article", str(article.id))
    assert entry.details["proposal_id"] == proposal.id and "invoice" not in str(entry.details).lower()


async def test_rejecting_changes_no_article_and_records_who(crm, bus) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    supervisor = await make_agent(crm, email="sup@example.com", role="supervisor")
    proposal = await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="link")
    revision, published = await crm.knowledge.revision(), len(changes(bus))
    rejected = await crm.phrasings.reject(proposal_id=proposal.id, agent_id=supervisor.id)
    assert (rejected.status, rejected.decided_by_agent_id) == ("rejected", supervisor.id)
    assert await crm.knowledge.get(article_id=article.id) == article
    assert await crm.knowledge.revision() == revision and len(changes(bus)) == published
    (entry,) = (await crm.audit.search(action=AuditAction.PHRASING_REJECTED)).entries
    assert entry.agent_id == supervisor.id and entry.details["proposal_id"] == proposal.id


async def test_a_decided_proposal_cannot_be_decided_again(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    proposal = await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="link")
    await crm.phrasings.accept(proposal_id=proposal.id)
    version = (await crm.knowledge.get(article_id=article.id)).version
    for decide in (crm.phrasings.accept, crm.phrasings.reject):
        with pytest.raises(InvalidTransition, match="already accepted"):
            await decide(proposal_id=proposal.id)
    assert (await crm.knowledge.get(article_id=article.id)).version == version
    with pytest.raises(NotFound):
        await crm.phrasings.accept(proposal_id=proposal.id + 99)


async def test_accepting_what_an_editor_added_meanwhile_changes_nothing_more(crm, bus) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    proposal = await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="link")
    by_hand = [*article.alt_questions, "can i get an INVOICE for my order"]  # the same, as an editor typed it
    edited = await crm.knowledge.update_article(article_id=article.id, alt_questions=by_hand)
    revision = await crm.knowledge.revision()
    accepted = await crm.phrasings.accept(proposal_id=proposal.id)
    assert accepted.status == "accepted"
    assert await crm.knowledge.get(article_id=article.id) == edited and await crm.knowledge.revision() == revision


async def test_accepting_for_a_draft_article_adds_the_phrasing_without_moving_search(crm, bus) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm, status="draft")
    proposal = await crm.phrasings.propose(article_id=article.id, text=INVOICE, source="link")
    revision = await crm.knowledge.revision()
    await crm.phrasings.accept(proposal_id=proposal.id)
    assert INVOICE in (await crm.knowledge.get(article_id=article.id)).alt_questions
    assert await crm.knowledge.revision() == revision


async def test_pending_is_listed_newest_first_by_language_and_counted(crm) -> None:  # type: ignore[no-untyped-def]
    en = await make_article(crm)
    zh = await make_article(crm, question="支持哪些付款方式？", language="zh", alt_questions=("可以用支付宝吗？",))
    first = await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link")
    second = await crm.phrasings.propose(article_id=zh.id, text="可以开发票吗？", source="assist")
    third = await crm.phrasings.propose(article_id=zh.id, text="能开增值税发票吗", source="feedback")
    decided = await crm.phrasings.propose(article_id=en.id, text="do you take bank transfers", source="link")
    await crm.phrasings.reject(proposal_id=decided.id)
    assert [p.id for p in await crm.phrasings.pending()] == [third.id, second.id, first.id]
    assert [p.text for p in await crm.phrasings.pending(language="zh")] == ["能开增值税发票吗", "可以开发票吗？"]
    assert [p.id for p in await crm.phrasings.pending(language="en")] == [first.id]
    assert await crm.phrasings.counts() == {"en": 1, "zh": 2}
    assert [p.id for p in await crm.phrasings.list_proposals(status="rejected")] == [decided.id]


async def test_an_erased_customer_takes_their_proposed_questions_with_them(crm) -> None:  # type: ignore[no-untyped-def]
    article = await make_article(crm)
    chat = await make_chat(crm, text="Can I get an invoice? I'm Gwendolyn Fairweather")
    await crm.phrasings.propose(article_id=article.id, source="link", message_id=chat.message.id)
    keeper = await make_chat(crm, external_id="3003", text=INVOICE)
    kept = await crm.phrasings.propose(article_id=article.id, source="link", message_id=keeper.message.id)
    exported = await crm.privacy.export(customer_id=chat.customer_id)
    assert len(exported.tables["kb_phrasing_proposals"]) == 1
    await crm.privacy.erase(customer_id=chat.customer_id)
    assert [p.id for p in await crm.phrasings.pending()] == [kept.id]


def test_phrasings_compare_without_case_spaces_or_punctuation() -> None:
    assert phrasing_key("Can I pay with PayPal?") == phrasing_key(" can i pay   with paypal ") == "canipaywithpaypal"
    assert phrasing_key("可以用支付宝吗？") == phrasing_key("可以用 支付宝吗?") == "可以用支付宝吗"
    assert phrasing_key("Can I pay with PayPal?") != phrasing_key("Can I pay with Alipay?")
    assert ProposalSource("feedback") == "feedback"
