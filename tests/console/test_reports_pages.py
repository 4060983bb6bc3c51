"""The Reports section through the console's ASGI app, on the hand-made data set of tests/crm_store/kpi_seed.py
(January to March 2024, by month): each page's tables and each CSV hold the numbers worked out by hand in
tests/crm_store/test_report_kpis.py; CSV cells cannot become formulas; bad parameters answer 400; agents get 403."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.console.conftest import PASSWORD, session_for
from tests.console.pages import flash_error, table_rows
from tests.crm_store.kpi_seed import AFTER_SALES, CARE, seed_kpis

RANGE = {"start": "2024-01-01", "end": "2024-03-31", "granularity": "month"}
JAN, FEB, MAR = ["2024-01-01", "2024-01-31", "2024-01"], ["2024-02-01", "2024-02-29", "2024-02"], [
    "2024-03-01", "2024-03-31", "2024-03"]
TOTAL = ["2024-01-01", "2024-03-31", "Total"]

# name: (the CSV's header, its rows, {section id: the page's rows}); every number from test_report_kpis.py.
EXPECTED: dict[str, tuple[list[str], list[list[str]], dict[str, list[list[str]]]]] = {
    "satisfaction": (
        ["period_start", "period_end", "period", "csat_answers", "csat_mean", "csat_satisfied_pct", "nps_answers",
         "promoters", "passives", "detractors", "nps"],
        [[*JAN, "2", "4.5", "100.0", "3", "2", "0", "1", "33.3333"],
         [*FEB, "1", "3.0", "0.0", "4", "0", "2", "2", "-50.0"],
         [*MAR, "3", "3.6667", "66.6667", "0", "0", "0", "0", ""],
         [*TOTAL, "6", "3.8333", "66.6667", "7", "2", "2", "3", "-14.2857"]],
        {"satisfaction": [[*JAN, "2", "4.50", "100.0 %", "3", "2", "0", "1", "+33.3"],
                          [*FEB, "1", "3.00", "0.0 %", "4", "0", "2", "2", "-50.0"],
                          [*MAR, "3", "3.67", "66.7 %", "0", "0", "0", "0", "—"],
                          [*TOTAL, "6", "3.83", "66.7 %", "7", "2", "2", "3", "-14.3"]]},
    ),
    "retention": (
        ["period_start", "period_end", "period", "customers_ordering", "counted_orders", "repeat_customers",
         "repeat_purchase_pct", "retained_next_period", "retention_pct"],
        [[*JAN, "3", "4", "1", "33.3333", "1", "33.3333"], [*FEB, "2", "2", "0", "0.0", "1", "50.0"],
         [*MAR, "2", "2", "0", "0.0", "", ""], [*TOTAL, "4", "8", "3", "75.0", "", ""]],
        {"retention": [[*JAN, "3", "4", "1", "33.3 %", "1", "33.3 %"], [*FEB, "2", "2", "0", "0.0 %", "1", "50.0 %"],
                       [*MAR, "2", "2", "0", "0.0 %", "—", "—"], [*TOTAL, "4", "8", "3", "75.0 %", "—", "—"]]},
    ),
    "containment": (
        ["period_start", "period_end", "period", "conversations", "engaged", "contained", "handed_off",
         "containment_pct", "handoff_pct"],
        [[*JAN, "3", "2", "1", "1", "50.0", "50.0"], [*FEB, "3", "3", "2", "1", "66.6667", "33.3333"],
         [*MAR, "3", "3", "1", "2", "33.3333", "66.6667"], [*TOTAL, "9", "8", "4", "4", "50.0", "50.0"]],
        {"containment": [[*JAN, "3", "2", "1", "1", "50.0 %", "50.0 %"],
                         [*FEB, "3", "3", "2", "1", "66.7 %", "33.3 %"],
                         [*MAR, "3", "3", "1", "2", "33.3 %", "66.7 %"],
                         [*TOTAL, "9", "8", "4", "4", "50.0 %", "50.0 %"]]},
    ),
    "response-times": (
        ["period_start", "period_end", "period", "first_responses", "frt_median_seconds", "frt_p90_seconds",
         "resolved", "resolution_median_seconds", "resolution_p90_seconds"],
        [[*JAN, "1", "600.0", "600.0", "1", "3600.0", "3600.0"], [*FEB, "1", "1800.0", "1800.0", "1", "7200.0",
                                                                   "7200.0"],
         [*MAR, "3", "1200.0", "2160.0", "2", "8100.0", "13140.0"],
         [*TOTAL, "5", "1200.0", "2160.0", "4", "5400.0", "12240.0"]],
        {"response-times": [[*JAN, "1", "10.0 min", "10.0 min", "1", "60.0 min", "60.0 min"],
                            [*FEB, "1", "30.0 min", "30.0 min", "1", "120.0 min", "120.0 min"],
                            [*MAR, "3", "20.0 min", "36.0 min", "2", "135.0 min", "219.0 min"],
                            [*TOTAL, "5", "20.0 min", "36.0 min", "4", "90.0 min", "204.0 min"]]},
    ),
    "tickets": (
        ["dimension", "name", "opened", "resolved", "open_now"],
        [["category", "orders", "3", "3", "1"], ["category", "handoff: complaint", "1", "0", "1"],
         ["category", "handoff: no_answer", "1", "1", "0"], ["category", "refunds", "1", "1", "1"],
         ["team", CARE, "3", "3", "1"], ["team", AFTER_SALES, "2", "2", "1"], ["team", "No team", "1", "0", "1"],
         ["total", "Total", "6", "5", "3"]],
        {"by-category": [["orders", "3", "3", "1"], ["handoff: complaint", "1", "0", "1"],
                         ["handoff: no_answer", "1", "1", "0"], ["refunds", "1", "1", "1"], ["Total", "6", "5", "3"]],
         "by-team": [[CARE, "3", "3", "1"], [AFTER_SALES, "2", "2", "1"], ["No team", "1", "0", "1"],
                     ["Total", "6", "5", "3"]]},
    ),
    "agents": (
        ["agent", "tickets_resolved", "frt_median_seconds", "resolution_median_seconds", "csat_answers", "csat_mean",
         "replies_sent"],
        [["Al", "0", "", "", "0", "", "0"], ["Ann", "2", "600.0", "2700.0", "3", "3.6667", "3"],
         ["Bob", "3", "2100.0", "10800.0", "2", "4.0", "2"], ["Cat", "0", "", "", "0", "", "0"],
         ["Eve", "0", "", "", "0", "", "1"], ["Sue", "0", "", "", "0", "", "0"]],
        {"agents": [["Al", "0", "—", "—", "0", "—", "0"], ["Ann", "2", "10.0 min", "45.0 min", "3", "3.67", "3"],
                    ["Bob", "3", "35.0 min", "180.0 min", "2", "4.00", "2"], ["Cat", "0", "—", "—", "0", "—", "0"],
                    ["Eve", "0", "—", "—", "0", "—", "1"], ["Sue", "0", "—", "—", "0", "—", "0"]]},
    ),
    "intents": (
        ["intent", "bot_replies", "share_pct", "conversations", "contained", "containment_pct"],
        [["order_status", "4", "36.3636", "3", "2", "66.6667"], ["faq", "3", "27.2727", "3", "2", "66.6667"],
         ["greet", "2", "18.1818", "2", "2", "100.0"], ["human_handoff", "1", "9.0909", "1", "0", "0.0"],
         ["refund", "1", "9.0909", "1", "0", "0.0"]],
        {"intents": [["order_status", "4", "36.4 %", "3", "2", "66.7 %"], ["faq", "3", "27.3 %", "3", "2", "66.7 %"],
                     ["greet", "2", "18.2 %", "2", "2", "100.0 %"], ["human_handoff", "1", "9.1 %", "1", "0", "0.0 %"],
                     ["refund", "1", "9.1 %", "1", "0", "0.0 %"]]},
    ),
}
SERIES = {"satisfaction", "retention", "containment", "response-times"}


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), body[:10]  # the BOM: Excel reads the file as UTF-8
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


@pytest.fixture
async def people(crm, db):  # type: ignore[no-untyped-def]
    """The data set, a supervisor (Sue) and an agent (Al): two more active agents in the agents report."""
    await seed_kpis(db)
    sue = await crm.agents.create_agent(email="sue@example.com", name="Sue", password=PASSWORD, role="supervisor")
    al = await crm.agents.create_agent(email="al@example.com", name="Al", password=PASSWORD, role="agent")
    return sue, al


@pytest.fixture
async def supervisor(client, crm, people):  # type: ignore[no-untyped-def]
    await session_for(crm, people[0], client)
    return client


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_each_report_page_and_csv_hold_the_hand_computed_numbers(supervisor, name) -> None:  # type: ignore[no-untyped-def]
    header, rows, tables = EXPECTED[name]
    page = await supervisor.get(f"/reports/{name}", params=RANGE)
    assert page.status_code == 200
    for section, want in tables.items():
        assert table_rows(page.text, section) == want, section
        assert re.search(rf'id="{section}".*?<p class="definition small muted">\S.*?</p>', page.text, re.S)
    assert "<svg" in page.text  # its chart
    csv_link = f'href="/reports/{name}.csv?start=2024-01-01&amp;end=2024-03-31&amp;granularity=month"'
    assert csv_link in page.text

    download = await supervisor.get(f"/reports/{name}.csv", params=RANGE)
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    grain = "-month" if name in SERIES else ""
    assert download.headers["content-disposition"] == (
        f'attachment; filename="kefu-{name}-2024-01-01_2024-03-31{grain}.csv"')
    assert download.headers["cache-control"] == "no-store"
    assert read_csv(download.content) == [header, *rows]


async def test_a_series_by_week_and_by_day(supervisor) -> None:  # type: ignore[no-untyped-def]
    weeks = await supervisor.get("/reports/satisfaction.csv",
                                 params={"start": "2024-01-01", "end": "2024-01-31", "granularity": "week"})
    # W01: NPS 6; W02: CSAT 5, NPS 9; W03: CSAT 4; W04: nothing; W05 (01-29..31): NPS 10
    assert [(r[0], r[1], r[2], r[3], r[4], r[6], r[10]) for r in read_csv(weeks.content)[1:]] == [
        ("2024-01-01", "2024-01-07", "2024-W01", "0", "", "1", "-100.0"),
        ("2024-01-08", "2024-01-14", "2024-W02", "1", "5.0", "1", "100.0"),
        ("2024-01-15", "2024-01-21", "2024-W03", "1", "4.0", "0", ""),
        ("2024-01-22", "2024-01-28", "2024-W04", "0", "", "0", ""),
        ("2024-01-29", "2024-01-31", "2024-W05", "0", "", "1", "100.0"),
        ("2024-01-01", "2024-01-31", "Total", "2", "4.5", "3", "33.3333"),
    ]
    days = await supervisor.get("/reports/containment",
                                params={"start": "2024-02-29", "end": "2024-03-01", "granularity": "day"})
    assert table_rows(days.text, "containment") == [
        ["2024-02-29", "2024-02-29", "2024-02-29", "1", "1", "1", "0", "100.0 %", "0.0 %"],
        ["2024-03-01", "2024-03-01", "2024-03-01", "1", "1", "0", "1", "0.0 %", "100.0 %"],
        ["2024-02-29", "2024-03-01", "Total", "2", "2", "1", "1", "50.0 %", "50.0 %"]]


async def test_csv_cells_cannot_become_formulas(supervisor, crm) -> None:  # type: ignore[no-untyped-def]
    names = ['=HYPERLINK("http://evil.test","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "Ann's twin"]
    for n, name in enumerate(names):
        await crm.agents.create_agent(email=f"x{n}@example.com", name=name, password=PASSWORD)
    rows = read_csv((await supervisor.get("/reports/agents.csv", params=RANGE)).content)
    assert {r[0] for r in rows[1:]} >= {"'" + names[0], "'+1+1", "'-2+3", "'@SUM(A1)", "'\tTab", "Ann's twin"}
    assert not any(cell.startswith(("=", "+", "-", "@", "\t")) for row in rows for cell in row[:1])
    page = await supervisor.get("/reports/agents", params=RANGE)
    assert "=HYPERLINK(&#34;http://evil.test&#34;,&#34;x&#34;)" in page.text  # escaped on the page, not prefixed
    satisfaction = read_csv((await supervisor.get("/reports/satisfaction.csv", params=RANGE)).content)
    assert satisfaction[-1][-1] == "-14.2857"  # a negative number stays a number


@pytest.mark.parametrize(("params", "message"), [
    ({**RANGE, "start": "2024-03-31", "end": "2024-01-01"}, "The range ends before it starts."),
    ({**RANGE, "granularity": "year"}, "The granularity is day, week or month."),
    ({**RANGE, "start": "2022-01-01", "end": "2024-01-02"}, "A report covers at most 731 days (two years)."),
    ({**RANGE, "start": "yesterday"}, "The start date is written YYYY-MM-DD, as 2024-03-01."),
    ({**RANGE, "end": "2024-02-30"}, "The end date is written YYYY-MM-DD, as 2024-03-01."),
    ({**RANGE, "end": "20240301"}, "The end date is written YYYY-MM-DD, as 2024-03-01."),
    ({**RANGE, "start": "9999-12-30", "end": "9999-12-31"}, "Dates run from 1970-01-01 to 9998-12-31."),
    ({**RANGE, "start": "0001-01-01", "end": "0001-01-02"}, "Dates run from 1970-01-01 to 9998-12-31."),
    ({"end": "0001-01-02"}, "Dates run from 1970-01-01 to 9998-12-31."),
])
async def test_bad_parameters_are_a_400_that_says_why(supervisor, params, message) -> None:  # type: ignore[no-untyped-def]
    for name in ("satisfaction", "tickets"):
        page = await supervisor.get(f"/reports/{name}", params=params)
        assert page.status_code == 400 and flash_error(page.text) == message
        assert 'class="report-table"' not in page.text
        download = await supervisor.get(f"/reports/{name}.csv", params=params)
        assert (download.status_code, download.text) == (400, message)
        assert download.headers["content-type"].startswith("text/plain")


async def test_without_parameters_the_last_twelve_weeks_by_week(supervisor) -> None:  # type: ignore[no-untyped-def]
    for name in EXPECTED:
        page = await supervisor.get(f"/reports/{name}")
        assert page.status_code == 200, name
    download = await supervisor.get("/reports/containment.csv")
    rows = read_csv(download.content)
    assert download.status_code == 200 and rows[0][0] == "period_start"
    assert [r[2][5] for r in rows[1:-1]] == ["W"] * (len(rows) - 2) and len(rows) - 2 in (12, 13)
    index = await supervisor.get("/reports")
    assert index.status_code == 200
    assert all(f'href="/reports/{name}"' in index.text for name in EXPECTED)


async def test_the_weekly_summary(supervisor) -> None:  # type: ignore[no-untyped-def]
    page = await supervisor.get("/reports/weekly", params={"week": "2024-W13"})
    assert page.status_code == 200
    assert "2024-03-25 to 2024-03-31" in page.text
    # W13: K9 contained; X9 (40 min, 240 min); CSAT 5; C's order. W12: X5 (5 min, 30 min); CSAT 4 and 2.
    assert table_rows(page.text, "headline") == [
        ["Conversations", "1", "0", "+1"],
        ["With a customer message", "1", "0", "+1"],
        ["Bot containment", "100.0 %", "—", "—"],
        ["Tickets opened", "1", "1", "0"],
        ["Tickets resolved", "1", "1", "0"],
        ["First response, median", "40.0 min", "5.0 min", "+35.0 min"],
        ["Resolution, median", "240.0 min", "30.0 min", "+210.0 min"],
        ["CSAT mean", "5.00", "3.00", "+2.00"],
        ["CSAT answers", "1", "2", "-1"],
        ["NPS", "—", "—", "—"],
        ["NPS answers", "0", "0", "0"],
        ["Customers who ordered", "1", "0", "+1"],
        ["Counted orders", "1", "0", "+1"],
    ]
    assert "Open tickets now: 3." in page.text
    assert table_rows(page.text, "weekly-intents") == [["order_status", "1", "100.0 %", "100.0 %"]]
    assert table_rows(page.text, "weekly-teams") == [[CARE, "1", "1", "1"], ["No team", "0", "0", "1"],
                                                     [AFTER_SALES, "0", "0", "1"]]
    assert 'href="/reports/weekly?week=2024-W12"' in page.text and 'href="/reports/weekly?week=2024-W14"' in page.text
    css = (await supervisor.get(re.search(r'href="(/static/reports\.css[^"]*)"', page.text).group(1))).text  # type: ignore[union-attr]
    assert "@page { size: A4" in css and ".topbar, .tabs, .no-print" in css and "break-inside: avoid" in css
    assert (await supervisor.get("/reports/weekly")).status_code == 200  # the last whole week


@pytest.mark.parametrize(("week", "message"), [
    *((week, "A week is written YYYY-Www, as 2024-W09 (weeks 01 to 52, or 53 in a year that has it).")
      for week in ("2024-13", "2024-W60", "2023-W53", "2024-W00", "W13", "2024-W1", "2024-W13<script>")),
    ("1970-W01", "Dates run from 1970-01-01 to 9998-12-31."), ("9999-W52", "Dates run from 1970-01-01 to 9998-12-31."),
])
async def test_a_malformed_week_is_a_400(supervisor, week, message) -> None:  # type: ignore[no-untyped-def]
    page = await supervisor.get("/reports/weekly", params={"week": week})
    assert page.status_code == 400 and flash_error(page.text) == message
    assert "<script>" not in page.text.split("</head>")[1].replace('<script src="', "")


async def test_an_agent_may_not_see_reports(client, crm, people) -> None:  # type: ignore[no-untyped-def]
    await session_for(crm, people[1], client)
    for path in ("/reports", "/reports/weekly", "/reports/satisfaction", "/reports/agents.csv"):
        response = await client.get(path, params=RANGE)
        assert response.status_code == 403 and "Not allowed" in response.text, path
    assert 'href="/reports"' not in (await client.get("/inbox")).text


async def test_a_supervisor_finds_reports_in_the_navigation(supervisor) -> None:  # type: ignore[no-untyped-def]
    page = await supervisor.get("/reports/tickets", params=RANGE)
    nav = re.search(r'<nav class="mainnav".*?</nav>', page.text, re.S).group(0)  # type: ignore[union-attr]
    assert '<a href="/reports" aria-current="page">Reports</a>' in nav
