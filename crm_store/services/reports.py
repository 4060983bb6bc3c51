"""Reports behind the console's dashboard: aggregate SQL over a range of UTC days (and optionally one channel),
the same numbers on SQLite and PostgreSQL.

Definitions (the dashboard's footnotes repeat them; a conversation's channel is its channel identity's):

- Conversations: conversations created in the range. Engaged: those of them with at least one customer message.
- Handed off: engaged conversations with at least one ticket (ever). Contained (bot containment): engaged
  conversations without a ticket, handled by the bot alone. Containment % + handoff % = 100 % of engaged.
- First response time: for tickets created in the range that have had an agent's reply, ticket created → the
  first agent reply (tickets.first_response_at). Resolution time: for tickets created in the range that are
  resolved, ticket created → resolved (tickets.resolved_at). Median and 90th percentile with linear
  interpolation (PostgreSQL's percentile_cont; computed the same way in Python on SQLite, which lacks it).
- CSAT and NPS: invitations of a CSAT (resp. NPS) survey answered in the range with a score, on the channel the
  survey was sent over. CSAT: mean, % of 4-5, n. NPS: % promoters (9-10) - % detractors (0-6), n.
- Top intents: the bot's replies sent in the range, counted by the intent the NLU gave their customer message.
- Top unanswered questions: the customer message (typed text, not a button) just before each bot reply sent in
  the range whose decision was no_answer, or suggest with a confidence below `report_weak_suggestion_below`;
  grouped by normalised text (case-folded, spaces collapsed, end punctuation dropped), the latest phrasing shown.
  The KB gaps page (`unanswered_questions`) takes the same questions, one row each, and clusters them into topics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, extract, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import (
    AskedQuestion,
    CsatSummary,
    DashboardReport,
    DayVolume,
    DurationStats,
    IntentCount,
    NpsSummary,
    UnansweredQuestion,
)
from crm_store.enums import SenderType, SurveyKind
from crm_store.services.base import Service

MAX_DAYS = 366
END_PUNCTUATION = "?？!！.。,，;；:： "
MAX_ASKED_QUESTIONS = 5000
QUESTION = m.Message.__table__.alias("question")


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile of ascending values, interpolated linearly as PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def normalised_question(text: str) -> str:
    """The grouping key of a question: case-folded, runs of spaces as one, trailing punctuation dropped."""
    return " ".join(text.casefold().split()).rstrip(END_PUNCTUATION)


def _misses(*columns: Any, weak_below: float) -> Select[Any]:
    """SELECT `columns` over each bot reply `m.Message` that missed (decision no_answer, or suggest with a confidence
    below `weak_below`) joined to `QUESTION`, the customer's typed message just before it: the one definition of
    an unanswered question, for the dashboard and the KB gaps page alike."""
    b, q = m.Message, QUESTION
    decision = b.payload["decision"].as_string()
    asked = (
        select(func.max(q.c.id))
        .where(q.c.conversation_id == b.conversation_id, q.c.sender == SenderType.CUSTOMER, q.c.id < b.id)
        .correlate(b).scalar_subquery()
    )
    return (
        select(*columns).select_from(b).join(q, q.c.id == asked)
        .where(b.sender == SenderType.BOT,
               or_(decision == "no_answer", and_(decision == "suggest", b.confidence < weak_below)),
               q.c.payload["button"].as_string().is_(None), q.c.text != "")
    )


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    if end < start:
        raise ValueError("The range ends before it starts.")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"A report covers at most {MAX_DAYS} days.")
    return datetime.combine(start, time(), UTC), datetime.combine(end + timedelta(days=1), time(), UTC)


class ReportService(Service):
    async def dashboard(self, *, start: date, end: date, channel: str | None = None, top: int = 10) -> DashboardReport:
        """Every dashboard number for the UTC days start..end (inclusive), on one channel or all."""
        since, until = _bounds(start, end)
        query = _Query(since, until, channel, self.db.dialect == "postgresql")
        async with self.db.sessionmaker() as session:
            volumes = await query.volumes(session)
            first_response = await query.durations(session, m.Ticket.first_response_at)
            resolution = await query.durations(session, m.Ticket.resolved_at)
            csat = CsatSummary(await query.scores(session, SurveyKind.CSAT))
            nps = NpsSummary(await query.scores(session, SurveyKind.NPS))
            intents, with_intent = await query.intents(session, top)
            unanswered = await query.unanswered(session, self.settings.report_weak_suggestion_below, top)
        days = tuple(volumes.get(day, DayVolume(day, 0, 0, 0))
                     for day in (start + timedelta(days=i) for i in range((end - start).days + 1)))
        return DashboardReport(start=start, end=end, channel=channel, days=days, first_response=first_response,
                               resolution=resolution, csat=csat, nps=nps, top_intents=intents,
                               bot_replies_with_intent=with_intent, unanswered=unanswered)

    async def unanswered_questions(self, *, start: date, end: date,
                                   limit: int = MAX_ASKED_QUESTIONS) -> tuple[AskedQuestion, ...]:
        """The customer questions behind the bot's misses in the UTC days start..end (the dashboard's rule), one
        row per question message, the latest `limit` first."""
        since, until = _bounds(start, end)
        q = QUESTION
        query = (
            _misses(q.c.id, q.c.conversation_id, m.Conversation.customer_id, q.c.text, q.c.created_at,
                    weak_below=self.settings.report_weak_suggestion_below)
            .join(m.Conversation, m.Conversation.id == q.c.conversation_id)
            .where(m.Message.created_at >= since, m.Message.created_at < until)
            .distinct().order_by(q.c.id.desc()).limit(limit)
        )
        async with self.db.sessionmaker() as session:
            rows = (await session.execute(query)).all()
        return tuple(AskedQuestion(int(r[0]), int(r[1]), int(r[2]), r[3], _aware(r[4])) for r in rows)


class _Query:
    """The report's queries over one range and channel."""

    def __init__(self, since: datetime, until: datetime, channel: str | None, postgres: bool) -> None:
        self.since, self.until, self.channel, self.postgres = since, until, channel, postgres

    def _in_range(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.since, column < self.until)

    def _on_channel(self, query: Any, conversation_id: Any) -> Any:
        """`query` narrowed to conversations whose identity is on the channel (unchanged without one)."""
        if self.channel is None:
            return query
        return query.where(exists().where(
            m.Conversation.id == conversation_id, m.ChannelIdentity.id == m.Conversation.identity_id,
            m.ChannelIdentity.channel == self.channel,
        ))

    def _utc_day(self, column: Any) -> Any:
        if self.postgres:  # timestamptz: the day in UTC whatever the session's time zone
            # literals, not binds: the GROUP BY must repeat the select's expression exactly
            return func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM-DD'"))
        return func.substr(column, 1, 10)  # SQLite stores UTC as 'YYYY-MM-DD HH:MM:SS.ffffff'

    async def volumes(self, session: AsyncSession) -> dict[date, DayVolume]:
        c = m.Conversation
        engaged = exists().where(m.Message.conversation_id == c.id, m.Message.sender == SenderType.CUSTOMER)
        ticketed = exists().where(m.Ticket.conversation_id == c.id)
        day = self._utc_day(c.created_at).label("day")
        query = (
            select(day, func.count(),
                   func.sum(case((engaged, 1), else_=0)),
                   func.sum(case((and_(engaged, ticketed), 1), else_=0)))
            .where(self._in_range(c.created_at)).group_by(day)
        )
        rows = (await session.execute(self._on_channel(query, c.id))).all()
        return {(d := date.fromisoformat(r[0])): DayVolume(d, int(r[1]), int(r[2] or 0), int(r[3] or 0))
                for r in rows}

    async def durations(self, session: AsyncSession, done_at: Any) -> DurationStats:
        """Ticket created → `done_at`, over tickets created in the range with `done_at` set."""
        t = m.Ticket
        conditions = (self._in_range(t.created_at), done_at.is_not(None))
        if self.postgres:
            seconds = extract("epoch", done_at - t.created_at)
            query = select(func.count(), func.percentile_cont(0.5).within_group(seconds),
                           func.percentile_cont(0.9).within_group(seconds)).where(*conditions)
            n, median, p90 = (await session.execute(self._on_channel(query, t.conversation_id))).one()
        else:  # no percentile functions: the pairs, then the same interpolation
            query = select(t.created_at, done_at).where(*conditions)
            rows = (await session.execute(self._on_channel(query, t.conversation_id))).all()
            ordered = sorted((done - created).total_seconds() for created, done in rows)
            n, median, p90 = len(ordered), percentile_cont(ordered, 0.5), percentile_cont(ordered, 0.9)
        return DurationStats(int(n), _ms(median), _ms(p90))

    async def scores(self, session: AsyncSession, kind: SurveyKind) -> dict[int, int]:
        """How many answers of that kind of survey gave each score."""
        i = m.SurveyInvitation
        query = (
            select(i.score, func.count()).join(m.Survey, m.Survey.id == i.survey_id)
            .where(m.Survey.kind == kind, i.score.is_not(None), self._in_range(i.answered_at))
            .group_by(i.score).order_by(i.score)
        )
        if self.channel is not None:
            query = query.where(i.channel == self.channel)
        return {int(score): int(count) for score, count in (await session.execute(query)).all()}

    async def intents(self, session: AsyncSession, top: int) -> tuple[tuple[IntentCount, ...], int]:
        """The most frequent intents of the bot's replies, and how many replies had one."""
        b = m.Message
        count = func.count().label("n")
        query = (
            select(b.intent, count)
            .where(b.sender == SenderType.BOT, b.intent.is_not(None), self._in_range(b.created_at))
            .group_by(b.intent)
        )
        rows = (await session.execute(self._on_channel(query, b.conversation_id))).all()
        ranked = sorted(rows, key=lambda r: (-r[1], r[0]))
        return tuple(IntentCount(r[0], int(r[1])) for r in ranked[:top]), sum(int(r[1]) for r in rows)

    async def unanswered(self, session: AsyncSession, weak_below: float, top: int) -> tuple[UnansweredQuestion, ...]:
        """The questions before the bot's misses, counted by exact text in SQL, then merged by normalised text."""
        b, q = m.Message, QUESTION
        query = (
            _misses(q.c.text, func.count(), func.max(q.c.created_at), weak_below=weak_below)
            .where(self._in_range(b.created_at)).group_by(q.c.text)
        )
        groups: dict[str, list[Any]] = {}
        for text, count, last in (await session.execute(self._on_channel(query, b.conversation_id))).all():
            last = _aware(last)
            key = normalised_question(text)
            if not key:
                continue
            group = groups.setdefault(key, [text, 0, last])
            group[1] += int(count)
            if (last, text) > (group[2], group[0]):
                group[0], group[2] = text, last
        ranked = sorted(groups.values(), key=lambda g: (-g[1], -g[2].timestamp(), g[0]))
        return tuple(UnansweredQuestion(text, count, last) for text, count, last in ranked[:top])


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds), 3)


def _aware(value: Any) -> datetime:
    """max() over a timestamp comes back untyped on SQLite (a string, naive UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)

