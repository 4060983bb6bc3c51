"""Load through Telegram's webhook path: simulated customers chat with `kefu bot` processes behind a load balancer
while agents reply through `kefu worker`, all on real PostgreSQL and Redis.

    .venv/bin/python bench/load_telegram.py [--customers 200] [--seconds 60] [--bots 2] [--think-min 15]
        [--think-max 30] [--agent-replies-per-s 2] [--out FILE]

A fresh database `kefu_bench_<random>` gets the schema and the sample shop (`kefu demo --no-serve`: agents, the
English and Chinese knowledge base); the NLU is trained once (`kefu nlu train --out`) into a folder every process
loads. The fake Telegram Bot API server of the tests (tests/fake_telegram.py) runs in this process and POSTs every
update to the bots' webhook routes in turn (up to 40 POSTs in flight, one chat's updates in order, as Telegram's
setWebhook max_connections=40 does), with the secret token, retrying until accepted.

Each customer (its own chat; about 30 % write in Chinese with language_code zh) loops until the time is up: asks
one of the sample shop's questions or a paraphrase (about 5 % ask for a person), waits for the bot's answer (the
first bot message in its chat after the question), then thinks for a random time. A customer handed to a person
waits for the agent's reply, and the agent then resolves the ticket, so the bot answers again. Agents' replies
are recorded here, at a steady pace, through the CRM (as the console does): handed-off conversations first, a
sample of the others otherwise; `kefu worker` delivers them, and their latency runs from the record to the fake
receiving the text.

The default think times (15-30 s: about 8 questions a second from 200 customers) are a load two bot processes
sustain on this 2-core machine (measured: answers saturate at about 8-9 a second, CPU bound in the bot
processes); shorter ones (--think-min 6 --think-max 14, ~9 a second started and more wanted) saturate it and
latency grows for as long as the run lasts. The bot stays under the 30 messages a second per bot that Kefu enforces
(bot.ratelimit, shared by all processes through Redis; one message a second per chat): the JSON's
`offered_load` says what was offered and sent. Prints one JSON object on stdout (and writes it to --out);
progress on stderr. Everything made (processes, the database, the Redis stream and keys) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fake_telegram, tests.processes

ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ANSWER_TIMEOUT_S = 30.0
AGENT_DELIVERY_TIMEOUT_S = 60.0
WEBHOOK_CONNECTIONS = 40
TELEGRAM_PER_BOT_PER_S = 30
HUMAN_SHARE = 0.05
ZH_SHARE = 0.3
AGENT_MARK = re.compile(r"\[ref (AR\d{6})\]")
SENDING = re.compile(r"^send(?!ChatAction$)|^(copy|forward)Message$")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest rank
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1)}


# --- what customers say ----------------------------------------------------------------------------------------


def question_pools() -> dict[str, list[str]]:
    """The sample shop's questions and their alternatives, with light paraphrases (greetings, thanks)."""
    from kefu.sample_kb import EN_ARTICLES, ZH_ARTICLES

    def variants(articles: Any, prefixes: tuple[str, ...], suffixes: tuple[str, ...]) -> list[str]:
        base = [q for a in articles for q in (a.question, *a.alt_questions)]
        out = list(base)
        for q in base:
            out.append(f"{random.choice(prefixes)}{q}{random.choice(suffixes)}".strip())
        return out

    return {
        "en": variants(EN_ARTICLES, ("Hi, ", "Hello! ", "Quick question: ", "hey "), ("", " Thanks.", " thank you")),
        "zh": variants(ZH_ARTICLES, ("你好，", "请问", "您好，请问"), ("", "谢谢", "？")),
    }


def handoff_pattern() -> re.Pattern[str]:
    """The bot's "a person will reply" message (any language), capturing the ticket number."""
    from bot.texts import TEXTS

    heads = [re.escape(t.split("{ticket}")[0]) for t in TEXTS["handoff"].values()]
    return re.compile(f"(?:{'|'.join(heads)})(\\d+)")


# --- what the fake saw ------------------------------------------------------------------------------------------


