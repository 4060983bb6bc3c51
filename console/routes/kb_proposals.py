"""Phrasings learned from conversations, in the console: the review page where whoever may edit KB articles accepts
(the question joins the article's alternative questions, and every bot picks it up) or rejects each proposal in one
click, and the conversation view's "This question is answered by…" action, where an agent links a customer's
message to the article that answers it. Proposals from agent assist come with an agent's reply (conversations.py),
and from a customer's 👍 on a suggestion through the bot (bot/learning.py)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.permissions import Permission, require
from console.security import SignedIn
from console.tickets import ago, done, is_htmx, load_visible, problem
from console.web import redirect, render
from crm_store.enums import ArticleStatus, ProposalSource
from crm_store.errors import InvalidTransition, NotFound
from crm_store.services.knowledge import LANGUAGES
from crm_store.services.phrasings import NotProposed, ProposalView

router = APIRouter()

Editor = Annotated[SignedIn, require(Permission.KB_EDIT)]
Worker = Annotated[SignedIn, require(Permission.TICKETS_WORK)]
Id = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
FormStr = Annotated[str, Form()]

PICKER_HITS = 6
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (中文)"}
SOURCES = {
    ProposalSource.ASSIST: "Agent assist",
    ProposalSource.LINK: "Linked by an agent",
    ProposalSource.FEEDBACK: "Customer's 👍 on a suggestion",
}
NOTICES = {
    "accepted": "Accepted: the question is one of the article's phrasings now, and the bot answers it.",
    "rejected": "Rejected: it will not be proposed for that article again.",
}


# --- the review page -------------------------------------------------------------------------------------------


async def _names(console: Console) -> dict[int, str]:
    return {a.id: a.name for a in await console.crm.agents.list_agents()}


@router.get("/kb/proposals")
async def proposals(request: Request, console: ConsoleDep, _: Editor, language: str = "") -> Response:
    """Pending proposals, newest first, in both languages or one."""
    language = language if language in LANGUAGES else ""
    rows = await console.crm.phrasings.pending(language=language or None)
    return render(request, "kb/proposals.html", rows=rows, counts=await console.crm.phrasings.counts(),
                  language=language, languages=LANGUAGE_NAMES, sources=SOURCES, names=await _names(console),
                  ago=ago, notice=NOTICES.get(request.query_params.get("notice", "")), error=None)


@router.post("/kb/proposals/{proposal_id}/accept")
async def accept(request: Request, console: ConsoleDep, signed: Editor, proposal_id: Id) -> Response:
    return await _decide(request, console, signed, proposal_id, accept=True)


@router.post("/kb/proposals/{proposal_id}/reject")
async def reject(request: Request, console: ConsoleDep, signed: Editor, proposal_id: Id) -> Response:
    return await _decide(request, console, signed, proposal_id, accept=False)


async def _decide(request: Request, console: Console, signed: SignedIn, proposal_id: int, *,
                  accept: bool) -> Response:
    """Accept or reject; the row again (HTMX, in place), else the page. A proposal decided meanwhile (another
    supervisor) or gone (its article deleted) is said so, on its row."""
    decide = console.crm.phrasings.accept if accept else console.crm.phrasings.reject
    try:
        proposal = await decide(proposal_id=proposal_id, agent_id=signed.agent.id)
    except NotFound as exc:
        return await _refused(request, console, str(exc), 404)
    except (InvalidTransition, ValueError) as exc:
        return await _refused(request, console, str(exc), 409, await console.crm.phrasings.get(proposal_id=proposal_id))
    if not is_htmx(request):
        return redirect(f"/kb/proposals?notice={'accepted' if accept else 'rejected'}")
    return _row(request, proposal, await _names(console))


def _row(request: Request, proposal: ProposalView | None, names: dict[int, str], *, status_code: int = 200,
         error: str | None = None) -> Response:
    return render(request, "kb/_proposal_row.html", status_code=status_code, p=proposal, names=names,
                  sources=SOURCES, ago=ago, error=error)


async def _refused(request: Request, console: Console, message: str, status_code: int,
                   proposal: ProposalView | None = None) -> Response:
    if is_htmx(request):  # the row says why (console.js swaps a [data-swap-errors] answer in)
        return _row(request, proposal, await _names(console), status_code=status_code, error=message)
    rows = await console.crm.phrasings.pending()
    return render(request, "kb/proposals.html", status_code=status_code, rows=rows,
                  counts=await console.crm.phrasings.counts(), language="", languages=LANGUAGE_NAMES,
                  sources=SOURCES, names=await _names(console), ago=ago, notice=None, error=message)


# --- "This question is answered by…" in the conversation view --------------------------------------------------


def _answered_by_url(conversation_id: int, message_id: int) -> str:
    return f"/conversations/{conversation_id}/messages/{message_id}/answered-by"


async def _find_articles(console: Console, query: str) -> list[tuple[int, str, str]]:
    """(id, question, language) of the published articles that match: the KB's best hits, then questions that
    contain the words typed."""
    found: dict[int, tuple[int, str, str]] = {}
    if console.kb is not None:
        result = await asyncio.to_thread(console.kb.search, query, k=PICKER_HITS)
        found.update({h.article_id: (h.article_id, h.question, h.language) for h in result.hits})
    for article in await console.crm.knowledge.list_articles(status=ArticleStatus.PUBLISHED, query=query,
                                                             limit=PICKER_HITS):
        found.setdefault(article.id, (article.id, article.question, article.language))
    return list(found.values())[:PICKER_HITS]


@router.get("/conversations/{conversation_id}/messages/{message_id}/answered-by")
async def article_picker(request: Request, console: ConsoleDep, signed: Worker, conversation_id: Id,
                         message_id: Id, q: str = "") -> Response:
    """The articles to choose from for a customer's message, found by `q` (the KB search and the article list)."""
    await load_visible(console, signed, conversation_id)
    query = " ".join(q.split())[:200]
    articles = await _find_articles(console, query) if query else []
    return render(request, "conversations/_answered_by.html", articles=articles, query=query,
                  action=_answered_by_url(conversation_id, message_id), languages=LANGUAGE_NAMES)


@router.post("/conversations/{conversation_id}/messages/{message_id}/answered-by")
async def link_article(request: Request, console: ConsoleDep, signed: Worker, conversation_id: Id, message_id: Id,
                       article_id: FormStr = "") -> Response:
    """Propose the customer's message as a phrasing of the article the agent chose."""
    await load_visible(console, signed, conversation_id)
    back = f"/conversations/{conversation_id}"
    if not re.fullmatch(r"[0-9]{1,10}", article_id) or not 0 < int(article_id) < 2**31:
        return problem(request, "Choose the article that answers this question.", back=back)
    try:
        proposal = await console.crm.phrasings.propose(
            article_id=int(article_id), source=ProposalSource.LINK, conversation_id=conversation_id,
            message_id=message_id, agent_id=signed.agent.id)
    except NotFound as exc:
        return problem(request, str(exc), status_code=404, back=back)
    except NotProposed as exc:
        return problem(request, str(exc), status_code=409, back=back)
    return done(request, back, render(request, "conversations/_answered_by_done.html", proposal=proposal))
