"""The event bus: in-process delivery, and Redis Streams consumer groups (fakeredis, or real Redis when
KEFU_TEST_REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from crm_store.bus import Delivery, InProcessEventBus, RedisEventBus, build_event_bus
from crm_store.events import AgentReplied, CustomerCreated, DomainEvent

# Small enough that claiming, redelivery and dead-lettering happen within a test, large enough that an
# entry just read is not yet "stale" (so claim_stale stealing fresh work would fail a test).
MIN_IDLE_MS = 100
BLOCK_MS = 50


def customer(n: int) -> CustomerCreated:
    return CustomerCreated(customer_id=n)


def agent_reply() -> AgentReplied:
    return AgentReplied(
        conversation_id=7,
        message_id=42,
        customer_id=3,
        agent_id=None,
        channel="telegram",
        external_id="100200300",
        text="Ваш заказ уже в пути 🚚",
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 3.0) -> None:
    """Poll until check() holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.01)


class Recorder:
    """A handler that records events; fails its first `failures` calls."""

    def __init__(self, failures: int = 0, delay_s: float = 0.0) -> None:
        self.failures = failures
        self.delay_s = delay_s
        self.calls: list[DomainEvent] = []
        self.handled: list[DomainEvent] = []

    async def __call__(self, event: DomainEvent) -> None:
        self.calls.append(event)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if len(self.calls) <= self.failures:
            raise RuntimeError("handler failure (expected by the test)")
        self.handled.append(event)


# ----------------------------------------------------------------------------------------------------------------
# In-process
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
async def local_bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus(retry_backoff_s=0.001)
    yield bus
    await bus.close()


async def test_in_process_every_group_gets_every_event(local_bus: InProcessEventBus) -> None:
    console, bot = Recorder(), Recorder()
    local_bus.subscribe("console", console)
    local_bus.subscribe("bot", bot)
    await local_bus.start()
    events = [customer(n) for n in range(5)]
    for event in events:
        await local_bus.publish(event)
    await local_bus.drain()
    assert console.handled == events
    assert bot.handled == events


async def test_in_process_handlers_of_one_group_are_called_in_turn(local_bus: InProcessEventBus) -> None:
    first, second = Recorder(), Recorder()
    local_bus.subscribe("console", first)
    local_bus.subscribe("console", second)
    await local_bus.start()
    event = customer(1)
    await local_bus.publish(event)
    await local_bus.drain()
    assert first.handled == [event]
    assert second.handled == [event]


async def test_in_process_failing_handler_is_retried_until_it_succeeds(local_bus: InProcessEventBus) -> None:
    flaky, steady = Recorder(failures=2), Recorder()
    local_bus.subscribe("console", steady)
    local_bus.subscribe("console", flaky)
    await local_bus.start()
    event = customer(1)
    await local_bus.publish(event)
    await local_bus.drain()
    assert flaky.calls == [event, event, event]
    assert flaky.handled == [event]
    # Retries are per handler: the one that succeeded is not called again.
    assert steady.calls == [event]


