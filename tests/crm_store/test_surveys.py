"""Surveys: CSAT sent with a ticket's resolution, NPS by campaign, one answer per question, expiry, results."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.errors import ConflictError
from crm_store.events import SurveyAnswered, SurveyInvited
from crm_store.services.surveys import InvalidSurvey, NoChat, OptedOut
from tests.crm_store.surveying import seed_csat, seed_nps
from tests.support import make_agent, make_chat


async def resolved_ticket(crm, *, external_id: str = "500", channel: str = "telegram"):  # type: ignore[no-untyped-def]
    agent = await make_agent(crm, email=f"a{external_id}@example.com")
    chat = await make_chat(crm, external_id=external_id, channel=channel, text="my tea never arrived")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent.id)
    await crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=agent.id)
    return chat, ticket, agent


async def test_resolving_a_ticket_sends_the_csat_survey_once(crm, bus) -> None:
    chat, ticket, agent = await resolved_ticket(crm)
    invited = bus.of(SurveyInvited)
    assert len(invited) == 1
    event = invited[0]
    assert (event.kind, event.channel, event.external_id) == ("csat", "telegram", "500")
    assert event.conversation_id == chat.conversation.id and event.customer_id == chat.customer_id
    invitation = await crm.surveys.invitation(invitation_id=event.invitation_id)
    assert invitation.ticket_id == ticket.id and invitation.agent_id == agent.id and invitation.status == "sent"
    assert invitation.expires_at - invitation.sent_at == timedelta(hours=72)
    # reopened and resolved again: the customer is not asked a second time
    await crm.conversations.change_status(ticket_id=ticket.id, status="open", by_agent_id=agent.id)
    await crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=agent.id)
    assert len(bus.of(SurveyInvited)) == 1


async def test_no_csat_when_asked_not_to_or_opted_out(crm, bus) -> None:
    chat = await make_chat(crm, external_id="501")
    ticket = await crm.conversations.hand_off(conversation_id=chat.conversation.id, reason="customer_asked")
    await crm.conversations.resolve(ticket_id=ticket.id, send_csat=False)
    assert bus.of(SurveyInvited) == []

    opted = await make_chat(crm, external_id="502")
    await crm.customers.set_consent(customer_id=opted.customer_id, consent=False)  # /stop
    ticket = await crm.conversations.hand_off(conversation_id=opted.conversation.id, reason="customer_asked")
    resolved = await crm.conversations.resolve(ticket_id=ticket.id)
    assert resolved.status == "resolved" and bus.of(SurveyInvited) == []
    with pytest.raises(OptedOut):
        await crm.surveys.invite(customer_id=opted.customer_id, key="nps", campaign="q4")


async def test_answers_rating_then_comment_complete_the_invitation(crm, bus) -> None:
    chat, _, _ = await resolved_ticket(crm)
    invitation_id = bus.of(SurveyInvited)[0].invitation_id
    _, first = await crm.surveys.next_question(invitation_id=invitation_id)
    assert first is not None and first.id == "rating" and (first.min, first.max) == (1, 5)

    rated = await crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=4,
                                     channel="telegram", external_id="500")
    assert rated.status == "ok" and rated.invitation.score == 4 and rated.invitation.status == "partial"
    assert rated.next_question is not None and rated.next_question.id == "comment"
    # a double tap on another rating: the first answer stands
    again = await crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=1,
                                     channel="telegram", external_id="500")
    assert again.status == "duplicate" and again.invitation.score == 4

    done = await crm.surveys.answer(invitation_id=invitation_id, question_id="comment", value="Quick and kind",
                                    channel="telegram", external_id="500")
    assert done.status == "ok" and done.next_question is None and done.invitation.status == "completed"
    assert await crm.surveys.answers(invitation_id=invitation_id) == {"rating": 4, "comment": "Quick and kind"}
    assert [e.completed for e in bus.of(SurveyAnswered)] == [False, True]
    kinds = [e.kind for e in await crm.timeline.timeline(customer_id=chat.customer_id)]
    assert "survey.sent" in kinds and "survey.answered" in kinds


async def test_answers_from_another_chat_out_of_range_or_expired_are_refused(crm, bus, settings) -> None:
    await resolved_ticket(crm)
    invitation_id = bus.of(SurveyInvited)[0].invitation_id
    forged = await crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=5,
                                      channel="telegram", external_id="999")
    assert forged.status == "not_found" and forged.invitation is None
    unknown = await crm.surveys.answer(invitation_id=invitation_id + 1000, question_id="rating", value=5,
                                       channel="telegram", external_id="500")
    assert unknown.status == "not_found"
    out_of_range = await crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=9,
                                            channel="telegram", external_id="500")
    assert out_of_range.status == "invalid" and out_of_range.next_question.id == "rating"
    not_skippable = await crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=None,
                                             channel="telegram", external_id="500")
    assert not_skippable.status == "invalid"

    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.SurveyInvitation).values(expires_at=utcnow() - timedelta(minutes=1)))
        await s.commit()
    late = await crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=5,
                                    channel="telegram", external_id="500")
    assert late.status == "expired" and late.invitation.status == "expired"
    assert await crm.surveys.answers(invitation_id=invitation_id) == {}


async def test_expire_due_marks_only_open_invitations_past_their_time(crm, bus) -> None:
    await resolved_ticket(crm, external_id="600")
    await resolved_ticket(crm, external_id="601")
    first, second = (e.invitation_id for e in bus.of(SurveyInvited))
    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.SurveyInvitation).where(m.SurveyInvitation.id == first)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    assert await crm.surveys.expire_due() == 1
    assert (await crm.surveys.invitation(invitation_id=first)).status == "expired"
    assert (await crm.surveys.invitation(invitation_id=second)).status == "sent"


async def test_concurrent_answers_to_one_question_store_one(crm, bus) -> None:
    await resolved_ticket(crm, external_id="700")
    invitation_id = bus.of(SurveyInvited)[0].invitation_id
    results = await asyncio.gather(*[
        crm.surveys.answer(invitation_id=invitation_id, question_id="rating", value=v, channel="telegram",
                           external_id="700") for v in (1, 2, 3, 4, 5)
    ])
    assert sorted(r.status for r in results) == ["duplicate"] * 4 + ["ok"]
    async with crm.db.sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(m.SurveyAnswer)) == 1
    winner = next(r for r in results if r.status == "ok")
    assert (await crm.surveys.invitation(invitation_id=invitation_id)).score == winner.invitation.score


async def test_nps_campaign_reaches_the_latest_chat_once_and_scores(crm, bus) -> None:
    customers = []
    for i, score in enumerate([10, 9, 8, 7, 3]):
        chat = await make_chat(crm, external_id=f"w{i}", channel="webchat", text="hi")
        customers.append((chat, score))
    for chat, _ in customers:
        sent = await crm.surveys.invite(customer_id=chat.customer_id, key="nps", campaign="2026-q4")
        again = await crm.surveys.invite(customer_id=chat.customer_id, key="nps", campaign="2026-q4")
        assert not sent.duplicate and again.duplicate and again.id == sent.id
        assert sent.channel == "webchat" and sent.conversation_id == chat.conversation.id
    assert len(bus.of(SurveyInvited)) == 5
    for i, ((_, score), event) in enumerate(zip(customers, bus.of(SurveyInvited), strict=True)):
        result = await crm.surveys.answer(invitation_id=event.invitation_id, question_id="score", value=score,
                                          channel="webchat", external_id=f"w{i}")
        assert result.status == "ok" and result.next_question.id == "why"
    results = await crm.surveys.results(key="nps", campaign="2026-q4")
    # promoters 10, 9; passives 8, 7; detractors 3: NPS = (2 - 1) / 5 = +20
    assert (results.sent, results.answered, results.promoters, results.passives, results.detractors) == (5, 5, 2, 2, 1)
    assert results.score == pytest.approx(20.0) and results.mean == pytest.approx(7.4)
    assert (await crm.surveys.results(key="nps", campaign="other")).sent == 0


async def test_a_customer_without_a_chat_cannot_be_asked(crm) -> None:
    customer = await crm.customers.create(name="Offline Olga", email="olga@example.com")
    with pytest.raises(NoChat):
        await crm.surveys.invite(customer_id=customer.id, key="nps", campaign="q4")


async def test_survey_definitions_are_validated(crm) -> None:
    with pytest.raises(InvalidSurvey, match="at least one question"):
        await crm.surveys.define_survey(key="empty", kind="csat", title="Empty", questions=[])
    with pytest.raises(InvalidSurvey, match="min < max"):
        await crm.surveys.define_survey(key="bad", kind="csat", title="Bad", questions=[
            {"id": "r", "kind": "rating", "min": 5, "max": 1, "prompt": {"en": "?"}}])
    with pytest.raises(InvalidSurvey, match="same id"):
        await crm.surveys.define_survey(key="dup", kind="csat", title="Dup", questions=[
            {"id": "r", "kind": "text", "prompt": {"en": "?"}}, {"id": "r", "kind": "text", "prompt": {"en": "?"}}])
    survey = await crm.surveys.define_survey(key="csat", kind="csat", title="CSAT with a reason", questions=[
        {"id": "rating", "kind": "rating", "min": 1, "max": 5, "prompt": {"en": "Rate us", "zh": "请评分"}},
        {"id": "reason", "kind": "choice", "options": ["speed", "friendliness", "answer"],
         "prompt": {"en": "What mattered most?", "zh": "您最看重什么？"}},
        {"id": "comment", "kind": "text", "optional": True, "prompt": {"en": "Anything else?"}},
    ])
    assert [q["id"] for q in survey.questions] == ["rating", "reason", "comment"]
    assert (await crm.surveys.get(key="csat")).questions[1]["options"] == ["speed", "friendliness", "answer"]


# --- results for the console ------------------------------------------------------------------------------------


async def test_csat_results_by_agent_team_and_week_are_the_hand_computed_ones(crm) -> None:
    seed = await seed_csat(crm)
    report = await crm.surveys.report(survey_id=seed.survey_id)
    assert (report.totals.sent, report.totals.answered, report.totals.mean, report.totals.score) == (9, 8, 3.625, 62.5)
    agents = {r.label: (r.sent, r.answered, round(r.mean, 3), round(r.score, 1)) for r in report.by_agent}
    assert agents == {"Ann": (3, 3, 3.667, 66.7), "Bob": (2, 2, 5.0, 100.0), "Cy": (4, 3, 2.667, 33.3)}
    teams = {r.label: (r.sent, r.answered, r.mean, r.satisfied) for r in report.by_team}
    assert teams == {"Care team": (5, 5, 4.2, 4), "Sales team": (4, 3, 8 / 3, 1)}
    weeks = [(r.label, r.sent, r.answered, round(r.mean, 3), r.score) for r in report.by_week]
    assert weeks == [("2024-W10", 4, 3, 4.667, 100.0), ("2024-W11", 5, 5, 3.0, 40.0)]

    week_11 = await crm.surveys.report(survey_id=seed.survey_id, start=date(2024, 3, 11), end=date(2024, 3, 17))
    assert (week_11.totals.sent, week_11.totals.answered, week_11.totals.mean) == (5, 5, 3.0)
    assert [r.label for r in week_11.by_week] == ["2024-W11"]
    none = await crm.surveys.report(survey_id=seed.survey_id, campaign="q9")
    assert (none.totals.sent, none.totals.mean, none.totals.score, none.by_agent) == (0, None, None, ())


async def test_nps_results_count_promoters_passives_and_detractors_per_campaign(crm) -> None:
    survey_id = await seed_nps(crm)
    q1 = await crm.surveys.report(survey_id=survey_id, campaign="q1")
    t = q1.totals
    assert (t.answered, t.promoters, t.passives, t.detractors, round(t.score, 2)) == (7, 3, 2, 2, 14.29)
    everything = (await crm.surveys.report(survey_id=survey_id)).totals
    assert (everything.answered, everything.detractors, everything.score) == (8, 3, 0.0)
    assert (await crm.surveys.report(survey_id=survey_id)).campaigns == ("q1", "q2")
    listed = {s.survey.key: s.totals for s in await crm.surveys.overview()}
    assert listed["nps"].answered == 8 and listed["csat"].sent == 0


async def test_comments_are_paged_newest_first_with_score_customer_and_agent(crm) -> None:
    seed = await seed_csat(crm, comments={0: "Great", 2: "Slow", 5: "<script>alert(1)</script>"})
    first = await crm.surveys.comments(survey_id=seed.survey_id, limit=2)
    assert first.total == 3
    assert [(c.text, c.score, c.agent_name, c.customer_name) for c in first.comments] == [
        ("<script>alert(1)</script>", 1, "Cy", "Rita Rater"), ("Slow", 2, "Ann", "Rita Rater")]
    second = await crm.surveys.comments(survey_id=seed.survey_id, limit=2, offset=2)
    assert [c.text for c in second.comments] == ["Great"]
    march_11 = await crm.surveys.comments(survey_id=seed.survey_id, start=date(2024, 3, 11), end=date(2024, 3, 11))
    assert [c.text for c in march_11.comments] == ["Slow"]


async def test_creating_and_updating_a_survey_keeps_key_and_kind(crm) -> None:
    questions = [{"id": "stars", "kind": "rating", "min": 1, "max": 5, "prompt": {"en": "Stars?", "zh": "几星？"}}]
    made = await crm.surveys.create_survey(key="after-delivery", kind="csat", title="After delivery",
                                           questions=questions, expires_after_hours=48)
    with pytest.raises(ConflictError):
        await crm.surveys.create_survey(key="after-delivery", kind="nps", title="Again", questions=questions)
    with pytest.raises(ConflictError):
        await crm.surveys.create_survey(key="csat", kind="csat", title="Shadow", questions=questions)
    with pytest.raises(InvalidSurvey, match="key"):
        await crm.surveys.create_survey(key="Bad Key!", kind="csat", title="x", questions=questions)
    with pytest.raises(InvalidSurvey, match="title"):
        await crm.surveys.update_survey(survey_id=made.id, title=" ", questions=questions, expires_after_hours=1,
                                        active=True)
    with pytest.raises(InvalidSurvey, match="Question 2"):
        await crm.surveys.update_survey(survey_id=made.id, title="T", expires_after_hours=1, active=True,
                                        questions=[*questions, {"id": "c", "kind": "choice", "options": ["a"],
                                                                "prompt": {"en": "?"}}])
    changed = await crm.surveys.update_survey(survey_id=made.id, title="After delivery (v2)", questions=questions,
                                              expires_after_hours=24, active=False)
    assert (changed.key, changed.kind, changed.title, changed.active, changed.expires_after_hours) == (
        "after-delivery", "csat", "After delivery (v2)", False, 24)
