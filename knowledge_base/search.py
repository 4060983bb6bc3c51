"""From ranked candidates to an honest decision: answer, suggest (up to 3 "did you mean"), or no answer."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge_base.index import Candidate, Segment
from knowledge_base.records import Decision, Hit, SearchResult
from knowledge_base.settings import KbSettings


@dataclass(frozen=True)
class QueryEncoding:
    """A customer message encoded once; the NLU and the KB share it."""

    text: str
    language: str
    model: str
    vector: np.ndarray
    # The NLU's features from the same forward pass (encoders that expose their layers), else None.
    features: np.ndarray | None = None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _hit(c: Candidate, score: float, confidence: float) -> Hit:
    a = c.article
    return Hit(a.id, a.external_id, a.question, a.answer, a.language, round(score, 6), round(confidence, 6),
               c.matched_text)


def decide_en(candidates: Sequence[Candidate], settings: KbSettings) -> tuple[Decision, list[Hit]]:
    """English: fused score and its margin over the runner-up, calibrated into a confidence."""
    if not candidates:
        return "no_answer", []
    a, b, c = settings.confidence_coefs
    best = candidates[0].fused
    runner_up = candidates[1].fused if len(candidates) > 1 else 0.0
    hits = []
    for i, cand in enumerate(candidates):
        margin = (best - runner_up) if i == 0 else (cand.fused - best)
        hits.append(_hit(cand, cand.fused, _sigmoid(a * cand.fused + b * margin + c)))
    return _decide(best, best - runner_up, settings.answer_score, settings.answer_margin,
                   settings.suggest_score), hits


def decide_zh(
    query: str, candidates: Sequence[Candidate], settings: KbSettings, matcher: object
) -> tuple[Decision, list[Hit]]:
    """Chinese: the Chinese matcher's probability re-ranks the candidates and decides."""
    if not candidates:
        return "no_answer", []
    scored = []
    for cand in candidates[: settings.zh_rerank]:
        # An article matches as well as its best phrasing: each alternative question is scored on its own.
        texts = cand.phrasings or ((cand.matched_text, cand.dense),)
        best = max(
            matcher.score(matcher.features(query, text, dense_cosine=cosine, bm25=cand.bm25))  # type: ignore[attr-defined]
            for text, cosine in texts
        )
        scored.append((float(best), cand))
    scored.sort(key=lambda pair: -pair[0])
    hits = [_hit(cand, p, p) for p, cand in scored]
    best = scored[0][0]
    margin = best - (scored[1][0] if len(scored) > 1 else 0.0)
    return _decide(best, margin, settings.zh_answer_confidence, settings.zh_answer_margin,
                   settings.zh_suggest_confidence), hits


def _decide(best: float, margin: float, answer_at: float, answer_margin: float, suggest_at: float) -> Decision:
    """Answer when the best is good enough and clearly ahead; suggest when it is plausible; else no answer."""
    if best >= answer_at and margin >= answer_margin:
        return "answer"
    if best >= suggest_at:
        return "suggest"
    return "no_answer"


def search_segment(
    segment: Segment, encoding: QueryEncoding, settings: KbSettings, *, k: int = 5, zh_matcher: object | None = None
) -> SearchResult:
    started = time.perf_counter()
    # English decides on the best two; Chinese re-ranks zh_rerank candidates with its matcher.
    wanted = max(k, settings.zh_rerank if segment.language == "zh" and zh_matcher is not None else 2)
    candidates = segment.search(encoding.text, encoding.vector, k=wanted)
    searched = time.perf_counter()
    if segment.language == "zh" and zh_matcher is not None:
        decision, hits = decide_zh(encoding.text, candidates, settings, zh_matcher)
    else:
        decision, hits = decide_en(candidates, settings)
    suggestions = tuple(hits[: settings.max_suggestions]) if decision == "suggest" else ()
    return SearchResult(
        query=encoding.text, language=segment.language, decision=decision, hits=tuple(hits[:k]),
        suggestions=suggestions,
        timings_ms={"search": (searched - started) * 1000, "decide": (time.perf_counter() - searched) * 1000},
    )
