"""Helpers for a section's pages: flash messages (a notice named by `?notice=` after a redirect, or an error shown
in the page), the 404 page, and looking a record up without a NotFound escaping."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from console.web import render
from crm_store.errors import NotFound

T = TypeVar("T")


def flash_page(request: Request, template: str, *, notices: Mapping[str, str], status_code: int = 200,
               **context: Any) -> Response:
    """`template` with the flash messages: `notice` (from `notices` by the query's `notice`) and `error`."""
    context.setdefault("notice", notices.get(request.query_params.get("notice", "")))
    context.setdefault("error", None)
    return render(request, template, status_code=status_code, **context)


def not_found(request: Request, what: str) -> Response:
    return render(request, "error.html", status_code=404, title="Not found", message=f"There is no such {what}.")


async def found(lookup: Awaitable[T]) -> T | None:
    """The record, or None when the store says NotFound."""
    try:
        return await lookup
    except NotFound:
        return None
