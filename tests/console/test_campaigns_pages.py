"""Campaigns in the console: a draft of each kind made from the form, refused forms explained with what was typed
kept, launch → batches (stepped here by hand, as the worker's timer does) → the live fragment's exact numbers and
an NPS campaign's results, pause / resume / cancel; only supervisors and admins get in, and every post needs the
CSRF token.

    name  chat      consent          tags       in "VIPs"  consenting
    Ann   telegram  yes              vip        yes        yes
    Bo    webchat   yes              vip        yes        yes
    Cai   telegram  never given      vip        yes        -
    Dev   telegram  withdrew (/stop) vip        yes        -
    Eve   telegram  yes              wholesale  -          -
    Fay   (none)    yes              vip        yes        yes (no chat: counted, not sent)
    Gus   telegram  yes              vip        yes        yes
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from crm_store.enums import DeliveryStatus
from crm_store.events import BotPushed, SurveyInvited
from tests.console.conftest import session_for
from tests.console.pages import flash_error, table_rows
from tests.crm_store.test_campaigns import VIP, customer

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def people(crm) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {
        "Ann": await customer(crm, "Ann"), "Bo": await customer(crm, "Bo", chat="webchat"),
        "Cai": await customer(crm, "Cai", consent=False), "Dev": await customer(crm, "Dev", consent=None),
        "Eve": await customer(crm, "Eve", tags=("wholesale",)), "Fay": await customer(crm, "Fay", chat=None),
        "Gus": await customer(crm, "Gus"),
    }


@pytest.fixture
async def vips(crm, people) -> int:  # type: ignore[no-untyped-def]
    return (await crm.segments.create(name="VIPs", rules=VIP)).id


def form(csrf: str, segment_id: int, **fields: Any) -> dict[str, Any]:
    """The new-campaign form as a browser posts it (both channels ticked, no quiet hours, 20 a second)."""
    return {"csrf_token": csrf, "name": "Spring NPS", "kind": "nps", "segment_id": str(segment_id),
            "nps_survey": "nps", "csat_survey": "csat", "course_id": "", "message_en": "", "message_zh": "",
            "channels": ["telegram", "webchat"], "quiet_start": "", "quiet_end": "", "timezone": "UTC",
            "per_second": "20", **fields}


def campaign_id_of(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text[:3000]
    match = re.fullmatch(r"/campaigns/(\d+)\?notice=\w+", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def shown(page: str, element_id: str) -> str:
    """The text of the element with this id."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert match, f"no #{element_id} in {page[:3000]}"
    return " ".join(html.unescape(match.group(1)).split())


def numbers(fragment: str) -> dict[str, str]:
    keys = ("cmp-recipients", "cmp-consenting", "cmp-queued", "cmp-sent", "cmp-failed", "cmp-no-chat",
            "cmp-opted-out", "cmp-answered", "cmp-response-rate")
    return {key.removeprefix("cmp-"): shown(fragment, key) for key in keys if f'id="{key}"' in fragment}


def polls(fragment: str) -> bool:
    return 'hx-trigger="every 2s"' in fragment


async def test_the_form_offers_segments_with_live_counts_active_surveys_and_published_courses(
        client, crm, staff, vips) -> None:  # type: ignore[no-untyped-def]
    await crm.courses.create_course(key="tea-101", title="Tea 101", language="en", lessons=[{"title": "One"}])
    await crm.courses.create_course(key="draft", title="Not yet", language="en", lessons=[{"title": "One"}],
                                    published=False)
    await session_for(crm, staff.supervisor, client)
    page = (await client.get("/campaigns/new")).text
    assert re.search(r'<a href="/campaigns" aria-current="page">Campaigns</a>', page)
    assert f'<option value="{vips}">VIPs</option>' in page
    assert "Choose a segment to see whom it reaches." in page
    assert re.findall(r'<select name="nps_survey".*?</select>', page, re.S)[0].count("<option") == 1
    assert 'value="csat" selected' in page and "Tea 101 (tea-101, en)" in page and "Not yet" not in page
    assert "<code>{customer.name}</code>, <code>{customer.first_name}</code>" in page
    assert 'type="number" name="per_second" id="campaign-rate" min="1" max="25" step="1" value="20"' in page

    counts = await client.get(f"/campaigns/audience?segment_id={vips}", headers=HTMX)
    assert counts.status_code == 200 and "<html" not in counts.text
    assert (shown(counts.text, "audience-members"), shown(counts.text, "audience-consenting")) == ("6", "4")
    chosen = (await client.get(f"/campaigns/new?segment_id={vips}")).text  # from a segment's page, say
    assert f'<option value="{vips}" selected>' in chosen and shown(chosen, "audience-consenting") == "4"
    unknown = await client.get("/campaigns/audience?segment_id=999999")
    assert unknown.status_code == 200 and "No segment 999999." in unknown.text
    for junk in ("²", "-1", "99999999999", "1e3"):
        response = await client.get("/campaigns/audience", params={"segment_id": junk})
        assert response.status_code == 200 and "Choose a segment" in response.text, junk
    segment_page = (await client.get(f"/segments/{vips}")).text
    assert f'href="/campaigns/new?segment_id={vips}">New campaign</a>' in segment_page


