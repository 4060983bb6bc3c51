"""Signing in and out of the console: credentials, the sign-in form's CSRF check, throttling, sessions that end
(sign-out, expiry, deactivation), cookie flags, and where anonymous requests are sent."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from console.app import create_console_app, install_console
from console.settings import ConsoleSettings
from console.throttle import MemoryLoginThrottle
from crm_store import models as m
from crm_store.coltypes import utcnow
from tests.console.conftest import BASE, PASSWORD, csrf_of, login_csrf, session_for, sign_in

BAD = "The e-mail or password is incorrect."


def session_cookie(response: httpx.Response, name: str = "kefu_session") -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


async def test_signing_in_opens_the_inbox_and_shows_who_is_signed_in(client, staff) -> None:
    response = await sign_in(client, "Admin@Example.com ")
    assert response.status_code == 303 and response.headers["location"] == "/inbox"
    inbox = await client.get("/inbox")
    assert inbox.status_code == 200
    assert "Admin" in inbox.text and "badge-admin" in inbox.text and 'action="/logout"' in inbox.text
    assert (await client.get("/")).headers["location"] == "/inbox"
    assert (await client.get("/login")).headers["location"] == "/inbox"  # already signed in


@pytest.mark.parametrize(("email", "password"), [
    ("agent@example.com", "wrong password"), ("nobody@example.com", PASSWORD), ("agent@example.com", ""),
    ("", PASSWORD), ("agent@example.com", "x" * 5000),
])
async def test_bad_credentials_get_one_message_that_does_not_say_which_part(client, staff, email, password) -> None:
    response = await sign_in(client, email, password)
    assert response.status_code == 401
    assert BAD in response.text and "kefu_session" not in response.headers.get("set-cookie", "")
    assert f'value="{email.strip().lower()}"' in response.text  # the e-mail is kept, the password is not
    assert (await client.get("/inbox")).status_code == 303


async def test_a_deactivated_agent_cannot_sign_in(client, crm, staff) -> None:
    await crm.agents.update_agent(agent_id=staff.agent.id, active=False)
    response = await sign_in(client, "agent@example.com")
    assert response.status_code == 401 and BAD in response.text


async def test_the_sign_in_form_refuses_a_post_without_its_csrf_token(client, staff) -> None:
    await client.get("/login")  # the cookie half is there, the form half is not
    for data in ({}, {"csrf_token": "forged"}):
        response = await client.post("/login", data={"email": "agent@example.com", "password": PASSWORD, **data})
        assert response.status_code == 403 and "expired" in response.text
        assert "kefu_session=" not in response.headers.get("set-cookie", "")
    fresh = httpx.AsyncClient(transport=client._transport, base_url=BASE)  # no cookie at all, token copied
    async with fresh:
        token = login_csrf((await client.get("/login")).text)
        response = await fresh.post("/login", data={"email": "agent@example.com", "password": PASSWORD,
                                                    "csrf_token": token})
        assert response.status_code == 403


async def test_sign_in_returns_to_the_page_asked_for_but_only_on_this_site(client, staff) -> None:
    first = await client.get("/admin/teams?x=1")
    assert first.status_code == 303 and first.headers["location"] == "/login?next=" + quote("/admin/teams?x=1",
                                                                                          safe="")
    page = await client.get(first.headers["location"])
    assert 'name="next" value="/admin/teams?x=1"' in page.text
    response = await client.post("/login", data={"email": "admin@example.com", "password": PASSWORD,
                                                 "csrf_token": login_csrf(page.text), "next": "/admin/teams?x=1"})
    assert response.headers["location"] == "/admin/teams?x=1"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        async with httpx.AsyncClient(transport=client._transport, base_url=BASE) as other:
            response = await sign_in(other, "admin@example.com", next=evil)
            assert response.headers["location"] == "/inbox", evil


# --- throttling ---------------------------------------------------------------------------------------------------


async def test_five_failures_lock_the_email_even_against_the_right_password(client, staff) -> None:
    for _ in range(5):
        assert (await sign_in(client, "agent@example.com", "wrong password")).status_code == 401
    locked = await sign_in(client, "agent@example.com")  # the right password, during the lockout
    assert locked.status_code == 429
    assert "Too many failed sign-ins. Try again in 15 minutes." in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= 900
    assert "kefu_session=" not in locked.headers.get("set-cookie", "")
    assert (await sign_in(client, "AGENT@example.com")).status_code == 429  # the same e-mail, however written
    # another agent from the same address is not locked out by someone else's e-mail
    assert (await sign_in(client, "supervisor@example.com")).status_code == 303


async def test_a_successful_sign_in_clears_the_emails_failures(client, staff) -> None:
    for _ in range(4):
        await sign_in(client, "agent@example.com", "wrong password")
    assert (await sign_in(client, "agent@example.com")).status_code == 303
    client.cookies.clear()
    for _ in range(4):
        assert (await sign_in(client, "agent@example.com", "wrong password")).status_code == 401
    assert (await sign_in(client, "agent@example.com")).status_code == 303


async def test_one_address_trying_many_emails_is_locked_out(crm, staff) -> None:
    settings = ConsoleSettings(_env_file=None, login_max_failures_per_ip=3)
    app = create_console_app(crm=crm, settings=settings, throttle=MemoryLoginThrottle())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 1)),
                                 base_url=BASE) as attacker:
        for n in range(3):
            assert (await sign_in(attacker, f"guess{n}@example.com", "password1")).status_code == 401
        assert (await sign_in(attacker, "admin@example.com")).status_code == 429
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.4", 1)),
                                 base_url=BASE) as colleague:
        assert (await sign_in(colleague, "admin@example.com")).status_code == 303


async def test_the_lockout_ends_with_its_window(crm, staff) -> None:
    now = [1000.0]
    app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None),
                             throttle=MemoryLoginThrottle(clock=lambda: now[0]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        for _ in range(5):
            await sign_in(client, "agent@example.com", "wrong password")
        now[0] += 14 * 60
        assert (await sign_in(client, "agent@example.com")).status_code == 429
        now[0] += 61
        assert (await sign_in(client, "agent@example.com")).status_code == 303


# --- sessions ending ---------------------------------------------------------------------------------------------


async def test_sign_out_ends_the_session_on_the_server(client, crm, staff) -> None:
    await sign_in(client, "agent@example.com")
    old_cookie = client.cookies["kefu_session"]
    page = await client.get("/inbox")
    response = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert 'kefu_session=""' in session_cookie(response) and "Max-Age=0" in session_cookie(response)
    async with crm.db.sessionmaker() as s:
        (revoked_at,) = (await s.execute(select(m.AgentSession.revoked_at))).scalars()
    assert revoked_at is not None
    # the old cookie, sent again (as a thief who copied it would), opens nothing
    async with httpx.AsyncClient(transport=client._transport, base_url=BASE,
                                 cookies={"kefu_session": old_cookie}) as replay:
        assert (await replay.get("/inbox")).headers["location"] == "/login?next=%2Finbox"


async def test_sign_out_needs_the_csrf_token(client, staff) -> None:
    await sign_in(client, "agent@example.com")
    assert (await client.post("/logout")).status_code == 403
    assert (await client.get("/inbox")).status_code == 200  # still signed in


async def test_an_expired_session_sends_the_agent_back_to_sign_in(client, crm, staff) -> None:
    await sign_in(client, "agent@example.com")
    assert (await client.get("/inbox")).status_code == 200
    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.AgentSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    response = await client.get("/inbox")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert "Max-Age=0" in session_cookie(response)  # the dead cookie is dropped


async def test_the_session_lasts_as_configured(crm, staff) -> None:
    app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None, session_hours=2),
                             throttle=MemoryLoginThrottle())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        response = await sign_in(client, "agent@example.com")
    assert "Max-Age=7199" in session_cookie(response) or "Max-Age=7200" in session_cookie(response)
    async with crm.db.sessionmaker() as s:
        (expires_at,) = (await s.execute(select(m.AgentSession.expires_at))).scalars()
    assert timedelta(hours=2) - timedelta(seconds=30) < expires_at - utcnow() <= timedelta(hours=2)


async def test_a_deactivated_agents_session_stops_working_at_once(client, crm, staff) -> None:
    await sign_in(client, "agent@example.com")
    assert (await client.get("/inbox")).status_code == 200
    async with httpx.AsyncClient(transport=client._transport, base_url=BASE) as admin:
        csrf = await session_for(crm, staff.admin, admin)
        response = await admin.post(f"/admin/agents/{staff.agent.id}", data={"active": "no", "csrf_token": csrf})
        assert response.status_code == 303
    assert (await client.get("/inbox")).status_code == 303


async def test_signing_in_again_replaces_the_old_session(client, crm, staff) -> None:
    await sign_in(client, "agent@example.com")
    first = client.cookies["kefu_session"]
    async with httpx.AsyncClient(transport=client._transport, base_url=BASE) as second_tab:
        form = login_csrf((await second_tab.get("/login")).text)  # opened before the first tab signed in
        second_tab.cookies.set("kefu_session", first, domain="console.test")
        response = await second_tab.post("/login", data={"email": "agent@example.com", "password": PASSWORD,
                                                         "csrf_token": form})
        assert response.status_code == 303 and second_tab.cookies["kefu_session"] != first
    assert await crm.agents.session(token=first) is None


# --- cookies, anonymous requests, the shared app -----------------------------------------------------------------


async def test_over_https_the_cookie_is_secure_host_only_httponly_and_lax(app, staff) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test") as client:
        response = await sign_in(client, "agent@example.com")
        cookie = session_cookie(response, "__Host-kefu_session")
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"secure", "httponly", "path", "samesite", "max-age"} <= flags and "domain" not in flags
        assert "Path=/" in cookie and "SameSite=lax" in cookie
        assert (await client.get("/inbox")).status_code == 200
        login_page = await client.get("/login", follow_redirects=False)
        assert login_page.status_code == 303
        # a plain-named cookie (planted over http) does not count on https
        client.cookies.clear()
        client.cookies.set("kefu_session", "anything", domain="console.test")
        assert (await client.get("/inbox")).status_code == 303


async def test_over_http_auto_leaves_secure_off_so_the_local_demo_works(client, staff) -> None:
    response = await sign_in(client, "agent@example.com")
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


async def test_cookie_secure_true_sets_secure_even_over_http(crm, staff) -> None:
    app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None, cookie_secure=True),
                             throttle=MemoryLoginThrottle())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        page = await client.get("/login")
        assert "__Host-kefu_login_csrf=" in page.headers["set-cookie"] and "Secure" in page.headers["set-cookie"]


async def test_anonymous_pages_redirect_and_htmx_or_api_requests_get_401(client, staff) -> None:
    page = await client.get("/customers")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fcustomers"
    hx = await client.get("/customers", headers={"HX-Request": "true"})
    assert hx.status_code == 401 and hx.json() == {"detail": "Sign in first."} and hx.headers["hx-redirect"] == "/login"
    json = await client.get("/customers", headers={"Accept": "application/json"})
    assert json.status_code == 401


async def test_console_responses_carry_the_security_headers(client, staff) -> None:
    for response in (await client.get("/login"), await client.get("/inbox")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in response.headers["content-security-policy"]
    css = await client.get("/static/console.css")
    assert css.status_code == 200 and "--accent" in css.text
    htmx = await client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and htmx.text.startswith("var htmx=")


async def test_other_routes_on_the_same_app_need_neither_a_session_nor_a_csrf_token(crm) -> None:
    app = FastAPI()

    @app.post("/webchat/api/messages")
    async def webchat() -> dict[str, bool]:
        return {"ok": True}

    console = install_console(app, crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        response = await client.post("/webchat/api/messages", json={"text": "hi"})
        assert response.status_code == 200 and response.json() == {"ok": True}
        assert (await client.get("/inbox")).status_code == 303
    await console.close()
