"""Customers in the console: search, the customer 360 with the sample shop's data, a supervisor's points adjustment
(refused for agents, explained when wrong), one-time link codes that really link a chat, and customer text shown
inert."""

from __future__ import annotations

import re

import pytest

from crm_store.enums import Channel
from kefu.sample_data import load_sample_shop
from tests.console.conftest import session_for

XSS = "<script>alert(1)</script>"


@pytest.fixture
async def shop(crm):  # type: ignore[no-untyped-def]
    await load_sample_shop(crm)
    lina = await crm.customers.find_by_contact(email="li.na@example.cn")
    wang = await crm.customers.find_by_contact(email="wang.xiaoming@example.cn")
    assert lina and wang
    return {"lina": lina, "wang": wang}


def form_key(page: str) -> str:
    match = re.search(r'name="key" value="([0-9a-f]+)"', page)
    assert match, page[:500]
    return match.group(1)


async def test_search_finds_customers_by_name_email_phone_and_chat_id(client, crm, staff, shop) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, staff.agent, client)
    for query in ("王小明", "WANG.XIAOMING@example.cn", "500100202", f"#{shop['wang'].id}"):
        page = await client.get("/customers", params={"q": query})
        assert page.status_code == 200, query
        assert f'href="/customers/{shop["wang"].id}"' in page.text, query
        assert f'href="/customers/{shop["lina"].id}"' not in page.text, query
    lina = await client.get("/customers", params={"q": "+86 139 1234 5678"})
    assert lina.status_code == 200
    empty = await client.get("/customers", params={"q": "nobody-like-this"})
    assert "No customer matches" in empty.text
    # HTMX live search gets only the results fragment
    fragment = await client.get("/customers", params={"q": "王小明"}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and f'/customers/{shop["wang"].id}' in fragment.text


async def test_search_pages_newest_first(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    made = [await crm.customers.create(name=f"Pager {n:02d}") for n in range(30)]
    await session_for(crm, staff.agent, client)
    first = await client.get("/customers", params={"q": "Pager"})
    ids = [int(i) for i in re.findall(r'href="/customers/(\d+)"', first.text)]
    assert ids == [c.id for c in reversed(made)][:25]
    cursor = re.search(r'before=(\d+)', first.text)
    assert cursor
    second = await client.get("/customers", params={"q": "Pager", "before": cursor.group(1)})
    assert [int(i) for i in re.findall(r'href="/customers/(\d+)"', second.text)] == [c.id for c in made[:5]][::-1]
    assert "Next page" not in second.text


async def test_the_360_shows_profile_loyalty_orders_tickets_and_timeline(client, crm, staff, shop) -> None:  # type: ignore[no-untyped-def]
    wang = shop["wang"]
    await crm.customers.set_consent(customer_id=wang.id, consent=True)
    await session_for(crm, staff.agent, client)
    page = await client.get(f"/customers/{wang.id}")
    assert page.status_code == 200
    html = page.text
    summary = await crm.loyalty.summary(customer_id=wang.id)
    assert "王小明" in html and "wang.xiaoming@example.cn" in html
    assert "telegram" in html and "500100202" in html and "Linked" in html  # identity, linked
    assert "Consented" in html
    assert f"{summary.balance:,}" in html and summary.tier.name in html  # type: ignore[union-attr]
    assert "KT-1028" in html and "KT-1001" in html  # orders
    (ticket,) = [t for t in (await crm.timeline.customer_360(customer_id=wang.id)).tickets]
    assert f'href="/conversations/{ticket.conversation_id}"' in html and "Change the delivery address" in html
    assert "我的订单 KT-1028 什么时候到？" in html  # the timeline
    # agents see no adjustment form; they may create link codes
    assert f'action="/customers/{wang.id}/points"' not in html
    assert f'action="/customers/{wang.id}/link-token"' in html


async def test_surveys_and_courses_show_on_the_360(client, crm, staff, shop) -> None:  # type: ignore[no-untyped-def]
    lina = shop["lina"]
    await crm.surveys.define_survey(key="nps-test", kind="nps", title="How likely", questions=[
        {"id": "score", "kind": "rating", "prompt": {"en": "Recommend us?"}, "min": 0, "max": 10},
        {"id": "why", "kind": "text", "prompt": {"en": "Why?"}, "optional": True},
    ])
    invitation = await crm.surveys.invite(customer_id=lina.id, key="nps-test", campaign="spring")
    await crm.surveys.answer(invitation_id=invitation.id, question_id="score", value=9, channel=Channel.TELEGRAM,
                             external_id="500100201")
    await crm.surveys.answer(invitation_id=invitation.id, question_id="why", value=f"Great tea {XSS}",
                             channel=Channel.TELEGRAM, external_id="500100201")
    course = (await crm.courses.catalogue())[0]
    await crm.courses.enroll(customer_id=lina.id, course_id=course.id)
    await session_for(crm, staff.agent, client)
    html = (await client.get(f"/customers/{lina.id}")).text
    assert "How likely" in html and "Recommend us?" in html and ">9<" in html
    assert "Great tea &lt;script&gt;alert(1)&lt;/script&gt;" in html and XSS not in html
    assert course.title in html and f"0/{course.lesson_count} lessons" in html


async def test_a_supervisor_adjusts_points_with_a_reason_and_it_reaches_the_ledger(client, crm, staff, shop) -> None:  # type: ignore[no-untyped-def]
    lina = shop["lina"]
    before = (await crm.loyalty.summary(customer_id=lina.id)).balance
    csrf = await session_for(crm, staff.supervisor, client)
    page = await client.get(f"/customers/{lina.id}")
    key = form_key(page.text)
    data = {"csrf_token": csrf, "points": "-25", "reason": "Goodwill correction", "key": key}
    posted = await client.post(f"/customers/{lina.id}/points", data=data)
    assert posted.status_code == 303 and posted.headers["location"].startswith(f"/customers/{lina.id}?notice=")
    again = await client.post(f"/customers/{lina.id}/points", data=data)  # a double click posts once
    assert again.status_code == 303
    assert (await crm.loyalty.summary(customer_id=lina.id)).balance == before - 25
    (row, *_) = await crm.loyalty.history(customer_id=lina.id, limit=5)
    assert (row.kind, row.points, row.reason, row.agent_id) == ("adjust", -25, "Goodwill correction",
                                                                 staff.supervisor.id)
    shown = await client.get(posted.headers["location"])
    assert "Points adjusted" in shown.text and "Goodwill correction" in shown.text and "Supervisor" in shown.text
    assert await crm.loyalty.ledger_sum(customer_id=lina.id) == before - 25


@pytest.mark.parametrize(("points", "reason", "message"), [
    ("", "why", "whole number"),
    ("ten", "why", "whole number"),
    ("0", "why", "zero points"),
    ("50", "   ", "Say why"),
    ("-999999", "too much", "cannot go below zero"),
    ("5000000", "huge", "at most 1,000,000"),
])
async def test_a_wrong_adjustment_is_explained_on_the_page(client, crm, staff, shop, points, reason,  # type: ignore[no-untyped-def]
                                                           message) -> None:
    lina = shop["lina"]
    before = await crm.loyalty.history(customer_id=lina.id)
    csrf = await session_for(crm, staff.admin, client)
    response = await client.post(f"/customers/{lina.id}/points",
                                 data={"csrf_token": csrf, "points": points, "reason": reason, "key": "k1"})
    assert response.status_code == 400
    assert message in response.text and 'class="flash flash-error"' in response.text
    assert 'name="reason"' in response.text and " open>" in response.text  # the form stays open with the input
    assert await crm.loyalty.history(customer_id=lina.id) == before


async def test_an_agent_cannot_adjust_points(client, crm, staff, shop) -> None:  # type: ignore[no-untyped-def]
    lina = shop["lina"]
    before = (await crm.loyalty.summary(customer_id=lina.id)).balance
    csrf = await session_for(crm, staff.agent, client)
    response = await client.post(f"/customers/{lina.id}/points",
                                 data={"csrf_token": csrf, "points": "1000", "reason": "friend", "key": "x"})
    assert response.status_code == 403
    assert (await crm.loyalty.summary(customer_id=lina.id)).balance == before


async def test_a_link_code_is_shown_once_and_links_a_chat(client, crm, staff, shop) -> None:  # type: ignore[no-untyped-def]
    wang = shop["wang"]
    csrf = await session_for(crm, staff.agent, client)
    response = await client.post(f"/customers/{wang.id}/link-token", data={"csrf_token": csrf})
    assert response.status_code == 201
    token = re.search(r'<code id="new-link-code">([A-Za-z0-9_-]+)</code>', response.text)
    assert token, response.text[:1000]
    code = token.group(1)
    assert f"/start link_{code}" in response.text and f"/link {code}" in response.text
    assert f"/webchat?link={code}" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert code not in (await client.get(f"/customers/{wang.id}")).text  # shown only once
    redeemed = await crm.customers.redeem_link_token(token=code, channel=Channel.WEBCHAT, external_id="web-new-1")
    assert redeemed.customer.id == wang.id
    page = await client.get(f"/customers/{wang.id}")
    assert "web-new-1" in page.text


async def test_customer_text_is_inert(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    evil = await crm.customers.create(name=XSS, email="evil@example.com", tags=[f"<b>{XSS}</b>"])
    await crm.conversations.record_incoming(channel=Channel.WEBCHAT, external_id="web-evil",
                                            text=f"hello {XSS}", channel_message_id="m1", display_name=XSS)
    await crm.customers.link_identity(channel=Channel.WEBCHAT, external_id="web-evil", customer_id=evil.id)
    await session_for(crm, staff.supervisor, client)
    for url in (f"/customers/{evil.id}", "/customers?q=script", "/customers"):
        html = (await client.get(url)).text
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
        assert "<b>" not in html, url


async def test_unknown_and_merged_customers(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    assert (await client.get("/customers/999999")).status_code == 404
    assert (await client.post("/customers/999999/points",
                              data={"csrf_token": csrf, "points": "5", "reason": "x"})).status_code == 404
    assert (await client.post("/customers/999999/link-token", data={"csrf_token": csrf})).status_code == 404
    assert (await client.get("/customers/not-a-number")).status_code == 422
    a = await crm.customers.create(name="Old record")
    b = await crm.customers.create(name="Kept record")
    await crm.customers.merge(source_id=a.id, target_id=b.id)
    page = await client.get(f"/customers/{a.id}")
    assert page.status_code == 200 and f'href="/customers/{b.id}"' in page.text and "merged into" in page.text
    refused = await client.post(f"/customers/{a.id}/link-token", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "merged" in refused.text
