"""Rendering console pages: Jinja2 (autoescaped), the navigation each role sees, and the security headers every
console response carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.context import get_console
from console.permissions import Permission, permissions_of

R = TypeVar("R", bound=Response)

# Pages hold customers' data and a CSRF token: never cached, never framed, scripts and styles from the console only.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
}


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    permission: Permission
    section: str  # the first path segment it covers, to mark it current


NAV = (
    NavItem("Inbox", "/inbox", Permission.TICKETS_WORK, "inbox"),
    NavItem("Customers", "/customers", Permission.CUSTOMERS_VIEW, "customers"),
    NavItem("Segments", "/segments", Permission.SEGMENTS_MANAGE, "segments"),
    NavItem("Campaigns", "/campaigns", Permission.CAMPAIGNS_MANAGE, "campaigns"),
    NavItem("Knowledge base", "/kb", Permission.KB_READ, "kb"),
    NavItem("Surveys & courses", "/surveys", Permission.SURVEYS_MANAGE, "surveys courses"),
    NavItem("Dashboard", "/dashboard", Permission.ANALYTICS_VIEW, "dashboard"),
    NavItem("Reports", "/reports", Permission.ANALYTICS_VIEW, "reports"),
    NavItem("Admin", "/admin/agents", Permission.AGENTS_MANAGE, "admin"),
)


def with_security_headers(response: R) -> R:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A full page (or, for templates that are fragments, the fragment) for the signed-in agent, if any."""
    console = get_console(request)
    signed = getattr(request.state, "signed_in", None)
    granted = permissions_of(signed.agent.role) if signed else frozenset()
    section = request.url.path.strip("/").split("/", 1)[0]
    html = console.templates.get_template(template).render(
        request=request, signed=signed, csrf_token=signed.csrf_token if signed else "",
        can=lambda permission: permission in granted, Permission=Permission,
        nav=[(item, section in item.section.split()) for item in NAV if item.permission in granted],
        shop_name=console.shop_name, footer_links=console.footer_links, **context,
    )
    return with_security_headers(HTMLResponse(html, status_code=status_code))


def redirect(url: str) -> RedirectResponse:
    """See other (303): after a form post, the browser GETs the next page."""
    return with_security_headers(RedirectResponse(url, status_code=303))
