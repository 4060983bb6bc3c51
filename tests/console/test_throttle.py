"""Both sign-in throttles behave alike: a key locks at its limit until its window (from the first failure) ends,
keys are independent, clearing one forgets it. Redis: fakeredis, or the real one when KEFU_TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from console.throttle import Limit, MemoryLoginThrottle, RedisLoginThrottle, build_throttle
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", "redis"])
async def throttle(request) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        backend: object = MemoryLoginThrottle()
    elif REDIS_URL:
        backend = RedisLoginThrottle.from_url(REDIS_URL, prefix=f"kefu-test:throttle:{uuid.uuid4().hex}:")
    else:
        import fakeredis

        backend = RedisLoginThrottle(fakeredis.FakeAsyncRedis(decode_responses=True))
    yield backend
    await backend.close()  # type: ignore[attr-defined]


async def test_a_key_locks_at_its_limit_and_keys_are_independent(throttle) -> None:  # type: ignore[no-untyped-def]
    email, ip = Limit("email:ann@example.com", 3), Limit("ip:10.0.0.1", 5)
    for _ in range(2):
        await throttle.record_failure([email.key, ip.key], window_s=60)
    assert await throttle.retry_after([email, ip]) == 0
    await throttle.record_failure([email.key, ip.key], window_s=60)
    assert 55 <= await throttle.retry_after([email, ip]) <= 60
    assert await throttle.retry_after([ip]) == 0  # 3 of 5
    assert await throttle.retry_after([Limit("email:bo@example.com", 3)]) == 0
    await throttle.clear(email.key)
    assert await throttle.retry_after([email, ip]) == 0
    await throttle.record_failure([ip.key, ip.key], window_s=60)
    assert await throttle.retry_after([email, ip]) > 0


async def test_the_window_starts_at_the_first_failure_and_then_ends(throttle) -> None:  # type: ignore[no-untyped-def]
    limit = Limit("email:ann@example.com", 2)
    await throttle.record_failure([limit.key], window_s=1)
    await asyncio.sleep(0.5)
    await throttle.record_failure([limit.key], window_s=1)  # does not extend the window
    assert 0 < await throttle.retry_after([limit]) <= 1
    await asyncio.sleep(0.7)
    assert await throttle.retry_after([limit]) == 0
    await throttle.record_failure([limit.key], window_s=1)  # a new window, one failure in it
    assert await throttle.retry_after([limit]) == 0


async def test_memory_throttle_forgets_ended_windows_when_it_fills_up() -> None:
    now = [0.0]
    throttle = MemoryLoginThrottle(clock=lambda: now[0], max_keys=3)
    for n in range(3):
        await throttle.record_failure([f"ip:{n}"], window_s=10)
    now[0] = 11
    await throttle.record_failure(["ip:new"], window_s=10)
    assert list(throttle._windows) == ["ip:new"]


async def test_the_backend_follows_the_redis_setting() -> None:
    assert isinstance(build_throttle(None), MemoryLoginThrottle)
    redis_backed = build_throttle("redis://127.0.0.1:6379/0")  # connects on first use only
    assert isinstance(redis_backed, RedisLoginThrottle)
    await redis_backed.close()
