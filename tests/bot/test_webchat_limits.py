"""The web chat's limits: flood control per visitor and per client address (in memory, and in Redis: fakeredis, or
the real one when KEFU_TEST_REDIS_URL is set), its HTTP 429 with Retry-After and a refusal in English and Chinese
(the message is not handled), the 413 of a body over the cap, and the 422s the widget shows as they are."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.settings import BotSettings
from bot.webchat import MAX_TEXT, WebchatHub, create_webchat_app
from bot.webchat_limit import (
    MemoryWebchatLimiter,
    Rate,
    RedisWebchatLimiter,
    WebchatLimiter,
    build_webchat_limiter,
)
from tests.bot.conftest import Stack

CHAT = "http://webchat.test"


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest, redis_client: Any):  # type: ignore[no-untyped-def]
    """Builds the limiter under test with the given rates (Redis: a key prefix of this test's own)."""
    def make(per_visitor: Rate, per_address: Rate, clock: list[float] | None = None) -> WebchatLimiter:
        if request.param == "memory":
            return MemoryWebchatLimiter(per_visitor=per_visitor, per_address=per_address,
                                        **({"clock": lambda: clock[0]} if clock is not None else {}))
        return RedisWebchatLimiter(redis_client, per_visitor=per_visitor, per_address=per_address,
                                   prefix=f"kefu-test:webchat:{uuid.uuid4().hex}:")

    make.backend = request.param  # type: ignore[attr-defined]
    return make


# --- the limiter ----------------------------------------------------------------------------------------------------


async def test_a_visitor_over_its_rate_waits_for_its_window_and_others_do_not(make_limiter) -> None:  # type: ignore[no-untyped-def]
    limiter = make_limiter(Rate(3, 30.0), Rate(100, 60.0))
    assert [await limiter.admit(visitor_id="v-1", address="198.51.100.7") for _ in range(3)] == [0, 0, 0]
    wait = await limiter.admit(visitor_id="v-1", address="198.51.100.7")
    assert 29 <= wait <= 30
    assert await limiter.admit(visitor_id="v-2", address="198.51.100.7") == 0  # the same address, another visitor
    assert await limiter.admit(visitor_id="v-1", address="198.51.100.7") > 0  # refused ones count: still waiting


async def test_one_address_posting_for_many_visitors_is_limited(make_limiter) -> None:  # type: ignore[no-untyped-def]
    limiter = make_limiter(Rate(100, 10.0), Rate(4, 60.0))
    for n in range(4):
        assert await limiter.admit(visitor_id=f"bot-{n}", address="203.0.113.9") == 0
    assert 59 <= await limiter.admit(visitor_id="bot-99", address="203.0.113.9") <= 60
    assert await limiter.admit(visitor_id="someone", address="192.0.2.1") == 0
    assert await limiter.admit(visitor_id="no-address", address=None) == 0  # no address known: the visitor's rate


async def test_the_window_ends(make_limiter) -> None:  # type: ignore[no-untyped-def]
    clock = [1000.0]
    limiter = make_limiter(Rate(2, 0.5), Rate(100, 60.0), clock)
    for _ in range(2):
        assert await limiter.admit(visitor_id="v-1", address=None) == 0
    assert await limiter.admit(visitor_id="v-1", address=None) == 1  # under a second left: "1 s"
    if make_limiter.backend == "memory":
        clock[0] += 0.6
    else:
        await asyncio.sleep(0.6)  # Redis' own clock expires the key
    assert await limiter.admit(visitor_id="v-1", address=None) == 0


async def test_the_backend_follows_the_redis_setting() -> None:
    settings = BotSettings(webchat_visitor_messages=7, webchat_address_window_s=30)
    memory = build_webchat_limiter(settings, None)
    assert isinstance(memory, MemoryWebchatLimiter)
    assert (memory.per_visitor, memory.per_address) == (Rate(7, 10.0), Rate(120, 30.0))
    shared = build_webchat_limiter(settings, "redis://127.0.0.1:6379/0")  # connects on first use only
    assert isinstance(shared, RedisWebchatLimiter) and shared.per_visitor == Rate(7, 10.0)
    await shared.close()


async def test_memory_limiter_forgets_ended_windows_when_it_fills_up() -> None:
    clock = [0.0]
    limiter = MemoryWebchatLimiter(per_visitor=Rate(1, 1.0), clock=lambda: clock[0], max_keys=10)
    for n in range(10):
        await limiter.admit(visitor_id=f"v-{n}", address=None)
    clock[0] += 2
    await limiter.admit(visitor_id="late", address=None)
    assert len(limiter._windows) == 1


# --- over HTTP ------------------------------------------------------------------------------------------------------


async def served(stack: Stack, limiter: WebchatLimiter | None = None, **options: Any) -> httpx.AsyncClient:
    app = create_webchat_app(stack.engine, WebchatHub(), limiter=limiter)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, **options), base_url=CHAT, timeout=60)


