"""Outbound delivery: the Deliverer's idempotency marks and refusals, and the DeliveryWorker on a Redis stream
(fakeredis, or the real Redis when KEFU_TEST_REDIS_URL is set) against the fake Telegram server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bot.delivery import GROUP, Deliverer, DeliveryWorker, MemoryMarks, RedisMarks, outbound
from bot.messages import Button, Reply
from bot.telegram import PART_LIMIT, TEXT_LIMIT, TelegramSender, reply_parts, split_text, utf16_len
from crm_store.bus import RedisEventBus
from crm_store.enums import DeliveryStatus, SenderType
from crm_store.events import AgentReplied, BotPushed, CustomerCreated
from tests.fake_telegram import FakeTelegram
from tests.support import RecordingBus


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def sender(tg: FakeTelegram, crm: Any) -> TelegramSender:
    return TelegramSender(tg.bot(), crm)


async def agent_reply(crm: Any, bus: RecordingBus, *, chat: int, text: str, channel: str = "telegram") -> AgentReplied:
    """An agent's reply to the customer of `chat` (their conversation opened by a first message): the event the
    CRM published for it."""
    recorded = await crm.conversations.record_incoming(channel=channel, external_id=str(chat), text="hello")
    await crm.conversations.record_outgoing(conversation_id=recorded.conversation.id, sender=SenderType.AGENT,
                                            text=text)
    event = bus.of(AgentReplied)[-1]
    assert isinstance(event, AgentReplied) and event.text == text
    return event


async def stored_message(crm: Any, event: AgentReplied) -> Any:
    rows = await crm.conversations.transcript(conversation_id=event.conversation_id)
    return next(row for row in rows if row.id == event.message_id)


def in_doubt_count() -> float:
    return REGISTRY.get_sample_value("kefu_delivery_in_doubt_total") or 0.0


# --- the Deliverer -------------------------------------------------------------------------------------------


async def test_an_agent_reply_delivered_twice_is_sent_once(crm: Any, bus: RecordingBus, tg: FakeTelegram,
                                                           sender: TelegramSender) -> None:
    event = await agent_reply(crm, bus, chat=300, text="Your parcel left the warehouse today.")
    marks = MemoryMarks()
    deliverer = Deliverer(sender, marks)
    assert await deliverer.deliver(event) is True
    assert await deliverer.deliver(event) is True  # a redelivery: skipped
    (sent,) = tg.messages_to(300)
    assert sent["text"] == "Your parcel left the warehouse today."
    assert len(tg.calls("sendMessage")) == 1
    row = await stored_message(crm, event)
    assert row.delivery_status == DeliveryStatus.SENT and row.channel_message_id == str(sent["message_id"])
    assert await marks.get(event.message_id) == f"sent:{sent['message_id']}"


async def test_a_message_marked_sent_is_not_sent_again_and_its_status_is_recorded(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    """Sent by a worker that died before recording it in the database: the redelivery records it."""
    event = await agent_reply(crm, bus, chat=301, text="On its way.")
    marks = MemoryMarks()
    await marks.sent(event.message_id, "77")
    assert (await stored_message(crm, event)).delivery_status == DeliveryStatus.QUEUED
    assert await Deliverer(sender, marks).deliver(event) is True
    assert tg.calls("sendMessage") == []
    row = await stored_message(crm, event)
    assert row.delivery_status == DeliveryStatus.SENT and row.channel_message_id == "77"


async def test_a_message_in_flight_when_its_worker_died_is_sent_again_and_counted_in_doubt(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    event = await agent_reply(crm, bus, chat=302, text="Refund approved.")
    marks = MemoryMarks()
    await marks.sending(event.message_id, "other")
    before = in_doubt_count()
    assert await Deliverer(sender, marks, worker="me").deliver(event) is True
    assert tg.texts_to(302) == ["Refund approved."]
    assert in_doubt_count() == before + 1
    (sent,) = tg.messages_to(302)
    assert await marks.get(event.message_id) == f"sent:{sent['message_id']}"
    assert (await stored_message(crm, event)).delivery_status == DeliveryStatus.SENT


async def customer_writes(crm: Any, tg: FakeTelegram, chat: int, text: str) -> int:
    """The customer writes in the fake chat (Telegram numbers it) and the bot records it: its conversation's id."""
    update = tg.user_message(chat, text)["message"]
    recorded = await crm.conversations.record_incoming(channel="telegram", external_id=str(chat), text=text,
                                                       channel_message_id=str(update["message_id"]))
    return recorded.conversation.id


