"""Size limits in the console: a request body over the console's cap (a little above the knowledge-base import's
5 MB) is a 413 with a clear message, as JSON for the API and HTMX and as the error page for a browser's form; an
upload within it still gets the import's own message; an agent's reply is at most 4,000 characters (Telegram takes
4,096); and where the web chat shares the app (`kefu demo`), each path keeps its own cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from console.api import PREFIX
from console.body_limit import MAX_BODY_BYTES
from console.routes.conversations import MAX_REPLY
from console.routes.kb import MAX_UPLOAD_BYTES
from crm_store.events import AgentReplied
from tests.console.conftest import BASE, session_for
from tests.console.test_api import bearer
from tests.console.ticketing import open_ticket

OVER = MAX_BODY_BYTES + 1


async def test_an_api_body_over_the_cap_is_a_json_413(client, crm) -> None:  # type: ignore[no-untyped-def]
    headers = await bearer(crm)
    declared = await client.post(f"{PREFIX}/articles", content=b"x" * OVER,
                                 headers={**headers, "Content-Type": "application/json"})

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(OVER // (256 * 1024) + 1):
            yield b" " * (256 * 1024)

    streamed = await client.post(f"{PREFIX}/articles", content=chunked(),
                                 headers={**headers, "Content-Type": "application/json"})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {"detail": "This request is too large (at most 6 MB). A knowledge-base import "
                                              "takes 5 MB of files at once: split it into smaller files."}
    assert await crm.knowledge.count() == 0


async def test_a_form_over_the_cap_is_the_error_page(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    big = b"question,answer\n" + b"q,a\n" * (OVER // 4)
    response = await client.post("/kb/import", data={"csrf_token": csrf}, files={"file": ("big.csv", big)})
    assert response.status_code == 413 and response.headers["content-type"].startswith("text/html")
    assert "Too large" in response.text and "split it into smaller files" in response.text
    assert await crm.knowledge.count() == 0
    # within the console's cap, the import's own limit explains itself
    just_over = b"question,answer\n" + b"q,a\n" * (MAX_UPLOAD_BYTES // 4 + 10)
    response = await client.post("/kb/import", data={"csrf_token": csrf}, files={"file": ("big.csv", just_over)})
    assert response.status_code == 400 and "larger than 5 MB" in response.text


async def test_an_agents_reply_and_note_are_at_most_4000_characters(client, crm, staff, bus) -> None:  # type: ignore[no-untyped-def]
    assert MAX_REPLY <= 4096  # Telegram's limit for one message
    ticket = await open_ticket(crm, "long")
    headers = {"X-CSRF-Token": await session_for(crm, staff.agent, client), "HX-Request": "true"}
    url = f"/conversations/{ticket.conversation_id}/reply"
    response = await client.post(url, data={"text": "x" * (MAX_REPLY + 1)}, headers=headers)
    assert response.status_code == 400 and response.text == "A reply is at most 4,000 characters."
    assert bus.of(AgentReplied) == []
    assert (await client.post(url, data={"text": "y" * MAX_REPLY}, headers=headers)).status_code == 200
    api = await client.post(f"{PREFIX}/tickets/{ticket.id}/messages", json={"text": "z" * (MAX_REPLY + 1)},
                            headers=await bearer(crm))
    assert api.status_code == 422 and "4000" in api.text
    assert [event.text for event in bus.of(AgentReplied)] == ["y" * MAX_REPLY]

    notes = f"/conversations/{ticket.conversation_id}/notes"
    refused = await client.post(notes, data={"text": "n" * (MAX_REPLY + 1)}, headers=headers)
    assert refused.status_code == 400 and refused.text == "A note is at most 4,000 characters."  # not cut short
    assert (await client.post(notes, data={"text": "n" * MAX_REPLY}, headers=headers)).status_code == 200
    transcript = await crm.conversations.transcript(conversation_id=ticket.conversation_id)
    assert [len(m.text) for m in transcript if m.text.startswith("n")] == [MAX_REPLY]


@pytest.fixture
async def demo_client(crm) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The web chat and the console on one app, as `kefu demo` serves them (the engine is never reached here)."""
    from bot.webchat import WebchatHub, install_webchat
    from console.app import install_console
    from console.settings import ConsoleSettings
    from console.throttle import MemoryLoginThrottle

    app = FastAPI()
    install_webchat(app, engine=None, hub=WebchatHub())  # type: ignore[arg-type]
    install_console(app, crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


async def test_the_web_chat_and_the_console_keep_their_own_caps_on_one_app(demo_client) -> None:  # type: ignore[no-untyped-def]
    body = b"x" * (100 * 1024)
    chat = await demo_client.post("/webchat/api/messages", content=body, headers={"Content-Type": "application/json"})
    assert chat.status_code == 413 and "at most 64 KB" in chat.json()["error"]
    api = await demo_client.post(f"{PREFIX}/articles", content=body, headers={"Content-Type": "application/json"})
    assert api.status_code == 422  # within the console's cap: read whole, and found not to be JSON
    huge = await demo_client.post("/webchat/api/messages", content=b"x" * OVER,
                                  headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "error" in huge.json()  # the web chat's refusal, not the console's
