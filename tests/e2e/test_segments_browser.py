"""A supervisor builds a segment in a real headless Chromium: HTMX re-renders a row when its field changes, the
preview follows each value, a nested "any of" group is added, the rule's JSON follows, and the segment is saved and
listed with its count. Screenshots land in var/artifacts/browser/<test>/ (not committed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from console.app import create_console_app
from console.settings import ConsoleSettings
from console.throttle import MemoryLoginThrottle
from tests import support
from tests.console.test_segments_pages import PEOPLE, RULE
from tests.e2e.conftest import PASSWORD, signed_in_page


async def swapped_in(page: Any, selector: str) -> None:
    """Wait for `selector` in a builder HTMX has swapped in and processed (it does so 20 ms after the swap, when it
    takes `htmx-added` off: a change before that would reach no listener)."""
    await page.locator(f"#builder:not(.htmx-added) {selector}").wait_for()


@pytest.fixture
async def url(crm) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    await support.make_tiers(crm)
    for name, (language, tags, points) in PEOPLE.items():
        customer = await crm.customers.create(name=name, language=language, tags=tags)
        if points:
            await crm.loyalty.award_points(customer_id=customer.id, points=points, reason="seed",
                                           idempotency_key=f"seed-{name}")
    await crm.agents.create_agent(email="sue@kefu-tea.example", name="Sue", password=PASSWORD, role="supervisor")
    app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    async with support.serving(app) as base:
        yield base


async def test_a_supervisor_builds_a_segment_with_a_group_and_saves_it(url: str, crm, browser: Any,  # type: ignore[no-untyped-def]
                                                                       artifacts: Path) -> None:
    page = await signed_in_page(browser, url, "sue@kefu-tea.example")
    await page.click("nav.mainnav >> text=Segments")
    await page.click("text=New segment")
    count = page.locator("#segment-count")
    await count.get_by_text("5", exact=True).wait_for()  # no condition yet: everyone

    await page.fill("#segment-name", "English VIPs")
    await page.select_option("#seg-r-0-field", "language")  # the row comes back with its operators and input
    await swapped_in(page, "#seg-r-0-op")
    await page.fill("#seg-r-0-value", "en")
    await page.press("#seg-r-0-value", "Tab")  # change: the preview follows
    await count.get_by_text("3", exact=True).wait_for()

    await page.click("button[value='group:r']")
    await swapped_in(page, "#seg-r-1-match")
    assert await page.input_value("#seg-r-1-match") == "any"
    await page.select_option("#seg-r-1-0-field", "tier")
    await swapped_in(page, "#seg-r-1-0-op")
    await page.select_option("#seg-r-1-0-op", "in")
    await swapped_in(page, "#seg-r-1-0-value[multiple]")
    await page.select_option("#seg-r-1-0-value", ["Gold"])
    await count.get_by_text("2", exact=True).wait_for()  # Ann, Cy
    await page.click("button[value='add:r.1']")
    await swapped_in(page, "#seg-r-1-1-field")
    await page.select_option("#seg-r-1-1-field", "tags")
    await swapped_in(page, "#seg-r-1-1-value[type=text]")
    await page.fill("#seg-r-1-1-value", "vip")
    await page.press("#seg-r-1-1-value", "Tab")
    await count.get_by_text("3", exact=True).wait_for()  # and Ed, tagged vip
    assert await page.locator("#segment-sample a").all_inner_texts() == ["Ed", "Cy", "Ann"]
    await page.click("summary:has-text('Advanced')")
    assert json.loads(await page.input_value("#rule-json")) == RULE
    await page.screenshot(path=str(artifacts / "01-builder.png"), full_page=True)

    await page.click("button.button-primary[value=save]")
    await page.wait_for_url(f"{url}/segments/*?notice=created")
    await page.goto(f"{url}/segments")
    row = page.locator("#segments tbody tr")
    assert (await row.all_inner_texts())[0].split("\t")[:2] == ["English VIPs", "3"]
    await page.screenshot(path=str(artifacts / "02-list.png"), full_page=True)
    (saved,) = await crm.segments.list()
    assert saved.rules == RULE
