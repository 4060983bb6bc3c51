"""The knowledge base's glossary in the console: domain terms and the words customers use for them, listed by
language, added, edited, deleted, imported from CSV (bad rows reported by line) and exported as CSV.

Whoever may edit KB articles (KB_EDIT) may edit the glossary. Each change bumps the knowledge base's revision and
publishes kb.changed, as an article change does: every running KB refreshes itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.permissions import Permission, require
from console.security import SignedIn
from console.web import redirect, render, with_security_headers
from crm_store.dto import GlossaryTermView
from crm_store.errors import ConflictError, NotFound
from crm_store.services.glossary import (
    CSV_COLUMNS,
    MAX_SYNONYMS,
    MAX_TERM,
    SEPARATOR,
    GlossaryFileError,
    GlossaryImportReport,
)
from crm_store.services.knowledge import LANGUAGES

router = APIRouter(prefix="/kb/glossary")

Editor = Annotated[SignedIn, require(Permission.KB_EDIT)]
FormStr = Annotated[str, Form()]
TermId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (中文)"}
NOTICES = {
    "added": "Term added: the bot reads its synonyms as the term from now on.",
    "updated": "Changes saved.",
    "deleted": "Term deleted.",
}


@dataclass
class TermForm:
    """What the term form holds, as typed: synonyms one per line (or separated by |)."""

    language: str = "zh"
    term: str = ""
    synonyms: str = ""

    @classmethod
    def of(cls, term: GlossaryTermView) -> TermForm:
        return cls(term.language, term.term, "\n".join(term.synonyms))

    def fields(self) -> dict[str, Any]:
        words = [w for line in self.synonyms.splitlines() for w in line.split(SEPARATOR)]
        return {"language": self.language, "term": self.term, "synonyms": [w for w in words if w.strip()]}


def _language(value: str) -> str:
    return value if value in LANGUAGES else ""


async def _list_page(request: Request, console: Console, *, language: str = "", status_code: int = 200,
                     error: str | None = None, form: TermForm | None = None,
                     report: GlossaryImportReport | None = None) -> Response:
    """The glossary page (or, for HTMX, just its table): terms of one language or all, the add and import forms."""
    terms = await console.crm.glossary.list_terms(language=language or None)
    counts = await console.crm.glossary.count()
    template = "kb/_glossary_list.html" if request.headers.get("hx-request") == "true" else "kb/glossary.html"
    return render(request, template, status_code=status_code, terms=terms, counts=counts, language=language,
                  languages=LANGUAGE_NAMES, form=form or TermForm(language=language or "zh"), report=report,
                  error=error, notice=NOTICES.get(request.query_params.get("notice", "")),
                  max_term=MAX_TERM, max_synonyms=MAX_SYNONYMS, columns=",".join(CSV_COLUMNS),
                  max_mb=MAX_UPLOAD_BYTES // (1024 * 1024))


@router.get("")
async def glossary(request: Request, console: ConsoleDep, _: Editor, language: str = "") -> Response:
    return await _list_page(request, console, language=_language(language))


@router.post("")
async def add_term(request: Request, console: ConsoleDep, signed: Editor, language: FormStr = "zh",
                   term: FormStr = "", synonyms: FormStr = "") -> Response:
    form = TermForm(language, term, synonyms)
    try:
        await console.crm.glossary.add_term(**form.fields(), agent_id=signed.agent.id)
    except (ValueError, ConflictError) as exc:
        return await _list_page(request, console, status_code=400, error=str(exc), form=form)
    return redirect(f"/kb/glossary?language={_language(language)}&notice=added")


@router.get("/export.csv")
async def export_glossary(console: ConsoleDep, _: Editor, language: str = "") -> Response:
    lang = _language(language)
    data = await console.crm.glossary.export_csv(language=lang or None)
    return with_security_headers(Response(data, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="kb-glossary{"-" + lang if lang else ""}.csv"'}))


@router.post("/import")
async def import_glossary(request: Request, console: ConsoleDep, signed: Editor,
                          file: Annotated[UploadFile | None, File()] = None) -> Response:
    data = await file.read(MAX_UPLOAD_BYTES + 1) if file is not None and file.filename else b""
    if not data:
        return await _list_page(request, console, status_code=400,
                                error=f"Choose a CSV file to import ({','.join(CSV_COLUMNS)}).")
    if len(data) > MAX_UPLOAD_BYTES:
        return await _list_page(request, console, status_code=400,
                                error=f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB; split it.")
    try:
        report = await console.crm.glossary.import_csv(data=data, agent_id=signed.agent.id)
    except GlossaryFileError as exc:
        return await _list_page(request, console, status_code=400, error=f"{file.filename}: {exc}")  # type: ignore[union-attr]
    except ConflictError as exc:
        return await _list_page(request, console, status_code=409, error=str(exc))
    return await _list_page(request, console, report=report)


# --- one term -----------------------------------------------------------------------------------------------------


def _not_found(request: Request) -> Response:
    return render(request, "error.html", status_code=404, title="Not found",
                  message="There is no such glossary term.")


def _form_page(request: Request, *, term: GlossaryTermView, form: TermForm, status_code: int = 200,
               error: str | None = None) -> Response:
    return render(request, "kb/glossary_form.html", status_code=status_code, term=term, form=form, error=error,
                  notice=None, languages=LANGUAGE_NAMES, max_term=MAX_TERM, max_synonyms=MAX_SYNONYMS)


@router.get("/{term_id}/edit")
async def edit_term(request: Request, console: ConsoleDep, _: Editor, term_id: TermId) -> Response:
    try:
        term = await console.crm.glossary.get(term_id=term_id)
    except NotFound:
        return _not_found(request)
    return _form_page(request, term=term, form=TermForm.of(term))


@router.post("/{term_id}/edit")
async def update_term(request: Request, console: ConsoleDep, signed: Editor, term_id: TermId,
                      language: FormStr = "zh", term: FormStr = "", synonyms: FormStr = "") -> Response:
    form = TermForm(language, term, synonyms)
    try:
        await console.crm.glossary.update_term(term_id=term_id, **form.fields(), agent_id=signed.agent.id)
    except NotFound:
        return _not_found(request)
    except (ValueError, ConflictError) as exc:
        try:
            stored = await console.crm.glossary.get(term_id=term_id)
        except NotFound:  # deleted meanwhile
            return _not_found(request)
        return _form_page(request, term=stored, form=form, status_code=400, error=str(exc))
    return redirect(f"/kb/glossary?language={_language(language)}&notice=updated")


@router.post("/{term_id}/delete")
async def delete_term(request: Request, console: ConsoleDep, signed: Editor, term_id: TermId,
                      language: FormStr = "") -> Response:
    try:
        await console.crm.glossary.delete_term(term_id=term_id, agent_id=signed.agent.id)
    except NotFound:
        return _not_found(request)
    return redirect(f"/kb/glossary?language={_language(language)}&notice=deleted")
