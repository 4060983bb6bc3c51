"""Surveys in the console: authoring round trips with errors shown in the page, results checked against numbers
worked out by hand (CSAT by agent, team and week; NPS with promoters, passives and detractors), filters, comments
escaped and paged; only supervisors and admins get in."""

from __future__ import annotations

import re

import pytest

from console.routes import surveys as survey_routes
from tests.console.conftest import session_for
from tests.console.pages import flash_error, table_rows
from tests.crm_store.surveying import seed_csat, seed_nps

QUESTION_ROWS = {
    "q0_id": "stars", "q0_kind": "rating", "q0_en": "How many stars?", "q0_zh": "几颗星？",
    "q0_min": "1", "q0_max": "5",
    "q1_id": "", "q1_kind": "text", "q1_en": "Anything else?", "q1_zh": "", "q1_optional": "yes",
    "q2_id": "", "q2_kind": "text", "q2_en": "", "q2_zh": "",  # a blank row: left out
}


def survey_id_of(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text[:1000]
    match = re.fullmatch(r"/surveys/(\d+)/results\?notice=\w+", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


async def test_a_survey_is_written_edited_and_its_errors_shown_in_the_page(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    new = await client.get("/surveys/new?kind=nps")
    assert new.status_code == 200 and 'value="score"' in new.text  # NPS's questions to start from

    made = await client.post("/surveys/new", data={"csrf_token": csrf, "key": "after-delivery", "kind": "csat",
                                                   "title": "After delivery", "expires_after_hours": "48",
                                                   "active": "yes", **QUESTION_ROWS})
    survey = await crm.surveys.get(survey_id=survey_id_of(made))
    assert (survey.key, survey.kind, survey.title, survey.expires_after_hours, survey.active) == (
        "after-delivery", "csat", "After delivery", 48, True)
    assert survey.questions == ({"id": "stars", "kind": "rating", "prompt": {"en": "How many stars?", "zh": "几颗星？"},
                                 "optional": False, "min": 1, "max": 5, "options": []},
                                {"id": "q2", "kind": "text", "prompt": {"en": "Anything else?"}, "optional": True,
                                 "options": []})
    assert (await client.get(made.headers["location"])).status_code == 200

    edit = await client.get(f"/surveys/{survey.id}/edit")
    assert edit.status_code == 200 and "几颗星？" in edit.text and 'value="48"' in edit.text
    rows = {**QUESTION_ROWS, "q2_id": "why", "q2_kind": "choice", "q2_en": "Why?", "q2_options": "Fast\nKind\n"}
    saved = await client.post(f"/surveys/{survey.id}/edit", data={"csrf_token": csrf, "title": "After delivery v2",
                                                                  "expires_after_hours": "24", **rows})
    assert survey_id_of(saved) == survey.id
    changed = await crm.surveys.get(survey_id=survey.id)
    assert (changed.title, changed.active, changed.expires_after_hours) == ("After delivery v2", False, 24)
    assert changed.questions[2]["options"] == ["Fast", "Kind"] and changed.kind == "csat"

    more = await client.post(f"/surveys/{survey.id}/edit", data={"csrf_token": csrf, "title": "Typed",
                                                                 "expires_after_hours": "24", "action": "more",
                                                                 **rows})
    assert more.status_code == 200 and 'name="q5_kind"' in more.text and 'value="Typed"' in more.text
    assert (await crm.surveys.get(survey_id=survey.id)).title == "After delivery v2"  # nothing saved


@pytest.mark.parametrize(("changes", "message"), [
    ({"title": ""}, "needs a title"),
    ({"key": "csat"}, "already exists"),
    ({"key": "Not a key"}, "The key is"),
    ({"q0_max": "many"}, "Question 1: the scale"),
    ({"q0_min": "7"}, "Question 1"),
    ({"q1_kind": "choice", "q1_options": "only one"}, "Question 2"),
    ({"q0_id": "Bad Id"}, "Question 1 (id)"),
    ({"expires_after_hours": "0"}, "one hour"),
    ({"q0_en": "", "q0_zh": "", "q0_id": "", "q1_en": "", "q1_zh": ""}, "at least one question"),
])
async def test_invalid_surveys_are_refused_in_the_page(client, crm, staff, changes, message) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.admin, client)
    data = {"csrf_token": csrf, "key": "typed-key", "kind": "csat", "title": "Typed title",
            "expires_after_hours": "72", **QUESTION_ROWS, **changes}
    response = await client.post("/surveys/new", data=data)
    assert response.status_code == 400 and message in flash_error(response.text)
    assert "How many stars?" in response.text or not data["q0_en"]  # what was typed stays in the form
    assert len(await crm.surveys.overview()) == 2  # only the built-in CSAT and NPS


async def test_csat_results_match_the_hand_computed_numbers(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    seed = await seed_csat(crm)
    await session_for(crm, staff.supervisor, client)
    page = (await client.get(f"/surveys/{seed.survey_id}/results")).text
    assert re.search(r'id="csat-score">62\.5%<', page) and "3.62" in page  # 29 / 8 = 3.625
    # Agent, sent, answered, mean, satisfied, CSAT
    assert table_rows(page, "by-agent") == [["Ann", "3", "3", "3.67", "2", "66.7%"],
                                            ["Bob", "2", "2", "5.00", "2", "100.0%"],
                                            ["Cy", "4", "3", "2.67", "1", "33.3%"]]
    assert table_rows(page, "by-team") == [["Care team", "5", "5", "4.20", "4", "80.0%"],
                                           ["Sales team", "4", "3", "2.67", "1", "33.3%"]]
    assert table_rows(page, "by-week") == [["2024-W10", "4", "3", "4.67", "3", "100.0%"],
                                           ["2024-W11", "5", "5", "3.00", "2", "40.0%"]]
    assert page.count('class="chart-bar"') == 3 + 2  # agents and weeks, drawn on the server

    week_11 = (await client.get(f"/surveys/{seed.survey_id}/results?start=2024-03-11&end=2024-03-17")).text
    assert [row[0] for row in table_rows(week_11, "by-week")] == ["2024-W11"]
    assert table_rows(week_11, "by-agent")[0] == ["Ann", "1", "1", "2.00", "0", "0.0%"]
    bad = await client.get(f"/surveys/{seed.survey_id}/results?start=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in flash_error(bad.text) and "2024-W10" in bad.text

    listed = table_rows((await client.get("/surveys")).text, "surveys")
    csat = next(row for row in listed if row[0].startswith("Customer satisfaction"))
    assert csat[2:7] == ["9", "8", "89%", "3.62", "62% satisfied"]


async def test_nps_results_split_promoters_passives_and_detractors_by_campaign(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    survey_id = await seed_nps(crm)
    await session_for(crm, staff.admin, client)
    q1 = (await client.get(f"/surveys/{survey_id}/results?campaign=q1")).text
    counts = {name: re.search(rf'id="{name}">(\d+)<', q1).group(1)  # type: ignore[union-attr]
              for name in ("promoters", "passives", "detractors")}
    assert counts == {"promoters": "3", "passives": "2", "detractors": "2"}
    assert re.search(r'id="nps-score">\+14\.3<', q1)  # (3 - 2) / 7
    assert 'id="by-agent"' not in q1  # campaigns have no agent
    assert table_rows(q1, "by-week") == [["2024-W14", "7", "7", "7.14", "3", "2", "2", "+14.3"]]
    everything = (await client.get(f"/surveys/{survey_id}/results")).text
    assert re.search(r'id="nps-score">\+0\.0<', everything) and re.search(r'id="detractors">3<', everything)
    assert '<option value="q2">Campaign q2</option>' in everything


async def test_comments_are_escaped_and_paged(client, crm, staff, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(survey_routes, "COMMENTS_PAGE", 2)
    seed = await seed_csat(crm, comments={0: "Great <b>tea</b>", 2: "Slow", 5: "<script>alert(1)</script>"})
    await session_for(crm, staff.supervisor, client)
    first = (await client.get(f"/surveys/{seed.survey_id}/results")).text
    assert "<script>alert(1)" not in first and "&lt;script&gt;alert(1)&lt;/script&gt;" in first
    assert [row[1:] for row in table_rows(first, "comments")] == [
        ["Rita Rater", "1", "Cy", "<script>alert(1)</script>"], ["Rita Rater", "2", "Ann", "Slow"]]
    assert "page=2" in first
    second = (await client.get(f"/surveys/{seed.survey_id}/results?page=2")).text
    assert [row[4] for row in table_rows(second, "comments")] == ["Great <b>tea</b>"]
    assert "<b>tea</b>" not in second and "page=3" not in second


async def test_only_supervisors_and_admins_open_the_survey_pages(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    survey = await crm.surveys.get(key="csat")
    pages = ["/surveys", "/surveys/new", f"/surveys/{survey.id}/edit", f"/surveys/{survey.id}/results"]
    for role, expected in (("agent", 403), ("supervisor", 200), ("admin", 200)):
        csrf = await session_for(crm, getattr(staff, role), client)
        for path in pages:
            assert (await client.get(path)).status_code == expected, (role, path)
        for path in ("/surveys/new", f"/surveys/{survey.id}/edit"):
            response = await client.post(path, data={"csrf_token": csrf, "title": "x"})
            assert response.status_code == (403 if role == "agent" else 400), (role, path)
    assert (await crm.surveys.get(key="csat")).title == "Customer satisfaction (CSAT)"
    assert (await client.get("/surveys/999999/results")).status_code == 404
