"""The sample shop: what it loads (its FAQ too), that points and tiers follow the programme, that it loads once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, func, select

from crm_store import models as m
from crm_store.crm import CRM
from crm_store.enums import ConversationStatus, TicketStatus
from crm_store.events import KnowledgeBaseChanged
from kefu.runtime import crm_session
from kefu.sample_courses import SAMPLE_COURSES, load_sample_courses
from kefu.sample_data import AGENT, DEMO_AGENTS, REWARDS, SUPERVISOR, TIERS, load_sample_shop
from kefu.sample_kb import SAMPLE_ARTICLES, load_sample_kb


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
            summary.conversations, summary.articles, summary.courses) == (12, 30, 3, 5, 2, 3, 4, 36, 2)
    counts = await table_counts(shop)
    assert (counts["customers"], counts["orders"], counts["agents"], counts["teams"]) == (12, 30, 3, 2)

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
    revision = await shop.knowledge.revision()

    second = await load_sample_shop(shop)

    assert (first.created, second.created) == (True, False)
    assert await table_counts(shop) == before
    assert len(bus.published) == published
    assert await shop.knowledge.revision() == revision > 0
    assert (second.customers, second.orders, second.agents, second.articles) == (
        first.customers, first.orders, first.agents, first.articles)


async def published(crm: CRM, language: str) -> dict[str, object]:
    return {a.external_id: a for a in await crm.knowledge.list_articles(status="published", language=language)}


async def test_the_shop_has_a_bilingual_faq(shop: CRM) -> None:
    await load_sample_shop(shop)
    english, chinese = await published(shop, "en"), await published(shop, "zh")

    assert (len(english), len(chinese)) == (18, 18)
    assert await shop.knowledge.count() == 36  # nothing left in draft
    topics = {eid.removeprefix("shop-en-") for eid in english}
    assert {eid.removeprefix("shop-zh-") for eid in chinese} == topics  # every topic in both languages
    assert {"shipping", "returns", "points-earn", "tiers", "rewards", "telegram", "human", "privacy"} <= topics
    for article in [*english.values(), *chinese.values()]:
        assert 10 <= len(article.alt_questions) <= 15, article.external_id
        assert article.tags, article.external_id
        assert article.answer.strip() and article.version == 1
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in a.question) for a in chinese.values())
    assert not any(any("\u4e00" <= ch <= "\u9fff" for ch in a.question) for a in english.values())


async def test_the_faq_tells_the_loyalty_programme_the_shop_runs(shop: CRM) -> None:
    await load_sample_shop(shop)
    english, chinese = await published(shop, "en"), await published(shop, "zh")

    for name, threshold, _, zh_name in TIERS:
        assert name in english["shop-en-tiers"].answer and f"{threshold:,}" in english["shop-en-tiers"].answer
        assert zh_name in chinese["shop-zh-tiers"].answer and str(threshold) in chinese["shop-zh-tiers"].answer
    for name, zh_name, cost, _, _, _ in REWARDS:
        en_answer, zh_answer = english["shop-en-rewards"].answer, chinese["shop-zh-rewards"].answer
        assert name.split(" (")[0].lower() in en_answer.lower() and f"{cost:,}" in en_answer
        assert zh_name.split("（")[0] in zh_answer and str(cost) in zh_answer
    assert "1 point for every $1" in english["shop-en-points-earn"].answer
    assert "1 美元得 1 积分" in chinese["shop-zh-points-earn"].answer


async def test_loading_the_faq_again_changes_nothing(shop: CRM, bus) -> None:  # type: ignore[no-untyped-def]
    assert await load_sample_kb(shop) == len(SAMPLE_ARTICLES) == 36
    revision, events = await shop.knowledge.revision(), len(bus.of(KnowledgeBaseChanged))
    articles = await shop.knowledge.list_articles()

    assert await load_sample_kb(shop) == 36

    assert await shop.knowledge.revision() == revision
    assert len(bus.of(KnowledgeBaseChanged)) == events == 1  # the first load: one import, one change
    assert await shop.knowledge.list_articles() == articles


async def test_a_reload_keeps_what_agents_changed_and_restores_what_is_missing(shop: CRM) -> None:
    await load_sample_shop(shop)
    english = await published(shop, "en")
    edited = await shop.knowledge.update_article(article_id=english["shop-en-hours"].id,
                                                 answer="We are open around the clock.")
    await shop.knowledge.unpublish(article_id=english["shop-en-gift-cards"].id)
    async with shop.db.sessionmaker() as session:  # as if the shop had been loaded before it had a FAQ
        await session.execute(delete(m.KbArticle).where(m.KbArticle.external_id == "shop-zh-hours"))
        await session.commit()

    summary = await load_sample_shop(shop)

    assert not summary.created and summary.articles == 35  # the unpublished one stays a draft
    assert (await shop.knowledge.get(article_id=edited.id)).answer == "We are open around the clock."
    assert (await shop.knowledge.get(article_id=english["shop-en-gift-cards"].id)).status == "draft"
    assert "shop-zh-hours" in await published(shop, "zh")


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


async def test_the_shop_has_a_brewing_course_in_english_and_chinese(shop: CRM) -> None:
    await load_sample_shop(shop)
    courses = {c.language: c for c in await shop.courses.catalogue()}
    assert set(courses) == {"en", "zh"}
    assert (courses["en"].title, courses["zh"].title) == ("Tea brewing basics", "泡茶入门")
    for summary in courses.values():
        course = await shop.courses.get_course(course_id=summary.id)
        assert [lesson.position for lesson in course.lessons] == [1, 2, 3]
        assert any(lesson.image_url for lesson in course.lessons) and any(lesson.link_url for lesson in course.lessons)
        for lesson in course.lessons:
            assert lesson.body.strip() and 1 <= len(lesson.quiz) <= 2, lesson.title
            assert all(len(q.options) >= 2 and q.explanation for q in lesson.quiz), lesson.title
    zh = await shop.courses.get_course(course_id=courses["zh"].id)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in lesson.title) for lesson in zh.lessons)

    assert len(SAMPLE_COURSES) == 2 and await load_sample_courses(shop) == 2  # loading again adds nothing
    assert len(await shop.courses.catalogue()) == 2
