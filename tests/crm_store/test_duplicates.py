"""The duplicate-customer finder (same phone or e-mail however written, the same name with corroboration, never a
near miss) and the recorded merge of a group into the customer an agent chose."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from crm_store import models as m
from crm_store.dto import DuplicateGroup
from crm_store.enums import DuplicateReason, MatchStrength
from crm_store.errors import ConflictError
from crm_store.events import CustomersMerged
from crm_store.services import duplicates
from tests.support import make_agent, make_chat, make_tiers

WHEN = datetime(2026, 5, 1, tzinfo=UTC)
PHONE, EMAIL, NAME = DuplicateReason.PHONE, DuplicateReason.EMAIL, DuplicateReason.NAME


def shape(group: DuplicateGroup) -> tuple[str, frozenset[int], frozenset[tuple[str, str, tuple[int, ...]]]]:
    return (group.strength, frozenset(c.customer.id for c in group.customers),
            frozenset((m.reason, m.value, m.customer_ids) for m in group.matches))


@pytest.fixture
async def seeded(crm):  # type: ignore[no-untyped-def]
    """Duplicates written every usual way, and near misses beside them."""
    new = crm.customers.create
    c = {
        # the same phone, written two ways
        "carol": await new(name="Carol Diaz", phone="+1 415 555 0101"),
        "carol2": await new(name="C. Diaz", phone="(415) 555-0101"),
        "carla": await new(name="Carla Diaz", phone="+1 415 555 0102"),  # one digit off
        # the same e-mail in another case; a third copy already merged; another domain
        "bob": await new(name="Bob Stone", email="Bob.Stone@Example.com"),
        "bob2": await new(name="Robert Stone", email="bob.stone@example.com"),
        "bob3": await new(name="Bobby Stone", email="BOB.STONE@example.com"),
        "bob_org": await new(name="Bob Stone", email="bob.stone@example.org", language="de"),
        # a chain: e-mail ties the first two, phone the last two
        "chain1": await new(name="Ping Chain", email="chain@example.com"),
        "chain2": await new(name="Pong Chain", email="CHAIN@example.com", phone="+1 415 555 0199"),
        "chain3": await new(name="Pung Chain", phone="415-555-0199"),
        # similar names, same language, no contact that differs
        "anna": await new(name="Anna Müller", language="de"),
        "anna2": await new(name="anna  muller", language="de", email="anna@example.de"),
        "anna3": await new(name="Müller, Anna", language="de", phone="+49 30 1234567"),
        "anna_en": await new(name="Anna Muller", language="en"),  # another language
        "hanna": await new(name="Hanna Müller", language="de"),  # another name
        "wang": await new(name="王小明", language="zh"),
        "wang2": await new(name="王小明", language="zh"),
        # a name and a phone together: the group is as weak as its weakest tie
        "lina": await new(name="Li Na", language="zh", phone="+86 139 1234 5678"),
        "lina2": await new(name="Na Li", language="zh"),
        "lina3": await new(name="L. Na", language="zh", phone="+8613912345678"),
        # near misses by name: contacts that differ, a name too thin to compare
        "mark": await new(name="Mark Lee", email="mark.one@example.com"),
        "mark2": await new(name="Mark Lee", email="mark.two@example.com"),
        "jane": await new(name="Jane Roe", phone="+1 212 555 0100"),
        "jane2": await new(name="Jane Roe", phone="+1 212 555 0111"),
        "solo": await new(name="Anna", language="de"),
        "solo2": await new(name="anna", language="de"),
    }
    await crm.customers.merge(source_id=c["bob3"].id, target_id=c["bob"].id)
    return {key: view.id for key, view in c.items()}


async def test_finds_exactly_the_duplicate_groups(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    i = seeded
    page = await crm.customers.find_duplicates(limit=50)
    assert page.next_after is None
    assert {shape(g) for g in page.groups} == {
        ("exact", frozenset({i["carol"], i["carol2"]}),
         frozenset({(PHONE, "+14155550101", (i["carol"], i["carol2"]))})),
        ("exact", frozenset({i["bob"], i["bob2"]}),
         frozenset({(EMAIL, "bob.stone@example.com", (i["bob"], i["bob2"]))})),
        ("exact", frozenset({i["chain1"], i["chain2"], i["chain3"]}),
         frozenset({(EMAIL, "chain@example.com", (i["chain1"], i["chain2"])),
                    (PHONE, "+14155550199", (i["chain2"], i["chain3"]))})),
        ("name", frozenset({i["anna"], i["anna2"], i["anna3"]}),
         frozenset({(NAME, "anna muller", (i["anna"], i["anna2"], i["anna3"]))})),
        ("name", frozenset({i["wang"], i["wang2"]}), frozenset({(NAME, "王小明", (i["wang"], i["wang2"]))})),
        ("name", frozenset({i["lina"], i["lina2"], i["lina3"]}),
         frozenset({(PHONE, "+8613912345678", (i["lina"], i["lina3"])),
                    (NAME, "li na", (i["lina"], i["lina2"]))})),
    }
    # groups come by their lowest id, customers in id order, each with the facts to compare them by
    assert [g.key for g in page.groups] == sorted(g.key for g in page.groups)
    carol = next(g for g in page.groups if g.key == i["carol"])
    assert [c.customer.phone for c in carol.customers] == ["+1 415 555 0101", "(415) 555-0101"]


async def test_pages_through_the_groups(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    everything = [g.key for g in (await crm.customers.find_duplicates(limit=50)).groups]
    seen, after = [], None
    while True:
        page = await crm.customers.find_duplicates(limit=4, after=after)
        seen += [g.key for g in page.groups]
        if page.next_after is None:
            break
        assert len(page.groups) == 4
        after = page.next_after
    assert seen == everything and len(everything) == 6


async def test_a_name_too_common_to_suggest_anything_is_skipped(crm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        await crm.customers.create(name="John Smith")
    assert len((await crm.customers.find_duplicates()).groups) == 1
    monkeypatch.setattr(duplicates, "MAX_NAME_BUCKET", 2)
    assert (await crm.customers.find_duplicates()).groups == ()


async def test_facts_count_what_each_record_holds(crm) -> None:  # type: ignore[no-untyped-def]
    await make_tiers(crm)
    chat = await make_chat(crm, external_id="77", text="hello")
    await crm.customers.update_profile(customer_id=chat.customer_id, name="Emil Berg", phone="+1 415 555 0123")
    other = await crm.customers.create(name="Emil Berg", phone="4155550123")
    await crm.orders.record_order(customer_id=other.id, external_ref="E-1", amount="1200", placed_at=WHEN)
    (group,) = (await crm.customers.find_duplicates()).groups
    by_id = {f.customer.id: f for f in group.customers}
    chatter, buyer = by_id[chat.customer_id], by_id[other.id]
    assert (chatter.channels, chatter.conversations, chatter.orders, chatter.points) == (("telegram",), 1, 0, 0)
    assert chatter.last_contact_at is not None and chatter.last_contact_at.tzinfo is not None
    assert (buyer.channels, buyer.conversations, buyer.orders, buyer.points, buyer.tier) == ((), 0, 1, 1200, "Gold")
    assert buyer.last_contact_at is None
    assert group.strength == MatchStrength.EXACT


async def test_merging_a_group_moves_everything_and_is_recorded(crm, bus) -> None:  # type: ignore[no-untyped-def]
    await make_tiers(crm)
    agent = await make_agent(crm, name="Sam Supervisor", role="supervisor")
    keep = await crm.customers.create(name="Anna Müller", language="de")
    chat = await make_chat(crm, external_id="501", text="hallo")
    await crm.customers.update_profile(customer_id=chat.customer_id, name="anna muller", language="de",
                                       email="anna@example.de")
    buyer = await crm.customers.create(name="Müller Anna", language="de", phone="+49 30 1234567")
    await crm.orders.record_order(customer_id=buyer.id, external_ref="A-9", amount="300", placed_at=WHEN)

    preview = await crm.customers.merge_preview(target_id=keep.id, source_ids=[chat.customer_id, buyer.id])
    assert [s.customer.id for s in preview.sources] == [chat.customer_id, buyer.id]
    assert preview.fills == {"email": "anna@example.de", "phone": "+49 30 1234567"}
    assert (preview.sources[0].channels, preview.sources[1].orders) == (("telegram",), 1)

    merged = await crm.customers.merge_into(target_id=keep.id, source_ids=[chat.customer_id, buyer.id],
                                            agent_id=agent.id)

    assert (merged.email, merged.phone) == ("anna@example.de", "+49 30 1234567")
    view = await crm.timeline.customer_360(customer_id=keep.id)
    assert [i.external_id for i in view.identities] == ["501"]
    assert view.orders.count == 1 and view.loyalty.balance == 300
    assert (await crm.customers.find_duplicates()).groups == ()
    async with crm.db.sessionmaker() as session:
        records = (await session.execute(select(m.CustomerMerge).order_by(m.CustomerMerge.id))).scalars().all()
    assert [(r.source_id, r.target_id, r.agent_id) for r in records] == [
        (chat.customer_id, keep.id, agent.id), (buyer.id, keep.id, agent.id)]
    assert records[0].moved == {"channel_identities": 1, "conversations": 1}
    assert records[1].moved == {"orders": 1, "points": 300}
    merges = [e for e in view.timeline if e.kind == "customer.merged"]
    assert [e.summary for e in merges] == [
        f"Customer #{chat.customer_id} (anna muller) merged into this one by Sam Supervisor; moved: 1 chat, "
        "1 conversation",
        f"Customer #{buyer.id} (Müller Anna) merged into this one by Sam Supervisor; moved: 1 order, 300 points",
    ]
    merged_away = await crm.timeline.timeline(customer_id=buyer.id)
    assert [e.summary for e in merged_away if e.kind == "customer.merged"] == [
        f"Merged into customer #{keep.id} by Sam Supervisor; moved: 1 order, 300 points"]
    assert [(e.source_id, e.agent_id) for e in bus.of(CustomersMerged)] == [
        (chat.customer_id, agent.id), (buyer.id, agent.id)]


async def test_a_merge_that_cannot_be_done_is_refused_and_changes_nothing(crm) -> None:  # type: ignore[no-untyped-def]
    a = await crm.customers.create(name="Ann One", email="ann@example.com")
    b = await crm.customers.create(name="Ann Two", email="ANN@example.com")
    c = await crm.customers.create(name="Ann Three", email="ann@example.com")
    await crm.orders.record_order(customer_id=c.id, external_ref="C-1", amount="10", placed_at=WHEN)
    with pytest.raises(ConflictError, match="into itself"):
        await crm.customers.merge_into(target_id=a.id, source_ids=[a.id, b.id])
    with pytest.raises(ConflictError, match="at least one"):
        await crm.customers.merge_preview(target_id=a.id, source_ids=[])
    await crm.customers.merge(source_id=b.id, target_id=a.id)
    # a form made before that merge: one source is gone meanwhile; the other must not move alone
    with pytest.raises(ConflictError, match=f"#{b.id} has already been merged into customer #{a.id}"):
        await crm.customers.merge_into(target_id=a.id, source_ids=[c.id, b.id])
    assert (await crm.customers.get(customer_id=c.id)).merged_into_id is None
    assert len(await crm.orders.for_customer(customer_id=c.id)) == 1
    # into a merged customer: the message names the one to use
    with pytest.raises(ConflictError, match=f"#{b.id} has already been merged into customer #{a.id}; merge into"):
        await crm.customers.merge_preview(target_id=b.id, source_ids=[c.id])
    async with crm.db.sessionmaker() as session:
        assert len((await session.execute(select(m.CustomerMerge))).scalars().all()) == 1  # the one that was done
