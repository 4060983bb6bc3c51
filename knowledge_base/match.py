"""Matching that learns from each knowledge base: would this article answer this customer's question?

One mechanism for every language; only the tokenizer and the encoder differ. An article's question and its
alternative phrasings (相似问) are the examples of what it answers. When a segment is built, each phrasing is held
out in turn and searched for (its article should come first: a positive), and whole articles are held out
(their phrasings then ask something the knowledge base has no answer for: near-domain negatives). A logistic model
over a few pairwise features is fitted on those held-out searches, and the answer and suggest thresholds are chosen
on its out-of-fold probabilities, so both fit this knowledge base rather than one benchmark. A knowledge base with
too few phrasings to learn from uses its language's prior model (KbSettings.match_prior_en / _zh) to decide,
and keeps retrieval's order.

The features of (question, article), all cheap enough for every candidate of every message:
- dense: the best phrasing's cosine; dense_gap: how far it stands above every other article's best; support: the
  mean cosine of its best three phrasings (several phrasings agree); answer: the best cosine with a sentence of
  its answer (a question about one detail of it);
- cover / cover_answer: the IDF-weighted share of the question's words found in the article's phrasings (and its
  answer); cover_back: the share of the best phrasing's words found in the question (it asks something more);
- char: character n-gram Jaccard with the best phrasing (typos, words split differently);
- unknown: the IDF-weighted share of the question's words the knowledge base never uses (a question about
  something else);
- negation: one side negated and the other not ("can't log in" against "how to log in");
- term_mismatch: the question and the best phrasing name different terms of the knowledge base's glossary (one
  product against another);
- classifier: the article's probability under a classifier of the phrasings' vectors (phrasing → article), which
  learns what sets each article's phrasings apart (knowledge bases up to KbSettings.classifier_max_articles).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from knowledge_base.glossary import Glossary
from knowledge_base.index import Candidate, Leave, Segment, phrasings
from knowledge_base.settings import KbSettings

FEATURES: tuple[str, ...] = ("dense", "dense_gap", "support", "answer", "cover", "cover_answer", "cover_back",
                             "char", "unknown", "negation", "term_mismatch", "classifier")

_EN_NEGATION = re.compile(r"\b(?:not|no|never|cannot|can't|cant|won't|don't|doesn't|didn't|isn't|unable)\b|n't\b",
                          re.IGNORECASE)


def _grams_en(text: str) -> frozenset[str]:
    letters = re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
    return frozenset(letters[i : i + 3] for i in range(max(len(letters) - 2, 1))) if letters else frozenset()


def _grams_zh(text: str) -> frozenset[str]:
    from knowledge_base.zh import char_ngrams

    return frozenset(char_ngrams(text, 2))


def _negated_zh(text: str) -> bool:
    from knowledge_base.zh import NEGATION, normalize_zh

    return bool(NEGATION.search(normalize_zh(text)))


def _no_terms(text: str) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class LanguageText:
    """How one language is cut up for matching: words (with the glossary applied), character grams, negation, and
    the glossary terms a text names."""

    tokens: Callable[[str], list[str]]
    grams: Callable[[str], frozenset[str]]
    negated: Callable[[str], bool]
    terms: Callable[[str], frozenset[str]] = _no_terms


def language_text(language: str, tokens: Callable[[str], list[str]], glossary: Glossary | None = None) -> LanguageText:
    terms = glossary.terms_in if glossary else _no_terms
    if language == "zh":
        return LanguageText(tokens, _grams_zh, _negated_zh, terms)
    return LanguageText(tokens, _grams_en, lambda text: bool(_EN_NEGATION.search(text)), terms)


class Lexicon:
    """A segment's words: which articles use each word (its IDF) and how many texts (phrasings, answers) hold it."""

    def __init__(self, segment: Segment, text: LanguageText) -> None:
        self.segment = segment
        self.text = text
        self._tokens = lru_cache(maxsize=65536)(lambda s: frozenset(text.tokens(s)))
        self._grams = lru_cache(maxsize=65536)(text.grams)
        self._negated = lru_cache(maxsize=65536)(text.negated)
        self._terms = lru_cache(maxsize=65536)(text.terms)
        article_df: Counter[str] = Counter()
        self.text_df: Counter[str] = Counter()
        for article in segment.articles:
            own: set[str] = set()
            for unit in [*phrasings(article), article.answer]:
                tokens = self._tokens(unit)
                self.text_df.update(tokens)
                own |= tokens
            article_df.update(own)
        n = max(len(segment.articles), 1)
        self.unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        self.idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in article_df.items()}

    def tokens(self, text: str) -> frozenset[str]:
        return self._tokens(text)

    def features(self, query: str, candidates: Sequence[Candidate], leave: Leave | None = None,
                 classified: np.ndarray | None = None) -> np.ndarray:
        """One row of FEATURES per candidate; `classified`: the classifier's probability of every article."""
        seg = self.segment
        q_tokens = self._tokens(query)
        q_grams = self._grams(query)
        q_negated = self._negated(query)
        q_terms = self._terms(query)
        weights = {t: self.idf.get(t, self.unknown_idf) for t in q_tokens}
        total = sum(weights.values())
        # The held-out texts: their words count as unseen when nothing else uses them.
        held: list[str] = []
        if leave is not None and leave.row is not None:
            held = [seg.texts[leave.row]]
        elif leave is not None and leave.position is not None:
            held_article = seg.articles[leave.position]
            held = [*phrasings(held_article), held_article.answer]
        held_counts = Counter(t for unit in held for t in self._tokens(unit))
        unseen = sum(w for t, w in weights.items() if self.text_df.get(t, 0) - held_counts.get(t, 0) <= 0)
        unknown = unseen / total if total else 1.0
        rows = np.zeros((len(candidates), len(FEATURES)), dtype=np.float64)
        for i, cand in enumerate(candidates):
            start = int(seg.starts[cand.position])
            own = [r for r in range(start, start + int(seg.counts[cand.position]))
                   if leave is None or r != leave.row]
            question_side: set[str] = set()
            for r in own:
                question_side |= self._tokens(seg.texts[r])
            answer_side = question_side | self._tokens(cand.article.answer)
            cover = sum(w for t, w in weights.items() if t in question_side) / total if total else 0.0
            cover_answer = sum(w for t, w in weights.items() if t in answer_side) / total if total else 0.0
            best_text = seg.texts[cand.matched_row]
            best_tokens = self._tokens(best_text)
            back_total = sum(self.idf.get(t, self.unknown_idf) for t in best_tokens)
            cover_back = (sum(self.idf.get(t, self.unknown_idf) for t in best_tokens if t in q_tokens) / back_total
                          if back_total else 0.0)
            grams = self._grams(best_text)
            union = len(q_grams | grams)
            char = len(q_grams & grams) / union if union else 0.0
            rows[i] = (cand.dense, cand.gap, cand.support, cand.answer, cover, cover_answer, cover_back, char, unknown,
                       float(q_negated != self._negated(best_text)), float(q_terms != self._terms(best_text)),
                       float(classified[cand.position]) if classified is not None else 0.0)
        return rows


