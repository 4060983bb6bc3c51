"""The answer / suggest / no_answer decision and how each knowledge base learns it (knowledge_base.match), on
hand-made vectors and texts: no model."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge_base.index import Leave, Segment
from knowledge_base.match import FEATURES, Calibration, Lexicon, MatchModel, calibrate, choose_thresholds, language_text
from knowledge_base.search import QueryEncoding, decide, search_segment
from knowledge_base.service import MemoryArticle
from knowledge_base.settings import KbSettings
from knowledge_base.text_en import tokenize_en

DEFAULTS = KbSettings()


def calibration(answer_at: float = 0.6, suggest_at: float = 0.2) -> Calibration:
    """A model whose probability is the dense cosine itself (logit of it), with the given thresholds."""
    return Calibration(_Identity(), answer_at, suggest_at, learned=False)  # type: ignore[arg-type]


class _Identity(MatchModel):
    def __init__(self) -> None:
        super().__init__(coef=(1.0, *[0.0] * (len(FEATURES) - 1)), bias=0.0)

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        return np.clip(rows[:, 0], 0.0, 1.0) if len(rows) else np.zeros(0)


def test_decide_thresholds_are_inclusive() -> None:
    cal = calibration(answer_at=0.6, suggest_at=0.2)
    assert decide(np.array([0.6, 0.1]), cal) == "answer"
    assert decide(np.array([0.6 - 2**-20]), cal) == "suggest"
    assert decide(np.array([0.2]), cal) == "suggest"
    assert decide(np.array([0.2 - 2**-20]), cal) == "no_answer"
    assert decide(np.array([]), cal) == "no_answer"


def test_thresholds_are_the_loosest_that_keep_the_rates() -> None:
    settings = KbSettings(max_wrong_answers=0.1, max_oos_answers=0.25, max_oos_suggestions=0.5, answer_floor=0.3,
                          suggest_floor=0.05)
    # Ten in-scope searches (one wrong, at 0.7) and four out-of-scope ones.
    best = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5, 0.4, 0.72, 0.55, 0.3, 0.1])
    right = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    in_scope = np.array([True] * 10 + [False] * 4)
    answer_at, suggest_at = choose_thresholds(best, right, in_scope, settings)
    # At 0.56 one in-scope search is answered wrongly (10 %) and one out-of-scope one answered (25 %); at 0.55 two.
    assert answer_at == pytest.approx(0.56)
    # Suggestions may reach half of the out-of-scope searches: 0.55 and 0.72 are above 0.31.
    assert suggest_at == pytest.approx(0.31)


def test_when_no_threshold_keeps_the_rates_the_ceiling_holds() -> None:
    settings = KbSettings(max_wrong_answers=0.0, max_oos_answers=0.0, answer_ceiling=0.95)
    best = np.array([0.99, 0.99])
    right = np.array([False, False])
    answer_at, suggest_at = choose_thresholds(best, right, np.array([True, False]), settings)
    assert answer_at == 0.95 and suggest_at <= answer_at


def clustered_segment(n_articles: int, per_article: int, *, noise: float, shared: float = 0.0, seed: int = 0,
                      settings: KbSettings = DEFAULTS) -> Segment:
    """Articles whose phrasings are noisy copies of one direction each (a knowledge base with paraphrases); `shared`
    adds a direction common to all articles (topics that resemble each other)."""
    rng = np.random.default_rng(seed)
    dim = 32
    centers = rng.standard_normal((n_articles, dim)) + shared * rng.standard_normal(dim)
    vectors, articles = [], []
    for i in range(n_articles):
        rows = centers[i] + noise * rng.standard_normal((per_article, dim))
        vectors.append((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))
        # The same words everywhere: only the vectors tell the articles apart.
        articles.append(MemoryArticle(id=i + 1, question="a question", answer="an answer",
                                      alt_questions=("a phrasing",) * (per_article - 1)))
    return Segment(language="en", articles=articles, vectors=vectors, tokenizer=tokenize_en, settings=settings)


def test_a_knowledge_base_with_phrasings_learns_its_own_model_and_thresholds() -> None:
    segment = clustered_segment(12, 5, noise=0.6)
    lexicon = Lexicon(segment, language_text("en", tokenize_en))
    cal = calibrate(segment, lexicon, DEFAULTS)
    assert cal.learned
    assert cal.report["heldout_in_scope"] == 60 and cal.report["heldout_out_of_scope"] == 60
    assert dict(zip(FEATURES, cal.model.coef, strict=True))["dense"] > 0
    assert DEFAULTS.answer_floor <= cal.answer_at <= DEFAULTS.answer_ceiling
    assert cal.suggest_at <= cal.answer_at
    assert cal.report["heldout_wrong_answers"] <= DEFAULTS.max_wrong_answers


def test_a_harder_knowledge_base_answers_less_and_stays_within_its_wrong_answer_rate() -> None:
    easy = clustered_segment(12, 5, noise=0.4)
    hard = clustered_segment(12, 5, noise=2.0, shared=3.0)
    reports = [calibrate(s, Lexicon(s, language_text("en", tokenize_en)), DEFAULTS).report for s in (easy, hard)]
    assert reports[0]["heldout_right_answers"] > 0.9 > 0.5 > reports[1]["heldout_right_answers"]
    assert all(r["heldout_wrong_answers"] <= DEFAULTS.max_wrong_answers for r in reports)
    assert all(r["heldout_oos_answered"] <= DEFAULTS.max_oos_answers for r in reports)


def test_a_knowledge_base_without_phrasings_uses_the_prior_never_looser_than_configured() -> None:
    settings = KbSettings(answer_at=0.7, suggest_at=0.3)
    segment = clustered_segment(4, 1, noise=0.1, settings=settings)
    cal = calibrate(segment, Lexicon(segment, language_text("en", tokenize_en)), settings)
    assert not cal.learned
    assert cal.model.coef == tuple(settings.match_prior_en[:-1]) and cal.model.bias == settings.match_prior_en[-1]
    assert cal.answer_at >= 0.7 and cal.suggest_at >= 0.3


def test_lexicon_features_and_what_a_held_out_phrasing_leaves_unseen() -> None:
    articles = [MemoryArticle(id=1, question="How do I return a teapot?", answer="Send it back within 30 days.",
                              alt_questions=("Can I get a refund for a gaiwan?",)),
                MemoryArticle(id=2, question="How long does shipping take?", answer="Three to five days.")]
    vectors = [np.eye(4, dtype=np.float32)[[0, 1]], np.eye(4, dtype=np.float32)[[2]]]
    segment = Segment(language="en", articles=articles, vectors=vectors, tokenizer=tokenize_en, settings=DEFAULTS)
    lexicon = Lexicon(segment, language_text("en", tokenize_en))
    candidates = segment.search("refund for my gaiwan", np.array([0, 1, 0, 0], dtype=np.float32), k=2)
    rows = {c.article.id: dict(zip(FEATURES, row, strict=True))
            for c, row in zip(candidates, lexicon.features("refund for my gaiwan", candidates), strict=True)}
    assert rows[1]["dense"] == 1.0 and rows[1]["dense_gap"] == 1.0 and rows[2]["dense_gap"] == -1.0
    assert rows[1]["cover"] == 1.0 and rows[2]["cover"] == 0.0 and rows[1]["unknown"] == 0.0
    # With the phrasing held out, "refund" and "gaiwan" are words the knowledge base no longer uses.
    held = segment.search("refund for my gaiwan", np.array([0, 1, 0, 0], dtype=np.float32), k=2, leave=Leave(row=1))
    row = dict(zip(FEATURES, lexicon.features("refund for my gaiwan", held, Leave(row=1))[0], strict=True))
    assert row["unknown"] == 1.0 and row["cover"] == 0.0
    negated = lexicon.features("I can't return a teapot", candidates[:1])[0]
    assert negated[FEATURES.index("negation")] == 1.0


def segment_with_cosines(cosines: list[float], settings: KbSettings) -> Segment:
    """A segment whose article i has cosine cosines[i] with the query vector e0 (one phrasing each)."""
    dim = len(cosines) + 1
    vectors = []
    for i, c in enumerate(cosines):
        v = np.zeros((1, dim), dtype=np.float32)
        v[0, 0], v[0, i + 1] = c, np.sqrt(1 - c * c)
        vectors.append(v)
    articles = [MemoryArticle(id=i + 1, question=f"question {i + 1}", answer=f"answer {i + 1}")
                for i in range(len(cosines))]
    return Segment(language="en", articles=articles, vectors=vectors, tokenizer=str.split, settings=settings)


def search(cosines: list[float], settings: KbSettings, cal: Calibration) -> object:
    segment = segment_with_cosines(cosines, settings)
    vector = np.zeros(len(cosines) + 1, dtype=np.float32)
    vector[0] = 1.0
    encoding = QueryEncoding(text="unrelated words", language="en", model="hand-made", vector=vector)
    return search_segment(segment, Lexicon(segment, language_text("en", str.split)), cal, encoding, settings, k=5)


@pytest.mark.parametrize("max_suggestions", [1, 3, 5])
def test_suggest_offers_at_most_max_suggestions_best_first(max_suggestions: int) -> None:
    settings = KbSettings(bm25_weight=0.0, max_suggestions=max_suggestions)
    result = search([0.50, 0.58, 0.57, 0.56, 0.55, 0.54, 0.53], settings, calibration(0.6, 0.3))
    assert result.decision == "suggest"  # type: ignore[attr-defined]
    assert [h.article_id for h in result.suggestions] == [2, 3, 4, 5, 6][:max_suggestions]  # type: ignore[attr-defined]
    assert [h.article_id for h in result.hits] == [2, 3, 4, 5, 6]  # type: ignore[attr-defined]


def test_answer_and_no_answer_carry_no_suggestions() -> None:
    settings = KbSettings(bm25_weight=0.0)
    answered = search([0.9, 0.3], settings, calibration(0.6, 0.3))
    unanswered = search([0.2, 0.1], settings, calibration(0.6, 0.3))
    assert (answered.decision, answered.suggestions, answered.best.article_id) == ("answer", (), 1)  # type: ignore[attr-defined]
    assert (unanswered.decision, unanswered.suggestions) == ("no_answer", ())  # type: ignore[attr-defined]
    assert len(unanswered.hits) == 2  # type: ignore[attr-defined]  # ranked hits stay, for logs and evaluation


def test_hits_are_ranked_by_the_model_not_by_retrieval() -> None:
    """The model re-ranks the retrieved candidates: here it prefers the article retrieval put second."""

    class PreferSecond(MatchModel):
        def probabilities(self, rows: np.ndarray) -> np.ndarray:
            return np.where(np.isclose(rows[:, 0], 0.8), 0.9, 0.1)

    settings = KbSettings(bm25_weight=0.0)
    result = search([0.9, 0.8, 0.7], settings, Calibration(PreferSecond((0.0,), 0.0), 0.6, 0.3, learned=True))
    assert [h.article_id for h in result.hits] == [2, 1, 3]  # type: ignore[attr-defined]
    assert result.decision == "answer" and result.best.confidence == 0.9  # type: ignore[attr-defined]
