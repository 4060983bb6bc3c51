"""Surveys: the list with each survey's totals, authoring (kind, title, expiry, questions with English and Chinese
prompts) and the results: CSAT by agent, team and ISO week, NPS with promoters, passives and detractors, and the
customers' comments, filtered by the days the invitations were sent and by campaign.

Every page needs SURVEYS_MANAGE (supervisors and admins)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.pages import flash_page, found, not_found
from console.permissions import Permission, require
from console.security import SignedIn
from console.web import redirect
from crm_store.dto import ScoreRow, SurveyView
from crm_store.enums import SurveyKind, SurveyQuestionKind
from crm_store.errors import DomainError, NotFound
from crm_store.services.surveys import CSAT_QUESTIONS, NPS_QUESTIONS

router = APIRouter(prefix="/surveys")

Manager = Annotated[SignedIn, require(Permission.SURVEYS_MANAGE)]
SurveyId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

COMMENTS_PAGE = 20
MAX_QUESTIONS = 20
BLANK_ROWS = 2
KINDS = {"csat": "CSAT — satisfaction, 1 to 5", "nps": "NPS — likelihood to recommend, 0 to 10"}
QUESTION_KINDS = {"rating": "Rating (buttons on a scale)", "choice": "Choice (one of the options)",
                  "text": "Text (typed in the chat)"}
TEMPLATES = {"csat": CSAT_QUESTIONS, "nps": NPS_QUESTIONS}
NOTICES = {"created": "Survey saved.", "updated": "Changes saved: invitations sent from now on use them."}


def _page(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    return flash_page(request, template, notices=NOTICES, status_code=status_code, **context)


def _not_found(request: Request) -> Response:
    return not_found(request, "survey")


async def _survey(console: Console, survey_id: int) -> SurveyView | None:
    return await found(console.crm.surveys.get(survey_id=survey_id))


@router.get("")
async def list_surveys(request: Request, console: ConsoleDep, _: Manager) -> Response:
    return _page(request, "surveys/list.html", summaries=await console.crm.surveys.overview())


# --- authoring --------------------------------------------------------------------------------------------------


@dataclass
class QuestionRow:
    """One question as the form holds it (every field as typed)."""

    id: str = ""
    kind: str = "rating"
    en: str = ""
    zh: str = ""
    optional: bool = False
    min: str = "1"
    max: str = "5"
    options: str = ""  # one per line

    @classmethod
    def of(cls, q: dict[str, Any]) -> QuestionRow:
        prompt = q.get("prompt") or {}
        return cls(q.get("id", ""), q.get("kind", "rating"), prompt.get("en", ""), prompt.get("zh", ""),
                   bool(q.get("optional")), str(q.get("min", "")), str(q.get("max", "")),
                   "\n".join(q.get("options") or ()))

    def blank(self) -> bool:
        return not (self.id.strip() or self.en.strip() or self.zh.strip())

    def question(self, n: int) -> dict[str, Any]:
        """The question for the store; a DomainError naming the row when a number does not parse."""
        prompt = {"en": self.en.strip()} | ({"zh": self.zh.strip()} if self.zh.strip() else {})
        q: dict[str, Any] = {"id": self.id.strip() or f"q{n}", "kind": self.kind, "prompt": prompt,
                             "optional": self.optional}
        if self.kind == SurveyQuestionKind.RATING:
            try:
                q["min"], q["max"] = int(self.min), int(self.max)
            except ValueError:
                raise DomainError(f"Question {n}: the scale's lowest and highest values are whole numbers.") from None
        elif self.kind == SurveyQuestionKind.CHOICE:
            q["options"] = [line.strip() for line in self.options.splitlines() if line.strip()]
        return q


@dataclass
class SurveyForm:
    key: str = ""
    kind: str = "csat"
    title: str = ""
    expires_after_hours: str = "72"
    active: bool = True
    rows: list[QuestionRow] = field(default_factory=list)

    @classmethod
    def of(cls, survey: SurveyView) -> SurveyForm:
        return cls(survey.key, survey.kind, survey.title, str(survey.expires_after_hours), survey.active,
                   [QuestionRow.of(q) for q in survey.questions])

    @classmethod
    async def posted(cls, request: Request) -> SurveyForm:
        data = await request.form()

        def text(name: str, default: str = "") -> str:
            value = data.get(name, default)
            return value if isinstance(value, str) else default

        rows = [QuestionRow(text(f"q{i}_id"), text(f"q{i}_kind", "rating"), text(f"q{i}_en"), text(f"q{i}_zh"),
                            text(f"q{i}_optional") == "yes", text(f"q{i}_min"), text(f"q{i}_max"),
                            text(f"q{i}_options"))
                for i in range(MAX_QUESTIONS) if f"q{i}_kind" in data]
        return cls(text("key").strip(), text("kind", "csat"), text("title"), text("expires_after_hours", "72"),
                   text("active") == "yes", rows)

    def definition(self) -> dict[str, Any]:
        """What the store takes: title, questions (blank rows left out), expiry and active."""
        questions = [row.question(n) for n, row in enumerate((r for r in self.rows if not r.blank()), start=1)]
        try:
            hours = int(self.expires_after_hours)
        except ValueError:
            raise DomainError("The expiry is a whole number of hours.") from None
        return {"title": self.title.strip(), "questions": questions, "expires_after_hours": hours,
                "active": self.active}

    def with_blank_rows(self, extra: int = BLANK_ROWS) -> SurveyForm:
        kept = [r for r in self.rows if not r.blank()]
        room = max(0, min(extra, MAX_QUESTIONS - len(kept)))
        scale = ("0", "10") if self.kind == SurveyKind.NPS else ("1", "5")
        self.rows = kept + [QuestionRow(kind="text", min=scale[0], max=scale[1]) for _ in range(room)]
        return self


def _form_page(request: Request, *, form: SurveyForm, survey: SurveyView | None = None, status_code: int = 200,
               error: str | None = None) -> Response:
    return _page(request, "surveys/form.html", status_code=status_code, form=form, survey=survey, error=error,
                 kinds=KINDS, question_kinds=QUESTION_KINDS, max_questions=MAX_QUESTIONS)


@router.get("/new")
async def new_survey(request: Request, _: Manager, kind: str = "csat") -> Response:
    kind = kind if kind in KINDS else "csat"
    form = SurveyForm(kind=kind, expires_after_hours="72" if kind == "csat" else "336",
                      rows=[QuestionRow.of(q) for q in TEMPLATES[kind]])
    return _form_page(request, form=form.with_blank_rows())


@router.post("/new")
async def create_survey(request: Request, console: ConsoleDep, _: Manager) -> Response:
    form = await SurveyForm.posted(request)
    if (await request.form()).get("action") == "more":
        return _form_page(request, form=form.with_blank_rows(BLANK_ROWS + 1))
    try:
        survey = await console.crm.surveys.create_survey(key=form.key, kind=form.kind, **form.definition())
    except DomainError as exc:  # InvalidSurvey, a taken key (ConflictError)
        return _form_page(request, form=form.with_blank_rows(), status_code=400, error=str(exc))
    return redirect(f"/surveys/{survey.id}/results?notice=created")


@router.get("/{survey_id}/edit")
async def edit_survey(request: Request, console: ConsoleDep, _: Manager, survey_id: SurveyId) -> Response:
    if (survey := await _survey(console, survey_id)) is None:
        return _not_found(request)
    return _form_page(request, form=SurveyForm.of(survey).with_blank_rows(), survey=survey)


@router.post("/{survey_id}/edit")
async def update_survey(request: Request, console: ConsoleDep, _: Manager, survey_id: SurveyId) -> Response:
    if (survey := await _survey(console, survey_id)) is None:
        return _not_found(request)
    form = await SurveyForm.posted(request)
    form.key, form.kind = survey.key, survey.kind  # neither changes once the survey exists
    if (await request.form()).get("action") == "more":
        return _form_page(request, form=form.with_blank_rows(BLANK_ROWS + 1), survey=survey)
    try:
        await console.crm.surveys.update_survey(survey_id=survey_id, **form.definition())
    except NotFound:
        return _not_found(request)
    except DomainError as exc:
        return _form_page(request, form=form.with_blank_rows(), survey=survey, status_code=400, error=str(exc))
    return redirect(f"/surveys/{survey_id}/results?notice=updated")


# --- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # 0–100: the width in percent of the chart
    text: str


def _bars(rows: tuple[ScoreRow, ...], kind: str) -> list[Bar]:
    """CSAT: % satisfied per row; NPS: the net score moved onto 0–100 (−100 → 0, +100 → 100)."""
    bars = []
    for row in rows:
        if row.score is None:
            continue
        if kind == "nps":
            bars.append(Bar(row.label, (row.score + 100) / 2, f"{row.score:+.0f}"))
        else:
            bars.append(Bar(row.label, row.score, f"{row.score:.0f}%"))
    return bars


def _day(value: str) -> date | None:
    """A filter's date (YYYY-MM-DD); ValueError when it is not one."""
    return date.fromisoformat(value) if value.strip() else None


