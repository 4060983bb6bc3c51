"""The console's routes, one module per area; `console_router` gathers them (`console.app` checks every one of them
declares its permission)."""

from __future__ import annotations

from fastapi import APIRouter


def console_router() -> APIRouter:
    from console.routes import (
        admin,
        auth,
        campaigns,
        conversations,
        courses,
        customers,
        dashboard,
        duplicates,
        inbox,
        kb,
        kb_glossary,
        kb_proposals,
        privacy,
        reports,
        sections,
        segments,
        surveys,
    )

    router = APIRouter()
    # duplicates before customers: `/customers/{customer_id}` would take `/customers/duplicates`
    # privacy before customers too: its `/customers/{customer_id}/export.json` is more specific
    # kb_glossary and kb_proposals before kb: `/kb/{article_id}` would take `/kb/glossary` and `/kb/proposals`
    for area in (auth, sections, admin, privacy, duplicates, customers, kb_glossary, kb_proposals, kb, inbox,
                 conversations, dashboard, surveys, courses, segments, campaigns, reports):
        router.include_router(area.router)
    return router