@dataclass(frozen=True)
class MatchModel:
    """P(article answers question) = sigmoid(bias + coef · features)."""

    coef: tuple[float, ...]
    bias: float

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0)
        z = np.clip(rows @ np.asarray(self.coef) + self.bias, -40.0, 40.0)
        return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class ArticleClassifier:
    """Phrasing vector → article: a multinomial logistic regression on the segment's phrasing vectors."""

    classes: np.ndarray  # article positions it knows
    coef: np.ndarray  # (classes, dim)
    intercept: np.ndarray
    n_articles: int

    def probabilities(self, vector: np.ndarray) -> np.ndarray:
        """The probability of every article position (0 for articles it was not trained on)."""
        z = self.coef @ vector.astype(np.float64) + self.intercept
        e = np.exp(z - z.max())
        out = np.zeros(self.n_articles)
        out[self.classes] = e / e.sum()
        return out


def fit_classifier(segment: Segment, rows: np.ndarray, settings: KbSettings) -> ArticleClassifier | None:
    """Trained on the given phrasing rows; None when they name fewer than two articles or the segment is too big."""
    labels = segment.row_article[rows]
    if len(segment) > settings.classifier_max_articles or len(np.unique(labels)) < 2:
        return None
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=settings.classifier_c, max_iter=300).fit(segment.dense[rows], labels)
    return ArticleClassifier(model.classes_.astype(np.int64), model.coef_, model.intercept_, len(segment))


