"""The conversation view: a transcript whose customer, bot, agent and note messages are told apart (and whose
customer text is inert), the ticket panel and every action on it (each a ticket event), replies that reach the
customer's chat and notes that do not, canned responses, agent assist, "save to the KB", the live stream, and who
may open or act on which conversation."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import httpx
import pytest

from console.app import create_console_app
from console.settings import ConsoleSettings
from console.throttle import MemoryLoginThrottle
from crm_store.bus import build_event_bus
from crm_store.crm import CRM
from crm_store.events import AgentReplied, NoteAdded, SurveyInvited, TicketResolved, TicketUpdated
from tests.console.conftest import session_for
from tests.console.ticketing import XSS, open_ticket
from tests.support import serving


@pytest.fixture
async def chat(crm, staff):  # type: ignore[no-untyped-def]
    """Wei wrote on Telegram, the bot answered, Wei asked for a person: an unassigned ticket of the agent's team."""
    first = await crm.conversations.record_incoming(channel="telegram", external_id="777", text="Where is my order?",
                                                    display_name="Wei Zhang")
    cid = first.conversation.id
    await crm.conversations.record_outgoing(conversation_id=cid, sender="bot", text="Orders ship in 1 day.",
                                            intent="order_status", confidence=0.91)
    await crm.conversations.record_incoming(channel="telegram", external_id="777", text="I want a person")
    ticket = await crm.conversations.hand_off(conversation_id=cid, reason="customer_asked", subject="Late order",
                                              intent="human")
    return ticket


def url(ticket, tail: str = "") -> str:  # type: ignore[no-untyped-def]
    return f"/conversations/{ticket.conversation_id}{tail}"


async def signed(client, crm, who):  # type: ignore[no-untyped-def]
    """Sign `who` in; returns HTMX-style headers with their CSRF token."""
    token = await session_for(crm, who, client)
    return {"X-CSRF-Token": token, "HX-Request": "true"}


async def test_the_transcript_tells_customer_bot_agent_and_note_apart(client, crm, staff, chat) -> None:  # type: ignore[no-untyped-def]
    cid = chat.conversation_id
    await crm.conversations.record_outgoing(conversation_id=cid, sender="agent", agent_id=staff.admin.id,
                                            text="Let me check.")
    await crm.conversations.add_note(conversation_id=cid, agent_id=staff.admin.id, text="Courier delayed")
    await session_for(crm, staff.agent, client)
    response = await client.get(url(chat))
    assert response.status_code == 200
    page = response.text
    kinds = re.findall(r'<li class="msg msg-(\w+)"', page)
    assert kinds == ["customer", "bot", "customer", "agent", "note"]
    note = re.search(r'<li class="msg msg-note".*?</li>', page, re.S).group(0)  # type: ignore[union-attr]
    assert "Internal note" in note and "Courier delayed" in note and "Admin" in note
    assert "Wei Zhang" in page and "order_status" in page and 'href="/customers/' in page
    # the ticket panel: status, SLA, what the bot tried, history
    assert "Ticket #" in page and "SLA due in" in page and "the customer asked for a person" in page
    assert '<span class="chip">human</span>' in page and "opened the ticket" in page
    assert 'data-live-src="/conversations/' in page and "Take it" in page