@pytest.mark.parametrize(("kind", "fields", "stored"), [
    ("nps", {}, {"survey": "nps", "message": {}}),
    ("csat", {"csat_survey": "csat"}, {"survey": "csat", "message": {}}),
    ("course", {"message_en": "Learn to brew, {customer.first_name}!"},
     {"course": "tea-101", "message": {"en": "Learn to brew, {customer.first_name}!"}}),
    ("message", {"message_en": "Hi {customer.first_name}", "message_zh": "你好", "channels": ["telegram"],
                 "quiet_start": "22", "quiet_end": "8", "timezone": "Asia/Shanghai", "per_second": "5"},
     {"message": {"en": "Hi {customer.first_name}", "zh": "你好"}, "channels": ("telegram",),
      "quiet": (22, 8, "Asia/Shanghai"), "per_second": 5}),
])
async def test_each_kind_is_saved_as_a_draft_that_sends_nothing(client, crm, bus, staff, vips, kind, fields,
                                                               stored) -> None:  # type: ignore[no-untyped-def]
    course = await crm.courses.create_course(key="tea-101", title="Tea 101", language="en",
                                             lessons=[{"title": "One"}])
    csrf = await session_for(crm, staff.admin, client)
    if kind == "course":
        fields = {**fields, "course_id": str(course.id)}
    made = await client.post("/campaigns/new", data=form(csrf, vips, name=f"A {kind}", kind=kind, **fields))
    campaign = await crm.campaigns.get(campaign_id=campaign_id_of(made))
    assert (campaign.name, campaign.kind, campaign.status, campaign.segment_id, campaign.created_by_agent_id) == (
        f"A {kind}", kind, "draft", vips, staff.admin.id)
    survey = (await crm.surveys.get(survey_id=campaign.survey_id)).key if campaign.survey_id else None
    assert survey == stored.get("survey") and campaign.message == stored["message"]
    assert campaign.course_id == (course.id if kind == "course" else None)
    assert campaign.channels == stored.get("channels", ("telegram", "webchat"))
    assert (campaign.quiet_start, campaign.quiet_end, campaign.timezone) == stored.get("quiet", (None, None, "UTC"))
    assert campaign.per_second == stored.get("per_second", 20)

    page = await client.get(made.headers["location"])
    assert page.status_code == 200 and "Draft saved" in page.text
    assert shown(page.text, "launch-consenting") == "4" and "Launch to 4 customers" in page.text
    assert 'data-confirm="Launch “A ' in page.text and "campaign-live" not in page.text
    assert bus.of(SurveyInvited) == [] and bus.of(BotPushed) == []


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"name": "  "}, 422, "A campaign needs a name of 1 to 200 characters."),
    ({"segment_id": ""}, 422, "Choose a saved segment (make one under Segments)."),
    ({"segment_id": "999999"}, 422, "No segment 999999."),
    ({"segment_id": "99999999999"}, 422, "Choose a saved segment"),
    ({"kind": "sms"}, 422, "A campaign sends one of: nps, csat, course, message."),
    ({"kind": "message", "message_en": "  ", "message_zh": ""}, 422, "Write the message (English, Chinese or both)."),
    ({"kind": "course"}, 422, "Choose a published course to invite the customers to."),
    ({"kind": "course", "course_id": "²"}, 422, "Choose a published course to invite the customers to."),
    ({"nps_survey": "csat"}, 422, "Choose an active NPS survey."),
    ({"channels": []}, 422, "A campaign goes to Telegram, the web chat, or both."),
    ({"quiet_start": "22", "quiet_end": ""}, 422,
     "Quiet hours are two different hours from 0 to 23 (from, until), or none."),
    ({"quiet_start": "8", "quiet_end": "8"}, 422, "Quiet hours are two different hours"),
    ({"quiet_start": "-1", "quiet_end": "8"}, 422, "Quiet hours are two different hours"),
    ({"timezone": "Mars/Olympus"}, 422, "Unknown time zone 'Mars/Olympus' (use a name such as Asia/Shanghai)."),
    ({"per_second": "26"}, 422, "A campaign sends 1 to 25 messages a second (Telegram allows a bot about 30"),
    ({"per_second": "fast"}, 422, "The rate is a whole number of messages a second, 1 to 25."),
    ({"name": "Taken"}, 409, "A campaign is already called 'Taken'."),
])
async def test_a_refused_form_says_why_and_keeps_what_was_typed(client, crm, staff, vips, fields, status,
                                                                message) -> None:  # type: ignore[no-untyped-def]
    await crm.campaigns.create(name="Taken", kind="nps", segment_id=vips)
    csrf = await session_for(crm, staff.supervisor, client)
    typed = form(csrf, vips, name="Keep me", message_zh="留着 {customer.name}", timezone="Asia/Taipei",
                 quiet_start="21", quiet_end="7", per_second="12", channels=["webchat"])
    response = await client.post("/campaigns/new", data={**typed, **fields})
    assert response.status_code == status, response.text[:3000]
    assert message in flash_error(response.text)
    page = response.text
    for name, value in {**typed, **fields}.items():
        if name in ("name", "timezone", "per_second") and value.strip():
            assert f'name="{name}"' in page and f'value="{html.escape(value)}"' in page, (name, value)
    if "message_zh" not in fields:
        assert "留着 {customer.name}</textarea>" in page
    if "channels" not in fields:
        assert 'value="webchat" checked' in page and 'value="telegram" checked' not in page
    if "quiet_start" not in fields:
        assert '<option value="21" selected>21:00</option>' in page
        assert '<option value="7" selected>07:00</option>' in page
    assert [c.name for c in await crm.campaigns.list()] == ["Taken"]


