"""The event bus: one interface, an in-process implementation (embedded) and Redis Streams (production)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crm_store.events import DomainEvent, UnknownEvent

logger = logging.getLogger(__name__)

Handler = Callable[[DomainEvent], Awaitable[None]]

T = TypeVar("T")

# Reconnect backoff of the Redis consumer loop: short enough that a restarted Redis is picked up quickly,
# capped so a long outage does not turn into a hot loop of failing commands and log lines.
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0


class EventBus(Protocol):
    """Publish domain events; consumer groups each receive every event once (one consumer per event)."""

    async def publish(self, event: DomainEvent) -> None: ...

    def subscribe(self, group: str, handler: Handler) -> None: ...

    def broadcast(self, name: str, handler: Handler) -> None:
        """Every process hears every event published from now on (a cache to refresh, a page to update)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------------------
# In-process (embedded demo, tests)
# --------------------------------------------------------------------------------------------------------------


class _LocalGroup:
    """One consumer group of the in-process bus: its handlers and the queue its task drains."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[Handler] = []
        self.queue: asyncio.Queue[DomainEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


class InProcessEventBus:
    """An EventBus inside one process: each group gets every event published after it subscribed."""

    def __init__(
        self, *, max_deliveries: int = 5, retry_backoff_s: float = 0.05, shutdown_timeout_s: float = 10.0
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.max_deliveries = max_deliveries
        self.retry_backoff_s = retry_backoff_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._groups: dict[str, _LocalGroup] = {}
        self._started = False
        self._closed = False

    async def publish(self, event: DomainEvent) -> None:
        """Queue the event for every group; returns at once, handlers run on the groups' tasks."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        for group in self._groups.values():
            group.queue.put_nowait(event)

    def subscribe(self, group: str, handler: Handler) -> None:
        """Register a handler under a group; handlers of one group are called in turn for each event."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        local = self._groups.get(group)
        if local is None:
            local = self._groups[group] = _LocalGroup(group)
            if self._started:
                local.task = self._spawn(local)
        local.handlers.append(handler)

    def broadcast(self, name: str, handler: Handler) -> None:
        """In one process a broadcast is a group of its own."""
        self.subscribe(f"broadcast:{name}:{id(handler)}", handler)

    async def start(self) -> None:
        """Start one delivery task per group (events queued before start are delivered now)."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        if self._started:
            return
        self._started = True
        for local in self._groups.values():
            local.task = self._spawn(local)

    async def drain(self) -> None:
        """Wait until every event queued so far (and any published meanwhile) has been handled."""
        if not self._started:
            raise RuntimeError("drain() needs start(): nothing delivers the queued events")
        await asyncio.gather(*(local.queue.join() for local in self._groups.values()))

    async def close(self) -> None:
        """Deliver what is queued, then stop the delivery tasks."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            try:
                await asyncio.wait_for(self.drain(), timeout=self.shutdown_timeout_s)
            except TimeoutError:
                logger.warning("event bus: handlers still busy after %.1fs; stopping", self.shutdown_timeout_s)
        else:
            dropped = sum(local.queue.qsize() for local in self._groups.values())
            if dropped:
                logger.warning("event bus closed before start(): %d queued deliveries dropped", dropped)
        tasks = [local.task for local in self._groups.values() if local.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, local: _LocalGroup) -> asyncio.Task[None]:
        return asyncio.create_task(self._deliver_forever(local), name=f"event-bus:{local.name}")

    async def _deliver_forever(self, local: _LocalGroup) -> None:
        while True:
            event = await local.queue.get()
            try:
                # Copy: a handler subscribing another handler to this group must not change this delivery.
                for handler in list(local.handlers):
                    await self._deliver(local.name, handler, event)
            finally:
                local.queue.task_done()

    async def _deliver(self, group: str, handler: Handler, event: DomainEvent) -> None:
        # Retried per handler, so handlers that already succeeded are not called twice for one event.
        for attempt in range(1, self.max_deliveries + 1):
            try:
                await handler(event)
                return
            except Exception:
                if attempt == self.max_deliveries:
                    logger.exception(
                        "event bus: group %s dropped %s %s after %d failed deliveries",
                        group,
                        event.name,
                        event.event_id,
                        attempt,
                    )
                    return
                logger.warning(
                    "event bus: group %s failed on %s %s (delivery %d), retrying",
                    group,
                    event.name,
                    event.event_id,
                    attempt,
                    exc_info=True,
                )
                await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))


# --------------------------------------------------------------------------------------------------------------
# Redis Streams (production)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to a consumer: its stream id, the event, and how often it was delivered."""

    id: str
    event: DomainEvent
    delivery_count: int | None = None


