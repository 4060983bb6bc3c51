"""The hybrid index: dense vectors of every question phrasing + BM25 over the article, one segment per language.

Retrieval (chosen on StackFAQ dev, see KbSettings): an article's dense score is its best-matching phrasing's
cosine; the fused score adds bm25_weight x its BM25 score relative to the query's best BM25 score. The best
`rerank` articles by fused score are the candidates that knowledge_base.match scores and decides on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from knowledge_base.records import IndexableArticle
from knowledge_base.settings import KbSettings

Tokenizer = Callable[[str], list[str]]


def phrasings(article: IndexableArticle) -> list[str]:
    """The questions an article answers: its question and each alternative phrasing."""
    return [article.question, *[q for q in article.alt_questions if q.strip()]]


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.])\s+|\n+")
_MARKUP = re.compile(r"[*_`#>]+")
MAX_PASSAGES = 12


def answer_passages(article: IndexableArticle) -> list[str]:
    """The answer's sentences (Markdown marks dropped): a question about one detail meets the sentence that has it."""
    sentences = (_MARKUP.sub("", s).strip() for s in _SENTENCE_END.split(article.answer))
    return [s[:300] for s in sentences if len(s) >= 4][:MAX_PASSAGES]


def indexed_texts(article: IndexableArticle) -> list[str]:
    """What gets a vector, in this order: the phrasings, then the answer's passages."""
    return [*phrasings(article), *answer_passages(article)]


@dataclass(frozen=True)
class Candidate:
    position: int  # in the segment's article list
    article: IndexableArticle
    dense: float  # the best phrasing's cosine
    bm25: float  # relative to the query's best BM25 score (0..1)
    fused: float
    matched_text: str  # the best phrasing
    matched_row: int  # that phrasing's row in the segment's dense matrix
    gap: float = 0.0  # dense minus the best dense of every other article (> 0 only for the densest article)
    support: float = 0.0  # the mean cosine of the article's best three phrasings: several phrasings agree
    answer: float = 0.0  # the best cosine with a sentence of the article's answer


@dataclass(frozen=True)
class Leave:
    """What a calibration query leaves out of the index: one phrasing (its row) or a whole article (its position)."""

    row: int | None = None
    position: int | None = None


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
        # Each article's block: its phrasings' vectors, then (when encoded) its answer passages'.
        counts = np.array([min(len(phrasings(a)), len(v)) for a, v in zip(self.articles, vectors, strict=True)],
                          dtype=np.int64)
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
        self.dense = (np.concatenate([v[:n] for v, n in zip(vectors, counts, strict=True)]).astype(np.float32)
                      if vectors else np.zeros((0, 1), dtype=np.float32))
        # Passages: at least one row per article (zeros for an answer without passages), so reduceat sees no gap.
        dim = self.dense.shape[1]
        blocks = [v[n:] if len(v) > n else np.zeros((1, dim), dtype=np.float32)
                  for v, n in zip(vectors, counts, strict=True)]
        self.passage_starts = (np.concatenate([[0], np.cumsum([len(b) for b in blocks])[:-1]]) if blocks
                               else np.zeros(0, np.int64))
        self.passages = (np.concatenate(blocks).astype(np.float32) if blocks else np.zeros((0, dim), np.float32))
        self.texts = [t for a in self.articles for t in phrasings(a)]
        self.row_article = np.repeat(np.arange(len(self.articles)), counts) if len(counts) else np.zeros(0, np.int64)
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

    def search(self, query: str, query_vector: np.ndarray, *, k: int, leave: Leave | None = None) -> list[Candidate]:
        """The k best articles by fused score; `leave` hides a phrasing or an article (calibration's held-out runs)."""
        if not self.articles:
            return []
        row_scores = self.dense @ query_vector.astype(np.float32, copy=False)
        if leave is not None and leave.row is not None:
            row_scores[leave.row] = -np.inf
        if leave is not None and leave.position is not None:
            start = self.starts[leave.position]
            row_scores[start : start + self.counts[leave.position]] = -np.inf
        dense = np.maximum.reduceat(row_scores, self.starts)
        answer = np.maximum.reduceat(self.passages @ query_vector.astype(np.float32, copy=False), self.passage_starts)
        bm25 = self.bm25_scores(query)
        if leave is not None and leave.position is not None:
            bm25[leave.position] = 0.0
        best = float(bm25.max()) if len(bm25) else 0.0
        relative = bm25 / best if best > 0 else bm25
        fused = np.where(np.isfinite(dense), dense + self.settings.bm25_weight * relative, -np.inf)
        k = min(k, int(np.isfinite(fused).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-fused, k - 1)[:k]
        top = top[np.argsort(-fused[top], kind="stable")]
        # The gap: how far an article's dense score stands above every other article's.
        first, second = (np.partition(-dense, 1)[:2] * -1) if len(dense) > 1 else (dense[0], -np.inf)
        out = []
        for pos in top:
            start = int(self.starts[pos])
            own = row_scores[start : start + self.counts[pos]]
            row = start + int(np.argmax(own))
            finite = own[np.isfinite(own)]
            support = float(np.sort(finite)[-3:].mean()) if len(finite) else 0.0
            other = second if dense[pos] >= first else first
            gap = float(dense[pos] - other) if np.isfinite(other) else float(dense[pos])
            out.append(Candidate(int(pos), self.articles[pos], float(dense[pos]), float(relative[pos]),
                                 float(fused[pos]), self.texts[row], row, gap, support, float(answer[pos])))
        return out