async def test_a_customers_script_is_shown_inert_in_the_transcript(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    ticket = await open_ticket(crm, "X", text=XSS)
    await session_for(crm, staff.agent, client)
    for path in (url(ticket), url(ticket, "/messages")):
        page = (await client.get(path)).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    response = await client.get(url(ticket))
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_a_reply_goes_to_the_customers_telegram_chat(client, crm, staff, chat, bus) -> None:  # type: ignore[no-untyped-def]
    headers = await signed(client, crm, staff.agent)
    response = await client.post(url(chat, "/reply"), data={"text": "Hi {customer.name}, on its way <b>now</b>"},
                                 headers=headers)
    assert response.status_code == 200
    assert 'class="msg msg-agent"' in response.text and "&lt;b&gt;now&lt;/b&gt;" in response.text
    (sent,) = bus.of(AgentReplied)
    assert (sent.channel, sent.external_id, sent.agent_id) == ("telegram", "777", staff.agent.id)
    assert sent.text == "Hi {customer.name}, on its way <b>now</b>"  # what the agent typed, as typed
    ticket = await crm.conversations.get_ticket(ticket_id=chat.id)
    assert ticket.assignee_id == staff.agent.id and ticket.first_response_at is not None  # replying took it
    # without HTMX (no JavaScript): the form posts, then the page again
    plain = await client.post(url(chat, "/reply"), data={"text": "Second", "csrf_token": headers["X-CSRF-Token"]})
    assert plain.status_code == 303 and plain.headers["location"] == url(chat)
    assert (await client.post(url(chat, "/reply"), data={"text": "  "}, headers=headers)).status_code == 400


async def test_a_note_stays_private(client, crm, staff, chat, bus) -> None:  # type: ignore[no-untyped-def]
    headers = await signed(client, crm, staff.agent)
    response = await client.post(url(chat, "/notes"), data={"text": "VIP, be kind"}, headers=headers)
    assert response.status_code == 200 and 'class="msg msg-note"' in response.text
    assert bus.of(AgentReplied) == [] and len(bus.of(NoteAdded)) == 1
    history = await crm.conversations.history(channel="telegram", external_id="777")
    assert "VIP, be kind" not in [m.text for m in history]
    events = await crm.conversations.ticket_events(ticket_id=chat.id)
    assert events[-1].kind == "note_added"


async def test_status_priority_and_assignee_changes_are_ticket_events(client, crm, staff, chat, bus) -> None:  # type: ignore[no-untyped-def]
    headers = await signed(client, crm, staff.supervisor)
    assert (await client.post(url(chat, "/status"), data={"status": "pending"}, headers=headers)).status_code == 200
    response = await client.post(url(chat, "/priority"), data={"priority": "urgent"}, headers=headers)
    assert response.status_code == 200 and 'id="ticket-panel"' in response.text
    response = await client.post(url(chat, "/assign"), data={"agent_id": str(staff.agent.id)}, headers=headers)
    assert response.status_code == 200 and "assigned it to Agent" in response.text
    kinds = [(e.kind, e.from_value, e.to_value) for e in await crm.conversations.ticket_events(ticket_id=chat.id)]
    assert kinds[1:] == [("status_changed", "new", "pending"), ("priority_changed", "normal", "urgent"),
                         ("assigned", None, str(staff.agent.id))]
    assert [e.kind for e in bus.of(TicketUpdated)][-3:] == ["status_changed", "priority_changed", "assigned"]
    refused = await client.post(url(chat, "/status"), data={"status": "new"}, headers=headers)
    assert refused.status_code == 409 and "cannot become new" in refused.text
    assert (await client.post(url(chat, "/priority"), data={"priority": "huge"}, headers=headers)).status_code == 400
    assert (await client.post(url(chat, "/assign"), data={"agent_id": "none"}, headers=headers)).status_code == 200
    assert (await crm.conversations.get_ticket(ticket_id=chat.id)).assignee_id is None


async def test_an_agent_takes_an_unassigned_ticket_but_reassigns_nothing(client, crm, staff, chat) -> None:  # type: ignore[no-untyped-def]
    headers = await signed(client, crm, staff.agent)
    given = await client.post(url(chat, "/assign"), data={"agent_id": str(staff.supervisor.id)}, headers=headers)
    assert given.status_code == 403
    taken = await client.post(url(chat, "/assign"), data={"agent_id": "me"}, headers=headers)
    assert taken.status_code == 200 and "(me)" in taken.text
    assert (await crm.conversations.get_ticket(ticket_id=chat.id)).assignee_id == staff.agent.id
    released = await client.post(url(chat, "/assign"), data={"agent_id": "none"}, headers=headers)
    assert released.status_code == 403


async def test_resolving_sends_the_csat_survey(client, crm, staff, chat, bus) -> None:  # type: ignore[no-untyped-def]
    headers = await signed(client, crm, staff.agent)
    response = await client.post(url(chat, "/resolve"), headers=headers)
    assert response.status_code == 200 and "Resolved" in response.text and "Resolve ·" not in response.text
    (resolved,) = bus.of(TicketResolved)
    assert resolved.ticket_id == chat.id and resolved.agent_id == staff.agent.id
    (survey,) = bus.of(SurveyInvited)
    assert (survey.kind, survey.channel, survey.external_id) == ("csat", "telegram", "777")


async def test_canned_responses_are_offered_with_their_variables_filled(client, crm, staff, chat) -> None:  # type: ignore[no-untyped-def]
    await crm.canned.create(shortcut="hello", title="Greeting", body="Hi {customer.first_name}, {agent.name} here "
                            "about ticket {ticket.id}. {customer.__class__}")
    await crm.canned.create(shortcut="other", title="Other team", body="x", team_id=await crm.agents.create_team(
        name="Elsewhere"))
    await session_for(crm, staff.agent, client)
    page = (await client.get(url(chat))).text
    assert f'data-insert="Hi Wei, Agent here about ticket {chat.id}. {{customer.__class__}}"' in page
    assert "/other" not in page  # another team's


async def test_agent_assist_without_a_knowledge_base_says_so(client, crm, staff, chat) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.agent, client)
    response = await client.get(url(chat, "/assist"))
    assert response.status_code == 200 and "Agent assist is unavailable" in response.text


