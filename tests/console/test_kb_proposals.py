"""Proposed phrasings in the console: the review page (both languages, content as written, a language filter), accept
and reject in one click with the row updated in place, refusals said on the row and never a 500, the KB gaps page
linking both ways with the pending count; and the two agent-side sources: a reply that used an article inserted
from agent assist, and "This question is answered by…" on a customer's message."""

from __future__ import annotations

import html
import re

import pytest

from crm_store.enums import SenderType
from tests.console.conftest import session_for

INVOICE = "Can I get an invoice for my order?"
FAPIAO = "可以开发票吗？"


async def headers_for(client, crm, who, *, htmx: bool = True) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = await session_for(crm, who, client)
    return {"X-CSRF-Token": token, **({"HX-Request": "true"} if htmx else {})}


@pytest.fixture
async def articles(crm):  # type: ignore[no-untyped-def]
    """The payment article in English and in Chinese."""
    en = await crm.knowledge.create_article(question="Which payment methods do you accept?", answer="Visa, PayPal.",
                                            language="en", alt_questions=("Can I pay with PayPal?",),
                                            status="published")
    zh = await crm.knowledge.create_article(question="支持哪些付款方式？", answer="支付宝、微信支付。", language="zh",
                                            status="published")
    return en, zh


def rows(page: str) -> dict[int, str]:
    """The review table's rows by proposal id."""
    return {int(pid): row for pid, row in re.findall(r'<tr id="proposal-(\d+)".*?>(.*?)</tr>', page, re.S)}


# --- the review page -----------------------------------------------------------------------------------------------


async def test_pending_proposals_are_listed_in_both_languages_as_written(client, crm, staff, articles) -> None:  # type: ignore[no-untyped-def]
    en, zh = articles
    linked = await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link", agent_id=staff.agent.id)
    liked = await crm.phrasings.propose(article_id=zh.id, text=FAPIAO, source="feedback")
    decided = await crm.phrasings.propose(article_id=en.id, text="bank transfer?", source="assist")
    await crm.phrasings.reject(proposal_id=decided.id)
    await session_for(crm, staff.supervisor, client)

    page = await client.get("/kb/proposals")
    assert page.status_code == 200
    listed = rows(page.text)
    assert list(listed) == [liked.id, linked.id]  # newest first, the decided one gone
    assert FAPIAO in listed[liked.id] and 'lang="zh"' in listed[liked.id]  # as the customer wrote it
    assert html.escape(INVOICE) in listed[linked.id]
    assert f'href="/kb/{en.id}"' in listed[linked.id] and "Which payment methods do you accept?" in listed[linked.id]
    assert "Linked by an agent" in listed[linked.id] and "by Agent" in listed[linked.id]
    assert "Customer&#39;s 👍 on a suggestion" in listed[liked.id]
    assert 'data-pending="all">2<' in page.text and 'data-pending="zh">1<' in page.text
    assert 'href="/kb/gaps"' in page.text

    chinese = await client.get("/kb/proposals?language=zh")
    assert list(rows(chinese.text)) == [liked.id]
    assert list(rows((await client.get("/kb/proposals?language=xx")).text)) == [liked.id, linked.id]


async def test_accept_and_reject_in_one_click_update_the_row_in_place(client, crm, staff, articles) -> None:  # type: ignore[no-untyped-def]
    en, zh = articles
    first = await crm.phrasings.propose(article_id=zh.id, text=FAPIAO, source="link")
    second = await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link")
    headers = await headers_for(client, crm, staff.supervisor)

    accepted = await client.post(f"/kb/proposals/{first.id}/accept", headers=headers)
    assert accepted.status_code == 200
    assert accepted.text.lstrip().startswith(f'<tr id="proposal-{first.id}"')
    assert 'data-status="accepted"' in accepted.text
    assert "Accepted" in accepted.text and "by Supervisor" in accepted.text and "<form" not in accepted.text
    assert FAPIAO in (await crm.knowledge.get(article_id=zh.id)).alt_questions

    rejected = await client.post(f"/kb/proposals/{second.id}/reject", headers=headers)
    assert rejected.status_code == 200 and 'data-status="rejected"' in rejected.text
    assert INVOICE not in (await crm.knowledge.get(article_id=en.id)).alt_questions
    assert rows((await client.get("/kb/proposals")).text) == {}


