"""Telegram's sending limits: the GCRA slot books (in memory, and on Redis: fakeredis, or the real one when
KEFU_TEST_REDIS_URL is set) and the aiogram request middleware that waits for the slots and honours 429s,
measured on the fake Telegram server's clock (Call.at)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
import redis.asyncio as aioredis
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from prometheus_client import REGISTRY

from bot.ratelimit import MemorySlotBook, RedisSlotBook, SendLimits, SlotBook
from tests.conftest import REDIS_URL
from tests.fake_telegram import FakeTelegram

PER_SECOND = 20.0  # a bot slot every ~52 ms
CHAT_INTERVAL_S = 0.2  # a chat's slot every ~220 ms (with the margin)
BOT_INTERVAL_S = 1 / PER_SECOND

MakeBook = Callable[..., SlotBook]


def _new_client(server: fakeredis.FakeServer) -> aioredis.Redis:
    """A client of its own (as another process would have): of the real Redis, or of the test's fake server."""
    return aioredis.from_url(REDIS_URL) if REDIS_URL else fakeredis.aioredis.FakeRedis(server=server)


@pytest.fixture
async def redis_books() -> AsyncIterator[Callable[..., RedisSlotBook]]:
    """RedisSlotBooks under a key prefix of this test alone; each call gets a client of its own (one process)."""
    server = fakeredis.FakeServer()
    prefix = f"kefu-test:send:{uuid.uuid4().hex}"
    clients: list[aioredis.Redis] = []

    def make(*, bot_id: str = "bot", per_second: float = PER_SECOND,
             chat_interval_s: float = CHAT_INTERVAL_S) -> RedisSlotBook:
        client = _new_client(server)
        clients.append(client)
        return RedisSlotBook(client, bot_id=bot_id, per_second=per_second, chat_interval_s=chat_interval_s,
                             prefix=prefix)

    yield make
    if clients:
        keys = [key async for key in clients[0].scan_iter(match=f"{prefix}:*")]
        if keys:
            await clients[0].delete(*keys)
    for client in clients:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def make_book(request: pytest.FixtureRequest) -> MakeBook:
    """Slot books of one kind (every test using this runs on both)."""
    if request.param == "memory":
        def memory(*, per_second: float = PER_SECOND, chat_interval_s: float = CHAT_INTERVAL_S) -> SlotBook:
            return MemorySlotBook(per_second=per_second, chat_interval_s=chat_interval_s)

        return memory
    books: Callable[..., RedisSlotBook] = request.getfixturevalue("redis_books")
    return books


async def reservations(book: SlotBook, chats: list[str]) -> list[float]:
    """Reserve one slot per chat, back to back; the waits as absolute times (this process's clock)."""
    slots = []
    for chat in chats:
        before = time.monotonic()
        wait = await book.reserve(chat)
        slots.append(before + wait)
    return slots


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# --- the slot books --------------------------------------------------------------------------------------------


async def test_one_chats_reservations_are_spaced_by_the_chat_interval(make_book: MakeBook) -> None:
    book = make_book()
    slots = await reservations(book, ["7", "7", "7"])
    assert slots[0] <= time.monotonic()  # the first one goes at once
    for gap in gaps(slots):
        assert CHAT_INTERVAL_S <= gap < CHAT_INTERVAL_S + 0.1, gaps(slots)


async def test_different_chats_are_spaced_only_by_the_bot_interval(make_book: MakeBook) -> None:
    book = make_book()
    slots = await reservations(book, ["1", "2", "3"])
    for gap in gaps(slots):
        assert BOT_INTERVAL_S / 2 <= gap < CHAT_INTERVAL_S, gaps(slots)