@dataclass
class Observed:
    """Reads the fake's recorded calls as they come: answers for waiting customers, agents' replies arriving,
    send times per bot and per chat."""

    tg: Any
    cursor: int = 0
    answers: dict[int, asyncio.Future[tuple[str, float]]] = field(default_factory=dict)  # chat -> waiting turn
    agent_waiting: dict[str, tuple[float, asyncio.Future[float]]] = field(default_factory=dict)  # token -> record
    send_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # bot token -> times
    chat_times: dict[int, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))  # bot/agent
    bot_messages: int = 0
    agent_messages: int = 0
    failed_sends: list[str] = field(default_factory=list)
    stray_agent_texts: int = 0

    async def follow(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(AssertionError):
                await self.tg.wait_until(lambda: len(self.tg.sent) > self.cursor or stopping.is_set(), timeout=1)
            self.catch_up()

    def catch_up(self) -> None:
        calls = self.tg.sent[self.cursor:]
        self.cursor += len(calls)
        for call in calls:
            if SENDING.match(call.method):
                self._see_send(call)

    def _see_send(self, call: Any) -> None:
        chat = call.params.get("chat_id")
        if not call.ok:
            self.failed_sends.append(f"{call.method} to {chat}: {call.error.get('description')}")
            return
        self.send_times[call.token].append(call.at)
        text = str(call.params.get("text") or call.params.get("caption") or "")
        mark = AGENT_MARK.search(text)
        if isinstance(chat, int):
            self.chat_times[chat].append((call.at, "agent" if mark else "bot"))
        if mark is not None:
            self.agent_messages += 1
            waiting = self.agent_waiting.pop(mark.group(1), None)
            if waiting is None:
                self.stray_agent_texts += 1
            elif not waiting[1].done():
                waiting[1].set_result(call.at)
            return
        self.bot_messages += 1
        turn = self.answers.pop(chat, None) if isinstance(chat, int) else None
        if turn is not None and not turn.done():
            turn.set_result((text, call.at))


# --- the run --------------------------------------------------------------------------------------------------


@dataclass
class Results:
    turns_started: int = 0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (asked at, ms)
    unanswered: int = 0
    handoffs: int = 0
    handoff_waits_ms: list[float] = field(default_factory=list)  # handoff answer -> agent's reply delivered
    agent_latencies: list[float] = field(default_factory=list)
    agent_recorded: int = 0
    agent_late: int = 0
    agent_side_failures: list[str] = field(default_factory=list)


@dataclass
class Handoff:
    chat: int
    language: str
    ticket_id: int
    answered_at: float
    delivered: asyncio.Future[float | None]  # when the agent's reply arrived; None: it failed or came too late


class Load:
    def __init__(self, args: argparse.Namespace, tg: Any, crm: Any, agents: list[int], chats: list[int]) -> None:
        self.args = args
        self.tg = tg
        self.crm = crm
        self.agents = agents
        self.chats = chats
        self.observed = Observed(tg, cursor=len(tg.sent))  # from now on: not the warm-up's messages
        self.results = Results()
        self.pools = question_pools()
        self.handoff_re = handoff_pattern()
        self.handoffs: asyncio.Queue[Handoff] = asyncio.Queue()
        self.languages = {chat: ("zh" if random.random() < ZH_SHARE else "en") for chat in chats}
        self.talked: set[int] = set()  # chats with a conversation and no handoff in progress
        self.agent_tokens = (f"AR{n:06d}" for n in range(1, 1_000_000))
        self.pending_agent: list[asyncio.Future[float]] = []
        self.unserved_handoffs = 0
        self.loop_lag_ms: list[float] = []
        self.start = self.end = 0.0

    def question(self, language: str) -> str:
        if random.random() < HUMAN_SHARE:
            return "human" if language == "en" else random.choice(("人工客服", "转人工"))
        return random.choice(self.pools[language])

    async def ask(self, chat: int, text: str, language: str) -> tuple[str, float] | None:
        """One customer turn: the question into the fake, the bot's first message back (None: none in time)."""
        answer: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        self.observed.answers[chat] = answer
        asked = time.time()
        self.tg.user_message(chat, text, language_code="zh-hans" if language == "zh" else "en",
                             first_name=f"Customer {chat % 10_000}")
        try:
            said, at = await asyncio.wait_for(asyncio.shield(answer), ANSWER_TIMEOUT_S)
        except TimeoutError:
            self.results.unanswered += 1
            # The late answer must not pass for the next question's: wait for it (or the end of the run).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answer, max(1.0, self.end + ANSWER_TIMEOUT_S - time.time()))
            return None
        self.results.latencies.append((asked, (at - asked) * 1000))
        return said, at

    async def customer(self, chat: int) -> None:
        args = self.args
        language = self.languages[chat]
        await asyncio.sleep(random.uniform(0, args.think_max))  # customers arrive spread out
        while time.time() < self.end:
            self.results.turns_started += 1
            got = await self.ask(chat, self.question(language), language)
            if got is not None and (found := self.handoff_re.search(got[0])) is not None:
                await self.wait_for_person(chat, language, int(found.group(1)), got[1])
            elif got is not None:
                self.talked.add(chat)
            await asyncio.sleep(random.uniform(args.think_min, args.think_max))

    async def wait_for_person(self, chat: int, language: str, ticket_id: int, answered_at: float) -> None:
        """Handed off: the bot stays silent until an agent replied and resolved the ticket."""
        self.results.handoffs += 1
        self.talked.discard(chat)
        if time.time() >= self.end:
            return  # the agents have gone home: nothing more is measured
        delivered: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self.handoffs.put_nowait(Handoff(chat, language, ticket_id, answered_at, delivered))
        try:
            at = await asyncio.wait_for(asyncio.shield(delivered),
                                        max(1.0, self.end + AGENT_DELIVERY_TIMEOUT_S - time.time()))
        except TimeoutError:
            return  # the run ended first
        if at is not None:  # None: the agent's reply failed or came too late (counted there); resolved anyway
            self.results.handoff_waits_ms.append((at - answered_at) * 1000)
        try:
            await self.crm.conversations.resolve(ticket_id=ticket_id, by_agent_id=random.choice(self.agents),
                                                 send_csat=False)
        except Exception as exc:
            self.results.agent_side_failures.append(f"resolve {ticket_id}: {exc!r}")
        self.talked.add(chat)

    async def agents_reply(self) -> None:
        """Agents answer at a steady pace: a waiting handoff first, else a conversation picked at random."""
        interval = 1.0 / self.args.agent_replies_per_s
        tick = time.monotonic()
        replies: set[asyncio.Task[None]] = set()
        while time.time() < self.end:
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            try:
                handoff: Handoff | None = self.handoffs.get_nowait()
            except asyncio.QueueEmpty:
                handoff = None
                if not self.talked:
                    continue
            task = asyncio.create_task(self.agent_reply(handoff))
            replies.add(task)
            task.add_done_callback(replies.discard)
        while not self.handoffs.empty():  # handed off too late for an agent: they stop waiting
            self.handoffs.get_nowait().delivered.set_result(None)
            self.unserved_handoffs += 1
        await asyncio.gather(*replies)

    async def agent_reply(self, handoff: Handoff | None) -> None:
        crm = self.crm
        agent = random.choice(self.agents)
        at: float | None = None
        try:
            if handoff is not None:
                chat, language = handoff.chat, handoff.language
                ticket = await crm.conversations.get_ticket(ticket_id=handoff.ticket_id)
                await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent, by_agent_id=agent)
                conversation_id = ticket.conversation_id
            else:
                chat = random.choice(sorted(self.talked))
                language = self.languages[chat]
                [last] = await crm.conversations.history(channel="telegram", external_id=str(chat), limit=1)
                conversation_id = last.conversation_id
            token = next(self.agent_tokens)
            body = (f"您好，我是客服，正在为您查询，请稍候。[ref {token}]" if language == "zh"
                    else f"Hi, this is the Kefu Tea & Co. team: I'm looking into this for you now. [ref {token}]")
            delivered: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            recorded = time.time()
            self.observed.agent_waiting[token] = (recorded, delivered)
            self.pending_agent.append(delivered)
            self.results.agent_recorded += 1
            await crm.conversations.record_outgoing(conversation_id=conversation_id, sender="agent",
                                                    agent_id=agent, text=body)
            try:
                at = await asyncio.wait_for(asyncio.shield(delivered), AGENT_DELIVERY_TIMEOUT_S)
            except TimeoutError:
                self.results.agent_late += 1
            else:
                self.results.agent_latencies.append((at - recorded) * 1000)
        except Exception as exc:
            where = f"ticket {handoff.ticket_id}" if handoff is not None else "a sampled chat"
            self.results.agent_side_failures.append(f"agent reply to {where}: {exc!r}")
        finally:
            if handoff is not None and not handoff.delivered.done():
                handoff.delivered.set_result(at)

    async def run(self) -> None:
        stopping = asyncio.Event()
        follower = asyncio.create_task(self.observed.follow(stopping))
        self.start = time.time()
        self.end = self.start + self.args.seconds
        customers = [asyncio.create_task(self.customer(chat)) for chat in self.chats]
        agents = asyncio.create_task(self.agents_reply())
        progress = asyncio.create_task(self.progress())
        lag = asyncio.create_task(self.measure_loop_lag())
        try:
            await asyncio.wait_for(asyncio.gather(*customers, agents),
                                   self.args.seconds + ANSWER_TIMEOUT_S + AGENT_DELIVERY_TIMEOUT_S + 30)
        finally:
            progress.cancel()
            lag.cancel()
            for task in [*customers, agents]:
                task.cancel()
            await asyncio.gather(*customers, agents, progress, lag, return_exceptions=True)
            self.observed.catch_up()
            stopping.set()
            await follower

    async def measure_loop_lag(self) -> None:
        """How late this process's event loop wakes (its answers' timestamps are that late too)."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.1)
            self.loop_lag_ms.append((time.monotonic() - started - 0.1) * 1000)

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(10)
            recent = [ms for at, ms in self.results.latencies if at + ms / 1000 > time.time() - 10]
            p = percentiles(recent)
            say(f"t={time.time() - self.start:.0f}s turns={self.results.turns_started} "
                f"answered={len(self.results.latencies)} p50={p['p50']}ms p95={p['p95']}ms (answered in the last "
                f"10 s) "
                f"unanswered={self.results.unanswered} handoffs={self.results.handoffs} "
                f"agent replies={len(self.results.agent_latencies)}/{self.results.agent_recorded} "
                f"webhook backlog={self.tg.webhook_backlog}")


# --- measurements of the machine ------------------------------------------------------------------------------


def process_cpu() -> dict[int, tuple[str, float]]:
    """Every process's command name and CPU seconds so far, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        found[int(entry.name)] = (raw[raw.index("(") + 1: raw.rindex(")")], (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_by_group(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: dict[int, str],
                 elapsed: float, busy_cores: float) -> dict[str, float]:
    """Cores used over the run: this run's processes by name, PostgreSQL, Redis, everything else."""
    used: dict[str, float] = defaultdict(float)
    for pid, (name, seconds) in after.items():
        spent = seconds - (before[pid][1] if pid in before and before[pid][0] == name else 0.0)
        group = ours.get(pid) or {"postgres": "postgresql (all its databases)", "redis-server": "redis"}.get(
            name, "other processes (other users' tests...)")
        used[group] += spent / elapsed
    cores = {group: round(value, 2) for group, value in sorted(used.items())}
    cores["processes that ended during the run"] = round(max(0.0, busy_cores - sum(used.values())), 2)
    return cores


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    ordered = sorted(times)
    best = first = 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