async def test_without_htmx_a_decision_redirects_to_the_page_with_a_notice(client, crm, staff, articles) -> None:  # type: ignore[no-untyped-def]
    en, _ = articles
    proposal = await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link")
    headers = await headers_for(client, crm, staff.admin, htmx=False)
    response = await client.post(f"/kb/proposals/{proposal.id}/accept", headers=headers)
    assert response.status_code == 303 and response.headers["location"] == "/kb/proposals?notice=accepted"
    page = await client.get(response.headers["location"])
    assert "Accepted: the question is one of the article" in page.text


async def test_a_proposal_decided_meanwhile_or_gone_is_said_on_its_row_never_a_500(client, crm, staff,  # type: ignore[no-untyped-def]
                                                                                   articles) -> None:
    en, _ = articles
    proposal = await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link")
    await crm.phrasings.accept(proposal_id=proposal.id)  # another supervisor was quicker
    headers = await headers_for(client, crm, staff.supervisor)

    late = await client.post(f"/kb/proposals/{proposal.id}/reject", headers=headers)
    assert late.status_code == 409
    assert f'id="proposal-{proposal.id}"' in late.text and "data-swap-errors" in late.text
    assert "This proposal was already accepted." in late.text and 'data-status="accepted"' in late.text
    gone = await client.post("/kb/proposals/999999/accept", headers=headers)
    assert gone.status_code == 404 and "There is no such proposal" in gone.text and "data-swap-errors" in gone.text

    plain = await client.post(f"/kb/proposals/{proposal.id}/accept", headers={"X-CSRF-Token": headers["X-CSRF-Token"]})
    assert plain.status_code == 409 and "This proposal was already accepted." in plain.text
    assert "<h1>Knowledge base</h1>" in plain.text  # the review page, with the error on it


async def test_only_who_may_edit_articles_reviews(client, crm, staff, articles) -> None:  # type: ignore[no-untyped-def]
    en, _ = articles
    proposal = await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link")
    headers = await headers_for(client, crm, staff.agent)
    assert (await client.get("/kb/proposals")).status_code == 403
    assert (await client.post(f"/kb/proposals/{proposal.id}/accept", headers=headers)).status_code == 403
    assert (await crm.phrasings.get(proposal_id=proposal.id)).status == "pending"


async def test_the_gaps_page_shows_the_pending_count_and_links_to_the_review(client, crm, staff, articles) -> None:  # type: ignore[no-untyped-def]
    en, zh = articles
    await session_for(crm, staff.supervisor, client)
    assert 'data-proposals-pending="0"' in (await client.get("/kb/gaps")).text
    await crm.phrasings.propose(article_id=en.id, text=INVOICE, source="link")
    await crm.phrasings.propose(article_id=zh.id, text=FAPIAO, source="link")
    gaps = await client.get("/kb/gaps")
    assert gaps.status_code == 200
    assert 'data-proposals-pending="2"' in gaps.text and "<strong>2</strong> questions" in gaps.text
    assert 'href="/kb/proposals"' in gaps.text


# --- the agent-side sources ----------------------------------------------------------------------------------------


@pytest.fixture
async def missed(crm, staff):  # type: ignore[no-untyped-def]
    """A customer asked about an invoice, the bot had no answer, they asked for a person: a ticket."""
    asked = await crm.conversations.record_incoming(channel="webchat", external_id="v-9", text=INVOICE,
                                                    display_name="Mia")
    cid = asked.conversation.id
    await crm.conversations.record_outgoing(conversation_id=cid, sender=SenderType.BOT, text="Sorry…",
                                            payload={"decision": "no_answer", "buttons": []})
    pressed = await crm.conversations.record_incoming(channel="webchat", external_id="v-9", text="",
                                                      payload={"button": "human:yes"})
    await crm.conversations.hand_off(conversation_id=cid, reason="customer_asked", intent="human_handoff")
    await crm.conversations.record_outgoing(conversation_id=cid, sender=SenderType.BOT, text="A person…",
                                            intent="human_handoff", payload={"decision": "handoff"})
    return asked, pressed


