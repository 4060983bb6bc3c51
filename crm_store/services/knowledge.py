"""Knowledge-base articles: authoring, publishing, the import path, the revision stamp and cached vectors.

Every change that affects search (a published article created, edited, published, unpublished or archived, an
import that changed something) bumps the knowledge base's revision in the same transaction, and publishes
`KnowledgeBaseChanged` with the new revision after commit: a process whose index was built at an older
revision knows it is stale. The bump is one `UPDATE kb_state SET revision = revision + 1 ... RETURNING`, whose
row lock makes concurrent writers queue, so no bump is ever lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import ArticleInput, ArticleVectors, ArticleView, GlossaryTermView, UpsertReport
from crm_store.enums import ArticleStatus
from crm_store.errors import ConflictError, NotFound
from crm_store.events import KnowledgeBaseChanged
from crm_store.services.base import Service
from crm_store.services.ledger import chunks
from crm_store.uow import UnitOfWork

LANGUAGES = ("en", "zh")
MAX_QUESTION = 1_000  # characters, for the question and each alternative question
MAX_ANSWER = 20_000
MAX_EXTERNAL_ID = 200  # kb_articles.external_id is VARCHAR(200)
STATE_ID = 1  # kb_state's only row
# What the index reads: a change of any of these makes a new version (and new vectors).
CONTENT_FIELDS = ("question", "alt_questions", "answer", "language", "tags")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class ArticleContent:
    """An article's indexed fields, validated and tidied (stripped, blanks and duplicates dropped)."""

    question: str
    alt_questions: list[str]
    answer: str
    language: str
    tags: list[str]


def clean_content(
    *, question: str, answer: str, language: str, alt_questions: Iterable[str] = (), tags: Iterable[str] = ()
) -> ArticleContent:
    """Validate an article's content; a ValueError's message says what is wrong, for the person who wrote it."""
    question = _text(question, "question", MAX_QUESTION)
    answer = _text(answer, "answer", MAX_ANSWER)
    lang = language.strip().lower() if isinstance(language, str) else language
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown language {language!r}: an article is in {' or '.join(LANGUAGES)}.")
    alts: list[str] = []
    for alt in _strings(alt_questions, "alt_questions"):
        if len(alt) > MAX_QUESTION:
            raise ValueError(f"An alternative question is {len(alt):,} characters long; the limit is {MAX_QUESTION:,}.")
        if alt and alt != question and alt not in alts:
            alts.append(alt)
    clean_tags: list[str] = []
    for tag in _strings(tags, "tags"):
        if tag and tag not in clean_tags:
            clean_tags.append(tag)
    return ArticleContent(question=question, alt_questions=alts, answer=answer, language=lang, tags=clean_tags)


def guess_language(text: str) -> str:
    """"zh" when the text has Chinese characters, else "en" (for imports that did not say)."""
    return "zh" if _HAN.search(text) else "en"


async def bump_revision(session: AsyncSession) -> int:
    """Advance the knowledge base's revision inside the caller's transaction and return the new one."""
    state = m.KbState.__table__
    bump = (
        update(state)
        .where(state.c.id == STATE_ID)
        .values(revision=state.c.revision + 1, updated_at=utcnow())
        .returning(state.c.revision)
    )
    revision = (await session.execute(bump)).scalar_one_or_none()
    if revision is None:  # the first change ever: make the row (another writer may be making it too)
        dialect_insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        await session.execute(
            dialect_insert(state)
            .values(id=STATE_ID, revision=0, updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["id"])
        )
        revision = (await session.execute(bump)).scalar_one()
    return int(revision)


async def update_article_in(
    uow: UnitOfWork, *, article_id: int, agent_id: int | None = None, **changes: Any
) -> m.KbArticle:
    """`KnowledgeService.update_article` inside the caller's transaction (another use case that edits an article,
    such as accepting a proposed phrasing): the new version, the revision bump and kb.changed come with its commit."""
    if unknown := set(changes) - set(CONTENT_FIELDS):
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    article = await _get_article(uow.session, article_id, for_update=True)
    content = clean_content(**{**_content_fields(article), **changes})
    if _apply_content(article, content):
        article.updated_by_agent_id = agent_id
        if article.status == ArticleStatus.PUBLISHED:
            await _search_changed(uow, [article.id], "updated")
    return article


