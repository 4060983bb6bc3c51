"""StackFAQ dev through the knowledge base's product path, with plain dense and plain BM25 in the same run.

Prints one JSON object. Data: ../shared/benchmarks/stackfaq (read from there, never copied).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faqs", type=Path, default=SHARED / "stackfaq" / "faqs.jsonl")
    parser.add_argument("--queries", type=Path, default=SHARED / "stackfaq" / "queries_dev.csv")
    parser.add_argument("--oos", type=Path, default=SHARED / "clinc150" / "data_full_train_val.json",
                        help="CLINC150 JSON: its oos_val questions must not be answered")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from knowledge_base.evaluate import LabelledQuery, evaluate
    from knowledge_base.ingest import read_articles
    from knowledge_base.service import KnowledgeBase, MemoryArticle, MemoryArticleStore
    from knowledge_base.settings import KbSettings

    parsed = read_articles(args.faqs)
    articles = [MemoryArticle(id=i + 1, question=d.question, answer=d.answer, language=d.language or "en",
                              alt_questions=d.alt_questions, external_id=d.external_id)
                for i, (_, d) in enumerate(parsed.drafts)]
    kb = KnowledgeBase(MemoryArticleStore(articles), KbSettings())
    started = time.perf_counter()
    await kb.refresh()
    build_s = time.perf_counter() - started
    with args.queries.open(encoding="utf-8") as f:
        queries = [LabelledQuery(r["query_id"], r["query"], r["faq_id"]) for r in csv.DictReader(f)]
    report = evaluate(kb, queries)
    if args.oos.exists():
        oos = [q for q, _ in json.loads(args.oos.read_text())["oos_val"]]
        answered = sum(kb.search(q).decision == "answer" for q in oos)
        report["oos"] = {"questions": len(oos), "answered_rate": answered / len(oos)}
    report.update(articles=len(articles), build_s=round(build_s, 2))
    print(json.dumps(report, indent=None, default=lambda x: round(x, 4)))


if __name__ == "__main__":
    asyncio.run(main())
