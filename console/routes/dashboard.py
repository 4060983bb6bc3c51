"""The dashboard (supervisors and admins): KPI tiles, charts drawn on the server as inline SVG, top intents and the
questions the bot could not answer, for the last 7 / 30 / 90 UTC days or a custom range, on one channel or all.
The numbers come from `crm.reports` (crm_store/services/reports.py), where each KPI is defined."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from console.charts import Chart, horizontal_bars, proportion_rows, stacked_columns
from console.context import ConsoleDep
from console.permissions import Permission, require
from console.web import render
from crm_store.coltypes import utcnow
from crm_store.dto import DashboardReport
from crm_store.enums import Channel

router = APIRouter()

PERIODS = {"7": "Last 7 days", "30": "Last 30 days", "90": "Last 90 days", "custom": "Custom"}
DEFAULT_PERIOD = "30"
CHANNELS = tuple(c.value for c in Channel)


@dataclass(frozen=True)
class Filters:
    period: str
    start: date
    end: date
    channel: str | None


def read_filters(period: str, start: str, end: str, channel: str, today: date) -> tuple[Filters, str | None]:
    """The filters as asked, or the default ones and why the asked ones cannot be used."""
    chosen = channel if channel in CHANNELS else None
    if period == "custom":
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError:
            error = "Give both dates of a custom range (YYYY-MM-DD)."
        else:
            return Filters("custom", first, last, chosen), None
    else:
        error = None
    days = int(period) if period in PERIODS and period != "custom" else int(DEFAULT_PERIOD)
    return Filters(str(days), today - timedelta(days=days - 1), today, chosen), error


@router.get("/dashboard", dependencies=[require(Permission.ANALYTICS_VIEW)])
async def dashboard(request: Request, console: ConsoleDep, period: str = DEFAULT_PERIOD, start: str = "",
                    end: str = "", channel: str = "") -> Response:
    filters, error = read_filters(period, start[:10], end[:10], channel, utcnow().date())
    try:
        report = await console.crm.reports.dashboard(start=filters.start, end=filters.end, channel=filters.channel)
    except ValueError as exc:  # a range that ends before it starts, or is too long
        error, report = str(exc), None
    return render(request, "dashboard/page.html", status_code=400 if error else 200, filters=filters, error=error,
                  report=report, charts=charts_of(report) if report else {}, periods=PERIODS, channels=CHANNELS)


def charts_of(report: DashboardReport) -> dict[str, Chart]:
    """The dashboard's four charts, from its report."""
    days = [(d.day.strftime("%m-%d"), d) for d in report.days]
    csat, nps = report.csat, report.nps
    return {
        "volume": stacked_columns(
            key="chart-volume", title="Conversations per day",
            description=f"{report.conversations} conversations started from {report.start} to {report.end}, "
                        "by UTC day.",
            columns=[(name, (d.conversations,)) for name, d in days], series=[("primary", "conversations")]),
        "outcome": stacked_columns(
            key="chart-outcome", title="Contained by the bot vs handed off, per day",
            description=f"Of {report.engaged} conversations with a customer message, {report.contained} were "
                        f"handled by the bot alone and {report.handed_off} were handed to a person.",
            columns=[(name, (d.contained, d.handed_off)) for name, d in days],
            series=[("contained", "contained by the bot"), ("handoff", "handed off")]),
        "satisfaction": proportion_rows(
            key="chart-satisfaction", title="CSAT and NPS answers",
            description=f"CSAT: {csat.n} answers, {csat.satisfied} of them 4 or 5. NPS: {nps.n} answers, "
                        f"{nps.promoters} promoters, {nps.passives} passives, {nps.detractors} detractors.",
            rows=[("CSAT", [(f"csat-{s}", f"score {s}", csat.by_score.get(s, 0)) for s in range(1, 6)]),
                  ("NPS", [("detractor", "detractors (0-6)", nps.detractors),
                           ("passive", "passives (7-8)", nps.passives),
                           ("promoter", "promoters (9-10)", nps.promoters)])]),
        "intents": horizontal_bars(
            key="chart-intents", title="Top intents",
            description=f"The most frequent intents of {report.bot_replies_with_intent} bot replies.",
            rows=[(i.intent, i.count) for i in report.top_intents]),
    }
