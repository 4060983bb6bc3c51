"""`/privacy` in the chat (the real web chat server): the customer sees what is stored and asks for erasure; an
admin erases them. Then nothing anywhere holds their name, e-mail or phone: no table (every column of every row),
no message text, not the knowledge base's live search index nor the cache of questions asked, not the NLU model,
not the chat's state; and the audit log still says the erasure happened."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crm_store.enums import AuditAction
from crm_store.events import CustomerErased
from tests.bot import test_webchat
from tests.bot.conftest import Stack
from tests.bot.test_linking_flow import say, texts
from tests.support import personal_data_left

served = test_webchat.served

NAME = "Philippa Quenby-Harrow"
EMAIL = "p.quenby.harrow@example.net"
PHONE = "+44 20 7946 0321"
NEEDLES = [NAME, "Quenby", EMAIL, PHONE, "2079460321"]
VISITOR = "v-privacy-1"


def files_naming(folder: Path, needles: list[str]) -> list[Path]:
    """The files under `folder` whose bytes hold one of `needles` (case aside)."""
    return [path for path in folder.rglob("*") if path.is_file()
            and any(n.lower() in path.read_bytes().decode("utf-8", "ignore").lower() for n in needles)]


def index_texts(stack: Stack) -> str:
    """Everything the bot's live knowledge-base index can match: every phrasing, question and answer."""
    kb = stack.engine.kb
    parts = []
    for segment in kb.segments.values():
        parts += list(segment.texts)
        parts += [f"{a.question}\n{a.answer}" for a in segment.articles]
    return "\n".join(parts).lower()


async def test_privacy_shows_the_data_and_erasure_leaves_nothing_behind(
        served: test_webchat.Served, stack: Stack, db, nlu_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    crm = stack.crm
    customer = await crm.customers.create(name=NAME, email=EMAIL, phone=PHONE, marketing_consent=True)
    code = (await crm.customers.create_link_token(customer_id=customer.id)).token
    assert "Philippa" in texts(await say(served, VISITOR, f"/link {code}"))
    await say(served, VISITOR, f"Hello, this is {NAME}: please write to {EMAIL} or call {PHONE} about my parcel")
    # An agent drafted an article from the customer's own words and published it: it is in the live index.
    await crm.knowledge.create_article(question="Where is my parcel?", answer="See Orders › Track.", language="en",
                                       status="published", alt_questions=[f"parcel for {EMAIL}"])
    await stack.engine.kb.refresh()
    assert EMAIL in index_texts(stack)
    stack.engine.kb.cluster_questions([])  # the cache of asked questions exists (filled by the gaps page)

    shown = await say(served, VISITOR, "/privacy")
    body = texts(shown)
    assert NAME in body and EMAIL in body and PHONE in body and "webchat" in body
    assert [b["payload"] for b in shown["replies"][0]["buttons"]] == ["pv:erase"]
    confirm = await say(served, VISITOR, payload="pv:erase")
    assert {b["payload"] for b in confirm["replies"][0]["buttons"]} == {"pv:confirm", "pv:keep"}
    assert "nothing was changed" in texts(await say(served, VISITOR, payload="pv:keep"))
    assert await crm.privacy.requests() == []
    requested = await say(served, VISITOR, payload="pv:confirm")
    (request,) = await crm.privacy.requests()
    assert f"#{request.id}" in texts(requested) and request.customer_id == customer.id
    assert "being processed" in texts(await say(served, VISITOR, "/privacy"))
    assert len(await personal_data_left(db, NEEDLES)) > 5
    admin = await crm.agents.create_agent(email="dpo@example.com", name="DPO", password="correct horse",
                                          role="admin")
    # An agent's reply names them: on Redis, the event stream holds its text until the erasure deletes it.
    await crm.conversations.record_outgoing(conversation_id=shown["conversation_id"], sender="agent",
                                            agent_id=admin.id, text=f"Dear {NAME}, we will call {PHONE}")
    if hasattr(stack.bus, "redis"):
        assert NAME in repr(await stack.bus.redis.xrange(stack.bus.stream))
    report = await crm.privacy.erase(customer_id=customer.id, agent_id=admin.id, actor_label=admin.email)

    # Every table, every column (message texts, JSON payloads, the stored updates) holds none of it.
    assert await personal_data_left(db, NEEDLES) == []
    if hasattr(stack.bus, "redis"):  # Redis Streams (production): no past event carries them either
        entries = await stack.bus.redis.xrange(stack.bus.stream)
        assert entries and not [n for n in NEEDLES if n.lower() in repr(entries).lower()]
    # The live search index, rebuilt on the kb.changed event the erasure sent, no longer holds the e-mail.
    await stack.engine.kb.refresh()
    assert not [n for n in NEEDLES if n.lower() in index_texts(stack)]
    assert "parcel for [erased]" in index_texts(stack)
    # The KB's cache of questions asked (customers' words) is emptied by the erasure event.
    await stack.engine.kb.on_event(CustomerErased(customer_ids=list(report.customer_ids), conversation_ids=[],
                                                  chats=[]))
    assert len(stack.engine.kb._question_vectors) == 0
    # The NLU model was trained from Kefu's training data only: no customer's words are in it.
    assert files_naming(nlu_model_dir, NEEDLES) == []
    # The chat's state is forgotten (the erasure event reaches the bot), and the chat starts afresh.
    for _ in range(100):
        if await stack.engine.state.get(f"webchat:{VISITOR}") == {}:
            break
        await asyncio.sleep(0.05)
    assert await stack.engine.state.get(f"webchat:{VISITOR}") == {}
    fresh = await say(served, VISITOR, "/privacy")
    assert NAME not in texts(fresh) and EMAIL not in texts(fresh)
    assert (await crm.customers.find_by_contact(email=EMAIL)) is None
    # The audit log keeps that it happened, who did it, and what was touched: by id, never by name.
    (entry,) = (await crm.audit.search(action=AuditAction.CUSTOMER_ERASED)).entries
    assert (entry.agent_id, entry.subject_id) == (admin.id, str(customer.id))
    assert entry.details["rows"]["messages"] >= 10 and entry.details["rows"]["privacy_requests"] == 1
