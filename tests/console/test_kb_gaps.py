"""The KB gaps page through the console's ASGI app, with the real encoders: the bot's misses grouped into topics with
counts, a "write an article" link that opens the form pre-filled, and who may open it."""

from __future__ import annotations

import html
import re

import pytest

from crm_store.enums import SenderType
from knowledge_base.service import KnowledgeBase
from knowledge_base.settings import KbSettings
from tests.console.conftest import session_for

# (customer's chat, question, the bot's decision, its confidence): what the bot could and could not answer.
EXCHANGES = [
    ("c1", "Can I pay with PayPal?", "no_answer", None),
    ("c2", "do you take paypal", "no_answer", None),
    ("c3", "PayPal accepted?", "suggest", 0.2),  # a weak "did you mean" counts as unanswered
    ("c1", "can I pay with paypal", "no_answer", None),  # the same customer, near-identical words
    ("c4", "可以用支付宝付款吗", "no_answer", None),
    ("c5", "支持支付宝支付吗？", "no_answer", None),
    ("c6", "Is the website down?", "no_answer", None),
    ("c7", "Do you accept PayPal?", "suggest", 0.9),  # a confident suggestion: answered
    ("c8", "Where is my order?", "answer", 0.95),
]


@pytest.fixture
def app(crm, attach, encoders):  # type: ignore[no-untyped-def]
    return attach(crm, kb=KnowledgeBase(crm.knowledge, KbSettings(), encoders=encoders))


@pytest.fixture
async def seeded(crm) -> None:  # type: ignore[no-untyped-def]
    for chat, question, decision, confidence in EXCHANGES:
        asked = await crm.conversations.record_incoming(channel="telegram", external_id=chat, text=question)
        await crm.conversations.record_outgoing(conversation_id=asked.conversation.id, sender=SenderType.BOT,
                                                text="…", payload={"decision": decision}, confidence=confidence)
    pressed = await crm.conversations.record_incoming(channel="telegram", external_id="c9", text="PayPal?",
                                                      payload={"button": "kb:none"})  # a button, not a question
    await crm.conversations.record_outgoing(conversation_id=pressed.conversation.id, sender=SenderType.BOT,
                                            text="…", payload={"decision": "no_answer"})


def topics(page: str) -> list[tuple[str, int, list[str]]]:
    """(central question, times asked, other phrasings) of each row of the gaps table."""
    rows = re.findall(r'<tr data-topic="\d+">(.*?)</tr>', page, re.S)
    return [(html.unescape(re.search(r"<strong>(.*?)</strong>", row).group(1)),  # type: ignore[union-attr]
             int(re.search(r"<td class=\"num\" data-count>(\d+)</td>", row).group(1)),  # type: ignore[union-attr]
             [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", row)]) for row in rows]


async def test_the_misses_are_listed_by_topic_with_counts(client, crm, staff, seeded) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.supervisor, client)
    page = await client.get("/kb/gaps")
    assert page.status_code == 200
    found = {label: (count, sorted(others)) for label, count, others in topics(page.text)}
    paypal = next(label for label in found if "paypal" in label.casefold())
    alipay = next(label for label in found if "支付宝" in label)
    assert found[paypal] == (4, sorted({"Can I pay with PayPal?", "can I pay with paypal", "do you take paypal",
                                        "PayPal accepted?"} - {paypal, "Can I pay with PayPal?"}))
    assert found[alipay] == (2, sorted({"可以用支付宝付款吗", "支持支付宝支付吗？"} - {alipay}))
    assert found["Is the website down?"] == (1, [])
    assert len(found) == 3  # the confident answers and the button press are not gaps
    assert [count for _, count, _ in topics(page.text)] == [4, 2, 1]
    assert "7 questions in 3 topics" in page.text
    assert 'href="/kb/gaps" aria-current="page"' in page.text  # the KB section's tab
    dashboard = await client.get("/dashboard")
    assert re.search(r'href="/kb/gaps\?period=custom&amp;start=[\d-]+&amp;end=[\d-]+"', dashboard.text)


async def test_write_an_article_opens_the_form_pre_filled_in_the_topic_s_language(client, crm, staff, seeded) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.supervisor, client)
    page = (await client.get("/kb/gaps")).text
    rows = re.findall(r'<tr data-topic="\d+">(.*?)</tr>', page, re.S)
    alipay_row = next(row for row in rows if "支付宝" in row)
    href = html.unescape(re.search(r'href="(/kb/new\?[^"]+)"[^>]*>Write an article', alipay_row).group(1))  # type: ignore[union-attr]
    form = await client.get(href)
    assert form.status_code == 200
    question = html.unescape(re.search(r'name="question"[^>]*value="([^"]*)"', form.text).group(1))  # type: ignore[union-attr]
    alternatives = html.unescape(re.search(r'name="alt_questions"[^>]*>([^<]*)</textarea>', form.text).group(1))  # type: ignore[union-attr]
    assert {question, *alternatives.splitlines()} == {"可以用支付宝付款吗", "支持支付宝支付吗？"}
    assert 'value="zh" checked' in form.text


async def test_only_those_who_may_edit_the_kb_see_its_gaps(client, crm, staff, seeded) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.agent, client)
    refused = await client.get("/kb/gaps")
    assert refused.status_code == 403 and "支付宝" not in refused.text
    assert 'href="/kb/gaps"' not in (await client.get("/kb")).text


async def test_a_bad_range_is_explained(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.admin, client)
    backwards = await client.get("/kb/gaps", params={"period": "custom", "start": "2024-03-03", "end": "2024-03-01"})
    assert backwards.status_code == 400 and "ends before it starts" in backwards.text
