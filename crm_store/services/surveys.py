"""Surveys: CSAT after a resolved ticket, NPS when a campaign sends it; one answer per customer per invitation,
answerable until the invitation expires.

A survey is a list of questions (`SurveyQuestion`): ratings and choices answered with buttons, free text typed in
the chat (optional ones can be skipped). An invitation is one survey sent to one customer's chat; its answers are
stored one row per question, so a double tap or a redelivered answer is stored once (a unique constraint).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import String, case, cast, exists, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import (
    CommentPage,
    CustomerSurvey,
    InvitationView,
    ScoreRow,
    SurveyComment,
    SurveyReport,
    SurveySummary,
    SurveyView,
    TimelineEntry,
)
from crm_store.enums import Channel, ConversationStatus, InvitationStatus, SurveyKind, SurveyQuestionKind
from crm_store.errors import ConflictError, DomainError, NotFound
from crm_store.events import SurveyAnswered, SurveyInvited
from crm_store.services.base import Service
from crm_store.services.timeline import timeline_source
from crm_store.uow import UnitOfWork

CSAT_KEY = "csat"
NPS_KEY = "nps"
# Channels the bot can ask a survey on.
CHAT_CHANNELS = (Channel.TELEGRAM, Channel.WEBCHAT)
SURVEY_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_TITLE = 200
MAX_EXPIRY_HOURS = 24 * 365


class SurveyQuestion(BaseModel):
    """One question; `prompt` holds its text per language ({"en": ..., "zh": ...})."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]{1,50}$")
    kind: SurveyQuestionKind
    prompt: dict[str, str]
    optional: bool = False
    min: int | None = None  # ratings: the scale
    max: int | None = None
    options: list[str] = Field(default_factory=list)  # choices: the values offered

    @model_validator(mode="after")
    def _consistent(self) -> SurveyQuestion:
        if not self.prompt.get("en"):
            raise ValueError(f"question {self.id!r} needs an English prompt")
        rating = self.kind == SurveyQuestionKind.RATING
        if rating and (self.min is None or self.max is None or not 0 <= self.min < self.max <= 10):
            raise ValueError(f"rating question {self.id!r} needs 0 <= min < max <= 10")
        if self.kind == SurveyQuestionKind.CHOICE and len(self.options) < 2:
            raise ValueError(f"choice question {self.id!r} needs at least two options")
        return self

    def text(self, language: str) -> str:
        return self.prompt.get(language) or self.prompt["en"]

    def check(self, value: int | str | None) -> int | str | None:
        """The answer as stored; ValueError when it does not fit the question."""
        if value is None:
            if not self.optional:
                raise ValueError("this question cannot be skipped")
            return None
        if self.kind == SurveyQuestionKind.RATING:
            number = int(value)
            if not (self.min or 0) <= number <= (self.max or 0):
                raise ValueError(f"the answer must be between {self.min} and {self.max}")
            return number
        if self.kind == SurveyQuestionKind.CHOICE:
            if str(value) not in self.options:
                raise ValueError("not one of the options")
            return str(value)
        answer = str(value).strip()
        if not answer:
            raise ValueError("the answer is empty")
        return answer[:4000]


def parse_questions(raw: list[Any]) -> list[SurveyQuestion]:
    """Validate a survey's questions; a DomainError that says which one is wrong."""
    if not raw:
        raise InvalidSurvey("A survey needs at least one question.")
    questions = []
    for n, q in enumerate(raw, start=1):
        try:
            questions.append(SurveyQuestion.model_validate(q))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = f" ({first['loc'][0]})" if first["loc"] else ""
            raise InvalidSurvey(f"Question {n}{field}: {first['msg'].removeprefix('Value error, ')}") from None
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise InvalidSurvey("Two questions have the same id.")
    return questions


