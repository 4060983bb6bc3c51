"""Automatic assignment: round robin and least loaded, by team, the admin's setting, the bus handler, and many
tickets at once (each gets exactly one agent, and the agents get as many each)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import update

from crm_store import models as m
from crm_store.events import HandoffRequested, TicketUpdated
from tests.support import make_chat


async def agents(crm, team_id: int | None = None):  # type: ignore[no-untyped-def]
    """Ann and Bob (agents), Sue (supervisor); an admin and an inactive agent who never get tickets."""
    made = [
        await crm.agents.create_agent(email=f"{name}@example.com", name=name.title(), password="correct horse",
                                      role=role, team_id=team_id)
        for name, role in [("ann", "agent"), ("bob", "agent"), ("sue", "supervisor"), ("root", "admin"),
                           ("gone", "agent")]
    ]
    async with crm.db.sessionmaker() as session:
        await session.execute(update(m.Agent).where(m.Agent.id == made[-1].id).values(active=False))
        await session.commit()
    return made[:3]


async def new_tickets(crm, count: int, *, team_id: int | None = None, start: int = 0) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    for n in range(start, start + count):
        chat = await make_chat(crm, external_id=f"c{n}")
        ids.append((await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="no_answer")).id)
    if team_id is not None:
        async with crm.db.sessionmaker() as session:
            await session.execute(update(m.Ticket).where(m.Ticket.id.in_(ids)).values(team_id=team_id))
            await session.commit()
    return ids


async def set_strategy(crm, value: object) -> None:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as session:
        await session.merge(m.AppSetting(key="assignment.strategy", value=value))
        await session.commit()


async def assignees(crm, ticket_ids: list[int]) -> list[int | None]:  # type: ignore[no-untyped-def]
    return [(await crm.conversations.get_ticket(ticket_id=t)).assignee_id for t in ticket_ids]


async def test_round_robin_takes_turns_and_skips_admins_and_inactive_agents(crm, bus) -> None:
    ann, bob, sue = await agents(crm)
    tickets = await new_tickets(crm, 7)
    for ticket_id in tickets:
        assigned = await crm.assignment.assign_automatically(ticket_id=ticket_id, strategy="round_robin")
        assert assigned is not None and assigned.status == "open"
    assert await assignees(crm, tickets) == [ann.id, bob.id, sue.id, ann.id, bob.id, sue.id, ann.id]
    conversation = await crm.conversations.get(
        conversation_id=(await crm.conversations.get_ticket(ticket_id=tickets[0])).conversation_id
    )
    assert conversation.status == "open" and conversation.assignee_id == ann.id
    assigned_events = [e for e in bus.of(TicketUpdated) if e.kind == "assigned"]
    assert len(assigned_events) == 7 and all(e.agent_id is None for e in assigned_events)
    events = await crm.conversations.ticket_events(ticket_id=tickets[0])
    assert [(e.kind, e.actor, e.to_value) for e in events] == [
        ("created", "system", "no_answer"), ("assigned", "system", str(ann.id))
    ]


async def test_a_manual_assignment_counts_as_a_turn(crm) -> None:
    ann, bob, sue = await agents(crm)
    first, *rest = await new_tickets(crm, 3)
    await crm.conversations.assign(ticket_id=first, agent_id=ann.id)
    for ticket_id in rest:
        await crm.assignment.assign_automatically(ticket_id=ticket_id, strategy="round_robin")
    assert await assignees(crm, rest) == [bob.id, sue.id]


async def test_least_loaded_counts_active_tickets_and_breaks_ties_by_turn(crm) -> None:
    ann, bob, sue = await agents(crm)
    manual = await new_tickets(crm, 3)
    for ticket_id, agent in zip(manual, [ann, ann, sue], strict=True):
        await crm.conversations.assign(ticket_id=ticket_id, agent_id=agent.id)
    auto = await new_tickets(crm, 4, start=10)
    for ticket_id in auto:
        await crm.assignment.assign_automatically(ticket_id=ticket_id, strategy="least_loaded")
    # loads ann 2, bob 0, sue 1 -> bob; then bob 1 = sue 1, Sue's turn was longer ago -> sue; then bob;
    # then all have 2 and Ann's turn is the oldest
    assert await assignees(crm, auto) == [bob.id, sue.id, bob.id, ann.id]

    # resolved tickets are no load: Ann's three go, she is the least loaded
    for ticket_id in [*manual[:2], auto[3]]:
        await crm.conversations.resolve(ticket_id=ticket_id, send_csat=False)
    [extra] = await new_tickets(crm, 1, start=20)
    await crm.assignment.assign_automatically(ticket_id=extra, strategy="least_loaded")
    assert await assignees(crm, [extra]) == [ann.id]


async def test_a_teams_ticket_goes_to_that_team_only(crm) -> None:
    sales = await crm.agents.create_team(name="Sales")
    empty = await crm.agents.create_team(name="Nobody")
    await agents(crm)
    seller = await crm.agents.create_agent(email="seller@example.com", name="Seller", password="correct horse",
                                           team_id=sales)
    for strategy in ("round_robin", "least_loaded"):
        tickets = await new_tickets(crm, 2, team_id=sales, start=100 if strategy == "round_robin" else 200)
        for ticket_id in tickets:
            await crm.assignment.assign_automatically(ticket_id=ticket_id, strategy=strategy)
        assert await assignees(crm, tickets) == [seller.id, seller.id]
    [orphan] = await new_tickets(crm, 1, team_id=empty, start=300)
    assert await crm.assignment.assign_automatically(ticket_id=orphan, strategy="round_robin") is None
    assert await assignees(crm, [orphan]) == [None]


async def test_nothing_happens_to_assigned_or_finished_tickets_or_when_off(crm) -> None:
    _ann, bob, _sue = await agents(crm)
    taken, done, waiting = await new_tickets(crm, 3)
    await crm.conversations.assign(ticket_id=taken, agent_id=bob.id)
    await crm.conversations.resolve(ticket_id=done, send_csat=False)
    assert await crm.assignment.assign_automatically(ticket_id=taken, strategy="round_robin") is None
    assert await crm.assignment.assign_automatically(ticket_id=done, strategy="least_loaded") is None
    assert await crm.assignment.assign_automatically(ticket_id=waiting, strategy="off") is None
    assert await crm.assignment.assign_automatically(ticket_id=12345, strategy="round_robin") is None
    with pytest.raises(ValueError):
        await crm.assignment.assign_automatically(ticket_id=waiting, strategy="random")
    assert await assignees(crm, [taken, done, waiting]) == [bob.id, None, None]


@pytest.mark.parametrize(("setting", "assigned"), [(None, False), ("off", False), ("round_robin", True),
                                                   ("least_loaded", True), ("bogus", False), (["x"], False)])
async def test_the_bus_handler_follows_the_setting(crm, bus, setting: object, assigned: bool) -> None:
    await agents(crm)
    if setting is not None:
        await set_strategy(crm, setting)
    chat = await make_chat(crm)
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    [handoff] = bus.of(HandoffRequested)
    await crm.assignment.on_event(bus.of(TicketUpdated)[0])  # other events are ignored
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).assignee_id is None
    await crm.assignment.on_event(handoff)
    assert ((await crm.conversations.get_ticket(ticket_id=ticket.id)).assignee_id is not None) is assigned


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded"])
async def test_many_tickets_at_once_get_one_agent_each_and_balanced_loads(crm, strategy: str) -> None:
    team = await agents(crm)
    tickets = await new_tickets(crm, 12)
    results = await asyncio.gather(*[
        crm.assignment.assign_automatically(ticket_id=t, strategy=strategy) for t in tickets
    ])
    assert all(r is not None for r in results)
    owners = await assignees(crm, tickets)
    assert Counter(owners) == {a.id: 4 for a in team}
    for ticket_id in tickets:
        kinds = [e.kind for e in await crm.conversations.ticket_events(ticket_id=ticket_id)]
        assert kinds.count("assigned") == 1


async def test_the_same_ticket_assigned_twice_at_once_is_assigned_once(crm) -> None:
    await agents(crm)
    [ticket_id] = await new_tickets(crm, 1)
    results = await asyncio.gather(*[
        crm.assignment.assign_automatically(ticket_id=ticket_id, strategy="round_robin") for _ in range(4)
    ])
    assert sum(r is not None for r in results) == 1
    kinds = [e.kind for e in await crm.conversations.ticket_events(ticket_id=ticket_id)]
    assert kinds == ["created", "assigned"]
