"""Search latency and memory at 1k, 10k and 100k articles, hybrid against plain dense and plain BM25.

The 125 StackFAQ articles are indexed with their real vectors among synthetic filler articles (random unit
vectors, questions drawn from a word list), and the StackFAQ dev queries are searched: latency includes
encoding each query once with the real model. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import os
import random
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
WORDS = ("order refund delivery account password payment card points tier reward coupon voucher tea cup "
         "shipping address invoice return exchange size colour warranty store opening hours membership "
         "gift parcel tracking courier discount price stock cancel subscription email phone login app "
         "update profile birthday bonus double weekend sale green oolong jasmine black pot kettle").split()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from knowledge_base.index import Segment
    from knowledge_base.ingest import read_articles
    from knowledge_base.search import search_segment
    from knowledge_base.service import Encoders, MemoryArticle
    from knowledge_base.settings import KbSettings
    from knowledge_base.text_en import tokenize_en

    settings = KbSettings()
    encoder = Encoders(settings).for_language("en")
    real = [MemoryArticle(id=i + 1, question=d.question, answer=d.answer, external_id=d.external_id)
            for i, (_, d) in enumerate(read_articles(SHARED / "stackfaq" / "faqs.jsonl").drafts)]
    real_vectors = [v[None, :] for v in encoder.encode_documents([a.question for a in real])]
    with (SHARED / "stackfaq" / "queries_dev.csv").open(encoding="utf-8") as f:
        queries = [r["query"] for r in csv.DictReader(f)][: args.queries]
    # The query path's precision (bfloat16 where the CPU has it) against float32 documents: the same vectors?
    exact = np.concatenate([encoder.encode_documents([q]) for q in queries])
    fast = np.concatenate([encoder.encode_queries([q]) for q in queries])
    agreement = (exact * fast).sum(axis=1)
    rng = random.Random(7)
    nprng = np.random.default_rng(7)
    from knowledge_base.search import QueryEncoding

    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        filler = size - len(real)
        articles = real + [
            MemoryArticle(id=10_000 + i, question=" ".join(rng.choices(WORDS, k=rng.randint(4, 10))) + "?",
                          answer=" ".join(rng.choices(WORDS, k=rng.randint(15, 40))), external_id=f"syn{i}")
            for i in range(filler)
        ]
        noise = nprng.standard_normal((filler, encoder.dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        vectors = real_vectors + [noise[i : i + 1] for i in range(filler)]
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        segment = Segment(language="en", articles=articles, vectors=vectors, tokenizer=tokenize_en, settings=settings)
        build_s = time.perf_counter() - started
        index_mb = rss_mb() - before
        hybrid, dense_t, bm25_t, encode_t = [], [], [], []
        for q in queries:
            t0 = time.perf_counter()
            vector = encoder.encode_queries([q])[0]
            t1 = time.perf_counter()
            search_segment(segment, QueryEncoding(q, "en", encoder.name, vector), settings, k=5)
            t2 = time.perf_counter()
            scores = segment.dense @ vector  # plain dense: one vector per article here
            np.argpartition(-scores, 10)[:10]
            t3 = time.perf_counter()
            bm = segment.bm25_scores(q)
            np.argpartition(-bm, 10)[:10]
            t4 = time.perf_counter()
            encode_t.append((t1 - t0) * 1000)
            hybrid.append((t2 - t0) * 1000)
            dense_t.append((t3 - t2 + t1 - t0) * 1000)
            bm25_t.append((t4 - t3) * 1000)
        results.append({
            "articles": size, "build_s": round(build_s, 2), "index_rss_mb": round(index_mb, 1),
            "dense_matrix_mb": round(segment.dense.nbytes / 2**20, 1),
            "hybrid_ms": percentiles(hybrid), "dense_ms": percentiles(dense_t), "bm25_ms": percentiles(bm25_t),
            "encode_ms": percentiles(encode_t),
        })
        del segment, articles, vectors, noise
    print(json.dumps({
        "queries": len(queries), "query_precision": getattr(encoder, "query_precision", "float32"),
        "query_vs_float32_cosine": {"min": round(float(agreement.min()), 6), "mean": round(float(agreement.mean()), 6)},
        "rss_mb": round(rss_mb(), 1), "sizes": results,
    }))


if __name__ == "__main__":
    asyncio.run(main())
