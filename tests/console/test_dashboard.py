"""The dashboard through the console's ASGI app, on the reports' hand-computed data set
(tests/crm_store/report_seed.py): exact KPI tiles, filters, well-formed accessible SVG, escaped questions, and
who may see it."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from crm_store.coltypes import utcnow
from tests.console.conftest import session_for
from tests.crm_store.report_seed import END, SCRIPT_QUESTION, START, seed_reports

SVG = "{http://www.w3.org/2000/svg}"
RANGE = {"period": "custom", "start": str(START), "end": str(END)}


def kpis(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in re.findall(r'data-kpi="([\w-]+)">([^<]*)<', page)}


def charts(page: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", page, re.S)]


@pytest.fixture
async def supervisor(client, crm, db, staff):  # type: ignore[no-untyped-def]
    await seed_reports(db)
    await session_for(crm, staff.supervisor, client)
    return client


async def test_a_supervisor_sees_the_exact_kpis(supervisor) -> None:  # type: ignore[no-untyped-def]
    page = await supervisor.get("/dashboard", params=RANGE)
    assert page.status_code == 200
    assert kpis(page.text) == {
        "conversations": "6", "containment": "60.0 %", "handoff": "40.0 %",
        "frt-median": "3.0 min", "frt-p90": "8.2 min", "resolution-median": "60.0 min", "resolution-p90": "108.0 min",
        "csat": "3.80", "csat-satisfied": "60.0 %", "nps": "+40.0",
    }
    assert "3 of 5" in page.text and "2 of 5" in page.text  # contained and handed off, of the engaged
    assert "How these are counted" in page.text


async def test_the_channel_and_range_filters(supervisor) -> None:  # type: ignore[no-untyped-def]
    telegram = await supervisor.get("/dashboard", params={**RANGE, "channel": "telegram"})
    assert kpis(telegram.text) == {
        "conversations": "3", "containment": "66.7 %", "handoff": "33.3 %",
        "frt-median": "6.0 min", "frt-p90": "9.2 min", "resolution-median": "45.0 min", "resolution-p90": "57.0 min",
        "csat": "4.00", "csat-satisfied": "66.7 %", "nps": "+33.3",
    }
    assert '<option value="telegram" selected>' in telegram.text
    first_day = await supervisor.get("/dashboard", params={**RANGE, "end": str(START)})
    assert kpis(first_day.text)["conversations"] == "3"
    unknown_channel = await supervisor.get("/dashboard", params={**RANGE, "channel": "fax"})
    assert kpis(unknown_channel.text)["conversations"] == "6"  # every channel


async def test_the_preset_periods_end_today_and_bad_ranges_are_explained(supervisor) -> None:  # type: ignore[no-untyped-def]
    today = utcnow().date()
    week = await supervisor.get("/dashboard", params={"period": "7"})
    assert week.status_code == 200
    assert f'name="start" value="{today - timedelta(days=6)}"' in week.text
    assert f'name="end" value="{today}"' in week.text
    assert kpis(week.text)["conversations"] == "0" and kpis(week.text)["containment"] == "—"
    default = await supervisor.get("/dashboard")
    assert f'name="start" value="{today - timedelta(days=29)}"' in default.text
    backwards = await supervisor.get("/dashboard", params={**RANGE, "start": str(END), "end": str(START)})
    assert backwards.status_code == 400 and "ends before it starts" in backwards.text
    too_long = await supervisor.get("/dashboard", params={**RANGE, "start": "2020-01-01"})
    assert too_long.status_code == 400 and "at most 366 days" in too_long.text
    garbled = await supervisor.get("/dashboard", params={**RANGE, "start": "yesterday"})
    assert garbled.status_code == 400 and "YYYY-MM-DD" in garbled.text
    assert kpis(garbled.text)["conversations"] == "0"  # the default range, shown instead


async def test_the_charts_are_well_formed_accessible_svg(supervisor) -> None:  # type: ignore[no-untyped-def]
    page = (await supervisor.get("/dashboard", params=RANGE)).text
    svgs = charts(page)
    assert len(svgs) == 4
    for svg in svgs:
        assert svg.get("role") == "img" and svg.get("viewBox")
        title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
        assert title is not None and title.text and desc is not None and desc.text
        assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    volume, outcome, satisfaction, intents = svgs
    tooltips = [rect.find(f"{SVG}title").text for rect in volume.iter(f"{SVG}rect")]  # type: ignore[union-attr]
    assert tooltips == ["03-01: 3 conversations", "03-02: 1 conversations", "03-03: 2 conversations"]
    stacked = [rect.find(f"{SVG}title").text for rect in outcome.iter(f"{SVG}rect")]  # type: ignore[union-attr]
    assert stacked == ["03-01: 1 contained by the bot", "03-01: 1 handed off", "03-02: 1 handed off",
                       "03-03: 2 contained by the bot"]
    parts = [rect.find(f"{SVG}title").text for rect in satisfaction.iter(f"{SVG}rect")]  # type: ignore[union-attr]
    assert "NPS promoters (9-10): 3 of 5 (60.0 %)" in parts and "CSAT score 5: 2 of 5 (40.0 %)" in parts
    bars = [rect.find(f"{SVG}title").text for rect in intents.iter(f"{SVG}rect")]  # type: ignore[union-attr]
    assert bars == ["faq: 4", "order_status: 2", "greet: 1", "human_handoff: 1"]
    # the tallest day's bar fills the plot; the others are in proportion
    heights = [float(rect.get("height", 0)) for rect in volume.iter(f"{SVG}rect")]
    assert heights[1] * 3 == pytest.approx(heights[0]) and heights[2] * 3 == pytest.approx(heights[0] * 2)


async def test_unanswered_questions_are_escaped_and_lead_to_a_prefilled_article(supervisor) -> None:  # type: ignore[no-untyped-def]
    page = (await supervisor.get("/dashboard", params=RANGE)).text
    table = re.search(r'<table class="table dash-unanswered">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; refund?" in table
    assert "do you ship  to MARS" in table
    rows = re.findall(r"<td class=\"num\">(\d+)</td>", table)
    assert rows == ["2", "1"]
    links = re.findall(r'href="(/kb/new\?question=[^"]+)"', table)
    assert len(links) == 2
    link = html.unescape(links[1])
    assert parse_qs(urlsplit(link).query)["question"] == [SCRIPT_QUESTION]
    form = await supervisor.get(link)
    assert form.status_code == 200
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt; refund?"' in form.text and "<script>alert" not in form.text


async def test_an_agent_is_refused_and_a_stranger_sent_to_sign_in(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    anonymous = await client.get("/dashboard")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    await session_for(crm, staff.agent, client)
    refused = await client.get("/dashboard", params=RANGE)
    assert refused.status_code == 403 and "data-kpi" not in refused.text
    await session_for(crm, staff.admin, client)
    assert (await client.get("/dashboard", params=RANGE)).status_code == 200
