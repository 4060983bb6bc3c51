"""The sample shop: what it loads, that points and tiers follow the programme, and that it loads only once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.crm import CRM
from crm_store.enums import ConversationStatus, TicketStatus
from kefu.runtime import crm_session
from kefu.sample_data import AGENT, DEMO_AGENTS, SUPERVISOR, load_sample_shop


@pytest.fixture
def shop(db, bus, settings) -> CRM:  # type: ignore[no-untyped-def]
    return CRM(db=db, events=bus, settings=settings)


async def table_counts(crm: CRM) -> dict[str, int]:
    async with crm.db.sessionmaker() as session:
        return {
            name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in m.Base.metadata.tables.items()
        }


async def customer_ids(crm: CRM) -> list[int]:
    async with crm.db.sessionmaker() as session:
        return list((await session.execute(select(m.Customer.id).order_by(m.Customer.id))).scalars())


async def test_loading_gives_the_sample_shop(shop: CRM) -> None:
    summary = await load_sample_shop(shop)

    assert summary.created
    assert (summary.customers, summary.orders, summary.tiers, summary.rewards, summary.teams, summary.agents,
            summary.conversations) == (12, 30, 3, 5, 2, 2, 4)
    counts = await table_counts(shop)
    assert (counts["customers"], counts["orders"], counts["agents"], counts["teams"]) == (12, 30, 2, 2)

    tiers = await shop.loyalty.tiers()
    assert [(t.name, t.threshold, t.names["zh"]) for t in tiers] == [
        ("Silver", 0, "银卡"), ("Gold", 1000, "金卡"), ("Platinum", 5000, "白金卡"),
    ]
    assert all(t.benefits for t in tiers)
    rewards = await shop.loyalty.catalogue()
    assert len(rewards) == 5 and all(r.names.get("zh") for r in rewards)
    assert any(r.stock is not None for r in rewards)
    gold = next(t for t in tiers if t.name == "Gold")
    assert any(r.min_tier_id == gold.id for r in rewards)

    customers = [await shop.customers.get(customer_id=cid) for cid in await customer_ids(shop)]
    assert {c.language for c in customers} == {"en", "zh"}
    assert {"王小明", "李娜"} <= {c.name for c in customers}
    phones = [c.phone for c in customers if c.phone]
    assert any(p.startswith("+86") for p in phones) and any(p.startswith("+1") for p in phones)
    assert any(c.marketing_consent for c in customers) and not all(c.marketing_consent for c in customers)


async def test_tiers_follow_the_points_the_orders_earned(shop: CRM) -> None:
    await load_sample_shop(shop)
    thresholds = sorted((t.threshold, t.name) for t in await shop.loyalty.tiers())

    reached: set[str] = set()
    for cid in await customer_ids(shop):
        loyalty = await shop.loyalty.summary(customer_id=cid)
        earned = sum(o.points_awarded for o in await shop.orders.for_customer(customer_id=cid))
        assert loyalty.balance == await shop.loyalty.ledger_sum(customer_id=cid) == earned
        expected = [name for threshold, name in thresholds if threshold <= loyalty.lifetime_points][-1]
        assert loyalty.tier is not None and loyalty.tier.name == expected
        reached.add(expected)
    assert {"Gold", "Platinum"} <= reached

    # Orders that are not paid (pending, cancelled, refunded) earn nothing.
    async with shop.db.sessionmaker() as session:
        unpaid = list((await session.execute(
            select(m.Order.points_awarded).where(m.Order.status.in_(["pending", "cancelled", "refunded"]))
        )).scalars())
    assert unpaid and set(unpaid) == {0}


async def test_chats_are_recorded_handed_off_and_resolved(shop: CRM) -> None:
    await load_sample_shop(shop)
    agent = await shop.agents.authenticate(email=AGENT.email, password=AGENT.password)
    assert agent is not None

    async with shop.db.sessionmaker() as session:
        conversations = list((await session.execute(select(m.Conversation))).scalars())
        tickets = list((await session.execute(select(m.Ticket))).scalars())
        channels = set((await session.execute(select(m.ChannelIdentity.channel))).scalars())
    assert channels == {"telegram", "webchat"}
    assert sorted(c.status for c in conversations) == sorted(
        [ConversationStatus.BOT, ConversationStatus.BOT, ConversationStatus.OPEN, ConversationStatus.RESOLVED]
    )
    assert sorted(t.status for t in tickets) == sorted([TicketStatus.OPEN, TicketStatus.RESOLVED])
    assert {t.assignee_id for t in tickets} == {agent.id}

    for conversation in conversations:
        transcript = await shop.conversations.transcript(conversation_id=conversation.id)
        assert transcript[0].sender == "customer"
        assert "bot" in {x.sender for x in transcript}
        if conversation.status in (ConversationStatus.OPEN, ConversationStatus.RESOLVED):
            assert transcript[-1].sender == "agent" and transcript[-1].agent_id == agent.id


async def test_second_load_adds_nothing(shop: CRM, bus) -> None:  # type: ignore[no-untyped-def]
    first = await load_sample_shop(shop)
    before = await table_counts(shop)
    published = len(bus.published)

    second = await load_sample_shop(shop)

    assert (first.created, second.created) == (True, False)
    assert await table_counts(shop) == before
    assert len(bus.published) == published
    assert (second.customers, second.orders, second.agents) == (first.customers, first.orders, first.agents)


async def test_demo_agents_can_sign_in(shop: CRM) -> None:
    await load_sample_shop(shop)
    for demo in DEMO_AGENTS:
        assert len(demo.password) >= 8
        agent = await shop.agents.authenticate(email=demo.email, password=demo.password)
        assert agent is not None and agent.role == demo.role
    assert await shop.agents.authenticate(email=SUPERVISOR.email, password=AGENT.password) is None


async def test_loads_through_the_runtime_with_the_configured_event_bus(db, settings) -> None:  # type: ignore[no-untyped-def]
    """open_crm/crm_session build the real bus from the settings (in-process, or Redis when configured)."""
    settings = settings.model_copy(update={"event_stream": f"kefu:test:{uuid.uuid4().hex[:8]}"})
    async with crm_session(settings) as crm:
        summary = await load_sample_shop(crm)
        assert summary.customers == 12
    with pytest.raises(RuntimeError):  # closed with the session
        crm.events.subscribe("late", _ignore)
    if settings.redis_url:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url)
        try:
            assert await client.xlen(settings.event_stream) > 0
            await client.delete(settings.event_stream)
        finally:
            await client.aclose()


async def _ignore(event: object) -> None:
    return None
