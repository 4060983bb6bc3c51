"""The Reports section's catalogue: each report's title, definition, tables (the page's and the CSV's, from the same
columns, so the download holds exactly what the page shows), headline figures and charts; the query parameters;
CSV writing. The numbers come from `crm.kpis` (crm_store/services/kpis.py), where each one is defined."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from console.charts import Chart, horizontal_bars, stacked_columns
from crm_store.crm import CRM
from crm_store.dto import KpiSeries, Period, TicketCount, WeeklySummary
from crm_store.enums import Granularity
from crm_store.services.kpis import EPOCH, LAST_DAY, bounds

DEFAULT_GRANULARITY = Granularity.WEEK
DEFAULT_WEEKS = 12
DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
WEEK = re.compile(r"(\d{4})-W(\d{2})", re.ASCII)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula

PERIODS_NOTE = ("Periods are UTC days, ISO weeks (Monday to Sunday) or calendar months, cut at the range's ends; "
                "the last row covers the whole range.")


class BadQuery(ValueError):
    """Report parameters that cannot be used; the message says why."""


@dataclass(frozen=True)
class ReportQuery:
    start: date
    end: date
    granularity: Granularity

    def params(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "granularity": str(self.granularity)}


def _day(value: str, which: str) -> date:
    value = value.strip()
    try:
        if not DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"The {which} date is written YYYY-MM-DD, as 2024-03-01.") from None


def read_query(start: str, end: str, granularity: str, today: date) -> ReportQuery:
    """The range and granularity asked for (by default the last 12 ISO weeks to today, by week); BadQuery else."""
    try:
        grain = Granularity(granularity.strip() or DEFAULT_GRANULARITY)
    except ValueError:
        raise BadQuery("The granularity is day, week or month.") from None
    last = _day(end, "end") if end.strip() else today
    try:
        first = _day(start, "start") if start.strip() else (
            last - timedelta(days=last.weekday(), weeks=DEFAULT_WEEKS - 1))
    except OverflowError:  # the default start of an end in year 1
        raise BadQuery(f"Dates run from {EPOCH} to {LAST_DAY}.") from None
    try:
        bounds(first, last)
    except ValueError as exc:
        raise BadQuery(str(exc)) from None
    return ReportQuery(first, last, grain)


def read_week(value: str, today: date) -> date:
    """The Monday of the ISO week written YYYY-Www (by default the last whole week); BadQuery else."""
    if not value.strip():
        return today - timedelta(days=today.weekday() + 7)
    match = WEEK.fullmatch(value.strip())
    try:
        if not match:
            raise ValueError(value)
        monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        raise BadQuery("A week is written YYYY-Www, as 2024-W09 (weeks 01 to 52, or 53 in a year that has it).") \
            from None
    if not EPOCH + timedelta(days=7) <= monday <= LAST_DAY - timedelta(days=6):  # the summary's two weeks
        raise BadQuery(f"Dates run from {EPOCH} to {LAST_DAY}.")
    return monday


# --- tables -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # the CSV's header
    label: str  # the page's
    kind: str = "int"  # text, label (text kept on one line), date, int, pct, mean, nps, seconds: how the page writes it

    @property
    def css(self) -> str:
        return "nowrap" if self.kind in ("date", "label") else "" if self.kind == "text" else "num"


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    definition: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    total: tuple[Any, ...] | None = None


def cell(value: Any, kind: str) -> str:
    """A value as the page shows it."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value:.1f} %"
    if kind == "mean":
        return f"{value:.2f}"
    if kind == "nps":
        return f"{value:+.1f}"
    if kind == "seconds":
        return f"{value / 60:.1f} min"
    return str(value)


def change(current: Any, previous: Any, kind: str) -> str:
    """This week minus the week before, as the weekly summary shows it."""
    if current is None or previous is None:
        return "—"
    delta = current - previous
    if kind == "pct":
        return f"{delta:+.1f} pts"
    if kind == "seconds":
        return f"{delta / 60:+.1f} min"
    if kind == "mean":
        return f"{delta:+.2f}"
    if kind == "nps":
        return f"{delta:+.1f}"
    return f"{delta:+d}" if delta else "0"


