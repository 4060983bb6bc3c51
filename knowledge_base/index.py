"""The hybrid index: dense vectors of every question phrasing + BM25 over the article, one segment per language.

Ranking (chosen on StackFAQ dev, see KbSettings): an article's dense score is its best-matching phrasing's
cosine; the fused score adds bm25_weight x its BM25 score relative to the query's best BM25 score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from knowledge_base.records import IndexableArticle
from knowledge_base.settings import KbSettings

Tokenizer = Callable[[str], list[str]]


def phrasings(article: IndexableArticle) -> list[str]:
    """The texts of an article that get a vector: its question and each alternative phrasing."""
    return [article.question, *[q for q in article.alt_questions if q.strip()]]


@dataclass(frozen=True)
class Candidate:
    position: int  # in the segment's article list
    article: IndexableArticle
    dense: float
    bm25: float  # relative to the query's best BM25 score (0..1)
    fused: float
    matched_text: str
    phrasings: tuple[tuple[str, float], ...] = ()  # every phrasing of the article with its cosine


class Segment:
    """The articles of one language, searchable by vector and by BM25."""

    def __init__(
        self, *, language: str, articles: Sequence[IndexableArticle], vectors: Sequence[np.ndarray],
        tokenizer: Tokenizer, settings: KbSettings,
    ) -> None:
        if len(articles) != len(vectors):
            raise ValueError("one vector block per article")
        self.language = language
        self.articles = list(articles)
        self.settings = settings
        self.tokenizer = tokenizer
        counts = np.array([len(v) for v in vectors], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
        self.dense = (np.concatenate(vectors).astype(np.float32, copy=False) if vectors
                      else np.zeros((0, 1), dtype=np.float32))
        self.texts = [t for a in self.articles for t in phrasings(a)]
        self.bm25: bm25s.BM25 | None = None
        self.vocab: set[str] = set()
        if self.articles:
            corpus = [self._bm25_tokens(a) for a in self.articles]
            self.bm25 = bm25s.BM25(k1=settings.bm25_k1, b=settings.bm25_b)
            self.bm25.index(corpus, show_progress=False)
            self.vocab = set(self.bm25.vocab_dict)

    def __len__(self) -> int:
        return len(self.articles)

    def _bm25_tokens(self, article: IndexableArticle) -> list[str]:
        question_tokens = [t for q in phrasings(article) for t in self.tokenizer(q)]
        tokens = question_tokens * self.settings.question_boost + self.tokenizer(article.answer)
        return tokens or [""]  # bm25s needs at least one token per document

    def bm25_scores(self, query: str) -> np.ndarray:
        tokens = [t for t in self.tokenizer(query) if t in self.vocab]
        if self.bm25 is None or not tokens:
            return np.zeros(len(self.articles), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)

    def scores(self, query: str, query_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per phrasing: cosine; per article: best cosine, and BM25 relative to the query's best (0..1)."""
        row_scores = self.dense @ query_vector.astype(np.float32, copy=False)
        dense = np.maximum.reduceat(row_scores, self.starts)
        bm25 = self.bm25_scores(query)
        best = float(bm25.max()) if len(bm25) else 0.0
        return row_scores, dense, (bm25 / best if best > 0 else bm25)

    def search(self, query: str, query_vector: np.ndarray, *, k: int) -> list[Candidate]:
        """The k best articles by fused score."""
        if not self.articles:
            return []
        row_scores, dense, relative = self.scores(query, query_vector)
        fused = dense + self.settings.bm25_weight * relative
        k = min(k, len(fused))
        top = np.argpartition(-fused, k - 1)[:k]
        top = top[np.argsort(-fused[top], kind="stable")]
        out = []
        for pos in top:
            start = self.starts[pos]
            count = len(phrasings(self.articles[pos]))
            own = row_scores[start : start + count]
            texts = self.texts[start : start + count]
            out.append(Candidate(int(pos), self.articles[pos], float(dense[pos]), float(relative[pos]),
                                 float(fused[pos]), texts[int(np.argmax(own))],
                                 tuple(zip(texts, own.tolist(), strict=True))))
        return out
