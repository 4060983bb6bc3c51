"""Campaigns: an NPS or CSAT survey, a course invitation or a message sent to a saved segment's consenting customers
(crm_store/services/campaigns.py). The list shows each campaign's status and progress; the form makes a draft; the
campaign's page shows its summary and how many customers launching it will reach, then its live progress (HTMX
polls the fragment every 2 s while anything can still change) and, for a survey, the results as answers arrive.

Every page needs CAMPAIGNS_MANAGE (supervisors and admins). A refused form (InvalidCampaign, ConflictError, a
segment the store cannot evaluate) is shown with its message next to the form, which keeps what was typed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.pages import flash_page, found, not_found
from console.permissions import Permission, require
from console.security import SignedIn
from console.web import redirect, render
from crm_store.coltypes import utcnow
from crm_store.dto import CampaignProgress, CampaignView, CourseView, ScoreRow, SegmentView, SurveyView
from crm_store.enums import CampaignKind, CampaignStatus
from crm_store.errors import ConflictError, DomainError, NotFound
from crm_store.services.campaigns import CHANNELS, MAX_PER_SECOND, InvalidCampaign

router = APIRouter(prefix="/campaigns")

Manager = Annotated[SignedIn, require(Permission.CAMPAIGNS_MANAGE)]
CampaignId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

LISTED = 50
KINDS = {"nps": "NPS survey", "csat": "CSAT survey", "course": "Course invitation", "message": "Message"}
CHANNEL_LABELS = {"telegram": "Telegram", "webchat": "Web chat"}
VARIABLES = ("{customer.name}", "{customer.first_name}")
TIMEZONES = ("UTC", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Europe/London",
             "America/New_York")
NOTICES = {"created": "Draft saved: check it, then launch it.", "launched": "Launched: the worker sends it now.",
           "paused": "Paused: nothing more is sent until you resume.", "resumed": "Resumed.",
           "cancelled": "Cancelled: nothing more is sent."}
WEB_LINGER = timedelta(hours=1)  # a message campaign's page follows deliveries this long after its launch


@dataclass
class CampaignForm:
    """The form as typed (every field a string, so a refused form comes back as it was)."""

    name: str = ""
    kind: str = CampaignKind.NPS.value
    segment_id: str = ""
    nps_survey: str = "nps"
    csat_survey: str = "csat"
    course_id: str = ""
    message_en: str = ""
    message_zh: str = ""
    channels: tuple[str, ...] = CHANNELS
    quiet_start: str = ""
    quiet_end: str = ""
    timezone: str = "UTC"
    per_second: str = "20"

    @classmethod
    def posted(cls, data: Any) -> CampaignForm:
        """The form from the request's form data (a starlette FormData)."""

        def text(name: str, default: str = "") -> str:
            value = data.get(name, default)
            return value if isinstance(value, str) else default

        channels = tuple(c for c in data.getlist("channels") if isinstance(c, str))
        return cls(text("name"), text("kind"), text("segment_id"), text("nps_survey"), text("csat_survey"),
                   text("course_id"), text("message_en"), text("message_zh"), channels, text("quiet_start"),
                   text("quiet_end"), text("timezone", "UTC").strip() or "UTC", text("per_second", "20"))

    def arguments(self) -> dict[str, Any]:
        """What `crm.campaigns.create` takes; InvalidCampaign where a choice or number does not parse."""
        segment_id = _whole(self.segment_id, "Choose a saved segment (make one under Segments).")
        per_second = _whole(self.per_second, f"The rate is a whole number of messages a second, 1 to "
                                             f"{MAX_PER_SECOND}.")
        quiet = "Quiet hours are two different hours from 0 to 23 (from, until), or none."
        start = _whole(self.quiet_start, quiet) if self.quiet_start.strip() else None
        end = _whole(self.quiet_end, quiet) if self.quiet_end.strip() else None
        arguments: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "segment_id": segment_id, "channels": self.channels,
            "quiet_start": start, "quiet_end": end, "timezone": self.timezone, "per_second": per_second,
            "message": {"en": self.message_en, "zh": self.message_zh},
        }
        if self.kind in (CampaignKind.NPS, CampaignKind.CSAT):
            arguments["survey_key"] = self.nps_survey if self.kind == CampaignKind.NPS else self.csat_survey
        if self.kind == CampaignKind.COURSE:
            arguments["course_id"] = _whole(self.course_id, "Choose a published course to invite the customers to.")
        return arguments


def _whole(text: str, refusal: str) -> int:
    """A whole number as typed (within a database integer), else InvalidCampaign(refusal)."""
    text = text.strip()
    if not (text.isdecimal() and len(text) <= 10 and int(text) < 2**31):
        raise InvalidCampaign(refusal)
    return int(text)


