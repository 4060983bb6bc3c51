"""The bot's memory of each chat (language, fallbacks in a row, what a button refers to, the "did you mean" a 👍 may
speak for: bot/learning.py): in memory for the demo, in Redis in production, so any bot process can answer any
chat."""

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


class AiogramStateStore:
    """The chat state in an aiogram FSM storage (MemoryStorage in the demo, RedisStorage in production), the
    same storage the Telegram dispatcher is given, so one place holds every chat's state whatever the channel."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage  # aiogram.fsm.storage.base.BaseStorage

    @staticmethod
    def _key(key: str) -> Any:
        from aiogram.fsm.storage.base import StorageKey

        # Kefu's chat key ("telegram:123", "webchat:v-1") in both id fields: unique per channel and chat.
        return StorageKey(bot_id=0, chat_id=key, user_id=key, destiny="kefu")  # type: ignore[arg-type]

    async def get(self, key: str) -> dict[str, Any]:
        return dict(await self.storage.get_data(self._key(key)))

    async def set(self, key: str, state: dict[str, Any]) -> None:
        await self.storage.set_data(self._key(key), state)
