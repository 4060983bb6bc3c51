"""The console's inbox: filters, order, pages, overdue, agent visibility, counts per view; the conversation view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import event, update

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import InboxFilter
from crm_store.errors import NotFound
from tests.support import make_agent

HOUR = timedelta(hours=1)


@dataclass
class Seed:
    now: datetime
    tickets: dict[str, int]  # T1.. -> ticket id
    ann: int
    bob: int
    sue: int
    sales: int
    support: int


async def open_ticket(crm, db, key: str, *, channel: str, priority: str, due: datetime | None,  # type: ignore[no-untyped-def]
                      team_id: int | None = None, assignee: int | None = None) -> int:
    chat = await crm.conversations.record_incoming(channel=channel, external_id=f"ext-{key}", text=f"Hello from {key}",
                                                   display_name=f"Customer {key}")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked",
                                              subject=f"Subject {key}", priority=priority)
    if assignee is not None:
        await crm.conversations.assign(ticket_id=ticket.id, agent_id=assignee)
    async with db.sessionmaker() as session:  # deadlines and teams set as the test needs them
        await session.execute(update(m.Ticket).where(m.Ticket.id == ticket.id).values(sla_due_at=due, team_id=team_id))
        await session.commit()
    return ticket.id


@pytest.fixture
async def seed(crm, db) -> Seed:  # type: ignore[no-untyped-def]
    """Six active tickets and a resolved one:

    T1 telegram normal  ann (Sales)      due -1h   (overdue)
    T2 webchat  high    unassigned       due +1h
    T3 telegram urgent  bob, team Sales  due +2h
    T4 telegram low     unassigned, Support  due -2h  (overdue)
    T5 webchat  normal  ann, pending     no deadline
    T6 telegram normal  bob, resolved (no deadline)
    T7 webchat  normal  bob, Support     due +3h
    """
    sales = await crm.agents.create_team(name="Sales")
    support = await crm.agents.create_team(name="Support")
    ann = await crm.agents.create_agent(email="ann@example.com", name="Ann", password="correct horse", team_id=sales)
    bob = await crm.agents.create_agent(email="bob@example.com", name="Bob", password="correct horse",
                                        team_id=support)
    sue = await make_agent(crm, email="sue@example.com", role="supervisor", name="Sue")
    now = utcnow()
    t = {
        "T1": await open_ticket(crm, db, "T1", channel="telegram", priority="normal", due=now - HOUR, team_id=sales,
                                assignee=ann.id),
        "T2": await open_ticket(crm, db, "T2", channel="webchat", priority="high", due=now + HOUR),
        "T3": await open_ticket(crm, db, "T3", channel="telegram", priority="urgent", due=now + 2 * HOUR,
                                team_id=sales, assignee=bob.id),
        "T4": await open_ticket(crm, db, "T4", channel="telegram", priority="low", due=now - 2 * HOUR,
                                team_id=support),
        "T5": await open_ticket(crm, db, "T5", channel="webchat", priority="normal", due=None, assignee=ann.id),
        "T6": await open_ticket(crm, db, "T6", channel="telegram", priority="normal", due=now, assignee=bob.id),
        "T7": await open_ticket(crm, db, "T7", channel="webchat", priority="normal", due=now + 3 * HOUR,
                                team_id=support, assignee=bob.id),
    }
    await crm.conversations.change_status(ticket_id=t["T5"], status="pending")
    await crm.conversations.resolve(ticket_id=t["T6"], send_csat=False)
    return Seed(now, t, ann.id, bob.id, sue.id, sales, support)


async def keys(crm, seed: Seed, view: InboxFilter = InboxFilter(), **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    page = await crm.inbox.tickets(viewer_id=kwargs.pop("viewer_id", seed.ann), view=view, now=seed.now, **kwargs)
    names = {ticket_id: key for key, ticket_id in seed.tickets.items()}
    return [names[row.ticket_id] for row in page.rows]


async def test_the_default_view_is_every_active_ticket_by_deadline_none_last(crm, seed: Seed) -> None:
    assert await keys(crm, seed) == ["T4", "T1", "T2", "T3", "T7", "T5"]


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (InboxFilter(assignee="me"), ["T1", "T5"]),
        (InboxFilter(assignee="unassigned"), ["T4", "T2"]),
        (InboxFilter(assignee="anyone"), ["T4", "T1", "T2", "T3", "T7", "T5"]),
        (InboxFilter(team_id=-1), []),
        (InboxFilter(channel="webchat"), ["T2", "T7", "T5"]),
        (InboxFilter(priorities=("high", "urgent")), ["T2", "T3"]),
        (InboxFilter(statuses=("pending",)), ["T5"]),
        (InboxFilter(statuses=("new",)), ["T4", "T2"]),
        (InboxFilter(statuses=("resolved", "closed")), ["T6"]),
        (InboxFilter(statuses=()), ["T4", "T1", "T2", "T3", "T7", "T5", "T6"]),  # resolved: no deadline
        (InboxFilter(overdue=True), ["T4", "T1"]),
        (InboxFilter(assignee="me", channel="telegram"), ["T1"]),
        (InboxFilter(assignee="unassigned", overdue=True, channel="telegram"), ["T4"]),
    ],
)
async def test_filters(crm, seed: Seed, view: InboxFilter, expected: list[str]) -> None:
    assert await keys(crm, seed, view) == expected


async def test_filters_by_team_and_agent_id(crm, seed: Seed) -> None:
    assert await keys(crm, seed, InboxFilter(team_id=seed.sales)) == ["T1", "T3"]
    assert await keys(crm, seed, InboxFilter(team_id=seed.support)) == ["T4", "T7"]
    assert await keys(crm, seed, InboxFilter(assignee=seed.bob)) == ["T3", "T7"]
    assert await keys(crm, seed, InboxFilter(assignee=str(seed.bob))) == ["T3", "T7"]
    assert await keys(crm, seed, InboxFilter(assignee="me"), viewer_id=seed.sue) == []
    with pytest.raises(ValueError):
        await keys(crm, seed, InboxFilter(assignee="everybody"))


async def test_an_agent_sees_their_own_their_teams_and_unassigned_tickets(crm, seed: Seed) -> None:
    # Ann (Sales): T3 is Bob's but in Sales; T7 is Bob's in Support
    assert await keys(crm, seed, visible_to=seed.ann) == ["T4", "T1", "T2", "T3", "T5"]
    # Bob (Support): his own, Support's and the unassigned; not Ann's
    assert await keys(crm, seed, visible_to=seed.bob, viewer_id=seed.bob) == ["T4", "T2", "T3", "T7"]
    # Sue has no team: her own (none) and the unassigned
    assert await keys(crm, seed, visible_to=seed.sue, viewer_id=seed.sue) == ["T4", "T2"]
    assert await keys(crm, seed, InboxFilter(assignee=seed.bob), visible_to=seed.ann) == ["T3"]


async def test_rows_carry_what_the_inbox_shows(crm, seed: Seed) -> None:
    t1 = seed.tickets["T1"]
    before = (await crm.inbox.tickets(viewer_id=seed.ann, view=InboxFilter(assignee="me"), now=seed.now)).rows[0]
    assert before.overdue and before.sla_due_at == seed.now - HOUR and before.last_message == "Hello from T1"
    conversation_id = (await crm.conversations.get_ticket(ticket_id=t1)).conversation_id
    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender="agent", agent_id=seed.ann,
                                            text="Let me check that for you. " * 10)
    await crm.conversations.add_note(conversation_id=conversation_id, agent_id=seed.ann, text="internal only")
    page = await crm.inbox.tickets(viewer_id=seed.ann, view=InboxFilter(assignee="me"), now=seed.now)
    row = page.rows[0]
    assert (row.ticket_id, row.subject, row.status, row.priority) == (t1, "Subject T1", "open", "normal")
    assert (row.customer_name, row.channel, row.assignee_name, row.team_name) == ("Customer T1", "telegram", "Ann",
                                                                                  "Sales")
    # answered: the deadline moved on to the resolution target (the store's default: a day from the handoff)
    assert not row.overdue and row.sla_due_at == row.created_at + crm.settings.sla_target("normal")
    assert row.last_message == ("Let me check that for you. " * 10)[:140]  # the snippet, never the note
    assert row.last_message_at is not None and row.waiting_since is None  # the agent answered
    t5 = page.rows[1]
    assert t5.sla_due_at is None and not t5.overdue and t5.last_message == "Hello from T5"
    assert t5.waiting_since is not None and t5.team_name is None
    unassigned = (await crm.inbox.tickets(viewer_id=seed.ann, view=InboxFilter(assignee="unassigned"))).rows
    assert [(r.assignee_id, r.assignee_name) for r in unassigned] == [(None, None), (None, None)]


async def test_pages_by_cursor_and_by_offset(crm, seed: Seed) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await crm.inbox.tickets(viewer_id=seed.ann, limit=2, cursor=cursor, now=seed.now)
        seen += [r.ticket_id for r in page.rows]
        pages += 1
        if page.next_cursor is None:
            break
        assert quote(page.next_cursor, safe="") == page.next_cursor  # goes into a URL as it is
        cursor = page.next_cursor
    order = ["T4", "T1", "T2", "T3", "T7", "T5"]
    assert seen == [seed.tickets[k] for k in order] and pages == 3
    # a cursor past the last deadline, among the tickets without one
    page = await crm.inbox.tickets(viewer_id=seed.ann, limit=5, now=seed.now)
    rest = await crm.inbox.tickets(viewer_id=seed.ann, limit=5, cursor=page.next_cursor, now=seed.now)
    assert [r.ticket_id for r in rest.rows] == [seed.tickets["T5"]] and rest.next_cursor is None
    by_offset = await crm.inbox.tickets(viewer_id=seed.ann, limit=2, offset=2, now=seed.now)
    assert [r.ticket_id for r in by_offset.rows] == [seed.tickets["T2"], seed.tickets["T3"]]
    with pytest.raises(ValueError):
        await crm.inbox.tickets(viewer_id=seed.ann, cursor="not-a-cursor")


async def test_a_page_costs_the_same_few_queries_whatever_its_size(crm, db, seed: Seed) -> None:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        await crm.inbox.tickets(viewer_id=seed.ann, limit=1)
        one = len(statements)
        statements.clear()
        await crm.inbox.tickets(viewer_id=seed.ann, limit=50)
        many = len(statements)
        statements.clear()
        await crm.inbox.counts(viewer_id=seed.ann)
        counting = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert one == many <= 4
    assert len(counting) == 1


async def test_counts_per_view(crm, seed: Seed) -> None:
    counts = await crm.inbox.counts(viewer_id=seed.ann, now=seed.now)
    assert (counts.all_open, counts.mine, counts.unassigned, counts.overdue) == (6, 2, 2, 2)
    assert counts.by_status == {"new": 2, "open": 3, "pending": 1}
    visible = await crm.inbox.counts(viewer_id=seed.ann, visible_to=seed.ann, now=seed.now)
    assert (visible.all_open, visible.mine, visible.unassigned, visible.overdue) == (5, 2, 2, 2)
    assert visible.by_status == {"new": 2, "open": 2, "pending": 1}
    bob = await crm.inbox.counts(viewer_id=seed.bob, statuses=("open", "resolved"), now=seed.now)
    assert (bob.all_open, bob.mine, bob.by_status) == (4, 3, {"open": 3, "resolved": 1})


async def test_counts_agree_with_the_views(crm, seed: Seed) -> None:
    for viewer, visible_to in [(seed.ann, None), (seed.ann, seed.ann), (seed.bob, seed.bob), (seed.sue, None)]:
        counts = await crm.inbox.counts(viewer_id=viewer, visible_to=visible_to, now=seed.now)
        views = {
            "mine": InboxFilter(assignee="me"), "unassigned": InboxFilter(assignee="unassigned"),
            "all_open": InboxFilter(), "overdue": InboxFilter(overdue=True),
        }
        for name, view in views.items():
            rows = await keys(crm, seed, view, viewer_id=viewer, visible_to=visible_to)
            assert len(rows) == getattr(counts, name), (viewer, visible_to, name)


# --- the conversation view ---------------------------------------------------------------------------------------


async def test_conversation_page_pages_back_through_the_messages(crm) -> None:
    await crm.loyalty.define_tier(name="Gold", threshold=1000)
    agent = await make_agent(crm, name="Ann")
    chat = await crm.conversations.record_incoming(channel="telegram", external_id="42", text="m1",
                                                   display_name="Wei")
    await crm.loyalty.award_points(customer_id=chat.customer_id, points=1200, reason="orders", idempotency_key="k")
    cid = chat.conversation.id
    await crm.conversations.record_outgoing(conversation_id=cid, sender="bot", text="m2")
    ticket = await crm.conversations.hand_off(conversation_id=cid, reason="customer_asked")
    await crm.conversations.record_incoming(channel="telegram", external_id="42", text="m3")
    await crm.conversations.add_note(conversation_id=cid, agent_id=agent.id, text="m4 (note)")
    await crm.conversations.record_outgoing(conversation_id=cid, sender="agent", agent_id=agent.id, text="m5")
    await crm.conversations.record_incoming(channel="telegram", external_id="42", text="m6")
    await crm.conversations.record_outgoing(conversation_id=cid, sender="agent", agent_id=agent.id, text="m7")

    first = await crm.inbox.conversation_page(conversation_id=cid, limit=3)
    assert [x.text for x in first.messages] == ["m5", "m6", "m7"]
    assert first.agent_names == {agent.id: "Ann"}
    assert first.conversation.id == cid and first.ticket.id == ticket.id
    assert first.sla.channel == "telegram" and first.sla.sla_due_at == first.sla.resolution_due_at
    assert not first.sla.overdue
    customer = first.customer
    assert (customer.name, customer.tier_name, customer.points_balance, customer.channel) == ("Wei", "Gold", 1200,
                                                                                                "telegram")
    second = await crm.inbox.conversation_page(conversation_id=cid, limit=3, before_id=first.next_before_id)
    assert [x.text for x in second.messages] == ["m2", "m3", "m4 (note)"]
    third = await crm.inbox.conversation_page(conversation_id=cid, limit=3, before_id=second.next_before_id)
    assert [x.text for x in third.messages] == ["m1"] and third.next_before_id is None
    public = await crm.inbox.conversation_page(conversation_id=cid, limit=10, include_private=False)
    assert "m4 (note)" not in [x.text for x in public.messages] and len(public.messages) == 6


async def test_conversation_page_of_a_chat_without_ticket_and_unknown_ids(crm) -> None:
    chat = await crm.conversations.record_incoming(channel="webchat", external_id="v1", text="hi")
    page = await crm.inbox.conversation_page(conversation_id=chat.conversation.id)
    assert page.ticket is None and page.sla is None and page.next_before_id is None
    assert page.customer.tier_name is None and page.customer.points_balance == 0
    assert [x.text for x in page.messages] == ["hi"]
    with pytest.raises(NotFound):
        await crm.inbox.conversation_page(conversation_id=999)
    with pytest.raises(NotFound):
        await crm.inbox.conversation_page(conversation_id=chat.conversation.id, before_id=999)
