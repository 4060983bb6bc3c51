"""The REST API under /api/v1: bearer tokens and scopes, every endpoint's answer and refusals, paging, the events a
reply sends, and the OpenAPI schema (valid, complete, and fuzzed with schemathesis: never a 5xx)."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate as validate_openapi

from console.api import PREFIX
from console.app import console_routes
from console.permissions import API_SCOPES, ApiScope, route_permission
from crm_store.coltypes import utcnow
from crm_store.events import AgentReplied
from tests.console.conftest import BASE
from tests.support import make_chat

ALL_SCOPES = [str(scope) for scope in ApiScope]
SCHEMATHESIS_EXAMPLES = 30  # per operation and generation mode (positive, negative): over 1,000 cases in all


async def bearer(crm, *scopes: str, by=None, **options) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """An issued token's Authorization header."""
    created = await crm.agents.create_api_token(name="integration", scopes=list(scopes) or ALL_SCOPES,
                                                created_by_agent_id=by.id if by else None, **options)
    return {"Authorization": f"Bearer {created.token}"}


async def make_ticket(crm, *, external_id: str = "1001", text: str = "where is my parcel?"):  # type: ignore[no-untyped-def]
    chat = await make_chat(crm, external_id=external_id, text=text)
    return await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked",
                                            subject=text)


# --- authentication and scopes --------------------------------------------------------------------------------------


def test_every_api_route_requires_a_scope_that_admins_can_grant(app) -> None:  # type: ignore[no-untyped-def]
    assert set(API_SCOPES) == set(ApiScope)
    api = [r for r in console_routes(app.routes) if r.path.startswith(PREFIX + "/")]
    guarded = {(m, r.path): route_permission(r) for r in api for m in r.methods}
    assert len(guarded) == 20
    assert {key for key, scope in guarded.items() if scope is None} == {
        ("GET", f"{PREFIX}/openapi.json"), ("GET", f"{PREFIX}/docs")}
    assert guarded[("POST", f"{PREFIX}/tickets/{{ticket_id}}/messages")] == ApiScope.TICKETS_WRITE
    assert guarded[("GET", f"{PREFIX}/customers")] == ApiScope.CUSTOMERS_READ


