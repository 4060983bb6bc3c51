"""A customer's data: shown to them, exported (JSON, CSV), erased everywhere; the audit log is append-only and
keeps the erasure."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from crm_store import models as m
from crm_store.enums import AuditAction
from crm_store.errors import NotFound
from crm_store.services.privacy import AlreadyErased, MergedRecord
from tests.crm_store.surveying import seed_invitation
from tests.support import make_agent, make_tiers, personal_data_left

NAME = "Zebulon Quartermaine"
EMAIL = "zeb.quartermaine@example.org"
PHONE = "+1 415 555 0132"
NEEDLES = [NAME, "Quartermaine", EMAIL, "4155550132", PHONE, "415 555 0132"]


async def seed_person(crm):  # type: ignore[no-untyped-def]
    """A customer with something in every table that can hold a customer's data; and others who name them."""
    await make_tiers(crm)
    agent = await make_agent(crm, email="privacy-supervisor@example.com", role="supervisor")
    first = await crm.conversations.record_incoming(
        channel="telegram", external_id="7001", display_name=NAME,
        text=f"Hi, I'm {NAME}, mail me at {EMAIL} or call {PHONE}")
    customer_id = first.customer_id
    await crm.customers.update_profile(customer_id=customer_id, name=NAME, email=EMAIL, phone=PHONE,
                                       tags=["vip"])
    await crm.customers.set_consent(customer_id=customer_id, consent=True)
    await crm.updates.store(channel="telegram", bot_id="1", update_id=501, chat_id="7001", payload={
        "update_id": 501, "message": {"chat": {"id": 7001, "first_name": "Zebulon", "last_name": "Quartermaine"},
                                      "text": f"my e-mail is {EMAIL}"}})
    ticket = await crm.conversations.hand_off(conversation_id=first.conversation.id, reason="customer_asked",
                                              subject=f"Refund for {NAME}")
    await crm.conversations.add_note(conversation_id=first.conversation.id, agent_id=agent.id,
                                     text=f"Called {PHONE}, spoke to {NAME}")
    await crm.loyalty.adjust_points(customer_id=customer_id, points=50, reason=f"Sorry {NAME}", agent_id=agent.id,
                                    idempotency_key="adj-1")
    await crm.orders.record_order(customer_id=customer_id, external_ref="ORD-ZQ-1", amount="42.00",
                                  placed_at=datetime(2026, 1, 5, tzinfo=UTC))
    survey = await crm.surveys.get(key="csat")
    await seed_invitation(crm, survey_id=survey.id, customer_id=customer_id, score=2,
                          sent_at=datetime(2026, 1, 6, tzinfo=UTC), comment=f"{NAME} was kept waiting")
    await crm.customers.create_link_token(customer_id=customer_id, agent_id=agent.id)
    # The same person recorded twice, merged: erased with the record they were merged into.
    twin = await crm.customers.create(name=NAME, email=EMAIL, external_ref="shop-zq")
    await crm.customers.merge(source_id=twin.id, target_id=customer_id, agent_id=agent.id)
    # Someone else names them; an agent drafted an article from their question.
    await crm.conversations.record_incoming(channel="webchat", external_id="visitor-2", text=f"{PHONE} is mine?")
    other = await crm.conversations.record_incoming(channel="telegram", external_id="7002",
                                                    text=f"My friend {NAME} ({EMAIL}) sent me")
    article = await crm.knowledge.create_article(
        question="Where is my order?", answer="Track it under Orders.", language="en", status="published",
        alt_questions=[f"where is the order of {EMAIL}"])
    return customer_id, agent, ticket, other, article


async def test_erasure_leaves_no_name_email_or_phone_in_any_table_and_is_audited(crm, db) -> None:  # type: ignore[no-untyped-def]
    customer_id, agent, ticket, other, article = await seed_person(crm)
    assert len(await personal_data_left(db, NEEDLES)) > 10  # the search finds what is there
    revision = await crm.knowledge.revision()

    report = await crm.privacy.erase(customer_id=customer_id, agent_id=agent.id, actor_label=agent.email,
                                     ip="203.0.113.5")

    assert await personal_data_left(db, NEEDLES) == []
    assert len(report.customer_ids) == 2 and customer_id in report.customer_ids
    assert report.rows["channel_identities"] == 1 and report.rows["inbound_updates"] == 1
    assert report.rows["messages (named elsewhere)"] == 2 and report.rows["kb_articles (named elsewhere)"] == 1
    erased = await crm.customers.get(customer_id=customer_id)
    assert erased.erased_at is not None and erased.name == "" and erased.email is None
    assert not erased.marketing_consent
    # The figures stay: the ticket, the order, the score, the points.
    assert (await crm.conversations.get_ticket(ticket_id=ticket.id)).subject == "[erased]"
    assert (await crm.loyalty.summary(customer_id=customer_id, recent=0)).balance > 0
    assert len(await crm.orders.for_customer(customer_id=customer_id)) == 1
    # The other customer's message keeps its words but not the name; the article is re-indexed.
    transcript = await crm.conversations.transcript(conversation_id=other.conversation.id)
    assert transcript[0].text == "My friend [erased] ([erased]) sent me"
    assert list((await crm.knowledge.get(article_id=article.id)).alt_questions) == ["where is the order of [erased]"]
    assert await crm.knowledge.revision() > revision
    # The audit log says who erased whom, and when.
    page = await crm.audit.search(action=AuditAction.CUSTOMER_ERASED)
    assert len(page.entries) == 1
    entry = page.entries[0]
    assert (entry.agent_id, entry.subject_id, entry.ip) == (agent.id, str(customer_id), "203.0.113.5")
    assert entry.details["rows"]["messages"] == 2  # the first message and the note


