"""The all-in-one Kefu process (`kefu demo`): the console and the web chat on one port, and the Telegram bot
(long polling, or its webhook on the same port) when a token is configured.

Embedded defaults: SQLite, the in-process event bus, aiogram's MemoryStorage. With KEFU_REDIS_URL set, events go
through Redis Streams and chat state lives in Redis (aiogram's RedisStorage), as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from bot.settings import BotSettings
from crm_store.settings import StoreSettings
from knowledge_base.settings import KbSettings
from nlu.settings import NluSettings

log = logging.getLogger(__name__)


ROLES = frozenset({"bot", "console", "worker"})


@dataclass
class Stack:
    app: FastAPI
    engine: Any
    telegram: Any  # bot.telegram.TelegramChannel or None
    webhook_path: str | None
    # Ends the open live streams (the web chat's and the console's), so a stop does not wait on them.
    end_streams: Callable[[], None] = lambda: None
    crm: Any = None
    roles: frozenset[str] = ROLES
    worker: Any = None  # bot.delivery.DeliveryWorker (Redis) when this process delivers


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
    roles: frozenset[str] = ROLES,
) -> AsyncIterator[Stack]:
    """A Kefu process, by role: "bot" (the dialogue engine, the web chat, Telegram's intake), "console" (the agent
    console and its API), "worker" (outbound delivery and the timers); `kefu demo` runs all three. Every process
    serves /healthz, /readyz and /metrics. Stopped in reverse on exit, finishing the work in flight."""
    from kefu.ops import database_check, ops_router, redis_check
    from kefu.runtime import open_crm

    unknown = set(roles) - ROLES
    if unknown or not roles:
        raise ValueError(f"unknown roles: {sorted(unknown)}" if unknown else "no role to run")
    kb_settings = kb_settings or KbSettings()
    nlu_settings = nlu_settings or NluSettings()
    bot_settings = bot_settings or BotSettings()
    encoders = None
    if roles & {"bot", "console"}:
        from knowledge_base.service import Encoders

        encoders = Encoders(kb_settings)
    if "bot" in roles:
        await asyncio.to_thread(ensure_nlu_model, nlu_settings, encoders, say)
    crm = await open_crm(store)
    redis = None
    storage: Any = None
    tasks: list[asyncio.Task[None]] = []
    stoppers: list[Callable[[], Awaitable[None]]] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    telegram = None
    engine = None
    webhook = None
    worker = None
    hub = live = None
    try:
        if store.redis_url:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(store.redis_url)
        checks = {"database": database_check(crm.db)}
        if redis is not None:
            checks["redis"] = redis_check(redis)
        app = FastAPI(title="Kefu", docs_url=None, redoc_url=None)
        before_metrics = None
        kb = None
        if roles & {"bot", "console"}:
            from kefu.runtime import open_knowledge_base

            kb = await open_knowledge_base(crm, kb_settings, encoders=encoders)
        bot = await _bot_client(bot_settings, redis) if roles & {"bot", "worker"} else None
        if bot is not None:
            closers.append(bot.session.close)
        if "bot" in roles:
            engine, storage, hub = await _bot_role(app, crm, kb, encoders, store, nlu_settings, bot_settings, tasks,
                                                   stoppers)
            if bot is not None:
                telegram, webhook = await _telegram(app, bot, engine, storage, bot_settings, tasks, stoppers)
        if "console" in roles:
            from console.app import install_console
            from console.settings import ConsoleSettings

            console = install_console(app, crm=crm, settings=ConsoleSettings(), kb=kb, shop_name=shop_name,
                                      footer_links=[("Customer web chat", "/webchat")] if "bot" in roles else [])
            closers.append(console.close)
            live = app.state.console_live
        if "worker" in roles:
            worker = await _worker_role(crm, bot, redis, bot_settings, tasks, stoppers)
            if worker is not None:
                before_metrics = worker.refresh_gauges
        process = "+".join(sorted(roles))
        app.include_router(ops_router(checks=checks, process=process, before_metrics=before_metrics))

        def end_streams() -> None:
            if hub is not None:
                hub.close()
            if live is not None:
                live.close()

        yield Stack(app, engine, telegram, webhook, end_streams, crm, frozenset(roles), worker)
    finally:
        # Graceful: stop taking work, finish what is in flight, then close the connections.
        for stop in stoppers:
            with contextlib.suppress(Exception):
                await stop()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=30)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        await crm.close()
        if storage is not None:
            await storage.close()
        if redis is not None:
            await redis.aclose()


async def _bot_role(app: FastAPI, crm: Any, kb: Any, encoders: Any, store: StoreSettings, nlu_settings: NluSettings,
                    bot_settings: BotSettings, tasks: list[asyncio.Task[None]],
                    stoppers: list[Callable[[], Awaitable[None]]]) -> tuple[Any, Any, Any]:
    """The dialogue engine (state in Redis when there is one), the web chat, and the NLU model watcher."""
    from aiogram.fsm.storage.memory import MemoryStorage

    from bot.engine import DialogueEngine, EngineSettings
    from bot.state import AiogramStateStore
    from bot.webchat import WebchatHub, install_webchat
    from bot.webchat_limit import build_webchat_limiter
    from nlu.service import open_nlu

    storage: Any = MemoryStorage()
    if store.redis_url:
        from aiogram.fsm.storage.base import DefaultKeyBuilder
        from aiogram.fsm.storage.redis import RedisStorage

        # with_destiny: Kefu's chat state sits beside aiogram's own FSM data under its own "destiny".
        storage = RedisStorage.from_url(store.redis_url, key_builder=DefaultKeyBuilder(with_destiny=True))
    nlu = open_nlu(nlu_settings, encoders=encoders)
    engine = DialogueEngine(crm=crm, kb=kb, nlu=nlu, state=AiogramStateStore(storage),
                            settings=EngineSettings(fallbacks_before_handoff=bot_settings.fallbacks_before_handoff))
    engine.attach(crm.events)
    hub = WebchatHub()
    hub.attach(crm.events)
    limiter = build_webchat_limiter(bot_settings, store.redis_url)
    stoppers.append(limiter.close)
    install_webchat(app, engine, hub, limiter=limiter, max_body_bytes=bot_settings.webchat_max_body_bytes)
    if nlu_settings.backend == "kefu":
        stopping = asyncio.Event()
        tasks.append(asyncio.create_task(_watch_nlu_model(engine, nlu_settings, encoders, stopping),
                                         name="nlu-model-watch"))

        async def stop_watch() -> None:
            stopping.set()

        stoppers.append(stop_watch)
    return engine, storage, hub


async def _watch_nlu_model(engine: Any, settings: NluSettings, encoders: Any, stopping: asyncio.Event,
                           every_s: float = 2.0) -> None:
    """Retrained by another process (`kefu nlu train` on the shared model folder): load the new model within
    seconds. The model is written atomically (a new folder renamed into place), so a load sees all or none."""
    from nlu.pipeline import NluModel
    from nlu.service import model_dir

    metadata = model_dir(settings) / "metadata.json"

    def stamp() -> int | None:
        try:
            return metadata.stat().st_mtime_ns
        except OSError:
            return None

    seen = stamp()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=every_s)
        now = stamp()
        if now is None or now == seen:
            continue
        try:
            model = await asyncio.to_thread(NluModel.load, model_dir(settings), encoders=encoders)
        except Exception:
            log.warning("nlu: the retrained model could not be loaded yet; trying again", exc_info=True)
            continue
        seen = now
        if hasattr(engine.nlu, "model"):
            engine.nlu.model = model
            log.info("nlu: loaded the retrained model (%s)", model.metadata.get("fingerprint", "?"))


async def _bot_client(settings: BotSettings, redis: Any) -> Any:
    """The Bot API client every Telegram-facing process uses, with the shared sending limits; None without a
    token."""
    if settings.telegram_token is None:
        return None
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.ratelimit import SendLimits, slot_book

    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base)) \
        if settings.telegram_api_base else AiohttpSession()
    bot = Bot(settings.telegram_token.get_secret_value(), session=session)
    slots = slot_book(redis, bot_id=str(bot.id), per_second=settings.send_per_second,
                      chat_interval_s=settings.chat_send_interval_s)
    session.middleware(SendLimits(slots, retry_after_max_s=settings.retry_after_max_s))
    return bot


async def _worker_role(crm: Any, bot: Any, redis: Any, settings: BotSettings, tasks: list[asyncio.Task[None]],
                       stoppers: list[Callable[[], Awaitable[None]]]) -> Any:
    """Outbound delivery (Redis Streams group with reclaim, or the in-process bus) and the timers."""
    from bot.delivery import Deliverer, DeliveryWorker, LocalDelivery, MemoryMarks, RedisMarks
    from bot.telegram import TelegramSender
    from crm_store.bus import RedisEventBus

    stopping = asyncio.Event()
    tasks.append(asyncio.create_task(_timers(crm, settings, stopping), name="timers"))
    tasks.append(asyncio.create_task(campaign_loop(crm, stopping), name="campaigns"))

    async def stop_timers() -> None:
        stopping.set()

    stoppers.append(stop_timers)
    if bot is None:
        log.warning("worker: no KEFU_BOT_TELEGRAM_TOKEN: nothing is delivered to Telegram")
        return None
    sender = TelegramSender(bot, crm)
    if isinstance(crm.events, RedisEventBus):
        # Marks live beside the stream they are for: message ids are only unique within one database.
        marks = RedisMarks(redis, prefix=f"{crm.events.stream}:delivered")
        deliverer = Deliverer(sender, marks, worker=crm.events.consumer_name)
        worker = DeliveryWorker(crm.events, deliverer, concurrency=settings.delivery_concurrency,
                                reclaim_after_s=settings.delivery_reclaim_after_s)
        tasks.append(asyncio.create_task(worker.run(), name="delivery"))
        stoppers.append(worker.stop)
        return worker
    LocalDelivery(Deliverer(sender, MemoryMarks())).attach(crm.events)
    return None


async def _timers(crm: Any, settings: BotSettings, stopping: asyncio.Event) -> None:
    """Survey invitations past their expiry are closed; Telegram messages (agents' replies, campaigns' and surveys'
    messages) and survey invitations whose announcement was lost are announced again (more timers join here)."""
    from datetime import timedelta

    every_s = settings.timers_interval_s
    while not stopping.is_set():
        try:
            expired = await crm.surveys.expire_due()
            if expired:
                log.info("timers: %d survey invitations expired", expired)
        except Exception:
            log.warning("timers: survey expiry failed; trying again later", exc_info=True)
        again = timedelta(seconds=settings.announce_again_after_s)
        try:
            stranded = await crm.conversations.announce_stranded(older_than=again, within=timedelta(days=1))
            unasked = await crm.surveys.announce_unasked(older_than=again, within=timedelta(days=1))
            if stranded or unasked:
                log.warning("timers: announced again (not sent after %.0fs): %d messages, %d surveys not asked",
                            settings.announce_again_after_s, stranded, unasked)
        except Exception:
            log.warning("timers: the stranded messages' check failed; trying again later", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=every_s)


async def campaign_loop(crm: Any, stopping: asyncio.Event, every_s: float = 1.0) -> None:
    """A batch of every running campaign each second (crm_store.services.campaigns: a batch is one transaction, so
    any number of workers may do this, and one killed in the middle repeats and skips nothing)."""
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        started = loop.time()
        try:
            await crm.campaigns.run_due()
        except Exception:
            log.warning("campaigns: a batch failed; trying again in %ss", every_s, exc_info=True)
        # A batch a second from start to start: the campaign's rate is per second, whatever a batch takes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=max(0.0, every_s - (loop.time() - started)))


async def _telegram(app: FastAPI, bot: Any, engine: Any, storage: Any, settings: BotSettings,
                    tasks: list[asyncio.Task[None]],
                    stoppers: list[Callable[[], Awaitable[None]]]) -> tuple[Any, str | None]:
    """Telegram's intake: long polling, or the webhook route on this process's port (any number of replicas);
    every update stored before it is acknowledged; updates a dead process left are handled again."""
    from datetime import timedelta

    from aiogram.exceptions import TelegramAPIError

    from bot.telegram import ChatThrottle, TelegramChannel, telegram_webhook_router, webhook_path

    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    channel = TelegramChannel(bot, engine, storage=storage, webhook_secret=secret,
                              throttle=ChatThrottle(settings.throttle_messages, settings.throttle_window_s))
    try:
        me = await bot.get_me()
        await channel.set_commands()
    except TelegramAPIError as exc:
        raise RuntimeError(f"Telegram refused the bot token: {exc}") from exc
    log.info("telegram: @%s", me.username)
    path = None
    if settings.webhook_url:
        path = webhook_path(secret)
        app.include_router(telegram_webhook_router(channel, path))
        await bot.set_webhook(settings.webhook_url.rstrip("/") + path, secret_token=secret,
                              drop_pending_updates=False)
    else:
        tasks.append(asyncio.create_task(channel.start_polling(), name="telegram-polling"))
    tasks.append(asyncio.create_task(channel.redrive(lease=timedelta(seconds=settings.redrive_after_s)),
                                     name="telegram-redrive"))
    stoppers.append(channel.stop)
    return channel, path


async def serve_role(*, roles: frozenset[str], host: str, port: int, store: StoreSettings, shop_name: str = "Kefu",
                     say: Callable[[str], None] = print, started: Callable[[Stack], None] | None = None) -> None:
    """Run one Kefu process (`kefu bot`, `kefu console`, `kefu worker`) until SIGTERM / Ctrl+C."""
    from kefu.ops import OpsSettings, configure_logging

    configure_logging(OpsSettings(), process="+".join(sorted(roles)))
    await _serve(roles=roles, host=host, port=port, store=store, shop_name=shop_name, say=say, started=started,
                 graceful_s=25)


async def _serve(*, roles: frozenset[str], host: str, port: int, store: StoreSettings, shop_name: str,
                 say: Callable[[str], None], started: Callable[[Stack], None] | None, graceful_s: int) -> None:
    import uvicorn

    async with running_stack(store=store, shop_name=shop_name, say=say, roles=roles) as stack:
        loop = asyncio.get_running_loop()

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                super().handle_exit(sig, frame)
                # uvicorn raises the signal again once it has stopped serving, which for SIGTERM ends the
                # process on the spot: the graceful part (intake stopped, work in flight finished, connections
                # closed) is running_stack's exit, so serve() must simply return.
                self._captured_signals.clear()
                loop.call_soon_threadsafe(stack.end_streams)  # open pages' streams end at once

        config = uvicorn.Config(stack.app, host=host, port=port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=graceful_s, log_config=None)
        server = Server(config)
        if started is not None:
            started(stack)
        await server.serve()


async def serve(*, host: str, port: int, store: StoreSettings, shop_name: str, say: Callable[[str], None],
                started: Callable[[Stack], None] | None = None) -> None:
    """Run the all-in-one process (`kefu demo`) until interrupted."""
    import os

    from kefu.ops import OpsSettings, configure_logging

    # The same masked logging as the production processes (e-mails, phones, tokens); quieter unless asked.
    ops = OpsSettings()
    if "KEFU_LOG_LEVEL" not in os.environ:
        ops.log_level = "WARNING"
    configure_logging(ops, process="demo")
    # Anything still open after 5 s is cut, so Ctrl+C never waits long.
    await _serve(roles=ROLES, host=host, port=port, store=store, shop_name=shop_name, say=say, started=started,
                 graceful_s=5)
