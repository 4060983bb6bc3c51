"""Telegram's sending limits, kept by every process that talks to the Bot API: about one message a second per chat
and thirty a second per bot, and a 429's `retry_after` honoured by all of them.

Each send reserves a time slot: the earliest moment that is at least a chat interval after the chat's previous
slot and at least a bot interval away from every other slot the bot has reserved (a message waiting for its chat
takes a bot slot at its own time and leaves the ones before it to other chats). With Redis the
reservation is one Lua script over keys all processes share (Redis' own clock), so two bot processes and a worker
together stay under the limits; without Redis (the embedded demo) the same arithmetic runs in memory.

`SendLimits` is an aiogram request middleware: every `send*`, `copyMessage` and `forwardMessage` call waits for its
slot, and a 429 pauses the whole bot for `retry_after` seconds, then the call is made again.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import math
import time
import uuid
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

# Whole milliseconds throughout: Lua turns numbers into strings with 14 significant digits, and a range bound that
# rounded onto a reserved slot would find that slot again and again.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local chat_interval = tonumber(ARGV[1])
local bot_interval = tonumber(ARGV[2])
local slot = now
local chat_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if chat_tat > slot then slot = chat_tat end
local paused_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused_until > slot then slot = paused_until end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 2000)
-- The earliest time from `slot` on with no other send of this bot closer than bot_interval: walk the reserved
-- slots after (slot - bot_interval) in order, each at most once.
local later = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (slot - bot_interval), '+inf', 'WITHSCORES')
for i = 2, #later, 2 do
  local reserved = tonumber(later[i])
  if reserved >= slot + bot_interval then break end
  if reserved + bot_interval > slot then slot = reserved + bot_interval end
end
redis.call('ZADD', KEYS[2], slot, slot)
redis.call('PEXPIRE', KEYS[2], slot - now + 2000)
if chat_interval > 0 then
  redis.call('SET', KEYS[1], slot + chat_interval, 'PX', slot + chat_interval - now + 1000)
end
return slot - now
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', until_ms - now + 1000)
end
return 1
"""


# KEYS: the chat's last send, the bot's sends of the last second (a sorted set); ARGV: the chat interval, the most
# sends a bot may start in any second, a member unique to this call.
_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
if interval > 0 then
  local last = tonumber(redis.call('GET', KEYS[1]) or '0')
  if now < last + interval then
    return last + interval - now
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1000)
if redis.call('ZCARD', KEYS[2]) >= cap then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + 1000 - now + 1
end
if interval > 0 then
  redis.call('SET', KEYS[1], now, 'PX', interval + 1000)
end
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('PEXPIRE', KEYS[2], 2000)
return 0
"""


class SlotBook(Protocol):
    async def reserve(self, chat: str) -> float:
        """Reserve the next slot for a message to `chat`; the seconds to wait before sending it."""
        ...

    async def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` (Telegram answered 429)."""
        ...

    async def start(self, chat: str) -> float:
        """Just before the request: 0 when the chat's previous message actually went out at least an interval ago
        and the bot started fewer than its cap of sends in the last second (this one is then recorded as going
        out), else the seconds still to wait. A slot reserved in time can still be used late (a busy process, a
        stalled worker whose late sends would all go at once), so actual sends, not reservations, are what count."""
        ...


class MemorySlotBook:
    """The slots of one process (the embedded demo)."""

    def __init__(self, *, per_second: float, chat_interval_s: float) -> None:
        self.bot_interval = 1.0 / per_second + MARGIN_S / 10
        self.chat_interval = chat_interval_s + MARGIN_S if chat_interval_s > 0 else 0.0
        self._chat_tat: dict[str, float] = {}
        self._slots: list[float] = []  # the bot's reserved send times, sorted
        self._paused_until = 0.0
        self._last_sent: dict[str, float] = {}
        self.cap = start_cap(per_second)
        self._started: collections.deque[float] = collections.deque()  # the bot's sends of the last second

    async def reserve(self, chat: str) -> float:
        now = time.monotonic()
        slot = max(now, self._chat_tat.get(chat, 0.0), self._paused_until)
        self._slots = self._slots[bisect.bisect_left(self._slots, now - 2.0):]
        # The earliest time from `slot` on with no other slot closer than the bot interval (each looked at once).
        for reserved in self._slots[bisect.bisect_right(self._slots, slot - self.bot_interval):]:
            if reserved >= slot + self.bot_interval:
                break
            slot = max(slot, reserved + self.bot_interval)
        bisect.insort(self._slots, slot)
        if self.chat_interval:
            self._chat_tat[chat] = slot + self.chat_interval
            if len(self._chat_tat) > 10_000:  # forget chats whose next slot has passed
                self._chat_tat = {c: t for c, t in self._chat_tat.items() if t > now}
        return slot - now

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def start(self, chat: str) -> float:
        now = time.monotonic()
        last = self._last_sent.get(chat)
        if self.chat_interval and last is not None and now < last + self.chat_interval:
            return last + self.chat_interval - now
        while self._started and self._started[0] <= now - 1.0:
            self._started.popleft()
        if len(self._started) >= self.cap:
            return self._started[0] + 1.0 - now + 0.001
        self._started.append(now)
        if self.chat_interval:
            self._last_sent[chat] = now
            if len(self._last_sent) > 10_000:
                self._last_sent = {c: t for c, t in self._last_sent.items() if now - t < self.chat_interval}
        return 0.0


class RedisSlotBook:
    """The slots every process shares, on Redis (production)."""

    def __init__(self, redis: Any, *, bot_id: str, per_second: float, chat_interval_s: float,
                 prefix: str = "kefu:send") -> None:
        self.redis = redis
        self.bot_interval_ms = math.ceil(1000.0 / per_second + MARGIN_S * 100)
        self.chat_interval_ms = math.ceil((chat_interval_s + MARGIN_S) * 1000) if chat_interval_s > 0 else 0
        self.prefix = f"{prefix}:{bot_id}"
        self.cap = start_cap(per_second)
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._start = redis.register_script(_START)

    async def reserve(self, chat: str) -> float:
        keys = [f"{self.prefix}:chat:{chat}", f"{self.prefix}:bot-slots", f"{self.prefix}:paused"]
        wait_ms = await self._reserve(keys=keys, args=[self.chat_interval_ms, self.bot_interval_ms])
        return max(0.0, float(wait_ms) / 1000)

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=[f"{self.prefix}:paused"], args=[math.ceil(seconds * 1000)])

    async def start(self, chat: str) -> float:
        wait_ms = await self._start(keys=[f"{self.prefix}:sent:{chat}", f"{self.prefix}:started"],
                                    args=[self.chat_interval_ms, self.cap, uuid.uuid4().hex])
        return max(0.0, float(wait_ms) / 1000)


def start_cap(per_second: float) -> int:
    """The most sends a bot starts in any one second: one under its rate, so what Telegram sees a few milliseconds
    later (the requests' own jitter) stays within the rate too."""
    return max(1, math.floor(per_second) - 1)


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
                while (late := await self.slots.start(chat)) > 0:  # noqa: ASYNC110 - the wait is on Redis' clock
                    await asyncio.sleep(late)
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
