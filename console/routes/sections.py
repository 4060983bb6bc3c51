"""The console's sections that later work fills in: each page already sits behind its permission. Building a
section means replacing its row here with real routes (in a module of its own)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from console.permissions import Permission, require
from console.web import render

router = APIRouter()

# (path, permission, title, what the page will hold)
COMING: list[tuple[str, Permission, str, str]] = []


def coming_page(title: str, lead: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def page(request: Request) -> HTMLResponse:
        return render(request, "placeholder.html", title=title, lead=lead)

    return page


for path, permission, title, lead in COMING:
    router.add_api_route(path, coming_page(title, lead), methods=["GET"], dependencies=[require(permission)],
                         name=f"coming:{path}")
