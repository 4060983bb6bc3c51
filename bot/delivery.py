"""Outbound delivery: agents' replies and messages the bot starts (surveys, campaigns) sent to the customers' chats.

Production (`kefu worker`, any number of them): the events stream's consumer group "delivery". An entry is
acknowledged only after Telegram accepted the message (or refused it for good: a blocked bot, a deleted chat);
an entry a dead worker had taken is claimed by another after `reclaim_after_s` (XAUTOCLAIM). Each message is sent
once thanks to its idempotency mark on Redis, `<stream>:delivered:<message id>`:

    absent → "sending:<worker>" (just before the request) → "sent:<Telegram message id>" (just after)

A redelivered entry whose mark says "sent" is acknowledged without sending. One that says "sending" was in flight
when its worker died (counted as in doubt: `kefu_delivery_in_doubt_total`): Telegram may or may not have it, and
the Bot API cannot list a chat's messages, so the chat is probed with edits to the very same text
(TelegramSender.find_sent: Telegram answers "not modified" for the message that already reads so); it is sent
again only when the chat does not have it. A reply over Telegram's 4,096 UTF-16 units goes out in parts
(bot.telegram.reply_parts): the chat is probed part by part, and only the parts it lacks are sent.

One chat's messages go out in order (a lane per chat); different chats at once, `concurrency` at most. The
sending limits (one message a second per chat, thirty per bot, 429 `retry_after`) are the request middleware's
(bot.ratelimit), shared with the bot processes through Redis.

Embedded (`kefu demo`): the in-process bus's group, the same marks in memory.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNotFound

from bot.messages import Reply
from bot.telegram import reply_parts
from crm_store.bus import Delivery, RedisEventBus, unless_stopping
from crm_store.coltypes import utcnow
from crm_store.enums import DeliveryStatus
from crm_store.events import AgentReplied, BotPushed, DomainEvent
from crm_store.observability import (
    DELIVERY_IN_DOUBT,
    DELIVERY_SECONDS,
    MESSAGES_OUT,
    STREAM_LAG,
    STREAM_PENDING,
    log_context,
)

log = logging.getLogger(__name__)

GROUP = "delivery"
# A later message waits for an earlier unsent one of the same chat if that one is younger than this.
HOLD_BACK_LIMIT = timedelta(minutes=5)
MARK_TTL_S = 7 * 24 * 3600
# A "sending" mark outlives any takeover (seconds) and then goes, so a message whose every copy was lost can be
# announced again and sent.
SENDING_TTL_S = 600
# Refusals that will not change by trying again: the message is recorded as failed and the entry acknowledged.
FINAL_REFUSALS = (TelegramForbiddenError, TelegramNotFound, TelegramBadRequest)


class Marks(Protocol):
    async def get(self, message_id: int) -> str | None: ...

    async def claim(self, message_id: int, worker: str) -> str | None:
        """Mark the message "sending:<worker>" unless it has a mark; None when claimed, else the mark found."""
        ...

    async def sending(self, message_id: int, worker: str) -> None:
        """Take the message over whatever its mark (an in-doubt send, taken from a dead worker)."""
        ...

    async def sent(self, message_id: int, channel_message_id: str) -> None: ...


class MemoryMarks:
    def __init__(self) -> None:
        self._marks: dict[int, str] = {}

    async def get(self, message_id: int) -> str | None:
        return self._marks.get(message_id)

    async def claim(self, message_id: int, worker: str) -> str | None:
        found = self._marks.get(message_id)
        if found is None:
            self._marks[message_id] = f"sending:{worker}"
        return found

    async def sending(self, message_id: int, worker: str) -> None:
        self._marks[message_id] = f"sending:{worker}"

    async def sent(self, message_id: int, channel_message_id: str) -> None:
        self._marks[message_id] = f"sent:{channel_message_id}"


class RedisMarks:
    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def get(self, message_id: int) -> str | None:
        return _text(await self.redis.get(f"{self.prefix}:{message_id}"))

    async def claim(self, message_id: int, worker: str) -> str | None:
        key = f"{self.prefix}:{message_id}"
        if await self.redis.set(key, f"sending:{worker}", ex=SENDING_TTL_S, nx=True):
            return None
        return _text(await self.redis.get(key)) or ""

    async def sending(self, message_id: int, worker: str) -> None:
        await self.redis.set(f"{self.prefix}:{message_id}", f"sending:{worker}", ex=SENDING_TTL_S)

    async def sent(self, message_id: int, channel_message_id: str) -> None:
        await self.redis.set(f"{self.prefix}:{message_id}", f"sent:{channel_message_id}", ex=MARK_TTL_S)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def outbound(event: DomainEvent) -> tuple[int, Reply, str] | None:
    """(chat id, reply, sender) of an event that carries a message for a Telegram chat, else None."""
    if not isinstance(event, AgentReplied | BotPushed) or event.channel != "telegram" or not event.external_id:
        return None
    if isinstance(event, BotPushed):
        return int(event.external_id), Reply.from_payload(event.text, event.payload, message_id=event.message_id), "bot"
    return int(event.external_id), Reply(event.text, message_id=event.message_id), "agent"


class Deliverer:
    """Sends one outbound event's message exactly once (as far as the channel lets anyone know)."""

    def __init__(self, sender: Any, marks: Marks, *, worker: str = "local") -> None:
        self.sender = sender  # bot.telegram.TelegramSender
        self.marks = marks
        self.worker = worker

    async def deliver(self, event: DomainEvent, *, redelivered: bool = True) -> bool:
        """True when the entry may be acknowledged (sent now, sent before, being sent by another worker, or refused
        for good); raises on a passing failure (the network, Telegram's servers, the database), leaving the entry
        for a retry. `redelivered`: this copy was taken over from another worker (or retried here), so a "sending"
        mark means a send in doubt; a fresh copy (an announcement repeated) leaves such a message to its holder."""
        found = outbound(event)
        if found is None:
            return True
        chat_id, reply, sender = found
        assert reply.message_id is not None
        with log_context(conversation_id=getattr(event, "conversation_id", None)):
            mark = await self.marks.claim(reply.message_id, self.worker)
            if mark is not None and mark.startswith("sent:"):
                MESSAGES_OUT.labels("telegram", sender, "duplicate_skipped").inc()
                # The status may not have been recorded (the database was away): record it now.
                await self.sender.crm.conversations.mark_delivery(
                    message_id=reply.message_id, status=DeliveryStatus.SENT, channel_message_id=mark[5:])
                return True
            in_chat = 0  # parts of the reply (bot.telegram.reply_parts) the chat has already
            if mark is not None and mark != f"sending:{self.worker}":
                if not redelivered:
                    return True  # another worker holds it: it sends it, or its copy is taken over
                DELIVERY_IN_DOUBT.inc()
                await self.marks.sending(reply.message_id, self.worker)
                in_chat = await self._in_chat(chat_id, reply, sender, holder=mark[8:])
                if in_chat is None:
                    return True
            message_id = reply.message_id

            async def accepted(sent: Any) -> None:
                await self.marks.sent(message_id, str(sent.message_id))

            try:
                await self.sender.deliver(chat_id, reply, reraise=True, sender=sender, accepted=accepted,
                                          from_part=in_chat)
            except FINAL_REFUSALS:
                return True  # recorded as failed by the sender; trying again would not help
            DELIVERY_SECONDS.labels("telegram").observe(max(0.0, (utcnow() - event.occurred_at).total_seconds()))
            return True


    async def _in_chat(self, chat_id: int, reply: Reply, sender: str, *, holder: str) -> int | None:
        """Did the chat get this in-doubt message before its sender stopped? Looked for in the chat (see
        TelegramSender.find_sent): None when it has the whole of it (then marked and recorded as sent), else how
        many of its parts it has (a long reply cut short: the rest is to be sent)."""
        assert reply.message_id is not None
        after, skip = await self.sender.crm.conversations.channel_ids_around(message_id=reply.message_id)
        found = await self.sender.find_sent(chat_id, reply, after=after, skip=skip)
        parts = len(reply_parts(reply))
        extra = {"in_doubt_message_id": reply.message_id, "found": len(found) == parts, "parts_found": len(found)}
        if len(found) < parts:
            log.warning("delivery: message %s was in flight when %s stopped and the chat has %s of its %s parts; "
                        "sending the rest", reply.message_id, holder, len(found), parts, extra=extra)
            return len(found)
        log.info("delivery: message %s was in flight when %s stopped; the chat has it (Telegram message %s)",
                 reply.message_id, holder, found[-1], extra=extra)
        await self.marks.sent(reply.message_id, str(found[-1]))
        MESSAGES_OUT.labels("telegram", sender, "found_sent").inc()
        await self.sender.crm.conversations.mark_delivery(
            message_id=reply.message_id, status=DeliveryStatus.SENT, channel_message_id=str(found[-1]))
        return None