def default_consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class RedisEventBus:
    """An EventBus on a Redis stream: each group is a consumer group; entries are acked after handling."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream: str = "kefu:events",
        maxlen: int = 100_000,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        consumer_name: str | None = None,
        shutdown_timeout_s: float = 10.0,
        owns_client: bool = False,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.redis = redis
        self.stream = stream
        self.dead_letter_stream = f"{stream}:dead"
        self.maxlen = maxlen
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.max_deliveries = max_deliveries
        self.consumer_name = consumer_name or default_consumer_name()
        self.shutdown_timeout_s = shutdown_timeout_s
        self._owns_client = owns_client
        self._handlers: dict[str, list[Handler]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._broadcast: list[tuple[str, Handler]] = []
        self._broadcast_task: asyncio.Task[None] | None = None
        self._broadcast_from = "$"
        # XAUTOCLAIM cursor per group, so a long pending list is scanned in turn rather than from 0-0 each time.
        self._claim_cursor: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._started = False
        self._closed = False

    # -- producer ---------------------------------------------------------------------------------------------

    async def publish(self, event: DomainEvent) -> None:
        """Append the event to the stream (XADD, trimmed to about `maxlen` entries)."""
        await self.redis.xadd(self.stream, event.to_wire(), maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]

    async def forget(self, matches: Callable[[DomainEvent], bool], *, batch: int = 500) -> int:
        """Delete (XDEL) every entry of the stream and its dead-letter stream whose event `matches`: what an
        erasure removes from the database must not stay readable here (an agent's reply carries its text). A
        pending entry deleted this way is dropped from its group by the next XAUTOCLAIM. Returns how many."""
        deleted = 0
        for stream in (self.stream, self.dead_letter_stream):
            start = "-"
            while True:
                entries = await self.redis.xrange(stream, min=start, max="+", count=batch)
                doomed = []
                for entry_id, fields in entries:
                    try:
                        event = DomainEvent.from_wire(_text_fields(fields))
                    except (UnknownEvent, KeyError, TypeError, ValueError, ValidationError):
                        continue
                    if matches(event):
                        doomed.append(entry_id)
                if doomed:
                    deleted += int(await self.redis.xdel(stream, *doomed))
                if len(entries) < batch:
                    break
                start = "(" + _text(entries[-1][0])  # exclusive: after the last entry read
        return deleted

    # -- low-level consumer API -------------------------------------------------------------------------------

    async def ensure_group(self, group: str) -> None:
        """Create the consumer group at the stream's end (and the stream); an existing group is kept."""
        try:
            await self.redis.xgroup_create(self.stream, group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, group: str, consumer: str, *, count: int = 10, block_ms: int | None = None) -> list[Delivery]:
        """New entries for this consumer (XREADGROUP >); block_ms None means the bus default, 0 no waiting."""
        wait = self.block_ms if block_ms is None else block_ms
        # BLOCK 0 would wait forever in Redis; here 0 means "answer at once".
        reply = await self.redis.xreadgroup(
            group, consumer, {self.stream: ">"}, count=count, block=wait if wait > 0 else None
        )
        deliveries: list[Delivery] = []
        for entry_id, fields in _stream_entries(reply):
            # A fresh read is by definition the entry's first delivery to this group.
            delivery = await self._decode(group, entry_id, fields, delivery_count=1)
            if delivery is not None:
                deliveries.append(delivery)
        return deliveries

    async def claim_stale(
        self, group: str, consumer: str, *, min_idle_ms: int | None = None, count: int = 10
    ) -> list[Delivery]:
        """Take over entries another consumer read but never acked for min_idle_ms (XAUTOCLAIM)."""
        idle = self.min_idle_ms if min_idle_ms is None else min_idle_ms
        cursor = self._claim_cursor.get(group, "0-0")
        reply = await self.redis.xautoclaim(
            self.stream, group, consumer, min_idle_time=idle, start_id=cursor, count=count
        )
        self._claim_cursor[group] = _text(reply[0])
        claimed = [(entry_id, fields) for entry_id, fields in reply[1] if entry_id is not None]
        if not claimed:
            return []
        counts = await self._delivery_counts(group, [_text(entry_id) for entry_id, _ in claimed])
        deliveries: list[Delivery] = []
        for entry_id, fields in claimed:
            delivered = counts.get(_text(entry_id))
            if delivered is not None and delivered > self.max_deliveries:
                await self._dead_letter(group, _text(entry_id), fields, delivered)
                continue
            delivery = await self._decode(group, entry_id, fields, delivery_count=delivered)
            if delivery is not None:
                deliveries.append(delivery)
        return deliveries

    async def ack(self, group: str, delivery_id: str) -> None:
        """Acknowledge an entry for the group (XACK): it leaves the pending list and is not redelivered."""
        await self.redis.xack(self.stream, group, delivery_id)

    # -- subscriptions and the consumer loops -----------------------------------------------------------------

    def subscribe(self, group: str, handler: Handler) -> None:
        """Register a handler under a consumer group; all of a group's handlers must succeed for the ack."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        self._handlers.setdefault(group, []).append(handler)
        if self._started and group not in self._tasks:
            self._tasks[group] = self._spawn(group)

    def broadcast(self, name: str, handler: Handler) -> None:
        """Hear every event from now on in this process: a plain XREAD from the stream's end, no consumer group,
        so nothing is left behind on Redis when the process goes (unlike a group per process)."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        self._broadcast.append((name, handler))
        if self._started and self._broadcast_task is None:
            self._broadcast_task = self._spawn_broadcast()

    async def start(self) -> None:
        """Create the groups and start one consumer loop per group."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        if self._started:
            return
        self._started = True
        for group in self._handlers:
            # Created here, not only in the loop, so that an event published right after start() is seen.
            try:
                await self.ensure_group(group)
            except (aioredis.RedisError, OSError):
                logger.warning("event bus: cannot create group %s yet; its loop will retry", group, exc_info=True)
            self._tasks[group] = self._spawn(group)
        if self._broadcast:
            # The starting point is taken now, so that an event published right after start() is heard.
            self._broadcast_from = await self._stream_end()
            self._broadcast_task = self._spawn_broadcast()

    async def close(self) -> None:
        """Stop the loops after the entry in flight; unhandled entries stay pending for another consumer."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        tasks = list(self._tasks.values()) + ([self._broadcast_task] if self._broadcast_task else [])
        if tasks:
            _, still_running = await asyncio.wait(tasks, timeout=self.shutdown_timeout_s)
            for task in still_running:
                logger.warning(
                    "event bus: %s still busy after %.1fs; cancelling", task.get_name(), self.shutdown_timeout_s
                )
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client:
            await self.redis.aclose()

    def _spawn(self, group: str) -> asyncio.Task[None]:
        return asyncio.create_task(self._consume(group), name=f"event-bus:{self.stream}:{group}")

    def _spawn_broadcast(self) -> asyncio.Task[None]:
        return asyncio.create_task(self._listen(), name=f"event-bus:{self.stream}:broadcast")

    async def _stream_end(self) -> str:
        """The id of the stream's last entry ("0-0" for an empty or missing stream)."""
        try:
            last = await self.redis.xrevrange(self.stream, count=1)
        except (aioredis.RedisError, OSError):
            logger.warning("event bus: cannot read %s's end yet", self.stream, exc_info=True)
            return "$"
        return _text(last[0][0]) if last else "0-0"

    async def _listen(self) -> None:
        """The broadcast loop: XREAD after the last id seen; after an outage, from the stream's end again (a
        broadcast refreshes caches and pages, which the next event brings up to date)."""
        last = self._broadcast_from
        backoff = _BACKOFF_MIN_S
        while not self._stopping.is_set():
            try:
                reply = await self._unless_stopping(
                    self.redis.xread({self.stream: last}, count=100, block=self.block_ms)
                )
                backoff = _BACKOFF_MIN_S
            except Exception:
                logger.warning("event bus: broadcast cannot read %s; retrying in %.1fs", self.stream, backoff,
                               exc_info=True)
                await self._unless_stopping(asyncio.sleep(backoff))
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                last = await self._stream_end()
                continue
            for entry_id, fields in _stream_entries(reply):
                last = _text(entry_id)
                try:
                    event = DomainEvent.from_wire(_text_fields(fields))
                except (UnknownEvent, KeyError, TypeError, ValueError, ValidationError):
                    continue
                for name, handler in list(self._broadcast):
                    try:
                        await handler(event)
                    except Exception:
                        logger.warning("event bus: broadcast %s failed on %s %s", name, event.name, last,
                                       exc_info=True)

    async def _consume(self, group: str) -> None:
        backoff = _BACKOFF_MIN_S
        group_ready = False
        task = asyncio.current_task()
        while not self._stopping.is_set():
            # A client that swallows our CancelledError (fakeredis' blocked read returns [] instead) must not
            # turn a cancelled loop into an endless one: the request stays counted on the task.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                if not group_ready:
                    # Again after every error: a Redis restarted without persistence has lost the group.
                    await self.ensure_group(group)
                    group_ready = True
                batch = await self.claim_stale(group, self.consumer_name)
                if not batch:
                    batch = await self._unless_stopping(self.read(group, self.consumer_name)) or []
                backoff = _BACKOFF_MIN_S
            except Exception:
                logger.warning(
                    "event bus: group %s cannot read %s; retrying in %.1fs",
                    group,
                    self.stream,
                    backoff,
                    exc_info=True,
                )
                group_ready = False
                await self._unless_stopping(asyncio.sleep(backoff))
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            for delivery in batch:
                if self._stopping.is_set():
                    break  # the rest stays pending and is claimed by another consumer after min_idle_ms
                await self._handle(group, delivery)

    async def _handle(self, group: str, delivery: Delivery) -> None:
        try:
            for handler in list(self._handlers.get(group, ())):
                await handler(delivery.event)
        except Exception:
            # Not acked: the entry stays pending and comes back through claim_stale after min_idle_ms.
            logger.warning(
                "event bus: group %s failed on %s %s (delivery %s); left pending for redelivery",
                group,
                delivery.event.name,
                delivery.id,
                delivery.delivery_count,
                exc_info=True,
            )
            return
        try:
            await self.ack(group, delivery.id)
        except (aioredis.RedisError, OSError):
            # Handled but not acked: it will be delivered again, which at-least-once delivery allows.
            logger.warning("event bus: group %s could not ack %s", group, delivery.id, exc_info=True)

    async def _unless_stopping(self, awaitable: Awaitable[T]) -> T | None:
        """Await a wait that holds no handled work (a blocking read, a backoff), abandoning it on close()."""
        # Entries a cancelled XREADGROUP already took stay pending; another consumer claims them.
        return await unless_stopping(awaitable, self._stopping)

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _decode(self, group: str, entry_id: Any, fields: Any, *, delivery_count: int | None) -> Delivery | None:
        """The entry as a Delivery; an unknown or unreadable entry is acked and logged, never handed out."""
        entry = _text(entry_id)
        try:
            event = DomainEvent.from_wire(_text_fields(fields))
        except UnknownEvent as exc:
            logger.info("event bus: group %s skips %s of unknown type %s", group, entry, exc)
        except (KeyError, TypeError, ValueError, ValidationError):
            logger.error("event bus: group %s skips unreadable entry %s: %r", group, entry, fields, exc_info=True)
        else:
            return Delivery(id=entry, event=event, delivery_count=delivery_count)
        await self.ack(group, entry)
        return None

    async def _delivery_counts(self, group: str, entry_ids: list[str]) -> dict[str, int]:
        """How often each entry was delivered, from the pending list (XAUTOCLAIM does not say)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(self.stream, group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        counts: dict[str, int] = {}
        for reply in replies:
            for row in reply:
                counts[_text(row["message_id"])] = int(row["times_delivered"])
        return counts

    async def _dead_letter(self, group: str, entry_id: str, fields: Any, delivered: int) -> None:
        """Move a poison entry to `<stream>:dead` and ack it, in one transaction."""
        logger.error(
            "event bus: group %s gives up on %s after %d deliveries; moved to %s",
            group,
            entry_id,
            delivered,
            self.dead_letter_stream,
        )
        # The raw fields, not decoded ones: what is kept for inspection must be exactly what was published.
        record: dict[Any, Any] = dict(fields or {})
        record.update({"original_id": entry_id, "group": group, "deliveries": str(delivered)})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, record, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.xack(self.stream, group, entry_id)
            await pipe.execute()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text_fields(fields: Any) -> dict[str, str]:
    return {_text(key): _text(value) for key, value in dict(fields).items()}


def _stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The (id, fields) entries of an XREADGROUP reply on one stream, whatever protocol shape redis-py gives."""
    if not reply:
        return []
    values: Iterable[Any] = reply.values() if isinstance(reply, dict) else (item[1] for item in reply)
    entries: list[tuple[Any, Any]] = []
    for value in values:
        # RESP3's legacy shape wraps the entry list in one more list.
        if len(value) == 1 and isinstance(value[0], list):
            value = value[0]
        entries.extend((entry_id, fields) for entry_id, fields in value if entry_id is not None)
    return entries


async def unless_stopping(work: Awaitable[T], stopping: asyncio.Event) -> T | None:
    """Await `work`, abandoning it (cancelled; None) as soon as `stopping` is set; its own error is raised."""
    job = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
    return None if job.cancelled() else job.result()


# --------------------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------------------


def build_event_bus(redis_url: str | None, *, stream: str = "kefu:events") -> EventBus:
    """The in-process bus without a Redis URL, else a Redis Streams bus that owns its client."""
    if redis_url is None:
        return InProcessEventBus()
    # from_url's connections do not retry by default, so after a Redis restart the first command on each
    # pooled (now dead) connection would fail; one reconnect-and-retry makes a restart invisible to publishers.
    client = aioredis.from_url(
        redis_url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return RedisEventBus(client, stream=stream, owns_client=True)