class KnowledgeService(Service):
    async def create_article(
        self, *, question: str, answer: str, language: str, alt_questions: Sequence[str] = (),
        tags: Sequence[str] = (), status: ArticleStatus | str = ArticleStatus.DRAFT, external_id: str | None = None,
        agent_id: int | None = None,
    ) -> ArticleView:
        """A new article; a published one is searchable at once (the revision moves)."""
        content = clean_content(
            question=question, answer=answer, language=language, alt_questions=alt_questions, tags=tags
        )
        status = _status(status)
        external_id = _external_id(external_id)
        async with self.uow() as uow:
            session = uow.session
            if external_id is not None and await _by_external_ids(session, [external_id]):
                raise ConflictError(f"An article with external id {external_id!r} already exists.")
            article = _new_article(content, status=status, external_id=external_id, agent_id=agent_id)
            try:
                async with session.begin_nested():
                    session.add(article)
                    await session.flush()
            except IntegrityError:
                if external_id is not None and await _by_external_ids(session, [external_id]):
                    raise ConflictError(f"An article with external id {external_id!r} already exists.") from None
                raise
            if status == ArticleStatus.PUBLISHED:
                await _search_changed(uow, [article.id], "created")
            await uow.commit()
            return ArticleView.of(article)

    async def update_article(self, *, article_id: int, agent_id: int | None = None, **changes: Any) -> ArticleView:
        """Change an article's question, alternative questions, answer, tags or language; a real change makes
        a new version."""
        async with self.uow() as uow:
            article = await update_article_in(uow, article_id=article_id, agent_id=agent_id, **changes)
            await uow.commit()
            return ArticleView.of(article)

    async def publish(self, *, article_id: int, agent_id: int | None = None) -> ArticleView:
        """Make an article (draft or archived) searchable."""
        return await self._move(article_id=article_id, to=ArticleStatus.PUBLISHED, agent_id=agent_id,
                                action="published")

    async def unpublish(self, *, article_id: int, agent_id: int | None = None) -> ArticleView:
        """Take an article back to draft (out of search)."""
        return await self._move(article_id=article_id, to=ArticleStatus.DRAFT, agent_id=agent_id,
                                action="unpublished")

    async def archive(self, *, article_id: int, agent_id: int | None = None) -> ArticleView:
        """Retire an article (out of search, kept for history and for re-imports by external id)."""
        return await self._move(article_id=article_id, to=ArticleStatus.ARCHIVED, agent_id=agent_id,
                                action="archived")

    async def _move(self, *, article_id: int, to: ArticleStatus, agent_id: int | None, action: str) -> ArticleView:
        async with self.uow() as uow:
            article = await _get_article(uow.session, article_id, for_update=True)
            before = article.status
            if before != to:  # moving to the status it has is a no-op
                _set_status(article, to)
                article.updated_by_agent_id = agent_id
                if ArticleStatus.PUBLISHED in (before, to):
                    await _search_changed(uow, [article.id], action)
            await uow.commit()
            return ArticleView.of(article)

    async def upsert_articles(self, *, articles: Sequence[ArticleInput], agent_id: int | None = None) -> UpsertReport:
        """Import a batch: each article updates the one with its external id, else the one with the same
        language and question, else is created. Identical articles change nothing (not even the revision)."""
        rows = [_clean_input(a, position) for position, a in enumerate(articles, 1)]
        async with self.uow() as uow:
            session = uow.session
            by_external = await _by_external_ids(session, {r.external_id for r in rows if r.external_id})
            by_question = await _by_questions(session, {
                (r.content.language, r.content.question) for r in rows
                if r.external_id is None or r.external_id not in by_external
            })
            await _lock(session, [*by_external.values(), *by_question.values()])
            created: dict[m.KbArticle, None] = {}  # ordered sets
            changed: dict[m.KbArticle, None] = {}
            updated = unchanged = 0  # rows, so that created + updated + unchanged == len(articles)
            for row in rows:
                article = by_external.get(row.external_id) if row.external_id else None
                if article is None:
                    same = by_question.get((row.content.language, row.content.question))
                    # An article known by another external id is another article, even with the same question.
                    if same is not None and (row.external_id is None or same.external_id is None):
                        article = same
                if article is None:
                    article = _new_article(row.content, status=row.status, external_id=row.external_id,
                                           agent_id=agent_id)
                    session.add(article)
                    created[article] = None
                else:
                    touched = _apply_content(article, row.content)
                    if touched and article in created:
                        article.version = 1  # a repeat within the batch: still the first version
                    if row.external_id is not None and article.external_id != row.external_id:
                        article.external_id = row.external_id  # adopted: the next import finds it by id
                        touched = True
                    if article.status != row.status:
                        _set_status(article, row.status)
                        touched = True
                    if not touched:
                        unchanged += 1
                        continue
                    article.updated_by_agent_id = agent_id
                    updated += 1
                    if article not in created:
                        changed[article] = None
                if article.external_id:
                    by_external[article.external_id] = article
                by_question.setdefault((article.language, article.question), article)
            if created or changed:
                try:
                    await session.flush()
                except IntegrityError:
                    raise ConflictError("Another import changed these articles at the same time; run it again.") \
                        from None
                revision = await _search_changed(uow, sorted(a.id for a in [*created, *changed]), "imported")
            else:
                revision = await _revision(session)
            await uow.commit()
            return UpsertReport(created=len(created), updated=updated, unchanged=unchanged, revision=revision)

    async def get(self, *, article_id: int) -> ArticleView:
        async with self.uow() as uow:
            return ArticleView.of(await _get_article(uow.session, article_id))

    async def list_articles(
        self, *, status: ArticleStatus | str | None = None, language: str | None = None, query: str | None = None,
        limit: int = 100, offset: int = 0,
    ) -> list[ArticleView]:
        """Articles by id, filtered by status, language and a piece of the question (any case)."""
        article = m.KbArticle
        select_ = select(article).order_by(article.id).limit(limit).offset(offset)
        if status is not None:
            select_ = select_.where(article.status == _status(status))
        if language is not None:
            select_ = select_.where(article.language == language)
        if query:
            select_ = select_.where(article.question.icontains(query.strip(), autoescape=True))
        async with self.uow() as uow:
            return [ArticleView.of(a) for a in (await uow.session.execute(select_)).scalars()]

    async def count(self, *, status: ArticleStatus | str | None = None) -> int:
        query = select(func.count()).select_from(m.KbArticle)
        if status is not None:
            query = query.where(m.KbArticle.status == _status(status))
        async with self.uow() as uow:
            return int(await uow.session.scalar(query) or 0)

    async def published_articles(self) -> list[ArticleView]:
        """Every published article, by id: what a search index holds."""
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.KbArticle).where(m.KbArticle.status == ArticleStatus.PUBLISHED).order_by(m.KbArticle.id)
            )
            return [ArticleView.of(a) for a in rows.scalars()]

    async def glossary(self) -> list[GlossaryTermView]:
        """Every glossary term with its synonyms (crm_store/services/glossary.py), in one query: what the search
        keeps whole and reads synonyms as; a change moves the revision, as an article's does."""
        async with self.uow() as uow:
            rows = await uow.session.scalars(select(m.KbGlossaryTerm).order_by(m.KbGlossaryTerm.id))
            return [GlossaryTermView.of(t) for t in rows]

    async def revision(self) -> int:
        """The knowledge base's revision (0 before its first change)."""
        async with self.uow() as uow:
            return await _revision(uow.session)

    async def vectors_for(
        self, *, model: str, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], ArticleVectors]:
        """The cached vectors of these (article id, version) pairs by this encoder; missing pairs are absent."""
        wanted = {(int(a), int(v)) for a, v in keys}
        found: dict[tuple[int, int], ArticleVectors] = {}
        vec = m.KbArticleVector
        async with self.uow() as uow:
            for part in chunks(sorted(wanted)):
                rows = await uow.session.execute(
                    select(vec.article_id, vec.version, vec.model, vec.vectors, vec.dim, vec.count).where(
                        vec.model == model,
                        vec.article_id.in_(sorted({a for a, _ in part})),
                        vec.version.in_(sorted({v for _, v in part})),
                    )
                )
                for article_id, version, model_, vectors, dim, count in rows.all():
                    if (article_id, version) in wanted:
                        found[(article_id, version)] = ArticleVectors(
                            article_id, version, model_, bytes(vectors), dim, count
                        )
        return found

    async def save_vectors(self, *, model: str, items: Sequence[ArticleVectors]) -> None:
        """Cache vectors; pairs already cached are left as they are (two processes may race to save them), and
        older versions' vectors of the same articles by the same encoder are dropped."""
        rows: dict[tuple[int, int], ArticleVectors] = {}
        for item in items:
            _check_vectors(item, model)
            rows.setdefault((item.article_id, item.version), item)
        if not rows:
            return
        newest: dict[int, int] = {}
        for article_id, version in rows:
            newest[article_id] = max(version, newest.get(article_id, version))
        table = m.KbArticleVector.__table__
        now = utcnow()
        async with self.uow() as uow:
            session = uow.session
            dialect_insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
            # Sorted, so two processes saving overlapping batches lock rows in the same order.
            await session.execute(
                dialect_insert(table).on_conflict_do_nothing(index_elements=["article_id", "version", "model"]),
                [{"article_id": v.article_id, "version": v.version, "model": model, "dim": v.dim, "count": v.count,
                  "vectors": v.vectors, "created_at": now} for _, v in sorted(rows.items())],
            )
            await session.execute(
                delete(table).where(
                    table.c.article_id == bindparam("aid"),
                    table.c.model == bindparam("encoder"),
                    table.c.version < bindparam("newest"),
                ),
                [{"aid": a, "encoder": model, "newest": v} for a, v in sorted(newest.items())],
            )
            await uow.commit()


