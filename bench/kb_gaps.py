"""The KB gaps page on 5,000 unanswered questions: the store's query, the clustering (cold: every phrasing encoded;
warm: the vectors cached), and the whole page through the console's ASGI app.

    .venv/bin/python bench/kb_gaps.py [--questions 5000] [--zh-share 0.1]

The questions are real customer-service questions: Banking77's training texts (English) and ATEC's sentences
(Chinese), from ../shared/benchmarks. They go into a fresh SQLite database (the embedded default), each as a
customer's message followed by the bot's no_answer, 5,000 conversations of 100 customers. Prints one JSON object on
stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.app import create_console_app  # noqa: E402
from console.settings import ConsoleSettings  # noqa: E402
from console.throttle import MemoryLoginThrottle  # noqa: E402
from crm_store import models as m  # noqa: E402
from crm_store.bus import InProcessEventBus  # noqa: E402
from crm_store.coltypes import utcnow  # noqa: E402
from crm_store.crm import CRM  # noqa: E402
from crm_store.db import Database  # noqa: E402
from crm_store.migrations import upgrade  # noqa: E402
from crm_store.settings import StoreSettings  # noqa: E402
from knowledge_base.service import KnowledgeBase  # noqa: E402
from knowledge_base.settings import KbSettings  # noqa: E402

DATA = ROOT.parent / "shared" / "benchmarks"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def questions(total: int, zh_share: float) -> list[str]:
    with (DATA / "banking77" / "train.csv").open(encoding="utf-8", newline="") as fh:
        english = list(dict.fromkeys(row["text"] for row in csv.DictReader(fh)))
    with (DATA / "atec_zh" / "pairs_dev.tsv").open(encoding="utf-8", newline="") as fh:
        chinese = list(dict.fromkeys(row["sentence1"] for row in csv.DictReader(fh, delimiter="\t")))
    zh = int(total * zh_share)
    return english[: total - zh] + chinese[:zh]


async def seed(db: Database, texts: list[str]) -> None:
    now = utcnow()
    async with db.sessionmaker() as session:
        customers = [m.Customer(name=f"Bench {n}") for n in range(100)]
        session.add_all(customers)
        await session.flush()
        conversations = [m.Conversation(customer_id=customers[n % 100].id) for n in range(len(texts))]
        session.add_all(conversations)
        await session.flush()
        for n, (conversation, text) in enumerate(zip(conversations, texts, strict=True)):
            at = now - timedelta(minutes=len(texts) - n)
            session.add_all([
                m.Message(conversation_id=conversation.id, direction="incoming", sender="customer", text=text,
                          payload={}, created_at=at),
                m.Message(conversation_id=conversation.id, direction="outgoing", sender="bot", text="Sorry",
                          payload={"decision": "no_answer"}, created_at=at + timedelta(seconds=1)),
            ])
        await session.commit()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=5000)
    ap.add_argument("--zh-share", type=float, default=0.1)
    args = ap.parse_args()
    texts = questions(args.questions, args.zh_share)
    out: dict[str, object] = {"questions": len(texts)}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade(url)
        db = Database(url)
        crm = CRM(db=db, events=InProcessEventBus(), settings=StoreSettings(database_url=url))
        say("seeding")
        await seed(db, texts)
        today = utcnow().date()
        started = time.perf_counter()
        asked = await crm.reports.unanswered_questions(start=today - timedelta(days=29), end=today)
        out["store_query_s"] = round(time.perf_counter() - started, 3)
        kb = KnowledgeBase(crm.knowledge, KbSettings())
        kb.encoders.for_language("en"), kb.encoders.for_language("zh")  # loaded, as in a serving process
        for run in ("cold", "warm"):
            say(f"clustering ({run})")
            started = time.perf_counter()
            clusters = await asyncio.to_thread(kb.cluster_questions, asked)
            out[f"cluster_{run}_s"] = round(time.perf_counter() - started, 3)
        out["asked"] = len(asked)
        out["topics"] = {lang: sum(c.language == lang for c in clusters) for lang in ("en", "zh")}
        out["largest_topics"] = [(c.language, c.count) for c in clusters[:5]]
        kb2 = KnowledgeBase(crm.knowledge, KbSettings(), encoders=kb.encoders)  # fresh cache: the page pays it all
        app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None), kb=kb2,
                                 throttle=MemoryLoginThrottle())
        admin = await crm.agents.create_agent(email="bench@example.com", name="Bench", password="correct horse",
                                              role="admin")
        session = await crm.agents.start_session(agent_id=admin.id, ttl=timedelta(hours=1))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                     cookies={"kefu_session": session.token}, timeout=600) as client:
            for run in ("cold", "warm"):
                started = time.perf_counter()
                page = await client.get("/kb/gaps")
                assert page.status_code == 200, page.text[:500]
                out[f"page_{run}_s"] = round(time.perf_counter() - started, 3)
        await db.dispose()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
