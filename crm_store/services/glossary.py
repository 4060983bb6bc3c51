"""The knowledge base's glossary: domain terms ("大红袍", "package") and the words customers use for them ("岩茶王",
"parcel"), per language, edited by admins in the console or with `kefu kb glossary import|export`.

The search keeps a term whole and reads each synonym as its term, so a word may be a term or the synonym of one
term, never both, never twice: words are compared after NFKC and case folding ("ＶＩＰ" is "vip"). Every change is
one transaction that also bumps the knowledge base's revision and writes an audit entry, and publishes
`KnowledgeBaseChanged` after commit, as article changes do: every process's index refreshes without a restart.
Glossary writers queue on the kb_state row (locked first), so two of them never let a word in twice.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import storable_text, utcnow
from crm_store.dto import GlossaryTermView
from crm_store.enums import Actor, AuditAction
from crm_store.errors import ConflictError, NotFound
from crm_store.events import KnowledgeBaseChanged
from crm_store.services.audit import audit_in
from crm_store.services.base import Service
from crm_store.services.knowledge import LANGUAGES, STATE_ID, bump_revision, guess_language
from crm_store.uow import UnitOfWork

MAX_TERM = 40  # characters, for a term and for each synonym (kb_glossary_terms.term is VARCHAR(40))
MAX_SYNONYMS = 30
MAX_IMPORT_ROWS = 20_000
SEPARATOR = "|"  # between synonyms in a CSV cell
CSV_COLUMNS = ("language", "term", "synonyms")
# What a spreadsheet runs as a formula when a cell starts with it: refused, so an export opens inert in Excel and
# still imports back exactly.
FORMULA_STARTS = ("=", "+", "-", "@")
MAX_AUDITED_TERMS = 50  # an import's audit entry names at most this many changed terms


class GlossaryFileError(ValueError):
    """A glossary file that cannot be read at all (not UTF-8, no header, no term column, too many rows)."""


@dataclass(frozen=True)
class GlossaryEntry:
    """A term and its synonyms, validated and tidied (whitespace collapsed, blanks and repeats dropped)."""

    language: str
    term: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class GlossaryRow:
    """One data row of a glossary file, as read: its physical line (the header is line 1) and its cells."""

    line: int
    language: str
    term: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class GlossaryRowError:
    line: int
    reason: str


@dataclass(frozen=True)
class GlossaryImportReport:
    read: int  # data rows in the file
    created: int
    updated: int
    unchanged: int
    errors: tuple[GlossaryRowError, ...]  # by line; those rows were not loaded
    revision: int  # the knowledge base's revision afterwards


def word_key(text: str) -> str:
    """How words are compared: "ＶＩＰ卡" and "vip卡" are the same word."""
    return unicodedata.normalize("NFKC", text).casefold()


def clean_entry(*, language: str, term: str, synonyms: Iterable[str] = ()) -> GlossaryEntry:
    """Validate a term and its synonyms; a ValueError's message says what is wrong, for the person who typed it."""
    lang = language.strip().lower() if isinstance(language, str) else language
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown language {language!r}: a glossary term is {' or '.join(LANGUAGES)}.")
    term = _word(term, "term")
    if isinstance(synonyms, str):
        raise ValueError("Synonyms are a list of words, not one text.")
    clean: list[str] = []
    seen = {word_key(term)}
    for synonym in synonyms:
        synonym = _word(synonym, "synonym", blank_ok=True)
        if not synonym:
            continue
        if SEPARATOR in synonym:
            raise ValueError(f"The synonym “{synonym}” holds “{SEPARATOR}”, which separates synonyms in files.")
        if word_key(synonym) == word_key(term):
            raise ValueError(f"“{synonym}” is the term itself: a synonym is another word for it.")
        if word_key(synonym) not in seen:
            seen.add(word_key(synonym))
            clean.append(synonym)
    if len(clean) > MAX_SYNONYMS:
        raise ValueError(f"“{term}” has {len(clean)} synonyms; the limit is {MAX_SYNONYMS}.")
    return GlossaryEntry(language=lang, term=term, synonyms=tuple(clean))


