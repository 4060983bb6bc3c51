"""The request-body cap (crm_store/body_limit.py) on a small app: a body declared too large is refused unread, one
sent without a length is refused once it passes the cap (the app's own answer replaced), a body within the cap
reaches the app whole, and the longest registered prefix decides which cap and which refusal apply."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from crm_store.body_limit import BodyCap, limit_request_bodies

read: list[int] = []  # the sizes of the bodies the app read whole


async def echo(request: Request) -> Response:
    try:
        body = await request.body()
    except Exception:  # what an app does with a broken body: here a 400, which the cap must replace
        return PlainTextResponse("broken body", status_code=400)
    read.append(len(body))
    return JSONResponse({"bytes": len(body)})


def refusal(name: str):  # type: ignore[no-untyped-def]
    def respond(scope: Scope, max_bytes: int) -> Response:
        return JSONResponse({"error": f"{name}: at most {max_bytes} bytes"}, status_code=413)

    return respond


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    read.clear()
    app = Starlette(routes=[Route("/chat/send", echo, methods=["POST"]), Route("/upload", echo, methods=["POST"])])
    limit_request_bodies(app, prefix="/", max_bytes=1000, refusal=refusal("site"))
    limit_request_bodies(app, prefix="/chat", max_bytes=100, refusal=refusal("chat"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limits.test") as c:
        yield c


def chunks(size: int, step: int = 30):  # type: ignore[no-untyped-def]
    """A body sent without Content-Length (chunked), `step` bytes at a time."""
    async def stream():  # type: ignore[no-untyped-def]
        for start in range(0, size, step):
            yield b"x" * min(step, size - start)

    return stream()


async def test_bodies_within_the_cap_reach_the_app_whole(client: httpx.AsyncClient) -> None:
    assert (await client.post("/chat/send", content=b"x" * 100)).json() == {"bytes": 100}
    assert (await client.post("/upload", content=b"x" * 1000)).json() == {"bytes": 1000}
    assert (await client.post("/upload", content=chunks(999))).json() == {"bytes": 999}
    assert read == [100, 1000, 999]


@pytest.mark.parametrize(("path", "size", "who", "cap"),
                         [("/chat/send", 101, "chat", 100), ("/upload", 1001, "site", 1000)])
async def test_a_declared_length_over_the_cap_is_refused_unread(client: httpx.AsyncClient, path: str, size: int,
                                                                 who: str, cap: int) -> None:
    response = await client.post(path, content=b"x" * size)
    assert response.status_code == 413
    assert response.json() == {"error": f"{who}: at most {cap} bytes"}
    assert read == []


@pytest.mark.parametrize(("path", "size", "who"), [("/chat/send", 200, "chat"), ("/upload", 5000, "site")])
async def test_a_chunked_body_is_refused_once_it_passes_the_cap(client: httpx.AsyncClient, path: str, size: int,
                                                                who: str) -> None:
    response = await client.post(path, content=chunks(size))
    assert response.status_code == 413 and response.json()["error"].startswith(who)
    assert read == []  # the app's "broken body" 400 was replaced


def test_paths_that_only_share_a_prefix_of_letters_take_the_outer_cap() -> None:
    cap = BodyCap("/chat", 1, refusal("chat"))
    assert cap.covers("/chat") and cap.covers("/chat/send") and not cap.covers("/chatter")
    assert BodyCap("/", 1, refusal("site")).covers("/anything")
