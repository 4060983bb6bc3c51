"""The KPIs a CRM team reports (the console's Reports section): aggregate SQL over a range of UTC days, cut into
periods (day, ISO week or month) where a series makes sense; the same numbers on SQLite and PostgreSQL.

Definitions (the console prints them under each report; `reports.py` defines the dashboard's, which these follow):

- Periods: UTC days, ISO weeks (Monday to Sunday) or calendar months, clipped to the range; every period of the
  range is a row, zeros included, and a last row covers the whole range.
- Satisfaction: survey answers given (answered_at) in the period, with a score, of a CSAT resp. NPS survey, whenever
  the invitation was sent. CSAT: n, mean, % of 4-5. NPS: promoters 9-10, passives 7-8, detractors 0-6,
  % promoters - % detractors.
- Containment: conversations created in the period; engaged: with a customer message; handed off: engaged with a
  ticket (ever); contained: engaged without one.
- Response times: tickets created in the period; first response: created -> first agent reply, over those replied
  to; resolution: created -> resolved, over those resolved. Median and 90th percentile, interpolated linearly as
  PostgreSQL's percentile_cont (on SQLite the same interpolation over window functions).
- Orders: counted orders (paid, shipped, completed: `crm_store.segments.COUNTED_ORDERS`) placed in the period.
  Per period: customers with one, their orders, repeat customers (two or more in the period), retained (customers
  of the period with a counted order in the next period too; unknown when the next period starts after the range).
  Repeat-purchase rate over the range: customers with two or more counted orders in the range among those with one.
- Tickets by category and by team: opened (created in the range), resolved (resolved_at in the range, whenever
  opened), open now (new, open or pending as the report runs, whenever opened). Category: the ticket's category,
  else its handoff reason (ticket.context["reason"]) as "handoff: <reason>", else "uncategorised".
- Agent performance, per agent (tickets by their current assignee): tickets resolved in the range; median first
  response and median resolution over tickets created in the range; CSAT answers given in the range to invitations
  sent for the agent's tickets (n, mean); public replies sent in the range. Active agents, and inactive ones with
  any of these.
- Intents: bot replies sent in the range by the intent of the message they answered: replies, share of all replies
  with an intent, conversations with such a reply, and of those the ones without a ticket (contained).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    distinct,
    exists,
    extract,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import (
    AgentPerformance,
    CsatSummary,
    DurationStats,
    IntentRow,
    KpiSeries,
    NpsSummary,
    Period,
    ResponseTimeRow,
    RetentionRow,
    SatisfactionRow,
    TicketCount,
    TicketsReport,
    VolumeRow,
    WeekFigures,
    WeeklySummary,
)
from crm_store.enums import Granularity, SenderType, SurveyKind, TicketStatus
from crm_store.segments import COUNTED_ORDERS
from crm_store.services.base import Service

MAX_DAYS = 731  # two years
EPOCH = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
SQLITE_EPOCH_JULIAN_DAY = 2440587.5  # julianday('1970-01-01')
ACTIVE_TICKETS = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
T = TypeVar("T")


def bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The range's UTC instants [since, until); ValueError when it ends before it starts, is over two years, or lies
    outside 1970-9998 (the periods are numbered from 1970)."""
    if start < EPOCH or end > LAST_DAY:
        raise ValueError(f"Dates run from {EPOCH} to {LAST_DAY}.")
    if end < start:
        raise ValueError("The range ends before it starts.")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"A report covers at most {MAX_DAYS} days (two years).")
    return datetime.combine(start, time(), UTC), datetime.combine(end + timedelta(days=1), time(), UTC)