async def bot_says(crm: Any, sender: TelegramSender, conversation_id: int, chat: int, text: str) -> None:
    """The bot answers in the chat, on record with its Telegram id."""
    recorded = await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.BOT,
                                                       text=text)
    await sender.deliver(chat, Reply(text, message_id=recorded.message.id))


@pytest.mark.parametrize("kind", ["agent reply", "markdown with buttons"])
async def test_a_send_in_doubt_that_reached_the_chat_is_found_there_and_not_sent_again(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender, kind: str
) -> None:
    """The dead worker's request reached Telegram: the chat is probed (edits to the same text, refused as "not
    modified" only by that message) and the message recorded as sent with its Telegram id, nothing sent twice.
    The probe skips the messages on record and gets past the customer's one not on record yet."""
    chat = 310 if kind == "agent reply" else 311
    conversation_id = await customer_writes(crm, tg, chat, "where is my order?")
    await bot_says(crm, sender, conversation_id, chat, "Checking.")
    if kind == "agent reply":
        await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.AGENT,
                                                text="Your order ships today.")
        event: Any = bus.of(AgentReplied)[-1]
    else:
        pushed = Reply("How did **we** do?", (Button("Good", "csat:5"), Button("Bad", "csat:1")), markdown=True)
        await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.BOT,
                                                text=pushed.text, payload=pushed.payload(), push=True)
        event = bus.of(BotPushed)[-1]
    await customer_writes(crm, tg, chat, "thanks")  # on record: skipped
    tg.user_message(chat, "and the invoice?")  # not on record yet: "can't be edited"
    found = outbound(event)
    assert found is not None
    delivered = await TelegramSender(tg.bot(), crm)._send_formatted(chat, found[1])  # the dead worker's send
    tg.user_message(chat, "hello?")
    marks = MemoryMarks()
    await marks.sending(event.message_id, "dead")
    before, sends = in_doubt_count(), len(tg.calls("sendMessage"))
    assert await Deliverer(sender, marks, worker="me").deliver(event) is True
    assert len(tg.calls("sendMessage")) == sends and in_doubt_count() == before + 1
    row = await stored_message(crm, event)
    assert row.delivery_status == DeliveryStatus.SENT and row.channel_message_id == str(delivered.message_id)
    assert await marks.get(event.message_id) == f"sent:{delivered.message_id}"
    assert not [c for c in tg.calls("editMessageText") if c.ok]  # probes only: nothing was edited


async def test_a_send_in_doubt_that_never_reached_the_chat_is_sent_and_nothing_else_is_touched(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    chat = 312
    conversation_id = await customer_writes(crm, tg, chat, "hi")
    await bot_says(crm, sender, conversation_id, chat, "Hello! How can I help?")
    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.AGENT, text="Done.")
    event = bus.of(AgentReplied)[-1]
    marks = MemoryMarks()
    await marks.sending(event.message_id, "dead")
    assert await Deliverer(sender, marks, worker="me").deliver(event) is True
    assert tg.texts_to(chat) == ["Hello! How can I help?", "Done."]
    assert tg.calls("editMessageText") and not [c for c in tg.calls("editMessageText") if c.ok]


# --- replies longer than one Telegram message ----------------------------------------------------------------


def test_a_long_text_is_cut_between_paragraphs_then_lines_then_words_then_anywhere() -> None:
    paragraphs = "\n\n".join(f"Paragraph {n}. " + "word " * 300 for n in range(8))  # ~1,500 characters each
    parts = split_text(paragraphs)
    assert all(part.startswith("Paragraph") for part in parts) and len(parts) == 4  # two paragraphs a part
    lines = "\n".join(" ".join(["line"] * 100) for _ in range(20))  # no paragraph break
    assert all(part.startswith("line") and part.endswith("line") for part in split_text(lines))
    emoji = "😀" * 4000  # 8,000 UTF-16 units, no space: cut anywhere, never inside a character
    assert [utf16_len(part) for part in split_text(emoji)] == [PART_LIMIT, 8000 - PART_LIMIT]
    for text in (paragraphs, lines, emoji):
        assert all(utf16_len(part) <= PART_LIMIT for part in split_text(text))
        assert "".join(split_text(text)).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
            "\n", "")  # nothing lost but the whitespace at the cuts
    assert split_text("short") == ["short"]


