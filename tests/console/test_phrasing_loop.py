"""The bot learns from its agents, end to end, in English and in Chinese: a customer asks the web chat a question the
sample shop's knowledge base cannot answer today, and asks for a person; an agent finds the right article with agent
assist, inserts it and sends the reply (the console's route); a supervisor accepts the proposed phrasing on the
review page; the kb.changed event reaches the bot's knowledge base through the event bus (in-process, or Redis
Streams with KEFU_TEST_REDIS_URL), as in production, and the same question from another customer is answered with
that article. The real encoders, Kefu's trained NLU and the real database (PostgreSQL with KEFU_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.engine import DialogueEngine
from bot.webchat import WebchatHub, create_webchat_app
from crm_store.bus import build_event_bus
from crm_store.crm import CRM
from kefu.runtime import open_knowledge_base
from kefu.sample_kb import load_sample_kb
from nlu.pipeline import NluModel
from nlu.service import LocalNlu
from tests.console.conftest import BASE, session_for

# (language, a question the sample shop's KB has no answer for, what the agent searches in agent assist, the
# article that answers it)
CASES = [
    ("en", "Can you send me an invoice?", "payment methods", "shop-en-payment"),
    ("zh", "可以开发票吗？", "付款方式", "shop-zh-payment"),
]


@pytest.fixture
async def shop(db, settings, encoders, nlu_model_dir: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The bot and the console on one CRM and one real event bus, each with its own knowledge base (as two
    processes are; the bot's kept fresh by kb.changed), the sample shop's articles loaded."""
    stream = f"kefu-test:loop:{uuid.uuid4().hex}"
    bus = build_event_bus(settings.redis_url, stream=stream)
    crm = CRM(db=db, events=bus, settings=settings)
    await load_sample_kb(crm)
    bot_kb = await open_knowledge_base(crm, encoders=encoders)  # follow_changes: a broadcast of kb.changed
    # The console's own KB serves agent assist only, before anything changes: it need not rebuild (a rebuild
    # re-fits the KB's matcher, tens of seconds of CPU on a busy machine, beside the bot's).
    console_kb = await open_knowledge_base(crm, follow_changes=False, encoders=encoders)
    engine = DialogueEngine(crm=crm, kb=bot_kb, nlu=LocalNlu(NluModel.load(nlu_model_dir, encoders=encoders)))
    try:
        yield {"crm": crm, "bus": bus, "engine": engine, "bot_kb": bot_kb, "console_kb": console_kb}
    finally:
        await bus.close()
        if settings.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(settings.redis_url)
            await client.delete(stream)
            await client.aclose()


async def ask(chat: httpx.AsyncClient, visitor: str, **body: str) -> dict[str, Any]:
    response = await chat.post("/webchat/api/messages", json={"visitor_id": visitor, **body})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("language", "question", "search", "external_id"), CASES, ids=[c[0] for c in CASES])
async def test_a_question_the_bot_missed_is_answered_once_a_supervisor_accepts_the_agents_article(  # type: ignore[no-untyped-def]
        shop, attach, staff, language: str, question: str, search: str, external_id: str) -> None:
    crm, engine = shop["crm"], shop["engine"]
    (article,) = [a for a in await crm.knowledge.published_articles() if a.external_id == external_id]
    app = attach(crm, kb=shop["console_kb"])
    await shop["bus"].start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_webchat_app(engine, WebchatHub())),
                                 base_url="http://chat.test", timeout=60) as chat, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, timeout=60) as console:
        # 1. A customer asks; the bot has no answer today (nothing, or a weak "did you mean" without the article).
        asked = await ask(chat, "first-customer", text=question)
        (missed,) = asked["replies"]
        assert missed["decision"] in ("no_answer", "suggest"), missed
        assert f"kb:{article.id}" not in [b["payload"] for b in missed["buttons"]]
        assert asked["language"] == language
        handed = await ask(chat, "first-customer", text="/human")
        assert handed["replies"][0]["decision"] == "handoff"
        conversation = asked["conversation_id"]

        # 2. An agent finds the article with agent assist, inserts it into the reply and sends it.
        headers = {"X-CSRF-Token": await session_for(crm, staff.agent, console), "HX-Request": "true"}
        assist = await console.get(f"/conversations/{conversation}/assist", params={"q": search})
        insert = re.search(rf'data-insert="([^"]*)" data-article="{article.id}"', assist.text)
        assert insert, assist.text
        answer = html.unescape(insert.group(1))
        sent = await console.post(f"/conversations/{conversation}/reply", headers=headers,
                                  data={"text": answer, "article_id": str(article.id)})
        assert sent.status_code == 200, sent.text

        # 3. A supervisor accepts the proposed phrasing on the review page.
        headers = {"X-CSRF-Token": await session_for(crm, staff.supervisor, console), "HX-Request": "true"}
        review = await console.get("/kb/proposals", params={"language": language})
        row = re.search(r'<tr id="proposal-(\d+)".*?</tr>', review.text, re.S)
        assert row and question in html.unescape(row.group(0)) and f'href="/kb/{article.id}"' in row.group(0)
        accepted = await console.post(f"/kb/proposals/{row.group(1)}/accept", headers=headers)
        assert accepted.status_code == 200 and 'data-status="accepted"' in accepted.text

        # 4. kb.changed reaches the bot's knowledge base through the bus; another customer asks the same question.
        revision = await crm.knowledge.revision()
        for _ in range(1800):  # the bot's KB is rebuilt by its kb.changed handler (a few seconds), not by this test
            if shop["bot_kb"].revision == revision:
                break
            await asyncio.sleep(0.1)
        assert shop["bot_kb"].revision == revision
        again = await ask(chat, "second-customer", text=question)
        (answered,) = again["replies"]
        assert (answered["decision"], answered["article_id"]) == ("answer", article.id), answered
        assert again["conversation_id"] != conversation
