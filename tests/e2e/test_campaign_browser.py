"""A supervisor runs an NPS campaign in a real headless Chromium, against the whole stack in one process as `kefu
demo` runs it: the console, the bot on the fake Telegram server (aiogram's polling loop), the engine on the real
event bus, and the worker's campaign loop (kefu.serve, a batch a second).

Six customers of the tea club chat on Telegram; five consented to offers, one consented and then sent /stop; one
more consented but is not in the club. The supervisor builds the segment, makes the campaign, launches it; the five
are asked on Telegram (the one who stopped and the one outside the club are not), four of them press a score, and
the campaign's page fills in. Screenshots land in var/artifacts/browser/<test>/ (not committed).

    chat  name  club  consent    NPS answer
    901   Ann   yes   yes        10  promoter
    902   Bo    yes   yes         9  promoter
    903   Cy    yes   yes         7  passive
    904   Di    yes   yes         3  detractor
    905   Ed    yes   yes        (does not answer)
    906   Fay   yes   /stop      (not asked)
    907   Gus   no    yes        (not asked)

    NPS = (2 promoters - 1 detractor) / 4 answers = +25.0; response rate 4 of 5 asked = 80%.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PASSWORD, Live, shot, signed_in_page
from tests.e2e.test_segments_browser import swapped_in

CLUB = {901: "Ann", 902: "Bo", 903: "Cy", 904: "Di", 905: "Ed"}
STOPPED, OUTSIDE = (906, "Fay"), (907, "Gus")
SCORES = {901: 10, 902: 9, 903: 7, 904: 3}


async def chatting_customer(live: Live, chat_id: int, name: str, *, club: bool, stop: bool = False) -> int:
    """A Telegram user starts the bot (consenting to offers, in the club or not), and maybe sends /stop after."""
    tg, crm = live.tg, live.stack.crm
    tg.user_message(chat_id, "/start", first_name=name)
    await tg.wait_for_messages(chat_id, 1)
    customer_id = None
    for _ in range(100):
        history = await crm.conversations.history(channel="telegram", external_id=str(chat_id))
        if history:
            customer_id = (await crm.conversations.get(conversation_id=history[-1].conversation_id)).customer_id
            break
        await asyncio.sleep(0.05)
    assert customer_id is not None, chat_id
    await crm.customers.update_profile(customer_id=customer_id, name=name, tags=["tea-club"] if club else [])
    await crm.customers.set_consent(customer_id=customer_id, consent=True)
    if stop:
        tg.user_message(chat_id, "/stop", first_name=name)
        assert "won't receive surveys" in (await tg.wait_for_messages(chat_id, 2))[1]["text"]
    return customer_id


def score_buttons(message: dict[str, Any]) -> dict[int, str]:
    """The NPS question's buttons: score → callback data."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return {int(b["callback_data"].rsplit(":", 1)[1]): b["callback_data"] for row in rows for b in row}