async def test_a_reply_that_used_an_inserted_article_proposes_the_missed_question(client, crm, staff, articles,  # type: ignore[no-untyped-def]
                                                                                   missed) -> None:
    en, _ = articles
    asked, _ = missed
    cid = asked.conversation.id
    headers = await headers_for(client, crm, staff.agent)
    page = await client.get(f"/conversations/{cid}")
    assert '<input type="hidden" name="article_id" value="" data-reply-article>' in page.text

    plain = await client.post(f"/conversations/{cid}/reply", headers=headers, data={"text": "Let me check."})
    assert plain.status_code == 200 and await crm.phrasings.pending() == []
    for forged in ("abc", "0", "99999999999", "²"):  # not an article id: the reply still goes out
        sent = await client.post(f"/conversations/{cid}/reply", headers=headers,
                                 data={"text": "One moment", "article_id": forged})
        assert sent.status_code == 200
    assert await crm.phrasings.pending() == []

    reply = await client.post(f"/conversations/{cid}/reply", headers=headers,
                              data={"text": "We accept Visa and PayPal.", "article_id": str(en.id)})
    assert reply.status_code == 200 and f'href="/kb/{en.id}">used article #{en.id}' in reply.text
    (proposal,) = await crm.phrasings.pending()
    assert (proposal.text, proposal.article_id, proposal.source) == (INVOICE, en.id, "assist")
    assert (proposal.message_id, proposal.proposed_by_agent_id) == (asked.message.id, staff.agent.id)


async def test_an_agent_links_a_customer_message_to_the_article_that_answers_it(client, crm, staff, articles,  # type: ignore[no-untyped-def]
                                                                               missed) -> None:
    en, zh = articles
    asked, pressed = missed
    cid, mid = asked.conversation.id, asked.message.id
    headers = await headers_for(client, crm, staff.agent)
    page = (await client.get(f"/conversations/{cid}")).text
    action = f"/conversations/{cid}/messages/{mid}/answered-by"
    assert "This question is answered by…" in page and f'action="{action}"' in page
    assert f"/messages/{pressed.message.id}/answered-by" not in page  # a button press is no question

    picker = await client.get(f"{action}?q=payment", headers=headers)
    assert picker.status_code == 200
    assert "Which payment methods do you accept?" in picker.text and f'name="article_id" value="{en.id}"' in picker.text
    assert "Type a few words" in (await client.get(action, headers=headers)).text
    assert "No published article matches" in (await client.get(f"{action}?q=zzzz", headers=headers)).text

    linked = await client.post(action, headers=headers, data={"article_id": str(en.id)})
    assert linked.status_code == 200 and "Proposed as a phrasing of" in linked.text
    (proposal,) = await crm.phrasings.pending()
    assert (proposal.text, proposal.source, proposal.message_id, proposal.proposed_by_agent_id) == (
        INVOICE, "link", mid, staff.agent.id)

    again = await client.post(action, headers=headers, data={"article_id": str(en.id)})
    assert again.status_code == 409 and "already waiting for review" in again.text
    other_language = await client.post(action, headers=headers, data={"article_id": str(zh.id)})
    assert other_language.status_code == 409 and "article's language" in other_language.text
    for bad, status in (("", 400), ("x", 400), ("999999", 404)):
        response = await client.post(action, headers=headers, data={"article_id": bad})
        assert response.status_code == status, (bad, response.text)
    elsewhere = await crm.conversations.record_incoming(channel="webchat", external_id="v-10", text="Hi")
    foreign = f"/conversations/{cid}/messages/{elsewhere.message.id}/answered-by"
    assert (await client.post(foreign, headers=headers, data={"article_id": str(en.id)})).status_code == 404
    assert len(await crm.phrasings.pending()) == 1
