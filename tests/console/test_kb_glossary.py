"""The knowledge base's glossary in the console: supervisors and admins list it by language, add, edit and delete
terms, import a CSV (bad rows shown by line) and export one; agents may not; errors are shown on the page, never
as a 500; every change moves the KB revision and publishes kb.changed."""

from __future__ import annotations

import re

import pytest

from console.app import console_routes
from console.permissions import Permission, route_permission
from crm_store.enums import AuditAction
from crm_store.events import KnowledgeBaseChanged
from tests.console.conftest import session_for

EVIL = "<img src=x onerror=alert(1)>"


def term_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="term-(\d+)"', html)]


def flash_error(html: str) -> str:
    match = re.search(r'<div class="flash flash-error" role="alert">(.*?)</div>', html, re.S)
    assert match, html[:3000]
    return match.group(1)


def glossary(terms) -> list[tuple[str, str, tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    return [(t.language, t.term, t.synonyms) for t in terms]


def test_every_glossary_route_needs_the_kb_edit_permission(app) -> None:  # type: ignore[no-untyped-def]
    routes = {(method, route.path): route_permission(route) for route in console_routes(app.routes)
              for method in route.methods - {"HEAD"} if route.path.startswith("/kb/glossary")}
    assert set(routes) == {("GET", "/kb/glossary"), ("POST", "/kb/glossary"), ("GET", "/kb/glossary/export.csv"),
                           ("POST", "/kb/glossary/import"), ("GET", "/kb/glossary/{term_id}/edit"),
                           ("POST", "/kb/glossary/{term_id}/edit"), ("POST", "/kb/glossary/{term_id}/delete")}
    assert set(routes.values()) == {Permission.KB_EDIT}


async def test_agents_may_not_see_or_change_the_glossary_supervisors_may(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    anonymous = await client.get("/kb/glossary")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")

    csrf = await session_for(crm, staff.agent, client)
    assert (await client.get("/kb/glossary")).status_code == 403
    refused = await client.post("/kb/glossary", data={"csrf_token": csrf, "language": "en", "term": "package"})
    assert refused.status_code == 403 and await crm.glossary.list_terms() == []
    assert 'href="/kb/glossary"' not in (await client.get("/kb")).text

    await session_for(crm, staff.supervisor, client)
    assert 'href="/kb/glossary"' in (await client.get("/kb")).text  # the KB list page links to it
    page = await client.get("/kb/glossary")
    assert page.status_code == 200 and "No glossary terms yet" in page.text


async def test_add_edit_and_delete_a_term_from_the_page(client, crm, staff, bus) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    added = await client.post("/kb/glossary", data={"csrf_token": csrf, "language": "zh", "term": " 花呗 ",
                                                    "synonyms": "蚂蚁花呗\n\n花唄 | 花呗分期\n蚂蚁花呗"})
    assert added.status_code == 303 and added.headers["location"] == "/kb/glossary?language=zh&notice=added"
    [term] = await crm.glossary.list_terms()
    assert (term.language, term.term, term.synonyms) == ("zh", "花呗", ("蚂蚁花呗", "花唄", "花呗分期"))
    assert [e.action for e in bus.of(KnowledgeBaseChanged)] == ["glossary"]
    page = (await client.get(added.headers["location"])).text
    assert "Term added" in page and term_ids(page) == [term.id]
    assert '<span class="chip">花呗分期</span>' in page

    form = (await client.get(f"/kb/glossary/{term.id}/edit")).text
    assert "蚂蚁花呗\n花唄\n花呗分期</textarea>" in form and 'value="花呗"' in form
    saved = await client.post(f"/kb/glossary/{term.id}/edit", data={
        "csrf_token": csrf, "language": "zh", "term": "花呗", "synonyms": "蚂蚁花呗"})
    assert saved.status_code == 303 and saved.headers["location"] == "/kb/glossary?language=zh&notice=updated"
    assert (await crm.glossary.get(term_id=term.id)).synonyms == ("蚂蚁花呗",)

    deleted = await client.post(f"/kb/glossary/{term.id}/delete", data={"csrf_token": csrf, "language": "zh"})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/kb/glossary?language=zh&notice=deleted"
    assert await crm.glossary.list_terms() == []
    assert len(bus.of(KnowledgeBaseChanged)) == 3 and await crm.knowledge.revision() == 3
    entries = (await crm.audit.search(action="glossary")).entries
    assert [e.action for e in entries] == [AuditAction.GLOSSARY_TERM_DELETED, AuditAction.GLOSSARY_TERM_CHANGED,
                                           AuditAction.GLOSSARY_TERM_ADDED]
    assert {e.agent_id for e in entries} == {staff.supervisor.id}

    for path in (f"/kb/glossary/{term.id}/edit", "/kb/glossary/999999/edit"):
        assert (await client.get(path)).status_code == 404
    gone = await client.post(f"/kb/glossary/{term.id}/edit", data={"csrf_token": csrf, "term": "x"})
    assert gone.status_code == 404 and "no such glossary term" in gone.text
    assert (await client.post(f"/kb/glossary/{term.id}/delete", data={"csrf_token": csrf})).status_code == 404


@pytest.mark.parametrize(("fields", "message"), [
    ({"language": "en", "term": ""}, "cannot be empty"),
    ({"language": "en", "term": "x" * 41}, "the limit is 40"),
    ({"language": "fr", "term": "colis"}, "Unknown language"),
    ({"language": "en", "term": "parcel"}, "already a synonym of “package”"),
    ({"language": "en", "term": "box", "synonyms": "package"}, "already a glossary term"),
    ({"language": "en", "term": "Package"}, "already in the glossary"),
    ({"language": "en", "term": "card", "synonyms": "\n".join(f"c{n}" for n in range(31))}, "the limit is 30"),
])
async def test_a_refused_term_is_explained_on_the_page_with_what_was_typed(client, crm, staff, fields,  # type: ignore[no-untyped-def]
                                                                           message) -> None:
    await crm.glossary.add_term(language="en", term="package", synonyms=["parcel"])
    csrf = await session_for(crm, staff.admin, client)
    response = await client.post("/kb/glossary", data={"csrf_token": csrf, "synonyms": "", **fields})
    assert response.status_code == 400
    assert message in flash_error(response.text)
    if fields["term"]:
        assert f'value="{fields["term"]}"' in response.text  # the form keeps what was typed
    assert glossary(await crm.glossary.list_terms()) == [("en", "package", ("parcel",))]


async def test_a_refused_edit_is_explained_on_the_edit_form(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    await crm.glossary.add_term(language="en", term="package", synonyms=["parcel"])
    refund = await crm.glossary.add_term(language="en", term="refund")
    csrf = await session_for(crm, staff.supervisor, client)
    response = await client.post(f"/kb/glossary/{refund.id}/edit", data={
        "csrf_token": csrf, "language": "en", "term": "refund", "synonyms": "money back\nparcel"})
    assert response.status_code == 400
    assert "already a synonym of “package”" in flash_error(response.text)
    assert "money back\nparcel</textarea>" in response.text
    assert (await crm.glossary.get(term_id=refund.id)).synonyms == ()


async def test_the_list_filters_by_language_and_answers_htmx_with_the_list_only(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    package = await crm.glossary.add_term(language="en", term="package", synonyms=["parcel"])
    huabei = await crm.glossary.add_term(language="zh", term="花呗", synonyms=["蚂蚁花呗"])
    await crm.glossary.add_term(language="en", term=EVIL[:40])
    await session_for(crm, staff.supervisor, client)

    everything = (await client.get("/kb/glossary")).text
    assert len(term_ids(everything)) == 3 and EVIL[:40] not in everything and "&lt;img" in everything
    assert "English (2)" in everything and "Chinese (中文) (1)" in everything
    chinese = await client.get("/kb/glossary", params={"language": "zh"})
    assert term_ids(chinese.text) == [huabei.id] and "<html" in chinese.text
    fragment = await client.get("/kb/glossary", params={"language": "en"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert package.id in term_ids(fragment.text) and huabei.id not in term_ids(fragment.text)
    assert 'href="/kb/glossary/export.csv?language=en"' in fragment.text


async def test_import_shows_bad_rows_by_line_and_export_downloads_what_imports_back(client, crm, staff, bus) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    data = ("\ufefflanguage,term,synonyms\r\nzh,花呗,蚂蚁花呗|花唄\r\nen,package,parcel|box\r\n"
            "en,parcel,\r\nzh,借呗,蚂蚁借呗,分期\r\n").encode()
    imported = await client.post("/kb/glossary/import", data={"csrf_token": csrf},
                                 files={"file": ("glossary.csv", data, "text/csv")})
    assert imported.status_code == 200, imported.text[:2000]
    report = re.search(r'<section class="card" role="status" id="import-report">.*?</section>', imported.text, re.S)
    assert report, imported.text[:3000]
    assert re.findall(r'<span class="stat[^"]*">(\d+)</span><span class="muted small">(\w+)</span>',
                      report.group(0)) == [("4", "read"), ("2", "created"), ("0", "updated"), ("0", "unchanged"),
                                           ("2", "rejected")]
    assert "line 4</td><td>“parcel” is already a synonym of “package”" in report.group(0)
    assert "line 5</td><td>more cells than the header has" in report.group(0)
    assert glossary(await crm.glossary.list_terms()) == [("en", "package", ("parcel", "box")),
                                                        ("zh", "花呗", ("蚂蚁花呗", "花唄"))]
    assert len(bus.of(KnowledgeBaseChanged)) == 1

    exported = await client.get("/kb/glossary/export.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == 'attachment; filename="kb-glossary.csv"'
    assert exported.content.startswith(b"\xef\xbb\xbf")
    assert exported.content.decode("utf-8-sig").splitlines() == [
        "language,term,synonyms", "en,package,parcel|box", "zh,花呗,蚂蚁花呗|花唄"]
    only_zh = await client.get("/kb/glossary/export.csv", params={"language": "zh"})
    assert only_zh.content.decode("utf-8-sig").splitlines()[1:] == ["zh,花呗,蚂蚁花呗|花唄"]
    assert 'filename="kb-glossary-zh.csv"' in only_zh.headers["content-disposition"]

    again = await client.post("/kb/glossary/import", data={"csrf_token": csrf},
                              files={"file": ("export.csv", exported.content, "text/csv")})
    assert again.status_code == 200
    assert '<span class="stat">2</span><span class="muted small">unchanged</span>' in again.text
    assert len(bus.of(KnowledgeBaseChanged)) == 1  # nothing changed: no new revision


@pytest.mark.parametrize(("upload", "message"), [
    (None, "Choose a CSV file"),
    (("latin1.csv", "language,term\nen,café\n".encode("latin-1")), "latin1.csv: line 2: not UTF-8"),
    (("words.csv", b"en,package,parcel\n"), "no \u201cterm\u201d column"),
    (("big.csv", b"language,term\n" + b"en,x\n" * 500_000), "larger than 2 MB"),
])
async def test_an_unusable_upload_is_an_error_on_the_page(client, crm, staff, upload, message) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    files = {"file": (*upload, "text/csv")} if upload else None
    response = await client.post("/kb/glossary/import", data={"csrf_token": csrf}, files=files)
    assert response.status_code == 400
    assert message in flash_error(response.text)
    assert await crm.glossary.list_terms() == []