async def test_agent_assist_offers_the_knowledge_bases_best_articles(crm, staff, encoders, console_settings) -> None:  # type: ignore[no-untyped-def]
    from kefu.runtime import open_knowledge_base
    from kefu.sample_kb import load_sample_kb

    await load_sample_kb(crm)
    kb = await open_knowledge_base(crm, follow_changes=False, encoders=encoders)
    app = create_console_app(crm=crm, settings=console_settings, throttle=MemoryLoginThrottle(), kb=kb)
    ticket = await open_ticket(crm, "Q", text="How long does shipping take?")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        await session_for(crm, staff.agent, client)
        response = await client.get(url(ticket, "/assist"))
        assert response.status_code == 200
        hits = re.findall(r'<a href="/kb/(\d+)">([^<]+)</a>', response.text)
        assert hits and any("ship" in question.lower() or "deliver" in question.lower() for _, question in hits[:1])
        assert response.text.count("data-insert=") == len(hits) >= 1
        other = await client.get(url(ticket, "/assist?q=tiers"))
        assert "For “tiers”" in other.text


async def test_saving_an_answer_to_the_kb_makes_a_draft(client, crm, staff, chat) -> None:  # type: ignore[no-untyped-def]
    await crm.conversations.record_outgoing(conversation_id=chat.conversation_id, sender="agent",
                                            agent_id=staff.agent.id, text="It left the warehouse today.")
    headers = await signed(client, crm, staff.agent)
    page = (await client.get(url(chat))).text
    assert ">I want a person</textarea>" in page and ">It left the warehouse today.</textarea>" in page
    response = await client.post(url(chat, "/kb-draft"), headers=headers,
                                 data={"question": "Where is my order?", "answer": "It left the warehouse today."})
    assert response.status_code == 200
    article_id = int(re.search(r'href="/kb/(\d+)"', response.text).group(1))  # type: ignore[union-attr]
    article = await crm.knowledge.get(article_id=article_id)
    assert (article.status, article.question, article.language) == ("draft", "Where is my order?", "en")
    refused = await client.post(url(chat, "/kb-draft"), data={"question": "", "answer": ""}, headers=headers)
    assert refused.status_code == 400


