"""The console's REST API under /api/v1: tickets, customers and knowledge-base articles for other systems, with an
admin-issued bearer token per caller and a scope per route. Its OpenAPI schema is at /api/v1/openapi.json and a
plain page listing the endpoints at /api/v1/docs (no Swagger UI or ReDoc: their assets would come from a CDN)."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from console.web import with_security_headers

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
DOCS_PATH = f"{PREFIX}/docs"
PUBLIC_PATHS = frozenset({OPENAPI_PATH, DOCS_PATH})  # the API's description: no data, open to anyone
DESCRIPTION = """Kefu's REST API. Every call sends `Authorization: Bearer <token>`; an admin issues tokens, each
with its scopes, in the console (Admin → API tokens). The console's session cookie does not open the API.

* 401: no token, or one that is unknown, revoked or expired; 403: the token lacks the route's scope.
* 404: no such record; 409: the change is refused (an invalid status change, a duplicate external id);
  422: the request is invalid (every text and list has a maximum size; unknown fields are refused).
* Changes (replies, notes, assignments, articles) are recorded as made by the agent who issued the token.
* Lists are paged: pass a page's `next_cursor` back as `cursor` (tickets, customers, articles), or
  `next_before_id` as `before_id` (a ticket's messages); null means the last page."""


def api_router() -> APIRouter:
    from console.api import articles, customers, tickets

    router = APIRouter(prefix=PREFIX)
    for area in (tickets, customers, articles):
        router.include_router(area.router)
    router.add_api_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    router.add_api_route("/docs", docs_page, methods=["GET"], include_in_schema=False)
    return router


def openapi_schema(request: Request) -> dict[str, Any]:
    """The API's OpenAPI document (its own routes only, whatever else the app serves), built once per app."""
    state = request.app.state
    if getattr(state, "kefu_api_openapi", None) is None:
        from console.app import console_routes

        routes = [r for r in console_routes(request.app.routes) if r.path.startswith(PREFIX + "/")]
        state.kefu_api_openapi = get_openapi(title="Kefu REST API", version="1.0.0", description=DESCRIPTION,
                                             routes=routes, servers=[{"url": "/"}])
    return state.kefu_api_openapi  # type: ignore[no-any-return]


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_schema(request))


async def docs_page(request: Request) -> HTMLResponse:
    """Every endpoint with its scope and summary, on one self-contained page."""
    schema = openapi_schema(request)
    rows = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            scopes = ", ".join(_scopes(operation)) or "—"
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(scopes)}</td><td>{html.escape(operation.get('summary', ''))}</td></tr>")
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Kefu REST API</title></head><body>"
        f"<h1>Kefu REST API v1</h1><p>The OpenAPI schema: <a href=\"{OPENAPI_PATH}\">{OPENAPI_PATH}</a>. "
        "Send <code>Authorization: Bearer &lt;token&gt;</code> with every call; admins issue tokens in the "
        "console.</p><table><thead><tr><th>Method</th><th>Path</th><th>Scope</th><th>What</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>"
    )
    return with_security_headers(HTMLResponse(page))


def _scopes(operation: dict[str, Any]) -> list[str]:
    return [scope for requirement in operation.get("security", []) for scopes in requirement.values()
            for scope in scopes]