@dataclass(frozen=True)
class Audience:
    """A saved segment's members now, and those of them who consented to marketing (None: not evaluated)."""

    members: int | None = None
    consenting: int | None = None
    error: str | None = None


async def _audience(console: Console, segment_id: int | None) -> Audience:
    if segment_id is None:
        return Audience()
    try:
        segment = await console.crm.segments.get(segment_id=segment_id)
        members = await console.crm.segments.count(segment_id=segment_id)
        consenting = await console.crm.segments.count(
            rules={"all": [segment.rules, {"field": "consent", "op": "is", "value": True}]})
    except DomainError as exc:  # deleted, or a rule saved before the rule language changed
        return Audience(error=str(exc))
    return Audience(members, consenting)


def _segment_choice(text: str) -> int | None:
    try:
        return _whole(text, "") or None
    except InvalidCampaign:
        return None


@dataclass(frozen=True)
class Choices:
    """What the form's selects offer: saved segments, active surveys by kind, published courses."""

    segments: tuple[SegmentView, ...]
    surveys: dict[str, tuple[SurveyView, ...]] = field(default_factory=dict)
    courses: tuple[CourseView, ...] = ()


async def _choices(console: Console) -> Choices:
    surveys = [s.survey for s in await console.crm.surveys.overview() if s.survey.active]
    return Choices(tuple(await console.crm.segments.list()),
                   {kind: tuple(s for s in surveys if s.kind == kind) for kind in ("nps", "csat")},
                   tuple(await console.crm.courses.catalogue()))


async def _form_page(request: Request, console: Console, form: CampaignForm, *, status_code: int = 200,
                     error: str | None = None) -> Response:
    return flash_page(request, "campaigns/form.html", notices=NOTICES, status_code=status_code, error=error,
                      form=form, choices=await _choices(console), kinds=KINDS, channel_labels=CHANNEL_LABELS,
                      variables=VARIABLES, timezones=TIMEZONES, max_per_second=MAX_PER_SECOND,
                      audience=await _audience(console, _segment_choice(form.segment_id)))


# --- progress and results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """What the campaign's live fragment shows."""

    progress: CampaignProgress
    consenting: int  # the segment's members (its rules as launched) who consented to marketing, now
    survey: SurveyView | None
    results: ScoreRow | None
    polling: bool  # whether the page asks again in 2 s

    @property
    def campaign(self) -> CampaignView:
        return self.progress.campaign

    @property
    def handled_percent(self) -> float:
        if self.campaign.status == CampaignStatus.FINISHED:
            return 100.0
        return min(100.0, 100.0 * self.progress.recipients / self.consenting) if self.consenting else 0.0


def _polling(progress: CampaignProgress, survey: SurveyView | None) -> bool:
    """Running; or launched lately and still waiting for deliveries or (a survey, while it is open) answers."""
    campaign = progress.campaign
    if campaign.status == CampaignStatus.RUNNING:
        return True
    if campaign.launched_at is None:
        return False
    delivering = progress.sent + progress.failed < progress.queued
    answering = survey is not None and progress.answered < progress.queued
    window = timedelta(hours=survey.expires_after_hours) if survey is not None else WEB_LINGER
    return (delivering or answering) and utcnow() - campaign.launched_at < window


async def _survey(console: Console, campaign: CampaignView) -> SurveyView | None:
    return await found(console.crm.surveys.get(survey_id=campaign.survey_id)) if campaign.survey_id else None


async def _live(console: Console, campaign: CampaignView) -> Live:
    """A launched campaign's progress (the rules it took at launch) and a survey's results."""
    progress = await console.crm.campaigns.progress(campaign_id=campaign.id)
    _, consenting = await console.crm.campaigns.audience(campaign_id=campaign.id)
    survey = await _survey(console, campaign)
    results = await console.crm.surveys.results(survey_id=survey.id, campaign=campaign.key) if survey else None
    return Live(progress, consenting, survey, results, _polling(progress, survey))


async def _draft_audience(console: Console, campaign: CampaignView) -> Audience:
    if campaign.segment_id is None and not campaign.rules:  # the key is set to NULL when the segment is deleted
        return Audience(error="The campaign's segment was deleted: make the campaign again with another.")
    try:
        return Audience(*await console.crm.campaigns.audience(campaign_id=campaign.id))
    except DomainError as exc:  # its segment's rule cannot be evaluated (saved before the rule language changed)
        return Audience(error=str(exc))