def _word(value: Any, what: str, *, blank_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"A {what} is a text, not {value!r}.")
    word = " ".join(value.split())  # trimmed, and no line breaks or runs of spaces inside
    if not word:
        if blank_ok:
            return ""
        raise ValueError(f"A glossary {what} cannot be empty.")
    if not storable_text(word) or any(unicodedata.category(c) == "Cc" for c in word):
        raise ValueError(f"The {what} “{word[:MAX_TERM]}” holds a control character, NUL or a broken surrogate.")
    if len(word) > MAX_TERM:
        raise ValueError(f"The {what} “{word[:MAX_TERM]}…” is {len(word)} characters long; the limit is {MAX_TERM}.")
    if word.startswith(FORMULA_STARTS):
        raise ValueError(f"The {what} “{word}” starts with “{word[0]}”, which spreadsheets read as a formula.")
    return word


# --- CSV ------------------------------------------------------------------------------------------------------------


def read_glossary_csv(data: bytes) -> tuple[list[GlossaryRow], list[GlossaryRowError]]:
    """The rows of a glossary CSV (header `language,term,synonyms`, synonyms separated by `|`, UTF-8 with or
    without a BOM) and the rows that cannot be read, by line; GlossaryFileError when the file as a whole is not one."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise GlossaryFileError(f"line {line}: not UTF-8 text (save the file as UTF-8)") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise GlossaryFileError(f"the file is empty: the first line must be the header {','.join(CSV_COLUMNS)}")
        names = [cell.strip().lower() for cell in header]
        if "term" not in names:
            raise GlossaryFileError(f"no “term” column: the first line must be the header {','.join(CSV_COLUMNS)}")
        position = {name: names.index(name) for name in CSV_COLUMNS if name in names}
        rows: list[GlossaryRow] = []
        errors: list[GlossaryRowError] = []
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
                raise GlossaryFileError(f"more than {MAX_IMPORT_ROWS:,} rows: split the file")
            if any(cell.strip() for cell in cells[len(names):]):
                errors.append(GlossaryRowError(line, f"more cells than the header has: separate synonyms with "
                                                     f"“{SEPARATOR}”, not commas (or quote the cell)"))
                continue
            cell = {name: cells[i] if i < len(cells) else "" for name, i in position.items()}
            rows.append(GlossaryRow(line=line, language=cell.get("language", ""), term=cell["term"],
                                    synonyms=tuple(cell.get("synonyms", "").split(SEPARATOR))))
    except csv.Error as exc:
        raise GlossaryFileError(f"line {reader.line_num}: {exc}") from None
    return rows, errors


def glossary_csv(terms: Iterable[GlossaryTermView]) -> bytes:
    """Terms as a glossary CSV that imports back unchanged: UTF-8 with a BOM (Excel then reads Chinese right)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for t in terms:
        writer.writerow((t.language, t.term, SEPARATOR.join(t.synonyms)))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# --- the service ----------------------------------------------------------------------------------------------------