async def test_missing_unknown_revoked_and_expired_tokens_get_401_with_a_challenge(client, crm) -> None:  # type: ignore[no-untyped-def]
    revoked = await crm.agents.create_api_token(name="old", scopes=ALL_SCOPES, created_by_agent_id=None)
    await crm.agents.revoke_api_token(token_id=revoked.view.id)
    expiring = await crm.agents.create_api_token(name="soon", scopes=ALL_SCOPES, created_by_agent_id=None,
                                                 expires_at=utcnow() + timedelta(seconds=1))
    good = await bearer(crm)
    assert (await client.get(f"{PREFIX}/tickets", headers=good)).status_code == 200
    import asyncio

    await asyncio.sleep(1.1)
    attempts = [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                {"Authorization": "Bearer kefu_not-a-real-token"}, {"Authorization": "Bearer " + "x" * 5000},
                {"Authorization": f"Bearer {revoked.token}"}, {"Authorization": f"Bearer {expiring.token}"}]
    for headers in attempts:
        response = await client.get(f"{PREFIX}/tickets", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith('Bearer realm="kefu"')
        assert isinstance(response.json()["detail"], str)


async def test_a_console_session_cookie_alone_does_not_open_the_api(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    from tests.console.conftest import session_for

    csrf = await session_for(crm, staff.admin, client)
    assert (await client.get("/admin/tokens")).status_code == 200  # the session works for the console
    assert (await client.get(f"{PREFIX}/tickets")).status_code == 401
    response = await client.post(f"{PREFIX}/customers", json={"name": "Eve"}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 401
    assert (await crm.customers.search_page()).customers == ()


async def test_a_token_without_the_scope_gets_403(client, crm) -> None:  # type: ignore[no-untyped-def]
    ticket = await make_ticket(crm)
    readonly = await bearer(crm, "tickets:read", "kb:read")
    assert (await client.get(f"{PREFIX}/tickets/{ticket.id}", headers=readonly)).status_code == 200
    refused = [("POST", f"/tickets/{ticket.id}/messages", {"text": "hi"}),
               ("POST", f"/tickets/{ticket.id}/resolve", None),
               ("GET", "/customers", None), ("POST", "/articles", {"question": "q", "answer": "a", "language": "en"})]
    for method, path, body in refused:
        response = await client.request(method, PREFIX + path, json=body, headers=readonly)
        assert response.status_code == 403, (method, path)
        assert "insufficient_scope" in response.headers["www-authenticate"]
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).status == "new"


# --- tickets --------------------------------------------------------------------------------------------------------


async def test_tickets_list_filters_and_pages_with_a_cursor(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    tickets = [await make_ticket(crm, external_id=str(2000 + i), text=f"question {i}") for i in range(5)]
    await crm.conversations.assign(ticket_id=tickets[0].id, agent_id=staff.agent.id)
    await crm.conversations.change_priority(ticket_id=tickets[1].id, priority="urgent")
    headers = await bearer(crm, "tickets:read")
    seen, cursor = [], None
    while True:
        page = (await client.get(f"{PREFIX}/tickets", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                 headers=headers)).json()
        seen += [row["ticket_id"] for row in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == sorted(t.id for t in tickets) and len(seen) == 5
    mine = (await client.get(f"{PREFIX}/tickets", params={"assignee": staff.agent.id}, headers=headers)).json()
    assert [row["ticket_id"] for row in mine["items"]] == [tickets[0].id]
    assert mine["items"][0]["assignee_name"] == "Agent" and mine["items"][0]["status"] == "open"
    urgent = (await client.get(f"{PREFIX}/tickets", params={"priority": ["urgent", "high"]}, headers=headers)).json()
    assert [row["ticket_id"] for row in urgent["items"]] == [tickets[1].id]
    unassigned = (await client.get(f"{PREFIX}/tickets", params={"assignee": "unassigned", "status": "new"},
                                   headers=headers)).json()
    assert len(unassigned["items"]) == 4
    for bad in ({"cursor": "nonsense"}, {"limit": 0}, {"limit": 101}, {"status": "gone"}, {"assignee": "me"},
                {"cursor": "1_99999999999"}, {"team_id": 2**40}):
        assert (await client.get(f"{PREFIX}/tickets", params=bad, headers=headers)).status_code == 422, bad


async def test_a_ticket_with_its_history_and_messages(client, crm) -> None:  # type: ignore[no-untyped-def]
    ticket = await make_ticket(crm)
    for i in range(3):
        await crm.conversations.record_incoming(channel="telegram", external_id="1001", text=f"more {i}")
    await crm.conversations.add_note(conversation_id=ticket.conversation_id, agent_id=None, text="VIP, be quick")
    headers = await bearer(crm, "tickets:read")
    detail = (await client.get(f"{PREFIX}/tickets/{ticket.id}", headers=headers)).json()
    assert detail["id"] == ticket.id and detail["status"] == "new" and detail["context"]["reason"] == "customer_asked"
    assert [e["kind"] for e in detail["events"]] == ["created", "note_added"]
    newest = (await client.get(f"{PREFIX}/tickets/{ticket.id}/messages", params={"limit": 3}, headers=headers)).json()
    assert [m["text"] for m in newest["items"]] == ["more 1", "more 2", "VIP, be quick"]
    older = (await client.get(f"{PREFIX}/tickets/{ticket.id}/messages",
                              params={"limit": 3, "before_id": newest["next_before_id"]}, headers=headers)).json()
    assert [m["text"] for m in older["items"]] == ["where is my parcel?", "more 0"] and older["next_before_id"] is None
    public = (await client.get(f"{PREFIX}/tickets/{ticket.id}/messages", params={"include_notes": False},
                               headers=headers)).json()
    assert not any(m["is_private"] for m in public["items"]) and len(public["items"]) == 4
    assert (await client.get(f"{PREFIX}/tickets/999999", headers=headers)).status_code == 404
    assert (await client.get(f"{PREFIX}/tickets/{ticket.id}/messages", headers=headers,
                             params={"before_id": 999999})).status_code == 404
    for bad in ("0", "-1", "abc", str(2**31)):
        assert (await client.get(f"{PREFIX}/tickets/{bad}", headers=headers)).status_code == 422, bad


async def test_a_reply_is_stored_as_the_token_issuers_and_sent_to_the_chat(client, crm, staff, bus) -> None:  # type: ignore[no-untyped-def]
    ticket = await make_ticket(crm)
    headers = await bearer(crm, "tickets:write", by=staff.supervisor)
    response = await client.post(f"{PREFIX}/tickets/{ticket.id}/messages", json={"text": "It ships today."},
                                 headers=headers)
    assert response.status_code == 201, response.text
    message = response.json()
    assert message["sender"] == "agent" and message["agent_id"] == staff.supervisor.id and not message["is_private"]
    (event,) = bus.of(AgentReplied)
    assert (event.message_id, event.text, event.agent_id, event.channel, event.external_id) == (
        message["id"], "It ships today.", staff.supervisor.id, "telegram", "1001")
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).first_response_at is not None

    note = await client.post(f"{PREFIX}/tickets/{ticket.id}/notes", json={"text": "checked"}, headers=headers)
    assert note.status_code == 201 and note.json()["is_private"] is True
    assert len(bus.of(AgentReplied)) == 1  # a note is never sent

    for body in ({}, {"text": ""}, {"text": "   "}, {"text": "x" * 4001}, {"text": "a\x00b"},
                 {"text": "ok", "extra": 1}, {"text": 5}):
        response = await client.post(f"{PREFIX}/tickets/{ticket.id}/messages", json=body, headers=headers)
        assert response.status_code == 422, body
    for raw in (b"{not json", b'{"text": "\\ud800"}'):  # broken JSON; a lone surrogate (no UTF-8 for it)
        assert (await client.post(f"{PREFIX}/tickets/{ticket.id}/messages", content=raw,
                                  headers={**headers, "content-type": "application/json"})).status_code == 422
    assert (await client.post(f"{PREFIX}/tickets/424242/messages", json={"text": "hi"},
                              headers=headers)).status_code == 404
    await crm.conversations.resolve(ticket_id=ticket.id)
    late = await client.post(f"{PREFIX}/tickets/{ticket.id}/messages", json={"text": "hi"}, headers=headers)
    assert late.status_code == 409 and "reopen" in late.json()["detail"]
    assert len(bus.of(AgentReplied)) == 1


async def test_patch_assigns_changes_status_and_priority_and_refuses_what_the_domain_refuses(client, crm, staff) -> None:  # noqa: E501  # type: ignore[no-untyped-def]
    ticket = await make_ticket(crm)
    headers = await bearer(crm, "tickets:write", "tickets:read", by=staff.admin)
    url = f"{PREFIX}/tickets/{ticket.id}"
    changed = await client.patch(url, json={"assignee_id": staff.agent.id, "priority": "high"}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["assignee_id"], changed.json()["status"], changed.json()["priority"]) == (
        staff.agent.id, "open", "high")
    assert (await client.patch(url, json={"status": "pending"}, headers=headers)).json()["status"] == "pending"
    refused = await client.patch(url, json={"status": "new"}, headers=headers)
    assert refused.status_code == 409 and "cannot become" in refused.json()["detail"]
    assert (await client.patch(url, json={"assignee_id": None}, headers=headers)).json()["assignee_id"] is None
    assert (await client.patch(url, json={"assignee_id": 777777}, headers=headers)).status_code == 404
    for body in ({"status": None}, {"priority": "asap"}, {"assignee_id": 0}, {"subject": "x"}):
        assert (await client.patch(url, json=body, headers=headers)).status_code == 422, body
    events = (await client.get(url, headers=headers)).json()["events"]
    assert {e["agent_id"] for e in events if e["kind"] != "created"} == {staff.admin.id}

    resolved = await client.post(f"{url}/resolve", headers=headers)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert (await client.post(f"{PREFIX}/tickets/5555/resolve", headers=headers)).status_code == 404
    assert (await client.patch(url, json={"status": "open"}, headers=headers)).json()["status"] == "open"


# --- customers ------------------------------------------------------------------------------------------------------


async def test_customers_create_search_page_get_update_and_timeline(client, crm) -> None:  # type: ignore[no-untyped-def]
    headers = await bearer(crm, "customers:read", "customers:write")
    created = await client.post(f"{PREFIX}/customers", headers=headers, json={
        "name": "Li Wei", "email": "Li.Wei@Example.com", "phone": "+86 138 0013 8000", "language": "zh",
        "tags": ["vip"], "external_ref": "shop-1"})
    assert created.status_code == 201, created.text
    li = created.json()
    assert (li["email"], li["language"], li["tags"]) == ("Li.Wei@Example.com", "zh", ["vip"])
    for i in range(4):
        await crm.customers.create(name=f"Tea lover {i}")
    page = (await client.get(f"{PREFIX}/customers", params={"q": "tea", "limit": 3}, headers=headers)).json()
    rest = (await client.get(f"{PREFIX}/customers", params={"q": "tea", "limit": 3, "cursor": page["next_cursor"]},
                             headers=headers)).json()
    assert [c["name"] for c in page["items"] + rest["items"]] == [f"Tea lover {i}" for i in (3, 2, 1, 0)]
    assert rest["next_cursor"] is None
    found = (await client.get(f"{PREFIX}/customers", params={"q": "li.wei@example.COM"}, headers=headers)).json()
    assert [c["id"] for c in found["items"]] == [li["id"]]

    await make_chat(crm, external_id="42")
    (chat_customer,) = [c for c in (await crm.customers.search_page()).customers if c.name == ""]
    detail = (await client.get(f"{PREFIX}/customers/{chat_customer.id}", headers=headers)).json()
    assert [(i["channel"], i["external_id"]) for i in detail["identities"]] == [("telegram", "42")]
    timeline = (await client.get(f"{PREFIX}/customers/{chat_customer.id}/timeline", headers=headers)).json()
    assert {"identity.first_contact", "message.customer"} <= {e["kind"] for e in timeline}

    updated = await client.patch(f"{PREFIX}/customers/{li['id']}", json={"name": "Wei Li", "phone": None},
                                 headers=headers)
    assert updated.status_code == 200 and (updated.json()["name"], updated.json()["phone"]) == ("Wei Li", None)
    assert updated.json()["email"] == "Li.Wei@Example.com"

    duplicate = await client.post(f"{PREFIX}/customers", json={"external_ref": "shop-1"}, headers=headers)
    assert duplicate.status_code == 409
    for body in ({"email": "not-an-email"}, {"phone": "12"}, {"name": "x" * 201}, {"tags": ["t"] * 21},
                 {"language": "english"}, {"vip": True}):
        assert (await client.post(f"{PREFIX}/customers", json=body, headers=headers)).status_code == 422, body
    assert (await client.patch(f"{PREFIX}/customers/{li['id']}", json={"name": None},
                               headers=headers)).status_code == 422
    for path in ("/customers/99999", "/customers/99999/timeline"):
        assert (await client.get(PREFIX + path, headers=headers)).status_code == 404
    assert (await client.patch(f"{PREFIX}/customers/99999", json={"name": "x"}, headers=headers)).status_code == 404


# --- articles -------------------------------------------------------------------------------------------------------


async def test_articles_create_list_edit_publish_and_unpublish(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    headers = await bearer(crm, "kb:read", "kb:write", by=staff.supervisor)
    body = {"question": "How do I return an item?", "answer": "Within 30 days.", "language": "en",
            "alt_questions": ["Can I send it back?"], "tags": ["returns"], "external_id": "faq-returns"}
    created = await client.post(f"{PREFIX}/articles", json=body, headers=headers)
    assert created.status_code == 201, created.text
    article = created.json()
    assert (article["status"], article["version"]) == ("draft", 1)
    assert (await client.post(f"{PREFIX}/articles", json=body, headers=headers)).status_code == 409
    for i in range(3):
        await crm.knowledge.create_article(question=f"退货 {i}", answer="可以", language="zh", status="published")

    url = f"{PREFIX}/articles/{article['id']}"
    edited = await client.patch(url, json={"answer": "Within 60 days."}, headers=headers)
    assert edited.status_code == 200 and (edited.json()["answer"], edited.json()["version"]) == ("Within 60 days.", 2)
    assert edited.json()["question"] == body["question"]
    assert (await client.post(f"{url}/publish", headers=headers)).json()["status"] == "published"
    published = (await client.get(f"{PREFIX}/articles", params={"status": "published", "language": "en"},
                                  headers=headers)).json()
    assert [a["id"] for a in published["items"]] == [article["id"]]
    first = (await client.get(f"{PREFIX}/articles", params={"limit": 2}, headers=headers)).json()
    second = (await client.get(f"{PREFIX}/articles", params={"limit": 2, "cursor": first["next_cursor"]},
                               headers=headers)).json()
    assert len({a["id"] for a in first["items"] + second["items"]}) == 4 and second["next_cursor"] is None
    assert (await client.get(f"{PREFIX}/articles", params={"q": "退货"}, headers=headers)).json()["items"][0][
        "language"] == "zh"
    assert (await client.post(f"{url}/unpublish", headers=headers)).json()["status"] == "draft"
    assert (await client.get(url, headers=headers)).json()["status"] == "draft"

    for bad in ({**body, "language": "fr"}, {**body, "question": " "}, {**body, "answer": "x" * 20_001},
                {"question": "q", "language": "en"}, {**body, "status": "gone"}):
        assert (await client.post(f"{PREFIX}/articles", json=bad, headers=headers)).status_code == 422, bad
    assert (await client.patch(url, json={"question": None}, headers=headers)).status_code == 422
    for method, path in (("GET", "/articles/8888"), ("PATCH", "/articles/8888"), ("POST", "/articles/8888/publish"),
                         ("POST", "/articles/8888/unpublish")):
        response = await client.request(method, PREFIX + path, json={"answer": "x"} if method == "PATCH" else None,
                                        headers=headers)
        assert response.status_code == 404, (method, path)


# --- the OpenAPI schema ---------------------------------------------------------------------------------------------


async def test_the_openapi_schema_is_valid_and_lists_every_route_with_its_scope(client, app) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate_openapi(schema)
    documented = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    routes = {(m, r.path) for r in console_routes(app.routes) if r.path.startswith(PREFIX + "/")
              and r.include_in_schema for m in r.methods}
    assert documented == routes and len(documented) == 18
    reply = schema["paths"][f"{PREFIX}/tickets/{{ticket_id}}/messages"]["post"]
    assert reply["security"] == [{"bearerToken": ["tickets:write"]}]
    assert {"201", "401", "403", "404", "409", "422"} <= set(reply["responses"])
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"].lower() == "bearer"
    assert not any(path.startswith(("/admin", "/login", "/inbox")) for path in schema["paths"])
    docs = await client.get(f"{PREFIX}/docs")
    assert docs.status_code == 200 and "/api/v1/tickets/{ticket_id}/resolve" in docs.text
    assert "tickets:write" in docs.text and "cdn" not in docs.text.lower() and "<script" not in docs.text


@pytest.mark.slow
async def test_schemathesis_cases_never_get_a_server_error(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    """Generated requests (valid and invalid) to every operation: never a 5xx, and every answer as documented.
    At least 1,000 cases; with -s the run prints its count, time and status codes."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    for i in range(3):
        ticket = await make_ticket(crm, external_id=str(3000 + i))
        await crm.customers.create(name=f"Customer {i}")
        await crm.knowledge.create_article(question=f"Question {i}?", answer="Answer.", language="en")
    headers = await bearer(crm, by=staff.admin)
    schema = schemathesis.openapi.from_dict((await client.get(f"{PREFIX}/openapi.json")).json())
    started = time.perf_counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    cases, modes = [], Counter()
    for operation in operations:
        for mode in schemathesis.GenerationMode:
            @settings(max_examples=SCHEMATHESIS_EXAMPLES, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(operation.as_strategy(generation_mode=mode))
            def collect(case) -> None:  # type: ignore[no-untyped-def]
                cases.append(case)

            before = len(cases)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                collect()
            modes[str(mode.value)] += len(cases) - before
    generated = time.perf_counter() - started
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: Counter[int] = Counter()
    for case in cases:
        kwargs = case.as_transport_kwargs(base_url=BASE, headers=headers)
        request = {key: kwargs[key] for key in ("method", "url", "headers", "params") if kwargs.get(key) is not None}
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif "content" in kwargs or "data" in kwargs:
            request["content"] = kwargs.get("content", kwargs.get("data"))
        response = await client.request(**request)
        statuses[response.status_code] += 1
        assert response.status_code < 500, (case.method, case.formatted_path, request, response.text[:300])
        case.validate_response(response, checks=checks)
    summary = (f"schemathesis: {len(cases)} cases ({', '.join(f'{n} {m}' for m, n in sorted(modes.items()))}) "
               f"over {len(operations)} operations; generated in {generated:.1f} s, sent in "
               f"{time.perf_counter() - started - generated:.1f} s; status codes {dict(sorted(statuses.items()))}")
    print(summary)
    assert len(cases) >= 1000, summary
    assert not [code for code in statuses if code >= 500], summary
    assert ticket.id


async def test_the_api_is_mounted_by_install_console_beside_other_routes(crm) -> None:  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    from console.app import install_console
    from console.settings import ConsoleSettings
    from console.throttle import MemoryLoginThrottle

    app = FastAPI()

    @app.get("/webchat/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    install_console(app, crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        schema = (await c.get(f"{PREFIX}/openapi.json")).json()
        assert "/webchat/ping" not in schema["paths"] and f"{PREFIX}/tickets" in schema["paths"]
        assert (await c.get(f"{PREFIX}/tickets", headers=await bearer(crm))).status_code == 200