CSAT_QUESTIONS: list[dict[str, Any]] = [
    {"id": "rating", "kind": "rating", "min": 1, "max": 5,
     "prompt": {"en": "How satisfied are you with the help you got? (1 = very unsatisfied, 5 = very satisfied)",
                "zh": "您对本次服务满意吗？（1 = 非常不满意，5 = 非常满意）"}},
    {"id": "comment", "kind": "text", "optional": True,
     "prompt": {"en": "Thank you! Anything you'd like to add? Type it here, or tap Skip.",
                "zh": "谢谢！还有什么想告诉我们的吗？请直接输入，或点击“跳过”。"}},
]
NPS_QUESTIONS: list[dict[str, Any]] = [
    {"id": "score", "kind": "rating", "min": 0, "max": 10,
     "prompt": {"en": "How likely are you to recommend Kefu Tea & Co. to a friend? (0 = not at all, 10 = extremely)",
                "zh": "您有多大可能向朋友推荐 Kefu Tea & Co.？（0 = 完全不可能，10 = 非常可能）"}},
    {"id": "why", "kind": "text", "optional": True,
     "prompt": {"en": "Thanks! What is the main reason for your score? Type it here, or tap Skip.",
                "zh": "谢谢！您给出这个分数的主要原因是什么？请直接输入，或点击“跳过”。"}},
]
DEFAULTS = {CSAT_KEY: (SurveyKind.CSAT, "Customer satisfaction (CSAT)", CSAT_QUESTIONS),
            NPS_KEY: (SurveyKind.NPS, "Net Promoter Score (NPS)", NPS_QUESTIONS)}


@dataclass(frozen=True)
class AnswerResult:
    status: Literal["ok", "duplicate", "expired", "not_found", "invalid"]
    invitation: InvitationView | None
    next_question: SurveyQuestion | None  # what to ask now (with "invalid": the question to ask again)


class InvalidSurvey(DomainError):
    """A survey definition that cannot be asked (no question, a bad scale, duplicate ids)."""


class NoChat(DomainError):
    """The customer has no chat (Telegram or web chat) to ask the survey in."""


class OptedOut(DomainError):
    """The customer asked for no more surveys (/stop)."""