async def test_a_chats_backlog_does_not_hold_back_other_chats(make_book: MakeBook) -> None:
    """A chat's second message waits ~220 ms for its chat; a message to another chat, reserved meanwhile, goes in
    the bot slots left free before it (the bot limit is 20/s here: nothing needs it to wait 220 ms)."""
    book = make_book()
    first, second = await reservations(book, ["7", "7"])
    (other,) = await reservations(book, ["8"])
    assert second - first >= CHAT_INTERVAL_S
    assert other - first < CHAT_INTERVAL_S, (
        f"chat 8 waits {other - first:.3f}s behind chat 7's backlog (its own limit: {BOT_INTERVAL_S:.3f}s)")


async def test_a_pause_delays_the_next_reservation(make_book: MakeBook) -> None:
    book = make_book()
    (first,) = await reservations(book, ["1"])
    paused_at = time.monotonic()
    await book.pause(0.5)
    (later,) = await reservations(book, ["2"])  # another chat: only the pause holds it back
    assert later - paused_at >= 0.49
    assert later - first < 0.7


async def test_late_sends_after_a_stall_do_not_burst_over_the_bot_limit(make_book: MakeBook) -> None:
    """A worker stalls with slots reserved (a busy machine): when it wakes, every send whose slot has passed would go
    at once. The start check lets at most one under the rate start in any second; the rest wait their turn."""
    book = make_book(per_second=10)
    await reservations(book, [str(n) for n in range(25)])
    await asyncio.sleep(2.6)  # every reserved slot is in the past now
    started: list[float] = []
    on_redis: dict[bytes, float] = {}  # the sends as Redis recorded them (its clock, which the limit is kept on)

    async def send(chat: str) -> None:
        while (late := await book.start(chat)) > 0:  # noqa: ASYNC110 - as the middleware waits
            await asyncio.sleep(late)
        started.append(time.monotonic())

    async def look(redis: Any, key: str) -> None:
        on_redis.update((member, score / 1000) for member, score in await redis.zrange(key, 0, -1, withscores=True))

    async def watch(redis: Any, key: str) -> None:  # each send stays in the set for a second: seen every 50 ms
        while True:
            await look(redis, key)
            await asyncio.sleep(0.05)

    redis_book = book if isinstance(book, RedisSlotBook) else None
    watcher = asyncio.create_task(watch(redis_book.redis, f"{redis_book.prefix}:started")) if redis_book else None
    await asyncio.gather(*(send(str(n)) for n in range(25)))
    if redis_book is not None and watcher is not None:
        watcher.cancel()
        await look(redis_book.redis, f"{redis_book.prefix}:started")  # the last second's sends
        # A loaded machine can hand this process its answers late, bunching the times it saw; Redis' are exact.
        assert len(on_redis) == 25
        started = list(on_redis.values())
    started.sort()
    most = max(sum(1 for t in started if first <= t < first + 1.0) for first in started)
    assert most <= 9, most
    assert started[-1] - started[0] < 3.0  # and they still go as fast as allowed


async def test_two_redis_books_share_the_slots(redis_books: Callable[..., RedisSlotBook]) -> None:
    """Two processes (two clients) of the same bot: one's reservation holds the other back; another bot's don't."""
    one, two, other_bot = redis_books(), redis_books(), redis_books(bot_id="another-bot")
    (first,) = await reservations(one, ["7"])
    (second,) = await reservations(two, ["7"])
    assert second - first >= CHAT_INTERVAL_S
    (elsewhere,) = await reservations(other_bot, ["7"])
    assert elsewhere <= time.monotonic()  # not held back: its own limits

    paused_at = time.monotonic()
    await two.pause(0.5)
    (after_pause,) = await reservations(one, ["9"])
    assert after_pause - paused_at >= 0.49


# --- SendLimits: the aiogram request middleware against the fake Telegram --------------------------------------


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


def limited_bot(tg: FakeTelegram, book: SlotBook, **options: Any) -> Bot:
    bot = tg.bot()
    bot.session.middleware(SendLimits(book, **options))
    return bot


def retry_after_count() -> float:
    return REGISTRY.get_sample_value("kefu_retry_after_total") or 0.0


