"""The bot's per-chat memory: the same behaviour in memory and in Redis (fakeredis, or real Redis when
KEFU_TEST_REDIS_URL is set), so any bot process can pick up any chat."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis.aioredis
import pytest
import redis.asyncio as aioredis

from bot.state import AiogramStateStore, MemoryStateStore, RedisStateStore, StateStore
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", "redis", "aiogram-memory", "aiogram-redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    if request.param == "aiogram-memory":
        from aiogram.fsm.storage.memory import MemoryStorage

        yield AiogramStateStore(MemoryStorage())
        return
    if request.param == "aiogram-redis":
        from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage

        client = aioredis.from_url(REDIS_URL) if REDIS_URL else fakeredis.aioredis.FakeRedis()
        prefix = f"kefu-test-fsm-{uuid.uuid4().hex}"
        storage = RedisStorage(client, key_builder=DefaultKeyBuilder(prefix=prefix, with_destiny=True))
        try:
            yield AiogramStateStore(storage)
            keys = [k async for k in client.scan_iter(f"{prefix}*")]
            assert len(keys) == 2
            await client.delete(*keys)
        finally:
            await storage.close()
        return
    client: aioredis.Redis = aioredis.from_url(REDIS_URL) if REDIS_URL else fakeredis.aioredis.FakeRedis()
    prefix = f"kefu-test:{uuid.uuid4().hex}:"
    try:
        yield RedisStateStore(client, prefix=prefix, ttl_s=60)
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        ttls = [await client.ttl(k) for k in keys]
        assert len(keys) == 2 and all(0 < ttl <= 60 for ttl in ttls)  # every chat's state expires
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_state_round_trip_per_chat(store: StateStore) -> None:
    assert await store.get("telegram:1") == {}
    await store.set("telegram:1", {"language": "zh", "fallbacks": 1})
    await store.set("webchat:1", {"language": "en"})
    assert await store.get("telegram:1") == {"language": "zh", "fallbacks": 1}
    assert await store.get("webchat:1") == {"language": "en"}
    await store.set("telegram:1", {"language": "en"})
    assert await store.get("telegram:1") == {"language": "en"}
