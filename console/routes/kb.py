"""The knowledge base: list and filter articles, write and edit them (English or Chinese), publish and unpublish,
import a file (CSV, JSON Lines, Markdown) with bad rows reported by line, and try a question against the live
search to see its ranking and its answer / suggest / no-answer decision.

Reading needs KB_READ (agents); every change needs KB_EDIT (supervisors and admins). Each change bumps the
knowledge base's revision and publishes kb.changed; a running KB refreshes itself."""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.markdown import to_safe_html
from console.permissions import Permission, require
from console.routes.dashboard import DEFAULT_PERIOD, PERIODS, read_filters
from console.security import SignedIn
from console.web import redirect, render
from crm_store.coltypes import utcnow
from crm_store.dto import ArticleInput, ArticleView, AskedQuestion
from crm_store.enums import ArticleStatus
from crm_store.errors import ConflictError, NotFound
from crm_store.services.knowledge import LANGUAGES, MAX_EXTERNAL_ID, clean_content
from crm_store.services.reports import MAX_ASKED_QUESTIONS
from knowledge_base.gaps import GapCluster
from knowledge_base.ingest import ACCEPTED_FORMATS, IngestFileError, read_articles
from knowledge_base.records import RowError

router = APIRouter(prefix="/kb")

Reader = Annotated[SignedIn, require(Permission.KB_READ)]
Editor = Annotated[SignedIn, require(Permission.KB_EDIT)]
FormStr = Annotated[str, Form()]
ArticleId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

