"""The agent console's web app. For now only its front page: the console itself (sign-in, inbox, conversations,
customer 360, knowledge base, reports) is the next piece of work; the demo already serves it on the same port as
the web chat, so nothing about how Kefu is run changes when it arrives."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kefu</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}}
a{{color:#2f6f4f}} code{{background:#f2f2f2;padding:0 .3em}}</style></head>
<body><h1>Kefu · 客服</h1>
<p>{shop}: customer-service bot and agent console.</p>
<ul>
<li><a href="/webchat">Open the web chat</a>: ask about shipping, returns or tea, type <code>/courses</code>,
<code>/human</code>, or write in Chinese.</li>
<li>Telegram: {telegram}</li>
<li>The agent console (inbox, conversations, customer 360) is not built yet; agents' replies and ticket
resolutions can be made with the CRM store's services meanwhile.</li>
</ul></body></html>"""


def console_router(*, shop_name: str = "Kefu", telegram: str = "not configured (set KEFU_BOT_TELEGRAM_TOKEN)",
                   **_: Any) -> APIRouter:
    router = APIRouter()
    page = PAGE.format(shop=shop_name, telegram=telegram)

    @router.get("/", response_class=HTMLResponse)
    async def front_page() -> HTMLResponse:
        return HTMLResponse(page)

    return router
