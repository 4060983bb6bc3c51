"""A running bot stack for the channel tests: the CRM on the test database with a real event bus (in-process, or
Redis Streams when KEFU_TEST_REDIS_URL is set), the demo shop's knowledge base and Kefu's trained NLU."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from bot.engine import DialogueEngine
from bot.telegram import TelegramChannel, telegram_webhook_router
from crm_store.bus import build_event_bus
from crm_store.crm import CRM
from kefu.runtime import open_knowledge_base
from kefu.sample_kb import load_sample_kb
from nlu.pipeline import NluModel
from nlu.service import LocalNlu
from tests import support
from tests.fake_telegram import FakeTelegram


@dataclass
class Stack:
    crm: CRM
    bus: Any
    engine: DialogueEngine


@pytest.fixture
async def stack(db, settings, encoders, nlu_model_dir: Path) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    stream = f"kefu-test:bot:{uuid.uuid4().hex}"
    bus = build_event_bus(settings.redis_url, stream=stream)
    crm = CRM(db=db, events=bus, settings=settings)
    await load_sample_kb(crm)
    kb = await open_knowledge_base(crm, follow_changes=False, encoders=encoders)
    engine = DialogueEngine(crm=crm, kb=kb, nlu=LocalNlu(NluModel.load(nlu_model_dir, encoders=encoders)))
    engine.attach(bus)  # the bot asks the surveys the CRM sends (once the test starts the bus)
    try:
        yield Stack(crm, bus, engine)
    finally:
        await bus.close()
        if settings.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(settings.redis_url)
            await client.delete(stream)
            await client.aclose()


@dataclass
class TelegramRun:
    """The bot on the fake Telegram server, fed by aiogram's polling loop or by webhook POSTs (`mode`)."""

    tg: FakeTelegram
    channel: TelegramChannel
    stack: Stack
    mode: str


@pytest.fixture(params=["polling", "webhook"])
async def telegram(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[TelegramRun]:
    """Every test using this runs twice: on aiogram's real polling loop, and through the webhook route (the fake
    server POSTs each update, with the secret token, as Telegram does)."""
    mode = request.param
    async with FakeTelegram() as tg:
        channel = TelegramChannel(tg.bot(), stack.engine, webhook_secret="s3cret" if mode == "webhook" else None)
        channel.attach(stack.bus)
        await stack.bus.start()
        await channel.set_commands()
        if mode == "polling":
            polling = asyncio.create_task(channel.start_polling(polling_timeout=1))
            try:
                yield TelegramRun(tg, channel, stack, mode)
            finally:
                await channel.stop_polling()
                await asyncio.wait_for(polling, timeout=10)
        else:
            app = FastAPI()
            app.include_router(telegram_webhook_router(channel))
            async with support.serving(app) as base:
                tg.deliver_to(f"{base}/telegram/webhook", "s3cret")
                yield TelegramRun(tg, channel, stack, mode)
