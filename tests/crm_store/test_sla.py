"""SLA policy: targets by priority and tier (a tier's row beats the tier-less one, the store's single target when
nothing matches), and a ticket's clock: first response until an agent replies, then resolution, none when done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.errors import NotFound
from crm_store.services.sla import targets
from tests.support import make_agent, make_chat, make_tiers

MINUTE = timedelta(minutes=1)


async def gold_member_chat(crm, external_id: str = "77"):  # type: ignore[no-untyped-def]
    """A chat of a customer with 1,500 points (Gold when make_tiers ran)."""
    customer = await crm.customers.create(name="Gold Member")
    await crm.loyalty.award_points(customer_id=customer.id, points=1500, reason="orders", idempotency_key="g")
    await crm.customers.link_identity(channel="telegram", external_id=external_id, customer_id=customer.id)
    return await make_chat(crm, external_id=external_id, text="help")


async def ticket_sla(crm, conversation_id: int):  # type: ignore[no-untyped-def]
    page = await crm.inbox.conversation_page(conversation_id=conversation_id)
    return page.ticket, page.sla


async def test_without_a_policy_both_targets_are_the_store_default(crm, settings) -> None:
    for priority in ("low", "normal", "high", "urgent"):
        found = await crm.sla.targets(priority=priority)
        expected = settings.sla_target(priority) // MINUTE
        assert (found.first_response_minutes, found.resolution_minutes) == (expected, expected)


async def test_a_tiers_policy_beats_the_tierless_one_which_beats_the_default(crm, db, settings) -> None:
    silver, gold, _platinum = await make_tiers(crm)
    await crm.sla.set_policy(priority="normal", first_response_minutes=30, resolution_minutes=600)
    await crm.sla.set_policy(priority="normal", tier_id=gold.id, first_response_minutes=10, resolution_minutes=120)
    async with db.sessionmaker() as session:
        assert await targets(session, settings, "normal", gold.id) == (10 * MINUTE, 120 * MINUTE)
        assert await targets(session, settings, "normal", silver.id) == (30 * MINUTE, 600 * MINUTE)
        assert await targets(session, settings, "normal", None) == (30 * MINUTE, 600 * MINUTE)
        # another priority has no policy at all: the store's single target, for every tier
        default = settings.sla_target("high")
        assert await targets(session, settings, "high", gold.id) == (default, default)


async def test_policies_are_upserted_listed_and_deleted(crm) -> None:
    _silver, gold, _platinum = await make_tiers(crm)
    first = await crm.sla.set_policy(priority="high", first_response_minutes=15, resolution_minutes=240)
    again = await crm.sla.set_policy(priority="high", first_response_minutes=20, resolution_minutes=300)
    assert again.id == first.id and (again.first_response_minutes, again.resolution_minutes) == (20, 300)
    await crm.sla.set_policy(priority="high", tier_id=gold.id, first_response_minutes=5, resolution_minutes=60)
    await crm.sla.set_policy(priority="low", first_response_minutes=600, resolution_minutes=4320)
    listed = [(p.priority, p.tier_id, p.first_response_minutes) for p in await crm.sla.policies()]
    assert listed == [("low", None, 600), ("high", None, 20), ("high", gold.id, 5)]

    await crm.sla.delete_policy(policy_id=first.id)
    assert [(p.priority, p.tier_id) for p in await crm.sla.policies()] == [("low", None), ("high", gold.id)]
    with pytest.raises(NotFound):
        await crm.sla.delete_policy(policy_id=first.id)


@pytest.mark.parametrize(
    ("priority", "tier_id", "first", "resolution", "error"),
    [
        ("normal", None, 0, 60, ValueError),
        ("normal", None, 30, -1, ValueError),
        ("normal", None, 90, 60, ValueError),  # first response due after the resolution
        ("whenever", None, 30, 60, ValueError),
        ("normal", 999, 30, 60, NotFound),
    ],
)
async def test_bad_policies_are_refused(crm, priority, tier_id, first, resolution, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        await crm.sla.set_policy(priority=priority, tier_id=tier_id, first_response_minutes=first,
                                 resolution_minutes=resolution)
    assert await crm.sla.policies() == []


async def test_handoff_starts_the_clock_with_the_tiers_targets_and_records_the_channel(crm) -> None:
    _silver, gold, _platinum = await make_tiers(crm)
    await crm.sla.set_policy(priority="normal", first_response_minutes=30, resolution_minutes=600)
    await crm.sla.set_policy(priority="normal", tier_id=gold.id, first_response_minutes=10, resolution_minutes=120)

    member = await gold_member_chat(crm)
    stranger = await make_chat(crm, external_id="web-1", channel="webchat")
    vip = await crm.conversations.hand_off(conversation_id=member.conversation.id, reason="customer_asked")
    other = await crm.conversations.hand_off(conversation_id=stranger.conversation.id, reason="customer_asked")

    _, vip_sla = await ticket_sla(crm, member.conversation.id)
    assert vip_sla.channel == "telegram"
    assert vip_sla.first_response_due_at - vip.created_at == 10 * MINUTE
    assert vip_sla.resolution_due_at - vip.created_at == 120 * MINUTE
    assert vip.sla_due_at == vip_sla.sla_due_at == vip_sla.first_response_due_at
    _, other_sla = await ticket_sla(crm, stranger.conversation.id)
    assert other_sla.channel == "webchat"
    assert other.sla_due_at - other.created_at == 30 * MINUTE
    assert other_sla.resolution_due_at - other.created_at == 600 * MINUTE


async def test_the_first_agent_reply_moves_the_deadline_to_the_resolution_target(crm) -> None:
    await crm.sla.set_policy(priority="normal", first_response_minutes=30, resolution_minutes=600)
    agent = await make_agent(crm)
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    conversation_id = chat.conversation.id
    # neither the bot nor a private note is a first response
    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender="bot", text="An agent is coming.")
    await crm.conversations.add_note(conversation_id=conversation_id, agent_id=agent.id, text="looking")
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).sla_due_at == ticket.sla_due_at

    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender="agent", agent_id=agent.id,
                                            text="Hi, I'm on it.")
    replied, sla = await ticket_sla(crm, conversation_id)
    assert replied.sla_due_at == sla.resolution_due_at == ticket.created_at + 600 * MINUTE
    # a second reply changes nothing
    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender="agent", agent_id=agent.id,
                                            text="Still on it.")
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).sla_due_at == replied.sla_due_at


async def test_a_priority_change_retargets_from_the_tickets_creation(crm) -> None:
    await crm.sla.set_policy(priority="normal", first_response_minutes=30, resolution_minutes=600)
    await crm.sla.set_policy(priority="urgent", first_response_minutes=5, resolution_minutes=60)
    agent = await make_agent(crm)
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint")

    urgent = await crm.conversations.change_priority(ticket_id=ticket.id, priority="urgent")
    assert urgent.sla_due_at == ticket.created_at + 5 * MINUTE  # not answered yet: the first response is next
    await crm.conversations.record_outgoing(conversation_id=chat.conversation.id, sender="agent",
                                            agent_id=agent.id, text="Hello")
    normal = await crm.conversations.change_priority(ticket_id=ticket.id, priority="normal")
    assert normal.sla_due_at == ticket.created_at + 600 * MINUTE
    _, sla = await ticket_sla(crm, chat.conversation.id)
    assert sla.first_response_due_at == ticket.created_at + 30 * MINUTE


async def test_resolving_stops_the_clock_and_reopening_starts_a_new_resolution_target(crm, db) -> None:
    await crm.sla.set_policy(priority="normal", first_response_minutes=30, resolution_minutes=600)
    agent = await make_agent(crm)
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint")
    await crm.conversations.record_outgoing(conversation_id=chat.conversation.id, sender="agent",
                                            agent_id=agent.id, text="Hello")
    resolved = await crm.conversations.resolve(ticket_id=ticket.id, send_csat=False)
    assert resolved.sla_due_at is None
    assert (await crm.conversations.change_status(ticket_id=ticket.id, status="closed")).sla_due_at is None

    # the ticket was created long ago: its old resolution target would be overdue already
    async with db.sessionmaker() as session:
        await session.execute(update(m.Ticket).values(created_at=utcnow() - timedelta(days=3)))
        await session.commit()
    before = utcnow()
    reopened = await crm.conversations.change_status(ticket_id=ticket.id, status="open")
    after = utcnow()
    assert before + 600 * MINUTE <= reopened.sla_due_at <= after + 600 * MINUTE
    # a later priority change keeps the reopening as the resolution target's start
    high = await crm.conversations.change_priority(ticket_id=ticket.id, priority="high")
    default_high = crm.settings.sla_target("high")
    assert before + default_high <= high.sla_due_at <= after + default_high


async def test_a_reopened_ticket_nobody_answered_is_still_due_at_its_first_response(crm) -> None:
    await crm.sla.set_policy(priority="normal", first_response_minutes=30, resolution_minutes=600)
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint")
    await crm.conversations.resolve(ticket_id=ticket.id, send_csat=False)
    reopened = await crm.conversations.change_status(ticket_id=ticket.id, status="open")
    assert reopened.sla_due_at == ticket.created_at + 30 * MINUTE