def _csv_value(value: Any) -> Any:
    """Numbers as numbers (no unit, no grouping), dates in ISO form, text that cannot turn into a formula."""
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value.isoformat() if isinstance(value, date) else value


def csv_bytes(table: Table) -> bytes:
    """The table as CSV: UTF-8 with a BOM (Excel then reads Chinese right), a header row, the total last."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(c.key for c in table.columns)
    for row in (*table.rows, *([table.total] if table.total else [])):
        writer.writerow(_csv_value(v) for v in row)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# --- the reports -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class ReportView:
    figures: tuple[Figure, ...]
    charts: tuple[Chart, ...]
    tables: tuple[Table, ...]  # on the page
    csv: Table  # the download


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    lead: str
    build: Callable[[CRM, ReportQuery], Awaitable[ReportView]] = field(repr=False)
    series: bool = True  # cut into periods (the granularity applies)

    def filename(self, query: ReportQuery) -> str:
        grain = f"-{query.granularity}" if self.series else ""
        return f"kefu-{self.name}-{query.start}_{query.end}{grain}.csv"


PERIOD_COLUMNS = (Column("period_start", "From", "date"), Column("period_end", "To", "date"),
                  Column("period", "Period", "label"))


def _period(p: Period) -> tuple[Any, ...]:
    return p.start, p.end, p.label


def _series_table(key: str, title: str, definition: str, series: KpiSeries[Any], columns: Sequence[Column],
                  values: Callable[[Any], tuple[Any, ...]]) -> Table:
    return Table(key, title, definition, (*PERIOD_COLUMNS, *columns),
                 tuple((*_period(r.period), *values(r)) for r in series.rows),
                 (*_period(series.total.period), *values(series.total)))


def _columns_chart(key: str, title: str, description: str, series: KpiSeries[Any],
                   values: Callable[[Any], tuple[float, ...]], legend: Sequence[tuple[str, str]]) -> Chart:
    return stacked_columns(key=key, title=title, description=description, series=legend,
                           columns=[(r.period.label, values(r)) for r in series.rows])


def _minutes(seconds: float | None) -> float:
    return 0 if seconds is None else round(seconds / 60, 1)


async def _satisfaction(crm: CRM, q: ReportQuery) -> ReportView:
    s = await crm.kpis.satisfaction(start=q.start, end=q.end, granularity=q.granularity)
    csat, nps = s.total.csat, s.total.nps
    table = _series_table(
        "satisfaction", "CSAT and NPS by period",
        "Survey answers given (answered) in each period, whenever the survey was sent, with a score. CSAT (1–5): "
        "answers, mean score, share of 4s and 5s. NPS (0–10): promoters 9–10, passives 7–8, detractors 0–6; "
        "NPS = % promoters − % detractors. " + PERIODS_NOTE, s,
        (Column("csat_answers", "CSAT answers"), Column("csat_mean", "CSAT mean", "mean"),
         Column("csat_satisfied_pct", "CSAT 4–5", "pct"), Column("nps_answers", "NPS answers"),
         Column("promoters", "Promoters"), Column("passives", "Passives"), Column("detractors", "Detractors"),
         Column("nps", "NPS", "nps")),
        lambda r: (r.csat.n, r.csat.mean, r.csat.satisfied_pct, r.nps.n, r.nps.promoters, r.nps.passives,
                   r.nps.detractors, r.nps.score))
    return ReportView(
        (Figure("CSAT", cell(csat.mean, "mean"), f"{cell(csat.satisfied_pct, 'pct')} 4–5; n={csat.n}"),
         Figure("NPS", cell(nps.score, "nps"),
                f"{nps.promoters} / {nps.passives} / {nps.detractors}; n={nps.n}")),
        (_columns_chart("chart-csat", "CSAT answers by period", f"{csat.n} CSAT answers, {csat.satisfied} of "
                        "them 4 or 5.", s, lambda r: (r.csat.satisfied, r.csat.n - r.csat.satisfied),
                        (("csat-5", "4 or 5"), ("csat-2", "1 to 3"))),
         _columns_chart("chart-nps", "NPS answers by period", f"{nps.n} NPS answers: {nps.promoters} promoters, "
                        f"{nps.passives} passives, {nps.detractors} detractors.", s,
                        lambda r: (r.nps.promoters, r.nps.passives, r.nps.detractors),
                        (("promoter", "promoters"), ("passive", "passives"), ("detractor", "detractors")))),
        (table,), table)


async def _retention(crm: CRM, q: ReportQuery) -> ReportView:
    s = await crm.kpis.retention(start=q.start, end=q.end, granularity=q.granularity)
    total = s.total
    table = _series_table(
        "retention", "Retention and repeat purchases by period",
        "Counted orders (paid, shipped or completed) placed in each period: the customers with one, their orders, "
        "the customers with two or more (repeat), and the customers who ordered again in the next period "
        "(retained; blank when the next period starts after the range). The last row: customers with two or "
        "more counted orders in the whole range among those with one (the repeat-purchase rate). "
        + PERIODS_NOTE, s,
        (Column("customers_ordering", "Customers ordering"), Column("counted_orders", "Counted orders"),
         Column("repeat_customers", "Repeat customers"), Column("repeat_purchase_pct", "Repeat rate", "pct"),
         Column("retained_next_period", "Ordered again next period"), Column("retention_pct", "Retention", "pct")),
        lambda r: (r.customers, r.orders, r.repeat_customers, r.repeat_pct, r.retained, r.retention_pct))
    return ReportView(
        (Figure("Repeat-purchase rate", cell(total.repeat_pct, "pct"),
                f"{total.repeat_customers} of {total.customers} customers ordered twice or more"),
         Figure("Counted orders", str(total.orders))),
        (_columns_chart("chart-retention", "Customers ordering, and whether they ordered again the next period",
                        f"{total.customers} customers placed {total.orders} counted orders.", s,
                        lambda r: (0, 0, r.customers) if r.retained is None
                        else (r.retained, r.customers - r.retained, 0),
                        (("contained", "ordered again"), ("handoff", "did not"),
                         ("passive", "next period after the range"))),),
        (table,), table)


async def _containment(crm: CRM, q: ReportQuery) -> ReportView:
    s = await crm.kpis.containment(start=q.start, end=q.end, granularity=q.granularity)
    total = s.total
    table = _series_table(
        "containment", "Bot containment by period",
        "Conversations started in each period; engaged: with at least one customer message; handed off: engaged "
        "and with a ticket (ever); contained: engaged, handled by the bot alone (no ticket). Containment and "
        "handoff are shares of the engaged. " + PERIODS_NOTE, s,
        (Column("conversations", "Conversations"), Column("engaged", "With a customer message"),
         Column("contained", "Contained"), Column("handed_off", "Handed off"),
         Column("containment_pct", "Containment", "pct"), Column("handoff_pct", "Handoff", "pct")),
        lambda r: (r.conversations, r.engaged, r.contained, r.handed_off, r.containment_pct, r.handoff_pct))
    return ReportView(
        (Figure("Bot containment", cell(total.containment_pct, "pct"), f"{total.contained} of {total.engaged}"),
         Figure("Conversations", str(total.conversations), f"{total.engaged} with a customer message")),
        (_columns_chart("chart-containment", "Contained by the bot vs handed off", f"Of {total.engaged} engaged "
                        f"conversations, {total.contained} were contained and {total.handed_off} handed off.", s,
                        lambda r: (r.contained, r.handed_off),
                        (("contained", "contained by the bot"), ("handoff", "handed off"))),),
        (table,), table)


async def _response_times(crm: CRM, q: ReportQuery) -> ReportView:
    s = await crm.kpis.response_times(start=q.start, end=q.end, granularity=q.granularity)
    first, resolution = s.total.first_response, s.total.resolution
    table = _series_table(
        "response-times", "First response and resolution times by period",
        "Tickets opened in each period. First response: ticket opened → the first agent reply, over the tickets "
        "replied to. Resolution: ticket opened → resolved, over the tickets resolved. Median and 90th percentile, "
        "interpolated linearly; in seconds in the CSV. " + PERIODS_NOTE, s,
        (Column("first_responses", "Replied to"), Column("frt_median_seconds", "First response, median", "seconds"),
         Column("frt_p90_seconds", "First response, p90", "seconds"), Column("resolved", "Resolved"),
         Column("resolution_median_seconds", "Resolution, median", "seconds"),
         Column("resolution_p90_seconds", "Resolution, p90", "seconds")),
        lambda r: (r.first_response.n, r.first_response.median_seconds, r.first_response.p90_seconds,
                   r.resolution.n, r.resolution.median_seconds, r.resolution.p90_seconds))
    return ReportView(
        (Figure("First response", cell(first.median_seconds, "seconds"),
                f"median; p90 {cell(first.p90_seconds, 'seconds')}; n={first.n}"),
         Figure("Resolution", cell(resolution.median_seconds, "seconds"),
                f"median; p90 {cell(resolution.p90_seconds, 'seconds')}; n={resolution.n}")),
        (_columns_chart("chart-first-response", "Median first response (minutes)",
                        "The median first response time of the tickets opened in each period, in minutes.", s,
                        lambda r: (_minutes(r.first_response.median_seconds),), (("primary", "minutes"),)),
         _columns_chart("chart-resolution", "Median resolution (minutes)",
                        "The median resolution time of the tickets opened in each period, in minutes.", s,
                        lambda r: (_minutes(r.resolution.median_seconds),), (("primary", "minutes"),))),
        (table,), table)


TICKET_COLUMNS = (Column("opened", "Opened"), Column("resolved", "Resolved"), Column("open_now", "Open now"))
TICKETS_DEFINITION = ("Opened: tickets created in the range. Resolved: tickets resolved in the range, whenever "
                      "opened. Open now: tickets new, open or pending as the report runs, whenever opened.")


def _ticket_cells(c: TicketCount) -> tuple[Any, ...]:
    return c.name, c.opened, c.resolved, c.open_now


async def _tickets(crm: CRM, q: ReportQuery) -> ReportView:
    r = await crm.kpis.tickets(start=q.start, end=q.end)
    by_category = Table(
        "by-category", "Tickets by category",
        f"{TICKETS_DEFINITION} Category: the ticket's category, else the reason of its handoff (“handoff: "
        "no_answer”), else “uncategorised”.", (Column("name", "Category", "text"), *TICKET_COLUMNS),
        tuple(_ticket_cells(c) for c in r.by_category), _ticket_cells(r.total))
    by_team = Table("by-team", "Tickets by team", f"{TICKETS_DEFINITION} Team: the ticket's team now.",
                    (Column("name", "Team", "text"), *TICKET_COLUMNS), tuple(_ticket_cells(c) for c in r.by_team),
                    _ticket_cells(r.total))
    download = Table("tickets", "Tickets", TICKETS_DEFINITION,
                     (Column("dimension", "By", "text"), *by_category.columns),
                     (*(("category", *row) for row in by_category.rows), *(("team", *row) for row in by_team.rows)),
                     ("total", *_ticket_cells(r.total)))
    return ReportView(
        (Figure("Opened", str(r.total.opened)), Figure("Resolved", str(r.total.resolved)),
         Figure("Open now", str(r.total.open_now))),
        (horizontal_bars(key="chart-categories", title="Tickets opened by category",
                         description=f"{r.total.opened} tickets opened, by category.",
                         rows=[(c.name, c.opened) for c in r.by_category if c.opened]),
         horizontal_bars(key="chart-teams", title="Tickets opened by team",
                         description=f"{r.total.opened} tickets opened, by team.",
                         rows=[(c.name, c.opened) for c in r.by_team if c.opened])),
        (by_category, by_team), download)


async def _agents(crm: CRM, q: ReportQuery) -> ReportView:
    rows = await crm.kpis.agent_performance(start=q.start, end=q.end)
    table = Table(
        "agents", "Agent performance",
        "Per agent, by the tickets they are assigned now: tickets resolved in the range; median first response and "
        "median resolution of the tickets opened in the range (seconds in the CSV); CSAT answers given in the range "
        "for their tickets (count, mean); public replies sent in the range (notes excluded). Every active agent, "
        "and inactive ones with any of these.",
        (Column("agent", "Agent", "text"), Column("tickets_resolved", "Tickets resolved"),
         Column("frt_median_seconds", "First response, median", "seconds"),
         Column("resolution_median_seconds", "Resolution, median", "seconds"),
         Column("csat_answers", "CSAT answers"), Column("csat_mean", "CSAT mean", "mean"),
         Column("replies_sent", "Replies sent")),
        tuple((a.name, a.resolved, a.first_response_median_seconds, a.resolution_median_seconds, a.csat.n,
               a.csat.mean, a.replies) for a in rows))
    return ReportView(
        (Figure("Tickets resolved", str(sum(a.resolved for a in rows))),
         Figure("Replies sent", str(sum(a.replies for a in rows)))),
        (horizontal_bars(key="chart-agents", title="Tickets resolved by agent",
                         description="Tickets resolved in the range, by their assignee.",
                         rows=[(a.name, a.resolved) for a in sorted(rows, key=lambda a: -a.resolved) if a.resolved]),),
        (table,), table)


async def _intents(crm: CRM, q: ReportQuery) -> ReportView:
    rows = await crm.kpis.intents(start=q.start, end=q.end)
    table = Table(
        "intents", "Intents",
        "The bot's replies sent in the range, by the intent the NLU gave the message they answered, most frequent "
        "first: replies, share of all replies with an intent, conversations with such a reply, and of those the "
        "ones the bot handled alone (no ticket ever: contained).",
        (Column("intent", "Intent", "text"), Column("bot_replies", "Bot replies"), Column("share_pct", "Share", "pct"),
         Column("conversations", "Conversations"), Column("contained", "Contained"),
         Column("containment_pct", "Containment", "pct")),
        tuple((i.intent, i.replies, i.share_pct, i.conversations, i.contained, i.containment_pct) for i in rows))
    return ReportView(
        (Figure("Bot replies with an intent", str(sum(i.replies for i in rows))),
         Figure("Intents", str(len(rows)))),
        (horizontal_bars(key="chart-intents", title="Top intents", description="The ten most frequent intents of "
                         "the bot's replies.", rows=[(i.intent, i.replies) for i in rows[:10]]),),
        (table,), table)


REPORTS = {r.name: r for r in (
    Report("satisfaction", "CSAT & NPS", "Customer satisfaction and Net Promoter Score over time.", _satisfaction),
    Report("retention", "Retention", "Customers who order again, and the repeat-purchase rate.", _retention),
    Report("containment", "Containment", "Conversations the bot handled without a person, over time.",
           _containment),
    Report("response-times", "Response times", "First response and resolution times, median and p90, over time.",
           _response_times),
    Report("tickets", "Tickets", "Tickets opened, resolved and open, by category and by team.", _tickets,
           series=False),
    Report("agents", "Agents", "Each agent's resolved tickets, response times, CSAT and replies.", _agents,
           series=False),
    Report("intents", "Intents", "What customers ask the bot most, and how often it copes alone.", _intents,
           series=False),
)}


# --- the weekly summary ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeeklyLine:
    label: str
    kind: str
    current: Any
    previous: Any

    @property
    def change(self) -> str:
        return change(self.current, self.previous, self.kind)


def weekly_lines(s: WeeklySummary) -> tuple[WeeklyLine, ...]:
    """The summary's headline numbers, this week and the one before."""
    now, before = s.current, s.previous
    lines: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("Conversations", "int", lambda w: w.volume.conversations),
        ("With a customer message", "int", lambda w: w.volume.engaged),
        ("Bot containment", "pct", lambda w: w.volume.containment_pct),
        ("Tickets opened", "int", lambda w: w.tickets.opened),
        ("Tickets resolved", "int", lambda w: w.tickets.resolved),
        ("First response, median", "seconds", lambda w: w.times.first_response.median_seconds),
        ("Resolution, median", "seconds", lambda w: w.times.resolution.median_seconds),
        ("CSAT mean", "mean", lambda w: w.satisfaction.csat.mean),
        ("CSAT answers", "int", lambda w: w.satisfaction.csat.n),
        ("NPS", "nps", lambda w: w.satisfaction.nps.score),
        ("NPS answers", "int", lambda w: w.satisfaction.nps.n),
        ("Customers who ordered", "int", lambda w: w.orders.customers),
        ("Counted orders", "int", lambda w: w.orders.orders),
    ]
    return tuple(WeeklyLine(label, kind, value(now), value(before)) for label, kind, value in lines)


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"