async def test_a_supervisor_launches_an_nps_campaign_and_sees_its_results_fill_in(
    live: Live, browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    crm, tg, url = live.stack.crm, live.tg, live.url
    for chat_id, name in CLUB.items():
        await chatting_customer(live, chat_id, name, club=True)
    await chatting_customer(live, *STOPPED, club=True, stop=True)
    await chatting_customer(live, *OUTSIDE, club=False)
    await crm.agents.create_agent(email="sue@kefu-tea.example", name="Sue", password=PASSWORD, role="supervisor")

    page = await signed_in_page(browser, url, "sue@kefu-tea.example")

    # The segment, in the rule builder.
    await page.click("nav.mainnav >> text=Segments")
    await page.click("text=New segment")
    await page.fill("#segment-name", "Tea club")
    await page.select_option("#seg-r-0-field", "tags")
    await swapped_in(page, "#seg-r-0-value[type=text]")
    await page.fill("#seg-r-0-value", "tea-club")
    await page.press("#seg-r-0-value", "Tab")
    await expect(page.locator("#segment-count")).to_have_text("6")  # Fay, who stopped, is still in the club
    await shot(page, artifacts, "01-segment")
    await page.click("button.button-primary[value=save]")
    await page.wait_for_url(f"{url}/segments/*?notice=created")

    # The campaign: NPS (the default kind) to the segment, whose counts follow the select.
    await page.click("nav.mainnav >> text=Campaigns")
    await page.click("text=New campaign")
    await page.fill("#campaign-name", "Spring NPS")
    assert await page.is_checked("#kind-nps") and await page.is_visible("#campaign-nps-survey")
    assert not await page.is_visible("#campaign-message-en")  # the message is for the other kinds
    await page.select_option("#campaign-segment", label="Tea club")
    await expect(page.locator("#audience-members")).to_have_text("6")
    await expect(page.locator("#audience-consenting")).to_have_text("5")
    await shot(page, artifacts, "02-campaign-form")
    await page.click("button:has-text('Save draft')")
    await page.wait_for_url(f"{url}/campaigns/*?notice=created")
    await expect(page.locator("#launch")).to_have_text("Launch to 5 customers")
    await shot(page, artifacts, "03-draft")

    asked: list[str] = []

    async def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", confirm)
    await page.click("#launch")
    await page.wait_for_url(f"{url}/campaigns/*?notice=launched")
    assert asked == ["Launch “Spring NPS” to 5 consenting customers?"]

    # The worker's loop sends it: the five are asked on Telegram, Fay and Gus are not.
    questions = {}
    for chat_id in CLUB:
        question = (await tg.wait_for_messages(chat_id, 2, timeout=20))[1]
        assert question["text"].startswith("A quick question from Kefu Tea & Co.:") and "recommend" in question["text"]
        assert sorted(score_buttons(question)) == list(range(11))
        questions[chat_id] = question
    await expect(page.locator("#campaign-status")).to_have_text("finished", timeout=20_000)
    await expect(page.locator("#cmp-recipients")).to_have_text("5")
    await expect(page.locator("#cmp-sent")).to_have_text("5", timeout=10_000)  # Telegram accepted all five
    assert await page.locator("#nps-score").inner_text() == "—"
    await shot(page, artifacts, "04-sent")
    assert len(tg.messages_to(STOPPED[0])) == 2 and len(tg.messages_to(OUTSIDE[0])) == 1  # /start (and /stop)

    # Four of them press a score; the page fills in as the answers arrive (HTMX asks every 2 s).
    for chat_id, score in SCORES.items():
        tg.callback(chat_id, score_buttons(questions[chat_id])[score], message_id=questions[chat_id]["message_id"])
        assert "main reason" in (await tg.wait_for_messages(chat_id, 3))[2]["text"]
    await expect(page.locator("#nps-score")).to_have_text("+25.0", timeout=10_000)
    expected = {"#promoters": "2", "#passives": "1", "#detractors": "1", "#results-answered": "4 / 5",
                "#results-response-rate": "80%", "#cmp-answered": "4", "#cmp-response-rate": "80%",
                "#cmp-queued": "5", "#cmp-failed": "0", "#cmp-no-chat": "0", "#cmp-consenting": "5"}
    for selector, text in expected.items():
        await expect(page.locator(selector)).to_have_text(text)
    await shot(page, artifacts, "05-results")

    (campaign,) = await crm.campaigns.list()
    results = await crm.surveys.results(key="nps", campaign=campaign.key)
    assert (results.sent, results.answered, results.promoters, results.passives, results.detractors) == (5, 4, 2, 1, 1)
    assert results.score == 25.0 and results.response_rate == 0.8
    await page.goto(f"{url}/campaigns")
    row = [cell.strip() for cell in (await page.locator("#campaigns tbody tr").all_inner_texts())[0].split("\t")]
    assert row[:5] == ["Spring NPS NPS survey · Tea club", "Finished", "5 / 5", "5", "80%"]  # badges capitalise
    await shot(page, artifacts, "06-list")