class SurveyService(Service):
    async def define_survey(
        self, *, key: str, kind: SurveyKind | str, title: str, questions: list[dict[str, Any]],
        expires_after_hours: int = 72, active: bool = True,
    ) -> SurveyView:
        """Create the survey `key`, or replace its definition (invitations already sent keep their answers)."""
        parsed = _checked_definition(title, questions, expires_after_hours)
        async with self.uow() as uow:
            survey = await _survey_by_key(uow.session, key)
            if survey is None:
                survey = m.Survey(key=key)
                uow.session.add(survey)
            survey.kind = SurveyKind(kind)
            survey.title = title
            survey.questions = [q.model_dump(mode="json", exclude_none=True) for q in parsed]
            survey.expires_after_hours = expires_after_hours
            survey.active = active
            await uow.session.flush()
            return SurveyView.of(survey)

    async def create_survey(
        self, *, key: str, kind: SurveyKind | str, title: str, questions: list[dict[str, Any]],
        expires_after_hours: int = 72, active: bool = True,
    ) -> SurveyView:
        """A new survey (the console's form): like `define_survey`, but a key already taken is refused."""
        key = key.strip().lower()
        if not SURVEY_KEY.fullmatch(key):
            raise InvalidSurvey("The key is 1–100 lowercase letters, digits, - or _ (e.g. post-purchase).")
        try:
            kind = SurveyKind(kind)
        except ValueError:
            raise InvalidSurvey("A survey is CSAT or NPS.") from None
        async with self.uow() as uow:
            if key in DEFAULTS or await _survey_by_key(uow.session, key) is not None:
                raise ConflictError(f"A survey with the key {key!r} already exists.")
        try:
            return await self.define_survey(key=key, kind=kind, title=title, questions=questions,
                                            expires_after_hours=expires_after_hours, active=active)
        except IntegrityError:  # created at the same moment by another request
            raise ConflictError(f"A survey with the key {key!r} already exists.") from None

    async def update_survey(
        self, *, survey_id: int, title: str, questions: list[dict[str, Any]], expires_after_hours: int,
        active: bool,
    ) -> SurveyView:
        """Change a survey's title, questions, expiry and whether it is sent; its key and kind stay (answers
        already given keep their question ids)."""
        parsed = _checked_definition(title, questions, expires_after_hours)
        async with self.uow() as uow:
            survey = await get_survey(uow.session, key=None, survey_id=survey_id)
            survey.title = title.strip()
            survey.questions = [q.model_dump(mode="json", exclude_none=True) for q in parsed]
            survey.expires_after_hours = expires_after_hours
            survey.active = active
            await uow.session.flush()
            view = SurveyView.of(survey)
            await uow.commit()
            return view

    async def overview(self) -> list[SurveySummary]:
        """Every survey (the built-in CSAT and NPS ones too) with sent, answered and its score, CSAT and NPS
        first."""
        inv = m.SurveyInvitation
        async with self.uow() as uow:
            for key in DEFAULTS:
                await get_survey(uow.session, key=key, survey_id=None)
            surveys = (await uow.session.execute(select(m.Survey).order_by(m.Survey.id))).scalars().all()
            rows = (await uow.session.execute(
                select(inv.survey_id, *_aggregates()).group_by(inv.survey_id)
            )).all()
            await uow.commit()
            totals = {row[0]: row[1:] for row in rows}
            summaries = [SurveySummary(SurveyView.of(s), _score_row(str(s.kind), s.title,
                                                                    totals.get(s.id, (0, 0, 0, 0, 0, 0))))
                         for s in surveys]
        return sorted(summaries, key=lambda x: (x.survey.key not in DEFAULTS, x.survey.id))

    async def report(
        self, *, survey_id: int, start: date | None = None, end: date | None = None, campaign: str | None = None,
    ) -> SurveyReport:
        """The survey's results among the invitations sent from `start` to `end` (days, inclusive, UTC) in
        `campaign`: totals, by agent, by team and by ISO week of sending (one GROUP BY query each)."""
        inv = m.SurveyInvitation
        async with self.uow() as uow:
            session = uow.session
            survey = await get_survey(session, key=None, survey_id=survey_id)
            kind = str(survey.kind)

            def within(query: Any) -> Any:
                return _within(query, survey.id, start=start, end=end, campaign=campaign)

            totals = (await session.execute(within(select(*_aggregates())))).one()
            by_agent = (await session.execute(within(
                select(inv.agent_id, m.Agent.name, *_aggregates()).outerjoin(m.Agent, m.Agent.id == inv.agent_id)
            ).group_by(inv.agent_id, m.Agent.name).order_by(m.Agent.name.nulls_last(), inv.agent_id))).all()
            by_team = (await session.execute(within(
                select(inv.team_id, m.Team.name, *_aggregates()).outerjoin(m.Team, m.Team.id == inv.team_id)
            ).group_by(inv.team_id, m.Team.name).order_by(m.Team.name.nulls_last(), inv.team_id))).all()
            week = _week_start(session.bind.dialect.name).label("week")
            by_week = (await session.execute(
                within(select(week, *_aggregates())).group_by(week).order_by(week)
            )).all()
            campaigns = (await session.execute(
                select(inv.campaign).where(inv.survey_id == survey.id, inv.campaign.is_not(None))
                .group_by(inv.campaign).order_by(inv.campaign)
            )).scalars().all()
            return SurveyReport(
                survey=SurveyView.of(survey), totals=_score_row(kind, "All", totals),
                by_agent=tuple(_score_row(kind, name or "No agent", row[2:]) for row in by_agent
                               for name in [row[1]]),
                by_team=tuple(_score_row(kind, name or "No team", row[2:]) for row in by_team
                              for name in [row[1]]),
                by_week=tuple(_score_row(kind, _iso_week(row[0]), row[1:]) for row in by_week),
                campaigns=tuple(campaigns),
            )

    async def comments(
        self, *, survey_id: int, start: date | None = None, end: date | None = None, campaign: str | None = None,
        limit: int = 20, offset: int = 0,
    ) -> CommentPage:
        """The comments (answers to the survey's text questions), newest first, with the invitation's score, the
        customer and the agent; one page of them and how many there are."""
        inv, answer = m.SurveyInvitation, m.SurveyAnswer
        async with self.uow() as uow:
            survey = await get_survey(uow.session, key=None, survey_id=survey_id)
            text_ids = [q.id for q in _questions(survey) if q.kind == SurveyQuestionKind.TEXT]

            def commented(query: Any) -> Any:
                return _within(query.join(inv, inv.id == answer.invitation_id), survey.id, start=start, end=end,
                               campaign=campaign).where(answer.question_id.in_(text_ids),
                                                        answer.value_text.is_not(None))

            total = await uow.session.scalar(commented(select(func.count(answer.id))))
            rows = (await uow.session.execute(commented(
                select(answer.invitation_id, answer.created_at, answer.value_text, inv.score, inv.customer_id,
                       m.Customer.name, m.Agent.name, inv.campaign)
            ).join(m.Customer, m.Customer.id == inv.customer_id).outerjoin(m.Agent, m.Agent.id == inv.agent_id)
                .order_by(answer.created_at.desc(), answer.id.desc()).limit(limit).offset(offset))).all()
            return CommentPage(tuple(SurveyComment(*row) for row in rows), int(total or 0))

    async def get(self, *, key: str | None = None, survey_id: int | None = None) -> SurveyView:
        async with self.uow() as uow:
            survey = await get_survey(uow.session, key=key, survey_id=survey_id)
            return SurveyView.of(survey)

    async def invite(
        self, *, customer_id: int, key: str | None = None, survey_id: int | None = None, campaign: str | None = None,
    ) -> InvitationView:
        """Send a survey to the customer's latest chat (once per campaign); the bot asks it (SurveyInvited)."""
        async with self.uow() as uow:
            survey = await get_survey(uow.session, key=key, survey_id=survey_id)
            customer = await uow.session.get(m.Customer, customer_id)
            if customer is None:
                raise NotFound(f"No customer {customer_id}.")
            identity = await latest_chat(uow.session, customer_id)
            if identity is None:
                raise NoChat(f"Customer {customer_id} has no Telegram or web chat to ask in.")
            conversation = await chat_conversation(uow.session, identity)
            dedupe = f"{survey.id}:{customer_id}:{campaign or 'direct'}"
            invitation, duplicate = await invite_in(
                uow, survey=survey, customer=customer, identity=identity, conversation_id=conversation.id,
                dedupe_key=dedupe, campaign=campaign,
            )
            await uow.commit()
            return InvitationView.of(invitation, duplicate=duplicate)

    async def invitation(self, *, invitation_id: int) -> InvitationView:
        async with self.uow() as uow:
            return InvitationView.of(await _get_invitation(uow.session, invitation_id))

    async def next_question(self, *, invitation_id: int) -> tuple[InvitationView, SurveyQuestion | None]:
        """The invitation and its first question not answered yet (None: nothing left, or closed)."""
        async with self.uow() as uow:
            invitation = await _get_invitation(uow.session, invitation_id)
            survey = await uow.session.get_one(m.Survey, invitation.survey_id)
            answered = await _answered(uow.session, invitation.id)
            return InvitationView.of(invitation), _next(survey, answered)

    async def answer(
        self, *, invitation_id: int, question_id: str, value: int | str | None, channel: Channel | str,
        external_id: str,
    ) -> AnswerResult:
        """Store one answer (None skips an optional question) from the chat the survey was sent to.

        `status` of the result: "ok", "duplicate" (that question was answered already: the first answer stands),
        "expired", "not_found" (unknown, or sent to another chat: nothing about it is revealed) or "invalid".
        """
        try:
            async with self.uow() as uow:
                invitation = await _get_invitation(uow.session, invitation_id, for_update=True, missing_ok=True)
                if invitation is None or (str(invitation.channel), invitation.external_id) != (
                    str(Channel(channel)), external_id
                ):
                    return AnswerResult("not_found", None, None)
                survey = await uow.session.get_one(m.Survey, invitation.survey_id)
                answered = await _answered(uow.session, invitation.id)
                view = InvitationView.of(invitation)
                if question_id in answered:
                    return AnswerResult("duplicate", view, _next(survey, answered))
                if _expired(invitation):
                    if invitation.status != InvitationStatus.COMPLETED:
                        invitation.status = InvitationStatus.EXPIRED
                    await uow.commit()
                    return AnswerResult("expired", InvitationView.of(invitation), None)
                question = next((q for q in _questions(survey) if q.id == question_id), None)
                if question is None:
                    return AnswerResult("invalid", view, _next(survey, answered))
                try:
                    stored = question.check(value)
                except (TypeError, ValueError):
                    return AnswerResult("invalid", view, question)
                now = utcnow()
                uow.session.add(m.SurveyAnswer(
                    invitation_id=invitation.id, question_id=question.id, skipped=stored is None,
                    value_int=stored if isinstance(stored, int) else None,
                    value_text=stored if isinstance(stored, str) else None, created_at=now,
                ))
                await uow.session.flush()
                answered.add(question.id)
                if question.kind == SurveyQuestionKind.RATING and invitation.score is None and stored is not None:
                    invitation.score = int(stored)
                invitation.answered_at = invitation.answered_at or now
                following = _next(survey, answered)
                if following is None:
                    invitation.status = InvitationStatus.COMPLETED
                    invitation.completed_at = now
                else:
                    invitation.status = InvitationStatus.PARTIAL
                uow.emit(SurveyAnswered(
                    invitation_id=invitation.id, survey_id=survey.id, customer_id=invitation.customer_id,
                    question_id=question.id, score=invitation.score, completed=following is None,
                ))
                await uow.commit()
                return AnswerResult("ok", InvitationView.of(invitation), following)
        except IntegrityError:  # the same answer arrived twice at once: the other one was stored
            invitation_view, following = await self.next_question(invitation_id=invitation_id)
            return AnswerResult("duplicate", invitation_view, following)

    async def answers(self, *, invitation_id: int) -> dict[str, int | str | None]:
        """The invitation's answers by question id (None: skipped)."""
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.SurveyAnswer).where(m.SurveyAnswer.invitation_id == invitation_id)
                .order_by(m.SurveyAnswer.id)
            )
            return {a.question_id: a.value_int if a.value_int is not None else a.value_text for a in rows.scalars()}

    async def for_customer(self, *, customer_id: int, limit: int = 20) -> list[CustomerSurvey]:
        """The surveys sent to a customer, newest first, each with its answers in question order."""
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(m.SurveyInvitation, m.Survey)
                .join(m.Survey, m.Survey.id == m.SurveyInvitation.survey_id)
                .where(m.SurveyInvitation.customer_id == customer_id)
                .order_by(m.SurveyInvitation.sent_at.desc(), m.SurveyInvitation.id.desc()).limit(limit)
            )).all()
            answers = (await uow.session.execute(
                select(m.SurveyAnswer).where(m.SurveyAnswer.invitation_id.in_([i.id for i, _ in rows]))
            )).scalars()
            given: dict[int, dict[str, int | str | None]] = {}
            for a in answers:
                given.setdefault(a.invitation_id, {})[a.question_id] = (
                    a.value_int if a.value_int is not None else a.value_text)
            return [
                CustomerSurvey(InvitationView.of(invitation), survey.title, str(survey.kind), tuple(
                    (q.text(invitation.language), given[invitation.id][q.id])
                    for q in _questions(survey) if q.id in given.get(invitation.id, {})
                ))
                for invitation, survey in rows
            ]

    async def results(self, *, key: str | None = None, survey_id: int | None = None,
                      campaign: str | None = None) -> ScoreRow:
        """Sent, answered and the score: CSAT as the mean rating and the share of 4s and 5s; NPS as promoters
        (9–10) minus detractors (0–6), in percent; one aggregate query."""
        async with self.uow() as uow:
            survey = await get_survey(uow.session, key=key, survey_id=survey_id)
            query = select(*_aggregates()).where(m.SurveyInvitation.survey_id == survey.id)
            if campaign is not None:
                query = query.where(m.SurveyInvitation.campaign == campaign)
            values = (await uow.session.execute(query)).one()
            return _score_row(str(survey.kind), campaign or survey.key, values)

    async def announce_unasked(self, *, older_than: timedelta, within: timedelta, limit: int = 200) -> int:
        """Announce again the invitations sent `older_than` ago (and no longer than `within`) whose first question
        the bot has not asked: their SurveyInvited was lost (Redis away just after the commit). The bot asks a
        question once whatever the announcements (its idempotency key). How many were announced."""
        now = utcnow()
        inv = m.SurveyInvitation
        asked = exists().where(m.Message.idempotency_key.like(
            literal("survey:") + cast(inv.id, String) + literal(":ask:%")))
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(inv, m.Survey.kind).join(m.Survey, m.Survey.id == inv.survey_id)
                .where(inv.status == InvitationStatus.SENT, inv.channel.in_(CHAT_CHANNELS),
                       inv.sent_at < now - older_than, inv.sent_at >= now - within, ~asked)
                .order_by(inv.id).limit(limit)
            )).all()
            for invitation, kind in rows:
                uow.emit(SurveyInvited(
                    invitation_id=invitation.id, survey_id=invitation.survey_id, customer_id=invitation.customer_id,
                    kind=str(kind), conversation_id=invitation.conversation_id, channel=str(invitation.channel),
                    external_id=invitation.external_id))
        return len(rows)

    async def expire_due(self) -> int:
        """Mark invitations past their expiry as expired (a timer calls this); how many were."""
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(m.SurveyInvitation).where(
                    m.SurveyInvitation.status.in_((InvitationStatus.SENT, InvitationStatus.PARTIAL)),
                    m.SurveyInvitation.expires_at < utcnow(),
                )
            )).scalars().all()
            for invitation in rows:
                invitation.status = InvitationStatus.EXPIRED
            await uow.commit()
            return len(rows)