# --- set-up and clean-up ---------------------------------------------------------------------------------------


async def run_command(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> float:
    """`kefu ARGS` to the end; the seconds it took."""
    started = time.monotonic()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "kefu.cli", *args, cwd=cwd, env=env,
                                                       stdout=out, stderr=asyncio.subprocess.STDOUT)
        code = await process.wait()
    if code != 0:
        output = await asyncio.to_thread(log.read_text, errors="replace")
        raise RuntimeError(f"kefu {' '.join(args)} failed ({code}):\n{output[-3000:]}")
    return time.monotonic() - started


async def create_database(name: str) -> str:
    """A new, empty PostgreSQL database on the local server (as tests/conftest.py makes them); its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def drop_database(name: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def clean_redis(stream: str, bot_id: str, chats: list[int]) -> int:
    """Delete what this run left on the shared Redis: its stream and the keys named after it (delivery marks),
    its bot's send slots, its chats' state."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    ours = {str(chat) for chat in chats}
    try:
        keys: list[Any] = [stream]
        for pattern in (f"{stream}:*", f"kefu:send:{bot_id}:*", f"fsm:{bot_id}:*"):
            keys += [key async for key in client.scan_iter(match=pattern, count=1000)]
        # Kefu's chat state (bot.state): fsm:telegram:<chat>:telegram:<chat>:kefu:data
        async for key in client.scan_iter(match="fsm:telegram:*", count=1000):
            if key.decode().split(":")[2] in ours:
                keys.append(key)
        deleted = 0
        for start in range(0, len(keys), 500):
            deleted += await client.delete(*keys[start:start + 500])
        return int(deleted)
    finally:
        await client.aclose()


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bot.telegram import webhook_path
    from crm_store.settings import StoreSettings
    from kefu.runtime import open_crm
    from tests.fake_telegram import FakeTelegram
    from tests.processes import Cluster, kefu_env

    db_name = f"kefu_bench_{secrets.token_hex(6)}"
    stream = f"kefu:bench:{secrets.token_hex(6)}"
    bot_id = str(random.randrange(7_000_000_000, 7_999_999_999))  # its own send slots and aiogram keys
    token = f"{bot_id}:BENCH-{secrets.token_urlsafe(24)}"
    secret = secrets.token_urlsafe(24)
    base_chat = random.randrange(10**9, 2 * 10**9)
    chats = [base_chat + i for i in range(args.customers)]
    warm_chats = [base_chat - 1 - i for i in range(2 * args.bots)]
    nlu_dir = workdir / "nlu-model"
    cluster: Cluster | None = None
    crm = None
    load: Load | None = None
    report: dict[str, Any] = {}
    database_url = await create_database(db_name)
    try:
        async with FakeTelegram() as tg:
            env = kefu_env(database_url=database_url, redis_url=REDIS_URL, stream=stream,
                           telegram_api_base=tg.base_url, token=token, nlu_model_dir=nlu_dir,
                           bot_webhook_url="https://kefu.example", bot_webhook_secret=secret)
            setup_env = {k: v for k, v in env.items() if k != "KEFU_REDIS_URL"}
            started = time.monotonic()
            say(f"setting up {db_name}: the sample shop and the NLU model")
            setup_s = dict(zip(("demo --no-serve", "nlu train"), await asyncio.gather(
                run_command(["demo", "--no-serve"], setup_env, workdir, workdir / "demo.log"),
                run_command(["nlu", "train", "--out", str(nlu_dir)], setup_env, workdir, workdir / "nlu.log"),
            ), strict=True))
            say(f"set up in {time.monotonic() - started:.0f} s; starting {args.bots} bot processes and a worker")

            cluster = Cluster(env, workdir)
            started = time.monotonic()
            roles = ["bot"] * args.bots + ["worker"]
            processes = await asyncio.gather(*(cluster.start(role) for role in roles))
            bots = processes[: args.bots]
            setup_s["processes ready"] = time.monotonic() - started
            say(f"processes ready in {setup_s['processes ready']:.0f} s")
            path = webhook_path(secret)
            tg.deliver_to([f"http://127.0.0.1:{p.port}{path}" for p in bots], secret,
                          max_connections=WEBHOOK_CONNECTIONS, attempts=100_000, retry_delay=0.2)

            crm = await open_crm(StoreSettings(database_url=database_url, redis_url=REDIS_URL,
                                               event_stream=stream))
            agents = [a.id for a in await crm.agents.list_agents() if a.active]
            assert agents, "the sample shop has no agents"

            # Warm-up (not measured): each bot process answers in both languages once.
            warm = time.monotonic()
            pools = question_pools()
            for i, chat in enumerate(warm_chats):
                language = "en" if i < args.bots else "zh"
                tg.user_message(chat, pools[language][0], language_code="zh-hans" if language == "zh" else "en")
            for chat in warm_chats:
                await tg.wait_for_messages(chat, 1, timeout=120)
            setup_s["warm-up"] = time.monotonic() - warm
            say(f"warmed up in {setup_s['warm-up']:.1f} s; {args.customers} customers for {args.seconds} s")

            load = Load(args, tg, crm, agents, chats)
            pids = {f"{p.role}-{i}": p.process.pid for i, p in enumerate(processes)}
            ours = {pid: name for name, pid in pids.items()}
            ours[os.getpid()] = "bench (this process, with the fake Telegram)"
            cpu_before = process_cpu()
            busy_before = machine_busy()
            load_before = os.getloadavg()
            await load.run()
            load_after = os.getloadavg()
            elapsed = time.time() - load.start
            busy_after = machine_busy()
            cpu_after = process_cpu()
            rss = {name: peak_rss_mb(pid) for name, pid in pids.items()}
            rss["bench (this process, with the fake Telegram)"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
            cpu = cpu_by_group(cpu_before, cpu_after, ours, elapsed, busy * (os.cpu_count() or 1))
            report = summarize(args, load, tg, elapsed, rss, cpu, busy)
            report["machine"] = {"cpus": os.cpu_count(), "load_average_1min_before": round(load_before[0], 2),
                                 "load_average_1min_after": round(load_after[0], 2)}
            report["setup_s"] = {step: round(s, 1) for step, s in setup_s.items()}
            say("stopping the processes")
            await cluster.stop_all()
            report["processes_exit_codes"] = {f"{p.role}-{i}": p.process.returncode for i, p in enumerate(processes)}
            report["processes_exit_codes_note"] = (
                "0: stopped gracefully on SIGTERM (intake stopped, work in flight finished, connections closed)")
            if args.keep_logs:
                report["logs"] = str(workdir)
    finally:
        if cluster is not None:
            await cluster.stop_all()
        if crm is not None:
            await crm.close()
        with contextlib.suppress(Exception):
            await drop_database(db_name)
        try:
            deleted = await clean_redis(stream, bot_id, [*chats, *warm_chats])
            say(f"dropped {db_name}; deleted {deleted} Redis keys")
        except Exception as exc:
            say(f"could not clean Redis: {exc!r}")
    return report


def summarize(args: argparse.Namespace, load: Load, tg: Any, elapsed: float, rss: dict[str, Any],
              cpu: dict[str, float], busy: float) -> dict[str, Any]:
    results, observed = load.results, load.observed
    seconds = args.seconds
    in_window = [(at, ms) for at, ms in results.latencies if at <= load.end]
    handled = len(in_window)
    answered_in_window = sum(1 for at, ms in results.latencies if at + ms / 1000 <= load.end)
    last_answer = max((at + ms / 1000 for at, ms in results.latencies), default=load.end)
    statuses = tg.webhook_statuses
    non_2xx = [s for s in statuses if not 200 <= s < 300]
    still_waiting = sum(1 for f in load.pending_agent if not f.done())
    per_bot = {token.split(":")[0]: max_in_window(times) for token, times in observed.send_times.items()}
    pairs = [(b[0] - a[0], f"{a[1]} then {b[1]}") for sends in map(sorted, observed.chat_times.values())
             for a, b in itertools.pairwise(sends)]
    gaps = [gap for gap, _ in pairs]
    short_gaps: dict[str, int] = defaultdict(int)
    for gap, kinds in pairs:
        if gap < 1.0:
            short_gaps[kinds] += 1
    buckets: dict[int, list[float]] = defaultdict(list)
    for at, ms in results.latencies:
        buckets[int((at - load.start) // 10) * 10].append(ms)
    bot_per_turn = observed.bot_messages / max(1, len(results.latencies))
    mean_think = (args.think_min + args.think_max) / 2
    latency = percentiles([ms for _, ms in in_window])
    expected_turns = args.customers / (mean_think + (latency["p50"] or 0) / 1000)
    errors = {
        "webhook_non_2xx": len(non_2xx),
        "webhook_non_2xx_statuses": sorted(set(non_2xx)),
        "turns_without_answer_in_30s": results.unanswered,
        "agent_replies_not_delivered_in_60s": results.agent_late,
        "bot_send_calls_failed": len(observed.failed_sends),
        "agent_side_failures (bench's CRM calls)": len(results.agent_side_failures),
        "updates_left_undelivered": len(tg.pending_updates) + tg.webhook_backlog,
    }
    errors["total"] = sum(v for k, v in errors.items() if isinstance(v, int))
    return {
        "benchmark": "telegram webhook load (bench/load_telegram.py)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "customers": args.customers,
        "seconds": seconds,
        "bot_processes": args.bots,
        "worker_processes": 1,
        "webhook": {"max_connections": WEBHOOK_CONNECTIONS, "posts": len(statuses), "non_2xx": len(non_2xx)},
        "messages_handled": handled,
        "messages_per_s": round(answered_in_window / seconds, 2),
        "messages_per_s_note": "answers that arrived within the measured seconds; the turns asked in them were "
                               f"all answered {round(last_answer - load.end, 1)} s after the end",
        "reply_latency_ms": latency,
        "reply_latency_p50_p95_by_10s": {
            f"{start}-{start + 10}s": [percentiles(v)["p50"], percentiles(v)["p95"], len(v)]
            for start, v in sorted(buckets.items())
        },
        "agent_reply_delivery_ms": {**percentiles(results.agent_latencies), "count": len(results.agent_latencies),
                                    "recorded": results.agent_recorded},
        "handoffs": {"count": results.handoffs,
                     "wait_for_agent_reply_ms": percentiles(results.handoff_waits_ms),
                     "not_served_before_the_end": load.unserved_handoffs},
        "offered_load": {
            "think_s": [args.think_min, args.think_max],
            "turns_started": results.turns_started,
            "turns_per_s": round(results.turns_started / seconds, 2),
            "expected_turns_per_s": round(expected_turns, 2),
            "bot_messages_per_turn": round(bot_per_turn, 3),
            "bot_messages_per_s": round(observed.bot_messages / elapsed, 2),
            "agent_replies_per_s": round(observed.agent_messages / elapsed, 2),
            "agent_replies_asked_per_s": args.agent_replies_per_s,
            "outgoing_messages_per_s": round((observed.bot_messages + observed.agent_messages) / elapsed, 2),
            "telegram_limit_per_bot_per_s": TELEGRAM_PER_BOT_PER_S,
            "chinese_customers": sum(1 for lang in load.languages.values() if lang == "zh"),
        },
        "telegram_side": {
            "max_sends_in_any_1s_per_bot": per_bot,
            "min_gap_per_chat_ms": round(min(gaps) * 1000, 1) if gaps else None,
            "gaps_under_1s_per_chat": sum(1 for g in gaps if g < 1.0),
            "gaps_under_1s_by_sender": dict(short_gaps),
            "gaps_per_chat": len(gaps),
        },
        "errors": errors,
        "bench_event_loop_lag_ms": percentiles(load.loop_lag_ms),
        "error_samples": observed.failed_sends[:5] + results.agent_side_failures[:5] + tg.webhook_failures[:5]
        + ([f"agent replies still undelivered at the end: {still_waiting}"] if still_waiting else []),
        "peak_rss_mb": rss,
        "cpu_cores_used": {**cpu, "whole machine busy (share of all cores)": round(busy, 2)},
        "measured_s": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--bots", type=int, default=2, help="bot processes behind the webhook")
    parser.add_argument("--think-min", type=float, default=15.0, help="seconds a customer thinks, at least")
    parser.add_argument("--think-max", type=float, default=30.0, help="...and at most")
    parser.add_argument("--agent-replies-per-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (the folder is named)")
    args = parser.parse_args()
    if args.think_min < 2 or args.think_max < args.think_min:
        parser.error("--think-min must be at least 2 s (one message a second per chat) and not above --think-max")
    random.seed(args.seed)
    run_and_report(bench, args, prefix="kefu-load-")


def run_and_report(bench: Any, args: argparse.Namespace, *, prefix: str) -> None:
    """Run `bench(args, workdir)` in a fresh work folder (removed after unless --keep-logs, kept on failure), print
    its JSON report and write it to --out."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        report = asyncio.run(bench(args, workdir))
    except BaseException:
        say(f"failed; the processes' logs are kept in {workdir}")
        raise
    if not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    out = json.dumps(report, ensure_ascii=False, indent=2)
    print(out)
    if args.out is not None:
        args.out.write_text(out + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
