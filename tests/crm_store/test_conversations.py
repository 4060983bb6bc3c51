"""Messages and tickets: idempotent storage, hand-off, assignment, status, priority, notes, resolution."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.errors import InvalidTransition, NotFound
from crm_store.events import (
    AgentReplied,
    BotReplied,
    HandoffRequested,
    MessageReceived,
    TicketResolved,
    TicketUpdated,
)
from tests.support import make_agent, make_chat


async def message_count(crm) -> int:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(m.Message)))


async def test_a_redelivered_update_is_stored_once(crm, bus) -> None:
    first = await make_chat(crm, external_id="1", text="hi", message_id="77")
    again = await make_chat(crm, external_id="1", text="hi", message_id="77")
    assert not first.duplicate and again.duplicate
    assert again.message.id == first.message.id
    assert await message_count(crm) == 1
    assert len(bus.of(MessageReceived)) == 1
    other_chat = await make_chat(crm, external_id="2", text="hi", message_id="77")  # same id, another chat
    assert not other_chat.duplicate and await message_count(crm) == 2


async def test_concurrent_redeliveries_are_stored_once(crm) -> None:
    results = await asyncio.gather(*[make_chat(crm, external_id="9", text="x", message_id="5") for _ in range(6)])
    assert len({r.message.id for r in results}) == 1
    assert await message_count(crm) == 1


async def test_bot_answer_keeps_what_produced_it(crm, bus) -> None:
    chat = await make_chat(crm, text="where is my order?")
    reply = await crm.conversations.record_outgoing(
        conversation_id=chat.conversation.id, sender="bot", text="Track it here.", intent="ask_question",
        confidence=0.87, kb_article_id=12, payload={"buttons": [{"text": "👍", "data": "helpful:12"}]},
    )
    transcript = await crm.conversations.transcript(conversation_id=chat.conversation.id)
    assert [(x.sender, x.text) for x in transcript] == [("customer", "where is my order?"), ("bot", "Track it here.")]
    assert transcript[1].intent == "ask_question" and transcript[1].confidence == pytest.approx(0.87)
    assert transcript[1].kb_article_id == 12 and transcript[1].payload["buttons"][0]["data"] == "helpful:12"
    assert bus.of(BotReplied)[0].message_id == reply.message.id


async def test_handoff_assignment_reply_and_resolution(crm, bus, settings) -> None:
    agent = await make_agent(crm)
    chat = await make_chat(crm, external_id="314", text="I want a human")
    ticket = await crm.conversations.hand_off(
        conversation_id=chat.conversation.id, reason="customer_asked", subject="Wants a human"
    )
    assert ticket.status == "new" and ticket.priority == "normal"
    assert ticket.sla_due_at - ticket.created_at == settings.sla_target("normal")
    conversation = await crm.conversations.get(conversation_id=chat.conversation.id)
    assert conversation.status == "pending" and conversation.waiting_since is not None
    assert bus.of(HandoffRequested)[0].ticket_id == ticket.id
    # asking again does not open a second ticket
    assert (await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="no_answer")).id == ticket.id

    assigned = await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent.id, by_agent_id=agent.id)
    assert assigned.status == "open" and assigned.assignee_id == agent.id
    assert (await crm.conversations.get(conversation_id=chat.conversation.id)).status == "open"

    await crm.conversations.record_outgoing(
        conversation_id=chat.conversation.id, sender="agent", agent_id=agent.id, text="Hello, I'm Ann."
    )
    replied = bus.of(AgentReplied)[0]
    assert (replied.channel, replied.external_id, replied.text) == ("telegram", "314", "Hello, I'm Ann.")
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).first_response_at is not None
    assert (await crm.conversations.get(conversation_id=chat.conversation.id)).first_response_at is not None

    high = await crm.conversations.change_priority(ticket_id=ticket.id, priority="urgent", by_agent_id=agent.id)
    assert high.sla_due_at - high.created_at == timedelta(minutes=settings.sla_minutes_urgent)
    note = await crm.conversations.add_note(conversation_id=chat.conversation.id, agent_id=agent.id, text="VIP")
    assert note.is_private
    visible = await crm.conversations.transcript(conversation_id=chat.conversation.id, include_private=False)
    assert "VIP" not in [x.text for x in visible]

    resolved = await crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=agent.id)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    assert (await crm.conversations.get(conversation_id=chat.conversation.id)).status == "resolved"
    assert bus.of(TicketResolved)[0].ticket_id == ticket.id

    events = await crm.conversations.ticket_events(ticket_id=ticket.id)
    assert [(e.kind, e.from_value, e.to_value) for e in events] == [
        ("created", None, "customer_asked"),
        ("assigned", None, str(agent.id)),
        ("priority_changed", "normal", "urgent"),
        ("note_added", None, None),
        ("resolved", "open", "resolved"),
    ]
    assert all(e.agent_id == agent.id for e in events[1:])
    assert len(bus.of(TicketUpdated)) == 5

    # the customer writes again: a new conversation, owned by the bot
    later = await make_chat(crm, external_id="314", text="thanks!")
    assert later.conversation.id != chat.conversation.id and later.conversation.status == "bot"


async def test_status_rules(crm) -> None:
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint")
    with pytest.raises(InvalidTransition):
        await crm.conversations.change_status(ticket_id=ticket.id, status="closed")
    pending = await crm.conversations.change_status(ticket_id=ticket.id, status="pending")
    assert pending.status == "pending"
    await crm.conversations.resolve(ticket_id=ticket.id)
    reopened = await crm.conversations.change_status(ticket_id=ticket.id, status="open")
    assert reopened.status == "open" and reopened.resolved_at is None
    assert (await crm.conversations.get(conversation_id=chat.conversation.id)).status == "pending"
    kinds = [e.kind for e in await crm.conversations.ticket_events(ticket_id=ticket.id)]
    assert kinds == ["created", "status_changed", "resolved", "reopened"]


async def test_unknown_things_are_reported_not_crashed(crm) -> None:
    with pytest.raises(NotFound):
        await crm.conversations.hand_off(conversation_id=999, reason="complaint")
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint")
    with pytest.raises(NotFound):
        await crm.conversations.assign(ticket_id=ticket.id, agent_id=12345)
    with pytest.raises(ValueError):
        await crm.conversations.change_priority(ticket_id=ticket.id, priority="whenever")


async def test_agents_replies_left_unsent_are_announced_again(crm, bus) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from crm_store.enums import DeliveryStatus

    agent = await make_agent(crm)
    chat = await make_chat(crm, external_id="555")
    conversation_id = chat.conversation.id

    async def reply(text: str, **kwargs) -> int:  # type: ignore[no-untyped-def]
        recorded = await crm.conversations.record_outgoing(conversation_id=conversation_id, sender="agent",
                                                           agent_id=agent.id, text=text, **kwargs)
        return recorded.message.id

    stranded, sent, fresh, ancient = (await reply("stranded"), await reply("sent"), await reply("fresh"),
                                      await reply("ancient"))
    await crm.conversations.mark_delivery(message_id=sent, status=DeliveryStatus.SENT)
    async with crm.db.sessionmaker() as session:
        for message_id, age in ((stranded, timedelta(minutes=5)), (sent, timedelta(minutes=5)),
                                (ancient, timedelta(days=3))):
            await session.execute(update(m.Message).where(m.Message.id == message_id)
                                  .values(created_at=m.utcnow() - age))
        await session.commit()
    bus.published.clear()
    announced = await crm.conversations.announce_stranded(older_than=timedelta(minutes=2), within=timedelta(days=1))
    assert announced == 1
    (event,) = bus.of(AgentReplied)
    assert (event.message_id, event.text, event.channel, event.external_id) == (stranded, "stranded", "telegram",
                                                                                 "555")
    assert fresh not in {e.message_id for e in bus.of(AgentReplied)}
    # A web chat's replies wait for no delivery (they are in the chat's history): never announced again, where they
    # would reach the open pages once more every timer tick.
    web = await make_chat(crm, external_id="visitor-1", channel="webchat")
    recorded = await crm.conversations.record_outgoing(conversation_id=web.conversation.id, sender="agent",
                                                       agent_id=agent.id, text="web reply")
    async with crm.db.sessionmaker() as session:
        await session.execute(update(m.Message).where(m.Message.id == recorded.message.id)
                              .values(created_at=m.utcnow() - timedelta(minutes=5)))
        await session.commit()
    bus.published.clear()
    assert await crm.conversations.announce_stranded(older_than=timedelta(minutes=2), within=timedelta(days=1)) == 1
    assert [e.message_id for e in bus.of(AgentReplied)] == [stranded]


async def test_a_bus_that_fails_after_the_commit_does_not_fail_the_use_case(crm, bus, caplog) -> None:  # type: ignore[no-untyped-def]
    async def broken(event) -> None:  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis is down")

    bus.publish = broken
    recorded = await make_chat(crm, external_id="556", text="still stored")
    assert [x.text for x in await crm.conversations.transcript(conversation_id=recorded.conversation.id)] == [
        "still stored"]
    assert "not published" in caplog.text