class GlossaryService(Service):
    async def list_terms(self, *, language: str | None = None) -> list[GlossaryTermView]:
        """Terms by language, then alphabetically (the same order on every database)."""
        query = select(m.KbGlossaryTerm)
        if language is not None:
            query = query.where(m.KbGlossaryTerm.language == language)
        async with self.uow() as uow:
            rows = [GlossaryTermView.of(t) for t in await uow.session.scalars(query)]
        return sorted(rows, key=lambda t: (t.language, word_key(t.term), t.term))

    async def count(self) -> dict[str, int]:
        """How many terms each language has."""
        terms = await self.list_terms()
        return {lang: sum(1 for t in terms if t.language == lang) for lang in LANGUAGES}

    async def get(self, *, term_id: int) -> GlossaryTermView:
        async with self.uow() as uow:
            return GlossaryTermView.of(await _get(uow.session, term_id))

    async def add_term(
        self, *, language: str, term: str, synonyms: Sequence[str] = (), agent_id: int | None = None,
        actor_label: str = "",
    ) -> GlossaryTermView:
        """A new term; ConflictError when it, or one of its synonyms, is already in the glossary."""
        entry = clean_entry(language=language, term=term, synonyms=synonyms)
        async with self.uow() as uow:
            session = uow.session
            await _lock_glossary(session)
            others = await _stored(session, entry.language)
            if (same := others.get(word_key(entry.term))) is not None:
                raise ConflictError(f"“{same.term}” is already in the glossary ({entry.language}): edit it instead.")
            _check_words(entry, others.values())
            row = m.KbGlossaryTerm(language=entry.language, term=entry.term, synonyms=list(entry.synonyms),
                                   updated_by_agent_id=agent_id)
            session.add(row)
            await _flush(session)
            audit_in(session, action=AuditAction.GLOSSARY_TERM_ADDED, **_actor(agent_id, actor_label),
                     subject_type="glossary_term", subject_id=row.id, details=_described(entry))
            await _glossary_changed(uow)
            await uow.commit()
            return GlossaryTermView.of(row)

    async def update_term(
        self, *, term_id: int, language: str, term: str, synonyms: Sequence[str] = (), agent_id: int | None = None,
        actor_label: str = "",
    ) -> GlossaryTermView:
        """Change a term's language, spelling or synonyms (the synonyms given replace its old ones)."""
        entry = clean_entry(language=language, term=term, synonyms=synonyms)
        async with self.uow() as uow:
            session = uow.session
            await _lock_glossary(session)
            row = await _get(session, term_id)
            before = GlossaryEntry(row.language, row.term, tuple(row.synonyms or ()))
            if entry == before:
                return GlossaryTermView.of(row)
            others = {k: t for k, t in (await _stored(session, entry.language)).items() if t.id != row.id}
            if (same := others.get(word_key(entry.term))) is not None:
                raise ConflictError(f"“{same.term}” is already in the glossary ({entry.language}): edit that "
                                    "term instead.")
            _check_words(entry, others.values())
            _apply(row, entry, agent_id)
            await _flush(session)
            audit_in(session, action=AuditAction.GLOSSARY_TERM_CHANGED, **_actor(agent_id, actor_label),
                     subject_type="glossary_term", subject_id=row.id,
                     details={"from": _described(before), "to": _described(entry)})
            await _glossary_changed(uow)
            await uow.commit()
            return GlossaryTermView.of(row)

    async def delete_term(self, *, term_id: int, agent_id: int | None = None, actor_label: str = "") -> None:
        """Take a term (and its synonyms) out of the glossary."""
        async with self.uow() as uow:
            session = uow.session
            await _lock_glossary(session)
            row = await _get(session, term_id)
            audit_in(session, action=AuditAction.GLOSSARY_TERM_DELETED, **_actor(agent_id, actor_label),
                     subject_type="glossary_term", subject_id=row.id,
                     details=_described(GlossaryEntry(row.language, row.term, tuple(row.synonyms or ()))))
            await session.delete(row)
            await _glossary_changed(uow)
            await uow.commit()

    async def import_csv(self, *, data: bytes, agent_id: int | None = None, actor_label: str = "") -> \
            GlossaryImportReport:
        """Add or update the terms of a glossary CSV (matched by language and term); rows that cannot be loaded
        are reported by line and the rest load. Terms the file does not name stay; identical ones change nothing."""
        rows, unreadable = read_glossary_csv(data)
        errors = {e.line: e.reason for e in unreadable}
        candidates: list[tuple[int, GlossaryEntry]] = []
        first_line: dict[tuple[str, str], int] = {}
        for row in rows:
            try:
                language = row.language if row.language.strip() else guess_language(row.term)
                entry = clean_entry(language=language, term=row.term, synonyms=row.synonyms)
            except ValueError as exc:
                errors[row.line] = str(exc)
                continue
            key = (entry.language, word_key(entry.term))
            if key in first_line:
                errors[row.line] = f"“{entry.term}” ({entry.language}) is already on line {first_line[key]}."
                continue
            first_line[key] = row.line
            candidates.append((row.line, entry))
        async with self.uow() as uow:
            session = uow.session
            await _lock_glossary(session)
            stored = {(t.language, word_key(t.term)): t for t in await session.scalars(select(m.KbGlossaryTerm))}
            accepted = _without_conflicts(candidates, stored, errors)
            created = updated = 0
            changed: list[str] = []
            for _, entry in accepted:
                row_ = stored.get((entry.language, word_key(entry.term)))
                if row_ is None:
                    session.add(m.KbGlossaryTerm(language=entry.language, term=entry.term,
                                                 synonyms=list(entry.synonyms), updated_by_agent_id=agent_id))
                    created += 1
                elif GlossaryEntry(row_.language, row_.term, tuple(row_.synonyms or ())) != entry:
                    _apply(row_, entry, agent_id)
                    updated += 1
                else:
                    continue
                changed.append(f"{entry.language}:{entry.term}")
            if changed:
                await _flush(session)
                audit_in(session, action=AuditAction.GLOSSARY_IMPORTED, **_actor(agent_id, actor_label),
                         subject_type="glossary", details={
                             "created": created, "updated": updated, "rejected": len(errors),
                             "terms": changed[:MAX_AUDITED_TERMS]})
                revision = await _glossary_changed(uow)
            else:
                revision = await _revision(session)
            await uow.commit()
        return GlossaryImportReport(
            read=len(rows) + len(unreadable), created=created, updated=updated,
            unchanged=len(accepted) - created - updated,
            errors=tuple(GlossaryRowError(line, reason) for line, reason in sorted(errors.items())),
            revision=revision)

    async def export_csv(self, *, language: str | None = None) -> bytes:
        """The glossary (or one language of it) as a CSV file that `import_csv` takes back unchanged."""
        return glossary_csv(await self.list_terms(language=language))