async def invite_in(
    uow: UnitOfWork, *, survey: m.Survey, customer: m.Customer, identity: m.ChannelIdentity, conversation_id: int,
    dedupe_key: str, campaign: str | None = None, ticket: m.Ticket | None = None,
) -> tuple[m.SurveyInvitation, bool]:
    """Create the invitation inside the caller's transaction (idempotent on `dedupe_key`); (invitation, duplicate).

    Raises OptedOut for a customer who withdrew consent, and ConflictError for an inactive survey."""
    found = (await uow.session.execute(
        select(m.SurveyInvitation).where(m.SurveyInvitation.dedupe_key == dedupe_key)
    )).scalar_one_or_none()
    if found is not None:
        return found, True
    if not survey.active:
        raise ConflictError(f"The survey {survey.key!r} is not active.")
    if not customer.marketing_consent and customer.marketing_consent_at is not None:
        raise OptedOut(f"Customer {customer.id} asked for no more surveys.")
    now = utcnow()
    invitation = m.SurveyInvitation(
        survey_id=survey.id, customer_id=customer.id, conversation_id=conversation_id,
        ticket_id=ticket.id if ticket else None, agent_id=ticket.assignee_id if ticket else None,
        team_id=ticket.team_id if ticket else None, campaign=campaign, channel=identity.channel,
        external_id=identity.external_id, language=customer.language or "en", dedupe_key=dedupe_key,
        status=InvitationStatus.SENT, sent_at=now, expires_at=now + timedelta(hours=survey.expires_after_hours),
    )
    uow.session.add(invitation)
    await uow.session.flush()
    uow.emit(SurveyInvited(
        invitation_id=invitation.id, survey_id=survey.id, customer_id=customer.id, kind=str(survey.kind),
        conversation_id=conversation_id, channel=str(identity.channel), external_id=identity.external_id,
    ))
    return invitation, False