@dataclass(frozen=True)
class Calibration:
    """A segment's fitted model and thresholds, with what they were fitted on (for `kefu kb evaluate` and the logs)."""

    model: MatchModel
    answer_at: float
    suggest_at: float
    learned: bool  # False: the prior model (too few phrasings to learn from)
    report: dict[str, float] = field(default_factory=dict)
    classifier: ArticleClassifier | None = None

    def classified(self, vector: np.ndarray) -> np.ndarray | None:
        return self.classifier.probabilities(vector) if self.classifier is not None else None


def prior(settings: KbSettings, language: str) -> MatchModel:
    *coef, bias = settings.match_prior_zh if language == "zh" else settings.match_prior_en
    return MatchModel(tuple(coef), bias)


@dataclass
class _Heldout:
    rows: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)  # the article a query came from (folds split by article)
    in_scope: list[bool] = field(default_factory=list)


def heldout_searches(segment: Segment, lexicon: Lexicon, settings: KbSettings) -> _Heldout:
    """Search for each phrasing with it left out (positives), and for phrasings of articles left out (negatives).

    The classifier's probabilities come from fits that did not see the query: folds of phrasings for the first,
    folds of articles for the second."""
    rng = np.random.default_rng(settings.calibration_seed)
    folds = settings.calibration_folds
    all_rows = np.arange(len(segment.texts))
    row_fold = rng.permutation(len(all_rows)) % folds
    article_fold = rng.permutation(len(segment)) % folds
    by_rows = [fit_classifier(segment, all_rows[row_fold != f], settings) for f in range(folds)]
    by_articles = [fit_classifier(segment, all_rows[article_fold[segment.row_article] != f], settings)
                   for f in range(folds)]
    runs: list[tuple[int, Leave, int | None]] = []  # (row queried, what is left out, the right article)
    for pos in range(len(segment)):
        start, count = int(segment.starts[pos]), int(segment.counts[pos])
        for row in range(start, start + count):
            if count > 1:
                runs.append((row, Leave(row=row), pos))
            runs.append((row, Leave(position=pos), None))
    if len(runs) > settings.calibration_queries:
        keep = rng.choice(len(runs), settings.calibration_queries, replace=False)
        runs = [runs[i] for i in sorted(keep)]
    out = _Heldout()
    k = max(settings.rerank, 2)
    for row, leave, right in runs:
        text = segment.texts[row]
        candidates = segment.search(text, segment.dense[row], k=k, leave=leave)
        if not candidates:
            continue
        classifier = (by_rows[row_fold[row]] if leave.row is not None
                      else by_articles[article_fold[int(segment.row_article[row])]])
        classified = classifier.probabilities(segment.dense[row]) if classifier is not None else None
        out.rows.append(lexicon.features(text, candidates, leave, classified))
        out.labels.append(np.array([c.position == right for c in candidates], dtype=np.float64))
        out.groups.append(int(segment.row_article[row]))
        out.in_scope.append(right is not None)
    return out


def _fit(rows: np.ndarray, labels: np.ndarray, c: float) -> MatchModel:
    from sklearn.linear_model import LogisticRegression

    mean, scale = rows.mean(0), rows.std(0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, solver="newton-cholesky", max_iter=100).fit((rows - mean) / scale, labels)
    coef = model.coef_[0] / scale
    return MatchModel(tuple(float(x) for x in coef), float(model.intercept_[0] - (coef * mean).sum()))


def _top(model: MatchModel, held: _Heldout, index: Sequence[int], *, ranks: bool = True) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """For each query: the best candidate's probability (the model's best, or retrieval's first when the model does
    not rank), and whether that candidate is the right article."""
    best, right = np.zeros(len(index)), np.zeros(len(index), dtype=bool)
    for n, i in enumerate(index):
        p = model.probabilities(held.rows[i])
        j = int(np.argmax(p)) if ranks else 0
        best[n], right[n] = p[j], bool(held.labels[i][j])
    return best, right


