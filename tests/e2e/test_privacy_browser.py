"""A customer asks for erasure on Telegram and an admin carries it out in a real headless Chromium, against the
whole stack in one process as `kefu demo` runs it (console, bot on the fake Telegram server, event bus).

The customer types /privacy, sees their data, presses "Erase my data" and confirms; the admin finds the request on
the Privacy page, opens the customer, downloads the JSON export, types the customer's number and erases; the page
says so, the database holds the customer's name, e-mail and phone nowhere, and the audit log (filtered in the
browser) shows who did what. Screenshots land in var/artifacts/browser/<test>/ (not committed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PASSWORD, Live, shot, signed_in_page
from tests.fake_telegram import FakeTelegram
from tests.support import personal_data_left

CHAT = 931
NAME = "Wilhelmina Fairweather-Oduya"
EMAIL = "w.fairweather.oduya@example.com"
PHONE = "+1 212 555 0187"
NEEDLES = [NAME, "Fairweather", EMAIL, PHONE, "2125550187"]


async def bot_says(tg: FakeTelegram, contains: str) -> dict[str, Any]:
    """The bot's latest message in the chat holding `contains`, waited for."""
    for _ in range(200):
        found = [m for m in tg.messages_to(CHAT) if contains in (m.get("text") or "")]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the bot never said {contains!r}: {tg.texts_to(CHAT)!r}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def button(message: dict[str, Any], data: str) -> str:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    (found,) = [b["callback_data"] for row in rows for b in row if b["callback_data"] == data]
    return found


async def test_a_customer_asks_for_erasure_and_an_admin_erases_them(live: Live, browser: Any, artifacts: Path) -> None:
    from playwright.async_api import expect

    crm, tg, url = live.stack.crm, live.tg, live.url
    tg.user_message(CHAT, "/start", first_name="Wilhelmina")
    await tg.wait_for_messages(CHAT, 1)
    tg.user_message(CHAT, f"Hi, {NAME} here, write to {EMAIL} or call {PHONE}", first_name="Wilhelmina")
    await tg.wait_for_messages(CHAT, 2)
    history = await crm.conversations.history(channel="telegram", external_id=str(CHAT))
    customer_id = (await crm.conversations.get(conversation_id=history[-1].conversation_id)).customer_id
    await crm.customers.update_profile(customer_id=customer_id, name=NAME, email=EMAIL, phone=PHONE)

    # The customer's side, on Telegram.
    tg.user_message(CHAT, "/privacy", first_name="Wilhelmina")
    shown = await bot_says(tg, "what we store about you")
    assert EMAIL in shown["text"] and PHONE in shown["text"]
    tg.callback(CHAT, button(shown, "pv:erase"), message_id=shown["message_id"])
    confirm = await bot_says(tg, "cannot be undone")
    tg.callback(CHAT, button(confirm, "pv:confirm"), message_id=confirm["message_id"])
    await bot_says(tg, "erasure request #")

    # The admin's side, in the browser.
    await crm.agents.create_agent(email="dpo@kefu-tea.example", name="Dana", password=PASSWORD, role="admin")
    page = await signed_in_page(browser, url, "dpo@kefu-tea.example")
    await page.goto(f"{url}/admin/privacy")
    await expect(page.locator("#erasure-requests")).to_contain_text(NAME)
    await shot(page, artifacts, "01-erasure-requests")
    await page.click(f"#erasure-requests >> text={NAME}")
    await page.wait_for_url(f"{url}/customers/{customer_id}**")
    async with page.expect_download() as download:
        await page.click("text=Export JSON")
    exported = read_json(await (await download.value).path())
    assert exported["tables"]["customers"][0]["email"] == EMAIL and exported["tables"]["privacy_requests"]
    await page.fill("#privacy input[name=confirm]", str(customer_id))
    asked: list[str] = []

    async def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await page.click("text=Erase personal data")
    await page.wait_for_url(f"{url}/customers/{customer_id}?notice=erased")
    assert asked and "for good" in asked[0]
    await expect(page.locator("#erased-banner")).to_be_visible()
    assert NAME not in await page.content() and EMAIL not in await page.content()
    await shot(page, artifacts, "02-erased")
    assert await personal_data_left(crm.db, NEEDLES) == []

    # The audit log, filtered in the browser: this customer, then only erasures.
    await page.goto(f"{url}/admin/audit")
    await page.fill("input[name=customer]", str(customer_id))
    await page.click("button:has-text('Filter')")
    entries = page.locator("#audit-entries tbody tr")
    for action in ("customer.erased", "customer.exported", "customer.viewed", "customer.erasure_requested",
                   "customer.data_shown"):
        await expect(page.locator("#audit-entries")).to_contain_text(action)
    await page.select_option("select[name=action]", "customer.erased")
    await page.click("button:has-text('Filter')")
    await expect(entries).to_have_count(1)
    await expect(entries.first).to_contain_text("dpo@kefu-tea.example")
    await shot(page, artifacts, "03-audit-log")
