"""The FAQ flow end to end: messages/s and latency through the web chat API and through Telegram, against the raw
encoder's batch-1 and batch-64 throughput in the same run.

    .venv/bin/python bench/bot_faq.py [--messages 300] [--articles 1000]

A fresh SQLite database gets a 1,000-article knowledge base (StackFAQ's 125 FAQs among synthetic filler
articles) and Kefu's NLU (trained on nlu/data). StackFAQ dev queries are then sent one at a time, each from a new
visitor / chat: through a real uvicorn server (POST /webchat/api/messages), and through aiogram's real polling
loop against the fake Telegram Bot API server of the tests (update injected -> sendMessage received). Every
message is stored, encoded once, classified, searched, answered and the answer stored, as in production.
Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
sys.path.insert(0, str(ROOT))  # tests.fake_telegram
WORDS = ("order refund delivery account password payment card points tier reward coupon voucher tea cup shipping "
         "address invoice return exchange size colour warranty store opening hours membership gift parcel").split()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stats(latencies_ms: list[float], seconds: float) -> dict[str, Any]:
    return {"messages": len(latencies_ms), "messages_per_s": round(len(latencies_ms) / seconds, 2),
            "latency_ms": {"p50": round(float(np.percentile(latencies_ms, 50)), 2),
                           "p95": round(float(np.percentile(latencies_ms, 95)), 2)}}


async def build(workdir: Path, articles: int) -> tuple[Any, Any, Any]:
    from crm_store.bus import InProcessEventBus
    from crm_store.crm import CRM
    from crm_store.db import Database
    from crm_store.dto import ArticleInput
    from crm_store.settings import StoreSettings
    from kefu.runtime import open_knowledge_base, upgrade_database
    from knowledge_base.ingest import read_articles
    from knowledge_base.service import Encoders
    from knowledge_base.settings import KbSettings
    from nlu.pipeline import DEFAULT_DATA, NluModel
    from nlu.training_data import load_training_data

    settings = StoreSettings(database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}")
    await upgrade_database(settings.database_url)
    crm = CRM(db=Database(settings.database_url), events=InProcessEventBus(), settings=settings)
    real = [d for _, d in read_articles(SHARED / "stackfaq" / "faqs.jsonl").drafts]
    rng = random.Random(7)
    inputs = [ArticleInput(question=d.question, answer=d.answer, language="en", external_id=d.external_id)
              for d in real]
    inputs += [ArticleInput(question=" ".join(rng.choices(WORDS, k=rng.randint(4, 10))) + "?",
                            answer=" ".join(rng.choices(WORDS, k=rng.randint(15, 40))), language="en",
                            external_id=f"syn{i}") for i in range(articles - len(inputs))]
    for start in range(0, len(inputs), 500):
        await crm.knowledge.upsert_articles(articles=inputs[start : start + 500])
    encoders = Encoders(KbSettings())
    say(f"encoding {len(inputs)} articles")
    kb = await open_knowledge_base(crm, follow_changes=False, encoders=encoders)
    say("training the NLU")
    nlu = NluModel.train(load_training_data(DEFAULT_DATA), encoders=encoders)
    return crm, kb, nlu


async def webchat_path(engine: Any, queries: list[str]) -> dict[str, Any]:
    import httpx
    import uvicorn

    from bot.webchat import WebchatHub, create_webchat_app

    sock = socket.socket()
    # Accepted connections inherit it: without, every response waits ~40 ms for a delayed ACK (Nagle), as
    # uvicorn does not set it on sockets it is handed.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_webchat_app(engine, WebchatHub()), log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.05)
    latencies = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        await client.post("/webchat/api/messages", json={"visitor_id": "warm-up", "text": "hello"})
        started = time.perf_counter()
        for i, query in enumerate(queries):
            t0 = time.perf_counter()
            response = await client.post("/webchat/api/messages", json={"visitor_id": f"w{i}", "text": query})
            response.raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        seconds = time.perf_counter() - started
    server.should_exit = True
    await task
    return stats(latencies, seconds)


async def telegram_path(engine: Any, queries: list[str]) -> dict[str, Any]:
    from bot.telegram import TelegramChannel
    from tests.fake_telegram import FakeTelegram

    async with FakeTelegram() as tg:
        bot = tg.bot()
        channel = TelegramChannel(bot, engine)
        polling = asyncio.create_task(channel.start_polling(polling_timeout=1))
        tg.user_message(1, "hello")
        await tg.wait_for_messages(1, 1, timeout=60)
        latencies = []
        started = time.perf_counter()
        for i, query in enumerate(queries):
            chat = 1000 + i
            t0 = time.perf_counter()
            tg.user_message(chat, query)
            await tg.wait_for_messages(chat, 1, timeout=60)
            latencies.append((time.perf_counter() - t0) * 1000)
        seconds = time.perf_counter() - started
        await channel.stop_polling()
        await polling
        await bot.session.close()
    return stats(latencies, seconds)


def encoder_throughput(encoder: Any, queries: list[str]) -> dict[str, Any]:
    encoder.encode_queries([queries[0]])
    started = time.perf_counter()
    for query in queries:
        encoder.encode_queries([query])
    batch1 = len(queries) / (time.perf_counter() - started)
    started = time.perf_counter()
    encoder.encode_documents(queries)  # batches of 64
    batch64 = len(queries) / (time.perf_counter() - started)
    return {"batch1_per_s": round(batch1, 1), "batch64_per_s": round(batch64, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--paths", default="webchat,telegram", help="Which channels to measure.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bot.engine import DialogueEngine
    from nlu.service import LocalNlu

    with (SHARED / "stackfaq" / "queries_dev.csv").open(encoding="utf-8") as f:
        queries = [r["query"] for r in csv.DictReader(f)][: args.messages]
    with tempfile.TemporaryDirectory() as tmp:
        crm, kb, nlu = await build(Path(tmp), args.articles)
        engine = DialogueEngine(crm=crm, kb=kb, nlu=LocalNlu(nlu))
        out: dict[str, Any] = {"articles": args.articles}
        paths = {"webchat": webchat_path, "telegram": telegram_path}
        for name in args.paths.split(","):
            say(f"{name}: {len(queries)} messages")
            out[name] = await paths[name](engine, queries)
        encoder = encoder_throughput(kb.encoders.for_language("en"), queries)
        await crm.close()
    out["encoder"] = encoder
    for name in paths:
        if name in out:
            out[f"ratio_{name}_to_encoder_batch1"] = round(out[name]["messages_per_s"] / encoder["batch1_per_s"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
