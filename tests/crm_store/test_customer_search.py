"""The console's customer search: by a piece of the name, or exactly by e-mail, phone (any usual form), chat id or
customer number; merged customers are left out; keyset pages, newest first."""

from __future__ import annotations

from crm_store.enums import Channel


async def test_search_page_matches_each_way_a_customer_is_named(crm) -> None:  # type: ignore[no-untyped-def]
    ann = await crm.customers.create(name="Ann O'Neil", email="Ann@Example.com", phone="+1 646 555 0119")
    bob = await crm.customers.create(name="Bob 100%_done", email="bob@example.com")
    await crm.customers.link_identity(channel=Channel.TELEGRAM, external_id="777001", customer_id=bob.id)

    async def ids(query: str) -> list[int]:
        return [c.id for c in (await crm.customers.search_page(query=query)).customers]

    assert await ids("o'nei") == [ann.id]
    assert await ids("ann@example.COM") == [ann.id]
    assert await ids("(646) 555-0119") == [ann.id]
    assert await ids("777001") == [bob.id]
    assert await ids(f"#{bob.id}") == [bob.id]
    assert await ids("100%_") == [bob.id]  # LIKE wildcards are taken literally
    assert await ids("example.com") == []  # e-mails match exactly, not by a piece
    assert await ids("") == [bob.id, ann.id]
    await crm.customers.merge(source_id=ann.id, target_id=bob.id)
    assert await ids("") == [bob.id]


async def test_search_page_pages_by_id(crm) -> None:  # type: ignore[no-untyped-def]
    made = [await crm.customers.create(name=f"Page {n}") for n in range(5)]
    first = await crm.customers.search_page(query="page", limit=2)
    assert [c.id for c in first.customers] == [made[4].id, made[3].id] and first.next_before == made[3].id
    second = await crm.customers.search_page(query="page", limit=2, before=first.next_before)
    third = await crm.customers.search_page(query="page", limit=2, before=second.next_before)
    assert [c.id for c in second.customers + third.customers] == [made[2].id, made[1].id, made[0].id]
    assert third.next_before is None
