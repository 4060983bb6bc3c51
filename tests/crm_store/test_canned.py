"""Canned responses: CRUD by shortcut, lists by language and team, and rendering their variables safely."""

from __future__ import annotations

import pytest

from crm_store.dto import AgentView, CustomerView
from crm_store.errors import ConflictError, NotFound
from crm_store.services.canned import render
from tests.support import make_agent, make_chat


async def test_create_find_list_update_delete(crm) -> None:
    sales = await crm.agents.create_team(name="Sales")
    support = await crm.agents.create_team(name="Support")
    agent = await make_agent(crm)
    hello = await crm.canned.create(shortcut="/hello", title="Greeting", body="Hi {customer.first_name}!",
                                    created_by_agent_id=agent.id)
    assert (hello.shortcut, hello.language, hello.team_id, hello.created_by_agent_id) == ("hello", "en", None,
                                                                                          agent.id)
    await crm.canned.create(shortcut="hello_zh", title="问候", body="您好，{customer.name}！", language="zh")
    await crm.canned.create(shortcut="refund", title="Refund", body="Refunds take 5 days.", team_id=sales)
    await crm.canned.create(shortcut="ticket", title="Ticket", body="Your ticket is #{ticket.id}.", team_id=support)

    assert (await crm.canned.find(shortcut="/hello")).id == hello.id
    assert await crm.canned.find(shortcut="nope") is None
    assert [c.shortcut for c in await crm.canned.list()] == ["hello", "hello_zh", "refund", "ticket"]
    assert [c.shortcut for c in await crm.canned.list(language="zh")] == ["hello_zh"]
    assert [c.shortcut for c in await crm.canned.list(team_id=sales)] == ["hello", "hello_zh", "refund"]
    assert [c.shortcut for c in await crm.canned.list(team_id=support, language="en")] == ["hello", "ticket"]
    assert [c.shortcut for c in await crm.canned.list(prefix="/hel")] == ["hello", "hello_zh"]
    assert await crm.canned.list(prefix="%") == []  # a LIKE wildcard is matched as typed

    changed = await crm.canned.update(response_id=hello.id, shortcut="hi", title="Hi", body="Hello!", language="en",
                                      team_id=support)
    assert (changed.shortcut, changed.body, changed.team_id) == ("hi", "Hello!", support)
    assert await crm.canned.find(shortcut="hello") is None
    await crm.canned.delete(response_id=hello.id)
    assert await crm.canned.find(shortcut="hi") is None
    with pytest.raises(NotFound):
        await crm.canned.delete(response_id=hello.id)
    with pytest.raises(NotFound):
        await crm.canned.update(response_id=hello.id, shortcut="x", title="x", body="x", language="en", team_id=None)


async def test_shortcuts_are_unique_and_well_formed(crm) -> None:
    first = await crm.canned.create(shortcut="thanks", title="Thanks", body="Thank you!")
    other = await crm.canned.create(shortcut="bye", title="Bye", body="Goodbye!")
    with pytest.raises(ConflictError):
        await crm.canned.create(shortcut="/thanks", title="Again", body="Thanks again!")
    with pytest.raises(ConflictError):
        await crm.canned.update(response_id=other.id, shortcut="thanks", title="Bye", body="Bye", language="en",
                                team_id=None)
    with pytest.raises(ConflictError):
        await crm.canned.create(shortcut="team", title="Team", body="...", team_id=999)
    for bad in ["", "/", "two words", "x" * 51, "semi;colon"]:
        with pytest.raises(ValueError):
            await crm.canned.create(shortcut=bad, title="T", body="B")
    with pytest.raises(ValueError):
        await crm.canned.create(shortcut="empty", title="T", body="   ")
    assert [(c.id, c.shortcut) for c in await crm.canned.list()] == [(other.id, "bye"), (first.id, "thanks")]


async def test_render_fills_the_known_variables_from_the_services_views(crm) -> None:
    agent = await make_agent(crm, name="Ann Lee")
    chat = await make_chat(crm)
    customer = await crm.customers.update_profile(customer_id=chat.customer_id, name="Wei Zhang",
                                                  email="wei@example.com")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="complaint")
    body = "Hi {customer.first_name} ({customer.name}, {customer.email}), I'm {agent.name}; ticket #{ticket.id}."
    assert crm.canned.render(body=body, customer=customer, agent=agent, ticket=ticket) == (
        f"Hi Wei (Wei Zhang, wei@example.com), I'm Ann Lee; ticket #{ticket.id}."
    )
    page = await crm.inbox.conversation_page(conversation_id=chat.conversation.id)
    assert render("Dear {customer.name}", customer=page.customer) == "Dear Wei Zhang"


def customer(**overrides: object) -> CustomerView:
    fields: dict[str, object] = dict(id=1, name="Wei Zhang", email=None, phone=None, language="en", tags=(),
                                     marketing_consent=False, marketing_consent_at=None, external_ref=None,
                                     merged_into_id=None, created_at=None)
    return CustomerView(**{**fields, **overrides})  # type: ignore[arg-type]


AGENT = AgentView(id=7, email="ann@example.com", name="Ann", role="agent", active=True, team_id=None)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{customer.__class__}", "{customer.__class__}"),
        ("{customer.__init__.__globals__}", "{customer.__init__.__globals__}"),
        ("{customer.name.__class__.__mro__}", "{customer.name.__class__.__mro__}"),
        ("{0} {} {1:>10} %s %(name)s $name ${customer.name}", "{0} {} {1:>10} %s %(name)s $name $Wei Zhang"),
        ("{customer.name!r} {customer.name:>20}", "{customer.name!r} {customer.name:>20}"),
        ("{customer.phone} {agent.email} {ticket.subject}", "{customer.phone} {agent.email} {ticket.subject}"),
        ("{{customer.name}}", "{Wei Zhang}"),
        ("{ customer.name }", "Wei Zhang"),
        ("{Customer.Name}", "{Customer.Name}"),
        ("{customer.name", "{customer.name"),
        ("customer.name}", "customer.name}"),
        ("}{ {{ }} {", "}{ {{ }} {"),
        ("{customer.email}|{ticket.id}", "|"),  # known, but nothing to fill: empty
        ("", ""),
    ],
)
def test_render_leaves_anything_else_as_typed(body: str, expected: str) -> None:
    assert render(body, customer=customer(), agent=AGENT, ticket=None) == expected


def test_render_never_runs_or_reads_beyond_the_whitelist() -> None:
    class Trap:
        """Any attribute but the whitelisted ones blows up, so reading one fails the test."""

        name = "Trap"

        def __getattr__(self, item: str) -> object:
            raise AssertionError(f"read {item}")

    hostile = "{customer.__dict__}{customer.__class__.__init__}{customer.secret}{agent.password_hash}{customer.name}"
    assert render(hostile, customer=Trap(), agent=Trap()) == (
        "{customer.__dict__}{customer.__class__.__init__}{customer.secret}{agent.password_hash}Trap"
    )
    # mappings work too, and a missing source or field is an empty value, never a crash
    assert render("{customer.first_name}/{agent.name}/{ticket.id}", customer={"name": "  "}, agent={}) == "//"
    assert render("{customer.first_name}", customer={"name": "李 雷"}) == "李"
    assert render("x" * 10_000 + "{customer.name}", customer={"name": "A"}) == "x" * 10_000 + "A"