@dataclass(frozen=True)
class _Row:
    content: ArticleContent
    status: ArticleStatus
    external_id: str | None


def _clean_input(article: ArticleInput, position: int) -> _Row:
    try:
        language = article.language
        if language is None or not language.strip():
            language = guess_language(article.question or "")
        content = clean_content(
            question=article.question, answer=article.answer, language=language,
            alt_questions=article.alt_questions, tags=article.tags,
        )
        return _Row(content, _status(article.status), _external_id(article.external_id))
    except ValueError as error:
        raise ValueError(f"Article {position}: {error}") from None


def _text(value: str, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"An article needs a{'n' if field[0] in 'aeiou' else ''} {field}.")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"The {field} is {len(value):,} characters long; the limit is {limit:,}.")
    return value


def _strings(values: Iterable[str], field: str) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"{field} is a list of texts, not one text.")
    out = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{field} holds texts only, not {value!r}.")
        out.append(value.strip())
    return out


def _status(status: ArticleStatus | str) -> ArticleStatus:
    try:
        return ArticleStatus(status)
    except ValueError:
        raise ValueError(
            f"Unknown article status {status!r}: use {', '.join(s.value for s in ArticleStatus)}."
        ) from None


def _external_id(external_id: str | None) -> str | None:
    if external_id is None or not str(external_id).strip():
        return None
    external_id = str(external_id).strip()
    if len(external_id) > MAX_EXTERNAL_ID:
        raise ValueError(f"An external id is at most {MAX_EXTERNAL_ID} characters.")
    return external_id