async def test_sends_to_one_chat_arrive_at_least_the_chat_interval_apart(tg: FakeTelegram,
                                                                         make_book: MakeBook) -> None:
    bot = limited_bot(tg, make_book())
    await bot.get_me()  # the HTTP session is set up before the measured sends
    await asyncio.gather(*(bot.send_message(7, f"reply {n}") for n in range(3)))
    arrivals = sorted(call.at for call in tg.calls("sendMessage"))
    assert len(arrivals) == 3 and len(tg.messages_to(7)) == 3
    assert all(gap >= CHAT_INTERVAL_S for gap in gaps(arrivals)), gaps(arrivals)


async def test_sends_to_different_chats_are_not_held_to_the_chat_interval(tg: FakeTelegram,
                                                                         make_book: MakeBook) -> None:
    bot = limited_bot(tg, make_book())
    await bot.get_me()
    await asyncio.gather(*(bot.send_message(chat, "hello") for chat in (1, 2, 3)))
    arrivals = sorted(call.at for call in tg.calls("sendMessage"))
    assert all(gap >= BOT_INTERVAL_S / 2 for gap in gaps(arrivals)), gaps(arrivals)
    assert arrivals[-1] - arrivals[0] < 2 * CHAT_INTERVAL_S, gaps(arrivals)


async def test_a_429_is_retried_after_retry_after_and_the_message_arrives_once(tg: FakeTelegram,
                                                                              make_book: MakeBook) -> None:
    bot = limited_bot(tg, make_book())
    before = retry_after_count()
    tg.fail_next("sendMessage", 429, retry_after=1)
    sent = await bot.send_message(7, "your order shipped")
    refused, accepted = tg.calls("sendMessage")
    assert refused.error is not None and refused.error["error_code"] == 429
    assert accepted.ok and sent.message_id == accepted.result["message_id"]
    assert accepted.at - refused.at >= 1.0
    assert tg.texts_to(7) == ["your order shipped"]
    assert retry_after_count() == before + 1


async def test_a_429_pauses_sends_to_other_chats_too(tg: FakeTelegram, make_book: MakeBook) -> None:
    bot = limited_bot(tg, make_book())
    tg.fail_next("sendMessage", 429, retry_after=1)
    refused_send = asyncio.create_task(bot.send_message(7, "first"))
    await tg.wait_for_call("sendMessage", 1)
    await asyncio.sleep(0.1)  # the 429 has reached the middleware
    await bot.send_message(8, "to another chat")
    await refused_send
    refused = tg.calls("sendMessage")[0]
    to_other = next(call for call in tg.calls("sendMessage") if call.params["chat_id"] == 8)
    assert to_other.at - refused.at >= 1.0
    assert tg.texts_to(7) == ["first"] and tg.texts_to(8) == ["to another chat"]


async def test_a_retry_after_above_the_maximum_is_raised(tg: FakeTelegram, make_book: MakeBook) -> None:
    bot = limited_bot(tg, make_book(), retry_after_max_s=5)
    before = retry_after_count()
    tg.fail_next("sendMessage", 429, retry_after=30)
    started = time.monotonic()
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(7, "hello")
    assert raised.value.retry_after == 30
    assert time.monotonic() - started < 1.0  # given up at once, not after waiting
    assert len(tg.calls("sendMessage")) == 1 and tg.messages_to(7) == []
    assert retry_after_count() == before + 1


async def test_calls_that_send_no_message_do_not_wait_for_slots(tg: FakeTelegram, make_book: MakeBook) -> None:
    book = make_book()
    bot = limited_bot(tg, book)
    await book.pause(5)
    started = time.monotonic()
    await bot.get_me()
    await bot.send_chat_action(7, "typing")
    assert time.monotonic() - started < 1.0
    # While a message would wait for the pause.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bot.send_message(7, "hello"), timeout=0.5)
    assert tg.calls("sendMessage") == []