def choose_thresholds(best: np.ndarray, right: np.ndarray, in_scope: np.ndarray,
                      settings: KbSettings) -> tuple[float, float]:
    """The loosest answer threshold whose wrong answers (in scope) and answered questions (out of scope) stay within
    the configured rates, and the loosest suggest threshold that keeps suggestions to out-of-scope questions within
    theirs."""
    grid = np.round(np.arange(0.05, 0.991, 0.01), 2)
    n_in, n_out = max(int(in_scope.sum()), 1), max(int((~in_scope).sum()), 1)
    answer_at = settings.answer_ceiling
    for t in grid:
        if t < settings.answer_floor:
            continue
        answered = best >= t
        wrong = int((answered & in_scope & ~right).sum()) / n_in
        oos = int((answered & ~in_scope).sum()) / n_out
        if wrong <= settings.max_wrong_answers and oos <= settings.max_oos_answers:
            answer_at = float(t)
            break
    suggest_at = answer_at
    for t in grid:
        if t >= answer_at:
            break
        if int(((best >= t) & ~in_scope).sum()) / n_out <= settings.max_oos_suggestions:
            suggest_at = float(max(t, settings.suggest_floor))
            break
    return answer_at, suggest_at


def calibrate(segment: Segment, lexicon: Lexicon, settings: KbSettings) -> Calibration:
    """Fit the segment's model and thresholds on its own held-out phrasings (see the module docstring)."""
    base = prior(settings, segment.language)
    if not len(segment):
        return Calibration(base, settings.answer_ceiling, settings.answer_ceiling, learned=False)
    held = heldout_searches(segment, lexicon, settings)
    in_scope = np.array(held.in_scope, dtype=bool)
    articles_with_positives = len({g for g, s in zip(held.groups, held.in_scope, strict=True) if s})
    report: dict[str, float] = {"heldout_in_scope": float(in_scope.sum()), "heldout_out_of_scope":
                                float((~in_scope).sum()), "articles_learned_from": float(articles_with_positives)}
    learned = int(in_scope.sum()) >= settings.min_heldout_phrasings and articles_with_positives >= 3
    if learned:
        # Out-of-fold probabilities (folds by article) choose the thresholds; the model kept is fitted on all.
        groups = np.array(held.groups)
        articles = np.unique(groups)
        fold_of = {a: i % settings.calibration_folds
                   for i, a in enumerate(np.random.default_rng(settings.calibration_seed).permutation(articles))}
        folds = np.array([fold_of[g] for g in groups])
        best, right = np.zeros(len(groups)), np.zeros(len(groups), dtype=bool)
        for f in range(settings.calibration_folds):
            train = np.flatnonzero(folds != f)
            test = np.flatnonzero(folds == f)
            if not len(test):
                continue
            y = np.concatenate([held.labels[i] for i in train])
            fitted = _fit(np.concatenate([held.rows[i] for i in train]), y, settings.match_c) if y.any() else base
            best[test], right[test] = _top(fitted, held, test)
        model = _fit(np.concatenate(held.rows), np.concatenate(held.labels), settings.match_c)
        classifier = fit_classifier(segment, np.arange(len(segment.texts)), settings)
    else:
        model, classifier = base, None
        best, right = _top(model, held, range(len(held.rows)), ranks=False)
    answer_at, suggest_at = choose_thresholds(best, right, in_scope, settings)
    if not learned:  # nothing in scope to measure against: never looser than the configured thresholds
        answer_at, suggest_at = max(answer_at, settings.answer_at), max(suggest_at, settings.suggest_at)
    if in_scope.any():
        report["heldout_right_answers"] = round(float((best[in_scope] >= answer_at)[right[in_scope]].sum()
                                                      / in_scope.sum()), 4)
        report["heldout_wrong_answers"] = round(float(((best >= answer_at) & in_scope & ~right).sum()
                                                      / in_scope.sum()), 4)
    if (~in_scope).any():
        report["heldout_oos_answered"] = round(float((best[~in_scope] >= answer_at).mean()), 4)
    return Calibration(model, answer_at, suggest_at, learned=learned, report=report, classifier=classifier)
