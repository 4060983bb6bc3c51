"""Telegram's sending limits, kept by every process that talks to the Bot API: about one message a second per chat
and thirty a second per bot, and a 429's `retry_after` honoured by all of them.

Each send reserves a time slot (GCRA, "theoretical arrival time"): the chat's next slot and the bot's next slot,
taken together so that a message waiting for its chat never holds a bot slot it does not use. With Redis the
reservation is one Lua script over keys all processes share (Redis' own clock), so two bot processes and a worker
together stay under the limits; without Redis (the embedded demo) the same arithmetic runs in memory.

`SendLimits` is an aiogram request middleware: every `send*`, `copyMessage` and `forwardMessage` call waits for its
slot, and a 429 pauses the whole bot for `retry_after` seconds, then the call is made again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import CopyMessage, ForwardMessage, Response, TelegramMethod
from aiogram.methods.base import TelegramType

from crm_store.observability import RETRY_AFTER

log = logging.getLogger(__name__)

# Added to every interval: the Bot API sees our requests a few milliseconds apart from when we sent them.
MARGIN_S = 0.02
# A call that keeps getting 429s is given up after this many tries (the caller then records a failure).
MAX_TRIES = 4

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local chat_interval = tonumber(ARGV[1])
local bot_interval = tonumber(ARGV[2])
local start = now
local chat_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if chat_tat > start then start = chat_tat end
local paused_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused_until > start then start = paused_until end
local bot_tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = start
if bot_tat > slot then slot = bot_tat end
if chat_interval > 0 then
  redis.call('SET', KEYS[1], tostring(slot + chat_interval), 'PX', math.ceil(slot + chat_interval - now) + 1000)
end
redis.call('SET', KEYS[2], tostring(slot + bot_interval), 'PX', math.ceil(slot + bot_interval - now) + 1000)
return tostring(slot - now)
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', math.ceil(until_ms - now) + 1000)
end
return 1
"""


class SlotBook(Protocol):
    async def reserve(self, chat: str) -> float:
        """Reserve the next slot for a message to `chat`; the seconds to wait before sending it."""
        ...

    async def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` (Telegram answered 429)."""
        ...


class MemorySlotBook:
    """The slots of one process (the embedded demo)."""

    def __init__(self, *, per_second: float, chat_interval_s: float) -> None:
        self.bot_interval = 1.0 / per_second + MARGIN_S / 10
        self.chat_interval = chat_interval_s + MARGIN_S if chat_interval_s > 0 else 0.0
        self._chat_tat: dict[str, float] = {}
        self._bot_tat = 0.0
        self._paused_until = 0.0

    async def reserve(self, chat: str) -> float:
        now = time.monotonic()
        start = max(now, self._chat_tat.get(chat, 0.0), self._paused_until)
        slot = max(start, self._bot_tat)
        if self.chat_interval:
            self._chat_tat[chat] = slot + self.chat_interval
            if len(self._chat_tat) > 10_000:  # forget chats whose next slot has passed
                self._chat_tat = {c: t for c, t in self._chat_tat.items() if t > now}
        self._bot_tat = slot + self.bot_interval
        return slot - now

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)


class RedisSlotBook:
    """The slots every process shares, on Redis (production)."""

    def __init__(self, redis: Any, *, bot_id: str, per_second: float, chat_interval_s: float,
                 prefix: str = "kefu:send") -> None:
        self.redis = redis
        self.bot_interval_ms = 1000.0 / per_second + MARGIN_S * 100
        self.chat_interval_ms = (chat_interval_s + MARGIN_S) * 1000 if chat_interval_s > 0 else 0.0
        self.prefix = f"{prefix}:{bot_id}"
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)

    async def reserve(self, chat: str) -> float:
        keys = [f"{self.prefix}:chat:{chat}", f"{self.prefix}:bot", f"{self.prefix}:paused"]
        wait_ms = await self._reserve(keys=keys, args=[self.chat_interval_ms, self.bot_interval_ms])
        return max(0.0, float(wait_ms) / 1000)

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=[f"{self.prefix}:paused"], args=[seconds * 1000])


def _sends_a_message(method: TelegramMethod[Any]) -> bool:
    name = type(method).__name__
    return (name.startswith("Send") and name != "SendChatAction") or isinstance(method, CopyMessage | ForwardMessage)


class SendLimits(BaseRequestMiddleware):
    """aiogram request middleware: sending calls wait for their slot; a 429 pauses everyone, then retries."""

    def __init__(self, slots: SlotBook, *, retry_after_max_s: float = 60.0) -> None:
        self.slots = slots
        self.retry_after_max_s = retry_after_max_s

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        limited = _sends_a_message(method)
        chat = str(getattr(method, "chat_id", "") or "")
        for attempt in range(1, MAX_TRIES + 1):
            if limited:
                wait = await self.slots.reserve(chat)
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                RETRY_AFTER.inc()
                if attempt == MAX_TRIES or exc.retry_after > self.retry_after_max_s:
                    raise
                log.warning("telegram: 429 on %s to chat %s; everyone waits %ss", type(method).__name__, chat,
                            exc.retry_after)
                await self.slots.pause(float(exc.retry_after))
                if not limited:  # unlimited calls do not reserve slots, so they wait here
                    await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")


def slot_book(redis: Any | None, *, bot_id: str, per_second: float, chat_interval_s: float) -> SlotBook:
    """Shared slots on Redis when there is one, else this process's own."""
    if redis is None:
        return MemorySlotBook(per_second=per_second, chat_interval_s=chat_interval_s)
    return RedisSlotBook(redis, bot_id=bot_id, per_second=per_second, chat_interval_s=chat_interval_s)