async def history(client: httpx.AsyncClient, visitor_id: str) -> list[str]:
    response = await client.get("/webchat/api/messages", params={"visitor_id": visitor_id})
    return [m["text"] for m in response.json()["messages"] if m["sender"] == "me"]


async def test_a_visitor_posting_too_fast_gets_429_and_the_message_is_not_handled(  # type: ignore[no-untyped-def]
        stack: Stack, make_limiter) -> None:
    limiter = make_limiter(Rate(2, 60.0), Rate(100, 60.0))
    async with await served(stack, limiter) as client:
        for text in ("hello", "are you open on sunday"):
            assert (await client.post("/webchat/api/messages", json={"visitor_id": "fast", "text": text})
                    ).status_code == 200
        refused = await client.post("/webchat/api/messages", json={"visitor_id": "fast", "text": "one more"})
        assert refused.status_code == 429
        assert 59 <= int(refused.headers["retry-after"]) <= 60
        error = refused.json()["error"]
        assert "too fast" in error and "秒后再试" in error and refused.headers["retry-after"] in error
        assert await history(client, "fast") == ["hello", "are you open on sunday"]  # "one more" never reached it
        other = await client.post("/webchat/api/messages", json={"visitor_id": "calm", "text": "hello"})
        assert other.status_code == 200


async def test_one_address_is_limited_across_visitor_ids(stack: Stack) -> None:
    limiter = MemoryWebchatLimiter(per_visitor=Rate(100, 60.0), per_address=Rate(2, 60.0))
    async with await served(stack, limiter, client=("203.0.113.9", 4000)) as flooder:
        statuses = [(await flooder.post("/webchat/api/messages", json={"visitor_id": f"v{n}", "text": "hi"})
                     ).status_code for n in range(3)]
    assert statuses == [200, 200, 429]
    async with await served(stack, limiter, client=("198.51.100.4", 4000)) as neighbour:
        assert (await neighbour.post("/webchat/api/messages", json={"visitor_id": "v9", "text": "hi"})
                ).status_code == 200


async def test_a_failing_limiter_lets_the_message_through(stack: Stack) -> None:
    class Broken:
        async def admit(self, *, visitor_id: str, address: str | None) -> int:
            raise ConnectionError("redis is down")

        async def close(self) -> None:
            return None

    async with await served(stack, Broken()) as client:
        assert (await client.post("/webchat/api/messages", json={"visitor_id": "v", "text": "hi"})).status_code == 200


async def test_a_body_over_the_cap_is_a_clear_413(stack: Stack) -> None:
    async with await served(stack) as client:
        big = {"visitor_id": "big", "text": "x" * (70 * 1024)}
        declared = await client.post("/webchat/api/messages", json=big)

        async def chunked() -> AsyncIterator[bytes]:
            yield b'{"visitor_id": "big", "text": "'
            for _ in range(70):
                yield b"y" * 1024
            yield b'"}'

        streamed = await client.post("/webchat/api/messages", content=chunked(),
                                     headers={"Content-Type": "application/json"})
        for response in (declared, streamed):
            assert response.status_code == 413
            assert response.json() == {"error": "This request is too large (at most 64 KB). / "
                                                "请求内容过大（最多 64 KB）。"}
        assert await history(client, "big") == []
        # the largest valid message, every character escaped, is well within the cap
        widest = await client.post("/webchat/api/messages", content=('{"visitor_id": "wide", "text": "'
                                   + "\\ud83c\\udf75" * MAX_TEXT + '"}').encode(),
                                   headers={"Content-Type": "application/json"})
        assert widest.status_code == 200, widest.text


@pytest.mark.parametrize(("body", "said"), [
    ({"visitor_id": "v", "text": "x" * (MAX_TEXT + 1)},
     "Your message is too long: at most 4000 characters. / 消息太长了：最多 4000 个字符。"),
    ({"visitor_id": "v", "text": "  "}, "Type a message first. / 请先输入消息。"),
    ({"visitor_id": "v", "text": "a\x00b"}, "This message could not be sent (text: must be text without NUL "
                                          "characters or unpaired surrogates). Please reload the page and try again."),
    ({"visitor_id": "v", "payload": "contact:+14155550100"}, "the web chat shares no contacts"),
    ({"visitor_id": "no spaces", "text": "hi"}, "visitor_id: String should match pattern"),
    (["not", "an", "object"], "body: Input should be a valid dictionary"),
], ids=["too-long", "blank", "nul", "contact", "visitor-id", "not-an-object"])
async def test_invalid_input_is_a_422_the_widget_can_show(stack: Stack, body: Any, said: str) -> None:
    async with await served(stack) as client:
        response = await client.post("/webchat/api/messages", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert said in answer["error"] and " / " in answer["error"]
    assert all(set(item) == {"field", "message"} for item in answer["detail"])  # never the input echoed back
    assert "xxxx" not in response.text
