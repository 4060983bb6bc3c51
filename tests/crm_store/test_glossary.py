"""The knowledge base's glossary: terms and synonyms added, changed and deleted with their rules checked; CSV import
with bad rows reported by line (the rest loads, a re-import changes nothing) and export that imports back; every
change bumps the KB revision, publishes kb.changed after commit and is audited; the knowledge base reads it in one
query."""

from __future__ import annotations

import typing

import pytest
from sqlalchemy import event

from crm_store.enums import AuditAction
from crm_store.errors import ConflictError, NotFound
from crm_store.events import KnowledgeBaseChanged
from crm_store.services.glossary import MAX_IMPORT_ROWS, GlossaryFileError, read_glossary_csv
from tests.support import make_agent

HEADER = "language,term,synonyms\n"


def changes(bus) -> list[KnowledgeBaseChanged]:  # type: ignore[no-untyped-def]
    return typing.cast(list[KnowledgeBaseChanged], bus.of(KnowledgeBaseChanged))


def csv_bytes(text: str, *, bom: bool = False) -> bytes:
    return (("\ufeff" if bom else "") + text).encode("utf-8")


def as_rows(terms) -> list[tuple[str, str, tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    return [(t.language, t.term, t.synonyms) for t in terms]


# --- adding, changing, deleting -----------------------------------------------------------------------------------


async def test_add_change_and_delete_a_term_each_move_the_revision_and_are_audited(crm, bus) -> None:  # type: ignore[no-untyped-def]
    admin = await make_agent(crm, role="admin")
    added = await crm.glossary.add_term(language="zh", term=" 花呗 ", synonyms=["蚂蚁花呗", " ", "花唄", "蚂蚁花呗"],
                                        agent_id=admin.id)
    assert (added.language, added.term, added.synonyms) == ("zh", "花呗", ("蚂蚁花呗", "花唄"))  # tidied
    assert added.updated_by_agent_id == admin.id
    assert await crm.knowledge.revision() == 1
    [first] = changes(bus)
    assert (first.revision, first.article_ids, first.action) == (1, [], "glossary")

    changed = await crm.glossary.update_term(term_id=added.id, language="zh", term="花呗",
                                             synonyms=["蚂蚁花呗", "花呗分期"], agent_id=admin.id)
    assert changed.synonyms == ("蚂蚁花呗", "花呗分期")
    assert as_rows(await crm.glossary.list_terms()) == [("zh", "花呗", ("蚂蚁花呗", "花呗分期"))]
    assert await crm.knowledge.revision() == 2 and changes(bus)[-1].revision == 2

    # Saving what is there already is no change: no revision, no event, no audit entry.
    await crm.glossary.update_term(term_id=added.id, language="zh", term="花呗", synonyms=["蚂蚁花呗", "花呗分期"])
    assert await crm.knowledge.revision() == 2 and len(changes(bus)) == 2

    await crm.glossary.delete_term(term_id=added.id, agent_id=admin.id)
    assert await crm.glossary.list_terms() == []
    assert await crm.knowledge.revision() == 3 and changes(bus)[-1].revision == 3

    entries = (await crm.audit.search(action="glossary")).entries
    assert [e.action for e in entries] == [AuditAction.GLOSSARY_TERM_DELETED, AuditAction.GLOSSARY_TERM_CHANGED,
                                           AuditAction.GLOSSARY_TERM_ADDED]
    assert all(e.agent_id == admin.id and e.actor == "agent" and e.subject_id == str(added.id) for e in entries)
    assert entries[1].details == {"from": {"language": "zh", "term": "花呗", "synonyms": ["蚂蚁花呗", "花唄"]},
                                  "to": {"language": "zh", "term": "花呗", "synonyms": ["蚂蚁花呗", "花呗分期"]}}

    with pytest.raises(NotFound):
        await crm.glossary.update_term(term_id=added.id, language="zh", term="花呗")
    with pytest.raises(NotFound):
        await crm.glossary.delete_term(term_id=added.id)


async def test_the_knowledge_base_reads_the_glossary_in_one_query(crm, db) -> None:  # type: ignore[no-untyped-def]
    await crm.glossary.add_term(language="en", term="package", synonyms=["parcel", "box"])
    await crm.glossary.add_term(language="zh", term="积分", synonyms=["分数"])
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        terms = await crm.knowledge.glossary()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert sorted((t.language, t.term, t.synonyms) for t in terms) == [
        ("en", "package", ("parcel", "box")), ("zh", "积分", ("分数",))]
    assert all(isinstance(t.synonyms, tuple) for t in terms)  # knowledge_base.records.GlossaryTerm's shape


@pytest.mark.parametrize(("fields", "message"), [
    ({"language": "fr", "term": "colis"}, "Unknown language"),
    ({"language": "en", "term": "   "}, "cannot be empty"),
    ({"language": "en", "term": "x" * 41}, "41 characters long; the limit is 40"),
    ({"language": "en", "term": "bad\x00term"}, "control character, NUL"),
    ({"language": "en", "term": "lone\ud800"}, "broken surrogate"),
    ({"language": "en", "term": "=HYPERLINK(1)"}, "formula"),
    ({"language": "en", "term": "ok", "synonyms": ["y" * 41]}, "synonym"),
    ({"language": "en", "term": "ok", "synonyms": ["a|b"]}, "separates synonyms"),
    ({"language": "en", "term": "package", "synonyms": ["Package"]}, "the term itself"),
    ({"language": "zh", "term": "会员卡", "synonyms": [f"卡{n}" for n in range(31)]}, "31 synonyms; the limit is 30"),
    ({"language": "en", "term": "ok", "synonyms": "parcel"}, "list of words"),
])
async def test_invalid_terms_are_refused_with_a_reason_and_change_nothing(crm, bus, fields, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        await crm.glossary.add_term(**fields)
    assert await crm.glossary.list_terms() == [] and await crm.knowledge.revision() == 0 and changes(bus) == []


async def test_forty_characters_and_thirty_synonyms_are_allowed(crm) -> None:  # type: ignore[no-untyped-def]
    term = await crm.glossary.add_term(language="zh", term="长" * 40, synonyms=[f"同义词{n}" for n in range(30)])
    assert len(term.term) == 40 and len(term.synonyms) == 30


async def test_a_word_is_one_terms_synonym_or_a_term_never_both(crm, bus) -> None:  # type: ignore[no-untyped-def]
    huabei = await crm.glossary.add_term(language="zh", term="花呗", synonyms=["蚂蚁花呗"])
    await crm.glossary.add_term(language="zh", term="借呗", synonyms=["蚂蚁借呗"])
    refusals = [
        ({"term": "花呗"}, "already in the glossary"),  # the same term again
        ({"term": "蚂蚁花呗"}, "already a synonym of “花呗”"),  # a term that is another term's synonym
        ({"term": "分期", "synonyms": ["蚂蚁借呗"]}, "already a synonym of “借呗”"),
        ({"term": "分期", "synonyms": ["借呗"]}, "already a glossary term"),
    ]
    for fields, message in refusals:
        with pytest.raises(ConflictError, match=message):
            await crm.glossary.add_term(language="zh", **fields)
    with pytest.raises(ConflictError, match="already a synonym of “借呗”"):
        await crm.glossary.update_term(term_id=huabei.id, language="zh", term="花呗", synonyms=["蚂蚁借呗"])
    with pytest.raises(ConflictError, match="already in the glossary"):
        await crm.glossary.update_term(term_id=huabei.id, language="zh", term="借呗")
    assert len(changes(bus)) == 2  # only the two adds

    # Case and full-width forms are the same word; another language is another glossary.
    await crm.glossary.add_term(language="en", term="VIP card", synonyms=["member card"])
    with pytest.raises(ConflictError, match="already a synonym"):
        await crm.glossary.add_term(language="en", term="loyalty card", synonyms=["Member  Card"])
    with pytest.raises(ConflictError, match="already in the glossary"):
        await crm.glossary.add_term(language="en", term="ＶＩＰ card")
    assert (await crm.glossary.add_term(language="zh", term="VIP card")).language == "zh"
    # A term's own words are no rivals of its new spelling and synonyms.
    renamed = await crm.glossary.update_term(term_id=huabei.id, language="zh", term="蚂蚁花呗", synonyms=["花呗"])
    assert (renamed.term, renamed.synonyms) == ("蚂蚁花呗", ("花呗",))


# --- import and export --------------------------------------------------------------------------------------------


GOOD_FILE = (HEADER
             + "zh,花呗,蚂蚁花呗|花唄\n"
             + "en,package,parcel|box\n"
             + "\n"
             + '"en","loyalty points","points| bonus points "\n')


async def test_import_loads_the_good_rows_reports_the_bad_by_line_and_a_reimport_changes_nothing(crm, bus) -> None:  # type: ignore[no-untyped-def]
    data = csv_bytes(
        GOOD_FILE
        + "fr,colis,paquet\n"  # line 6: unknown language
        + "en,parcel,\n"  # line 7: already package's synonym
        + "zh,借呗,蚂蚁借呗,花呗分期\n"  # line 8: a comma where | belongs
        + "zh,花呗,别的\n"  # line 9: the same term twice in the file
        + ",积分,分数\n"  # line 10: no language: detected (zh)
        + f"en,{'x' * 41},\n"  # line 11: too long
        + '"en","multi\nline",\n'  # lines 12-13: a line break inside a cell is collapsed
        + "en,gift card,package\n",  # line 14: package is a term
        bom=True)
    report = await crm.glossary.import_csv(data=data)

    assert (report.read, report.created, report.updated, report.unchanged) == (11, 5, 0, 0)
    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [6, 7, 8, 9, 11, 14]
    assert "Unknown language" in reasons[6]
    assert "already a synonym of “package”" in reasons[7]
    assert "separate synonyms with “|”" in reasons[8]
    assert "already on line 2" in reasons[9]
    assert "limit is 40" in reasons[11]
    assert "already a glossary term" in reasons[14]
    assert as_rows(await crm.glossary.list_terms()) == [
        ("en", "loyalty points", ("points", "bonus points")), ("en", "multi line", ()),
        ("en", "package", ("parcel", "box")), ("zh", "积分", ("分数",)), ("zh", "花呗", ("蚂蚁花呗", "花唄"))]
    assert await crm.knowledge.revision() == 1 and len(changes(bus)) == 1  # one import, one change
    [entry] = (await crm.audit.search(action=AuditAction.GLOSSARY_IMPORTED)).entries
    assert entry.details["created"] == 5 and entry.details["rejected"] == 6 and entry.actor == "system"

    again = await crm.glossary.import_csv(data=data)
    assert (again.created, again.updated, again.unchanged, len(again.errors)) == (0, 0, 5, 6)
    assert again.revision == 1 and await crm.knowledge.revision() == 1 and len(changes(bus)) == 1
    assert len((await crm.audit.search(action="glossary")).entries) == 1


async def test_import_updates_matching_terms_and_leaves_the_others(crm, bus) -> None:  # type: ignore[no-untyped-def]
    kept = await crm.glossary.add_term(language="en", term="refund", synonyms=["money back"])
    await crm.glossary.add_term(language="en", term="Package", synonyms=["parcel"])
    report = await crm.glossary.import_csv(data=csv_bytes(HEADER + "en,package,parcel|box\nen,refund,money back\n"))
    assert (report.created, report.updated, report.unchanged, report.errors) == (0, 1, 1, ())
    assert as_rows(await crm.glossary.list_terms()) == [("en", "package", ("parcel", "box")),
                                                       ("en", "refund", ("money back",))]
    assert (await crm.glossary.get(term_id=kept.id)).updated_at == kept.updated_at
    assert report.revision == await crm.knowledge.revision() == 3


async def test_words_moved_between_terms_in_one_file_load_in_one_go(crm) -> None:  # type: ignore[no-untyped-def]
    """A synonym moves from a term to another: the file's new synonyms are what count, whatever the row order;
    importing it again changes nothing."""
    await crm.glossary.add_term(language="en", term="package", synonyms=["parcel", "box"])
    await crm.glossary.add_term(language="en", term="delivery", synonyms=["shipping"])
    data = csv_bytes(HEADER + "en,delivery,shipping|parcel\nen,package,box\n")
    report = await crm.glossary.import_csv(data=data)
    assert (report.updated, report.errors) == (2, ())
    assert as_rows(await crm.glossary.list_terms()) == [("en", "delivery", ("shipping", "parcel")),
                                                       ("en", "package", ("box",))]
    again = await crm.glossary.import_csv(data=data)
    assert (again.updated, again.unchanged, again.errors) == (0, 2, ())


async def test_a_rejected_rows_old_synonyms_win_over_a_later_claim(crm) -> None:  # type: ignore[no-untyped-def]
    """Line 2 would give "parcel" away but is rejected; package keeps "parcel", so line 3's claim is rejected too,
    and the same file imported again gives the same answer."""
    await crm.glossary.add_term(language="en", term="package", synonyms=["parcel"])
    await crm.glossary.add_term(language="en", term="refund", synonyms=["money back"])
    data = csv_bytes(HEADER + "en,package,money back\nen,delivery,parcel\n")
    for _ in range(2):
        report = await crm.glossary.import_csv(data=data)
        assert [(e.line, "refund" in e.reason or "package" in e.reason) for e in report.errors] == [
            (2, True), (3, True)]
        assert report.created == report.updated == 0
    assert as_rows(await crm.glossary.list_terms()) == [("en", "package", ("parcel",)),
                                                       ("en", "refund", ("money back",))]


async def test_export_then_import_into_an_empty_glossary_is_the_same_glossary(crm, bus) -> None:  # type: ignore[no-untyped-def]
    await crm.glossary.import_csv(data=csv_bytes(GOOD_FILE))
    await crm.glossary.add_term(language="en", term='say "hi", twice', synonyms=["greeting, long"])
    before = as_rows(await crm.glossary.list_terms())
    exported = await crm.glossary.export_csv()
    assert exported.startswith("\ufeff".encode()) and exported.decode("utf-8-sig").startswith("language,term,synonyms")
    assert "zh,花呗,蚂蚁花呗|花唄" in exported.decode("utf-8-sig")
    assert (await crm.glossary.export_csv(language="zh")).decode("utf-8-sig").count("\n") == 2

    # Unchanged on the same database...
    same = await crm.glossary.import_csv(data=exported)
    assert (same.created, same.updated, same.unchanged, same.errors) == (0, 0, len(before), ())
    # ...and the same glossary on an empty one.
    for term in await crm.glossary.list_terms():
        await crm.glossary.delete_term(term_id=term.id)
    loaded = await crm.glossary.import_csv(data=exported)
    assert (loaded.created, loaded.errors) == (len(before), ())
    assert as_rows(await crm.glossary.list_terms()) == before


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"language,word\nen,package\n", "no \u201cterm\u201d column"),
    (b"language,term\nen,caf\xe9\n", "line 2: not UTF-8"),
    (HEADER.encode() + b"en,package\n" * (MAX_IMPORT_ROWS + 1), "more than 20,000 rows"),
])
async def test_a_file_that_is_no_glossary_is_refused_whole(crm, data, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GlossaryFileError, match=message):
        await crm.glossary.import_csv(data=data)
    assert await crm.glossary.list_terms() == []


def test_the_reader_counts_physical_lines_and_takes_a_bom_and_missing_columns() -> None:
    rows, errors = read_glossary_csv(csv_bytes('term\r\n"two\r\nlines"\r\n\r\nthree\r\n', bom=True))
    assert [(r.line, r.language, r.term, r.synonyms) for r in rows] == [(2, "", "two\r\nlines", ("",)),
                                                                        (5, "", "three", ("",))]
    assert errors == []
