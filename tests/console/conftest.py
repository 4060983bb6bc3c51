"""The console through its ASGI app: an httpx client per test, agents of every role, sessions made directly (fast)
or through the sign-in form (as a person does)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from console.app import attach_console, install_console_routes
from console.settings import ConsoleSettings
from console.throttle import MemoryLoginThrottle, RedisLoginThrottle
from tests.conftest import REDIS_URL

PASSWORD = "correct horse"
BASE = "http://console.test"
ROLES = ("agent", "supervisor", "admin")


@dataclass(frozen=True)
class Staff:
    """One agent of each role, and a spare team and agent for routes that take an id."""

    agent: object
    supervisor: object
    admin: object
    team_id: int


@pytest.fixture
def console_settings() -> ConsoleSettings:
    return ConsoleSettings(_env_file=None)  # the defaults, whatever the environment says


@pytest.fixture
async def throttle() -> AsyncIterator[object]:
    """Redis (a fresh key prefix per test) when the suite runs against one, else memory."""
    if REDIS_URL:
        backend = RedisLoginThrottle.from_url(REDIS_URL, prefix=f"kefu-test:login:{uuid.uuid4().hex}:")
    else:
        backend = MemoryLoginThrottle()
    yield backend
    await backend.close()


@pytest.fixture(scope="session")
def console_routes_app() -> FastAPI:
    """The console's routes, built once for the session (FastAPI takes most of a second per app): each test attaches
    its own CRM, settings and throttle to them (`attach`), as console.app.install_console does in one go."""
    app = FastAPI(title="Kefu console", docs_url=None, redoc_url=None, openapi_url=None)
    install_console_routes(app)
    return app


@pytest.fixture
def attach(console_routes_app: FastAPI, console_settings, throttle):  # type: ignore[no-untyped-def]
    """The console's routes serving `crm` (with this test's settings and throttle, and `kb` if given)."""

    def attached(crm, **options) -> FastAPI:  # type: ignore[no-untyped-def]
        attach_console(console_routes_app, crm=crm, settings=console_settings, throttle=throttle, **options)
        return console_routes_app

    return attached


@pytest.fixture
def app(crm, attach):  # type: ignore[no-untyped-def]
    return attach(crm, shop_name="Kefu Tea", footer_links=[("Web chat", "/webchat")])


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


@pytest.fixture
async def staff(crm) -> Staff:  # type: ignore[no-untyped-def]
    team_id = await crm.agents.create_team(name="Care")
    made = {role: await crm.agents.create_agent(email=f"{role}@example.com", name=role.title(), password=PASSWORD,
                                                role=role, team_id=team_id) for role in ROLES}
    return Staff(team_id=team_id, **made)


async def session_for(crm, agent, client: httpx.AsyncClient) -> str:  # type: ignore[no-untyped-def]
    """Start a session for `agent` and put its cookie in the client; returns the session's CSRF token."""
    started = await crm.agents.start_session(agent_id=agent.id, ttl=timedelta(hours=1))
    client.cookies.set("kefu_session", started.token, domain="console.test")
    return started.csrf_token


def login_csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    """Open the sign-in page and post its form, as a browser does."""
    page = await client.get("/login")
    assert page.status_code == 200
    return await client.post("/login", data={"email": email, "password": password,
                                             "csrf_token": login_csrf(page.text), **extra})


def csrf_of(page: str) -> str:
    """The session's CSRF token, from a signed-in page's hx-headers."""
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert match, page
    return match.group(1)