async def test_load_earlier_pages_back(client, crm, staff, chat, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from console.routes import conversations

    monkeypatch.setattr(conversations, "TRANSCRIPT_PAGE", 2)
    await session_for(crm, staff.agent, client)
    page = (await client.get(url(chat))).text
    assert re.findall(r'class="msg-body">([^<]*)<', page) == ["Orders ship in 1 day.", "I want a person"]
    before = re.search(r'messages\?before_id=(\d+)', page).group(1)  # type: ignore[union-attr]
    older = (await client.get(url(chat, f"/messages?before_id={before}"))).text
    assert re.findall(r'class="msg-body">([^<]*)<', older) == ["Where is my order?"] and "Load earlier" not in older
    newer = (await client.get(url(chat, f"/messages?after={before}"))).text
    assert re.findall(r'class="msg-body">([^<]*)<', newer) == ["I want a person"]
    assert (await client.get(url(chat, "/messages?before_id=999999"))).status_code == 404


async def test_who_may_open_and_act_on_a_conversation(client, crm, staff, chat) -> None:  # type: ignore[no-untyped-def]
    other = await crm.agents.create_team(name="Other")
    bob = await crm.agents.create_agent(email="bob@example.com", name="Bob", password="correct horse", team_id=other)
    theirs = await open_ticket(crm, "B", team_id=other, assignee=bob.id)
    headers = await signed(client, crm, staff.agent)
    assert (await client.get(url(chat))).status_code == 200  # unassigned: any agent may take it
    assert (await client.get(url(theirs))).status_code == 403
    for tail, data in [("/reply", {"text": "hi"}), ("/notes", {"text": "x"}), ("/status", {"status": "pending"}),
                       ("/priority", {"priority": "high"}), ("/assign", {"agent_id": "me"}), ("/resolve", {}),
                       ("/kb-draft", {"question": "q", "answer": "a"})]:
        response = await client.post(url(theirs, tail), data=data, headers=headers)
        assert response.status_code == 403, tail
    for tail in ("/messages", "/panel", "/assist"):
        assert (await client.get(url(theirs, tail))).status_code == 403, tail
    assert (await client.get(url(theirs, "/events"), headers={"Accept": "text/event-stream"})).status_code == 403
    assert (await client.get("/conversations/999999")).status_code == 404
    assert (await crm.conversations.get_ticket(ticket_id=theirs.id)).status == "open"  # untouched
    await signed(client, crm, staff.supervisor)
    assert (await client.get(url(theirs))).status_code == 200
    client.cookies.clear()
    anonymous = await client.get(url(theirs))
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


async def test_the_live_stream_delivers_this_conversations_events(db, settings, staff) -> None:  # type: ignore[no-untyped-def]
    """A real bus (in-process, or Redis Streams) and a real server: an open conversation page hears a new
    customer message and a ticket change, and nothing of another conversation."""
    bus = build_event_bus(settings.redis_url, stream=f"kefu-test:console:{uuid.uuid4().hex}")
    crm = CRM(db=db, events=bus, settings=settings)
    app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    await bus.start()
    try:
        ticket = await open_ticket(crm, "L", team_id=staff.team_id)
        elsewhere = await open_ticket(crm, "M")
        started = await crm.agents.start_session(agent_id=staff.agent.id, ttl=timedelta(hours=1))
        async with serving(app) as base, httpx.AsyncClient(base_url=base, cookies={"kefu_session": started.token},
                                                          timeout=10) as client:
            async with client.stream("GET", url(ticket, "/events"),
                                     headers={"Accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert await asyncio.wait_for(anext(lines), 5) == "retry: 3000"
                await crm.conversations.record_incoming(channel="telegram", external_id="ext-M", text="other")
                await crm.conversations.record_incoming(channel="telegram", external_id="ext-L", text="again")
                await crm.conversations.change_priority(ticket_id=ticket.id, priority="high")
                seen: list[str] = []
                while len([x for x in seen if x.startswith("event:")]) < 2:
                    seen.append(await asyncio.wait_for(anext(lines), 5))
            events = [x for x in seen if x.startswith(("event:", "data:"))]
            assert events[0] == "event: message" and f'"conversation_id": {ticket.conversation_id}' in events[1]
            assert '"message.received"' in events[1] and events[2] == "event: ticket"
            assert f'"conversation_id": {elsewhere.conversation_id}' not in "".join(seen)
            await asyncio.sleep(0.2)
            assert app.state.console_live.listeners == 0  # the client went away: the stream ended
    finally:
        await bus.close()


async def test_a_conversation_the_bot_still_handles_has_no_ticket_to_act_on(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    chat = await crm.conversations.record_incoming(channel="webchat", external_id="v-1", text="Just browsing")
    headers = await signed(client, crm, staff.agent)
    page = await client.get(f"/conversations/{chat.conversation.id}")
    assert page.status_code == 200 and "No ticket" in page.text and "Just browsing" in page.text
    refused = await client.post(f"/conversations/{chat.conversation.id}/resolve", headers=headers)
    assert refused.status_code == 404 and "no ticket" in refused.text


async def test_the_console_subscribes_its_live_hub_and_auto_assignment(app, bus) -> None:  # type: ignore[no-untyped-def]
    groups = [group for group, _ in bus.subscriptions]
    assert "console-assignment" in groups  # shared: one console process assigns each handoff
    # Every process hears everything (a broadcast: no consumer group per process left behind on Redis).
    assert "broadcast:console-live" in groups


async def test_handoffs_are_assigned_automatically_when_the_admin_says_so(db, settings, staff) -> None:  # type: ignore[no-untyped-def]
    bus = build_event_bus(settings.redis_url, stream=f"kefu-test:console:{uuid.uuid4().hex}")
    crm = CRM(db=db, events=bus, settings=settings)
    create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    await crm.app_settings.set_setting("assignment.strategy", "round_robin", by_agent_id=None)
    await bus.start()
    try:
        ticket = await open_ticket(crm, "R")
        for _ in range(100):
            if (await crm.conversations.get_ticket(ticket_id=ticket.id)).assignee_id is not None:
                break
            await asyncio.sleep(0.05)
        assigned = await crm.conversations.get_ticket(ticket_id=ticket.id)
        assert assigned.assignee_id in (staff.agent.id, staff.supervisor.id)  # admins are not assigned
    finally:
        await bus.close()
