"""Signing in and out. Sign-in is throttled per e-mail and per client address, and its form carries a CSRF token in
a cookie (double submit), as there is no session yet."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from console.context import ConsoleDep
from console.permissions import Permission, require
from console.security import (
    SignedIn,
    clear_login_csrf,
    clear_session_cookie,
    client_ip,
    login_csrf_ok,
    new_login_csrf_token,
    safe_next,
    session_token,
    set_login_csrf_cookie,
    set_session_cookie,
)
from console.throttle import Limit
from console.web import redirect, render
from crm_store.enums import Actor, AuditAction

router = APIRouter()

MAX_PASSWORD_LENGTH = 1024  # argon2 would hash anything; a megabyte "password" is only a way to burn CPU
BAD_CREDENTIALS = "The e-mail or password is incorrect."


def login_form(request: Request, *, status_code: int = 200, error: str | None = None, email: str = "",
               next_path: str = "", retry_after: int = 0) -> Response:
    token = new_login_csrf_token()
    response = render(request, "login.html", status_code=status_code, login_csrf=token, error=error, email=email,
                      next_path=next_path)
    set_login_csrf_cookie(request, response, token)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@router.get("/login")
async def login_page(request: Request, console: ConsoleDep,
                     next_path: Annotated[str, Query(alias="next")] = "") -> Response:
    token = session_token(request)
    if token and await console.crm.agents.session(token=token):
        return redirect(safe_next(next_path))
    return login_form(request, next_path=next_path)


@router.post("/login")
async def login(
    request: Request, console: ConsoleDep, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "", next_path: Annotated[str, Form(alias="next")] = "",
) -> Response:
    email = email.strip().lower()[:254]
    if not login_csrf_ok(request, csrf_token):
        return login_form(request, status_code=403, error="This sign-in form had expired. Please sign in again.",
                          email=email, next_path=next_path)
    settings = console.settings
    limits = [Limit(f"email:{email}", settings.login_max_failures_per_email),
              Limit(f"ip:{client_ip(request)}", settings.login_max_failures_per_ip)]
    wait = await console.throttle.retry_after(limits)
    if wait:
        return login_form(request, status_code=429, email=email, next_path=next_path, retry_after=wait,
                          error=f"Too many failed sign-ins. Try again in {_minutes(wait)}.")
    agent = None
    if email and 0 < len(password) <= MAX_PASSWORD_LENGTH:
        agent = await console.crm.agents.authenticate(email=email, password=password)
    if agent is None:
        await console.throttle.record_failure([limit.key for limit in limits],
                                              window_s=math.ceil(settings.login_window.total_seconds()))
        await console.crm.audit.record(action=AuditAction.LOGIN_FAILED, actor=Actor.SYSTEM, actor_label=email,
                                       ip=client_ip(request))
        return login_form(request, status_code=401, error=BAD_CREDENTIALS, email=email, next_path=next_path)
    await console.throttle.clear(limits[0].key)  # not the address's count: one good password must not reset it
    old = session_token(request)
    if old:
        await console.crm.agents.end_session(token=old)
    started = await console.crm.agents.start_session(
        agent_id=agent.id, ttl=settings.session_ttl, user_agent=request.headers.get("user-agent", ""),
        ip=client_ip(request),
    )
    await console.crm.audit.record(action=AuditAction.LOGIN, agent_id=agent.id, actor_label=agent.email,
                                   ip=client_ip(request),
                                   details={"user_agent": request.headers.get("user-agent", "")[:200]})
    response = redirect(safe_next(next_path))
    set_session_cookie(request, response, started.token, started.expires_at)
    clear_login_csrf(request, response)
    return response


@router.post("/logout")
async def logout(request: Request, console: ConsoleDep,
                 signed: Annotated[SignedIn, require(Permission.CONSOLE_USE)]) -> Response:
    await console.crm.agents.end_session(token=session_token(request) or "")
    await console.crm.audit.record(action=AuditAction.LOGOUT, agent_id=signed.agent.id,
                                   actor_label=signed.agent.email, ip=client_ip(request))
    response = redirect("/login")
    clear_session_cookie(request, response)
    return response


@router.get("/")
async def home(_: Annotated[SignedIn, require(Permission.CONSOLE_USE)]) -> Response:
    """Signed in: the inbox (anonymous visitors are sent to /login by the permission check)."""
    return redirect("/inbox")


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