async def test_an_agent_reply_over_telegrams_limit_goes_out_in_parts(crm: Any, bus: RecordingBus, tg: FakeTelegram,
                                                                     sender: TelegramSender) -> None:
    """4,000 characters is the console's limit, but 4,000 emoji are 8,000 UTF-16 units: Telegram's limit is 4,096."""
    text = "😀" * 4000
    event = await agent_reply(crm, bus, chat=330, text=text)
    assert await Deliverer(sender, MemoryMarks()).deliver(event) is True
    sent = tg.messages_to(330)
    assert "".join(m["text"] for m in sent) == text and len(sent) == 2
    assert all(utf16_len(m["text"]) <= TEXT_LIMIT for m in sent)
    row = await stored_message(crm, event)
    assert row.delivery_status == DeliveryStatus.SENT and row.channel_message_id == str(sent[-1]["message_id"])


async def long_answer_pushed(crm: Any, bus: RecordingBus, tg: FakeTelegram, chat: int) -> tuple[Any, Reply]:
    """The bot pushes a 9,000-character Markdown answer with buttons to a chat: its event and reply."""
    conversation_id = await customer_writes(crm, tg, chat, "tell me everything about tea")
    text = "\n\n".join(f"**Part {n}**: " + "steep the leaves gently " * 60 for n in range(6))
    pushed = Reply(text, (Button("Helpful", "fb:up:1"), Button("Not helpful", "fb:down:1")), markdown=True)
    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.BOT, text=text,
                                            payload=pushed.payload(), push=True)
    return bus.of(BotPushed)[-1], pushed