def _check_vectors(item: ArticleVectors, model: str) -> None:
    if item.model != model:
        raise ValueError(f"Vectors of {item.model!r} cannot be saved as {model!r}.")
    if item.dim <= 0 or item.count <= 0:
        raise ValueError("Vectors need a positive dimension and count.")
    if len(item.vectors) != 4 * item.dim * item.count:
        raise ValueError(
            f"Article {item.article_id}: {len(item.vectors)} bytes are not {item.count} x {item.dim} float32."
        )


def _new_article(
    content: ArticleContent, *, status: ArticleStatus, external_id: str | None, agent_id: int | None
) -> m.KbArticle:
    return m.KbArticle(
        external_id=external_id, question=content.question, alt_questions=list(content.alt_questions),
        answer=content.answer, language=content.language, tags=list(content.tags), status=status, version=1,
        published_at=utcnow() if status == ArticleStatus.PUBLISHED else None,
        created_by_agent_id=agent_id, updated_by_agent_id=agent_id,
    )


def _content_fields(article: m.KbArticle) -> dict[str, Any]:
    return {name: getattr(article, name) for name in CONTENT_FIELDS}


def _apply_content(article: m.KbArticle, content: ArticleContent) -> bool:
    """Write new content onto the article; True (and a new version) when anything changed."""
    new = {name: getattr(content, name) for name in CONTENT_FIELDS}
    old = _content_fields(article)
    if new == {**old, "alt_questions": list(old["alt_questions"] or []), "tags": list(old["tags"] or [])}:
        return False
    for name, value in new.items():
        setattr(article, name, list(value) if isinstance(value, list) else value)
    article.version += 1
    return True


