"""Sign-in throttling: failures are counted per key (an e-mail, a client address) in a fixed window that starts at
the first failure; a key at its limit is locked until the window ends. In memory for one process (the demo), in
Redis when several processes serve the console (KEFU_REDIS_URL)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Limit:
    key: str  # "email:ann@example.com", "ip:203.0.113.9"
    max_failures: int


class LoginThrottle(Protocol):
    async def retry_after(self, limits: Sequence[Limit]) -> int:
        """Seconds until a sign-in may be tried again (0: now): the longest lock among the keys at their limit."""
        ...

    async def record_failure(self, keys: Sequence[str], *, window_s: int) -> None: ...

    async def clear(self, key: str) -> None:
        """Forget a key's failures (its e-mail signed in successfully)."""
        ...

    async def close(self) -> None: ...


class MemoryLoginThrottle:
    """One process's counters; expired windows are dropped as they are met, and all of them past `max_keys`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (failures, window end)

    def _live(self, key: str) -> tuple[int, float] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= self._clock():
            del self._windows[key]
            return None
        return window

    async def retry_after(self, limits: Sequence[Limit]) -> int:
        now = self._clock()
        waits = [0.0]
        for limit in limits:
            window = self._live(limit.key)
            if window is not None and window[0] >= limit.max_failures:
                waits.append(window[1] - now)
        return math.ceil(max(waits))

    async def record_failure(self, keys: Sequence[str], *, window_s: int) -> None:
        if len(self._windows) >= self._max_keys:
            now = self._clock()
            self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
        for key in keys:
            failures, end = self._live(key) or (0, self._clock() + window_s)
            self._windows[key] = (failures + 1, end)

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    async def close(self) -> None:
        self._windows.clear()


class RedisLoginThrottle:
    """Counters in Redis (shared by every console process): INCR on a key that expires when its window ends."""

    def __init__(self, redis: Any, *, prefix: str = "kefu:console:login:") -> None:
        self.redis = redis
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "kefu:console:login:") -> RedisLoginThrottle:
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url, decode_responses=True), prefix=prefix)

    async def retry_after(self, limits: Sequence[Limit]) -> int:
        keys = [self.prefix + limit.key for limit in limits]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        waits = [
            ttl_ms for limit, count, ttl_ms in zip(limits, replies[::2], replies[1::2], strict=True)
            if count is not None and int(count) >= limit.max_failures and ttl_ms > 0
        ]
        return math.ceil(max(waits) / 1000) if waits else 0

    async def record_failure(self, keys: Sequence[str], *, window_s: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in keys:
                # The window starts with the first failure; INCR keeps the expiry that SET NX gave the key.
                pipe.set(self.prefix + key, 0, ex=window_s, nx=True)
                pipe.incr(self.prefix + key)
            await pipe.execute()

    async def clear(self, key: str) -> None:
        await self.redis.delete(self.prefix + key)

    async def close(self) -> None:
        await self.redis.aclose()


def build_throttle(redis_url: str | None) -> LoginThrottle:
    """Redis when the deployment has one (several processes share the counts), else this process's memory."""
    return RedisLoginThrottle.from_url(redis_url) if redis_url else MemoryLoginThrottle()