async def test_launched_batches_fill_the_progress_and_the_nps_results(client, crm, bus, staff, people,
                                                                      vips) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    campaign_id = campaign_id_of(await client.post("/campaigns/new", data=form(csrf, vips, per_second="2")))
    key = (await crm.campaigns.get(campaign_id=campaign_id)).key
    launched = await client.post(f"/campaigns/{campaign_id}/launch", data={"csrf_token": csrf})
    assert launched.status_code == 303 and launched.headers["location"] == f"/campaigns/{campaign_id}?notice=launched"
    page = (await client.get(launched.headers["location"])).text
    assert "Launched" in page and shown(page, "campaign-status") == "running" and polls(page)
    progress = f"/campaigns/{campaign_id}/progress"

    async def fragment() -> str:
        response = await client.get(progress, headers=HTMX)
        assert response.status_code == 200 and "<html" not in response.text
        return response.text

    zero = await fragment()
    assert numbers(zero) == {"recipients": "0", "consenting": "4", "queued": "0", "sent": "0", "failed": "0",
                             "no-chat": "0", "opted-out": "0", "answered": "0", "response-rate": "—"}
    assert shown(zero, "nps-score") == "—" and "No answers yet" in zero

    def invitation(name: str) -> Any:
        return next(e for e in bus.of(SurveyInvited) if e.customer_id == people[name])

    async def answer(name: str, score: int) -> None:
        sent = invitation(name)
        result = await crm.surveys.answer(invitation_id=sent.invitation_id, question_id="score", value=score,
                                          channel=sent.channel, external_id=sent.external_id)
        assert result.status == "ok"

    assert await crm.campaigns.step(campaign_id=campaign_id) == 2  # Ann (Telegram), Bo (web chat)
    await answer("Ann", 10)
    first = await fragment()
    assert numbers(first) == {"recipients": "2", "consenting": "4", "queued": "2", "sent": "1", "failed": "0",
                              "no-chat": "0", "opted-out": "0", "answered": "1", "response-rate": "50%"}
    assert (shown(first, "nps-score"), shown(first, "promoters"), shown(first, "results-answered")) == (
        "+100.0", "1", "1 / 2")
    assert 'value="50.0" max="100"' in first and polls(first)

    assert await crm.campaigns.step(campaign_id=campaign_id) == 2  # Fay (no chat), Gus
    assert await crm.campaigns.step(campaign_id=campaign_id) == 0  # no one left: finished
    await answer("Bo", 6)
    await answer("Gus", 8)
    done = await fragment()
    assert numbers(done) == {"recipients": "4", "consenting": "4", "queued": "3", "sent": "1", "failed": "0",
                             "no-chat": "1", "opted-out": "0", "answered": "3", "response-rate": "100%"}
    # One promoter, one passive, one detractor of three: NPS 0.
    assert [shown(done, i) for i in ("nps-score", "promoters", "passives", "detractors", "results-answered",
                                     "results-response-rate")] == ["+0.0", "1", "1", "1", "3 / 3", "100%"]
    assert shown(done, "campaign-status") == "finished" and 'value="100.0" max="100"' in done
    assert f'href="/surveys/{invitation("Ann").survey_id}/results?campaign={key}"' in done
    assert polls(done)  # the Telegram question's delivery is not recorded here (no bot): still waiting for it
    assert {e.customer_id for e in bus.of(SurveyInvited)} == {people["Ann"], people["Bo"], people["Gus"]}

    listed = await client.get("/campaigns")
    assert table_rows(listed.text, "campaigns") == [
        ["Spring NPS NPS survey · VIPs", "finished", "4 / 4", "1", "100%", listed_when(listed.text)]]
    results = (await client.get(f"/surveys/{invitation('Ann').survey_id}/results?campaign={key}")).text
    assert f'href="/campaigns/{campaign_id}">Open the campaign</a>' in results