async def test_a_long_markdown_answer_is_formatted_part_by_part_with_the_buttons_on_the_last(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    event, pushed = await long_answer_pushed(crm, bus, tg, chat=331)
    assert await Deliverer(sender, MemoryMarks()).deliver(event) is True
    sent = tg.messages_to(331)
    assert len(sent) == len(reply_parts(pushed)) == 3
    assert [m["text"].split(":")[0] for m in sent] == ["<b>Part 0</b>", "<b>Part 2</b>", "<b>Part 4</b>"]
    assert all("**" not in m["text"] for m in sent)
    assert [bool(m.get("reply_markup")) for m in sent] == [False, False, True]


@pytest.mark.parametrize("parts_sent", [1, 3])
async def test_a_long_reply_in_doubt_sends_only_the_parts_the_chat_lacks(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender, parts_sent: int
) -> None:
    """Its sender died after the first part (or after all three): the chat is probed part by part and only the
    rest is sent; nothing in the chat is edited."""
    chat = 332 + parts_sent
    event, pushed = await long_answer_pushed(crm, bus, tg, chat=chat)
    parts = reply_parts(pushed)
    dead = TelegramSender(tg.bot(), crm)
    for part in parts[:parts_sent]:
        await dead._send_part(chat, part)  # the dead worker's sends
    marks = MemoryMarks()
    await marks.sending(event.message_id, "dead")
    sends = len(tg.calls("sendMessage"))
    assert await Deliverer(sender, marks, worker="me").deliver(event) is True
    sent = tg.messages_to(chat)
    assert len(sent) == 3 and len(tg.calls("sendMessage")) == sends + 3 - parts_sent
    assert [m["text"].split(":")[0] for m in sent] == ["<b>Part 0</b>", "<b>Part 2</b>", "<b>Part 4</b>"]
    assert not [c for c in tg.calls("editMessageText") if c.ok]
    row = await stored_message(crm, event)
    assert row.delivery_status == DeliveryStatus.SENT and row.channel_message_id == str(sent[-1]["message_id"])


async def test_a_blocked_chat_is_acknowledged_recorded_failed_and_not_retried(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    event = await agent_reply(crm, bus, chat=303, text="Anything else?")
    tg.block(303)
    assert await Deliverer(sender, MemoryMarks()).deliver(event) is True
    (refused,) = tg.calls("sendMessage")
    assert refused.error is not None and refused.error["error_code"] == 403
    assert (await stored_message(crm, event)).delivery_status == DeliveryStatus.FAILED


async def test_a_passing_failure_leaves_the_message_for_a_retry(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    """Telegram's servers failing (500) is not final: deliver raises (the entry stays pending), a retry sends it."""
    event = await agent_reply(crm, bus, chat=304, text="Checking now.")
    deliverer = Deliverer(sender, MemoryMarks())
    tg.fail_next("sendMessage", 500)
    with pytest.raises(Exception):  # noqa: B017 - aiogram's server error; the point is that it is not swallowed
        await deliverer.deliver(event)
    assert tg.messages_to(304) == []
    assert await deliverer.deliver(event) is True
    assert tg.texts_to(304) == ["Checking now."]
    assert (await stored_message(crm, event)).delivery_status == DeliveryStatus.SENT


async def test_events_not_for_a_telegram_chat_are_acknowledged_without_sending(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    web = await agent_reply(crm, bus, chat=305, text="Hi from the web chat.", channel="webchat")
    deliverer = Deliverer(sender, MemoryMarks())
    assert await deliverer.deliver(web) is True
    assert await deliverer.deliver(CustomerCreated(customer_id=1)) is True
    assert tg.sent == []
    assert (await stored_message(crm, web)).delivery_status == DeliveryStatus.QUEUED


async def test_a_fresh_announcement_of_a_message_another_worker_is_sending_sends_nothing(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender
) -> None:
    """The timer announced a slow reply again: the copy that is not a takeover leaves it to its holder."""
    event = await agent_reply(crm, bus, chat=310, text="Checking with the warehouse.")
    marks = MemoryMarks()
    await marks.sending(event.message_id, "holder")
    before = in_doubt_count()
    assert await Deliverer(sender, marks, worker="me").deliver(event, redelivered=False) is True
    assert tg.calls("sendMessage") == [] and in_doubt_count() == before
    assert await marks.get(event.message_id) == "sending:holder"


async def test_two_workers_with_copies_of_one_message_send_it_once(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, sender: TelegramSender, redis_client: aioredis.Redis, stream: str
) -> None:
    """The original announcement and a repeated one reach two workers at once: the Redis claim (SET NX) lets one
    of them send."""
    event = await agent_reply(crm, bus, chat=311, text="Both of us got this.")
    marks = RedisMarks(redis_client, f"{stream}:delivered")
    first, second = Deliverer(sender, marks, worker="w1"), Deliverer(sender, marks, worker="w2")
    assert await asyncio.gather(first.deliver(event, redelivered=False),
                                second.deliver(event, redelivered=False)) == [True, True]
    assert tg.texts_to(311) == ["Both of us got this."]


# --- the DeliveryWorker on a Redis stream --------------------------------------------------------------------


@pytest.fixture
async def stream_bus(redis_client: aioredis.Redis, stream: str) -> AsyncIterator[RedisEventBus]:
    """The events stream, with the delivery group created before anything is published to it."""
    bus = RedisEventBus(redis_client, stream=stream, block_ms=50, consumer_name="publisher")
    await bus.ensure_group(GROUP)
    yield bus
    await bus.close()


@pytest.fixture
async def run_worker(redis_client: aioredis.Redis, stream: str,
                     sender: TelegramSender) -> AsyncIterator[Callable[..., DeliveryWorker]]:
    """Start DeliveryWorkers (each its own consumer); stopped at the end of the test."""
    running: list[tuple[DeliveryWorker, asyncio.Task[None]]] = []

    def start(consumer: str, *, reclaim_after_s: float = 5.0, concurrency: int = 4) -> DeliveryWorker:
        bus = RedisEventBus(redis_client, stream=stream, block_ms=50, consumer_name=consumer)
        deliverer = Deliverer(sender, RedisMarks(redis_client, f"{stream}:delivered"), worker=consumer)
        worker = DeliveryWorker(bus, deliverer, concurrency=concurrency, reclaim_after_s=reclaim_after_s)
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, _ in running:
        await worker.stop()
    for worker, task in running:
        await asyncio.wait_for(task, timeout=10)
        await worker.bus.close()


async def pending(client: aioredis.Redis, stream: str) -> int:
    summary = await client.xpending(stream, GROUP)
    return int(summary["pending"])


async def eventually_nothing_pending(client: aioredis.Redis, stream: str) -> None:
    for _ in range(100):
        if await pending(client, stream) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await pending(client, stream)} entries still pending")


async def test_the_worker_sends_every_reply_once_in_order_per_chat_and_acks_them(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, redis_client: aioredis.Redis, stream: str,
    stream_bus: RedisEventBus, run_worker: Callable[..., DeliveryWorker],
) -> None:
    chats = (310, 311, 312)
    events = [await agent_reply(crm, bus, chat=chat, text=f"reply {n} to {chat}") for n in range(3) for chat in chats]
    for event in events:  # the chats' messages interleaved, as agents answer
        await stream_bus.publish(event)
    await stream_bus.publish(CustomerCreated(customer_id=1))  # not for this worker: acknowledged, nothing sent

    worker = run_worker("worker-a")
    for chat in chats:
        await tg.wait_for_messages(chat, 3)
    await eventually_nothing_pending(redis_client, stream)
    await asyncio.sleep(0.3)  # nothing more comes
    for chat in chats:
        assert tg.texts_to(chat) == [f"reply {n} to {chat}" for n in range(3)]
    assert len(tg.calls("sendMessage")) == 9
    assert worker.delivered == 9
    for event in events:
        assert (await stored_message(crm, event)).delivery_status == DeliveryStatus.SENT


async def test_a_dead_consumers_entries_are_taken_over_and_sent_once(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, redis_client: aioredis.Redis, stream: str,
    stream_bus: RedisEventBus, run_worker: Callable[..., DeliveryWorker],
) -> None:
    events = [await agent_reply(crm, bus, chat=chat, text=f"reply {n} to {chat}") for n in range(2)
              for chat in (320, 321)]
    for event in events:
        await stream_bus.publish(event)
    taken = await stream_bus.read(GROUP, "dead-consumer", count=100, block_ms=0)  # read, never acked: it died
    assert len(taken) == 4

    run_worker("worker-b", reclaim_after_s=0.6)
    await asyncio.sleep(0.3)
    assert tg.sent == []  # still fresh: not stolen from a consumer that may be alive
    await tg.wait_for_messages(320, 2)
    await tg.wait_for_messages(321, 2)
    await eventually_nothing_pending(redis_client, stream)
    await asyncio.sleep(0.3)
    assert tg.texts_to(320) == ["reply 0 to 320", "reply 1 to 320"]
    assert tg.texts_to(321) == ["reply 0 to 321", "reply 1 to 321"]
    assert len(tg.calls("sendMessage")) == 4


async def test_a_full_buffer_of_held_back_messages_still_takes_over_the_earlier_ones(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, redis_client: aioredis.Redis, stream: str,
    stream_bus: RedisEventBus, run_worker: Callable[..., DeliveryWorker],
) -> None:
    """A dead worker held the first reply of 6 chats; the survivor's buffer (4 per unit of concurrency: 4 here)
    fills with those chats' later replies, all held back behind the first ones. It must still take the first ones
    over (before the fix it waited for buffer room that only they could free: 616 replies stuck in a CI run)."""
    chats = list(range(340, 346))
    for chat in chats:
        await stream_bus.publish(await agent_reply(crm, bus, chat=chat, text=f"first {chat}"))
    taken = await stream_bus.read(GROUP, "dead-consumer", count=len(chats), block_ms=0)  # then it died
    assert len(taken) == len(chats)
    for chat in chats:
        await stream_bus.publish(await agent_reply(crm, bus, chat=chat, text=f"second {chat}"))
    run_worker("worker-d", reclaim_after_s=0.6, concurrency=1)
    for chat in chats:
        await tg.wait_for_messages(chat, 2, timeout=20)
        assert tg.texts_to(chat) == [f"first {chat}", f"second {chat}"]
    await eventually_nothing_pending(redis_client, stream)


async def test_a_newer_message_waits_for_an_earlier_one_held_by_a_dead_consumer(
    crm: Any, bus: RecordingBus, tg: FakeTelegram, redis_client: aioredis.Redis, stream: str,
    stream_bus: RedisEventBus, run_worker: Callable[..., DeliveryWorker],
) -> None:
    first = await agent_reply(crm, bus, chat=330, text="first")
    await stream_bus.publish(first)
    [taken] = await stream_bus.read(GROUP, "dead-consumer", count=1, block_ms=0)  # then it died
    assert taken.event == first
    second = await agent_reply(crm, bus, chat=330, text="second")
    await stream_bus.publish(second)

    run_worker("worker-c", reclaim_after_s=0.6)  # reads "second" at once, takes "first" over after 0.6 s
    await tg.wait_for_messages(330, 2)
    await eventually_nothing_pending(redis_client, stream)
    assert tg.texts_to(330) == ["first", "second"]
    assert len(tg.calls("sendMessage")) == 2