PAGE_SIZE = 50
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_FILES = 200
MAX_LISTED_ERRORS = 100
IMPORT_BATCH = 500
MAX_GAP_TOPICS = 100  # shown on the gaps page, the most asked first
LINK_TEXT_MAX = 150  # characters of each phrasing carried in a "write an article" link (URLs have limits)
UPLOAD_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".md")
NOTICES = {
    "created": "Article saved.",
    "updated": "Changes saved.",
    "published": "Published: the bot can answer with it now.",
    "unpublished": "Unpublished: back to draft, out of the bot's answers.",
}
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (中文)"}
DECISIONS = {
    "answer": "The bot answers with the best article.",
    "suggest": "The bot is not sure: it offers the best articles as “did you mean”.",
    "no_answer": "Nothing fits well enough: the bot says it does not know and offers a human.",
}


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _page(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    """A KB page: every one shows the flash messages (a notice after a redirect, or an error)."""
    context.setdefault("notice", _notice(request))
    context.setdefault("error", None)
    return render(request, template, status_code=status_code, **context)


def _not_found(request: Request) -> Response:
    return render(request, "error.html", status_code=404, title="Not found",
                  message="There is no such knowledge-base article.")


def _choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("")
async def list_articles(request: Request, console: ConsoleDep, _: Reader, q: str = "", language: str = "",
                        status: str = "", page: int = 1) -> Response:
    page = max(1, min(page, 10_000))
    lang = _choice(language, LANGUAGES)
    state = _choice(status, tuple(s.value for s in ArticleStatus))
    rows = await console.crm.knowledge.list_articles(status=state, language=lang, query=q[:200] or None,
                                                     limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    counts = {s.value: await console.crm.knowledge.count(status=s) for s in ArticleStatus}
    return _page(request, "kb/list.html", articles=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page=page,
                 q=q[:200], language=lang or "", status=state or "", counts=counts, languages=LANGUAGE_NAMES,
                 statuses=[s.value for s in ArticleStatus])


# --- writing ----------------------------------------------------------------------------------------------------


@dataclass
class ArticleForm:
    """What the article form holds, as typed."""

    question: str = ""
    alt_questions: str = ""  # one per line
    answer: str = ""
    tags: str = ""  # comma-separated
    language: str = "en"

    @classmethod
    def of(cls, article: ArticleView) -> ArticleForm:
        return cls(article.question, "\n".join(article.alt_questions), article.answer, ", ".join(article.tags),
                   article.language)

    def content(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "language": self.language,
                "alt_questions": [line for line in self.alt_questions.splitlines() if line.strip()],
                "tags": [tag for tag in re.split(r"[,，]", self.tags) if tag.strip()]}


def _form_page(request: Request, *, form: ArticleForm, article: ArticleView | None = None, status_code: int = 200,
               error: str | None = None) -> Response:
    return _page(request, "kb/form.html", status_code=status_code, form=form, article=article, error=error,
                 languages=LANGUAGE_NAMES)


@router.get("/new")
async def new_article(request: Request, _: Editor, language: str = "en", question: str = "",
                      alt: Annotated[list[str] | None, Query()] = None) -> Response:
    """The empty form; `?question=` pre-fills the question and each `?alt=` an alternative phrasing (the
    dashboard's unanswered questions and the KB gaps link here)."""
    alternatives = "\n".join(" ".join(a.split())[:1000] for a in (alt or [])[:20] if a.strip())
    return _form_page(request, form=ArticleForm(question=question.strip()[:1000], alt_questions=alternatives,
                                                language=_choice(language, LANGUAGES) or "en"))


@router.post("/new")
async def create_article(request: Request, console: ConsoleDep, signed: Editor, question: FormStr = "",
                         alt_questions: FormStr = "", answer: FormStr = "", tags: FormStr = "",
                         language: FormStr = "en", action: FormStr = "draft") -> Response:
    form = ArticleForm(question, alt_questions, answer, tags, language)
    status = ArticleStatus.PUBLISHED if action == "publish" else ArticleStatus.DRAFT
    try:
        article = await console.crm.knowledge.create_article(**form.content(), status=status,
                                                              agent_id=signed.agent.id)
    except (ValueError, ConflictError) as exc:
        return _form_page(request, form=form, status_code=400, error=str(exc))
    return redirect(f"/kb/{article.id}?notice={'published' if status == ArticleStatus.PUBLISHED else 'created'}")


# --- trying a question (static paths before /{article_id}) --------------------------------------------------------


@router.get("/try")
async def try_question(request: Request, console: ConsoleDep, _: Reader, q: str = "") -> Response:
    question = q.strip()[:1000]
    result, best_html = None, None
    if console.kb is not None and question:
        await console.kb.refresh()  # one revision read: the search sees every change made so far
        result = await asyncio.to_thread(console.kb.search, question, k=5)
        if result.best is not None:
            best_html = to_safe_html(result.best.answer)
    template = "kb/_try_result.html" if request.headers.get("hx-request") == "true" else "kb/try.html"
    return _page(request, template, q=question, result=result, best_html=best_html, decisions=DECISIONS,
                 available=console.kb is not None)


# --- gaps: what the bot could not answer, by topic -----------------------------------------------------------------


def write_article_href(cluster: GapCluster) -> str:
    """The new-article form pre-filled from a topic: its central question, the other phrasings, its language."""
    params = [("language", cluster.language), ("question", cluster.label[:LINK_TEXT_MAX]),
              *(("alt", text[:LINK_TEXT_MAX]) for text in cluster.examples)]
    return f"/kb/new?{urlencode(params)}"


@router.get("/gaps")
async def gaps(request: Request, console: ConsoleDep, _: Editor, period: str = DEFAULT_PERIOD, start: str = "",
               end: str = "") -> Response:
    """The questions the bot could not answer in a range (the dashboard's rule), clustered into topics."""
    filters, error = read_filters(period, start[:10], end[:10], "", utcnow().date())
    questions: tuple[AskedQuestion, ...] = ()
    clusters: list[GapCluster] = []
    try:
        questions = await console.crm.reports.unanswered_questions(start=filters.start, end=filters.end)
    except ValueError as exc:  # a range that ends before it starts, or is too long
        error = str(exc)
    if console.kb is not None and questions:
        clusters = await asyncio.to_thread(console.kb.cluster_questions, questions)
    return _page(request, "kb/gaps.html", status_code=400 if error else 200, error=error, filters=filters,
                 periods=PERIODS, available=console.kb is not None, asked=len(questions),
                 capped=len(questions) >= MAX_ASKED_QUESTIONS, topics=len(clusters),
                 rows=[(c, write_article_href(c)) for c in clusters[:MAX_GAP_TOPICS]], languages=LANGUAGE_NAMES,
                 proposals=sum((await console.crm.phrasings.counts()).values()))


# --- importing --------------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


def _import_page(request: Request, status_code: int = 200, *, error: str | None = None,
                 report: ImportReport | None = None) -> Response:
    return _page(request, "kb/import.html", status_code=status_code, error=error, report=report,
                 max_mb=MAX_UPLOAD_BYTES // (1024 * 1024), formats=ACCEPTED_FORMATS, max_listed=MAX_LISTED_ERRORS)


@router.get("/import")
async def import_form(request: Request, _: Editor) -> Response:
    return _import_page(request)


@router.post("/import")
async def import_file(request: Request, console: ConsoleDep, signed: Editor,
                      file: Annotated[list[UploadFile] | None, File()] = None, draft: FormStr = "") -> Response:
    uploads = [f for f in file or [] if f.filename]
    try:
        with tempfile.TemporaryDirectory(prefix="kefu-kb-import-") as tmp:
            target = await _save_uploads(uploads, Path(tmp))
            parsed = await asyncio.to_thread(read_articles, target)
            report = ImportReport(read=parsed.total, errors=list(parsed.errors))
            inputs = _checked_inputs(parsed.drafts, report, as_draft=draft == "yes")
    except IngestFileError as exc:
        return _import_page(request, 400, error=str(exc))
    try:
        for start in range(0, len(inputs), IMPORT_BATCH):
            done = await console.crm.knowledge.upsert_articles(articles=inputs[start:start + IMPORT_BATCH],
                                                               agent_id=signed.agent.id)
            report.created += done.created
            report.updated += done.updated
            report.unchanged += done.unchanged
    except (ValueError, ConflictError) as exc:
        stored = report.created + report.updated
        return _import_page(request, 409, report=report,
                            error=f"{exc} Only the first {stored} changes were stored; run the import again.")
    report.errors.sort(key=lambda e: (e.source, e.line))
    return _import_page(request, report=report)


async def _save_uploads(uploads: list[UploadFile], folder: Path) -> Path:
    """The uploaded file(s) on disk, as `read_articles` takes them: one .csv/.jsonl file, or a folder of .md files;
    IngestFileError when the upload is missing, too big or of another kind."""
    if not uploads:
        raise IngestFileError(f"Choose a file to import: {ACCEPTED_FORMATS}.")
    if len(uploads) > MAX_UPLOAD_FILES:
        raise IngestFileError(f"At most {MAX_UPLOAD_FILES} files at once.")
    names = [_safe_name(u.filename or "") for u in uploads]
    suffixes = {Path(n).suffix.lower() for n in names}
    if not suffixes <= set(UPLOAD_SUFFIXES):
        raise IngestFileError(f"{', '.join(sorted(suffixes - set(UPLOAD_SUFFIXES)))}: unsupported import format; "
                              f"accepted: .csv, .jsonl (or .ndjson), or .md files")
    if suffixes != {".md"} and len(uploads) > 1:
        raise IngestFileError("Upload one .csv or .jsonl file at a time (several files only for Markdown).")
    markdown = suffixes == {".md"}
    where = folder / "articles" if markdown else folder
    where.mkdir(exist_ok=True)
    budget = MAX_UPLOAD_BYTES
    for position, (upload, name) in enumerate(zip(uploads, names, strict=True), 1):
        path = where / name
        if path.exists():  # two uploads of the same name: keep both
            path = where / f"{position}-{name}"
        with path.open("wb") as out:
            while chunk := await upload.read(64 * 1024):
                budget -= len(chunk)
                if budget < 0:
                    raise IngestFileError(f"The upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB; "
                                          "split it into smaller files.")
                out.write(chunk)
    return where if markdown else where / names[0]


def _safe_name(filename: str) -> str:
    """The upload's base name with only harmless characters (it becomes a path, and is shown with errors)."""
    base = re.sub(r"[^\w.\-]+", "_", Path(filename.replace("\\", "/")).name).strip("._") or "upload"
    return base[-100:]


def _checked_inputs(drafts: list[tuple[int, Any]], report: ImportReport, *, as_draft: bool) -> list[ArticleInput]:
    """The parsed drafts the store will take; the rest become row errors (by line), so one bad row never stops
    the batch."""
    inputs = []
    for line, d in drafts:
        try:
            clean_content(question=d.question, answer=d.answer, language=d.language or "en",
                          alt_questions=d.alt_questions, tags=d.tags)
            if d.external_id and len(d.external_id) > MAX_EXTERNAL_ID:
                raise ValueError(f"id is longer than {MAX_EXTERNAL_ID} characters")
        except ValueError as exc:
            report.errors.append(RowError(line=line, reason=str(exc)))
            continue
        inputs.append(ArticleInput(question=d.question, answer=d.answer, alt_questions=tuple(d.alt_questions),
                                   tags=tuple(d.tags), language=d.language or "en", external_id=d.external_id,
                                   status="draft" if as_draft else d.status))
    return inputs


# --- one article ------------------------------------------------------------------------------------------------


async def _article(console: Console, article_id: int) -> ArticleView | None:
    try:
        return await console.crm.knowledge.get(article_id=article_id)
    except NotFound:
        return None


@router.get("/{article_id}")
async def show_article(request: Request, console: ConsoleDep, _: Reader, article_id: ArticleId) -> Response:
    if (article := await _article(console, article_id)) is None:
        return _not_found(request)
    return _page(request, "kb/detail.html", article=article, answer_html=to_safe_html(article.answer),
                 languages=LANGUAGE_NAMES)


@router.get("/{article_id}/edit")
async def edit_article(request: Request, console: ConsoleDep, _: Editor, article_id: ArticleId) -> Response:
    if (article := await _article(console, article_id)) is None:
        return _not_found(request)
    return _form_page(request, form=ArticleForm.of(article), article=article)


@router.post("/{article_id}/edit")
async def update_article(request: Request, console: ConsoleDep, signed: Editor, article_id: ArticleId,
                         question: FormStr = "", alt_questions: FormStr = "", answer: FormStr = "",
                         tags: FormStr = "", language: FormStr = "en") -> Response:
    form = ArticleForm(question, alt_questions, answer, tags, language)
    if (article := await _article(console, article_id)) is None:
        return _not_found(request)
    try:
        await console.crm.knowledge.update_article(article_id=article_id, agent_id=signed.agent.id,
                                                   **form.content())
    except NotFound:
        return _not_found(request)
    except (ValueError, ConflictError) as exc:
        return _form_page(request, form=form, article=article, status_code=400, error=str(exc))
    return redirect(f"/kb/{article_id}?notice=updated")


async def _move(request: Request, console: Console, signed: SignedIn, article_id: int, publish: bool) -> Response:
    knowledge = console.crm.knowledge
    try:
        move = knowledge.publish if publish else knowledge.unpublish
        await move(article_id=article_id, agent_id=signed.agent.id)
    except NotFound:
        return _not_found(request)
    return redirect(f"/kb/{article_id}?notice={'published' if publish else 'unpublished'}")


@router.post("/{article_id}/publish")
async def publish_article(request: Request, console: ConsoleDep, signed: Editor, article_id: ArticleId) -> Response:
    return await _move(request, console, signed, article_id, publish=True)


@router.post("/{article_id}/unpublish")
async def unpublish_article(request: Request, console: ConsoleDep, signed: Editor, article_id: ArticleId) -> Response:
    return await _move(request, console, signed, article_id, publish=False)
