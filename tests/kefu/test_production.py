"""The production shape, with real processes: `kefu worker`, `kefu bot` (and `kefu console`) started as
subprocesses against the real PostgreSQL and Redis and the fake Telegram server, then hurt the way production
gets hurt: a worker killed with SIGKILL mid-delivery, Redis restarted, PostgreSQL cut off for 10 s.

These need the services: they run in the CI's PostgreSQL + Redis phase (KEFU_TEST_DATABASE_URL and
KEFU_TEST_REDIS_URL set) and are reported as skipped, with that reason, on the embedded defaults."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from crm_store import models as m
from crm_store.enums import SenderType
from crm_store.settings import StoreSettings
from kefu.runtime import open_crm
from tests.conftest import PG_URL, REDIS_URL, build_schema, run_blocking
from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram
from tests.processes import Cluster, CuttableProxy, PrivateRedis, cluster, kefu_env

pytestmark = [
    pytest.mark.skipif(not (PG_URL and REDIS_URL),
                       reason="real processes on PostgreSQL + Redis: run in CI's services phase "
                              "(KEFU_TEST_DATABASE_URL and KEFU_TEST_REDIS_URL)"),
    pytest.mark.timeout(600),
]


@pytest.fixture
def production_db(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    """A database of this test alone (the processes and the test share it), migrated."""
    url = fresh_database_url()
    run_blocking(build_schema(url))
    return url


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(max_long_poll=1.0) as fake:
        yield fake


@pytest.fixture
async def workers(
    production_db: str, tg: FakeTelegram, nlu_model_dir: Path
) -> AsyncIterator[tuple[dict[str, str], Any]]:
    """The environment of worker processes on an events stream of their own (a dead worker's entries taken over
    after 3 s), and the test's CRM on the same database and stream; the stream and its marks dropped after."""
    stream = f"kefu-test:prod:{uuid.uuid4().hex}"
    env = kefu_env(database_url=production_db, redis_url=REDIS_URL or "", stream=stream,
                   telegram_api_base=tg.base_url, token=DEFAULT_TOKEN, nlu_model_dir=nlu_model_dir,
                   bot_delivery_reclaim_after_s="3")
    crm = await open_crm(StoreSettings(database_url=production_db, redis_url=REDIS_URL, event_stream=stream))
    try:
        yield env, crm
    finally:
        await crm.close()
        await _drop_stream(stream)