def listed_when(page: str) -> str:
    return re.findall(r'<td class="nowrap muted">([^<]+)</td>', page)[0]


async def test_a_message_campaign_stops_polling_once_everything_is_delivered(client, crm, bus, staff, people,
                                                                             vips) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    campaign_id = campaign_id_of(await client.post("/campaigns/new", data=form(
        csrf, vips, kind="message", message_en="New oolong is in, {customer.first_name}.")))
    await client.post(f"/campaigns/{campaign_id}/launch", data={"csrf_token": csrf})
    assert await crm.campaigns.run_due() == 4 and await crm.campaigns.run_due() == 0
    pushed = {e.customer_id: e for e in bus.of(BotPushed)}
    assert pushed[people["Ann"]].text == "New oolong is in, Ann."
    waiting = (await client.get(f"/campaigns/{campaign_id}/progress")).text
    assert numbers(waiting) == {"recipients": "4", "consenting": "4", "queued": "3", "sent": "1", "failed": "0",
                                "no-chat": "1", "opted-out": "0"} and polls(waiting)
    assert "nps-score" not in waiting and "campaign-results" not in waiting
    await crm.conversations.mark_delivery(message_id=pushed[people["Ann"]].message_id, status=DeliveryStatus.SENT)
    await crm.conversations.mark_delivery(message_id=pushed[people["Gus"]].message_id, status=DeliveryStatus.FAILED)
    settled = (await client.get(f"/campaigns/{campaign_id}/progress")).text
    assert (numbers(settled)["sent"], numbers(settled)["failed"]) == ("2", "1") and not polls(settled)
    page = (await client.get(f"/campaigns/{campaign_id}")).text
    assert "New oolong is in, {customer.first_name}." in page and not polls(page)


