"""The inbox page: views with counts, filters as bookmarkable GET parameters, SLA order with overdue tickets marked,
pages, the HTMX fragment, what each role sees, customer text shown inert, the live stream's refusal of a plain GET."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from console.routes import inbox as inbox_module
from console.tickets import due_in, span
from crm_store.coltypes import utcnow
from tests.console.conftest import session_for
from tests.console.ticketing import XSS, open_ticket

HOUR = timedelta(hours=1)


@pytest.fixture
async def seed(crm, staff):  # type: ignore[no-untyped-def]
    """Care (staff's team): the agent and supervisor. Other team: Bob.

    A  telegram normal  agent, Care       due -1h (overdue)
    B  webchat  high    unassigned        due +2h
    C  telegram urgent  Bob, Other        due +30m
    D  webchat  low     unassigned, Care  due -12m (overdue)
    E  telegram normal  agent, resolved
    """
    other = await crm.agents.create_team(name="Other")
    bob = await crm.agents.create_agent(email="bob@example.com", name="Bob", password="correct horse", team_id=other)
    now = utcnow()
    margin = timedelta(seconds=30)  # the page is rendered a moment later: these still read as whole minutes
    tickets = {
        "A": await open_ticket(crm, "A", due=now - HOUR - margin, team_id=staff.team_id, assignee=staff.agent.id),
        "B": await open_ticket(crm, "B", channel="webchat", priority="high", due=now + 2 * HOUR + margin),
        "C": await open_ticket(crm, "C", priority="urgent", due=now + timedelta(minutes=30) + margin,
                               team_id=other, assignee=bob.id),
        "D": await open_ticket(crm, "D", channel="webchat", priority="low", due=now - timedelta(minutes=12) - margin,
                               team_id=staff.team_id),
        "E": await open_ticket(crm, "E", assignee=staff.agent.id),
    }
    await crm.conversations.resolve(ticket_id=tickets["E"].id, send_csat=False)
    return {"tickets": tickets, "bob": bob, "other": other}


def subjects(page: str) -> list[str]:
    return re.findall(r'data-open>Subject (\w)<', page)


def tab_count(page: str, label: str) -> int:
    match = re.search(rf'>{label}<span class="count[^"]*">(\d+)<', page)
    assert match, label
    return int(match.group(1))


async def test_a_supervisor_sees_every_open_ticket_by_sla_with_overdue_ones_marked(client, crm, staff, seed) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.supervisor, client)
    response = await client.get("/inbox")
    assert response.status_code == 200
    page = response.text
    assert subjects(page) == ["A", "D", "C", "B"]  # by deadline; the resolved E is not in an open view
    rows = re.findall(r'<tr class="inbox-row([^"]*)"', page)
    assert rows == [" is-overdue", " is-overdue", "", ""]
    assert re.findall(r'<td class="sla[^>]*>([^<]*)<', page) == ["1 h overdue", "12 min overdue", "in 30 min", "in 2 h"]
    assert "Customer A" in page and "Hello from B" in page and "Bob" in page and "Unassigned" in page
    counts = {label: tab_count(page, label) for label in ("Mine", "Unassigned", "All open", "Overdue", "New", "Open")}
    assert counts == {"Mine": 0, "Unassigned": 2, "All open": 4, "Overdue": 2, "New": 2, "Open": 2}
    assert 'href="/conversations/' in page and 'data-live-src="/inbox/events"' in page


async def test_an_agent_sees_their_own_their_teams_and_unassigned_tickets_only(client, crm, staff, seed) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.agent, client)
    page = (await client.get("/inbox")).text
    assert subjects(page) == ["A", "D", "B"]  # not C: Bob's, of another team
    assert (tab_count(page, "Mine"), tab_count(page, "All open"), tab_count(page, "Overdue")) == (1, 3, 2)
    assert subjects((await client.get("/inbox?assignee=me")).text) == ["A"]
    # asking for Bob's tickets does not widen what the agent sees
    assert subjects((await client.get(f"/inbox?assignee={seed['bob'].id}")).text) == []


@pytest.mark.parametrize(("query", "expected"), [
    ("assignee=unassigned", ["D", "B"]),
    ("overdue=1", ["A", "D"]),
    ("channel=webchat", ["D", "B"]),
    ("priority=urgent", ["C"]),
    ("status=new", ["D", "B"]),
    ("status=resolved", ["E"]),
    ("assignee=unassigned&channel=webchat&priority=high", ["B"]),
    ("status=bogus&priority=nope&assignee=%3Cx%3E&team=x&channel=fax&cursor=junk", ["A", "D", "C", "B"]),
])
async def test_filters_are_get_parameters(client, crm, staff, seed, query, expected) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.supervisor, client)
    response = await client.get(f"/inbox?{query}")
    assert response.status_code == 200
    assert subjects(response.text) == expected


async def test_team_filter_and_the_current_tab(client, crm, staff, seed) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.admin, client)
    assert subjects((await client.get(f"/inbox?team={seed['other']}")).text) == ["C"]
    page = (await client.get("/inbox?assignee=unassigned")).text
    assert re.search(r'href="/inbox\?assignee=unassigned" aria-current="page">Unassigned', page)
    assert '<option value="unassigned" selected>' in page


async def test_an_htmx_request_gets_the_results_fragment_only(client, crm, staff, seed) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.supervisor, client)
    response = await client.get("/inbox?channel=telegram", headers={"HX-Request": "true", "HX-Target": "inbox-live"})
    assert response.status_code == 200
    assert "<html" not in response.text and "<form" not in response.text
    assert subjects(response.text) == ["A", "C"] and 'class="tabs inbox-tabs"' in response.text


async def test_pages_follow_the_services_cursor(client, crm, staff, seed, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(inbox_module, "PAGE_SIZE", 3)
    await session_for(crm, staff.supervisor, client)
    first = (await client.get("/inbox?channel=")).text
    assert subjects(first) == ["A", "D", "C"]
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert next_url.startswith("/inbox?cursor=")
    second = (await client.get(next_url)).text
    assert subjects(second) == ["B"] and 'rel="next"' not in second and "First page" in second


async def test_a_customers_script_is_shown_inert_in_the_inbox(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    await open_ticket(crm, "X", text=XSS, name="<b>Mallory</b>")
    await session_for(crm, staff.agent, client)
    page = (await client.get("/inbox")).text
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>Mallory" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in page


async def test_an_empty_inbox_says_so(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.agent, client)
    page = (await client.get("/inbox")).text
    assert "Nothing here." in page and "every customer has an answer" in page


async def test_the_live_stream_is_for_event_sources_only(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    anonymous = await client.get("/inbox/events", headers={"Accept": "text/event-stream"})
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    await session_for(crm, staff.agent, client)
    assert (await client.get("/inbox/events")).status_code == 406


def test_deadlines_read_as_an_agent_says_them() -> None:
    now = utcnow()
    assert due_in(now + 2 * HOUR + timedelta(seconds=5), now) == ("in 2 h", "ok")
    assert due_in(now + timedelta(minutes=20, seconds=5), now) == ("in 20 min", "soon")
    assert due_in(now - timedelta(minutes=12), now) == ("12 min overdue", "overdue")
    assert due_in(None, now) == ("no SLA", "none")
    assert [span(s) for s in (10, 90, 3600 * 3 + 600, 3600 * 30, 3600 * 24 * 5)] == \
        ["1 min", "1 min", "3 h 10 min", "30 h", "5 d"]
