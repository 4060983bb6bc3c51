"""A message campaign to thousands of Telegram customers, sent by real `kefu worker` processes on PostgreSQL and
Redis: how fast it goes out against Telegram's 30 messages a second for one bot, and whether it reaches every
consenting customer once and no one who opted out.

    .venv/bin/python bench/campaign_send.py [--customers 3000] [--per-second 25] [--workers 1]
        [--opted-out-every 10] [--keep-logs] [--out FILE]

A fresh database `kefu_bench_<random>` gets the schema (`kefu db upgrade`) and the customers, inserted in bulk: each
with a Telegram chat, the tag "newsletter" and marketing consent, every Nth one having withdrawn it. The worker
processes (`kefu worker`: no NLU model, it only delivers and runs the timers) start against them, the real Redis (a
stream of this run's own) and the fake Telegram Bot API server of the tests (tests/fake_telegram.py, in this
process), with a bot id of this run's own so its send slots (bot.ratelimit) are shared with no one else. Then a
message campaign to the tag is created and launched through the CRM, as the console does, and the run waits until
every consenting customer's chat got it.

The campaign is recorded a batch at a time (at most `per_second` customers in one transaction, one batch a second
however many workers: crm_store.services.campaigns) and delivered through the event stream by the workers' delivery
loop, which keeps Telegram's limits. Each second the run samples what was recorded, what reached the fake, and the
stream's pending entries and lag, to show whether recording outruns delivery (a backlog that grows) or delivery
waits on recording (a backlog near zero, the send rate set by the batches).

Prints one JSON object on stdout (and writes it to --out); progress on stderr. Everything made (the processes, the
database, the Redis stream and keys) is removed at the end, also when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import resource
import secrets
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fake_telegram, tests.processes, bench.load_telegram

from bench.load_telegram import (  # noqa: E402 - after the path above
    REDIS_URL,
    create_database,
    drop_database,
    max_in_window,
    peak_rss_mb,
    percentiles,
    run_and_report,
    run_command,
    say,
)
from crm_store.services.campaigns import MAX_PER_SECOND  # noqa: E402 - after the path above

TAG = "newsletter"
TEXT = "Hi {customer.first_name}, spring teas are in!"
SAMPLE_EVERY_S = 1.0
LATE_DUPLICATES_S = 5.0  # after the last chat was reached: anything sent twice would show by now


@dataclass
class Sample:
    at: float  # seconds since the launch
    recorded: int  # campaign recipients recorded (messages queued for delivery)
    sent_db: int  # marked sent in the database (after Telegram accepted)
    sent_telegram: int  # accepted by the fake Telegram
    stream_pending: int | None  # entries taken by a worker and not acknowledged
    stream_lag: int | None  # entries not yet taken by any worker


@dataclass
class Sends:
    """What the fake Telegram saw, read as it comes."""

    tg: Any
    ours: set[str]
    cursor: int = 0
    at_by_chat: dict[str, list[float]] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    texts: Counter[str] = field(default_factory=Counter)
    strangers: int = 0  # sends to chats that are not this run's customers

    def catch_up(self) -> None:
        calls = self.tg.sent[self.cursor:]
        self.cursor += len(calls)
        for call in calls:
            if call.method != "sendMessage":
                continue
            chat = str(call.params.get("chat_id"))
            if not call.ok:
                self.failed.append(f"{chat}: {call.error.get('description')}")
                continue
            if chat not in self.ours:
                self.strangers += 1
            self.at_by_chat.setdefault(chat, []).append(call.at)
            self.times.append(call.at)
            self.texts[str(call.params.get("text"))] += 1


async def seed_customers(crm: Any, count: int, *, opted_out_every: int, base_chat: int) -> tuple[list[str],
                                                                                                 list[str]]:
    """`count` customers in two bulk inserts, each with a Telegram chat (base_chat + n) and the tag; every
    `opted_out_every`-th one withdrew consent (0: no one). (the consenting chats, the opted-out chats)."""
    from sqlalchemy import insert

    from crm_store import models as m

    now = datetime.now(UTC)

    def consents(n: int) -> bool:
        return not opted_out_every or n % opted_out_every != opted_out_every - 1

    async with crm.db.sessionmaker() as session:
        ids = (await session.scalars(
            insert(m.Customer).returning(m.Customer.id, sort_by_parameter_order=True),
            [{"name": f"Customer {n:05d}", "language": "en", "tags": [TAG], "marketing_consent": consents(n),
              "marketing_consent_at": now} for n in range(count)],
        )).all()
        await session.execute(insert(m.ChannelIdentity), [
            {"customer_id": customer_id, "channel": "telegram", "external_id": str(base_chat + n),
             "display_name": f"Customer {n:05d}"} for n, customer_id in enumerate(ids)])
        await session.commit()
    chats = [(str(base_chat + n), consents(n)) for n in range(count)]
    return [c for c, yes in chats if yes], [c for c, yes in chats if not yes]


async def stream_state(stream: str, group: str) -> dict[str, int | None]:
    """The stream's length, its delivery group's pending entries and lag, the dead letters' length."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        state: dict[str, int | None] = {"length": int(await client.xlen(stream)), "pending": None, "lag": None,
                                        "dead_letters": int(await client.xlen(f"{stream}:dead"))}
        with contextlib.suppress(Exception):  # no group yet
            for info in await client.xinfo_groups(stream):
                name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                if name == group:
                    state["pending"] = int(info.get("pending") or 0)
                    state["lag"] = None if info.get("lag") is None else int(info["lag"])
        return state
    finally:
        await client.aclose()


