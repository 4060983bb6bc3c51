"""The knowledge base in the console: write, edit, publish and unpublish articles (English and Chinese) and see
the live search follow; import files with bad rows reported by line; try a question and see the ranking and the
decision; agents read, only supervisors and admins write; article text is always shown inert."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from console.routes import kb as kb_routes
from crm_store.events import KnowledgeBaseChanged
from kefu.runtime import open_knowledge_base
from tests.console.conftest import BASE, session_for

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def kb(crm, encoders):  # type: ignore[no-untyped-def]
    return await open_knowledge_base(crm, follow_changes=False, encoders=encoders)


@pytest.fixture
async def kb_client(crm, attach, kb) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = attach(crm, kb=kb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


def article_id_of(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text[:500]
    match = re.fullmatch(r"/kb/(\d+)\?notice=\w+", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def decision_of(html: str) -> str:
    match = re.search(r'class="decision decision-(\w+)"', html)
    assert match, html[:2000]
    return match.group(1)


def ranked_ids(html: str) -> list[int]:
    table = re.search(r'<table class="table ranking">.*?</table>', html, re.S)
    return [int(i) for i in re.findall(r'href="/kb/(\d+)"', table.group(0))] if table else []


SHIPPING = {"question": "How long does shipping to Canada take?",
            "alt_questions": "When will my parcel reach Canada?\nDelivery time to Canada",
            "answer": "Parcels to **Canada** take 5–8 business days.", "tags": "shipping, canada", "language": "en"}


async def test_create_publish_edit_unpublish_round_trip_follows_in_search(kb_client, crm, staff, bus) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, kb_client)
    article_id = article_id_of(await kb_client.post("/kb/new", data={"csrf_token": csrf, **SHIPPING,
                                                                      "action": "draft"}))
    stored = await crm.knowledge.get(article_id=article_id)
    assert (stored.status, stored.alt_questions, stored.tags) == (
        "draft", ("When will my parcel reach Canada?", "Delivery time to Canada"), ("shipping", "canada"))
    page = await kb_client.get(f"/kb/{article_id}")
    assert "<strong>Canada</strong>" in page.text and "Publish" in page.text  # the Markdown answer, rendered
    question = "how many days does delivery to canada take"
    assert article_id not in ranked_ids((await kb_client.get("/kb/try", params={"q": question})).text)

    published = await kb_client.post(f"/kb/{article_id}/publish", data={"csrf_token": csrf})
    assert published.headers["location"] == f"/kb/{article_id}?notice=published"
    tried = (await kb_client.get("/kb/try", params={"q": question})).text
    assert ranked_ids(tried)[0] == article_id and decision_of(tried) in ("answer", "suggest")
    assert bus.of(KnowledgeBaseChanged)[-1].action == "published"

    edit = await kb_client.get(f"/kb/{article_id}/edit")
    assert "When will my parcel reach Canada?\nDelivery time to Canada</textarea>" in edit.text
    saved = await kb_client.post(f"/kb/{article_id}/edit", data={
        "csrf_token": csrf, **SHIPPING, "answer": "Parcels to Canada now take 3–5 business days."})
    assert saved.headers["location"] == f"/kb/{article_id}?notice=updated"
    assert (await crm.knowledge.get(article_id=article_id)).version == 2
    tried = (await kb_client.get("/kb/try", params={"q": "How long does shipping to Canada take?"})).text
    assert decision_of(tried) == "answer" and "3–5 business days" in tried

    await kb_client.post(f"/kb/{article_id}/unpublish", data={"csrf_token": csrf})
    assert (await crm.knowledge.get(article_id=article_id)).status == "draft"
    tried = (await kb_client.get("/kb/try", params={"q": "How long does shipping to Canada take?"})).text
    assert article_id not in ranked_ids(tried) and decision_of(tried) == "no_answer"


async def test_a_chinese_article_is_written_and_answers(kb_client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.admin, kb_client)
    article_id = article_id_of(await kb_client.post("/kb/new", data={
        "csrf_token": csrf, "language": "zh", "question": "可以开发票吗？", "alt_questions": "怎么开发票\n需要发票",
        "answer": "可以，下单时填写发票抬头即可。", "tags": "发票，订单", "action": "publish"}))
    stored = await crm.knowledge.get(article_id=article_id)
    assert (stored.language, stored.status, stored.tags) == ("zh", "published", ("发票", "订单"))
    listed = await kb_client.get("/kb", params={"language": "zh"})
    assert "可以开发票吗？" in listed.text
    tried = (await kb_client.get("/kb/try", params={"q": "可以开发票吗"})).text
    assert ranked_ids(tried)[0] == article_id and decision_of(tried) == "answer" and "发票抬头" in tried
    fragment = await kb_client.get("/kb/try", params={"q": "可以开发票吗"}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and decision_of(fragment.text) == "answer"


async def test_list_filters_by_text_language_and_status(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    await crm.knowledge.create_article(question="Do you ship to Canada?", answer="Yes.", language="en",
                                       status="published")
    await crm.knowledge.create_article(question="Do you ship to Mexico?", answer="Soon.", language="en")
    await crm.knowledge.create_article(question="你们发货到加拿大吗？", answer="是的。", language="zh",
                                       status="published")
    await session_for(crm, staff.agent, client)

    async def questions(**params: str) -> set[str]:
        html = (await client.get("/kb", params=params)).text
        return set(re.findall(r'<a href="/kb/\d+">([^<]+)</a>', html))

    assert await questions() == {"Do you ship to Canada?", "Do you ship to Mexico?", "你们发货到加拿大吗？"}
    assert await questions(q="mexico") == {"Do you ship to Mexico?"}
    assert await questions(language="zh") == {"你们发货到加拿大吗？"}
    assert await questions(status="draft") == {"Do you ship to Mexico?"}
    assert await questions(status="bogus", language="xx") == await questions()  # unknown filters are ignored


async def test_a_wrong_article_is_explained_and_the_form_keeps_the_input(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    response = await client.post("/kb/new", data={"csrf_token": csrf, "question": "  ", "answer": "Kept answer",
                                                  "language": "en"})
    assert response.status_code == 400 and "needs a question" in response.text and "Kept answer" in response.text
    response = await client.post("/kb/new", data={"csrf_token": csrf, "question": "Q?", "answer": "A",
                                                  "language": "fr"})
    assert response.status_code == 400 and "Unknown language" in response.text
    article = await crm.knowledge.create_article(question="Q?", answer="A", language="en")
    response = await client.post(f"/kb/{article.id}/edit", data={"csrf_token": csrf, "question": "Q?",
                                                                  "answer": "", "language": "en"})
    assert response.status_code == 400 and "needs an answer" in response.text
    assert await crm.knowledge.count() == 1
    for method, path in (("GET", "/kb/999999"), ("GET", "/kb/999999/edit"), ("POST", "/kb/999999/edit"),
                         ("POST", "/kb/999999/publish"), ("POST", "/kb/999999/unpublish")):
        response = await client.request(method, path, data={"csrf_token": csrf, "question": "Q", "answer": "A"})
        assert response.status_code == 404, (method, path)


async def test_article_text_is_inert(kb_client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    article = await crm.knowledge.create_article(
        question="Is <script>alert(1)</script> safe?", answer=f"Look: {EVIL} [click](javascript:alert(1))",
        alt_questions=[f"alt {EVIL}"], tags=[EVIL], language="en", status="published")
    await session_for(crm, staff.supervisor, kb_client)
    for url in (f"/kb/{article.id}", f"/kb/{article.id}/edit", "/kb",
                "/kb/try?q=Is+script+alert+safe"):
        html = (await kb_client.get(url)).text
        assert EVIL not in html and "<script>alert" not in html and 'href="javascript:' not in html, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in html or "&lt;script&gt;" in html, url


async def test_agents_read_but_cannot_write(kb_client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    article = await crm.knowledge.create_article(question="Q?", answer="A", language="en")
    csrf = await session_for(crm, staff.agent, kb_client)
    for path in ("/kb", f"/kb/{article.id}", "/kb/try?q=hello"):
        page = await kb_client.get(path)
        assert page.status_code == 200, path
        assert 'href="/kb/new"' not in page.text and "/publish" not in page.text, path
    for method, path in (("GET", "/kb/new"), ("POST", "/kb/new"), ("GET", f"/kb/{article.id}/edit"),
                         ("POST", f"/kb/{article.id}/edit"), ("POST", f"/kb/{article.id}/publish"),
                         ("POST", f"/kb/{article.id}/unpublish"), ("GET", "/kb/import"), ("POST", "/kb/import")):
        response = await kb_client.request(method, path, data={"csrf_token": csrf, "question": "x", "answer": "y"})
        assert response.status_code == 403, (method, path)
    assert (await crm.knowledge.get(article_id=article.id)).status == "draft"


async def test_try_without_a_knowledge_base_says_search_is_unavailable(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.agent, client)
    page = await client.get("/kb/try", params={"q": "hello"})
    assert page.status_code == 200 and "Search is unavailable" in page.text


def import_stats(html: str) -> dict[str, int]:
    found = re.findall(r'<span class="stat[^"]*">(\d+)</span><span class="muted small">(\w+)</span>', html)
    return {label: int(n) for n, label in found}


CSV = (
    "question,answer,alt_questions,tags,language,id\n"
    "Do you ship abroad?,We ship to 30 countries.,Ship overseas?|International shipping?,shipping,en,ship-1\n"
    "No answer here,,,,en,bad-1\n"
    "怎么退货？,七天内可退货。,,退货,zh,return-1\n"
    '"Broken, row",too,many,fields,en,x,extra\n'
)


async def test_import_reports_created_updated_unchanged_and_bad_rows_by_line(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)

    async def upload(name: str, content: bytes, **extra: str) -> httpx.Response:
        return await client.post("/kb/import", data={"csrf_token": csrf, **extra},
                                 files={"file": (name, content, "application/octet-stream")})

    first = await upload("faq.csv", CSV.encode())
    assert first.status_code == 200
    assert import_stats(first.text) == {"read": 4, "created": 2, "updated": 0, "unchanged": 0, "rejected": 2}
    assert re.search(r"line 3</td><td>missing answer", first.text)
    assert re.search(r"line 5</td><td>7 fields but the header has 6", first.text)
    assert {a.external_id for a in await crm.knowledge.list_articles(status="published")} == {"ship-1", "return-1"}

    again = await upload("faq.csv", CSV.replace("30 countries", "40 countries").encode(), draft="yes")
    assert import_stats(again.text) == {"read": 4, "created": 0, "updated": 2, "unchanged": 0, "rejected": 2}
    assert {a.external_id: a.status for a in await crm.knowledge.list_articles()} == {
        "ship-1": "draft", "return-1": "draft"}

    jsonl = "\n".join([json.dumps({"id": "j-1", "question": "Gift wrapping?", "answer": "Free."}), "{not json"])
    response = await upload("more.jsonl", jsonl.encode())
    assert response.status_code == 200 and re.search(r"line 2</td><td>", response.text)
    assert (await crm.knowledge.list_articles(query="Gift wrapping"))[0].external_id == "j-1"

    markdown = await client.post("/kb/import", data={"csrf_token": csrf}, files=[
        ("file", ("tea.md", b"# Which tea for mornings?\n\nTry **Dian Hong**.", "text/markdown")),
        ("file", ("broken.md", b"No heading, no front matter.", "text/markdown")),
    ])
    assert markdown.status_code == 200 and "broken.md, line 1</td><td>no question" in markdown.text
    assert await crm.knowledge.list_articles(query="Which tea for mornings")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("faq.txt", b"question,answer\nq,a\n", "unsupported import format"),
    ("faq.csv", b"question,answer\n\xff\xfe,bad\n", "not UTF-8"),
    ("faq.csv", b"title,body\nq,a\n", "question"),
    ("faq.csv", b"", "empty file"),
])
async def test_a_file_that_cannot_be_imported_is_refused_with_the_reason(client, crm, staff, name, content,  # type: ignore[no-untyped-def]
                                                                         message) -> None:
    csrf = await session_for(crm, staff.supervisor, client)
    response = await client.post("/kb/import", data={"csrf_token": csrf}, files={"file": (name, content)})
    assert response.status_code == 400 and message in response.text
    assert await crm.knowledge.count() == 0


async def test_an_upload_over_the_limit_or_missing_is_refused(client, crm, staff, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    monkeypatch.setattr(kb_routes, "MAX_UPLOAD_BYTES", 1024)
    big = ("question,answer\n" + "q,a\n" * 1000).encode()
    response = await client.post("/kb/import", data={"csrf_token": csrf}, files={"file": ("big.csv", big)})
    assert response.status_code == 400 and "larger than" in response.text
    response = await client.post("/kb/import", data={"csrf_token": csrf})
    assert response.status_code == 400 and "Choose a file" in response.text
    assert await crm.knowledge.count() == 0