def _checked_definition(title: str, questions: list[Any], expires_after_hours: int) -> list[SurveyQuestion]:
    if not title.strip():
        raise InvalidSurvey("A survey needs a title.")
    if len(title.strip()) > MAX_TITLE:
        raise InvalidSurvey(f"The title is longer than {MAX_TITLE} characters.")
    if not 0 < expires_after_hours <= MAX_EXPIRY_HOURS:
        raise InvalidSurvey("A survey stays open from one hour to a year.")
    return parse_questions(questions)


def _aggregates() -> tuple[Any, ...]:
    """sent, answered, the sum of scores, CSAT's satisfied (4–5), NPS's promoters (9–10) and detractors (0–6)."""
    score = m.SurveyInvitation.score

    def counted(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    return (func.count(m.SurveyInvitation.id), func.count(score), func.coalesce(func.sum(score), 0),
            counted(score >= 4), counted(score >= 9), counted(score <= 6))


def _score_row(kind: str, label: str, values: Any) -> ScoreRow:
    sent, answered, total, satisfied, promoters, detractors = (int(v or 0) for v in values)
    return ScoreRow.of(kind, label, sent=sent, answered=answered, total=total, satisfied=satisfied,
                       promoters=promoters, detractors=detractors)


def _within(query: Any, survey_id: int, *, start: date | None, end: date | None, campaign: str | None) -> Any:
    """`query` over the survey's invitations sent from `start` to `end` (inclusive days, UTC) in `campaign`."""
    inv = m.SurveyInvitation
    query = query.where(inv.survey_id == survey_id)
    if start is not None:
        query = query.where(inv.sent_at >= datetime.combine(start, time(), UTC))
    if end is not None:
        query = query.where(inv.sent_at < datetime.combine(end + timedelta(days=1), time(), UTC))
    if campaign is not None:
        query = query.where(inv.campaign == campaign)
    return query


def _week_start(dialect: str) -> Any:
    """The Monday (UTC) of the ISO week an invitation was sent in."""
    if dialect == "postgresql":
        return func.date(func.date_trunc("week", func.timezone("UTC", m.SurveyInvitation.sent_at)))
    return func.date(m.SurveyInvitation.sent_at, "weekday 0", "-6 days")  # SQLite: the next Sunday, back 6 days


def _iso_week(monday: date | datetime | str) -> str:
    day = date.fromisoformat(monday[:10]) if isinstance(monday, str) else monday
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


async def csat_survey(session: AsyncSession) -> m.Survey:
    """The CSAT survey asked after a resolved ticket; the built-in one is created the first time."""
    return await get_survey(session, key=CSAT_KEY, survey_id=None)


def _questions(survey: m.Survey) -> list[SurveyQuestion]:
    return [SurveyQuestion.model_validate(q) for q in survey.questions]


def _next(survey: m.Survey, answered: set[str]) -> SurveyQuestion | None:
    return next((q for q in _questions(survey) if q.id not in answered), None)


def _expired(invitation: m.SurveyInvitation) -> bool:
    return invitation.status == InvitationStatus.EXPIRED or (
        invitation.expires_at is not None and invitation.expires_at < utcnow()
    )


async def _answered(session: AsyncSession, invitation_id: int) -> set[str]:
    rows = await session.execute(
        select(m.SurveyAnswer.question_id).where(m.SurveyAnswer.invitation_id == invitation_id)
    )
    return set(rows.scalars())


async def _survey_by_key(session: AsyncSession, key: str) -> m.Survey | None:
    return (await session.execute(select(m.Survey).where(m.Survey.key == key))).scalar_one_or_none()


async def get_survey(session: AsyncSession, *, key: str | None, survey_id: int | None) -> m.Survey:
    """A survey by id or key (the built-in CSAT and NPS ones are made on first use); NotFound."""
    if survey_id is not None:
        survey = await session.get(m.Survey, survey_id)
    elif key is not None:
        survey = await _survey_by_key(session, key)
        if survey is None and key in DEFAULTS:  # the built-in CSAT and NPS surveys exist on first use
            kind, title, questions = DEFAULTS[key]
            survey = m.Survey(key=key, kind=kind, title=title, questions=questions, active=True,
                              expires_after_hours=72 if kind == SurveyKind.CSAT else 14 * 24)
            session.add(survey)
            await session.flush()
    else:
        raise ValueError("Give a survey key or id.")
    if survey is None:
        raise NotFound(f"No survey {key or survey_id}.")
    return survey


async def _get_invitation(
    session: AsyncSession, invitation_id: int, *, for_update: bool = False, missing_ok: bool = False
) -> m.SurveyInvitation:
    query = select(m.SurveyInvitation).where(m.SurveyInvitation.id == invitation_id)
    if for_update:
        query = query.with_for_update()
    invitation = (await session.execute(query)).scalar_one_or_none()
    if invitation is None and not missing_ok:
        raise NotFound(f"No survey invitation {invitation_id}.")
    return invitation  # type: ignore[return-value]


async def latest_chat(session: AsyncSession, customer_id: int,
                      channels: Collection[str] = CHAT_CHANNELS) -> m.ChannelIdentity | None:
    """The customer's chat identity on `channels` that spoke last (Telegram or web chat)."""
    return (await session.execute(
        select(m.ChannelIdentity)
        .outerjoin(m.Conversation, m.Conversation.identity_id == m.ChannelIdentity.id)
        .where(m.ChannelIdentity.customer_id == customer_id, m.ChannelIdentity.channel.in_(channels))
        .group_by(m.ChannelIdentity.id)
        .order_by(func.max(m.Conversation.last_message_at).desc().nulls_last(), m.ChannelIdentity.id.desc())
        .limit(1)
    )).scalar_one_or_none()


async def chat_conversation(session: AsyncSession, identity: m.ChannelIdentity) -> m.Conversation:
    """The chat's latest conversation, or a new one (in the bot's hands) for a chat that has none."""
    conversation = (await session.execute(
        select(m.Conversation).where(m.Conversation.identity_id == identity.id)
        .order_by(m.Conversation.id.desc()).limit(1)
    )).scalar_one_or_none()
    if conversation is None:
        conversation = m.Conversation(customer_id=identity.customer_id, identity_id=identity.id,
                                      status=ConversationStatus.BOT)
        session.add(conversation)
        await session.flush()
    return conversation


@timeline_source
async def _survey_entries(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        select(m.SurveyInvitation, m.Survey.title, m.Survey.kind)
        .join(m.Survey, m.Survey.id == m.SurveyInvitation.survey_id)
        .where(m.SurveyInvitation.customer_id == customer_id)
        .order_by(m.SurveyInvitation.sent_at.desc(), m.SurveyInvitation.id.desc()).limit(limit)
    )
    entries = []
    for invitation, title, kind in rows.all():
        data = {"invitation_id": invitation.id, "survey": str(kind), "ticket_id": invitation.ticket_id,
                "campaign": invitation.campaign}
        entries.append(TimelineEntry(invitation.sent_at, "survey.sent", f"{title} sent", invitation.id, data))
        if invitation.answered_at is not None:
            score = f": {invitation.score}" if invitation.score is not None else ""
            entries.append(TimelineEntry(invitation.answered_at, "survey.answered", f"{title} answered{score}",
                                         invitation.id, {**data, "score": invitation.score}))
    return entries
