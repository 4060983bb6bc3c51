"""Handoff: the ticket's priority is at least what the customer's tier gives (VIP first), its SLA follows the final
priority, and its context says what the bot had tried (reason, intents, articles, tier, last message)."""

from __future__ import annotations

import pytest

from crm_store.enums import TicketPriority
from tests.support import make_chat


async def vip_tiers(crm):  # type: ignore[no-untyped-def]
    """Silver (0, no rule), Gold (1000, high), Platinum (5000, urgent)."""
    return [
        await crm.loyalty.define_tier(name="Silver", threshold=0),
        await crm.loyalty.define_tier(name="Gold", threshold=1000, handoff_priority="high"),
        await crm.loyalty.define_tier(name="Platinum", threshold=5000, handoff_priority=TicketPriority.URGENT),
    ]


async def chat_of_member(crm, points: int, external_id: str = "500"):  # type: ignore[no-untyped-def]
    """A chat linked to a customer who earned `points` (a tier when tiers exist)."""
    customer = await crm.customers.create(name=f"Member {external_id}")
    if points:
        await crm.loyalty.award_points(customer_id=customer.id, points=points, reason="orders",
                                       idempotency_key=f"seed:{external_id}")
    await crm.customers.link_identity(channel="telegram", external_id=external_id, customer_id=customer.id)
    return await make_chat(crm, external_id=external_id, text="hello")


@pytest.mark.parametrize(
    ("points", "requested", "expected"),
    [
        (0, "normal", "normal"),  # no account, no tier
        (10, "normal", "normal"),  # Silver: no rule
        (10, "low", "low"),
        (1500, "normal", "high"),  # Gold raises normal to high
        (1500, "low", "high"),
        (1500, "urgent", "urgent"),  # ...but never lowers
        (6000, "normal", "urgent"),  # Platinum
        (6000, "high", "urgent"),
    ],
)
async def test_priority_is_the_higher_of_the_request_and_the_tier(crm, settings, points: int, requested: str,
                                                                  expected: str) -> None:
    await vip_tiers(crm)
    chat = await chat_of_member(crm, points)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="no_answer",
                                              priority=requested)
    assert ticket.priority == expected
    assert ticket.sla_due_at - ticket.created_at == settings.sla_target(expected)
    conversation = await crm.conversations.get(conversation_id=chat.conversation.id)
    assert conversation.priority == expected


async def test_the_tier_rule_can_be_read_for_the_bot(crm) -> None:
    await vip_tiers(crm)
    gold = await chat_of_member(crm, 1500, external_id="1")
    silver = await chat_of_member(crm, 10, external_id="2")
    assert await crm.loyalty.handoff_priority(customer_id=gold.customer_id) == "high"
    assert await crm.loyalty.handoff_priority(customer_id=silver.customer_id) is None
    anonymous = await make_chat(crm, external_id="3")
    assert await crm.loyalty.handoff_priority(customer_id=anonymous.customer_id) is None


async def test_the_context_keeps_what_the_bot_tried(crm) -> None:
    await vip_tiers(crm)
    shipping = await crm.knowledge.create_article(question="How long does shipping take?", answer="3-5 days.",
                                                  language="en", status="published", external_id="faq-shipping")
    returns = await crm.knowledge.create_article(question="Can I return tea?", answer="Within 30 days.",
                                                 language="en", status="published", external_id="faq-returns")
    chat = await chat_of_member(crm, 1500)
    conversation_id = chat.conversation.id
    say = crm.conversations.record_outgoing

    async def customer(text: str) -> None:
        await make_chat(crm, external_id="500", text=text)

    await say(conversation_id=conversation_id, sender="bot", text="Hello!", intent="greet")
    await customer("how long is shipping?")
    await say(conversation_id=conversation_id, sender="bot", text="3-5 days.", intent="ask_question",
              kb_article_id=shipping.id)
    await customer("and returns?")
    await say(conversation_id=conversation_id, sender="bot", text="Within 30 days.", intent="ask_question",
              kb_article_id=returns.id)
    await customer("shipping again?")
    await say(conversation_id=conversation_id, sender="bot", text="3-5 days.", intent="ask_question",
              kb_article_id=shipping.id)
    await say(conversation_id=conversation_id, sender="bot", text="Deleted one", intent="ask_question",
              kb_article_id=987654)  # an article deleted since: still listed, without details
    await crm.conversations.add_note(conversation_id=conversation_id, agent_id=None, text="private note")
    await customer("my parcel is wet and torn")
    await crm.conversations.record_incoming(channel="telegram", external_id="500", text="",
                                            payload={"button": "kb:none"})  # a press: not what they wrote

    ticket = await crm.conversations.hand_off(conversation_id=conversation_id, reason="no_answer",
                                              subject="wet parcel", intent="nlu_fallback")
    assert ticket.context == {
        "reason": "no_answer",
        "intents": ["greet", "ask_question", "nlu_fallback"],
        "articles": [
            {"id": shipping.id, "external_id": "faq-shipping", "question": "How long does shipping take?"},
            {"id": returns.id, "external_id": "faq-returns", "question": "Can I return tea?"},
            {"id": 987654, "external_id": None, "question": None},
        ],
        "tier": "Gold",
        "last_customer_message": "my parcel is wet and torn",
    }
    assert ticket.priority == "high"
    stored = await crm.conversations.get_ticket(ticket_id=ticket.id)
    assert stored.context == ticket.context  # it was saved, not only returned


async def test_the_context_of_a_first_message_handoff(crm) -> None:
    chat = await make_chat(crm, external_id="9", text="/human")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked",
                                              intent="human_handoff")
    assert ticket.context == {"reason": "customer_asked", "intents": ["human_handoff"], "articles": [],
                              "tier": None, "last_customer_message": "/human"}
    # asking again keeps the first ticket and its context
    again = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint",
                                             priority="urgent")
    assert (again.id, again.priority, again.context) == (ticket.id, "normal", ticket.context)


async def test_a_handoff_is_counted_for_the_metrics_by_reason(crm) -> None:  # type: ignore[no-untyped-def]
    from crm_store.observability import HANDOFFS

    before = HANDOFFS.labels("customer_asked")._value.get()
    chat = await make_chat(crm, external_id="metrics-1")
    await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    assert HANDOFFS.labels("customer_asked")._value.get() == before + 1