async def test_in_process_gives_up_after_max_deliveries_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    bus = InProcessEventBus(max_deliveries=3, retry_backoff_s=0.001)
    broken = Recorder(failures=1_000)
    bus.subscribe("console", broken)
    await bus.start()
    poison, after = customer(1), customer(2)
    with caplog.at_level(logging.WARNING, logger="crm_store.bus"):
        await bus.publish(poison)
        await bus.publish(after)
        await bus.drain()
    await bus.close()
    assert broken.calls == [poison, poison, poison, after, after, after]
    assert any("dropped" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


async def test_in_process_publish_does_not_wait_for_handlers(local_bus: InProcessEventBus) -> None:
    gate = asyncio.Event()
    seen: list[DomainEvent] = []

    async def blocked(event: DomainEvent) -> None:
        await gate.wait()
        seen.append(event)

    local_bus.subscribe("console", blocked)
    await local_bus.start()
    events = [customer(n) for n in range(3)]
    async with asyncio.timeout(0.5):
        for event in events:
            await local_bus.publish(event)
    await asyncio.sleep(0.01)
    assert seen == []
    gate.set()
    await local_bus.drain()
    assert seen == events


async def test_in_process_close_delivers_what_is_queued() -> None:
    bus = InProcessEventBus()
    slow = Recorder(delay_s=0.01)
    bus.subscribe("console", slow)
    await bus.start()
    events = [customer(n) for n in range(5)]
    for event in events:
        await bus.publish(event)
    await bus.close()
    assert slow.handled == events
    with pytest.raises(RuntimeError):
        await bus.publish(customer(99))


async def test_in_process_late_group_misses_earlier_events(local_bus: InProcessEventBus) -> None:
    early, late = Recorder(), Recorder()
    local_bus.subscribe("early", early)
    await local_bus.start()
    before, after = customer(1), customer(2)
    await local_bus.publish(before)
    await local_bus.drain()
    local_bus.subscribe("late", late)
    await local_bus.publish(after)
    await local_bus.drain()
    assert early.handled == [before, after]
    assert late.handled == [after]


# ----------------------------------------------------------------------------------------------------------------
# Redis Streams
# ----------------------------------------------------------------------------------------------------------------


MakeBus = Callable[..., RedisEventBus]


@pytest.fixture
async def make_bus(redis_client: aioredis.Redis, stream: str) -> AsyncIterator[MakeBus]:
    """Buses on the test's stream (closed before the stream is deleted)."""
    buses: list[RedisEventBus] = []

    def make(**overrides: Any) -> RedisEventBus:
        options: dict[str, Any] = {"stream": stream, "block_ms": BLOCK_MS, "min_idle_ms": MIN_IDLE_MS}
        options.update(overrides)
        bus = RedisEventBus(redis_client, **options)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


async def pending(client: aioredis.Redis, stream: str, group: str) -> int:
    summary = await client.xpending(stream, group)
    return int(summary["pending"])


async def test_redis_round_trips_a_real_event(make_bus: MakeBus) -> None:
    bus = make_bus()
    await bus.ensure_group("bot")
    event = agent_reply()
    await bus.publish(event)
    [delivery] = await bus.read("bot", "worker-1", block_ms=0)
    assert isinstance(delivery, Delivery)
    assert isinstance(delivery.event, AgentReplied)
    assert delivery.event == event
    assert delivery.event.text == "Ваш заказ уже в пути 🚚"
    assert delivery.event.external_id == "100200300"
    assert delivery.delivery_count == 1
    assert await bus.read("bot", "worker-1", block_ms=0) == []


async def test_redis_group_starts_at_the_end_of_the_stream(make_bus: MakeBus) -> None:
    bus = make_bus()
    await bus.ensure_group("console")
    await bus.publish(customer(1))
    await bus.ensure_group("late")  # existing group kept (BUSYGROUP ignored); new one starts at "$"
    await bus.ensure_group("console")
    later = customer(2)
    await bus.publish(later)
    assert [d.event for d in await bus.read("late", "c", block_ms=0)] == [later]
    assert len(await bus.read("console", "c", block_ms=0)) == 2


async def test_redis_two_groups_each_get_the_event(make_bus: MakeBus) -> None:
    bus = make_bus()
    await bus.ensure_group("bot")
    await bus.ensure_group("console")
    event = agent_reply()
    await bus.publish(event)
    assert [d.event for d in await bus.read("bot", "b1", block_ms=0)] == [event]
    assert [d.event for d in await bus.read("console", "c1", block_ms=0)] == [event]


async def test_redis_consumers_of_one_group_split_the_entries(make_bus: MakeBus) -> None:
    bus = make_bus()
    await bus.ensure_group("bot")
    events = [customer(n) for n in range(6)]
    for event in events:
        await bus.publish(event)
    first = await bus.read("bot", "worker-a", count=2, block_ms=0)
    second = await bus.read("bot", "worker-b", count=10, block_ms=0)
    assert len(first) == 2
    assert len(second) == 4
    assert {d.id for d in first}.isdisjoint({d.id for d in second})
    assert [d.event for d in first + second] == events


async def test_redis_dead_consumers_entry_is_claimed_by_another(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    bus = make_bus()
    await bus.ensure_group("bot")
    event = agent_reply()
    await bus.publish(event)
    [taken] = await bus.read("bot", "consumer-a", block_ms=0)  # consumer A then dies without acking
    assert await pending(redis_client, stream, "bot") == 1

    # While A's read is fresh, B must not steal it.
    assert await bus.claim_stale("bot", "consumer-b") == []
    await asyncio.sleep(MIN_IDLE_MS / 1000 + 0.05)
    [claimed] = await bus.claim_stale("bot", "consumer-b")
    assert claimed.id == taken.id
    assert claimed.event == event
    assert claimed.delivery_count == 2
    detail = await redis_client.xpending_range(stream, "bot", min="-", max="+", count=10)
    assert [row["consumer"] for row in detail] == [b"consumer-b"]

    await bus.ack("bot", claimed.id)
    assert await pending(redis_client, stream, "bot") == 0
    await asyncio.sleep(MIN_IDLE_MS / 1000 + 0.05)
    assert await bus.claim_stale("bot", "consumer-c") == []


async def test_redis_running_loop_takes_over_a_dead_consumers_entry(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    dead = make_bus(consumer_name="consumer-a")
    await dead.ensure_group("bot")
    event = agent_reply()
    await dead.publish(event)
    [taken] = await dead.read("bot", "consumer-a", block_ms=0)  # read, never acked: A "died"
    assert taken.event == event
    [row] = await redis_client.xpending_range(stream, "bot", min="-", max="+", count=10)
    assert row["consumer"] == b"consumer-a"

    survivor = make_bus(consumer_name="consumer-b")
    received = Recorder()
    survivor.subscribe("bot", received)
    await survivor.start()

    async def handled_and_acked() -> bool:
        return received.handled == [event] and await pending(redis_client, stream, "bot") == 0

    await eventually(handled_and_acked)
    assert received.calls == [event]


async def test_redis_loop_delivers_to_every_group_and_acks(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    bus = make_bus()
    bot, console = Recorder(), Recorder()
    bus.subscribe("bot", bot)
    bus.subscribe("console", console)
    await bus.start()
    events = [agent_reply(), customer(1)]
    for event in events:
        await bus.publish(event)

    async def all_acked() -> bool:
        return (
            bot.handled == events
            and console.handled == events
            and await pending(redis_client, stream, "bot") == 0
            and await pending(redis_client, stream, "console") == 0
        )

    await eventually(all_acked)


async def test_redis_loop_redelivers_after_a_handler_failure(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    bus = make_bus()
    flaky = Recorder(failures=1)
    bus.subscribe("bot", flaky)
    await bus.start()
    event = customer(1)
    await bus.publish(event)

    async def failed_once() -> bool:
        return len(flaky.calls) == 1

    await eventually(failed_once)
    # The failure left the entry pending (not acked) ...
    assert await pending(redis_client, stream, "bot") == 1

    async def redelivered_and_acked() -> bool:
        return flaky.handled == [event] and await pending(redis_client, stream, "bot") == 0

    # ... until the loop claimed it again after min_idle_ms and the handler succeeded.
    await eventually(redelivered_and_acked)
    assert flaky.calls == [event, event]


async def test_redis_loop_acks_and_skips_unknown_and_unreadable_entries(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    bus = make_bus()
    received = Recorder()
    bus.subscribe("bot", received)
    await bus.start()
    await redis_client.xadd(stream, {"type": "from.a.newer.producer", "data": "{}"})
    await redis_client.xadd(stream, {"type": CustomerCreated.name, "data": "not json"})
    await redis_client.xadd(stream, {"no_type": "at all"})
    event = customer(1)
    await bus.publish(event)

    async def handled_and_nothing_pending() -> bool:
        return received.handled == [event] and await pending(redis_client, stream, "bot") == 0

    await eventually(handled_and_nothing_pending)
    assert received.calls == [event]
    assert await redis_client.xlen(f"{stream}:dead") == 0


async def test_redis_poison_entry_goes_to_the_dead_letter_stream(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    bus = make_bus(max_deliveries=2)
    broken = Recorder(failures=1_000)
    bus.subscribe("bot", broken)
    await bus.start()
    poison = customer(13)
    await bus.publish(poison)

    async def dead_lettered() -> bool:
        return await redis_client.xlen(f"{stream}:dead") == 1

    await eventually(dead_lettered)
    assert broken.calls == [poison, poison]  # max_deliveries attempts, no more
    assert await pending(redis_client, stream, "bot") == 0
    [(_, fields)] = await redis_client.xrange(f"{stream}:dead")
    assert fields[b"type"] == CustomerCreated.name.encode()
    assert DomainEvent.from_wire({key.decode(): value for key, value in fields.items()}) == poison
    assert fields[b"group"] == b"bot"
    assert int(fields[b"deliveries"]) == 3
    [(original_id, _)] = await redis_client.xrange(stream)
    assert fields[b"original_id"] == original_id


async def test_redis_loop_survives_connection_errors(make_bus: MakeBus, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = make_bus()
    received = Recorder()
    bus.subscribe("bot", received)
    await bus.start()
    real_read = bus.read
    outages = 2

    async def flaky_read(group: str, consumer: str, **kwargs: Any) -> list[Delivery]:
        nonlocal outages
        if outages:
            outages -= 1
            raise RedisConnectionError("Connection refused (simulated restart)")
        return await real_read(group, consumer, **kwargs)

    monkeypatch.setattr(bus, "read", flaky_read)
    event = customer(1)
    await bus.publish(event)

    async def delivered() -> bool:
        return received.handled == [event]

    await eventually(delivered)
    assert outages == 0


async def test_redis_close_finishes_the_entry_in_flight(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    bus = make_bus()
    slow = Recorder(delay_s=0.2)
    bus.subscribe("bot", slow)
    await bus.start()
    event = customer(1)
    await bus.publish(event)

    async def in_flight() -> bool:
        return len(slow.calls) == 1

    await eventually(in_flight)
    await bus.close()
    assert slow.handled == [event]
    assert await pending(redis_client, stream, "bot") == 0


async def test_redis_close_does_not_wait_for_a_blocking_read(make_bus: MakeBus) -> None:
    bus = make_bus(block_ms=5_000)
    bus.subscribe("bot", Recorder())
    await bus.start()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await bus.close()
    assert time.monotonic() - started < 1.0


# ----------------------------------------------------------------------------------------------------------------
# Composition
# ----------------------------------------------------------------------------------------------------------------


async def test_build_event_bus_without_redis_is_in_process() -> None:
    bus = build_event_bus(None)
    assert isinstance(bus, InProcessEventBus)
    await bus.close()


async def test_build_event_bus_with_a_url_uses_redis_streams() -> None:
    # from_url connects lazily, so no server is needed at this port.
    bus = build_event_bus("redis://127.0.0.1:1/0", stream="kefu:elsewhere")
    assert isinstance(bus, RedisEventBus)
    assert bus.stream == "kefu:elsewhere"
    assert bus.dead_letter_stream == "kefu:elsewhere:dead"
    await bus.close()


# ----------------------------------------------------------------------------------------------------------------
# Broadcast: every process hears every event, with no consumer group left on Redis
# ----------------------------------------------------------------------------------------------------------------


async def test_redis_broadcast_reaches_every_process_and_leaves_no_group(
    make_bus: MakeBus, redis_client: aioredis.Redis, stream: str
) -> None:
    first_process, second_process = make_bus(), make_bus()
    first, second, shared = Recorder(), Recorder(), Recorder()
    first_process.broadcast("kb-refresh", first)
    second_process.broadcast("kb-refresh", second)
    first_process.subscribe("bot", shared)
    second_process.subscribe("bot", shared)
    await first_process.publish(customer(0))  # before start: not heard
    await first_process.start()
    await second_process.start()
    events = [customer(n) for n in range(1, 6)]
    for event in events:
        await second_process.publish(event)
    await eventually(lambda: _true(len(first.handled) == 5 and len(second.handled) == 5 and len(shared.handled) == 5))
    assert first.handled == events and second.handled == events
    groups = {_name(g["name"]) for g in await redis_client.xinfo_groups(stream)}
    assert groups == {"bot"}  # the broadcast made no group of its own


async def test_redis_broadcast_handler_failure_does_not_stop_the_others(make_bus: MakeBus) -> None:
    bus = make_bus()
    broken, steady = Recorder(failures=1_000), Recorder()
    bus.broadcast("live", broken)
    bus.broadcast("kb", steady)
    await bus.start()
    await bus.publish(customer(1))
    await bus.publish(customer(2))
    await eventually(lambda: _true(len(steady.handled) == 2))
    assert len(broken.calls) == 2


async def test_in_process_broadcast_hears_every_event(local_bus: InProcessEventBus) -> None:
    heard, group = Recorder(), Recorder()
    local_bus.broadcast("live", heard)
    local_bus.subscribe("bot", group)
    await local_bus.start()
    await local_bus.publish(customer(1))
    await local_bus.drain()
    assert len(heard.handled) == 1 and len(group.handled) == 1


async def _true(value: bool) -> bool:
    return value


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def test_redis_forget_deletes_the_matching_entries_of_the_stream_and_dead_letters(
        make_bus: MakeBus, redis_client: aioredis.Redis, stream: str) -> None:
    bus = make_bus()
    await bus.ensure_group("delivery")
    erased = agent_reply()
    kept = agent_reply().model_copy(update={"conversation_id": 8, "text": "kept"})
    for event in [erased, kept] * 3:
        await bus.publish(event)
    [first, *_] = await bus.read("delivery", "worker-1", count=1, block_ms=0)  # one of them pending
    await redis_client.xadd(f"{stream}:dead", {**erased.to_wire(), "original_id": first.id})
    await redis_client.xadd(stream, {"type": "some.future.event", "data": "{}"})  # unknown: left alone

    assert await bus.forget(lambda e: getattr(e, "conversation_id", None) == 7, batch=2) == 4
    left = [DomainEvent.from_wire({k.decode(): v.decode() for k, v in fields.items()})
            for _, fields in await redis_client.xrange(stream) if fields[b"type"] != b"some.future.event"]
    assert [e.text for e in left] == ["kept"] * 3  # type: ignore[attr-defined]
    assert await redis_client.xlen(f"{stream}:dead") == 0
    # The deleted pending entry is dropped from the group when another consumer looks for stale entries.
    claimed = await bus.claim_stale("delivery", "worker-2", min_idle_ms=0)
    assert claimed == [] and await pending(redis_client, stream, "delivery") == 0
