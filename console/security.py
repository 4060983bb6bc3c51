"""Sign-in state and request checks of the console: the session cookie, `CurrentAgent`, CSRF on every unsafe
request, and the sign-in form's own CSRF cookie. Per-route dependencies, never middleware: the web chat and the
Telegram webhook share the app and must stay untouched."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import Response

from console.context import ConsoleDep, get_console
from crm_store.coltypes import utcnow
from crm_store.dto import AgentView

SESSION_COOKIE = "kefu_session"
LOGIN_CSRF_COOKIE = "kefu_login_csrf"
SECURE_PREFIX = "__Host-"  # the browser keeps such a cookie only if Secure, Path=/ and without Domain
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class SignedIn:
    """The agent behind this request, with their session's CSRF token."""

    agent: AgentView
    session_id: int
    csrf_token: str
    expires_at: datetime


class LoginRequired(Exception):
    """No live session: pages redirect to /login, API and HTMX requests get 401."""


class Forbidden(Exception):
    """Signed in, but not allowed (a permission, or a missing or wrong CSRF token)."""

    def __init__(self, message: str = "You do not have access to this page.") -> None:
        super().__init__(message)
        self.message = message


def is_secure(request: Request) -> bool:
    """Whether cookies of this request get the Secure flag (and the __Host- name), as the settings say."""
    setting = get_console(request).settings.cookie_secure
    return request.url.scheme == "https" if setting == "auto" else bool(setting)


def cookie_name(request: Request, base: str) -> str:
    return SECURE_PREFIX + base if is_secure(request) else base


def _set_cookie(request: Request, response: Response, base: str, value: str, *, max_age: int,
                samesite: Literal["lax", "strict"]) -> None:
    response.set_cookie(cookie_name(request, base), value, max_age=max_age, path="/", httponly=True,
                        secure=is_secure(request), samesite=samesite)


def set_session_cookie(request: Request, response: Response, token: str, expires_at: datetime) -> None:
    max_age = max(0, int((expires_at - utcnow()).total_seconds()))
    # Lax: a link from elsewhere (an e-mail's "open ticket") arrives signed in; unsafe requests need the CSRF token.
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=max_age, samesite="lax")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(cookie_name(request, SESSION_COOKIE), path="/", httponly=True,
                           secure=is_secure(request), samesite="lax")


def session_token(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request, SESSION_COOKIE))


def wants_json(request: Request) -> bool:
    """API and HTMX requests get status codes and JSON, not redirects and pages."""
    accept = request.headers.get("accept", "")
    return (request.headers.get("hx-request") == "true" or request.url.path.startswith("/api/")
            or ("application/json" in accept and "text/html" not in accept))


async def current_agent(request: Request, console: ConsoleDep) -> SignedIn:
    """The signed-in agent (active, session live), or LoginRequired."""
    token = session_token(request)
    view = await console.crm.agents.session(token=token) if token else None
    if view is None:
        raise LoginRequired()
    signed = SignedIn(agent=view.agent, session_id=view.id, csrf_token=view.csrf_token, expires_at=view.expires_at)
    request.state.signed_in = signed  # pages rendered for this request (errors too) show the agent's menu
    return signed


CurrentAgent = Annotated[SignedIn, Depends(current_agent)]


async def submitted_csrf_token(request: Request) -> str | None:
    """The CSRF token a request carries: the X-CSRF-Token header (HTMX) or the form's csrf_token field."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() in FORM_TYPES:
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def tokens_match(sent: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty token never matches."""
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


async def csrf_checked(request: Request, signed: CurrentAgent) -> SignedIn:
    """The signed-in agent, once an unsafe request has shown their session's CSRF token."""
    if request.method not in SAFE_METHODS and not tokens_match(await submitted_csrf_token(request),
                                                               signed.csrf_token):
        raise Forbidden("This form has expired or did not come from the console. Reload the page and try again.")
    return signed


def login_path(request: Request) -> str:
    """/login, with the page asked for (a GET) to come back to afterwards."""
    if request.method == "GET" and request.url.path not in ("/", "/login"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return f"/login?next={quote(target, safe='')}"
    return "/login"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no //host, no scheme), else the inbox."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/inbox"


def new_login_csrf_token() -> str:
    """A token for the sign-in form; `set_login_csrf_cookie` puts the same in a cookie (double submit: there is no
    session yet to hold it)."""
    return secrets.token_urlsafe(32)


def set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600, samesite="strict")


def login_csrf_ok(request: Request, submitted: str | None) -> bool:
    return tokens_match(submitted, request.cookies.get(cookie_name(request, LOGIN_CSRF_COOKIE), ""))


def clear_login_csrf(request: Request, response: Response) -> None:
    response.delete_cookie(cookie_name(request, LOGIN_CSRF_COOKIE), path="/", httponly=True,
                           secure=is_secure(request), samesite="strict")


def client_ip(request: Request) -> str:
    """The client's address (behind a proxy, uvicorn's --forwarded-allow-ips makes it the real client's)."""
    return request.client.host if request.client else "unknown"
