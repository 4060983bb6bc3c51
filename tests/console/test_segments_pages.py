"""Segments in the console: a rule built from form rows (groups and all), its live preview checked against a small
seeded set worked out by hand, save / list with counts / edit / rename / delete, the JSON mode, refused rules shown
next to the form that keeps what was typed; only supervisors and admins get in, and every post needs the CSRF token.

    name  language  tags   points  tier
    Ann   en        vip    1500    Gold
    Bo    zh        tea     200    Silver
    Cy    en        -      1200    Gold
    Di    zh        -         -    -
    Ed    en        vip     150    Silver
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest

from console.segment_builder import SegmentForm, builder_of
from tests.console.conftest import session_for
from tests.console.pages import flash_error, table_rows
from tests.support import make_tiers

PEOPLE = {"Ann": ("en", ["vip"], 1500), "Bo": ("zh", ["tea"], 200), "Cy": ("en", [], 1200),
          "Di": ("zh", [], 0), "Ed": ("en", ["vip"], 150)}

# English-speaking customers who are Gold or tagged vip: Ann, Cy, Ed.
ROWS = {
    "r.match": "all",
    "r.0.field": "language", "r.0.op": "eq", "r.0.value": "en", "r.0.was": "language",
    "r.1.match": "any",
    "r.1.0.field": "tier", "r.1.0.op": "in", "r.1.0.value": "Gold", "r.1.0.was": "tier",
    "r.1.1.field": "tags", "r.1.1.op": "has_any", "r.1.1.value": "vip, ", "r.1.1.was": "tags",
    "r.2.field": "", "r.2.op": "", "r.2.value": "",  # a row with no field chosen: left out
}
RULE = {"all": [{"field": "language", "op": "eq", "value": "en"},
                {"any": [{"field": "tier", "op": "in", "value": ["Gold"]},
                         {"field": "tags", "op": "has_any", "value": ["vip"]}]}]}
# English-speaking customers with none of: 1000 points or more. Ed only.
NONE_ROWS = {
    "r.match": "all",
    "r.0.field": "language", "r.0.op": "eq", "r.0.value": "en",
    "r.1.match": "none", "r.1.0.field": "points", "r.1.0.op": "gte", "r.1.0.value": "1000",
}
NONE_RULE = {"all": [{"field": "language", "op": "eq", "value": "en"},
                     {"not": {"field": "points", "op": "gte", "value": 1000}}]}
HTMX = {"HX-Request": "true"}


@pytest.fixture
async def people(crm) -> dict[str, int]:  # type: ignore[no-untyped-def]
    await make_tiers(crm)
    ids = {}
    for name, (language, tags, points) in PEOPLE.items():
        ids[name] = (await crm.customers.create(name=name, language=language, tags=tags)).id
        if points:
            await crm.loyalty.award_points(customer_id=ids[name], points=points, reason="seed",
                                           idempotency_key=f"seed-{name}")
    return ids


def sample(fragment: str) -> dict[str, list[str]]:
    """The preview's sample: each customer's link, tier and language, by name."""
    rows = re.findall(r'<tr>\s*<td><a href="(/customers/\d+)">([^<]+)</a>.*?</td>\s*<td>([^<]*)</td>\s*'
                      r'<td><span class="badge">([^<]*)</span>', fragment, re.S)
    return {name: [link, tier, language] for link, name, tier, language in rows}


def count_of(fragment: str) -> int:
    match = re.search(r'<strong id="segment-count">([\d,]+)</strong>', fragment)
    assert match, fragment[:2000]
    return int(match.group(1).replace(",", ""))


def shown_json(fragment: str, element_id: str = "rule-json") -> Any:
    match = re.search(rf'<textarea id="{element_id}"[^>]*>(.*?)</textarea>', fragment, re.S)
    assert match, fragment[:2000]
    return json.loads(html.unescape(match.group(1)))


def segment_id_of(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text[:2000]
    match = re.fullmatch(r"/segments/(\d+)\?notice=\w+", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


async def test_rows_make_a_rule_whose_preview_counts_and_samples_the_right_customers(client, crm, staff,
                                                                                      people) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    response = await client.post("/segments/preview", data={"csrf_token": csrf, **ROWS}, headers=HTMX)
    assert response.status_code == 200, response.text[:2000]
    assert count_of(response.text) == 3
    assert sample(response.text) == {"Ed": [f"/customers/{people['Ed']}", "Silver", "en"],
                                     "Cy": [f"/customers/{people['Cy']}", "Gold", "en"],
                                     "Ann": [f"/customers/{people['Ann']}", "Gold", "en"]}
    assert list(sample(response.text)) == ["Ed", "Cy", "Ann"]  # the newest first
    assert 'hx-swap-oob="true"' in response.text and shown_json(response.text) == RULE  # the advanced view follows

    none_of = await client.post("/segments/preview", data={"csrf_token": csrf, **NONE_ROWS}, headers=HTMX)
    assert count_of(none_of.text) == 1 and list(sample(none_of.text)) == ["Ed"]
    assert shown_json(none_of.text) == NONE_RULE

    anyone = await client.post("/segments/preview", data={"csrf_token": csrf, **ROWS, "r.match": "any"})
    assert count_of(anyone.text) == 3  # en (Ann, Cy, Ed) or Gold/vip (the same three)
    everyone = await client.post("/segments/preview", data={"csrf_token": csrf, "r.match": "all"})
    assert count_of(everyone.text) == 5 and len(sample(everyone.text)) == 5


@pytest.mark.parametrize(("row", "rule"), [
    ({"field": "points", "op": "between", "value": "100", "high": "1200"},
     {"field": "points", "op": "between", "value": [100, 1200]}),
    ({"field": "consent", "op": "is", "value": "no"}, {"field": "consent", "op": "is", "value": False}),
    ({"field": "last_order_date", "op": "within_days", "value": "90"},
     {"field": "last_order_date", "op": "within_days", "value": 90}),
    ({"field": "last_contact", "op": "never"}, {"field": "last_contact", "op": "never"}),
    ({"field": "last_order_date", "op": "before", "value": "2024-05-01"},
     {"field": "last_order_date", "op": "before", "value": "2024-05-01"}),
    ({"field": "order_total", "op": "gt", "value": "49.5"}, {"field": "order_total", "op": "gt", "value": 49.5}),
    ({"field": "channel", "op": "in", "value": ["telegram", "webchat"]},
     {"field": "channel", "op": "in", "value": ["telegram", "webchat"]}),
    ({"field": "course_progress", "op": "gte", "course": "tea-101", "value": "50"},
     {"field": "course_progress", "op": "gte", "value": 50, "course": "tea-101"}),
])
async def test_each_kind_of_value_is_posted_as_the_rule_takes_it(client, crm, staff, people, row, rule) -> None:  # type: ignore[no-untyped-def]
    await crm.courses.create_course(key="tea-101", title="Tea", language="en", lessons=[{"title": "One"}])
    csrf = await session_for(crm, staff.admin, client)
    data: dict[str, Any] = {"csrf_token": csrf, "r.match": "all", **{f"r.0.{k}": v for k, v in row.items()}}
    response = await client.post("/segments/preview", data=data)
    assert response.status_code == 200 and 'role="alert"' not in response.text, response.text[:2000]
    assert shown_json(response.text) == {"all": [rule]}
    page = await client.post("/segments/builder", data=data)  # and the builder shows it back as posted
    assert page.status_code == 200 and 'id="builder"' in page.text
    assert 'name="r.0.field"' in page.text and f'<option value="{row["field"]}" selected>' in page.text


async def test_the_builder_adds_removes_and_reshapes_rows(client, crm, staff, people) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    base = {"csrf_token": csrf, **ROWS}

    added = (await client.post("/segments/builder", data={**base, "action": "add:r.1"}, headers=HTMX)).text
    assert 'name="r.1.2.field"' in added and 'name="r.2.field"' in added
    assert count_of(added) == 3  # the builder comes back with its preview
    grouped = (await client.post("/segments/builder", data={**base, "action": "group:r"})).text
    assert 'name="r.3.match"' in grouped and 'name="r.3.0.field"' in grouped
    assert "group:r.1" not in grouped  # one level of groups inside the top one
    removed = (await client.post("/segments/builder", data={**base, "action": "remove:r.1"})).text
    assert 'name="r.1.match"' not in removed and 'name="r.1.field"' in removed  # the blank row moved up
    assert count_of(removed) == 3  # language en: Ann, Cy, Ed

    # A new field: its operators, its kind of input, and the old field's value gone.
    switched = (await client.post("/segments/builder", data={**base, "r.0.field": "points"})).text
    ops = re.search(r'<select name="r\.0\.op".*?</select>', switched, re.S).group(0)  # type: ignore[union-attr]
    assert re.findall(r'value="(\w+)"', ops) == ["eq", "gt", "gte", "lt", "lte", "between"]
    assert '<option value="eq" selected>' in ops
    assert re.search(r'<input type="number" name="r\.0\.value" id="seg-r-0-value" value=""', switched)
    tier = (await client.post("/segments/builder", data={**base, "r.1.0.op": "eq"})).text
    tiers = re.search(r'<select name="r\.1\.0\.value".*?</select>', tier, re.S).group(0)  # type: ignore[union-attr]
    assert "multiple" not in tiers and re.findall(r'value="(\w+)"', tiers) == ["Silver", "Gold", "Platinum"]
    assert '<option value="Gold" selected>' in tiers


async def test_the_rule_can_be_edited_as_json_and_back(client, crm, staff, people) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    as_json = (await client.post("/segments/builder", data={"csrf_token": csrf, **ROWS, "action": "json"})).text
    assert 'name="mode" value="json"' in as_json and shown_json(as_json, "rule-json-edit") == RULE

    typed = json.dumps(NONE_RULE)
    preview = await client.post("/segments/preview", data={"csrf_token": csrf, "mode": "json", "rules_json": typed})
    assert count_of(preview.text) == 1 and 'hx-swap-oob' not in preview.text  # never overwrites what is typed
    back = (await client.post("/segments/builder", data={"csrf_token": csrf, "mode": "json", "rules_json": typed,
                                                         "action": "builder"})).text
    assert 'name="mode" value="builder"' in back and '<option value="none" selected>' in back
    assert re.search(r'name="r\.1\.0\.value" id="seg-r-1-0-value" value="1000"', back)

    deep = {"any": [{"all": [{"any": [{"field": "points", "op": "gt", "value": 1}]}]}]}
    kept = (await client.post("/segments/builder", data={"csrf_token": csrf, "mode": "json",
                                                         "rules_json": json.dumps(deep), "action": "builder"})).text
    assert 'name="mode" value="json"' in kept and "nests deeper than the builder shows" in kept
    assert shown_json(kept, "rule-json-edit") == deep
    broken = (await client.post("/segments/builder", data={"csrf_token": csrf, "mode": "json",
                                                           "rules_json": '{"all": [', "action": "builder"})).text
    assert "not valid JSON (line 1, column 10)" in broken and 'name="mode" value="json"' in broken


async def test_a_segment_is_saved_listed_edited_renamed_and_deleted(client, crm, staff, people) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    assert "No segments yet" in (await client.get("/segments")).text
    new = await client.get("/segments/new")
    assert new.status_code == 200 and count_of(new.text) == 5  # no condition yet: everyone

    made = await client.post("/segments/new", data={"csrf_token": csrf, "name": "English VIPs",
                                                    "description": "Gold or vip", "action": "save", **ROWS})
    segment_id = segment_id_of(made)
    saved = await crm.segments.get(segment_id=segment_id)
    assert (saved.name, saved.description, saved.rules, saved.created_by_agent_id) == (
        "English VIPs", "Gold or vip", RULE, staff.supervisor.id)
    assert table_rows((await client.get("/segments")).text, "segments")[0][:2] == ["English VIPs Gold or vip", "3"]

    edit = (await client.get(made.headers["location"])).text
    assert "Segment saved." in edit and count_of(edit) == 3
    assert 'value="English VIPs"' in edit and re.search(r'name="r\.0\.value" id="seg-r-0-value" value="en"', edit)
    tier_values = re.search(r'<select name="r\.1\.0\.value".*?</select>', edit, re.S).group(0)  # type: ignore[union-attr]
    assert "multiple" in tier_values and '<option value="Gold" selected>' in tier_values
    assert f'action="/segments/{segment_id}/delete"' in edit

    renamed = await client.post(f"/segments/{segment_id}", data={"csrf_token": csrf, "name": "Small English",
                                                                 "description": "", **NONE_ROWS})
    assert renamed.status_code == 303 and renamed.headers["location"] == f"/segments/{segment_id}?notice=updated"
    assert (await crm.segments.get(segment_id=segment_id)).rules == NONE_RULE
    assert [row[:2] for row in table_rows((await client.get("/segments")).text, "segments")] == [
        ["Small English", "1"]]

    gone = await client.post(f"/segments/{segment_id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303 and gone.headers["location"] == "/segments?notice=deleted"
    assert await crm.segments.list() == []
    assert (await client.get(f"/segments/{segment_id}")).status_code == 404
    assert (await client.post(f"/segments/{segment_id}/delete", data={"csrf_token": csrf})).status_code == 404


async def test_a_saved_rule_the_builder_cannot_show_opens_as_json(client, crm, staff, people) -> None:  # type: ignore[no-untyped-def]
    deep = {"all": [{"not": {"all": [{"field": "language", "op": "eq", "value": "zh"},
                                     {"field": "tags", "op": "has_any", "value": ["tea"]}]}}]}
    segment = await crm.segments.create(name="Not Chinese tea lovers", rules=deep)
    csrf = await session_for(crm, staff.admin, client)
    page = (await client.get(f"/segments/{segment.id}")).text
    assert 'name="mode" value="json"' in page and shown_json(page, "rule-json-edit") == deep
    assert count_of(page) == 4  # all but Bo
    kept = await client.post(f"/segments/{segment.id}", data={"csrf_token": csrf, "name": segment.name,
                                                              "mode": "json", "rules_json": json.dumps(deep)})
    assert kept.status_code == 303 and (await crm.segments.get(segment_id=segment.id)).rules == deep


@pytest.mark.parametrize(("changes", "status", "message"), [
    ({"r.0.field": "points", "r.0.op": "gte", "r.0.value": "lots"}, 422, "points gte: a whole number; not 'lots'."),
    ({"r.0.field": "points", "r.0.op": "gte", "r.0.value": "1" + "0" * 30}, 422,
     "points gte: a number from -2147483647 to 2147483647; not 1000000000000000000000000000000."),
    ({"r.1.0.value": "Diamond"}, 422, "tier: there is no tier 'Diamond'; the tiers are Gold, Platinum, Silver."),
    ({"r.0.field": "last_order_date", "r.0.op": "before", "r.0.value": "yesterday"}, 422,
     "last_order_date before: a date as YYYY-MM-DD."),
    ({"r.0.field": "shoe_size", "r.0.op": "eq"}, 422, "Unknown field 'shoe_size'"),
    ({"name": "  "}, 422, "A segment needs a name"),
    ({"mode": "json", "rules_json": "[1, 2"}, 422, "The rule is not valid JSON (line 1, column 6)."),
    ({"mode": "json", "rules_json": "[]"}, 422, "A rule is a JSON object"),
    ({"name": "Taken"}, 409, "There is a segment named 'Taken' already"),
])
async def test_a_refused_rule_is_explained_next_to_the_form_which_keeps_what_was_typed(
        client, crm, staff, people, changes, status, message) -> None:  # type: ignore[no-untyped-def]
    await crm.segments.create(name="Taken", rules={"all": []})
    csrf = await session_for(crm, staff.supervisor, client)
    data = {"csrf_token": csrf, "name": "Typed name", "description": "typed", **ROWS, **changes}
    response = await client.post("/segments/new", data=data)
    assert response.status_code == status, response.text[:2000]
    assert flash_error(response.text).startswith(message), flash_error(response.text)
    assert "Traceback" not in response.text and 'action="/segments/new"' in response.text
    assert f'value="{html.escape(data["name"])}"' in response.text and 'value="typed"' in response.text
    if "rules_json" in changes:
        assert re.search(r'<textarea id="rule-json-edit"[^>]*>' + re.escape(changes["rules_json"]) + "</textarea>",
                         response.text)
    for key, value in changes.items():
        if key.endswith(".value"):
            assert f'value="{value}"' in response.text, key
    assert [s.name for s in await crm.segments.list()] == ["Taken"]
    if status == 422 and "name" not in changes:  # the preview says the same, with 200 so HTMX swaps it in
        preview = await client.post("/segments/preview", data=data, headers=HTMX)
        assert preview.status_code == 200 and flash_error(preview.text).startswith(message)


async def test_agents_get_no_segments_and_every_post_needs_the_csrf_token(client, crm, staff, people) -> None:  # type: ignore[no-untyped-def]
    segment = await crm.segments.create(name="Everyone", rules={"all": []})
    await session_for(crm, staff.agent, client)
    nav = re.search(r'<nav class="mainnav".*?</nav>', (await client.get("/inbox")).text, re.S).group(0)  # type: ignore[union-attr]
    assert "Customers" in nav and "Segments" not in nav
    for method, path in (("GET", "/segments"), ("GET", "/segments/new"), ("GET", f"/segments/{segment.id}"),
                         ("POST", "/segments/preview"), ("POST", f"/segments/{segment.id}/delete")):
        response = await client.request(method, path)
        assert response.status_code == 403 and "Not allowed" in response.text, (method, path)

    csrf = await session_for(crm, staff.supervisor, client)
    nav = re.search(r'<nav class="mainnav".*?</nav>', (await client.get("/segments")).text, re.S).group(0)  # type: ignore[union-attr]
    assert re.search(r'<a href="/segments" aria-current="page">Segments</a>', nav)
    for path, data in (("/segments/new", {"name": "Sneaky", **ROWS}), ("/segments/preview", ROWS),
                       ("/segments/builder", ROWS), (f"/segments/{segment.id}", {"name": "Renamed"}),
                       (f"/segments/{segment.id}/delete", {})):
        for token in (None, "forged"):
            response = await client.post(path, data=data if token is None else {**data, "csrf_token": token})
            assert response.status_code == 403, (path, token)
    assert [s.name for s in await crm.segments.list()] == ["Everyone"]
    ok = await client.post("/segments/preview", data=ROWS, headers={**HTMX, "X-CSRF-Token": csrf})
    assert ok.status_code == 200 and count_of(ok.text) == 3


def test_the_builder_shows_a_saved_rule_exactly_or_not_at_all() -> None:
    shown = builder_of(NONE_RULE, {})
    assert shown is not None and shown.rule() == NONE_RULE
    assert builder_of({"not": {"any": [{"field": "points", "op": "gt", "value": 5}]}}, {}) is not None
    assert builder_of({"all": [{"any": []}]}, {}) is None  # an empty group the builder would drop
    assert builder_of({"field": "tags", "op": "has_any", "value": ["a,b"]}, {}) is None  # a comma in a tag
    by_id = builder_of({"field": "course", "op": "enrolled", "value": 7}, {7: "tea-101"})
    assert by_id is not None and by_id.rule() == {"all": [{"field": "course", "op": "enrolled", "value": "tea-101"}]}
    form = SegmentForm.of("x", "", {"bogus": 1}, {})  # saved before a rule change of the store: shown as JSON
    assert form.mode == "json" and json.loads(form.rules_json) == {"bogus": 1}
