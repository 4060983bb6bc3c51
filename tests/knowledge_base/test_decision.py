"""The answer / suggest / no_answer decision on hand-made candidates: no model, thresholds from KbSettings."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from knowledge_base.index import Candidate, Segment
from knowledge_base.search import QueryEncoding, decide_en, decide_zh, search_segment
from knowledge_base.service import MemoryArticle
from knowledge_base.settings import KbSettings

DEFAULTS = KbSettings()


def candidates(*fused: float, language: str = "en") -> list[Candidate]:
    """Candidates ranked as given, article i+1 with fused score fused[i] (dense = fused, no BM25 share)."""
    return [
        Candidate(position=i, article=MemoryArticle(id=i + 1, question=f"question {i + 1}", answer=f"answer {i + 1}",
                                                    language=language, external_id=f"faq-{i + 1}"),
                  dense=score, bm25=0.0, fused=score, matched_text=f"question {i + 1}")
        for i, score in enumerate(fused)
    ]


# --- English ----------------------------------------------------------------------------------------------


def test_en_no_candidates_is_no_answer() -> None:
    assert decide_en([], DEFAULTS) == ("no_answer", [])


def test_en_answers_a_high_score_with_a_clear_margin() -> None:
    decision, hits = decide_en(candidates(0.80, 0.60, 0.50), DEFAULTS)

    assert decision == "answer"
    assert [h.article_id for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == [0.80, 0.60, 0.50]
    assert hits[0].external_id == "faq-1" and hits[0].answer == "answer 1" and hits[0].matched_text == "question 1"


def test_en_a_small_margin_only_suggests() -> None:
    settings = KbSettings(answer_score=0.6, answer_margin=0.05, suggest_score=0.45)
    assert decide_en(candidates(0.80, 0.78), settings)[0] == "suggest"
    assert decide_en(candidates(0.80, 0.74), settings)[0] == "answer"


def test_en_a_score_between_the_thresholds_suggests() -> None:
    settings = KbSettings(answer_score=0.6, answer_margin=0.04, suggest_score=0.45)
    assert decide_en(candidates(0.55, 0.20), settings)[0] == "suggest"  # a wide margin does not make it an answer
    assert decide_en(candidates(0.44, 0.10), settings)[0] == "no_answer"


def test_en_a_lone_candidate_counts_its_whole_score_as_margin() -> None:
    assert decide_en(candidates(0.70), DEFAULTS)[0] == "answer"
    assert decide_en(candidates(0.50), DEFAULTS)[0] == "suggest"
    assert decide_en(candidates(0.30), DEFAULTS)[0] == "no_answer"


def test_en_thresholds_are_inclusive() -> None:
    # Values exact in binary floating point, so "at the threshold" is exactly at it.
    settings = KbSettings(answer_score=0.5, answer_margin=0.25, suggest_score=0.375)
    assert decide_en(candidates(0.5, 0.25), settings)[0] == "answer"
    assert decide_en(candidates(0.5, 0.25 + 2**-20), settings)[0] == "suggest"
    assert decide_en(candidates(0.375, 0.0), settings)[0] == "suggest"
    assert decide_en(candidates(0.375 - 2**-20, 0.0), settings)[0] == "no_answer"


def test_en_the_decision_follows_the_settings() -> None:
    ranked = candidates(0.55, 0.40)
    assert decide_en(ranked, DEFAULTS)[0] == "suggest"
    assert decide_en(ranked, KbSettings(answer_score=0.5))[0] == "answer"
    assert decide_en(ranked, KbSettings(answer_score=0.5, answer_margin=0.2))[0] == "suggest"
    assert decide_en(ranked, KbSettings(answer_score=0.7, suggest_score=0.6))[0] == "no_answer"


def test_en_confidences_are_probabilities_that_grow_with_the_score() -> None:
    def lone(score: float) -> float:
        return decide_en(candidates(score), DEFAULTS)[1][0].confidence

    assert all(0.0 <= lone(s) <= 1.0 for s in (-1.0, -0.3, 0.0, 0.5, 1.0, 1.1, 2.0))
    curve = [lone(float(s)) for s in np.linspace(-0.2, 1.0, 25)]  # the cosine range, in steps of 0.05
    assert all(a < b for a, b in pairwise(curve))

    # Within one result: the best hit is the most confident, and the rest follow their scores.
    _, hits = decide_en(candidates(0.72, 0.70, 0.61, 0.61, 0.30), DEFAULTS)
    confidences = [h.confidence for h in hits]
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[2] == confidences[3]  # same score, same confidence
    assert confidences[0] > confidences[1]

    # The same best score is surer when the runner-up is far behind.
    assert decide_en(candidates(0.70, 0.50), DEFAULTS)[1][0].confidence > \
        decide_en(candidates(0.70, 0.68), DEFAULTS)[1][0].confidence


def test_en_confidence_uses_the_calibration_from_the_settings() -> None:
    ranked = candidates(0.65, 0.55)
    default = decide_en(ranked, DEFAULTS)[1][0].confidence
    steeper = decide_en(ranked, KbSettings(confidence_coefs=(9.93, 9.77, -4.0)))[1][0].confidence
    assert steeper > default
    assert decide_en(ranked, KbSettings(confidence_coefs=(0.0, 0.0, 0.0)))[1][0].confidence == 0.5


# --- Chinese ----------------------------------------------------------------------------------------------


class FakeMatcher:
    """Stands in for knowledge_base.zh's matcher: a probability per matched question, and a record of calls."""

    def __init__(self, probabilities: dict[str, float]) -> None:
        self.probabilities = probabilities
        self.calls: list[tuple[str, str, float, float]] = []

    def features(self, query: str, candidate: str, *, dense_cosine: float, bm25: float) -> dict[str, Any]:
        self.calls.append((query, candidate, dense_cosine, bm25))
        return {"candidate": candidate}

    def score(self, features: dict[str, Any]) -> float:
        return self.probabilities[features["candidate"]]


