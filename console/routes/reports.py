"""The Reports section (supervisors and admins: analytics.view): a page per report over a range of UTC days and a
granularity, each with its CSV (`/reports/<name>.csv`), and a printable weekly summary. The reports are catalogued
in `console/reports.py`; the numbers come from `crm.kpis` (crm_store/services/kpis.py). Bad parameters answer 400
with what is wrong."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from console.context import ConsoleDep
from console.permissions import Permission, require
from console.reports import REPORTS, BadQuery, Report, cell, csv_bytes, iso_week, read_query, read_week, weekly_lines
from console.web import render, with_security_headers
from crm_store.coltypes import utcnow
from crm_store.enums import Granularity

router = APIRouter()
VIEW = [require(Permission.ANALYTICS_VIEW)]
Endpoint = Callable[..., Awaitable[Response]]


@router.get("/reports", dependencies=VIEW)
async def reports_index(request: Request) -> Response:
    return render(request, "reports/index.html", reports=REPORTS.values())


@router.get("/reports/weekly", dependencies=VIEW)
async def weekly_summary(request: Request, console: ConsoleDep, week: str = "") -> Response:
    try:
        monday = read_week(week, utcnow().date())
    except BadQuery as exc:
        return render(request, "reports/weekly.html", status_code=400, error=str(exc), summary=None, week=week[:20],
                      reports=REPORTS.values())
    summary = await console.crm.kpis.weekly(week=monday)
    return render(request, "reports/weekly.html", error=None, summary=summary, week=summary.week,
                  next_week=iso_week(monday + timedelta(days=7)), lines=weekly_lines(summary), cell=cell,
                  reports=REPORTS.values())


def report_page(report: Report) -> Endpoint:
    async def page(request: Request, console: ConsoleDep, start: str = "", end: str = "",
                   granularity: str = "") -> Response:
        form = {"start": start[:20], "end": end[:20], "granularity": granularity[:20]}
        try:
            query = read_query(start, end, granularity, utcnow().date())
        except BadQuery as exc:
            return _page(request, report, status_code=400, error=str(exc), form=form, view=None, csv_url=None)
        view = await report.build(console.crm, query)
        return _page(request, report, error=None, form=query.params(), view=view,
                     csv_url=f"/reports/{report.name}.csv?{urlencode(query.params())}")

    return page


def report_csv(report: Report) -> Endpoint:
    async def download(console: ConsoleDep, start: str = "", end: str = "", granularity: str = "") -> Response:
        try:
            query = read_query(start, end, granularity, utcnow().date())
        except BadQuery as exc:
            return with_security_headers(PlainTextResponse(str(exc), status_code=400))
        view = await report.build(console.crm, query)
        return with_security_headers(Response(
            csv_bytes(view.csv), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.filename(query)}"'}))

    return download


def _page(request: Request, report: Report, **context: object) -> Response:
    return render(request, "reports/report.html", report=report, reports=REPORTS.values(), cell=cell,
                  granularities=[g.value for g in Granularity], **context)


for _report in REPORTS.values():
    router.add_api_route(f"/reports/{_report.name}.csv", report_csv(_report), methods=["GET"], dependencies=VIEW,
                         name=f"report-csv:{_report.name}")
    router.add_api_route(f"/reports/{_report.name}", report_page(_report), methods=["GET"], dependencies=VIEW,
                         name=f"report:{_report.name}")