# --- helpers ----------------------------------------------------------------------------------------------------


def _actor(agent_id: int | None, actor_label: str) -> dict[str, Any]:
    """The audit entry's actor: the agent who did it, or the system (the command line, with who ran it)."""
    return {"actor": Actor.AGENT if agent_id is not None else Actor.SYSTEM, "agent_id": agent_id,
            "actor_label": actor_label}


def _described(entry: GlossaryEntry) -> dict[str, Any]:
    return {"language": entry.language, "term": entry.term, "synonyms": list(entry.synonyms)}


def _apply(row: m.KbGlossaryTerm, entry: GlossaryEntry, agent_id: int | None) -> None:
    row.language, row.term, row.synonyms = entry.language, entry.term, list(entry.synonyms)
    row.updated_by_agent_id = agent_id
    row.updated_at = utcnow()


async def _lock_glossary(session: AsyncSession) -> None:
    """Queue behind any other glossary change (or KB revision bump) until commit: a word's owner is checked and
    written by one writer at a time. SQLite: BEGIN IMMEDIATE already holds the database's write lock."""
    if session.bind.dialect.name != "postgresql":
        return
    state = m.KbState.__table__
    await session.execute(pg_insert(state).values(id=STATE_ID, revision=0, updated_at=utcnow())
                          .on_conflict_do_nothing(index_elements=["id"]))
    await session.execute(select(state.c.id).where(state.c.id == STATE_ID).with_for_update())


async def _glossary_changed(uow: UnitOfWork) -> int:
    """Bump the knowledge base's revision and say so after commit: every index refreshes with the new glossary."""
    revision = await bump_revision(uow.session)
    uow.emit(KnowledgeBaseChanged(revision=revision, article_ids=[], action="glossary"))
    return revision


