"""Knowledge-base articles: authoring and publishing with versions, the revision stamp and its events, the
import path (upsert), cached vectors, and Chinese text."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import typing

import pytest
from sqlalchemy import event

from crm_store.dto import ArticleInput, ArticleVectors, ArticleView
from crm_store.errors import ConflictError, NotFound
from crm_store.events import DomainEvent, KnowledgeBaseChanged
from tests.support import make_agent

MODEL = "test-encoder"


async def make_article(crm, *, question: str = "How do I reset my password?", status: str = "draft", **overrides):  # type: ignore[no-untyped-def]
    """An article (factory)."""
    fields = {"answer": "Click **Forgot password** on the sign-in page.", "language": "en", **overrides}
    return await crm.knowledge.create_article(question=question, status=status, **fields)


def changes(bus) -> list[KnowledgeBaseChanged]:  # type: ignore[no-untyped-def]
    return typing.cast(list[KnowledgeBaseChanged], bus.of(KnowledgeBaseChanged))


def packed(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


# --- authoring and publishing --------------------------------------------------------------------------------


async def test_a_draft_is_out_of_search_until_published(crm, bus) -> None:
    agent = await make_agent(crm)
    draft = await make_article(crm, alt_questions=["forgot password", " ", "forgot password"], tags=["account"],
                               agent_id=agent.id)
    assert (draft.status, draft.version, draft.published_at) == ("draft", 1, None)
    assert draft.alt_questions == ("forgot password",)  # blanks and repeats dropped
    assert await crm.knowledge.revision() == 0
    assert changes(bus) == []
    assert await crm.knowledge.published_articles() == []

    published = await crm.knowledge.publish(article_id=draft.id, agent_id=agent.id)
    assert published.status == "published" and published.published_at is not None
    assert published.version == 1  # publishing is not a content change
    assert await crm.knowledge.revision() == 1
    [changed] = changes(bus)
    assert (changed.revision, changed.article_ids, changed.action) == (1, [draft.id], "published")
    assert [a.id for a in await crm.knowledge.published_articles()] == [draft.id]

    again = await crm.knowledge.publish(article_id=draft.id)
    assert again.status == "published"
    assert await crm.knowledge.revision() == 1 and len(changes(bus)) == 1  # a no-op moves nothing


async def test_creating_a_published_article_bumps_the_revision(crm, bus) -> None:
    article = await make_article(crm, status="published")
    assert article.status == "published" and article.published_at is not None
    assert await crm.knowledge.revision() == 1
    [changed] = changes(bus)
    assert (changed.revision, changed.article_ids, changed.action) == (1, [article.id], "created")
    assert changed.name == "kb.changed"
    wire = DomainEvent.from_wire(changed.to_wire())
    assert isinstance(wire, KnowledgeBaseChanged) and wire.article_ids == [article.id]


async def test_version_moves_only_when_the_content_changes(crm, bus) -> None:
    article = await make_article(crm, status="published", tags=["account"])
    edited = await crm.knowledge.update_article(article_id=article.id, answer="Use the **Reset** link.")
    assert edited.version == 2 and edited.answer == "Use the **Reset** link."
    assert edited.updated_at >= article.updated_at
    assert await crm.knowledge.revision() == 2
    assert [(c.revision, c.action) for c in changes(bus)] == [(1, "created"), (2, "updated")]

    same = await crm.knowledge.update_article(article_id=article.id, answer="  Use the **Reset** link.\n",
                                              tags=["account"])
    assert same.version == 2
    assert await crm.knowledge.revision() == 2 and len(changes(bus)) == 2

    for field, value in [("question", "Password reset?"), ("alt_questions", ["reset pw"]), ("tags", ["login"]),
                         ("language", "zh")]:
        before = await crm.knowledge.get(article_id=article.id)
        after = await crm.knowledge.update_article(article_id=article.id, **{field: value})
        assert after.version == before.version + 1, field
    assert await crm.knowledge.revision() == 6


async def test_editing_a_draft_makes_a_version_but_leaves_search_alone(crm, bus) -> None:
    draft = await make_article(crm)
    edited = await crm.knowledge.update_article(article_id=draft.id, question="Where is the reset link?")
    assert edited.version == 2 and edited.question == "Where is the reset link?"
    assert await crm.knowledge.revision() == 0 and changes(bus) == []


async def test_unpublish_and_archive_take_an_article_out_of_search(crm, bus) -> None:
    first = await make_article(crm, question="Q one?", status="published")
    second = await make_article(crm, question="Q two?", status="published")
    assert await crm.knowledge.revision() == 2

    back = await crm.knowledge.unpublish(article_id=first.id)
    assert back.status == "draft"
    archived = await crm.knowledge.archive(article_id=second.id)
    assert archived.status == "archived"
    assert await crm.knowledge.revision() == 4
    assert [c.action for c in changes(bus)][-2:] == ["unpublished", "archived"]
    assert await crm.knowledge.published_articles() == []

    await crm.knowledge.archive(article_id=first.id)  # draft -> archived: search did not change
    assert await crm.knowledge.revision() == 4
    assert await crm.knowledge.count(status="archived") == 2
    restored = await crm.knowledge.publish(article_id=second.id)
    assert restored.status == "published" and await crm.knowledge.revision() == 5


async def test_invalid_articles_are_refused_with_a_reason(crm) -> None:
    with pytest.raises(ValueError, match="needs a question"):
        await make_article(crm, question="   ")
    with pytest.raises(ValueError, match="needs an answer"):
        await make_article(crm, answer="")
    with pytest.raises(ValueError, match="language"):
        await make_article(crm, language="fr")
    with pytest.raises(ValueError, match="1,001 characters long; the limit is 1,000"):
        await make_article(crm, question="x" * 1001)
    with pytest.raises(ValueError, match="limit is 20,000"):
        await make_article(crm, answer="x" * 20_001)
    with pytest.raises(ValueError, match="status"):
        await make_article(crm, status="live")
    with pytest.raises(ValueError, match="list of texts"):
        await make_article(crm, alt_questions="one string")
    assert await crm.knowledge.count() == 0

    longest = await make_article(crm, question="q" * 1000, answer="a" * 20_000)
    assert len(longest.question) == 1000 and len(longest.answer) == 20_000
    with pytest.raises(ValueError, match="cannot change status"):
        await crm.knowledge.update_article(article_id=longest.id, status="published")
    with pytest.raises(ValueError, match="needs an answer"):
        await crm.knowledge.update_article(article_id=longest.id, answer=" ")
    assert (await crm.knowledge.get(article_id=longest.id)).version == 1


async def test_unknown_articles_and_taken_external_ids(crm) -> None:
    for call in (crm.knowledge.get(article_id=999), crm.knowledge.publish(article_id=999),
                 crm.knowledge.update_article(article_id=999, answer="x"), crm.knowledge.archive(article_id=999)):
        with pytest.raises(NotFound):
            await call
    await make_article(crm, external_id="faq-1")
    with pytest.raises(ConflictError, match="faq-1"):
        await make_article(crm, question="Another question?", external_id="faq-1")
    assert await crm.knowledge.count() == 1


async def test_list_filters_by_status_language_and_question(crm) -> None:
    a = await make_article(crm, question="How do I RESET my password?", status="published")
    b = await make_article(crm, question="Where is my order?")
    c = await make_article(crm, question="如何重置密码？", answer="点击“忘记密码”。", language="zh", status="published")
    ids = lambda views: [v.id for v in views]  # noqa: E731
    assert ids(await crm.knowledge.list_articles()) == [a.id, b.id, c.id]
    assert ids(await crm.knowledge.list_articles(status="published")) == [a.id, c.id]
    assert ids(await crm.knowledge.list_articles(language="zh")) == [c.id]
    assert ids(await crm.knowledge.list_articles(query="reset")) == [a.id]
    assert ids(await crm.knowledge.list_articles(query="100%")) == []  # LIKE wildcards are literal
    assert ids(await crm.knowledge.list_articles(limit=1, offset=1)) == [b.id]
    assert await crm.knowledge.count() == 3 and await crm.knowledge.count(status="draft") == 1


async def test_chinese_text_round_trips(crm) -> None:
    created = await crm.knowledge.create_article(
        question="退货需要多久？", alt_questions=["多久能退款", "退款时间"], answer="**7 个工作日**内退款。🙂",
        tags=["退货", "售后"], language="zh", external_id="常见问题-1",
    )
    stored = await crm.knowledge.get(article_id=created.id)
    assert stored == created
    assert (stored.question, stored.alt_questions, stored.tags) == (
        "退货需要多久？", ("多久能退款", "退款时间"), ("退货", "售后")
    )
    assert stored.answer == "**7 个工作日**内退款。🙂" and stored.external_id == "常见问题-1"
    assert [v.id for v in await crm.knowledge.list_articles(query="退货")] == [created.id]


def test_article_view_is_an_indexable_article_and_input_mirrors_the_draft() -> None:
    from knowledge_base.records import ArticleDraft, IndexableArticle

    view_fields = {f.name: f.type for f in dataclasses.fields(ArticleView)}
    for name in typing.get_type_hints(IndexableArticle):
        assert name in view_fields, name
    assert [f.name for f in dataclasses.fields(ArticleInput)] == [f.name for f in dataclasses.fields(ArticleDraft)]
    defaults = [f.default for f in dataclasses.fields(ArticleDraft)]
    assert [f.default for f in dataclasses.fields(ArticleInput)] == defaults


# --- the import path ---------------------------------------------------------------------------------------


FAQ = [
    ArticleInput(question="How long does shipping take?", answer="3-5 days.", external_id="ship-1", tags=("shipping",)),
    ArticleInput(question="退货需要多久？", answer="7 个工作日。", external_id="ret-1"),
    ArticleInput(question="Do you ship abroad?", answer="Yes, to 30 countries.", language="en"),
]


async def test_upsert_creates_then_a_same_import_changes_nothing(crm, bus) -> None:
    report = await crm.knowledge.upsert_articles(articles=FAQ)
    assert (report.created, report.updated, report.unchanged, report.revision) == (3, 0, 0, 1)
    stored = await crm.knowledge.list_articles()
    assert [(a.external_id, a.language, a.status, a.version) for a in stored] == [
        ("ship-1", "en", "published", 1), ("ret-1", "zh", "published", 1), (None, "en", "published", 1)
    ]
    [changed] = changes(bus)
    assert (changed.revision, changed.action, changed.article_ids) == (1, "imported", [a.id for a in stored])

    again = await crm.knowledge.upsert_articles(articles=FAQ)
    assert (again.created, again.updated, again.unchanged, again.revision) == (0, 0, 3, 1)
    assert await crm.knowledge.revision() == 1 and len(changes(bus)) == 1
    assert await crm.knowledge.list_articles() == stored


async def test_upsert_updates_a_changed_article_in_place(crm, bus) -> None:
    await crm.knowledge.upsert_articles(articles=FAQ)
    ship = (await crm.knowledge.list_articles(query="shipping take"))[0]
    edited = [dataclasses.replace(FAQ[0], answer="2-4 days."), *FAQ[1:]]
    report = await crm.knowledge.upsert_articles(articles=edited)
    assert (report.created, report.updated, report.unchanged, report.revision) == (0, 1, 2, 2)
    after = await crm.knowledge.get(article_id=ship.id)
    assert (after.answer, after.version) == ("2-4 days.", 2)
    assert changes(bus)[-1].article_ids == [ship.id]
    assert await crm.knowledge.count() == 3


async def test_upsert_without_external_id_matches_language_and_question(crm) -> None:
    await crm.knowledge.upsert_articles(articles=FAQ)
    abroad = (await crm.knowledge.list_articles(query="abroad"))[0]
    report = await crm.knowledge.upsert_articles(articles=[
        ArticleInput(question="Do you ship abroad?", answer="Yes, to 40 countries.", language="en"),
        ArticleInput(question="Do you ship abroad?", answer="是的。", language="zh"),  # another language: new
    ])
    assert (report.created, report.updated, report.unchanged) == (1, 1, 0)
    after = await crm.knowledge.get(article_id=abroad.id)
    assert (after.answer, after.version) == ("Yes, to 40 countries.", 2)
    assert await crm.knowledge.count() == 4

    # A first import without ids, then the same articles with ids: adopted, not duplicated.
    adopted = await crm.knowledge.upsert_articles(articles=[
        ArticleInput(question="Do you ship abroad?", answer="Yes, to 40 countries.", language="en", external_id="ab-1")
    ])
    assert (adopted.created, adopted.updated) == (0, 1)
    assert (await crm.knowledge.get(article_id=abroad.id)).external_id == "ab-1"
    assert (await crm.knowledge.get(article_id=abroad.id)).version == 2  # the id is not content
    # ...but an article that has another external id is another article.
    other = await crm.knowledge.upsert_articles(articles=[
        ArticleInput(question="Do you ship abroad?", answer="Yes.", language="en", external_id="ab-2")
    ])
    assert other.created == 1 and await crm.knowledge.count() == 5


async def test_upsert_applies_the_status_given_and_guesses_language(crm) -> None:
    report = await crm.knowledge.upsert_articles(articles=[
        ArticleInput(question="Gift cards?", answer="Soon.", status="draft", external_id="g-1"),
        ArticleInput(question="可以开发票吗？", answer="可以。"),
    ])
    assert report.created == 2 and report.revision == 1
    gift, invoice = await crm.knowledge.list_articles()
    assert (gift.status, gift.language) == ("draft", "en") and (invoice.status, invoice.language) == ("published", "zh")

    report = await crm.knowledge.upsert_articles(articles=[
        ArticleInput(question="Gift cards?", answer="Soon.", status="published", external_id="g-1")
    ])
    assert (report.updated, report.revision) == (1, 2)
    published = await crm.knowledge.get(article_id=gift.id)
    assert (published.status, published.version) == ("published", 1) and published.published_at is not None


async def test_upsert_refuses_a_bad_row_by_position_and_writes_nothing(crm) -> None:
    with pytest.raises(ValueError, match=r"Article 2: .*answer"):
        await crm.knowledge.upsert_articles(articles=[FAQ[0], ArticleInput(question="Empty?", answer=" ")])
    assert await crm.knowledge.count() == 0 and await crm.knowledge.revision() == 0


async def test_upsert_of_a_large_batch_costs_a_handful_of_queries(crm, bus, is_postgres) -> None:
    batch = [ArticleInput(question=f"Question number {i}?", answer=f"Answer {i}.",
                          external_id=f"q-{i}" if i % 2 else None) for i in range(1200)]
    statements: list[str] = []

    def count_statement(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(crm.db.engine.sync_engine, "before_cursor_execute", count_statement)
    try:
        created = await crm.knowledge.upsert_articles(articles=batch)
        first = list(statements)
        again = await crm.knowledge.upsert_articles(articles=batch)
        second = statements[len(first):]
    finally:
        event.remove(crm.db.engine.sync_engine, "before_cursor_execute", count_statement)
    assert (created.created, again.unchanged, again.revision) == (1200, 1200, 1)
    # Existing articles are looked up in chunks, not row by row. New rows go in batches on PostgreSQL; SQLite
    # cannot hand back the ids of a multi-row INSERT in a guaranteed order, so there SQLAlchemy inserts each
    # row (in-process, about 0.1 ms a row).
    lookups = [s for s in first if not s.startswith("INSERT INTO kb_articles ")]
    assert len(lookups) < 15, lookups
    assert len(first) < (25 if is_postgres else 1250)
    assert len(second) < 15, second
    assert len(changes(bus)[0].article_ids) == 1200


# --- the revision under concurrency -------------------------------------------------------------------------


async def test_concurrent_changes_never_lose_a_revision(crm, bus) -> None:
    drafts = [await make_article(crm, question=f"Draft {i}?") for i in range(10)]
    assert await crm.knowledge.revision() == 0  # no kb_state row yet: the first bumps race to create it
    await asyncio.gather(*[crm.knowledge.publish(article_id=d.id) for d in drafts])
    assert await crm.knowledge.revision() == 10
    assert sorted(c.revision for c in changes(bus)) == list(range(1, 11))

    await asyncio.gather(*[crm.knowledge.update_article(article_id=d.id, answer=f"New {d.id}") for d in drafts])
    assert await crm.knowledge.revision() == 20
    assert sorted(c.revision for c in changes(bus)) == list(range(1, 21))


async def test_an_import_and_an_edit_at_once_both_make_a_version(crm) -> None:
    await crm.knowledge.upsert_articles(articles=FAQ)
    ship = (await crm.knowledge.list_articles(query="shipping take"))[0]
    for round_ in range(5):
        before = await crm.knowledge.get(article_id=ship.id)
        await asyncio.gather(
            crm.knowledge.upsert_articles(articles=[dataclasses.replace(FAQ[0], answer=f"Import {round_}.")]),
            crm.knowledge.update_article(article_id=ship.id, answer=f"Edit {round_}."),
        )
        after = await crm.knowledge.get(article_id=ship.id)
        assert after.version == before.version + 2  # neither change was lost under the other's version


async def test_concurrent_creates_with_one_external_id_make_one_article(crm) -> None:
    results = await asyncio.gather(
        *[make_article(crm, question=f"Q {i}?", external_id="same") for i in range(5)], return_exceptions=True
    )
    assert len([r for r in results if isinstance(r, ArticleView)]) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, ArticleView)), results
    assert await crm.knowledge.count() == 1


# --- cached vectors ------------------------------------------------------------------------------------------


async def test_vectors_round_trip_and_a_second_save_is_ignored(crm) -> None:
    article = await make_article(crm, alt_questions=["forgot password"], status="published")
    v1 = ArticleVectors(article.id, 1, MODEL, packed(0.5, -1.0, 0.25, 2.0, 0.0, 1.5), dim=2, count=3)
    await crm.knowledge.save_vectors(model=MODEL, items=[v1])
    found = await crm.knowledge.vectors_for(model=MODEL, keys=[(article.id, 1), (article.id, 2), (999, 1)])
    assert list(found) == [(article.id, 1)]
    assert found[(article.id, 1)] == v1 and isinstance(found[(article.id, 1)].vectors, bytes)
    assert struct.unpack("<6f", found[(article.id, 1)].vectors) == (0.5, -1.0, 0.25, 2.0, 0.0, 1.5)
    assert await crm.knowledge.vectors_for(model="another-encoder", keys=[(article.id, 1)]) == {}

    await crm.knowledge.save_vectors(model=MODEL, items=[dataclasses.replace(v1, vectors=packed(*[9.0] * 6))])
    assert (await crm.knowledge.vectors_for(model=MODEL, keys=[(article.id, 1)]))[(article.id, 1)] == v1


async def test_saving_a_new_version_drops_the_old_versions_vectors(crm) -> None:
    article = await make_article(crm)
    await crm.knowledge.save_vectors(model=MODEL, items=[ArticleVectors(article.id, 1, MODEL, packed(1.0), 1, 1)])
    await crm.knowledge.save_vectors(model="other", items=[ArticleVectors(article.id, 1, "other", packed(3.0), 1, 1)])
    edited = await crm.knowledge.update_article(article_id=article.id, answer="Changed.")
    v2 = ArticleVectors(article.id, edited.version, MODEL, packed(2.0), 1, 1)
    await crm.knowledge.save_vectors(model=MODEL, items=[v2])
    found = await crm.knowledge.vectors_for(model=MODEL, keys=[(article.id, 1), (article.id, 2)])
    assert found == {(article.id, 2): v2}
    assert (article.id, 1) in await crm.knowledge.vectors_for(model="other", keys=[(article.id, 1)])


async def test_concurrent_saves_of_the_same_vectors_keep_one(crm) -> None:
    article = await make_article(crm)
    item = ArticleVectors(article.id, 1, MODEL, packed(1.0, 2.0), 2, 1)
    await asyncio.gather(*[crm.knowledge.save_vectors(model=MODEL, items=[item]) for _ in range(5)])
    assert await crm.knowledge.vectors_for(model=MODEL, keys=[(article.id, 1)]) == {(article.id, 1): item}


async def test_malformed_vectors_are_refused(crm) -> None:
    article = await make_article(crm)
    with pytest.raises(ValueError, match="float32"):
        await crm.knowledge.save_vectors(model=MODEL, items=[ArticleVectors(article.id, 1, MODEL, b"\0" * 7, 2, 1)])
    with pytest.raises(ValueError, match="other"):
        await crm.knowledge.save_vectors(model=MODEL, items=[ArticleVectors(article.id, 1, "other", packed(1.0), 1, 1)])
    assert await crm.knowledge.vectors_for(model=MODEL, keys=[(article.id, 1)]) == {}
