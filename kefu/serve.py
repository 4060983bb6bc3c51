"""The all-in-one Kefu process (`kefu demo`): the console and the web chat on one port, and the Telegram bot
(long polling, or its webhook on the same port) when a token is configured.

Embedded defaults: SQLite, the in-process event bus, aiogram's MemoryStorage. With KEFU_REDIS_URL set, events go
through Redis Streams and chat state lives in Redis (aiogram's RedisStorage), as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from bot.settings import BotSettings
from crm_store.settings import StoreSettings
from knowledge_base.settings import KbSettings
from nlu.settings import NluSettings

log = logging.getLogger(__name__)


@dataclass
class Stack:
    app: FastAPI
    engine: Any
    telegram: Any  # bot.telegram.TelegramChannel or None
    webhook_path: str | None
    # Ends the open live streams (the web chat's and the console's), so a stop does not wait on them.
    end_streams: Callable[[], None] = lambda: None


def ensure_nlu_model(settings: NluSettings, encoders: Any, say: Callable[[str], None]) -> None:
    """Train Kefu's NLU model on the shipped data when there is none, or it was trained on other data."""
    import json

    from nlu.pipeline import DEFAULT_DATA, NluModel, fingerprint
    from nlu.service import model_dir
    from nlu.training_data import load_training_data

    if settings.backend != "kefu":
        return
    target = model_dir(settings)
    data = load_training_data(DEFAULT_DATA)
    try:
        trained = json.loads((target / "metadata.json").read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        trained = None
    if trained == fingerprint(data):
        return
    say(f"Training the NLU model on {len(data.examples)} examples (first run only)...")
    NluModel.train(data, encoders=encoders).persist(target)


@asynccontextmanager
async def running_stack(
    *, store: StoreSettings, kb_settings: KbSettings | None = None, nlu_settings: NluSettings | None = None,
    bot_settings: BotSettings | None = None, shop_name: str = "Kefu", say: Callable[[str], None] = print,
) -> AsyncIterator[Stack]:
    """Everything started: the CRM and its event bus, the knowledge base (kept fresh), the NLU, the dialogue
    engine, the web chat, the console's routes, and Telegram when configured; stopped in reverse on exit."""
    from aiogram.fsm.storage.memory import MemoryStorage

    from bot.engine import DialogueEngine, EngineSettings
    from bot.state import AiogramStateStore
    from bot.webchat import WebchatHub, webchat_router
    from console.app import install_console
    from console.settings import ConsoleSettings
    from kefu.runtime import open_crm, open_knowledge_base
    from knowledge_base.service import Encoders
    from nlu.service import open_nlu

    kb_settings = kb_settings or KbSettings()
    nlu_settings = nlu_settings or NluSettings()
    bot_settings = bot_settings or BotSettings()
    encoders = Encoders(kb_settings)
    await asyncio.to_thread(ensure_nlu_model, nlu_settings, encoders, say)
    crm = await open_crm(store)
    storage: Any = MemoryStorage()
    tasks: list[asyncio.Task[None]] = []
    telegram = None
    console = None
    try:
        if store.redis_url:
            from aiogram.fsm.storage.base import DefaultKeyBuilder
            from aiogram.fsm.storage.redis import RedisStorage

            # with_destiny: Kefu's chat state sits beside aiogram's own FSM data under its own "destiny".
            storage = RedisStorage.from_url(store.redis_url, key_builder=DefaultKeyBuilder(with_destiny=True))
        kb = await open_knowledge_base(crm, kb_settings, encoders=encoders)
        nlu = open_nlu(nlu_settings, encoders=encoders)
        engine = DialogueEngine(crm=crm, kb=kb, nlu=nlu, state=AiogramStateStore(storage),
                                settings=EngineSettings(fallbacks_before_handoff=bot_settings.fallbacks_before_handoff))
        engine.attach(crm.events)
        hub = WebchatHub()
        hub.attach(crm.events)
        app = FastAPI(title="Kefu", docs_url=None, redoc_url=None)
        app.include_router(webchat_router(engine, hub))
        telegram, webhook_path, _ = await _telegram(app, engine, storage, bot_settings, crm.events)
        console = install_console(app, crm=crm, settings=ConsoleSettings(), kb=kb, shop_name=shop_name,
                                  footer_links=[("Customer web chat", "/webchat")])
        if telegram is not None and webhook_path is None:
            tasks.append(asyncio.create_task(telegram.start_polling(), name="telegram-polling"))
        live = app.state.console_live

        def end_streams() -> None:
            hub.close()
            live.close()

        yield Stack(app, engine, telegram, webhook_path, end_streams)
    finally:
        if telegram is not None:
            if tasks:
                with contextlib.suppress(RuntimeError):  # polling may not have started yet
                    await telegram.stop_polling()
                await asyncio.gather(*tasks, return_exceptions=True)
            await telegram.bot.session.close()
        if console is not None:
            await console.close()
        await crm.close()
        await storage.close()


async def _telegram(app: FastAPI, engine: Any, storage: Any, settings: BotSettings,
                    events: Any) -> tuple[Any, str | None, str]:
    """The Telegram channel when a token is set: (channel, webhook path or None for polling, a description)."""
    if settings.telegram_token is None:
        return None, None, "not configured (set KEFU_BOT_TELEGRAM_TOKEN)"
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import TelegramAPIError

    from bot.telegram import ChatThrottle, TelegramChannel, telegram_webhook_router, webhook_path

    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base)) \
        if settings.telegram_api_base else None
    bot = Bot(settings.telegram_token.get_secret_value(), session=session)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    channel = TelegramChannel(bot, engine, storage=storage, webhook_secret=secret,
                              throttle=ChatThrottle(settings.throttle_messages, settings.throttle_window_s))
    channel.attach(events)
    try:
        me = await bot.get_me()
        await channel.set_commands()
    except TelegramAPIError as exc:
        await bot.session.close()
        raise RuntimeError(f"Telegram refused the bot token: {exc}") from exc
    path = None
    if settings.webhook_url:
        path = webhook_path(secret)
        app.include_router(telegram_webhook_router(channel, path))
        await bot.set_webhook(settings.webhook_url.rstrip("/") + path, secret_token=secret,
                              drop_pending_updates=False)
        return channel, path, f"@{me.username} (webhook at {settings.webhook_url.rstrip('/')}{path})"
    return channel, None, f"@{me.username} (long polling)"


async def serve(*, host: str, port: int, store: StoreSettings, shop_name: str, say: Callable[[str], None],
                started: Callable[[Stack], None] | None = None) -> None:
    """Run the all-in-one process until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("jieba", "bm25s"):  # they set DEBUG on their own loggers when imported: keep it off the root's
        logging.getLogger(chatty).propagate = False
    async with running_stack(store=store, shop_name=shop_name, say=say) as stack:
        loop = asyncio.get_running_loop()

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                super().handle_exit(sig, frame)
                loop.call_soon_threadsafe(stack.end_streams)  # open pages' streams end at once

        # Anything still open after 5 s is cut, so Ctrl+C never waits long.
        config = uvicorn.Config(stack.app, host=host, port=port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=5)
        server = Server(config)
        if started is not None:
            started(stack)
        await server.serve()
