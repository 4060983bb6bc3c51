"""Web chat flood control: each visitor (their visitor id) and each client address may post at most so many
messages per window; over either rate the message is refused (HTTP 429 with Retry-After) and not handled.

Fixed windows that start with a key's first message, as the console's sign-in throttle counts failures: in memory for
one process (the demo), in Redis when several processes serve the web chat (KEFU_REDIS_URL), so that they share the
counts. Refused messages count too: a client that keeps flooding stays refused until its window ends.

The cap on a request's size is here too (`MAX_BODY_BYTES`, applied by crm_store.body_limit: 413 past it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.settings import BotSettings


@dataclass(frozen=True)
class Rate:
    messages: int  # at most this many...
    window_s: float  # ...per this many seconds


PER_VISITOR = Rate(messages=20, window_s=10.0)
PER_ADDRESS = Rate(messages=120, window_s=60.0)  # several people may share an address (an office, a mobile NAT)
# The cap on a web chat request's body: the largest valid message, every character JSON-escaped, is under 50 KB.
MAX_BODY_BYTES = 64 * 1024


class WebchatLimiter(Protocol):
    async def admit(self, *, visitor_id: str, address: str | None) -> int:
        """Count one message; 0 when it may be handled, else the seconds until the sender may post again."""
        ...

    async def close(self) -> None: ...


def _quotas(visitor_id: str, address: str | None, per_visitor: Rate, per_address: Rate) -> list[tuple[str, Rate]]:
    quotas = [(f"visitor:{visitor_id}", per_visitor)]
    if address:
        quotas.append((f"address:{address}", per_address))
    return quotas


class MemoryWebchatLimiter:
    """One process's counters; ended windows are dropped as they are met, and all of them past `max_keys`."""

    def __init__(self, *, per_visitor: Rate = PER_VISITOR, per_address: Rate = PER_ADDRESS,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.per_visitor = per_visitor
        self.per_address = per_address
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (messages, window end)

    async def admit(self, *, visitor_id: str, address: str | None) -> int:
        now = self._clock()
        if len(self._windows) >= self._max_keys:
            self._windows = {key: window for key, window in self._windows.items() if window[1] > now}
        waits = [0.0]
        for key, rate in _quotas(visitor_id, address, self.per_visitor, self.per_address):
            count, end = self._windows.get(key, (0, 0.0))
            if end <= now:
                count, end = 0, now + rate.window_s
            self._windows[key] = (count + 1, end)
            if count + 1 > rate.messages:
                waits.append(end - now)
        return math.ceil(max(waits))

    async def close(self) -> None:
        self._windows.clear()


class RedisWebchatLimiter:
    """Counters in Redis, shared by every web chat process: INCR on a key that expires when its window ends."""

    def __init__(self, redis: Any, *, per_visitor: Rate = PER_VISITOR, per_address: Rate = PER_ADDRESS,
                 prefix: str = "kefu:webchat:rate:") -> None:
        self.redis = redis
        self.per_visitor = per_visitor
        self.per_address = per_address
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisWebchatLimiter:
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url), **options)

    async def admit(self, *, visitor_id: str, address: str | None) -> int:
        quotas: Sequence[tuple[str, Rate]] = _quotas(visitor_id, address, self.per_visitor, self.per_address)
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, rate in quotas:
                window_ms = max(1, round(rate.window_s * 1000))
                # The window starts with the first message; INCR keeps the expiry that SET NX gave the key.
                pipe.set(self.prefix + key, 0, px=window_ms, nx=True)
                pipe.incr(self.prefix + key)
                pipe.pttl(self.prefix + key)
            replies = await pipe.execute()
        waits = [0]
        for (_, rate), count, ttl_ms in zip(quotas, replies[1::3], replies[2::3], strict=True):
            if int(count) > rate.messages:
                waits.append(math.ceil((ttl_ms if ttl_ms > 0 else rate.window_s * 1000) / 1000))
        return max(waits)

    async def close(self) -> None:
        await self.redis.aclose()


def build_webchat_limiter(settings: BotSettings, redis_url: str | None) -> WebchatLimiter:
    """Redis when the deployment has one (every process shares the counts), else this process's memory."""
    rates = {"per_visitor": Rate(settings.webchat_visitor_messages, settings.webchat_visitor_window_s),
             "per_address": Rate(settings.webchat_address_messages, settings.webchat_address_window_s)}
    if redis_url:
        return RedisWebchatLimiter.from_url(redis_url, **rates)
    return MemoryWebchatLimiter(**rates)
