"""Customers: search, and the customer 360 (profile, identities, consent, loyalty and its ledger, orders, surveys,
courses, tickets, the whole timeline); a supervisor's points adjustment and an agent's one-time link code.

Everything a customer typed (name, tags, messages) reaches the page through Jinja2's autoescaping only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.permissions import Permission, require
from console.security import SignedIn, client_ip
from console.web import redirect, render
from crm_store.enums import AuditAction
from crm_store.errors import ConflictError, InsufficientPoints, NotFound

router = APIRouter(prefix="/customers")

Viewer = Annotated[SignedIn, require(Permission.CUSTOMERS_VIEW)]
Linker = Annotated[SignedIn, require(Permission.CUSTOMERS_LINK)]
Adjuster = Annotated[SignedIn, require(Permission.LOYALTY_ADJUST)]
FormStr = Annotated[str, Form()]
CustomerId = Annotated[int, Path(ge=1, le=2**31 - 1)]

PAGE_SIZE = 25
LEDGER_STEP = 10  # ledger rows shown, then "more" adds as many again
TIMELINE_STEP = 50
MAX_SHOWN = 1000  # the most ledger or timeline rows one page asks for
MAX_ADJUSTMENT = 1_000_000
MAX_REASON = 300  # loyalty_transactions.reason is VARCHAR(300)
NOTICES = {"points-adjusted": "Points adjusted. The change is in the ledger below.",
           "merged": "Merged: everything of the merged records is on this customer now (see the timeline).",
           "erased": "Erased: this customer's personal data is gone from every table; the audit log records it."}
TICKET_OPEN = {"new", "open", "pending"}


def _count(value: str | None, step: int) -> int:
    """A "show more" count from the query string: a positive multiple of `step`, at most MAX_SHOWN."""
    try:
        wanted = int(value or step)
    except ValueError:
        wanted = step
    return max(step, min(MAX_SHOWN, wanted))


def _cursor(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 12 else None


def _not_found(request: Request) -> Response:
    return render(request, "error.html", status_code=404, title="Not found", message="There is no such customer.")


@router.get("")
async def search_customers(request: Request, console: ConsoleDep, _: Viewer, q: str = "",
                           before: str | None = None) -> Response:
    page = await console.crm.customers.search_page(query=q[:200], limit=PAGE_SIZE, before=_cursor(before))
    template = "customers/_results.html" if request.headers.get("hx-request") == "true" else "customers/list.html"
    return render(request, template, q=q[:200], page=page, first_page=before is None)


async def customer_page(request: Request, console: Console, customer_id: int, *, status_code: int = 200,
                        error: str | None = None, draft: dict[str, str] | None = None,
                        link: Any = None) -> Response:
    """The 360 page, optionally with a refused adjustment (`error`, `draft`) or a new link code (`link`)."""
    crm = console.crm
    ledger = _count(request.query_params.get("ledger"), LEDGER_STEP)
    timeline = _count(request.query_params.get("timeline"), TIMELINE_STEP)
    view = await crm.timeline.customer_360(customer_id=customer_id, timeline_limit=timeline + 1)
    history = await crm.loyalty.history(customer_id=customer_id, limit=ledger + 1)
    agents = {a.id: a.name for a in await crm.agents.list_agents()}
    return render(
        request, "customers/detail.html", status_code=status_code, c=view.customer, view=view,
        ledger=history[:ledger], ledger_more=len(history) > ledger, ledger_next=ledger + LEDGER_STEP,
        timeline=list(reversed(view.timeline))[:timeline], timeline_more=len(view.timeline) > timeline,
        timeline_next=timeline + TIMELINE_STEP, ledger_shown=ledger, timeline_shown=timeline,
        orders=await crm.orders.for_customer(customer_id=customer_id, limit=20),
        surveys=await crm.surveys.for_customer(customer_id=customer_id),
        courses=await crm.courses.progress(customer_id=customer_id),
        open_tickets=sum(t.status in TICKET_OPEN for t in view.tickets), agents=agents,
        error=error, notice=NOTICES.get(request.query_params.get("notice", "")), link=link,
        draft=draft or {"points": "", "reason": "", "key": uuid.uuid4().hex}, adjusting=draft is not None,
    )


@router.get("/{customer_id}")
async def show_customer(request: Request, console: ConsoleDep, signed: Viewer, customer_id: CustomerId) -> Response:
    try:
        page = await customer_page(request, console, customer_id)
    except NotFound:
        return _not_found(request)
    await console.crm.audit.record(action=AuditAction.CUSTOMER_VIEWED, agent_id=signed.agent.id,
                                   actor_label=signed.agent.email, subject_type="customer", subject_id=customer_id,
                                   ip=client_ip(request))
    return page


def _adjustment(points: str, reason: str) -> int:
    """The points of an adjustment form; ValueError with what to fix."""
    try:
        amount = int(points.strip().replace(",", "").replace(" ", ""))
    except ValueError:
        raise ValueError("Enter the points as a whole number, e.g. 50 to add or -50 to take away.") from None
    if amount == 0:
        raise ValueError("An adjustment of zero points changes nothing: enter a positive or negative number.")
    if abs(amount) > MAX_ADJUSTMENT:
        raise ValueError(f"An adjustment can move at most {MAX_ADJUSTMENT:,} points.")
    if not reason.strip():
        raise ValueError("Say why: the reason is kept in the customer's ledger.")
    if len(reason.strip()) > MAX_REASON:
        raise ValueError(f"Keep the reason under {MAX_REASON} characters.")
    return amount


@router.post("/{customer_id}/points")
async def adjust_points(request: Request, console: ConsoleDep, signed: Adjuster, customer_id: CustomerId,
                        points: FormStr = "", reason: FormStr = "", key: FormStr = "") -> Response:
    draft = {"points": points, "reason": reason, "key": key or uuid.uuid4().hex}
    try:
        await console.crm.customers.get(customer_id=customer_id)
        amount = _adjustment(points, reason)
        # The form's key makes a double-clicked submit post once.
        await console.crm.loyalty.adjust_points(
            customer_id=customer_id, points=amount, reason=reason.strip(), agent_id=signed.agent.id,
            idempotency_key=f"console-adjust:{customer_id}:{draft['key'][:64]}",
        )
    except NotFound:
        return _not_found(request)
    except InsufficientPoints:
        summary = await console.crm.loyalty.summary(customer_id=customer_id, recent=0)
        message = (f"The balance cannot go below zero: this customer has {summary.balance:,} points, "
                   f"so at most {summary.balance:,} can be taken away.")
        return await customer_page(request, console, customer_id, status_code=400, error=message, draft=draft)
    except ValueError as exc:
        return await customer_page(request, console, customer_id, status_code=400, error=str(exc), draft=draft)
    return redirect(f"/customers/{customer_id}?notice=points-adjusted#loyalty")


@router.post("/{customer_id}/link-token")
async def create_link_token(request: Request, console: ConsoleDep, signed: Linker, customer_id: CustomerId) -> Response:
    try:
        created = await console.crm.customers.create_link_token(customer_id=customer_id, agent_id=signed.agent.id)
    except NotFound:
        return _not_found(request)
    except ConflictError as exc:
        return await customer_page(request, console, customer_id, status_code=409, error=str(exc))
    # The code is on this response only (every console page is no-store); the store keeps its hash.
    return await customer_page(request, console, customer_id, status_code=201, link=created)
