"""Duplicate customers in the console: the groups side by side, a merge confirmed and then posted that moves chats,
orders and points and is recorded with the agent, the refusals (itself, an already merged record, a stale form,
a bad form) as clear messages, and agents turned away."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from crm_store import models as m
from tests.console.conftest import session_for
from tests.support import make_chat, make_tiers

WHEN = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
async def pair(crm):  # type: ignore[no-untyped-def]
    """A CRM record and the same person's Telegram chat (same phone, written another way), with orders and points."""
    await make_tiers(crm)
    kept = await crm.customers.create(name="Anna Müller", email="anna@example.de", phone="+1 415 555 0101",
                                      language="de")
    chat = await make_chat(crm, external_id="4242", text="Hallo")
    await crm.customers.update_profile(customer_id=chat.customer_id, name="anna muller", phone="(415) 555-0101")
    await crm.orders.record_order(customer_id=chat.customer_id, external_ref="KT-77", amount="250", placed_at=WHEN)
    return kept.id, chat.customer_id


async def test_the_page_lists_each_group_side_by_side(client, crm, staff, pair) -> None:  # type: ignore[no-untyped-def]
    kept, chatter = pair
    alike = [await crm.customers.create(name=n, language="zh") for n in ("Li Na", "Na Li")]
    loner = await crm.customers.create(name="Carl Loner", email="carl@example.com")
    await session_for(crm, staff.supervisor, client)

    page = await client.get("/customers/duplicates")

    assert page.status_code == 200
    html = page.text
    assert "Same phone" in html and "+14155550101" in html and "Same name" in html and "li na" in html
    assert html.count("Merge into this one") == 4
    assert f'href="/customers/duplicates/merge?target={kept}&amp;source={chatter}"' in html
    assert f'href="/customers/duplicates/merge?target={chatter}&amp;source={kept}"' in html
    assert f'href="/customers/duplicates/merge?target={alike[1].id}&amp;source={alike[0].id}"' in html
    assert f'href="/customers/{loner.id}"' not in html
    group = re.search(rf'id="group-{kept}".*?</section>', html, re.S).group(0)  # type: ignore[union-attr]
    assert "anna@example.de" in group and "telegram" in group  # facts, row by row
    assert "Silver · 250" in group and "Name only" not in group
    assert "Find duplicates" in (await client.get("/customers")).text


async def test_a_confirmed_merge_moves_everything_and_is_recorded(client, crm, staff, pair) -> None:  # type: ignore[no-untyped-def]
    kept, chatter = pair
    csrf = await session_for(crm, staff.supervisor, client)

    confirm = await client.get("/customers/duplicates/merge", params={"target": kept, "source": [chatter]})
    assert confirm.status_code == 200
    assert "1 chat (telegram)" in confirm.text and "1 order" in confirm.text and "250 points" in confirm.text
    assert f'name="source" value="{chatter}" checked' in confirm.text
    assert (await crm.customers.get(customer_id=chatter)).merged_into_id is None  # showing moves nothing

    done = await client.post("/customers/duplicates/merge",
                             data={"csrf_token": csrf, "target": str(kept), "source": [str(chatter)]})

    assert done.status_code == 303 and done.headers["location"] == f"/customers/{kept}?notice=merged#timeline"
    view = await crm.timeline.customer_360(customer_id=kept)
    assert [i.external_id for i in view.identities] == ["4242"]
    assert [o.external_ref for o in view.orders.recent] == ["KT-77"] and view.loyalty.balance == 250
    async with crm.db.sessionmaker() as session:
        (record,) = (await session.execute(select(m.CustomerMerge))).scalars().all()
    assert (record.source_id, record.target_id, record.agent_id) == (chatter, kept, staff.supervisor.id)
    survivor = await client.get(done.headers["location"])
    assert "Merged: everything of the merged records is on this customer now" in survivor.text
    assert f"Customer #{chatter} (anna muller) merged into this one by Supervisor" in survivor.text
    merged = await client.get(f"/customers/{chatter}")
    assert f'merged into <a href="/customers/{kept}">customer #{kept}</a>' in merged.text
    assert f"Merged into customer #{kept} by Supervisor" in merged.text
    assert "No duplicates found" in (await client.get("/customers/duplicates")).text


async def test_merges_that_cannot_be_done_say_why(client, crm, staff, pair) -> None:  # type: ignore[no-untyped-def]
    kept, chatter = pair
    other = await crm.customers.create(name="Anna Muller", phone="415 555 0101")
    csrf = await session_for(crm, staff.admin, client)

    def post(target: object, *sources: object):  # type: ignore[no-untyped-def]
        return client.post("/customers/duplicates/merge",
                           data={"csrf_token": csrf, "target": str(target), "source": [str(s) for s in sources]})

    itself = await client.get("/customers/duplicates/merge", params={"target": kept, "source": [kept]})
    assert itself.status_code == 409 and "cannot be merged into itself" in itself.text
    assert (await post(kept, kept)).status_code == 409
    # a confirmation shown, then someone else merges one of its customers: the form is stale
    assert (await client.get("/customers/duplicates/merge",
                             params={"target": kept, "source": [chatter, other.id]})).status_code == 200
    await crm.customers.merge(source_id=other.id, target_id=chatter)
    stale = await post(kept, chatter, other.id)
    assert stale.status_code == 409
    assert f"Nothing was merged: Customer #{other.id} has already been merged into customer #{chatter}." in stale.text
    assert (await crm.customers.get(customer_id=chatter)).merged_into_id is None  # not even the other one
    into_merged = await client.get("/customers/duplicates/merge", params={"target": other.id, "source": [kept]})
    assert into_merged.status_code == 409 and "merge into that one instead" in into_merged.text
    nothing = await post(kept)
    assert nothing.status_code == 400 and "Choose at least one customer" in nothing.text
    assert (await post("abc", chatter)).status_code == 400
    assert (await post(kept, 999_999)).status_code == 404
    async with crm.db.sessionmaker() as session:  # only the store's own merge above was made
        assert [r.agent_id for r in (await session.execute(select(m.CustomerMerge))).scalars()] == [None]


async def test_agents_may_not_merge(client, crm, staff, pair) -> None:  # type: ignore[no-untyped-def]
    kept, chatter = pair
    csrf = await session_for(crm, staff.agent, client)
    assert (await client.get("/customers/duplicates")).status_code == 403
    refused = await client.post("/customers/duplicates/merge",
                                data={"csrf_token": csrf, "target": str(kept), "source": [str(chatter)]})
    assert refused.status_code == 403
    assert (await crm.customers.get(customer_id=chatter)).merged_into_id is None
    assert "Find duplicates" not in (await client.get("/customers")).text