async def test_pause_resume_and_cancel(client, crm, staff, people, vips) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    campaign_id = campaign_id_of(await client.post("/campaigns/new", data=form(
        csrf, vips, kind="message", message_en="Hello", per_second="1")))
    base = f"/campaigns/{campaign_id}"
    await client.post(f"{base}/launch", data={"csrf_token": csrf})
    assert await crm.campaigns.step(campaign_id=campaign_id) == 1

    paused = await client.post(f"{base}/pause", data={"csrf_token": csrf})
    assert paused.headers["location"] == f"{base}?notice=paused"
    assert await crm.campaigns.step(campaign_id=campaign_id) == 0  # nothing goes out while paused
    page = (await client.get(paused.headers["location"])).text
    assert shown(page, "campaign-status") == "paused" and f'action="{base}/resume"' in page
    assert f'action="{base}/pause"' not in page and numbers(page)["recipients"] == "1"

    resumed = await client.post(f"{base}/resume", data={"csrf_token": csrf})
    assert resumed.headers["location"] == f"{base}?notice=resumed"
    assert await crm.campaigns.step(campaign_id=campaign_id) == 1
    again = await client.post(f"{base}/resume", data={"csrf_token": csrf})  # it is running: refused, explained
    assert again.status_code == 409 and "The campaign is running: it cannot be running." in flash_error(again.text)

    cancelled = await client.post(f"{base}/cancel", data={"csrf_token": csrf})
    assert cancelled.headers["location"] == f"{base}?notice=cancelled"
    assert await crm.campaigns.step(campaign_id=campaign_id) == 0
    page = (await client.get(f"{base}?notice=cancelled")).text
    assert shown(page, "campaign-status") == "cancelled" and "Cancelled: nothing more is sent." in page
    assert f'action="{base}/cancel"' not in page and numbers(page)["recipients"] == "2"
    relaunch = await client.post(f"{base}/launch", data={"csrf_token": csrf})
    assert relaunch.status_code == 409 and "not a draft" in flash_error(relaunch.text)
    gone = await client.post("/campaigns/999999/pause", data={"csrf_token": csrf})
    assert gone.status_code == 404 and (await client.get("/campaigns/999999/progress")).status_code == 404


async def test_a_draft_can_be_cancelled_and_is_listed_so(client, crm, staff, vips) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    campaign_id = campaign_id_of(await client.post("/campaigns/new", data=form(csrf, vips)))
    listed = await client.get("/campaigns")
    assert table_rows(listed.text, "campaigns")[0][1:5] == ["draft", "not launched", "—", "—"]
    await client.post(f"/campaigns/{campaign_id}/cancel", data={"csrf_token": csrf})
    assert (await crm.campaigns.get(campaign_id=campaign_id)).status == "cancelled"
    assert table_rows((await client.get("/campaigns")).text, "campaigns")[0][1] == "cancelled"


async def test_a_draft_whose_segment_was_deleted_cannot_be_launched(client, crm, staff, vips) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    campaign_id = campaign_id_of(await client.post("/campaigns/new", data=form(csrf, vips)))
    await crm.segments.delete(segment_id=vips)
    deleted = "The campaign's segment was deleted: make the campaign again with another."
    page = await client.get(f"/campaigns/{campaign_id}")
    assert page.status_code == 200 and flash_error(page.text) == deleted and 'id="launch"' not in page.text
    launched = await client.post(f"/campaigns/{campaign_id}/launch", data={"csrf_token": csrf})
    assert launched.status_code == 422 and flash_error(launched.text) == deleted
    assert (await crm.campaigns.get(campaign_id=campaign_id)).status == "draft"


async def test_an_agent_is_refused_and_not_shown_campaigns(client, crm, staff, vips) -> None:  # type: ignore[no-untyped-def]
    campaign = await crm.campaigns.create(name="Q4", kind="nps", segment_id=vips)
    csrf = await session_for(crm, staff.agent, client)
    assert ">Campaigns</a>" not in (await client.get("/inbox")).text
    for path in ("/campaigns", "/campaigns/new", f"/campaigns/{campaign.id}", f"/campaigns/{campaign.id}/progress",
                 f"/campaigns/audience?segment_id={vips}"):
        response = await client.get(path)
        assert response.status_code == 403 and "Not allowed" in response.text, path
    for path in ("/campaigns/new", f"/campaigns/{campaign.id}/launch", f"/campaigns/{campaign.id}/cancel"):
        assert (await client.post(path, data=form(csrf, vips))).status_code == 403, path
    assert [(c.name, c.status) for c in await crm.campaigns.list()] == [("Q4", "draft")]


async def test_posts_without_the_csrf_token_are_refused(client, crm, staff, vips) -> None:  # type: ignore[no-untyped-def]
    campaign = await crm.campaigns.create(name="Q4", kind="nps", segment_id=vips)
    await session_for(crm, staff.supervisor, client)
    made = await client.post("/campaigns/new", data=form("forged", vips, name="Forged"))
    launched = await client.post(f"/campaigns/{campaign.id}/launch", data={"csrf_token": ""})
    assert (made.status_code, launched.status_code) == (403, 403)
    assert [(c.name, c.status) for c in await crm.campaigns.list()] == [("Q4", "draft")]