def zh_candidates(*fused: float) -> list[Candidate]:
    return candidates(*fused, language="zh")


def test_zh_no_candidates_is_no_answer() -> None:
    assert decide_zh("积分", [], DEFAULTS, FakeMatcher({})) == ("no_answer", [])


def test_zh_the_matcher_sees_each_candidate_and_its_probability_reranks_them() -> None:
    ranked = [
        Candidate(0, MemoryArticle(1, "积分怎么算", "a", "zh"), dense=0.9, bm25=1.0, fused=1.0,
                  matched_text="积分怎么算"),
        Candidate(1, MemoryArticle(2, "积分会过期吗", "b", "zh"), dense=0.8, bm25=0.5, fused=0.85,
                  matched_text="积分有效期多久"),
    ]
    matcher = FakeMatcher({"积分怎么算": 0.30, "积分有效期多久": 0.95})

    decision, hits = decide_zh("积分多久过期", ranked, DEFAULTS, matcher)

    assert matcher.calls == [("积分多久过期", "积分怎么算", 0.9, 1.0), ("积分多久过期", "积分有效期多久", 0.8, 0.5)]
    assert decision == "answer"
    assert [h.article_id for h in hits] == [2, 1]
    assert [(h.score, h.confidence) for h in hits] == [(0.95, 0.95), (0.30, 0.30)]
    assert hits[0].matched_text == "积分有效期多久"


def probabilities(*values: float) -> FakeMatcher:
    return FakeMatcher({f"question {i + 1}": p for i, p in enumerate(values)})


def test_zh_decides_on_the_probability_and_its_margin() -> None:
    settings = KbSettings(zh_answer_confidence=0.8, zh_answer_margin=0.1, zh_suggest_confidence=0.35)
    ranked = zh_candidates(0.9, 0.8, 0.7)
    assert decide_zh("问", ranked, settings, probabilities(0.90, 0.50, 0.10))[0] == "answer"
    assert decide_zh("问", ranked, settings, probabilities(0.90, 0.85, 0.10))[0] == "suggest"  # small margin
    assert decide_zh("问", ranked, settings, probabilities(0.60, 0.10, 0.05))[0] == "suggest"  # not sure enough
    assert decide_zh("问", ranked, settings, probabilities(0.30, 0.10, 0.05))[0] == "no_answer"
    # The fused order does not matter, only the probabilities: the best may come from the last candidate.
    assert decide_zh("问", ranked, settings, probabilities(0.05, 0.10, 0.90))[1][0].article_id == 3