async def _revision(session: AsyncSession) -> int:
    value = await session.scalar(select(m.KbState.revision).where(m.KbState.id == STATE_ID))
    return int(value or 0)


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:  # the lock makes this unlikely; a term written around it (by hand, in SQL) still is
        raise ConflictError("Another change to the glossary came first; reload and try again.") from None


async def _get(session: AsyncSession, term_id: int) -> m.KbGlossaryTerm:
    row = await session.get(m.KbGlossaryTerm, term_id)
    if row is None:
        raise NotFound(f"No glossary term {term_id}.")
    return row


async def _stored(session: AsyncSession, language: str) -> dict[str, m.KbGlossaryTerm]:
    """A language's stored terms by their word key."""
    rows = await session.scalars(select(m.KbGlossaryTerm).where(m.KbGlossaryTerm.language == language))
    return {word_key(t.term): t for t in rows}


def _words(entry: GlossaryEntry) -> list[tuple[str, bool]]:
    """The words an entry claims: its term (True) and its synonyms (False)."""
    return [(entry.term, True), *((s, False) for s in entry.synonyms)]


def _taken(word: str, owner: GlossaryEntry | m.KbGlossaryTerm, as_term: bool) -> str:
    if as_term:
        return f"“{word}” is already a glossary term ({owner.language}): a word is a term or one term's synonym."
    return (f"“{word}” is already a synonym of “{owner.term}” ({owner.language}): a word is the synonym of one "
            "term only.")


def _check_words(entry: GlossaryEntry, others: Iterable[m.KbGlossaryTerm]) -> None:
    """ConflictError when a word of `entry` is another term, or another term's synonym (same language)."""
    owners: dict[str, tuple[m.KbGlossaryTerm, bool]] = {}
    for other in others:
        owners.setdefault(word_key(other.term), (other, True))
        for synonym in other.synonyms or ():
            owners.setdefault(word_key(synonym), (other, False))
    for word, _ in _words(entry):
        if (found := owners.get(word_key(word))) is not None:
            other, as_term = found
            raise ConflictError(_taken(word, other, as_term))


def _without_conflicts(
    candidates: list[tuple[int, GlossaryEntry]], stored: Mapping[tuple[str, str], m.KbGlossaryTerm],
    errors: dict[int, str],
) -> list[tuple[int, GlossaryEntry]]:
    """The file's entries that can load together: a word claimed twice stays with the stored term the file leaves
    as it is, else with the earlier line; the other row is rejected (into `errors`). A rejected row's stored term
    keeps its old synonyms, which may now clash with a later row: repeated until nothing clashes, so a re-import
    of the same file finds exactly the same rows acceptable."""
    accepted = list(candidates)
    while True:
        state: dict[tuple[str, str], tuple[GlossaryEntry, int | None]] = {
            key: (GlossaryEntry(t.language, t.term, tuple(t.synonyms or ())), None) for key, t in stored.items()}
        for line, entry in accepted:
            state[(entry.language, word_key(entry.term))] = (entry, line)
        claims: dict[tuple[str, str], list[tuple[tuple[str, str], bool]]] = defaultdict(list)
        for key, (entry, _) in state.items():
            for word, as_term in _words(entry):
                claims[(entry.language, word_key(word))].append((key, as_term))
        rejected: set[int] = set()
        for line, entry in accepted:
            own = (entry.language, word_key(entry.term))
            for word, _ in _words(entry):
                for key, as_term in claims[(entry.language, word_key(word))]:
                    other, other_line = state[key]
                    if key == own or other_line in rejected:
                        continue
                    if other_line is None or other_line < line:
                        errors[line] = _taken(word, other, as_term)
                        rejected.add(line)
                        break
                if line in rejected:
                    break
        if not rejected:
            return accepted
        accepted = [(line, entry) for line, entry in accepted if line not in rejected]