class Periods:
    """The periods of a range: each numbered as the SQL does (days, Monday-weeks or months since 1970)."""

    def __init__(self, granularity: Granularity | str, start: date, end: date) -> None:
        self.granularity = Granularity(granularity)
        self.start, self.end = start, end

    def number(self, day: date) -> int:
        days = (day - EPOCH).days
        if self.granularity == Granularity.DAY:
            return days
        if self.granularity == Granularity.WEEK:
            return (days + 3) // 7  # 1970-01-01 was a Thursday: day -3 is a Monday
        return day.year * 12 + day.month - 1

    def first_day(self, number: int) -> date:
        if self.granularity == Granularity.DAY:
            return EPOCH + timedelta(days=number)
        if self.granularity == Granularity.WEEK:
            return EPOCH + timedelta(days=7 * number - 3)
        return date(number // 12, number % 12 + 1, 1)

    def numbers(self) -> range:
        return range(self.number(self.start), self.number(self.end) + 1)

    def period(self, number: int) -> Period:
        first = self.first_day(number)
        last = self.first_day(number + 1) - timedelta(days=1)
        if self.granularity == Granularity.DAY:
            label = first.isoformat()
        elif self.granularity == Granularity.WEEK:
            year, week, _ = first.isocalendar()
            label = f"{year}-W{week:02d}"
        else:
            label = first.strftime("%Y-%m")
        return Period(max(first, self.start), min(last, self.end), label)

    def whole(self) -> Period:
        return Period(self.start, self.end, "Total")

    def has_next(self, number: int) -> bool:
        return self.first_day(number + 1) <= self.end


class KpiService(Service):
    async def satisfaction(self, *, start: date, end: date,
                           granularity: Granularity | str = Granularity.WEEK) -> KpiSeries[SatisfactionRow]:
        """CSAT and NPS answers given in each period (and the range): one histogram query."""
        sql, periods = self._sql(start, end), Periods(granularity, start, end)
        i = m.SurveyInvitation
        base = (select(sql.period(i.answered_at, periods).label("n"), m.Survey.kind.label("kind"),
                       i.score.label("score"))
                .join(m.Survey, m.Survey.id == i.survey_id)
                .where(i.score.is_not(None), sql.in_range(i.answered_at)).subquery())
        query = select(base.c.n, base.c.kind, base.c.score, func.count()).group_by(base.c.n, base.c.kind,
                                                                                   base.c.score)
        histograms: dict[tuple[int, str], Counter[int]] = {}
        async with self.db.sessionmaker() as session:
            for n, kind, score, count in (await session.execute(query)).all():
                histograms.setdefault((int(n), str(kind)), Counter())[int(score)] += int(count)

        def row(period: Period, numbers: Iterable[int]) -> SatisfactionRow:
            csat: Counter[int] = Counter()
            nps: Counter[int] = Counter()
            for n in numbers:
                csat.update(histograms.get((n, SurveyKind.CSAT), {}))
                nps.update(histograms.get((n, SurveyKind.NPS), {}))
            return SatisfactionRow(period, CsatSummary(dict(csat)), NpsSummary(dict(nps)))

        return _series(periods, lambda n: row(periods.period(n), [n]), row(periods.whole(), periods.numbers()))

    async def containment(self, *, start: date, end: date,
                          granularity: Granularity | str = Granularity.WEEK) -> KpiSeries[VolumeRow]:
        """Conversations started in each period: engaged, handed off, contained."""
        sql, periods = self._sql(start, end), Periods(granularity, start, end)
        c = m.Conversation
        engaged = exists().where(m.Message.conversation_id == c.id, m.Message.sender == SenderType.CUSTOMER)
        ticketed = exists().where(m.Ticket.conversation_id == c.id)
        base = (select(sql.period(c.created_at, periods).label("n"), case((engaged, 1), else_=0).label("engaged"),
                       case((and_(engaged, ticketed), 1), else_=0).label("handed_off"))
                .where(sql.in_range(c.created_at)).subquery())
        query = select(base.c.n, func.count(), func.sum(base.c.engaged), func.sum(base.c.handed_off)).group_by(
            base.c.n)
        async with self.db.sessionmaker() as session:
            found = {int(n): (int(a), int(b or 0), int(h or 0)) for n, a, b, h in (await session.execute(query)).all()}
        totals = [sum(v[k] for v in found.values()) for k in range(3)]
        return _series(periods, lambda n: VolumeRow(periods.period(n), *found.get(n, (0, 0, 0))),
                       VolumeRow(periods.whole(), *totals))

    async def response_times(self, *, start: date, end: date,
                             granularity: Granularity | str = Granularity.WEEK) -> KpiSeries[ResponseTimeRow]:
        """First response and resolution times of the tickets created in each period: median and p90."""
        sql, periods = self._sql(start, end), Periods(granularity, start, end)
        t = m.Ticket
        by_period, whole = sql.period(t.created_at, periods), literal_column("0")
        stats: dict[tuple[str, bool], dict[Any, DurationStats]] = {}
        async with self.db.sessionmaker() as session:
            for done in (t.first_response_at, t.resolved_at):
                for per_period, key in ((True, by_period), (False, whole)):
                    stats[done.key, per_period] = await sql.durations(session, (
                        select(key.label("key"), sql.seconds(t.created_at, done).label("seconds"))
                        .where(sql.in_range(t.created_at), done.is_not(None))))
        none = DurationStats(0, None, None)

        def row(period: Period, key: int, per_period: bool) -> ResponseTimeRow:
            return ResponseTimeRow(period, stats["first_response_at", per_period].get(key, none),
                                   stats["resolved_at", per_period].get(key, none))

        return _series(periods, lambda n: row(periods.period(n), n, True), row(periods.whole(), 0, False))

    async def retention(self, *, start: date, end: date,
                        granularity: Granularity | str = Granularity.MONTH) -> KpiSeries[RetentionRow]:
        """Counted orders per period: customers, orders, repeat customers, and who ordered again the next period."""
        sql, periods = self._sql(start, end), Periods(granularity, start, end)
        o = m.Order
        counted = (o.status.in_(COUNTED_ORDERS), sql.in_range(o.placed_at))
        placed = select(o.customer_id, sql.period(o.placed_at, periods).label("n")).where(*counted).subquery()
        per = (select(placed.c.customer_id, placed.c.n, func.count().label("orders"))
               .group_by(placed.c.customer_id, placed.c.n).cte("per_period"))
        following = per.alias("following")
        query = (
            select(per.c.n, func.count(), func.sum(per.c.orders), func.sum(case((per.c.orders >= 2, 1), else_=0)),
                   func.count(following.c.customer_id))
            .outerjoin(following, and_(following.c.customer_id == per.c.customer_id, following.c.n == per.c.n + 1))
            .group_by(per.c.n)
        )
        per_customer = select(o.customer_id, func.count().label("orders")).where(*counted).group_by(
            o.customer_id).subquery()
        whole = select(func.count(), func.sum(per_customer.c.orders),
                       func.sum(case((per_customer.c.orders >= 2, 1), else_=0)))
        async with self.db.sessionmaker() as session:
            found = {int(r[0]): tuple(int(v or 0) for v in r[1:]) for r in (await session.execute(query)).all()}
            customers, orders, repeat = (int(v or 0) for v in (await session.execute(whole)).one())

        def row(n: int) -> RetentionRow:
            customers, orders, repeat, retained = found.get(n, (0, 0, 0, 0))
            return RetentionRow(periods.period(n), customers, orders, repeat,
                                retained if periods.has_next(n) else None)

        return _series(periods, row, RetentionRow(periods.whole(), customers, orders, repeat, None))

    async def tickets(self, *, start: date, end: date) -> TicketsReport:
        """Tickets opened and resolved in the range and open now, by category and by team."""
        sql = self._sql(start, end)
        t = m.Ticket
        reason = t.context["reason"].as_string()
        category = func.coalesce(func.nullif(t.category, ""), literal("handoff: ") + reason, literal("uncategorised"))
        base = (select(category.label("category"), t.team_id, t.created_at, t.resolved_at, t.status)
                .where(or_(sql.in_range(t.created_at), sql.in_range(t.resolved_at), t.status.in_(ACTIVE_TICKETS)))
                .subquery())
        counts = [func.sum(case((condition, 1), else_=0)) for condition in (
            sql.in_range(base.c.created_at), sql.in_range(base.c.resolved_at), base.c.status.in_(ACTIVE_TICKETS))]
        by_category = select(base.c.category, *counts).group_by(base.c.category)
        by_team = (select(m.Team.name, *counts).select_from(base).outerjoin(m.Team, m.Team.id == base.c.team_id)
                   .group_by(base.c.team_id, m.Team.name))
        async with self.db.sessionmaker() as session:
            categories = _ticket_counts((await session.execute(by_category)).all(), "uncategorised")
            teams = _ticket_counts((await session.execute(by_team)).all(), "No team")
        total = TicketCount("Total", *(sum(getattr(c, f) for c in categories)
                                       for f in ("opened", "resolved", "open_now")))
        return TicketsReport(start, end, categories, teams, total)

    async def agent_performance(self, *, start: date, end: date) -> tuple[AgentPerformance, ...]:
        """Per agent: tickets resolved, median first response and resolution, CSAT, replies; by name."""
        sql = self._sql(start, end)
        t, i, msg = m.Ticket, m.SurveyInvitation, m.Message
        assigned = t.assignee_id.is_not(None)
        resolved = select(t.assignee_id, func.count()).where(assigned, sql.in_range(t.resolved_at)).group_by(
            t.assignee_id)
        csat = (select(i.agent_id, i.score, func.count()).join(m.Survey, m.Survey.id == i.survey_id)
                .where(m.Survey.kind == SurveyKind.CSAT, i.score.is_not(None), i.agent_id.is_not(None),
                       sql.in_range(i.answered_at)).group_by(i.agent_id, i.score))
        replies = (select(msg.agent_id, func.count())
                   .where(msg.sender == SenderType.AGENT, msg.is_private.is_(False), msg.agent_id.is_not(None),
                          sql.in_range(msg.created_at)).group_by(msg.agent_id))
        async with self.db.sessionmaker() as session:
            done = {int(a): int(n) for a, n in (await session.execute(resolved)).all()}
            times = [await sql.durations(session, select(t.assignee_id.label("key"), sql.seconds(
                t.created_at, at).label("seconds")).where(assigned, sql.in_range(t.created_at), at.is_not(None)))
                for at in (t.first_response_at, t.resolved_at)]
            scores: dict[int, dict[int, int]] = {}
            for agent_id, score, n in (await session.execute(csat)).all():
                scores.setdefault(int(agent_id), {})[int(score)] = int(n)
            sent = {int(a): int(n) for a, n in (await session.execute(replies)).all()}
            agents = (await session.execute(select(m.Agent.id, m.Agent.name, m.Agent.active))).all()
        rows = []
        for agent_id, name, active in sorted(agents, key=lambda a: (a.name.casefold(), a.id)):
            first, resolution = (s.get(agent_id) for s in times)
            if not (active or agent_id in done or first or resolution or agent_id in scores or agent_id in sent):
                continue
            rows.append(AgentPerformance(
                agent_id, name, bool(active), done.get(agent_id, 0), first.median_seconds if first else None,
                resolution.median_seconds if resolution else None, CsatSummary(scores.get(agent_id, {})),
                sent.get(agent_id, 0)))
        return tuple(rows)

    async def intents(self, *, start: date, end: date, top: int | None = None) -> tuple[IntentRow, ...]:
        """The intents of the bot's replies in the range, most frequent first, with their containment."""
        sql = self._sql(start, end)
        b = m.Message
        contained = ~exists().where(m.Ticket.conversation_id == b.conversation_id)
        query = (select(b.intent, func.count(), func.count(distinct(b.conversation_id)),
                        func.count(distinct(case((contained, b.conversation_id)))))
                 .where(b.sender == SenderType.BOT, b.intent.is_not(None), sql.in_range(b.created_at))
                 .group_by(b.intent))
        async with self.db.sessionmaker() as session:
            rows = (await session.execute(query)).all()
        total = sum(int(r[1]) for r in rows)
        ranked = sorted(rows, key=lambda r: (-r[1], r[0]))[:top]
        return tuple(IntentRow(r[0], int(r[1]), 100 * int(r[1]) / total, int(r[2]), int(r[3])) for r in ranked)

    async def weekly(self, *, week: date) -> WeeklySummary:
        """The ISO week holding `week`, next to the week before: headline numbers, top intents, tickets by team."""
        monday = week - timedelta(days=week.weekday())
        sunday, before = monday + timedelta(days=6), monday - timedelta(days=7)
        span = {"start": before, "end": sunday, "granularity": Granularity.WEEK}
        volume, times = await self.containment(**span), await self.response_times(**span)
        satisfaction, orders = await self.satisfaction(**span), await self.retention(**span)
        previous_tickets = await self.tickets(start=before, end=monday - timedelta(days=1))
        current_tickets = await self.tickets(start=monday, end=sunday)
        figures = [WeekFigures(volume.rows[k], times.rows[k], satisfaction.rows[k], orders.rows[k], tickets.total)
                   for k, tickets in enumerate((previous_tickets, current_tickets))]
        year, number, _ = monday.isocalendar()
        return WeeklySummary(f"{year}-W{number:02d}", monday, sunday, figures[1], figures[0],
                             await self.intents(start=monday, end=sunday, top=5), current_tickets.by_team)

    def _sql(self, start: date, end: date) -> _Sql:
        return _Sql(*bounds(start, end), postgres=self.db.dialect == "postgresql")


class _Sql:
    """The dialect's expressions for one range."""

    def __init__(self, since: datetime, until: datetime, *, postgres: bool) -> None:
        self.since, self.until, self.postgres = since, until, postgres

    def in_range(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.since, column < self.until)

    def _day_number(self, column: Any) -> Any:
        """Days since 1970-01-01 of the timestamp's UTC day."""
        if self.postgres:
            return cast(func.floor(extract("epoch", column) / 86400), Integer)
        # the date part alone: julianday() of a whole timestamp rounds 23:59:59.999999 up into the next day
        return cast(func.julianday(func.substr(column, 1, 10)) - SQLITE_EPOCH_JULIAN_DAY, Integer)

    def period(self, column: Any, periods: Periods) -> Any:
        """The number of the period holding the timestamp, as `Periods.number` counts."""
        if periods.granularity == Granularity.DAY:
            return self._day_number(column)
        if periods.granularity == Granularity.WEEK:
            return (self._day_number(column) + 3) // 7
        if self.postgres:
            utc = func.timezone("UTC", column)
            return cast(extract("year", utc) * 12 + extract("month", utc) - 1, Integer)
        return cast(func.substr(column, 1, 4), Integer) * 12 + cast(func.substr(column, 6, 2), Integer) - 1

    def seconds(self, since: Any, until: Any) -> Any:
        if self.postgres:
            return extract("epoch", until - since)
        return (func.julianday(until) - func.julianday(since)) * 86400.0

    async def durations(self, session: AsyncSession, rows: Select[Any]) -> dict[Any, DurationStats]:
        """Median and p90 of `rows`' (key, seconds) per key, interpolated linearly, in one query."""
        sub = rows.subquery()
        if self.postgres:
            query = select(sub.c.key, func.count(), func.percentile_cont(0.5).within_group(sub.c.seconds),
                           func.percentile_cont(0.9).within_group(sub.c.seconds)).group_by(sub.c.key)
        else:  # no percentile_cont: rank each value in its group, then weigh the two around each fraction
            ranked = select(sub.c.key, sub.c.seconds,
                            (func.row_number().over(partition_by=sub.c.key, order_by=sub.c.seconds) - 1).label("i"),
                            func.count().over(partition_by=sub.c.key).label("n")).subquery()

            def at(fraction: float) -> Any:
                position = fraction * (ranked.c.n - 1)
                low = cast(position, Integer)  # floor: positions are not negative
                return func.sum(case((ranked.c.i == low, ranked.c.seconds * (1 - (position - low))),
                                     (ranked.c.i == low + 1, ranked.c.seconds * (position - low)), else_=0))

            query = select(ranked.c.key, func.max(ranked.c.n), at(0.5), at(0.9)).group_by(ranked.c.key)
        return {key: DurationStats(int(n), _ms(median), _ms(p90))
                for key, n, median, p90 in (await session.execute(query)).all()}


def _series(periods: Periods, row: Callable[[int], T], total: T) -> KpiSeries[T]:
    return KpiSeries(periods.start, periods.end, str(periods.granularity), tuple(row(n) for n in periods.numbers()),
                     total)


def _ticket_counts(rows: Iterable[Any], unnamed: str) -> tuple[TicketCount, ...]:
    counts = [TicketCount(name or unnamed, int(a or 0), int(b or 0), int(c or 0)) for name, a, b, c in rows]
    return tuple(sorted(counts, key=lambda c: (-c.opened, c.name)))


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds), 3)