@router.get("/{survey_id}/results")
async def survey_results(request: Request, console: ConsoleDep, _: Manager, survey_id: SurveyId, start: str = "",
                         end: str = "", campaign: str = "", page: int = 1) -> Response:
    if (survey := await _survey(console, survey_id)) is None:
        return _not_found(request)
    error, status_code = None, 200
    try:
        since, until = _day(start[:10]), _day(end[:10])
    except ValueError:
        since = until = None
        error, status_code = "Dates are written YYYY-MM-DD; showing every day.", 400
    if since and until and since > until:
        since, until = until, since
    page = max(1, min(page, 10_000))
    filters = {"start": since, "end": until, "campaign": campaign[:100] or None}
    report = await console.crm.surveys.report(survey_id=survey_id, **filters)
    comments = await console.crm.surveys.comments(survey_id=survey_id, **filters, limit=COMMENTS_PAGE,
                                                  offset=(page - 1) * COMMENTS_PAGE)
    query = {"start": since.isoformat() if since else "", "end": until.isoformat() if until else "",
             "campaign": campaign[:100]}
    return _page(request, "surveys/results.html", status_code=status_code, error=error, survey=survey,
                 report=report, comments=comments, page=page, more=page * COMMENTS_PAGE < comments.total,
                 query=query, week_bars=_bars(report.by_week, survey.kind),
                 agent_bars=_bars(report.by_agent, survey.kind), campaign_id=_campaign_id(campaign))


def _campaign_id(key: str) -> int | None:
    """The console campaign a campaign key names (`campaign-<id>`, crm_store.services.campaigns), if it does."""
    found = re.fullmatch(r"campaign-(\d{1,9})", key)
    return int(found[1]) if found else None
