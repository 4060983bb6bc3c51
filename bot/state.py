"""The bot's memory of each chat (language, fallbacks in a row, what a button refers to): in memory for the demo,
in Redis in production, so any bot process can answer any chat."""

from __future__ import annotations

import json
from typing import Any, Protocol

DAY = 24 * 3600


class StateStore(Protocol):
    async def get(self, key: str) -> dict[str, Any]: ...

    async def set(self, key: str, state: dict[str, Any]) -> None: ...


class MemoryStateStore:
    def __init__(self) -> None:
        self._states: dict[str, str] = {}

    async def get(self, key: str) -> dict[str, Any]:
        raw = self._states.get(key)
        return json.loads(raw) if raw else {}

    async def set(self, key: str, state: dict[str, Any]) -> None:
        self._states[key] = json.dumps(state)


class RedisStateStore:
    """One JSON value per chat, expiring after `ttl_s` of silence."""

    def __init__(self, redis: Any, *, prefix: str = "kefu:chat:", ttl_s: int = 90 * DAY) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def get(self, key: str) -> dict[str, Any]:
        raw = await self.redis.get(self.prefix + key)
        return json.loads(raw) if raw else {}

    async def set(self, key: str, state: dict[str, Any]) -> None:
        await self.redis.set(self.prefix + key, json.dumps(state), ex=self.ttl_s)
