"""Surveys: CSAT after a resolved ticket, NPS when a campaign sends it; one answer per customer per invitation,
answerable until the invitation expires.

A survey is a list of questions (`SurveyQuestion`): ratings and choices answered with buttons, free text typed in
the chat (optional ones can be skipped). An invitation is one survey sent to one customer's chat; its answers are
stored one row per question, so a double tap or a redelivered answer is stored once (a unique constraint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import CustomerSurvey, InvitationView, SurveyResults, SurveyView, TimelineEntry
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
    try:
        questions = [SurveyQuestion.model_validate(q) for q in raw]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidSurvey(f"Question {first['loc'][0] if first['loc'] else '?'}: {first['msg']}") from None
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
        parsed = parse_questions(questions)
        if expires_after_hours <= 0:
            raise InvalidSurvey("A survey must stay open for at least an hour.")
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

    async def get(self, *, key: str | None = None, survey_id: int | None = None) -> SurveyView:
        async with self.uow() as uow:
            survey = await _get_survey(uow.session, key=key, survey_id=survey_id)
            return SurveyView.of(survey)

    async def invite(
        self, *, customer_id: int, key: str | None = None, survey_id: int | None = None, campaign: str | None = None,
    ) -> InvitationView:
        """Send a survey to the customer's latest chat (once per campaign); the bot asks it (SurveyInvited)."""
        async with self.uow() as uow:
            survey = await _get_survey(uow.session, key=key, survey_id=survey_id)
            customer = await uow.session.get(m.Customer, customer_id)
            if customer is None:
                raise NotFound(f"No customer {customer_id}.")
            identity = await _latest_chat(uow.session, customer_id)
            if identity is None:
                raise NoChat(f"Customer {customer_id} has no Telegram or web chat to ask in.")
            conversation = (await uow.session.execute(
                select(m.Conversation).where(m.Conversation.identity_id == identity.id)
                .order_by(m.Conversation.id.desc()).limit(1)
            )).scalar_one_or_none()
            if conversation is None:
                conversation = m.Conversation(customer_id=customer_id, identity_id=identity.id,
                                              status=ConversationStatus.BOT)
                uow.session.add(conversation)
                await uow.session.flush()
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
                      campaign: str | None = None) -> SurveyResults:
        """Sent, answered and the score: CSAT as the mean rating and the share of 4s and 5s; NPS as promoters
        (9–10) minus detractors (0–6), in percent."""
        async with self.uow() as uow:
            survey = await _get_survey(uow.session, key=key, survey_id=survey_id)
            query = select(m.SurveyInvitation.status, m.SurveyInvitation.score).where(
                m.SurveyInvitation.survey_id == survey.id
            )
            if campaign is not None:
                query = query.where(m.SurveyInvitation.campaign == campaign)
            rows = (await uow.session.execute(query)).all()
            scores = [score for _, score in rows if score is not None]
            return SurveyResults.compute(str(survey.kind), sent=len(rows), scores=scores)

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


async def csat_survey(session: AsyncSession) -> m.Survey:
    """The CSAT survey asked after a resolved ticket; the built-in one is created the first time."""
    return await _get_survey(session, key=CSAT_KEY, survey_id=None)


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


async def _get_survey(session: AsyncSession, *, key: str | None, survey_id: int | None) -> m.Survey:
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


async def _latest_chat(session: AsyncSession, customer_id: int) -> m.ChannelIdentity | None:
    """The customer's chat identity that spoke last (Telegram or web chat)."""
    return (await session.execute(
        select(m.ChannelIdentity)
        .outerjoin(m.Conversation, m.Conversation.identity_id == m.ChannelIdentity.id)
        .where(m.ChannelIdentity.customer_id == customer_id, m.ChannelIdentity.channel.in_(CHAT_CHANNELS))
        .group_by(m.ChannelIdentity.id)
        .order_by(func.max(m.Conversation.last_message_at).desc().nulls_last(), m.ChannelIdentity.id.desc())
        .limit(1)
    )).scalar_one_or_none()


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
