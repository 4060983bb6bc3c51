"""The web chat through a real HTTP server (uvicorn on 127.0.0.1): the JSON API on the dialogue engine, clear
errors for bad input, and an agent's reply pushed to the open page over Server-Sent Events, carried by the real
event bus (in-process, or Redis Streams when KEFU_TEST_REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.webchat import WebchatHub, create_webchat_app
from crm_store.crm import CRM
from crm_store.enums import ConversationStatus, SenderType
from tests import support
from tests.bot.conftest import Stack


class Served:
    def __init__(self, url: str, crm: CRM) -> None:
        self.url = url
        self.crm = crm


@pytest.fixture
async def served(stack: Stack) -> AsyncIterator[Served]:
    hub = WebchatHub()
    hub.attach(stack.bus)
    await stack.bus.start()
    async with support.serving(create_webchat_app(stack.engine, hub)) as url:
        yield Served(url, stack.crm)


async def post(served: Served, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        return await client.post("/webchat/api/messages", json=body)


async def test_a_question_is_answered_as_json(served: Served) -> None:
    response = await post(served, visitor_id="v-1", text="how long does shipping take?")
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"conversation_id", "language", "duplicate", "relayed", "replies"}
    (reply,) = data["replies"]
    assert (reply["decision"], reply["intent"], reply["article_external_id"]) == (
        "answer", "ask_question", "shop-en-shipping")
    assert isinstance(reply["article_id"], int) and reply["message_id"] is not None
    article = reply["article_id"]
    assert [b["payload"] for b in reply["buttons"]] == [f"fb:up:{article}", f"fb:down:{article}"]

    pressed = await post(served, visitor_id="v-1", payload=f"fb:up:{reply['article_id']}")
    assert pressed.json()["replies"][0]["text"] == "Thanks for telling me!"


async def test_a_retried_post_is_answered_once(served: Served) -> None:
    first = await post(served, visitor_id="v-2", text="are you open on sunday", message_id="m-1")
    again = await post(served, visitor_id="v-2", text="are you open on sunday", message_id="m-1")
    assert first.json()["replies"] and first.json()["duplicate"] is False
    assert again.json()["duplicate"] is True and again.json()["replies"] == []
    assert again.json()["conversation_id"] == first.json()["conversation_id"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"visitor_id": "v-3"}, "send a text or a button payload"),
        ({"visitor_id": "v-3", "text": "   "}, "send a text or a button payload"),
        ({"visitor_id": "bad id with spaces", "text": "hi"}, "visitor_id"),
        ({"text": "hi"}, "visitor_id"),
        ({"visitor_id": "v-3", "text": "x" * 4001}, "text"),
    ],
)
async def test_bad_input_is_a_clear_422(served: Served, body: dict[str, Any], fragment: str) -> None:
    response = await post(served, **body)
    assert response.status_code == 422
    assert fragment in response.text and "Traceback" not in response.text


async def test_the_widget_page_is_served(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        page = await client.get("/webchat")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/webchat/api/messages" in page.text and "EventSource" in page.text


async def test_handoff_relays_the_customer_and_pushes_the_agents_reply(served: Served) -> None:
    received: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def listen() -> None:
        async with httpx.AsyncClient(base_url=served.url, timeout=None) as client, client.stream(
            "GET", "/webchat/api/events", params={"visitor_id": "v-9"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    received.append(json.loads(line[len("data: "):]))
                    return

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(connected.wait(), timeout=10)

    handed = (await post(served, visitor_id="v-9", text="/human")).json()
    assert handed["replies"][0]["decision"] == "handoff"
    second = (await post(served, visitor_id="v-9", text="my order never came, order KT-1028")).json()
    assert second["relayed"] is True and second["replies"] == []
    conversation_id = second["conversation_id"]
    transcript = await served.crm.conversations.transcript(conversation_id=conversation_id)
    assert (transcript[-1].sender, transcript[-1].text) == (SenderType.CUSTOMER, "my order never came, order KT-1028")
    assert (await served.crm.conversations.get(conversation_id=conversation_id)).status == ConversationStatus.PENDING

    agent = await support.make_agent(served.crm)
    await served.crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.AGENT,
                                                   agent_id=agent.id, text="Hi, I'm Sam. Let me check KT-1028.")
    await asyncio.wait_for(listener, timeout=15)
    assert received == [{"text": "Hi, I'm Sam. Let me check KT-1028.", "buttons": [], "decision": "agent",
                         "message_id": received[0]["message_id"], "conversation_id": conversation_id}]