def sends_per_window(times: list[float], window_s: float = 1.0) -> int:
    """The most sends in any `window_s` window (half-open)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def min_gap_per_chat(calls: list[Any]) -> float:
    by_chat: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        by_chat[str(call.params["chat_id"])].append(call.at)
    gaps = [b - a for times in by_chat.values() for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    return min(gaps) if gaps else float("inf")


# --------------------------------------------------------------------------------------------------------------
# kill -9 of a worker in the middle of delivering 1,000 agent replies
# --------------------------------------------------------------------------------------------------------------


async def test_a_worker_killed_mid_delivery_loses_nothing_and_sends_nothing_twice(
    workers: tuple[dict[str, str], Any], tg: FakeTelegram, tmp_path: Path
) -> None:
    env, crm = workers
    chats = [700_000 + n for n in range(50)]
    agent = await crm.agents.create_agent(email="a@example.com", name="A", password="correct horse",
                                          role="agent")
    conversations = {}
    for chat in chats:
        hello = tg.user_message(chat, "hello")["message"]  # numbered by the fake Telegram, as a chat's are
        recorded = await crm.conversations.record_incoming(channel="telegram", external_id=str(chat), text="hello",
                                                           channel_message_id=str(hello["message_id"]))
        conversations[chat] = recorded.conversation.id
    async with cluster(env, tmp_path) as running:
        doomed, survivor = await asyncio.gather(running.start("worker"), running.start("worker"))
        texts = []
        for n in range(1000):
            chat = chats[n % len(chats)]
            text = f"agent reply {n:04d} to {chat}"
            texts.append(text)
            await crm.conversations.record_outgoing(conversation_id=conversations[chat],
                                                    sender=SenderType.AGENT, agent_id=agent.id, text=text)
        # Mid-delivery: a third of the replies out, both workers busy.
        await tg.wait_until(lambda: len(tg.calls("sendMessage")) >= 330, timeout=60, what="a third delivered")
        doomed.kill()
        killed_at = time.time()
        delivered = await tg._wait_until(lambda: len({c.params["text"] for c in tg.calls("sendMessage")})
                                         >= 1000, timeout=120)
        await asyncio.sleep(4)  # anything sent twice would show by now (reclaim after 3 s)
        sent = [c for c in tg.calls("sendMessage") if c.ok]
        counts = Counter(c.params["text"] for c in sent)
        assert delivered, f"{1000 - len(counts)} replies never arrived:\n{survivor.log()[-3000:]}"
        assert set(counts) == set(texts)
        # Nothing went out twice: the dead worker's sent-but-unacknowledged messages by their idempotency marks;
        # those it had on the wire ("in doubt": the survivor logs each) by looking for them in the chat first.
        twice = {text for text, n in counts.items() if n > 1}
        in_doubt = _in_doubt(survivor.log())
        assert not twice, f"sent twice: {sorted(twice)}"
        assert len(in_doubt) <= 32  # at most the dead worker's sends in flight (its concurrency)
        assert not [c for c in tg.calls("editMessageText") if c.ok]  # the looking changed no message
        print(json.dumps({"delivered": len(counts), "sent_twice": len(twice), "in_doubt": len(in_doubt),
                          "in_doubt_found_in_the_chat": sum(in_doubt.values())}))
        # The sending limits held across both workers (shared on Redis).
        assert sends_per_window([c.at for c in sent]) <= 31
        assert min_gap_per_chat(sent) >= 0.95
        # Each chat got its replies in the order the agent wrote them, the dead worker's taken-over ones
        # included (a worker holds a chat's newer message back while an earlier one is unsent elsewhere).
        late = 0
        for chat in chats:
            order = [c.params["text"] for c in sent if str(c.params["chat_id"]) == str(chat)]
            before_kill = [c.params["text"] for c in sent if str(c.params["chat_id"]) == str(chat)
                           and c.at < killed_at]
            assert before_kill == sorted(before_kill)
            late += sum(1 for n, text in enumerate(order) if any(later > text for later in order[:n]))
        assert late == 0
        print(json.dumps({"sent_after_a_later_one": late}))
        # Every message is recorded as sent, with Telegram's message id.
        async with crm.db.sessionmaker() as session:
            statuses = Counter((await session.execute(
                select(m.Message.delivery_status).where(m.Message.sender == SenderType.AGENT))).scalars())
        assert statuses == {"sent": 1000}
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{survivor.base}/metrics")).text
        assert "kefu_messages_out_total" in metrics and "kefu_stream_pending" in metrics
        # Graceful shutdown: SIGTERM in the middle of a batch finishes what the worker took, exits 0.
        for n, chat in enumerate(chats[:20]):
            await crm.conversations.record_outgoing(conversation_id=conversations[chat],
                                                    sender=SenderType.AGENT, agent_id=agent.id,
                                                    text=f"last words {n:02d}")
        await tg.wait_until(lambda: any(c.params["text"].startswith("last words") for c in tg.calls("sendMessage")),
                            timeout=30, what="the last batch started")
        assert await survivor.stop() == 0, survivor.log()[-3000:]
        last = Counter(c.params["text"] for c in tg.calls("sendMessage") if c.params["text"].startswith("last"))
        async with crm.db.sessionmaker() as session:
            unsent = (await session.execute(select(func.count()).where(
                m.Message.text.like("last words%"), m.Message.delivery_status != "sent"))).scalar_one()
        # What it had taken went out once; anything not yet taken stays in the stream for the next worker.
        assert all(n == 1 for n in last.values()) and len(last) + unsent == 20


# --------------------------------------------------------------------------------------------------------------
# A campaign to 1,000 customers, its worker killed half-way and another started
# --------------------------------------------------------------------------------------------------------------


async def test_a_campaign_killed_half_way_reaches_every_consenting_customer_once_and_no_one_who_opted_out(
    workers: tuple[dict[str, str], Any], tg: FakeTelegram, tmp_path: Path
) -> None:
    env, crm = workers
    chats = await _seed_customers(crm, 1000, opted_out_every=10)
    consenting = {chat for n, chat in enumerate(chats) if n % 10 != 9}
    campaign = await crm.campaigns.create(name="Spring teas", kind="message", per_second=25,
                                          rules={"field": "tags", "op": "has_any", "value": ["newsletter"]},
                                          message={"en": "Hi {customer.first_name}, spring teas are in!"})
    async with cluster(env, tmp_path) as running:
        worker = await running.start("worker")
        await crm.campaigns.launch(campaign_id=campaign.id)
        launched_at = time.time()
        await tg.wait_until(lambda: len(tg.calls("sendMessage")) >= 450, timeout=120, what="half sent")
        worker.kill()
        killed_at = time.time()
        await asyncio.sleep(2)
        assert len(tg.calls("sendMessage")) < 900  # it really stopped half-way
        survivor = await running.start("worker")
        delivered = await tg._wait_until(lambda: len({str(c.params["chat_id"]) for c in tg.calls("sendMessage")
                                                      if c.ok}) >= len(consenting), timeout=180)
        await asyncio.sleep(5)  # anything sent twice would show by now (reclaim after 3 s)
        sent = [c for c in tg.calls("sendMessage") if c.ok]
        per_chat = Counter(str(c.params["chat_id"]) for c in sent)
        assert delivered, f"{len(consenting) - len(per_chat)} never reached:\n{survivor.log()[-3000:]}"
        assert set(per_chat) == {str(c) for c in consenting}  # every consenting customer, no one who opted out
        assert [chat for chat, n in per_chat.items() if n > 1] == []  # once each
        assert {c.params["text"] for c in sent} == {"Hi Customer, spring teas are in!"}
        assert not [c for c in tg.calls("editMessageText") if c.ok]
        progress = await crm.campaigns.progress(campaign_id=campaign.id)
        assert (progress.campaign.status, progress.queued, progress.sent) == ("finished", 900, 900)
        rate = sends_per_window([c.at for c in sent])
        assert rate <= 31
        print(json.dumps({"campaign_sent": len(sent), "sent_twice": sum(n - 1 for n in per_chat.values()),
                          "before_the_kill": sum(1 for c in sent if c.at < killed_at),
                          "in_doubt": len(_in_doubt(survivor.log())), "most_sends_in_1s": rate,
                          "seconds_from_launch": round(max(c.at for c in sent) - launched_at, 1)}))


async def _seed_customers(crm: Any, count: int, *, opted_out_every: int) -> list[int]:
    """`count` customers, each with a Telegram chat (ids 800,000 + n) and the tag "newsletter"; each
    `opted_out_every`-th one withdrew their consent, the others gave it. The chat ids, in customer order."""
    now = datetime.now(UTC)
    chats = [800_000 + n for n in range(count)]
    async with crm.db.sessionmaker() as session:
        customers = [m.Customer(name=f"Customer {n:04d}", language="en", tags=["newsletter"],
                                marketing_consent=n % opted_out_every != opted_out_every - 1,
                                marketing_consent_at=now) for n in range(count)]
        session.add_all(customers)
        await session.flush()
        session.add_all(m.ChannelIdentity(customer_id=c.id, channel="telegram", external_id=str(chat),
                                          display_name=c.name) for c, chat in zip(customers, chats, strict=True))
        await session.commit()
    return chats


def _in_doubt(log: str) -> dict[int, bool]:
    """The messages the survivor found in doubt (JSON log lines): whether each was found already in its chat."""
    found = {}
    for line in log.splitlines():
        if line.startswith("{") and "in_doubt_message_id" in line:
            record = json.loads(line)
            found[int(record["in_doubt_message_id"])] = bool(record["found"])
    return found


async def _drop_stream(stream: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    await client.delete(stream, f"{stream}:dead")
    async for key in client.scan_iter(f"{stream}:delivered:*"):
        await client.delete(key)
    await client.aclose()


# --------------------------------------------------------------------------------------------------------------
# Customers' traffic through a bot process (long polling) while something breaks
# --------------------------------------------------------------------------------------------------------------


QUESTIONS = ["how long does shipping take?", "what is your return policy?", "do you ship abroad?",
             "how do I track my order?", "运费怎么算？", "可以退货吗？"]


class Customers:
    """Chats that each send a question every `every_s` seconds (through the fake Telegram server)."""

    def __init__(self, tg: FakeTelegram, count: int, *, first_chat: int = 900_000) -> None:
        self.tg = tg
        self.chats = [first_chat + n for n in range(count)]
        self.sent: list[tuple[int, int, str]] = []  # (update id, chat, text)

    async def talk(self, seconds: float, every_s: float = 1.5) -> None:
        deadline = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < deadline:
            for chat in self.chats:
                text = f"{QUESTIONS[(chat + turn) % len(QUESTIONS)]} #{turn}"
                update = self.tg.user_message(chat, text)
                self.sent.append((int(update["update_id"]), chat, text))
            turn += 1
            await asyncio.sleep(every_s)


async def stored_messages(crm: Any) -> Counter[str]:
    async with crm.db.sessionmaker() as session:
        rows = await session.execute(select(m.Message.text).where(m.Message.sender == SenderType.CUSTOMER))
        return Counter(rows.scalars())


async def test_redis_restarted_during_traffic_processes_recover_and_no_customer_message_is_lost(
    production_db: str, tg: FakeTelegram, tmp_path: Path, nlu_model_dir: Path
) -> None:
    redis = PrivateRedis(tmp_path)
    await redis.start()
    stream = "kefu:events"
    env = kefu_env(database_url=production_db, redis_url=redis.url, stream=stream, telegram_api_base=tg.base_url,
                   token=DEFAULT_TOKEN, nlu_model_dir=nlu_model_dir, bot_redrive_after_s="3",
                   bot_delivery_reclaim_after_s="3", bot_announce_again_after_s="3", bot_timers_interval_s="1")
    crm = await open_crm(StoreSettings(database_url=production_db, redis_url=redis.url, event_stream=stream))
    customers = Customers(tg, 10)
    try:
        agent = await crm.agents.create_agent(email="a@example.com", name="A", password="correct horse",
                                              role="agent")
        async with cluster(env, tmp_path) as running:
            bot, worker = await asyncio.gather(running.start("bot"), running.start("worker"))
            traffic = asyncio.create_task(customers.talk(16))
            await asyncio.sleep(5)
            await redis.stop()
            down_at = time.monotonic()
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{bot.base}/readyz")).status_code == 503
                assert (await client.get(f"{bot.base}/healthz")).status_code == 200
            # An agent replies meanwhile: stored (no error for the agent), its announcement lost with Redis.
            during = await _conversation_of(crm, customers.chats[2])
            await crm.conversations.record_outgoing(conversation_id=during, sender=SenderType.AGENT,
                                                    agent_id=agent.id, text="written while Redis was down")
            await asyncio.sleep(3)
            await redis.start()  # same port, same data directory
            await traffic
            # Every message the customers sent is stored, once.
            expected = Counter(text for _, _, text in customers.sent)

            async def all_stored() -> bool:
                return await stored_messages(crm) == expected

            assert await _eventually(all_stored, 60), _diff(expected, await stored_messages(crm))
            # The processes came back by themselves: ready again, answering, delivering.
            await bot.wait_ready(30)
            await worker.wait_ready(30)
            assert time.monotonic() - down_at < 90
            newcomer = 990_001  # a chat of its own: the busy ones may be over the flood limit
            tg.user_message(newcomer, "how long does shipping take?")
            await tg.wait_until(lambda: len(tg.texts_to(newcomer)) > 0, timeout=30,
                                what="an answer after the restart")
            conversation_id = await _conversation_of(crm, customers.chats[1])
            await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.AGENT,
                                                    agent_id=agent.id, text="an agent after the restart")
            await tg.wait_until(lambda: "an agent after the restart" in tg.texts_to(customers.chats[1]),
                                timeout=30, what="the agent's reply after the restart")
            # The reply written during the outage is announced again by the worker's timer, and sent once.
            await tg.wait_until(lambda: "written while Redis was down" in tg.texts_to(customers.chats[2]),
                                timeout=30, what="the reply written during the outage")
            await asyncio.sleep(2)
            assert tg.texts_to(customers.chats[2]).count("written while Redis was down") == 1
            _assert_json_logs(bot.log())
    finally:
        await crm.close()
        await redis.stop()


async def _conversation_of(crm: Any, chat: int) -> int:
    async with crm.db.sessionmaker() as session:
        return int((await session.execute(
            select(m.Conversation.id).join(m.ChannelIdentity, m.ChannelIdentity.id == m.Conversation.identity_id)
            .where(m.ChannelIdentity.external_id == str(chat)).order_by(m.Conversation.id.desc()).limit(1)
        )).scalar_one())


@pytest.mark.parametrize("intake", ["polling", "webhook"])
async def test_postgresql_down_for_10s_every_update_received_meanwhile_is_stored_after_it_returns(
    intake: str, production_db: str, tg: FakeTelegram, tmp_path: Path, nlu_model_dir: Path
) -> None:
    url = make_url(production_db)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    stream = f"kefu-test:prod:{uuid.uuid4().hex}"
    extra = {"bot_redrive_after_s": "3"}
    secret = "s3cret"
    if intake == "webhook":
        extra.update({"bot_webhook_url": "https://kefu.example", "bot_webhook_secret": secret})
    env = kefu_env(database_url=through_proxy, redis_url=REDIS_URL or "", stream=stream,
                   telegram_api_base=tg.base_url, token=DEFAULT_TOKEN, nlu_model_dir=nlu_model_dir, **extra)
    crm = await open_crm(StoreSettings(database_url=production_db, redis_url=REDIS_URL, event_stream=stream))
    customers = Customers(tg, 8, first_chat=950_000)
    try:
        async with cluster(env, tmp_path) as running:
            bot = await running.start("bot")
            if intake == "webhook":
                from bot.telegram import webhook_path

                tg.deliver_to(f"{bot.base}{webhook_path(secret)}", secret, retry_delay=0.5, attempts=1000)
            traffic = asyncio.create_task(customers.talk(20, every_s=1.0))
            await asyncio.sleep(4)
            await proxy.cut()
            cut_at = time.monotonic()
            during = len(customers.sent)
            await asyncio.sleep(10)
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"{bot.base}/readyz")
            assert ready.status_code == 503 and "database" in ready.text
            if intake == "polling":
                # Nothing received during the outage was confirmed to Telegram.
                stored_ids = await _stored_update_ids(crm)
                assert tg.confirmed_offset <= max(stored_ids, default=0) + 1
            else:
                assert 503 in tg.webhook_statuses
            sent_in_outage = [u for u, _, _ in customers.sent[during:]]
            await proxy.restore()
            assert time.monotonic() - cut_at >= 10
            await traffic
            expected_ids = {u for u, _, _ in customers.sent}

            async def everything_stored() -> bool:
                return expected_ids <= await _stored_update_ids(crm)

            assert await _eventually(everything_stored, 60), expected_ids - await _stored_update_ids(crm)
            assert sent_in_outage, "no update arrived during the outage: the test proved nothing"
            expected = Counter(text for _, _, text in customers.sent)

            async def all_messages() -> bool:
                return await stored_messages(crm) == expected

            assert await _eventually(all_messages, 60), _diff(expected, await stored_messages(crm))
            # Handled to the end: every stored update is marked, and the customers got answers after the outage.
            assert await _eventually(lambda: _unhandled_is_zero(crm), 60)
            newcomer = 990_002
            tg.user_message(newcomer, "how long does shipping take?")
            await tg.wait_until(lambda: len(tg.texts_to(newcomer)) > 0, timeout=30, what="answers after the outage")
    finally:
        await crm.close()
        await proxy.close()
        await _drop_stream(stream)


async def _stored_update_ids(crm: Any) -> set[int]:
    async with crm.db.sessionmaker() as session:
        return set((await session.execute(select(m.InboundUpdate.update_id))).scalars())


async def _unhandled_is_zero(crm: Any) -> bool:
    async with crm.db.sessionmaker() as session:
        return (await session.execute(
            select(func.count()).where(m.InboundUpdate.handled_at.is_(None)))).scalar_one() == 0


async def _eventually(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.5)
    return bool(await check())


def _diff(expected: Counter[str], got: Counter[str]) -> str:
    return f"missing: {dict(expected - got)}; extra: {dict(got - expected)}"


def _assert_json_logs(log: str) -> None:
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "message", "process"} <= set(r) for r in records)


__all__ = ["Cluster"]