def _set_status(article: m.KbArticle, status: ArticleStatus) -> None:
    article.status = status
    if status == ArticleStatus.PUBLISHED:
        article.published_at = utcnow()


async def _search_changed(uow: UnitOfWork, article_ids: list[int], action: str) -> int:
    """Bump the revision (last, just before commit: the state row stays locked until then) and say so."""
    revision = await bump_revision(uow.session)
    uow.emit(KnowledgeBaseChanged(revision=revision, article_ids=article_ids, action=action))
    return revision


async def _revision(session: AsyncSession) -> int:
    value = await session.scalar(select(m.KbState.revision).where(m.KbState.id == STATE_ID))
    return int(value or 0)


async def _get_article(session: AsyncSession, article_id: int, *, for_update: bool = False) -> m.KbArticle:
    query = select(m.KbArticle).where(m.KbArticle.id == article_id)
    if for_update:
        query = query.with_for_update()
    article = (await session.execute(query)).scalar_one_or_none()
    if article is None:
        raise NotFound(f"No article {article_id}.")
    return article


async def _lock(session: AsyncSession, articles: Iterable[m.KbArticle]) -> None:
    """Lock the articles an import will change, in id order, and re-read them: an edit that committed since
    they were read is seen, so two different contents never get the same version."""
    if session.bind.dialect.name != "postgresql":
        return  # SQLite: the transaction holds the database's write lock from BEGIN IMMEDIATE
    ids = sorted({a.id for a in articles})
    for part in chunks(ids):
        await session.execute(
            select(m.KbArticle).where(m.KbArticle.id.in_(part)).order_by(m.KbArticle.id).with_for_update()
            .execution_options(populate_existing=True)
        )


async def _by_external_ids(session: AsyncSession, external_ids: Iterable[str]) -> dict[str, m.KbArticle]:
    found: dict[str, m.KbArticle] = {}
    for part in chunks(sorted(set(external_ids))):
        rows = await session.execute(select(m.KbArticle).where(m.KbArticle.external_id.in_(part)))
        found.update({a.external_id: a for a in rows.scalars() if a.external_id})
    return found


async def _by_questions(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], m.KbArticle]:
    """Articles by (language, question); the oldest when several share one."""
    wanted = set(keys)
    found: dict[tuple[str, str], m.KbArticle] = {}
    for part in chunks(sorted({question for _, question in wanted})):
        rows = await session.execute(
            select(m.KbArticle).where(m.KbArticle.question.in_(part)).order_by(m.KbArticle.id)
        )
        for article in rows.scalars():
            key = (article.language, article.question)
            if key in wanted:
                found.setdefault(key, article)
    return found
