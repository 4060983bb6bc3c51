"""The agent console's web app: sign-in, the sections each role may open, and administration.

`install_console` adds it to an existing FastAPI app (the demo serves the web chat and the Telegram webhook on the
same app and port): its checks are per-route dependencies and its error handlers answer only the console's own
exceptions, so the other routes are untouched. `create_console_app` is the console on its own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from console.api import PUBLIC_PATHS as API_PUBLIC_PATHS
from console.api import api_router
from console.body_limit import limit_console_bodies
from console.context import STATIC, Console
from console.live import ASSIGNMENT_GROUP, LiveHub
from console.permissions import route_permission
from console.routes import console_router
from console.security import (
    Forbidden,
    LoginRequired,
    clear_session_cookie,
    login_path,
    session_token,
    wants_json,
)
from console.settings import ConsoleSettings
from console.throttle import LoginThrottle, build_throttle
from console.tickets import Missing, missing_page
from console.web import redirect, render, with_security_headers
from crm_store.crm import CRM

# Console routes that anyone may open; every other one must declare its permission with `require(...)`.
PUBLIC_PATHS = frozenset({"/login", "/healthz", *API_PUBLIC_PATHS})


def console_routes(routes: Iterable[Any]) -> list[Any]:
    """The routes the console's own modules define, among all of an app's routes (each with its full `path`,
    `methods`, `endpoint` and `dependant`)."""
    try:  # FastAPI 0.16x keeps included routers whole; this walks them
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies every included route into app.routes
        flat = [r for r in routes if isinstance(r, APIRoute)]
    else:
        flat = [c for c in iter_route_contexts(list(routes)) if isinstance(c.original_route, APIRoute)]
    return [r for r in flat if getattr(r.endpoint, "__module__", "").split(".")[0] == "console"]


def unguarded_routes(routes: Iterable[Any]) -> list[str]:
    """"METHODS /path" of every console route that is neither public nor behind a permission."""
    return [f"{','.join(sorted(r.methods))} {r.path}" for r in console_routes(routes)
            if r.path not in PUBLIC_PATHS and route_permission(r) is None]


def install_console(
    app: FastAPI, *, crm: CRM, settings: ConsoleSettings | None = None, kb: Any = None, shop_name: str = "Kefu",
    footer_links: Sequence[tuple[str, str]] = (), throttle: LoginThrottle | None = None,
) -> Console:
    """Add the console's routes, static files and error pages to `app`; the caller closes the returned Console."""
    install_console_routes(app)
    return attach_console(app, crm=crm, settings=settings, kb=kb, shop_name=shop_name, footer_links=footer_links,
                          throttle=throttle)


def install_console_routes(app: FastAPI) -> None:
    """The console's routes, static files and error pages, without what they serve (see attach_console)."""
    app.include_router(console_router())
    app.include_router(api_router())
    limit_console_bodies(app)
    if missing := unguarded_routes(app.routes):
        raise RuntimeError(f"console routes without a permission: {', '.join(missing)}")
    app.mount("/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(Missing, missing_page)


def attach_console(
    app: FastAPI, *, crm: CRM, settings: ConsoleSettings | None = None, kb: Any = None, shop_name: str = "Kefu",
    footer_links: Sequence[tuple[str, str]] = (), throttle: LoginThrottle | None = None,
) -> Console:
    """What the console's routes serve: the CRM, settings, KB, sign-in throttle, and the live pages' hub on the
    CRM's bus. Attaching again replaces them (the tests give routes built once a CRM of their own each: FastAPI
    takes most of a second to build the routes)."""
    console = Console(crm=crm, settings=settings or ConsoleSettings(), kb=kb, shop_name=shop_name,
                      footer_links=tuple(footer_links),
                      throttle=throttle if throttle is not None else build_throttle(crm.settings.redis_url))
    app.state.console = console
    # Live pages: this process's hub hears every event (a group of its own); auto-assignment runs once per
    # deployment (one shared group), whichever console process takes the event.
    app.state.console_live = live = LiveHub()
    live.attach(crm.events)
    crm.events.subscribe(ASSIGNMENT_GROUP, crm.assignment.on_event)
    return console


def create_console_app(*, crm: CRM, settings: ConsoleSettings | None = None, kb: Any = None,
                       **options: Any) -> FastAPI:
    """The console alone, as an ASGI app (tests, or a deployment that serves the bot elsewhere)."""
    app = FastAPI(title="Kefu console", docs_url=None, redoc_url=None, openapi_url=None)
    install_console(app, crm=crm, settings=settings, kb=kb, **options)
    return app


async def _login_required(request: Request, _: Exception) -> Response:
    if wants_json(request):
        headers = {"HX-Redirect": "/login"} if request.headers.get("hx-request") == "true" else {}
        response: Response = JSONResponse({"detail": "Sign in first."}, status_code=401, headers=headers)
    else:
        response = redirect(login_path(request))
    if session_token(request):  # a cookie that no longer opens a session: drop it
        clear_session_cookie(request, response)
    return with_security_headers(response)


async def _forbidden(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, Forbidden) else "Forbidden."
    if wants_json(request):
        return with_security_headers(JSONResponse({"detail": message}, status_code=403))
    return render(request, "error.html", status_code=403, title="Not allowed", message=message)
