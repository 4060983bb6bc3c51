"""Duplicate customers: the groups the store finds (the same phone or e-mail however written, or the same name with
nothing that disagrees), compared side by side, and merging a group into the record an agent chooses, after a
confirmation that shows what moves. The merge is recorded with the agent on both customers' timelines.

Registered before `customers`, whose `/customers/{customer_id}` would otherwise take `/customers/duplicates`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.pages import not_found
from console.permissions import Permission, require
from console.security import SignedIn
from console.web import redirect, render
from crm_store.errors import ConflictError, NotFound

router = APIRouter(prefix="/customers/duplicates")

Merger = Annotated[SignedIn, require(Permission.CUSTOMERS_MERGE)]

PAGE_SIZE = 20
MAX_SOURCES = 20  # customers merged by one form
MAX_ID = 2**31 - 1


def _id(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_ID:
        raise ValueError("Choose the customer to keep and at least one to merge into it.")
    return int(value)


def _choice(target: str, sources: list[str] | None) -> tuple[int, list[int]]:
    """The customer to keep and those to merge into it, from a link or a form; ValueError saying what is wrong."""
    source_ids = [_id(s) for s in sources or []]
    if not source_ids:
        raise ValueError("Choose at least one customer to merge into the one you keep.")
    if len(source_ids) > MAX_SOURCES:
        raise ValueError(f"Merge at most {MAX_SOURCES} customers at a time.")
    return _id(target), source_ids


async def _groups_page(request: Request, console: Console, *, after: int | None = None, error: str | None = None,
                       status_code: int = 200) -> Response:
    page = await console.crm.customers.find_duplicates(limit=PAGE_SIZE, after=after)
    return render(request, "customers/duplicates.html", status_code=status_code, page=page,
                  first_page=after is None, error=error, notice=None)


@router.get("")
async def list_duplicates(request: Request, console: ConsoleDep, _: Merger, after: str | None = None) -> Response:
    cursor = int(after) if after and after.isdigit() and len(after) < 11 else None
    return await _groups_page(request, console, after=cursor)


@router.get("/merge")
async def confirm_merge(request: Request, console: ConsoleDep, _: Merger, target: str = "",
                        source: Annotated[list[str] | None, Query()] = None) -> Response:
    try:
        target_id, source_ids = _choice(target, source)
        preview = await console.crm.customers.merge_preview(target_id=target_id, source_ids=source_ids)
    except NotFound:
        return not_found(request, "customer")
    except ValueError as exc:
        return await _groups_page(request, console, error=str(exc), status_code=400)
    except ConflictError as exc:
        return await _groups_page(request, console, error=str(exc), status_code=409)
    return render(request, "customers/merge.html", preview=preview)


@router.post("/merge")
async def merge(request: Request, console: ConsoleDep, signed: Merger, target: Annotated[str, Form()] = "",
                source: Annotated[list[str] | None, Form()] = None) -> Response:
    try:
        target_id, source_ids = _choice(target, source)
        await console.crm.customers.merge_into(target_id=target_id, source_ids=source_ids, agent_id=signed.agent.id)
    except NotFound:
        return not_found(request, "customer")
    except ValueError as exc:
        return await _groups_page(request, console, error=str(exc), status_code=400)
    except ConflictError as exc:  # e.g. a form shown before someone else merged one of these customers
        return await _groups_page(request, console, error=f"Nothing was merged: {exc}", status_code=409)
    return redirect(f"/customers/{target_id}?notice=merged#timeline")
