"""Customers: identify-or-create, contact look-ups, consent, linking a chat, and merging two customers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.errors import ConflictError
from crm_store.events import CustomerCreated, CustomersMerged
from tests.support import make_agent, make_chat, make_tiers


async def count(crm, model) -> int:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)))


async def test_identify_creates_the_customer_once(crm, bus) -> None:
    first = await crm.customers.identify(channel="telegram", external_id="42", display_name="Ann")
    again = await crm.customers.identify(channel="telegram", external_id="42", display_name="Ann")
    assert first.created and not again.created
    assert first.customer.id == again.customer.id
    assert first.identity.channel == "telegram" and first.identity.external_id == "42"
    assert len(bus.of(CustomerCreated)) == 1
    other = await crm.customers.identify(channel="webchat", external_id="42")
    assert other.customer.id != first.customer.id  # same id on another channel is another person


async def test_concurrent_first_contacts_make_one_customer(crm) -> None:
    results = await asyncio.gather(*[crm.customers.identify(channel="telegram", external_id="7") for _ in range(8)])
    assert len({r.customer.id for r in results}) == 1
    assert await count(crm, m.Customer) == 1
    assert await count(crm, m.ChannelIdentity) == 1


async def test_find_by_contact_normalizes_email_and_phone(crm) -> None:
    c = await crm.customers.create(name="李娜", email=" Li.Na@Example.COM ", phone="+86 138 0013 8000", language="zh")
    assert (await crm.customers.find_by_contact(email="li.na@example.com")).id == c.id
    assert (await crm.customers.find_by_contact(phone="+8613800138000")).id == c.id
    assert await crm.customers.find_by_contact(email="nobody@example.com") is None
    assert c.name == "李娜"


async def test_bad_contact_details_are_refused(crm) -> None:
    with pytest.raises(ValueError, match="e-mail"):
        await crm.customers.create(name="X", email="not-an-email")
    with pytest.raises(ValueError, match="phone"):
        await crm.customers.create(name="X", phone="12")
    assert await count(crm, m.Customer) == 0


async def test_consent_is_recorded_with_its_time(crm) -> None:
    c = await crm.customers.create(name="Bo", email="bo@example.com")
    assert not c.marketing_consent and c.marketing_consent_at is None
    given = await crm.customers.set_consent(customer_id=c.id, consent=True)
    assert given.marketing_consent and given.marketing_consent_at is not None
    withdrawn = await crm.customers.set_consent(customer_id=c.id, consent=False)
    assert not withdrawn.marketing_consent and withdrawn.marketing_consent_at >= given.marketing_consent_at


async def test_linking_a_chat_moves_its_conversation_to_the_crm_customer(crm) -> None:
    known = await crm.customers.create(name="Wang Xiaoming", email="wang@example.com")
    chat = await make_chat(crm, external_id="555", text="how many points do I have?")
    assert chat.customer_id != known.id

    await crm.customers.link_identity(channel="telegram", external_id="555", customer_id=known.id)

    identities = await crm.customers.identities(customer_id=known.id)
    assert [(i.channel, i.external_id) for i in identities] == [("telegram", "555")]
    assert identities[0].linked_at is not None
    conversation = await crm.conversations.get(conversation_id=chat.conversation.id)
    assert conversation.customer_id == known.id
    anonymous = await crm.customers.get(customer_id=chat.customer_id)
    assert anonymous.merged_into_id == known.id
    # the next message from that chat lands on the known customer
    again = await make_chat(crm, external_id="555", text="and now?")
    assert again.customer_id == known.id


async def test_linking_a_new_chat_creates_no_anonymous_customer(crm) -> None:
    known = await crm.customers.create(name="Ann", email="ann@example.com")
    await crm.customers.link_identity(channel="webchat", external_id="v-1", customer_id=known.id)
    assert await count(crm, m.Customer) == 1


async def test_merge_moves_everything_and_loses_nothing(crm, bus) -> None:
    await make_tiers(crm)
    agent = await make_agent(crm)
    target = await crm.customers.create(name="Ann", email="ann@example.com", tags=["vip"])
    source = await crm.customers.create(name="", phone="+14155550100", tags=["tea"], marketing_consent=True)
    when = datetime(2026, 5, 1, tzinfo=UTC)
    await crm.orders.record_order(customer_id=target.id, external_ref="A-1", amount="600", placed_at=when)
    await crm.orders.record_order(customer_id=source.id, external_ref="B-1", amount="700.50", placed_at=when)
    await crm.customers.link_identity(channel="telegram", external_id="900", customer_id=source.id)
    chat = await make_chat(crm, external_id="900", text="hi")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent.id)
    reward = await crm.loyalty.create_reward(name="Tea sample", cost=100)
    await crm.loyalty.redeem(customer_id=source.id, reward_id=reward.id, idempotency_key="r1")

    merged = await crm.customers.merge(source_id=source.id, target_id=target.id)

    assert merged.id == target.id
    assert merged.phone == "+14155550100" and merged.email == "ann@example.com"
    assert set(merged.tags) == {"vip", "tea"}
    assert merged.marketing_consent  # the source's consent was the most recent decision
    view = await crm.timeline.customer_360(customer_id=target.id)
    assert [i.external_id for i in view.identities] == ["900"]
    assert {o.external_ref for o in view.orders.recent} == {"A-1", "B-1"}
    assert [t.id for t in view.tickets] == [ticket.id]
    assert [c.id for c in view.conversations] == [chat.conversation.id]
    # 600 + 700 earned, 100 redeemed: one account, balance equal to the ledger
    assert view.loyalty.balance == 1200 == await crm.loyalty.ledger_sum(customer_id=target.id)
    assert view.loyalty.lifetime_points == 1300 and view.loyalty.tier.name == "Gold"
    assert await count(crm, m.LoyaltyAccount) == 1
    assert await count(crm, m.Redemption) == 1
    assert (await crm.customers.get(customer_id=source.id)).merged_into_id == target.id
    assert bus.of(CustomersMerged)[-1].source_id == source.id
    with pytest.raises(ConflictError):
        await crm.customers.merge(source_id=source.id, target_id=target.id)
    with pytest.raises(ConflictError):
        await crm.customers.merge(source_id=target.id, target_id=target.id)
    # a merged customer is no longer found by its contact details: the target is
    assert (await crm.customers.find_by_contact(phone="+1 415 555 0100")).id == target.id