def test_zh_thresholds_are_inclusive_and_come_from_the_settings() -> None:
    ranked = zh_candidates(0.9, 0.8)
    matcher = probabilities(0.75, 0.5)
    assert decide_zh("问", ranked, KbSettings(zh_answer_confidence=0.75, zh_answer_margin=0.25), matcher)[0] == "answer"
    assert decide_zh("问", ranked, DEFAULTS, matcher)[0] == "suggest"  # 0.75 < the default 0.80
    assert decide_zh("问", ranked, KbSettings(zh_suggest_confidence=0.75), matcher)[0] == "suggest"
    assert decide_zh("问", ranked, KbSettings(zh_suggest_confidence=0.76), matcher)[0] == "no_answer"
    assert decide_zh("问", zh_candidates(0.9), DEFAULTS, probabilities(0.85))[0] == "answer"  # lone: margin 0.85


def test_zh_confidences_are_the_matchers_probabilities_best_first() -> None:
    _, hits = decide_zh("问", zh_candidates(0.9, 0.8, 0.7, 0.6), DEFAULTS, probabilities(0.2, 0.7, 0.0, 1.0))
    assert [h.confidence for h in hits] == [1.0, 0.7, 0.2, 0.0]
    assert [h.article_id for h in hits] == [4, 2, 1, 3]


# --- From a segment to a result: suggestions are capped ----------------------------------------------------


def segment_with_cosines(cosines: list[float], settings: KbSettings, language: str = "en") -> Segment:
    """A segment whose article i has cosine cosines[i] with the query vector e0 (one phrasing each)."""
    dim = len(cosines) + 1
    vectors = []
    for i, c in enumerate(cosines):
        v = np.zeros((1, dim), dtype=np.float32)
        v[0, 0], v[0, i + 1] = c, np.sqrt(1 - c * c)
        vectors.append(v)
    articles = [MemoryArticle(id=i + 1, question=f"question {i + 1}", answer=f"answer {i + 1}", language=language)
                for i in range(len(cosines))]
    return Segment(language=language, articles=articles, vectors=vectors, tokenizer=str.split, settings=settings)


def query(language: str, dim: int) -> QueryEncoding:
    vector = np.zeros(dim, dtype=np.float32)
    vector[0] = 1.0
    return QueryEncoding(text="unrelated words", language=language, model="hand-made", vector=vector)


@pytest.mark.parametrize("max_suggestions", [1, 3, 5])
def test_suggest_offers_at_most_max_suggestions_best_first(max_suggestions: int) -> None:
    settings = KbSettings(bm25_weight=0.0, max_suggestions=max_suggestions)
    cosines = [0.50, 0.58, 0.57, 0.56, 0.55, 0.54, 0.53]
    segment = segment_with_cosines(cosines, settings)

    result = search_segment(segment, query("en", len(cosines) + 1), settings, k=5)

    assert result.decision == "suggest"
    assert [h.article_id for h in result.suggestions] == [2, 3, 4, 5, 6][:max_suggestions]
    assert [h.article_id for h in result.hits] == [2, 3, 4, 5, 6]


def test_answer_and_no_answer_carry_no_suggestions() -> None:
    settings = KbSettings(bm25_weight=0.0)
    answered = search_segment(segment_with_cosines([0.9, 0.3], settings), query("en", 3), settings)
    unanswered = search_segment(segment_with_cosines([0.2, 0.1], settings), query("en", 3), settings)
    assert (answered.decision, answered.suggestions, answered.best.article_id) == ("answer", (), 1)
    assert (unanswered.decision, unanswered.suggestions) == ("no_answer", ())
    assert len(unanswered.hits) == 2  # ranked hits are still there, for "did you mean" logs and evaluation


def test_a_chinese_segment_decides_with_its_matcher_and_caps_suggestions() -> None:
    settings = KbSettings(bm25_weight=0.0, max_suggestions=2)
    segment = segment_with_cosines([0.9, 0.8, 0.7, 0.6], settings, language="zh")
    matcher = probabilities(0.6, 0.55, 0.5, 0.1)

    result = search_segment(segment, query("zh", 5), settings, zh_matcher=matcher)

    assert result.decision == "suggest"
    assert [h.article_id for h in result.suggestions] == [1, 2]
    assert [h.confidence for h in result.hits] == [0.6, 0.55, 0.5, 0.1]