async def test_erasure_refuses_a_merged_record_and_a_second_erasure(crm) -> None:  # type: ignore[no-untyped-def]
    customer_id, agent, *_ = await seed_person(crm)
    twin = (await crm.privacy.export(customer_id=customer_id)).tables["customers"][1]["id"]
    with pytest.raises(MergedRecord, match=f"erase customer {customer_id}"):
        await crm.privacy.erase(customer_id=twin, agent_id=agent.id)
    await crm.privacy.erase(customer_id=customer_id, agent_id=agent.id)
    with pytest.raises(AlreadyErased):
        await crm.privacy.erase(customer_id=customer_id, agent_id=agent.id)
    with pytest.raises(NotFound):
        await crm.privacy.erase(customer_id=999_999, agent_id=agent.id)


async def test_export_holds_every_table_of_theirs_as_json_and_csv(crm) -> None:  # type: ignore[no-untyped-def]
    customer_id, agent, *_ = await seed_person(crm)
    export = await crm.privacy.export(customer_id=customer_id, agent_id=agent.id, actor_label=agent.email)
    tables = export.tables
    assert {r["email"] for r in tables["customers"]} == {EMAIL}
    assert len(tables["channel_identities"]) == 1 and len(tables["inbound_updates"]) == 1
    assert any(EMAIL in r["text"] for r in tables["messages"])
    assert len(tables["orders"]) == 1 and len(tables["survey_answers"]) == 2
    assert len(tables["loyalty_transactions"]) == 2 and len(tables["link_tokens"]) == 1  # adjusted, earned
    assert "token_hash" not in tables["link_tokens"][0]
    assert len(tables["customer_merges"]) == 1 and tables["audit_log"]  # the points adjustment is about them
    document = json.loads(export.to_json())
    assert document["customer_id"] == customer_id and document["tables"]["orders"][0]["amount"] == "42.00"
    archive = zipfile.ZipFile(io.BytesIO(export.to_csv_zip()))
    assert set(archive.namelist()) == {f"{name}.csv" for name in tables}
    customers_csv = archive.read("customers.csv").decode("utf-8-sig")
    assert EMAIL in customers_csv and customers_csv.splitlines()[0].startswith("id,")
    assert (await crm.audit.search(action=AuditAction.CUSTOMER_EXPORTED)).entries[0].agent_id == agent.id


async def test_summary_and_erasure_request_from_the_chat(crm) -> None:  # type: ignore[no-untyped-def]
    customer_id, *_ = await seed_person(crm)
    summary = await crm.privacy.summary(customer_id=customer_id)
    assert (summary.name, summary.email, summary.channels) == (NAME, EMAIL, ("telegram",))
    assert summary.counts["orders"] == 1 and summary.points == 50 + 42 and not summary.erasure_pending
    first = await crm.privacy.request_erasure(customer_id=customer_id, channel="telegram")
    again = await crm.privacy.request_erasure(customer_id=customer_id, channel="telegram")
    assert first.id == again.id and first.status == "pending"
    assert [r.id for r in await crm.privacy.requests()] == [first.id]
    assert (await crm.privacy.summary(customer_id=customer_id)).erasure_pending
    await crm.privacy.erase(customer_id=customer_id)
    assert await crm.privacy.requests() == [] and (await crm.privacy.requests(status="done"))[0].id == first.id
    actions = [e.action for e in (await crm.audit.search(subject_type="customer",
                                                           subject_id=str(customer_id))).entries]
    assert actions[:2] == ["customer.erased", "customer.data_shown"] and "customer.erasure_requested" in actions


async def test_the_audit_log_refuses_update_and_delete(crm, db) -> None:  # type: ignore[no-untyped-def]
    entry = await crm.audit.record(action=AuditAction.LOGIN, agent_id=1, actor_label="a@example.com", ip="::1")
    for statement in (update(m.AuditEntry).where(m.AuditEntry.id == entry.id).values(actor_label="someone else"),
                      delete(m.AuditEntry).where(m.AuditEntry.id == entry.id)):
        async with db.sessionmaker() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(statement)
            await session.rollback()
    async with db.sessionmaker() as session:
        assert (await session.scalar(select(m.AuditEntry.actor_label))) == "a@example.com"
        assert (await session.scalar(text("SELECT count(*) FROM audit_log"))) == 1


async def test_audit_search_filters_and_pages(crm) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        await crm.audit.record(action=AuditAction.CUSTOMER_VIEWED, agent_id=n % 2, subject_type="customer",
                               subject_id=n)
    await crm.audit.record(action=AuditAction.LOGIN, agent_id=1)
    assert len((await crm.audit.search(action="customer")).entries) == 5  # a family: customer.*
    assert len((await crm.audit.search(action="customer.viewed", agent_id=1)).entries) == 2
    first = await crm.audit.search(limit=4)
    assert len(first.entries) == 4 and first.next_before is not None
    rest = await crm.audit.search(limit=4, before=first.next_before)
    assert len(rest.entries) == 2 and rest.next_before is None
    assert (await crm.audit.search(subject_type="customer", subject_id="3")).entries[0].subject_id == "3"
