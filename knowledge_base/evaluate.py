"""Retrieval quality and decision rates of the knowledge base on a labelled query set, with baselines."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge_base.search import QueryEncoding
from knowledge_base.service import KnowledgeBase


@dataclass(frozen=True)
class LabelledQuery:
    query_id: str
    text: str
    gold: str  # the external id of the right article


def rank_metrics(rankings: Sequence[Sequence[str]], gold: Sequence[str]) -> dict[str, float]:
    """Hit@1, Recall@5, MRR@10, NDCG@10 (one relevant article per query)."""
    hit1 = recall5 = mrr = ndcg = 0.0
    for ranked, g in zip(rankings, gold, strict=True):
        try:
            rank = list(ranked).index(g)
        except ValueError:
            continue
        hit1 += rank == 0
        recall5 += rank < 5
        if rank < 10:
            mrr += 1 / (rank + 1)
            ndcg += 1 / math.log2(rank + 2)
    n = max(len(gold), 1)
    return {"hit@1": hit1 / n, "recall@5": recall5 / n, "mrr@10": mrr / n, "ndcg@10": ndcg / n}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def evaluate(kb: KnowledgeBase, queries: Sequence[LabelledQuery], *, baselines: bool = True) -> dict[str, object]:
    """Run every query through kb.search (the product path) and, from the same index, the baselines."""
    hybrid: list[list[str]] = []
    dense_only: list[list[str]] = []
    bm25_only: list[list[str]] = []
    decisions = {"answer": 0, "suggest": 0, "no_answer": 0}
    wrong_answers = 0
    latencies: list[float] = []
    for q in queries:
        started = time.perf_counter()
        encoding = kb.encode_query(q.text)
        result = kb.search(q.text, encoding=encoding, k=10)
        latencies.append((time.perf_counter() - started) * 1000)
        hybrid.append([str(h.external_id) for h in result.hits])
        decisions[result.decision] += 1
        if result.decision == "answer" and result.best is not None and str(result.best.external_id) != q.gold:
            wrong_answers += 1
        if baselines:
            dense_only.append(_baseline(kb, encoding, "dense"))
            bm25_only.append(_baseline(kb, encoding, "bm25"))
    n = max(len(queries), 1)
    gold = [q.gold for q in queries]
    report: dict[str, object] = {
        "queries": len(queries),
        "hybrid": rank_metrics(hybrid, gold),
        "answer_rate": decisions["answer"] / n,
        "suggest_rate": decisions["suggest"] / n,
        "no_answer_rate": decisions["no_answer"] / n,
        "wrong_answer_rate": wrong_answers / n,
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
    }
    if baselines:
        report["dense"] = rank_metrics(dense_only, gold)
        report["bm25"] = rank_metrics(bm25_only, gold)
    return report


def _baseline(kb: KnowledgeBase, encoding: QueryEncoding, kind: str, k: int = 10) -> list[str]:
    searchable = kb.segments.get(encoding.language)
    if searchable is None or not len(searchable):
        return []
    segment = searchable.segment
    if kind == "dense":
        scores = np.maximum.reduceat(segment.dense @ encoding.vector.astype(np.float32), segment.starts)
    else:
        scores = segment.bm25_scores(encoding.text)
    top = np.argsort(-scores, kind="stable")[:k]
    return [str(segment.articles[i].external_id) for i in top]
