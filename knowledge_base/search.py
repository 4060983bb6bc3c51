"""From ranked candidates to an honest decision: answer, suggest (up to 3 "did you mean"), or no answer."""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass

import numpy as np

from knowledge_base.index import Candidate, Segment
from knowledge_base.match import Calibration, Lexicon
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


def _hit(c: Candidate, confidence: float) -> Hit:
    a = c.article
    return Hit(a.id, a.external_id, a.question, a.answer, a.language, round(c.fused, 6), round(confidence, 6),
               c.matched_text)


def _same_text(text: str) -> str:
    """Case, width, spaces and punctuation ignored."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def decide(probabilities: np.ndarray, calibration: Calibration) -> Decision:
    """Answer when the best article is likely enough to answer it; suggest when it is plausible; else no answer."""
    best = (float(probabilities.max()) if calibration.learned else float(probabilities[0])) if len(probabilities) \
        else 0.0
    if best >= calibration.answer_at:
        return "answer"
    if best >= calibration.suggest_at:
        return "suggest"
    return "no_answer"


def search_segment(
    segment: Segment, lexicon: Lexicon, calibration: Calibration, encoding: QueryEncoding, settings: KbSettings,
    *, k: int = 5,
) -> SearchResult:
    """Retrieve the `rerank` best candidates, score each with the segment's model, rank by it and decide."""
    started = time.perf_counter()
    candidates = segment.search(encoding.text, encoding.vector, k=max(k, settings.rerank))
    searched = time.perf_counter()
    rows = lexicon.features(encoding.text, candidates, classified=calibration.classified(encoding.vector))
    probabilities = calibration.model.probabilities(rows)
    # A question that is one of an article's phrasings, word for word, is what that article answers: held-out
    # calibration never sees such a match, so the model alone can under-rate it (a phrasing just accepted).
    asked = _same_text(encoding.text)
    for i, cand in enumerate(candidates):
        if _same_text(cand.matched_text) == asked and asked:
            probabilities[i] = min(1.0, max(calibration.answer_at, float(probabilities.max()) + 1e-6))
    # A learned model ranks; the prior only decides, and retrieval's order (chosen on StackFAQ) stands.
    order = np.argsort(-probabilities, kind="stable") if calibration.learned else np.arange(len(candidates))
    hits = [_hit(candidates[i], float(probabilities[i])) for i in order]
    decision = decide(probabilities, calibration) if candidates else "no_answer"
    suggestions = tuple(h for h in hits[: settings.max_suggestions] if h.confidence >= calibration.suggest_at / 2) \
        if decision == "suggest" else ()
    return SearchResult(
        query=encoding.text, language=segment.language, decision=decision, hits=tuple(hits[:k]),
        suggestions=suggestions,
        timings_ms={"search": (searched - started) * 1000, "decide": (time.perf_counter() - searched) * 1000},
    )
