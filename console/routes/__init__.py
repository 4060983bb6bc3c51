"""The console's routes, one module per area; `console_router` gathers them (`console.app` checks every one of them
declares its permission)."""

from __future__ import annotations

from fastapi import APIRouter


def console_router() -> APIRouter:
    from console.routes import admin, auth, conversations, courses, customers, dashboard, inbox, kb, sections, surveys

    router = APIRouter()
    for area in (auth, sections, admin, customers, kb, inbox, conversations, dashboard, surveys, courses):
        router.include_router(area.router)
    return router
