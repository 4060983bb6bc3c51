"""End-to-end tests in a real headless Chromium (Playwright driving Debian's chromium; scripts/ensure-browser
installs it). Screenshots are saved under var/artifacts/browser/ (not committed)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from bot.telegram import TelegramChannel
from console.app import install_console
from console.settings import ConsoleSettings
from console.throttle import MemoryLoginThrottle
from kefu.serve import campaign_loop
from tests import support
from tests.bot.conftest import Stack, stack  # noqa: F401  (the bot stack: CRM, real bus, engine)
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"  # every agent the browser tests make
ARTIFACTS = ROOT / "var" / "artifacts" / "browser"
# As root, in a closed network: no sandbox, and none of Chromium's background calls home (each would be refused).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Chromium is not installed: run scripts/ensure-browser (make test does)")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where this test's screenshots go."""
    folder = ARTIFACTS / request.node.name.replace("[", "-").replace("]", "")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@dataclass
class Live:
    url: str
    tg: FakeTelegram
    stack: Stack


@pytest.fixture
async def live(stack: Stack) -> AsyncIterator[Live]:  # noqa: F811  (the fixture above, by name)
    """The whole stack in one process, as `kefu demo` runs it: the console, the bot on the fake Telegram server
    (aiogram's polling loop), the engine on the real event bus, and the worker's campaign loop (a batch a second)."""
    async with FakeTelegram() as tg:
        channel = TelegramChannel(tg.bot(), stack.engine)
        channel.attach(stack.bus)
        app = FastAPI()
        console = install_console(app, crm=stack.crm, settings=ConsoleSettings(_env_file=None),
                                  throttle=MemoryLoginThrottle(), shop_name="Kefu Tea & Co.")
        await stack.bus.start()
        polling = asyncio.create_task(channel.start_polling(polling_timeout=1))
        stopping = asyncio.Event()
        campaigns = asyncio.create_task(campaign_loop(stack.crm, stopping))
        try:
            async with support.serving(app) as url:
                yield Live(url, tg, stack)
        finally:
            stopping.set()
            await asyncio.wait_for(campaigns, timeout=10)
            await channel.stop_polling()
            await asyncio.wait_for(polling, timeout=10)
            await console.close()


async def shot(page: Any, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def signed_in_page(browser: Any, url: str, email: str) -> Any:
    """A 1280 x 1000 page of the console, signed in as `email` (password PASSWORD), on the inbox."""
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(15_000)
    await page.goto(f"{url}/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{url}/inbox**")
    return page