def _message_order(delivery: Delivery) -> int:
    found = outbound(delivery.event)
    return found[1].message_id or 0 if found else 0


@dataclass
class _Lane:
    # In the order the messages were stored: one taken over from a dead worker goes before newer ones held here.
    entries: list[Delivery] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class DeliveryWorker:
    """The consumer loop of `kefu worker` on the Redis events stream (group "delivery")."""

    def __init__(self, bus: RedisEventBus, deliverer: Deliverer, *, concurrency: int = 32,
                 reclaim_after_s: float = 15.0, group: str = GROUP) -> None:
        self.bus = bus
        self.deliverer = deliverer
        self.group = group
        self.consumer = bus.consumer_name
        self.concurrency = concurrency
        self.reclaim_after_ms = int(reclaim_after_s * 1000)
        self._lanes: dict[int, _Lane] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._buffered = 0
        self.delivered = 0

    async def run(self) -> None:
        """Read, reclaim and deliver until stop(); then finish the messages already taken."""
        heartbeat = asyncio.create_task(self._heartbeat(), name="delivery-heartbeat")
        try:
            await self._run()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self) -> None:
        """Entries this worker holds (a chat's backlog waits on its 1 message/s) are claimed again every few
        seconds, which resets their idle time: only a dead worker's entries become idle enough to be taken over."""
        every = max(0.2, self.reclaim_after_ms / 3000)
        while True:
            await asyncio.sleep(every)
            held = [d.id for lane in list(self._lanes.values()) for d in list(lane.entries)]
            try:
                for start in range(0, len(held), 200):
                    await self.bus.redis.xclaim(self.bus.stream, self.group, self.consumer, min_idle_time=0,
                                                message_ids=held[start:start + 200], justid=True)
            except Exception:
                log.warning("delivery: could not renew the %d entries held", len(held), exc_info=True)

    async def _run(self) -> None:
        backoff = 0.1
        ready = False
        while not self._stopping.is_set():
            room = self.concurrency * 4 - self._buffered
            try:
                if not ready:
                    await self.bus.ensure_group(self.group)
                    ready = True
                # A dead worker's entries are taken over even when the buffer is full: the entries buffered here
                # may all be held back waiting for those (a chat's earlier replies), which would never come.
                batch = await self.bus.claim_stale(self.group, self.consumer, min_idle_ms=self.reclaim_after_ms,
                                                   count=min(max(room, 10), 100))
                if not batch and room > 0:
                    batch = await self._unless_stopping(
                        self.bus.read(self.group, self.consumer, count=min(room, 100))) or []
                elif not batch:
                    await self._unless_stopping(asyncio.sleep(0.05))
                backoff = 0.1
            except Exception:
                log.warning("delivery: cannot read the stream; retrying in %.1fs", backoff, exc_info=True)
                ready = False
                await self._unless_stopping(asyncio.sleep(backoff))
                backoff = min(backoff * 2, 5.0)
                continue
            for delivery in batch:
                await self._take(delivery)
        await self._drain()

    async def stop(self) -> None:
        self._stopping.set()

    async def _take(self, delivery: Delivery) -> None:
        found = outbound(delivery.event)
        if found is None:
            await self._ack(delivery)  # not for this worker
            return
        chat_id = found[0]
        lane = self._lanes.setdefault(chat_id, _Lane())
        bisect.insort(lane.entries, delivery, key=_message_order)
        self._buffered += 1
        if lane.task is None:
            lane.task = asyncio.create_task(self._run_lane(chat_id, lane), name=f"delivery:{chat_id}")

    async def _run_lane(self, chat_id: int, lane: _Lane) -> None:
        try:
            while lane.entries:
                delivery = lane.entries[0]
                if await self._earlier_one_elsewhere(delivery):
                    await asyncio.sleep(0.25)  # it comes here when its worker's claim lapses, and goes first
                    continue
                async with self._slots:
                    try:
                        done = await self.deliverer.deliver(delivery.event,
                                                            redelivered=(delivery.delivery_count or 1) > 1)
                    except Exception:
                        log.warning("delivery: %s to chat %s failed; left for a retry", delivery.id, chat_id,
                                    exc_info=True)
                        done = False
                lane.entries.remove(delivery)
                self._buffered -= 1
                if done:
                    await self._ack(delivery)
                    self.delivered += 1
                else:
                    # Not acked: it stays pending and is reclaimed after reclaim_after_s; the chat's later
                    # entries are dropped from this lane too (left pending), so they are not sent before it.
                    self._buffered -= len(lane.entries)
                    lane.entries.clear()
        finally:
            lane.task = None
            if not lane.entries and self._lanes.get(chat_id) is lane:
                del self._lanes[chat_id]

    async def _earlier_one_elsewhere(self, delivery: Delivery) -> bool:
        """Is an earlier reply to the same chat still unsent, held by another (perhaps dead) worker? Only recent
        ones count (HOLD_BACK_LIMIT), so a message stuck for good never blocks a chat for long."""
        event = delivery.event
        if not isinstance(event, AgentReplied | BotPushed):
            return False
        try:
            return bool(await self.deliverer.sender.crm.conversations.waiting_before(
                conversation_id=event.conversation_id, message_id=event.message_id,
                since=utcnow() - max(HOLD_BACK_LIMIT, timedelta(milliseconds=self.reclaim_after_ms * 4))))
        except Exception:
            return False  # the database is away: sending goes ahead (and records its own failure)

    async def _ack(self, delivery: Delivery) -> None:
        try:
            await self.bus.ack(self.group, delivery.id)
        except Exception:  # sent and marked: a redelivery finds the mark and only acks
            log.warning("delivery: could not ack %s", delivery.id, exc_info=True)

    async def _drain(self, timeout_s: float = 25.0) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if tasks:
            log.info("delivery: finishing %d chats' messages before stopping", len(tasks))
            _, late = await asyncio.wait(tasks, timeout=timeout_s)
            for task in late:
                task.cancel()

    async def _unless_stopping(self, work: Any) -> Any:
        return await unless_stopping(work, self._stopping)

    async def refresh_gauges(self) -> None:
        """Stream lag and pending count of the group, for /metrics."""
        for group in await self.bus.redis.xinfo_groups(self.bus.stream):
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            STREAM_PENDING.labels(self.bus.stream, name).set(int(group.get("pending") or 0))
            lag = group.get("lag")
            if lag is not None:
                STREAM_LAG.labels(self.bus.stream, name).set(int(lag))


class LocalDelivery:
    """Embedded: the in-process bus's group calls this for each event; a failure raises, so the bus retries."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer

    def attach(self, bus: Any) -> None:
        bus.subscribe(GROUP, self.on_event)

    async def on_event(self, event: DomainEvent) -> None:
        started = time.perf_counter()
        await self.deliverer.deliver(event)
        log.debug("delivery: %s in %.1f ms", event.name, (time.perf_counter() - started) * 1000)
