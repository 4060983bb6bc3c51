"""Segments: saved groups of customers picked by rules (crm_store/segments.py), listed with their live member
count; a rule builder (rows of field / operator / value in "all of", "any of" and "none of" groups, or the rule as
JSON) whose preview shows how many customers match now and a sample of them, refreshed by HTMX as the rule changes.

Every page needs SEGMENTS_MANAGE (supervisors and admins). A rule the store refuses (InvalidSegment) is shown with
its message next to the form, which keeps what was typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.pages import flash_page, found, not_found
from console.permissions import Permission, require
from console.security import SignedIn
from console.segment_builder import (
    MATCHES,
    MAX_GROUP_DEPTH,
    SegmentForm,
    field_label,
    op_label,
)
from console.web import redirect, render
from crm_store.dto import CourseView, CustomerView, SegmentView
from crm_store.errors import ConflictError, DomainError, InvalidSegment, NotFound
from crm_store.segments import FIELDS

router = APIRouter(prefix="/segments")

Manager = Annotated[SignedIn, require(Permission.SEGMENTS_MANAGE)]
SegmentId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

SAMPLE = 10
NOTICES = {"created": "Segment saved.", "updated": "Changes saved.", "deleted": "Segment deleted."}


@dataclass(frozen=True)
class Preview:
    """What the rule selects now: the count and a few members with their tier, or why it cannot be evaluated."""

    count: int = 0
    sample: tuple[CustomerView, ...] = ()
    tiers: Mapping[int, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Choices:
    """What the builder's selects offer besides FIELDS: the loyalty tiers and the courses."""

    tiers: tuple[str, ...]
    courses: tuple[CourseView, ...]

    @property
    def course_keys(self) -> dict[int, str]:
        return {c.id: c.key for c in self.courses}


async def _choices(console: Console) -> Choices:
    tiers = await console.crm.loyalty.tiers()
    courses = await console.crm.courses.overview()
    return Choices(tuple(t.name for t in tiers), tuple(s.course for s in courses))


async def _preview(console: Console, form: SegmentForm) -> Preview:
    try:
        found_now = await console.crm.segments.preview(rules=form.rules(), sample=SAMPLE)
    except InvalidSegment as exc:
        return Preview(error=str(exc))
    tiers = await console.crm.loyalty.tier_names(customer_ids=[c.id for c in found_now.sample])
    return Preview(found_now.count, found_now.sample, tiers)


async def _builder_context(console: Console, form: SegmentForm, choices: Choices | None = None) -> dict[str, Any]:
    return {"form": form, "choices": choices or await _choices(console), "preview": await _preview(console, form),
            "oob": False, "fields": FIELDS, "field_label": field_label, "op_label": op_label, "matches": MATCHES,
            "max_depth": MAX_GROUP_DEPTH}


async def _form_page(request: Request, console: Console, form: SegmentForm, *, segment: SegmentView | None = None,
                     choices: Choices | None = None, status_code: int = 200, error: str | None = None) -> Response:
    return flash_page(request, "segments/form.html", notices=NOTICES, status_code=status_code, error=error,
                      segment=segment, **await _builder_context(console, form, choices))


async def _changed_page(request: Request, console: Console, form: SegmentForm, action: str, *,
                        segment: SegmentView | None = None) -> Response:
    """The page again after a builder button was pressed without HTMX (nothing is saved)."""
    choices = await _choices(console)
    return await _form_page(request, console, form.apply(action, choices.course_keys), segment=segment,
                            choices=choices)


async def _posted(request: Request) -> tuple[SegmentForm, str]:
    data = await request.form()
    action = data.get("action")
    return SegmentForm.posted(data), action if isinstance(action, str) else "save"


@router.get("")
async def list_segments(request: Request, console: ConsoleDep, _: Manager) -> Response:
    segments = await console.crm.segments.list()
    counts: dict[int, int | None] = {}
    for segment in segments:
        try:
            counts[segment.id] = await console.crm.segments.count(segment_id=segment.id)
        except DomainError:  # a rule saved before the rule language changed: shown, to be fixed
            counts[segment.id] = None
    return flash_page(request, "segments/list.html", notices=NOTICES, segments=segments, counts=counts)


@router.get("/new")
async def new_segment(request: Request, console: ConsoleDep, _: Manager) -> Response:
    return await _form_page(request, console, SegmentForm())


@router.post("/builder")
async def rebuild_builder(request: Request, console: ConsoleDep, _: Manager) -> Response:
    """The builder again after a structural change (a row or group added or removed, a field or operator
    changed, JSON mode switched), with its preview."""
    form, action = await _posted(request)
    choices = await _choices(console)
    context = await _builder_context(console, form.apply(action, choices.course_keys), choices)
    return render(request, "segments/_builder.html", **context)


@router.post("/preview")
async def preview(request: Request, console: ConsoleDep, _: Manager) -> Response:
    """The count and sample for the posted form (200 with the message when the rule is wrong: HTMX swaps it in)."""
    form, _action = await _posted(request)
    return render(request, "segments/_preview.html", form=form, preview=await _preview(console, form), oob=True)


@router.post("/new")
async def create_segment(request: Request, console: ConsoleDep, signed: Manager) -> Response:
    form, action = await _posted(request)
    if action != "save":
        return await _changed_page(request, console, form, action)
    try:
        segment = await console.crm.segments.create(name=form.name, description=form.description,
                                                    rules=form.rules(), agent_id=signed.agent.id)
    except DomainError as exc:  # InvalidSegment (the rule or the name), ConflictError (a taken name)
        return await _form_page(request, console, form, status_code=_refused(exc), error=str(exc))
    return redirect(f"/segments/{segment.id}?notice=created")


@router.get("/{segment_id}")
async def edit_segment(request: Request, console: ConsoleDep, _: Manager, segment_id: SegmentId) -> Response:
    if (segment := await found(console.crm.segments.get(segment_id=segment_id))) is None:
        return not_found(request, "segment")
    choices = await _choices(console)
    form = SegmentForm.of(segment.name, segment.description, segment.rules, choices.course_keys)
    return await _form_page(request, console, form, segment=segment, choices=choices)


@router.post("/{segment_id}")
async def update_segment(request: Request, console: ConsoleDep, _: Manager, segment_id: SegmentId) -> Response:
    if (segment := await found(console.crm.segments.get(segment_id=segment_id))) is None:
        return not_found(request, "segment")
    form, action = await _posted(request)
    if action != "save":
        return await _changed_page(request, console, form, action, segment=segment)
    try:
        await console.crm.segments.update(segment_id=segment_id, name=form.name, description=form.description,
                                          rules=form.rules())
    except NotFound:
        return not_found(request, "segment")
    except DomainError as exc:
        return await _form_page(request, console, form, segment=segment, status_code=_refused(exc), error=str(exc))
    return redirect(f"/segments/{segment_id}?notice=updated")


@router.post("/{segment_id}/delete")
async def delete_segment(request: Request, console: ConsoleDep, _: Manager, segment_id: SegmentId) -> Response:
    try:
        await console.crm.segments.delete(segment_id=segment_id)
    except NotFound:
        return not_found(request, "segment")
    return redirect("/segments?notice=deleted")


def _refused(exc: DomainError) -> int:
    return 409 if isinstance(exc, ConflictError) else 422
