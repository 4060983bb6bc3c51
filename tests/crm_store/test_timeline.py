"""The timeline lists everything that happened to a customer in time order; the 360 view gathers it all."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crm_store.errors import NotFound
from tests.support import make_agent, make_chat, make_tiers


async def test_timeline_is_complete_and_in_time_order(crm) -> None:
    await make_tiers(crm)
    agent = await make_agent(crm)
    chat = await make_chat(crm, external_id="77", text="Where is my parcel?")
    customer_id = chat.customer_id
    await crm.conversations.record_outgoing(conversation_id=chat.conversation.id, sender="bot",
                                            text="Let me get a colleague.", intent="human_handoff", confidence=0.9)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent.id)
    await crm.conversations.record_outgoing(conversation_id=chat.conversation.id, sender="agent", agent_id=agent.id,
                                            text="It ships today.")
    await crm.conversations.add_note(conversation_id=chat.conversation.id, agent_id=agent.id, text="Checked WMS")
    await crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=agent.id)
    placed = datetime(2020, 1, 2, tzinfo=UTC)  # long before the chat: it sorts first
    await crm.orders.record_order(customer_id=customer_id, external_ref="T-1", amount="1200", placed_at=placed,
                                  currency="cny")

    timeline = await crm.timeline.timeline(customer_id=customer_id)

    kinds = [e.kind for e in timeline]
    assert kinds[0] == "order"
    assert kinds.index("message.customer") < kinds.index("message.bot") < kinds.index("ticket.created")
    assert kinds.index("ticket.assigned") < kinds.index("message.agent") < kinds.index("note")
    assert kinds[-3:] == ["ticket.resolved", "survey.sent", "points.earn"]  # the resolution sends CSAT
    assert "identity.first_contact" in kinds
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    bot = next(e for e in timeline if e.kind == "message.bot")
    assert bot.data["intent"] == "human_handoff" and bot.data["confidence"] == pytest.approx(0.9)
    points = next(e for e in timeline if e.kind == "points.earn")
    assert points.data == {"points": 1200, "order_ref": "T-1"}


async def test_customer_360(crm) -> None:
    await make_tiers(crm)
    c = await crm.customers.create(name="陈静", email="chen@example.com", language="zh", tags=["tea"])
    for i, amount in enumerate(["300", "450.50", "800"]):
        await crm.orders.record_order(customer_id=c.id, external_ref=f"C-{i}", amount=amount,
                                      placed_at=datetime(2026, 1 + i, 1, tzinfo=UTC))
    await crm.orders.record_order(customer_id=c.id, external_ref="C-usd", amount="20", currency="USD",
                                  placed_at=datetime(2025, 1, 1, tzinfo=UTC))
    await crm.customers.link_identity(channel="telegram", external_id="888", customer_id=c.id)

    view = await crm.timeline.customer_360(customer_id=c.id)

    assert view.customer.name == "陈静" and view.customer.tags == ("tea",)
    assert [(i.channel, i.external_id) for i in view.identities] == [("telegram", "888")]
    assert view.orders.count == 4
    assert view.orders.totals == {"USD": Decimal("1570.50")}
    assert view.orders.last_order_at == datetime(2026, 3, 1, tzinfo=UTC)
    assert [o.external_ref for o in view.orders.recent] == ["C-2", "C-1", "C-0", "C-usd"]
    assert (view.loyalty.balance, view.loyalty.tier.name, view.loyalty.next_tier.name) == (1570, "Gold", "Platinum")
    assert view.tickets == () and view.conversations == ()
    assert any(e.kind == "identity.linked" for e in view.timeline)


async def test_unknown_customer(crm) -> None:
    with pytest.raises(NotFound):
        await crm.timeline.customer_360(customer_id=404)