async def _page(request: Request, console: Console, campaign_id: int, *, status_code: int = 200,
                error: str | None = None) -> Response:
    if (campaign := await found(console.crm.campaigns.get(campaign_id=campaign_id))) is None:
        return not_found(request, "campaign")
    launched = campaign.launched_at is not None
    segment = await found(console.crm.segments.get(segment_id=campaign.segment_id)) if campaign.segment_id else None
    course = await found(console.crm.courses.get_course(course_id=campaign.course_id)) if campaign.course_id else None
    return flash_page(
        request, "campaigns/page.html", notices=NOTICES, status_code=status_code, error=error, campaign=campaign,
        live=await _live(console, campaign) if launched else None, survey=await _survey(console, campaign),
        audience=await _draft_audience(console, campaign) if campaign.status == CampaignStatus.DRAFT else None,
        segment=segment, course=course, kinds=KINDS, channel_labels=CHANNEL_LABELS)


# --- routes -----------------------------------------------------------------------------------------------------


@router.get("")
async def list_campaigns(request: Request, console: ConsoleDep, _: Manager) -> Response:
    campaigns = (await console.crm.campaigns.list())[:LISTED]
    rows = [(c, await _live(console, c) if c.launched_at is not None else None) for c in campaigns]
    segments = {s.id: s.name for s in await console.crm.segments.list()}
    return flash_page(request, "campaigns/list.html", notices=NOTICES, rows=rows, segments=segments, kinds=KINDS,
                      listed=LISTED)


@router.get("/new")
async def new_campaign(request: Request, console: ConsoleDep, _: Manager, segment_id: str = "") -> Response:
    return await _form_page(request, console, CampaignForm(segment_id=segment_id[:12]))


@router.get("/audience")
async def audience(request: Request, console: ConsoleDep, _: Manager, segment_id: str = "") -> Response:
    """The chosen segment's member and consenting counts (the form's select asks for them when it changes)."""
    return render(request, "campaigns/_audience.html",
                  audience=await _audience(console, _segment_choice(segment_id[:12])))


@router.post("/new")
async def create_campaign(request: Request, console: ConsoleDep, signed: Manager) -> Response:
    form = CampaignForm.posted(await request.form())
    try:
        campaign = await console.crm.campaigns.create(**form.arguments(), agent_id=signed.agent.id)
    except DomainError as exc:  # InvalidCampaign, ConflictError (a taken name), NotFound (a deleted segment)
        return await _form_page(request, console, form, status_code=_refused(exc), error=str(exc))
    return redirect(f"/campaigns/{campaign.id}?notice=created")


@router.get("/{campaign_id}")
async def show_campaign(request: Request, console: ConsoleDep, _: Manager, campaign_id: CampaignId) -> Response:
    return await _page(request, console, campaign_id)


@router.get("/{campaign_id}/progress")
async def campaign_progress(request: Request, console: ConsoleDep, _: Manager, campaign_id: CampaignId) -> Response:
    """The live fragment of a launched campaign: progress, and a survey's results."""
    campaign = await found(console.crm.campaigns.get(campaign_id=campaign_id))
    if campaign is None or campaign.launched_at is None:
        return not_found(request, "launched campaign")
    return render(request, "campaigns/_live.html", live=await _live(console, campaign))


async def _act(request: Request, console: Console, campaign_id: int,
               action: Callable[..., Awaitable[CampaignView]], notice: str) -> Response:
    try:
        await action(campaign_id=campaign_id)
    except NotFound:
        return not_found(request, "campaign")
    except DomainError as exc:  # ConflictError (not in a state to do it), InvalidCampaign (its segment went)
        return await _page(request, console, campaign_id, status_code=_refused(exc), error=str(exc))
    return redirect(f"/campaigns/{campaign_id}?notice={notice}")


@router.post("/{campaign_id}/launch")
async def launch_campaign(request: Request, console: ConsoleDep, _: Manager, campaign_id: CampaignId) -> Response:
    return await _act(request, console, campaign_id, console.crm.campaigns.launch, "launched")


@router.post("/{campaign_id}/pause")
async def pause_campaign(request: Request, console: ConsoleDep, _: Manager, campaign_id: CampaignId) -> Response:
    return await _act(request, console, campaign_id, console.crm.campaigns.pause, "paused")


@router.post("/{campaign_id}/resume")
async def resume_campaign(request: Request, console: ConsoleDep, _: Manager, campaign_id: CampaignId) -> Response:
    return await _act(request, console, campaign_id, console.crm.campaigns.resume, "resumed")


@router.post("/{campaign_id}/cancel")
async def cancel_campaign(request: Request, console: ConsoleDep, _: Manager, campaign_id: CampaignId) -> Response:
    return await _act(request, console, campaign_id, console.crm.campaigns.cancel, "cancelled")


def _refused(exc: DomainError) -> int:
    return 409 if isinstance(exc, ConflictError) else 422