async def clean_redis(stream: str, bot_id: str) -> int:
    """Delete what this run left on the shared Redis: its stream and the keys named after it (dead letters,
    delivery marks), its bot's send slots (bot.ratelimit: kefu:send:<bot id>:...)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        keys: list[Any] = [stream]
        for pattern in (f"{stream}:*", f"kefu:send:{bot_id}:*"):
            keys += [key async for key in client.scan_iter(match=pattern, count=1000)]
        deleted = 0
        for start in range(0, len(keys), 500):
            deleted += await client.delete(*keys[start:start + 500])
        return int(deleted)
    finally:
        await client.aclose()


async def enqueue_times(crm: Any, campaign_id: int) -> dict[str, float]:
    """When each recipient's message was recorded (the worker's clock, this machine's), by chat."""
    from sqlalchemy import select

    from crm_store import models as m

    async with crm.db.sessionmaker() as session:
        rows = (await session.execute(
            select(m.ChannelIdentity.external_id, m.Message.created_at)
            .join(m.CampaignRecipient, m.CampaignRecipient.customer_id == m.ChannelIdentity.customer_id)
            .join(m.Message, m.Message.id == m.CampaignRecipient.message_id)
            .where(m.CampaignRecipient.campaign_id == campaign_id, m.ChannelIdentity.channel == "telegram")
        )).all()
    return {chat: (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() for chat, at in rows}


def batches(times: list[float], *, apart_s: float = 0.3) -> list[tuple[float, float, int]]:
    """Recording times grouped into the campaign's batches (one transaction each; batches are about a second
    apart): (first, last, size) each."""
    found: list[tuple[float, float, int]] = []
    for at in sorted(times):
        if found and at - found[-1][1] < apart_s:
            first, _, size = found[-1]
            found[-1] = (first, at, size + 1)
        else:
            found.append((at, at, 1))
    return found


def cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bot.delivery import GROUP
    from bot.settings import BotSettings
    from crm_store.settings import StoreSettings
    from kefu.runtime import open_crm
    from tests.fake_telegram import FakeTelegram
    from tests.processes import Cluster, kefu_env

    db_name = f"kefu_bench_{secrets.token_hex(6)}"
    stream = f"kefu:bench:{secrets.token_hex(6)}"
    bot_id = str(7_000_000_000 + secrets.randbelow(999_999_999))  # its own send slots
    token = f"{bot_id}:BENCH-{secrets.token_urlsafe(24)}"
    base_chat = 10**9 + secrets.randbelow(10**9)
    limit = BotSettings.model_fields["send_per_second"].default
    cluster: Cluster | None = None
    crm = None
    report: dict[str, Any] = {}
    load_before = os.getloadavg()
    database_url = await create_database(db_name)
    try:
        async with FakeTelegram() as tg:
            # The worker loads no NLU model (only `kefu bot` does): the folder is named and never made.
            env = kefu_env(database_url=database_url, redis_url=REDIS_URL, stream=stream,
                           telegram_api_base=tg.base_url, token=token, nlu_model_dir=workdir / "no-nlu-model")
            say(f"migrating {db_name} (kefu db upgrade)")
            setup_s = {"kefu db upgrade": await run_command(
                ["db", "upgrade"], {k: v for k, v in env.items() if k != "KEFU_REDIS_URL"}, workdir,
                workdir / "db-upgrade.log")}

            crm = await open_crm(StoreSettings(database_url=database_url, redis_url=REDIS_URL,
                                               event_stream=stream))
            started = time.monotonic()
            consenting, opted_out = await seed_customers(crm, args.customers, opted_out_every=args.opted_out_every,
                                                         base_chat=base_chat)
            setup_s["seed customers"] = time.monotonic() - started
            say(f"{args.customers} customers in {setup_s['seed customers']:.1f} s ({len(consenting)} consenting); "
                f"starting {args.workers} worker(s)")

            cluster = Cluster(env, workdir)
            started = time.monotonic()
            workers = await asyncio.gather(*(cluster.start("worker") for _ in range(args.workers)))
            setup_s["workers ready"] = time.monotonic() - started

            campaign = await crm.campaigns.create(
                name="Spring teas (bench)", kind="message", per_second=args.per_second,
                rules={"field": "tags", "op": "has_any", "value": [TAG]}, message={"en": TEXT})
            audience = await crm.campaigns.audience(campaign_id=campaign.id)
            cpu_before = {w.process.pid: cpu_seconds(w.process.pid) for w in workers}
            load_at_launch = os.getloadavg()
            await crm.campaigns.launch(campaign_id=campaign.id)
            launched = time.time()
            say(f"launched campaign {campaign.id} to {audience[1]} of {audience[0]} members, "
                f"{args.per_second} a second")

            sends = Sends(tg, ours={*consenting, *opted_out})
            samples: list[Sample] = []
            loop_lag_ms: list[float] = []
            timeout_s = 60 + 5 * len(consenting) / args.per_second
            next_sample = next_say = 0.0
            while len(set(sends.at_by_chat) & set(consenting)) < len(consenting):
                if time.time() - launched > timeout_s:
                    raise RuntimeError(f"only {len(sends.at_by_chat)} of {len(consenting)} consenting customers "
                                       f"reached in {timeout_s:.0f} s:\n{workers[0].log()[-3000:]}")
                dead = [w for w in workers if w.process.returncode is not None]
                if dead:
                    raise RuntimeError(f"a worker exited ({dead[0].process.returncode}):\n{dead[0].log()[-3000:]}")
                asked = time.monotonic()
                await asyncio.sleep(0.2)
                loop_lag_ms.append((time.monotonic() - asked - 0.2) * 1000)
                sends.catch_up()
                now = time.time() - launched
                if now >= next_sample:
                    next_sample = now + SAMPLE_EVERY_S
                    samples.append(await sample(crm, campaign.id, sends, stream, GROUP, now))
                if now >= next_say:
                    next_say = now + 10
                    last = samples[-1]
                    say(f"t={now:.0f}s recorded={last.recorded} sent={last.sent_telegram} "
                        f"backlog={last.recorded - last.sent_telegram} pending={last.stream_pending} "
                        f"lag={last.stream_lag} last-10s rate="
                        f"{sum(1 for t in sends.times if t > time.time() - 10) / 10:.1f}/s")
            reached_all = time.time()
            say(f"every consenting customer reached in {reached_all - launched:.1f} s; "
                f"waiting {LATE_DUPLICATES_S:.0f} s for duplicates and the last marks")
            deadline = time.monotonic() + 30
            progress = await crm.campaigns.progress(campaign_id=campaign.id)
            while time.monotonic() < deadline and (progress.sent + progress.failed < progress.queued
                                                   or progress.campaign.status == "running"):
                await asyncio.sleep(0.5)
                progress = await crm.campaigns.progress(campaign_id=campaign.id)
            await asyncio.sleep(max(0.0, LATE_DUPLICATES_S - (time.time() - reached_all)))
            sends.catch_up()
            progress = await crm.campaigns.progress(campaign_id=campaign.id)
            stream_end = await stream_state(stream, GROUP)
            recorded_at = await enqueue_times(crm, campaign.id)
            elapsed = time.time() - launched
            cpu = {f"worker-{i}": round(((cpu_seconds(w.process.pid) or 0) - (cpu_before[w.process.pid] or 0))
                                        / elapsed, 2) for i, w in enumerate(workers)}
            rss = {f"worker-{i}": {"now": rss_mb(w.process.pid), "peak": peak_rss_mb(w.process.pid)}
                   for i, w in enumerate(workers)}
            rss["bench (this process, with the fake Telegram)"] = {
                "now": rss_mb(os.getpid()),
                "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            load_after = os.getloadavg()

            say("stopping the workers")
            await cluster.stop_all()
            report = summarize(
                args, consenting=consenting, opted_out=opted_out, sends=sends, samples=samples, progress=progress,
                stream_end=stream_end, recorded_at=recorded_at, launched=launched, reached_all=reached_all,
                audience=audience, limit=limit, loop_lag_ms=loop_lag_ms)
            report["worker_exit_codes"] = {f"worker-{i}": w.process.returncode for i, w in enumerate(workers)}
            report["cpu_cores_used"] = cpu
            report["rss_mb"] = rss
            report["machine"] = {
                "cpus": os.cpu_count(),
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_at_launch": [round(v, 2) for v in load_at_launch],
                "load_average_after": [round(v, 2) for v in load_after],
            }
            report["setup_s"] = {step: round(s, 1) for step, s in setup_s.items()}
            if args.keep_logs:
                report["logs"] = str(workdir)
    finally:
        if cluster is not None:
            await cluster.stop_all()
        if crm is not None:
            await crm.close()
        try:
            await drop_database(db_name)
            say(f"dropped {db_name}")
        except Exception as exc:
            say(f"could not drop {db_name}: {exc!r}")
        try:
            say(f"deleted {await clean_redis(stream, bot_id)} Redis keys")
        except Exception as exc:
            say(f"could not clean Redis: {exc!r}")
    return report


async def sample(crm: Any, campaign_id: int, sends: Sends, stream: str, group: str, at: float) -> Sample:
    progress = await crm.campaigns.progress(campaign_id=campaign_id)
    state = await stream_state(stream, group)
    return Sample(at=round(at, 1), recorded=progress.queued, sent_db=progress.sent, sent_telegram=len(sends.times),
                  stream_pending=state["pending"], stream_lag=state["lag"])


def summarize(args: argparse.Namespace, *, consenting: list[str], opted_out: list[str], sends: Sends,
              samples: list[Sample], progress: Any, stream_end: dict[str, int | None], recorded_at: dict[str, float],
              launched: float, reached_all: float, audience: tuple[int, int], limit: float,
              loop_lag_ms: list[float]) -> dict[str, Any]:
    times = sorted(sends.times)
    first, last = times[0], times[-1]
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    per_chat = {chat: len(at) for chat, at in sends.at_by_chat.items()}
    opted = set(opted_out)
    # Recorded (the worker's transaction) to accepted by Telegram, per message: the delivery's queueing.
    waits_s = [min(at) - recorded_at[chat] for chat, at in sends.at_by_chat.items() if chat in recorded_at]
    recorded = sorted(recorded_at.values())
    found = batches(recorded)
    starts = [b[0] for b in found]
    backlog = [s.recorded - s.sent_telegram for s in samples]
    return {
        "benchmark": "campaign send rate (bench/campaign_send.py)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "customers": args.customers,
        "consenting": len(consenting),
        "opted_out": len(opted_out),
        "audience_members_consenting": list(audience),
        "workers": args.workers,
        "campaign_per_second": args.per_second,
        "telegram_limit_per_bot_per_s": limit,
        "sent": len(times),
        "reached": sum(1 for chat in consenting if chat in per_chat),
        "sent_twice": sum(n - 1 for n in per_chat.values() if n > 1),
        "reached_opted_out": sum(1 for chat in per_chat if chat in opted),
        "sent_to_other_chats": sends.strangers,
        "failed_sends": len(sends.failed),
        "failed_samples": sends.failed[:5],
        "texts": dict(sends.texts.most_common(3)),
        "seconds": round(last - first, 1),
        "seconds_launch_to_first_send": round(first - launched, 2),
        "seconds_launch_to_last_send": round(reached_all - launched, 1),
        "sends_per_second": round((len(times) - 1) / (last - first), 2) if last > first else None,
        "max_sends_in_any_1s": max_in_window(times),
        "send_gap_ms": {**percentiles(gaps_ms), "min": round(min(gaps_ms), 1) if gaps_ms else None},
        "recording": {
            "recorded": len(recorded),
            # All but the last batch, over the time from the first batch to the last one's start.
            "per_second": round((len(recorded) - found[-1][2]) / (starts[-1] - starts[0]), 2)
            if len(found) > 1 else None,
            "max_in_any_1s": max_in_window(recorded),
            "batches": len(found),
            "batch_size_p50": statistics.median(b[2] for b in found) if found else None,
            "batch_duration_ms": percentiles([(b[1] - b[0]) * 1000 for b in found]),
            "batch_interval_ms": percentiles([(b - a) * 1000 for a, b in itertools.pairwise(starts)]),
            "note": "when each message was recorded (its row's created_at, the worker's clock); a batch is one "
                    "transaction of at most --per-second customers, run by each worker's timer every second (with "
                    "several workers their batches fall together and are counted as one)",
        },
        "recorded_to_sent_s": percentiles(waits_s),
        "backlog": {
            "max_recorded_not_sent": max(backlog, default=0),
            "recorded_not_sent_when_recording_ended": next(
                (s.recorded - s.sent_telegram for s in samples if launched + s.at >= recorded[-1]), None),
            "seconds_sending_after_recording_ended": round(last - recorded[-1], 1),
            "max_stream_pending": max((s.stream_pending or 0 for s in samples), default=0),
            "max_stream_lag": max((s.stream_lag or 0 for s in samples), default=0),
            "every_10s": [[s.at, s.recorded, s.sent_telegram, s.recorded - s.sent_telegram, s.stream_pending,
                           s.stream_lag] for s in samples[::10]],
            "every_10s_columns": ["s since launch", "recorded", "sent", "recorded not sent", "stream pending",
                                  "stream lag"],
        },
        "stream_at_end": stream_end,
        "campaign_progress": {
            "status": str(progress.campaign.status), "recipients": progress.recipients, "queued": progress.queued,
            "no_chat": progress.no_chat, "opted_out": progress.opted_out, "sent": progress.sent,
            "failed": progress.failed,
        },
        "bench_event_loop_lag_ms": percentiles(loop_lag_ms),
    }


async def cancellable(run: Any) -> dict[str, Any]:
    """SIGTERM ends the run as Ctrl+C does: cancelled, so the clean-up still runs."""
    task = asyncio.ensure_future(run)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--per-second", type=int, default=MAX_PER_SECOND,
                        help=f"the campaign's batch size (1 to {MAX_PER_SECOND})")
    parser.add_argument("--workers", type=int, default=1, help="`kefu worker` processes")
    parser.add_argument("--opted-out-every", type=int, default=10,
                        help="every Nth customer withdrew consent (0: no one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' logs (the folder is named)")
    args = parser.parse_args()
    if args.customers < 2 or not 1 <= args.per_second <= MAX_PER_SECOND or args.workers < 1 \
            or args.opted_out_every < 0 or args.opted_out_every == 1:
        parser.error(f"--customers at least 2, --per-second 1 to {MAX_PER_SECOND}, --workers at least 1, "
                     "--opted-out-every 0 or at least 2")
    run_and_report(lambda args, workdir: cancellable(bench(args, workdir)), args, prefix="kefu-campaign-")


if __name__ == "__main__":
    main()
